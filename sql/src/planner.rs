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

use crate::window::{ARRIVAL_TIME_COLUMN, WINDOW_END, WINDOW_START, Window, rewrite_windows};
use crate::{Error, Result, streaming_session_state};

/// What the planner needs to know about a stream.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Its columns, as its source produces them.
    pub schema: SchemaRef,
    /// Its time attribute: the WATERMARK column, or [`ARRIVAL_TIME_COLUMN`]
    /// for a stream declared without one.
    pub time_column: String,
}

/// Looks up the objects a continuous query names.
pub trait StreamResolver: Sync {
    /// The stream called `name`, if there is one.
    fn stream(&self, name: &str) -> Option<StreamInfo>;

    /// The kind of the object called `name`, if there is one.
    fn kind_of(&self, name: &str) -> Option<ObjectKind>;

    /// The table a plan over one batch of `stream` scans. The engine gives
    /// its own provider so it can feed each batch into the plan's leaf.
    fn input_table(&self, stream: &str, schema: SchemaRef) -> Arc<dyn TableProvider>;
}

/// A planned view or sink query: DataFusion's plan over one batch of its
/// stream, plus what the streaming layer needs around it.
#[derive(Debug, Clone)]
pub struct ContinuousQuery {
    /// The stream the query reads.
    pub source: String,
    /// The window, for a windowed query.
    pub window: Option<Window>,
    /// The schema of the plan's input: the stream's columns, plus
    /// `window_start` and `window_end` for a windowed query.
    pub input_schema: SchemaRef,
    /// Whether the plan aggregates (and so emits only when windows close).
    pub aggregates: bool,
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
    for relation in &found.relations {
        if found.ctes.contains(relation) {
            continue;
        }
        match resolver.kind_of(relation) {
            Some(ObjectKind::Stream) => streams.push(relation.clone()),
            Some(kind) => {
                return Err(Error::invalid(format!(
                    "'{name}' reads {kind} '{relation}': continuous queries read streams; \
                     query the archive of '{relation}' with an ad-hoc SELECT instead"
                )));
            }
            None => return Err(Error::invalid(format!("table '{relation}' not found"))),
        }
    }
    let source = match streams.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Error::invalid(format!(
                "the query of '{name}' reads no stream; a continuous query reads one stream"
            )));
        }
        many => {
            return Err(Error::invalid(format!(
                "the query of '{name}' reads several streams ({}); joins of streams are not supported yet",
                many.join(", ")
            )));
        }
    };
    let info = resolver
        .stream(&source)
        .ok_or_else(|| Error::invalid(format!("table '{source}' not found")))?;
    let window = match found.windows.as_slice() {
        [] => None,
        [call] => Some(check_window(&call.stream, &call.window, &info)?),
        _ => {
            return Err(Error::invalid(format!(
                "the query of '{name}' uses more than one window function; use one TUMBLE or HOP"
            )));
        }
    };
    let input_schema = input_schema(&info.schema, window.as_ref());
    let ctx = SessionContext::new_with_state(streaming_session_state());
    ctx.register_table(
        source.as_str(),
        resolver.input_table(&source, Arc::clone(&input_schema)),
    )?;
    let state = ctx.state();
    let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query))));
    let plan = state.statement_to_plan(statement).await?;
    let aggregates = check_plan(&source, window.as_ref(), &plan)?;
    let plan = match &window {
        Some(w) if aggregates => group_without_window_end(plan, w.size)?,
        _ => plan,
    };
    Ok(ContinuousQuery {
        source,
        window,
        input_schema,
        aggregates,
        plan,
        state,
    })
}

fn check_window(stream: &str, window: &Window, info: &StreamInfo) -> Result<Window> {
    let function = window.function();
    let column = &window.time_column;
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
    if *column != info.time_column {
        let fix = if info.time_column == ARRIVAL_TIME_COLUMN {
            format!(
                "declare `WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND` on the stream, \
                 or window on {ARRIVAL_TIME_COLUMN} (arrival time)"
            )
        } else {
            format!("window on '{}'", info.time_column)
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
                         TUMBLE({source}, <time column>, <size>) or HOP({source}, <time column>, <slide>, <size>)"
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
            LogicalPlan::Window(_) => Some(
                "window functions (OVER) are not supported in continuous queries yet".into(),
            ),
            LogicalPlan::Join(_) => Some(
                "joins are not supported in continuous queries yet".into(),
            ),
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
