use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::IntervalMonthDayNano;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, lit};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use fibers_catalog::ObjectKind;

use crate::join::StreamJoin;
use crate::time::{TimeAttribute, time_attribute};
use crate::window::{
    ARRIVAL_TIME_COLUMN, WINDOW_END, WINDOW_START, Window, WindowKind, check_session,
    rewrite_windows,
};
use crate::{Error, Result, streaming_session_state};

/// What the planner needs to know about a stream, or a view read as one.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Its columns, as its source produces them.
    pub schema: SchemaRef,
    /// Its time attribute: a stream's WATERMARK column, or
    /// [`ARRIVAL_TIME_COLUMN`] for a stream declared without one; a view's
    /// [`TimeAttribute`], if its rows carry event time.
    pub time_column: Option<String>,
}

/// Looks up the objects a continuous query names.
pub trait StreamResolver: Sync {
    /// The stream (or view) called `name`, if there is one.
    fn stream(&self, name: &str) -> Option<StreamInfo>;

    /// The kind of the object called `name`, if there is one.
    fn kind_of(&self, name: &str) -> Option<ObjectKind>;

    /// The table a plan over one batch of `stream` scans. The engine gives
    /// its own provider so it can feed each batch into the plan's leaf.
    fn input_table(&self, stream: &str, schema: SchemaRef) -> Arc<dyn TableProvider>;

    /// The reference table called `name` (`CREATE TABLE`), as the plan
    /// scans it for every batch of the stream joined with it.
    fn reference_table(&self, name: &str) -> Option<Arc<dyn TableProvider>>;
}

/// One stream a continuous query reads.
#[derive(Debug, Clone)]
pub struct QueryInput {
    /// The stream.
    pub stream: String,
    /// The schema the plan scans it with: its columns, plus `window_start`
    /// and `window_end` when the query reads it through a window.
    pub schema: SchemaRef,
    /// Its event-time column; a view may have none.
    pub time_column: Option<String>,
}

/// A planned view or sink query: DataFusion's plan over one batch of its
/// stream, plus what the streaming layer needs around it.
#[derive(Debug, Clone)]
pub struct ContinuousQuery {
    /// The stream the query reads (the first of the two a join reads).
    pub source: String,
    /// Every stream the query reads, in name order, as the plan scans it.
    pub inputs: Vec<QueryInput>,
    /// How the query joins streams, if it does.
    pub join: Option<StreamJoin>,
    /// The reference tables it joins the stream with.
    pub tables: Vec<String>,
    /// The window, for a windowed query.
    pub window: Option<Window>,
    /// The schema of the plan's input: the stream's columns, plus
    /// `window_start` and `window_end` for a windowed query.
    pub input_schema: SchemaRef,
    /// Whether the plan aggregates (and so emits only when windows close).
    pub aggregates: bool,
    /// The output column that carries event time, if one does.
    pub time_attribute: Option<TimeAttribute>,
    /// The logical plan over the input table.
    pub plan: LogicalPlan,
    /// The session the plan was made in, for physical planning.
    pub state: SessionState,
}

impl ContinuousQuery {
    /// The schema of the rows the query produces.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// The columns of input `stream` the query reads, as DataFusion's
    /// projection push-down finds them in its optimized plan: `None` when
    /// it reads every column, or the plan does not tell (it cannot be
    /// optimized, or no scan of `stream` is found).
    pub fn columns_read(&self, stream: &str) -> Option<BTreeSet<String>> {
        let optimized = self.state.optimize(&self.plan).ok()?;
        let mut columns = BTreeSet::new();
        let (mut scans, mut every_column) = (0, false);
        optimized
            .apply_with_subqueries(|node| {
                if let LogicalPlan::TableScan(scan) = node
                    && scan.table_name.table() == stream
                {
                    scans += 1;
                    let schema = scan.source.schema();
                    match &scan.projection {
                        Some(indices) => columns.extend(
                            indices
                                .iter()
                                .filter_map(|&i| schema.fields().get(i))
                                .map(|f| f.name().clone()),
                        ),
                        None => every_column = true,
                    }
                    // Filters pushed into the scan read columns too.
                    for filter in &scan.filters {
                        columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .ok()?;
        (scans > 0 && !every_column).then_some(columns)
    }
}

/// Plans the query of the view or sink `name`.
pub async fn plan_continuous_query(
    name: &str,
    query: &ast::Query,
    resolver: &dyn StreamResolver,
) -> Result<ContinuousQuery> {
    let mut query = query.clone();
    let found = rewrite_windows(&mut query)?;
    let mut streams = Vec::new();
    let mut tables = Vec::new();
    for relation in &found.relations {
        if found.ctes.contains(relation) {
            continue;
        }
        match resolver.kind_of(relation) {
            // A view's rows reach the query in process, as a stream's do.
            Some(ObjectKind::Stream | ObjectKind::View) => streams.push(relation.clone()),
            Some(ObjectKind::Table) => tables.push(relation.clone()),
            Some(kind) => {
                return Err(Error::invalid(format!(
                    "'{name}' reads {kind} '{relation}': continuous queries read streams and \
                     views; query the archive of '{relation}' with an ad-hoc SELECT instead"
                )));
            }
            None => return Err(Error::invalid(format!("table '{relation}' not found"))),
        }
    }
    let source = match streams.as_slice() {
        [] => {
            return Err(Error::invalid(format!(
                "the query of '{name}' reads no stream; a continuous query reads one stream"
            )));
        }
        [first] | [first, _] => first.clone(),
        many => {
            return Err(Error::invalid(format!(
                "the query of '{name}' reads {} streams ({}); a continuous query joins at most two",
                many.len(),
                many.join(", ")
            )));
        }
    };
    let mut infos = Vec::with_capacity(streams.len());
    for stream in &streams {
        infos.push(
            resolver
                .stream(stream)
                .ok_or_else(|| Error::invalid(format!("table '{stream}' not found")))?,
        );
    }
    // One window shape for the whole query; a join may apply it to both
    // streams (or twice to one).
    let mut window: Option<Window> = None;
    let mut windowed = BTreeSet::new();
    for call in &found.windows {
        let Some(position) = streams.iter().position(|s| *s == call.stream) else {
            return Err(Error::invalid(format!(
                "{} reads '{}', which is not a stream",
                call.window.function(),
                call.stream
            )));
        };
        let checked = check_window(&call.stream, &call.window, &infos[position])?;
        match &window {
            None => window = Some(checked),
            Some(w)
                if w.kind == checked.kind && w.size == checked.size && w.slide == checked.slide => {
            }
            Some(_) => {
                return Err(Error::invalid(format!(
                    "the query of '{name}' uses windows of different shapes; a query uses one \
                     window shape (the same TUMBLE, HOP or SESSION everywhere)"
                )));
            }
        }
        windowed.insert(call.stream.clone());
    }
    let ctx = SessionContext::new_with_state(streaming_session_state());
    let mut inputs = Vec::with_capacity(streams.len());
    for (stream, info) in streams.iter().zip(&infos) {
        let stream_window = window
            .as_ref()
            .filter(|_| windowed.contains(stream))
            .map(|w| Window {
                time_column: info
                    .time_column
                    .clone()
                    .unwrap_or_else(|| w.time_column.clone()),
                ..w.clone()
            });
        let schema = input_schema(&info.schema, stream_window.as_ref());
        ctx.register_table(
            stream.as_str(),
            resolver.input_table(stream, Arc::clone(&schema)),
        )?;
        inputs.push(QueryInput {
            stream: stream.clone(),
            schema,
            time_column: info.time_column.clone(),
        });
    }
    for table in &tables {
        let provider = resolver
            .reference_table(table)
            .ok_or_else(|| Error::invalid(format!("table '{table}' not found")))?;
        ctx.register_table(table.as_str(), provider)?;
    }
    let state = ctx.state();
    let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query))));
    let plan = state.statement_to_plan(statement).await?;

    let stream_joins = crate::join::stream_joins(&plan, &streams);
    if !stream_joins.is_empty() {
        check_lookup_joins(&streams, &plan)?;
        let without_event_time = |i: &&QueryInput| {
            i.time_column
                .as_deref()
                .is_none_or(|c| c == ARRIVAL_TIME_COLUMN)
        };
        if inputs.iter().any(|i| without_event_time(&i)) {
            return Err(Error::invalid(format!(
                "the query of '{name}' joins streams, which needs event time: declare \
                 `WATERMARK FOR <column> AS <column> - INTERVAL '5' SECOND` on {}",
                inputs
                    .iter()
                    .filter(without_event_time)
                    .map(|i| format!("'{}'", i.stream))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )));
        }
        let joined: Vec<_> = inputs
            .iter()
            .map(|input| crate::join::JoinedStream {
                name: &input.stream,
                time_column: input.time_column.as_deref().unwrap_or_default(),
                windowed: windowed.contains(&input.stream),
            })
            .collect();
        let join = crate::join::plan_stream_join(&plan, &stream_joins, &joined, window.as_ref())?;
        let aggregates = join == crate::join::StreamJoin::Windowed;
        let plan = match join {
            crate::join::StreamJoin::Interval { .. } => {
                crate::join::durations_in_join_filters(plan)?
            }
            crate::join::StreamJoin::Windowed => {
                check_per_window(&plan)?;
                plan
            }
        };
        let time_attribute = time_attribute(&plan, &inputs, window.as_ref(), Some(&join));
        return Ok(ContinuousQuery {
            input_schema: Arc::clone(&inputs[0].schema),
            source,
            inputs,
            tables,
            window,
            join: Some(join),
            aggregates,
            time_attribute,
            plan,
            state,
        });
    }
    if streams.len() > 1 {
        return Err(Error::invalid(format!(
            "the query of '{name}' reads streams {} but does not join them; a continuous \
             query reads one stream, or joins two",
            streams.join(" and ")
        )));
    }
    if found.windows.len() > 1 {
        return Err(Error::invalid(format!(
            "the query of '{name}' uses more than one window function; use one TUMBLE, HOP or \
             SESSION (or join the windowed rows on window_start)"
        )));
    }
    let info = &infos[0];
    let aggregates = check_plan(&source, window.as_ref(), &plan)?;
    if window
        .as_ref()
        .is_some_and(|w| w.kind == WindowKind::Session)
    {
        check_session(&source, &info.schema, &plan, aggregates)?;
    }
    let plan = match &window {
        // A session's end is not its start + a fixed size: keep grouping by it.
        Some(w) if aggregates && w.kind != WindowKind::Session => {
            group_without_window_end(plan, w.size)?
        }
        _ => plan,
    };
    let time_attribute = time_attribute(&plan, &inputs, window.as_ref(), None);
    Ok(ContinuousQuery {
        input_schema: Arc::clone(&inputs[0].schema),
        source,
        inputs,
        tables,
        window,
        join: None,
        aggregates,
        time_attribute,
        plan,
        state,
    })
}

/// Checks every join of a stream with reference tables in a plan that
/// also joins streams.
fn check_lookup_joins(streams: &[String], plan: &LogicalPlan) -> Result<()> {
    let mut problem = None;
    plan.apply(|node| {
        if let LogicalPlan::Join(join) = node {
            for stream in streams {
                let reads = |p: &LogicalPlan| {
                    p.exists(|n| {
                        Ok(matches!(n, LogicalPlan::TableScan(s) if s.table_name.table() == stream))
                    })
                    .unwrap_or(false)
                };
                let any_stream = |p: &LogicalPlan| {
                    streams.iter().any(|s| {
                        p.exists(|n| {
                            Ok(matches!(n, LogicalPlan::TableScan(scan) if scan.table_name.table() == s))
                        })
                        .unwrap_or(false)
                    })
                };
                // A side without streams is reference data.
                if (reads(&join.left) && !any_stream(&join.right))
                    || (reads(&join.right) && !any_stream(&join.left))
                {
                    problem = check_lookup_join(stream, join);
                }
            }
        }
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    problem.map_or(Ok(()), |p| Err(Error::invalid(p)))
}

fn check_window(stream: &str, window: &Window, info: &StreamInfo) -> Result<Window> {
    let function = window.function();
    let column = &window.time_column;
    let Some(time_column) = &info.time_column else {
        return Err(Error::invalid(format!(
            "{function} over '{stream}' needs event time, and no column of '{stream}' carries \
             it: a view's rows carry event time in a column passed through from its input's \
             event time, or its window_start or window_end"
        )));
    };
    let field = info.schema.field_with_name(column).map_err(|_| {
        Error::invalid(format!(
            "{function} time column '{column}' is not a column of stream '{stream}'"
        ))
    })?;
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        return Err(Error::invalid(format!(
            "{function} time column '{column}' must be a TIMESTAMP, found {}",
            crate::arrow_type_to_sql(field.data_type())
        )));
    }
    if column == WINDOW_START || column == WINDOW_END {
        return Err(Error::invalid(format!(
            "{function} over '{stream}' would add columns window_start and window_end, and \
             '{stream}' has a column '{column}' already: rename it where '{stream}' is \
             defined ({column} AS ...) to window over it"
        )));
    }
    if column != time_column {
        let fix = if time_column == ARRIVAL_TIME_COLUMN {
            format!(
                "declare `WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND` on the stream, \
                 or window on {ARRIVAL_TIME_COLUMN} (arrival time)"
            )
        } else {
            format!("window on '{time_column}'")
        };
        return Err(Error::invalid(format!(
            "{function} time column '{column}' is not the event time of stream '{stream}': {fix}"
        )));
    }
    Ok(window.clone())
}

fn input_schema(stream: &SchemaRef, window: Option<&Window>) -> SchemaRef {
    let Some(window) = window else {
        return Arc::clone(stream);
    };
    let time_type = stream
        .field_with_name(&window.time_column)
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Timestamp(
            arrow::datatypes::TimeUnit::Nanosecond,
            None,
        ));
    let window_type = match time_type {
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, tz)
        }
        other => other,
    };
    let mut fields: Vec<_> = stream
        .fields()
        .iter()
        .filter(|f| f.name() != WINDOW_START && f.name() != WINDOW_END)
        .cloned()
        .collect();
    fields.push(Arc::new(Field::new(
        WINDOW_START,
        window_type.clone(),
        false,
    )));
    fields.push(Arc::new(Field::new(WINDOW_END, window_type, false)));
    Arc::new(Schema::new_with_metadata(fields, stream.metadata().clone()))
}

/// Checks the plan can run continuously with bounded state; returns whether
/// it aggregates.
fn check_plan(source: &str, window: Option<&Window>, plan: &LogicalPlan) -> Result<bool> {
    let mut aggregates = 0;
    let mut ordered = false;
    let mut problem: Option<Error> = None;
    plan.apply(|node| {
        let issue = match node {
            LogicalPlan::Aggregate(agg) => {
                aggregates += 1;
                match window {
                    None => Some(format!(
                        "aggregation over stream '{source}' needs a window: aggregate over \
                         TUMBLE({source}, <time column>, <size>), HOP({source}, <time column>, <slide>, <size>) \
                         or SESSION({source}, <time column>, <gap>)"
                    )),
                    Some(_) if !groups_by_window(&agg.group_expr) => Some(format!(
                        "GROUP BY must include window_start and window_end when aggregating over a window of '{source}'"
                    )),
                    Some(_) => None,
                }
            }
            LogicalPlan::Distinct(_) => Some(
                "SELECT DISTINCT is not supported in continuous queries; use GROUP BY over a window".into(),
            ),
            LogicalPlan::Window(over) => check_window_functions(source, window, over),
            LogicalPlan::Join(join) => check_lookup_join(source, join),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
                ordered = true;
                None
            }
            _ => None,
        };
        match issue {
            Some(message) => {
                problem = Some(Error::invalid(message));
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    })?;
    if let Some(problem) = problem {
        return Err(problem);
    }
    if aggregates > 1 {
        return Err(Error::invalid(format!(
            "continuous queries over '{source}' support one level of aggregation"
        )));
    }
    // A windowed aggregate runs ORDER BY/LIMIT over each closing window's
    // rows; without one there is no finite set of rows to order.
    if ordered && aggregates == 0 {
        return Err(Error::invalid(format!(
            "ORDER BY and LIMIT in a continuous query over '{source}' need a windowed aggregation \
             (they apply to each window's rows when it closes)"
        )));
    }
    if aggregates == 0 && window.is_some_and(|w| w.slide != w.size) {
        return Err(Error::invalid(
            "HOP needs a GROUP BY: a hopping window without aggregation would copy each row into every window",
        ));
    }
    Ok(aggregates == 1)
}

/// A join in a continuous query is a lookup join: each batch of the stream
/// is joined with the current rows of reference tables. Only the stream's
/// rows can be preserved (INNER, or an outer join on the stream's side):
/// unmatched table rows would be emitted again with every batch.
fn check_lookup_join(source: &str, join: &datafusion::logical_expr::Join) -> Option<String> {
    use datafusion::logical_expr::JoinType;
    let reads_stream = |plan: &LogicalPlan| {
        plan.exists(|node| {
            Ok(matches!(node, LogicalPlan::TableScan(scan) if scan.table_name.table() == source))
        })
        .unwrap_or(false)
    };
    let (left, right) = (reads_stream(&join.left), reads_stream(&join.right));
    let (stream_left, allowed) = match (left, right) {
        // A join of the stream with itself: `join::plan_stream_join` decides.
        (true, true) => return None,
        // Tables joined with each other, before the stream joins them.
        (false, false) => return None,
        (true, false) => (
            true,
            matches!(
                join.join_type,
                JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
            ),
        ),
        (false, true) => (
            false,
            matches!(
                join.join_type,
                JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
            ),
        ),
    };
    if allowed {
        return None;
    }
    let fix = if stream_left {
        "INNER JOIN or LEFT JOIN with the stream on the left"
    } else {
        "INNER JOIN or RIGHT JOIN with the stream on the right"
    };
    Some(format!(
        "{} JOIN of stream '{source}' with a table would emit the table's unmatched rows with \
         every batch of the stream; a lookup join keeps the stream's rows: use {fix}",
        join.join_type.to_string().to_uppercase()
    ))
}

/// Window functions (`OVER`) run when a window closes, over that window's
/// aggregated rows: the window Top-N shape, `ROW_NUMBER() OVER (PARTITION
/// BY window_start ORDER BY x DESC) <= N` in a subquery over a windowed
/// aggregate. Anywhere else they would need every row of the stream.
fn check_window_functions(
    source: &str,
    window: Option<&Window>,
    over: &datafusion::logical_expr::Window,
) -> Option<String> {
    let top_n = "ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY ...) in a subquery \
                 over a windowed GROUP BY";
    let Some(window) = window else {
        return Some(format!(
            "window functions (OVER) over stream '{source}' need a windowed aggregation below \
             them, for example the Top-N per window: {top_n}"
        ));
    };
    if !matches!(window.kind, WindowKind::Tumble | WindowKind::Hop) {
        return Some(format!(
            "window functions (OVER) run over TUMBLE or HOP windows, not {}",
            window.function()
        ));
    }
    let above_aggregate = over
        .input
        .exists(|node| Ok(matches!(node, LogicalPlan::Aggregate(_))))
        .unwrap_or(false);
    if !above_aggregate {
        return Some(format!(
            "window functions (OVER) over '{source}' must apply to the windowed aggregate's \
             rows, each window's rows when it closes: {top_n}"
        ));
    }
    unpartitioned_window_function(over)
}

/// A window function of `over` not partitioned by `window_start`, named in
/// an error: a continuous query computes them over one window's rows.
fn unpartitioned_window_function(over: &datafusion::logical_expr::Window) -> Option<String> {
    for expr in &over.window_expr {
        let Expr::WindowFunction(function) = expr.clone().unalias_nested().data else {
            continue;
        };
        let partitioned = function.params.partition_by.iter().any(
            |e| matches!(e.clone().unalias_nested().data, Expr::Column(c) if c.name == WINDOW_START),
        );
        if !partitioned {
            return Some(format!(
                "{} must be partitioned by window_start (PARTITION BY window_start[, keys]): \
                 a continuous query sees one window's rows at a time",
                expr.schema_name()
            ));
        }
    }
    None
}

/// A windowed join runs its whole query over each window's rows, so every
/// aggregate must group by `window_start` (or an expression of it, such as
/// a FULL join's `coalesce(a.window_start, b.window_start)`) and every
/// window function be
/// partitioned by it; otherwise the query would silently compute per
/// window what it asks for over all rows.
pub(crate) fn check_per_window(plan: &LogicalPlan) -> Result<()> {
    let mut problem = None;
    plan.apply(|node| {
        problem = match node {
            LogicalPlan::Aggregate(agg)
                if !agg
                    .group_expr
                    .iter()
                    .any(|e| e.column_refs().iter().any(|c| c.name == WINDOW_START)) =>
            {
                Some(
                    "an aggregate over a windowed join must GROUP BY window_start: the join \
                     yields one window's rows at a time"
                        .to_string(),
                )
            }
            LogicalPlan::Window(over) => unpartitioned_window_function(over),
            _ => None,
        };
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    match problem {
        Some(problem) => Err(Error::invalid(problem)),
        None => Ok(()),
    }
}

/// `window_end` is `window_start + size`, so grouping by both makes every
/// partial aggregate hash and compare a column that adds nothing. Group by
/// `window_start` alone and compute `window_end` in a projection above the
/// aggregate, under the same (qualified) name, so the rest of the plan is
/// unchanged.
fn group_without_window_end(plan: LogicalPlan, size: i64) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up(|node| {
        let LogicalPlan::Aggregate(agg) = &node else {
            return Ok(Transformed::no(node));
        };
        let position = |name: &str| {
            agg.group_expr
                .iter()
                .position(|e| matches!(e, Expr::Column(c) if c.name == name))
        };
        let (Some(start), Some(end)) = (position(WINDOW_START), position(WINDOW_END)) else {
            return Ok(Transformed::no(node));
        };
        let mut group_expr = agg.group_expr.clone();
        group_expr.remove(end);
        let grouped =
            Aggregate::try_new(Arc::clone(&agg.input), group_expr, agg.aggr_expr.clone())?;
        // Group columns come first in an aggregate's output, in GROUP BY order.
        let (start_qualifier, start_field) = agg.schema.qualified_field(start);
        let window_start = Expr::Column(Column::new(start_qualifier.cloned(), start_field.name()));
        let length = lit(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(0, 0, size),
        )));
        let exprs = agg
            .schema
            .iter()
            .enumerate()
            .map(|(i, (qualifier, field))| {
                if i == end {
                    (window_start.clone() + length.clone())
                        .alias_qualified(qualifier.cloned(), field.name())
                } else {
                    Expr::Column(Column::new(qualifier.cloned(), field.name()))
                }
            })
            .collect();
        let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(grouped)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    })?;
    Ok(rewritten.data)
}

fn groups_by_window(group_expr: &[Expr]) -> bool {
    let has = |name: &str| {
        group_expr
            .iter()
            .any(|e| matches!(e, Expr::Column(c) if c.name == name))
    };
    has(WINDOW_START) && has(WINDOW_END)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::time::tests::plan;

    fn set(columns: &[&str]) -> Option<BTreeSet<String>> {
        Some(columns.iter().map(|c| c.to_string()).collect())
    }

    #[tokio::test]
    async fn a_query_reads_the_columns_its_plan_scans() {
        let query = plan("SELECT symbol FROM trades WHERE volume > 10").await;
        assert_eq!(query.columns_read("trades"), set(&["symbol", "volume"]));
        let query = plan(
            "SELECT window_start, sum(volume) AS v FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) \
             GROUP BY window_start, window_end",
        )
        .await;
        let read = query.columns_read("trades").expect("a projection");
        assert!(
            read.contains("volume") && !read.contains("symbol"),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_query_of_every_column_or_another_stream_tells_nothing() {
        let query = plan("SELECT * FROM trades").await;
        let read = query.columns_read("trades");
        assert!(
            read.is_none() || read == set(&["symbol", "ts", "volume"]),
            "{read:?}"
        );
        assert_eq!(query.columns_read("bids"), None);
    }
}
