//! Kafka end to end, black box, against a real Kafka-protocol broker
//! (`FIBERS_TEST_BROKERS`; `.ci/run` starts a tansu broker and sets it).
//! Topics are written and read back by an independent client
//! (`tests/python/kafka_tool.py`: librdkafka through confluent-kafka), and
//! results are checked against the same client's independent computation.
//! Every test uses topics of its own, so tests share one broker in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Broker, Row, SchemaRegistry, assert_ok, fibers_run_within, fibers_spawn, json_rows, kafka_tool,
    kafka_tool_json, kafka_tool_lines, read_table, test_brokers, try_read_table, unique_name,
};

const PARTITIONS: usize = 3;
const TRADES: usize = 3000;
const WINDOW_SECONDS: i64 = 10;
/// How long a bounded run may take before the test calls it hung.
const BOUNDED_RUN: Duration = Duration::from_secs(180);

/// A topic of trades written by the independent client.
struct Trades {
    brokers: String,
    topic: String,
    format: &'static str,
    seed: u64,
    /// The producer's report: bad records with their partition and offset.
    produced: Value,
}

impl Trades {
    /// Produces [`TRADES`] trades of `seed` (and `bad` malformed records)
    /// in `format` to a new topic of [`PARTITIONS`] partitions.
    fn produce(
        brokers: &str,
        test: &str,
        format: &'static str,
        seed: u64,
        bad: usize,
        registry: Option<&SchemaRegistry>,
    ) -> Self {
        let topic = unique_name(test);
        let (partitions, count, seed_arg, bad_arg) = (
            PARTITIONS.to_string(),
            TRADES.to_string(),
            seed.to_string(),
            bad.to_string(),
        );
        let mut args = vec![
            "produce-trades",
            "--brokers",
            brokers,
            "--topic",
            &topic,
            "--partitions",
            &partitions,
            "--format",
            format,
            "--count",
            &count,
            "--seed",
            &seed_arg,
            "--bad",
            &bad_arg,
        ];
        if let Some(registry) = registry {
            args.extend(["--registry", registry.url.as_str()]);
        }
        let produced = kafka_tool_json(&args);
        assert_eq!(produced["bad"].as_array().map(Vec::len), Some(bad));
        Trades {
            brokers: brokers.to_string(),
            topic,
            format,
            seed,
            produced,
        }
    }

    /// The producer's bad records as (partition, offset), in order.
    fn bad_records(&self) -> Vec<(i64, i64)> {
        self.produced["bad"]
            .as_array()
            .expect("bad records")
            .iter()
            .map(|b| {
                (
                    b["partition"].as_i64().unwrap(),
                    b["offset"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// `CREATE STREAM trades` over the topic, with `options` added.
    fn stream_sql(&self, options: &str) -> String {
        stream_sql(&self.brokers, &self.topic, self.format, options)
    }

    /// The rows the VWAP view must hold, computed by the independent client.
    fn expected_vwap(&self) -> Expected {
        expected_vwap(TRADES, self.seed)
    }
}

fn stream_sql(brokers: &str, topic: &str, format: &str, options: &str) -> String {
    format!(
        "CREATE STREAM trades (symbol TEXT, price DOUBLE, volume BIGINT, ts TIMESTAMP,
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = '{format}',
                 properties.fetch.wait.max.ms = '50'{options});\n"
    )
}

fn vwap_view_sql(options: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW vwap WITH (archive = 'delta', path = 'vwap'{options}) AS
           SELECT symbol, window_start, window_end, sum(price * volume) / sum(volume) AS vwap,
                  sum(volume) AS volume, count(*) AS trades
           FROM TUMBLE(trades, ts, INTERVAL '{WINDOW_SECONDS}' SECOND)
           GROUP BY symbol, window_start, window_end;\n"
    )
}

/// Expected VWAP rows by (symbol, window_start µs).
type Expected = BTreeMap<(String, i64), Row>;

fn expected_vwap(count: usize, seed: u64) -> Expected {
    let rows = kafka_tool_json(&[
        "expected-vwap",
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
        "--window-seconds",
        &WINDOW_SECONDS.to_string(),
    ]);
    rows.as_array()
        .expect("expected-vwap prints a list")
        .iter()
        .map(|row| {
            let row = row.as_object().expect("a row").clone();
            ((symbol(&row), int(&row, "window_start")), row)
        })
        .collect()
}

fn symbol(row: &Row) -> String {
    row["symbol"]
        .as_str()
        .unwrap_or_else(|| panic!("no symbol in {row:?}"))
        .to_string()
}

fn int(row: &Row, column: &str) -> i64 {
    row.get(column)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer {column} in {row:?}"))
}

/// Asserts the archived rows are exactly the expected ones: one row per
/// (symbol, window), volumes and counts equal, VWAP within 1e-9 relative
/// (the engine adds in another order).
fn assert_vwap_equals(rows: &[Row], expected: &Expected) {
    let mut seen = BTreeSet::new();
    for row in rows {
        let key = (symbol(row), int(row, "window_start"));
        assert!(seen.insert(key.clone()), "window written twice: {row:?}");
    }
    let want: BTreeSet<_> = expected.keys().cloned().collect();
    let missing: Vec<_> = want.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} rows, {} expected; {} windows missing (first: {:?}), {} unexpected (first: {:?})",
        rows.len(),
        expected.len(),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for row in rows {
        let want = &expected[&(symbol(row), int(row, "window_start"))];
        for column in ["window_end", "volume", "trades"] {
            assert_eq!(
                int(row, column),
                int(want, column),
                "{column} of {row:?}, expected {want:?}"
            );
        }
        let vwap = row["vwap"].as_f64().expect("vwap");
        let want_vwap = want["vwap"].as_f64().expect("expected vwap");
        assert!(
            (vwap - want_vwap).abs() <= want_vwap.abs() * 1e-9,
            "vwap of {row:?}: expected {want_vwap}"
        );
    }
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The stream option naming the registry, if there is one.
fn registry_option(registry: Option<&SchemaRegistry>) -> String {
    registry
        .map(|r| format!(", schema_registry = '{}'", r.url))
        .unwrap_or_default()
}

/// A bounded stream (`end = 'latest'`) of `format` trades, a VWAP view
/// archived to Delta: the archive equals the independent computation.
fn bounded_vwap_matches(test: &str, format: &'static str, seed: u64) {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let registry = (format == "avro").then(SchemaRegistry::start);
    let trades = Trades::produce(&brokers, test, format, seed, 0, registry.as_ref());
    let registry_option = registry_option(registry.as_ref());
    let dir = tempfile::tempdir().unwrap();
    let sql = trades.stream_sql(&format!(", end = 'latest'{registry_option}")) + &vwap_view_sql("");
    assert_ok(&fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN));
    let rows = read_table("delta", &dir.path().join("data/vwap"));
    assert_vwap_equals(&rows, &trades.expected_vwap());
}

#[test]
fn a_json_topic_feeds_a_windowed_view_exactly() {
    bounded_vwap_matches("kafka_json", "json", 11);
}

#[test]
fn a_csv_topic_feeds_a_windowed_view_exactly() {
    bounded_vwap_matches("kafka_csv", "csv", 12);
}

#[test]
fn an_avro_topic_with_a_schema_registry_feeds_a_windowed_view_exactly() {
    bounded_vwap_matches("kafka_avro", "avro", 13);
}

/// The `SHOW JOBS` row of job `name`, read by a second run once the
/// first has finished.
fn job_row(dir: &Path, name: &str) -> Row {
    let output = fibers_run_within(dir, "SHOW JOBS;", &["--format", "json"], BOUNDED_RUN);
    assert_ok(&output);
    json_rows(&output)
        .into_iter()
        .find(|row| row.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| {
            panic!(
                "SHOW JOBS has no job {name}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
}

#[test]
fn a_bad_record_fails_the_job_naming_its_topic_partition_and_offset() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let trades = Trades::produce(&brokers, "kafka_bad_fail", "json", 21, 1, None);
    let (partition, offset) = trades.bad_records()[0];
    let dir = tempfile::tempdir().unwrap();
    let sql = trades.stream_sql(", end = 'latest', bad_data = 'fail'") + &vwap_view_sql("");
    let output = fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN);
    let stderr = stderr(&output);
    assert!(!output.status.success(), "the run succeeded: {stderr}");
    assert!(stderr.contains(&trades.topic), "{stderr}");
    assert!(
        stderr.contains(&format!("partition {partition}")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("offset {offset}")), "{stderr}");
}

#[test]
fn dropped_bad_records_are_counted_and_the_good_ones_give_exact_windows() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let bad = 4;
    let trades = Trades::produce(&brokers, "kafka_bad_drop", "csv", 22, bad, None);
    let dir = tempfile::tempdir().unwrap();
    let sql = trades.stream_sql(", end = 'latest', bad_data = 'drop'") + &vwap_view_sql("");
    assert_ok(&fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN));
    assert_vwap_equals(
        &read_table("delta", &dir.path().join("data/vwap")),
        &trades.expected_vwap(),
    );
    let job = job_row(dir.path(), "vwap");
    assert_eq!(int(&job, "bad_rows"), bad as i64, "{job:?}");
}

/// `bad_data = 'dead_letter'` over `format` records: the view equals the
/// computation over the good ones, and the dead-letter table lists exactly
/// the bad records the producer wrote.
fn dead_letters_list_exactly_the_bad_records(test: &str, format: &'static str, seed: u64) {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let registry = (format == "avro").then(SchemaRegistry::start);
    let bad = 4;
    let trades = Trades::produce(&brokers, test, format, seed, bad, registry.as_ref());
    let registry_option = registry_option(registry.as_ref());
    let dir = tempfile::tempdir().unwrap();
    let sql = trades.stream_sql(&format!(
        ", end = 'latest', bad_data = 'dead_letter'{registry_option}"
    )) + &vwap_view_sql("");
    assert_ok(&fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN));
    assert_vwap_equals(
        &read_table("delta", &dir.path().join("data/vwap")),
        &trades.expected_vwap(),
    );

    // The columns are named like the streams' metadata columns (`offset`
    // alone is a reserved word).
    let output = fibers_run_within(
        dir.path(),
        "SELECT _topic, _partition, _offset, error FROM trades_dead_letter
         ORDER BY _partition, _offset;",
        &["--format", "json"],
        BOUNDED_RUN,
    );
    assert_ok(&output);
    let rows = json_rows(&output);
    let listed: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (int(r, "_partition"), int(r, "_offset")))
        .collect();
    let mut want = trades.bad_records();
    want.sort();
    assert_eq!(listed, want, "{rows:?}");
    for row in &rows {
        let error = row.get("error").and_then(Value::as_str).unwrap_or("");
        assert!(!error.trim().is_empty(), "no error text: {row:?}");
        assert_eq!(
            row["_topic"].as_str(),
            Some(trades.topic.as_str()),
            "{row:?}"
        );
    }
}

#[test]
fn json_dead_letters_list_exactly_the_bad_records() {
    dead_letters_list_exactly_the_bad_records("kafka_dead_letter_json", "json", 23);
}

#[test]
fn avro_dead_letters_list_exactly_the_bad_records() {
    dead_letters_list_exactly_the_bad_records("kafka_dead_letter_avro", "avro", 24);
}

#[test]
fn a_kafka_sink_publishes_exactly_the_selected_rows_keyed_by_symbol() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let trades = Trades::produce(&brokers, "kafka_sink_in", "json", 31, 0, None);
    let sink_topic = unique_name("kafka_sink_out");
    kafka_tool(&[
        "create-topic",
        "--brokers",
        &brokers,
        "--topic",
        &sink_topic,
        "--partitions",
        &PARTITIONS.to_string(),
    ]);
    let min_volume = 800;
    let dir = tempfile::tempdir().unwrap();
    let sql = trades.stream_sql(", end = 'latest'")
        + &format!(
            "CREATE SINK big WITH (connector = 'kafka', brokers = '{brokers}', topic = '{sink_topic}',
                                   format = 'json', key = 'symbol') AS
               SELECT symbol, price, volume FROM trades WHERE volume > {min_volume};"
        );
    assert_ok(&fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN));

    // (symbol, volume, price bits): floats must come back bit for bit.
    let mut want: Vec<(String, i64, u64)> = kafka_tool_lines(&[
        "trades",
        "--count",
        &TRADES.to_string(),
        "--seed",
        &trades.seed.to_string(),
    ])
    .iter()
    .filter(|t| int(t, "volume") > min_volume)
    .map(|t| {
        (
            symbol(t),
            int(t, "volume"),
            t["price"].as_f64().unwrap().to_bits(),
        )
    })
    .collect();
    want.sort();

    let messages = kafka_tool_lines(&[
        "consume",
        "--brokers",
        &brokers,
        "--topic",
        &sink_topic,
        "--expect",
        &want.len().to_string(),
        "--timeout",
        "60",
    ]);
    let mut got = Vec::new();
    for message in &messages {
        let text = message["value"].as_str().expect("a text value");
        let value: Row = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("sink message is not a JSON object ({e}): {message:?}"));
        assert_eq!(
            message["key"].as_str(),
            Some(symbol(&value).as_str()),
            "keyed by symbol: {message:?}"
        );
        let price = value["price"].as_f64().expect("price");
        got.push((symbol(&value), int(&value, "volume"), price.to_bits()));
    }
    got.sort();
    assert_eq!(got.len(), want.len(), "messages in the sink topic");
    assert!(
        got == want,
        "the sink topic's rows differ from the selection"
    );
}

/// `2024-01-01 00:00:00`, `2024-01-01T00:00:00.000Z`... → `2024-01-01T00:00:00`.
fn normalize_timestamp(text: &str) -> String {
    let text = text.replace(' ', "T");
    let text = text.trim_end_matches('Z');
    match text.split_once('.') {
        Some((whole, fraction)) if fraction.chars().all(|c| c == '0') => whole.to_string(),
        _ => text.to_string(),
    }
}

#[test]
fn insert_show_topics_describe_topic_and_an_ad_hoc_query() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let trades = Trades::produce(&brokers, "kafka_topics", "json", 41, 0, None);
    let produced: Vec<Row> = kafka_tool_lines(&[
        "trades",
        "--count",
        &TRADES.to_string(),
        "--seed",
        &trades.seed.to_string(),
    ]);
    let produced_volume: i64 = produced.iter().map(|t| int(t, "volume")).sum();

    let dir = tempfile::tempdir().unwrap();
    let topic = &trades.topic;
    // An unbounded stream: the ad-hoc query still reads to the end offsets.
    let sql = trades.stream_sql("")
        + &format!(
            "INSERT INTO trades VALUES ('ZETA', 10.5, 100, TIMESTAMP '2024-01-01 00:00:00'),
                                      ('ZETA', 11.25, 200, TIMESTAMP '2024-01-01 00:00:01');
             SHOW TOPICS FROM '{brokers}';
             DESCRIBE TOPIC {topic} FROM '{brokers}';
             SELECT count(*) AS trades, sum(volume) AS volume FROM trades;"
        );
    let output = fibers_run_within(dir.path(), &sql, &["--format", "json"], BOUNDED_RUN);
    assert_ok(&output);
    let rows = json_rows(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);

    // INSERT: the independent consumer sees both rows, after the trades.
    let messages = kafka_tool_lines(&[
        "consume",
        "--brokers",
        &brokers,
        "--topic",
        topic,
        "--expect",
        &(TRADES + 2).to_string(),
    ]);
    assert_eq!(messages.len(), TRADES + 2, "messages in the topic");
    let mut inserted: Vec<(String, f64, i64, String)> = messages
        .iter()
        .filter_map(|m| {
            let value: Row = serde_json::from_str(m["value"].as_str()?).ok()?;
            (symbol(&value) == "ZETA").then(|| {
                (
                    symbol(&value),
                    value["price"].as_f64().expect("price"),
                    int(&value, "volume"),
                    normalize_timestamp(value["ts"].as_str().expect("ts as text")),
                )
            })
        })
        .collect();
    inserted.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        inserted,
        vec![
            ("ZETA".into(), 10.5, 100, "2024-01-01T00:00:00".into()),
            ("ZETA".into(), 11.25, 200, "2024-01-01T00:00:01".into()),
        ]
    );

    // SHOW TOPICS: name, partitions, messages.
    let listed = rows
        .iter()
        .find(|r| r.contains_key("partitions") && r["name"].as_str() == Some(topic))
        .unwrap_or_else(|| panic!("SHOW TOPICS does not list {topic}: {stdout}"));
    assert_eq!(int(listed, "partitions"), PARTITIONS as i64, "{listed:?}");
    assert_eq!(int(listed, "messages"), (TRADES + 2) as i64, "{listed:?}");

    // DESCRIBE TOPIC: each partition, and the columns inferred from samples.
    let described: Vec<&Row> = rows.iter().filter(|r| r.contains_key("section")).collect();
    let has = |section: &str, name: &str| {
        described.iter().any(|r| {
            r["section"].as_str().is_some_and(|s| s.contains(section))
                && r["name"].as_str() == Some(name)
        })
    };
    for partition in 0..PARTITIONS {
        assert!(
            has("partition", &partition.to_string()),
            "DESCRIBE TOPIC does not mention partition {partition}: {stdout}"
        );
    }
    for column in ["symbol", "price", "volume", "ts"] {
        assert!(
            has("column", column),
            "DESCRIBE TOPIC does not infer column {column}: {stdout}"
        );
    }

    // The ad-hoc query: every message up to the end offsets, inserted ones too.
    let totals = rows
        .iter()
        .find(|r| r.contains_key("trades") && r.contains_key("volume"))
        .unwrap_or_else(|| panic!("no result of the ad-hoc query: {stdout}"));
    assert_eq!(int(totals, "trades"), (TRADES + 2) as i64, "{totals:?}");
    assert_eq!(int(totals, "volume"), produced_volume + 300, "{totals:?}");
}

#[test]
fn an_unbounded_job_survives_a_broker_restart_without_loss_or_duplicates() {
    if test_brokers().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let brokers = broker.address();
    let topic = unique_name("kafka_restart");
    let seed = "51";
    let (count, half) = (TRADES.to_string(), (TRADES / 2).to_string());
    let produce = |range: &[&str]| {
        let mut args = vec![
            "produce-trades",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--format",
            "json",
            "--count",
            &count,
            "--seed",
            seed,
        ];
        args.extend_from_slice(range);
        kafka_tool_json(&args);
    };
    produce(&["--last", &half]);

    // Unbounded (no `end`): the job runs until it is killed.
    let sql = stream_sql(&brokers, &topic, "json", "") + &vwap_view_sql(", commit_interval = '1s'");
    let mut fibers = fibers_spawn(dir.path(), &sql, &["--for", "120s"]);
    let archive = dir.path().join("data/vwap");
    let fibers_stderr =
        || std::fs::read_to_string(dir.path().join("fibers.stderr")).unwrap_or_default();
    let read = || {
        if archive.join("_delta_log").exists() {
            try_read_table("delta", &archive).unwrap_or_default()
        } else {
            Vec::new()
        }
    };

    // Restart the broker once the job has committed windows of the first half.
    let deadline = Instant::now() + Duration::from_secs(60);
    while read().is_empty() {
        if Instant::now() > deadline || fibers.try_wait().ok().flatten().is_some() {
            let _ = fibers.kill();
            panic!(
                "no window archived before the restart; fibers stderr:\n{}",
                fibers_stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();

    // The second half, then a trade per partition a day later: its
    // watermark closes every window of the trades.
    produce(&["--first", &half, "--sentinels"]);

    let expected = expected_vwap(TRADES, seed.parse().unwrap());
    let want: BTreeSet<_> = expected.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let keys: BTreeSet<_> = read()
            .iter()
            .map(|r| (symbol(r), int(r, "window_start")))
            .collect();
        if keys.is_superset(&want) {
            break;
        }
        if Instant::now() > deadline || fibers.try_wait().ok().flatten().is_some() {
            let _ = fibers.kill();
            let _ = fibers.wait();
            panic!(
                "the archive has {} of {} windows after the restart; fibers stderr:\n{}",
                keys.intersection(&want).count(),
                want.len(),
                fibers_stderr()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    fibers.kill().expect("kill fibers");
    fibers.wait().expect("reap fibers");
    assert_vwap_equals(&read_table("delta", &archive), &expected);
}

#[test]
fn a_view_restarted_from_a_time_rewrites_the_windows_it_replays_exactly() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let trades = Trades::produce(&brokers, "kafka_restart", "json", 23, 0, None);
    let dir = tempfile::tempdir().unwrap();
    let sql = trades.stream_sql(", end = 'latest'") + &vwap_view_sql("");
    assert_ok(&fibers_run_within(dir.path(), &sql, &[], BOUNDED_RUN));
    let expected = trades.expected_vwap();
    assert_vwap_equals(
        &read_table("delta", &dir.path().join("data/vwap")),
        &expected,
    );
    let log = dir.path().join("data/vwap/_delta_log");
    let commits_before = std::fs::read_dir(&log).unwrap().count();

    // Trades span 00:00:05 to about 00:05:05; message timestamps are event
    // times, so the replay reads every trade from 00:02:00 on (and some just
    // before it, whose windows are not emitted again).
    let output = fibers_run_within(
        dir.path(),
        "ALTER MATERIALIZED VIEW vwap RESTART FROM TIMESTAMP '2024-01-01T00:02:00Z';",
        &[],
        BOUNDED_RUN,
    );
    assert_ok(&output);
    assert_vwap_equals(
        &read_table("delta", &dir.path().join("data/vwap")),
        &expected,
    );

    // The replay's commits replaced the windows from 00:02:00 on.
    let mut replaced = 0;
    for entry in std::fs::read_dir(&log).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("\"Overwrite\"") && text.contains("window_start") {
                replaced += 1;
                assert!(
                    text.contains("\"remove\""),
                    "a replacing commit removes old rows: {text}"
                );
                assert!(
                    text.contains("datafibers/vwap"),
                    "it carries the app transaction: {text}"
                );
            }
        }
    }
    assert!(replaced >= 1, "no replacing commit in {}", log.display());
    assert!(std::fs::read_dir(&log).unwrap().count() > commits_before);

    // A file or generator cannot seek to a time; the refusal leaves the view be.
    let output = fibers_run_within(
        dir.path(),
        "ALTER MATERIALIZED VIEW vwap RESTART FROM TIMESTAMP 'noon';",
        &[],
        BOUNDED_RUN,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid RESTART time 'noon'"),
        "{}",
        stderr(&output)
    );
}
