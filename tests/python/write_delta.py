"""Write rows to a Delta table with the `deltalake` package, a writer
independent of DataFibers: reference data for lookup-join tests.

usage: write_delta.py PATH append|overwrite JSON

JSON is a list of objects with the same keys; every column is written as a
string, except integers, which are written as 64-bit integers.
"""

import json
import sys

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[2] not in ("append", "overwrite"):
        raise SystemExit(__doc__)
    path, mode, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if not rows:
        raise SystemExit("no rows to write")
    columns = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        kind = pa.int64() if all(isinstance(v, int) for v in values) else pa.string()
        columns[key] = pa.array(values, type=kind)
    write_deltalake(path, pa.table(columns), mode=mode)
    print(json.dumps({"version": DeltaTable(path).version()}))


if __name__ == "__main__":
    main()
