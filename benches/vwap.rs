//! VWAP over the built-in stock feed: DataFibers' streaming run against
//! DataFusion running the same aggregation as one batch query over the
//! same in-memory batches (the baseline), in one run.
//!
//! ```text
//! cargo bench --bench vwap                       # 10M events
//! cargo bench --bench vwap -- --events 2000000   # quicker
//! ```
//!
//! Events are generated before the timed region. Throughput is events per
//! CPU-second of the whole process (user + system), so a baseline that uses
//! both cores is not flattered by wall time. Peak memory of the streaming
//! run is measured in child processes that generate events on the fly, for
//! 10M and 50M events: the window state must not grow with the event count.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use fibers_engine::{QueryRunner, StocksConfig, StocksGenerator, default_symbols};

#[path = "support.rs"]
mod support;

use support::{cpu_time, peak_rss_kib};

const BATCH_ROWS: usize = 8192;
const RUNS: usize = 3;

const STREAM: &str = "CREATE STREAM trades WITH (connector = 'stocks', rate = '0')";
const STREAMING_QUERY: &str = "SELECT symbol, window_start, window_end,
        sum(price * volume) / sum(volume) AS vwap, sum(volume) AS volume, count(*) AS trades
    FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
    GROUP BY symbol, window_start, window_end";
const BATCH_QUERY: &str = "SELECT symbol, window_start, window_start + INTERVAL '10 seconds' AS window_end,
        sum(price * volume) / sum(volume) AS vwap, sum(volume) AS volume, count(*) AS trades
    FROM (SELECT *, date_bin(INTERVAL '10 seconds', ts, TIMESTAMP '1970-01-01T00:00:00') AS window_start FROM trades)
    GROUP BY symbol, window_start";

fn generator() -> StocksGenerator {
    StocksGenerator::new(StocksConfig {
        seed: 42,
        symbols: default_symbols(38),
        step_nanos: 1_000_000,
        disorder_nanos: 2_000_000_000,
        start_nanos: 1_735_828_200_000_000_000,
        limit: None,
    })
}

struct Measurement {
    cpu: Duration,
    wall: Duration,
    rows: usize,
}

async fn streaming(batches: &[RecordBatch]) -> Measurement {
    let mut runner = QueryRunner::new(STREAM, STREAMING_QUERY)
        .await
        .expect("plan");
    let (cpu, wall) = (cpu_time(), Instant::now());
    let mut rows = 0;
    for batch in batches {
        rows += runner
            .push(batch.clone())
            .await
            .expect("push")
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
    }
    rows += runner
        .finish()
        .await
        .expect("finish")
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>();
    Measurement {
        cpu: cpu_time() - cpu,
        wall: wall.elapsed(),
        rows,
    }
}

async fn batch(batches: &[RecordBatch]) -> Measurement {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(batches[0].schema(), vec![batches.to_vec()]).expect("table");
    ctx.register_table("trades", Arc::new(table))
        .expect("register");
    let (cpu, wall) = (cpu_time(), Instant::now());
    let result = ctx
        .sql(BATCH_QUERY)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    Measurement {
        cpu: cpu_time() - cpu,
        wall: wall.elapsed(),
        rows: result.iter().map(|b| b.num_rows()).sum(),
    }
}

fn best(runs: Vec<Measurement>) -> Measurement {
    runs.into_iter()
        .min_by_key(|m| m.cpu)
        .expect("at least one run")
}

/// Child process: stream `events` generated on the fly; print peak RSS.
fn memory_child(events: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut runner = QueryRunner::new(STREAM, STREAMING_QUERY)
            .await
            .expect("plan");
        let mut generator = generator();
        let mut produced = 0;
        while produced < events {
            let batch = generator.next_batch(BATCH_ROWS).expect("unbounded feed");
            produced += batch.num_rows() as u64;
            runner.push(batch).await.expect("push");
        }
        runner.finish().await.expect("finish");
    });
    println!("{}", peak_rss_kib());
}

fn memory_of(events: u64) -> u64 {
    let output = Command::new(std::env::current_exe().expect("own path"))
        .args(["--memory-child", &events.to_string()])
        .output()
        .expect("run child");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("child prints its peak RSS")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(events) = arg("--memory-child") {
        return memory_child(events);
    }
    let events = arg("--events").unwrap_or(10_000_000);

    let mut generator = generator();
    let mut batches = Vec::new();
    let mut produced = 0;
    while produced < events {
        let rows = BATCH_ROWS.min((events - produced) as usize);
        let batch = generator.next_batch(rows).expect("unbounded feed");
        produced += batch.num_rows() as u64;
        batches.push(batch);
    }

    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = best(
        (0..RUNS)
            .map(|_| single.block_on(streaming(&batches)))
            .collect(),
    );
    let base = best((0..RUNS).map(|_| multi.block_on(batch(&batches))).collect());
    assert_eq!(
        stream.rows, base.rows,
        "streaming and batch runs disagree on the number of windows"
    );

    let rate = |m: &Measurement| events as f64 / m.cpu.as_secs_f64();
    println!(
        "VWAP per symbol and 10 s window, {events} events, {} output rows, best of {RUNS}\n",
        stream.rows
    );
    println!("| run | events/CPU-s | CPU s | wall s |");
    println!("|---|---:|---:|---:|");
    for (name, m) in [
        ("DataFibers streaming (1 thread)", &stream),
        ("DataFusion batch query (baseline)", &base),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} |",
            rate(m),
            m.cpu.as_secs_f64(),
            m.wall.as_secs_f64()
        );
    }
    println!(
        "\nstreaming / batch throughput per CPU-second: {:.2}",
        rate(&stream) / rate(&base)
    );

    let small = memory_of(10_000_000);
    let large = memory_of(50_000_000);
    println!(
        "peak RSS of the streaming run: 10M events {} MiB, 50M events {} MiB, ratio {:.2}",
        small / 1024,
        large / 1024,
        large as f64 / small.max(1) as f64
    );
}
