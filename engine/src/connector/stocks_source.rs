//! The `stocks` connector: the built-in trade feed, paced to a rate.

use std::time::{Duration, Instant};

use fibers_sql::Options;

use super::stocks::{DEFAULT_SYMBOLS, StocksConfig, StocksGenerator, default_symbols};
use super::{Poll, Source};
use crate::{Error, Result};

pub(crate) const OPTIONS: &[&str] = &["rate", "seed", "symbols", "limit", "disorder", "start"];

/// Nominal event-time spacing when the feed runs as fast as possible: event
/// times then advance 1 ms per event, whatever the wall clock does.
const UNPACED_STEP_NANOS: i64 = 1_000_000;
/// Default disorder bound (and so watermark delay) of generated event times.
const DEFAULT_DISORDER: Duration = Duration::from_secs(2);
/// Default rate, in events per second.
const DEFAULT_RATE: f64 = 1_000.0;
/// Event time of the first event of an unpaced feed without `start`: fixed,
/// so the same seed gives the same events, timestamps included.
const UNPACED_START: &str = "2025-01-02T14:30:00Z";

/// Settings of a `stocks` stream.
#[derive(Debug, Clone)]
pub(crate) struct StocksSourceConfig {
    pub generator: StocksConfig,
    /// Events per second; 0 = as fast as possible.
    pub rate: f64,
    /// Whether `start` was given; otherwise a paced feed starts at "now".
    pub live_start: bool,
}

impl StocksSourceConfig {
    pub fn from_options(options: &mut Options) -> Result<Self> {
        let rate = options
            .take_parsed::<f64>("rate", "events per second (0 = as fast as possible)")?
            .unwrap_or(DEFAULT_RATE);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(Error::invalid(format!(
                "invalid value '{rate}' for option 'rate': expected events per second (0 = as fast as possible)"
            )));
        }
        let seed = options
            .take_parsed::<u64>("seed", "a whole number")?
            .unwrap_or(1);
        let limit = options.take_parsed::<u64>("limit", "a number of events")?;
        let symbols = match options.take("symbols") {
            None => default_symbols(DEFAULT_SYMBOLS.len()),
            Some(value) => match value.trim().parse::<usize>() {
                Ok(n) if (1..=DEFAULT_SYMBOLS.len()).contains(&n) => default_symbols(n),
                Ok(n) => {
                    return Err(Error::invalid(format!(
                        "invalid value '{n}' for option 'symbols': expected 1 to {} or a list like 'AAPL,MSFT'",
                        DEFAULT_SYMBOLS.len()
                    )));
                }
                Err(_) => {
                    let list: Vec<String> = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if list.is_empty() {
                        return Err(Error::invalid(
                            "invalid value '' for option 'symbols': expected a count or a list like 'AAPL,MSFT'",
                        ));
                    }
                    list
                }
            },
        };
        let disorder = options
            .take_duration("disorder")?
            .unwrap_or(DEFAULT_DISORDER);
        let start = options.take("start");
        let live_start = start.is_none() && rate > 0.0;
        let start_nanos = match start {
            Some(s) => parse_start(&s)?,
            None => parse_start(UNPACED_START)?,
        };
        let step_nanos = if rate > 0.0 {
            ((1e9 / rate).round() as i64).max(1)
        } else {
            UNPACED_STEP_NANOS
        };
        Ok(StocksSourceConfig {
            generator: StocksConfig {
                seed,
                symbols,
                step_nanos,
                disorder_nanos: i64::try_from(disorder.as_nanos()).unwrap_or(i64::MAX),
                start_nanos,
                limit,
            },
            rate,
            live_start,
        })
    }

    pub fn open(&self, batch_size: usize) -> StocksSource {
        let mut config = self.generator.clone();
        if self.live_start {
            config.start_nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        }
        StocksSource {
            generator: StocksGenerator::new(config),
            rate: self.rate,
            batch_size: batch_size.max(1),
            started: Instant::now(),
            paced_from: 0,
        }
    }
}

fn parse_start(value: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            Error::invalid(format!(
                "invalid value '{value}' for option 'start': expected an RFC 3339 time such as '2025-01-02T14:30:00Z'"
            ))
        })
}

/// A paced reader of the feed.
pub(crate) struct StocksSource {
    generator: StocksGenerator,
    rate: f64,
    batch_size: usize,
    started: Instant,
    /// Events made before `started` (by the run a checkpoint resumes).
    paced_from: u64,
}

impl Source for StocksSource {
    fn poll(&mut self) -> Result<Poll> {
        let max_rows = if self.rate > 0.0 {
            let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
            let produced = self.generator.produced() - self.paced_from;
            let behind = due.saturating_sub(produced);
            if behind == 0 {
                let next = (produced + 1) as f64 / self.rate;
                let wait = next - self.started.elapsed().as_secs_f64();
                return Ok(Poll::Idle(Duration::from_secs_f64(wait.clamp(0.0, 0.1))));
            }
            behind.min(self.batch_size as u64) as usize
        } else {
            self.batch_size
        };
        Ok(match self.generator.next_batch(max_rows) {
            Some(batch) => Poll::Batch(0, batch),
            None => Poll::End,
        })
    }

    fn position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.generator.state()).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let state = serde_json::from_value(position.clone())
            .map_err(|e| crate::connector::bad_position("stocks", position, e))?;
        self.generator
            .restore(state)
            .map_err(|e| crate::connector::bad_position("stocks", position, e))?;
        self.paced_from = self.generator.produced();
        self.started = Instant::now();
        Ok(())
    }
}
