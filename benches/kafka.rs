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

use fibers_engine::{Engine, EngineConfig, StatementResult};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{cpu_time, peak_rss_kib};

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
    runtime.block_on(create_topic(&brokers, &topic))?;
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

async fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new], &AdminOptions::new()).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
    }
    Ok(())
}

fn produce(brokers: &str, topic: &str, messages: u64) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
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
        loop {
            let record = BaseRecord::<str, str>::to(topic)
                .partition(partition)
                .key(symbol)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => std::thread::sleep(Duration::from_millis(5)),
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}

/// The baseline: fetch every message and count it.
fn consume_only(brokers: &str, topic: &str, messages: u64) -> anyhow::Result<Measurement> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-baseline")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    let mut count = 0u64;
    let mut bytes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < messages && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            bytes += rdkafka::Message::payload_len(&message) as u64;
            count += 1;
        }
    }
    anyhow::ensure!(count == messages, "read {count} of {messages} messages");
    let measurement = Measurement {
        name: "rdkafka BaseConsumer: fetch + count",
        messages: count,
        cpu: cpu_time() - cpu,
        wall: wall.elapsed(),
    };
    std::hint::black_box(bytes);
    Ok(measurement)
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
    let jobs = engine.execute_script("SHOW JOBS").await?;
    let input = match jobs.first() {
        Some(StatementResult::Rows { batches, .. }) => batches
            .first()
            .and_then(|b| {
                b.column_by_name("input_rows")?
                    .as_any()
                    .downcast_ref::<arrow::array::UInt64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0),
        _ => 0,
    };
    engine.shutdown().await;
    Ok(Measurement {
        name,
        messages: input,
        cpu,
        wall,
    })
}
