"""The coordinator's side: FedAvg over every site for `num-server-rounds` rounds, each round's
weighted mean of the sites' statistics turned into a Newton step. The final coefficients and each
round's end go to `result.json` in `result-dir` (fedsim's convention: `{"result": {name: number},
"rounds": [seconds from the strategy's start to each round's end]}`)."""

import json
import os
import time

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedsim_logreg.task import columns

app = ServerApp()


class NewtonAvg(FedAvg):
    """FedAvg whose aggregate (the pooled mean gradient and information) becomes a Newton step."""

    def __init__(self, w, **kwargs):
        super().__init__(**kwargs)
        self.w = w

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is None:
            return None, metrics
        g, h = arrays.to_numpy_ndarrays()
        self.w = self.w + np.linalg.solve(h, g)
        return ArrayRecord([self.w]), metrics


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    names = columns(cfg)
    nodes = int(cfg["min-nodes"])
    started = time.monotonic()
    rounds = []

    def at_round_end(server_round, arrays):
        # Called before round 1 (the initial arrays) and after every round's aggregate.
        if server_round > 0:
            rounds.append(time.monotonic() - started)
        return None

    w0 = np.zeros(len(names))
    strategy = NewtonAvg(
        w0,
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_evaluate_nodes=0,
        min_available_nodes=nodes,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([w0]),
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        evaluate_fn=at_round_end,
    )
    w = result.arrays.to_numpy_ndarrays()[0]
    out = str(cfg["result-dir"])
    if out:
        doc = {"result": {f"coef_{n}": float(v) for n, v in zip(names, w)}, "rounds": rounds}
        tmp = os.path.join(out, "result.json.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, os.path.join(out, "result.json"))
