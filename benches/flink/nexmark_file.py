"""Runs one Nexmark query of `benches/nexmark/` in Apache Flink over a file
of bids as JSON lines, and prints its CPU time as one JSON line.

    python nexmark_file.py --path bids.jsonl --query q1 [--count]

Flink runs as PyFlink runs it: a local mini-cluster in one JVM, started by
the Python process, streaming mode, parallelism 1, the bids read by the
`filesystem` connector with the `json` format (the same declaration as the
DataFibers stream, watermark included) into a `blackhole` sink. With
`--count` the query's rows are counted instead, in batch mode (for checking that both
engines emit the same number, not for timing).

The CPU time printed is that of the Python process and of the JVM
(user + system, every thread), read when the job has finished: start-up
included, as for any run of a command.
"""

import argparse
import json
import os
import pathlib
import resource
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

QUERIES = pathlib.Path(__file__).resolve().parent.parent / "nexmark"

BID = """
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json',
        'json.timestamp-format.standard' = 'ISO-8601')
"""


def query_text(name):
    """The query's SQL without its comment lines."""
    text = (QUERIES / f"{name}.sql").read_text()
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))


def children_cpu_seconds():
    """User + system seconds of this process's running children (the JVM)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in pathlib.Path("/proc/self/task").iterdir():
        children = (task / "children").read_text().split()
        for pid in children:
            try:
                fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            # utime and stime are fields 14 and 15 of stat; here 11 and 12
            # after the command name.
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="the JSON lines file of bids")
    parser.add_argument("--query", required=True, help="q0, q1, q2, ... of benches/nexmark")
    parser.add_argument("--count", action="store_true", help="count the rows instead of timing")
    args = parser.parse_args()

    # Counting runs in batch mode: a streaming count(*) sends every update
    # of its running total through collect(), minutes for a large file.
    settings = EnvironmentSettings.in_batch_mode() if args.count else EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    env.get_config().set("parallelism.default", "1")
    env.execute_sql(BID.format(path=pathlib.Path(args.path).resolve()))
    query = query_text(args.query)
    if args.count:
        with env.execute_sql(f"SELECT count(*) FROM ({query})").collect() as rows:
            last = 0
            for row in rows:
                last = row[0]
        print(json.dumps({"rows": last}))
        return
    columns = env.sql_query(query).get_schema()
    fields = ", ".join(
        f"`{name}` {kind}" for name, kind in zip(columns.get_field_names(), columns.get_field_data_types())
    )
    env.execute_sql(f"CREATE TABLE sink ({fields}) WITH ('connector' = 'blackhole')")
    env.execute_sql(f"INSERT INTO sink {query}").wait()
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": own.ru_utime + own.ru_stime + children_cpu_seconds()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
