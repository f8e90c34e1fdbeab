//! The crash test: exactly-once through SIGKILL.
//!
//! A topic of a million JSON trades over several partitions feeds a chain
//! of views (a filter keeping nothing, a windowed VWAP over it archived to
//! Delta, and a filter over the VWAP archived to Delta) and a filtering
//! sink into another topic, all checkpointing every second. `fibers run` is killed with
//! SIGKILL at random moments (early in a start, in the middle of a run,
//! just after a checkpoint with rows, while they are committed) and
//! started again on the same data dir, then left to finish. The Delta
//! tables must then equal an independent computation over the input,
//! window for window, and the sink topic, read with `read_committed`,
//! must hold each selected trade exactly once.
//!
//! Runs when `FIBERS_TEST_BROKERS` is set (as `.ci/run` does), but on two
//! tansu brokers of its own, one for the trades and one for the sink's
//! topic: tansu 0.6 keeps message headers in an unindexed SQLite table and
//! scans all of it for every message it serves, so the headers the sink
//! tags its messages with (job, epoch, row) would slow every fetch of the
//! million trades, and the other tests' sinks on the shared broker would
//! too. For the same reason the sink selects about 1 % of the trades.
//!
//! `FIBERS_CRASH_SEED` replays a kill schedule (the seed is printed);
//! `FIBERS_CRASH_KEEP=1` keeps the test's directory for a post-mortem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Broker, Row, kafka_tool, output_within, python, read_table, test_brokers, unique_name,
};

const TRADES: usize = 1_000_000;
const PARTITIONS: usize = 4;
const SEED: u64 = 2024;
const WINDOW_SECONDS: i64 = 5;
/// The sink keeps trades of at least this volume (1 % of them: volumes
/// are 1 to 1000).
const MIN_VOLUME: i64 = 991;
/// SIGKILLs before the run that is left to finish (see [`schedule`]).
const KILLS: usize = 12;
/// Fewer kills than this fail the test (a run may finish before its kill).
const MIN_KILLS: usize = 10;
/// Fewer kills than this with a job part way through the input (per job)
/// fail the test: it would not have exercised resuming mid-input.
const MIN_KILLS_MID_INPUT: usize = 4;
/// How long a run may wait for its moment before it is killed anyway.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long producing the topic may take.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the kills and restarts may take in all: each of the four jobs
/// reads the million trades from tansu (the views of the chain compute
/// their upstream in process, so each has a consumer of its own).
const KILL_PHASE_TIMEOUT: Duration = Duration::from_secs(900);
/// How long the last run may take to consume the rest and exit.
const FINAL_RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The jobs: the view, and the sink.
const VIEW: &str = "vwap";
const SINK: &str = "big";
/// The chain around the view: `SIZED` (a filter every trade passes,
/// keeping nothing) feeds the view, and `BUSY` keeps the view's windows
/// of an even number of trades.
const SIZED: &str = "sized";
const BUSY: &str = "busy";

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    if test_brokers().is_none() {
        return;
    }
    let began = Instant::now();
    let seed = std::env::var("FIBERS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash test: kill schedule seed {seed} (FIBERS_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);

    let tmp = tempfile::Builder::new()
        .prefix("fibers-crash-")
        .tempdir()
        .expect("create a temporary directory");
    let dir = if std::env::var_os("FIBERS_CRASH_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("crash test: keeping {}", kept.display());
        Workdir::new(kept)
    } else {
        Workdir::new(tmp.path().to_path_buf())
    };

    let trades_broker = Broker::start(&dir.root.join("broker-trades"));
    let sink_broker = Broker::start(&dir.root.join("broker-sink"));
    let (brokers, sink_brokers) = (trades_broker.address(), sink_broker.address());

    // The input, produced by the independent client.
    let topic = unique_name("crash_trades");
    let sink_topic = unique_name("crash_big");
    let produced = crash_check_json(
        &[
            "produce",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--partitions",
            &PARTITIONS.to_string(),
            "--count",
            &TRADES.to_string(),
            "--seed",
            &SEED.to_string(),
        ],
        PRODUCE_TIMEOUT,
    );
    kafka_tool(&[
        "create-topic",
        "--brokers",
        &sink_brokers,
        "--topic",
        &sink_topic,
        "--partitions",
        &PARTITIONS.to_string(),
    ]);
    let produce_time = began.elapsed();
    eprintln!(
        "crash test: produced {TRADES} trades to {topic} ({PARTITIONS} partitions) in {:.1} s \
         (producer's own time {} s)",
        produce_time.as_secs_f64(),
        produced["seconds"]
    );

    std::fs::write(
        &dir.script,
        script(&brokers, &topic, &sink_brokers, &sink_topic),
    )
    .expect("write the script");

    // Kill, restart, kill...
    let kill_phase = Instant::now();
    let schedule = schedule(&mut rng);
    let mut kills = 0;
    let mut runs = 0;
    let mut finished = false;
    // Per job, the kills that left it with a checkpoint part way through
    // the input, so the next run resumed from one. (tansu can take tens of
    // seconds to serve the first records of a freshly produced topic, more
    // on a loaded machine, so the jobs do not always get going together.)
    let mut mid_input = [0; 2];
    for moment in &schedule {
        assert!(
            kill_phase.elapsed() < KILL_PHASE_TIMEOUT,
            "{kills} kills in {KILL_PHASE_TIMEOUT:?}; the last run's stderr:\n{}",
            dir.stderr(runs)
        );
        runs += 1;
        let started = Instant::now();
        let mut child = dir.spawn(runs);
        let (status, note) = moment.wait(&mut child, &dir);
        if let Some(status) = status {
            // It ended by itself, so it must have finished everything.
            assert!(
                status.success(),
                "run {runs} failed ({status}); stderr:\n{}",
                dir.stderr(runs)
            );
            eprintln!(
                "crash test: run {runs} finished by itself in {:.1} s, before its kill {}",
                started.elapsed().as_secs_f64(),
                moment.describe()
            );
            finished = true;
            break;
        }
        child.kill().expect("SIGKILL fibers");
        child.wait().expect("reap fibers");
        kills += 1;
        for (job, count) in [VIEW, SINK].iter().zip(&mut mid_input) {
            if dir
                .trades_read(job)
                .is_some_and(|n| n > 0 && n < TRADES as i64)
            {
                *count += 1;
            }
        }
        eprintln!(
            "crash test: kill {kills}/{KILLS} {}{note}, {:.2} s after start: {}",
            moment.describe(),
            started.elapsed().as_secs_f64(),
            dir.progress()
        );
    }
    assert!(
        kills >= MIN_KILLS,
        "only {kills} kills before the input was consumed (at least {MIN_KILLS} wanted)"
    );
    for (job, count) in [VIEW, SINK].iter().zip(mid_input) {
        assert!(
            count >= MIN_KILLS_MID_INPUT,
            "only {count} of {kills} kills left job '{job}' part way through the input \
             (at least {MIN_KILLS_MID_INPUT} wanted)"
        );
    }
    let kill_time = kill_phase.elapsed();

    // The last run, to the end of the input (unless one got there).
    let final_phase = Instant::now();
    if !finished {
        runs += 1;
        let mut child = dir.spawn(runs);
        let status = wait_within(&mut child, FINAL_RUN_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the last run did not finish within {FINAL_RUN_TIMEOUT:?} ({}); stderr:\n{}",
                dir.progress(),
                dir.stderr(runs)
            )
        });
        assert!(
            status.success(),
            "the last run failed ({status}); stderr:\n{}",
            dir.stderr(runs)
        );
    }
    let final_time = final_phase.elapsed();
    eprintln!(
        "crash test: the last run finished in {:.1} s: {}",
        final_time.as_secs_f64(),
        dir.progress()
    );

    // The checks, against the independent computation.
    let check_phase = Instant::now();
    let expected = crash_check_json(
        &[
            "expected",
            "--count",
            &TRADES.to_string(),
            "--seed",
            &SEED.to_string(),
            "--window-seconds",
            &WINDOW_SECONDS.to_string(),
            "--min-volume",
            &MIN_VOLUME.to_string(),
        ],
        PRODUCE_TIMEOUT,
    );
    let log = DeltaLog::read(&dir.table());
    log.assert_epochs_recorded(VIEW);
    assert_windows_equal(&read_table("delta", &dir.table()), &expected["windows"]);
    DeltaLog::read(&dir.data.join(BUSY)).assert_epochs_recorded(BUSY);
    let busy: Vec<Value> = expected["windows"]
        .as_array()
        .expect("expected windows")
        .iter()
        .filter(|w| w["trades"].as_i64().is_some_and(|n| n % 2 == 0))
        .cloned()
        .collect();
    assert_windows_equal(
        &read_table("delta", &dir.data.join(BUSY)),
        &Value::from(busy),
    );
    let sink = crash_check_lines(&[
        "sink",
        "--brokers",
        &sink_brokers,
        "--topic",
        &sink_topic,
        "--timeout",
        "240",
    ]);
    let sink_epochs = assert_sink_holds_each_row_once(&sink, &expected["sink"]);
    eprintln!(
        "crash test: passed: {} windows in {} Delta commits, {} sink messages in {sink_epochs} \
         epochs; produce {:.1} s, {kills} kills over {runs} runs {:.1} s, last run {:.1} s, \
         checks {:.1} s, total {:.1} s",
        expected["windows"].as_array().map_or(0, Vec::len),
        log.commits.iter().filter(|c| c.files > 0).count(),
        sink.len(),
        produce_time.as_secs_f64(),
        kill_time.as_secs_f64(),
        final_time.as_secs_f64(),
        check_phase.elapsed().as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

/// The script every run executes; `IF NOT EXISTS` makes the restarts
/// re-run it harmlessly (the jobs resume from the catalog).
fn script(brokers: &str, topic: &str, sink_brokers: &str, sink_topic: &str) -> String {
    // Event time increases within each partition, so no trade is late as
    // long as no partition is taken for idle. tansu serves the partitions
    // one after another; a partition the source has not read to its end is
    // never idle, so the default `idle_timeout` holds (the starved-broker
    // test makes the same point over an unbounded read). Two threads decode
    // each partition's batch, in chunks, so the kills land in the middle of
    // that too.
    format!(
        "CREATE STREAM IF NOT EXISTS trades (id BIGINT, symbol TEXT, price DOUBLE, volume BIGINT,
             ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '30' SECOND)
           WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json',
                 end = 'latest', properties.fetch.wait.max.ms = '50', decode_threads = '2');
         CREATE MATERIALIZED VIEW IF NOT EXISTS {SIZED} WITH (archive = 'none') AS
           SELECT symbol, price, volume, ts FROM trades WHERE volume >= 1;
         CREATE MATERIALIZED VIEW IF NOT EXISTS {VIEW} WITH (archive = 'delta', path = '{VIEW}') AS
           SELECT symbol, window_start, window_end, sum(price * volume) / sum(volume) AS vwap,
                  sum(volume) AS volume, count(*) AS trades
           FROM TUMBLE({SIZED}, ts, INTERVAL '{WINDOW_SECONDS}' SECOND)
           GROUP BY symbol, window_start, window_end;
         CREATE MATERIALIZED VIEW IF NOT EXISTS {BUSY} WITH (archive = 'delta', path = '{BUSY}') AS
           SELECT symbol, window_start, window_end, vwap, volume, trades FROM {VIEW}
           WHERE trades % 2 = 0;
         CREATE SINK IF NOT EXISTS {SINK}
           WITH (connector = 'kafka', brokers = '{sink_brokers}', topic = '{sink_topic}',
                 format = 'json') AS
           SELECT id, symbol, price, volume, ts FROM trades WHERE volume >= {MIN_VOLUME};\n"
    )
}

/// When a run is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after it starts: while it opens the catalog, restores
    /// checkpoints and finishes the commits a kill interrupted.
    Early(Duration),
    /// This long after its first checkpoint past where it resumed: in the
    /// middle of processing.
    Midway(Duration),
    /// This long after its first checkpoint of `job` that staged rows:
    /// while the job commits them (to the Delta table, or to the sink's
    /// topic).
    InCommit(&'static str, Duration),
}

/// The kills: an early one, then in random order two more early ones and
/// three each in the middle of processing and in the sink's commits, then
/// three in the view's commits. The view commits rows only once every
/// partition has delivered some (its watermark is the lowest of theirs):
/// late in the input when the broker serves the partitions one after
/// another, as tansu does; so those kills come last. The others each let
/// the run progress a little: the broker hands out the input in chunks
/// of a partition's records, so waiting for a share of the input instead
/// would use it up before the kills.
fn schedule(rng: &mut Rng) -> Vec<Moment> {
    let mut early = || Moment::Early(rng.millis(50, 1500));
    let mut middle = vec![early(), early()];
    for _ in 0..3 {
        middle.push(Moment::Midway(rng.millis(0, 3000)));
        // Soon after the checkpoint: its commit takes milliseconds.
        middle.push(Moment::InCommit(SINK, rng.millis(0, 10)));
    }
    let mut moments = vec![Moment::Early(rng.millis(50, 1500))];
    while !middle.is_empty() {
        let pick = rng.below(middle.len() as u64) as usize;
        moments.push(middle.swap_remove(pick));
    }
    for _ in 0..3 {
        moments.push(Moment::InCommit(VIEW, rng.millis(0, 10)));
    }
    assert_eq!(moments.len(), KILLS);
    moments
}

impl Moment {
    fn describe(&self) -> String {
        match *self {
            Moment::Early(d) => format!("early ({} ms after start)", d.as_millis()),
            Moment::Midway(d) => {
                format!(
                    "midway ({} ms after the run's first checkpoint)",
                    d.as_millis()
                )
            }
            Moment::InCommit(job, d) => format!(
                "in a commit ({} ms after a checkpoint of {job} with rows)",
                d.as_millis()
            ),
        }
    }

    /// Waits for the moment: the exit status if the process ended first,
    /// and a note on how the moment came. A job that has read everything
    /// makes no more checkpoints with rows: a kill in its commits waits
    /// for the other job's instead. A moment that does not come within
    /// [`RUN_TIMEOUT`] kills the process anyway.
    fn wait(&self, child: &mut Child, dir: &Workdir) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let done = |job: &str| dir.trades_read(job) == Some(TRADES as i64);
        let (until, delay, note): (Until, _, _) = match *self {
            Moment::Early(d) => return (wait_within(child, d), String::new()),
            Moment::Midway(delay) => {
                let from: Vec<(&str, Option<i64>)> = [VIEW, SINK]
                    .into_iter()
                    .filter(|job| !done(job))
                    .map(|job| (job, dir.trades_read(job)))
                    .collect();
                let progressed = move |dir: &Workdir| {
                    from.iter()
                        .any(|&(job, read)| dir.trades_read(job) > read.or(Some(-1)))
                };
                (Box::new(progressed), delay, String::new())
            }
            Moment::InCommit(wanted, delay) => {
                let other = if wanted == VIEW { SINK } else { VIEW };
                let (job, note) = match done(wanted) {
                    true => (
                        other,
                        format!(" (of {other}: {wanted} had read everything)"),
                    ),
                    false => (wanted, String::new()),
                };
                let before = dir.latest_manifest(job).map(|(epoch, _)| epoch);
                let staged = move |dir: &Workdir| {
                    dir.latest_manifest(job)
                        .is_some_and(|(epoch, m)| Some(epoch) > before && !m["sink"].is_null())
                };
                (Box::new(staged), delay, note)
            }
        };
        match wait_until(child, dir, deadline, until) {
            Waited::Exited(status) => (Some(status), note),
            Waited::Late => (None, " (it did not come in time)".into()),
            Waited::Came => (wait_within(child, delay), note),
        }
    }
}

/// What a run waits for before its kill.
type Until = Box<dyn Fn(&Workdir) -> bool>;

enum Waited {
    Exited(ExitStatus),
    Came,
    Late,
}

/// Waits until `until` holds of the directory, the process exits, or the
/// deadline passes.
fn wait_until(
    child: &mut Child,
    dir: &Workdir,
    deadline: Instant,
    until: impl Fn(&Workdir) -> bool,
) -> Waited {
    loop {
        if let Some(status) = child.try_wait().expect("poll fibers") {
            return Waited::Exited(status);
        }
        if until(dir) {
            return Waited::Came;
        }
        if Instant::now() > deadline {
            return Waited::Late;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The trades a checkpoint's source position is past (offsets start at 0).
pub(crate) fn read_trades(manifest: &Value) -> i64 {
    manifest["source"]["offsets"]
        .as_array()
        .map(|offsets| offsets.iter().filter_map(|o| o[1].as_i64()).sum())
        .unwrap_or(0)
}

/// Waits up to `timeout` for the process to exit.
pub(crate) fn wait_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll fibers") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A small seeded generator (SplitMix64): the kill schedule replays from
/// its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// The test's directory: the script, the data dir, each run's output.
struct Workdir {
    root: PathBuf,
    script: PathBuf,
    data: PathBuf,
}

impl Workdir {
    fn new(root: PathBuf) -> Self {
        Workdir {
            script: root.join("script.sql"),
            data: root.join("data"),
            root,
        }
    }

    fn table(&self) -> PathBuf {
        self.data.join(VIEW)
    }

    fn stderr_path(&self, run: usize) -> PathBuf {
        self.root.join(format!("run-{run}.stderr"))
    }

    /// Starts run `run` of `fibers run`, its output in files of its own.
    fn spawn(&self, run: usize) -> Child {
        spawn_run(&self.root, run, &self.script, &self.data)
    }

    fn stderr(&self, run: usize) -> String {
        std::fs::read_to_string(self.stderr_path(run)).unwrap_or_default()
    }

    /// The newest complete checkpoint of `job`: its epoch and manifest.
    fn latest_manifest(&self, job: &str) -> Option<(u64, Value)> {
        latest_manifest(&self.data.join("checkpoints").join(job))
    }

    /// The trades `job`'s newest checkpoint is past.
    fn trades_read(&self, job: &str) -> Option<i64> {
        self.latest_manifest(job).map(|(_, m)| read_trades(&m))
    }

    /// Where the jobs stand: each one's checkpoint and the trades read up
    /// to it, and the Delta table's rows and newest epoch.
    fn progress(&self) -> String {
        let mut parts = Vec::new();
        for job in [VIEW, BUSY, SINK] {
            parts.push(match self.latest_manifest(job) {
                Some((epoch, manifest)) => format!(
                    "{job} checkpoint {epoch} at {}/{TRADES} trades",
                    read_trades(&manifest)
                ),
                None => format!("{job} no checkpoint"),
            });
        }
        let log = DeltaLog::read(&self.table());
        let epochs = log.epochs(VIEW);
        parts.push(format!(
            "{} rows in Delta (epoch {})",
            log.rows(),
            epochs.last().map_or("none".to_string(), u64::to_string)
        ));
        // A kill between a checkpoint and its commit: the next run must
        // finish the commit.
        if let Some((epoch, manifest)) = self.latest_manifest(VIEW)
            && !manifest["sink"].is_null()
            && !epochs.contains(&epoch)
        {
            parts.push(format!("the Delta commit of epoch {epoch} was cut short"));
        }
        parts.join(", ")
    }
}

/// Starts run `run` of `fibers run SCRIPT` on `data`, checkpointing every
/// second, its stdout and stderr in `run-N.stdout` and `run-N.stderr` of
/// `root`.
pub(crate) fn spawn_run(root: &Path, run: usize, script: &Path, data: &Path) -> Child {
    let stdout = File::create(root.join(format!("run-{run}.stdout"))).expect("stdout");
    let stderr = File::create(root.join(format!("run-{run}.stderr"))).expect("stderr");
    Command::new(env!("CARGO_BIN_EXE_fibers"))
        .arg("run")
        .arg(script)
        .arg("--data-dir")
        .arg(data)
        .args(["--checkpoint-interval", "1s"])
        .env("FIBERS_LOG", "warn,fibers_engine=info")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start fibers")
}

/// The newest complete checkpoint in a job's checkpoint directory: its
/// epoch and manifest.
pub(crate) fn latest_manifest(dir: &Path) -> Option<(u64, Value)> {
    let mut epochs: Vec<u64> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    epochs.sort_unstable();
    epochs.into_iter().rev().find_map(|epoch| {
        let text =
            std::fs::read_to_string(dir.join(format!("{epoch:020}")).join("manifest.json")).ok()?;
        Some((epoch, serde_json::from_str(&text).ok()?))
    })
}

/// Runs `tests/python/crash_check.py ARGS`; its stdout.
fn crash_check(args: &[&str], timeout: Duration) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/crash_check.py");
    let mut command = Command::new(python());
    command.arg(script).args(args);
    let output = output_within(&mut command, None, timeout);
    assert!(
        output.status.success(),
        "crash_check.py {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn crash_check_json(args: &[&str], timeout: Duration) -> Value {
    let stdout = crash_check(args, timeout);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("crash_check.py {}: {e}: {stdout}", args.join(" ")))
}

fn crash_check_lines(args: &[&str]) -> Vec<Row> {
    crash_check(args, Duration::from_secs(300))
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(row)) => row,
            other => panic!("unexpected crash_check.py output {line}: {other:?}"),
        })
        .collect()
}

/// The commits of a Delta table's log, read straight from its JSON files.
struct DeltaLog {
    commits: Vec<Commit>,
}

struct Commit {
    version: u64,
    /// Rows added (from the files' statistics).
    rows: u64,
    files: usize,
    /// Application transactions: (app id, version).
    txns: Vec<(String, u64)>,
}

impl DeltaLog {
    fn read(table: &Path) -> Self {
        let mut commits = Vec::new();
        let Ok(entries) = std::fs::read_dir(table.join("_delta_log")) else {
            return DeltaLog { commits };
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path()).expect("read a Delta commit");
            let mut commit = Commit {
                version,
                rows: 0,
                files: 0,
                txns: Vec::new(),
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let action: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("commit {name} of the Delta log: {e}: {line}"));
                if let Some(add) = action.get("add") {
                    commit.files += 1;
                    commit.rows += add["stats"]
                        .as_str()
                        .and_then(|s| serde_json::from_str::<Value>(s).ok())
                        .and_then(|s| s["numRecords"].as_u64())
                        .unwrap_or(0);
                }
                if let Some(txn) = action.get("txn") {
                    commit.txns.push((
                        txn["appId"].as_str().unwrap_or_default().to_string(),
                        txn["version"].as_u64().unwrap_or_else(|| panic!("{line}")),
                    ));
                }
            }
            commits.push(commit);
        }
        commits.sort_by_key(|c| c.version);
        DeltaLog { commits }
    }

    fn rows(&self) -> u64 {
        self.commits.iter().map(|c| c.rows).sum()
    }

    /// The epochs the commits of `job` carry, in commit order.
    fn epochs(&self, job: &str) -> Vec<u64> {
        let app = format!("datafibers/{job}");
        self.commits
            .iter()
            .flat_map(|c| c.txns.iter().filter(|(a, _)| *a == app).map(|(_, v)| *v))
            .collect()
    }

    /// Every commit adding rows carries the application transaction of
    /// `job`, and its epochs only go up: no epoch was committed twice.
    fn assert_epochs_recorded(&self, job: &str) {
        let app = format!("datafibers/{job}");
        let mut last = None;
        for commit in self.commits.iter().filter(|c| c.files > 0) {
            let versions: Vec<u64> = commit
                .txns
                .iter()
                .filter(|(a, _)| *a == app)
                .map(|(_, v)| *v)
                .collect();
            let [epoch] = versions[..] else {
                panic!(
                    "Delta commit {} adds {} files with transactions {:?}, not one of app {app}",
                    commit.version, commit.files, commit.txns
                );
            };
            assert!(
                last < Some(epoch),
                "Delta commit {} records epoch {epoch} of {app} after epoch {last:?}",
                commit.version
            );
            last = Some(epoch);
        }
        assert!(last.is_some(), "no Delta commit carries app id {app}");
    }
}

fn int(row: &Row, column: &str) -> i64 {
    row.get(column)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer {column} in {row:?}"))
}

fn float(row: &Row, column: &str) -> f64 {
    row.get(column)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {column} in {row:?}"))
}

fn text<'a>(row: &'a Row, column: &str) -> &'a str {
    row.get(column)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text {column} in {row:?}"))
}

/// The archived windows are exactly the expected ones: no window missing,
/// none twice, volumes and counts equal, VWAP within 1e-9 relative (the
/// engine adds in another order).
pub(crate) fn assert_windows_equal(rows: &[Row], expected: &Value) {
    let want: BTreeMap<(String, i64), &Row> = expected
        .as_array()
        .expect("expected windows")
        .iter()
        .map(|w| {
            let w = w.as_object().expect("a window");
            ((text(w, "symbol").to_string(), int(w, "window_start")), w)
        })
        .collect();
    let mut seen: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for row in rows {
        *seen
            .entry((text(row, "symbol").to_string(), int(row, "window_start")))
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    let extra: Vec<_> = seen.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        twice.is_empty() && missing.is_empty() && extra.is_empty(),
        "the Delta table has {} rows for {} expected windows: {} windows twice (first: {:?}), \
         {} missing (first: {:?}), {} unexpected (first: {:?})",
        rows.len(),
        want.len(),
        twice.len(),
        twice.first(),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for row in rows {
        let w = want[&(text(row, "symbol").to_string(), int(row, "window_start"))];
        for column in ["window_end", "volume", "trades"] {
            assert_eq!(
                int(row, column),
                int(w, column),
                "{column} of {row:?}, expected {w:?}"
            );
        }
        let (vwap, want_vwap) = (float(row, "vwap"), float(w, "vwap"));
        assert!(
            (vwap - want_vwap).abs() <= want_vwap.abs() * 1e-9,
            "vwap of {row:?}: expected {want_vwap}"
        );
    }
}

/// The sink topic holds each selected trade once, with its values;
/// returns the number of epochs its messages came in.
fn assert_sink_holds_each_row_once(messages: &[Row], expected: &Value) -> usize {
    // id → (symbol, price bits, volume, event time in ms)
    let want: HashMap<i64, (String, u64, i64, i64)> = expected
        .as_array()
        .expect("expected sink rows")
        .iter()
        .map(|r| {
            let id = r[0].as_i64().expect("id");
            let price = r[2].as_f64().expect("price").to_bits();
            let symbol = r[1].as_str().expect("symbol").to_string();
            (
                id,
                (
                    symbol,
                    price,
                    r[3].as_i64().expect("volume"),
                    r[4].as_i64().expect("ts"),
                ),
            )
        })
        .collect();
    let mut seen: HashMap<i64, Vec<&Row>> = HashMap::new();
    for message in messages {
        let value: Row = serde_json::from_str(text(message, "value"))
            .unwrap_or_else(|e| panic!("a sink message is not a JSON object ({e}): {message:?}"));
        let id = int(&value, "id");
        if let Some((symbol, price, volume, ts)) = want.get(&id) {
            let got = (
                text(&value, "symbol").to_string(),
                float(&value, "price").to_bits(),
                int(&value, "volume"),
                timestamp_millis(text(&value, "ts")),
            );
            assert_eq!(
                got,
                (symbol.clone(), *price, *volume, *ts),
                "sink message {message:?} differs from trade {id}"
            );
        }
        seen.entry(id).or_default().push(message);
    }
    let twice: BTreeMap<_, _> = seen.iter().filter(|(_, m)| m.len() > 1).collect();
    let missing: BTreeSet<_> = want.keys().filter(|id| !seen.contains_key(id)).collect();
    let extra: BTreeSet<_> = seen.keys().filter(|id| !want.contains_key(id)).collect();
    // Where the duplicates come from: their epochs and row numbers.
    let describe = |id: &i64| {
        seen[id]
            .iter()
            .map(|m| {
                let field = |k: &str| m.get(k).map_or("-".to_string(), Value::to_string);
                format!(
                    "partition {} offset {} epoch {} seq {}",
                    field("partition"),
                    field("offset"),
                    field("epoch"),
                    field("seq")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(
        twice.is_empty() && missing.is_empty() && extra.is_empty(),
        "the sink topic has {} messages for {} expected rows: {} rows more than once (first: \
         {:?}: {}), {} missing (first: {:?}), {} unexpected (first: {:?})",
        messages.len(),
        want.len(),
        twice.len(),
        twice.keys().next(),
        twice
            .keys()
            .next()
            .map(|id| describe(id))
            .unwrap_or_default(),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    // Each message is tagged with its job, epoch and row in the epoch, and
    // no two share a tag.
    let mut tags = HashMap::new();
    for message in messages {
        let tag = (
            message.get("job").and_then(Value::as_str),
            message.get("epoch").and_then(Value::as_u64),
            message.get("seq").and_then(Value::as_u64),
        );
        assert!(
            tag.0 == Some(SINK) && tag.1.is_some() && tag.2.is_some(),
            "sink message {message:?} lacks the datafibers.* headers of job {SINK}"
        );
        if let Some(other) = tags.insert(tag, message) {
            panic!("two sink messages carry the same epoch and row: {other:?} and {message:?}");
        }
    }
    tags.keys().map(|t| t.1).collect::<BTreeSet<_>>().len()
}

/// `2024-01-01T00:00:00.001` (or with a space, or a `Z`) in milliseconds
/// since the epoch.
fn timestamp_millis(text: &str) -> i64 {
    let text = text.trim_end_matches('Z').replace(' ', "T");
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"))
        .and_utc()
        .timestamp_millis()
}
