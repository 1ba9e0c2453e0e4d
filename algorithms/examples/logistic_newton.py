"""Federated logistic regression by Newton-Raphson (numpy), intercept first.

Each round the request holds the coefficients; each site sends the gradient, the information
matrix (X'WX) and the log-likelihood of its rows, as {"sum": ...}; the aggregate takes the Newton
step, and stops when the largest step is below 1e-10 of the coefficients' scale. The result's
standard errors are sqrt(diag(inverse information)), as statsmodels' Logit reports them.

    python3 logistic_newton.py --target y [--columns a,b] local|aggregate|pooled
"""

import sys

try:
    import numpy as np
except ImportError:
    print("logistic_newton.py needs numpy (pip install numpy)", file=sys.stderr)
    sys.exit(4)

from fedsim_protocol import read_csv, run, total

MAX_ITER = 50


def options(p):
    p.add_argument("--target", required=True)
    p.add_argument("--columns", help="comma-separated features (default: all but the target)")


def design(args, data):
    """The intercept and features, and the 0/1 target, of a CSV."""
    if args.columns:
        features = args.columns.split(",")
    else:
        with open(data) as f:
            header = f.readline().strip().split(",")
        features = [c for c in header if c != args.target]
    _, rows = read_csv(data, features + [args.target])
    a = np.array(rows, dtype=float).reshape(len(rows), len(features) + 1)
    x = np.column_stack([np.ones(len(rows)), a[:, :-1]])
    return x, a[:, -1]


def stats(x, y, beta):
    eta = x @ beta
    p = 1.0 / (1.0 + np.exp(-eta))
    w = p * (1.0 - p)
    ll = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return x.T @ (y - p), (x * w[:, None]).T @ x, ll


def local(args, round, request, data, site):
    x, y = design(args, data)
    beta = np.zeros(x.shape[1]) if request["beta"] is None else np.array(request["beta"])
    g, h, ll = stats(x, y, beta)
    return {"sum": {"g": g.tolist(), "h": h.tolist(), "ll": ll}}


def newton(beta, g, h, iteration):
    """One step; the estimate when it has converged, else None."""
    step = np.linalg.solve(h, g)
    beta = beta + step
    if np.max(np.abs(step)) <= 1e-10 * max(1.0, np.max(np.abs(beta))):
        return beta, {"coef": beta.tolist(), "se": np.sqrt(np.diag(np.linalg.inv(h))).tolist(),
                      "iterations": iteration}
    if iteration >= MAX_ITER:
        raise RuntimeError(f"Newton-Raphson did not converge in {MAX_ITER} iterations")
    return beta, None


def aggregate(args, round, replies, state):
    if round == 0:
        # The number of terms is the sites' business: they start from zeros.
        return "request", {"beta": None}, None
    t = total(replies)
    g, h = np.array(t["g"]), np.array(t["h"])
    beta = np.array(state["beta"]) if state else np.zeros(len(g))
    beta, done = newton(beta, g, h, round)
    if done:
        done["loglik"] = t["ll"]
        return "result", done
    return "request", {"beta": beta.tolist()}, {"beta": beta.tolist()}


def pooled(args, data):
    x, y = design(args, data)
    beta = np.zeros(x.shape[1])
    for iteration in range(1, MAX_ITER + 1):
        g, h, ll = stats(x, y, beta)
        beta, done = newton(beta, g, h, iteration)
        if done:
            done["loglik"] = ll
            return done
    raise RuntimeError("unreachable")


if __name__ == "__main__":
    run(local, aggregate, pooled, options)
