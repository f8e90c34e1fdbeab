//! Serving over Arrow Flight SQL: how fast `DoGet` delivers a large ad-hoc
//! `SELECT`, and how soon a `SUBSCRIBE`r sees an event, in one run.
//!
//! ```text
//! cargo bench --bench flight                          # 5M rows, 20 s of SUBSCRIBE
//! cargo bench --bench flight -- --rows 1000000 --seconds 5
//! ```
//!
//! The engine, the Flight SQL server and the client share one process and
//! talk over loopback TCP, so both ends compete for the machine's cores.
//!
//! * **DoGet throughput.** A Parquet archive of `--rows` trades is read by
//!   `SELECT *`: first in-process through the engine's streamed result
//!   (the baseline: the same plan with no Flight), then through Flight
//!   SQL (`GetFlightInfo` + `DoGet`, the client decoding every batch).
//!   Reported: rows/s and the Arrow IPC bytes/s on the wire, and the
//!   ratio of Flight to in-process.
//! * **SUBSCRIBE latency.** The built-in stock feed runs paced at `--rate`
//!   events/s; an event's `ts` is the moment the generator makes it. A
//!   filtering view over the feed is subscribed to, and for every row
//!   received, latency = receipt time - `ts`. The baseline subscribes to
//!   the stream itself (source to client, no job, operator or feed). The
//!   view commits its Parquet archive every second, so the window holds a
//!   commit each second. Reported: p50, p99 and max after a warm-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use arrow::datatypes::TimestampNanosecondType;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use fibers_engine::{Engine, EngineConfig, StatementOutput};
use fibers_flight::FlightServer;
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;

struct Args {
    rows: u64,
    seconds: u64,
    rate: u64,
}

fn args() -> Args {
    let mut args = Args {
        rows: 5_000_000,
        seconds: 20,
        rate: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--rows" => args.rows = value(),
            "--seconds" => args.seconds = value(),
            "--rate" => args.rate = value(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    args
}

async fn run(engine: &Engine, sql: &str) -> StatementOutput {
    let statement = fibers_engine::parse_script(sql).expect("parse").remove(0);
    engine
        .run(&statement, None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn client(address: SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("URL")
        .connect()
        .await
        .expect("connect");
    FlightSqlServiceClient::new(channel)
}

struct Delivery {
    rows: u64,
    bytes: u64,
    wall: Duration,
}

impl Delivery {
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64()
    }
}

/// `SELECT *` over the archive in-process: the engine's streamed result,
/// no Flight.
async fn in_process(engine: &Engine) -> Delivery {
    let started = Instant::now();
    let StatementOutput::Rows(rows) = run(engine, "SELECT * FROM archive").await else {
        panic!("no rows");
    };
    let (mut count, mut bytes) = (0, 0);
    let mut stream = rows.into_stream();
    while let Some(batch) = stream.try_next().await.expect("batch") {
        count += batch.num_rows() as u64;
        bytes += batch.get_array_memory_size() as u64;
    }
    Delivery {
        rows: count,
        bytes,
        wall: started.elapsed(),
    }
}

/// `SELECT *` over the archive through Flight SQL, the client decoding
/// each batch; bytes are the IPC messages on the wire.
async fn over_flight(address: SocketAddr) -> Delivery {
    let mut sql = client(address).await;
    let started = Instant::now();
    let info = sql
        .execute("SELECT * FROM archive".into(), None)
        .await
        .expect("GetFlightInfo");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("URL")
        .connect()
        .await
        .expect("connect");
    let mut flight = FlightServiceClient::new(channel);
    let data = flight.do_get(ticket).await.expect("DoGet").into_inner();
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    let data = data
        .map_ok(move |d| {
            counted.fetch_add(
                (d.data_header.len() + d.data_body.len()) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            d
        })
        .map_err(FlightError::from);
    let mut batches = FlightRecordBatchStream::new_from_flight_data(data);
    let mut count = 0;
    while let Some(batch) = batches.try_next().await.expect("batch") {
        count += batch.num_rows() as u64;
    }
    Delivery {
        rows: count,
        bytes: bytes.load(std::sync::atomic::Ordering::Relaxed),
        wall: started.elapsed(),
    }
}

/// Latencies (receipt - ts) of the rows a subscription delivers in
/// `window`, after `warm_up`.
async fn latencies(
    address: SocketAddr,
    statement: &str,
    warm_up: Duration,
    window: Duration,
) -> Vec<Duration> {
    let mut sql = client(address).await;
    let info = sql
        .execute(statement.into(), None)
        .await
        .expect("SUBSCRIBE");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut rows = sql.do_get(ticket).await.expect("DoGet");
    let started = Instant::now();
    let mut out = Vec::new();
    while started.elapsed() < warm_up + window {
        let batch = match tokio::time::timeout(Duration::from_secs(10), rows.next()).await {
            Ok(Some(batch)) => batch.expect("a batch"),
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no rows for 10 s"),
        };
        let now = chrono::Utc::now().timestamp_nanos_opt().expect("now");
        if started.elapsed() < warm_up {
            continue;
        }
        let ts = batch.column_by_name("ts").expect("a ts column");
        let stamps: Vec<i64> = match ts.as_primitive_opt::<TimestampNanosecondType>() {
            Some(ns) => ns.values().to_vec(),
            None => ts
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter()
                .map(|us| us * 1000)
                .collect(),
        };
        out.extend(
            stamps
                .into_iter()
                .map(|t| Duration::from_nanos(u64::try_from(now - t).unwrap_or(0))),
        );
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Arc::new(
        Engine::open(EngineConfig::new(dir.path()))
            .await
            .expect("engine"),
    );
    eprintln!("writing {} trades to a Parquet archive ...", args.rows);
    for sql in [
        format!(
            "CREATE STREAM trades WITH (connector = 'stocks', rate = '0', limit = '{}', symbols = '38')",
            args.rows
        ),
        "CREATE SINK archive WITH (connector = 'parquet', path = 'archive') AS SELECT * FROM trades"
            .to_string(),
        format!(
            "CREATE STREAM live WITH (connector = 'stocks', rate = '{}', symbols = '8', disorder = '0s')",
            args.rate
        ),
        "CREATE MATERIALIZED VIEW recent
           WITH (archive = 'parquet', path = 'recent', commit_interval = '1s') AS
           SELECT symbol, price, ts FROM live WHERE volume > 0"
            .to_string(),
    ] {
        run(&engine, &sql).await;
    }
    engine.wait_for_bounded_jobs().await;

    let server = FlightServer::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(Arc::clone(&engine), async {
        let _ = stopped.await;
    }));

    // Warm the page cache and the plan path once, then measure.
    in_process(&engine).await;
    let local = in_process(&engine).await;
    let flight = over_flight(address).await;
    assert_eq!(local.rows, args.rows, "the archive holds every trade");
    assert_eq!(flight.rows, local.rows, "Flight delivers every row");

    let warm_up = Duration::from_secs(3);
    let window = Duration::from_secs(args.seconds);
    let view = latencies(address, "SUBSCRIBE recent", warm_up, window).await;
    let stream = latencies(address, "SUBSCRIBE live", warm_up, window).await;

    let gb = |d: &Delivery| d.bytes as f64 / d.wall.as_secs_f64() / 1e9;
    println!(
        "\n## DoGet of `SELECT * FROM archive` ({} rows, 4 columns)\n",
        args.rows
    );
    println!("| path | rows/s | GB/s | wall |");
    println!("|---|---:|---:|---:|");
    println!(
        "| in-process stream (baseline, Arrow memory) | {:.0} | {:.2} | {:.2} s |",
        local.rows_per_second(),
        gb(&local),
        local.wall.as_secs_f64()
    );
    println!(
        "| Flight SQL DoGet over loopback (IPC bytes) | {:.0} | {:.2} | {:.2} s |",
        flight.rows_per_second(),
        gb(&flight),
        flight.wall.as_secs_f64()
    );
    println!(
        "\nFlight / in-process rows/s: {:.2}",
        flight.rows_per_second() / local.rows_per_second()
    );
    println!(
        "\n## SUBSCRIBE latency at {} events/s (event made -> row received, {} s after {} s warm-up)\n",
        args.rate,
        args.seconds,
        warm_up.as_secs()
    );
    println!("| subscription | rows | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, sorted) in [
        ("SUBSCRIBE live (stream, baseline)", &stream),
        ("SUBSCRIBE recent (filtering view)", &view),
    ] {
        assert!(!sorted.is_empty(), "{name} received rows");
        println!(
            "| {name} | {} | {} | {} | {} |",
            sorted.len(),
            ms(percentile(sorted, 0.5)),
            ms(percentile(sorted, 0.99)),
            ms(*sorted.last().expect("rows"))
        );
    }

    engine.close_subscriptions();
    let _ = stop.send(());
    serving.await.expect("server task").expect("server");
    engine.shutdown().await;
}
