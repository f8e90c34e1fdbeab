//! Poison input: records, statements and catalog entries that used to crash
//! the process (a stack overflow aborts it, uncatchable) or keep it down on
//! every restart. Each must now cost only itself.

use std::path::Path;
use std::time::Duration;

use crate::common::{Row, assert_ok, fibers_run_within, json_rows, read_table};
use crate::server::{Server, query};

const RUN: Duration = Duration::from_secs(120);

/// A JSON-lines file whose second record holds a TEXT field nested 50,000
/// arrays deep, between two good records.
fn poisoned_file(dir: &Path) -> std::path::PathBuf {
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let path = dir.join("poisoned.json");
    std::fs::write(
        &path,
        format!(
            "{{\"id\": 1, \"sym\": \"A\", \"ts\": \"2025-01-02T14:30:00Z\"}}\n\
             {{\"id\": 2, \"sym\": {deep}, \"ts\": \"2025-01-02T14:30:01Z\"}}\n\
             {{\"id\": 3, \"sym\": \"C\", \"ts\": \"2025-01-02T14:30:02Z\"}}\n"
        ),
    )
    .expect("write the poisoned file");
    path
}

fn poisoned_script(file: &Path, bad_data: &str) -> String {
    format!(
        "CREATE STREAM s (id BIGINT, sym TEXT, ts TIMESTAMP) WITH (connector = 'file', \
           path = '{}', format = 'json', bad_data = '{bad_data}');
         CREATE MATERIALIZED VIEW v WITH (archive = 'delta', path = 'v') AS SELECT id, sym FROM s;",
        file.display()
    )
}

fn job<'a>(jobs: &'a [Row], name: &str) -> &'a Row {
    jobs.iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job '{name}' in {jobs:?}"))
}

fn ids(dir: &Path, view: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = read_table("delta", &dir.join("data").join(view))
        .iter()
        .map(|row| row["id"].as_i64().expect("an id"))
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_record_nested_fifty_thousand_deep_is_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = poisoned_file(dir.path());
    let script = format!("{}\nSHOW JOBS;", poisoned_script(&file, "drop"));
    let output = fibers_run_within(dir.path(), &script, &["--format", "json"], RUN);
    assert_ok(&output);
    let jobs = json_rows(&output);
    assert_eq!(job(&jobs, "v")["bad_rows"], 1, "{jobs:?}");
    assert_eq!(ids(dir.path(), "v"), [1, 3]);
}

#[test]
fn a_record_nested_too_deep_fails_its_job_at_its_line_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = poisoned_file(dir.path());
    std::fs::write(dir.path().join("good.json"), "{\"id\": 7}\n{\"id\": 8}\n").expect("write");
    let script = format!(
        "{}
         CREATE STREAM g (id BIGINT) WITH (connector = 'file', path = '{}', format = 'json');
         CREATE MATERIALIZED VIEW good WITH (archive = 'delta', path = 'good') AS SELECT id FROM g;",
        poisoned_script(&file, "fail"),
        dir.path().join("good.json").display()
    );
    let output = fibers_run_within(dir.path(), &script, &[], RUN);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("poisoned.json line 2") && stderr.contains("max_nesting_depth"),
        "{stderr}"
    );
    // The row before the bad record is committed, and the other job ran.
    assert_eq!(ids(dir.path(), "v"), [1]);
    assert_eq!(ids(dir.path(), "good"), [7, 8]);

    // The data dir opens again: the failed job stays failed with its
    // error, the other is readable.
    let output = fibers_run_within(
        dir.path(),
        "SHOW JOBS; SELECT count(*) AS n FROM good;",
        &["--format", "json"],
        RUN,
    );
    assert_ok(&output);
    let rows = json_rows(&output);
    let failed = job(&rows, "v");
    assert_eq!(failed["status"], "failed", "{rows:?}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("line 2")),
        "{failed:?}"
    );
    assert!(
        rows.iter().any(|r| r.get("n") == Some(&2.into())),
        "{rows:?}"
    );
}

/// Rewrites the definition of `name` in the data dir's catalog.
fn damage_definition(dir: &Path, name: &str, sql: &str) {
    let db = dir.join("data").join("catalog.db");
    let status = std::process::Command::new(crate::common::python())
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             db.execute('UPDATE objects SET sql = ? WHERE name = ?', (sys.argv[3], sys.argv[2]))\n\
             db.commit()\n",
        )
        .arg(&db)
        .arg(name)
        .arg(sql)
        .status()
        .expect("run python");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_cannot_be_restored_is_set_aside_and_the_rest_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Under the data dir, where fibers serve may read it.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("in.json"), "{\"id\": 1}\n{\"id\": 2}\n").expect("write");
    let script = "
        CREATE STREAM s (id BIGINT) WITH (connector = 'file', path = 'in.json', format = 'json');
        CREATE MATERIALIZED VIEW good WITH (archive = 'delta', path = 'good') AS SELECT id FROM s;
        CREATE MATERIALIZED VIEW broken WITH (archive = 'delta', path = 'broken') AS SELECT id FROM s;";
    assert_ok(&fibers_run_within(dir.path(), script, &[], RUN));
    damage_definition(
        dir.path(),
        "broken",
        "CREATE MATERIALIZED VIEW broken AS SELECT id FROM no_such_stream",
    );

    let mut server = Server::start(dir.path());
    let mut client = server.client().await;
    let jobs = query(&mut client, "SHOW JOBS").await.expect("SHOW JOBS");
    assert!(
        jobs.lines()
            .any(|l| l.contains("broken") && l.contains("failed") && l.contains("cannot restore")),
        "{jobs}"
    );
    let count = query(&mut client, "SELECT count(*) AS n FROM good")
        .await
        .expect("the other view is served");
    assert!(count.contains("| 2 "), "{count}");
    // The broken one can be dropped and created again.
    query(&mut client, "DROP MATERIALIZED VIEW broken")
        .await
        .expect("drop the broken view");
    query(
        &mut client,
        "CREATE MATERIALIZED VIEW broken WITH (archive = 'delta', path = 'broken2') AS \
         SELECT id FROM s",
    )
    .await
    .expect("create it again");
    let stderr = server.stop();
    assert!(
        stderr.contains("cannot restore materialized view 'broken'"),
        "{stderr}"
    );
}

#[test]
fn an_expression_too_deep_to_plan_is_refused_and_one_within_the_limit_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sum = |terms: usize| format!("SELECT {} AS total;", vec!["1"; terms].join(" + "));
    let output = fibers_run_within(dir.path(), &sum(100_000), &[], RUN);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.contains("nests more than 256 levels"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );

    let output = fibers_run_within(dir.path(), &sum(250), &["--format", "json"], RUN);
    assert_ok(&output);
    assert_eq!(json_rows(&output)[0]["total"], 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_deep_expression_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let mut client = server.client().await;
    let deep = format!("SELECT {}", vec!["1"; 5_000].join(" + "));
    let e = query(&mut client, &deep).await.expect_err("too deep");
    assert!(e.contains("nests more than 256 levels"), "{e}");
    let nested = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = query(&mut client, &nested).await.expect_err("too deep");
    assert!(e.contains("nests more than"), "{}", &e[..e.len().min(500)]);
    let one = query(&mut client, "SELECT 1 AS one")
        .await
        .expect("still serving");
    assert!(one.contains("| 1 "), "{one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ad_hoc_query_over_unreachable_brokers_ends_and_the_server_still_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path());
    let mut client = server.client().await;
    // Nothing listens on the port: librdkafka retries for ever.
    let port = crate::common::free_port();
    query(
        &mut client,
        &format!(
            "CREATE STREAM k (v TEXT) WITH (connector = 'kafka', brokers = '127.0.0.1:{port}', \
             topic = 't', format = 'json', scan_timeout = '2s')"
        ),
    )
    .await
    .expect("create the stream");
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        query(&mut client, "SELECT count(*) FROM k"),
    )
    .await
    .expect("the query ends")
    .expect_err("the brokers are unreachable");
    assert!(
        e.contains("nothing to read for 2s") && e.contains("scan_timeout"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // A client that gives up first: the read stops with it, and SIGTERM
    // still stops the server.
    let mut impatient = server.client().await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        query(&mut impatient, "SELECT * FROM k"),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the query should still be waiting: {gave_up:?}"
    );
    drop(impatient);
    let stopping = std::time::Instant::now();
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopping.elapsed()
    );
}
