//! Nexmark over Kafka: the bids of a Nexmark sequence, serialized as one
//! JSON object per message into a topic on a real broker, consumed by
//! DataFibers running q0, q1 and q5, beside the same queries over the same
//! bids as in-memory Arrow batches, and beside a plain rdkafka consumer
//! that only fetches and counts the messages (the baseline), in one run.
//!
//! ```text
//! FIBERS_BROKER=nisshi FIBERS_BROKER_DIR=$(mktemp -d) scripts/kafka-broker.sh start 9092
//! FIBERS_BENCH_BROKERS=127.0.0.1:9092 cargo bench --bench nexmark_kafka                  # 2M events
//! FIBERS_BENCH_BROKERS=127.0.0.1:9092 cargo bench --bench nexmark_kafka -- --events 300000 --runs 1
//! FIBERS_BENCH_BROKERS=127.0.0.1:9092 cargo bench --bench nexmark_kafka -- --queries q5
//! ```
//!
//! The figures of BENCHMARKS.md use nisshi's in-memory broker
//! (`FIBERS_BROKER=nisshi`): tansu with SQLite serves a few tens of
//! thousands of messages per second, so at millions of bids its pace, not
//! the engine's, sets the wall time (the CPU figures, of this process only,
//! hold on either).
//!
//! The bids are generated and produced once, before anything is timed, in
//! sequence order into a topic of 3 partitions keyed by auction, so each
//! partition is in event-time order (the engine keeps a watermark per
//! partition, so with no delay no bid is late). Each run is timed on its
//! own:
//!
//! * plain consumer: an rdkafka `BaseConsumer` fetching every message and
//!   summing its bytes;
//! * over Kafka: a bounded job of an engine (`end = 'latest'`) reading the
//!   topic, decoding the JSON into Arrow, watermarking and running the
//!   query into a `discard` sink;
//! * in memory: a [`QueryRunner`] fed the same bids as the generator made
//!   them (no fetch, no decode).
//!
//! Cost is CPU time of the whole process (user + system, librdkafka's
//! threads included); each figure is the best of `--runs` alternating
//! runs. A job over Kafka must produce as many rows as the in-memory run of
//! its query, so a broken decode cannot pass unnoticed. The process uses
//! mimalloc, as `fibers` does.

#[path = "support.rs"]
mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use fibers_engine::{Engine, EngineConfig, QueryRunner, read_stream};
use rdkafka::producer::{BaseRecord, Producer};
use support::nexmark::{self, Run};
use support::{job_counter, kafka, run_to_end};

const PARTITIONS: i32 = 3;
const BATCH_ROWS: usize = 8192;

/// The nexmark `bid` columns, declared for a Kafka stream: the same names
/// and types as the generator's, so the query files run unchanged.
const BID_COLUMNS: &str = "auction BIGINT NOT NULL, bidder BIGINT NOT NULL, \
     price BIGINT NOT NULL, channel TEXT NOT NULL, url TEXT NOT NULL, \
     date_time TIMESTAMP NOT NULL, extra TEXT NOT NULL, \
     WATERMARK FOR date_time AS date_time";

struct Args {
    events: u64,
    runs: usize,
    queries: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        events: 2_000_000,
        runs: 2,
        queries: vec!["q0".into(), "q1".into(), "q5".into()],
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = |name: &str| {
            given
                .next()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--events" => args.events = value("--events")?.parse()?,
            "--runs" => args.runs = value("--runs")?.parse::<usize>()?.max(1),
            "--queries" => {
                args.queries = value("--queries")?
                    .split(',')
                    .map(|q| q.trim().to_string())
                    .collect()
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => anyhow::bail!(
                "unknown argument '{other}'; expected --events N, --runs N or --queries q0,q1,q5"
            ),
        }
    }
    Ok(args)
}

/// What one DataFibers-over-Kafka job did.
struct KafkaRun {
    run: Run,
    late_rows: u64,
}

fn main() -> anyhow::Result<()> {
    let Ok(brokers) =
        std::env::var("FIBERS_BENCH_BROKERS").or_else(|_| std::env::var("FIBERS_TEST_BROKERS"))
    else {
        eprintln!(
            "nexmark_kafka bench skipped: set FIBERS_BENCH_BROKERS (start a broker with \
             scripts/kafka-broker.sh start 9092, then FIBERS_BENCH_BROKERS=127.0.0.1:9092)"
        );
        return Ok(());
    };
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let started = Instant::now();
    let bids = read_stream(&nexmark::create_stream("bid", args.events), BATCH_ROWS)?;
    let bid_count: u64 = bids.iter().map(|b| b.num_rows() as u64).sum();
    println!(
        "generated {bid_count} bids of {} events in {:.1} s",
        args.events,
        started.elapsed().as_secs_f64()
    );
    check_json_round_trip(&bids)?;

    let topic = format!("bench-nexmark-bids-{}-{}", args.events, std::process::id());
    let started = Instant::now();
    runtime.block_on(kafka::create_topic(&brokers, &topic, PARTITIONS))?;
    let bytes = produce(&brokers, &topic, &bids)?;
    println!(
        "produced {bid_count} JSON bids ({} MiB, {:.0} bytes each) into '{topic}' ({PARTITIONS} partitions) in {:.1} s",
        bytes >> 20,
        bytes as f64 / bid_count as f64,
        started.elapsed().as_secs_f64()
    );

    // The in-memory runners read the nexmark stream the batches came from.
    let mut scripts = Vec::new();
    for query in &args.queries {
        let script = nexmark::script(query, args.events)?;
        let runner = runtime.block_on(QueryRunner::from_script(&script))?;
        anyhow::ensure!(
            runner.streams() == ["bid"],
            "{query} reads {:?}; only queries over bids alone can run over the bid topic",
            runner.streams()
        );
        scripts.push(script);
    }

    let mut consumer_runs = Vec::new();
    let mut kafka_runs: Vec<Vec<KafkaRun>> = args.queries.iter().map(|_| Vec::new()).collect();
    let mut memory_runs: Vec<Vec<Run>> = args.queries.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.runs {
        consumer_runs.push(consume_only(&brokers, &topic, bid_count)?);
        for (i, query) in args.queries.iter().enumerate() {
            let kafka = runtime
                .block_on(over_kafka(&brokers, &topic, query))
                .with_context(|| format!("{query} over Kafka"))?;
            let runner = runtime.block_on(QueryRunner::from_script(&scripts[i]))?;
            let memory = runtime
                .block_on(nexmark::run_streaming(runner, &[("bid", bids.as_slice())]))
                .with_context(|| format!("{query} in memory"))?;
            anyhow::ensure!(
                kafka.run.events == bid_count,
                "{query} over Kafka read {} rows of {bid_count} bids",
                kafka.run.events
            );
            anyhow::ensure!(
                kafka.run.rows_out == memory.rows_out,
                "{query} over Kafka wrote {} rows, in memory {}: the same bids must give the same result",
                kafka.run.rows_out,
                memory.rows_out
            );
            if kafka.late_rows > 0 {
                eprintln!("{query} over Kafka dropped {} late rows", kafka.late_rows);
            }
            eprintln!(
                "{query}: over Kafka {:.0}/CPU-s, in memory {:.0}/CPU-s",
                kafka.run.per_cpu_second(),
                memory.per_cpu_second()
            );
            kafka_runs[i].push(kafka);
            memory_runs[i].push(memory);
        }
    }
    if let Err(e) = runtime.block_on(kafka::delete_topic(&brokers, &topic)) {
        eprintln!("could not delete topic '{topic}': {e}");
    }

    let baseline = nexmark::best(consumer_runs);
    let per_cpu = |r: &Run| r.events as f64 / r.cpu.as_secs_f64().max(1e-9);
    println!();
    println!(
        "| run | messages (events) | CPU s | wall s | events / CPU-s | CPU vs plain consumer | rows out |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, r: &Run, rows_out: Option<u64>| {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.0} | {:.2}x | {} |",
            r.events,
            r.cpu.as_secs_f64(),
            r.wall.as_secs_f64(),
            per_cpu(r),
            r.cpu.as_secs_f64() / baseline.cpu.as_secs_f64().max(1e-9),
            rows_out.map_or_else(|| "—".to_string(), |n| n.to_string()),
        );
    };
    row("rdkafka BaseConsumer: fetch + count", &baseline, None);
    for (i, query) in args.queries.iter().enumerate() {
        let kafka = nexmark::best(kafka_runs[i].iter().map(|k| k.run));
        let memory = nexmark::best(memory_runs[i].iter().copied());
        row(
            &format!("DataFibers over Kafka: {query}"),
            &kafka,
            Some(kafka.rows_out),
        );
        row(
            &format!("DataFibers in memory: {query}"),
            &memory,
            Some(memory.rows_out),
        );
    }
    println!();
    println!(
        "baseline: an rdkafka BaseConsumer that fetches every message of the topic and sums its \
         bytes, nothing decoded; {bid_count} bids of {} events, best of {} runs by CPU; peak RSS {} MiB",
        args.events,
        args.runs,
        support::peak_rss_kib() / 1024
    );
    Ok(())
}

/// Checks that the first batch of bids, written as JSON lines the way
/// they are produced, reads back as the same rows: the timestamps' text
/// must be one the JSON decoder of a `TIMESTAMP` column takes.
fn check_json_round_trip(bids: &[RecordBatch]) -> anyhow::Result<()> {
    let Some(batch) = bids.first() else {
        anyhow::bail!("the sequence holds no bids; give --events a larger number");
    };
    let lines = json_lines(batch)?;
    let mut decoder = arrow::json::ReaderBuilder::new(batch.schema())
        .with_batch_size(batch.num_rows())
        .build_decoder()?;
    let mut text = &lines[..];
    while !text.is_empty() {
        let consumed = decoder.decode(text)?;
        anyhow::ensure!(consumed > 0, "the JSON decoder stopped taking bids");
        text = &text[consumed..];
    }
    let decoded = decoder.flush()?.context("no bids decoded")?;
    anyhow::ensure!(
        decoded == *batch,
        "bids written as JSON do not read back as the same rows"
    );
    Ok(())
}

/// The rows of `batch` as JSON objects, one a line.
fn json_lines(batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut lines = Vec::with_capacity(batch.num_rows() * 256);
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut lines);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(lines)
}

/// Produces every bid as one JSON message, keyed by its auction, into
/// partition `auction % PARTITIONS`, in sequence order (so each partition
/// is in event-time order); returns the bytes of the values.
fn produce(brokers: &str, topic: &str, bids: &[RecordBatch]) -> anyhow::Result<u64> {
    let producer = kafka::producer(brokers)?;
    let mut bytes = 0u64;
    let mut key = String::with_capacity(20);
    for batch in bids {
        let auctions = batch
            .column_by_name("auction")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .context("bids have no BIGINT auction column")?;
        let times = batch
            .column_by_name("date_time")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .context("bids have no TIMESTAMP date_time column")?;
        let lines = json_lines(batch)?;
        // A JSON line holds no raw newline: strings escape theirs.
        let values = lines.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let mut row = 0;
        for value in values {
            anyhow::ensure!(row < batch.num_rows(), "more JSON lines than bids");
            let auction = auctions.value(row);
            key.clear();
            use std::fmt::Write;
            write!(key, "{auction}")?;
            let partition = auction.rem_euclid(PARTITIONS as i64) as i32;
            let timestamp_ms = times.value(row).div_euclid(1_000_000);
            bytes += value.len() as u64;
            let record = BaseRecord::<str, [u8]>::to(topic)
                .partition(partition)
                .key(key.as_str())
                .payload(value)
                .timestamp(timestamp_ms);
            kafka::send(&producer, record)?;
            row += 1;
        }
        anyhow::ensure!(
            row == batch.num_rows(),
            "{row} JSON lines for {} bids",
            batch.num_rows()
        );
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(bytes)
}

/// The baseline: fetch every message and count it.
fn consume_only(brokers: &str, topic: &str, messages: u64) -> anyhow::Result<Run> {
    let (cpu, wall) = kafka::consume_all(brokers, topic, PARTITIONS, messages)?;
    Ok(Run {
        events: messages,
        rows_out: 0,
        cpu,
        wall,
    })
}

/// A bounded job of an engine over the topic: every message is decoded
/// into Arrow, watermarked and run through `query` into a discard sink.
async fn over_kafka(brokers: &str, topic: &str, query: &str) -> anyhow::Result<KafkaRun> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    engine
        .execute_script(&format!(
            "CREATE STREAM bid ({BID_COLUMNS})
             WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}',
                   format = 'json', end = 'latest')"
        ))
        .await?;
    let sink = format!(
        "CREATE SINK nexmark_{query} WITH (connector = 'discard') AS\n{}",
        nexmark::sql(&format!("{query}.sql"))?
    );
    let (cpu, wall) = run_to_end(&engine, &sink).await?;
    let run = KafkaRun {
        run: Run {
            events: job_counter(&engine, "input_rows").await?,
            rows_out: job_counter(&engine, "output_rows").await?,
            cpu,
            wall,
        },
        late_rows: job_counter(&engine, "late_rows").await?,
    };
    engine.shutdown().await;
    Ok(run)
}
