//! The Kafka source and publisher against librdkafka's in-process mock
//! cluster: fast checks of partitions, metadata columns, bad records and a
//! broker outage. The real-broker tests live in tests/integration/kafka.rs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::sink::Publisher;
use super::*;
use crate::connector::{Poll, Source};
use crate::format::Format;

fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(topic, partitions, 1).expect("topic");
    cluster
}

fn produce(brokers: &str, topic: &str, messages: &[(i32, &str)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for (partition, value) in messages {
        producer
            .send(
                BaseRecord::<str, str>::to(topic)
                    .partition(*partition)
                    .payload(*value),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

fn config(brokers: &str, topic: &str, bad_data: BadData) -> KafkaConfig {
    let mut options = Options::from_pairs([
        ("brokers".to_string(), brokers.to_string()),
        ("topic".to_string(), topic.to_string()),
        ("format".to_string(), "json".to_string()),
        ("end".to_string(), "latest".to_string()),
    ])
    .expect("options");
    let mut config = KafkaConfig::from_options(&mut options, vec![]).expect("config");
    config.bad_data = bad_data;
    config
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
    ]))
}

/// Reads to the end; the rows as (partition, offset, id), with the
/// partitions batches claimed to come from.
fn read_all(source: &mut dyn Source) -> crate::Result<Vec<(i32, i64, i64)>> {
    let mut rows = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the source did not end");
        match source.poll()? {
            Poll::Batch(partition, batch) => rows.extend(rows_of(partition, &batch)),
            Poll::Idle(wait) => std::thread::sleep(wait.min(Duration::from_millis(20))),
            Poll::End => return Ok(rows),
        }
    }
}

fn rows_of(partition: u32, batch: &RecordBatch) -> Vec<(i32, i64, i64)> {
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let partitions = batch.column(1).as_primitive::<Int32Type>();
    let offsets = batch.column(2).as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| {
            assert_eq!(
                partitions.value(i) as u32,
                partition,
                "a batch mixes partitions"
            );
            (partitions.value(i), offsets.value(i), ids.value(i))
        })
        .collect()
}

#[test]
fn reads_every_partition_to_the_end_with_metadata() {
    let cluster = cluster("t", 3);
    let brokers = cluster.bootstrap_servers();
    let messages: Vec<(i32, String)> = (0..30)
        .map(|i| (i % 3, format!("{{\"id\": {i}}}")))
        .collect();
    let refs: Vec<(i32, &str)> = messages.iter().map(|(p, m)| (*p, m.as_str())).collect();
    produce(&brokers, "t", &refs);
    let config = config(&brokers, "t", BadData::Fail);
    let mut source = KafkaSource::new("s", &config, schema(), 4, None).expect("source");
    let mut rows = read_all(&mut source).expect("rows");
    assert_eq!(source.partitions(), [0, 1, 2]);
    rows.sort_unstable();
    let expected: Vec<(i32, i64, i64)> = (0..30)
        .map(|i: i32| (i % 3, i64::from(i / 3), i64::from(i)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn bad_records_fail_drop_or_go_to_the_dead_letter_table() {
    let cluster = cluster("bad", 1);
    let brokers = cluster.bootstrap_servers();
    produce(
        &brokers,
        "bad",
        &[
            (0, r#"{"id": 1}"#),
            (0, r#"{"id": "one"}"#),
            (0, r#"{"id": 3}"#),
            (0, "not json"),
            (0, r#"{"id": 5}"#),
        ],
    );

    // fail: the rows before the bad record arrive, then the error names
    // the topic, partition and offset.
    let mut source = KafkaSource::new(
        "s",
        &config(&brokers, "bad", BadData::Fail),
        schema(),
        100,
        None,
    )
    .expect("source");
    let mut ids = Vec::new();
    let err = loop {
        match source.poll() {
            Ok(Poll::Batch(p, b)) => ids.extend(rows_of(p, &b).into_iter().map(|r| r.2)),
            Ok(Poll::Idle(_)) => {}
            Ok(Poll::End) => panic!("a bad record must fail the read"),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(ids, [1]);
    assert!(err.contains("topic 'bad' partition 0 offset 1"), "{err}");

    // drop: the good records, and a count.
    let mut source = KafkaSource::new(
        "s",
        &config(&brokers, "bad", BadData::Drop),
        schema(),
        100,
        None,
    )
    .expect("source");
    let rows = read_all(&mut source).expect("rows");
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), [1, 3, 5]);
    assert_eq!(source.bad_rows(), 2);

    // dead_letter: kept with where they came from, each once however many
    // times they are read.
    let dir = tempfile::tempdir().expect("dir");
    let table = DeadLetterTable::new(dir.path(), "s");
    for _ in 0..2 {
        let config = config(&brokers, "bad", BadData::DeadLetter);
        let mut source =
            KafkaSource::new("s", &config, schema(), 100, Some(table.clone())).expect("source");
        let rows = read_all(&mut source).expect("rows");
        assert_eq!(rows.len(), 3);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let letters = runtime.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        table
            .register(&ctx, "s_dead_letter")
            .await
            .expect("register");
        ctx.sql("SELECT _topic, _partition, _offset, raw, error FROM s_dead_letter")
            .await
            .expect("query")
            .collect()
            .await
            .expect("rows")
    });
    let batch = arrow::compute::concat_batches(&letters[0].schema(), &letters).expect("concat");
    assert_eq!(batch.num_rows(), 2);
    let offsets = batch.column(2).as_primitive::<Int64Type>();
    assert_eq!(offsets.values(), &[1, 3]);
    assert_eq!(batch.column(3).as_binary::<i32>().value(1), b"not json");
    assert!(!batch.column(4).as_string::<i32>().value(0).is_empty());
}

#[test]
fn published_rows_read_back_with_keys() {
    let cluster = cluster("out", 2);
    let brokers = cluster.bootstrap_servers();
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("volume", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["A", "B", "A"])),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(TimestampNanosecondArray::from(vec![
                0,
                1_000_000_000,
                2_000_000_000,
            ])),
        ],
    )
    .expect("batch");
    let sink = KafkaSinkConfig {
        brokers: brokers.clone(),
        topic: "out".into(),
        format: Format::Json,
        key: Some("symbol".into()),
        subject: "out-value".into(),
        key_in_value: true,
        properties: vec![],
    };
    let published = Publisher::new(&sink, Arc::clone(&schema))
        .expect("publisher")
        .publish(&[batch])
        .expect("publish");
    assert_eq!(published, 3);

    let read_schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("volume", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("_key", DataType::Utf8, true),
    ]));
    let mut source = KafkaSource::new(
        "s",
        &config(&brokers, "out", BadData::Fail),
        read_schema,
        100,
        None,
    )
    .expect("source");
    let mut rows = BTreeMap::new();
    loop {
        match source.poll().expect("poll") {
            Poll::Batch(_, b) => {
                for i in 0..b.num_rows() {
                    let symbol = b.column(0).as_string::<i32>().value(i).to_string();
                    let key = b.column(3).as_string::<i32>().value(i).to_string();
                    let volume = b.column(1).as_primitive::<Int64Type>();
                    let volume = (!volume.is_null(i)).then(|| volume.value(i));
                    let ts = b
                        .column(2)
                        .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                        .value(i);
                    assert_eq!(symbol, key, "the key is the symbol column");
                    rows.insert(ts, (symbol, volume));
                }
            }
            Poll::Idle(_) => {}
            Poll::End => break,
        }
    }
    assert_eq!(
        rows.into_values().collect::<Vec<_>>(),
        [
            ("A".to_string(), Some(1)),
            ("B".to_string(), None),
            ("A".to_string(), Some(3))
        ]
    );
}

#[test]
fn a_broker_outage_is_retried_without_losing_or_repeating_rows() {
    let cluster = cluster("live", 1);
    let brokers = cluster.bootstrap_servers();
    produce(
        &brokers,
        "live",
        &[(0, r#"{"id": 1}"#), (0, r#"{"id": 2}"#)],
    );
    let mut config = config(&brokers, "live", BadData::Fail);
    config.end_at_latest = false;
    let mut source = KafkaSource::new("s", &config, schema(), 100, None).expect("source");
    let mut ids = Vec::new();
    let poll_until = |source: &mut KafkaSource, ids: &mut Vec<i64>, want: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while ids.len() < want {
            assert!(Instant::now() < deadline, "only {ids:?} arrived");
            match source.poll().expect("poll") {
                Poll::Batch(p, b) => ids.extend(rows_of(p, &b).into_iter().map(|r| r.2)),
                Poll::Idle(_) => {}
                Poll::End => panic!("an unbounded read never ends"),
            }
        }
    };
    poll_until(&mut source, &mut ids, 2);

    cluster.broker_down(1).expect("down");
    let deadline = Instant::now() + Duration::from_secs(30);
    while source.health().is_none() {
        assert!(Instant::now() < deadline, "the outage was never reported");
        assert!(matches!(source.poll().expect("poll"), Poll::Idle(_)));
    }
    cluster.broker_up(1).expect("up");
    produce(
        &brokers,
        "live",
        &[(0, r#"{"id": 3}"#), (0, r#"{"id": 4}"#)],
    );
    poll_until(&mut source, &mut ids, 4);
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(source.health(), None);
}

#[test]
fn scan_bounds_skip_partitions_and_offsets() {
    let cluster = cluster("scan", 3);
    let brokers = cluster.bootstrap_servers();
    let messages: Vec<(i32, String)> = (0..30)
        .map(|i| (i % 3, format!("{{\"id\": {i}}}")))
        .collect();
    let refs: Vec<(i32, &str)> = messages.iter().map(|(p, m)| (*p, m.as_str())).collect();
    produce(&brokers, "scan", &refs);
    let bounds = super::scan::ScanBounds {
        partitions: Some([1].into()),
        min_offset: Some(5),
        end_offset: Some(8),
        min_timestamp_ms: None,
    };
    let config = config(&brokers, "scan", BadData::Fail);
    let mut source = KafkaSource::new("s", &config, schema(), 100, None)
        .expect("source")
        .with_bounds(bounds);
    let rows = read_all(&mut source).expect("rows");
    // Partition 1 holds ids 1, 4, 7, ... at offsets 0, 1, 2, ...
    assert_eq!(rows, [(1, 5, 16), (1, 6, 19), (1, 7, 22)]);
}

/// Two partitions of three never receive anything: once they have been
/// idle for `idle_timeout`, partition 0 alone moves the watermark and the
/// window closes, on an unbounded stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_stop_holding_the_watermark_back() {
    let cluster = cluster("idle", 3);
    let brokers = cluster.bootstrap_servers();
    produce(
        &brokers,
        "idle",
        &[
            (
                0,
                r#"{"symbol": "A", "volume": 5, "ts": "2024-01-01T00:00:01"}"#,
            ),
            (
                0,
                r#"{"symbol": "A", "volume": 7, "ts": "2024-01-01T00:00:04"}"#,
            ),
            (
                0,
                r#"{"symbol": "A", "volume": 1, "ts": "2024-01-01T00:00:12"}"#,
            ),
        ],
    );
    let dir = tempfile::tempdir().expect("dir");
    let engine = crate::Engine::open(crate::EngineConfig::new(dir.path()))
        .await
        .expect("engine");
    engine
        .execute_script(&format!(
            "CREATE STREAM trades (symbol TEXT, volume BIGINT, ts TIMESTAMP,
                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'kafka', brokers = '{brokers}', topic = 'idle', format = 'json',
                   idle_timeout = '1s');
             CREATE MATERIALIZED VIEW v WITH (archive = 'parquet', commit_interval = '100ms') AS
               SELECT symbol, window_start, sum(volume) AS volume
               FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
               GROUP BY symbol, window_start, window_end;"
        ))
        .await
        .expect("script");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut volumes = Vec::new();
    while volumes.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let results = engine.execute_script("SELECT volume FROM v").await;
        if let Ok(Some(crate::StatementResult::Rows { batches, .. })) = results.map(|mut r| r.pop())
        {
            volumes = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
        }
    }
    // A row of an idle partition from before the watermark is late, and
    // counted as late because of the partition's idleness.
    produce(
        &brokers,
        "idle",
        &[(
            1,
            r#"{"symbol": "A", "volume": 9, "ts": "2024-01-01T00:00:02"}"#,
        )],
    );
    let mut late = (0, 0);
    while late == (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        late = (
            job_counter(&engine, "late_rows").await,
            job_counter(&engine, "idle_late_rows").await,
        );
    }
    // Stop the job before asserting: its source thread would otherwise
    // keep the runtime (and a failing test) from ending.
    engine.shutdown().await;
    // Only the first window: the second is still open.
    assert_eq!(volumes, [12], "the first window did not close (alone)");
    assert_eq!(late, (1, 1), "(late_rows, idle_late_rows)");
}

#[test]
fn avro_rows_published_through_a_registry_read_back() {
    let registry = crate::format::registry::test_registry::TestRegistry::start();
    let cluster = cluster("avro", 2);
    let brokers = cluster.bootstrap_servers();
    let avro = Format::Avro(crate::format::AvroConfig {
        registry: registry.url.clone(),
        subject: None,
    });
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 10])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("j")])),
        ],
    )
    .expect("batch");
    let sink = KafkaSinkConfig {
        brokers: brokers.clone(),
        topic: "avro".into(),
        format: avro.clone(),
        key: None,
        subject: "avro-value".into(),
        key_in_value: true,
        properties: vec![],
    };
    Publisher::new(&sink, Arc::clone(&schema))
        .expect("publisher")
        .publish(&[batch])
        .expect("publish");
    assert_eq!(registry.count("POST /subjects/avro-value/versions"), 1);

    let mut config = config(&brokers, "avro", BadData::Fail);
    config.format = avro;
    let read_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("_partition", DataType::Int32, false),
    ]));
    let mut source = KafkaSource::new("s", &config, read_schema, 100, None).expect("source");
    let mut rows = Vec::new();
    loop {
        match source.poll().expect("poll") {
            Poll::Batch(_, b) => {
                let ids = b.column(0).as_primitive::<Int64Type>();
                let names = b.column(1).as_string::<i32>();
                for i in 0..b.num_rows() {
                    let name = (!names.is_null(i)).then(|| names.value(i).to_string());
                    rows.push((ids.value(i), name));
                }
            }
            Poll::Idle(_) => {}
            Poll::End => break,
        }
    }
    rows.sort();
    assert_eq!(
        rows,
        [
            (1, Some("a".to_string())),
            (2, None),
            (10, Some("j".to_string()))
        ]
    );
}

#[test]
fn tombstones_carry_no_row() {
    let cluster = cluster("compacted", 1);
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, "compacted", &[(0, r#"{"id": 1}"#)]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, str>::to("compacted")
                .partition(0)
                .key("k"),
        )
        .map_err(|(e, _)| e)
        .expect("send a tombstone");
    producer.flush(Duration::from_secs(10)).expect("flush");
    produce(&brokers, "compacted", &[(0, r#"{"id": 3}"#)]);
    let mut source = KafkaSource::new(
        "s",
        &config(&brokers, "compacted", BadData::Fail),
        schema(),
        100,
        None,
    )
    .expect("source");
    let rows = read_all(&mut source).expect("a tombstone is not a bad record");
    assert_eq!(rows, [(0, 0, 1), (0, 2, 3)]);
}

/// Large batches are cut by time as well as size: every message polled
/// must land in some batch.
#[test]
fn no_message_is_lost_when_batches_are_cut() {
    let cluster = cluster("many", 3);
    let brokers = cluster.bootstrap_servers();
    let messages: Vec<(i32, String)> = (0..20_000)
        .map(|i| (i % 3, format!("{{\"id\": {i}}}")))
        .collect();
    let refs: Vec<(i32, &str)> = messages.iter().map(|(p, m)| (*p, m.as_str())).collect();
    produce(&brokers, "many", &refs);
    let config = config(&brokers, "many", BadData::Fail);
    let mut source = KafkaSource::new("s", &config, schema(), 1 << 20, None)
        .expect("source")
        .without_linger();
    let mut ids: Vec<i64> = read_all(&mut source)
        .expect("rows")
        .into_iter()
        .map(|r| r.2)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20_000).collect::<Vec<i64>>());
}

#[test]
fn only_partitions_read_to_their_end_are_caught_up() {
    let cluster = cluster("behind", 3);
    let brokers = cluster.bootstrap_servers();
    let messages: Vec<(i32, String)> = (0..60)
        .map(|i| (i % 3, format!("{{\"id\": {i}}}")))
        .collect();
    let refs: Vec<(i32, &str)> = messages.iter().map(|(p, m)| (*p, m.as_str())).collect();
    produce(&brokers, "behind", &refs);
    let config = config(&brokers, "behind", BadData::Fail);
    let mut source = KafkaSource::new("s", &config, schema(), 4, None)
        .expect("source")
        .without_linger();
    assert!(source.caught_up().is_empty(), "nothing is known yet");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no rows");
        if let Poll::Batch(..) = source.poll().expect("poll") {
            break;
        }
    }
    assert!(
        source.caught_up().is_empty(),
        "20 records each, 4 returned at most"
    );
    read_all(&mut source).expect("rows");
    assert_eq!(source.caught_up(), [0, 1, 2]);
}

/// A broker slow to serve one partition (its leader answers every request
/// after 2.5 s, longer than `idle_timeout` and than the end-offset lookup
/// waits) must not get that partition taken for idle: the watermark would
/// pass it and its rows would be dropped as late, leaving committed windows
/// short. The stream is unbounded, as a user's would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_starved_by_a_slow_broker_is_not_taken_for_idle() {
    let cluster = MockCluster::new(2).expect("mock cluster");
    cluster.create_topic("starved", 3, 1).expect("topic");
    for partition in 0..3 {
        let leader = if partition == 2 { 2 } else { 1 };
        cluster
            .partition_leader("starved", partition, Some(leader))
            .expect("leader");
    }
    let brokers = cluster.bootstrap_servers();
    // Each partition: 300 trades over 30 s of event time (volume = the
    // partition + 1), then one far later that closes every window.
    let mut messages = Vec::new();
    for partition in 0..3 {
        for i in 0..300 {
            messages.push((
                partition,
                format!(
                    r#"{{"volume": {}, "ts": "2024-01-01T00:00:{:02}.{}"}}"#,
                    partition + 1,
                    i / 10,
                    i % 10
                ),
            ));
        }
        messages.push((
            partition,
            r#"{"volume": 0, "ts": "2024-01-01T01:00:00"}"#.into(),
        ));
    }
    let refs: Vec<(i32, &str)> = messages.iter().map(|(p, m)| (*p, m.as_str())).collect();
    produce(&brokers, "starved", &refs);
    cluster
        .broker_round_trip_time(2, Duration::from_millis(2500))
        .expect("slow broker");

    let dir = tempfile::tempdir().expect("dir");
    let engine = crate::Engine::open(crate::EngineConfig::new(dir.path()))
        .await
        .expect("engine");
    engine
        .execute_script(&format!(
            "CREATE STREAM trades (volume BIGINT, ts TIMESTAMP,
                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'kafka', brokers = '{brokers}', topic = 'starved',
                   format = 'json', idle_timeout = '1s');
             CREATE MATERIALIZED VIEW v WITH (archive = 'parquet', commit_interval = '100ms') AS
               SELECT window_start, count(*) AS trades, sum(volume) AS volume
               FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
               GROUP BY window_start, window_end;"
        ))
        .await
        .expect("script");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut windows = Vec::new();
    while windows.len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let results = engine
            .execute_script("SELECT trades, volume FROM v ORDER BY window_start")
            .await;
        if let Ok(Some(crate::StatementResult::Rows { batches, .. })) = results.map(|mut r| r.pop())
        {
            windows = batches
                .iter()
                .flat_map(|b| {
                    let trades = b.column(0).as_primitive::<Int64Type>().values().to_vec();
                    let volume = b.column(1).as_primitive::<Int64Type>().values().to_vec();
                    trades.into_iter().zip(volume)
                })
                .collect();
        }
    }
    let late = job_counter(&engine, "late_rows").await;
    engine.shutdown().await;
    // 100 trades of each partition per window: volumes 100 + 200 + 300.
    assert_eq!(
        windows,
        [(300, 600); 3],
        "windows short of the slow partition's rows"
    );
    assert_eq!(late, 0, "rows dropped as late");
}

/// A `SHOW JOBS` counter of the only job.
async fn job_counter(engine: &crate::Engine, column: &str) -> u64 {
    let mut results = engine.execute_script("SHOW JOBS").await.expect("SHOW JOBS");
    let Some(crate::StatementResult::Rows { batches, .. }) = results.pop() else {
        panic!("SHOW JOBS returned no rows");
    };
    let batch = &batches[0];
    let index = batch.schema().index_of(column).expect("column");
    batch
        .column(index)
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .value(0)
}

#[test]
fn a_source_resumed_from_its_position_reads_each_record_once() {
    let cluster = cluster("resume", 3);
    let brokers = cluster.bootstrap_servers();
    let messages: Vec<(i32, String)> = (0..60)
        .map(|i| (i % 3, format!("{{\"id\": {i}}}")))
        .collect();
    let refs: Vec<(i32, &str)> = messages.iter().map(|(p, m)| (*p, m.as_str())).collect();
    produce(&brokers, "resume", &refs);
    let config = config(&brokers, "resume", BadData::Fail);
    let mut first = KafkaSource::new("s", &config, schema(), 4, None)
        .expect("source")
        .without_linger();
    let mut rows = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows.len() < 20 {
        assert!(Instant::now() < deadline, "no rows");
        match first.poll().expect("poll") {
            Poll::Batch(partition, batch) => rows.extend(rows_of(partition, &batch)),
            Poll::Idle(_) => {}
            Poll::End => panic!("ended early"),
        }
    }
    let position = first.position().expect("a position");
    drop(first);
    let mut second = KafkaSource::new("s", &config, schema(), 4, None).expect("source");
    second.seek(&position).expect("seek");
    rows.extend(read_all(&mut second).expect("rows"));
    let mut ids: Vec<i64> = rows.iter().map(|r| r.2).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..60).collect::<Vec<i64>>(), "each record once");

    let elsewhere = serde_json::json!({ "topic": "other", "offsets": [[0, 1]] });
    let e = second.seek(&elsewhere).unwrap_err().to_string();
    assert!(e.contains("it is of topic 'other'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sink_commit_is_finished_without_duplicates() {
    use crate::archive::TableWriter;
    use crate::checkpoint::CheckpointStore;

    let cluster = cluster("sunk", 2);
    let brokers = cluster.bootstrap_servers();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let rows = |ids: std::ops::Range<i64>| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(ids))],
        )
        .expect("batch")
    };
    let sink = KafkaSinkConfig {
        brokers: brokers.clone(),
        topic: "sunk".into(),
        format: Format::Json,
        key: None,
        subject: "sunk-value".into(),
        key_in_value: true,
        properties: vec![],
    };
    let store = CheckpointStore::new(
        Arc::new(object_store::memory::InMemory::new()),
        &object_store::path::Path::from("cp"),
        "memory://",
        "job",
    );
    // Epoch 1 commits whole.
    let mut writer = KafkaWriter::new(&sink, Arc::clone(&schema), "job");
    let staged = writer
        .stage(&schema, vec![rows(0..5)], 1, Some(&store))
        .await
        .expect("stage");
    writer
        .commit(&staged.manifest, 1, Some(&store), false)
        .await
        .expect("commit");
    // Epoch 2 is staged, then the process dies after producing only its
    // first two rows (made here by another writer producing them as epoch 2).
    let staged = writer
        .stage(&schema, vec![rows(5..10)], 2, Some(&store))
        .await
        .expect("stage");
    let mut crashed = KafkaWriter::new(&sink, Arc::clone(&schema), "job");
    let partial = crashed
        .stage(&schema, vec![rows(5..7)], 2, None)
        .await
        .expect("stage");
    crashed
        .commit(&partial.manifest, 2, None, false)
        .await
        .expect("commit");
    // The restarted job finishes epoch 2 from the checkpoint (twice, as a
    // second crash would), reading the staged rows back from the store.
    for _ in 0..2 {
        let mut restarted = KafkaWriter::new(&sink, Arc::clone(&schema), "job");
        restarted
            .commit(&staged.manifest, 2, Some(&store), true)
            .await
            .expect("recovery commit");
    }

    let read_config = config(&brokers, "sunk", BadData::Fail);
    let read_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let mut source = KafkaSource::new("s", &read_config, read_schema, 100, None).expect("source");
    let mut ids: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the read did not end");
        match source.poll().expect("poll") {
            Poll::Batch(_, b) => ids.extend(b.column(0).as_primitive::<Int64Type>().values()),
            Poll::Idle(_) => std::thread::sleep(Duration::from_millis(10)),
            Poll::End => break,
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..10).collect::<Vec<i64>>(), "each row once");
}
