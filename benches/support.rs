//! Measurements shared by the benchmarks.

use std::time::Duration;

/// CPU time of the whole process so far (user + system, every thread,
/// librdkafka's and the runtime's included).
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident memory of the process, in KiB.
#[allow(dead_code)] // not every bench reports memory
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The number of rows in the archive of view `view`, by an ad-hoc query.
#[allow(dead_code)] // not every bench reads an archive back
pub async fn archived_rows(engine: &fibers_engine::Engine, view: &str) -> anyhow::Result<u64> {
    use anyhow::Context;
    use arrow::array::AsArray;
    let results = engine
        .execute_script(&format!("SELECT count(*) AS n FROM {view}"))
        .await?;
    match results.first() {
        Some(fibers_engine::StatementResult::Rows { batches, .. }) => batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()
            })
            .map(|a| a.value(0) as u64)
            .context("count(*) returned no number"),
        _ => anyhow::bail!("count(*) returned no rows"),
    }
}

/// Runs `script` (the views and sinks of a bench) in `engine` until every
/// bounded job has ended: the CPU time of the whole process and the wall
/// time it took. Fails if a job failed.
#[allow(dead_code)] // not every bench runs jobs
pub async fn run_to_end(
    engine: &fibers_engine::Engine,
    script: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let (cpu, wall) = (cpu_time(), std::time::Instant::now());
    engine.execute_script(script).await?;
    engine.wait_for_bounded_jobs().await;
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    if let Some((job, e)) = engine.failures().await.into_iter().next() {
        anyhow::bail!("job {job} failed: {e}");
    }
    Ok((cpu, wall))
}

/// Counter `name` (a `SHOW JOBS` column such as `input_rows`) of the first
/// job `SHOW JOBS` lists.
#[allow(dead_code)] // not every bench runs jobs
pub async fn job_counter(engine: &fibers_engine::Engine, name: &str) -> anyhow::Result<u64> {
    job_counter_of(engine, None, name).await
}

/// Counter `name` of job `job` (the first job listed if `None`).
#[allow(dead_code)] // not every bench runs jobs
pub async fn job_counter_of(
    engine: &fibers_engine::Engine,
    job: Option<&str>,
    name: &str,
) -> anyhow::Result<u64> {
    use anyhow::Context;
    use arrow::array::{Array, AsArray, UInt64Array};
    let jobs = engine.execute_script("SHOW JOBS").await?;
    let Some(fibers_engine::StatementResult::Rows { batches, .. }) = jobs.first() else {
        anyhow::bail!("SHOW JOBS returned no rows");
    };
    for batch in batches {
        let names = batch
            .column_by_name("name")
            .and_then(|c| c.as_string_opt::<i32>())
            .context("SHOW JOBS has no name column")?;
        let counter = batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .with_context(|| format!("SHOW JOBS has no {name}"))?;
        if let Some(row) = (0..batch.num_rows()).find(|&r| job.is_none_or(|j| names.value(r) == j))
        {
            return Ok(counter.value(row));
        }
    }
    anyhow::bail!("SHOW JOBS lists no job {}", job.unwrap_or("at all"))
}

/// A topic on a real broker: made, filled and read back by a plain
/// consumer (the Kafka benches' baseline).
#[allow(dead_code)] // not every bench uses Kafka
pub mod kafka {
    use std::time::{Duration, Instant};

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::ToBytes;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    fn admin(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()?)
    }

    pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = admin(brokers)?
            .create_topics([&new], &AdminOptions::new())
            .await?;
        for result in results {
            result.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
        }
        Ok(())
    }

    pub async fn delete_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
        let results = admin(brokers)?
            .delete_topics(&[topic], &AdminOptions::new())
            .await?;
        for result in results {
            result.map_err(|(t, e)| anyhow::anyhow!("cannot delete topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// A producer batching for throughput.
    pub fn producer(brokers: &str) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .create()?)
    }

    /// Sends `record`, waiting while the producer's queue is full.
    pub fn send<K, P>(
        producer: &ThreadedProducer<DefaultProducerContext>,
        mut record: BaseRecord<'_, K, P>,
    ) -> anyhow::Result<()>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    returned,
                )) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// The baseline: fetches every message of `topic` and counts it,
    /// decoding nothing; returns the CPU and wall time it took.
    pub fn consume_all(
        brokers: &str,
        topic: &str,
        partitions: i32,
        messages: u64,
    ) -> anyhow::Result<(Duration, Duration)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "bench-baseline")
            .set("enable.auto.commit", "false")
            // The fetch setting a stream's consumer has, so the two fetch alike.
            .set(
                "fetch.queue.backoff.ms",
                fibers_engine::KAFKA_FETCH_QUEUE_BACKOFF_MS,
            )
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let (cpu, wall) = (super::cpu_time(), Instant::now());
        let (mut count, mut bytes) = (0u64, 0u64);
        let deadline = Instant::now() + Duration::from_secs(600);
        while count < messages && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                bytes += message?.payload_len() as u64;
                count += 1;
            }
        }
        let (cpu, wall) = (super::cpu_time() - cpu, wall.elapsed());
        anyhow::ensure!(count == messages, "read {count} of {messages} messages");
        std::hint::black_box(bytes);
        Ok((cpu, wall))
    }
}

/// Nexmark: the query files under `benches/nexmark/` and their input.
#[allow(dead_code)] // not every bench runs Nexmark
pub mod nexmark {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampNanosecondType;
    use arrow::record_batch::RecordBatch;
    use fibers_engine::QueryRunner;

    /// Seed of every generated sequence.
    pub const SEED: u64 = 42;
    /// The three Nexmark streams.
    pub const STREAMS: [&str; 3] = ["person", "auction", "bid"];

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/nexmark")
    }

    /// The text of `benches/nexmark/<file>`.
    pub fn sql(file: &str) -> anyhow::Result<String> {
        let path = dir().join(file);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// The streaming queries, in the order q0, q1, ... q22.
    pub fn queries() -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir())?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| Some(f.strip_suffix(".sql")?.to_string()))
            .filter(|q| q.starts_with('q') && q[1..].chars().all(|c| c.is_ascii_digit()))
            .collect();
        names.sort_by_key(|q| q[1..].parse::<u32>().unwrap_or(u32::MAX));
        Ok(names)
    }

    /// `CREATE STREAM <event>` over `events` events of the sequence, as
    /// fast as possible, in one generator partition.
    pub fn create_stream(event: &str, events: u64) -> String {
        format!(
            "CREATE STREAM {event} WITH (connector = 'nexmark', event = '{event}', \
             events = '{events}', seed = '{SEED}')"
        )
    }

    /// The three streams, then the query `query` writing to a discard sink.
    pub fn script(query: &str, events: u64) -> anyhow::Result<String> {
        let mut script: String = STREAMS
            .iter()
            .map(|s| create_stream(s, events) + ";\n")
            .collect();
        script.push_str(&format!(
            "CREATE SINK nexmark_{query} WITH (connector = 'discard') AS\n{}",
            sql(&format!("{query}.sql"))?
        ));
        Ok(script)
    }

    /// What a timed run did.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Run {
        pub events: u64,
        pub rows_out: u64,
        pub cpu: Duration,
        pub wall: Duration,
    }

    impl Run {
        pub fn per_cpu_second(&self) -> f64 {
            self.events as f64 / self.cpu.as_secs_f64().max(1e-9)
        }
    }

    /// The run with the least CPU.
    pub fn best(runs: impl IntoIterator<Item = Run>) -> Run {
        runs.into_iter().min_by_key(|r| r.cpu).unwrap_or_default()
    }

    /// Runs a planned query over pre-made batches of the streams it reads
    /// (`inputs`: stream name, batches in time order), feeding the batch
    /// with the earliest first event time next, as a job reading the
    /// streams side by side would. Only the feeding is timed.
    pub async fn run_streaming(
        mut runner: QueryRunner,
        inputs: &[(&str, &[RecordBatch])],
    ) -> anyhow::Result<Run> {
        let mut next = vec![0usize; inputs.len()];
        let first_time = |batch: &RecordBatch| -> i64 {
            batch
                .column_by_name("date_time")
                .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
                .filter(|a| !a.is_empty())
                .map_or(i64::MAX, |a| a.value(0))
        };
        let (cpu, wall) = (super::cpu_time(), Instant::now());
        let (mut events, mut rows_out) = (0u64, 0u64);
        while let Some((input, batch)) = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, (_, batches))| Some((i, batches.get(next[i])?)))
            .min_by_key(|(_, b)| first_time(b))
        {
            next[input] += 1;
            events += batch.num_rows() as u64;
            for out in runner.push_to(inputs[input].0, batch.clone()).await? {
                rows_out += out.num_rows() as u64;
            }
        }
        for out in runner.finish().await? {
            rows_out += out.num_rows() as u64;
        }
        anyhow::ensure!(
            runner.late_rows() == 0,
            "{} rows were late",
            runner.late_rows()
        );
        Ok(Run {
            events,
            rows_out,
            cpu: super::cpu_time() - cpu,
            wall: wall.elapsed(),
        })
    }
}
