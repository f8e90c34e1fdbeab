//! Event time: the watermark of a source and the rows that arrive too late.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;

use crate::Result;

/// Tracks a source's watermark — the largest event time seen minus the
/// declared delay — and drops rows that are late.
///
/// A row is late when its event time is below the watermark as it stood
/// just before the row arrived (earlier rows of the same batch included), or
/// when it has no event time. Judging row by row makes the result
/// independent of how the input happens to be cut into batches.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    time_index: usize,
    delay: i64,
    max_seen: Option<i64>,
}

/// What [`WatermarkTracker::observe`] kept of a batch.
#[derive(Debug)]
pub struct Observed {
    /// The rows that are not late.
    pub batch: RecordBatch,
    /// How many rows were dropped as late.
    pub late: usize,
    /// How many of the late rows were on time in their own partition and
    /// late only because the combined watermark had moved on without it:
    /// while it was taken for idle, or before it delivered anything.
    pub passed: usize,
}

impl WatermarkTracker {
    /// A tracker of the event time in column `time_index`, trailing it by
    /// `delay` nanoseconds.
    pub fn new(time_index: usize, delay: i64) -> Self {
        WatermarkTracker {
            time_index,
            delay: delay.max(0),
            max_seen: None,
        }
    }

    /// The current watermark in nanoseconds since the epoch, once any row
    /// was seen.
    pub fn watermark(&self) -> Option<i64> {
        self.max_seen.map(|m| m.saturating_sub(self.delay))
    }

    /// Advances the watermark over `batch` and drops its late rows.
    pub fn observe(&mut self, batch: RecordBatch) -> Result<Observed> {
        self.observe_within(batch, Bounds::default())
    }

    /// Like [`observe`](Self::observe), for one of several partitions: a
    /// row is late below the combined watermark, which is this tracker's
    /// own watermark capped by `bounds.cap` (the other partitions') and
    /// never below `bounds.floor` (what was already emitted).
    pub(crate) fn observe_within(
        &mut self,
        batch: RecordBatch,
        bounds: Bounds,
    ) -> Result<Observed> {
        let times = event_times(batch.column(self.time_index))?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        let delay = self.delay;
        let threshold = |max_seen: Option<i64>| {
            let own = max_seen.map(|m| m.saturating_sub(delay).min(bounds.cap));
            own.max(bounds.floor)
        };
        // Fast path: no NULLs and no late row, which is the common case;
        // the mask is only built once a row turns out to be late.
        if times.null_count() == 0 {
            let values = times.values();
            let mut max_seen = self.max_seen;
            let mut first_late = None;
            for (i, &t) in values.iter().enumerate() {
                if threshold(max_seen).is_some_and(|w| t < w) {
                    first_late = Some(i);
                    break;
                }
                max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
            }
            if first_late.is_none() {
                self.max_seen = max_seen;
                return Ok(Observed {
                    batch,
                    late: 0,
                    passed: 0,
                });
            }
        }
        let mut max_seen = self.max_seen;
        let mut late = 0;
        let mut passed = 0;
        let keep: BooleanArray = (0..times.len())
            .map(|i| {
                if times.is_null(i) {
                    late += 1;
                    return Some(false);
                }
                let t = times.value(i);
                let on_time = threshold(max_seen).is_none_or(|w| t >= w);
                if on_time {
                    max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
                } else {
                    late += 1;
                    // On time by the partition's own watermark: only the
                    // floor (what was emitted while it did not count) made
                    // it late.
                    if max_seen.is_none_or(|m| t >= m.saturating_sub(delay)) {
                        passed += 1;
                    }
                }
                Some(on_time)
            })
            .collect();
        self.max_seen = max_seen;
        let batch = if late == 0 {
            batch
        } else {
            filter_record_batch(&batch, &keep)?
        };
        Ok(Observed {
            batch,
            late,
            passed,
        })
    }
}

/// Limits on a partition's lateness threshold from the other partitions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The combined watermark can be no higher than this.
    pub cap: i64,
    /// Rows below this are late whatever the partition's own watermark.
    pub floor: Option<i64>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            cap: i64::MAX,
            floor: None,
        }
    }
}

/// The watermark of a source with several partitions (Kafka partitions):
/// each partition tracks its own, and the source's watermark is the
/// minimum over the partitions that are active. A partition that has
/// delivered nothing for `idle_timeout` *and* that its source has read to
/// the end of what the broker holds ([`PartitionWatermarks::set_caught_up`])
/// stops holding the watermark back until it delivers again; when every
/// partition is idle the watermark is the largest of theirs. A partition
/// the source is behind on, or cannot tell about (a broker too slow to
/// answer), is never idle: a slow broker delays windows, it does not drop
/// rows. The emitted watermark never goes back, and rows below it are
/// late in every partition.
#[derive(Debug)]
pub(crate) struct PartitionWatermarks {
    time_index: usize,
    delay: i64,
    idle_timeout: Option<Duration>,
    partitions: BTreeMap<u32, PartitionState>,
    emitted: Option<i64>,
}

#[derive(Debug)]
struct PartitionState {
    tracker: WatermarkTracker,
    last_active: Instant,
    /// Whether the source has read everything the partition holds, as
    /// far as it last knew.
    caught_up: bool,
}

impl PartitionWatermarks {
    pub fn new(time_index: usize, delay: i64, idle_timeout: Option<Duration>) -> Self {
        PartitionWatermarks {
            time_index,
            delay,
            idle_timeout,
            partitions: BTreeMap::new(),
            emitted: None,
        }
    }

    /// The state to checkpoint: each partition's largest event time and
    /// the watermark emitted.
    pub fn snapshot(&self) -> crate::checkpoint::WatermarkState {
        crate::checkpoint::WatermarkState {
            partitions: self
                .partitions
                .iter()
                .map(|(&p, s)| (p, s.tracker.max_seen))
                .collect(),
            emitted: self.emitted,
        }
    }

    /// Restores a [`PartitionWatermarks::snapshot`]; the partitions count
    /// as active from `now`.
    pub fn restore(&mut self, state: &crate::checkpoint::WatermarkState, now: Instant) {
        for &(partition, max_seen) in &state.partitions {
            self.add_partition(partition, now);
            if let Some(s) = self.partitions.get_mut(&partition) {
                s.tracker.max_seen = max_seen;
            }
        }
        self.emitted = state.emitted;
    }

    /// Tracks the partitions a source reads now: new ones are added, and
    /// one it no longer lists is forgotten if it has delivered nothing
    /// (the stand-in a source lists while it learns its partitions; see
    /// `union::pending`). One that has delivered keeps its watermark.
    /// A source that lists none has not learnt them yet (a Kafka consumer
    /// still connecting): nothing changes, so a partition restored from a
    /// checkpoint before it delivered still holds the watermark back.
    pub fn track(&mut self, partitions: &[u32], now: Instant) {
        if partitions.is_empty() {
            return;
        }
        if partitions.len() == self.partitions.len()
            && partitions.iter().all(|p| self.partitions.contains_key(p))
        {
            return;
        }
        self.partitions
            .retain(|p, state| partitions.contains(p) || state.tracker.max_seen.is_some());
        for &partition in partitions {
            self.add_partition(partition, now);
        }
    }

    /// Starts tracking a partition (a no-op for a known one). A new
    /// partition holds the watermark back until it delivers rows or
    /// becomes idle.
    pub fn add_partition(&mut self, partition: u32, now: Instant) {
        let (time_index, delay) = (self.time_index, self.delay);
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionState {
                tracker: WatermarkTracker::new(time_index, delay),
                last_active: now,
                caught_up: false,
            });
    }

    fn idle(&self, state: &PartitionState, now: Instant) -> bool {
        state.caught_up
            && self
                .idle_timeout
                .is_some_and(|timeout| now.saturating_duration_since(state.last_active) >= timeout)
    }

    /// Records which partitions the source has read to the end of what
    /// exists (all others are behind, or unknown): only those may be
    /// taken for idle.
    pub fn set_caught_up(&mut self, caught_up: &[u32]) {
        for (partition, state) in &mut self.partitions {
            state.caught_up = caught_up.contains(partition);
        }
    }

    /// Drops the late rows of a batch from `partition` and advances its
    /// watermark.
    pub fn observe(
        &mut self,
        partition: u32,
        batch: RecordBatch,
        now: Instant,
    ) -> Result<Observed> {
        self.add_partition(partition, now);
        // The other active partitions cap the combined watermark; one that
        // has seen nothing yet caps it at "nothing is late".
        let mut cap = i64::MAX;
        for (&p, state) in &self.partitions {
            if p != partition && !self.idle(state, now) {
                cap = cap.min(state.tracker.watermark().unwrap_or(i64::MIN));
            }
        }
        let bounds = Bounds {
            cap,
            floor: self.emitted,
        };
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Err(crate::Error::invalid(
                "a partition vanished from the watermark",
            ));
        };
        state.last_active = now;
        state.tracker.observe_within(batch, bounds)
    }

    /// The combined watermark, when it has moved past the one last
    /// returned (which is then remembered as emitted).
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        let mut active = self
            .partitions
            .values()
            .filter(|s| !self.idle(s, now))
            .peekable();
        let combined = if active.peek().is_some() {
            active
                .map(|s| s.tracker.watermark())
                .try_fold(i64::MAX, |min, w| w.map(|w| min.min(w)))
        } else {
            self.partitions
                .values()
                .filter_map(|s| s.tracker.watermark())
                .max()
        }?;
        if self.emitted.is_some_and(|e| combined <= e) {
            return None;
        }
        self.emitted = Some(combined);
        Some(combined)
    }
}

/// The column as nanosecond timestamps (casting other units).
pub(crate) fn event_times(column: &Arc<dyn Array>) -> Result<Arc<dyn Array>> {
    Ok(match column.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Arc::clone(column),
        DataType::Timestamp(_, tz) => cast(
            column,
            &DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
        )?,
        other => {
            return Err(crate::Error::invalid(format!(
                "event-time column has type {other}, expected a timestamp"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(times: &[Option<i64>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("i", DataType::Int64, false),
        ]));
        let ids: Int64Array = (0..times.len() as i64).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(times.to_vec())),
                Arc::new(ids),
            ],
        )
        .unwrap()
    }

    fn kept_ids(o: &Observed) -> Vec<i64> {
        o.batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn only_a_partition_read_to_its_end_can_be_taken_for_idle() {
        let start = Instant::now();
        let later = start + Duration::from_secs(60);
        for caught_up in [false, true] {
            let mut w = PartitionWatermarks::new(0, 10, Some(Duration::from_secs(30)));
            w.observe(0, batch(&[Some(1_000)]), start).unwrap();
            w.observe(1, batch(&[Some(100)]), start).unwrap();
            assert_eq!(w.advance(start), Some(90));
            // Partition 0 delivers on; partition 1 delivers nothing for a
            // minute. Unless its source knows it has read all there is, it
            // may merely be starved by a slow broker.
            w.set_caught_up(if caught_up { &[0, 1] } else { &[0] });
            w.observe(0, batch(&[Some(2_000)]), later).unwrap();
            let watermark = w.advance(later);
            if caught_up {
                assert_eq!(
                    watermark,
                    Some(1_990),
                    "an idle partition no longer holds it"
                );
                // What it delivers afterwards is late, and counted as late
                // because of its idleness.
                let o = w
                    .observe(1, batch(&[Some(150), Some(2_500)]), later)
                    .unwrap();
                assert_eq!((o.late, o.passed), (1, 1));
            } else {
                assert_eq!(watermark, None, "held back by the partition behind");
                let o = w.observe(1, batch(&[Some(150)]), later).unwrap();
                assert_eq!(o.late, 0);
            }
        }
    }

    #[test]
    fn rows_late_in_their_own_partition_are_not_counted_as_passed() {
        let start = Instant::now();
        let mut w = PartitionWatermarks::new(0, 10, Some(Duration::from_secs(30)));
        // 89 is late by partition 0's own watermark (90), whatever the rest.
        let o = w
            .observe(0, batch(&[Some(100), Some(89), None]), start)
            .unwrap();
        assert_eq!((o.late, o.passed), (2, 0));
    }

    #[test]
    fn rows_within_the_delay_are_kept_and_late_rows_dropped() {
        let mut t = WatermarkTracker::new(0, 10);
        // 100 sets the watermark to 90: 95 and 90 are on time, 89 is late.
        let o = t
            .observe(batch(&[
                Some(100),
                Some(95),
                Some(90),
                Some(89),
                None,
                Some(120),
            ]))
            .unwrap();
        assert_eq!(kept_ids(&o), [0, 1, 2, 5]);
        assert_eq!(o.late, 2);
        assert_eq!(t.watermark(), Some(110));
    }

    #[test]
    fn partitions_combine_by_minimum_and_idle_ones_stop_holding_back() {
        let start = Instant::now();
        let mut w = PartitionWatermarks::new(0, 10, Some(Duration::from_secs(30)));
        w.add_partition(0, start);
        w.add_partition(1, start);
        w.set_caught_up(&[0, 1]);
        // Partition 1 has seen nothing: nothing is late and no watermark.
        let o = w.observe(0, batch(&[Some(100), Some(50)]), start).unwrap();
        assert_eq!(o.late, 0);
        assert_eq!(w.advance(start), None);
        let o = w.observe(1, batch(&[Some(60)]), start).unwrap();
        assert_eq!(o.late, 0);
        assert_eq!(w.advance(start), Some(50));
        // 45 is late in partition 1 (combined 50), 55 is not even though
        // partition 0's own watermark is 90.
        let o = w.observe(0, batch(&[Some(45), Some(55)]), start).unwrap();
        assert_eq!(kept_ids(&o), [1]);
        // Partition 1 goes idle: partition 0 alone sets the watermark.
        let later = start + Duration::from_secs(31);
        let o = w.observe(0, batch(&[Some(120)]), later).unwrap();
        assert_eq!(o.late, 0);
        assert_eq!(w.advance(later), Some(110));
        // Back from idle below the emitted watermark: its rows are late and
        // the watermark does not go back.
        let o = w.observe(1, batch(&[Some(100), Some(115)]), later).unwrap();
        assert_eq!(kept_ids(&o), [1]);
        assert_eq!(w.advance(later), None);
        // All idle: the largest partition watermark.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(w.advance(much_later), None);
        let o = w.observe(0, batch(&[Some(200)]), much_later).unwrap();
        assert_eq!(o.late, 0);
        assert_eq!(w.advance(much_later), Some(190));
    }

    /// Found by the crash test: restored from a checkpoint taken before
    /// one partition delivered, a Kafka job listed no partitions while its
    /// consumer connected, the restored partition was forgotten, and the
    /// watermark ran past its rows, which then came late.
    #[test]
    fn a_restored_partition_that_delivered_nothing_holds_while_none_are_listed() {
        let now = Instant::now();
        let mut w = PartitionWatermarks::new(0, 0, None);
        w.restore(
            &crate::checkpoint::WatermarkState {
                partitions: vec![(0, Some(1_000)), (1, None)],
                emitted: None,
            },
            now,
        );
        w.track(&[], now);
        assert_eq!(w.advance(now), None, "partition 1 has delivered nothing");
        w.track(&[0, 1], now);
        assert_eq!(w.advance(now), None);
    }

    #[test]
    fn a_stand_in_partition_is_forgotten_and_one_that_delivered_is_kept() {
        let now = Instant::now();
        let mut w = PartitionWatermarks::new(0, 0, None);
        // A stand-in for partitions not known yet holds the watermark back.
        w.track(&[0, u32::MAX], now);
        w.observe(0, batch(&[Some(50)]), now).unwrap();
        assert_eq!(w.advance(now), None);
        // Once the real partition is listed, the stand-in goes; partition
        // 0, no longer listed, keeps what it delivered.
        w.track(&[1], now);
        let known: Vec<u32> = w.snapshot().partitions.iter().map(|p| p.0).collect();
        assert_eq!(known, [0, 1]);
        w.observe(1, batch(&[Some(40)]), now).unwrap();
        assert_eq!(w.advance(now), Some(40));
    }

    #[test]
    fn lateness_does_not_depend_on_batch_boundaries() {
        let times: Vec<Option<i64>> = [5, 30, 12, 25, 40, 19, 31, 29, 60, 45]
            .iter()
            .map(|&t| Some(t))
            .collect();
        let mut whole = WatermarkTracker::new(0, 10);
        let all = whole.observe(batch(&times)).unwrap();
        let mut split = WatermarkTracker::new(0, 10);
        let mut late = 0;
        let mut kept = 0;
        for chunk in times.chunks(3) {
            let o = split.observe(batch(chunk)).unwrap();
            late += o.late;
            kept += o.batch.num_rows();
        }
        assert_eq!((all.late, all.batch.num_rows()), (late, kept));
        assert_eq!(all.late, 4); // 12 (wm 20), 19 (wm 30), 29 (wm 30), 45 (wm 50)
        assert_eq!(whole.watermark(), split.watermark());
    }
}
