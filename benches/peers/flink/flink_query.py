"""Runs one Nexmark query in Apache Flink over files of events as JSON lines.

    python flink_query.py --events DIR --query q5              # timed
    python flink_query.py --events DIR --query q5 --out RESULT # the rows

DIR holds `bid.jsonl`, `person.jsonl` and `auction.jsonl` (as `compare.py`
writes them); the query is `queries/QUERY.sql` beside this script.

Flink runs as PyFlink runs it: a local mini-cluster in one JVM, started by
the Python process, parallelism 1, each event type read by the
`filesystem` connector with the `json` format, with the watermark the
DataFibers streams declare (`date_time` less 5 seconds).

Timed, the query runs in streaming mode into a `blackhole` sink, and the
script prints one JSON line: `cpu_s`, the CPU seconds (user + system, every
thread) of the Python process and of its JVM when the job has finished,
start-up included as for any run of a command, and `peak_mib`, the peak
resident memory of the two added up.

With `--out`, the query runs in batch mode (the result of the query over
the whole input, nothing late) into a `filesystem` sink writing JSON lines
under RESULT, for comparing rows, not for timing.
"""

import argparse
import json
import os
import pathlib
import resource
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

HERE = pathlib.Path(__file__).resolve().parent

# The columns of the DataFibers Nexmark streams (engine/src/connector/nexmark).
TABLES = {
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, "
    "date_time TIMESTAMP(3), extra STRING",
    "person": "id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, "
    "state STRING, date_time TIMESTAMP(3), extra STRING",
    "auction": "id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, "
    "reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, "
    "category BIGINT, extra STRING",
}

JSON_OPTIONS = "'format' = 'json', 'json.timestamp-format.standard' = 'ISO-8601'"


def create_table(name, path):
    return (
        f"CREATE TABLE {name} ({TABLES[name]}, "
        "WATERMARK FOR date_time AS date_time - INTERVAL '5' SECOND) "
        f"WITH ('connector' = 'filesystem', 'path' = '{path}', {JSON_OPTIONS})"
    )


def query_text(name):
    """The query's SQL without its comment lines."""
    text = (HERE / "queries" / f"{name}.sql").read_text()
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))


def children():
    """The pids of this process's running children (the JVM)."""
    pids = []
    for task in pathlib.Path("/proc/self/task").iterdir():
        try:
            pids.extend((task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return pids


def proc_files(pids, name):
    """The text of /proc/PID/NAME for each of `pids` still running."""
    for pid in pids:
        try:
            yield pathlib.Path(f"/proc/{pid}/{name}").read_text()
        except FileNotFoundError:
            continue


def children_cpu_seconds(pids):
    """User + system seconds of the processes `pids`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in proc_files(pids, "stat"):
        # utime and stime are fields 14 and 15 of stat: 11 and 12 after the
        # command name, which may hold spaces and ends with ')'.
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def peak_kib(pids):
    """The peak resident memory (VmHWM) of the processes `pids`, added up.

    Not getrusage's ru_maxrss: Linux carries that over an exec, so a
    process started by a large one reports its parent's size."""
    return sum(
        int(line.split()[1])
        for status in proc_files(pids, "status")
        for line in status.splitlines()
        if line.startswith("VmHWM:")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True, help="the directory of the events' JSON lines files")
    parser.add_argument("--query", required=True, help="q0, q1, q2, q5, q7 or q8 (queries/)")
    parser.add_argument("--out", help="write the rows as JSON lines under this directory (batch mode)")
    args = parser.parse_args()

    batch = args.out is not None
    settings = EnvironmentSettings.in_batch_mode() if batch else EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    env.get_config().set("parallelism.default", "1")
    events = pathlib.Path(args.events).resolve()
    for name in TABLES:
        env.execute_sql(create_table(name, events / f"{name}.jsonl"))
    query = query_text(args.query)
    if batch:
        out = pathlib.Path(args.out).resolve()
        sink = f"'connector' = 'filesystem', 'path' = '{out}', {JSON_OPTIONS}"
    else:
        sink = "'connector' = 'blackhole'"
    # CREATE TABLE ... AS: the sink takes the query's columns and types as
    # Flink derived them (a DECIMAL keeps its precision and scale).
    env.execute_sql(f"CREATE TABLE sink WITH ({sink}) AS {query}").wait()
    if batch:
        return
    pids = children()
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = own.ru_utime + own.ru_stime + children_cpu_seconds(pids)
    peak = peak_kib(["self"] + pids)
    print(json.dumps({"cpu_s": cpu, "peak_mib": peak / 1024}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
