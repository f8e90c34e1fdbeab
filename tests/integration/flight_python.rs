//! `fibers serve` driven by real external clients: the ADBC Flight SQL
//! driver and pyarrow's Flight client, with a live view's Delta archive
//! read back by the `deltalake` package (`tests/python/flight_clients.py`,
//! which says what each part checks).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{output_within, python};
use crate::server::Server;

/// How long the whole client run may take (it needs about ten seconds).
const PATIENCE: Duration = Duration::from_secs(300);

/// `flight_clients.py` pointed at `server`, whose data dir is `dir/data`.
fn clients(server: &Server, dir: &Path) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/flight_clients.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .arg("--uri")
        .arg(format!("grpc://{}", server.address))
        .arg("--data-dir")
        .arg(dir.join("data"));
    command
}

#[test]
fn adbc_and_pyarrow_flight_log_in_to_a_server_with_a_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start_with_env(
        dir.path(),
        &["--user", "alice"],
        &[("FIBERS_PASSWORD", "pw-1")],
    );
    let mut command = clients(&server, dir.path());
    command
        .args(["--auth-user", "alice"])
        .env("FIBERS_PASSWORD", "pw-1");
    let output = output_within(&mut command, None, PATIENCE);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("auth: ADBC login"),
        "flight_clients.py --auth-user failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\n\
         fibers serve's stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.stop()
    );
}

#[test]
fn adbc_and_pyarrow_flight_clients_and_the_delta_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path());
    // Only the ingest part needs a broker; the rest runs without one.
    let brokers = crate::common::test_brokers();
    if brokers.is_none() {
        eprintln!("FIBERS_TEST_BROKERS is not set: the Kafka ingest part is skipped");
    }
    let mut command = clients(&server, dir.path());
    if let Some(brokers) = &brokers {
        command.args(["--brokers", brokers]);
    }
    let started = Instant::now();
    let output = output_within(&mut command, None, PATIENCE);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flight_clients.py failed ({}) after {:?}:\nstdout:\n{stdout}\nstderr:\n{stderr}\n\
         fibers serve's stderr:\n{}",
        output.status,
        started.elapsed(),
        server.stop()
    );
    // Every part ran (the script prints a line per part as it passes).
    let mut parts = vec![
        "adbc: ",
        "adbc metadata: ",
        "pyarrow.flight: ",
        "pyarrow.flight SUBSCRIBE v: ",
        "delta: ",
    ];
    parts.push(if brokers.is_some() {
        "adbc ingest: 5 rows appended"
    } else {
        "adbc ingest: skipped"
    });
    for part in parts {
        assert!(
            stdout.lines().any(|line| line.starts_with(part)),
            "no line starting {part:?} in:\n{stdout}"
        );
    }
    // Shown with --nocapture: what each part checked.
    println!("{stdout}");
}
