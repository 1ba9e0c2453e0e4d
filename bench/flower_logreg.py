#!/usr/bin/env python3
"""The workload of `fedsim bench --sites N --workload logistic`, in Flower's simulation engine.

Federated logistic regression by Newton steps on 20 000 generated rows (2 features and an
intercept) split uniformly over N clients: each client returns the gradient and information
matrix of its rows, the server sums them and takes the Newton step, as fedsim does. Prints one
line per site count: whole run, mean and max round time, and the peak PSS of this process and
every process it started (Ray's workers included), sampled every 0.5 s.

    pip install "flwr[simulation]"
    python3 bench/flower_logreg.py --sites 10,100,1000 [--rows 20000] [--rounds 8]

Skips (exit 0, says so) when flwr is not installed.
"""

import argparse
import os
import sys
import threading
import time

try:
    import numpy as np
    import flwr
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, FitIns, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import Strategy
    from flwr.simulation import run_simulation
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIPPED: flwr is not installed ({e}); pip install 'flwr[simulation]'")
    sys.exit(0)

# Beside this script: the same rows as flower_message.py.
from flower_common import data, tree_pss_kib  # noqa: E402


class NewtonClient(NumPyClient):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def fit(self, parameters, config):
        beta = parameters[0]
        p = 1.0 / (1.0 + np.exp(-(self.x @ beta)))
        grad = self.x.T @ (self.y - p)
        info = (self.x * (p * (1 - p))[:, None]).T @ self.x
        return [grad, info], len(self.y), {}


class Newton(Strategy):
    """Sum every client's gradient and information; one Newton step per round."""

    def __init__(self, dim, sites):
        self.beta = np.zeros(dim)
        self.sites = sites
        self.round_secs = []
        self._t = None

    def initialize_parameters(self, client_manager):
        return ndarrays_to_parameters([self.beta])

    def configure_fit(self, server_round, parameters, client_manager):
        clients = client_manager.sample(num_clients=self.sites, min_num_clients=self.sites)
        self._t = time.perf_counter()
        ins = FitIns(ndarrays_to_parameters([self.beta]), {})
        return [(c, ins) for c in clients]

    def aggregate_fit(self, server_round, results, failures):
        if failures:
            raise RuntimeError(f"{len(failures)} clients failed")
        grad = sum(parameters_to_ndarrays(r.parameters)[0] for _, r in results)
        info = sum(parameters_to_ndarrays(r.parameters)[1] for _, r in results)
        self.beta = self.beta + np.linalg.solve(info, grad)
        self.round_secs.append(time.perf_counter() - self._t)
        return ndarrays_to_parameters([self.beta]), {}

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


def one(sites, rows, rounds):
    x, y = data(rows, 2)
    parts = np.array_split(np.arange(rows), sites)

    def client_fn(context: Context):
        i = int(context.node_config["partition-id"])
        return NewtonClient(x[parts[i]], y[parts[i]]).to_client()

    strategy = Newton(x.shape[1], sites)

    def server_fn(context: Context):
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_pss_kib(os.getpid()))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=sites,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    whole = time.perf_counter() - t
    stop.set()
    sampler.join()
    r = strategy.round_secs
    return whole, sum(r) / max(len(r), 1), max(r, default=0.0), peak[0] / 1024, strategy.beta


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", default="10,100")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=8)
    a = p.parse_args()
    print(f"flwr {flwr.__version__}, {os.cpu_count()} cores, {a.rows} rows, {a.rounds} Newton rounds")
    print(f"{'sites':>6} {'run s':>8} {'mean rnd s':>11} {'max rnd s':>10} {'total MiB':>10}  coefficients")
    for n in [int(s) for s in a.sites.split(",")]:
        whole, mean, most, mib, beta = one(n, a.rows, a.rounds)
        print(f"{n:>6} {whole:>8.2f} {mean:>11.3f} {most:>10.3f} {mib:>10.0f}  {np.round(beta, 6)}", flush=True)


if __name__ == "__main__":
    main()
