"""fedsim's external-algorithm protocol (version 1), so that an algorithm is three functions.

Each call is one process: one JSON object on stdin, one on stdout, messages on stderr.

- aggregate(round, replies, state) -> ("request", request, state) or ("result", {name: value})
  runs at the coordinator; round 0 has no replies and a null state.
- local(round, request, data_path, site) -> reply
  runs at a site, in its own directory; the data is a CSV with a header.
- pooled(data_path) -> {name: value}
  runs once on the pooled data; the same names and shapes as the federated result.

A reply of the form {"sum": {...}} works with secure aggregation: the coordinator then hands the
aggregate one reply holding the element-wise total over the sites. `total(replies)` sums the
"sum" parts either way.

    run(local=..., aggregate=..., pooled=...)   # in a script, with its role as last argument
"""

import argparse
import csv
import json
import os
import sys


def read_csv(path, columns=None):
    """The named columns (default: all) of a CSV as (names, rows of floats).

    An empty or non-numeric cell in a used column is an error naming its line."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        names = columns or header
        missing = [c for c in names if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)})")
        idx = [header.index(c) for c in names]
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append([float(row[i]) for i in idx])
            except (ValueError, IndexError):
                raise ValueError(f"{path}, line {line}: expected numbers in {', '.join(names)}")
    return names, rows


def add(a, b):
    """Element-wise sum of numbers, lists or nested lists of the same shape."""
    if isinstance(a, list):
        return [add(x, y) for x, y in zip(a, b)]
    return a + b


def total(replies):
    """The "sum" parts of the replies, added key by key (one reply under secure aggregation)."""
    out = None
    for r in replies:
        s = r["sum"]
        out = s if out is None else {k: add(out[k], s[k]) for k in out}
    return out


def run(local, aggregate, pooled, options=None):
    """Parse argv (the role last; `options(parser)` may add the script's own), read the input,
    dispatch to the role's function and write its answer. An exception becomes a message on
    stderr and exit code 1."""
    parser = argparse.ArgumentParser()
    if options:
        options(parser)
    parser.add_argument("role", choices=["local", "aggregate", "pooled"])
    args = parser.parse_args()
    message = json.load(sys.stdin)
    try:
        if args.role == "aggregate":
            kind, *rest = aggregate(args, message["round"], message["replies"], message["state"])
            if kind == "result":
                answer = {"result": rest[0]}
            else:
                answer = {"request": rest[0], "state": rest[1]}
        elif args.role == "local":
            answer = local(
                args,
                message["round"],
                message["request"],
                os.environ["FEDSIM_DATA"],
                os.environ.get("FEDSIM_SITE", ""),
            )
        else:
            answer = {"result": pooled(args, os.environ["FEDSIM_DATA"])}
    except Exception as e:  # the message reaches fedsim's error through stderr
        print(f"{args.role}: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump(answer, sys.stdout)
