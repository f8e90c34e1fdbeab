//! The input of a job that joins two streams: both streams read as one
//! source, so the job's machinery (per-partition watermarks, late rows,
//! barriers, positions) works unchanged.
//!
//! Each row of either stream becomes a row of the union schema:
//! `_input` (0 or 1, which stream), `_join_time` (the row's event time in
//! nanoseconds), then the first stream's columns and the second stream's,
//! NULL on the other stream's side. Partitions of the second stream are
//! numbered from [`SECOND_PARTITIONS`], so each keeps its own watermark and
//! the job's watermark is the minimum over both streams. A stream that does
//! not know its partitions yet (a Kafka consumer still connecting) counts
//! as one partition that has delivered nothing, [`pending`], so the other
//! stream cannot move the watermark past the rows it has yet to deliver.
//! The join's operator splits the rows back by `_input`.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, UInt8Array, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use serde_json::json;

use super::{Poll, Source, StreamDef, bad_position};
use crate::watermark::event_times;
use crate::{Error, Result};

/// Which stream a union row comes from.
pub(crate) const INPUT_COLUMN: &str = "_input";
/// A union row's event time, in nanoseconds.
pub(crate) const TIME_COLUMN: &str = "_join_time";
/// Partition numbers of the second stream start here.
pub(crate) const SECOND_PARTITIONS: u32 = 1 << 20;

/// The partition standing for all of stream `input`'s while it knows none:
/// out of reach of real ones (Kafka numbers partitions with an `i32`).
pub(crate) fn pending(input: usize) -> u32 {
    u32::MAX - input as u32
}

/// The union schema of `streams`: `_input`, `_join_time`, then each
/// stream's columns, named `stream.column`.
pub(crate) fn union_schema(streams: &[&StreamDef; 2]) -> SchemaRef {
    let mut fields = vec![
        Field::new(INPUT_COLUMN, DataType::UInt8, false),
        Field::new(
            TIME_COLUMN,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ),
    ];
    for stream in streams {
        for field in stream.schema.fields() {
            fields.push(Field::new(
                format!("{}.{}", stream.name, field.name()),
                field.data_type().clone(),
                true,
            ));
        }
    }
    Arc::new(Schema::new(fields))
}

/// Where each stream's columns are in the union schema.
#[derive(Debug, Clone)]
pub(crate) struct UnionLayout {
    /// Column ranges of the two streams.
    pub columns: [std::ops::Range<usize>; 2],
    /// Each stream's own schema.
    pub schemas: [SchemaRef; 2],
}

impl UnionLayout {
    pub fn new(streams: &[&StreamDef; 2]) -> Self {
        let first = 2..2 + streams[0].schema.fields().len();
        let second = first.end..first.end + streams[1].schema.fields().len();
        UnionLayout {
            columns: [first, second],
            schemas: [
                Arc::clone(&streams[0].schema),
                Arc::clone(&streams[1].schema),
            ],
        }
    }

    /// The rows of `input` (0 or 1) in `batch`, still union rows; `None`
    /// if there are none.
    pub fn rows_of(&self, batch: &RecordBatch, input: usize) -> Result<Option<RecordBatch>> {
        let tags = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt8Array>()
            .ok_or_else(|| Error::invalid("a join's input rows lack their '_input' column"))?;
        let wanted = input as u8;
        if tags.values().iter().all(|&t| t == wanted) {
            return Ok((batch.num_rows() > 0).then(|| batch.clone()));
        }
        if tags.values().iter().all(|&t| t != wanted) {
            return Ok(None);
        }
        let mask = arrow::compute::kernels::cmp::eq(tags, &UInt8Array::new_scalar(wanted))?;
        Ok(Some(arrow::compute::filter_record_batch(batch, &mask)?))
    }

    /// Union rows of `input` in that stream's own schema.
    pub fn project(&self, rows: &RecordBatch, input: usize) -> Result<RecordBatch> {
        let columns = rows.columns()[self.columns[input].clone()].to_vec();
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schemas[input]),
            columns,
        )?)
    }
}

/// Turns either stream's rows into union rows.
#[derive(Debug, Clone)]
pub(crate) struct Widener {
    time_columns: [usize; 2],
    schema: SchemaRef,
    /// Column count of the first stream, then of the second.
    widths: [usize; 2],
}

impl Widener {
    /// The widener of `streams` into `schema` (their [`union_schema`]).
    pub fn new(streams: &[&StreamDef; 2], schema: SchemaRef) -> Result<Self> {
        let time_column = |s: &StreamDef| s.schema.index_of(&s.time_column).map_err(Error::from);
        Ok(Widener {
            time_columns: [time_column(streams[0])?, time_column(streams[1])?],
            schema,
            widths: [
                streams[0].schema.fields().len(),
                streams[1].schema.fields().len(),
            ],
        })
    }

    /// `batch` of stream `input` (0 or 1) as union rows.
    pub fn widen(&self, input: usize, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        columns.push(Arc::new(UInt8Array::from_value(input as u8, rows)));
        let times = event_times(batch.column(self.time_columns[input]))?;
        columns.push(arrow::compute::cast(
            &times,
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?);
        let mut offset = 2;
        for (side, width) in self.widths.iter().enumerate() {
            for i in 0..*width {
                let field = self.schema.field(offset + i);
                columns.push(if side == input {
                    Arc::clone(batch.column(i))
                } else {
                    new_null_array(field.data_type(), rows)
                });
            }
            offset += width;
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// Two sources read as one: the source behind in event time is read
/// first.
///
/// Reading the two in turn, batch for batch, let the sparser stream run
/// ahead in event time (a batch of auctions spans 15 times the time of a
/// batch of bids), and the join buffered everything it had read ahead
/// until the other stream caught up.
pub(crate) struct UnionSource {
    sources: [Box<dyn Source>; 2],
    widener: Widener,
    ended: [bool; 2],
    /// The largest event time read from each source.
    latest: [Option<i64>; 2],
    partitions: Vec<u32>,
}

impl UnionSource {
    pub fn new(
        streams: &[&StreamDef; 2],
        sources: [Box<dyn Source>; 2],
        schema: SchemaRef,
    ) -> Result<Self> {
        let mut union = UnionSource {
            sources,
            widener: Widener::new(streams, schema)?,
            ended: [false; 2],
            latest: [None; 2],
            partitions: Vec::new(),
        };
        union.refresh_partitions();
        Ok(union)
    }
}

impl UnionSource {
    /// Both sources' partitions, numbered apart; [`pending`] for a source
    /// that has not learned its own yet (sources learn them as they
    /// connect) and has not ended.
    fn refresh_partitions(&mut self) {
        self.partitions.clear();
        for input in 0..2 {
            let partitions = self.sources[input].partitions();
            if partitions.is_empty() && !self.ended[input] {
                self.partitions.push(pending(input));
            }
            self.partitions
                .extend(partitions.iter().map(|&p| to_union(input, p)));
        }
    }

    fn read(&mut self) -> Result<Poll> {
        let mut wait: Option<Duration> = None;
        // A source that has read nothing yet counts as furthest behind.
        let behind = usize::from(self.latest[1] < self.latest[0]);
        for turn in 0..2 {
            let input = (behind + turn) % 2;
            if self.ended[input] {
                continue;
            }
            match self.sources[input].poll()? {
                Poll::Batch(partition, batch) => {
                    let batch = self.widener.widen(input, batch)?;
                    let times = batch.column(1).as_primitive::<TimestampNanosecondType>();
                    if let Some(max) = arrow::compute::max(times) {
                        self.latest[input] = self.latest[input].max(Some(max));
                    }
                    return Ok(Poll::Batch(to_union(input, partition), batch));
                }
                Poll::Idle(d) => wait = Some(wait.map_or(d, |w| w.min(d))),
                Poll::End => self.ended[input] = true,
            }
        }
        Ok(match wait {
            Some(d) => Poll::Idle(d),
            None if self.ended == [true, true] => Poll::End,
            // One source ended just now; the other has not answered.
            None => Poll::Idle(Duration::ZERO),
        })
    }
}

/// Partition `partition` of stream `input`, numbered in the union.
pub(crate) fn to_union(input: usize, partition: u32) -> u32 {
    if input == 0 {
        partition
    } else {
        partition + SECOND_PARTITIONS
    }
}

impl Source for UnionSource {
    fn poll(&mut self) -> Result<Poll> {
        let polled = self.read();
        // After reading: the job looks at the partitions of what it got.
        self.refresh_partitions();
        polled
    }

    fn bad_rows(&self) -> u64 {
        self.sources[0].bad_rows() + self.sources[1].bad_rows()
    }

    fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    fn health(&self) -> Option<String> {
        match (self.sources[0].health(), self.sources[1].health()) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }

    fn caught_up(&mut self) -> Vec<u32> {
        let mut caught_up = Vec::new();
        for input in 0..2 {
            caught_up.extend(
                self.sources[input]
                    .caught_up()
                    .into_iter()
                    .map(|p| to_union(input, p)),
            );
        }
        caught_up
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(json!([
            self.sources[0].position()?,
            self.sources[1].position()?
        ]))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        match position.as_array().map(Vec::as_slice) {
            Some([first, second]) => {
                self.sources[0].seek(first)?;
                self.sources[1].seek(second)
            }
            _ => Err(bad_position(
                "the joined streams",
                position,
                "expected the positions of two streams",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Instant;

    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use fibers_sql::Statement;

    use super::*;
    use crate::watermark::PartitionWatermarks;

    /// A source that knows no partitions for its first `connecting` polls
    /// (as a Kafka consumer fetching metadata), then delivers its batches.
    struct Connecting {
        connecting: usize,
        known: Vec<u32>,
        batches: VecDeque<RecordBatch>,
    }

    impl Source for Connecting {
        fn poll(&mut self) -> Result<Poll> {
            if self.connecting > 0 {
                self.connecting -= 1;
                return Ok(Poll::Idle(Duration::ZERO));
            }
            self.known = vec![0];
            Ok(match self.batches.pop_front() {
                Some(batch) => Poll::Batch(0, batch),
                None => Poll::End,
            })
        }

        fn partitions(&self) -> &[u32] {
            &self.known
        }

        fn caught_up(&mut self) -> Vec<u32> {
            if self.batches.is_empty() {
                self.known.clone()
            } else {
                Vec::new()
            }
        }
    }

    fn stream(name: &str) -> StreamDef {
        let sql = format!(
            "CREATE STREAM {name} (k BIGINT, ts TIMESTAMP(3), \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'file', path = '{name}.jsonl', format = 'json')"
        );
        let parsed = fibers_sql::parse_script(&sql).unwrap();
        let Statement::CreateStream(create) = &parsed[0].statement else {
            unreachable!()
        };
        StreamDef::resolve(create, std::path::Path::new(".")).unwrap()
    }

    /// Batches of one row a second from `from_s`, `count` seconds.
    fn seconds(schema: &SchemaRef, from_s: i64, count: i64) -> VecDeque<RecordBatch> {
        (from_s..from_s + count)
            .map(|s| {
                RecordBatch::try_new(
                    Arc::clone(schema),
                    vec![
                        Arc::new(Int64Array::from(vec![s])),
                        Arc::new(TimestampNanosecondArray::from(vec![s * 1_000_000_000])),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    /// Reads `union` as a job does, returning the rows found late.
    fn late_rows(union: &mut UnionSource) -> usize {
        let mut tracker = PartitionWatermarks::new(1, 1_000_000_000, Some(Duration::ZERO));
        let mut late = 0;
        loop {
            let polled = union.poll().unwrap();
            let now = Instant::now();
            tracker.track(union.partitions(), now);
            tracker.set_caught_up(&union.caught_up());
            match polled {
                Poll::Batch(partition, batch) => {
                    late += tracker.observe(partition, batch, now).unwrap().late;
                    tracker.advance(now);
                }
                Poll::Idle(_) => {}
                Poll::End => return late,
            }
        }
    }

    #[test]
    fn a_stream_still_connecting_holds_the_watermark_back() {
        let (trades, quotes) = (stream("trades"), stream("quotes"));
        let streams = [&trades, &quotes];
        // Trades (1 s to 20 s) connect only after quotes (100 s to 120 s)
        // have delivered: counted from the quotes alone, the watermark
        // would pass every trade.
        let sources: [Box<dyn Source>; 2] = [
            Box::new(Connecting {
                connecting: 5,
                known: Vec::new(),
                batches: seconds(&trades.schema, 1, 20),
            }),
            Box::new(Connecting {
                connecting: 0,
                known: Vec::new(),
                batches: seconds(&quotes.schema, 100, 20),
            }),
        ];
        let mut union = UnionSource::new(&streams, sources, union_schema(&streams)).unwrap();
        assert_eq!(union.partitions(), &[pending(0), pending(1)]);
        assert_eq!(late_rows(&mut union), 0);
        assert_eq!(union.partitions(), &[0, SECOND_PARTITIONS]);
    }
}
