//! Ingest: Nexmark bids as JSON lines (or CSV) read by a `file` stream,
//! against a standalone decoder of the same file, in one run.
//!
//! ```text
//! cargo bench --bench ingest                                  # 5M events, 2 rounds
//! cargo bench --bench ingest -- --events 1000000 --runs 1 --format csv
//! ```
//!
//! The bids of `--events` events of the Nexmark sequence (46 in 50 events
//! are bids) are generated once and written to a temporary file. Then, in
//! alternating rounds:
//!
//! * **decoder** (the baseline): arrow-json's (or arrow-csv's) reader over
//!   the file, decoding every field of every bid into Arrow batches of
//!   8,192 rows, and nothing else;
//! * **q0, q1, q2**: a job of a real [`Engine`] per query (the files of
//!   `benches/nexmark/`), reading the file through a `file` stream (with a
//!   watermark on `date_time`) into a `discard` sink;
//! * **q0, q1, q2, two decode threads**: the same with `decode_threads =
//!   '2'`, each batch decoded in two chunks at once.
//!
//! CPU time is of the whole process (user + system, every thread). The
//! targets are those of the ingest issue: JSON bids through q1 and q2 at
//! 1.2M events or more per CPU-second, q0 at 0.8M or more.
//!
//! Apache Flink over the same kind of file is the peer bench of
//! `benches/peers/flink/`.

#[path = "support.rs"]
mod support;

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use fibers_engine::{Engine, EngineConfig};
use support::{cpu_time, job_counter_of, nexmark, run_to_end};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const QUERIES: &[&str] = &["q0", "q1", "q2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// The stream over the file, declared as a user would declare it;
/// `threads` sets its `decode_threads` (the default when `None`).
fn create_stream(path: &Path, format: Format, threads: Option<usize>) -> String {
    let threads = threads.map_or(String::new(), |n| format!(", decode_threads = '{n}'"));
    format!(
        "CREATE STREAM bid (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, \
         date_time TIMESTAMP, extra TEXT, \
         WATERMARK FOR date_time AS date_time - INTERVAL '5' SECOND) \
         WITH (connector = 'file', path = '{}', format = '{}'{threads});",
        path.display(),
        format.name()
    )
}

/// Writes the bids to `dir` as JSON lines and as CSV with a header.
fn write_files(dir: &Path, bids: &[RecordBatch]) -> anyhow::Result<(PathBuf, PathBuf, u64)> {
    let json = dir.join("bids.jsonl");
    let csv = dir.join("bids.csv");
    let mut json_writer =
        arrow_json::LineDelimitedWriter::new(BufWriter::new(File::create(&json)?));
    let mut csv_writer = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(BufWriter::new(File::create(&csv)?));
    let mut rows = 0u64;
    for batch in bids {
        json_writer.write(batch)?;
        csv_writer.write(batch)?;
        rows += batch.num_rows() as u64;
    }
    json_writer.finish()?;
    json_writer.into_inner().flush()?;
    csv_writer.into_inner().flush()?;
    Ok((json, csv, rows))
}

struct Run {
    cpu: Duration,
    wall: Duration,
    rows_in: u64,
    rows_out: u64,
}

/// Decodes every field of every row of `path`, as a standalone reader.
fn decode_alone(path: &Path, format: Format, schema: &SchemaRef) -> anyhow::Result<Run> {
    let (cpu, wall) = (cpu_time(), Instant::now());
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut rows = 0u64;
    match format {
        Format::Json => {
            let reader = arrow_json::ReaderBuilder::new(schema.clone())
                .with_batch_size(8192)
                .build(file)?;
            for batch in reader {
                rows += batch?.num_rows() as u64;
            }
        }
        Format::Csv => {
            let reader = arrow_csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(8192)
                .build(file)?;
            for batch in reader {
                rows += batch?.num_rows() as u64;
            }
        }
    }
    Ok(Run {
        cpu: cpu_time() - cpu,
        wall: wall.elapsed(),
        rows_in: rows,
        rows_out: rows,
    })
}

/// Runs `query` over the file in a fresh engine until the stream ends.
async fn run_query(
    path: &Path,
    format: Format,
    query: &str,
    threads: Option<usize>,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(EngineConfig::new(dir.path())).await?;
    engine
        .execute_script(&create_stream(path, format, threads))
        .await?;
    let sink = format!(
        "CREATE SINK ingest_{query} WITH (connector = 'discard') AS\n{}",
        nexmark::sql(&format!("{query}.sql"))?
    );
    let (cpu, wall) = run_to_end(&engine, &sink).await?;
    let name = format!("ingest_{query}");
    let run = Run {
        cpu,
        wall,
        rows_in: job_counter_of(&engine, Some(&name), "input_rows").await?,
        rows_out: job_counter_of(&engine, Some(&name), "output_rows").await?,
    };
    engine.shutdown().await;
    Ok(run)
}

/// What one arm of a round runs.
#[derive(Debug, Clone, Copy)]
enum Arm {
    Decoder,
    Fibers(&'static str),
    /// The query with `decode_threads = '2'`: each batch decoded in two
    /// chunks at once.
    TwoThreads(&'static str),
}

impl Arm {
    fn name(self) -> String {
        match self {
            Arm::Decoder => "decoder alone, every field (baseline)".to_string(),
            Arm::Fibers(q) => q.to_string(),
            Arm::TwoThreads(q) => format!("{q}, two decode threads"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut events = 5_000_000u64;
    let mut runs = 2usize;
    let mut formats = vec![Format::Json];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--events" => events = value("--events")?.parse()?,
            "--runs" => runs = value("--runs")?.parse::<usize>()?.max(1),
            "--format" => {
                formats = match value("--format")?.as_str() {
                    "json" => vec![Format::Json],
                    "csv" => vec![Format::Csv],
                    "both" => vec![Format::Json, Format::Csv],
                    other => anyhow::bail!("unknown format '{other}'; expected json, csv or both"),
                }
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => anyhow::bail!(
                "unknown argument '{other}'; expected --events N, --runs N, --format \
                 json|csv|both"
            ),
        }
    }
    let bids = fibers_engine::read_stream(&nexmark::create_stream("bid", events), 8192)?;
    let schema = bids
        .first()
        .map(RecordBatch::schema)
        .context("the generator made no bids")?;
    let dir = tempfile::tempdir()?;
    let (json, csv, rows) = write_files(dir.path(), &bids)?;
    drop(bids);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{rows} bids: {:.0} MiB of JSON lines, {:.0} MiB of CSV",
        size(&json) as f64 / (1 << 20) as f64,
        size(&csv) as f64 / (1 << 20) as f64
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for format in formats {
        let path = match format {
            Format::Json => &json,
            Format::Csv => &csv,
        };
        let mut arms = vec![Arm::Decoder];
        for &q in QUERIES {
            arms.extend([Arm::Fibers(q), Arm::TwoThreads(q)]);
        }
        // Best of `runs` for each arm, the arms alternating within a round.
        let mut best: Vec<Option<Run>> = arms.iter().map(|_| None).collect();
        for round in 1..=runs {
            let mut line = format!("{} round {round}:", format.name());
            for (arm, slot) in arms.iter().zip(best.iter_mut()) {
                let run = match *arm {
                    Arm::Decoder => decode_alone(path, format, &schema)?,
                    Arm::Fibers(q) => runtime.block_on(run_query(path, format, q, None))?,
                    Arm::TwoThreads(q) => runtime.block_on(run_query(path, format, q, Some(2)))?,
                };
                anyhow::ensure!(
                    run.rows_in == rows,
                    "{} read {} rows of {rows}",
                    arm.name(),
                    run.rows_in
                );
                line.push_str(&format!(" {:.2} CPU-s", run.cpu.as_secs_f64()));
                if slot.as_ref().is_none_or(|b| run.cpu < b.cpu) {
                    *slot = Some(run);
                }
            }
            eprintln!("{line}");
        }
        let decoder_cpu = best[0].as_ref().map_or(0.0, |r| r.cpu.as_secs_f64());
        println!(
            "\n{} ({rows} bids, best of {runs} rounds)\n",
            format.name().to_uppercase()
        );
        println!("| run | rows out | CPU s | wall s | events / CPU-s | CPU / decoder's | target |");
        println!("|---|---:|---:|---:|---:|---:|---|");
        for (arm, run) in arms.iter().zip(&best) {
            let Some(run) = run else { continue };
            let per_cpu = rows as f64 / run.cpu.as_secs_f64().max(1e-9);
            let target = match (format, arm) {
                (Format::Json, Arm::Fibers("q0")) => Some(0.8e6),
                (Format::Json, Arm::Fibers(_)) => Some(1.2e6),
                _ => None,
            };
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2}M | {:.2} | {} |",
                arm.name(),
                run.rows_out,
                run.cpu.as_secs_f64(),
                run.wall.as_secs_f64(),
                per_cpu / 1e6,
                run.cpu.as_secs_f64() / decoder_cpu.max(1e-9),
                match target {
                    Some(t) if per_cpu >= t => format!("met ≥ {:.1}M", t / 1e6),
                    Some(t) => format!("MISSED ≥ {:.1}M", t / 1e6),
                    None => String::new(),
                }
            );
        }
    }
    Ok(())
}
