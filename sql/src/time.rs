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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use datafusion::catalog::TableProvider;
    use datafusion::datasource::MemTable;
    use fibers_catalog::ObjectKind;

    use super::*;
    use crate::planner::{StreamInfo, StreamResolver, plan_continuous_query};
    use crate::{Statement, parse_script};

    const SECOND: i64 = 1_000_000_000;

    /// One stream, `trades (symbol, volume, ts)`, with event time `ts`.
    struct Trades;

    impl Trades {
        fn schema() -> SchemaRef {
            Arc::new(Schema::new(vec![
                Field::new("symbol", DataType::Utf8, false),
                Field::new("volume", DataType::Int64, true),
                Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            ]))
        }
    }

    impl StreamResolver for Trades {
        fn stream(&self, name: &str) -> Option<StreamInfo> {
            (name == "trades").then(|| StreamInfo {
                schema: Trades::schema(),
                time_column: Some("ts".into()),
            })
        }

        fn kind_of(&self, name: &str) -> Option<ObjectKind> {
            (name == "trades").then_some(ObjectKind::Stream)
        }

        fn input_table(&self, _stream: &str, schema: SchemaRef) -> Arc<dyn TableProvider> {
            Arc::new(MemTable::try_new(schema, vec![vec![]]).expect("an empty table"))
        }

        fn reference_table(&self, _name: &str) -> Option<Arc<dyn TableProvider>> {
            None
        }
    }

    /// `sql` planned as the query of a view over `trades (symbol, volume,
    /// ts)`.
    pub(crate) async fn plan(sql: &str) -> ContinuousQuery {
        let script = format!("CREATE MATERIALIZED VIEW v AS {sql}");
        let parsed = parse_script(&script).expect("parse");
        let Some(Statement::CreateView(create)) = parsed.into_iter().next().map(|s| s.statement)
        else {
            panic!("not a view: {script}");
        };
        plan_continuous_query("v", &create.query, &Trades)
            .await
            .expect("plan")
    }

    fn attribute(column: &str, kind: TimeKind) -> Option<TimeAttribute> {
        Some(TimeAttribute {
            column: column.into(),
            kind,
        })
    }

    #[tokio::test]
    async fn a_renamed_event_time_passes_the_watermark_through() {
        let query = plan("SELECT symbol, ts AS traded_at FROM trades WHERE volume > 10").await;
        assert_eq!(
            query.time_attribute,
            attribute("traded_at", TimeKind::EventTime)
        );
        assert_eq!(query.output_watermark(95 * SECOND), Some(95 * SECOND));
    }

    #[tokio::test]
    async fn a_tumbling_aggregate_holds_back_to_its_oldest_open_window() {
        let query = plan(
            "SELECT symbol, window_start AS minute, sum(volume) AS vol \
             FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) GROUP BY symbol, window_start, window_end",
        )
        .await;
        assert_eq!(
            query.time_attribute,
            attribute("minute", TimeKind::WindowStart)
        );
        // At 95 s the window [0, 60) has closed and [60, 120) is open.
        assert_eq!(query.output_watermark(95 * SECOND), Some(60 * SECOND));
        // At exactly 120 s, [60, 120) has closed too.
        assert_eq!(query.output_watermark(120 * SECOND), Some(120 * SECOND));
        // Before any window closed, and at the ends of time.
        assert_eq!(query.output_watermark(-5 * SECOND), Some(-60 * SECOND));
        assert_eq!(query.output_watermark(i64::MAX), Some(i64::MAX));
        assert_eq!(query.output_watermark(i64::MIN), Some(i64::MIN));
    }

    #[tokio::test]
    async fn a_hopping_aggregate_holds_back_to_its_oldest_open_window() {
        let query = plan(
            "SELECT symbol, window_end, count(*) AS n \
             FROM HOP(trades, ts, INTERVAL '20' SECOND, INTERVAL '60' SECOND) \
             GROUP BY symbol, window_start, window_end",
        )
        .await;
        assert_eq!(
            query.time_attribute,
            attribute("window_end", TimeKind::WindowEnd)
        );
        // At 90 s, [20, 80) has closed and [40, 100) is the oldest open.
        assert_eq!(query.output_watermark(90 * SECOND), Some(100 * SECOND));
    }

    #[tokio::test]
    async fn a_tumble_without_aggregates_labels_rows_with_their_window() {
        let query =
            plan("SELECT symbol, window_start, ts FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)")
                .await;
        assert_eq!(
            query.time_attribute,
            attribute("window_start", TimeKind::WindowStart)
        );
        assert_eq!(query.output_watermark(95 * SECOND), Some(90 * SECOND));
    }

    #[tokio::test]
    async fn outputs_without_event_time_have_no_attribute() {
        for sql in [
            // The window's columns are grouped by but not kept.
            "SELECT symbol, sum(volume) AS vol FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) \
             GROUP BY symbol, window_start, window_end",
            // Computed from event time is not event time.
            "SELECT symbol, ts + INTERVAL '1' SECOND AS later FROM trades",
            // A session closes after a gap, later than any bound on its rows.
            "SELECT symbol, window_start, count(*) AS n \
             FROM SESSION(trades, ts, INTERVAL '30' SECOND) GROUP BY symbol, window_start, window_end",
        ] {
            let query = plan(sql).await;
            assert_eq!(query.time_attribute, None, "{sql}");
            assert_eq!(query.output_watermark(95 * SECOND), None, "{sql}");
        }
    }
}
