//! The Kafka path: reading JSON trades from a topic on a real broker, by a
//! plain rdkafka consumer that only counts messages (the baseline) and by
//! DataFibers (decode into Arrow, watermark, then a query), in one run.
//!
//! ```text
//! scripts/kafka-broker.sh start 9092
//! FIBERS_BENCH_BROKERS=127.0.0.1:9092 cargo bench --bench kafka                 # 2M messages
//! FIBERS_BENCH_BROKERS=127.0.0.1:9092 cargo bench --bench kafka -- --messages 500000
//! ```
//!
//! The messages are produced once, before anything is timed. Cost is CPU
//! time of the whole process (user + system, librdkafka's threads
//! included) per message, so the ratio says how much DataFibers adds to
//! merely fetching the messages.

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use fibers_engine::{Engine, EngineConfig};
use rdkafka::producer::{BaseRecord, Producer};
use support::{cpu_time, job_counter, kafka, peak_rss_kib};

const PARTITIONS: i32 = 3;
const SYMBOLS: &[&str] = &[
    "AAPL", "MSFT", "AMZN", "GOOG", "META", "NVDA", "TSLA", "JPM",
];

struct Measurement {
    name: &'static str,
    messages: u64,
    cpu: Duration,
    wall: Duration,
}

fn main() -> anyhow::Result<()> {
    let Ok(brokers) =
        std::env::var("FIBERS_BENCH_BROKERS").or_else(|_| std::env::var("FIBERS_TEST_BROKERS"))
    else {
        eprintln!(
            "kafka bench skipped: set FIBERS_BENCH_BROKERS (start a broker with scripts/kafka-broker.sh start)"
        );
        return Ok(());
    };
    let args: Vec<String> = std::env::args().collect();
    let messages: u64 = args
        .iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let topic = format!("bench-trades-{messages}-{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new()?;

    let started = Instant::now();
    runtime.block_on(kafka::create_topic(&brokers, &topic, PARTITIONS))?;
    produce(&brokers, &topic, messages)?;
    let produce_time = started.elapsed();
    println!(
        "produced {messages} JSON trades into '{topic}' ({PARTITIONS} partitions) in {:.1} s",
        produce_time.as_secs_f64()
    );

    let mut results = vec![consume_only(&brokers, &topic, messages)?];
    results.push(runtime.block_on(datafibers(
        "DataFibers: decode + filter (no output)",
        &brokers,
        &topic,
        "SELECT symbol, price FROM trades WHERE volume < 0",
    ))?);
    results.push(runtime.block_on(datafibers(
        "DataFibers: decode + 10 s VWAP",
        &brokers,
        &topic,
        "SELECT symbol, window_start, window_end, sum(price * volume) / sum(volume) AS vwap,
                sum(volume) AS volume
         FROM TUMBLE(trades, ts, INTERVAL '10' SECOND) GROUP BY symbol, window_start, window_end",
    ))?);
    results.push(consume_only(&brokers, &topic, messages)?);

    let baseline = results
        .iter()
        .filter(|m| m.name.starts_with("rdkafka"))
        .map(|m| m.cpu.as_secs_f64())
        .sum::<f64>()
        / 2.0;
    println!();
    println!("| run | messages | CPU s | wall s | messages / CPU-s | CPU vs baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    for m in &results {
        let cpu = m.cpu.as_secs_f64();
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {:.2}x |",
            m.name,
            m.messages,
            cpu,
            m.wall.as_secs_f64(),
            m.messages as f64 / cpu,
            cpu / baseline
        );
    }
    println!();
    println!(
        "baseline: the mean CPU of the two plain-consumer runs; peak RSS {} MiB",
        peak_rss_kib() / 1024
    );
    Ok(())
}

fn produce(brokers: &str, topic: &str, messages: u64) -> anyhow::Result<()> {
    let producer = kafka::producer(brokers)?;
    let start_ms: i64 = 1_735_828_200_000;
    let mut value = String::with_capacity(128);
    for i in 0..messages {
        let symbol = SYMBOLS[(i % SYMBOLS.len() as u64) as usize];
        let price = 100.0 + (i % 1000) as f64 * 0.01;
        let volume = 1 + i % 500;
        // One trade per millisecond; the JSON timestamp is what a
        // producer would write.
        let ts = chrono::DateTime::from_timestamp_millis(start_ms + i as i64)
            .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        value.clear();
        use std::fmt::Write;
        write!(
            value,
            r#"{{"symbol":"{symbol}","price":{price:.2},"volume":{volume},"ts":"{ts}"}}"#
        )?;
        let partition = (i % PARTITIONS as u64) as i32;
        let record = BaseRecord::<str, str>::to(topic)
            .partition(partition)
            .key(symbol)
            .payload(&value);
        kafka::send(&producer, record)?;
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}

/// The baseline: fetch every message and count it.
fn consume_only(brokers: &str, topic: &str, messages: u64) -> anyhow::Result<Measurement> {
    let (cpu, wall) = kafka::consume_all(brokers, topic, PARTITIONS, messages)?;
    Ok(Measurement {
        name: "rdkafka BaseConsumer: fetch + count",
        messages,
        cpu,
        wall,
    })
}

/// A bounded DataFibers job over the topic: every message is decoded into
/// Arrow, watermarked and run through `query`.
async fn datafibers(
    name: &'static str,
    brokers: &str,
    topic: &str,
    query: &str,
) -> anyhow::Result<Measurement> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    engine
        .execute_script(&format!(
            "CREATE STREAM trades (symbol TEXT, price DOUBLE, volume BIGINT, ts TIMESTAMP,
                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}',
                   format = 'json', end = 'latest')"
        ))
        .await?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    engine
        .execute_script(&format!(
            "CREATE MATERIALIZED VIEW out WITH (archive = 'parquet') AS {query}"
        ))
        .await?;
    engine.wait_for_bounded_jobs().await;
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    if let Some((job, e)) = engine.failures().await.into_iter().next() {
        anyhow::bail!("job {job} failed: {e}");
    }
    let input = job_counter(&engine, "input_rows").await?;
    engine.shutdown().await;
    Ok(Measurement {
        name,
        messages: input,
        cpu,
        wall,
    })
}
