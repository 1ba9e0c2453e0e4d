#!/usr/bin/env python3
"""The pooled counterpart of the example App: the logistic regression's maximum-likelihood fit
on the pooled rows (Newton to convergence). fedsim runs it like the external protocol's
`pooled`: the pooled data file's path in FEDSIM_DATA, `{}` on stdin, `{"result": {...}}` out.
The run config (features, target) is read from the App's pyproject.toml beside it."""

import json
import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fedsim_logreg.task import columns, load, newton  # noqa: E402

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyproject.toml"), "rb") as f:
    cfg = tomllib.load(f)["tool"]["flwr"]["app"]["config"]
x, y = load(os.environ["FEDSIM_DATA"], cfg)
w = newton(x, y, 50)
json.dump({"result": {f"coef_{n}": float(v) for n, v in zip(columns(cfg), w)}}, sys.stdout)
