//! Transient faults: a job whose archive cannot be written for a while
//! shows `retrying` with the reason, runs again from its last checkpoint
//! once the fault is gone, and ends with every row exactly once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fibers_engine::{CheckpointConfig, Engine, EngineConfig};

use crate::checkpoint::job_status;
use crate::common::{in_ci, read_table};

/// Events per second of event time: the paced feed steps 1 ms per event.
const PER_SECOND: i64 = 1000;

/// Makes `dir` immutable (`chattr +i`), so nothing in it can be created or
/// removed, not even by root; `false` when the file system cannot.
fn set_immutable(dir: &Path, on: bool) -> bool {
    Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_retries_an_unwritable_archive_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = EngineConfig::new(dir.path());
    config.checkpoints = CheckpointConfig {
        interval: Some(Duration::from_millis(300)),
        ..CheckpointConfig::default()
    };
    let engine = Engine::open(config).await.expect("open");
    engine
        .execute_script(&format!(
            "CREATE STREAM live WITH (connector = 'stocks', rate = '{PER_SECOND}', symbols = '3', disorder = '0ms',
                                      start = '2025-01-02T14:30:00Z');
             CREATE MATERIALIZED VIEW per_second WITH (path = 'per_second') AS
               SELECT symbol, window_start, window_end, count(*) AS trades
               FROM TUMBLE(live, ts, INTERVAL '1' SECOND)
               GROUP BY symbol, window_start, window_end;"
        ))
        .await
        .expect("create");
    let log = dir.path().join("per_second").join("_delta_log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.is_dir() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if !set_immutable(&log, true) {
        assert!(!in_ci(), "chattr +i is needed for this test under CI");
        eprintln!("skipped: this file system cannot make a directory immutable");
        return;
    }
    let mut seen = None;
    let mut last = Default::default();
    for _ in 0..300 {
        let status = job_status(&engine).await;
        if status.0 == "retrying" {
            seen = Some(status);
            break;
        }
        last = status;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Writable again, whatever happened.
    assert!(set_immutable(&log, false), "chattr -i");
    let (status, error) =
        seen.unwrap_or_else(|| panic!("the job never showed `retrying`; last: {last:?}"));
    assert!(
        error.contains("per_second archive at") && error.contains("running again"),
        "{status}: {error}"
    );
    // Running again: it commits new windows.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, error) = job_status(&engine).await;
        assert_ne!(status, "failed", "{error}");
        if status == "running" && read_table("delta", &dir.path().join("per_second")).len() > 9 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not resume: {status}: {error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    engine.shutdown().await;
    // Every archived window is closed and complete: each second of event
    // time holds PER_SECOND events over the symbols, none lost or doubled.
    let rows = read_table("delta", &dir.path().join("per_second"));
    let mut windows = std::collections::BTreeSet::new();
    let mut per_second = std::collections::BTreeMap::<String, i64>::new();
    for row in &rows {
        let key = (row["symbol"].to_string(), row["window_start"].to_string());
        assert!(windows.insert(key.clone()), "window {key:?} archived twice");
        *per_second.entry(key.1).or_default() += row["trades"].as_i64().expect("a count");
    }
    assert!(per_second.len() >= 3, "{per_second:?}");
    for (second, count) in &per_second {
        assert_eq!(*count, PER_SECOND, "second {second}: {per_second:?}");
    }
}
