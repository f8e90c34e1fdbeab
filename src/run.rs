//! `fibers run FILE.sql`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use fibers_engine::{Engine, EngineConfig, StatementResult};

use crate::output::{Format, print_rows};

pub async fn run(
    file: &Path,
    config: EngineConfig,
    run_for: Option<Duration>,
    format: Format,
) -> anyhow::Result<()> {
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let statements =
        fibers_engine::parse_script(&sql).with_context(|| format!("{}", file.display()))?;
    let data_dir = config.data_dir.clone();
    let engine = Engine::open(config)
        .await
        .with_context(|| format!("cannot open data dir {}", data_dir.display()))?;
    let deadline = run_for.map(|d| tokio::time::Instant::now() + d);

    for statement in &statements {
        match engine.execute(statement).await {
            Ok(StatementResult::Done(tag)) => eprintln!("{tag}"),
            Ok(StatementResult::Rows { schema, batches }) => print_rows(format, &schema, &batches)?,
            Err(e) => {
                engine.shutdown().await;
                bail!("{}:{}: {}", file.display(), statement.line, e.with_kind());
            }
        }
    }

    let (running, all_bounded) = engine.running_jobs().await;
    if running > 0 {
        // Bounded jobs finish by themselves; unbounded ones run until
        // `--for`, Ctrl-C, or until every job has failed, when there is
        // nothing left to run for.
        let wait = async {
            if all_bounded {
                engine.wait_for_bounded_jobs().await;
            } else {
                engine.wait_for_jobs().await;
            }
        };
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait => {}
            _ = until => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping jobs"),
        }
    }
    // Also when the jobs ended during the script (a SELECT waited for them).
    print_summary(&engine).await;
    engine.shutdown().await;
    let failures = engine.failures().await;
    if !failures.is_empty() {
        for (name, error) in &failures {
            eprintln!("job '{name}' failed: {error}");
        }
        bail!("{} job(s) failed", failures.len());
    }
    Ok(())
}

/// One line per job on stderr when the run ends: what it read, wrote and
/// dropped, so that a bounded run says what it did.
async fn print_summary(engine: &Engine) {
    let Ok(results) = engine.execute_script("SHOW JOBS").await else {
        return;
    };
    let [StatementResult::Rows { batches, .. }] = results.as_slice() else {
        return;
    };
    for batch in batches {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
        };
        let count = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        };
        let (Some(names), Some(kinds), Some(statuses)) =
            (text("name"), text("kind"), text("status"))
        else {
            return;
        };
        let (Some(input), Some(output), Some(late), Some(bad)) = (
            count("input_rows"),
            count("output_rows"),
            count("late_rows"),
            count("bad_rows"),
        ) else {
            return;
        };
        for row in 0..batch.num_rows() {
            eprintln!(
                "{} {} ({}): {} rows in, {} out, {} late, {} bad",
                kinds.value(row),
                names.value(row),
                statuses.value(row),
                input.value(row),
                output.value(row),
                late.value(row),
                bad.value(row),
            );
        }
    }
}
