//! Exact windows over a slow, uneven broker, through SIGKILLs.
//!
//! A three-partition topic of JSON trades on a tansu broker of the test's
//! own, reached only through a proxy ([`crate::proxy`]) that holds every
//! end-offset lookup longer than the engine waits for it and stalls all
//! traffic, again and again, for longer than the stream's `idle_timeout`.
//! tansu itself serves the partitions one after another. The stream is
//! unbounded, as a user's would be, so the engine cannot know its ends
//! from the start. `fibers run` is killed with SIGKILL at random moments,
//! once early in a start and then soon after a checkpoint (around its
//! commit), then left to read everything. Every window the
//! watermark has closed must then be in the Delta table exactly once,
//! equal to an independent computation: a partition the broker starves
//! must hold the watermark back, not see its rows dropped as late.
//!
//! Runs where `FIBERS_TEST_BROKERS` is set (as `.ci/run` does: the tansu
//! build is there), on a broker of its own. `FIBERS_CRASH_SEED` replays a
//! kill schedule.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Broker, read_table, test_brokers};
use crate::crash::{
    Rng, assert_windows_equal, crash_check_json, latest_manifest, read_trades, spawn_run,
    wait_within,
};
use crate::proxy::{Proxy, Slowness};

const TRADES: usize = 60_000;
const PARTITIONS: usize = 3;
const SEED: u64 = 2026;
const WINDOW_SECONDS: i64 = 5;
const KILLS: usize = 6;
const VIEW: &str = "counts";
/// Trade `i` happens at 2024-01-01T00:00:00 + `i` ms (crash_check.py).
const BASE_MICROS: i64 = 1_704_067_200_000_000;
/// How long producing may take, and the run that reads the rest.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);
const FINAL_RUN_TIMEOUT: Duration = Duration::from_secs(420);
/// How long a run may take to make its first checkpoint.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn a_starving_broker_and_sigkills_leave_every_closed_window_exact() {
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
    eprintln!("starved broker test: kill seed {seed} (FIBERS_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let tmp = tempfile::Builder::new()
        .prefix("fibers-starved-")
        .tempdir()
        .expect("create a temporary directory");
    let root = tmp.path();

    let (proxy, listener) = Proxy::bind();
    let broker = Broker::start_behind(&root.join("broker"), &proxy.address());
    proxy.forward_to(
        listener,
        broker.address(),
        Slowness {
            // The engine waits 1 s for an end offset.
            list_offsets_delay: Duration::from_millis(1500),
            flowing: Duration::from_millis(2000),
            // Longer than the stream's idle_timeout.
            stalled: Duration::from_millis(3000),
            // About 10 s of records for the 6 MB of trades, stalls apart.
            bytes_per_second: 600_000,
        },
    );
    let brokers = proxy.address();
    let topic = format!("starved_{}", std::process::id());
    crash_check_json(
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
    eprintln!(
        "starved broker test: produced {TRADES} trades in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    proxy.start_stalls();

    let runs = Runs::new(root.to_path_buf(), &brokers, &topic);
    // The first kill comes early in a start; each other one up to 1.5 s
    // after the run's first checkpoint, so runs resume from checkpoints
    // part way through the input and are killed around their commits.
    let mut mid_input = 0;
    for kill in 1..=KILLS {
        let before = runs.latest_manifest().map(|(epoch, _)| epoch);
        let mut child = runs.spawn(kill);
        let mut note = String::new();
        if kill > 1 {
            let deadline = Instant::now() + CHECKPOINT_TIMEOUT;
            while runs.latest_manifest().map(|(epoch, _)| epoch) <= before {
                if let Some(status) = child.try_wait().expect("poll fibers") {
                    panic!(
                        "run {kill} ended ({status}); stderr:\n{}",
                        runs.stderr(kill)
                    );
                }
                if Instant::now() > deadline {
                    note = " (no checkpoint came in time)".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let after = if kill == 1 {
            rng.millis(700, 3000)
        } else {
            rng.millis(0, 1500)
        };
        if let Some(status) = wait_within(&mut child, after) {
            panic!(
                "run {kill} ended by itself ({status}); stderr:\n{}",
                runs.stderr(kill)
            );
        }
        child.kill().expect("SIGKILL fibers");
        child.wait().expect("reap fibers");
        if runs
            .latest_manifest()
            .is_some_and(|(_, m)| (1..TRADES as i64).contains(&read_trades(&m)))
        {
            mid_input += 1;
        }
        eprintln!(
            "starved broker test: kill {kill}/{KILLS} {} ms after {}{note}: {}",
            after.as_millis(),
            if kill == 1 { "start" } else { "a checkpoint" },
            runs.progress()
        );
    }
    // Over this proxy the engine often reads the whole topic before its
    // first checkpoint; the kills then hit recoveries and commits only.
    eprintln!("starved broker test: {mid_input} of {KILLS} kills left a checkpoint mid-input");

    // The last run reads the rest; once a checkpoint is past every trade,
    // the next two commit all the windows the watermark has closed.
    let last = KILLS + 1;
    let mut child = runs.spawn(last);
    let deadline = Instant::now() + FINAL_RUN_TIMEOUT;
    let mut read_all_at = None;
    loop {
        if let Some(status) = child.try_wait().expect("poll fibers") {
            panic!(
                "the last run ended ({status}); stderr:\n{}",
                runs.stderr(last)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the last run did not read every trade within {FINAL_RUN_TIMEOUT:?} ({}); \
             stderr:\n{}",
            runs.progress(),
            runs.stderr(last)
        );
        if let Some((epoch, manifest)) = runs.latest_manifest() {
            match read_all_at {
                None if read_trades(&manifest) == TRADES as i64 => read_all_at = Some(epoch),
                Some(at) if epoch >= at + 2 => break,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL fibers");
    child.wait().expect("reap fibers");

    // Every trade is read, so each partition's watermark is within a few
    // ms of 59 s (the last trade at 59.999 s, less the 1 s delay): every
    // window that ends by then has closed.
    let closed_before = BASE_MICROS + 55_000_000;
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
            "1001",
        ],
        PRODUCE_TIMEOUT,
    );
    let closed: Vec<Value> = expected["windows"]
        .as_array()
        .expect("expected windows")
        .iter()
        .filter(|w| {
            w["window_end"]
                .as_i64()
                .is_some_and(|end| end <= closed_before)
        })
        .cloned()
        .collect();
    let rows: Vec<_> = read_table("delta", &runs.data.join(VIEW))
        .into_iter()
        .filter(|row| {
            row.get("window_end")
                .and_then(Value::as_i64)
                .is_some_and(|end| end <= closed_before)
        })
        .collect();
    assert_windows_equal(&rows, &Value::Array(closed));
    eprintln!(
        "starved broker test: passed: {} windows exact after {KILLS} kills, {:.1} s in all",
        rows.len(),
        began.elapsed().as_secs_f64()
    );
    drop(broker);
}

/// The script, the data dir and each run's output.
struct Runs {
    root: PathBuf,
    script: PathBuf,
    data: PathBuf,
}

impl Runs {
    fn new(root: PathBuf, brokers: &str, topic: &str) -> Self {
        let script = root.join("script.sql");
        // No `end`: an unbounded read, which learns where the partitions
        // end only from the broker's answers. Small fetches, so the paced
        // proxy hands the records out over several checkpoints.
        std::fs::write(
            &script,
            format!(
                "CREATE STREAM IF NOT EXISTS trades (id BIGINT, symbol TEXT, price DOUBLE,
                     volume BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                   WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}',
                         format = 'json', idle_timeout = '2s',
                         properties.fetch.wait.max.ms = '50',
                         properties.max.partition.fetch.bytes = '32768');
                 CREATE MATERIALIZED VIEW IF NOT EXISTS {VIEW}
                   WITH (archive = 'delta', path = '{VIEW}') AS
                   SELECT symbol, window_start, window_end,
                          sum(price * volume) / sum(volume) AS vwap,
                          sum(volume) AS volume, count(*) AS trades
                   FROM TUMBLE(trades, ts, INTERVAL '{WINDOW_SECONDS}' SECOND)
                   GROUP BY symbol, window_start, window_end;\n"
            ),
        )
        .expect("write the script");
        Runs {
            data: root.join("data"),
            script,
            root,
        }
    }

    fn stderr_path(&self, run: usize) -> PathBuf {
        self.root.join(format!("run-{run}.stderr"))
    }

    fn spawn(&self, run: usize) -> Child {
        spawn_run(&self.root, run, &self.script, &self.data)
    }

    fn stderr(&self, run: usize) -> String {
        std::fs::read_to_string(self.stderr_path(run)).unwrap_or_default()
    }

    fn latest_manifest(&self) -> Option<(u64, Value)> {
        latest_manifest(&self.data.join("checkpoints").join(VIEW))
    }

    fn progress(&self) -> String {
        match self.latest_manifest() {
            Some((epoch, manifest)) => format!(
                "checkpoint {epoch} at {}/{TRADES} trades",
                read_trades(&manifest)
            ),
            None => "no checkpoint yet".into(),
        }
    }
}
