#!/usr/bin/env bash
# Apache Flink and DataFibers side by side on the same Nexmark events: a
# benchmark run by hand (not part of .ci/run). Installs PyFlink into a
# cached venv (setup.sh), builds fibers in the bench profile, then runs
# compare.py, which writes the events, checks that both engines give the
# same rows, times both and prints the table that BENCHMARKS.md shows.
#
#   benches/peers/flink/run.sh                          # 5M events, q0 q1 q2 q5 q7 q8, 1 round
#   benches/peers/flink/run.sh --events 1000000 --runs 2 --queries q0,q5
#
# Options (compare.py's): --events N (default 5000000), --runs R (timed
# rounds, the best kept; default 1), --queries q0,q1,... (default all six),
# --work DIR (keep the events and results there), --no-check (skip the
# comparison of rows).
#
# Needs Java 17 on the PATH (Flink runs on it) and about 3 GiB of free disk
# for 5M events; CARGO_TARGET_DIR is honoured. See README.md beside this.
set -euo pipefail
case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
python="$("$here/setup.sh")"
target="${CARGO_TARGET_DIR:-$repo/target}"
# Building a bench builds the fibers binary in the bench profile (release
# settings) with the features the benches resolve, so this shares its
# build with `cargo bench` rather than rebuilding every dependency as
# `cargo build --release` would (cargo resolves features without the
# dev-dependencies there).
(cd "$repo" && cargo bench --no-run --bench ingest >&2)
exec "$python" "$here/compare.py" --fibers "$target/release/fibers" --python "$python" "$@"
