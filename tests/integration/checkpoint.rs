//! Checkpoints through the engine's API: a job stopped with a final
//! checkpoint resumes from it (state, source position and watermark) with
//! no window lost or written twice, and `SHOW JOBS` reports both.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use fibers_engine::{CheckpointConfig, Engine, EngineConfig, StatementResult};

use crate::common::read_table;

const SCRIPT: &str = "
    CREATE STREAM live WITH (connector = 'stocks', rate = '2000', symbols = '3', disorder = '100ms',
                              start = '2025-01-02T14:30:00Z');
    CREATE MATERIALIZED VIEW per_second WITH (path = 'per_second') AS
      SELECT symbol, window_start, window_end, count(*) AS trades
      FROM TUMBLE(live, ts, INTERVAL '1' SECOND)
      GROUP BY symbol, window_start, window_end;";

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.checkpoints = CheckpointConfig {
        interval: Some(Duration::from_millis(500)),
        ..CheckpointConfig::default()
    };
    config
}

/// The `SHOW JOBS` row of `per_second`: (checkpoint_epoch, recovered_from,
/// input_rows).
async fn checkpoint_columns(engine: &Engine) -> (Option<u64>, Option<u64>, u64) {
    let mut results = engine.execute_script("SHOW JOBS").await.unwrap();
    let Some(StatementResult::Rows { schema, batches }) = results.pop() else {
        panic!("SHOW JOBS returned no rows");
    };
    let batch = &batches[0];
    let column = |name: &str| {
        let values = batch
            .column(schema.index_of(name).unwrap())
            .as_primitive::<UInt64Type>();
        (!values.is_null(0)).then(|| values.value(0))
    };
    (
        column("checkpoint_epoch"),
        column("recovered_from"),
        column("input_rows").unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_job_resumes_from_its_last_checkpoint_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).await.unwrap();
    engine.execute_script(SCRIPT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (epoch, recovered, input_before) = checkpoint_columns(&engine).await;
    engine.shutdown().await;
    drop(engine);
    assert!(
        epoch.is_some_and(|e| e >= 2),
        "checkpoints every 500 ms: {epoch:?}"
    );
    assert_eq!(recovered, None);
    let manifests = std::fs::read_dir(dir.path().join("checkpoints/per_second"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("manifest.json").is_file())
        .count();
    assert!(
        (1..=3).contains(&manifests),
        "the last 3 checkpoints are kept, older ones deleted: {manifests}"
    );
    let first = read_table("delta", &dir.path().join("per_second")).len();
    assert!(first > 0, "the first run committed windows");

    // Re-opening the data dir resumes the job from the final checkpoint.
    let engine = Engine::open(config(dir.path())).await.unwrap();
    let (mut recovered, mut input_at_recovery) = (None, 0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (_, recovered, input_at_recovery) = checkpoint_columns(&engine).await;
        if recovered.is_some() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (epoch_after, _, _) = checkpoint_columns(&engine).await;
    engine.shutdown().await;
    drop(engine);
    let recovered = recovered.expect("SHOW JOBS reports the recovery");
    // Counters come back with the checkpoint: rows are counted once.
    assert!(
        input_at_recovery >= input_before,
        "input_rows went back from {input_before} to {input_at_recovery}"
    );
    assert!(
        epoch_after.is_some_and(|e| e > recovered),
        "epochs go on after {recovered}: {epoch_after:?}"
    );

    let rows = read_table("delta", &dir.path().join("per_second"));
    assert!(rows.len() > first, "the resumed job added windows");
    let mut starts: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for row in &rows {
        let symbol = row["symbol"].as_str().unwrap().to_string();
        let start = row["window_start"].as_i64().unwrap();
        assert!(
            starts.entry(symbol).or_default().insert(start),
            "window written twice: {row:?}"
        );
    }
    // The feed resumed where the checkpoint left it (its generator state and
    // the open windows): a fresh start would make the same events from
    // 14:30:00 again and write their windows twice; a lost position or lost
    // open windows would leave gaps.
    for (symbol, starts) in &starts {
        let (first, last) = (starts.first().unwrap(), starts.last().unwrap());
        let expected = (last - first) / 1_000_000 + 1;
        assert_eq!(
            starts.len() as i64,
            expected,
            "{symbol}: windows {first}..={last} have gaps: {starts:?}"
        );
    }
}

/// The `SHOW JOBS` status and error of the only job.
pub(crate) async fn job_status(engine: &Engine) -> (String, String) {
    let mut results = engine.execute_script("SHOW JOBS").await.unwrap();
    let Some(StatementResult::Rows { schema, batches }) = results.pop() else {
        panic!("SHOW JOBS returned no rows");
    };
    let text = |name: &str| {
        batches[0]
            .column(schema.index_of(name).unwrap())
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    (text("status"), text("error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_instance_cannot_commit_once_another_has_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("shared_table");
    let script = format!(
        "CREATE STREAM live WITH (connector = 'stocks', rate = '1000', symbols = '2');
         CREATE MATERIALIZED VIEW per_second WITH (path = '{}') AS
           SELECT symbol, window_start, window_end, count(*) AS trades
           FROM TUMBLE(live, ts, INTERVAL '1' SECOND)
           GROUP BY symbol, window_start, window_end;",
        table.display()
    );
    // Two data dirs (two catalogs, two sets of checkpoints), one table: the
    // same job running twice, as after a failover that left the old
    // process alive.
    let old = Engine::open(config(&dir.path().join("old"))).await.unwrap();
    old.execute_script(&script).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new = Engine::open(config(&dir.path().join("new"))).await.unwrap();
    new.execute_script(&script).await.unwrap();

    // The new instance numbers its epochs after those in the table, and
    // both go on committing: whichever commits an epoch first fences the
    // other, whose next commit finds that epoch (or a later one) there.
    // Usually the old one loses; on a loaded machine the new one can.
    let (mut old_status, mut new_status) = Default::default();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        old_status = job_status(&old).await;
        new_status = job_status(&new).await;
        if old_status.0 != "running" || new_status.0 != "running" {
            break;
        }
    }
    // The survivor keeps committing after the zombie stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (old_after, new_after) = (job_status(&old).await, job_status(&new).await);
    old.shutdown().await;
    new.shutdown().await;
    let (zombie, survivor): ((String, String), (String, String)) = if old_status.0 != "running" {
        (old_status, new_after)
    } else {
        (new_status, old_after)
    };
    assert_eq!(zombie.0, "failed", "one instance stopped: {zombie:?}");
    assert!(
        zombie
            .1
            .contains("another instance of the job has moved on"),
        "{zombie:?}"
    );
    assert_eq!(survivor.0, "running", "the other goes on: {survivor:?}");
}

/// Two paced 3-second feeds joined per second (windowed) and within 5 ms
/// of each other (interval), checkpointing every 500 ms.
const JOINS: &str = "
    CREATE STREAM a WITH (connector = 'stocks', rate = '1000', limit = '3000', symbols = '3',
                          seed = '1', disorder = '50ms', start = '2025-01-02T14:30:00Z');
    CREATE STREAM b WITH (connector = 'stocks', rate = '1000', limit = '3000', symbols = '3',
                          seed = '2', disorder = '50ms', start = '2025-01-02T14:30:00Z');
    CREATE MATERIALIZED VIEW same_second WITH (path = 'same_second') AS
      SELECT a.window_start, a.symbol, count(*) AS pairs, sum(a.volume + b.volume) AS volume
      FROM TUMBLE(a, ts, INTERVAL '1' SECOND) AS a JOIN TUMBLE(b, ts, INTERVAL '1' SECOND) AS b
        ON a.symbol = b.symbol AND a.volume = b.volume AND a.window_start = b.window_start
      GROUP BY a.window_start, a.symbol;
    CREATE MATERIALIZED VIEW close_by WITH (path = 'close_by') AS
      SELECT a.symbol, a.ts AS a_ts, b.ts AS b_ts, a.price AS a_price, b.price AS b_price
      FROM a JOIN b ON a.symbol = b.symbol
        AND b.ts BETWEEN a.ts - INTERVAL '5' MILLISECOND AND a.ts + INTERVAL '5' MILLISECOND;";

/// The rows of an archive as sorted JSON texts (a multiset).
fn archived(dir: &std::path::Path, view: &str) -> Vec<String> {
    let mut rows: Vec<String> = read_table("delta", &dir.join(view))
        .iter()
        .map(|row| serde_json::to_string(row).unwrap())
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_stopped_midway_resume_to_the_same_rows_as_an_uninterrupted_run() {
    // The uninterrupted run.
    let whole = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(whole.path())).await.unwrap();
    engine.execute_script(JOINS).await.unwrap();
    engine.wait_for_bounded_jobs().await;
    engine.shutdown().await;
    drop(engine);

    // Stopped a second into the feeds (with a last checkpoint), then
    // resumed to the end.
    let cut = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(cut.path())).await.unwrap();
    engine.execute_script(JOINS).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    engine.shutdown().await;
    drop(engine);
    let before = archived(cut.path(), "close_by").len();
    let engine = Engine::open(config(cut.path())).await.unwrap();
    engine.wait_for_bounded_jobs().await;
    let failures = engine.failures().await;
    engine.shutdown().await;
    drop(engine);
    assert!(failures.is_empty(), "{failures:?}");

    for view in ["same_second", "close_by"] {
        let expected = archived(whole.path(), view);
        assert!(expected.len() > 5, "{view}: {} rows", expected.len());
        assert_same_rows(view, &expected, &archived(cut.path(), view));
    }
    let total = archived(whole.path(), "close_by").len();
    assert!(
        0 < before && before < total,
        "the stop came midway: {before} of {total} interval-join rows before it"
    );
}

/// Asserts two sorted multisets of rows are equal, naming the first
/// missing and extra rows.
fn assert_same_rows(view: &str, expected: &[String], got: &[String]) {
    // Multiset differences: both lists are sorted.
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < got.len() {
        match (expected.get(i), got.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                missing.push(x);
                i += 1;
            }
            (Some(x), None) => {
                missing.push(x);
                i += 1;
            }
            (_, Some(y)) => {
                extra.push(y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    assert!(
        got.len() == expected.len() && missing.is_empty() && extra.is_empty(),
        "{view}: {} rows after the resume, {} uninterrupted; {} missing (first: {:?}), \
         {} extra (first: {:?})",
        got.len(),
        expected.len(),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
}

const CHAIN: &str = "
    CREATE STREAM a WITH (connector = 'stocks', rate = '1000', limit = '3000', symbols = '3',
                          seed = '1', disorder = '50ms', start = '2025-01-02T14:30:00Z');
    CREATE MATERIALIZED VIEW lots WITH (archive = 'none') AS
      SELECT symbol, volume, ts AS traded_at FROM a WHERE volume >= 200;
    CREATE MATERIALIZED VIEW per_100ms WITH (archive = 'none') AS
      SELECT symbol, window_start AS at, sum(volume) AS volume, count(*) AS trades
      FROM TUMBLE(lots, traded_at, INTERVAL '100' MILLISECOND) GROUP BY symbol, window_start, window_end;
    CREATE MATERIALIZED VIEW per_500ms WITH (path = 'per_500ms') AS
      SELECT symbol, window_start AS at, sum(volume) AS volume, sum(trades) AS trades
      FROM TUMBLE(per_100ms, at, INTERVAL '500' MILLISECOND) GROUP BY symbol, window_start, window_end;
    CREATE MATERIALIZED VIEW busy WITH (path = 'busy') AS
      SELECT symbol, at, trades FROM per_500ms WHERE trades >= 40;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_views_stopped_midway_resume_to_the_same_rows_as_an_uninterrupted_run() {
    let whole = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(whole.path())).await.unwrap();
    engine.execute_script(CHAIN).await.unwrap();
    engine.wait_for_bounded_jobs().await;
    engine.shutdown().await;
    drop(engine);

    // Stopped a second into the feed, each job with a last checkpoint of
    // every operator in its chain, then resumed to the end.
    let cut = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(cut.path())).await.unwrap();
    engine.execute_script(CHAIN).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    engine.shutdown().await;
    drop(engine);
    let before = archived(cut.path(), "per_500ms").len();
    let engine = Engine::open(config(cut.path())).await.unwrap();
    engine.wait_for_bounded_jobs().await;
    let failures = engine.failures().await;
    engine.shutdown().await;
    drop(engine);
    assert!(failures.is_empty(), "{failures:?}");

    for view in ["per_500ms", "busy"] {
        let expected = archived(whole.path(), view);
        assert!(expected.len() > 3, "{view}: {} rows", expected.len());
        assert_same_rows(view, &expected, &archived(cut.path(), view));
    }
    let total = archived(whole.path(), "per_500ms").len();
    assert!(
        0 < before && before < total,
        "the stop came midway: {before} of {total} rows before it"
    );
}
