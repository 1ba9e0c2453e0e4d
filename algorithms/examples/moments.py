"""Federated column means and covariance (ddof 1) in two rounds, standard library only.

Round 1: each site sends its row count and column sums; the aggregate computes the means.
Round 2: each site sends the cross products of its rows centred at those means; the aggregate
divides by n - 1. Both replies are {"sum": ...}, so secure aggregation masks them.

    python3 moments.py [--columns a,b,c] local|aggregate|pooled
"""

from fedsim_protocol import read_csv, run, total


def options(p):
    p.add_argument("--columns", help="comma-separated columns (default: all)")


def columns(args):
    return args.columns.split(",") if args.columns else None


def sums(rows):
    d = len(rows[0]) if rows else 0
    return [sum(r[j] for r in rows) for j in range(d)]


def cross(rows, mean):
    d = len(mean)
    c = [[0.0] * d for _ in range(d)]
    for r in rows:
        x = [r[j] - mean[j] for j in range(d)]
        for i in range(d):
            xi = x[i]
            ci = c[i]
            for j in range(d):
                ci[j] += xi * x[j]
    return c


def local(args, round, request, data, site):
    _, rows = read_csv(data, columns(args))
    if request["step"] == "sums":
        return {"sum": {"n": len(rows), "s": sums(rows)}}
    return {"sum": {"c": cross(rows, request["mean"])}}


def aggregate(args, round, replies, state):
    if round == 0:
        return "request", {"step": "sums"}, None
    t = total(replies)
    if "s" in t:
        n = t["n"]
        mean = [s / n for s in t["s"]]
        return "request", {"step": "cross", "mean": mean}, {"n": n, "mean": mean}
    n = state["n"]
    cov = [[v / (n - 1) for v in row] for row in t["c"]]
    return "result", {"n": n, "mean": state["mean"], "cov": cov}


def pooled(args, data):
    _, rows = read_csv(data, columns(args))
    n = len(rows)
    mean = [s / n for s in sums(rows)]
    cov = [[v / (n - 1) for v in row] for row in cross(rows, mean)]
    return {"n": n, "mean": mean, "cov": cov}


if __name__ == "__main__":
    run(local, aggregate, pooled, options)
