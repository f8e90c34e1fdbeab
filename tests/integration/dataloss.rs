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
fn an_archive_missing_its_newest_commit_stops_its_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = archive_some_windows(dir.path());
    let log = table.join("_delta_log");
    let mut entries: Vec<_> = std::fs::read_dir(&log)
        .expect("read the log")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    let newest = entries.pop().expect("a commit");
    std::fs::remove_file(&newest).expect("remove the newest commit");
    resume_fails_naming_the_fix(dir.path(), "commits were removed");
}
