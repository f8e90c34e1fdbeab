//! Nexmark: the standard queries of `benches/nexmark/` run by DataFibers
//! as streaming queries, beside DataFusion running the same computation as
//! one batch query over the same batches (the baseline), in one run.
//!
//! ```text
//! cargo bench --bench nexmark                                # 10M events, every query
//! cargo bench --bench nexmark -- --events 2000000 --queries q0,q5,q8
//! cargo bench --bench nexmark -- --no-live                   # skip the live-generator runs
//! ```
//!
//! The event sequence (people, auctions and bids in the standard
//! proportions) is generated into Arrow batches before anything is timed.
//! For each query:
//!
//! * streaming: a [`QueryRunner`] fed the batches of the streams the query
//!   reads, earliest first, with the job's watermarks and operators;
//! * batch: the query's `.batch.sql` twin over the same batches as
//!   in-memory tables, run by DataFusion's default session (it may use both
//!   cores; CPU time counts them both);
//! * live: a job of an engine writing to a `discard` sink, its `nexmark`
//!   stream generating the events as it goes (generation included).
//!
//! Throughput is input events (rows of the streams the query reads) per
//! CPU-second of the whole process. Each streaming and batch figure is
//! the best of `--runs` alternating runs.

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use fibers_engine::{Engine, EngineConfig, QueryRunner, read_stream};
use support::nexmark::{self, Run, STREAMS};
use support::{cpu_time, job_counter};

const BATCH_ROWS: usize = 8192;

struct Args {
    events: u64,
    runs: usize,
    queries: Option<Vec<String>>,
    live: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        events: 10_000_000,
        runs: 3,
        queries: None,
        live: true,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = |name: &str| {
            given
                .next()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--events" => args.events = value("--events")?.parse()?,
            "--runs" => args.runs = value("--runs")?.parse::<usize>()?.max(1),
            "--queries" => {
                args.queries = Some(
                    value("--queries")?
                        .split(',')
                        .map(|q| q.trim().to_string())
                        .collect(),
                )
            }
            "--no-live" => args.live = false,
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => anyhow::bail!(
                "unknown argument '{other}'; expected --events N, --runs N, --queries q0,q1,... or --no-live"
            ),
        }
    }
    Ok(args)
}

/// Events per CPU-second each query should reach on one core.
fn target(query: &str) -> Option<f64> {
    match query {
        "q0" | "q1" | "q2" => Some(1_000_000.0),
        "q5" | "q8" => Some(500_000.0),
        "q7" => Some(300_000.0),
        _ => None,
    }
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let queries = match &args.queries {
        Some(q) => q.clone(),
        None => nexmark::queries()?,
    };

    let started = Instant::now();
    let mut inputs: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for stream in STREAMS {
        let batches = read_stream(&nexmark::create_stream(stream, args.events), BATCH_ROWS)?;
        inputs.insert(stream.to_string(), batches);
    }
    let count = |s: &str| inputs[s].iter().map(|b| b.num_rows()).sum::<usize>();
    let bytes: usize = inputs
        .values()
        .flatten()
        .map(|b| b.get_array_memory_size())
        .sum();
    println!(
        "generated {} events ({} people, {} auctions, {} bids; {} MiB of Arrow) in {:.1} s",
        args.events,
        count("person"),
        count("auction"),
        count("bid"),
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );

    let mut table = Vec::new();
    for query in &queries {
        let script = nexmark::script(query, args.events)?;
        let batch_sql = nexmark::sql(&format!("{query}.batch.sql"))?;
        let (mut streaming, mut batch) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let runner = runtime.block_on(QueryRunner::from_script(&script))?;
            let reads: Vec<String> = runner.streams().to_vec();
            let feeds: Vec<(&str, &[RecordBatch])> = reads
                .iter()
                .map(|s| (s.as_str(), inputs[s].as_slice()))
                .collect();
            streaming.push(
                runtime
                    .block_on(nexmark::run_streaming(runner, &feeds))
                    .with_context(|| format!("streaming {query}"))?,
            );
            batch.push(
                runtime
                    .block_on(run_batch(&batch_sql, &reads, &inputs))
                    .with_context(|| format!("batch {query}"))?,
            );
        }
        let live = if args.live {
            Some(
                runtime
                    .block_on(run_live(query, args.events))
                    .with_context(|| format!("live {query}"))?,
            )
        } else {
            None
        };
        let (streaming, batch) = (nexmark::best(streaming), nexmark::best(batch));
        eprintln!(
            "{query}: streaming {:.0}/s, batch {:.0}/s{}",
            streaming.per_cpu_second(),
            batch.per_cpu_second(),
            live.map(|l| format!(", live {:.0}/s", l.per_cpu_second()))
                .unwrap_or_default()
        );
        table.push((query.clone(), streaming, batch, live));
    }

    println!();
    println!(
        "| query | input events | streaming events / CPU-s | batch events / CPU-s | streaming / batch | live generator events / CPU-s | rows out | target / core |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (query, streaming, batch, live) in &table {
        let ratio = streaming.per_cpu_second() / batch.per_cpu_second();
        let rows = if streaming.rows_out == batch.rows_out {
            streaming.rows_out.to_string()
        } else {
            format!(
                "{} (batch: {}; see note)",
                streaming.rows_out, batch.rows_out
            )
        };
        let goal = match target(query) {
            Some(t) => format!(
                "{} ≥ {:.1}M, ratio {} ≥ 0.70",
                if streaming.per_cpu_second() >= t {
                    "met"
                } else {
                    "MISSED"
                },
                t / 1e6,
                if ratio >= 0.7 { "met" } else { "MISSED" },
            ),
            None => format!(
                "ratio {} ≥ 0.70",
                if ratio >= 0.7 { "met" } else { "MISSED" }
            ),
        };
        println!(
            "| {query} | {} | {} | {} | {ratio:.2} | {} | {rows} | {goal} |",
            streaming.events,
            millions(streaming.per_cpu_second()),
            millions(batch.per_cpu_second()),
            live.map(|l| millions(l.per_cpu_second()))
                .unwrap_or_else(|| "—".into()),
        );
    }
    println!();
    println!(
        "{} events, best of {} runs; peak RSS {} MiB",
        args.events,
        args.runs,
        support::peak_rss_kib() / 1024
    );
    Ok(())
}

fn millions(per_second: f64) -> String {
    format!("{:.2}M", per_second / 1e6)
}

/// The batch twin over in-memory tables of the same batches.
async fn run_batch(
    sql: &str,
    reads: &[String],
    inputs: &BTreeMap<String, Vec<RecordBatch>>,
) -> anyhow::Result<Run> {
    let ctx = SessionContext::new();
    for stream in STREAMS {
        let batches = &inputs[stream];
        let table = MemTable::try_new(batches[0].schema(), vec![batches.clone()])?;
        ctx.register_table(stream, Arc::new(table))?;
    }
    let frame = ctx.sql(sql).await?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    let out = frame.collect().await?;
    Ok(Run {
        events: reads
            .iter()
            .map(|s| inputs[s].iter().map(|b| b.num_rows() as u64).sum::<u64>())
            .sum(),
        rows_out: out.iter().map(|b| b.num_rows() as u64).sum(),
        cpu: cpu_time() - cpu,
        wall: wall.elapsed(),
    })
}

/// A job of an engine: the `nexmark` streams generate as the job reads,
/// into a discard sink.
async fn run_live(query: &str, events: u64) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    let script = nexmark::script(query, events)?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    engine.execute_script(&script).await?;
    engine.wait_for_bounded_jobs().await;
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    if let Some((job, e)) = engine.failures().await.into_iter().next() {
        anyhow::bail!("job {job} failed: {e}");
    }
    let run = Run {
        events: job_counter(&engine, "input_rows").await?,
        rows_out: job_counter(&engine, "output_rows").await?,
        cpu,
        wall,
    };
    engine.shutdown().await;
    Ok(run)
}
