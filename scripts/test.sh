#!/usr/bin/env bash
# Runs every check and test of the project: formatting, clippy, unit tests,
# the sqllogictest suite and the integration tests (which read archives back
# with the Python deltalake package, installed by scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FIBERS_PYTHON="$(scripts/setup-python.sh)"
export FIBERS_PYTHON

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
