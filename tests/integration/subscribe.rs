//! Subscriptions through the engine's API while their job runs.

use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use fibers_engine::{Engine, EngineConfig, StatementOutput, StatementResult, parse_script};
use futures::StreamExt;

/// How long a statement may take before the test calls it a deadlock.
const HUNG: Duration = Duration::from_secs(120);

/// `SUBSCRIBE v FROM BEGINNING` while v's job over a bounded source still
/// runs used to hold the feed's commit lock while planning its snapshot,
/// and planning waited for that very job to finish: the subscription, the
/// job and every later query hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_from_the_beginning_while_a_bounded_job_runs_blocks_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let engine = Engine::open(EngineConfig::new(dir.path()))
        .await
        .expect("engine");
    // 20,000 paced trades: ten seconds of input.
    engine
        .execute_script(
            "CREATE STREAM t WITH (connector = 'stocks', rate = '2000', limit = '20000',
                                  symbols = '2', disorder = '0s');
             CREATE MATERIALIZED VIEW v WITH (archive = 'parquet', commit_interval = '200ms') AS
               SELECT symbol, window_start, count(*) AS trades
               FROM TUMBLE(t, ts, INTERVAL '1' SECOND)
               GROUP BY symbol, window_start, window_end;",
        )
        .await
        .expect("script");
    let statement = parse_script("SUBSCRIBE v FROM BEGINNING")
        .expect("parse")
        .remove(0);
    let (running, _) = engine.running_jobs().await;
    assert_eq!(
        running, 1,
        "the job must still be running for the test to mean anything"
    );
    let output = tokio::time::timeout(HUNG, engine.run(&statement, None))
        .await
        .expect("SUBSCRIBE FROM BEGINNING hung")
        .expect("SUBSCRIBE FROM BEGINNING");
    let StatementOutput::Rows(rows) = output else {
        panic!("a subscription returns rows");
    };
    // The query waits for the job, which must be able to finish and commit.
    let results = tokio::time::timeout(HUNG, engine.execute_script("SELECT sum(trades) FROM v"))
        .await
        .expect("a SELECT after the subscription hung")
        .expect("SELECT");
    let Some(StatementResult::Rows { batches, .. }) = results.last() else {
        panic!("SELECT returned no rows");
    };
    let archived = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    // Every window but the last closes while the job runs; at the end of
    // input the last one does too.
    assert_eq!(archived, 20_000, "trades counted in the archive");
    // The subscription saw the snapshot and then each commit: every row.
    let mut rows = rows.into_stream();
    let mut subscribed = 0;
    while subscribed < archived {
        let batch = tokio::time::timeout(HUNG, rows.next())
            .await
            .expect("the subscription stalled")
            .expect("the subscription ended")
            .expect("a batch");
        let index = batch.schema().index_of("trades").expect("trades column");
        subscribed += batch
            .column(index)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .sum::<i64>();
    }
    assert_eq!(subscribed, archived, "the subscription saw each row once");
    engine.shutdown().await;
}
