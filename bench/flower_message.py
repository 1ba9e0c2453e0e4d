#!/usr/bin/env python3
"""The workload of `fedsim bench --sites N --workload logistic`, through Flower's Message API.

Federated logistic regression by Newton steps on 20 000 generated rows (2 features and an
intercept; the rows of `flower_logreg.py`, from `flower_common.py`) split uniformly over N
clients, in Flower's simulation engine. The ServerApp (`@app.main()`) sends the coefficients to
every node in a Message; each ClientApp (`@app.train()`) replies with the gradient and the
information matrix of its rows in an ArrayRecord (and its row count in a MetricRecord); the
ServerApp sums them and takes the Newton step. The final coefficients are checked against a
pooled Newton fit of the same rows (numpy): a difference above --tolerance fails (exit 1).

Prints one line per site count: whole run, from its start to the end of the first round (Ray's
start and the clients' first load included), mean and max round time, and the peak PSS of this
process and every process it started (Ray's included), sampled every 0.25 s; then one line
`FLOWER_JSON {...}` with the same figures for `fedsim bench --sites` to read.

    pip install "flwr[simulation]==1.42.*" numpy
    python3 bench/flower_message.py --sites 10,100,1000 [--rows 20000] [--rounds 8]

Skips (exit 0, says so) when flwr is not installed.
"""

import argparse
import json
import os
import sys
import time

# No telemetry or usage reports (the machine may have no internet); set before flwr is imported.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

try:
    import numpy as np
    import flwr
    from flwr.app import (
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MessageType,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIPPED: flwr is not installed ({e}); pip install 'flwr[simulation]' numpy")
    sys.exit(0)

# Beside this script: the rows, the pooled fit and the memory sampler shared with flower_logreg.py.
from flower_common import PeakPss, data, gradient_and_information, partition, pooled_newton  # noqa: E402

COLS = 2
MARK = "FLOWER_JSON "

client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    """This node's gradient and information at the coefficients it was sent."""
    config = msg.content["config"]
    i = int(context.node_config["partition-id"])
    n = int(context.node_config["num-partitions"])
    x, y = partition(int(config["rows"]), n, i, COLS)
    beta = msg.content["beta"].to_numpy_ndarrays()[0]
    grad, info = gradient_and_information(x, y, beta)
    content = RecordDict(
        {
            "newton": ArrayRecord([grad, info]),
            "metrics": MetricRecord({"num-examples": len(y)}),
        }
    )
    return Message(content, reply_to=msg)


def server(sites, rows, rounds, result):
    """A ServerApp that runs `rounds` Newton steps over every node and leaves its figures in
    `result` (it runs in this process, on a thread of the simulation)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = list(grid.get_node_ids())
        while len(nodes) < sites:
            time.sleep(0.1)
            nodes = list(grid.get_node_ids())
        beta = np.zeros(COLS + 1)
        for r in range(1, rounds + 1):
            t = time.perf_counter()
            messages = [
                Message(
                    RecordDict({"beta": ArrayRecord([beta]), "config": ConfigRecord({"rows": rows})}),
                    dst_node_id=node,
                    message_type=MessageType.TRAIN,
                    group_id=str(r),
                )
                for node in nodes
            ]
            replies = list(grid.send_and_receive(messages))
            failed = [m for m in replies if m.has_error()]
            if failed or len(replies) != len(nodes):
                raise RuntimeError(
                    f"round {r}: {len(replies)} replies of {len(nodes)}, {len(failed)} errors"
                    + (f" (first: {failed[0].error.reason})" if failed else "")
                )
            grad = np.zeros(COLS + 1)
            info = np.zeros((COLS + 1, COLS + 1))
            examples = 0
            for m in replies:
                g, h = m.content["newton"].to_numpy_ndarrays()
                grad += g
                info += h
                examples += int(m.content["metrics"]["num-examples"])
            if examples != rows:
                raise RuntimeError(f"round {r}: the clients hold {examples} rows, not {rows}")
            beta = beta + np.linalg.solve(info, grad)
            result["round_secs"].append(time.perf_counter() - t)
            if r == 1:
                result["first_round_secs"] = time.perf_counter() - result["start"]
        result["beta"] = beta

    return app


def one(sites, rows, rounds, tolerance):
    result = {"round_secs": [], "beta": None, "first_round_secs": None}
    with PeakPss(every=0.25) as pss:
        t = result["start"] = time.perf_counter()
        run_simulation(
            server_app=server(sites, rows, rounds, result),
            client_app=client,
            num_supernodes=sites,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
        whole = time.perf_counter() - t
    if result["beta"] is None or len(result["round_secs"]) != rounds:
        raise RuntimeError(
            f"{sites} sites: the ServerApp finished {len(result['round_secs'])} of {rounds} rounds"
        )
    x, y = data(rows, COLS)
    pooled = pooled_newton(x, y)
    beta = result["beta"]
    diff = float(np.max(np.abs(beta - pooled)))
    r = result["round_secs"]
    return {
        "sites": sites,
        "run_secs": whole,
        "first_round_secs": result["first_round_secs"],
        "rounds": len(r),
        "mean_round_secs": sum(r) / len(r),
        "max_round_secs": max(r),
        "round_secs": r,
        "total_pss_mib": pss.peak_kib / 1024,
        "coefficients": beta.tolist(),
        "pooled_coefficients": pooled.tolist(),
        "max_diff": diff,
        "agrees": bool(diff <= tolerance),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", default="10,100")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-6,
        help="largest coefficient difference from the pooled fit that still agrees",
    )
    a = p.parse_args()
    counts = [int(s) for s in a.sites.split(",") if s.strip()]
    if not counts or min(counts) < 1 or a.rows < max(counts) or a.rounds < 1:
        p.error("--sites needs counts >= 1, no more than --rows, and --rounds >= 1")
    print(
        f"flwr {flwr.__version__} (Message API), {os.cpu_count()} cores, {a.rows} rows,"
        f" {a.rounds} Newton rounds"
    )
    print(
        f"{'sites':>6} {'run s':>8} {'1st rnd s':>9} {'mean rnd s':>11} {'max rnd s':>10} {'total MiB':>10}"
        f" {'max diff':>9}  coefficients"
    )
    cases = []
    for n in counts:
        c = one(n, a.rows, a.rounds, a.tolerance)
        cases.append(c)
        print(
            f"{n:>6} {c['run_secs']:>8.2f} {c['first_round_secs']:>9.2f} {c['mean_round_secs']:>11.3f} {c['max_round_secs']:>10.3f}"
            f" {c['total_pss_mib']:>10.0f} {c['max_diff']:>9.1e}  {np.round(c['coefficients'], 6)}"
            + ("" if c["agrees"] else "  DISAGREES with the pooled fit"),
            flush=True,
        )
    report = {
        "flwr": flwr.__version__,
        "api": "message",
        "cores": os.cpu_count(),
        "rows": a.rows,
        "rounds": a.rounds,
        "tolerance": a.tolerance,
        "cases": cases,
    }
    print(MARK + json.dumps(report), flush=True)
    bad = [c["sites"] for c in cases if not c["agrees"]]
    if bad:
        print(
            f"FAILED: the coefficients with {bad} sites differ from the pooled fit by more than"
            f" {a.tolerance:g}",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
