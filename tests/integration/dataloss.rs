//! Silent loss: an archive that loses commits behind its job's back must
//! stop the job with a message naming the fix, never be refilled as if
//! nothing had happened.

use std::path::Path;
use std::time::Duration;

use crate::common::{assert_ok, fibers_run_within, read_table};

const SCRIPT: &str = "
    CREATE STREAM trades WITH (connector = 'stocks', rate = '500', symbols = '3');
    CREATE MATERIALIZED VIEW per_second WITH (archive = 'delta', path = 'per_second') AS
      SELECT symbol, window_start, window_end, count(*) AS trades
      FROM TUMBLE(trades, ts, INTERVAL '1' SECOND)
      GROUP BY symbol, window_start, window_end;";

const RUN: Duration = Duration::from_secs(120);

/// Runs the script for a few seconds, checkpointing often; returns the
/// archive's directory.
fn archive_some_windows(dir: &Path) -> std::path::PathBuf {
    let output = fibers_run_within(
        dir,
        SCRIPT,
        &["--for", "5s", "--checkpoint-interval", "500ms"],
        RUN,
    );
    assert_ok(&output);
    let table = dir.join("data").join("per_second");
    assert!(!read_table("delta", &table).is_empty(), "nothing archived");
    table
}

/// The commit files of a Delta table's log, oldest first.
fn log_entries(table: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .expect("read the log")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    entries
}

fn resume_fails_naming_the_fix(dir: &Path, expected: &str) {
    let output = fibers_run_within(dir, "", &["--for", "3s"], RUN);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the job resumed: {stderr}");
    assert!(
        stderr.contains(expected) && stderr.contains("RESTART FROM EARLIEST"),
        "{stderr}"
    );
}

#[test]
fn a_deleted_archive_stops_its_job_instead_of_starting_over_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = archive_some_windows(dir.path());
    std::fs::remove_dir_all(&table).expect("delete the archive");
    resume_fails_naming_the_fix(dir.path(), "holds no commit of this job");
}

#[test]
fn an_archive_missing_its_newest_commits_stops_its_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = archive_some_windows(dir.path());
    let mut entries = log_entries(&table);
    // The newest commit may be the last checkpoint's own, which its
    // recovery commits again from the checkpoint; the one before is lost.
    for _ in 0..2 {
        let newest = entries.pop().expect("a commit");
        std::fs::remove_file(&newest).expect("remove a commit");
    }
    resume_fails_naming_the_fix(dir.path(), "commits were removed");
}

#[test]
fn a_damaged_checkpoint_manifest_falls_back_to_the_one_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = archive_some_windows(dir.path());
    let checkpoints = dir
        .path()
        .join("data")
        .join("checkpoints")
        .join("per_second");
    let mut epochs: Vec<_> = std::fs::read_dir(&checkpoints)
        .expect("read the checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    epochs.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u64>().ok())
    });
    assert!(epochs.len() >= 2, "two complete checkpoints: {epochs:?}");
    let newest = epochs.pop().expect("a checkpoint").join("manifest.json");
    std::fs::write(&newest, b"{\"format\": 1, \"job\": ").expect("damage the manifest");

    let output = fibers_run_within(dir.path(), "", &["--for", "3s"], RUN);
    assert_ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is damaged"), "{stderr}");
    // Every window once: none emitted again by the replay from the older
    // checkpoint.
    let rows = read_table("delta", &table);
    let mut seen = std::collections::BTreeSet::new();
    for row in &rows {
        let key = (row["symbol"].to_string(), row["window_start"].to_string());
        assert!(seen.insert(key.clone()), "window {key:?} archived twice");
    }
}

#[test]
fn a_truncated_catalog_is_refused_while_the_data_dir_holds_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    archive_some_windows(dir.path());
    let catalog = dir.path().join("data").join("catalog.db");
    std::fs::write(&catalog, b"").expect("truncate the catalog");
    for wal in ["catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(wal));
    }
    let output = fibers_run_within(dir.path(), "SHOW JOBS;", &[], RUN);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is empty (0 bytes)") && stderr.contains("per_second"),
        "{stderr}"
    );
}

#[test]
fn a_truncated_delta_log_is_one_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = archive_some_windows(dir.path());
    let mut entries = log_entries(&table);
    let newest = entries.pop().expect("a commit");
    let text = std::fs::read(&newest).expect("read");
    std::fs::write(&newest, &text[..text.len() / 2]).expect("truncate");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fibers"))
        .args(["run", "/dev/null", "--for", "3s", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_BACKTRACE", "1")
        .env_remove("FIBERS_LOG")
        .output()
        .expect("run fibers");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("per_second archive at"), "{stderr}");
    assert!(stderr.lines().count() < 20, "{stderr}");
}
