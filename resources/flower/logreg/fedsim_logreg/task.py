"""The model, shared by the ClientApp, the ServerApp and the pooled command."""

import csv
import os

import numpy as np


def columns(run_config):
    """The model's terms: an intercept, then the run config's features."""
    return ["const"] + str(run_config["features"]).split()


def load(path, run_config):
    """A site's rows: (X with an intercept column, y), read from its CSV file."""
    names = str(run_config["features"]).split()
    target = str(run_config["target"])
    xs, ys = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            xs.append([1.0] + [float(row[n]) for n in names])
            ys.append(float(row[target]))
    return np.asarray(xs).reshape(-1, len(names) + 1), np.asarray(ys)


def data_path(context):
    """Where a ClientApp's rows are: the SuperNode's `data-path` (deployment), or its partition
    in `partition-dir` (Flower's simulation, where a node knows only its `partition-id`)."""
    node = context.node_config
    if "data-path" in node:
        return str(node["data-path"])
    return os.path.join(
        str(context.run_config["partition-dir"]), f"partition-{int(node['partition-id'])}.csv"
    )


def statistics(x, y, w):
    """The mean gradient and mean information matrix of the log-likelihood over these rows."""
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    n = max(len(y), 1)
    return x.T @ (y - p) / n, (x * (p * (1.0 - p))[:, None]).T @ x / n


def newton(x, y, steps):
    """The maximum-likelihood fit by `steps` Newton steps from zero (the pooled command's)."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        g, h = statistics(x, y, w)
        w = w + np.linalg.solve(h, g)
    return w
