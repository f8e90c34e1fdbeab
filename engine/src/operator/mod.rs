//! Operators: what a job does between its source and its archive.

mod join;
mod session;
mod stateless;
mod window;

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::execution::TaskContext;
use fibers_sql::{ContinuousQuery, StreamJoin, Window};

use crate::connector::union::UnionLayout;
use crate::connector::{ConnectorConfig, StreamDef};

use crate::checkpoint::OperatorState;
use crate::watermark::event_times;
use crate::{Error, Result};
pub(crate) use session::SessionAggregate;
pub(crate) use stateless::Stateless;
pub(crate) use window::WindowAggregate;

/// A streaming operator: fed batches in event-time order up to the
/// watermark, it returns the rows that are final.
#[async_trait]
pub(crate) trait Operator: Send {
    /// Processes rows that are not late; returns rows ready to be written.
    async fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>>;

    /// Whether [`Operator::process`] changes nothing when it fails with a
    /// row's arithmetic error, so a batch may be processed again in parts
    /// to find the rows at fault.
    fn isolates_rows(&self) -> bool {
        false
    }

    /// The watermark reached `watermark` (nanoseconds; `i64::MAX` at the end
    /// of bounded input); returns rows that became final.
    async fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>>;

    /// The operator's state, for a checkpoint: restoring it into a fresh
    /// operator of the same plan and feeding on yields the same output as
    /// this operator.
    fn snapshot(&self) -> Result<OperatorState> {
        Ok(OperatorState::default())
    }

    /// The schema of the batches [`Operator::snapshot`] returns.
    fn state_schema(&self) -> Option<SchemaRef> {
        None
    }

    /// Restores a [`Operator::snapshot`] into a fresh operator.
    async fn restore(&mut self, state: OperatorState) -> Result<()> {
        if state.batches.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid("this operator keeps no state to restore"))
        }
    }
}

/// Builds the operator for a planned query.
///
/// `skip_through`: windows ending at or before this watermark were committed
/// by an earlier run of the job and are not emitted again.
///
/// `stream` is what the operator reads: the query's stream, or for a join
/// of two streams both read as one; `None` for a query over a view.
pub(crate) async fn build(
    query: &ContinuousQuery,
    stream: Option<&StreamDef>,
    ctx: Arc<TaskContext>,
    skip_through: Option<i64>,
) -> Result<Box<dyn Operator>> {
    let plan = query.state.create_physical_plan(&query.plan).await?;
    tracing::debug!(
        "physical plan over '{}':\n{}",
        query.source,
        datafusion::physical_plan::displayable(plan.as_ref()).indent(true)
    );
    if let Some(kind) = &query.join {
        let stream = stream.ok_or_else(|| Error::invalid("a join reads streams, not a view"))?;
        let router = match &stream.connector {
            ConnectorConfig::Union(streams) => {
                let [first, second] = streams.as_ref();
                join::Router::Union(UnionLayout::new(&[first, second]))
            }
            _ => join::Router::Single,
        };
        let state = (
            Arc::clone(&stream.schema),
            stream.schema.index_of(&stream.time_column)?,
        );
        return Ok(match kind {
            StreamJoin::Windowed => Box::new(join::WindowJoin::new(
                query,
                plan,
                router,
                state,
                ctx,
                skip_through,
            )?),
            StreamJoin::Interval { .. } => {
                Box::new(join::IntervalJoin::new(query, plan, router, state, ctx)?)
            }
        });
    }
    if let Some((window, gap)) = query.window.as_ref().and_then(|w| Some((w, w.gap()?))) {
        if !query.aggregates {
            return Err(Error::invalid(
                "a SESSION window needs an aggregation: GROUP BY <key>, window_start, window_end",
            ));
        }
        let assigner = WindowAssigner::session(window, gap, &query.input_schema)?;
        return Ok(Box::new(SessionAggregate::new(
            gap,
            assigner,
            plan,
            ctx,
            skip_through,
        )?));
    }
    let assigner = match &query.window {
        None => None,
        Some(w) => Some(WindowAssigner::new(
            w,
            &query.input_schema,
            query.aggregates,
        )?),
    };
    Ok(if query.aggregates {
        let (window, assigner) = query
            .window
            .clone()
            .zip(assigner)
            .ok_or_else(|| Error::invalid("aggregation without a window"))?;
        Box::new(WindowAggregate::new(
            window,
            assigner,
            plan,
            ctx,
            skip_through,
        )?)
    } else {
        Box::new(Stateless::new(plan, assigner, ctx)?)
    })
}

/// Adds `window_start` and `window_end` to a stream batch.
///
/// For aggregation the columns hold the row's *pane* (the window operator
/// combines panes into windows at emit); for a tumbling window without
/// aggregation they hold the window itself.
#[derive(Debug, Clone)]
pub(crate) struct WindowAssigner {
    time_index: usize,
    /// Rows are assigned to `floor(time / unit) * unit`.
    unit: i64,
    /// `window_end - window_start`.
    length: i64,
    /// How far past a row's unit start the last window holding it may end
    /// (the window size, or a session's gap).
    reach: i64,
    time_zone: Option<Arc<str>>,
    input_schema: SchemaRef,
}

impl WindowAssigner {
    fn new(window: &Window, input_schema: &SchemaRef, panes: bool) -> Result<Self> {
        let time_index = input_schema.index_of(&window.time_column)?;
        let time_zone = match input_schema.field(time_index).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let unit = if panes { window.pane() } else { window.size };
        Ok(WindowAssigner {
            time_index,
            unit,
            length: unit,
            reach: window.size,
            time_zone,
            input_schema: Arc::clone(input_schema),
        })
    }

    /// For a SESSION window: each row gets the session of its own event,
    /// `[time, time + gap)`, which the session operator then merges.
    fn session(window: &Window, gap: i64, input_schema: &SchemaRef) -> Result<Self> {
        let mut assigner = Self::new(window, input_schema, false)?;
        assigner.unit = 1;
        assigner.length = gap;
        assigner.reach = gap;
        Ok(assigner)
    }

    /// The pane width (or window size) rows are assigned by.
    pub fn unit(&self) -> i64 {
        self.unit
    }

    fn assign(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let times = event_times(batch.column(self.time_index))?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        self.check_closable(times)?;
        let starts: TimestampNanosecondArray = times.unary(|t| floor_to(t, self.unit));
        let ends: TimestampNanosecondArray = starts.unary(|s| s.saturating_add(self.length));
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(starts.with_timezone_opt(self.time_zone.clone())));
        columns.push(Arc::new(ends.with_timezone_opt(self.time_zone.clone())));
        Ok(RecordBatch::try_new(
            Arc::clone(&self.input_schema),
            columns,
        )?)
    }
}

impl WindowAssigner {
    /// Refuses rows in a window that would end after the last instant a
    /// nanosecond timestamp holds (2262-04-11T23:47:16.854775807): such a
    /// window could never close, and its rows would vanish without a word.
    fn check_closable(&self, times: &TimestampNanosecondArray) -> Result<()> {
        let Some(latest) = arrow::compute::max(times) else {
            return Ok(());
        };
        if floor_to(latest, self.unit)
            .checked_add(self.reach)
            .is_some()
        {
            return Ok(());
        }
        let show = |t: i64| {
            chrono::DateTime::from_timestamp_nanos(t)
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
        };
        Err(Error::invalid(format!(
            "event time {} of column '{}' falls in a window ending after {}, the last \
             instant a TIMESTAMP holds, so the window could never close",
            show(latest),
            self.input_schema.field(self.time_index).name(),
            show(i64::MAX)
        )))
    }
}

/// Refuses checkpointed operator state whose schema is not the query's:
/// the view's query changed since the checkpoint. `what` names the state
/// (window, session, join).
pub(crate) fn check_state_schema(
    batch: &RecordBatch,
    schema: &SchemaRef,
    what: &str,
) -> Result<()> {
    if batch.schema().fields() != schema.fields() {
        return Err(Error::invalid(format!(
            "the checkpointed {what} state has schema {}, the query's is {schema}; \
             the view's query changed since the checkpoint",
            batch.schema()
        )));
    }
    Ok(())
}

/// `t` rounded down to a multiple of `unit` (towards negative infinity, so
/// times before 1970 fall into the right window too).
pub(crate) fn floor_to(t: i64, unit: i64) -> i64 {
    t.div_euclid(unit) * unit
}
