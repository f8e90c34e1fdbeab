//! Running DataFusion physical plans over batches the engine hands them.
//!
//! A continuous query's plan is made once; its stream leaf is a
//! [`LeafExec`] that yields whatever batches the operator put into its
//! [`BatchSlot`] before an execution (a reference table's leaf yields the
//! table's current rows). The same plan then runs once per batch (stateless parts,
//! partial aggregation) or once per closing window (final aggregation).

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::Result as DFResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, EmissionType, ReplaceChildrenOptions, reset_plan_states,
};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream, collect,
};

use crate::Result;
use crate::table::Snapshot;

/// The batches a plan's leaf yields on its next execution.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchSlot(Arc<Mutex<Vec<RecordBatch>>>, Option<Arc<str>>);

impl BatchSlot {
    /// A slot for the rows of stream `stream`.
    pub fn for_stream(stream: &str) -> Self {
        BatchSlot(Arc::default(), Some(stream.into()))
    }

    /// The stream whose rows the slot holds, if it was made for one.
    pub fn stream(&self) -> Option<&str> {
        self.1.as_deref()
    }

    pub fn put(&self, batches: Vec<RecordBatch>) {
        *self.lock() = batches;
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn get(&self) -> Vec<RecordBatch> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordBatch>> {
        // The slot holds plain data; a panic elsewhere cannot corrupt it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Executions of a plan between rebuilds of its nodes. Every execution
/// registers fresh metrics in the plan's nodes, so a plan run forever must
/// be rebuilt now and then to keep memory bounded; rebuilding on every run
/// would cost more than running small batches through it.
const REBUILD_EVERY: usize = 256;

/// The row count a stream's leaf reports to the optimizer: more than any
/// reference table.
const STREAM_ROWS: usize = 1 << 40;

/// A physical plan the engine runs many times, each time over new input.
#[derive(Debug, Clone)]
pub(crate) struct Reusable {
    plan: Arc<dyn ExecutionPlan>,
    /// Whether a node holds per-execution state (the dynamic filters of
    /// TopK and some aggregates, a join's collected build side when it
    /// holds stream rows) that must be reset between runs.
    stateful: bool,
    /// The reference tables in the plan, with the generation of their rows
    /// the plan last ran with: a lookup join keeps the table hashed (its
    /// build side) from one run to the next, until the table changes.
    tables: Vec<(Arc<dyn ExecutionPlan>, u64)>,
    executions: usize,
}

impl Reusable {
    pub fn new(plan: Arc<dyn ExecutionPlan>) -> Self {
        fn stateful(plan: &Arc<dyn ExecutionPlan>) -> bool {
            !plan.dynamic_expressions_produced().is_empty()
                || !keeps_build_side(plan)
                || plan.children().into_iter().any(stateful)
        }
        fn tables(plan: &Arc<dyn ExecutionPlan>, found: &mut Vec<(Arc<dyn ExecutionPlan>, u64)>) {
            if let Some(generation) = plan
                .downcast_ref::<LeafExec>()
                .and_then(LeafExec::generation)
            {
                found.push((Arc::clone(plan), generation));
            }
            for child in plan.children() {
                tables(child, found);
            }
        }
        let mut found = Vec::new();
        tables(&plan, &mut found);
        Reusable {
            stateful: stateful(&plan),
            tables: found,
            plan,
            executions: 0,
        }
    }

    /// The plan for the next execution: reset if it holds per-execution
    /// state or a reference table changed, rebuilt every
    /// [`REBUILD_EVERY`] runs to drop old metrics.
    fn next(&mut self) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.executions += 1;
        let mut tables_changed = false;
        for (node, generation) in &mut self.tables {
            let now = node
                .downcast_ref::<LeafExec>()
                .and_then(LeafExec::generation)
                .unwrap_or(*generation);
            tables_changed |= now != *generation;
            *generation = now;
        }
        if self.stateful || tables_changed || self.executions.is_multiple_of(REBUILD_EVERY) {
            self.plan = reset_plan_states(Arc::clone(&self.plan))?;
        }
        Ok(Arc::clone(&self.plan))
    }
}

/// Whether `plan`, if it is a join, may keep its collected build side from
/// one run to the next: a hash or nested-loop join collecting a side that
/// reads no stream (only reference tables), so the side is the same in
/// every run. Joins that would collect stream rows, or that do not collect
/// a side, must be reset.
fn keeps_build_side(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
    fn reads_stream(plan: &Arc<dyn ExecutionPlan>) -> bool {
        plan.downcast_ref::<LeafExec>()
            .is_some_and(|leaf| leaf.slot().is_some())
            || plan.children().into_iter().any(reads_stream)
    }
    let build = if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        if *join.partition_mode() != PartitionMode::CollectLeft {
            return false;
        }
        join.left()
    } else if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() {
        join.left()
    } else {
        // Other joins (sort-merge, symmetric hash) collect no side to
        // keep; any other node holds no build side at all.
        return !plan.name().contains("Join");
    };
    !reads_stream(build)
}

/// Runs `plan` over `batches` (handed to its leaf through `slot`).
pub(crate) async fn run(
    plan: &mut Reusable,
    slot: &BatchSlot,
    batches: Vec<RecordBatch>,
    ctx: &Arc<TaskContext>,
) -> Result<Vec<RecordBatch>> {
    slot.put(batches);
    let result = match plan.next() {
        Ok(plan) => collect(plan, Arc::clone(ctx)).await,
        Err(e) => Err(e),
    };
    slot.clear();
    let batches = result?;
    Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
}

/// The table a continuous query's plan scans: one batch of its stream at a
/// time, fed through a slot.
#[derive(Debug)]
pub(crate) struct InputTable {
    schema: SchemaRef,
    slot: BatchSlot,
}

impl InputTable {
    /// The table of stream `stream`'s rows, as `schema`.
    pub fn new(stream: &str, schema: SchemaRef) -> Self {
        InputTable {
            schema,
            slot: BatchSlot::for_stream(stream),
        }
    }
}

#[async_trait]
impl TableProvider for InputTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(LeafExec::stream(
            Arc::clone(&self.schema),
            projection.cloned(),
            self.slot.clone(),
        )?))
    }
}

/// Where a plan's leaf gets its batches.
#[derive(Debug, Clone)]
pub(crate) enum LeafInput {
    /// Rows of a stream: whatever the operator put into the slot before
    /// the run.
    Stream(BatchSlot),
    /// A reference table's rows: the snapshot current when the plan runs,
    /// so a long-running job sees the table's new versions.
    Table(Arc<RwLock<Snapshot>>),
}

/// A leaf yielding the batches of its input, projected.
#[derive(Debug)]
pub(crate) struct LeafExec {
    /// Schema of the input's batches.
    input_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    input: LeafInput,
    properties: Arc<PlanProperties>,
}

impl LeafExec {
    pub fn new(
        input_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        input: LeafInput,
    ) -> DFResult<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(input_schema.project(p)?),
            None => Arc::clone(&input_schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(LeafExec {
            input_schema,
            projection,
            input,
            properties: Arc::new(properties),
        })
    }

    /// A leaf over a stream's slot.
    pub fn stream(
        input_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        slot: BatchSlot,
    ) -> DFResult<Self> {
        Self::new(input_schema, projection, LeafInput::Stream(slot))
    }

    /// The slot this leaf reads, if it reads a stream.
    pub fn slot(&self) -> Option<&BatchSlot> {
        match &self.input {
            LeafInput::Stream(slot) => Some(slot),
            LeafInput::Table(_) => None,
        }
    }

    /// The generation of the table rows the next run yields, if it reads
    /// a reference table.
    pub fn generation(&self) -> Option<u64> {
        match &self.input {
            LeafInput::Stream(_) => None,
            LeafInput::Table(snapshot) => Some(read_snapshot(snapshot).generation),
        }
    }
}

fn read_snapshot(snapshot: &RwLock<Snapshot>) -> std::sync::RwLockReadGuard<'_, Snapshot> {
    // The snapshot is replaced whole; a panic elsewhere cannot corrupt it.
    snapshot.read().unwrap_or_else(|p| p.into_inner())
}

impl DisplayAs for LeafExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let input = match &self.input {
            LeafInput::Stream(slot) => format!("stream={}", slot.stream().unwrap_or("?")),
            LeafInput::Table(_) => "table".to_string(),
        };
        write!(f, "LeafExec: {input}, projection={:?}", self.projection)
    }
}

impl ExecutionPlan for LeafExec {
    fn name(&self) -> &str {
        "LeafExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// A stream is unbounded: as a join's side it is always the larger,
    /// so the join collects (hashes) the reference table, not the stream's
    /// rows, and keeps it from one run to the next.
    fn partition_statistics(&self, _partition: Option<usize>) -> DFResult<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.schema());
        statistics.num_rows = Precision::Inexact(match &self.input {
            LeafInput::Stream(_) => STREAM_ROWS,
            LeafInput::Table(snapshot) => read_snapshot(snapshot).rows,
        });
        Ok(Arc::new(statistics))
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let batches = match &self.input {
            LeafInput::Stream(slot) => Arc::new(slot.get()),
            LeafInput::Table(snapshot) => Arc::clone(&read_snapshot(snapshot).batches),
        };
        Ok(Box::pin(projected_stream(
            &batches,
            &self.input_schema,
            self.projection.as_deref(),
        )?))
    }
}

/// A stream of `batches` (of `schema`) projected to `projection`.
/// `MemoryStream`'s own projection would yield projected batches under the
/// unprojected schema, which breaks consumers that read the stream's schema
/// (a hash join's build side).
pub(crate) fn projected_stream(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    projection: Option<&[usize]>,
) -> DFResult<MemoryStream> {
    match projection {
        None => MemoryStream::try_new(batches.to_vec(), Arc::clone(schema), None),
        Some(columns) => {
            let projected = batches
                .iter()
                .map(|b| b.project(columns))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            MemoryStream::try_new(projected, Arc::new(schema.project(columns)?), None)
        }
    }
}

/// The slots of the input leaves of a plan, one per stream (scans of one
/// stream share its slot).
pub(crate) fn input_slots(plan: &Arc<dyn ExecutionPlan>) -> Vec<BatchSlot> {
    fn collect(plan: &Arc<dyn ExecutionPlan>, slots: &mut Vec<BatchSlot>) {
        if let Some(slot) = plan.downcast_ref::<LeafExec>().and_then(LeafExec::slot) {
            if !slots.iter().any(|s| Arc::ptr_eq(&s.0, &slot.0)) {
                slots.push(slot.clone());
            }
            return;
        }
        for child in plan.children() {
            collect(child, slots);
        }
    }
    let mut slots = Vec::new();
    collect(plan, &mut slots);
    slots
}

/// The slot of the (single) input leaf of a planned continuous query.
pub(crate) fn input_slot(plan: &Arc<dyn ExecutionPlan>) -> Option<BatchSlot> {
    if let Some(slot) = plan.downcast_ref::<LeafExec>().and_then(LeafExec::slot) {
        return Some(slot.clone());
    }
    plan.children().into_iter().find_map(input_slot)
}
