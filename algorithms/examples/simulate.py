"""Play fedsim's part for trying a protocol script without fedsim: split a CSV into row blocks,
run the aggregate and local steps round by round, then the pooled step, and print both results.

    python3 simulate.py data.csv 3 python3 moments.py            [--secure]
    python3 simulate.py spector.csv 2 python3 logistic_newton.py --target GRADE

The role is appended to the command, as fedsim does. With --secure the aggregate gets one reply
holding the sites' summed "sum" parts, as under secure aggregation.
"""

import json
import os
import subprocess
import sys
import tempfile

from fedsim_protocol import add


def call(cmd, role, message, env=None):
    p = subprocess.run(cmd + [role], input=json.dumps(message), capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        sys.exit(f"{role} exited with {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def main():
    args = sys.argv[1:]
    secure = "--secure" in args
    args = [a for a in args if a != "--secure"]
    data, sites, cmd = args[0], int(args[1]), args[2:]
    with open(data) as f:
        header, *rows = f.read().splitlines()
    tmp = tempfile.mkdtemp()
    paths = []
    for i in range(sites):
        p = os.path.join(tmp, f"site-{i + 1}.csv")
        with open(p, "w") as f:
            f.write("\n".join([header] + rows[i::sites]) + "\n")
        paths.append(p)
    out = call(cmd, "aggregate", {"round": 0, "replies": [], "state": None})
    r = 0
    while "result" not in out:
        r += 1
        replies = [call(cmd, "local", {"round": r, "request": out["request"]},
                        {"FEDSIM_DATA": p, "FEDSIM_SITE": f"site-{i + 1}", "FEDSIM_ROUND": str(r)})
                   for i, p in enumerate(paths)]
        if secure:
            s = replies[0]["sum"]
            for rep in replies[1:]:
                s = {k: add(s[k], rep["sum"][k]) for k in s}
            replies = [{"sum": s}]
        out = call(cmd, "aggregate", {"round": r, "replies": replies, "state": out.get("state")})
    pooled = call(cmd, "pooled", {}, {"FEDSIM_DATA": data})
    print(json.dumps({"rounds": r, "federated": out["result"], "pooled": pooled["result"]}, indent=1))


if __name__ == "__main__":
    main()
