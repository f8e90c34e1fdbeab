//! `fibers shell` as users run it: statements from -c, -f and piped
//! input against `fibers serve`, exit statuses, and an interactive
//! session on a pseudo-terminal, a live SUBSCRIBE, and a login over TLS.
//! Cases a real server cannot produce on demand (a subscriber falling
//! behind, a server without authentication answering a login) run against
//! a fake Flight SQL server.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fake_flight::FakeFlight;
use crate::server::Server;
use crate::terminal::Terminal;

/// Generous: a debug build on a loaded two-core machine.
const TIMEOUT: Duration = Duration::from_secs(120);

fn trades_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt/data/trades.jsonl")
}

/// `fibers shell --host ADDRESS`, with no shell settings inherited from
/// the environment of the test run.
fn shell_command(address: &str, home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fibers"));
    command
        .args(["shell", "--host", address])
        .env_remove("FIBERS_HOST")
        .env_remove("FIBERS_USER")
        .env_remove("FIBERS_PASSWORD")
        .env("HOME", home);
    command
}

/// Runs `command` with `stdin` as its input (empty if `None`) and fails
/// the test if it has not exited within [`TIMEOUT`].
fn run(mut command: Command, stdin: Option<&str>) -> Output {
    crate::common::output_within(&mut command, stdin, TIMEOUT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates the `trades` stream over the test file and the `totals` view
/// through the shell, checking the command tags it prints.
fn create_trades_and_totals(address: &str, home: &Path) {
    let mut command = shell_command(address, home);
    command.args([
        "-c",
        &format!(
            "CREATE STREAM trades (
               symbol TEXT NOT NULL, price DOUBLE, volume BIGINT, ts TIMESTAMP,
               WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
             ) WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW totals WITH (archive = 'delta', path = 'totals') AS
               SELECT window_start, window_end, count(*) AS n, sum(volume) AS volume
               FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE)
               GROUP BY window_start, window_end",
            trades_file().display()
        ),
    ]);
    let output = run(command, None);
    assert_eq!(
        text(&output.stdout),
        "CREATE STREAM\nCREATE MATERIALIZED VIEW\n",
        "stderr: {}",
        text(&output.stderr)
    );
    assert!(output.status.success(), "{output:?}");
}

const TOTALS_TABLE: &str = "    window_start     |     window_end      | n | volume
---------------------+---------------------+---+--------
 2024-01-01T09:30:00 | 2024-01-01T09:31:00 | 6 |   1250
 2024-01-01T09:31:00 | 2024-01-01T09:32:00 | 3 |    550
 2024-01-01T09:32:00 | 2024-01-01T09:33:00 | 4 |    750
(3 rows)

";

#[test]
fn statements_and_commands_print_like_psql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let address = server.address.to_string();
    create_trades_and_totals(&address, dir.path());

    let mut command = shell_command(&format!("http://{address}"), dir.path());
    command.args([
        "-c",
        "SELECT * FROM totals ORDER BY window_start; SHOW STREAMS",
        "-c",
        "\\d",
        "-c",
        "\\d trades",
        "-c",
        "\\dt",
        "-c",
        "\\ds",
        "-c",
        "\\x on\nSELECT n, volume FROM totals ORDER BY window_start LIMIT 2",
    ]);
    let output = run(command, None);
    assert_eq!(text(&output.stderr), "");
    assert_eq!(
        text(&output.stdout),
        format!(
            "{TOTALS_TABLE}  \
  name  | connector | watermark
--------+-----------+-----------
 trades | file      | ts - 10s
(1 row)

      List of objects
  Name  |       Type
--------+-------------------
 totals | materialized view
 trades | stream
(2 rows)

        Stream \"trades\"
 Column |   Type    | Nullable
--------+-----------+----------
 symbol | TEXT      | not null
 price  | DOUBLE    |
 volume | BIGINT    |
 ts     | TIMESTAMP |

 List of streams
  Name  |  Type
--------+--------
 trades | stream
(1 row)

Did not find any sinks.
Expanded display is on.
-[ RECORD 1 ]
n      | 6
volume | 1250
-[ RECORD 2 ]
n      | 3
volume | 550

"
        )
    );
    assert!(output.status.success(), "{output:?}");

    // CSV and JSON lines, chosen on the command line or with \format.
    let mut command = shell_command(&address, dir.path());
    command.args([
        "--format",
        "csv",
        "-c",
        "SELECT * FROM totals ORDER BY window_start LIMIT 2",
        "-c",
        "\\format json\nSELECT n, volume FROM totals ORDER BY window_start LIMIT 2",
    ]);
    let output = run(command, None);
    assert_eq!(
        text(&output.stdout),
        "window_start,window_end,n,volume\n\
         2024-01-01T09:30:00,2024-01-01T09:31:00,6,1250\n\
         2024-01-01T09:31:00,2024-01-01T09:32:00,3,550\n\
         Output format is json.\n\
         {\"n\":6,\"volume\":1250}\n\
         {\"n\":3,\"volume\":550}\n"
    );
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn scripts_stop_at_the_first_error_with_status_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let address = server.address.to_string();
    create_trades_and_totals(&address, dir.path());

    // -c: the statements before the error ran and printed; none after.
    let mut command = shell_command(&address, dir.path());
    command.args([
        "-c",
        "SELECT count(*) AS n FROM totals; SELECT * FROM nowhere; SHOW STREAMS",
        "-c",
        "SHOW VIEWS",
    ]);
    let output = run(command, None);
    assert_eq!(text(&output.stdout), " n\n---\n 3\n(1 row)\n\n");
    assert_eq!(
        text(&output.stderr),
        "ERROR: table 'datafusion.public.nowhere' not found\n"
    );
    assert_eq!(output.status.code(), Some(1));

    // -f: the error names the file and the line its statement starts on.
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "-- a report\nSELECT count(*) AS n\n  FROM totals;\n\n\\timing off\nSELEC 1;\nSHOW STREAMS;\n",
    )
    .expect("write the script");
    let mut command = shell_command(&address, dir.path());
    command.arg("-f").arg(&script);
    let output = run(command, None);
    assert_eq!(
        text(&output.stdout),
        " n\n---\n 3\n(1 row)\n\nTiming is off.\n"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!("{}:6: ERROR: SQL syntax error", script.display()))
            && stderr.contains("SELEC"),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(1));

    // A bad backslash command is an error too.
    let mut command = shell_command(&address, dir.path());
    command.args(["-c", "\\dx", "-c", "SHOW STREAMS"]);
    let output = run(command, None);
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        "ERROR: invalid command \\dx; try \\? for help\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn piped_input_runs_statement_by_statement() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let address = server.address.to_string();
    create_trades_and_totals(&address, dir.path());

    // Multi-line statements, a comment, a ';' in a string, and a last
    // statement without ';'.
    let input = "SELECT window_start, n -- the count; per minute\n\
                 FROM totals\n\
                 ORDER BY window_start;\n\
                 /* ; */ SELECT 'a;b' AS s;\n\
                 SELECT count(*) AS n FROM totals\n";
    let output = run(shell_command(&address, dir.path()), Some(input));
    assert_eq!(text(&output.stderr), "");
    assert_eq!(
        text(&output.stdout),
        "    window_start     | n
---------------------+---
 2024-01-01T09:30:00 | 6
 2024-01-01T09:31:00 | 3
 2024-01-01T09:32:00 | 4
(3 rows)

  s
-----
 a;b
(1 row)

 n
---
 3
(1 row)

"
    );
    assert!(output.status.success(), "{output:?}");

    let output = run(
        shell_command(&address, dir.path()),
        Some("SHOW STREAMS;\nDROP STREAM nowhere;\nSHOW VIEWS;\n"),
    );
    assert!(
        text(&output.stdout).contains(" trades | file"),
        "{output:?}"
    );
    assert!(!text(&output.stdout).contains("totals"), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "ERROR: stream 'nowhere' does not exist\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn an_unreachable_server_exits_with_status_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port nothing listens on: bound, then released.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let mut command = shell_command(&address.to_string(), dir.path());
    command.args(["-c", "SHOW STREAMS"]);
    let output = run(command, None);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stdout), "");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "fibers shell: cannot connect to the Fibers server at {address}: "
        )) && stderr.contains("refused"),
        "{stderr}"
    );

    let mut command = shell_command("grpc://127.0.0.1:1", dir.path());
    command.args(["-c", "SHOW STREAMS"]);
    let output = run(command, None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("unsupported scheme 'grpc://'"),
        "{output:?}"
    );
}

#[test]
fn an_interactive_session_on_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let address = server.address.to_string();
    create_trades_and_totals(&address, dir.path());

    let mut command = shell_command(&address, dir.path());
    command.env("TERM", "xterm");
    let mut terminal = Terminal::spawn(command);
    terminal.expect(&format!("connected to {address}"), TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);

    // A statement over two lines: the continuation prompt, then the table.
    terminal.type_keys("SELECT *\r");
    terminal.expect("fibers-> ", TIMEOUT);
    terminal.type_keys("FROM totals ORDER BY window_start;\r");
    let shown = terminal.expect("(3 rows)", TIMEOUT);
    assert!(
        shown.contains(TOTALS_TABLE.trim_end_matches('\n')),
        "{shown}"
    );
    terminal.expect("fibers=> ", TIMEOUT);

    // An error is printed and the prompt comes back.
    terminal.type_keys("SELECT * FROM nowhere;\r");
    terminal.expect(
        "ERROR: table 'datafusion.public.nowhere' not found",
        TIMEOUT,
    );
    terminal.expect("fibers=> ", TIMEOUT);

    // Ctrl-C clears a half-typed statement: the next one runs alone.
    terminal.type_keys("SELECT nonsense");
    terminal.expect("SELECT nonsense", TIMEOUT);
    terminal.type_keys("\x03");
    terminal.expect("fibers=> ", TIMEOUT);
    terminal.type_keys("SHOW STREAMS;\r");
    terminal.expect(" trades | file      | ts - 10s\n(1 row)", TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);

    terminal.type_keys("\\q\r");
    let status = terminal.wait(TIMEOUT);
    assert!(status.success(), "{status:?}");

    let history =
        std::fs::read_to_string(dir.path().join(".fibers_history")).expect("the history file");
    assert!(
        history.contains("FROM totals ORDER BY window_start;")
            && history.contains("SELECT * FROM nowhere;"),
        "{history}"
    );
}

/// Reads stdout lines of a running shell until one equals `line`.
fn read_until(lines: &mut impl BufRead, line: &str) -> String {
    let mut seen = String::new();
    let mut next = String::new();
    loop {
        next.clear();
        let read = lines.read_line(&mut next).expect("read the shell's output");
        assert!(read > 0, "the output ended before {line:?}:\n{seen}");
        seen.push_str(&next);
        if next.trim_end_matches('\n') == line {
            return seen;
        }
    }
}

#[test]
fn subscribe_prints_rows_as_they_arrive_until_the_process_is_stopped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeFlight::start(None);
    let mut child = shell_command(&fake.address.to_string(), dir.path())
        .args(["-c", "SUBSCRIBE ticks"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fibers shell");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    // Rows show while the subscription goes on (the shell is still running).
    let shown = read_until(&mut lines, " 3");
    assert_eq!(shown, " n\n---\n 0\n 1\n 2\n 3\n");
    assert_eq!(child.try_wait().expect("poll the shell"), None);
    assert_eq!(fake.live_subscriptions(), 1);

    // SIGTERM (or SIGINT) ends a non-interactive shell, and with it the
    // subscription.
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) with the pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait for the shell");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(fake.wait_until_no_subscription(TIMEOUT));
}

#[test]
fn a_subscriber_that_falls_behind_sees_the_error_after_its_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeFlight::start(None);
    let mut command = shell_command(&fake.address.to_string(), dir.path());
    command.args(["-c", "SUBSCRIBE lagging", "-c", "SELECT 42"]);
    let output = run(command, None);
    assert_eq!(text(&output.stdout), " n\n---\n 0\n 1\n(2 rows)\n\n");
    assert_eq!(
        text(&output.stderr),
        "ERROR: subscriber fell behind the view 'lagging' by more than 1000 batches; \
         subscribe again\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn ctrl_c_cancels_a_subscription_and_the_shell_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeFlight::start(None);
    let mut command = shell_command(&fake.address.to_string(), dir.path());
    command.env("TERM", "xterm");
    let mut terminal = Terminal::spawn(command);
    terminal.expect("fibers=> ", TIMEOUT);

    terminal.type_keys("SUBSCRIBE ticks;\r");
    terminal.expect(" n\n---\n 0\n 1\n 2\n", TIMEOUT);
    assert_eq!(fake.live_subscriptions(), 1);
    terminal.type_keys("\x03");
    terminal.expect("rows)\n", TIMEOUT);
    terminal.expect("Cancelled.\n", TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);
    assert!(
        fake.wait_until_no_subscription(TIMEOUT),
        "the subscription is still being sent"
    );

    // The shell is still there and the connection still works.
    terminal.type_keys("SELECT 42;\r");
    terminal.expect(" answer\n--------\n     42\n(1 row)\n", TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);
    terminal.type_keys("\\q\r");
    assert!(terminal.wait(TIMEOUT).success());
}

#[test]
fn authenticates_with_the_flight_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeFlight::start(Some(("alice", "secret")));
    let address = fake.address.to_string();

    // The fake answers queries only with the token the handshake gave.
    let mut command = shell_command(&address, dir.path());
    command
        .args(["--user", "alice", "-c", "SELECT 42"])
        .env("FIBERS_PASSWORD", "secret");
    let output = run(command, None);
    assert_eq!(text(&output.stderr), "");
    assert_eq!(
        text(&output.stdout),
        " answer\n--------\n     42\n(1 row)\n\n"
    );
    assert!(output.status.success(), "{output:?}");

    // FIBERS_USER works like --user.
    let mut command = shell_command(&address, dir.path());
    command
        .args(["-c", "SELECT 42"])
        .env("FIBERS_USER", "alice")
        .env("FIBERS_PASSWORD", "wrong");
    let output = run(command, None);
    assert_eq!(
        text(&output.stderr),
        format!(
            "fibers shell: cannot authenticate as 'alice' at {address}: invalid user name or \
             password\n"
        )
    );
    assert_eq!(output.status.code(), Some(2));

    // Without a password and without a terminal to ask on.
    let mut command = shell_command(&address, dir.path());
    command.args(["--user", "alice", "-c", "SELECT 42"]);
    let output = run(command, None);
    assert!(
        text(&output.stderr).contains("no password: set FIBERS_PASSWORD"),
        "{output:?}"
    );
    assert_eq!(output.status.code(), Some(2));

    // Without --user, the server's refusal is a statement error.
    let mut command = shell_command(&address, dir.path());
    command.args(["-c", "SELECT 42"]);
    let output = run(command, None);
    assert_eq!(
        text(&output.stderr),
        "ERROR: missing or invalid bearer token\n"
    );
    assert_eq!(output.status.code(), Some(1));

    // A server without authentication says so.
    let open = FakeFlight::start(None);
    let mut command = shell_command(&open.address.to_string(), dir.path());
    command
        .args(["--user", "alice", "-c", "SELECT 42"])
        .env("FIBERS_PASSWORD", "secret");
    let output = run(command, None);
    assert!(
        text(&output.stderr).contains("the server does not authenticate"),
        "{output:?}"
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn asks_for_the_password_on_the_terminal_without_showing_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeFlight::start(Some(("alice", "secret")));
    let mut command = shell_command(&fake.address.to_string(), dir.path());
    command.args(["--user", "alice"]).env("TERM", "xterm");
    let mut terminal = Terminal::spawn(command);
    terminal.expect("Password for user alice: ", TIMEOUT);
    terminal.type_keys("secret\r");
    let shown = terminal.expect("fibers=> ", TIMEOUT);
    assert!(!shown.contains("secret"), "the password was shown: {shown}");

    terminal.type_keys("SELECT 42;\r");
    terminal.expect(" answer\n--------\n     42\n(1 row)\n", TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);
    terminal.type_keys("\\q\r");
    assert!(terminal.wait(TIMEOUT).success());
    let history =
        std::fs::read_to_string(dir.path().join(".fibers_history")).expect("the history file");
    assert!(!history.contains("secret"), "{history}");
}

#[test]
fn a_subscription_piped_into_head_ends_when_the_reader_goes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeFlight::start(None);
    let mut child = shell_command(&fake.address.to_string(), dir.path())
        .args(["--format", "csv", "-c", "SUBSCRIBE ticks"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fibers shell");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    assert_eq!(read_until(&mut lines, "1"), "n\n0\n1\n");
    // Like `| head -3`: the reader stops reading and closes the pipe.
    drop(lines);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the shell") {
            break status;
        }
        assert!(Instant::now() < deadline, "the shell kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stderr, "");
    assert!(fake.wait_until_no_subscription(TIMEOUT));
}

#[test]
fn ctrl_c_ends_a_subscription_to_a_live_view_of_fibers_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let address = server.address.to_string();
    let mut command = shell_command(&address, dir.path());
    command.args([
        "-c",
        "CREATE STREAM ticks WITH (connector = 'stocks', rate = '50', symbols = 'AAPL');
         CREATE MATERIALIZED VIEW symbols WITH (archive = 'parquet', path = 'symbols') AS
           SELECT symbol FROM ticks",
    ]);
    let output = run(command, None);
    assert_eq!(
        text(&output.stdout),
        "CREATE STREAM\nCREATE MATERIALIZED VIEW\n",
        "{output:?}"
    );

    let mut command = shell_command(&address, dir.path());
    command.env("TERM", "xterm");
    let mut terminal = Terminal::spawn(command);
    terminal.expect("fibers=> ", TIMEOUT);
    terminal.type_keys("SUBSCRIBE symbols;\r");
    // Rows keep coming while the subscription runs.
    terminal.expect(" symbol\n--------\n AAPL\n AAPL\n AAPL\n", TIMEOUT);
    terminal.type_keys("\x03");
    terminal.expect("rows)\n", TIMEOUT);
    terminal.expect("Cancelled.\n", TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);

    // The shell goes on, and the view stays.
    terminal.type_keys("SHOW VIEWS;\r");
    terminal.expect(" symbols | parquet | symbols\n(1 row)\n", TIMEOUT);
    terminal.expect("fibers=> ", TIMEOUT);
    terminal.type_keys("\\q\r");
    assert!(terminal.wait(TIMEOUT).success());
}

#[test]
fn logs_in_to_fibers_serve_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, cert, key) = crate::flight_auth::self_signed_certificate(dir.path());
    let server = Server::start_with_env(
        dir.path(),
        &["--user", "alice", "--tls-cert", &cert, "--tls-key", &key],
        &[("FIBERS_PASSWORD", "s3cret")],
    );
    let port = server.address.port();
    let https = format!("https://localhost:{port}");

    // Trusting the server's certificate, with the right password.
    let mut command = shell_command(&https, dir.path());
    command
        .args([
            "--tls-ca",
            &cert,
            "--user",
            "alice",
            "-c",
            "SELECT 1 AS one",
        ])
        .env("FIBERS_PASSWORD", "s3cret");
    let output = run(command, None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        " one\n-----\n   1\n(1 row)\n\n",
        "{}",
        text(&output.stderr)
    );

    // A wrong password, no credentials, and a certificate the shell does
    // not trust all end with status 2 and say why.
    let mut command = shell_command(&https, dir.path());
    command
        .args(["--tls-ca", &cert, "--user", "alice", "-c", "SELECT 1"])
        .env("FIBERS_PASSWORD", "wrong");
    let output = run(command, None);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("invalid user name or password"),
        "{}",
        text(&output.stderr)
    );
    let mut command = shell_command(&https, dir.path());
    command.args(["--tls-ca", &cert, "-c", "SELECT 1"]);
    let output = run(command, None);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("authenticat"),
        "{}",
        text(&output.stderr)
    );
    let mut command = shell_command(&https, dir.path());
    command
        .args(["--user", "alice", "-c", "SELECT 1"])
        .env("FIBERS_PASSWORD", "s3cret");
    let output = run(command, None);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}
