//! The cost of a lookup join: a windowed aggregate over a bounded stocks
//! feed run through the real [`Engine`], joined per batch with reference
//! tables of growing size, against the same aggregate without the join
//! (the baseline), in one run.
//!
//! ```text
//! cargo bench --bench lookup                       # 20M events, tables of 10, 10k and 100k rows
//! cargo bench --bench lookup -- --events 2000000 --tables 10,1000
//! ```
//!
//! Each arm runs in a fresh data dir over the same events (the feed is
//! generated in the job's source thread, the same work in every arm). The
//! joined arms group by the table's `sector` instead of the symbol; the
//! table holds the feed's symbols first, then filler rows that never
//! match. A lookup join runs DataFusion's hash join over every batch with
//! the table's rows, so its cost per batch grows with the table; the
//! table shows by how much.

#[path = "support.rs"]
mod support;

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, ensure};
use fibers_engine::{Engine, EngineConfig, default_symbols};

/// Symbols of the feed: the stocks connector's default list, whole.
const SYMBOLS: usize = usize::MAX;
use support::{cpu_time, peak_rss_kib};

struct Settings {
    events: u64,
    tables: Vec<usize>,
}

impl Settings {
    fn from_args() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
        };
        let events = match value("--events") {
            Some(v) => v.parse().with_context(|| format!("--events {v}"))?,
            None => 20_000_000,
        };
        let tables = match value("--tables") {
            Some(v) => v
                .split(',')
                .map(|n| n.trim().parse().with_context(|| format!("--tables {v}")))
                .collect::<anyhow::Result<_>>()?,
            None => vec![10, 10_000, 100_000],
        };
        Ok(Settings { events, tables })
    }
}

/// Writes a reference table of `rows` rows: the feed's symbols with a
/// sector each, then filler symbols.
fn write_table(path: &std::path::Path, rows: usize) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(file, "symbol,name,sector")?;
    let symbols = default_symbols(SYMBOLS);
    for (i, symbol) in symbols.iter().enumerate().take(rows) {
        writeln!(file, "{symbol},{symbol} Inc,sector{}", i % 5)?;
    }
    for i in symbols.len()..rows {
        writeln!(file, "F{i:07},Filler {i},filler")?;
    }
    Ok(file.flush()?)
}

struct Run {
    wall: f64,
    cpu: f64,
}

async fn run(events: u64, table: Option<usize>) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let stream = format!(
        "CREATE STREAM trades WITH (connector = 'stocks', rate = '0', limit = '{events}');"
    );
    let script = match table {
        None => format!(
            "{stream}
             CREATE MATERIALIZED VIEW v WITH (archive = 'parquet', path = 'v') AS
               SELECT symbol, window_start, window_end, sum(volume) AS volume, count(*) AS trades
               FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
               GROUP BY symbol, window_start, window_end;"
        ),
        Some(rows) => {
            write_table(&dir.path().join("companies.csv"), rows)?;
            format!(
                "{stream}
                 CREATE TABLE companies WITH (connector = 'file', path = 'companies.csv');
                 CREATE MATERIALIZED VIEW v WITH (archive = 'parquet', path = 'v') AS
                   SELECT c.sector, window_start, window_end, sum(t.volume) AS volume,
                          count(*) AS trades
                   FROM TUMBLE(trades, ts, INTERVAL '10' SECOND) AS t
                   JOIN companies AS c ON t.symbol = c.symbol
                   GROUP BY c.sector, window_start, window_end;"
            )
        }
    };
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    let (began, cpu) = (Instant::now(), cpu_time());
    engine.execute_script(&script).await?;
    engine.wait_for_bounded_jobs().await;
    let run = Run {
        wall: began.elapsed().as_secs_f64(),
        cpu: (cpu_time() - cpu).as_secs_f64(),
    };
    let failures = engine.failures().await;
    engine.shutdown().await;
    ensure!(failures.is_empty(), "the job failed: {failures:?}");
    Ok(run)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_args()?;
    let events = settings.events;
    println!("Lookup join cost: a 10 s windowed aggregate over {events} stocks events\n");
    println!("| run | table rows | wall s | events/s | CPU s | CPU vs baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    let baseline = run(events, None).await?;
    let row = |name: &str, rows: String, r: &Run| {
        println!(
            "| {name} | {rows} | {:.2} | {:.2}M | {:.2} | {:.2}× |",
            r.wall,
            events as f64 / r.wall / 1e6,
            r.cpu,
            r.cpu / baseline.cpu
        );
    };
    row("no join (baseline)", "—".into(), &baseline);
    for rows in settings.tables {
        let r = run(events, Some(rows)).await?;
        row("lookup join", rows.to_string(), &r);
    }
    println!(
        "\nPeak memory of the whole bench process (every arm): {} MiB.",
        peak_rss_kib() / 1024
    );
    Ok(())
}
