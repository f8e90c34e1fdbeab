//! Peak memory of stream–stream joins as the event count grows (issue 6:
//! an interval join and a windowed join over 50M events keep peak memory
//! flat, 10M vs 50M events within 1.3×). Join state is bounded by the
//! watermark, so the peak must not grow with the input.
//!
//! ```text
//! cargo bench --bench joins                                       # 10M and 50M events
//! FIBERS_JOIN_EVENTS=2000000,10000000 cargo bench --bench joins   # quicker
//! ```
//!
//! The default run takes about 2 minutes on 2 cores, most of it the
//! interval join (~0.6M events/s: its join filter runs for every pair of
//! rows with the same keys in the two buffers, not only the pairs
//! within the time bounds).
//!
//! Each run is a fresh child process (this bench executable re-run with
//! `--child JOIN EVENTS`, so nothing else needs to be built or found):
//! the real [`Engine`] with its defaults (8192-row batches, a checkpoint
//! every 10 s) in a fresh data dir, two bounded `stocks` streams of half
//! the events each (seeds 1 and 2, the same event-time progression, 1 ms
//! per event, 2 s disorder and watermark delay), and a materialized view
//! archived to Parquet, run until the input ends. The child reads its own
//! peak RSS (`VmHWM` of `/proc/self/status`, which counts only this
//! process's address space) when the job has finished, before it reads
//! the archive back to check that every output row was archived; it also
//! records the peak when a fifth of the input has been read, to show the
//! growth within a run.
//!
//! The joins keep their output modest, since the point is state size:
//! the interval join matches trades of the same symbol and volume within
//! ±5 ms of event time (a few percent of events match); the windowed join
//! joins on the same keys within 1 s windows and aggregates to one row
//! per window. Both buffer every row of their inputs (the keys are applied
//! by the plan when the rows are joined). The baseline, the engine without
//! a join, is a 1 s windowed count over one stream of all the events.

#[path = "support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use fibers_engine::{Engine, EngineConfig, StatementResult};
use support::{cpu_time, peak_rss_kib};

/// The event counts run by default: events of both streams together.
const DEFAULT_EVENTS: [u64; 2] = [10_000_000, 50_000_000];
/// Overrides [`DEFAULT_EVENTS`]: a comma-separated list of counts.
const EVENTS_VAR: &str = "FIBERS_JOIN_EVENTS";
/// The largest peak RSS allowed at the largest event count, as a multiple
/// of the peak at the smallest.
const TARGET_RATIO: f64 = 1.3;
/// The view each child runs.
const VIEW: &str = "joined";
/// How often the child samples SHOW JOBS while the job runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The fraction of the input after which the child records its peak RSS
/// so far.
const EARLY_FRACTION: f64 = 0.2;

/// What a run measures: one of the two joins, or the baseline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Join {
    Interval,
    Windowed,
    Baseline,
}

impl Join {
    const ALL: [Join; 3] = [Join::Interval, Join::Windowed, Join::Baseline];

    fn arg(self) -> &'static str {
        match self {
            Join::Interval => "interval",
            Join::Windowed => "windowed",
            Join::Baseline => "baseline",
        }
    }

    fn from_arg(arg: &str) -> anyhow::Result<Self> {
        Join::ALL
            .into_iter()
            .find(|j| j.arg() == arg)
            .with_context(|| {
                format!("unknown join '{arg}': expected interval, windowed or baseline")
            })
    }

    fn name(self) -> &'static str {
        match self {
            Join::Interval => "interval join (symbol, volume, ±5 ms)",
            Join::Windowed => "windowed join (symbol, volume, 1 s TUMBLE) + count/sum per window",
            Join::Baseline => "baseline: no join, count/sum per 1 s window of one stream",
        }
    }

    /// The streams and the view, for `events` events in all.
    fn script(self, events: u64) -> String {
        let stream = |name: &str, seed: u32, limit: u64| {
            format!(
                "CREATE STREAM {name} WITH (connector = 'stocks', rate = '0', \
                 limit = '{limit}', seed = '{seed}');\n"
            )
        };
        let view = format!(
            "CREATE MATERIALIZED VIEW {VIEW} WITH (archive = 'parquet', path = '{VIEW}') AS "
        );
        match self {
            Join::Interval => format!(
                "{}{}{view}
                 SELECT a.symbol, a.volume, a.ts AS a_ts, b.ts AS b_ts, a.price AS a_price, b.price AS b_price
                 FROM a JOIN b
                   ON a.symbol = b.symbol AND a.volume = b.volume
                  AND b.ts BETWEEN a.ts - INTERVAL '5' MILLISECOND AND a.ts + INTERVAL '5' MILLISECOND;",
                stream("a", 1, events / 2),
                stream("b", 2, events - events / 2),
            ),
            Join::Windowed => format!(
                "{}{}{view}
                 SELECT a.window_start, count(*) AS pairs, sum(b.volume) AS volume
                 FROM TUMBLE(a, ts, INTERVAL '1' SECOND) AS a
                 JOIN TUMBLE(b, ts, INTERVAL '1' SECOND) AS b
                   ON a.symbol = b.symbol AND a.volume = b.volume AND a.window_start = b.window_start
                 GROUP BY a.window_start;",
                stream("a", 1, events / 2),
                stream("b", 2, events - events / 2),
            ),
            Join::Baseline => format!(
                "{}{view}
                 SELECT window_start, window_end, count(*) AS trades, sum(volume) AS volume
                 FROM TUMBLE(a, ts, INTERVAL '1' SECOND)
                 GROUP BY window_start, window_end;",
                stream("a", 1, events),
            ),
        }
    }
}

/// What a child reports, one line of JSON on its stdout.
#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    events: u64,
    output_rows: u64,
    wall_ms: u64,
    cpu_ms: u64,
    /// Peak RSS when the job finished.
    peak_kib: u64,
    /// Peak RSS when [`EARLY_FRACTION`] of the input had been read.
    early_peak_kib: u64,
}

/// The job's row of SHOW JOBS: status, error, input and output rows.
async fn show_job(engine: &Engine) -> anyhow::Result<(String, String, u64, u64)> {
    let results = engine.execute_script("SHOW JOBS").await?;
    let Some(StatementResult::Rows { batches, .. }) = results.into_iter().next() else {
        bail!("SHOW JOBS returned no rows");
    };
    for batch in &batches {
        let text = |column: &str| -> anyhow::Result<_> {
            batch
                .column_by_name(column)
                .and_then(|c| c.as_string_opt::<i32>())
                .with_context(|| format!("SHOW JOBS has no text column {column}"))
        };
        let number = |column: &str, row: usize| -> anyhow::Result<u64> {
            let values = batch
                .column_by_name(column)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .with_context(|| format!("SHOW JOBS has no UInt64 column {column}"))?;
            Ok(if values.is_valid(row) {
                values.value(row)
            } else {
                0
            })
        };
        let names = text("name")?;
        if let Some(row) = (0..batch.num_rows()).find(|&r| names.value(r) == VIEW) {
            return Ok((
                text("status")?.value(row).to_string(),
                text("error")?.value(row).to_string(),
                number("input_rows", row)?,
                number("output_rows", row)?,
            ));
        }
    }
    bail!("SHOW JOBS has no job '{VIEW}'")
}

/// The child: runs `join` over `events` events until the input ends.
async fn child(join: Join, events: u64) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    let (cpu, wall) = (cpu_time(), Instant::now());
    engine.execute_script(&join.script(events)).await?;
    let mut early_peak_kib = None;
    let (status, error, input_rows, output_rows) = loop {
        let job = show_job(&engine).await?;
        if early_peak_kib.is_none() && job.2 as f64 >= events as f64 * EARLY_FRACTION {
            early_peak_kib = Some(peak_rss_kib());
        }
        if job.0 != "running" {
            break job;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    };
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    // Before the archive is read back, which is not the job's memory.
    let peak_kib = peak_rss_kib();
    ensure!(status == "finished", "job {status}: {error}");
    ensure!(
        input_rows == events,
        "the job read {input_rows} of {events} events"
    );
    let archived = support::archived_rows(&engine, VIEW).await?;
    ensure!(
        archived == output_rows,
        "the archive holds {archived} rows, the job emitted {output_rows}"
    );
    engine.shutdown().await;
    Ok(Report {
        events,
        output_rows,
        wall_ms: wall.as_millis() as u64,
        cpu_ms: cpu.as_millis() as u64,
        peak_kib,
        early_peak_kib: early_peak_kib.unwrap_or(peak_kib),
    })
}

/// Runs `join` over `events` events in a child process.
fn run(join: Join, events: u64) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("the bench's own path")?;
    let output = Command::new(exe)
        .args(["--child", join.arg(), &events.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running the child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "{} over {events} events failed ({}): {stdout}",
        join.arg(),
        output.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the child's report: {line}"))
}

fn event_counts() -> anyhow::Result<Vec<u64>> {
    let Ok(list) = std::env::var(EVENTS_VAR) else {
        return Ok(DEFAULT_EVENTS.to_vec());
    };
    let counts = list
        .split(',')
        .map(|v| {
            v.trim()
                .replace('_', "")
                .parse::<u64>()
                .ok()
                .filter(|&n| n >= 2)
                .with_context(|| {
                    format!("{EVENTS_VAR}={list}: expected event counts such as 2000000,10000000")
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!counts.is_empty(), "{EVENTS_VAR} is empty");
    Ok(counts)
}

fn millions(events: u64) -> String {
    if events.is_multiple_of(1_000_000) {
        format!("{}M", events / 1_000_000)
    } else {
        format!("{:.1}M", events as f64 / 1e6)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let join = Join::from_arg(args.get(i + 1).map_or("", String::as_str))?;
        let events: u64 = args
            .get(i + 2)
            .and_then(|v| v.parse().ok())
            .context("--child JOIN EVENTS")?;
        let report = tokio::runtime::Runtime::new()?.block_on(child(join, events))?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }

    let counts = event_counts()?;
    let mut results: Vec<(Join, Vec<Report>)> = Vec::new();
    for join in Join::ALL {
        let mut reports = Vec::new();
        for &events in &counts {
            let report = run(join, events)?;
            eprintln!(
                "{} over {events} events: {:.1} s, peak RSS {} MiB",
                join.arg(),
                report.wall_ms as f64 / 1000.0,
                mib(report.peak_kib)
            );
            reports.push(report);
        }
        results.push((join, reports));
    }

    println!(
        "Stream joins over the stocks feed, each run in a fresh process and data dir, \
         checkpoints every 10 s, archived to Parquet; events are both streams together\n"
    );
    println!(
        "| query | events | wall s | events/s | CPU s | output rows | peak RSS MiB | peak RSS at {:.0}% of input, MiB |",
        EARLY_FRACTION * 100.0
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (join, reports) in &results {
        for r in reports {
            let wall = r.wall_ms as f64 / 1000.0;
            println!(
                "| {} | {} | {wall:.1} | {:.0} | {:.1} | {} | {} | {} |",
                join.name(),
                millions(r.events),
                r.events as f64 / wall,
                r.cpu_ms as f64 / 1000.0,
                r.output_rows,
                mib(r.peak_kib),
                mib(r.early_peak_kib)
            );
        }
    }

    let (first, last) = (counts[0], counts[counts.len() - 1]);
    println!(
        "\n| query | peak RSS {} | peak RSS {} | ratio | target ≤ {TARGET_RATIO}× |",
        millions(first),
        millions(last)
    );
    println!("|---|---:|---:|---:|---|");
    for (join, reports) in &results {
        let (small, large) = (&reports[0], &reports[reports.len() - 1]);
        let ratio = large.peak_kib as f64 / small.peak_kib.max(1) as f64;
        let verdict = match join {
            Join::Baseline => "(reference)",
            _ if ratio <= TARGET_RATIO => "PASS",
            _ => "MISS",
        };
        println!(
            "| {} | {} MiB | {} MiB | {ratio:.2}× | {verdict} |",
            join.name(),
            mib(small.peak_kib),
            mib(large.peak_kib)
        );
    }
    println!(
        "\nPeak RSS: VmHWM of the child process when its job finished (before the archive is \
         read back to check it). The baseline is the same engine, feed and archive without \
         a join, over one stream of all the events."
    );
    Ok(())
}
