//! Joins of streams: how a continuous query that joins two streams (or a
//! stream with itself) keeps its state bounded, or why it cannot.
//!
//! * A **windowed join** reads every stream through the same `TUMBLE` and
//!   matches rows of the same window (`a.window_start = b.window_start`):
//!   rows are buffered per window and the query runs over a window's rows
//!   when the watermark closes it. Any join type works, and so does
//!   anything above the join (aggregates, Top-N), since the query sees the
//!   window whole. The Nexmark q7 shape, a windowed aggregate joined back
//!   to the rows of its window, is a windowed self-join.
//! * An **interval join** of two streams bounds one's event time by the
//!   other's (`b.ts BETWEEN a.ts - INTERVAL ... AND a.ts + INTERVAL ...`):
//!   each arriving batch is joined with the other stream's buffered rows at
//!   once, and rows are dropped once the watermark makes a match
//!   impossible.
//!
//! Anything else would have to keep every row forever, and is refused with
//! the fix named.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, JoinType, LogicalPlan, Operator};

use crate::window::{WINDOW_START, Window, WindowKind};
use crate::{Error, Result};

/// How a query joining streams is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamJoin {
    /// Rows buffered per window of every input; the query runs over each
    /// window's rows when the watermark closes it.
    Windowed,
    /// The rows of `left` and `right` (two different streams) match only
    /// if `right.time - left.time` is within `[min_offset, max_offset]`
    /// (nanoseconds).
    Interval {
        /// The stream on the join's left.
        left: String,
        /// The stream on its right.
        right: String,
        /// Smallest `right.time - left.time` of a match.
        min_offset: i64,
        /// Largest `right.time - left.time` of a match.
        max_offset: i64,
    },
}

/// The streams a plan scans, by table name.
fn scanned_streams<'a>(plan: &LogicalPlan, streams: &'a [String]) -> Vec<&'a String> {
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(stream) = streams.iter().find(|s| **s == scan.table_name.table())
            && !found.contains(&stream)
        {
            found.push(stream);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Joins in `plan` with a stream on both sides.
pub(crate) fn stream_joins<'p>(plan: &'p LogicalPlan, streams: &[String]) -> Vec<&'p Join> {
    let mut joins = Vec::new();
    collect_joins(plan, streams, &mut joins);
    joins
}

fn collect_joins<'p>(plan: &'p LogicalPlan, streams: &[String], joins: &mut Vec<&'p Join>) {
    if let LogicalPlan::Join(join) = plan
        && !scanned_streams(&join.left, streams).is_empty()
        && !scanned_streams(&join.right, streams).is_empty()
    {
        joins.push(join);
    }
    for input in plan.inputs() {
        collect_joins(input, streams, joins);
    }
}

/// What a query that joins streams needs to know about each.
pub(crate) struct JoinedStream<'a> {
    pub name: &'a str,
    pub time_column: &'a str,
    pub windowed: bool,
}

/// Decides how a query with stream joins runs, or why it cannot.
pub(crate) fn plan_stream_join(
    plan: &LogicalPlan,
    joins: &[&Join],
    streams: &[JoinedStream<'_>],
    window: Option<&Window>,
) -> Result<StreamJoin> {
    let names: Vec<String> = streams.iter().map(|s| s.name.to_string()).collect();
    if let Some(window) = window {
        if window.kind != WindowKind::Tumble {
            return Err(Error::invalid(format!(
                "joins of streams over {} windows are not supported; join over TUMBLE windows \
                 (a.window_start = b.window_start) or with a time interval",
                window.function()
            )));
        }
        if let Some(unwindowed) = streams.iter().find(|s| !s.windowed) {
            return Err(Error::invalid(format!(
                "stream '{}' is joined without a window while the query reads others through \
                 TUMBLE: read it through the same TUMBLE({}, {}, <size>) and join on \
                 window_start",
                unwindowed.name, unwindowed.name, unwindowed.time_column
            )));
        }
        for join in joins {
            if !joins_on_window(join) {
                return Err(Error::invalid(format!(
                    "a join of windowed streams must match rows of the same window: add \
                     `AND {}` to its ON condition",
                    window_equality(join)
                )));
            }
        }
        return Ok(StreamJoin::Windowed);
    }

    let unbounded = |what: &str| {
        Error::invalid(format!(
            "{what}: a join of two streams without a time bound would keep every row of both; \
             join over the same window (FROM TUMBLE(a, ts, INTERVAL '1' MINUTE) AS a JOIN \
             TUMBLE(b, ts, INTERVAL '1' MINUTE) AS b ON ... AND a.window_start = b.window_start) \
             or bound the time between them (AND b.ts BETWEEN a.ts - INTERVAL '10' SECOND AND \
             a.ts + INTERVAL '10' SECOND)"
        ))
    };
    let [join] = joins else {
        return Err(unbounded(
            "an interval join joins two streams once; this query has several stream joins",
        ));
    };
    let (left, right) = match (
        scanned_streams(&join.left, &names).as_slice(),
        scanned_streams(&join.right, &names).as_slice(),
    ) {
        ([l], [r]) if l != r => ((*l).clone(), (*r).clone()),
        ([l], [r]) if l == r => {
            return Err(unbounded(&format!(
                "the query joins stream '{l}' with itself without a window (interval \
                 self-joins are not supported)"
            )));
        }
        _ => return Err(unbounded("a join side reads several streams")),
    };
    let time_of = |name: &str| {
        streams
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.time_column)
            .unwrap_or_default()
    };
    let bounds = join.filter.as_ref().and_then(|filter| {
        time_bounds(
            filter,
            join.left.schema(),
            time_of(&left),
            join.right.schema(),
            time_of(&right),
        )
    });
    let Some((min_offset, max_offset)) = bounds else {
        return Err(unbounded(&format!(
            "the join of '{left}' and '{right}' has no bound on {right}.{} relative to {left}.{}",
            time_of(&right),
            time_of(&left)
        )));
    };
    if min_offset > max_offset {
        return Err(Error::invalid(format!(
            "the time bounds of the join of '{left}' and '{right}' can never hold: \
             {right}.{} - {left}.{} must be at least {} and at most {}",
            time_of(&right),
            time_of(&left),
            crate::format_duration(min_offset),
            crate::format_duration(max_offset)
        )));
    }
    if join.join_type != JoinType::Inner {
        return Err(Error::invalid(format!(
            "{} interval joins are not supported yet (only INNER); for outer joins join over \
             the same TUMBLE window",
            join.join_type.to_string().to_uppercase()
        )));
    }
    let mut above = None;
    let _ = plan.apply(|node| {
        above = match node {
            LogicalPlan::Aggregate(_) => Some("aggregation"),
            LogicalPlan::Window(_) => Some("window functions (OVER)"),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => Some("ORDER BY and LIMIT"),
            LogicalPlan::Distinct(_) => Some("SELECT DISTINCT"),
            _ => None,
        };
        Ok(if above.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if let Some(what) = above {
        return Err(Error::invalid(format!(
            "{what} over an interval join is not supported: an interval join emits its rows as \
             they match; archive them in a view and aggregate that view's rows over a window, \
             or join over the same TUMBLE window"
        )));
    }
    Ok(StreamJoin::Interval {
        left,
        right,
        min_offset,
        max_offset,
    })
}

/// Whether the join's condition equates the two sides' `window_start`.
fn joins_on_window(join: &Join) -> bool {
    let is_window_pair = |l: &Expr, r: &Expr| {
        matches!((l, r), (Expr::Column(a), Expr::Column(b))
            if a.name == WINDOW_START && b.name == WINDOW_START)
    };
    join.on.iter().any(|(l, r)| is_window_pair(l, r))
        || join.filter.as_ref().is_some_and(|filter| {
            split_conjunction(filter).into_iter().any(|e| {
                matches!(e, Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })
                    if is_window_pair(left, right))
            })
        })
}

/// `l.window_start = r.window_start` with the join's qualifiers, for an
/// error message.
fn window_equality(join: &Join) -> String {
    let qualifier = |schema: &DFSchema| {
        schema
            .iter()
            .find(|(_, f)| f.name() == WINDOW_START)
            .and_then(|(q, _)| q.map(|q| format!("{q}.")))
            .unwrap_or_default()
    };
    format!(
        "{}{WINDOW_START} = {}{WINDOW_START}",
        qualifier(join.left.schema()),
        qualifier(join.right.schema())
    )
}

/// The bounds `[min, max]` of `right.time - left.time` a join filter
/// imposes, if it imposes both.
fn time_bounds(
    filter: &Expr,
    left: &DFSchema,
    left_time: &str,
    right: &DFSchema,
    right_time: &str,
) -> Option<(i64, i64)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Side {
        Left,
        Right,
    }
    // `expr` as `time of side + offset`.
    let offset_time = |expr: &Expr| -> Option<(Side, i64)> {
        let column_side = |c: &Column| {
            if c.name == left_time && left.has_column(c) {
                Some(Side::Left)
            } else if c.name == right_time && right.has_column(c) {
                Some(Side::Right)
            } else {
                None
            }
        };
        match unwrap_casts(expr) {
            Expr::Column(c) => Some((column_side(c)?, 0)),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let Expr::Column(c) = unwrap_casts(left) else {
                    return None;
                };
                let n = interval_nanos(unwrap_casts(right))?;
                match op {
                    Operator::Plus => Some((column_side(c)?, n)),
                    Operator::Minus => Some((column_side(c)?, n.checked_neg()?)),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    let (mut min, mut max): (Option<i64>, Option<i64>) = (None, None);
    // Records `a op b` when it bounds right - left.
    let mut compare = |a: &Expr, op: Operator, b: &Expr| {
        let (Some((sa, oa)), Some((sb, ob))) = (offset_time(a), offset_time(b)) else {
            return;
        };
        // Rewrite to `right - left <op> d`.
        let (op, d) = match (sa, sb) {
            (Side::Right, Side::Left) => (op, ob - oa),
            (Side::Left, Side::Right) => match op.swap() {
                Some(op) => (op, oa - ob),
                None => return,
            },
            _ => return,
        };
        match op {
            Operator::Gt | Operator::GtEq => min = Some(min.map_or(d, |m| m.max(d))),
            Operator::Lt | Operator::LtEq => max = Some(max.map_or(d, |m| m.min(d))),
            Operator::Eq => {
                min = Some(min.map_or(d, |m| m.max(d)));
                max = Some(max.map_or(d, |m| m.min(d)));
            }
            _ => {}
        }
    };
    for conjunct in split_conjunction(filter) {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => compare(left, *op, right),
            Expr::Between(between) if !between.negated => {
                compare(&between.expr, Operator::GtEq, &between.low);
                compare(&between.expr, Operator::LtEq, &between.high);
            }
            _ => {}
        }
    }
    Some((min?, max?))
}

fn unwrap_casts(expr: &Expr) -> &Expr {
    match expr {
        Expr::Cast(cast) => unwrap_casts(&cast.expr),
        Expr::TryCast(cast) => unwrap_casts(&cast.expr),
        other => other,
    }
}

/// A constant interval or duration, in nanoseconds (none for months).
fn interval_nanos(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?),
        ScalarValue::DurationNanosecond(Some(n)) => Some(*n),
        ScalarValue::DurationMicrosecond(Some(n)) => n.checked_mul(1_000),
        ScalarValue::DurationMillisecond(Some(n)) => n.checked_mul(1_000_000),
        ScalarValue::DurationSecond(Some(n)) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// Interval literals with no months, added to or subtracted from a
/// nanosecond timestamp in a join's filter, as nanosecond durations: the
/// same instants, computed with plain integer arithmetic instead of the
/// calendar arithmetic intervals need. The filter of an interval join runs
/// for every candidate pair, so this is most of its cost.
pub(crate) fn durations_in_join_filters(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::ExprSchemable;
    let rewritten = plan.transform_up(|node| {
        let LogicalPlan::Join(join) = &node else {
            return Ok(Transformed::no(node));
        };
        let Some(filter) = &join.filter else {
            return Ok(Transformed::no(node));
        };
        let schema = join.left.schema().join(join.right.schema())?;
        let filter = filter.clone().transform_up(|expr| {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
                return Ok(Transformed::no(expr));
            };
            let (Operator::Plus | Operator::Minus, Expr::Literal(value, metadata)) =
                (op, right.as_ref())
            else {
                return Ok(Transformed::no(expr));
            };
            let ScalarValue::IntervalMonthDayNano(Some(interval)) = value else {
                return Ok(Transformed::no(expr));
            };
            let nanos = (interval.months == 0)
                .then(|| {
                    i64::from(interval.days)
                        .checked_mul(86_400_000_000_000)?
                        .checked_add(interval.nanoseconds)
                })
                .flatten();
            let nanosecond_time = matches!(
                left.get_type(&schema),
                Ok(DataType::Timestamp(TimeUnit::Nanosecond, _))
            );
            match nanos {
                Some(nanos) if nanosecond_time => {
                    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                        left.clone(),
                        *op,
                        Box::new(Expr::Literal(
                            ScalarValue::DurationNanosecond(Some(nanos)),
                            metadata.clone(),
                        )),
                    ))))
                }
                _ => Ok(Transformed::no(expr)),
            }
        })?;
        if !filter.transformed {
            return Ok(Transformed::no(node));
        }
        let mut join = join.clone();
        join.filter = Some(filter.data);
        Ok(Transformed::yes(LogicalPlan::Join(join)))
    })?;
    Ok(rewritten.data)
}
