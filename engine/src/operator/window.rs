use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, TimestampNanosecondArray};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use fibers_sql::{WINDOW_END, WINDOW_START, Window};

use super::{Operator, WindowAssigner, check_state_schema, floor_to};
use crate::checkpoint::OperatorState;
use crate::plan::{BatchSlot, LeafExec, Reusable, input_slot, run};
use crate::{Error, Result};

/// Merge a pane's fresh partial states once it holds this many batches.
const COMPACT_AT: usize = 16;

/// A pane's partial states.
///
/// Fresh states are merged `COMPACT_AT` at a time into a run; a run is
/// then merged with the runs before it at most twice its size in bytes
/// (not rows: a `count(DISTINCT)` state grows within its rows).
/// Where states stop growing (a fixed set of groups) this keeps one run;
/// where they keep growing (many keys, `count(DISTINCT)` sets over a long
/// window) runs shrink geometrically, so each state value is merged about
/// log2(size) times rather than once every `COMPACT_AT` batches, which made
/// a long window's cost grow with the square of its events.
#[derive(Debug, Default)]
struct Pane {
    /// Merged states, oldest first.
    runs: Vec<RecordBatch>,
    /// States since the last merge.
    fresh: Vec<RecordBatch>,
}

impl Pane {
    fn states(&self) -> impl Iterator<Item = &RecordBatch> {
        self.runs.iter().chain(&self.fresh)
    }
}

/// Two-phase windowed aggregation through DataFusion.
///
/// Each arriving batch runs through the plan's partial aggregate, grouped by
/// (pane, keys); the partial states are kept per pane and compacted with a
/// partial-reduce aggregate. When the watermark passes a window's end, the
/// final aggregate runs over the states of the window's panes (with the pane
/// columns rewritten to the window's bounds), followed by the rest of the
/// plan (HAVING, projection, ORDER BY/LIMIT per window). State is
/// proportional to open panes × groups; each event is aggregated once, also
/// for hopping windows.
pub(crate) struct WindowAggregate {
    window: Window,
    pane: i64,
    assigner: WindowAssigner,
    ctx: Arc<TaskContext>,
    input: BatchSlot,
    partial: Reusable,
    reduce_input: BatchSlot,
    reduce: Reusable,
    emit_input: BatchSlot,
    emit: Reusable,
    state_schema: SchemaRef,
    /// Columns of `window_start` (and `window_end`, unless the planner
    /// dropped it from the grouping) in the partial states.
    start_column: usize,
    end_column: Option<usize>,
    panes: BTreeMap<i64, Pane>,
    /// Start of the last window emitted.
    emitted_through: Option<i64>,
    skip_through: Option<i64>,
}

impl WindowAggregate {
    pub fn new(
        window: Window,
        assigner: WindowAssigner,
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        skip_through: Option<i64>,
    ) -> Result<Self> {
        let split = Split::of(&plan)?;
        let state_schema = split.partial.schema();
        let column_of = |name: &str| {
            split
                .partial_agg()
                .group_expr()
                .expr()
                .iter()
                .position(|(e, _)| e.downcast_ref::<Column>().is_some_and(|c| c.name() == name))
        };
        let start_column = column_of(WINDOW_START).ok_or_else(|| {
            Error::invalid("GROUP BY must include window_start and window_end (plain columns, not expressions)")
        })?;
        let end_column = column_of(WINDOW_END);
        let input = input_slot(&split.partial)
            .ok_or_else(|| Error::invalid("the aggregation does not read its stream"))?;

        let (emit_input, emit) = split.emit_plan(&plan)?;
        let (reduce_input, reduce) = split.reduce_plan()?;
        Ok(WindowAggregate {
            pane: assigner.unit(),
            window,
            assigner,
            ctx,
            input,
            partial: Reusable::new(Arc::clone(&split.partial)),
            reduce_input,
            reduce: Reusable::new(reduce),
            emit_input,
            emit: Reusable::new(emit),
            state_schema,
            start_column,
            end_column,
            panes: BTreeMap::new(),
            emitted_through: None,
            skip_through,
        })
    }

    /// Appends partial states to their panes, compacting a pane that grew.
    async fn add_states(&mut self, batch: RecordBatch) -> Result<()> {
        let starts = batch
            .column(self.start_column)
            .as_primitive::<TimestampNanosecondType>();
        let first = starts.value(0);
        let single = starts.values().iter().all(|&s| s == first);
        let parts = if single {
            vec![(first, batch)]
        } else {
            let distinct: BTreeSet<i64> = starts.values().iter().copied().collect();
            let mut parts = Vec::with_capacity(distinct.len());
            for pane in distinct {
                let key = TimestampNanosecondArray::new_scalar(pane);
                let mask = eq(starts, &key)?;
                parts.push((pane, filter_record_batch(&batch, &mask)?));
            }
            parts
        };
        for (pane, part) in parts {
            let states = self.panes.entry(pane).or_default();
            states.fresh.push(part);
            if states.fresh.len() < COMPACT_AT {
                continue;
            }
            let fresh = std::mem::take(&mut states.fresh);
            let mut runs = std::mem::take(&mut states.runs);
            let mut merged = self.reduce_states(fresh).await?;
            while let Some(last) = runs
                .pop_if(|last| last.get_array_memory_size() <= 2 * merged.get_array_memory_size())
            {
                merged = self.reduce_states(vec![last, merged]).await?;
            }
            runs.push(merged);
            if let Some(states) = self.panes.get_mut(&pane) {
                states.runs = runs;
            }
        }
        Ok(())
    }

    /// Merges partial states into one batch.
    async fn reduce_states(&mut self, states: Vec<RecordBatch>) -> Result<RecordBatch> {
        let reduced = run(&mut self.reduce, &self.reduce_input, states, &self.ctx).await?;
        Ok(concat_batches(&self.state_schema, &reduced)?)
    }

    /// Window starts with at least one pane of data, ending at or before
    /// `watermark`, not yet emitted.
    fn closing_windows(&self, watermark: i64) -> BTreeSet<i64> {
        let (size, slide) = (i128::from(self.window.size), i128::from(self.window.slide));
        let mut starts = BTreeSet::new();
        for &pane in self.panes.keys() {
            let mut start = i128::from(floor_to(pane, self.window.slide));
            while start + size > i128::from(pane) {
                let closed = start + size <= i128::from(watermark);
                let new = self.emitted_through.is_none_or(|e| start > i128::from(e));
                if closed && new {
                    starts.insert(start as i64);
                }
                start -= slide;
            }
        }
        starts
    }

    /// Rewrites pane bounds in partial states to the window's bounds, so the
    /// final aggregate merges all panes of a window into one group.
    fn as_window(&self, batch: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let tz = match batch.schema().field(self.start_column).data_type() {
            arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let constant = |v: i64| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from_value(v, rows).with_timezone_opt(tz.clone()))
        };
        let mut columns = batch.columns().to_vec();
        columns[self.start_column] = constant(start);
        if let Some(end_column) = self.end_column {
            columns[end_column] = constant(end);
        }
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }
}

#[async_trait]
impl Operator for WindowAggregate {
    async fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let batch = self.assigner.assign(batch)?;
        let states = run(&mut self.partial, &self.input, vec![batch], &self.ctx).await?;
        for state in states {
            self.add_states(state).await?;
        }
        Ok(Vec::new())
    }

    /// A row's arithmetic fails in the partial aggregate, before any state
    /// is added.
    fn isolates_rows(&self) -> bool {
        true
    }

    async fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for start in self.closing_windows(watermark) {
            self.emitted_through = Some(start);
            let end = start.saturating_add(self.window.size);
            if self.skip_through.is_some_and(|s| end <= s) {
                continue;
            }
            let mut states = Vec::new();
            for (_, pane) in self.panes.range(start..end) {
                for batch in pane.states() {
                    if self.pane == self.window.size {
                        states.push(batch.clone());
                    } else {
                        states.push(self.as_window(batch, start, end)?);
                    }
                }
            }
            out.extend(run(&mut self.emit, &self.emit_input, states, &self.ctx).await?);
        }
        // Panes before the first window that can still close are done.
        let (size, slide) = (i128::from(self.window.size), i128::from(self.window.slide));
        let first_open = (i128::from(watermark) - size).div_euclid(slide) * slide + slide;
        let keep_from = i64::try_from(first_open).unwrap_or(i64::MAX);
        self.panes = self.panes.split_off(&keep_from);
        Ok(out)
    }

    fn snapshot(&self) -> Result<OperatorState> {
        let mut state = OperatorState {
            emitted_through: self.emitted_through,
            ..OperatorState::default()
        };
        for pane in self.panes.values() {
            let runs = pane.runs.iter().map(|b| (b, true));
            for (batch, merged) in runs.chain(pane.fresh.iter().map(|b| (b, false))) {
                state.batches.push(batch.clone());
                state.merged.push(merged);
            }
        }
        Ok(state)
    }

    fn state_schema(&self) -> Option<SchemaRef> {
        Some(Arc::clone(&self.state_schema))
    }

    async fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.panes.clear();
        for (i, batch) in state.batches.into_iter().enumerate() {
            check_state_schema(&batch, &self.state_schema, "window")?;
            if batch.num_rows() == 0 {
                continue;
            }
            if state.merged.get(i).copied().unwrap_or(false) {
                // A run holds one pane's states (see `add_states`).
                let pane = batch
                    .column(self.start_column)
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .first()
                    .copied()
                    .ok_or_else(|| Error::invalid("an empty merged window state"))?;
                self.panes.entry(pane).or_default().runs.push(batch);
            } else {
                self.add_states(batch).await?;
            }
        }
        self.emitted_through = state.emitted_through;
        Ok(())
    }
}

/// A physical plan cut at its aggregation: the partial aggregate (with
/// everything below it) and the final aggregate above it.
pub(super) struct Split {
    pub partial: Arc<dyn ExecutionPlan>,
    final_: Arc<dyn ExecutionPlan>,
}

impl Split {
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Result<Self> {
        let final_ = find(plan, &|agg| {
            matches!(
                agg.mode(),
                AggregateMode::Final | AggregateMode::FinalPartitioned
            )
        })
        .ok_or_else(|| {
            Error::invalid(format!(
                "expected a final aggregate in the plan:\n{}",
                display(plan)
            ))
        })?;
        let partial =
            find(&final_, &|agg| agg.mode() == &AggregateMode::Partial).ok_or_else(|| {
                Error::invalid(format!(
                    "expected a partial aggregate in the plan:\n{}",
                    display(plan)
                ))
            })?;
        Ok(Split { partial, final_ })
    }

    /// The plan with the partial aggregate (and everything below it)
    /// replaced by a leaf yielding partial states put into the returned
    /// slot: the final aggregate and the rest of the plan, run when a
    /// window closes.
    pub fn emit_plan(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
    ) -> Result<(BatchSlot, Arc<dyn ExecutionPlan>)> {
        let input = BatchSlot::default();
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(LeafExec::stream(
            self.partial.schema(),
            None,
            input.clone(),
        )?);
        let partial_ptr = Arc::as_ptr(&self.partial) as *const ();
        let emit = Arc::clone(plan)
            .transform_down(|node| {
                Ok(if Arc::as_ptr(&node) as *const () == partial_ptr {
                    Transformed::yes(Arc::clone(&leaf))
                } else {
                    Transformed::no(node)
                })
            })?
            .data;
        Ok((input, emit))
    }

    /// A partial-reduce aggregate merging the partial states put into the
    /// returned slot into one state per group, in the same schema.
    pub fn reduce_plan(&self) -> Result<(BatchSlot, Arc<dyn ExecutionPlan>)> {
        let state_schema = self.partial.schema();
        let input = BatchSlot::default();
        let leaf = Arc::new(LeafExec::stream(
            Arc::clone(&state_schema),
            None,
            input.clone(),
        )?);
        let final_agg = self.final_agg();
        let reduce = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            final_agg.group_expr().clone(),
            final_agg.aggr_expr().to_vec(),
            vec![None; final_agg.aggr_expr().len()],
            leaf,
            Arc::clone(&state_schema),
        )?;
        if reduce.schema().fields() != state_schema.fields() {
            return Err(Error::invalid(format!(
                "cannot compact partial aggregates: state schema {} differs from {}",
                reduce.schema(),
                state_schema
            )));
        }
        Ok((input, Arc::new(reduce)))
    }

    pub fn partial_agg(&self) -> &AggregateExec {
        self.partial
            .downcast_ref::<AggregateExec>()
            .expect("Split::of only keeps AggregateExec nodes")
    }

    fn final_agg(&self) -> &AggregateExec {
        self.final_
            .downcast_ref::<AggregateExec>()
            .expect("Split::of only keeps AggregateExec nodes")
    }
}

fn find(
    plan: &Arc<dyn ExecutionPlan>,
    pred: &dyn Fn(&AggregateExec) -> bool,
) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>()
        && pred(agg)
    {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(|c| find(c, pred))
}

fn display(plan: &Arc<dyn ExecutionPlan>) -> String {
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string()
}
