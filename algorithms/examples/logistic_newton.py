"""Federated logistic regression by Newton-Raphson (numpy), intercept first.

Each round the request holds the coefficients beta (null in round 1: the sites start from
zeros, so the aggregate need not know the number of terms). Each site replies with its rows'
gradient g = X'(y - p), information matrix h = X'WX (the negative Hessian, W = p(1 - p)) and
log-likelihood, as {"sum": {"g", "h", "ll"}}. The aggregate takes the Newton step
beta += solve(h, g) and stops when max|step| <= 1e-10 * max(1, max|beta|), failing after 50
iterations. Result: {"coef", "se" = sqrt(diag(inv(h))), "loglik", "iterations"}, as statsmodels'
Logit(y, add_constant(X)).fit(method="newton") reports them. pooled runs the same iteration on
the pooled file.

    python3 logistic_newton.py --target y [--columns a,b] local|aggregate|pooled
    (default features: every column but the target)
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the scenario's or the sites' directories

try:
    import numpy as np
except ImportError:
    print("logistic_newton.py needs numpy, which this python3 lacks (pip install numpy)",
          file=sys.stderr)
    sys.exit(4)

from fedsim_protocol import header, read_csv, run, total  # noqa: E402

MAX_ITER = 50
TOL = 1e-10


def options(parser):
    parser.add_argument("--target", required=True, help="the 0/1 outcome column")
    parser.add_argument("--columns", help="comma-separated features (default: all but the target)")


def design(args, data):
    """The design matrix (a column of ones, then the features) and the 0/1 target."""
    if args.columns:
        features = args.columns.split(",")
    else:
        features = [c for c in header(data) if c != args.target]
    rows = read_csv(data, features + [args.target])
    a = np.array(rows, dtype=float).reshape(len(rows), len(features) + 1)
    y = a[:, -1]
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"{data}, line {bad[0] + 2}: target {args.target!r} is {y[bad[0]]:g}, not 0 or 1")
    return np.column_stack([np.ones(len(rows)), a[:, :-1]]), y


def stats(x, y, beta):
    """Gradient, information matrix and log-likelihood at beta."""
    eta = x @ beta
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-eta))
    w = p * (1.0 - p)
    ll = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return x.T @ (y - p), (x * w[:, None]).T @ x, ll


def newton(beta, g, h, ll, iteration):
    """One Newton step from beta: (new beta, None), or (beta, result) once converged."""
    try:
        step = np.linalg.solve(h, g)
    except np.linalg.LinAlgError:
        raise ValueError(f"singular information matrix at iteration {iteration} "
                         "(a constant or collinear feature, or perfect separation)") from None
    beta = beta + step
    if np.max(np.abs(step)) <= TOL * max(1.0, np.max(np.abs(beta))):
        se = np.sqrt(np.diag(np.linalg.inv(h)))
        return beta, {"coef": beta.tolist(), "se": se.tolist(), "loglik": ll,
                      "iterations": iteration}
    if iteration >= MAX_ITER:
        raise ValueError(f"Newton-Raphson did not converge in {MAX_ITER} iterations "
                         f"(last step {np.max(np.abs(step)):.3g}; perfect separation?)")
    if not np.all(np.isfinite(beta)):
        raise ValueError(f"the coefficients diverged at iteration {iteration}")
    return beta, None


def local(args, r, request, data, site):
    x, y = design(args, data)
    beta = np.zeros(x.shape[1]) if request["beta"] is None else np.array(request["beta"], dtype=float)
    if beta.shape != (x.shape[1],):
        raise ValueError(f"got {beta.size} coefficients for {x.shape[1]} terms")
    g, h, ll = stats(x, y, beta)
    return {"sum": {"g": g.tolist(), "h": h.tolist(), "ll": ll}}


def aggregate(args, r, replies, state):
    if r == 0:
        return {"request": {"beta": None}, "state": None}
    t = total(replies)
    g, h = np.array(t["g"], dtype=float), np.array(t["h"], dtype=float)
    beta = np.zeros(len(g)) if state is None else np.array(state["beta"], dtype=float)
    beta, result = newton(beta, g, h, t["ll"], r)
    if result:
        return {"result": result}
    return {"request": {"beta": beta.tolist()}, "state": {"beta": beta.tolist()}}


def pooled(args, data):
    x, y = design(args, data)
    beta = np.zeros(x.shape[1])
    for iteration in range(1, MAX_ITER + 1):
        beta, result = newton(beta, *stats(x, y, beta), iteration)
        if result:
            return result


if __name__ == "__main__":
    run(local, aggregate, pooled, options)
