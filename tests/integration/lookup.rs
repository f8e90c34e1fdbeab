//! A Kafka stream joined with a Delta reference table that another writer
//! (the `deltalake` Python package) changes while the job runs: rows read
//! after the new version is picked up see its values, rows before saw the
//! old ones, and no row is lost or doubled.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    fibers_spawn_logging, kafka_tool_json, kafka_tool_lines, python, test_brokers, try_read_table,
    unique_name,
};

const TRADES: usize = 2000;
const HALF: usize = TRADES / 2;
const SEED: &str = "61";

/// Writes `rows` to the Delta table at `path`; returns its new version.
fn write_delta(path: &std::path::Path, mode: &str, rows: Value) -> i64 {
    let output = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/write_delta.py"
        ))
        .arg(path)
        .arg(mode)
        .arg(rows.to_string())
        .output()
        .expect("run write_delta.py");
    assert!(
        output.status.success(),
        "write_delta.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("write_delta.py report");
    report["version"].as_i64().expect("a version")
}

fn sectors(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(symbol, sector)| json!({"symbol": symbol, "sector": sector}))
            .collect(),
    )
}

#[test]
fn a_kafka_stream_joined_with_a_delta_table_sees_its_new_version_without_a_restart() {
    let Some(brokers) = test_brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_name("lookup_trades");
    let table = dir.path().join("data/sectors");
    std::fs::create_dir_all(&table).unwrap();

    // Version 0 knows two of the five symbols; version 1 moves BOLT to
    // another sector and adds the other three.
    let old = [("ACME", "Industrials"), ("BOLT", "Energy")];
    let new = [
        ("ACME", "Industrials"),
        ("BOLT", "Utilities"),
        ("CRUX", "Materials"),
        ("DYNA", "Tech"),
        ("EMBR", "Energy"),
    ];
    assert_eq!(write_delta(&table, "overwrite", sectors(&old)), 0);

    let (count, half) = (TRADES.to_string(), HALF.to_string());
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
            SEED,
        ];
        args.extend_from_slice(range);
        kafka_tool_json(&args);
    };
    produce(&["--last", &half]);

    let sql = format!(
        "CREATE STREAM trades (symbol TEXT, price DOUBLE, volume BIGINT, ts TIMESTAMP,
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json');
         CREATE TABLE sectors WITH (connector = 'delta', path = 'sectors', refresh_interval = '200ms');
         CREATE MATERIALIZED VIEW labelled WITH (archive = 'delta', path = 'labelled',
                                                 commit_interval = '500ms') AS
           SELECT t.symbol, t.price, t.volume, t.ts, s.sector
           FROM trades t LEFT JOIN sectors s ON t.symbol = s.symbol;\n"
    );
    // Info from the engine: the table says when it takes a new version.
    let mut fibers = fibers_spawn_logging(
        dir.path(),
        &sql,
        &["--for", "150s"],
        "warn,fibers_engine=info",
    );
    let archive = dir.path().join("data/labelled");
    let stderr = || std::fs::read_to_string(dir.path().join("fibers.stderr")).unwrap_or_default();
    let mut wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done() {
            if Instant::now() > deadline || fibers.try_wait().ok().flatten().is_some() {
                let _ = fibers.kill();
                let _ = fibers.wait();
                panic!("{what} did not happen; fibers stderr:\n{}", stderr());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let archived = || {
        if archive.join("_delta_log").exists() {
            try_read_table("delta", &archive).unwrap_or_default()
        } else {
            Vec::new()
        }
    };

    // The first half is joined with version 0, then version 1 is written
    // and the job takes it, then the second half comes.
    wait_for("archiving the first half", &|| archived().len() >= HALF);
    assert_eq!(write_delta(&table, "overwrite", sectors(&new)), 1);
    wait_for("taking version 1 of the table", &|| {
        stderr().contains("table 'sectors': now at Delta version 1")
    });
    produce(&["--first", &half]);
    wait_for("archiving the second half", &|| archived().len() >= TRADES);
    fibers.kill().expect("kill fibers");
    fibers.wait().expect("reap fibers");

    // Each trade, by its content, with the sector it must carry.
    let mut expected: HashMap<String, Vec<Option<&str>>> = HashMap::new();
    for trade in kafka_tool_lines(&["trades", "--count", &count, "--seed", SEED]) {
        let index = trade["index"].as_u64().unwrap() as usize;
        let symbol = trade["symbol"].as_str().unwrap().to_string();
        let mapping: &[(&str, &str)] = if index < HALF { &old } else { &new };
        let sector = mapping
            .iter()
            .find(|(s, _)| *s == symbol)
            .map(|(_, sector)| *sector);
        let key = format!(
            "{symbol}/{}/{}/{}",
            trade["ts_us"], trade["volume"], trade["price"]
        );
        expected.entry(key).or_default().push(sector);
    }
    let rows = try_read_table("delta", &archive).expect("read the archive");
    assert_eq!(rows.len(), TRADES, "every trade archived once");
    for row in &rows {
        let key = format!(
            "{}/{}/{}/{}",
            row["symbol"].as_str().unwrap(),
            row["ts"],
            row["volume"],
            row["price"]
        );
        let sector = row["sector"].as_str();
        let candidates = expected
            .get_mut(&key)
            .unwrap_or_else(|| panic!("archived row {row:?} is no trade (or a second copy)"));
        let at = candidates
            .iter()
            .position(|s| *s == sector)
            .unwrap_or_else(|| {
                panic!("row {row:?} has sector {sector:?}; expected one of {candidates:?}")
            });
        candidates.swap_remove(at);
    }
    assert!(expected.values().all(Vec::is_empty));
}
