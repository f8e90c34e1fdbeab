//! Time attributes: which output column of a continuous query carries event
//! time, and the watermark of the query's output, so a query over a view can
//! window the view's rows as it windows a stream's.

use arrow::datatypes::IntervalMonthDayNano;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, Operator};

use crate::planner::{ContinuousQuery, QueryInput};
use crate::window::{WINDOW_END, WINDOW_START, WindowKind};
use crate::{StreamJoin, Window};

/// An output column of a view that carries event time: a query over the
/// view may window it, and the engine derives the view's watermark from
/// its input's so that none of the view's rows is late downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeAttribute {
    /// The output column, as the view names it.
    pub column: String,
    /// What the column holds.
    pub kind: TimeKind,
}

/// Where a time attribute comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    /// The input's event-time column, passed through (renamed or not).
    EventTime,
    /// The start of the row's window.
    WindowStart,
    /// The end of the row's window.
    WindowEnd,
}

impl TimeKind {
    /// How `DESCRIBE` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeKind::EventTime => "event time",
            TimeKind::WindowStart => "window start",
            TimeKind::WindowEnd => "window end",
        }
    }
}

impl ContinuousQuery {
    /// The watermark of the query's output once its input's watermark is
    /// `input`: no row the query emits from then on has its time attribute
    /// below it. `None` when the output has no time attribute.
    ///
    /// A stateless query emits each row as it comes, so its event time is
    /// never below the input's watermark. A windowed aggregate, Top-N or
    /// windowed join emits a window once the watermark passes its end, so
    /// its later rows belong to windows still open: those starting at or
    /// after the first window that has not closed.
    pub fn output_watermark(&self, input: i64) -> Option<i64> {
        let time = self.time_attribute.as_ref()?;
        if input == i64::MAX || input == i64::MIN {
            return Some(input);
        }
        let Some(window) = &self.window else {
            return Some(input);
        };
        let size = i128::from(window.size);
        let start = if self.aggregates {
            let slide = i128::from(window.slide);
            (i128::from(input) - size).div_euclid(slide) * slide + slide
        } else {
            // A tumbling window without aggregation labels each row with
            // the window holding it.
            i128::from(input).div_euclid(size) * size
        };
        let watermark = match time.kind {
            TimeKind::EventTime if !self.aggregates => i128::from(input),
            TimeKind::EventTime | TimeKind::WindowStart => start,
            TimeKind::WindowEnd => start + size,
        };
        Some(i64::try_from(watermark).unwrap_or(i64::MAX))
    }
}

/// The time attribute of a planned query's output, if it has one: the first
/// output column that is its input's event time, `window_start` or
/// `window_end`. Session windows and interval joins have none, since the
/// rows they emit later may be older than any bound the engine can give.
pub(crate) fn time_attribute(
    plan: &LogicalPlan,
    inputs: &[QueryInput],
    window: Option<&Window>,
    join: Option<&StreamJoin>,
) -> Option<TimeAttribute> {
    if window.is_some_and(|w| w.kind == WindowKind::Session)
        || matches!(join, Some(StreamJoin::Interval { .. }))
    {
        return None;
    }
    plan.schema()
        .fields()
        .iter()
        .enumerate()
        .find_map(|(index, field)| {
            let kind = match trace(plan, index)? {
                Origin::Column { table, name } => {
                    let input = inputs.iter().find(|i| i.stream == table)?;
                    if Some(&name) == input.time_column.as_ref() {
                        TimeKind::EventTime
                    } else if window.is_some() && name == WINDOW_START {
                        TimeKind::WindowStart
                    } else if window.is_some() && name == WINDOW_END {
                        TimeKind::WindowEnd
                    } else {
                        return None;
                    }
                }
                Origin::StartPlus(interval)
                    if window
                        .is_some_and(|w| interval == IntervalMonthDayNano::new(0, 0, w.size)) =>
                {
                    TimeKind::WindowEnd
                }
                Origin::StartPlus(_) => return None,
            };
            Some(TimeAttribute {
                column: field.name().clone(),
                kind,
            })
        })
}

/// Where an output column's values come from.
enum Origin {
    /// A column of a scanned input, unchanged.
    Column { table: String, name: String },
    /// `window_start` plus an interval, as the planner computes
    /// `window_end` above an aggregate.
    StartPlus(IntervalMonthDayNano),
}

/// Follows output column `index` of `plan` down to a scanned column, through
/// nodes that pass values on unchanged.
fn trace(plan: &LogicalPlan, index: usize) -> Option<Origin> {
    match plan {
        LogicalPlan::Projection(p) => trace_expr(&p.input, p.expr.get(index)?),
        LogicalPlan::Aggregate(a) => trace_expr(&a.input, a.group_expr.get(index)?),
        LogicalPlan::Filter(f) => trace(&f.input, index),
        LogicalPlan::Sort(s) => trace(&s.input, index),
        LogicalPlan::Limit(l) => trace(&l.input, index),
        LogicalPlan::SubqueryAlias(a) => trace(&a.input, index),
        // A window function's output comes after its input's columns.
        LogicalPlan::Window(w) => trace(&w.input, index),
        LogicalPlan::Join(j) => {
            let left = j.left.schema().fields().len();
            match j.join_type {
                JoinType::Inner if index >= left => trace(&j.right, index - left),
                JoinType::Inner | JoinType::LeftSemi | JoinType::LeftAnti => trace(&j.left, index),
                JoinType::RightSemi | JoinType::RightAnti => trace(&j.right, index),
                // An outer join pads one side with NULLs.
                _ => None,
            }
        }
        LogicalPlan::TableScan(scan) => {
            let column = match &scan.projection {
                Some(projection) => *projection.get(index)?,
                None => index,
            };
            Some(Origin::Column {
                table: scan.table_name.table().to_string(),
                name: scan.source.schema().fields().get(column)?.name().clone(),
            })
        }
        _ => None,
    }
}

fn trace_expr(input: &LogicalPlan, expr: &Expr) -> Option<Origin> {
    match expr {
        Expr::Alias(alias) => trace_expr(input, &alias.expr),
        Expr::Column(column) => trace(input, input.schema().index_of_column(column).ok()?),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Plus,
            right,
        }) if matches!(
            right.as_ref(),
            Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(_)), _)
        ) =>
        {
            let Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(interval)), _) =
                right.as_ref()
            else {
                return None;
            };
            match trace_expr(input, left)? {
                Origin::Column { name, .. } if name == WINDOW_START => {
                    Some(Origin::StartPlus(*interval))
                }
                _ => None,
            }
        }
        _ => None,
    }
}
