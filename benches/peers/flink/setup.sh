#!/usr/bin/env bash
# Creates the Python virtual environment with Apache Flink (PyPI's
# `apache-flink`, which ships Flink's jars) for the side-by-side benches,
# outside the checkout so it is reused across clones. Needs Java 17 on the
# PATH to run Flink, not to install it. Prints the interpreter's path.
set -euo pipefail
venv="${FIBERS_FLINK_VENV:-$HOME/.cache/datafibers/flink-venv}"
version="2.3.0"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import pyflink.version as v, sys; sys.exit(v.__version__ != '$version')" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "apache-flink==$version" >&2
fi
echo "$venv/bin/python"
