use std::collections::BTreeSet;
use std::ops::ControlFlow;

use arrow::datatypes::Schema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, TableAlias,
    TableFactor, VisitMut, VisitorMut,
};

use crate::interval::interval_nanos;
use crate::parser::normalize;
use crate::{Error, Result};

/// Column added by window table functions: the window's inclusive start.
pub const WINDOW_START: &str = "window_start";
/// Column added by window table functions: the window's exclusive end.
pub const WINDOW_END: &str = "window_end";
/// The time attribute of a stream declared without a WATERMARK: when each
/// row arrived.
pub const ARRIVAL_TIME_COLUMN: &str = "_arrival_time";

/// The shape of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(stream, col, size)`: fixed, non-overlapping windows.
    Tumble,
    /// `HOP(stream, col, slide, size)`: fixed windows starting every `slide`.
    Hop,
    /// `SESSION(stream, col, gap)`: per GROUP BY key, a maximal run of events
    /// less than `gap` apart; `window_start` is the first event's time and
    /// `window_end` the last event's time + `gap`.
    Session,
}

/// A window table function applied to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Tumbling, hopping or session.
    pub kind: WindowKind,
    /// The event-time column rows are assigned by.
    pub time_column: String,
    /// Window length in nanoseconds; for SESSION the gap (see
    /// [`Window::gap`]), as a session's length depends on its events.
    pub size: i64,
    /// Distance between window starts in nanoseconds (`size` for TUMBLE;
    /// the gap for SESSION, whose windows have no fixed starts).
    pub slide: i64,
}

impl Window {
    /// The width of a pane: the largest interval that divides both the size
    /// and the slide, so every window is a whole number of panes and each row
    /// is aggregated into exactly one pane. Meaningless for SESSION (it is
    /// the gap there).
    pub fn pane(&self) -> i64 {
        gcd(self.size, self.slide)
    }

    /// For a SESSION window, the gap in nanoseconds: events of one key less
    /// than this apart belong to the same session. `None` for fixed windows.
    pub fn gap(&self) -> Option<i64> {
        (self.kind == WindowKind::Session).then_some(self.size)
    }

    /// The SQL function name, for messages.
    pub fn function(&self) -> &'static str {
        match self.kind {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Session => "SESSION",
        }
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs().max(1)
}

/// A window call found in a query, before its stream is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowCall {
    pub stream: String,
    pub window: Window,
}

/// What a query reads: its window calls (rewritten in place into plain
/// references to the stream, keeping or adding the alias so qualified
/// column names still resolve), every relation it names and its CTE names.
#[derive(Debug, Default)]
pub(crate) struct Relations {
    pub windows: Vec<WindowCall>,
    pub relations: BTreeSet<String>,
    pub ctes: BTreeSet<String>,
}

pub(crate) fn rewrite_windows(query: &mut ast::Query) -> Result<Relations> {
    let mut finder = WindowFinder::default();
    match query.visit(&mut finder) {
        ControlFlow::Continue(()) => Ok(finder.found),
        ControlFlow::Break(e) => Err(e),
    }
}

#[derive(Default)]
struct WindowFinder {
    found: Relations,
}

impl VisitorMut for WindowFinder {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<Error> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.found.ctes.insert(normalize(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let function = name.to_string().to_ascii_uppercase();
        let kind = match function.as_str() {
            "TUMBLE" => WindowKind::Tumble,
            "HOP" => WindowKind::Hop,
            "SESSION" => WindowKind::Session,
            _ => {
                return ControlFlow::Break(Error::invalid(format!(
                    "unknown table function '{name}'; windows are TUMBLE(stream, time_column, size), \
                     HOP(stream, time_column, slide, size) and SESSION(stream, time_column, gap)"
                )));
            }
        };
        let call = match parse_window_call(kind, &args.args) {
            Ok(call) => call,
            Err(e) => return ControlFlow::Break(e),
        };
        let alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(call.stream.clone()),
            columns: vec![],
            at: None,
        });
        *factor = TableFactor::Table {
            name: ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote(
                '"',
                call.stream.clone(),
            ))]),
            alias: Some(alias),
            args: None,
            with_hints: vec![],
            version: None,
            with_ordinality: false,
            partitions: vec![],
            json_path: None,
            sample: None,
            index_hints: vec![],
        };
        self.found.windows.push(call);
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<Error> {
        let name = match relation.0.as_slice() {
            [part] => part.as_ident().map(normalize),
            _ => None,
        }
        .unwrap_or_else(|| relation.to_string());
        self.found.relations.insert(name);
        ControlFlow::Continue(())
    }
}

fn parse_window_call(kind: WindowKind, args: &[FunctionArg]) -> Result<WindowCall> {
    let (function, usage) = match kind {
        WindowKind::Tumble => ("TUMBLE", "TUMBLE(stream, time_column, size)"),
        WindowKind::Hop => ("HOP", "HOP(stream, time_column, slide, size)"),
        WindowKind::Session => ("SESSION", "SESSION(stream, time_column, gap)"),
    };
    let exprs = args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(Error::invalid(format!(
                "{function} takes positional arguments: {usage}; found {other}"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let expected = if kind == WindowKind::Hop { 4 } else { 3 };
    if exprs.len() != expected {
        return Err(Error::invalid(format!(
            "{function} takes {expected} arguments: {usage}; found {}",
            exprs.len()
        )));
    }
    let ident = |e: &Expr, what: &str| match e {
        Expr::Identifier(i) => Ok(normalize(i)),
        other => Err(Error::invalid(format!(
            "the {what} argument of {function} must be a name, found {other}; usage: {usage}"
        ))),
    };
    let stream = ident(exprs[0], "first (stream)")?;
    let time_column = ident(exprs[1], "second (time column)")?;
    let (size, slide) = match kind {
        WindowKind::Tumble => {
            let size = interval_nanos(exprs[2])?;
            (size, size)
        }
        WindowKind::Hop => {
            let slide = interval_nanos(exprs[2])?;
            let size = interval_nanos(exprs[3])?;
            if slide > size {
                return Err(Error::invalid(format!(
                    "HOP slide ({}) must not exceed its size ({})",
                    exprs[2], exprs[3]
                )));
            }
            (size, slide)
        }
        WindowKind::Session => {
            let gap = interval_nanos(exprs[2]).map_err(|e| {
                Error::invalid(format!(
                    "the gap of SESSION must be a positive interval such as INTERVAL '5' MINUTE: {e}"
                ))
            })?;
            (gap, gap)
        }
    };
    Ok(WindowCall {
        stream,
        window: Window {
            kind,
            time_column,
            size,
            slide,
        },
    })
}

/// Checks a planned query over a SESSION window of stream `source` (whose
/// columns are `stream`): sessions are formed per GROUP BY key, so the
/// query must aggregate, and its keys must be plain columns of the stream.
pub(crate) fn check_session(
    source: &str,
    stream: &Schema,
    plan: &LogicalPlan,
    aggregates: bool,
) -> Result<()> {
    if !aggregates {
        return Err(Error::invalid(format!(
            "a SESSION window over '{source}' needs an aggregation: a session's rows are known \
             only when it closes; GROUP BY the session key and window_start, window_end, e.g. \
             SELECT <key>, window_start, window_end, count(*) FROM SESSION({source}, <time column>, <gap>) \
             GROUP BY <key>, window_start, window_end"
        )));
    }
    let mut problem = None;
    plan.apply(|node| {
        problem = match node {
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => Some(Error::invalid(format!(
                "ORDER BY and LIMIT are not supported over a SESSION window of '{source}': each \
                 session yields one row per key when it closes; order or limit the view's rows \
                 with an ad-hoc SELECT instead"
            ))),
            // The optimizer pushes a filter on group columns below the
            // aggregate, where a row's window columns are still its own
            // event's, not its session's bounds.
            LogicalPlan::Filter(filter)
                if filter
                    .predicate
                    .column_refs()
                    .iter()
                    .any(|c| c.name == WINDOW_START || c.name == WINDOW_END) =>
            {
                Some(Error::invalid(format!(
                    "filters on window_start or window_end of a SESSION window over '{source}' \
                     are not supported: a session's bounds are known only when it closes; \
                     filter the view's rows with an ad-hoc SELECT instead"
                )))
            }
            LogicalPlan::Aggregate(agg) => agg.group_expr.iter().find_map(|e| match e {
                LogicalExpr::Column(c) if c.name == WINDOW_START || c.name == WINDOW_END => None,
                LogicalExpr::Column(c) if stream.field_with_name(&c.name).is_ok() => None,
                other => Some(Error::invalid(format!(
                    "the GROUP BY of a SESSION window over '{source}' must list columns of the \
                     stream (the session key) besides window_start and window_end; found {other}: \
                     group by a column of '{source}' instead"
                ))),
            }),
            _ => None,
        };
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    problem.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};

    fn rewrite(sql: &str) -> (String, Result<Relations>) {
        let mut q = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_query()
            .unwrap();
        let r = rewrite_windows(&mut q);
        (q.to_string(), r)
    }

    #[test]
    fn tumble_is_rewritten_to_its_stream() {
        let (sql, r) = rewrite(
            "SELECT symbol, count(*) FROM TUMBLE(Trades, ts, INTERVAL '1' MINUTE) GROUP BY 1",
        );
        let r = r.unwrap();
        assert_eq!(
            sql,
            "SELECT symbol, count(*) FROM \"trades\" AS trades GROUP BY 1"
        );
        assert_eq!(r.windows[0].stream, "trades");
        assert_eq!(r.windows[0].window.size, 60_000_000_000);
        assert!(r.relations.contains("trades"));
    }

    #[test]
    fn hop_panes_divide_size_and_slide() {
        let (_, r) =
            rewrite("SELECT * FROM HOP(t, ts, INTERVAL '20' SECOND, INTERVAL '50' SECOND) AS w");
        let w = &r.unwrap().windows[0].window;
        assert_eq!(
            (w.slide, w.size, w.pane()),
            (20_000_000_000, 50_000_000_000, 10_000_000_000)
        );
    }

    #[test]
    fn malformed_calls_explain_usage() {
        let (_, r) = rewrite("SELECT * FROM TUMBLE(t, ts)");
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("TUMBLE takes 3 arguments")
        );
        let (_, r) = rewrite("SELECT * FROM HOP(t, ts, INTERVAL '2' MINUTE, INTERVAL '1' MINUTE)");
        assert!(r.unwrap_err().to_string().contains("must not exceed"));
        let (_, r) = rewrite("SELECT * FROM SESSIONIZE(t, ts)");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("unknown table function"), "{e}");
        assert!(e.contains("SESSION(stream, time_column, gap)"), "{e}");
    }

    #[test]
    fn session_gap_is_its_size() {
        let (sql, r) = rewrite(
            "SELECT k, count(*) FROM SESSION(clicks, ts, INTERVAL '5' MINUTE) GROUP BY k, window_start, window_end",
        );
        let w = &r.unwrap().windows[0].window;
        assert_eq!(w.kind, WindowKind::Session);
        assert_eq!(w.function(), "SESSION");
        assert_eq!(w.gap(), Some(300_000_000_000));
        assert_eq!((w.size, w.slide), (300_000_000_000, 300_000_000_000));
        assert!(sql.contains("FROM \"clicks\" AS clicks"), "{sql}");
        let (_, r) = rewrite("SELECT * FROM TUMBLE(t, ts, INTERVAL '1' MINUTE)");
        assert_eq!(r.unwrap().windows[0].window.gap(), None);
    }

    #[test]
    fn malformed_sessions_explain_usage() {
        for (sql, expected) in [
            (
                "SELECT * FROM SESSION(t, ts)",
                "SESSION takes 3 arguments: SESSION(stream, time_column, gap); found 2",
            ),
            (
                "SELECT * FROM SESSION(t, ts, INTERVAL '1' SECOND, INTERVAL '2' SECOND)",
                "SESSION takes 3 arguments",
            ),
            (
                "SELECT * FROM SESSION(t, ts, INTERVAL '0' SECOND)",
                "the gap of SESSION must be a positive interval such as INTERVAL '5' MINUTE: \
                 invalid interval INTERVAL '0' SECOND: must be positive",
            ),
            (
                "SELECT * FROM SESSION(t, ts, INTERVAL '-3' SECOND)",
                "must be positive",
            ),
            (
                "SELECT * FROM SESSION(t, ts, INTERVAL '1' MONTH)",
                "months and years have no fixed length",
            ),
            (
                "SELECT * FROM SESSION(t, 'ts', INTERVAL '1' SECOND)",
                "the second (time column) argument of SESSION must be a name",
            ),
        ] {
            let (_, r) = rewrite(sql);
            let e = r.unwrap_err().to_string();
            assert!(e.contains(expected), "{sql}: {e}");
        }
    }
}
