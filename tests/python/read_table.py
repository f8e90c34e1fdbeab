"""Print the rows of a Delta table or a directory of Parquet files as JSON
lines, read by an implementation independent of DataFibers' writer.

Timestamps are printed as integer microseconds since the epoch, so the
caller compares exact values rather than formatted strings.

usage: read_table.py delta|parquet PATH
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc


def read(kind: str, path: str) -> pa.Table:
    if kind == "delta":
        from deltalake import DeltaTable

        return DeltaTable(path).to_pyarrow_table()
    if kind == "parquet":
        import pyarrow.dataset as ds

        return ds.dataset(path, format="parquet").to_table()
    raise SystemExit(f"unknown table kind {kind!r}: expected delta or parquet")


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    table = read(sys.argv[1], sys.argv[2])
    columns = {}
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())
        columns[field.name] = column.to_pylist()
    for i in range(table.num_rows):
        print(json.dumps({name: values[i] for name, values in columns.items()}))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # The deltalake/pyarrow native thread pools sometimes abort ("terminate
    # called without an active exception") while the interpreter tears them
    # down, after all output was written; skip that teardown.
    os._exit(0)
