#!/usr/bin/env python3
"""Regenerate test_data/reference.jsonl: the independent numbers fedsim's results are held against.

Each row is one analysis of one shipped data file, computed on the pooled data with statsmodels
(OLS, Logit by Newton to tol 1e-12) or numpy (SVD of the centred, optionally z-scored matrix), and
says exactly what it describes (file, kind, target, terms; for a PCA k, center and scale), because
fedsim only accepts a row that describes the analysis it ran.

    python3 test_data/make_reference.py                 # rewrite test_data/reference.jsonl
    python3 test_data/make_reference.py --out FILE      # write elsewhere (the tests compare)

Needs numpy, pandas and statsmodels (pip install statsmodels).

penguins.csv is the Palmer penguins data as the `palmerpenguins` 0.1.6 package (PyPI, CC0) ships
it, with its `NA` cells written as empty cells; penguins_sites/ holds its rows split by island
(torgersen.csv written with `;`). Its row is computed with the formula API (treatment coding,
missing='drop'), the way fedsim's `categorical` and `missing = "drop"` are defined.
"""

import argparse
import json
import pathlib

import numpy as np
import pandas as pd
import statsmodels
import statsmodels.api as sm

HERE = pathlib.Path(__file__).resolve().parent

# (file, kind, target, features or None for all but target/excluded, extra)
ANALYSES = [
    ("diabetes.csv", "ols", "progression", None, {}),
    ("diabetes_raw.csv", "ols", "progression", None, {}),
    ("spector.csv", "logit", "GRADE", None, {}),
    ("digits.csv", "pca", None, None, {"exclude": ["target"], "k": 10, "center": True, "scale": False}),
    ("breast_cancer.csv", "pca", None, None, {"exclude": ["target"], "k": 5, "center": True, "scale": True}),
    # Text columns and empty cells: statsmodels' formula API codes the categories and drops the
    # incomplete rows (missing="drop"), as fedsim does with `categorical` and `missing = "drop"`.
    ("penguins.csv", "ols", "body_mass_g",
     ["species", "island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
     {"categorical": ["species", "island", "sex"]}),
]


def floats(a):
    return [float(x) for x in np.asarray(a).ravel()]


def regression(df, kind, target, features):
    x = sm.add_constant(df[features].to_numpy(dtype=float), has_constant="add")
    y = df[target].to_numpy(dtype=float)
    terms = ["const"] + features
    if kind == "ols":
        fit = sm.OLS(y, x).fit()
        extra = {"r2": float(fit.rsquared), "sigma2": float(fit.scale)}
        by = f"statsmodels {statsmodels.__version__} OLS"
    else:
        fit = sm.Logit(y, x).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
        extra = {"loglik": float(fit.llf)}
        by = f"statsmodels {statsmodels.__version__} Logit (Newton, tol 1e-12)"
    row = {"terms": terms, "n": int(len(y)), "coef": floats(fit.params), "se": floats(fit.bse)}
    row.update(extra)
    row["by"] = by
    return row


def formula_regression(df, kind, target, features, categorical):
    """The same analysis through the formula API: patsy's treatment coding, listwise deletion."""
    import statsmodels.formula.api as smf

    formula = f"{target} ~ " + " + ".join(f"Q('{f}')" if f not in categorical else f for f in features)
    assert kind == "ols", "only OLS rows use the formula API"
    fit = smf.ols(formula, data=df, missing="drop").fit()
    terms = ["const" if t == "Intercept" else t.replace("Q('", "").replace("')", "") for t in fit.params.index]
    return {
        "terms": terms,
        "n": int(fit.nobs),
        "coef": floats(fit.params),
        "se": floats(fit.bse),
        "r2": float(fit.rsquared),
        "sigma2": float(fit.scale),
        "by": f"statsmodels {statsmodels.__version__} formula OLS (missing='drop')",
    }


def pca(df, features, k, center, scale):
    x = df[features].to_numpy(dtype=float)
    n = x.shape[0]
    if center:
        x = x - x.mean(axis=0)
    if scale:
        x = x / x.std(axis=0, ddof=1)
    s = np.linalg.svd(x, compute_uv=False)[:k]
    return {
        "terms": features,
        "n": int(n),
        "k": k,
        "center": center,
        "scale": scale,
        "singular_values": floats(s),
        "explained_variance": floats(s**2 / (n - 1)),
        "by": f"numpy {np.__version__} linalg.svd",
    }


def rows():
    for csv, kind, target, features, extra in ANALYSES:
        df = pd.read_csv(HERE / csv)
        excluded = set(extra.get("exclude", [])) | ({target} if target else set())
        cols = features or [c for c in df.columns if c not in excluded]
        row = {"csv": csv, "kind": kind}
        if target:
            row["target"] = target
        if kind == "pca":
            row.update(pca(df, cols, extra["k"], extra["center"], extra["scale"]))
        elif "categorical" in extra:
            row.update(formula_regression(df, kind, target, cols, extra["categorical"]))
        else:
            row.update(regression(df, kind, target, cols))
        yield row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=HERE / "reference.jsonl")
    args = p.parse_args()
    with open(args.out, "w") as f:
        for row in rows():
            f.write(json.dumps(row) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
