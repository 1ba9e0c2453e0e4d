"""fedsim's external-algorithm protocol (version 1), so that an algorithm is three functions.

Each call is one process: it reads one JSON object on stdin, writes one on stdout, and anything
on stderr goes to the log. The role is the last command-line argument; a script's own options
(e.g. --columns a,b) come before it.

- aggregate, at the coordinator, in the scenario's directory (its `workdir`):
      in  {"round": r, "replies": [one per site, in site order], "state": <its state or null>}
      out {"request": <any JSON>, "state": <any JSON>}   another round
       or {"result": {"name": number | [numbers] | [[numbers]], ...}}   done
  Round 0 has "replies": [] and "state": null; it makes the first request.
- local, at each site, in the site's directory (where the shipped `files` sit at their paths);
  FEDSIM_DATA (the site's CSV, header row, ","), FEDSIM_SITE, FEDSIM_ROUND:
      in  {"round": r, "request": <the request>}      out  the reply (a JSON object)
- pooled, once, FEDSIM_DATA = every site's rows in one CSV:
      in  {}      out {"result": {...}}   the same names and shapes as the federated result
- Secure aggregation: a reply {"sum": {...}} (that key only; numbers, lists, lists of lists)
  is masked, and the aggregate receives ONE reply, [{"sum": <element-wise total over sites>}].
  `total(replies)` adds up the "sum" parts of whatever replies come, so one aggregate serves
  both ways.
- A non-zero exit fails the run; the end of stderr appears in fedsim's error.
- With `persistent = true` in the scenario, local and aggregate are each one process for the
  whole analysis (FEDSIM_PERSISTENT=1, no FEDSIM_ROUND): each call is one line of JSON in and
  one line out, until stdin ends. `run` handles both ways; state kept in Python variables then
  lives on between rounds (the aggregate's "state" still travels, and is what to rely on).

With this module a script is

    def local(args, r, request, data, site):     return {"sum": {...}}
    def aggregate(args, r, replies, state):      return {"request": ..., "state": ...}
                                                 # or {"result": {...}}
    def pooled(args, data):                      return {...}   # the result itself
    run(local, aggregate, pooled, options=lambda parser: parser.add_argument("--columns"))

`run` exits 1 with "ROLE: message" on stderr when a function raises, 2 on a bad command line.
"""

import argparse
import csv
import json
import os
import sys

ROLES = ("local", "aggregate", "pooled")


def header(path):
    """The column names of a CSV."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def read_csv(path, columns=None):
    """The named columns (default: all) of a CSV with a header, as a list of rows of floats.

    Nothing is skipped: an empty or non-numeric cell in a used column, or a short row, is an
    error naming the file, the line and the column."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        names = next(reader, [])
        columns = list(columns or names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (it has: {', '.join(names)})")
        idx = [names.index(c) for c in columns]
        rows = []
        for row in reader:
            line = reader.line_num
            if len(row) != len(names):
                raise ValueError(f"{path}, line {line}: {len(row)} fields, the header has {len(names)}")
            values = []
            for c, i in zip(columns, idx):
                cell = row[i].strip()
                if not cell:
                    raise ValueError(f"{path}, line {line}: column {c!r} is empty")
                try:
                    values.append(float(cell))
                except ValueError:
                    raise ValueError(f"{path}, line {line}: column {c!r} is not a number: {cell!r}") from None
            rows.append(values)
    return rows


def add(a, b):
    """Element-wise sum of two numbers, lists or nested lists of the same shape."""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise ValueError(f"cannot add lists of lengths {len(a)} and {len(b)}")
        return [add(x, y) for x, y in zip(a, b)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    raise ValueError(f"cannot add {type(a).__name__} and {type(b).__name__}")


def total(replies):
    """The "sum" objects of the replies added key by key: one reply per site, or the single
    already-summed reply under secure aggregation."""
    if not replies:
        raise ValueError("no replies to add up")
    out = None
    for r in replies:
        s = r["sum"]
        if out is None:
            out = dict(s)
        elif set(s) != set(out):
            raise ValueError(f"replies differ in their keys: {sorted(out)} and {sorted(s)}")
        else:
            out = {k: add(out[k], s[k]) for k in out}
    return out


def data_path():
    path = os.environ.get("FEDSIM_DATA")
    if not path:
        raise ValueError("FEDSIM_DATA is not set: the path of the data file, set by fedsim")
    return path


def answer(role, args, message, local, aggregate, pooled):
    """One call's answer as a line of strict JSON (a NaN or an infinity is an error here)."""
    if role == "aggregate":
        out = aggregate(args, message["round"], message["replies"], message["state"])
        if not isinstance(out, dict) or not ("result" in out or "request" in out):
            raise ValueError('aggregate must return {"request": ..., "state": ...} or {"result": {...}}')
    elif role == "local":
        out = local(args, message["round"], message["request"], data_path(),
                    os.environ.get("FEDSIM_SITE", ""))
    else:
        out = {"result": pooled(args, data_path())}
    try:
        return json.dumps(out, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"{e}: the answer holds a NaN or an infinity") from None


def run(local, aggregate, pooled, options=None):
    """Parse the command line (`options(parser)` may add the script's own arguments; the role
    is the last), read stdin, call the role's function with the parsed arguments first, and
    write its answer to stdout; with FEDSIM_PERSISTENT, once per line until stdin ends."""
    parser = argparse.ArgumentParser()
    if options:
        options(parser)
    parser.add_argument("role", choices=ROLES)
    args = parser.parse_args()
    persistent = os.environ.get("FEDSIM_PERSISTENT") == "1" and args.role != "pooled"
    try:
        if persistent:
            for line in sys.stdin:
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"a line of stdin is not one JSON object: {e}") from None
                sys.stdout.write(answer(args.role, args, message, local, aggregate, pooled) + "\n")
                sys.stdout.flush()
            return
        try:
            message = json.load(sys.stdin)
        except ValueError as e:
            raise ValueError(f"stdin is not one JSON object: {e}") from None
        text = answer(args.role, args, message, local, aggregate, pooled)
    except Exception as e:  # the message reaches fedsim's error through stderr
        what = f"missing {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__
        print(f"{args.role}: {what}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(text + "\n")
