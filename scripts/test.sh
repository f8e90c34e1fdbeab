#!/usr/bin/env bash
# Runs every check and test of the project: formatting, clippy, unit tests,
# the sqllogictest suite and the integration tests (which read archives back
# with the Python deltalake package and drive fibers serve with Python Flight
# SQL clients, installed by scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FIBERS_PYTHON="$(scripts/setup-python.sh)"
export FIBERS_PYTHON

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Libraries, binaries and test targets (there are no doc tests; benches
# run with `cargo bench`). The last line totals every runner's counts.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
