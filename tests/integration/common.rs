//! Helpers: running the `fibers` binary, reading archives back with an
//! independent reader (the Python `deltalake` package and pyarrow), and
//! the Kafka tests' independent client, schema registry and broker.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A row as read back (a JSON object).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// `fibers run SCRIPT --data-dir DIR/data [extra...]` with `sql` written
/// to a new script file in `dir`.
fn fibers_command(dir: &Path, sql: &str, extra: &[&str]) -> Command {
    let script = dir.join(format!("script-{}.sql", unique()));
    std::fs::write(&script, sql).expect("write script");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fibers"));
    command
        .arg("run")
        .arg(&script)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra);
    command
}

/// Runs `fibers run SCRIPT --data-dir DIR [extra...]` with `sql` as the
/// script.
pub fn fibers_run(dir: &Path, sql: &str, extra: &[&str]) -> Output {
    fibers_command(dir, sql, extra)
        .output()
        .expect("run fibers")
}

/// Like [`fibers_run`], for a run that must end by itself: fails the test
/// (after killing the process) if it is still running after `timeout`.
pub fn fibers_run_within(dir: &Path, sql: &str, extra: &[&str], timeout: Duration) -> Output {
    output_within(&mut fibers_command(dir, sql, extra), None, timeout)
}

/// Runs `command` with `stdin` as its input (empty if `None`), draining
/// its output while it runs; fails the test (after killing the process)
/// if it is still running after `timeout`.
pub fn output_within(command: &mut Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.unwrap_or_default().to_string();
    let writer = std::thread::spawn(move || {
        // The process may stop reading early (at an error); not a failure.
        let _ = input.write_all(text.as_bytes());
    });
    // Drain both pipes while waiting, so a chatty process cannot block.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not exit within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Starts `fibers run` in the background, its output going to
/// `DIR/fibers.stdout` and `DIR/fibers.stderr`.
pub fn fibers_spawn(dir: &Path, sql: &str, extra: &[&str]) -> Child {
    fibers_spawn_logging(dir, sql, extra, "warn")
}

/// [`fibers_spawn`] with the log filter `FIBERS_LOG` = `log`.
pub fn fibers_spawn_logging(dir: &Path, sql: &str, extra: &[&str], log: &str) -> Child {
    let stdout = std::fs::File::create(dir.join("fibers.stdout")).expect("create stdout file");
    let stderr = std::fs::File::create(dir.join("fibers.stderr")).expect("create stderr file");
    fibers_command(dir, sql, extra)
        .env("FIBERS_LOG", log)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start fibers")
}

/// The rows `fibers run --format json` printed.
pub fn json_rows(output: &Output) -> Vec<Row> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(row)) => row,
            other => panic!("unexpected output line {line}: {other:?}"),
        })
        .collect()
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
pub fn read_table(kind: &str, path: &Path) -> Vec<Row> {
    try_read_table(kind, path).unwrap_or_else(|e| panic!("{e}"))
}

/// [`read_table`], returning the reader's failure (for a table that may
/// not exist yet).
pub fn try_read_table(kind: &str, path: &Path) -> Result<Vec<Row>, String> {
    let script = python_script("read_table.py");
    let output = Command::new(python())
        .arg(script)
        .arg(kind)
        .arg(path)
        .output()
        .expect("run the Python reader");
    if !output.status.success() {
        return Err(format!(
            "the Python reader failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(row)) => row,
            other => panic!("unexpected reader output {line}: {other:?}"),
        })
        .collect())
}

fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// The Kafka broker the Kafka tests use (`FIBERS_TEST_BROKERS`, which
/// `.ci/run` sets to a local tansu broker), or `None` after saying on
/// stderr that the calling test is skipped; under CI, a panic.
pub fn test_brokers() -> Option<String> {
    match std::env::var("FIBERS_TEST_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => Some(brokers),
        // CI must run every test: a missing broker there is a failure.
        _ if in_ci() => {
            panic!("FIBERS_TEST_BROKERS is not set, and CI=true: .ci/run starts the broker")
        }
        _ => {
            eprintln!("skipped: FIBERS_TEST_BROKERS is not set");
            None
        }
    }
}

/// Whether the tests run under CI (`CI=true`), where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A name no other test (nor an earlier run against the same broker)
/// uses: `prefix_PID_NANOS`, a valid SQL identifier and Kafka topic name.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), unique())
}

/// Runs `tests/python/kafka_tool.py ARGS` (the independent Kafka client)
/// and returns its stdout, failing the test if it fails.
pub fn kafka_tool(args: &[&str]) -> String {
    let output = Command::new(python())
        .arg(python_script("kafka_tool.py"))
        .args(args)
        .output()
        .expect("run kafka_tool.py");
    assert!(
        output.status.success(),
        "kafka_tool.py {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// [`kafka_tool`] for a subcommand that prints one JSON document.
pub fn kafka_tool_json(args: &[&str]) -> serde_json::Value {
    let stdout = kafka_tool(args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("kafka_tool.py {}: {e}: {stdout}", args.join(" ")))
}

/// [`kafka_tool`] for a subcommand that prints JSON lines.
pub fn kafka_tool_lines(args: &[&str]) -> Vec<Row> {
    kafka_tool(args)
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(row)) => row,
            other => panic!("unexpected kafka_tool.py output {line}: {other:?}"),
        })
        .collect()
}

/// The in-memory Confluent schema registry of
/// `tests/python/schema_registry.py`, stopped when dropped.
pub struct SchemaRegistry {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl SchemaRegistry {
    pub fn start() -> Self {
        let mut child = Command::new(python())
            .arg(python_script("schema_registry.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the schema registry");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the schema registry's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the schema registry printed {line:?}, not its port"));
        SchemaRegistry {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tansu broker of the test's own (`scripts/kafka-broker.sh`), on a free
/// loopback port, storing its topics under `dir`; stopped when dropped.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    /// The address it tells clients to connect to, when not its own.
    advertised: Option<String>,
}

impl Broker {
    pub fn start(dir: &Path) -> Self {
        let broker = Broker {
            dir: dir.to_path_buf(),
            port: free_port(),
            advertised: None,
        };
        broker.run_script("start");
        broker
    }

    /// A broker whose clients are sent to `advertised` (a proxy in front
    /// of it) by the metadata it returns.
    pub fn start_behind(dir: &Path, advertised: &str) -> Self {
        let broker = Broker {
            dir: dir.to_path_buf(),
            port: free_port(),
            advertised: Some(advertised.to_string()),
        };
        broker.run_script("start");
        broker
    }

    /// Its bootstrap address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it and waits until it has exited.
    pub fn stop(&self) {
        self.run_script("stop");
    }

    /// Starts it again on the same port, with the same storage.
    pub fn restart(&self) {
        self.run_script("start");
    }

    fn run_script(&self, verb: &str) {
        let output = self.script(verb).expect("run scripts/kafka-broker.sh");
        assert!(
            output.status.success(),
            "scripts/kafka-broker.sh {verb} {} failed:\n{}",
            self.port,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn script(&self, verb: &str) -> std::io::Result<Output> {
        let mut command =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-broker.sh"));
        command
            .arg(verb)
            .arg(self.port.to_string())
            .env("FIBERS_BROKER_DIR", &self.dir);
        if let Some(advertised) = &self.advertised {
            command.env("FIBERS_BROKER_ADVERTISED", advertised);
        }
        command.output()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Also while a failed test unwinds: no assertion here.
        let _ = self.script("stop");
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind a free loopback port")
}
