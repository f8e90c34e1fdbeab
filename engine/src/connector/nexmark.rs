//! The `nexmark` connector: the Nexmark benchmark's people, auctions and
//! bids, made on the fly (see [`generator`] for the model).
//!
//! A stream reads one kind of event out of the whole sequence, so streams
//! declared with the same `seed`, `rate` and `events` agree with each
//! other: the sellers of one stream's auctions are the people of another's.
//! The sequence is split over `partitions` generator partitions (event `n`
//! goes to partition `n % partitions`), each with its own watermark.

mod generator;

use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use fibers_sql::Options;
use serde::{Deserialize, Serialize};

use super::{Poll, Source, bad_position};
use crate::{Error, Result};
pub(crate) use generator::EventKind;
use generator::{Generator, Timeline};

pub(crate) const OPTIONS: &[&str] = &["event", "rate", "events", "seed", "partitions"];

/// The event-time column of every kind.
pub(crate) const TIME_COLUMN: &str = "date_time";
/// Default watermark delay. Event times never decrease within a partition,
/// and each partition has its own watermark, so no generated event is ever
/// late with no delay at all.
pub(crate) const DEFAULT_DELAY_NANOS: i64 = 0;
/// Event-time spacing of an unpaced sequence (`rate = 0`): the standard
/// generator's default rate of 10,000 events per second.
const UNPACED_STEP_NANOS: f64 = 100_000.0;
/// Event time of event 0 of an unpaced sequence: fixed, so the same options
/// give the same events, timestamps included.
const UNPACED_START_NANOS: i64 = 1_735_828_200_000_000_000; // 2025-01-02T14:30:00Z
const MAX_PARTITIONS: u32 = 1024;
/// Rows per batch at most, whatever the job asks for: keeps every text
/// column of a batch far below Arrow's 2 GiB offset limit.
const MAX_BATCH_ROWS: usize = 1 << 20;

/// Settings of a `nexmark` stream.
#[derive(Debug, Clone)]
pub(crate) struct NexmarkConfig {
    pub kind: EventKind,
    /// Events per second of the whole sequence; 0 = as fast as possible.
    pub rate: f64,
    /// Events in the whole sequence; `None` = unbounded.
    pub events: Option<u64>,
    pub seed: u64,
    pub partitions: u32,
}

impl NexmarkConfig {
    /// Takes the connector's options (see [`OPTIONS`]).
    pub fn from_options(options: &mut Options, owner: &str) -> Result<Self> {
        let kinds = EventKind::NAMES.join(", ");
        let kind = match options.take_choice("event", EventKind::NAMES)? {
            Some(name) => EventKind::from_name(&name).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid value '{name}' for option 'event': expected one of: {kinds}"
                ))
            })?,
            None => {
                return Err(Error::invalid(format!(
                    "connector 'nexmark' of {owner} requires option 'event'; expected one of: {kinds}"
                )));
            }
        };
        let rate = options
            .take_parsed::<f64>("rate", "events per second (0 = as fast as possible)")?
            .unwrap_or(0.0);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(Error::invalid(format!(
                "invalid value '{rate}' for option 'rate': expected events per second (0 = as fast as possible)"
            )));
        }
        let events = options.take_parsed::<u64>(
            "events",
            "a number of events of the whole sequence (omit it for an unbounded stream)",
        )?;
        let seed = options
            .take_parsed::<u64>("seed", "a whole number")?
            .unwrap_or(1);
        let partitions = options
            .take_parsed::<u32>("partitions", "a number of partitions from 1 to 1024")?
            .unwrap_or(1);
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(Error::invalid(format!(
                "invalid value '{partitions}' for option 'partitions': expected a number of partitions from 1 to {MAX_PARTITIONS}"
            )));
        }
        Ok(NexmarkConfig {
            kind,
            rate,
            events,
            seed,
            partitions,
        })
    }

    /// The columns of the stream.
    pub fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    /// A paced sequence runs on the wall clock: its first event is "now".
    fn live(&self) -> bool {
        self.rate > 0.0
    }

    pub fn open(&self, batch_size: usize) -> NexmarkSource {
        let timeline = if self.live() {
            Timeline {
                start_nanos: now_nanos(),
                origin: 0,
                step_nanos: 1e9 / self.rate,
            }
        } else {
            Timeline {
                start_nanos: UNPACED_START_NANOS,
                origin: 0,
                step_nanos: UNPACED_STEP_NANOS,
            }
        };
        NexmarkSource {
            generator: Generator {
                seed: self.seed,
                kind: self.kind,
                timeline,
            },
            partitions: (0..self.partitions).collect(),
            next: (0..u64::from(self.partitions)).collect(),
            end: self.events.unwrap_or(u64::MAX),
            rate: self.rate,
            batch_size: batch_size.clamp(1, MAX_BATCH_ROWS),
            started: Instant::now(),
            paced_from: 0,
        }
    }
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Where a [`NexmarkSource`] stands: the next event number of each
/// partition.
#[derive(Debug, Serialize, Deserialize)]
struct Position {
    next: Vec<u64>,
}

/// A reader of one kind of event, over the generator partitions.
pub(crate) struct NexmarkSource {
    generator: Generator,
    partitions: Vec<u32>,
    /// The next event number of each partition (`≡ partition` modulo the
    /// number of partitions).
    next: Vec<u64>,
    /// The first event number not in the sequence.
    end: u64,
    rate: f64,
    batch_size: usize,
    started: Instant,
    /// The event number due at `started` (where a resumed run began).
    paced_from: u64,
}

impl NexmarkSource {
    /// The partition furthest behind that has events left.
    fn behind(&self) -> Option<usize> {
        (0..self.next.len())
            .filter(|&p| self.next[p] < self.end)
            .min_by_key(|&p| self.next[p])
    }
}

impl Source for NexmarkSource {
    fn poll(&mut self) -> Result<Poll> {
        let step = self.next.len() as u64;
        loop {
            let Some(p) = self.behind() else {
                return Ok(Poll::End);
            };
            let mut limit = self.end;
            if self.rate > 0.0 {
                let elapsed = self.started.elapsed().as_secs_f64();
                let due = self.paced_from.saturating_add((elapsed * self.rate) as u64);
                if self.next[p] >= due {
                    let at = (self.next[p] - self.paced_from + 1) as f64 / self.rate;
                    let wait = (at - elapsed).clamp(0.0, 0.1);
                    return Ok(Poll::Idle(Duration::from_secs_f64(wait)));
                }
                limit = limit.min(due);
            }
            // `None` when the range held no event of this kind; the
            // partition has moved past it, so look again.
            if let Some(batch) =
                self.generator
                    .batch(&mut self.next[p], step, limit, self.batch_size)?
            {
                return Ok(Poll::Batch(self.partitions[p], batch));
            }
        }
    }

    fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    fn position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(Position {
            next: self.next.clone(),
        })
        .ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let bad = |e: &dyn std::fmt::Display| bad_position("nexmark", position, e);
        let Position { next } = serde_json::from_value(position.clone()).map_err(|e| bad(&e))?;
        let count = self.next.len() as u64;
        if next.len() as u64 != count {
            return Err(bad(&format!(
                "it has {} partitions, the stream {count}",
                next.len()
            )));
        }
        if let Some(p) = (0..count).find(|&p| next[p as usize] % count != p) {
            return Err(bad(&format!(
                "event {} is not in partition {p}",
                next[p as usize]
            )));
        }
        let first = next.iter().copied().min().unwrap_or(0);
        // A paced run goes on from now: the first event it makes happens
        // now, and pacing counts from it.
        if self.rate > 0.0 {
            self.generator.timeline.start_nanos = now_nanos();
            self.generator.timeline.origin = first;
        }
        self.next = next;
        self.paced_from = first;
        self.started = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampNanosecondType};
    use arrow::record_batch::RecordBatch;

    fn config(options: &[(&str, &str)]) -> Result<NexmarkConfig> {
        let mut options =
            Options::from_pairs(options.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        NexmarkConfig::from_options(&mut options, "stream 'x'")
    }

    /// Every batch, with its partition, until the end.
    fn drain(source: &mut NexmarkSource) -> Vec<(u32, RecordBatch)> {
        let mut out = Vec::new();
        loop {
            match source.poll().unwrap() {
                Poll::Batch(p, batch) => out.push((p, batch)),
                Poll::Idle(_) => panic!("an unpaced source is never idle"),
                Poll::End => return out,
            }
        }
    }

    fn times(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column_by_name("date_time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .to_vec()
    }

    fn rows(batches: &[(u32, RecordBatch)]) -> usize {
        batches.iter().map(|(_, b)| b.num_rows()).sum()
    }

    #[test]
    fn options_are_validated_with_the_option_named() {
        let err = |options: &[(&str, &str)]| config(options).unwrap_err().to_string();
        assert!(
            err(&[]).contains("requires option 'event'; expected one of: person, auction, bid")
        );
        let e = err(&[("event", "bids")]);
        assert!(
            e.contains("'bids' for option 'event'") && e.contains("person, auction, bid"),
            "{e}"
        );
        assert!(err(&[("event", "bid"), ("rate", "fast")]).contains("option 'rate'"));
        assert!(err(&[("event", "bid"), ("rate", "-1")]).contains("option 'rate'"));
        assert!(err(&[("event", "bid"), ("events", "1e6")]).contains("option 'events'"));
        assert!(err(&[("event", "bid"), ("seed", "x")]).contains("option 'seed'"));
        assert!(err(&[("event", "bid"), ("partitions", "0")]).contains("option 'partitions'"));
        assert!(err(&[("event", "bid"), ("partitions", "2000")]).contains("1 to 1024"));
        let c = config(&[("event", "BID")]).unwrap();
        assert_eq!(
            (c.kind, c.rate, c.events, c.seed, c.partitions),
            (EventKind::Bid, 0.0, None, 1, 1)
        );
    }

    #[test]
    fn a_bounded_run_yields_its_events_in_batches_then_ends() {
        let c = config(&[("event", "bid"), ("events", "10000")]).unwrap();
        let mut source = c.open(1000);
        let batches = drain(&mut source);
        assert_eq!(rows(&batches), 9_200);
        assert!(batches.iter().all(|(p, b)| *p == 0 && b.num_rows() <= 1000));
        assert_eq!(batches[0].1.schema(), c.schema());
        assert!(matches!(source.poll().unwrap(), Poll::End));
    }

    #[test]
    fn partitions_split_the_sequence() {
        let whole = config(&[("event", "bid"), ("events", "20000")]).unwrap();
        let split = config(&[("event", "bid"), ("events", "20000"), ("partitions", "4")]).unwrap();
        let mut one = whole.open(512);
        let mut four = split.open(512);
        assert_eq!(four.partitions(), &[0, 1, 2, 3]);
        let all = drain(&mut one);
        let parts = drain(&mut four);
        assert_eq!(rows(&parts), rows(&all));
        let start = UNPACED_START_NANOS;
        let mut seen = [0usize; 4];
        for (p, batch) in &parts {
            // Partition p holds exactly the events n with n % 4 == p.
            for t in times(batch) {
                let n = ((t - start) as f64 / UNPACED_STEP_NANOS).round() as u64;
                assert_eq!(n % 4, u64::from(*p));
            }
            seen[*p as usize] += batch.num_rows();
        }
        assert!(seen.iter().all(|&n| n == 4_600), "{seen:?}");
        // Together they are the same events as one partition makes.
        let key = |batches: &[(u32, RecordBatch)]| {
            let mut rows: Vec<(i64, i64)> = batches
                .iter()
                .flat_map(|(_, b)| {
                    let prices = b
                        .column_by_name("price")
                        .unwrap()
                        .as_primitive::<Int64Type>();
                    times(b).into_iter().zip(prices.values().to_vec())
                })
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(key(&parts), key(&all));
        // Each partition's event times never decrease.
        for p in 0..4 {
            let t: Vec<i64> = parts
                .iter()
                .filter(|(q, _)| *q == p)
                .flat_map(|(_, b)| times(b))
                .collect();
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn a_resumed_source_yields_exactly_the_remaining_events() {
        for kind in ["person", "auction", "bid"] {
            let c = config(&[("event", kind), ("events", "30000"), ("partitions", "3")]).unwrap();
            let all = drain(&mut c.open(100));
            let mut first = c.open(100);
            let mut before = Vec::new();
            for _ in 0..5 {
                match first.poll().unwrap() {
                    Poll::Batch(p, b) => before.push((p, b)),
                    _ => panic!("ended early"),
                }
            }
            let position = first.position().unwrap();
            let mut resumed = c.open(100);
            resumed.seek(&position).unwrap();
            let after = drain(&mut resumed);
            let mut together: Vec<RecordBatch> =
                before.into_iter().chain(after).map(|(_, b)| b).collect();
            let mut expected: Vec<RecordBatch> = all.into_iter().map(|(_, b)| b).collect();
            let concat = |batches: &mut Vec<RecordBatch>| {
                let batch = arrow::compute::concat_batches(&c.schema(), batches.iter()).unwrap();
                let order = arrow::compute::sort_to_indices(
                    batch.column_by_name("date_time").unwrap(),
                    None,
                    None,
                )
                .unwrap();
                arrow::compute::take_record_batch(&batch, &order).unwrap()
            };
            assert_eq!(concat(&mut together), concat(&mut expected), "{kind}");
        }
    }

    #[test]
    fn a_position_from_another_stream_is_refused() {
        let c = config(&[("event", "bid"), ("partitions", "2")]).unwrap();
        let mut source = c.open(10);
        let e = source
            .seek(&serde_json::json!({"next": [0, 1, 2]}))
            .unwrap_err();
        assert!(e.to_string().contains("3 partitions"), "{e}");
        let e = source
            .seek(&serde_json::json!({"next": [1, 1]}))
            .unwrap_err();
        assert!(e.to_string().contains("not in partition 0"), "{e}");
        assert!(source.seek(&serde_json::json!({"offset": 3})).is_err());
        source.seek(&serde_json::json!({"next": [10, 5]})).unwrap();
    }

    #[test]
    fn a_paced_source_waits_for_its_events() {
        let c = config(&[("event", "bid"), ("rate", "1000"), ("events", "100")]).unwrap();
        let mut source = c.open(1000);
        let started = Instant::now();
        let mut rows = 0;
        loop {
            match source.poll().unwrap() {
                Poll::Batch(_, b) => rows += b.num_rows(),
                Poll::Idle(wait) => std::thread::sleep(wait),
                Poll::End => break,
            }
        }
        assert_eq!(rows, 92);
        // 100 events at 1000/s take about 0.1 s.
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "{:?}",
            started.elapsed()
        );
    }

    /// Generation speed of each kind of stream, for the README's figure:
    /// `cargo test --release -p fibers-engine --lib nexmark -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run in release"]
    fn generation_speed() {
        let events = 20_000_000u64;
        for (kind, per_50) in [("bid", 46), ("auction", 3), ("person", 1)] {
            let c = config(&[("event", kind), ("events", &events.to_string())]).unwrap();
            let mut source = c.open(8192);
            let started = Instant::now();
            let mut rows = 0;
            while let Poll::Batch(_, batch) = source.poll().unwrap() {
                rows += batch.num_rows();
            }
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(rows as u64, events / 50 * per_50);
            println!(
                "{kind} stream: {:.2}M events/s of the sequence, {:.2}M rows/s ({rows} rows in {seconds:.2} s)",
                events as f64 / seconds / 1e6,
                rows as f64 / seconds / 1e6
            );
        }
    }
}
