//! `fibers serve` driven by the Rust Flight SQL client: DDL, queries over a
//! materialized view, SHOW, errors, metadata and shutdown. Authentication,
//! TLS and the loopback rule are in `flight_auth`.

use std::path::{Path, PathBuf};

use arrow::util::pretty::pretty_format_batches;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};

use crate::server::{Server, fetch, query};

fn trades_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt/data/trades.jsonl")
}

fn lines(table: &str) -> Vec<&str> {
    table.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_then_select_over_a_view_and_show() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;

    let created = client
        .execute_update(
            format!(
                "CREATE STREAM trades (
                   symbol TEXT NOT NULL, price DOUBLE, volume BIGINT, ts TIMESTAMP,
                   WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
                 ) WITH (connector = 'file', path = '{}', format = 'json')",
                trades_file().display()
            ),
            None,
        )
        .await
        .expect("CREATE STREAM");
    assert_eq!(created, 0);

    // DDL also works as a query: it runs once, and its ticket returns the
    // outcome.
    let view = query(
        &mut client,
        "CREATE MATERIALIZED VIEW totals WITH (archive = 'delta', path = 'totals') AS
           SELECT window_start, window_end, count(*) AS n, sum(volume) AS volume
           FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE)
           GROUP BY window_start, window_end",
    )
    .await
    .expect("CREATE MATERIALIZED VIEW");
    assert_eq!(
        lines(&view),
        [
            "+--------------------------+",
            "| status                   |",
            "+--------------------------+",
            "| CREATE MATERIALIZED VIEW |",
            "+--------------------------+",
        ]
    );

    // The same rows as tests/slt/adhoc.slt, through Flight.
    let totals = query(&mut client, "SELECT * FROM totals ORDER BY window_start")
        .await
        .expect("SELECT over the view");
    assert_eq!(
        lines(&totals),
        [
            "+---------------------+---------------------+---+--------+",
            "| window_start        | window_end          | n | volume |",
            "+---------------------+---------------------+---+--------+",
            "| 2024-01-01T09:30:00 | 2024-01-01T09:31:00 | 6 | 1250   |",
            "| 2024-01-01T09:31:00 | 2024-01-01T09:32:00 | 3 | 550    |",
            "| 2024-01-01T09:32:00 | 2024-01-01T09:33:00 | 4 | 750    |",
            "+---------------------+---------------------+---+--------+",
        ]
    );

    // Metadata lists them under the names queries resolve.
    let info = client
        .get_tables(CommandGetTables {
            include_schema: false,
            ..Default::default()
        })
        .await
        .expect("GetTables");
    let tables = fetch(&mut client, info).await.expect("GetTables rows");
    let tables = pretty_format_batches(&tables).expect("format").to_string();
    assert_eq!(
        lines(&tables),
        [
            "+--------------+----------------+------------+-------------------+",
            "| catalog_name | db_schema_name | table_name | table_type        |",
            "+--------------+----------------+------------+-------------------+",
            "| datafusion   | public         | totals     | MATERIALIZED VIEW |",
            "| datafusion   | public         | trades     | STREAM            |",
            "+--------------+----------------+------------+-------------------+",
        ]
    );
    let qualified = query(
        &mut client,
        "SELECT count(*) AS n FROM datafusion.public.totals",
    )
    .await
    .expect("SELECT with the name GetTables gave");
    assert_eq!(
        lines(&qualified),
        ["+---+", "| n |", "+---+", "| 3 |", "+---+"]
    );

    let streams = query(&mut client, "SHOW STREAMS")
        .await
        .expect("SHOW STREAMS");
    assert_eq!(
        lines(&streams),
        [
            "+--------+-----------+-----------+",
            "| name   | connector | watermark |",
            "+--------+-----------+-----------+",
            "| trades | file      | ts - 10s  |",
            "+--------+-----------+-----------+",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_statement_is_an_error_and_the_server_lives_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;

    let missing = query(&mut client, "SELECT * FROM nowhere")
        .await
        .expect_err("a query over a missing table");
    assert!(
        missing.contains("invalid argument")
            && missing.contains("table 'datafusion.public.nowhere' not found"),
        "{missing}"
    );

    let unparsable = query(&mut client, "SELEC 1")
        .await
        .expect_err("a statement that does not parse");
    assert!(
        unparsable.contains("invalid argument") && unparsable.contains("SELEC"),
        "{unparsable}"
    );

    let two = query(&mut client, "SHOW STREAMS; SHOW VIEWS")
        .await
        .expect_err("two statements in one request");
    assert!(two.contains("one statement, but 2 were given"), "{two}");

    let rows_as_update = client
        .execute_update("SHOW STREAMS".to_string(), None)
        .await
        .expect_err("a query sent as an update")
        .to_string();
    assert!(rows_as_update.contains("returns rows"), "{rows_as_update}");

    // Still serving: the next statements run.
    let created = client
        .execute_update(
            "CREATE STREAM ticks WITH (connector = 'stocks', rate = '0', limit = '10')".to_string(),
            None,
        )
        .await
        .expect("CREATE STREAM after the errors");
    assert_eq!(created, 0);
    let streams = query(&mut client, "SHOW STREAMS")
        .await
        .expect("SHOW STREAMS");
    assert_eq!(
        lines(&streams),
        [
            "+-------+-----------+-----------+",
            "| name  | connector | watermark |",
            "+-------+-----------+-----------+",
            "| ticks | stocks    | ts - 2s   |",
            "+-------+-----------+-----------+",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_for_browsing_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .expect("GetSqlInfo");
    let batches = fetch(&mut client, info).await.expect("GetSqlInfo rows");
    let table = pretty_format_batches(&batches).expect("format").to_string();
    assert!(table.contains("DataFibers"), "{table}");

    let info = client.get_table_types().await.expect("GetTableTypes");
    let batches = fetch(&mut client, info).await.expect("GetTableTypes rows");
    let table = pretty_format_batches(&batches).expect("format").to_string();
    assert_eq!(
        lines(&table),
        [
            "+-------------------+",
            "| table_type        |",
            "+-------------------+",
            "| MATERIALIZED VIEW |",
            "| SINK              |",
            "| STREAM            |",
            "| TABLE             |",
            "+-------------------+",
        ]
    );

    let info = client.get_catalogs().await.expect("GetCatalogs");
    let batches = fetch(&mut client, info).await.expect("GetCatalogs rows");
    let table = pretty_format_batches(&batches).expect("format").to_string();
    assert_eq!(
        lines(&table),
        [
            "+--------------+",
            "| catalog_name |",
            "+--------------+",
            "| datafusion   |",
            "+--------------+"
        ]
    );

    let info = client
        .get_db_schemas(CommandGetDbSchemas::default())
        .await
        .expect("GetDbSchemas");
    let batches = fetch(&mut client, info).await.expect("GetDbSchemas rows");
    let table = pretty_format_batches(&batches).expect("format").to_string();
    assert_eq!(
        lines(&table),
        [
            "+--------------+----------------+",
            "| catalog_name | db_schema_name |",
            "+--------------+----------------+",
            "| datafusion   | public         |",
            "+--------------+----------------+",
        ]
    );

    // Transactions are not supported: refused with a message, not faked.
    let transaction = client
        .begin_transaction()
        .await
        .expect_err("transactions are not supported")
        .to_string();
    assert!(
        transaction.contains("transactions (ActionBeginTransactionRequest): not implemented"),
        "{transaction}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_and_its_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path());
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE STREAM ticks WITH (connector = 'stocks', rate = '100')".to_string(),
            None,
        )
        .await
        .expect("CREATE STREAM over a live feed");
    client
        .execute_update(
            "CREATE MATERIALIZED VIEW live WITH (archive = 'parquet', path = 'live') AS \
             SELECT symbol, price FROM ticks"
                .to_string(),
            None,
        )
        .await
        .expect("CREATE MATERIALIZED VIEW over a live feed");

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("shutting down: stopping jobs"), "{stderr}");
}
