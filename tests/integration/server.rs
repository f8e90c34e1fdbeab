//! A `fibers serve` process for tests, and Flight SQL client helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightInfo, Ticket};
use futures::TryStreamExt;
use tonic::transport::Channel;

/// A running `fibers serve`, killed when dropped (also when a test fails).
pub struct Server {
    child: Child,
    /// The address clients connect to.
    pub address: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    /// Starts `fibers serve` on a port the OS picks, with its data dir
    /// under `dir`, and waits until it listens.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts `fibers serve` with `extra` arguments after the defaults.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(dir, extra, &[])
    }

    /// Starts `fibers serve` with `extra` arguments and the environment
    /// variables `env` (`FIBERS_PASSWORD` only from there, never inherited).
    /// It listens on `127.0.0.1:0` unless `extra` has its own `--listen`.
    ///
    /// Statements may also use files anywhere under `dir` and the
    /// checkout's `tests` (where the tests' input files live);
    /// [`Server::start_confined`] keeps them to the data dir.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
        let mut args = vec![
            "--allowed-path".to_string(),
            dir.display().to_string(),
            "--allowed-path".to_string(),
            tests.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::launch(dir, &args, env)
    }

    /// Starts `fibers serve` with statements kept to its data dir, as a
    /// server with no `allowed_paths` runs.
    pub fn start_confined(dir: &Path, extra: &[&str]) -> Server {
        Server::launch(dir, extra, &[])
    }

    fn launch(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_fibers"))
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .env_remove("FIBERS_PASSWORD")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fibers serve");
        let stderr = child.stderr.take().expect("stderr");
        let (address_tx, address_rx) = mpsc::channel();
        // Reads the announced address, then keeps draining stderr so the
        // server never blocks on a full pipe; returns all it printed.
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr);
            let mut printed = String::new();
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(address) = line.trim().strip_prefix("Flight SQL listening on ") {
                    let _ = address_tx.send(address.to_string());
                }
                printed.push_str(&line);
                line.clear();
            }
            printed
        });
        let mut server = Server {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: Some(reader),
        };
        match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => {
                let mut address: SocketAddr = address
                    .parse()
                    .unwrap_or_else(|_| panic!("fibers serve announced {address:?}"));
                // Listening on all addresses: connect through loopback.
                if address.ip().is_unspecified() {
                    address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                server.address = address;
                server
            }
            Err(_) => panic!(
                "fibers serve did not announce its address; stderr:\n{}",
                server.stop()
            ),
        }
    }

    pub async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.address))
            .expect("endpoint URL")
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect to fibers serve");
        FlightSqlServiceClient::new(channel)
    }

    /// Sends SIGTERM and waits (up to a minute) for the server to exit;
    /// returns its exit status and what it printed on stderr.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "send SIGTERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for fibers serve") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                panic!("fibers serve did not exit after SIGTERM:\n{}", self.stop());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, self.stop())
    }

    /// Kills the server and returns what it printed on stderr.
    pub fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fetches every endpoint of `info`.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, String> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket: Ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
        let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        batches.extend(
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(batches)
}

/// Runs `sql` as a Flight SQL query (GetFlightInfo, then DoGet).
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<String, String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let batches = fetch(client, info).await?;
    pretty_format_batches(&batches)
        .map(|table| table.to_string())
        .map_err(|e| e.to_string())
}
