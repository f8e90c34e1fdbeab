use std::collections::BTreeSet;
use std::ops::ControlFlow;

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
}

/// A window table function applied to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Tumbling or hopping.
    pub kind: WindowKind,
    /// The event-time column rows are assigned by.
    pub time_column: String,
    /// Window length in nanoseconds.
    pub size: i64,
    /// Distance between window starts in nanoseconds (`size` for TUMBLE).
    pub slide: i64,
}

impl Window {
    /// The width of a pane: the largest interval that divides both the size
    /// and the slide, so every window is a whole number of panes and each row
    /// is aggregated into exactly one pane.
    pub fn pane(&self) -> i64 {
        gcd(self.size, self.slide)
    }

    /// The SQL function name, for messages.
    pub fn function(&self) -> &'static str {
        match self.kind {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
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
            _ => {
                return ControlFlow::Break(Error::invalid(format!(
                    "unknown table function '{name}'; windows are TUMBLE(stream, time_column, size) \
                     and HOP(stream, time_column, slide, size)"
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
    let expected = if kind == WindowKind::Tumble { 3 } else { 4 };
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
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("unknown table function")
        );
    }
}
