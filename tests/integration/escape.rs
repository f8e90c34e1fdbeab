//! The escape suite: a hostile client of `fibers serve` (loopback, no
//! authentication unless a test sets it up) tries to run code in the
//! server, write into archives, read or write files outside the data dir,
//! connect to arbitrary hosts and guess passwords. Each attempt must be
//! refused with an error that names what was refused, and leave no trace.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tonic::Code;

use crate::flight_auth::{PASSWORD, basic, raw_client, raw_handshake, start_with_auth};
use crate::server::{Server, query};

/// Runs `sql` on `server`, expecting a refusal that contains `expected`.
async fn refused(server: &Server, sql: &str, expected: &str) {
    let mut client = server.client().await;
    match query(&mut client, sql).await {
        Ok(table) => panic!("{sql}\nwas accepted:\n{table}"),
        Err(e) => assert!(e.contains(expected), "{sql}\nrefused with: {e}"),
    }
}

/// A shared library whose constructor creates `marker` as soon as it is
/// loaded into a process.
fn library_leaving(dir: &Path, marker: &Path) -> std::path::PathBuf {
    let source = dir.join("plugin.c");
    std::fs::write(
        &source,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void loaded(void) {{\n\
               int fd = open(\"{}\", O_CREAT | O_WRONLY, 0644); if (fd >= 0) close(fd);\n}}\n\
             int conf_init(void *conf, void **opaque, char *err, unsigned long size) {{ return 0; }}\n",
            marker.display()
        ),
    )
    .expect("write the plugin's source");
    let library = dir.join("plugin.so");
    let built = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .expect("run gcc");
    assert!(
        built.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    library
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_properties_cannot_load_code_or_run_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("loaded");
    let library = library_leaving(dir.path(), &marker);
    let server = Server::start_confined(dir.path(), &[]);
    let stream = |property: &str, value: &str| {
        format!(
            "CREATE STREAM s (v TEXT) WITH (connector = 'kafka', brokers = '127.0.0.1:9', \
             topic = 't', format = 'json', properties.{property} = '{value}')"
        )
    };
    refused(
        &server,
        &stream("plugin.library.paths", &library.display().to_string()),
        "'properties.plugin.library.paths' is not allowed",
    )
    .await;
    refused(
        &server,
        &stream("ssl.engine.location", &library.display().to_string()),
        "'properties.ssl.engine.location' is not allowed",
    )
    .await;
    refused(
        &server,
        &stream(
            "sasl.kerberos.kinit.cmd",
            &format!("touch {}", marker.display()),
        ),
        "'properties.sasl.kerberos.kinit.cmd' is not allowed",
    )
    .await;
    refused(
        &server,
        &stream("ssl.ca.location", "/etc/ssl/certs/ca-certificates.crt"),
        "outside the directories fibers serve may use",
    )
    .await;
    refused(
        &server,
        &stream("made.up", "1"),
        "not among the Kafka client settings",
    )
    .await;
    // A Kafka sink passes properties through too.
    refused(
        &server,
        &format!(
            "CREATE SINK k WITH (connector = 'kafka', brokers = '127.0.0.1:9', topic = 't', \
             format = 'json', properties.plugin.library.paths = '{}') AS SELECT 1 AS x",
            library.display()
        ),
        "'properties.plugin.library.paths' is not allowed",
    )
    .await;
    assert!(!marker.exists(), "the library was loaded into the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ad_hoc_statement_writes_into_an_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_confined(dir.path(), &[]);
    let mut client = server.client().await;
    for sql in [
        "CREATE STREAM trades WITH (connector = 'stocks', rate = '0', limit = '100', symbols = '2')",
        "CREATE MATERIALIZED VIEW v WITH (archive = 'delta', path = 'v') AS \
         SELECT symbol, price FROM trades",
        "CREATE MATERIALIZED VIEW p WITH (archive = 'parquet', path = 'p') AS \
         SELECT symbol, price FROM trades",
    ] {
        query(&mut client, sql).await.expect(sql);
    }
    let count = |view: &'static str| {
        let server = &server;
        async move {
            let mut client = server.client().await;
            query(&mut client, &format!("SELECT count(*) AS n FROM {view}"))
                .await
                .expect("count")
        }
    };
    let (before_v, before_p) = (count("v").await, count("p").await);
    assert!(before_v.contains("| 100 |"), "{before_v}");
    for view in ["v", "p"] {
        for sql in [
            format!("EXPLAIN ANALYZE INSERT INTO {view} VALUES ('FORGED', 1.0)"),
            format!("EXPLAIN INSERT INTO {view} VALUES ('FORGED', 1.0)"),
        ] {
            refused(&server, &sql, "EXPLAIN takes a query").await;
        }
        refused(
            &server,
            &format!("INSERT INTO {view} VALUES ('FORGED', 1.0)"),
            view,
        )
        .await;
    }
    let outside = dir.path().join("copied.csv");
    refused(
        &server,
        &format!("COPY (SELECT * FROM v) TO '{}'", outside.display()),
        "unsupported statement",
    )
    .await;
    refused(
        &server,
        &format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}'", outside.display()),
        "EXPLAIN takes a query",
    )
    .await;
    refused(
        &server,
        "EXPLAIN ANALYZE CREATE TABLE x (a INT)",
        "EXPLAIN takes a query",
    )
    .await;
    assert_eq!((count("v").await, count("p").await), (before_v, before_p));
    assert!(!outside.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_stay_under_the_data_dir_and_brokers_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_confined(dir.path(), &[]);
    for path in ["/etc/hostname", "../../../../etc/hostname", "/etc/shadow"] {
        refused(
            &server,
            &format!(
                "CREATE STREAM f (line TEXT) WITH (connector = 'file', path = '{path}', \
                 format = 'csv', header = 'false')"
            ),
            "fibers serve",
        )
        .await;
        refused(
            &server,
            &format!("CREATE TABLE t WITH (connector = 'file', path = '{path}', format = 'csv')"),
            "fibers serve",
        )
        .await;
    }
    let escaped = dir.path().join("escaped");
    for path in ["../escaped".to_string(), escaped.display().to_string()] {
        refused(
            &server,
            &format!(
                "CREATE MATERIALIZED VIEW w WITH (archive = 'delta', path = '{path}') AS \
                 SELECT 1 AS x"
            ),
            "fibers serve",
        )
        .await;
    }
    assert!(!escaped.exists());
    // A symbolic link inside the data dir does not lead out of it.
    std::os::unix::fs::symlink("/etc", dir.path().join("data").join("etc")).expect("symlink");
    refused(
        &server,
        "CREATE STREAM f (line TEXT) WITH (connector = 'file', path = 'etc/hostname', \
         format = 'csv', header = 'false')",
        "outside the directories",
    )
    .await;
    // Brokers: refused before anything connects, so the answer is quick.
    let started = Instant::now();
    refused(
        &server,
        "SHOW TOPICS FROM '192.0.2.1:9092'",
        "not among the brokers fibers serve may connect to",
    )
    .await;
    refused(
        &server,
        "CREATE STREAM k (v TEXT) WITH (connector = 'kafka', brokers = '192.0.2.1:9092', \
         topic = 't', format = 'json')",
        "allowed_brokers",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Inside the data dir, files are fine.
    std::fs::write(dir.path().join("data").join("in.csv"), "a\n").expect("write");
    let mut client = server.client().await;
    query(
        &mut client,
        "CREATE STREAM ok (line TEXT) WITH (connector = 'file', path = 'in.csv', format = 'csv')",
    )
    .await
    .expect("a file under the data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_paths_and_brokers_come_from_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("in.csv"), "line\na\n").expect("write");
    let config = dir.path().join("fibers.toml");
    std::fs::write(
        &config,
        "[access]\nallowed_paths = [\"shared\"]\nallowed_brokers = [\"192.0.2.1:9092\"]\n",
    )
    .expect("write the config");
    let server = Server::start_confined(dir.path(), &["--config", &config.display().to_string()]);
    let mut client = server.client().await;
    query(
        &mut client,
        &format!(
            "CREATE STREAM s (line TEXT) WITH (connector = 'file', path = '{}', format = 'csv')",
            shared.join("in.csv").display()
        ),
    )
    .await
    .expect("a file under an allowed path");
    refused(
        &server,
        "SHOW TOPICS FROM '192.0.2.2:9092'",
        "'192.0.2.2:9092' is not among",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_slowed_down_per_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_with_auth(dir.path(), &[]);
    let mut raw = raw_client(&server).await;
    let mut codes = Vec::new();
    let started = Instant::now();
    for _ in 0..30 {
        let status = raw_handshake(&mut raw, Some(&basic("alice", "guess")))
            .await
            .expect_err("a wrong password");
        codes.push(status.code());
    }
    let wrong = codes
        .iter()
        .filter(|&&c| c == Code::Unauthenticated)
        .count();
    let throttled = codes
        .iter()
        .filter(|&&c| c == Code::ResourceExhausted)
        .count();
    // However fast the guesses come, few are checked.
    let budget = 5 + (started.elapsed().as_secs_f64() * 0.5).ceil() as usize;
    assert!(wrong <= budget, "{wrong} guesses checked: {codes:?}");
    assert_eq!(wrong + throttled, codes.len(), "{codes:?}");
    // Throttled, even the right password waits: the answer cannot tell
    // whether it was right.
    let status = raw_handshake(&mut raw, Some(&basic("alice", PASSWORD)))
        .await
        .expect_err("throttled");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("too many failed logins"),
        "{status}"
    );
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    raw_handshake(&mut raw, Some(&basic("alice", PASSWORD)))
        .await
        .expect("the right password, once the budget refilled");
}
