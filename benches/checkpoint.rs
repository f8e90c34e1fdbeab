//! The cost of aligned checkpoints: the VWAP view over a bounded stocks
//! feed, archived to Delta, run through the real [`Engine`] (job, source
//! thread, Delta commits) with checkpoints on against the same job with
//! checkpoints off (the baseline: it still stages and commits to Delta on
//! the same interval, without a manifest), in one run. Then the time a
//! job takes to restore its newest checkpoint when the engine re-opens
//! its data dir.
//!
//! ```text
//! cargo bench --bench checkpoint            # 600M events (~45 s a run), 3 rounds, 10 s and 1 s
//! cargo bench --bench checkpoint -- --events 3000000 --runs 1 --recovery-seconds 5 --restarts 2
//! cargo bench --bench checkpoint -- --interval 10s --short-interval 1s --runs 5
//! ```
//!
//! Each round runs, in fresh data dirs and over the same events: off and
//! on at `--interval`, then off and on at `--short-interval` (the "off"
//! runs commit on that interval too, so each pair differs only in the
//! checkpoint). The table shows the median of the rounds; overhead is
//! `1 - on / off` of each round's pair (same load on the machine), its
//! median over the rounds, by wall time and per CPU-second of the whole
//! process. The feed generates events in the job's source thread, so
//! generation is inside the timed region, the same work in both arms; the
//! generator alone is timed beside them for scale. `--recovery-seconds`
//! and `--restarts` set the recovery part: how long the unbounded job runs
//! before the first shutdown, and how many times it is re-opened.

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use fibers_engine::checkpoint::parse_interval;
use fibers_engine::{Engine, EngineConfig, StatementResult, StocksConfig, StocksGenerator};
use support::{cpu_time, peak_rss_kib};

/// The job's name, and so its checkpoint folder.
const VIEW: &str = "vwap";
const QUERY: &str = "SELECT symbol, window_start, window_end,
        sum(price * volume) / sum(volume) AS vwap, sum(volume) AS volume, count(*) AS trades
    FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
    GROUP BY symbol, window_start, window_end";
/// How often SHOW JOBS is sampled during a run (in both arms alike), to
/// see every checkpoint, not only the last.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long a re-opened job runs before the next shutdown and re-open.
const RUN_BETWEEN_RESTARTS: Duration = Duration::from_secs(2);

struct Settings {
    events: u64,
    runs: usize,
    interval: Duration,
    short_interval: Duration,
    recovery_seconds: u64,
    restarts: usize,
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
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            value(name).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{name} {v}: expected a number"))
            })
        };
        let interval = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match value(name) {
                None => Ok(default),
                Some(v) => parse_interval(v)
                    .map_err(anyhow::Error::msg)?
                    .with_context(|| format!("{name} must be a duration, not off")),
            }
        };
        Ok(Settings {
            events: number("--events", 600_000_000)?,
            runs: number("--runs", 3)?.max(1) as usize,
            interval: interval("--interval", Duration::from_secs(10))?,
            short_interval: interval("--short-interval", Duration::from_secs(1))?,
            recovery_seconds: number("--recovery-seconds", 25)?,
            restarts: number("--restarts", 5)?.max(1) as usize,
        })
    }
}

/// One arm of the comparison.
#[derive(Clone, Copy)]
struct Arm {
    interval: Duration,
    checkpoints: bool,
}

impl Arm {
    fn name(&self) -> String {
        let every = humantime::format_duration(self.interval);
        if self.checkpoints {
            format!("checkpoints every {every}")
        } else {
            format!("checkpoints off, commits every {every} (baseline)")
        }
    }

    fn config(&self, dir: &Path) -> EngineConfig {
        let mut config = EngineConfig::new(dir);
        config.checkpoints.interval = self.checkpoints.then_some(self.interval);
        config
    }

    /// The view; with checkpoints off its commit interval is set in its
    /// `WITH`, since the engine's interval is `None` then.
    fn view(&self) -> String {
        if self.checkpoints {
            format!("CREATE MATERIALIZED VIEW {VIEW} AS {QUERY}")
        } else {
            format!(
                "CREATE MATERIALIZED VIEW {VIEW} WITH (commit_interval = '{}') AS {QUERY}",
                humantime::format_duration(self.interval)
            )
        }
    }
}

/// A checkpoint as SHOW JOBS or its manifest reports it.
#[derive(Debug, Clone, Copy, Default)]
struct Checkpoint {
    epoch: u64,
    duration_ms: u64,
    /// Staged Delta files and operator state.
    bytes: u64,
    /// The operator state file alone (known from the manifests kept on disk).
    state_bytes: Option<u64>,
    /// When its barrier was injected, milliseconds since the Unix epoch.
    at_ms: Option<i64>,
}

/// The row of SHOW JOBS for the view.
#[derive(Debug, Default)]
struct JobRow {
    status: String,
    error: String,
    input_rows: u64,
    output_rows: u64,
    checkpoint: Option<Checkpoint>,
    recovered_from: Option<u64>,
    recovery_ms: Option<u64>,
}

async fn show_job(engine: &Engine) -> anyhow::Result<JobRow> {
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
        let number = |column: &str, row: usize| -> anyhow::Result<Option<u64>> {
            let values = batch
                .column_by_name(column)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .with_context(|| format!("SHOW JOBS has no UInt64 column {column}"))?;
            Ok(values.is_valid(row).then(|| values.value(row)))
        };
        let names = text("name")?;
        let Some(row) = (0..batch.num_rows()).find(|&r| names.value(r) == VIEW) else {
            continue;
        };
        let times = text("checkpoint_time")?;
        let checkpoint = match number("checkpoint_epoch", row)? {
            Some(epoch) => Some(Checkpoint {
                epoch,
                duration_ms: number("checkpoint_ms", row)?.unwrap_or(0),
                bytes: number("checkpoint_bytes", row)?.unwrap_or(0),
                state_bytes: None,
                at_ms: Some(times.value(row))
                    .filter(|_| times.is_valid(row))
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis()),
            }),
            None => None,
        };
        return Ok(JobRow {
            status: text("status")?.value(row).to_string(),
            error: text("error")?.value(row).to_string(),
            input_rows: number("input_rows", row)?.unwrap_or(0),
            output_rows: number("output_rows", row)?.unwrap_or(0),
            checkpoint,
            recovered_from: number("recovered_from", row)?,
            recovery_ms: number("recovery_ms", row)?,
        });
    }
    bail!("SHOW JOBS has no job '{VIEW}'")
}

/// The manifests of the view's checkpoints still on disk (the engine keeps
/// the newest few), with the size of each one's operator state file.
fn manifests(data_dir: &Path) -> anyhow::Result<BTreeMap<u64, Checkpoint>> {
    let dir = data_dir.join("checkpoints").join(VIEW);
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(found);
    };
    for entry in entries {
        let path = entry?.path();
        let Ok(text) = std::fs::read(path.join("manifest.json")) else {
            continue; // incomplete
        };
        let manifest: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{}/manifest.json", path.display()))?;
        let field = |name: &str| manifest[name].as_u64().unwrap_or(0);
        let state_bytes = match manifest["operator"]["state_file"].as_str() {
            Some(file) => std::fs::metadata(path.join(file))?.len(),
            None => 0,
        };
        found.insert(
            field("epoch"),
            Checkpoint {
                epoch: field("epoch"),
                duration_ms: field("duration_ms"),
                bytes: field("size_bytes"),
                state_bytes: Some(state_bytes),
                at_ms: manifest["started_ms"].as_i64(),
            },
        );
    }
    Ok(found)
}

/// Rows of the operator state file of checkpoint `epoch`, and its size.
fn state_of(data_dir: &Path, epoch: u64) -> anyhow::Result<(usize, u64)> {
    let path = data_dir
        .join("checkpoints")
        .join(VIEW)
        .join(format!("{epoch:020}"))
        .join("operator.arrow");
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok((0, 0));
    };
    let bytes = file.metadata()?.len();
    let reader = arrow::ipc::reader::FileReader::try_new(file, None)?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows();
    }
    Ok((rows, bytes))
}

fn stocks_stream(limit: Option<u64>) -> String {
    let limit = limit
        .map(|n| format!(", limit = '{n}'"))
        .unwrap_or_default();
    format!("CREATE STREAM trades WITH (connector = 'stocks', rate = '0'{limit})")
}

struct Run {
    wall: Duration,
    cpu: Duration,
    output_rows: u64,
    /// The checkpoints seen, by epoch (sampling may miss one that follows
    /// another within `SAMPLE_EVERY`).
    checkpoints: BTreeMap<u64, Checkpoint>,
}

impl Run {
    /// Checkpoints taken: epochs are numbered from 1 in a fresh data dir.
    fn checkpoints_taken(&self) -> u64 {
        self.checkpoints.keys().max().copied().unwrap_or(0)
    }

    /// Seconds from each checkpoint's barrier to the next one's, leaving
    /// out the last checkpoint (taken at the end of input, not on time).
    fn spacings(&self) -> Vec<f64> {
        let last = self.checkpoints_taken();
        self.checkpoints
            .values()
            .filter_map(|c| {
                let next = self
                    .checkpoints
                    .get(&(c.epoch + 1))
                    .filter(|n| n.epoch < last)?;
                Some((next.at_ms? - c.at_ms?) as f64 / 1000.0)
            })
            .collect()
    }
}

/// Runs the bounded VWAP job over `events` events in a fresh data dir.
async fn throughput(arm: Arm, events: u64) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(arm.config(dir.path())).await?;
    engine.execute_script(&stocks_stream(Some(events))).await?;
    let mut checkpoints = BTreeMap::new();
    let (cpu, wall) = (cpu_time(), Instant::now());
    engine.execute_script(&arm.view()).await?;
    {
        let mut finished = std::pin::pin!(engine.wait_for_bounded_jobs());
        loop {
            tokio::select! {
                () = &mut finished => break,
                () = tokio::time::sleep(SAMPLE_EVERY) => {
                    if let Some(c) = show_job(&engine).await?.checkpoint {
                        checkpoints.insert(c.epoch, c);
                    }
                }
            }
        }
    }
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());

    let job = show_job(&engine).await?;
    ensure!(
        job.status == "finished",
        "job {}: {}",
        job.status,
        job.error
    );
    ensure!(
        job.input_rows == events,
        "the job read {} of {events} events",
        job.input_rows
    );
    if let Some(c) = job.checkpoint {
        checkpoints.insert(c.epoch, c);
    }
    checkpoints.extend(manifests(dir.path())?);
    // Every window emitted is committed to the archive, exactly once.
    let archived = support::archived_rows(&engine, VIEW).await?;
    ensure!(
        archived == job.output_rows,
        "the archive holds {archived} rows, the job emitted {}",
        job.output_rows
    );
    engine.shutdown().await;
    Ok(Run {
        wall,
        cpu,
        output_rows: job.output_rows,
        checkpoints,
    })
}

/// The generator alone, in this thread: events per CPU-second.
fn generator_rate(events: u64) -> f64 {
    let mut generator = StocksGenerator::new(StocksConfig {
        seed: 1,
        symbols: fibers_engine::default_symbols(38),
        step_nanos: 1_000_000,
        disorder_nanos: 2_000_000_000,
        start_nanos: 1_735_828_200_000_000_000,
        limit: Some(events),
    });
    let cpu = cpu_time();
    let mut rows = 0;
    while let Some(batch) = generator.next_batch(8192) {
        rows += batch.num_rows();
        std::hint::black_box(&batch);
    }
    assert_eq!(rows as u64, events);
    events as f64 / (cpu_time() - cpu).as_secs_f64()
}

struct Recovery {
    ran: Duration,
    events_before: u64,
    /// The checkpoint the first shutdown took, restored by the first re-open.
    restored: Checkpoint,
    state_rows: usize,
    /// Per re-open: `Engine::open`, open until the job has restored, and
    /// the job's own `recovery_ms`.
    opens: Vec<Duration>,
    restored_after: Vec<Duration>,
    recovery_ms: Vec<u64>,
    rate: f64,
}

/// Runs an unbounded VWAP job with checkpoints for `seconds`, shuts the
/// engine down (a final checkpoint) and re-opens it `restarts` times.
async fn recovery(interval: Duration, seconds: u64, restarts: usize) -> anyhow::Result<Recovery> {
    let dir = tempfile::tempdir()?;
    let arm = Arm {
        interval,
        checkpoints: true,
    };
    let engine = Engine::open(arm.config(dir.path())).await?;
    engine.execute_script(&stocks_stream(None)).await?;
    let started = Instant::now();
    engine.execute_script(&arm.view()).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    engine.shutdown().await;
    let ran = started.elapsed();
    let job = show_job(&engine).await?;
    ensure!(job.status == "stopped", "job {}: {}", job.status, job.error);
    let restored = job
        .checkpoint
        .context("the job took no checkpoint at shutdown")?;
    let manifests = manifests(dir.path())?;
    let restored = manifests.get(&restored.epoch).copied().unwrap_or(restored);
    let (state_rows, _) = state_of(dir.path(), restored.epoch)?;
    let events_before = job.input_rows;
    drop(engine);

    let (mut opens, mut restored_after, mut recovery_ms) = (vec![], vec![], vec![]);
    let mut expected = restored.epoch;
    for _ in 0..restarts {
        let began = Instant::now();
        let engine = Engine::open(arm.config(dir.path())).await?;
        opens.push(began.elapsed());
        let job = loop {
            let job = show_job(&engine).await?;
            if job.recovered_from.is_some() || job.status != "running" {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        restored_after.push(began.elapsed());
        ensure!(
            job.recovered_from == Some(expected),
            "re-opened job recovered from {:?}, expected checkpoint {expected} ({} {})",
            job.recovered_from,
            job.status,
            job.error
        );
        recovery_ms.push(job.recovery_ms.unwrap_or(0));
        tokio::time::sleep(RUN_BETWEEN_RESTARTS).await;
        engine.shutdown().await;
        expected = show_job(&engine)
            .await?
            .checkpoint
            .context("no checkpoint at shutdown")?
            .epoch;
    }
    Ok(Recovery {
        ran,
        events_before,
        restored,
        state_rows,
        opens,
        restored_after,
        recovery_ms,
        rate: events_before as f64 / ran.as_secs_f64(),
    })
}

/// The 1, 5 and 15 minute load averages: other work on the machine
/// shows up as noise in the wall times.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kib(bytes: f64) -> String {
    if bytes.is_nan() {
        return "-".into();
    }
    format!("{:.1} KiB", bytes / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_args()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let events = settings.events;
    let arms = [
        Arm {
            interval: settings.interval,
            checkpoints: false,
        },
        Arm {
            interval: settings.interval,
            checkpoints: true,
        },
        Arm {
            interval: settings.short_interval,
            checkpoints: false,
        },
        Arm {
            interval: settings.short_interval,
            checkpoints: true,
        },
    ];

    let load_before = load_average();
    // Warm the page cache, allocator and lazy statics; not reported.
    runtime.block_on(throughput(arms[0], (events / 10).max(100_000)))?;
    let mut runs: Vec<Vec<Run>> = arms.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.runs {
        for (arm, results) in arms.iter().zip(&mut runs) {
            let run = runtime.block_on(throughput(*arm, events))?;
            eprintln!(
                "round {}: {}: {:.2} s wall, {:.2} CPU-s, {} checkpoints",
                round + 1,
                arm.name(),
                run.wall.as_secs_f64(),
                run.cpu.as_secs_f64(),
                run.checkpoints_taken()
            );
            results.push(run);
        }
    }
    let output_rows = runs[0][0].output_rows;
    for run in runs.iter().flatten() {
        ensure!(
            run.output_rows == output_rows,
            "runs disagree on the number of windows: {} and {output_rows}",
            run.output_rows
        );
    }
    let generator_rate = generator_rate(events.min(100_000_000));
    let recovery = runtime.block_on(recovery(
        settings.interval,
        settings.recovery_seconds,
        settings.restarts,
    ))?;

    let rates = |results: &[Run]| {
        let wall = median(
            results
                .iter()
                .map(|r| events as f64 / r.wall.as_secs_f64())
                .collect(),
        );
        let cpu = median(
            results
                .iter()
                .map(|r| events as f64 / r.cpu.as_secs_f64())
                .collect(),
        );
        (wall, cpu)
    };
    println!(
        "VWAP per symbol and 10 s window over the stocks feed (38 symbols), archived to Delta: \
         {events} events, {output_rows} windows per run, median of {} rounds, each run in a fresh data dir\n",
        settings.runs
    );
    println!(
        "| run | wall s | events/s | spread | CPU s | events/CPU-s | overhead (wall) | overhead (CPU) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (arm, results)) in arms.iter().zip(&runs).enumerate() {
        let (wall_rate, cpu_rate) = rates(results);
        let walls: Vec<f64> = results
            .iter()
            .map(|r| events as f64 / r.wall.as_secs_f64())
            .collect();
        let spread = (walls.iter().copied().fold(f64::MIN, f64::max)
            - walls.iter().copied().fold(f64::MAX, f64::min))
            / wall_rate;
        // Each round's run against the baseline run just before it (the
        // same load on the machine), then the median over the rounds.
        let overhead = if arm.checkpoints {
            let paired = |time: fn(&Run) -> Duration| {
                let rounds: Vec<f64> = results
                    .iter()
                    .zip(&runs[i - 1])
                    .map(|(on, off)| {
                        (1.0 - time(off).as_secs_f64() / time(on).as_secs_f64()) * 100.0
                    })
                    .collect();
                let each: Vec<String> = rounds.iter().map(|o| format!("{o:+.1}")).collect();
                format!("{:+.1}% ({})", median(rounds), each.join(", "))
            };
            (paired(|r| r.wall), paired(|r| r.cpu))
        } else {
            ("baseline".into(), "baseline".into())
        };
        println!(
            "| {} | {:.2} | {:.0} | {:.1}% | {:.2} | {:.0} | {} | {} |",
            arm.name(),
            median(results.iter().map(|r| r.wall.as_secs_f64()).collect()),
            wall_rate,
            spread * 100.0,
            median(results.iter().map(|r| r.cpu.as_secs_f64()).collect()),
            cpu_rate,
            overhead.0,
            overhead.1
        );
    }
    println!(
        "| the stocks generator alone, one thread (no engine) | | | | {:.2} | {:.0} | | |",
        events as f64 / generator_rate,
        generator_rate
    );
    println!(
        "\noverhead = 1 - on / off, per round against the baseline run just before (positive: \
         checkpoints cost throughput), median (and each round); spread = (max - min) / median of \
         the rounds' events/s, the noise to read it against. Load average before / after: {} / {}.",
        load_before,
        load_average()
    );

    println!(
        "\n| checkpoints | per run | time between, median / max | duration ms, median / max | size, median | operator state, median / max |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (arm, results) in arms.iter().zip(&runs).filter(|(a, _)| a.checkpoints) {
        let all: Vec<Checkpoint> = results
            .iter()
            .flat_map(|r| r.checkpoints.values().copied())
            .collect();
        let per_run = median(
            results
                .iter()
                .map(|r| r.checkpoints_taken() as f64)
                .collect(),
        );
        let durations: Vec<f64> = all.iter().map(|c| c.duration_ms as f64).collect();
        let states: Vec<f64> = all
            .iter()
            .filter_map(|c| c.state_bytes)
            .filter(|&b| b > 0)
            .map(|b| b as f64)
            .collect();
        let spacings: Vec<f64> = results.iter().flat_map(Run::spacings).collect();
        println!(
            "| every {} | {per_run:.0} | {} | {:.0} / {:.0} | {} | {} / {} |",
            humantime::format_duration(arm.interval),
            if spacings.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{:.2} / {:.2} s",
                    median(spacings.clone()),
                    spacings.iter().copied().fold(0.0, f64::max)
                )
            },
            median(durations.clone()),
            durations.iter().copied().fold(0.0, f64::max),
            kib(median(all.iter().map(|c| c.bytes as f64).collect())),
            kib(median(states.clone())),
            kib(states.iter().copied().fold(f64::NAN, f64::max)),
        );
    }
    println!(
        "\nduration: barrier to manifest (staging the epoch's Delta files, writing the state \
         as Arrow IPC and the manifest), during which the job does not process rows; the \
         Delta commit follows. Size: staged Delta files plus operator state. Time between: \
         from one barrier to the next (the last, at the end of input, left out). Durations and \
         sizes are those SHOW JOBS showed (sampled every {} ms) and the manifests kept on disk.",
        SAMPLE_EVERY.as_millis()
    );

    let r = &recovery;
    let restored_state = r.restored.state_bytes.unwrap_or(0);
    println!(
        "\n| recovery (checkpoints every {}) | value |",
        humantime::format_duration(settings.interval)
    );
    println!("|---|---:|");
    println!(
        "| unbounded job before the first shutdown | {:.1} s, {} events ({:.0} events/s) |",
        r.ran.as_secs_f64(),
        r.events_before,
        r.rate
    );
    println!(
        "| checkpoint restored by the first re-open | epoch {}, {} ({} operator state, {} rows; {} staged Delta files) |",
        r.restored.epoch,
        kib(r.restored.bytes as f64),
        kib(restored_state as f64),
        r.state_rows,
        kib(r.restored.bytes.saturating_sub(restored_state) as f64)
    );
    let summary = |values: Vec<f64>| {
        let max = values.iter().copied().fold(0.0, f64::max);
        format!("{:.1} / {:.1} ms", median(values), max)
    };
    println!(
        "| `Engine::open` wall time, median / max of {} re-opens | {} |",
        r.opens.len(),
        summary(r.opens.iter().map(|d| ms(*d)).collect())
    );
    println!(
        "| open until SHOW JOBS shows the job restored, median / max | {} |",
        summary(r.restored_after.iter().map(|d| ms(*d)).collect())
    );
    println!(
        "| the job's recovery_ms (SHOW JOBS), median / max | {} |",
        summary(r.recovery_ms.iter().map(|&m| m as f64).collect())
    );
    println!(
        "| replay after a crash, worst case: one interval of input | ~{:.0} events, ~{:.1} s at the rate above |",
        r.rate * settings.interval.as_secs_f64(),
        settings.interval.as_secs_f64()
    );
    println!(
        "\nThis measures restoring the last checkpoint after a clean shutdown (which takes a \
         final checkpoint): reading the manifest and operator state, re-planning, opening the \
         Delta table and seeking the source, in this process (warm). After a crash the job \
         also replays the input since that checkpoint, up to one interval's worth; for this \
         unthrottled feed that is up to one interval of processing. Peak RSS {} MiB.",
        peak_rss_kib() / 1024
    );
    Ok(())
}
