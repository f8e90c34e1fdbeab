//! `fibers run` end to end: SQL script → job → Delta archive, read back by
//! an independent reader and checked against an independent computation.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use fibers_engine::{StocksConfig, StocksGenerator, default_symbols};

use crate::common::{assert_ok, fibers_run, read_table};

const WINDOW_MICROS: i64 = 10_000_000;

fn stocks_sql(limit: u64) -> String {
    format!(
        "CREATE STREAM trades WITH (connector = 'stocks', seed = '7', rate = '0', limit = '{limit}',
             symbols = '8', disorder = '2s', start = '2025-01-02T14:30:00Z');
         CREATE MATERIALIZED VIEW vwap WITH (archive = 'delta', path = 'vwap', commit_rows = '10') AS
           SELECT symbol, window_start, window_end,
                  sum(price * volume) / sum(volume) AS vwap, sum(volume) AS volume, count(*) AS trades
           FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
           GROUP BY symbol, window_start, window_end;"
    )
}

/// VWAP per (symbol, 10 s window) computed directly from the generated
/// events: (Σ price·volume, Σ volume, count).
fn expected_vwap(limit: u64) -> BTreeMap<(String, i64), (f64, i64, i64)> {
    let mut generator = StocksGenerator::new(StocksConfig {
        seed: 7,
        symbols: default_symbols(8),
        step_nanos: 1_000_000,
        disorder_nanos: 2_000_000_000,
        start_nanos: 1_735_828_200_000_000_000, // 2025-01-02T14:30:00Z
        limit: Some(limit),
    });
    let mut windows = BTreeMap::new();
    while let Some(batch) = generator.next_batch(1000) {
        add_events(&mut windows, &batch);
    }
    windows
}

fn add_events(windows: &mut BTreeMap<(String, i64), (f64, i64, i64)>, batch: &RecordBatch) {
    let symbols = batch.column(0).as_string::<i32>();
    let prices = batch.column(1).as_primitive::<Float64Type>();
    let volumes = batch.column(2).as_primitive::<Int64Type>();
    let times = batch.column(3).as_primitive::<TimestampNanosecondType>();
    for i in 0..batch.num_rows() {
        let micros = times.value(i).div_euclid(1000);
        let start = micros.div_euclid(WINDOW_MICROS) * WINDOW_MICROS;
        let entry = windows
            .entry((symbols.value(i).to_string(), start))
            .or_insert((0.0, 0, 0));
        entry.0 += prices.value(i) * volumes.value(i) as f64;
        entry.1 += volumes.value(i);
        entry.2 += 1;
    }
}

#[test]
fn bounded_stocks_view_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 60_000;
    let output = fibers_run(dir.path(), &stocks_sql(limit), &[]);
    assert_ok(&output);

    let rows = read_table("delta", &dir.path().join("data/vwap"));
    let expected = expected_vwap(limit);
    assert_eq!(rows.len(), expected.len(), "one row per (symbol, window)");
    // The run ends saying what each job did.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = format!(
        "view vwap (finished): {limit} rows in, {} out, 0 late, 0 bad",
        expected.len()
    );
    assert!(stderr.contains(&summary), "no '{summary}' in:\n{stderr}");
    let mut seen = BTreeSet::new();
    for row in &rows {
        let symbol = row["symbol"].as_str().unwrap().to_string();
        let start = row["window_start"].as_i64().unwrap();
        assert_eq!(row["window_end"].as_i64().unwrap(), start + WINDOW_MICROS);
        assert!(
            seen.insert((symbol.clone(), start)),
            "duplicate row {row:?}"
        );
        let (pv, volume, trades) = expected
            .get(&(symbol.clone(), start))
            .unwrap_or_else(|| panic!("unexpected window {row:?}"));
        assert_eq!(row["volume"].as_i64().unwrap(), *volume, "{row:?}");
        assert_eq!(row["trades"].as_i64().unwrap(), *trades, "{row:?}");
        let vwap = row["vwap"].as_f64().unwrap();
        let want = pv / *volume as f64;
        // Sums are added in a different order than here; allow rounding only.
        assert!(
            (vwap - want).abs() <= want.abs() * 1e-12,
            "{row:?}: vwap {vwap} != {want}"
        );
    }
    // commit_rows = 10 makes the job commit several times, but a commit
    // groups windows: fewer commits than windows (version 0 is the create).
    let commits = std::fs::read_dir(dir.path().join("data/vwap/_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
        - 1;
    let windows: BTreeSet<i64> = expected.keys().map(|(_, start)| *start).collect();
    assert!(
        commits > 1 && commits < windows.len(),
        "{commits} commits for {} windows",
        windows.len()
    );
}

#[test]
fn a_restart_keeps_definitions_and_does_not_rerun_finished_jobs() {
    let dir = tempfile::tempdir().unwrap();
    assert_ok(&fibers_run(dir.path(), &stocks_sql(5_000), &[]));
    let before = read_table("delta", &dir.path().join("data/vwap")).len();

    let output = fibers_run(
        dir.path(),
        "CREATE STREAM IF NOT EXISTS trades WITH (connector = 'stocks', limit = '1');
         SHOW VIEWS; SHOW JOBS;",
        &["--format", "csv"],
    );
    assert_ok(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("vwap,delta,vwap"), "{stdout}");
    assert!(stdout.contains("vwap,view,finished"), "{stdout}");
    assert_eq!(
        read_table("delta", &dir.path().join("data/vwap")).len(),
        before
    );
}

#[test]
fn an_unbounded_job_resumes_after_a_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "CREATE STREAM live WITH (connector = 'stocks', rate = '3000', symbols = '4', disorder = '200ms');
               CREATE MATERIALIZED VIEW per_second WITH (archive = 'delta', path = 'per_second', commit_interval = '1s') AS
                 SELECT symbol, window_start, window_end, count(*) AS trades
                 FROM TUMBLE(live, ts, INTERVAL '1' SECOND)
                 GROUP BY symbol, window_start, window_end;";
    assert_ok(&fibers_run(dir.path(), sql, &["--for", "3s"]));
    let first = read_table("delta", &dir.path().join("data/per_second"));
    assert!(!first.is_empty(), "the first run committed closed windows");

    // An empty script resumes the job.
    assert_ok(&fibers_run(dir.path(), "", &["--for", "3s"]));
    let rows = read_table("delta", &dir.path().join("data/per_second"));
    assert!(rows.len() > first.len(), "the resumed job added windows");
    let keys: BTreeSet<_> = rows
        .iter()
        .map(|r| (r["symbol"].to_string(), r["window_start"].as_i64().unwrap()))
        .collect();
    assert_eq!(keys.len(), rows.len(), "no window is written twice");
}

#[test]
fn errors_name_the_script_line_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let output = fibers_run(
        dir.path(),
        "SHOW STREAMS;\nCREATE STREAM s (a INT) WITH (connector = 'file', pth = 'x', format = 'json');",
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":2: unknown option 'pth' for connector 'file'"),
        "{stderr}"
    );

    let output = fibers_run(dir.path(), "SELECT * FROM;", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SQL syntax error"), "{stderr}");
}

#[test]
fn a_failing_job_fails_the_run_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\": 1}\n{\"a\": 2}\n{\"a\": \"three\"}\n").unwrap();
    let sql = format!(
        "CREATE STREAM s (a BIGINT) WITH (connector = 'file', path = '{}', format = 'json');
         CREATE SINK out WITH (connector = 'parquet', path = 'out') AS SELECT a FROM s;",
        input.display()
    );
    let output = fibers_run(dir.path(), &sql, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("job 'out' failed"), "{stderr}");
    assert!(stderr.contains("in.jsonl line 3"), "{stderr}");
}

#[test]
fn a_data_dir_is_used_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("live.sql");
    std::fs::write(
        &script,
        "CREATE STREAM live WITH (connector = 'stocks', rate = '100');
         CREATE SINK prices WITH (connector = 'parquet', path = 'prices') AS SELECT symbol, price FROM live;",
    )
    .unwrap();
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_fibers"))
        .arg("run")
        .arg(&script)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--for", "20s"])
        .spawn()
        .unwrap();
    // Wait until the first process has created its sink (and so holds the
    // data dir).
    let archive = dir.path().join("data/prices");
    for _ in 0..600 {
        if archive.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = fibers_run(dir.path(), "SHOW STREAMS;", &[]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("is in use by another DataFibers process"),
        "{stderr}"
    );

    // Once the first is gone (killed: its lock goes with it), the data dir
    // opens, and its unbounded sink resumes until --for.
    assert_ok(&fibers_run(dir.path(), "SHOW STREAMS;", &["--for", "1s"]));
}

/// A file of 20,000 JSON lines, some malformed, some late, read by two
/// streams that differ only in `decode_threads`: one thread, and three
/// decoding each batch in chunks. Both windowed views must hold the windows
/// an independent computation gives, and both jobs must count the same
/// late and bad rows.
#[test]
fn decoding_on_several_threads_changes_no_row_no_late_row_and_no_bad_row() {
    const LINES: i64 = 20_000;
    const STEP_MS: i64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let start_ms = 1_735_828_200_000; // 2025-01-02T14:30:00Z
    let mut file = String::new();
    // (window start in microseconds) -> (rows, sum of v)
    let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let (mut max_seen, mut late, mut bad) = (i64::MIN, 0, 0);
    for i in 0..LINES {
        if i % 997 == 500 {
            file.push_str("{\"v\": oops\n");
            bad += 1;
            continue;
        }
        // Every seventh event comes 8 s behind the others: past the 5 s
        // the watermark allows.
        let ms = start_ms + i * STEP_MS - if i % 7 == 3 && i >= 800 { 8_000 } else { 0 };
        let ts = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .naive_utc();
        file.push_str(&format!(
            "{{\"v\": {i}, \"ts\": \"{}\"}}\n",
            ts.format("%Y-%m-%dT%H:%M:%S%.3f")
        ));
        if max_seen != i64::MIN && ms < max_seen - 5_000 {
            late += 1;
            continue;
        }
        max_seen = max_seen.max(ms);
        let window = ms.div_euclid(10_000) * 10_000 * 1_000;
        let entry = expected.entry(window).or_default();
        entry.0 += 1;
        entry.1 += i;
    }
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, file).unwrap();
    let stream = |name: &str, threads: u32| {
        format!(
            "CREATE STREAM {name} (v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH (connector = 'file', path = '{}', format = 'json', bad_data = 'drop',
                     decode_threads = '{threads}');
             CREATE MATERIALIZED VIEW {name}_windows WITH (archive = 'parquet', path = '{name}') AS
               SELECT window_start, count(*) AS n, sum(v) AS total
               FROM TUMBLE({name}, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end;",
            path.display()
        )
    };
    let output = fibers_run(
        dir.path(),
        &format!("{}\n{}", stream("one", 1), stream("three", 3)),
        &[],
    );
    assert_ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["one", "three"] {
        let mut windows: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for row in read_table("parquet", &dir.path().join("data").join(name)) {
            windows.insert(
                row["window_start"].as_i64().unwrap(),
                (row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap()),
            );
        }
        assert_eq!(windows, expected, "{name} thread(s)");
        let summary = stderr
            .lines()
            .find(|l| l.starts_with(&format!("view {name}_windows (")))
            .unwrap_or_else(|| panic!("no summary of {name}_windows in:\n{stderr}"));
        assert!(
            summary.starts_with(&format!("view {name}_windows (finished): "))
                && summary.ends_with(&format!(" {late} late, {bad} bad")),
            "{summary}"
        );
    }
    assert!(late > 2_000 && bad == 20, "late {late}, bad {bad}");
}
