//! Event time: the watermark of a source and the rows that arrive too late.

use std::sync::Arc;

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
        let times = event_times(batch.column(self.time_index))?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        // Fast path: no NULLs and no late row, which is the common case;
        // the mask is only built once a row turns out to be late.
        if times.null_count() == 0 {
            let values = times.values();
            let mut max_seen = self.max_seen;
            let mut first_late = None;
            for (i, &t) in values.iter().enumerate() {
                if max_seen.is_some_and(|m| t < m.saturating_sub(self.delay)) {
                    first_late = Some(i);
                    break;
                }
                max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
            }
            if first_late.is_none() {
                self.max_seen = max_seen;
                return Ok(Observed { batch, late: 0 });
            }
        }
        let mut max_seen = self.max_seen;
        let mut late = 0;
        let keep: BooleanArray = (0..times.len())
            .map(|i| {
                if times.is_null(i) {
                    late += 1;
                    return Some(false);
                }
                let t = times.value(i);
                let on_time = max_seen.is_none_or(|m| t >= m.saturating_sub(self.delay));
                if on_time {
                    max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
                } else {
                    late += 1;
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
        Ok(Observed { batch, late })
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
