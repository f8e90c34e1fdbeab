//! Statements on one object while another object's job is busy: a job
//! that stops slowly holds up nothing else, a RESTART that cannot run
//! changes nothing.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fibers_engine::{Engine, EngineConfig, StatementOutput, StatementResult, parse_script};
use futures::StreamExt;

use crate::checkpoint::job_status;

/// How long a statement may take before the test calls it hung.
const HUNG: Duration = Duration::from_secs(120);

/// Runs `sql` on `engine`, failing the test if it has not answered
/// within [`HUNG`].
async fn answered(engine: &Engine, sql: &str) -> fibers_engine::Result<Vec<StatementResult>> {
    tokio::time::timeout(HUNG, engine.execute_script(sql))
        .await
        .unwrap_or_else(|_| panic!("`{sql}` did not answer while another job was stopping"))
}

/// A named pipe at `path`, and the handle that keeps it open for
/// writing: a `file` stream reading it blocks in its read until something
/// is written or the handle is dropped. (Opened for both reading and
/// writing, the pipe opens at once and always has a writer, whenever and
/// however often the stream opens it.)
fn held_pipe(path: &Path) -> std::fs::File {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the pipe")
}

/// A view's job whose stop is held up (its source blocks in a read that
/// only the test can end) must not hold up statements on other objects:
/// `SHOW JOBS`, the table listing Flight's `GetTables` serves and an
/// ad-hoc query all answer before the `DROP` does. A second statement on
/// the view being dropped is refused, naming what is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_answer_while_another_job_stops() {
    let dir = tempfile::tempdir().expect("dir");
    let pipe = dir.path().join("ticks.jsonl");
    let mut release = held_pipe(&pipe);
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, "{\"id\": 7, \"ts\": \"2024-01-01T00:00:00\"}\n")
        .expect("write other.jsonl");
    // One row per batch: the job emits the pipe's row as soon as it is
    // read, while its source goes on to block in the next read.
    let mut config = EngineConfig::new(dir.path().join("data"));
    config.batch_size = 1;
    let engine = Arc::new(Engine::open(config).await.expect("engine"));
    answered(
        &engine,
        &format!(
            "CREATE STREAM ticks (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
               WITH (connector = 'file', path = '{}', format = 'json');
             CREATE STREAM other (id BIGINT, ts TIMESTAMP)
               WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW held AS SELECT id, ts FROM ticks;",
            pipe.display(),
            other.display(),
        ),
    )
    .await
    .expect("create");

    // Once the row reaches the view, its source has moved on to the read
    // that blocks: a stop cannot end before the pipe is released.
    let subscribe = parse_script("SUBSCRIBE held").expect("parse").remove(0);
    let StatementOutput::Rows(rows) = engine.run(&subscribe, None).await.expect("SUBSCRIBE") else {
        panic!("a subscription returns rows");
    };
    let mut rows = rows.into_stream();
    release
        .write_all(b"{\"id\": 1, \"ts\": \"2024-01-01T00:00:00\"}\n")
        .expect("write the pipe");
    tokio::time::timeout(HUNG, rows.next())
        .await
        .expect("the pipe's row never reached the view")
        .expect("the subscription ended")
        .expect("a row");
    drop(rows);
    let dropping = {
        let engine = Arc::clone(&engine);
        let statement = parse_script("DROP MATERIALIZED VIEW held")
            .expect("parse")
            .remove(0);
        tokio::spawn(async move { engine.execute(&statement).await })
    };
    // The DROP has taken the job out of the running ones and waits for it
    // to stop; until then this waits (and hangs if DROP holds the lock).
    tokio::time::timeout(HUNG, async {
        while engine.running_jobs().await.0 > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the DROP never took the job off the running ones");

    let shown = answered(&engine, "SHOW JOBS").await.expect("SHOW JOBS");
    assert!(matches!(shown.last(), Some(StatementResult::Rows { .. })));
    let tables = tokio::time::timeout(HUNG, engine.tables())
        .await
        .expect("the table listing hung");
    assert!(
        tables.iter().any(|t| t.name == "other"),
        "listing: {tables:?}"
    );
    let counted = answered(&engine, "SELECT count(*) AS n FROM other")
        .await
        .expect("SELECT");
    let Some(StatementResult::Rows { batches, .. }) = counted.last() else {
        panic!("SELECT returned no rows");
    };
    assert_eq!(batches[0].num_rows(), 1);
    let again = answered(&engine, "DROP MATERIALIZED VIEW held")
        .await
        .expect_err("a second DROP while the first is in flight");
    assert!(
        again.to_string().contains("'held' is being dropped"),
        "second DROP: {again}"
    );
    // The ordering this test is about: everything above answered while
    // the stop was still held up.
    assert!(
        !dropping.is_finished(),
        "the DROP finished before its job's source was released"
    );

    drop(release);
    tokio::time::timeout(HUNG, dropping)
        .await
        .expect("the DROP did not finish once its job could stop")
        .expect("DROP task")
        .expect("DROP");
    let views = answered(&engine, "SHOW VIEWS").await.expect("SHOW VIEWS");
    let Some(StatementResult::Rows { batches, .. }) = views.last() else {
        panic!("SHOW VIEWS returned no rows");
    };
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        0,
        "the dropped view is still listed"
    );
    engine.shutdown().await;
}

/// A RESTART checks every stream the view reads before the job stops: a
/// join of a live feed (which can restart from LATEST) with a file (which
/// cannot) is refused naming the file, and the old job keeps running.
/// (The dependency that sorts first, the live feed, used to be the only
/// one checked: the old job stopped and the new one failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_cannot_run_leaves_the_job_running() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("fills.jsonl");
    std::fs::write(
        &file,
        "{\"symbol\": \"S0\", \"qty\": 5, \"ts\": \"2024-01-01T00:00:00\"}\n",
    )
    .expect("write fills.jsonl");
    let engine = Engine::open(EngineConfig::new(dir.path().join("data")))
        .await
        .expect("engine");
    answered(
        &engine,
        &format!(
            "CREATE STREAM a_live WITH (connector = 'stocks', rate = '200', symbols = '2');
             CREATE STREAM b_fills (symbol TEXT, qty BIGINT, ts TIMESTAMP,
                                    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW filled AS
               SELECT t.window_start, t.symbol, f.qty
               FROM TUMBLE(a_live, ts, INTERVAL '1' SECOND) AS t
               JOIN TUMBLE(b_fills, ts, INTERVAL '1' SECOND) AS f
                 ON t.symbol = f.symbol AND t.window_start = f.window_start;",
            file.display()
        ),
    )
    .await
    .expect("create");
    let refused = answered(
        &engine,
        "ALTER MATERIALIZED VIEW filled RESTART FROM LATEST",
    )
    .await
    .expect_err("a file cannot restart from LATEST");
    assert!(
        refused
            .to_string()
            .contains("stream 'b_fills' (file connector) cannot restart from LATEST"),
        "refusal: {refused}"
    );
    assert_eq!(refused.kind(), fibers_engine::ErrorKind::User);
    assert_eq!(engine.running_jobs().await.0, 1, "the old job was stopped");
    let (status, error) = job_status(&engine).await;
    assert_eq!(status, "running", "job error: {error}");
    engine.shutdown().await;
}

/// The single number `sql` (a `SELECT count(*)`) answers.
async fn count(engine: &Engine, sql: &str) -> i64 {
    let results = answered(engine, sql).await.expect(sql);
    let Some(StatementResult::Rows { batches, .. }) = results.into_iter().last() else {
        panic!("`{sql}` returned no rows");
    };
    let batch = batches
        .first()
        .unwrap_or_else(|| panic!("`{sql}`: no batch"));
    arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batch.column(0)).value(0)
}

/// Views reading a view compute its rows in their own jobs, so a RESTART
/// of the view replays them too: rows appended to the file since are in
/// the view and in its readers at any depth, and a view reading only the
/// stream is left as it was.
#[tokio::test]
async fn a_restart_replays_the_views_that_read_the_view() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("fills.jsonl");
    let fill = |qty: i64, second: u32| {
        format!(
            "{{\"symbol\": \"S0\", \"qty\": {qty}, \"ts\": \"2024-01-01T00:00:{second:02}\"}}\n"
        )
    };
    std::fs::write(&file, [fill(5, 1), fill(0, 2), fill(7, 3)].concat()).expect("write");
    let engine = Engine::open(EngineConfig::new(dir.path().join("data")))
        .await
        .expect("engine");
    answered(
        &engine,
        &format!(
            "CREATE STREAM fills (symbol TEXT, qty BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
               WITH (connector = 'file', path = '{}', format = 'json');
             CREATE MATERIALIZED VIEW kept AS SELECT symbol, qty, ts FROM fills WHERE qty > 0;
             CREATE MATERIALIZED VIEW doubled AS SELECT symbol, qty * 2 AS qty2, ts FROM kept;
             CREATE SINK doubled_again WITH (connector = 'delta', path = 'again') AS
               SELECT symbol, qty2 * 2 AS qty4, ts FROM doubled;
             CREATE MATERIALIZED VIEW beside AS SELECT symbol, qty FROM fills;",
            file.display()
        ),
    )
    .await
    .expect("create");
    assert_eq!(count(&engine, "SELECT count(*) FROM doubled").await, 2);
    assert_eq!(
        count(&engine, "SELECT count(*) FROM doubled_again").await,
        2
    );
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open to append");
    appended
        .write_all([fill(9, 4), fill(11, 5)].concat().as_bytes())
        .expect("append");
    drop(appended);
    answered(
        &engine,
        "ALTER MATERIALIZED VIEW kept RESTART FROM EARLIEST",
    )
    .await
    .expect("restart");
    assert_eq!(count(&engine, "SELECT count(*) FROM kept").await, 4);
    assert_eq!(count(&engine, "SELECT count(*) FROM doubled").await, 4);
    assert_eq!(
        count(&engine, "SELECT sum(qty4) FROM doubled_again").await,
        4 * (5 + 7 + 9 + 11)
    );
    assert_eq!(count(&engine, "SELECT count(*) FROM beside").await, 3);
    engine.shutdown().await;
}
