//! Joins of streams (see `fibers_sql::StreamJoin`): windowed joins, which
//! buffer rows per window and run the query over a window's rows when the
//! watermark closes it, and interval joins, which join each arriving batch
//! with the other stream's buffered rows and drop rows once the watermark
//! makes a match impossible.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, TimestampNanosecondArray};
use arrow::compute::kernels::cmp::{eq, gt_eq};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use fibers_sql::{ContinuousQuery, Window};

use super::{Operator, WindowAssigner, check_state_schema, floor_to};
use crate::checkpoint::OperatorState;
use crate::connector::union::UnionLayout;
use crate::plan::{BatchSlot, Reusable, input_slots, run};
use crate::watermark::event_times;
use crate::{Error, Result};

/// Buffered batches of one side are merged into one once there are this
/// many.
const COMPACT_AT: usize = 64;

/// How the job's batches map to the query's inputs.
#[derive(Debug, Clone)]
pub(crate) enum Router {
    /// The job reads one stream, the query's only input (a self-join).
    Single,
    /// The job reads two streams as one (`connector::union`).
    Union(UnionLayout),
}

impl Router {
    /// The rows of each input in `batch` (as the job gives them).
    fn parts(&self, batch: &RecordBatch) -> Result<Vec<(usize, RecordBatch)>> {
        match self {
            Router::Single => Ok(vec![(0, batch.clone())]),
            Router::Union(layout) => {
                let mut parts = Vec::with_capacity(1);
                for input in 0..2 {
                    if let Some(rows) = layout.rows_of(batch, input)? {
                        parts.push((input, rows));
                    }
                }
                Ok(parts)
            }
        }
    }

    /// Rows of input `input` (as [`Router::parts`] returns them) in the
    /// stream's own schema.
    fn project(&self, rows: &RecordBatch, input: usize) -> Result<RecordBatch> {
        match self {
            Router::Single => Ok(rows.clone()),
            Router::Union(layout) => layout.project(rows, input),
        }
    }
}

/// One input of a join's plan.
struct Side {
    slot: BatchSlot,
    /// Adds the window columns, for a windowed join.
    assigner: Option<WindowAssigner>,
}

/// The slots of the plan's inputs, in the query's input order.
fn sides(
    query: &ContinuousQuery,
    plan: &Arc<dyn ExecutionPlan>,
    window: Option<&Window>,
) -> Result<Vec<Side>> {
    let slots = input_slots(plan);
    query
        .inputs
        .iter()
        .map(|input| {
            let slot = slots
                .iter()
                .find(|s| s.stream() == Some(input.stream.as_str()))
                .cloned()
                .ok_or_else(|| {
                    Error::invalid(format!("the join's plan does not read '{}'", input.stream))
                })?;
            let assigner = match window {
                Some(w) => Some(WindowAssigner::new(
                    &Window {
                        time_column: input.time_column.clone().unwrap_or_default(),
                        ..w.clone()
                    },
                    &input.schema,
                    false,
                )?),
                None => None,
            };
            Ok(Side { slot, assigner })
        })
        .collect()
}

/// Event times (nanoseconds) of a job batch.
fn times(batch: &RecordBatch, time_index: usize) -> Result<TimestampNanosecondArray> {
    let times = event_times(batch.column(time_index))?;
    Ok(times.as_primitive::<TimestampNanosecondType>().clone())
}

/// A windowed join: every input read through the same TUMBLE, the query
/// run over each window's rows when the watermark closes it. State is the
/// rows of open windows.
pub(crate) struct WindowJoin {
    size: i64,
    router: Router,
    /// The event-time column of the job's batches.
    time_index: usize,
    sides: Vec<Side>,
    plan: Reusable,
    ctx: Arc<TaskContext>,
    /// The job's batches, per window start.
    windows: BTreeMap<i64, Vec<RecordBatch>>,
    state_schema: SchemaRef,
    /// Start of the last window emitted.
    emitted_through: Option<i64>,
    skip_through: Option<i64>,
}

impl WindowJoin {
    pub fn new(
        query: &ContinuousQuery,
        plan: Arc<dyn ExecutionPlan>,
        router: Router,
        (state_schema, time_index): (SchemaRef, usize),
        ctx: Arc<TaskContext>,
        skip_through: Option<i64>,
    ) -> Result<Self> {
        let window = query
            .window
            .as_ref()
            .ok_or_else(|| Error::invalid("a windowed join without a window"))?;
        Ok(WindowJoin {
            size: window.size,
            sides: sides(query, &plan, Some(window))?,
            router,
            time_index,
            plan: Reusable::new(plan),
            ctx,
            windows: BTreeMap::new(),
            state_schema,
            emitted_through: None,
            skip_through,
        })
    }

    fn add(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = times(&batch, self.time_index)?;
        let starts: TimestampNanosecondArray = times.unary(|t| floor_to(t, self.size));
        let first = starts.value(0);
        let sorted = starts.null_count() == 0 && starts.values().is_sorted();
        let parts = if sorted && starts.value(starts.len() - 1) == first {
            vec![(first, batch)]
        } else if sorted {
            // Rows in time order (a partition read in order): each window's
            // rows are a slice of the batch, cut without copying.
            let values = starts.values();
            let mut parts = Vec::new();
            let mut from = 0;
            while from < values.len() {
                let start = values[from];
                let to = from + values[from..].partition_point(|&s| s == start);
                parts.push((start, batch.slice(from, to - from)));
                from = to;
            }
            parts
        } else {
            let distinct: std::collections::BTreeSet<i64> = starts.iter().flatten().collect();
            let mut parts = Vec::with_capacity(distinct.len());
            for start in distinct {
                let mask = eq(&starts, &TimestampNanosecondArray::new_scalar(start))?;
                parts.push((start, filter_record_batch(&batch, &mask)?));
            }
            parts
        };
        for (start, rows) in parts {
            // A window already emitted takes no more rows (the watermark
            // drops such rows as late before they get here).
            if self.emitted_through.is_some_and(|e| start <= e) {
                continue;
            }
            self.windows.entry(start).or_default().push(rows);
        }
        Ok(())
    }

    async fn emit(&mut self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let mut per_input: Vec<Vec<RecordBatch>> = vec![Vec::new(); self.sides.len()];
        for batch in &batches {
            for (input, rows) in self.router.parts(batch)? {
                let rows = self.router.project(&rows, input)?;
                let side = &self.sides[input];
                per_input[input].push(match &side.assigner {
                    Some(a) => a.assign(rows)?,
                    None => rows,
                });
            }
        }
        // The last input's slot is filled by `run`; the others before it.
        let last = per_input.pop().unwrap_or_default();
        for (side, rows) in self.sides.iter().zip(per_input) {
            side.slot.put(rows);
        }
        let Some(last_side) = self.sides.last() else {
            return Ok(Vec::new());
        };
        let out = run(&mut self.plan, &last_side.slot, last, &self.ctx).await;
        for side in &self.sides {
            side.slot.clear();
        }
        out
    }
}

#[async_trait]
impl Operator for WindowJoin {
    async fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.add(batch)?;
        Ok(Vec::new())
    }

    async fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(self.size);
            if end > watermark {
                break;
            }
            let batches = entry.remove();
            self.emitted_through = Some(start);
            if self.skip_through.is_some_and(|s| end <= s) {
                continue;
            }
            out.extend(self.emit(batches).await?);
        }
        Ok(out)
    }

    fn snapshot(&self) -> Result<OperatorState> {
        Ok(OperatorState {
            emitted_through: self.emitted_through,
            batches: self.windows.values().flatten().cloned().collect(),
            merged: Vec::new(),
        })
    }

    fn state_schema(&self) -> Option<SchemaRef> {
        Some(Arc::clone(&self.state_schema))
    }

    async fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.windows.clear();
        self.emitted_through = None;
        for batch in state.batches {
            check_state_schema(&batch, &self.state_schema, "join")?;
            self.add(batch)?;
        }
        self.emitted_through = state.emitted_through;
        Ok(())
    }
}

/// Buffered rows of one side of an interval join, with each batch's
/// largest event time.
#[derive(Default)]
struct Buffer {
    batches: Vec<(RecordBatch, i64)>,
}

impl Buffer {
    fn push(&mut self, batch: RecordBatch, time_index: usize) -> Result<()> {
        let times = times(&batch, time_index)?;
        let max = arrow::compute::max(&times).unwrap_or(i64::MIN);
        self.batches.push((batch, max));
        Ok(())
    }

    fn rows(&self) -> impl Iterator<Item = &RecordBatch> {
        self.batches.iter().map(|(b, _)| b)
    }

    /// Drops rows older than `keep_from`: whole batches at once; when many
    /// batches are kept, they are merged and filtered row by row.
    fn expire(&mut self, keep_from: i64, time_index: usize, schema: &SchemaRef) -> Result<()> {
        self.batches.retain(|(_, max)| *max >= keep_from);
        if self.batches.len() < COMPACT_AT {
            return Ok(());
        }
        let merged = concat_batches(schema, self.batches.iter().map(|(b, _)| b))?;
        let times = times(&merged, time_index)?;
        let keep = gt_eq(&times, &TimestampNanosecondArray::new_scalar(keep_from))?;
        let kept = filter_record_batch(&merged, &keep)?;
        self.batches.clear();
        if kept.num_rows() > 0 {
            self.push(kept, time_index)?;
        }
        Ok(())
    }
}

/// An interval join of two streams: each arriving batch is joined with the
/// other stream's buffered rows at once (so each matching pair is emitted
/// when the later of its rows arrives), then buffered itself. A row is
/// dropped once the watermark has passed every time a match could have.
pub(crate) struct IntervalJoin {
    router: Router,
    time_index: usize,
    sides: Vec<Side>,
    /// The query inputs on the join's left and right.
    left: usize,
    right: usize,
    /// Bounds of `right.time - left.time` for a match.
    min_offset: i64,
    max_offset: i64,
    buffers: [Buffer; 2],
    plan: Reusable,
    ctx: Arc<TaskContext>,
    state_schema: SchemaRef,
}

impl IntervalJoin {
    pub fn new(
        query: &ContinuousQuery,
        plan: Arc<dyn ExecutionPlan>,
        router: Router,
        (state_schema, time_index): (SchemaRef, usize),
        ctx: Arc<TaskContext>,
    ) -> Result<Self> {
        let Some(fibers_sql::StreamJoin::Interval {
            left,
            right,
            min_offset,
            max_offset,
        }) = &query.join
        else {
            return Err(Error::invalid("an interval join without its bounds"));
        };
        let position = |stream: &str| {
            query
                .inputs
                .iter()
                .position(|i| i.stream == stream)
                .ok_or_else(|| Error::invalid(format!("the join reads no stream '{stream}'")))
        };
        if !matches!(router, Router::Union(_)) || query.inputs.len() != 2 {
            return Err(Error::invalid("an interval join joins two streams"));
        }
        Ok(IntervalJoin {
            left: position(left)?,
            right: position(right)?,
            sides: sides(query, &plan, None)?,
            router,
            time_index,
            min_offset: *min_offset,
            max_offset: *max_offset,
            buffers: [Buffer::default(), Buffer::default()],
            plan: Reusable::new(plan),
            ctx,
            state_schema,
        })
    }

    /// Runs the plan with `left` and `right` (job batches of the two
    /// inputs) in the slots.
    async fn join(
        &mut self,
        left: Vec<&RecordBatch>,
        right: Vec<&RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let project = |rows: Vec<&RecordBatch>, input: usize| {
            rows.into_iter()
                .map(|b| self.router.project(b, input))
                .collect::<Result<Vec<_>>>()
        };
        let left_rows = project(left, self.left)?;
        let right_rows = project(right, self.right)?;
        self.sides[self.left].slot.put(left_rows);
        let slot = self.sides[self.right].slot.clone();
        let out = run(&mut self.plan, &slot, right_rows, &self.ctx).await;
        self.sides[self.left].slot.clear();
        out
    }
}

#[async_trait]
impl Operator for IntervalJoin {
    async fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (input, rows) in self.router.parts(&batch)? {
            let other = if input == self.left {
                self.right
            } else {
                self.left
            };
            if !self.buffers[other].batches.is_empty() {
                let buffered: Vec<RecordBatch> = self.buffers[other].rows().cloned().collect();
                let buffered = buffered.iter().collect();
                out.extend(if input == self.left {
                    self.join(vec![&rows], buffered).await?
                } else {
                    self.join(buffered, vec![&rows]).await?
                });
            }
            self.buffers[input].push(rows, self.time_index)?;
        }
        Ok(out)
    }

    async fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        // Rows still to come have times at or after the watermark. A left
        // row at t matches right rows up to t + max_offset; a right row at
        // t matches left rows from t - min_offset on.
        let keep_left = watermark.saturating_sub(self.max_offset);
        let keep_right = watermark.saturating_add(self.min_offset);
        let (time_index, schema) = (self.time_index, Arc::clone(&self.state_schema));
        self.buffers[self.left].expire(keep_left, time_index, &schema)?;
        self.buffers[self.right].expire(keep_right, time_index, &schema)?;
        Ok(Vec::new())
    }

    fn snapshot(&self) -> Result<OperatorState> {
        Ok(OperatorState {
            emitted_through: None,
            batches: self
                .buffers
                .iter()
                .flat_map(|b| b.rows().cloned())
                .collect(),
            merged: Vec::new(),
        })
    }

    fn state_schema(&self) -> Option<SchemaRef> {
        Some(Arc::clone(&self.state_schema))
    }

    async fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.buffers = [Buffer::default(), Buffer::default()];
        for batch in state.batches {
            check_state_schema(&batch, &self.state_schema, "join")?;
            // Pairs among restored rows were emitted before the checkpoint.
            for (input, rows) in self.router.parts(&batch)? {
                self.buffers[input].push(rows, self.time_index)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use fibers_sql::Statement;

    use super::*;
    use crate::checkpoint::{decode_ipc, encode_ipc};
    use crate::connector::{Poll, StreamDef};
    use crate::operator::{Operator, build};
    use crate::query::Readable;

    const DELAY_NANOS: i64 = 200_000_000;
    const BASE_MS: i64 = 1_704_067_200_000;

    /// `(key, time ms)` rows of the two streams: keys cycle at different
    /// periods, times advance 10 ms and 13 ms apart with some disorder
    /// (within the watermark delay).
    fn rows() -> [Vec<(i64, i64)>; 2] {
        let a = (0..600)
            .map(|i| (i % 7, BASE_MS + i * 10 - (i * 37) % 90))
            .collect();
        let b = (0..500)
            .map(|j| (j % 5, BASE_MS + j * 13 - (j * 53) % 120))
            .collect();
        [a, b]
    }

    /// The pairs `a.k = b.k AND b.t BETWEEN a.t - 50 ms AND a.t + 100 ms`,
    /// as (key, a time, b time), counted.
    fn expected() -> BTreeMap<(i64, i64, i64), usize> {
        let [a, b] = rows();
        let mut pairs = BTreeMap::new();
        for &(ka, ta) in &a {
            for &(kb, tb) in &b {
                if ka == kb && tb >= ta - 50 && tb <= ta + 100 {
                    *pairs.entry((ka, ta * 1000, tb * 1000)).or_insert(0) += 1;
                }
            }
        }
        pairs
    }

    fn pairs(batches: &[RecordBatch]) -> BTreeMap<(i64, i64, i64), usize> {
        let mut pairs = BTreeMap::new();
        for batch in batches {
            let k = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let micros = |i: usize| {
                let column = arrow::compute::cast(
                    batch.column(i),
                    &arrow::datatypes::DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Microsecond,
                        None,
                    ),
                )
                .unwrap();
                column
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap()
                    .clone()
            };
            let (ta, tb) = (micros(1), micros(2));
            for row in 0..batch.num_rows() {
                *pairs
                    .entry((k.value(row), ta.value(row), tb.value(row)))
                    .or_insert(0) += 1;
            }
        }
        pairs
    }

    /// The two streams in files under `dir`, their union and the planned
    /// interval join.
    async fn setup(dir: &std::path::Path) -> (Arc<StreamDef>, fibers_sql::ContinuousQuery) {
        let mut defs = Vec::new();
        for (name, rows) in ["a", "b"].into_iter().zip(rows()) {
            let path = dir.join(format!("{name}.jsonl"));
            let mut file = std::fs::File::create(&path).unwrap();
            for (k, t) in rows {
                let ts = chrono::DateTime::from_timestamp_millis(t).unwrap();
                writeln!(
                    file,
                    r#"{{"k":{k},"ts":"{}"}}"#,
                    ts.naive_utc().format("%Y-%m-%dT%H:%M:%S%.3f")
                )
                .unwrap();
            }
            let sql = format!(
                "CREATE STREAM {name} (k BIGINT, ts TIMESTAMP(3), \
                 WATERMARK FOR ts AS ts - INTERVAL '200' MILLISECOND) \
                 WITH (connector = 'file', path = '{}', format = 'json')",
                path.display()
            );
            let parsed = fibers_sql::parse_script(&sql).unwrap();
            let Statement::CreateStream(create) = &parsed[0].statement else {
                unreachable!()
            };
            defs.push(Arc::new(StreamDef::resolve(create, dir).unwrap()));
        }
        let mut objects = Readable::default();
        for def in &defs {
            objects.streams.insert(def.name.clone(), Arc::clone(def));
        }
        let select = "SELECT a.k, a.ts AS at, b.ts AS bt FROM a JOIN b \
                      ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '50' MILLISECOND \
                      AND a.ts + INTERVAL '100' MILLISECOND";
        let parsed = fibers_sql::parse_script(select).unwrap();
        let Statement::Query(query) = &parsed[0].statement else {
            unreachable!()
        };
        let datafusion::sql::sqlparser::ast::Statement::Query(query) = query.as_ref() else {
            unreachable!()
        };
        let planned = fibers_sql::plan_continuous_query("pairs", query, &objects)
            .await
            .unwrap();
        assert!(matches!(
            planned.join,
            Some(fibers_sql::StreamJoin::Interval {
                min_offset: -50_000_000,
                max_offset: 100_000_000,
                ..
            })
        ));
        let union = Arc::new(StreamDef::union(&defs[0], &defs[1]).unwrap());
        (union, planned)
    }

    /// The union source's batches, 16 rows at a time.
    fn input(union: &StreamDef) -> Vec<RecordBatch> {
        let mut source = union.open(16).unwrap();
        let mut batches = Vec::new();
        loop {
            match source.poll().unwrap() {
                Poll::Batch(_, batch) => batches.push(batch),
                Poll::Idle(_) => {}
                Poll::End => return batches,
            }
        }
    }

    /// The job's watermark over the union: per stream the largest time
    /// seen minus the delay, the smaller of the two.
    #[derive(Default)]
    struct Watermark {
        max_seen: [Option<i64>; 2],
    }

    impl Watermark {
        fn observe(&mut self, batch: &RecordBatch) -> i64 {
            let input = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt8Array>()
                .unwrap()
                .value(0) as usize;
            let latest = arrow::compute::max(&times(batch, 1).unwrap()).unwrap();
            let seen = &mut self.max_seen[input];
            *seen = Some(seen.map_or(latest, |s| s.max(latest)));
            match self.max_seen {
                [Some(a), Some(b)] => a.min(b) - DELAY_NANOS,
                _ => i64::MIN,
            }
        }
    }

    /// Feeds `input`, advancing the watermark after each batch, and cutting over to a restored operator after
    /// `cut` batches if given.
    async fn run_join(
        union: &Arc<StreamDef>,
        query: &fibers_sql::ContinuousQuery,
        input: &[RecordBatch],
        cut: Option<usize>,
    ) -> Vec<RecordBatch> {
        let new = || async {
            build(query, Some(union), query.state.task_ctx(), None)
                .await
                .unwrap()
        };
        let mut operator: Box<dyn Operator> = new().await;
        let mut out = Vec::new();
        let mut watermark = Watermark::default();
        for (n, batch) in input.iter().enumerate() {
            if Some(n) == cut {
                let state = operator.snapshot().unwrap();
                let schema = operator.state_schema().unwrap();
                let bytes = encode_ipc(&schema, &state.batches).unwrap();
                operator = new().await;
                operator
                    .restore(OperatorState {
                        emitted_through: state.emitted_through,
                        batches: decode_ipc(bytes.into()).unwrap(),
                        merged: Vec::new(),
                    })
                    .await
                    .unwrap();
            }
            let w = watermark.observe(batch);
            out.extend(operator.process(batch.clone()).await.unwrap());
            out.extend(operator.advance(w).await.unwrap());
        }
        out.extend(operator.advance(i64::MAX).await.unwrap());
        out
    }

    #[tokio::test]
    async fn an_interval_join_emits_every_pair_once_also_across_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let (union, query) = setup(dir.path()).await;
        let input = input(&union);
        assert!(input.len() > 50, "{} batches", input.len());
        let expected = expected();
        assert!(expected.len() > 100, "{} pairs", expected.len());
        assert_eq!(
            pairs(&run_join(&union, &query, &input, None).await),
            expected
        );
        for cut in [1, input.len() / 3, input.len() - 2] {
            let got = pairs(&run_join(&union, &query, &input, Some(cut)).await);
            assert_eq!(got, expected, "restored after {cut} batches");
        }
    }

    #[tokio::test]
    async fn interval_bounds_become_nanosecond_durations() {
        let dir = tempfile::tempdir().unwrap();
        let (_, query) = setup(dir.path()).await;
        let plan = query.plan.display_indent().to_string();
        assert!(
            plan.contains("a.ts - DurationNanosecond(\"50000000\")")
                && plan.contains("a.ts + DurationNanosecond(\"100000000\")"),
            "{plan}"
        );
        assert!(!plan.contains("IntervalMonthDayNano"), "{plan}");
    }

    #[tokio::test]
    async fn an_interval_join_keeps_only_rows_that_can_still_match() {
        let dir = tempfile::tempdir().unwrap();
        let (union, query) = setup(dir.path()).await;
        let input = input(&union);
        let mut operator = build(&query, Some(&union), query.state.task_ctx(), None)
            .await
            .unwrap();
        let mut watermark = Watermark::default();
        let mut most = 0;
        for batch in &input {
            let w = watermark.observe(batch);
            operator.process(batch.clone()).await.unwrap();
            operator.advance(w).await.unwrap();
            let kept: usize = operator
                .snapshot()
                .unwrap()
                .batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum();
            most = most.max(kept);
        }
        // The bound (150 ms), the delay (200 ms) and the batches' spread
        // (16 rows, about 200 ms) hold a few hundred rows at most; the
        // input has 1100.
        assert!(most < 400, "kept up to {most} rows");
        operator.advance(i64::MAX).await.unwrap();
        assert!(operator.snapshot().unwrap().batches.is_empty());
    }
}
