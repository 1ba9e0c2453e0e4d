"""Play fedsim's part on one machine, to try a protocol script without fedsim.

Splits a CSV into --sites contiguous row blocks (temporary files), runs the aggregate's round
0, then each round every site's local step and the aggregate until a result, then the pooled
step on the whole file; prints both results and the largest relative difference between them.
The role is appended to the command, as fedsim does; every step runs in the current directory.

    python3 simulate.py --sites 3 ../../test_data/diabetes.csv python3 moments.py
    python3 simulate.py --sites 2 --secure ../../test_data/spector.csv \
        python3 logistic_newton.py --target GRADE

--secure hands the aggregate one reply holding the element-wise total of the sites' "sum"
parts (as floats), as fedsim does under secure aggregation, and refuses a reply that is not
{"sum": {...}} only. --tolerance T exits 1 when the difference exceeds T. The difference is
fedsim's: |fed - pooled| / max(|pooled|, sqrt(eps) * the largest |pooled| of that name).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True

from fedsim_protocol import add  # noqa: E402

EPS = 2.0 ** -52


def call(cmd, role, message, env):
    p = subprocess.run(cmd + [role], input=json.dumps(message), capture_output=True, text=True,
                       env={**os.environ, **env})
    sys.stderr.write("".join(f"  [{role} {env.get('FEDSIM_SITE', '')}] {line}\n"
                             for line in p.stderr.splitlines()))
    if p.returncode != 0:
        sys.exit(f"{role} step exited with code {p.returncode}")
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        sys.exit(f"{role} step wrote invalid JSON ({e}): {p.stdout[:80]!r}")


def floats(v):
    """A "sum" value as secure aggregation hands it back: every number a float."""
    if isinstance(v, dict):
        return {k: floats(x) for k, x in v.items()}
    if isinstance(v, list):
        return [floats(x) for x in v]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"under secure aggregation a reply's sum holds numbers only, found {v!r}")
    return float(v)


def secure_total(replies):
    for r in replies:
        if not (isinstance(r, dict) and list(r) == ["sum"] and isinstance(r["sum"], dict)):
            sys.exit('under secure aggregation a reply must be {"sum": {...}} and nothing else')
    try:
        s = floats(replies[0]["sum"])
        for r in replies[1:]:
            t = floats(r["sum"])
            if set(t) != set(s):
                raise ValueError(f"sites sent different keys: {sorted(s)} and {sorted(t)}")
            s = {k: add(s[k], t[k]) for k in s}
    except ValueError as e:
        sys.exit(str(e))
    return [{"sum": s}]


def numbers(name, v):
    """(label, number) pairs of a named result, labelled as fedsim's report does: cov[bmi,bp] for
    a labelled result ({"labels": [...], "values": ...}), else 0-based positions: cov[0,1]."""
    labels = None
    if isinstance(v, dict):
        labels, v = v.get("labels"), v.get("values")
    if isinstance(v, list) and any(isinstance(x, list) for x in v):
        rows = cols = None
        if labels and isinstance(labels[0], list):
            rows, cols = labels
        elif labels:
            rows = cols = labels
        rows = rows or list(range(len(v)))
        cols = cols or list(range(len(v[0]) if v else 0))
        return [(f"{name}[{rows[i]},{cols[j]}]", x) for i, row in enumerate(v) for j, x in enumerate(row)]
    if isinstance(v, list):
        labels = labels or list(range(len(v)))
        return [(f"{name}[{labels[i]}]", x) for i, x in enumerate(v)]
    return [(name, v)]


def max_difference(fed, pooled):
    """fedsim's relative difference, the largest over every number of every name."""
    if set(fed) != set(pooled):
        sys.exit(f"the results' names differ: {sorted(fed)} and {sorted(pooled)}")
    worst, where = 0.0, "-"
    for name in sorted(fed):
        f, p = numbers(name, fed[name]), numbers(name, pooled[name])
        if [k for k, _ in f] != [k for k, _ in p]:
            sys.exit(f"result {name!r} has different shapes federated and pooled")
        top = max(abs(x) for _, x in p)
        for (label, a), (_, b) in zip(f, p):
            scale = max(abs(b), EPS ** 0.5 * top)
            d = abs(a - b) / scale if scale else abs(a - b)
            if d > worst:
                worst, where = d, label
    return worst, where


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=3)
    ap.add_argument("--secure", action="store_true")
    ap.add_argument("--max-rounds", type=int, default=100)
    ap.add_argument("--tolerance", type=float)
    ap.add_argument("data")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, without its role")
    a = ap.parse_args()
    if not a.cmd:
        ap.error("no command given")
    data = os.path.abspath(a.data)
    with open(data, newline="") as f:
        head, *rows = f.read().splitlines()
    if a.sites < 1 or a.sites > len(rows):
        ap.error(f"--sites must be between 1 and the {len(rows)} rows")
    tmp = tempfile.mkdtemp(prefix="fedsim-simulate-")
    try:
        paths = []
        for i in range(a.sites):
            block = rows[i * len(rows) // a.sites:(i + 1) * len(rows) // a.sites]
            paths.append(os.path.join(tmp, f"site-{i + 1}.csv"))
            with open(paths[-1], "w", newline="") as f:
                f.write("\n".join([head] + block) + "\n")
        out = call(a.cmd, "aggregate", {"round": 0, "replies": [], "state": None},
                   {"FEDSIM_ROUND": "0"})
        r = 0
        while "result" not in out:
            if "request" not in out:
                sys.exit('aggregate answered neither {"request", "state"} nor {"result"}')
            if r >= a.max_rounds:
                sys.exit(f"the aggregate asked for round {r + 1} but --max-rounds is {a.max_rounds}")
            r += 1
            replies = [call(a.cmd, "local", {"round": r, "request": out["request"]},
                            {"FEDSIM_DATA": p, "FEDSIM_SITE": f"site-{i + 1}", "FEDSIM_ROUND": str(r)})
                       for i, p in enumerate(paths)]
            if a.secure:
                replies = secure_total(replies)
            out = call(a.cmd, "aggregate", {"round": r, "replies": replies, "state": out.get("state")},
                       {"FEDSIM_ROUND": str(r)})
        pooled = call(a.cmd, "pooled", {}, {"FEDSIM_DATA": data})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "result" not in pooled:
        sys.exit('pooled answered without {"result": ...}')
    diff, where = max_difference(out["result"], pooled["result"])
    print(json.dumps({"rounds": r, "secure": a.secure, "federated": out["result"],
                      "pooled": pooled["result"]}))
    print(f"max relative difference: {diff:.3g} (at {where})")
    if a.tolerance is not None and not diff <= a.tolerance:
        sys.exit(f"above the tolerance {a.tolerance:g}")


if __name__ == "__main__":
    main()
