"""What the Flower scripts of `bench/` share: the generated rows, the pooled Newton fit they are
checked against, and the memory of a process tree. numpy only; flwr is not needed here.

`fedsim bench --sites` writes this file beside `flower_message.py` in its output folder.
"""

import functools
import os
import threading

import numpy as np


@functools.lru_cache(maxsize=4)
def data(rows, cols, seed=11):
    """x ~ N(0, 1); y ~ Bernoulli(sigmoid(0.5 + x . beta)), beta = 1, -1/2 (fedsim's generator).

    Returns the design (an intercept column first) and y. Cached: a client process generates
    the rows once, not once a round. The arrays are read-only, as they are shared.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols))
    beta = np.array([(1.0 if j % 2 == 0 else -1.0) / (j + 1) for j in range(cols)])
    eta = 0.5 + x @ beta
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    design = np.hstack([np.ones((rows, 1)), x])
    design.flags.writeable = False
    y.flags.writeable = False
    return design, y


def partition(rows, sites, i, cols=2):
    """Site `i`'s rows of `sites` (uniform split, in order)."""
    x, y = data(rows, cols)
    part = np.array_split(np.arange(rows), sites)[i]
    return x[part], y[part]


def gradient_and_information(x, y, beta):
    """The score and the information matrix of a logistic model at `beta`, on these rows."""
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    return x.T @ (y - p), (x * (p * (1 - p))[:, None]).T @ x


def pooled_newton(x, y, tol=1e-12, max_iter=50):
    """The centralised fit: Newton on all rows together, to convergence."""
    beta = np.zeros(x.shape[1])
    for _ in range(max_iter):
        grad, info = gradient_and_information(x, y, beta)
        step = np.linalg.solve(info, grad)
        beta = beta + step
        if np.max(np.abs(step)) <= tol * max(1.0, np.max(np.abs(beta))):
            break
    return beta


def tree_pss_kib(root):
    """Summed Pss of `root` and its descendants (from /proc)."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


class PeakPss:
    """The peak of `tree_pss_kib(this process)`, sampled on a thread while a `with` block runs."""

    def __init__(self, every=0.5):
        self.every, self.peak_kib = every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, tree_pss_kib(os.getpid()))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
