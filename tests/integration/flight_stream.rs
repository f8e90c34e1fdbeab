//! `fibers serve` results that stream: SUBSCRIBE to views and streams,
//! large ad-hoc results, prepared statements with parameters, and ingest.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandStatementIngest, TableDefinitionOptions, TableExistsOption};
use arrow_flight::{FlightInfo, Ticket};
use futures::{StreamExt, TryStreamExt};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{test_brokers, unique_name};
use crate::server::{Server, fetch, query};

/// How long a test waits for rows a running job produces.
const PATIENCE: Duration = Duration::from_secs(120);

async fn update(client: &mut FlightSqlServiceClient<Channel>, sql: &str) {
    client
        .execute_update(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Starts the DoGet of a query's only endpoint.
async fn open(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> FlightRecordBatchStream {
    let ticket: Ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    client.do_get(ticket).await.expect("DoGet")
}

/// The next batch with rows, waiting at most [`PATIENCE`].
async fn next_rows(rows: &mut FlightRecordBatchStream) -> RecordBatch {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match rows.next().await {
                Some(Ok(batch)) if batch.num_rows() > 0 => return batch,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the subscription failed: {e}"),
                None => panic!("the subscription ended"),
            }
        }
    })
    .await
    .expect("rows within the patience")
}

const LIVE_TRADES: &str =
    "CREATE STREAM live WITH (connector = 'stocks', rate = '2000', symbols = '3')";

const PER_SECOND: &str = "CREATE MATERIALIZED VIEW per_second
       WITH (archive = 'delta', path = 'per_second', commit_interval = '1s') AS
     SELECT symbol, window_start, window_end, count(*) AS trades
     FROM TUMBLE(live, ts, INTERVAL '1' SECOND)
     GROUP BY symbol, window_start, window_end";

/// (symbol, window_start in µs) of every row.
fn windows(batches: &[RecordBatch]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for batch in batches {
        let symbols = batch.column(0).as_string::<i32>();
        let starts = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            out.push((symbols.value(i).to_string(), starts.value(i)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_a_running_views_rows_from_now_and_from_the_beginning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;
    update(&mut client, LIVE_TRADES).await;
    update(&mut client, PER_SECOND).await;

    // FROM NOW: the FlightInfo announces the view's schema as ad-hoc
    // queries see it, and rows arrive as windows close.
    let info = client
        .execute("SUBSCRIBE per_second".into(), None)
        .await
        .expect("SUBSCRIBE");
    let schema = Schema::try_from(info.clone()).expect("a schema in the FlightInfo");
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["symbol", "window_start", "window_end", "trades"]);
    assert_eq!(
        schema.field(1).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    let mut live = open(&mut client, info).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let batch = next_rows(&mut live).await;
        assert_eq!(batch.schema().fields().len(), 4);
        assert!(
            batch
                .column(3)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .all(|&n| n > 0)
        );
        seen.extend(windows(&[batch]));
    }
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a window came twice: {seen:?}");
    // Leaving is dropping the stream; the server lives on.
    drop(live);

    // FROM BEGINNING: the archived windows first (the earliest window is
    // the archive's), then the new ones, none twice.
    let archived = query(&mut client, "SELECT count(*) AS n FROM per_second")
        .await
        .expect("count the archive");
    assert!(
        !archived.contains("| 0 "),
        "the archive has windows:\n{archived}"
    );
    let info = client
        .execute("SUBSCRIBE per_second FROM BEGINNING".into(), None)
        .await
        .expect("SUBSCRIBE FROM BEGINNING");
    let mut all = open(&mut client, info).await;
    let mut rows = Vec::new();
    // Read past the archive into live windows: more rows than the archive
    // held when subscribing.
    let first = next_rows(&mut all).await;
    rows.extend(windows(&[first]));
    let at_start: usize = archived
        .lines()
        .find_map(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
        .expect("a count");
    while rows.len() <= at_start + 6 {
        rows.extend(windows(&[next_rows(&mut all).await]));
    }
    drop(all);
    let unique: BTreeSet<_> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "a window came twice");
    let earliest = query(&mut client, "SELECT min(window_start) AS m FROM per_second")
        .await
        .expect("earliest window");
    let earliest_seen = rows.iter().map(|(_, start)| *start).min().unwrap();
    let earliest_archived = query(
        &mut client,
        &format!(
            "SELECT count(*) AS n FROM per_second WHERE window_start = to_timestamp_micros({earliest_seen})"
        ),
    )
    .await
    .expect("the earliest window seen is archived");
    assert!(
        !earliest_archived.contains("| 0 "),
        "the earliest window subscribed ({earliest_seen}) is the archive's first:\n{earliest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_a_stream_and_stop_the_server_under_a_subscriber() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path());
    let mut client = server.client().await;
    update(&mut client, LIVE_TRADES).await;

    let info = client
        .execute("SUBSCRIBE live".into(), None)
        .await
        .expect("SUBSCRIBE a stream");
    let mut rows = open(&mut client, info).await;
    let batch = next_rows(&mut rows).await;
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["symbol", "price", "volume", "ts"]);

    // A subscription to nothing is an error naming it.
    let error = client
        .execute("SUBSCRIBE nothing".into(), None)
        .await
        .expect_err("no such object");
    assert!(
        error.to_string().contains("'nothing' does not exist"),
        "{error}"
    );

    // SIGTERM ends the subscription and the server stops, rather than
    // waiting for the subscriber forever.
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    let rest = tokio::time::timeout(PATIENCE, async {
        let mut tail = Vec::new();
        while let Some(item) = rows.next().await {
            tail.push(item.is_ok());
        }
        tail
    })
    .await
    .expect("the subscription ends with the server");
    assert!(rest.len() < 10_000, "the stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream_in_batches_with_their_schema_announced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;
    let info = client
        .execute(
            "SELECT value, value * 2 AS twice FROM generate_series(1, 1000000)".into(),
            None,
        )
        .await
        .expect("GetFlightInfo");
    let schema = Schema::try_from(info.clone()).expect("a schema in the FlightInfo");
    assert_eq!(schema.field(1).name(), "twice");
    let mut rows = open(&mut client, info).await;
    let (mut batches, mut count, mut sum) = (0, 0, 0i64);
    while let Some(batch) = rows.try_next().await.expect("a batch") {
        batches += 1;
        count += batch.num_rows();
        sum += batch
            .column(1)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .sum::<i64>();
    }
    assert_eq!(count, 1_000_000);
    assert_eq!(sum, 1_000_000 * 1_000_001);
    assert!(batches > 10, "streamed in {batches} batches");
}

fn trades_stream_sql() -> String {
    format!(
        "CREATE STREAM trades (
           symbol TEXT NOT NULL, price DOUBLE, volume BIGINT, ts TIMESTAMP,
           WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
         ) WITH (connector = 'file', path = '{}', format = 'json')",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/slt/data/trades.jsonl")
            .display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_parameters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;

    // A prepared statement that changes something runs at execute.
    let mut create = client
        .prepare(trades_stream_sql(), None)
        .await
        .expect("prepare CREATE STREAM");
    assert_eq!(create.execute_update().await.expect("run it"), 0);

    let mut select = client
        .prepare(
            "SELECT symbol, count(*) AS n, sum(volume) AS volume FROM trades
             WHERE volume >= $1 AND symbol <> $2 GROUP BY symbol ORDER BY symbol"
                .into(),
            None,
        )
        .await
        .expect("prepare SELECT");
    let parameters = select.parameter_schema().expect("parameter schema").clone();
    let types: Vec<(&str, &DataType)> = parameters
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(types, [("$1", &DataType::Int64), ("$2", &DataType::Utf8)]);
    let names: Vec<String> = select
        .dataset_schema()
        .expect("dataset schema")
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["symbol", "n", "volume"]);

    let bind = |volume: i64, symbol: &str| {
        RecordBatch::try_new(
            Arc::new(parameters.clone()),
            vec![
                Arc::new(Int64Array::from(vec![volume])),
                Arc::new(StringArray::from(vec![symbol])),
            ],
        )
        .expect("parameters")
    };
    // Each binding runs like the query with those literals.
    for (volume, symbol) in [(0, "none"), (150, "AAPL"), (1_000_000, "none")] {
        select.set_parameters(bind(volume, symbol)).expect("bind");
        let info = select.execute().await.expect("execute prepared");
        let got = fetch(&mut client, info).await.expect("rows");
        let expected = query(
            &mut client,
            &format!(
                "SELECT symbol, count(*) AS n, sum(volume) AS volume FROM trades
                 WHERE volume >= {volume} AND symbol <> '{symbol}' GROUP BY symbol ORDER BY symbol"
            ),
        )
        .await
        .expect("the same query with literals");
        let got = arrow::util::pretty::pretty_format_batches(&got)
            .expect("format")
            .to_string();
        // An empty result prints no table; compare row lines either way.
        let rows = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("| "))
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows(&got),
            rows(&expected),
            "volume >= {volume}, symbol <> {symbol}"
        );
    }
    select.close().await.expect("close");

    // Two rows of parameters are refused with a message.
    let mut again = client
        .prepare("SELECT $1 + 1 AS x".into(), None)
        .await
        .expect("prepare");
    let two = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![1, 2]))],
    )
    .expect("batch");
    again.set_parameters(two).expect("bind");
    let error = again.execute().await.expect_err("two rows");
    assert!(
        error.to_string().contains("one row of parameter values"),
        "{error}"
    );

    // A bad statement fails at prepare, naming the fault.
    let error = client
        .prepare("SELECT nope FROM trades".into(), None)
        .await
        .expect_err("unknown column");
    assert!(error.to_string().contains("nope"), "{error}");
}

fn ingest_command(table: &str) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: 2, // fail
            if_exists: TableExistsOption::Append.into(),
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

fn quotes(symbols: &[&str], prices: &[f64]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("price", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from(symbols.to_vec())),
            Arc::new(Float64Array::from(prices.to_vec())),
        ],
    )
    .expect("batch")
}

async fn ingest(
    client: &mut FlightSqlServiceClient<Channel>,
    command: CommandStatementIngest,
    batches: Vec<RecordBatch>,
) -> Result<i64, String> {
    client
        .execute_ingest(command, futures::stream::iter(batches.into_iter().map(Ok)))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_refuses_what_it_cannot_append_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;
    update(&mut client, &trades_stream_sql()).await;
    let rows = || vec![quotes(&["AAPL"], &[1.0])];

    let error = ingest(&mut client, ingest_command("trades"), rows())
        .await
        .expect_err("a file stream");
    assert!(error.contains("publishes into a Kafka topic"), "{error}");
    let error = ingest(&mut client, ingest_command("missing"), rows())
        .await
        .expect_err("no stream");
    assert!(error.contains("stream 'missing' does not exist"), "{error}");
    let mut replace = ingest_command("trades");
    replace.table_definition_options = Some(TableDefinitionOptions {
        if_not_exist: 2,
        if_exists: TableExistsOption::Replace.into(),
    });
    let error = ingest(&mut client, replace, rows())
        .await
        .expect_err("replace");
    assert!(error.contains("only appended"), "{error}");
    // The server lives on.
    let streams = query(&mut client, "SHOW STREAMS")
        .await
        .expect("SHOW STREAMS");
    assert!(streams.contains("trades"), "{streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_appends_batches_to_a_kafka_stream() {
    let Some(brokers) = test_brokers() else {
        eprintln!("skipped: FIBERS_TEST_BROKERS is not set");
        return;
    };
    let topic = unique_name("ingest");
    crate::common::kafka_tool(&[
        "create-topic",
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--partitions",
        "2",
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;
    update(
        &mut client,
        &format!(
            "CREATE STREAM quotes (symbol TEXT NOT NULL, price DOUBLE, volume BIGINT)
             WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json')"
        ),
    )
    .await;

    // Columns by name, any subset: volume is left NULL.
    let symbols: Vec<String> = (0..500).map(|i| format!("S{}", i % 7)).collect();
    let symbols: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let prices: Vec<f64> = (0..500).map(|i| i as f64 / 4.0).collect();
    let batches = vec![
        quotes(&symbols[..200], &prices[..200]),
        quotes(&symbols[200..], &prices[200..]),
    ];
    let added = ingest(&mut client, ingest_command("quotes"), batches)
        .await
        .expect("ingest");
    assert_eq!(added, 500);
    let summary = query(
        &mut client,
        "SELECT count(*) AS n, sum(price) AS total, count(volume) AS volumes FROM quotes",
    )
    .await
    .expect("read the topic back");
    let expected_total: f64 = prices.iter().sum();
    assert!(
        summary.contains(&format!("| 500 | {expected_total} | 0       |")),
        "{summary}"
    );

    // A column the stream lacks, and a value of the wrong type, are
    // refused naming the column; nothing of the bad batch is published.
    let bogus = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "bogus",
            DataType::Int64,
            true,
        )])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .expect("batch");
    let error = ingest(&mut client, ingest_command("quotes"), vec![bogus])
        .await
        .expect_err("unknown column");
    assert!(error.contains("no column 'bogus'"), "{error}");
    let text_price = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("price", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["X"])),
            Arc::new(StringArray::from(vec!["cheap"])),
        ],
    )
    .expect("batch");
    let error = ingest(&mut client, ingest_command("quotes"), vec![text_price])
        .await
        .expect_err("a price that is not a number");
    assert!(error.contains("column 'price'"), "{error}");
    let count = query(&mut client, "SELECT count(*) AS n FROM quotes")
        .await
        .expect("count");
    assert!(count.contains("| 500 |"), "{count}");
    assert_eq!(
        Code::InvalidArgument,
        client
            .execute("SELECT * FROM quotez".into(), None)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                arrow_flight::error::FlightError::Tonic(status) => status.code(),
                _ => Code::Unknown,
            })
            .expect_err("unknown table")
    );
}
