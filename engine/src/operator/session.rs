//! `SESSION(stream, time_col, gap)`: per key, a session is a maximal run of
//! events less than `gap` apart; it spans `[first event, last event + gap)`
//! and closes when the watermark reaches its end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, TimestampNanosecondArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use fibers_sql::{WINDOW_END, WINDOW_START};

use super::window::Split;
use super::{Operator, WindowAssigner, check_state_schema};
use crate::checkpoint::OperatorState;
use crate::plan::{BatchSlot, LeafExec, Reusable, input_slot, run};
use crate::{Error, Result};

/// Compact the partial states once this many batches of them are kept.
const COMPACT_AT: usize = 16;

/// Session-window aggregation through DataFusion.
///
/// Each arriving batch first runs through the part of the plan below its
/// aggregate (filters, projections), so rows the query filters out do not
/// form or extend sessions. Each remaining row is assigned to a session of
/// its key, creating, extending or merging sessions; the row's
/// `window_start`/`window_end` columns are set to the session's *id* and
/// the batch runs through the plan's partial aggregate. The partial states
/// are kept (compacted with a partial-reduce aggregate, which also merges
/// the states of sessions an event bridged). When the watermark reaches a
/// session's end, its states, with the id replaced by the session's bounds,
/// go through the final aggregate and the rest of the plan.
///
/// State is one partial state per open session (plus the states of batches
/// since the last compaction), never raw events.
pub(crate) struct SessionAggregate {
    gap: i64,
    assigner: WindowAssigner,
    ctx: Arc<TaskContext>,
    /// The plan below the partial aggregate, run over each arriving batch.
    rows_input: BatchSlot,
    rows: Reusable,
    /// `window_start` in the rows `rows` yields: the row's event time, as
    /// the assigner set it, until replaced by its session's id.
    rows_start: usize,
    rows_end: usize,
    /// The session key: the GROUP BY expressions other than the window
    /// columns, over the rows `rows` yields.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The same key in the partial states (their leading group columns).
    state_keys: Vec<usize>,
    /// `None` for a query grouped by the window columns alone.
    converter: Option<RowConverter>,
    partial_input: BatchSlot,
    partial: Reusable,
    reduce_input: BatchSlot,
    reduce: Reusable,
    emit_input: BatchSlot,
    emit: Reusable,
    state_schema: SchemaRef,
    state_start: usize,
    state_end: usize,
    time_zone: Option<Arc<str>>,
    sessions: Sessions,
    /// Partial states; their window columns hold session ids.
    states: Vec<RecordBatch>,
    /// End of the last session emitted (the largest such end).
    emitted_through: Option<i64>,
    skip_through: Option<i64>,
}

impl SessionAggregate {
    /// The operator for `plan`, an aggregation grouped by keys,
    /// `window_start` and `window_end` over rows `assigner` stamps with
    /// their own event's session.
    ///
    /// `skip_through`: sessions ending at or before this watermark were
    /// committed by an earlier run and are not emitted again.
    pub fn new(
        gap: i64,
        assigner: WindowAssigner,
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        skip_through: Option<i64>,
    ) -> Result<Self> {
        let split = Split::of(&plan)?;
        let partial = split.partial_agg();
        if !partial.group_expr().is_single() {
            return Err(Error::invalid(
                "a SESSION window needs a plain GROUP BY (no GROUPING SETS, CUBE or ROLLUP)",
            ));
        }
        let below = partial.input().clone();
        let group = partial.group_expr().expr();
        let named = |name: &str| {
            group
                .iter()
                .position(|(e, _)| e.downcast_ref::<Column>().is_some_and(|c| c.name() == name))
        };
        let (Some(start_group), Some(end_group)) = (named(WINDOW_START), named(WINDOW_END)) else {
            return Err(Error::invalid(
                "GROUP BY must include window_start and window_end (plain columns, not \
                 expressions) when aggregating over a SESSION window",
            ));
        };
        let input_column = |position: usize| {
            group[position]
                .0
                .downcast_ref::<Column>()
                .map(|c| c.index())
                .ok_or_else(|| Error::invalid("a window column is not a plain column"))
        };
        let rows_start = input_column(start_group)?;
        let rows_end = input_column(end_group)?;
        let mut keys = Vec::new();
        let mut state_keys = Vec::new();
        for (position, (expr, _)) in group.iter().enumerate() {
            if position != start_group && position != end_group {
                keys.push(Arc::clone(expr));
                // Group columns lead a partial aggregate's output, in order.
                state_keys.push(position);
            }
        }
        let below_schema = below.schema();
        let converter = if keys.is_empty() {
            None
        } else {
            let fields = keys
                .iter()
                .map(|k| Ok(SortField::new(k.data_type(&below_schema)?)))
                .collect::<Result<Vec<_>>>()?;
            Some(RowConverter::new(fields)?)
        };
        let time_zone = match below_schema.field(rows_start).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            other => {
                return Err(Error::invalid(format!(
                    "window_start has type {other}, expected a timestamp"
                )));
            }
        };
        let rows_input = input_slot(&below)
            .ok_or_else(|| Error::invalid("the aggregation does not read its stream"))?;
        let partial_input = BatchSlot::default();
        let partial_leaf: Arc<dyn ExecutionPlan> = Arc::new(LeafExec::stream(
            Arc::clone(&below_schema),
            None,
            partial_input.clone(),
        )?);
        let partial_over_rows = Arc::clone(&split.partial).replace_children(
            vec![partial_leaf],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        let state_schema = split.partial.schema();
        let (emit_input, emit) = split.emit_plan(&plan)?;
        let (reduce_input, reduce) = split.reduce_plan()?;
        Ok(SessionAggregate {
            gap,
            assigner,
            ctx,
            rows_input,
            rows: Reusable::new(below),
            rows_start,
            rows_end,
            keys,
            state_keys,
            converter,
            partial_input,
            partial: Reusable::new(partial_over_rows),
            reduce_input,
            reduce: Reusable::new(reduce),
            emit_input,
            emit: Reusable::new(emit),
            state_schema,
            state_start: start_group,
            state_end: end_group,
            time_zone,
            sessions: Sessions::default(),
            states: Vec::new(),
            emitted_through: None,
            skip_through,
        })
    }

    /// The session key of each row, as comparable bytes (empty when the
    /// query groups by the window columns alone).
    fn row_keys(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<Vec<Box<[u8]>>> {
        match &self.converter {
            None => Ok(vec![Box::default(); rows]),
            Some(converter) => {
                let converted = converter.convert_columns(&columns)?;
                Ok(converted.iter().map(|row| row.as_ref().into()).collect())
            }
        }
    }

    /// Assigns the rows' events to sessions; returns the rows with their
    /// window columns set to their session's id.
    fn assign_sessions(&mut self, rows: RecordBatch) -> Result<RecordBatch> {
        let count = rows.num_rows();
        let key_columns = self
            .keys
            .iter()
            .map(|k| k.evaluate(&rows)?.into_array(count))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let keys = self.row_keys(key_columns, count)?;
        let times = rows
            .column(self.rows_start)
            .as_primitive::<TimestampNanosecondType>();
        if times.null_count() > 0 {
            return Err(Error::invalid(
                "a row without an event time reached a SESSION window",
            ));
        }
        let mut ids = Vec::with_capacity(count);
        for (key, &time) in keys.iter().zip(times.values()) {
            ids.push(self.sessions.add(key, time, self.gap));
        }
        // An event later in the batch may have merged an earlier row's session.
        let ids: Vec<i64> = ids.iter().map(|&id| self.sessions.resolve(id)).collect();
        let ids = self.timestamps(ids);
        let mut columns = rows.columns().to_vec();
        columns[self.rows_start] = Arc::clone(&ids);
        columns[self.rows_end] = ids;
        Ok(RecordBatch::try_new(rows.schema(), columns)?)
    }

    fn timestamps(&self, values: Vec<i64>) -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(values).with_timezone_opt(self.time_zone.clone()))
    }

    /// `batch` (partial states) with the window columns set to `start` and
    /// `end` of each row.
    fn with_bounds(
        &self,
        batch: &RecordBatch,
        start: Vec<i64>,
        end: Vec<i64>,
    ) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        columns[self.state_start] = self.timestamps(start);
        columns[self.state_end] = self.timestamps(end);
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }

    /// The session id of each partial state row, after merges.
    fn state_ids(&self, batch: &RecordBatch) -> Vec<i64> {
        batch
            .column(self.state_start)
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|&id| self.sessions.resolve(id))
            .collect()
    }

    /// Merges the kept partial states into one state per session.
    async fn compact(&mut self) -> Result<()> {
        let mut states = Vec::with_capacity(self.states.len());
        for batch in std::mem::take(&mut self.states) {
            let ids = self.state_ids(&batch);
            states.push(self.with_bounds(&batch, ids.clone(), ids)?);
        }
        self.sessions.forget_merges();
        let reduced = run(&mut self.reduce, &self.reduce_input, states, &self.ctx).await?;
        if !reduced.is_empty() {
            self.states = vec![concat_batches(&self.state_schema, &reduced)?];
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for SessionAggregate {
    async fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let batch = self.assigner.assign(batch)?;
        let rows = run(&mut self.rows, &self.rows_input, vec![batch], &self.ctx).await?;
        let mut assigned = Vec::with_capacity(rows.len());
        for rows in rows {
            assigned.push(self.assign_sessions(rows)?);
        }
        if assigned.is_empty() {
            return Ok(Vec::new());
        }
        let states = run(&mut self.partial, &self.partial_input, assigned, &self.ctx).await?;
        self.states.extend(states);
        if self.states.len() >= COMPACT_AT {
            self.compact().await?;
        }
        Ok(Vec::new())
    }

    async fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        let closed = self.sessions.close_through(watermark);
        if closed.is_empty() {
            return Ok(Vec::new());
        }
        let skip_through = self.skip_through;
        let mut closing = Vec::new();
        let mut open = Vec::new();
        for batch in std::mem::take(&mut self.states) {
            let ids = self.state_ids(&batch);
            let (mut starts, mut ends) = (ids.clone(), ids.clone());
            let mut emit = Vec::with_capacity(ids.len());
            let mut keep = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                match closed.get(id) {
                    Some(&(start, end)) => {
                        starts[i] = start;
                        ends[i] = end;
                        emit.push(skip_through.is_none_or(|s| end > s));
                        keep.push(false);
                    }
                    None => {
                        emit.push(false);
                        keep.push(true);
                    }
                }
            }
            let batch = self.with_bounds(&batch, starts, ends)?;
            let emit = filter_record_batch(&batch, &BooleanArray::from(emit))?;
            if emit.num_rows() > 0 {
                closing.push(emit);
            }
            let keep = filter_record_batch(&batch, &BooleanArray::from(keep))?;
            if keep.num_rows() > 0 {
                open.push(keep);
            }
        }
        // Every kept state now names its session's surviving id.
        self.sessions.forget_merges();
        self.states = open;
        let last_end = closed.values().map(|&(_, end)| end).max();
        self.emitted_through = self.emitted_through.max(last_end);
        if closing.is_empty() {
            return Ok(Vec::new());
        }
        run(&mut self.emit, &self.emit_input, closing, &self.ctx).await
    }

    /// The partial states of the open sessions, with the window columns
    /// holding each session's bounds (not the ids, which a restored
    /// operator assigns anew).
    fn snapshot(&self) -> Result<OperatorState> {
        let mut batches = Vec::with_capacity(self.states.len());
        for batch in &self.states {
            let ids = self.state_ids(batch);
            let mut starts = Vec::with_capacity(ids.len());
            let mut ends = Vec::with_capacity(ids.len());
            for id in ids {
                let (start, end) = self.sessions.bounds(id).ok_or_else(|| {
                    Error::invalid(format!("session {id} has partial states but is not open"))
                })?;
                starts.push(start);
                ends.push(end);
            }
            batches.push(self.with_bounds(batch, starts, ends)?);
        }
        Ok(OperatorState {
            emitted_through: self.emitted_through,
            batches,
            merged: Vec::new(),
        })
    }

    fn state_schema(&self) -> Option<SchemaRef> {
        Some(Arc::clone(&self.state_schema))
    }

    async fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.sessions = Sessions::default();
        self.states.clear();
        for batch in state.batches {
            check_state_schema(&batch, &self.state_schema, "session")?;
            if batch.num_rows() == 0 {
                continue;
            }
            let key_columns = self
                .state_keys
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect();
            let keys = self.row_keys(key_columns, batch.num_rows())?;
            let bounds = |column: usize| {
                batch
                    .column(column)
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec()
            };
            let (starts, ends) = (bounds(self.state_start), bounds(self.state_end));
            let ids: Vec<i64> = keys
                .iter()
                .zip(starts.iter().zip(&ends))
                .map(|(key, (&start, &end))| self.sessions.insert(key, start, end))
                .collect();
            let batch = self.with_bounds(&batch, ids.clone(), ids)?;
            self.states.push(batch);
        }
        if self.states.len() >= COMPACT_AT {
            self.compact().await?;
        }
        self.emitted_through = state.emitted_through;
        Ok(())
    }
}

/// An open session of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    key: Arc<[u8]>,
    /// The first event's time.
    start: i64,
    /// The last event's time + the gap (exclusive).
    end: i64,
}

/// The open sessions of every key, by id.
///
/// A key's sessions never overlap: an event whose `[time, time + gap)`
/// overlaps one or more sessions joins them into one, which keeps the id
/// of the earliest; the others are recorded in `merged` so partial states
/// already stamped with their ids find the surviving session.
#[derive(Debug, Default)]
struct Sessions {
    next_id: i64,
    open: HashMap<i64, Session>,
    /// Per key, its open sessions by start.
    by_key: HashMap<Arc<[u8]>, BTreeMap<i64, i64>>,
    /// (end, id) of every open session, to find those the watermark closes.
    by_end: BTreeSet<(i64, i64)>,
    /// Merged-away id -> the id it was merged into.
    merged: HashMap<i64, i64>,
}

impl Sessions {
    /// Adds an event of `key` at `time`; returns its session's id.
    fn add(&mut self, key: &[u8], time: i64, gap: i64) -> i64 {
        let (lo, hi) = (time, time.saturating_add(gap));
        // Sessions of a key are disjoint, so ordered by start they are
        // ordered by end too: walk back from the last one starting before
        // `hi` while they end after `lo`.
        let overlapping: Vec<i64> = match self.by_key.get(key) {
            None => Vec::new(),
            Some(sessions) => sessions
                .range(..hi)
                .rev()
                .map_while(|(_, &id)| self.open.get(&id).filter(|s| s.end > lo).map(|_| id))
                .collect(),
        };
        let Some(&survivor) = overlapping.last() else {
            let id = self.next_id;
            self.next_id += 1;
            let key = self
                .by_key
                .get_key_value(key)
                .map_or_else(|| Arc::from(key), |(k, _)| Arc::clone(k));
            self.insert_session(
                id,
                Session {
                    key,
                    start: lo,
                    end: hi,
                },
            );
            return id;
        };
        let (mut start, mut end) = (lo, hi);
        let mut shared_key = None;
        for &id in &overlapping {
            if let Some(session) = self.remove_session(id) {
                start = start.min(session.start);
                end = end.max(session.end);
                shared_key = Some(session.key);
                if id != survivor {
                    self.merged.insert(id, survivor);
                }
            }
        }
        let key = shared_key.unwrap_or_else(|| Arc::from(key));
        self.insert_session(survivor, Session { key, start, end });
        survivor
    }

    /// Re-creates a session from a checkpoint (its bounds already final);
    /// returns its new id, the same for every state row of the session.
    fn insert(&mut self, key: &[u8], start: i64, end: i64) -> i64 {
        if let Some(&id) = self.by_key.get(key).and_then(|s| s.get(&start)) {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert_session(
            id,
            Session {
                key: Arc::from(key),
                start,
                end,
            },
        );
        id
    }

    /// The surviving session `id` was merged into (itself if not merged).
    fn resolve(&self, mut id: i64) -> i64 {
        while let Some(&into) = self.merged.get(&id) {
            id = into;
        }
        id
    }

    /// Bounds of the open session `id` (after merges).
    fn bounds(&self, id: i64) -> Option<(i64, i64)> {
        self.open.get(&self.resolve(id)).map(|s| (s.start, s.end))
    }

    /// Removes the sessions ending at or before `watermark`; returns their
    /// bounds by id.
    fn close_through(&mut self, watermark: i64) -> HashMap<i64, (i64, i64)> {
        let mut closed = HashMap::new();
        while let Some(&(end, id)) = self.by_end.first() {
            if end > watermark {
                break;
            }
            if let Some(session) = self.remove_session(id) {
                closed.insert(id, (session.start, session.end));
            }
        }
        closed
    }

    /// Called once no partial state names a merged-away id any more.
    fn forget_merges(&mut self) {
        self.merged.clear();
    }

    fn insert_session(&mut self, id: i64, session: Session) {
        self.by_key
            .entry(Arc::clone(&session.key))
            .or_default()
            .insert(session.start, id);
        self.by_end.insert((session.end, id));
        self.open.insert(id, session);
    }

    fn remove_session(&mut self, id: i64) -> Option<Session> {
        let session = self.open.remove(&id)?;
        self.by_end.remove(&(session.end, id));
        if let Some(sessions) = self.by_key.get_mut(&session.key) {
            sessions.remove(&session.start);
            if sessions.is_empty() {
                self.by_key.remove(&session.key);
            }
        }
        Some(session)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::{QueryRunner, stocks_schema};

    /// A stock feed whose watermark trails the largest event time by 10 s.
    const STREAM: &str =
        "CREATE STREAM trades WITH (connector = 'stocks', rate = '0', disorder = '10s')";
    const PER_SYMBOL: &str =
        "SELECT symbol, window_start, window_end, count(*) AS n, sum(volume) AS v
         FROM SESSION(trades, ts, INTERVAL '10' SECOND) GROUP BY symbol, window_start, window_end";
    const T0: i64 = 1_735_828_200_000_000_000;
    const SECOND: i64 = 1_000_000_000;

    /// One trade of `symbol` at `T0 + seconds`, of `volume`.
    fn trade(symbol: &str, seconds: i64, volume: i64) -> RecordBatch {
        RecordBatch::try_new(
            stocks_schema(),
            vec![
                Arc::new(StringArray::from(vec![symbol])),
                Arc::new(Float64Array::from(vec![1.0])),
                Arc::new(Int64Array::from(vec![volume])),
                Arc::new(TimestampNanosecondArray::from(vec![T0 + seconds * SECOND])),
            ],
        )
        .unwrap()
    }

    /// (symbol, start s, end s, n, v), sorted.
    type Sessions = Vec<(String, i64, i64, i64, i64)>;

    fn sessions(batches: &[RecordBatch]) -> Sessions {
        let mut out = Vec::new();
        for b in batches {
            let seconds = |i: usize, row: usize| {
                (b.column(i)
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    - T0)
                    / SECOND
            };
            for row in 0..b.num_rows() {
                out.push((
                    b.column(0).as_string::<i32>().value(row).to_string(),
                    seconds(1, row),
                    seconds(2, row),
                    b.column(3).as_primitive::<Int64Type>().value(row),
                    b.column(4).as_primitive::<Int64Type>().value(row),
                ));
            }
        }
        out.sort();
        out
    }

    fn session(symbol: &str, start: i64, end: i64, n: i64, v: i64) -> (String, i64, i64, i64, i64) {
        (symbol.to_string(), start, end, n, v)
    }

    /// Pushes one trade per batch, returning what each push emitted and
    /// what the end of input emitted.
    async fn run_trades(trades: &[(&str, i64, i64)]) -> (Vec<Sessions>, Sessions) {
        let mut runner = QueryRunner::new(STREAM, PER_SYMBOL).await.unwrap();
        let mut pushes = Vec::new();
        for &(symbol, seconds, volume) in trades {
            let out = runner.push(trade(symbol, seconds, volume)).await.unwrap();
            pushes.push(sessions(&out));
        }
        let last = sessions(&runner.finish().await.unwrap());
        (pushes, last)
    }

    #[tokio::test]
    async fn an_out_of_order_event_bridging_the_gap_merges_two_sessions() {
        // a@0 -> [0, 10); a@15 -> [15, 25), watermark 5; a@8 (not late)
        // covers [8, 18) and joins both into [0, 25); b@40 moves the
        // watermark to 30, closing it.
        let (pushes, last) =
            run_trades(&[("a", 0, 1), ("a", 15, 2), ("a", 8, 4), ("b", 40, 8)]).await;
        assert!(pushes[..3].iter().all(Vec::is_empty), "{pushes:?}");
        assert_eq!(pushes[3], vec![session("a", 0, 25, 3, 7)]);
        assert_eq!(last, vec![session("b", 40, 50, 1, 8)]);
    }

    #[tokio::test]
    async fn an_out_of_order_event_extends_a_session_backwards() {
        // a@12 -> [12, 22); a@5 (watermark 2) -> [5, 22).
        let (_, last) = run_trades(&[("a", 12, 1), ("a", 5, 2)]).await;
        assert_eq!(last, vec![session("a", 5, 22, 2, 3)]);
    }

    #[tokio::test]
    async fn sessions_are_per_key() {
        // b@5 is within the gap of a@0 and a@9, but of another key.
        let (_, last) = run_trades(&[("a", 0, 1), ("b", 5, 2), ("a", 9, 4)]).await;
        assert_eq!(
            last,
            vec![session("a", 0, 19, 2, 5), session("b", 5, 15, 1, 2)]
        );
    }

    #[tokio::test]
    async fn events_exactly_one_gap_apart_are_separate_sessions() {
        // [0, 10) and [10, 20) only touch; a@19 is less than a gap after a@10.
        let (_, last) = run_trades(&[("a", 0, 1), ("a", 10, 2), ("a", 19, 4)]).await;
        assert_eq!(
            last,
            vec![session("a", 0, 10, 1, 1), session("a", 10, 29, 2, 6)]
        );
    }

    #[tokio::test]
    async fn a_session_closes_when_the_watermark_reaches_its_end() {
        // a@0 -> [0, 10). b@19 puts the watermark at 9: still open; b@20 at 10.
        let (pushes, last) = run_trades(&[("a", 0, 1), ("b", 19, 2), ("b", 20, 4)]).await;
        assert_eq!(pushes[1], vec![]);
        assert_eq!(pushes[2], vec![session("a", 0, 10, 1, 1)]);
        assert_eq!(last, vec![session("b", 19, 30, 2, 6)]);
    }

    #[tokio::test]
    async fn merges_survive_compaction() {
        // One trade per batch, so the states of the growing session are
        // compacted every 16 batches. a@0..=15 -> [0, 25); a@30 opens
        // [30, 40) (watermark 20); a@22 bridges them into [0, 40); a@31..=44
        // extend it to [0, 54); a@60 opens [60, 70) (watermark 50); a@52
        // bridges again: one session [0, 70) of 16 + 2 + 14 + 2 = 34 trades.
        let mut times: Vec<i64> = (0..=15).collect();
        times.extend([30, 22]);
        times.extend(31..=44);
        times.extend([60, 52]);
        let trades: Vec<_> = times.iter().map(|&t| ("a", t, 1)).collect();
        let (pushes, last) = run_trades(&trades).await;
        assert!(pushes.iter().all(Vec::is_empty), "{pushes:?}");
        assert_eq!(last, vec![session("a", 0, 70, 34, 34)]);
    }

    #[test]
    fn sessions_merge_and_close_and_leave_nothing_behind() {
        let mut s = super::Sessions::default();
        let gap = 10;
        let a0 = s.add(b"a", 0, gap);
        let a15 = s.add(b"a", 15, gap);
        let b5 = s.add(b"b", 5, gap);
        assert_eq!(s.open.len(), 3);
        // Bridges a0 and a15: the earliest survives, a15 now resolves to it.
        let a8 = s.add(b"a", 8, gap);
        assert_eq!(a8, a0);
        assert_eq!(s.resolve(a15), a0);
        assert_eq!(s.bounds(a15), Some((0, 25)));
        assert_ne!(s.resolve(b5), a0);
        // Only b's session ends by 15.
        let closed = s.close_through(15);
        assert_eq!(closed, HashMap::from([(b5, (5, 15))]));
        let closed = s.close_through(25);
        assert_eq!(closed, HashMap::from([(a0, (0, 25))]));
        s.forget_merges();
        assert!(s.open.is_empty() && s.by_key.is_empty() && s.by_end.is_empty());
        assert!(s.merged.is_empty());
    }

    #[test]
    fn restored_sessions_are_found_by_key_and_start() {
        let mut s = super::Sessions::default();
        let one = s.insert(b"a", 0, 25);
        assert_eq!(s.insert(b"a", 0, 25), one);
        let other = s.insert(b"b", 0, 25);
        assert_ne!(one, other);
        // A restored session keeps merging with new events.
        assert_eq!(s.add(b"a", 20, 10), one);
        assert_eq!(s.bounds(one), Some((0, 30)));
    }
}
