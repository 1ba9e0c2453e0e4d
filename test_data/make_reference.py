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

The rows after those (MORE_ANALYSES) hold GLMs (statsmodels GLM by IRLS: gaussian, binomial with
logit, probit and cloglog links, poisson with an exposure, an offset or frequency weights, gamma
with its inverse_power and a log link), a negative binomial (NB2) regression, Cox regressions
(statsmodels PHReg: Breslow and Efron ties, strata), Kaplan-Meier curves with log-rank tests
(statsmodels SurvfuncRight, survdiff), contingency tables (scipy chi2_contingency) and
descriptive statistics (numpy). Their data files:

- randhie.csv: the RAND Health Insurance Experiment data as statsmodels 0.15.0 ships it
  (statsmodels/datasets/randhie/randhie.csv, copied byte for byte; 20190 rows; "This is in the
  public domain", statsmodels' COPYRIGHT note; from Cameron and Trivedi, Regression Analysis of
  Count Data, 1998).
- randhie_counts.csv: randhie.csv's rows reduced to the columns mdvis, lncoins, idp, hlthg,
  hlthf and hlthp and collapsed: one row per distinct combination, sorted, with `count` the
  number of randhie.csv rows that have it (558 rows; counts add up to 20190). Made by
  pandas groupby(...).size(); same licence as randhie.csv. The frequency-weighted fit on it is
  checked here to equal the unweighted fit on randhie.csv.
- ships.csv: McCullagh and Nelder's ship damage data (Generalized Linear Models, 2nd ed., 1989,
  section 6.3.2, from Lloyd's Register of Shipping: accidents and aggregate months of service by
  ship type, period of construction and period of operation), as statsmodels 0.15.0 ships it
  for its tests (statsmodels/discrete/tests/results/ships.csv; statsmodels is BSD-3-Clause),
  with its six rows without service (no ship of that kind in service) left out (34 rows remain,
  as in McCullagh and Nelder), the ship type 1-5 (A-E) also coded as dummies type_b..type_e
  (A the reference; co_* and op_75_79 are the file's own dummies), and log_service = ln(service)
  added (numpy log, written with Python's shortest round-tripping repr) as an offset column.
- lung.csv: the NCCTG advanced lung cancer survival data (Loprinzi et al., J Clin Oncol 12:601-7,
  1994) from R's survival package (LGPL >= 2), as lifelines 0.30.3 (MIT) ships it
  (lifelines/datasets/lung.csv, where status is already 1 = died, 0 = censored, not R's 2/1):
  only the columns time, status, age, sex (1 male, 2 female), ph.ecog, ph.karno and pat.karno,
  renamed with _ for ., and only the 223 of its 228 rows complete in those columns, written as
  integers; every row of the shipped file is used.
"""

import argparse
import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import scipy
import scipy.stats
import statsmodels
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import DomainWarning

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
    yield from more_rows()


# Rows after the first six: GLMs, a negative binomial, Cox and Kaplan-Meier, contingency tables
# and descriptive statistics. Each entry is (file, kind, options); the options say everything
# the row describes besides its numbers.
MORE_ANALYSES = [
    ("diabetes.csv", "glm", {"target": "progression", "family": "gaussian", "link": "identity"}),
    ("spector.csv", "glm", {"target": "GRADE", "family": "binomial", "link": "logit"}),
    ("spector.csv", "glm", {"target": "GRADE", "family": "binomial", "link": "probit"}),
    ("spector.csv", "glm", {"target": "GRADE", "family": "binomial", "link": "cloglog"}),
    ("randhie.csv", "glm", {"target": "mdvis", "family": "poisson", "link": "log"}),
    ("ships.csv", "glm", {"target": "accident", "family": "poisson", "link": "log", "exposure": "service",
                          "features": ["type_b", "type_c", "type_d", "type_e", "co_65_69", "co_70_74",
                                       "co_75_79", "op_75_79"]}),
    ("ships.csv", "glm", {"target": "accident", "family": "poisson", "link": "log", "offset": "log_service",
                          "features": ["type_b", "type_c", "type_d", "type_e", "op_75_79"]}),
    ("diabetes_raw.csv", "glm", {"target": "progression", "family": "gamma", "link": "inverse_power",
                                 "features": ["bmi", "bp", "s5"]}),
    ("diabetes_raw.csv", "glm", {"target": "progression", "family": "gamma", "link": "log",
                                 "features": ["bmi", "bp", "s5"]}),
    ("randhie_counts.csv", "glm", {"target": "mdvis", "family": "poisson", "link": "log", "weights": "count",
                                   "features": ["lncoins", "idp", "hlthg", "hlthf", "hlthp"]}),
    ("randhie.csv", "negative_binomial", {"target": "mdvis"}),
    ("lung.csv", "cox", {"time": "time", "event": "status", "ties": "breslow",
                         "features": ["age", "sex", "ph_ecog", "ph_karno", "pat_karno"]}),
    ("lung.csv", "cox", {"time": "time", "event": "status", "ties": "efron",
                         "features": ["age", "sex", "ph_ecog", "ph_karno", "pat_karno"]}),
    ("lung.csv", "cox", {"time": "time", "event": "status", "ties": "efron", "strata": "sex",
                         "features": ["age", "ph_ecog"]}),
    ("lung.csv", "kaplan_meier", {"time": "time", "event": "status"}),
    ("lung.csv", "kaplan_meier", {"time": "time", "event": "status", "group": "sex"}),
    ("lung.csv", "kaplan_meier", {"time": "time", "event": "status", "group": "ph_ecog"}),
    ("penguins.csv", "crosstab", {"rows": "species", "cols": "island"}),
    ("penguins.csv", "crosstab", {"rows": "species", "cols": "sex"}),
    ("spector.csv", "crosstab", {"rows": "PSI", "cols": "GRADE"}),
    ("lung.csv", "crosstab", {"rows": "sex", "cols": "status"}),
    ("diabetes_raw.csv", "describe", {"features": ["age", "bmi", "bp", "s5", "progression"]}),
]

LINKS = {"identity": "Identity", "logit": "Logit", "probit": "Probit", "cloglog": "CLogLog",
         "log": "Log", "inverse_power": "InversePower", "sqrt": "Sqrt"}
FAMILIES = {"gaussian": "Gaussian", "binomial": "Binomial", "poisson": "Poisson", "gamma": "Gamma"}


def floats_or_null(a):
    """Like floats, with NaN written as null (JSON has no NaN)."""
    return [float(x) if np.isfinite(x) else None for x in np.asarray(a, dtype=float).ravel()]


def estimates(fit):
    ci = np.asarray(fit.conf_int(0.05))
    return {
        "coef": floats(fit.params),
        "se": floats(fit.bse),
        "t": floats(fit.tvalues),
        "p": floats(fit.pvalues),
        "conf_low": floats(ci[:, 0]),
        "conf_high": floats(ci[:, 1]),
    }


def irls(model):
    """statsmodels' IRLS stops on the deviance (tol 1e-13 absolute, 1e-15 relative, as a
    deviance of a few hundred cannot change by less than 1e-13), which leaves a non-canonical
    link's coefficients (probit, cloglog) only about 1e-7 from the optimum; so the fit is taken
    on from its estimate, five IRLS iterations at a time, until no coefficient moves by more
    than 1e-13 of |coef| + se. Returns the fit, the iterations used and that last change."""
    fit = model.fit(method="IRLS", tol=1e-13, rtol=1e-15, maxiter=300)
    assert fit.converged
    iterations = fit.fit_history["iteration"]
    for _ in range(60):
        more = model.fit(method="IRLS", start_params=fit.params, tol=0.0, rtol=0.0, maxiter=5)
        change = float(np.max(np.abs(more.params - fit.params) / (np.abs(fit.params) + fit.bse)))
        iterations += more.fit_history["iteration"]
        fit = more
        if change < 1e-13:
            return fit, iterations, change
    raise AssertionError(f"IRLS did not settle: last change {change:.1e}")


def glm(df, target, family, link, features, offset=None, exposure=None, weights=None):
    """statsmodels GLM by IRLS to tol 1e-13. Its z values, P and intervals use the normal
    distribution for every family (also gaussian and gamma, whose scale is estimated as Pearson
    chi2 / df_resid); loglik is taken at that scale, except for gaussian identity, where it is the
    concentrated one (scale = RSS / n) and so equals OLS's; aic = -2 llf + 2 (df_model + 1) and
    bic = bic_llf = -2 llf + (df_model + 1) ln(n): the scale is not counted as a parameter.
    With frequency weights n in those formulas, df_resid and null_deviance count weighted rows
    ("n_weighted"); "n" is the number of rows in the file."""
    extra = set(filter(None, [target, offset, exposure, weights]))
    features = features or [c for c in df.columns if c not in extra]
    x = sm.add_constant(df[features].to_numpy(dtype=float), has_constant="add")
    y = df[target].to_numpy(dtype=float)
    fam = getattr(sm.families, FAMILIES[family])(getattr(sm.families.links, LINKS[link])())
    kw = {}
    if offset:
        kw["offset"] = df[offset].to_numpy(dtype=float)
    if exposure:
        kw["exposure"] = df[exposure].to_numpy(dtype=float)
    if weights:
        kw["freq_weights"] = df[weights].to_numpy(dtype=float)
    with warnings.catch_warnings():
        # Gamma's canonical inverse_power link can give a negative mean; it does not here.
        warnings.simplefilter("ignore", DomainWarning)
        model = sm.GLM(y, x, family=fam, **kw)
    fit, iterations, change = irls(model)
    bic_deviance = fit.bic_deviance() if callable(fit.bic_deviance) else fit.bic_deviance
    row = {"target": target, "family": family, "link": link}
    for name, col in (("offset", offset), ("exposure", exposure), ("weights", weights)):
        if col:
            row[name] = col
    row.update({"terms": ["const"] + features, "n": int(len(y))})
    if weights:
        row["n_weighted"] = float(model.wnobs)
    row.update(estimates(fit))
    row.update({
        "deviance": float(fit.deviance),
        "pearson_chi2": float(fit.pearson_chi2),
        "scale": float(fit.scale),
        "loglik": float(fit.llf),
        "aic": float(fit.aic),
        "bic": float(fit.bic_llf),
        "bic_deviance": float(bic_deviance),
        "null_deviance": float(fit.null_deviance),
        "df_model": float(fit.df_model),
        "df_resid": float(fit.df_resid),
        "by": (f"statsmodels {statsmodels.__version__} GLM {FAMILIES[family]}({LINKS[link]}) by IRLS "
               f"(deviance tol 1e-13, then until the coefficients settle: {iterations} iterations, last "
               f"relative change {change:.0e}), scipy {scipy.__version__}; se from the expected "
               f"information; z tests; bic = bic_llf"),
    })
    if family == "gaussian" and link == "identity":
        ols = sm.OLS(y, x).fit()
        assert np.allclose(fit.params, ols.params, rtol=1e-10) and np.allclose(fit.bse, ols.bse, rtol=1e-8)
        assert abs(fit.llf - ols.llf) < 1e-8 * abs(ols.llf)
        row["by"] += "; equals OLS (coef, se, loglik)"
    if weights:
        # The collapsed table's weighted fit is the fit to the rows it was collapsed from.
        full = pd.read_csv(HERE / "randhie.csv")
        xf = sm.add_constant(full[features].to_numpy(dtype=float), has_constant="add")
        ff = sm.GLM(full[target].to_numpy(dtype=float), xf, family=fam).fit(method="IRLS", tol=1e-13)
        assert np.allclose(fit.params, ff.params, rtol=1e-9) and np.allclose(fit.bse, ff.bse, rtol=1e-9)
        assert abs(fit.llf - ff.llf) < 1e-9 * abs(ff.llf)
        row["by"] += "; equals the unweighted fit to randhie.csv's 20190 rows"
    return row


def negative_binomial(df, target, features=None):
    """statsmodels' discrete NegativeBinomial (NB2: var = mu + alpha mu^2) by Newton. alpha is the
    last parameter; aic and bic count it (k = df_model + 1 + 1). llnull is the constant-only NB2
    model fitted the same way (statsmodels' own llnull fits it with its default optimiser)."""
    features = features or [c for c in df.columns if c != target]
    x = sm.add_constant(df[features].to_numpy(dtype=float), has_constant="add")
    y = df[target].to_numpy(dtype=float)
    fit = sm.NegativeBinomial(y, x, loglike_method="nb2").fit(method="newton", tol=1e-12, maxiter=300, disp=0)
    assert fit.mle_retvals["converged"]
    null = sm.NegativeBinomial(y, np.ones((len(y), 1)), loglike_method="nb2").fit(
        method="newton", tol=1e-12, maxiter=300, disp=0)
    assert null.mle_retvals["converged"]
    row = {"target": target, "terms": ["const"] + features + ["alpha"], "n": int(len(y))}
    row.update(estimates(fit))
    row.update({
        "loglik": float(fit.llf),
        "llnull": float(null.llf),
        "aic": float(fit.aic),
        "bic": float(fit.bic),
        "df_model": float(fit.df_model),
        "df_resid": float(fit.df_resid),
        "by": (f"statsmodels {statsmodels.__version__} NegativeBinomial nb2 (Newton, tol 1e-12, "
               f"{fit.mle_retvals['iterations']} iterations), scipy {scipy.__version__}; llnull from the "
               f"constant-only model by Newton (statsmodels' llnull differs by {abs(fit.llnull - null.llf):.1e})"),
    })
    return row


def cox(df, time, event, ties, features, strata=None):
    """statsmodels PHReg by Newton to tol 1e-12. loglik is the log partial likelihood (Breslow's or
    Efron's for tied event times, summed over strata), as R's coxph reports it; z tests."""
    from statsmodels.duration.hazard_regression import PHReg

    model = PHReg(df[time].to_numpy(dtype=float), df[features].to_numpy(dtype=float),
                  status=df[event].to_numpy(dtype=float), ties=ties,
                  strata=None if strata is None else df[strata].to_numpy())
    fit = model.fit(method="newton", tol=1e-12, maxiter=300)
    # PHRegResults keeps no convergence flag: the Newton step left at the estimate must be nil.
    step = np.linalg.solve(model.hessian(fit.params), model.score(fit.params))
    assert np.max(np.abs(step) / (np.abs(fit.params) + fit.bse)) < 1e-12
    row = {"time": time, "event": event, "ties": ties}
    if strata:
        row["strata"] = strata
    row.update({"terms": features, "n": int(len(df)), "events": int(df[event].sum())})
    row.update(estimates(fit))
    ci = np.asarray(fit.conf_int(0.05))
    row.update({
        "hazard_ratio": floats(np.exp(fit.params)),
        "hr_low": floats(np.exp(ci[:, 0])),
        "hr_high": floats(np.exp(ci[:, 1])),
        "loglik": float(fit.llf),
        "by": (f"statsmodels {statsmodels.__version__} PHReg (ties {ties}, Newton, tol 1e-12), scipy "
               f"{scipy.__version__}; z tests; hazard ratios and their interval are exp(coef) and exp(interval)"),
    })
    return row


def kaplan_meier(df, time, event, group=None):
    """statsmodels SurvfuncRight per group: at each event time the Kaplan-Meier estimate, its
    Greenwood standard error, the number at risk just before and the number of events; the median is
    statsmodels' quantile(0.5), the first event time at which the estimate is strictly below 0.5
    (null if it never is; R's survfit instead takes the midpoint where the estimate equals 0.5
    over an interval). statsmodels has no pointwise interval (only simultaneous_cb, a Hall-Wellner
    band), so conf_low/conf_high are computed here as R's survfit conf.type = "log-log" computes
    them: S^exp(+-1.96 se(log S) / log S), se(log S) = surv_se / S (Greenwood), null where S is 0.
    The log-rank test is statsmodels' survdiff; its df (groups - 1) is not returned by it, and its
    P is 1 - chi2.cdf, so p_sf gives scipy's chi2.sf too."""
    from statsmodels.duration.survfunc import SurvfuncRight, survdiff

    z = scipy.stats.norm.isf(0.025)
    levels = [None] if group is None else sorted(df[group].unique())
    groups = []
    for level in levels:
        part = df if level is None else df[df[group] == level]
        sf = SurvfuncRight(part[time].to_numpy(dtype=float), part[event].to_numpy(dtype=float))
        s = np.asarray(sf.surv_prob, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            se_log = np.asarray(sf.surv_prob_se, dtype=float) / s
            w = np.exp(z * se_log / np.log(s))
            a, b = s ** w, s ** (1.0 / w)
        ok = (s > 0) & (s < 1) & np.isfinite(se_log)
        low = np.where(ok, np.minimum(a, b), np.nan)
        high = np.where(ok, np.maximum(a, b), np.nan)
        median = sf.quantile(0.5)
        groups.append({
            "group": None if level is None else level.item() if hasattr(level, "item") else level,
            "n": int(len(part)),
            "time": floats(sf.surv_times),
            "surv": floats(s),
            "surv_se": floats_or_null(sf.surv_prob_se),
            "n_risk": floats(sf.n_risk),
            "n_events": floats(sf.n_events),
            "median": float(median) if np.isfinite(median) else None,
            "conf_low": floats_or_null(low),
            "conf_high": floats_or_null(high),
        })
    row = {"time": time, "event": event}
    if group:
        row["group"] = group
    row.update({"terms": [], "n": int(len(df)), "conf_type": "log-log", "groups": groups})
    if group:
        chi2, p = survdiff(df[time].to_numpy(dtype=float), df[event].to_numpy(dtype=float), df[group].to_numpy())
        dof = len(levels) - 1
        row["logrank"] = {"chi2": float(chi2), "df": dof, "p": float(p),
                          "p_sf": float(scipy.stats.chi2.sf(chi2, dof))}
    row["by"] = (f"statsmodels {statsmodels.__version__} SurvfuncRight (Greenwood se) and survdiff "
                 f"(log-rank); pointwise 95% interval log-log (R survfit conf.type='log-log') computed "
                 f"here from surv and surv_se with numpy {np.__version__}: statsmodels has none")
    return row


def levels_of(values):
    """Sorted numerically for a numeric column and as text otherwise, as patsy does."""
    out = sorted(pd.unique(values))
    return [v.item() if hasattr(v, "item") else v for v in out]


def crosstab(df, rows, cols):
    """scipy chi2_contingency on the counts of (rows, cols) pairs, leaving out rows of the file
    with an empty cell in either column: chi2, df and P without continuity correction, and for a
    2x2 table also with Yates' correction (chi2_yates, p_yates)."""
    part = df[[rows, cols]].dropna()
    rl, cl = levels_of(part[rows]), levels_of(part[cols])
    counts = np.array([[int(((part[rows] == r) & (part[cols] == c)).sum()) for c in cl] for r in rl])
    res = scipy.stats.chi2_contingency(counts, correction=False)
    row = {"rows": rows, "cols": cols, "terms": [], "n": int(counts.sum()),
           "row_levels": rl, "col_levels": cl, "counts": counts.tolist(),
           "expected": np.asarray(res.expected_freq, dtype=float).tolist(),
           "chi2": float(res.statistic), "df": int(res.dof), "p": float(res.pvalue)}
    if counts.shape == (2, 2):
        yates = scipy.stats.chi2_contingency(counts, correction=True)
        row.update({"chi2_yates": float(yates.statistic), "p_yates": float(yates.pvalue)})
    row["by"] = f"scipy {scipy.__version__} stats.chi2_contingency"
    return row


PROBS = [0.25, 0.5, 0.75]


def describe(df, features):
    """Per column (in terms' order): count, mean, sd (ddof 1), min, max and the quartiles by
    three of numpy's definitions (linear = numpy's default = R type 7; inverted_cdf = R type 1;
    lower), and numpy's corrcoef of the columns."""
    x = df[features].to_numpy(dtype=float)
    quant = {m: np.quantile(x, PROBS, axis=0, method=m).T.tolist() for m in ("linear", "inverted_cdf", "lower")}
    return {
        "terms": features,
        "n": int(x.shape[0]),
        "count": [int(c) for c in np.isfinite(x).sum(axis=0)],
        "mean": floats(x.mean(axis=0)),
        "sd": floats(x.std(axis=0, ddof=1)),
        "min": floats(x.min(axis=0)),
        "max": floats(x.max(axis=0)),
        "quantile_probs": PROBS,
        "quantiles_linear": quant["linear"],
        "quantiles_inverted_cdf": quant["inverted_cdf"],
        "quantiles_lower": quant["lower"],
        "corr": np.corrcoef(x, rowvar=False).tolist(),
        "by": f"numpy {np.__version__} (mean, std ddof 1, quantile, corrcoef)",
    }


def more_rows():
    for csv, kind, opts in MORE_ANALYSES:
        df = pd.read_csv(HERE / csv)
        opts = dict(opts)
        row = {"csv": csv, "kind": kind}
        if kind == "glm":
            row.update(glm(df, opts.pop("target"), opts.pop("family"), opts.pop("link"), opts.pop("features", None), **opts))
        elif kind == "negative_binomial":
            row.update(negative_binomial(df, **opts))
        elif kind == "cox":
            row.update(cox(df, **opts))
        elif kind == "kaplan_meier":
            row.update(kaplan_meier(df, **opts))
        elif kind == "crosstab":
            row.update(crosstab(df, **opts))
        elif kind == "describe":
            row.update(describe(df, **opts))
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
