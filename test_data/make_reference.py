#!/usr/bin/env python3
"""Regenerate test_data/reference.jsonl: the independent numbers fedsim's results are held against.

Each row is one analysis of one shipped data file, computed on the pooled data with statsmodels
(OLS, Logit by Newton to tol 1e-12, with what their summaries show: t or z, P, the 95% interval,
F and its P, AIC, BIC, LL-Null, LLR and its P) or numpy (SVD of the centred, optionally z-scored
matrix), and says exactly what it describes (file, kind, target, terms; for a PCA k, center and scale), because
fedsim only accepts a row that describes the analysis it ran.

    python3 test_data/make_reference.py                 # rewrite test_data/reference.jsonl
    python3 test_data/make_reference.py --out FILE --out-distributions FILE2   # elsewhere

It also writes test_data/distributions.jsonl: fedsim's tail and quantile functions over a grid,
each with its true value (mpmath, 50 digits) and scipy's, for tests/distributions.rs.

Needs numpy, pandas, scipy, statsmodels and mpmath (pip install statsmodels mpmath).

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
import scipy
import scipy.stats
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


def summary(fit, kind):
    """What statsmodels' summary shows besides coef and se: t or z, P, the 95% interval and the
    model's statistics. A Logit's LL-Null is taken in closed form, n1 ln(ybar) + n0 ln(1 - ybar):
    statsmodels fits the constant-only model numerically, which is only accurate to about 3e-11;
    pseudo R², LLR and its P follow from the closed form."""
    ci = np.asarray(fit.conf_int(0.05))
    row = {
        "t": floats(fit.tvalues),
        "p": floats(fit.pvalues),
        "conf_low": floats(ci[:, 0]),
        "conf_high": floats(ci[:, 1]),
        "loglik": float(fit.llf),
        "df_model": float(fit.df_model),
        "df_resid": float(fit.df_resid),
        "aic": float(fit.aic),
        "bic": float(fit.bic),
    }
    if kind == "ols":
        row.update({
            "r2": float(fit.rsquared),
            "adj_r2": float(fit.rsquared_adj),
            "sigma2": float(fit.scale),
            "fvalue": float(fit.fvalue),
            "f_pvalue": float(fit.f_pvalue),
        })
    else:
        y = np.asarray(fit.model.endog, dtype=float)
        n1, n = float(y.sum()), float(len(y))
        ybar = n1 / n
        llnull = n1 * np.log(ybar) + (n - n1) * np.log1p(-ybar)
        llr = 2.0 * (fit.llf - llnull)
        row.update({
            "llnull": float(llnull),
            "pseudo_r2": float(1.0 - fit.llf / llnull),
            "llr": float(llr),
            "llr_pvalue": float(scipy.stats.chi2.sf(llr, fit.df_model)),
        })
    return row


def regression(df, kind, target, features):
    x = sm.add_constant(df[features].to_numpy(dtype=float), has_constant="add")
    y = df[target].to_numpy(dtype=float)
    terms = ["const"] + features
    if kind == "ols":
        fit = sm.OLS(y, x).fit()
        by = f"statsmodels {statsmodels.__version__} OLS, scipy {scipy.__version__}"
    else:
        fit = sm.Logit(y, x).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
        by = (f"statsmodels {statsmodels.__version__} Logit (Newton, tol 1e-12), scipy "
              f"{scipy.__version__}; llnull in closed form (statsmodels' numerical fit differs "
              f"by {abs(fit.llnull - summary(fit, kind)['llnull']):.1e})")
    row = {"terms": terms, "n": int(len(y)), "coef": floats(fit.params), "se": floats(fit.bse)}
    row.update(summary(fit, kind))
    row["by"] = by
    return row


def formula_regression(df, kind, target, features, categorical):
    """The same analysis through the formula API: patsy's treatment coding, listwise deletion."""
    import statsmodels.formula.api as smf

    formula = f"{target} ~ " + " + ".join(f"Q('{f}')" if f not in categorical else f for f in features)
    assert kind == "ols", "only OLS rows use the formula API"
    fit = smf.ols(formula, data=df, missing="drop").fit()
    terms = ["const" if t == "Intercept" else t.replace("Q('", "").replace("')", "") for t in fit.params.index]
    row = {
        "terms": terms,
        "n": int(fit.nobs),
        "coef": floats(fit.params),
        "se": floats(fit.bse),
    }
    row.update(summary(fit, kind))
    row["by"] = f"statsmodels {statsmodels.__version__} formula OLS (missing='drop'), scipy {scipy.__version__}"
    return row


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


def distribution_rows():
    """fedsim's tails and quantiles over a grid, each with its true value (mpmath at 50 digits)
    and scipy's (what statsmodels reports): normal, Student t (df 1 to a million), F and chi²."""
    import mpmath as mp

    mp.mp.dps = 50
    f = lambda v: float(v)  # noqa: E731
    for z in [0.0, 0.3, 1.0, 1.959963984540054, 3.0, 5.0, 8.0, 12.0, 20.0, 37.0]:
        yield {"f": "normal_two_sided", "args": [z],
               "mpmath": f(mp.erfc(mp.mpf(z) / mp.sqrt(2))),
               "scipy": float(2 * scipy.stats.norm.sf(z))}
    for q in [0.5, 0.25, 0.05, 0.025, 0.005, 1e-6, 1e-12]:
        yield {"f": "normal_isf", "args": [q],
               "mpmath": f(mp.sqrt(2) * mp.erfinv(1 - 2 * mp.mpf(q))),
               "scipy": float(scipy.stats.norm.isf(q))}

    def t2(t, df):
        t, df = mp.mpf(t), mp.mpf(df)
        return mp.betainc(df / 2, mp.mpf(1) / 2, 0, df / (df + t * t), regularized=True)

    for df in [1, 2, 3, 5, 10, 29, 100, 431, 1000, 10000, 999989]:
        for t in [0.05, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 25.0, 60.0]:
            yield {"f": "t_two_sided", "args": [t, df], "mpmath": f(t2(t, df)),
                   "scipy": float(2 * scipy.stats.t.sf(t, df))}
        guess = float(scipy.stats.t.isf(0.025, df))
        root = mp.findroot(lambda x: t2(x, df) / 2 - mp.mpf("0.025"), guess)
        yield {"f": "t_isf", "args": [0.025, df], "mpmath": f(root),
               "scipy": float(scipy.stats.t.isf(0.025, df))}

    def fsf(x, d1, d2):
        x, d1, d2 = mp.mpf(x), mp.mpf(d1), mp.mpf(d2)
        return mp.betainc(d2 / 2, d1 / 2, 0, d2 / (d2 + d1 * x), regularized=True)

    for d1, d2 in [(1, 10), (3, 10), (10, 431), (8, 325), (50, 1000), (2, 999989)]:
        for x in [0.2, 1.0, 2.0, 5.0, 20.0, 80.0, 300.0]:
            yield {"f": "f_sf", "args": [x, d1, d2], "mpmath": f(fsf(x, d1, d2)),
                   "scipy": float(scipy.stats.f.sf(x, d1, d2))}
    for df in [1, 2, 3, 4, 7, 10, 31]:
        for x in [0.1, 1.0, 5.0, 20.0, 60.0, 150.0, 600.0]:
            yield {"f": "chi2_sf", "args": [x, df],
                   "mpmath": f(mp.gammainc(mp.mpf(df) / 2, mp.mpf(x) / 2, mp.inf, regularized=True)),
                   "scipy": float(scipy.stats.chi2.sf(x, df))}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=HERE / "reference.jsonl")
    p.add_argument("--out-distributions", type=pathlib.Path, default=HERE / "distributions.jsonl")
    args = p.parse_args()
    with open(args.out, "w") as f:
        for row in rows():
            f.write(json.dumps(row) + "\n")
    with open(args.out_distributions, "w") as f:
        for row in distribution_rows():
            f.write(json.dumps(row) + "\n")
    print(args.out)
    print(args.out_distributions)


if __name__ == "__main__":
    main()
