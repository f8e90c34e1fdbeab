"""Apache Flink and DataFibers side by side on the same Nexmark events.

    benches/peers/flink/run.sh [--events N] [--runs R] [--queries q0,q5]

(`run.sh` installs PyFlink, builds `fibers` in release and calls this
script with `--fibers BIN`.) The steps, each reported on stderr:

1. DataFibers writes the first N events of the Nexmark sequence (seed 42)
   as JSON lines, one file per event type: `fibers run` of an ad-hoc
   `SELECT * FROM bid` (and person, auction) over the `nexmark` connector.
2. The check, untimed: each query runs in DataFibers into a Parquet sink
   and in Flink (batch mode) into a filesystem sink of JSON lines; the two
   sets of rows must be equal (timestamps compared to the millisecond, as
   Flink reads them; numbers to six decimals), or the script fails with
   the rows that differ.
3. The timed rounds, alternating: for each query a `fibers run` of the
   query over the files into a `discard` sink, then Flink's job of the same
   query into a `blackhole` sink, and once per round both over a file of
   one event each (the start-up arms: each engine's fixed cost). The best
   of the rounds by CPU is kept.

CPU time is user + system of every thread of the process tree (for
DataFibers from wait4, for Flink as `flink_query.py` reports it: the Python
driver and its JVM), wall time is from start to exit, peak memory is the
peak resident set (Flink: the driver's and the JVM's added up).
"""

import argparse
import collections
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

HERE = pathlib.Path(__file__).resolve().parent
NEXMARK = HERE.parent.parent / "nexmark"
SEED = 42
QUERIES = ["q0", "q1", "q2", "q5", "q7", "q8"]
EVENT_TYPES = ["bid", "person", "auction"]

# The DataFibers streams over the files: the columns of the `nexmark`
# connector, with the watermark the Flink tables declare.
COLUMNS = {
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, "
    "date_time TIMESTAMP, extra TEXT",
    "person": "id BIGINT, name TEXT, email_address TEXT, credit_card TEXT, city TEXT, "
    "state TEXT, date_time TIMESTAMP, extra TEXT",
    "auction": "id BIGINT, item_name TEXT, description TEXT, initial_bid BIGINT, "
    "reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, "
    "category BIGINT, extra TEXT",
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def reads(query):
    """The event types a query reads."""
    return ["person", "auction"] if query == "q8" else ["bid"]


def sql_without_comments(path):
    return "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("--"))


def fibers_script(events, query, sink):
    streams = "".join(
        f"CREATE STREAM {name} ({COLUMNS[name]}, "
        "WATERMARK FOR date_time AS date_time - INTERVAL '5' SECOND) "
        f"WITH (connector = 'file', path = '{events / (name + '.jsonl')}', format = 'json');\n"
        for name in reads(query)
    )
    return f"{streams}CREATE SINK {query}_out WITH ({sink}) AS\n" + sql_without_comments(
        NEXMARK / f"{query}.sql"
    )


class Run:
    def __init__(self, cpu, wall, peak_mib):
        self.cpu, self.wall, self.peak_mib = cpu, wall, peak_mib


def peak_mib(pid):
    """The peak resident memory (VmHWM) of process `pid` so far, or None."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def run_process(argv, stdout, stderr, what):
    """Runs `argv` to its end; returns its rusage (children included),
    wall time and peak memory, or fails naming `what` with the tail of its
    stderr. The peak is VmHWM, read every 20 ms until the process exits
    (the rusage's ru_maxrss would count this script's own size: Linux
    carries it over the exec)."""
    start = time.monotonic()
    peak = 0.0
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            peak = max(peak, peak_mib(proc.pid) or 0.0)
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        tail = pathlib.Path(stderr).read_text(errors="replace")[-3000:]
        sys.exit(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return usage, wall, peak


class Fibers:
    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.runs = 0

    def run(self, script, what, format_args=(), stdout=None):
        """`fibers run` of `script` in a fresh data dir."""
        self.runs += 1
        scratch = self.work / f"fibers-{self.runs}"
        scratch.mkdir()
        (scratch / "script.sql").write_text(script)
        argv = [str(self.binary), "run", str(scratch / "script.sql"), "--data-dir", str(scratch / "data")]
        usage, wall, peak = run_process(
            argv + list(format_args), stdout or scratch / "stdout", scratch / "stderr", what
        )
        return usage, wall, peak, (scratch / "stderr").read_text(errors="replace")

    def generate(self, events, out, name):
        script = (
            f"CREATE STREAM {name} WITH (connector = 'nexmark', event = '{name}', "
            f"events = '{events}', seed = '{SEED}');\nSELECT * FROM {name};\n"
        )
        self.run(script, f"writing the {name} events", ["--format", "json"], out / f"{name}.jsonl")

    def timed(self, events, query, expected):
        usage, wall, peak, stderr = self.run(
            fibers_script(events, query, "connector = 'discard'"), f"DataFibers {query}"
        )
        summary = re.search(r"sink \S+ \((\w+)\): (\d+) rows in, (\d+) out, (\d+) late", stderr)
        if not summary:
            sys.exit(f"DataFibers {query} printed no job summary:\n{stderr[-2000:]}")
        status, rows_in = summary.group(1), int(summary.group(2))
        if status != "finished" or rows_in != expected:
            sys.exit(f"DataFibers {query}: {status}, {rows_in} of {expected} events read")
        return Run(usage.ru_utime + usage.ru_stime, wall, peak)

    def rows(self, events, query):
        out = self.work / f"check-{query}-fibers"
        self.run(fibers_script(events, query, f"connector = 'parquet', path = '{out}'"), f"DataFibers {query} (check)")
        files = sorted(p for p in out.glob("*.parquet") if not p.name.startswith("."))
        tables = [pq.read_table(p) for p in files]
        if not tables:
            return [], []
        kinds = [field.type for field in tables[0].schema]
        rows = []
        for table in tables:
            columns = [column.to_pylist() for column in table.columns]
            rows.extend(zip(*columns))
        return rows, kinds


class Flink:
    def __init__(self, python, work):
        self.python, self.work = python, work
        self.runs = 0

    def run(self, events, query, extra, what):
        self.runs += 1
        scratch = self.work / f"flink-{self.runs}"
        scratch.mkdir()
        argv = [self.python, str(HERE / "flink_query.py"), "--events", str(events), "--query", query]
        _, wall, _ = run_process(argv + extra, scratch / "stdout", scratch / "stderr", what)
        return wall, (scratch / "stdout").read_text()

    def timed(self, events, query):
        wall, stdout = self.run(events, query, [], f"Flink {query}")
        lines = stdout.strip().splitlines()
        try:
            report = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            sys.exit(f"Flink {query} printed no report:\n{stdout[-2000:]}")
        return Run(report["cpu_s"], wall, report["peak_mib"])

    def rows(self, events, query):
        out = self.work / f"check-{query}-flink"
        self.run(events, query, ["--out", str(out)], f"Flink {query} (check)")
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                with open(path) as f:
                    for line in f:
                        yield list(json.loads(line).values())


def normal(value, kind):
    """One value as both engines' rows are compared: timestamps to the
    millisecond, numbers to six decimals."""
    if value is None:
        return None
    if pa.types.is_timestamp(kind):
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value)
        return value.replace(microsecond=value.microsecond // 1000 * 1000).isoformat(timespec="milliseconds")
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return f"{float(value):.6f}"
    return value


def check(fibers, flink, events, query):
    """Fails unless both engines give `query` the same rows; returns their number."""
    ours, kinds = fibers.rows(events, query)
    counts = collections.Counter(tuple(normal(v, k) for v, k in zip(row, kinds)) for row in ours)
    theirs = 0
    for row in flink.rows(events, query):
        theirs += 1
        if kinds and len(row) != len(kinds):
            sys.exit(f"{query}: Flink's rows have {len(row)} columns, DataFibers' {len(kinds)}")
        counts[tuple(normal(v, k) for v, k in zip(row, kinds))] -= 1
    differ = [(row, n) for row, n in counts.items() if n != 0]
    if differ:
        sample = "\n".join(
            f"  {'only in DataFibers' if n > 0 else 'only in Flink'} (x{abs(n)}): {row}"
            for row, n in differ[:10]
        )
        sys.exit(f"{query}: DataFibers has {len(ours)} rows, Flink {theirs}; they differ:\n{sample}")
    return len(ours)


def line_count(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fibers", required=True, help="the fibers binary (a release build)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with apache-flink")
    parser.add_argument("--events", type=int, default=5_000_000, help="events of the sequence")
    parser.add_argument("--runs", type=int, default=1, help="timed rounds; the best is kept")
    parser.add_argument("--queries", default=",".join(QUERIES), help="comma-separated")
    parser.add_argument("--work", help="keep the files here (default: a temporary directory)")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison of rows")
    args = parser.parse_args()
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    unknown = [q for q in queries if q not in QUERIES]
    if unknown:
        sys.exit(f"unknown queries {unknown}; expected some of {QUERIES}")

    temp = None if args.work else tempfile.TemporaryDirectory(prefix="fibers-flink-")
    work = pathlib.Path(args.work or temp.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    fibers = Fibers(pathlib.Path(args.fibers).resolve(), work)
    flink = Flink(args.python, work)

    events = work / "events"
    events.mkdir(exist_ok=True)
    for name in EVENT_TYPES:
        log(f"writing {name} events with DataFibers ...")
        fibers.generate(args.events, events, name)
    counts = {name: line_count(events / f"{name}.jsonl") for name in EVENT_TYPES}
    log(f"{args.events} events: " + ", ".join(f"{counts[n]} {n}s" for n in EVENT_TYPES))
    one = work / "one-event"
    one.mkdir(exist_ok=True)
    for name in EVENT_TYPES:
        with open(events / f"{name}.jsonl") as f:
            (one / f"{name}.jsonl").write_text(f.readline())

    result_rows = {}
    if not args.no_check:
        for query in queries:
            log(f"checking {query}: both engines' rows ...")
            result_rows[query] = check(fibers, flink, events, query)
            log(f"  {query}: {result_rows[query]} rows, equal")

    best = {}

    def keep(key, run):
        if key not in best or run.cpu < best[key].cpu:
            best[key] = run

    for round_ in range(1, args.runs + 1):
        keep(("fibers", "start-up"), fibers.timed(one, "q0", 1))
        keep(("flink", "start-up"), flink.timed(one, "q0"))
        for query in queries:
            expected = sum(counts[n] for n in reads(query))
            keep(("fibers", query), fibers.timed(events, query, expected))
            keep(("flink", query), flink.timed(events, query))
            log(
                f"round {round_} {query}: DataFibers {best[('fibers', query)].cpu:.2f} CPU-s, "
                f"Flink {best[('flink', query)].cpu:.2f} CPU-s (best so far)"
            )

    ours_up, theirs_up = best[("fibers", "start-up")], best[("flink", "start-up")]
    print(
        f"\n{args.events} Nexmark events ({', '.join(f'{counts[n]} {n}s' for n in EVENT_TYPES)}), "
        f"best of {args.runs} round(s) by CPU; start-up (q0 over one event): "
        f"DataFibers {ours_up.cpu:.2f} CPU-s, {ours_up.peak_mib:.0f} MiB; "
        f"Flink {theirs_up.cpu:.2f} CPU-s, {theirs_up.wall:.1f} s, {theirs_up.peak_mib:.0f} MiB\n"
    )
    print(
        "| query | events read | rows, equal | DataFibers CPU s | wall s | peak MiB | events / CPU-s "
        "| Flink CPU s | wall s | peak MiB | events / CPU-s | net of start-up: CPU s | events / CPU-s "
        "| Flink ÷ DataFibers, CPU | net |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for query in queries:
        n = sum(counts[e] for e in reads(query))
        ours, theirs = best[("fibers", query)], best[("flink", query)]
        net = theirs.cpu - theirs_up.cpu
        # A query as cheap as the start-up arm is all start-up: no net figure.
        net_columns = (
            f"{net:.2f} | {n / net / 1e6:.2f}M | {theirs.cpu / ours.cpu:.1f}× | {net / ours.cpu:.1f}×"
            if net > 0.05 * theirs.cpu
            else f"— | — | {theirs.cpu / ours.cpu:.1f}× | —"
        )
        rows = result_rows.get(query)
        print(
            f"| {query} | {n} | {'unchecked' if rows is None else rows} | {ours.cpu:.2f} | {ours.wall:.2f} "
            f"| {ours.peak_mib:.0f} | {n / ours.cpu / 1e6:.2f}M | {theirs.cpu:.2f} | {theirs.wall:.2f} "
            f"| {theirs.peak_mib:.0f} | {n / theirs.cpu / 1e6:.2f}M | {net_columns} |"
        )
    if temp is not None:
        temp.cleanup()


if __name__ == "__main__":
    main()
