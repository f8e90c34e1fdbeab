"""Drive a running `fibers serve` from real external Flight SQL clients:
the ADBC Flight SQL driver (its DB-API module) and pyarrow's raw Flight
client, and read a live view's Delta archive back with the `deltalake`
package. Every expected value is computed here, from the input file or
from what another client saw, never by asking the server for it.

usage: flight_clients.py --uri grpc://127.0.0.1:PORT --data-dir DIR
                         [--trades FILE] [--brokers HOST:PORT]

Prints one summary line per part and exits 0, or exits non-zero with the
first mismatch. With --brokers it also appends rows to a Kafka stream
through ADBC's bulk ingest (the topic is created here first).

"""

import argparse
import json
import os
import sys
import time
import traceback
import uuid
from collections import defaultdict
from datetime import datetime

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions

HERE = os.path.dirname(os.path.abspath(__file__))
TRADES = os.path.join(HERE, "..", "slt", "data", "trades.jsonl")
EPOCH = datetime(1970, 1, 1)
# The trades stream's watermark delay (see TRADES_STREAM).
DELAY_US = 10_000_000
MINUTE_US = 60_000_000
SECOND_US = 1_000_000
# How long to wait for rows a running job produces.
PATIENCE_S = 120

TRADES_STREAM = """CREATE STREAM trades (
    symbol TEXT NOT NULL, price DOUBLE, volume BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
  ) WITH (connector = 'file', path = '{path}', format = 'json')"""

TOTALS_VIEW = """CREATE MATERIALIZED VIEW totals WITH (archive = 'delta', path = 'totals') AS
  SELECT window_start, window_end, count(*) AS n, sum(volume) AS volume
  FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE)
  GROUP BY window_start, window_end"""

LIVE_STREAM = "CREATE STREAM live WITH (connector = 'stocks', rate = '2000', symbols = '3')"

LIVE_VIEW = """CREATE MATERIALIZED VIEW v
    WITH (archive = 'delta', path = 'v', commit_interval = '1s') AS
  SELECT symbol, window_start, window_end, count(*) AS trades
  FROM TUMBLE(live, ts, INTERVAL '1' SECOND)
  GROUP BY symbol, window_start, window_end"""


# ------------------------------------------------------------ expectations


def micros(iso):
    """An ISO timestamp without zone as microseconds since the epoch."""
    return int((datetime.fromisoformat(iso) - EPOCH).total_seconds()) * SECOND_US


def load_trades(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        row["ts"] = micros(row["ts"])
    return rows


def kept_trades(trades):
    """The trades a windowed view aggregates: a row is late, and dropped,
    when its ts is below the watermark (the largest ts before it minus the
    delay) as it stood just before the row arrived (README, "Time,
    watermarks and late rows")."""
    kept, largest = [], None
    for row in trades:
        if largest is not None and row["ts"] < largest - DELAY_US:
            continue
        kept.append(row)
        largest = row["ts"] if largest is None else max(largest, row["ts"])
    return kept


def per_symbol(trades, min_volume=None, not_symbol=None):
    """symbol, n, volume, low, high of the trades (all of them: an ad-hoc
    query over a file stream drops nothing), ordered by symbol."""
    groups = defaultdict(list)
    for row in trades:
        if min_volume is not None and row["volume"] < min_volume:
            continue
        if not_symbol is not None and row["symbol"] == not_symbol:
            continue
        groups[row["symbol"]].append(row)
    return [
        {
            "symbol": symbol,
            "n": len(rows),
            "volume": sum(r["volume"] for r in rows),
            "low": min(r["price"] for r in rows),
            "high": max(r["price"] for r in rows),
        }
        for symbol, rows in sorted(groups.items())
    ]


def per_minute(trades):
    """The totals view's rows: one-minute tumbling windows of kept trades."""
    groups = defaultdict(list)
    for row in kept_trades(trades):
        groups[row["ts"] - row["ts"] % MINUTE_US].append(row)
    return [
        {
            "window_start": start,
            "window_end": start + MINUTE_US,
            "n": len(rows),
            "volume": sum(r["volume"] for r in rows),
        }
        for start, rows in sorted(groups.items())
    ]


def rows_of(table):
    """A table's rows as dicts, timestamps as integer microseconds (so the
    comparison is exact, whatever unit the server chose)."""
    columns = {}
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())
        columns[field.name] = column.to_pylist()
    return [{name: values[i] for name, values in columns.items()} for i in range(table.num_rows)]


def expect_error(run, *needles):
    """Runs `run`, which must raise an error whose message contains every
    needle; returns the message."""
    try:
        run()
    except (adbc_driver_manager.Error, pa.ArrowException) as e:
        message = str(e)
        missing = [n for n in needles if n not in message]
        assert not missing, f"the error does not name {missing}: {message}"
        return message
    raise AssertionError(f"expected an error naming {list(needles)}, but the call succeeded")


def schema_text(schema):
    return ", ".join(f"{f.name} {f.type}{'' if f.nullable else ' not null'}" for f in schema)


def table_schema_matches_rows(conn, name):
    """GetTables' schema of `name` and the schema of `SELECT * FROM name`
    rows; returns them as text if they differ, else None."""
    cur = conn.cursor()
    cur.execute(f"SELECT * FROM {name} LIMIT 0")
    selected = cur.fetch_arrow_table().schema
    cur.close()
    declared = conn.adbc_get_table_schema(name)
    if declared == selected:
        return None
    return f"GetTables says ({schema_text(declared)}) but SELECT * returns ({schema_text(selected)})"


# ------------------------------------------------------------------- ADBC


def adbc_connect(uri):
    # The server has no transactions, so autocommit stays on; asking the
    # DB-API default (off) only gets a warning that it cannot be turned off.
    timeouts = {
        DatabaseOptions.TIMEOUT_FETCH.value: str(PATIENCE_S),
        DatabaseOptions.TIMEOUT_QUERY.value: str(PATIENCE_S),
        DatabaseOptions.TIMEOUT_UPDATE.value: str(PATIENCE_S),
    }
    return flightsql.connect(uri, db_kwargs=timeouts, autocommit=True)


def adbc_statements(conn, trades_path, trades):
    """DDL, SELECTs, parameters and errors over the trades file."""
    cur = conn.cursor()

    cur.execute(TRADES_STREAM.format(path=trades_path))
    assert [d[0] for d in cur.description] == ["status"], cur.description
    assert cur.fetchall() == [("CREATE STREAM",)], "CREATE STREAM's status row"
    cur.execute(TOTALS_VIEW)
    assert cur.fetchall() == [("CREATE MATERIALIZED VIEW",)], "CREATE MATERIALIZED VIEW's status row"

    cur.execute("SELECT symbol, price, volume, ts FROM trades ORDER BY ts")
    got = rows_of(cur.fetch_arrow_table())
    want = sorted(trades, key=lambda r: r["ts"])
    assert got == want, f"SELECT * over the file:\n got {got}\nwant {want}"

    summary = (
        "SELECT symbol, count(*) AS n, sum(volume) AS volume, min(price) AS low, "
        "max(price) AS high FROM trades GROUP BY symbol ORDER BY symbol"
    )
    cur.execute(summary)
    table = cur.fetch_arrow_table()
    assert table.column_names == ["symbol", "n", "volume", "low", "high"], table.schema
    got = rows_of(table)
    assert got == per_symbol(trades), f"per symbol:\n got {got}\nwant {per_symbol(trades)}"

    cur.execute("SELECT * FROM totals ORDER BY window_start")
    got = rows_of(cur.fetch_arrow_table())
    assert got == per_minute(trades), f"the totals view:\n got {got}\nwant {per_minute(trades)}"

    # ADBC prepares the statement (CreatePreparedStatement), binds the
    # Python tuple as a one-row batch whose columns fill $1, $2 by position
    # (DoPut), then runs it; the same text again reuses the prepared handle
    # with new values.
    parameterized = (
        "SELECT symbol, count(*) AS n, sum(volume) AS volume, min(price) AS low, "
        "max(price) AS high FROM trades WHERE volume >= $1 AND symbol <> $2 "
        "GROUP BY symbol ORDER BY symbol"
    )
    bindings = [(150, "GOOG"), (0, "none"), (1_000_000, "none")]
    for volume, symbol in bindings:
        cur.execute(parameterized, parameters=(volume, symbol))
        got = rows_of(cur.fetch_arrow_table())
        want = per_symbol(trades, min_volume=volume, not_symbol=symbol)
        assert got == want, f"volume >= {volume}, symbol <> {symbol}:\n got {got}\nwant {want}"
    # A column computed from parameters only: nullable in the unbound plan
    # the FlightInfo announces, and the rows keep that schema once bound.
    cur.execute("SELECT $1 + 1 AS answer", parameters=(41,))
    answer = cur.fetchall()
    assert answer == [(42,)], f"SELECT $1 + 1 with (41,): {answer}"

    # A bad statement fails naming the fault; the connection lives on.
    expect_error(lambda: cur.execute("SELECT * FROM nowhere"), "table 'datafusion.public.nowhere' not found")
    expect_error(lambda: cur.execute("SELEC 1"), "SQL syntax error", "SELEC")
    expect_error(lambda: cur.execute("SELECT nope FROM trades"), "nope")
    expect_error(lambda: cur.execute(TRADES_STREAM.format(path=trades_path)), "stream 'trades' already exists")
    cur.execute("SELECT count(*) AS n FROM trades")
    assert cur.fetchall() == [(len(trades),)], "a query after the errors"
    cur.close()
    print(
        f"adbc: {len(trades)} trades, {len(per_symbol(trades))} symbols and "
        f"{len(per_minute(trades))} view windows as computed; {len(bindings)} parameter "
        "bindings; 4 errors named, connection still usable"
    )


def adbc_metadata(conn):
    """GetObjects, the table schemas and types, over the trades objects."""
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["datafusion"], objects
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["public"], schemas
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    assert {name: t["table_type"] for name, t in tables.items()} == {
        "totals": "MATERIALIZED VIEW",
        "trades": "STREAM",
    }, tables
    columns = {
        name: [(c["column_name"], c["ordinal_position"]) for c in t["table_columns"]]
        for name, t in tables.items()
    }
    assert columns == {
        "trades": [("symbol", 1), ("price", 2), ("volume", 3), ("ts", 4)],
        "totals": [("window_start", 1), ("window_end", 2), ("n", 3), ("volume", 4)],
    }, columns

    # The filters are the server's (GetTables' table types and pattern).
    streams = conn.adbc_get_objects(depth="tables", table_types_filter=["STREAM"]).read_all().to_pylist()
    names = [t["table_name"] for t in streams[0]["catalog_db_schemas"][0]["db_schema_tables"]]
    assert names == ["trades"], f"STREAM objects: {names}"
    matching = conn.adbc_get_objects(depth="tables", table_name_filter="tot%").read_all().to_pylist()
    names = [t["table_name"] for t in matching[0]["catalog_db_schemas"][0]["db_schema_tables"]]
    assert names == ["totals"], f"objects named like 'tot%': {names}"

    # A file stream's and a view's schemas are those of their rows.
    for name in ["trades", "totals"]:
        mismatch = table_schema_matches_rows(conn, name)
        assert mismatch is None, f"{name}: {mismatch}"
    expect_error(lambda: conn.adbc_get_table_schema("missing"), "No table found")

    types = conn.adbc_get_table_types()
    assert types == ["MATERIALIZED VIEW", "SINK", "STREAM", "TABLE"], types
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "DataFibers", info
    print(
        "adbc metadata: GetObjects lists trades (STREAM) and totals (MATERIALIZED VIEW) with "
        "their columns, filters by type and name; table schemas of trades and totals equal "
        f"their rows'; table types {types}"
    )


def adbc_ingest(conn, brokers):
    """Bulk ingest (append) into a Kafka stream, read back by SELECT."""
    sys.path.insert(0, HERE)
    from kafka_tool import ensure_topic

    topic = f"flight_clients_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    ensure_topic(brokers, topic, 1)
    cur = conn.cursor()
    cur.execute(
        "CREATE STREAM quotes (symbol TEXT NOT NULL, price DOUBLE) WITH "
        f"(connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json')"
    )
    assert cur.fetchall() == [("CREATE STREAM",)]

    schema = pa.schema([pa.field("symbol", pa.string(), nullable=False), ("price", pa.float64())])
    batches = [
        pa.record_batch([pa.array(["AAPL", "MSFT", "GOOG"]), pa.array([10.5, 20.25, None])], schema=schema),
        pa.record_batch([pa.array(["AAPL", "NVDA"]), pa.array([11.0, 1000.125])], schema=schema),
    ]
    sent = pa.Table.from_batches(batches)
    added = cur.adbc_ingest("quotes", pa.RecordBatchReader.from_batches(schema, batches), mode="append")
    assert added == sent.num_rows, f"ingest reported {added} rows, sent {sent.num_rows}"

    cur.execute("SELECT symbol, price FROM quotes")
    got = sorted(rows_of(cur.fetch_arrow_table()), key=lambda r: (r["symbol"], r["price"] or 0))
    want = sorted(sent.to_pylist(), key=lambda r: (r["symbol"], r["price"] or 0))
    assert got == want, f"the topic read back:\n got {got}\nwant {want}"

    # Streams are declared with CREATE STREAM and only appended to.
    expect_error(
        lambda: cur.adbc_ingest("quotes", sent, mode="create"),
        "ingest into 'quotes'",
        "already exists",
        "ingest mode 'append'",
    )
    replace = expect_error(
        lambda: cur.adbc_ingest("quotes", sent, mode="replace"),
        "ingest into 'quotes'",
        "ingest mode 'append'",
    )
    expect_error(lambda: cur.adbc_ingest("trades", sent, mode="append"), "publishes into a Kafka topic")
    expect_error(lambda: cur.adbc_ingest("nostream", sent, mode="append"), "stream 'nostream' does not exist")
    expect_error(lambda: cur.adbc_ingest("nostream", sent, mode="create"), "does not create streams")
    cur.execute("SELECT count(*) AS n FROM quotes")
    assert cur.fetchall() == [(sent.num_rows,)], "nothing published by the refused ingests"

    # ADBC's "replace" asks to replace an existing table: refused as such.
    assert "cannot be replaced" in replace, f"mode replace: {replace}"
    # "create_append" into an existing stream means append.
    appended = cur.adbc_ingest("quotes", sent, mode="create_append")
    assert appended == sent.num_rows, f"mode create_append appended {appended} rows"
    cur.execute("SELECT count(*) AS n FROM quotes")
    assert cur.fetchall() == [(2 * sent.num_rows,)], "create_append appended once more"
    cur.close()
    # A stream without a WATERMARK is listed with the columns SELECT
    # returns (its arrival time exists only in the jobs reading it).
    mismatch = table_schema_matches_rows(conn, "quotes")
    assert mismatch is None, f"quotes: GetTables vs SELECT *: {mismatch}"
    print(f"adbc ingest: {added} rows appended to Kafka topic {topic} and read back by SELECT; modes create and replace refused")


# -------------------------------------------------------- pyarrow.flight


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field, data):
    """A protobuf field of wire type 2 (bytes, string or message)."""
    return varint(field << 3 | 2) + varint(len(data)) + data


def statement_query(sql):
    """A FlightDescriptor command: google.protobuf.Any { type_url = 1,
    value = 2 } holding CommandStatementQuery { query = 1 }."""
    command = length_delimited(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return flight.FlightDescriptor.for_command(length_delimited(1, type_url) + length_delimited(2, command))


def raw_info(client, sql):
    info = client.get_flight_info(statement_query(sql))
    assert len(info.endpoints) == 1, f"{sql}: {len(info.endpoints)} endpoints"
    return info


def raw_query(client, sql):
    """GetFlightInfo, then DoGet of its endpoint, read to the end."""
    info = raw_info(client, sql)
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema == info.schema, f"{sql}: FlightInfo says\n{info.schema}\nbut rows are\n{table.schema}"
    return table


def raw_flight(uri, trades):
    client = flight.FlightClient(uri)
    sql = (
        "SELECT symbol, count(*) AS n, sum(volume) AS volume, min(price) AS low, "
        "max(price) AS high FROM trades GROUP BY symbol ORDER BY symbol"
    )
    got = rows_of(raw_query(client, sql))
    assert got == per_symbol(trades), f"raw Flight per symbol:\n got {got}\nwant {per_symbol(trades)}"
    expect_error(lambda: client.get_flight_info(statement_query("SELEC 1")), "SQL syntax error", "SELEC")
    print("pyarrow.flight: hand-built CommandStatementQuery, GetFlightInfo + DoGet: per-symbol rows as computed")
    return client


def subscribe(client, count):
    """Starts the live view, SUBSCRIBEs to it and reads until `count` rows
    came; returns them after cancelling the subscription."""
    for ddl, status in [(LIVE_STREAM, "CREATE STREAM"), (LIVE_VIEW, "CREATE MATERIALIZED VIEW")]:
        assert raw_query(client, ddl).to_pylist() == [{"status": status}], ddl
    info = raw_info(client, "SUBSCRIBE v")
    assert info.schema.names == ["symbol", "window_start", "window_end", "trades"], info.schema
    # The call's deadline bounds every read: no row for that long fails it.
    options = flight.FlightCallOptions(timeout=PATIENCE_S)
    reader = client.do_get(info.endpoints[0].ticket, options)
    deadline = time.monotonic() + PATIENCE_S
    rows, batches = [], 0
    while len(rows) < count:
        assert time.monotonic() < deadline, f"{len(rows)} of {count} subscribed rows in {PATIENCE_S} s"
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            raise AssertionError(f"the subscription ended after {len(rows)} rows") from None
        assert chunk.data.schema == info.schema, f"a batch of\n{chunk.data.schema}\nnot\n{info.schema}"
        batches += 1
        rows.extend(rows_of(pa.Table.from_batches([chunk.data])))
    reader.cancel()

    windows = [(r["symbol"], r["window_start"]) for r in rows]
    assert len(set(windows)) == len(windows), f"a window came twice: {sorted(windows)}"
    for r in rows:
        assert r["trades"] > 0, f"an empty window: {r}"
        assert r["window_end"] - r["window_start"] == SECOND_US, f"not a one-second window: {r}"
    # Still serving after the cancel.
    n = raw_query(client, "SELECT count(*) AS n FROM v").column("n").to_pylist()
    assert len(n) == 1 and n[0] > 0, f"SELECT count(*) FROM v after the cancel: {n}"
    print(f"pyarrow.flight SUBSCRIBE v: {len(rows)} rows in {batches} batches, no window twice, cancelled; server answers")
    return rows


# ------------------------------------------------------------ Delta archive


def read_delta(path, at_least):
    """The Delta table at `path` once it has `at_least` rows."""
    from deltalake import DeltaTable

    deadline = time.monotonic() + PATIENCE_S
    while True:
        if os.path.isdir(os.path.join(path, "_delta_log")):
            table = DeltaTable(path).to_pyarrow_table()
            if table.num_rows >= at_least:
                return rows_of(table)
        assert time.monotonic() < deadline, f"the Delta table at {path} has fewer than {at_least} rows"
        time.sleep(0.5)


def by_window(rows, source):
    """trades by (symbol, window_start), asserting no window twice."""
    out = {}
    for r in rows:
        key = (r["symbol"], r["window_start"])
        assert key not in out, f"{source} has window {key} twice"
        out[key] = r["trades"]
    return out


def archive_matches(conn, data_dir, subscribed):
    """The Delta archive read by deltalake, and the windows SUBSCRIBE gave,
    all appear with the same counts in a later SELECT over ADBC."""
    archived = by_window(read_delta(os.path.join(data_dir, "v"), 6), "the Delta archive (deltalake)")
    live = by_window(subscribed, "the subscription")
    cur = conn.cursor()
    deadline = time.monotonic() + PATIENCE_S
    while True:
        # The job keeps committing: a later SELECT holds at least every
        # window read before it.
        cur.execute("SELECT * FROM v")
        selected = by_window(rows_of(cur.fetch_arrow_table()), "SELECT * FROM v")
        if set(live) <= set(selected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    cur.close()
    for source, windows in [("the Delta archive", archived), ("the subscription", live)]:
        missing = sorted(set(windows) - set(selected))
        assert not missing, f"windows of {source} not in a later SELECT: {missing}"
        differ = {k: (n, selected[k]) for k, n in windows.items() if selected[k] != n}
        assert not differ, f"trades of {source} vs SELECT differ: {differ}"
    mismatch = table_schema_matches_rows(conn, "v")
    assert mismatch is None, f"v: GetTables vs SELECT *: {mismatch}"
    print(
        f"delta: {len(archived)} archived windows read by deltalake and {len(live)} subscribed "
        f"windows all in a later SELECT ({len(selected)} windows) with the same trades"
    )


# -------------------------------------------------------------------- main


def authentication(uri, user, password):
    """Against a server started with --user: ADBC logs in with username and
    password; pyarrow authenticates with a Basic handshake and sends the
    bearer token it gets; without or with wrong credentials both are
    refused as unauthenticated."""
    conn = flightsql.connect(
        uri, db_kwargs={"username": user, "password": password}, autocommit=True
    )
    cur = conn.cursor()
    cur.execute("SELECT 41 + 1 AS answer")
    assert cur.fetchall() == [(42,)], "ADBC after login"
    cur.close()
    conn.close()
    for kwargs in [{}, {"username": user, "password": password + "x"}]:
        def attempt(kwargs=kwargs):
            c = flightsql.connect(uri, db_kwargs=kwargs, autocommit=True)
            try:
                cursor = c.cursor()
                cursor.execute("SELECT 1")
                cursor.fetchall()
            finally:
                c.close()
        message = expect_error(attempt, "UNAUTHENTICATED")
        assert "internal" not in message.lower(), message

    client = flight.FlightClient(uri)
    header = client.authenticate_basic_token(user, password)
    assert header[0] == b"authorization" and header[1].startswith(b"Bearer "), header
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(statement_query("SELECT 7 AS seven"), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.to_pylist() == [{"seven": 7}], table.to_pylist()
    try:
        client.get_flight_info(statement_query("SELECT 7"))
        raise AssertionError("a call without the token was answered")
    except flight.FlightUnauthenticatedError as e:
        assert "authorization" in str(e).lower() or "authenticat" in str(e).lower(), str(e)
    try:
        client.authenticate_basic_token(user, "wrong")
        raise AssertionError("a wrong password was accepted")
    except flight.FlightUnauthenticatedError as e:
        assert "invalid user name or password" in str(e), str(e)
    client.close()
    print("auth: ADBC login and pyarrow bearer token work; missing or wrong credentials are UNAUTHENTICATED")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="grpc://127.0.0.1:PORT")
    parser.add_argument("--data-dir", required=True, help="the server's --data-dir")
    parser.add_argument("--trades", default=TRADES, help="the trades JSON lines file")
    parser.add_argument("--brokers", help="a Kafka broker, for ingest")
    parser.add_argument(
        "--auth-user",
        help="only check authentication, as this user (password in FIBERS_PASSWORD)",
    )
    args = parser.parse_args()
    if args.auth_user:
        authentication(args.uri, args.auth_user, os.environ["FIBERS_PASSWORD"])
        return

    trades_path = os.path.abspath(args.trades)
    trades = load_trades(trades_path)
    conn = adbc_connect(args.uri)
    adbc_statements(conn, trades_path, trades)
    adbc_metadata(conn)
    if args.brokers:
        adbc_ingest(conn, args.brokers)
    else:
        print("adbc ingest: skipped (no --brokers)")
    client = raw_flight(args.uri, trades)
    subscribed = subscribe(client, 9)
    archive_matches(conn, args.data_dir, subscribed)
    client.close()
    conn.close()


if __name__ == "__main__":
    try:
        main()
        code = 0
    except AssertionError as e:
        print(f"flight_clients: MISMATCH: {e}", file=sys.stderr)
        code = 1
    except Exception:  # an unexpected failure: show where
        traceback.print_exc()
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    # The deltalake/pyarrow native thread pools can abort while the
    # interpreter tears them down (see read_table.py); skip that teardown.
    os._exit(code)
