//! Stages within one query: a window over a CTE, as in
//!
//! ```sql
//! WITH bars AS (SELECT symbol, window_start AS minute, sum(volume) AS vol
//!               FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE)
//!               GROUP BY symbol, window_start, window_end)
//! SELECT symbol, window_start, sum(vol) FROM TUMBLE(bars, minute, INTERVAL '5' MINUTE)
//! GROUP BY symbol, window_start, window_end
//! ```
//!
//! holds two stateful operators, one feeding the other. A query like this
//! runs as a chain of stages, each CTE planned as a continuous query of its
//! own (like a view that only this query reads), so each window is a
//! window operator with its own state and the rows of one flow to the next
//! with a derived watermark, as between views.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Visit, Visitor};

use crate::parser::normalize;
use crate::{Error, Result};

/// A query split into stages: its CTEs in order, each a continuous query
/// reading the stage before it (the first reads streams or views), and the
/// body reading the last.
#[derive(Debug, Clone)]
pub struct Stages {
    /// Each CTE's name and query.
    pub ctes: Vec<(String, ast::Query)>,
    /// The query without its `WITH`.
    pub body: ast::Query,
}

/// Splits `query` into stages when a window of it reads one of its CTEs
/// (which DataFusion cannot plan as one streaming query); `None` for any
/// other query, whose CTEs are planned inline as before.
pub fn split_stages(query: &ast::Query) -> Result<Option<Stages>> {
    let Some(with) = &query.with else {
        return Ok(None);
    };
    let names: Vec<String> = with
        .cte_tables
        .iter()
        .map(|cte| normalize(&cte.alias.name))
        .collect();
    let mut finder = WindowedRelations::default();
    let _ = query.visit(&mut finder);
    if !finder.windowed.iter().any(|r| names.contains(r)) {
        return Ok(None);
    }
    if with.recursive {
        return Err(Error::invalid(
            "a continuous query cannot use WITH RECURSIVE",
        ));
    }
    let mut ctes = Vec::with_capacity(names.len());
    for (cte, name) in with.cte_tables.iter().zip(names) {
        if !cte.alias.columns.is_empty() {
            return Err(Error::invalid(format!(
                "the CTE '{name}' renames its columns in its header; name them in its SELECT \
                 instead (... AS name), so its windows can be planned as a stage"
            )));
        }
        ctes.push((name, (*cte.query).clone()));
    }
    let mut body = query.clone();
    body.with = None;
    Ok(Some(Stages { ctes, body }))
}

/// The relations window calls read (their first argument), anywhere in a
/// query.
#[derive(Default)]
struct WindowedRelations {
    windowed: Vec<String>,
}

impl Visitor for WindowedRelations {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &ast::TableFactor) -> ControlFlow<()> {
        if let ast::TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
            && matches!(
                name.to_string().to_ascii_uppercase().as_str(),
                "TUMBLE" | "HOP" | "SESSION"
            )
            && let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
                ast::Expr::Identifier(relation),
            ))) = args.args.first()
        {
            self.windowed.push(normalize(relation));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Statement, parse_script};

    fn query(sql: &str) -> ast::Query {
        let script = format!("CREATE MATERIALIZED VIEW v AS {sql}");
        match parse_script(&script)
            .expect("parse")
            .into_iter()
            .next()
            .map(|s| s.statement)
        {
            Some(Statement::CreateView(create)) => (*create.query).clone(),
            _ => panic!("not a view: {script}"),
        }
    }

    #[test]
    fn a_window_over_a_cte_splits_the_query_into_stages() {
        let stages = split_stages(&query(
            "WITH ok AS (SELECT * FROM trades WHERE volume > 0),
                  bars AS (SELECT symbol, window_start AS minute, count(*) AS n
                           FROM TUMBLE(ok, ts, INTERVAL '1' MINUTE)
                           GROUP BY symbol, window_start, window_end)
             SELECT symbol, window_start, sum(n) FROM TUMBLE(bars, minute, INTERVAL '5' MINUTE)
             GROUP BY symbol, window_start, window_end",
        ))
        .expect("split")
        .expect("stages");
        let names: Vec<&str> = stages.ctes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ok", "bars"]);
        assert!(stages.body.with.is_none());
        assert!(stages.body.to_string().starts_with("SELECT symbol"));
    }

    #[test]
    fn other_ctes_stay_inline() {
        for sql in [
            "SELECT * FROM trades",
            "WITH ok AS (SELECT * FROM trades WHERE volume > 0) SELECT * FROM ok",
            "WITH ok AS (SELECT * FROM trades) \
             SELECT symbol, count(*) FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE) \
             GROUP BY symbol, window_start, window_end",
        ] {
            assert!(split_stages(&query(sql)).expect(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn renamed_cte_columns_are_refused_by_name() {
        let error = split_stages(&query(
            "WITH b (s, m) AS (SELECT symbol, window_start FROM TUMBLE(trades, ts, INTERVAL '1' MINUTE))
             SELECT s, count(*) FROM TUMBLE(b, m, INTERVAL '5' MINUTE) GROUP BY s, window_start, window_end",
        ))
        .expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("the CTE 'b' renames its columns"),
            "{error}"
        );
    }
}
