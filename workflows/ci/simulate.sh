#!/bin/sh
# CI simulation job: run each scenario, keep its report, run directory and JUnit file under OUT,
# and exit non-zero when any run did not succeed (a comparison failed, a site was lost, bad
# input). The CI examples next to this script call only this script.
#
#   workflows/ci/simulate.sh OUT SCENARIO.toml [SCENARIO.toml ...]
#
# Uses `fedsim` from PATH (or $FEDSIM). Exit: 0 all succeeded; 1 some did not; 2 usage.
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 OUT SCENARIO.toml [SCENARIO.toml ...]" >&2
    exit 2
fi
fedsim=${FEDSIM:-fedsim}
out=$1
shift
mkdir -p "$out/junit" "$out/runs"
worst=0
for scenario in "$@"; do
    name=$(basename "$scenario" .toml)
    dir="$out/runs/$name"
    rm -rf "$dir"
    "$fedsim" run -q -c "$scenario" --out "$dir" --junit "$out/junit/$name.xml"
    code=$?
    if [ "$code" -eq 0 ]; then
        echo "ok      $name"
    else
        echo "FAILED  $name (exit $code; see $dir/report.html)"
        worst=1
    fi
done
exit $worst
