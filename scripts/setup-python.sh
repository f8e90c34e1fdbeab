#!/usr/bin/env bash
# Creates the Python virtual environment with the independent clients the
# integration tests drive (the deltalake reader, pyarrow, the ADBC Flight
# SQL driver, confluent-kafka), outside the checkout so it is reused across
# clones; a changed tests/python/requirements.txt reinstalls. Prints the
# interpreter's path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FIBERS_VENV:-$HOME/.cache/datafibers/venv}"
requirements="$here/tests/python/requirements.txt"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi
echo "$venv/bin/python"
