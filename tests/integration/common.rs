//! Helpers: running the `fibers` binary and reading archives back with an
//! independent reader (the Python `deltalake` package and pyarrow).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `fibers run SCRIPT --data-dir DIR [extra...]` with `sql` as the
/// script.
pub fn fibers_run(dir: &Path, sql: &str, extra: &[&str]) -> Output {
    let script = dir.join(format!("script-{}.sql", unique()));
    std::fs::write(&script, sql).expect("write script");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fibers"));
    command
        .arg("run")
        .arg(&script)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra);
    command.output().expect("run fibers")
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Asserts the command succeeded, showing its output otherwise.
pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "fibers failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The interpreter of the virtual environment `scripts/setup-python.sh`
/// creates (or `FIBERS_PYTHON`).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("FIBERS_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let venv = PathBuf::from(home).join(".cache/datafibers/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python environment with the deltalake reader: run scripts/setup-python.sh \
         (or set FIBERS_PYTHON)"
    );
    venv
}

/// The rows of a Delta table (`kind = "delta"`) or Parquet directory, as
/// read by pyarrow/deltalake; timestamps are integer microseconds.
pub fn read_table(kind: &str, path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_table.py");
    let output = Command::new(python())
        .arg(script)
        .arg(kind)
        .arg(path)
        .output()
        .expect("run the Python reader");
    assert!(
        output.status.success(),
        "the Python reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(row)) => row,
            other => panic!("unexpected reader output {line}: {other:?}"),
        })
        .collect()
}
