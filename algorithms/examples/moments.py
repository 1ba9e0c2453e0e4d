"""Federated column means and covariance matrix (ddof 1) in two rounds, standard library only.

Round 1: each site sends its row count and column sums; the aggregate computes the means.
Round 2: each site sends the cross products of its rows centred at those means; the aggregate
divides their total by n - 1. Every sum over rows is math.fsum (correctly rounded), so the
federated and pooled results differ only in how the sites' few partial totals round. Both
replies are {"sum": ...}, so secure aggregation masks them. pooled does the same two passes
over the pooled file. Result: {"n", "mean", "cov"}; with --columns the mean and covariance are
labelled with the column names (fedsim then reports cov[bmi,bp] rather than cov[2,3]).

    python3 moments.py [--columns a,b,c] local|aggregate|pooled     (default: every column)
"""

import sys
from math import fsum
from operator import mul

sys.dont_write_bytecode = True  # no __pycache__ in the scenario's or the sites' directories

from fedsim_protocol import header, read_csv, run, total  # noqa: E402


def options(parser):
    parser.add_argument("--columns", help="comma-separated columns (default: all)")


def load(args, data):
    columns = args.columns.split(",") if args.columns else header(data)
    return len(columns), read_csv(data, columns)


def sums(rows, d):
    """Column sums, each correctly rounded (math.fsum)."""
    cols = list(zip(*rows)) or [()] * d
    return [fsum(c) for c in cols]


def cross(rows, mean):
    """sum over rows of (x - mean)(x - mean)', each entry correctly rounded (math.fsum); the
    upper triangle computed and mirrored, so the matrix is exactly symmetric."""
    d = len(mean)
    cols = [[v - m for v in c] for c, m in zip(zip(*rows), mean)] or [[]] * d
    c = [[0.0] * d for _ in range(d)]
    for i in range(d):
        for j in range(i, d):
            c[i][j] = c[j][i] = fsum(map(mul, cols[i], cols[j]))
    return c


def covariance(n, mean, c, columns):
    """The result; labelled with the columns when --columns names them (the aggregate sees no
    data, so it knows the names only from there), else fedsim numbers them mean[0], cov[0,1]."""
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 rows, there are {n}")
    cov = [[v / (n - 1) for v in row] for row in c]
    if not columns:
        return {"n": n, "mean": mean, "cov": cov}
    names = columns.split(",")
    return {
        "n": n,
        "mean": {"labels": names, "values": mean},
        "cov": {"labels": names, "values": cov},
    }


def local(args, r, request, data, site):
    d, rows = load(args, data)
    if request["step"] == "sums":
        return {"sum": {"n": len(rows), "s": sums(rows, d)}}
    return {"sum": {"c": cross(rows, request["mean"])}}


def aggregate(args, r, replies, state):
    if r == 0:
        return {"request": {"step": "sums"}, "state": None}
    t = total(replies)
    if state is None:
        # A count: exact even when it comes back from secure aggregation as a float.
        n = int(round(t["n"]))
        if n == 0:
            raise ValueError("the sites hold no rows")
        mean = [s / n for s in t["s"]]
        return {"request": {"step": "cross", "mean": mean}, "state": {"n": n, "mean": mean}}
    return {"result": covariance(state["n"], state["mean"], t["c"], args.columns)}


def pooled(args, data):
    d, rows = load(args, data)
    n = len(rows)
    if n == 0:
        raise ValueError(f"{data} holds no rows")
    mean = [s / n for s in sums(rows, d)]
    return covariance(n, mean, cross(rows, mean), args.columns)


if __name__ == "__main__":
    run(local, aggregate, pooled, options)
