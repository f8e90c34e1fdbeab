//! A chain of views against the same computation written as one query,
//! in one run: what reading a view costs over reading its stream.
//!
//! ```text
//! cargo bench --bench chains                       # 10M bids, 3 rounds
//! cargo bench --bench chains -- --events 2000000 --runs 1
//! ```
//!
//! Both arms are jobs of a real [`Engine`] over a `nexmark` stream of bids
//! generated as the jobs read it (generation is inside the timed region,
//! the same work for each reader). The chain is three objects:
//!
//! * `euros` (`archive = 'none'`): a stateless filter and projection;
//! * `per_auction` (`archive = 'none'`): a 10 s TUMBLE over `euros`;
//! * `busy` (a discard sink): the windows of more than one bid, over
//!   `per_auction`.
//!
//! The baseline is `busy_direct`, one query over the bids computing the
//! same rows (a WHERE, a TUMBLE and a HAVING). Both arms must emit the same
//! number of rows. CPU time is of the whole process (both cores); the
//! target is a chain costing at most 1.3 times the single query.

#[path = "support.rs"]
mod support;

use std::time::Duration;

use anyhow::Context;
use fibers_engine::{Engine, EngineConfig};
use support::{job_counter_of, run_to_end};

/// The bids, generated as they are read.
fn stream(events: u64) -> String {
    format!(
        "CREATE STREAM bid WITH (connector = 'nexmark', event = 'bid', events = '{events}', \
         seed = '42');"
    )
}

const CHAIN: &str = "
CREATE MATERIALIZED VIEW euros WITH (archive = 'none') AS
  SELECT auction, bidder, price * 0.908 AS euros, date_time FROM bid WHERE auction % 2 = 0;
CREATE MATERIALIZED VIEW per_auction WITH (archive = 'none') AS
  SELECT auction, window_start AS since, count(*) AS bids, sum(euros) AS euros
  FROM TUMBLE(euros, date_time, INTERVAL '10' SECOND)
  GROUP BY auction, window_start, window_end;
CREATE SINK busy WITH (connector = 'discard') AS
  SELECT auction, since, bids, euros FROM per_auction WHERE bids > 1;";

const SINGLE: &str = "
CREATE SINK busy_direct WITH (connector = 'discard') AS
  SELECT auction, window_start AS since, count(*) AS bids, sum(price * 0.908) AS euros
  FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
  WHERE auction % 2 = 0
  GROUP BY auction, window_start, window_end
  HAVING count(*) > 1;";

struct Run {
    cpu: Duration,
    wall: Duration,
    /// Rows the last object emitted.
    rows_out: u64,
    /// Bids the last object's job read.
    events: u64,
}

/// Runs `script` after the stream in a fresh engine, until its jobs have
/// read the whole stream, and reads `last`'s counters.
async fn run(events: u64, script: &str, last: &str) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    engine.execute_script(&stream(events)).await?;
    let (cpu, wall) = run_to_end(&engine, script).await?;
    let run = Run {
        cpu,
        wall,
        rows_out: job_counter_of(&engine, Some(last), "output_rows").await?,
        events: job_counter_of(&engine, Some(last), "input_rows").await?,
    };
    engine.shutdown().await;
    Ok(run)
}

fn main() -> anyhow::Result<()> {
    let mut events = 10_000_000u64;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--events" => events = value("--events")?.parse()?,
            "--runs" => runs = value("--runs")?.parse::<usize>()?.max(1),
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => anyhow::bail!("unknown argument '{other}'; expected --events N or --runs N"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut singles, mut chains) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        let single = runtime.block_on(run(events, SINGLE, "busy_direct"))?;
        let chain = runtime.block_on(run(events, CHAIN, "busy"))?;
        anyhow::ensure!(
            single.rows_out == chain.rows_out && single.events == chain.events,
            "the chain emitted {} rows from {} bids, the single query {} from {}",
            chain.rows_out,
            chain.events,
            single.rows_out,
            single.events
        );
        eprintln!(
            "round {round}: single {:.2} CPU-s, chain {:.2} CPU-s, ratio {:.2}",
            single.cpu.as_secs_f64(),
            chain.cpu.as_secs_f64(),
            chain.cpu.as_secs_f64() / single.cpu.as_secs_f64()
        );
        singles.push(single);
        chains.push(chain);
    }
    // The median round by the ratio: both arms of a round ran under the
    // same load.
    let mut rounds: Vec<(f64, usize)> = singles
        .iter()
        .zip(&chains)
        .enumerate()
        .map(|(i, (s, c))| (c.cpu.as_secs_f64() / s.cpu.as_secs_f64(), i))
        .collect();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, median) = rounds[rounds.len() / 2];
    let (single, chain) = (&singles[median], &chains[median]);
    println!(
        "{events} bids, {} rows out, median of {runs} rounds\n",
        single.rows_out
    );
    println!("| run | CPU s | wall s | bids / CPU-s |");
    println!("|---|---:|---:|---:|");
    for (name, r) in [
        ("one query (baseline)", single),
        ("chain of three views", chain),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2}M |",
            r.cpu.as_secs_f64(),
            r.wall.as_secs_f64(),
            events as f64 / r.cpu.as_secs_f64() / 1e6
        );
    }
    println!(
        "\nchain / one query, CPU: {ratio:.2} (target ≤ 1.30: {})",
        if ratio <= 1.3 { "met" } else { "MISSED" }
    );
    Ok(())
}
