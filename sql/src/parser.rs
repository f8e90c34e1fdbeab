use datafusion::sql::sqlparser::ast::{self, ColumnOption, Expr, Ident, ObjectName};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use fibers_catalog::ObjectKind;

use crate::interval::interval_nanos;
use crate::limits::SqlLimits;
use crate::statement::{
    ColumnSpec, CreateQuery, CreateStream, RestartFrom, ShowTarget, Statement, SubscribeFrom,
    WatermarkSpec,
};
use crate::{Error, Options, Result, sql_type_to_arrow};

/// A statement of a script with the text and position it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedStatement {
    /// The parsed statement.
    pub statement: Statement,
    /// The statement's text, without the trailing `;`.
    pub text: String,
    /// The 1-based line the statement starts on.
    pub line: u64,
}

/// Parses a script of `;`-separated statements, within the default
/// [`SqlLimits`].
///
/// Errors name the line and column at fault.
pub fn parse_script(sql: &str) -> Result<Vec<ParsedStatement>> {
    parse_script_with(sql, &SqlLimits::default())
}

/// Parses a script of `;`-separated statements; a script or statement
/// larger or deeper than `limits` is refused before it is parsed.
pub fn parse_script_with(sql: &str, limits: &SqlLimits) -> Result<Vec<ParsedStatement>> {
    limits.check_script(sql)?;
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location()?;
    limits.check_tokens(sql, &tokens)?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let offsets = LineOffsets::new(sql);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let start = parser.peek_token();
        if start.token == Token::EOF {
            break;
        }
        let statement = parse_statement(&mut parser).map_err(|e| at(&start, e))?;
        let end = parser.peek_token();
        if !matches!(end.token, Token::SemiColon | Token::EOF) {
            return Err(at(
                &end,
                Error::Syntax(format!(
                    "expected ';' after the statement, found {}",
                    end.token
                )),
            ));
        }
        let text = offsets
            .slice(sql, start.span.start, end.span.start)
            .trim()
            .to_string();
        statements.push(ParsedStatement {
            statement,
            text,
            line: start.span.start.line,
        });
    }
    Ok(statements)
}

/// Prefixes a statement-level error with where the statement starts, unless
/// sqlparser already said where.
fn at(token: &TokenWithSpan, e: Error) -> Error {
    match e {
        Error::Syntax(m) if !m.contains("Line:") => Error::Syntax(format!(
            "{m} at Line: {}, Column: {}",
            token.span.start.line, token.span.start.column
        )),
        other => other,
    }
}

fn parse_statement(p: &mut Parser) -> Result<Statement> {
    if p.parse_keyword(Keyword::CREATE) {
        if parse_word(p, "STREAM") {
            return parse_create_stream(p).map(Statement::CreateStream);
        }
        if p.parse_keyword(Keyword::TABLE) {
            let table = parse_create_stream(p)?;
            if table.watermark.is_some() {
                return Err(Error::invalid(format!(
                    "table '{}' declares a WATERMARK; tables are reference data without event \
                     time (declare a STREAM for rows that arrive over time)",
                    table.name
                )));
            }
            return Ok(Statement::CreateTable(table));
        }
        if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            return parse_create_query(p).map(Statement::CreateView);
        }
        if parse_word(p, "SINK") {
            return parse_create_query(p).map(Statement::CreateSink);
        }
        return p.expected(
            "STREAM, TABLE, MATERIALIZED VIEW or SINK after CREATE",
            p.peek_token(),
        )?;
    }
    if parse_word(p, "SHOW") {
        if parse_word(p, "TOPICS") {
            let brokers = parse_from_brokers(p)?;
            return Ok(Statement::ShowTopics { brokers });
        }
        let target = if parse_word(p, "STREAMS") {
            ShowTarget::Streams
        } else if p.parse_keyword(Keyword::TABLES) {
            ShowTarget::Tables
        } else if parse_word(p, "VIEWS")
            || p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEWS])
        {
            ShowTarget::Views
        } else if parse_word(p, "SINKS") {
            ShowTarget::Sinks
        } else if parse_word(p, "JOBS") {
            ShowTarget::Jobs
        } else {
            return p.expected(
                "STREAMS, TABLES, VIEWS, SINKS, JOBS or TOPICS after SHOW",
                p.peek_token(),
            )?;
        };
        return Ok(Statement::Show(target));
    }
    if p.parse_keyword(Keyword::DESCRIBE) || p.parse_keyword(Keyword::DESC) {
        if parse_word(p, "TOPIC") {
            let topic = parse_topic(p)?;
            let brokers = parse_from_brokers(p)?;
            return Ok(Statement::DescribeTopic { topic, brokers });
        }
        return Ok(Statement::Describe(parse_name(p)?));
    }
    if parse_word(p, "SUBSCRIBE") {
        let name = parse_name(p)?;
        let from = if p.parse_keyword(Keyword::FROM) {
            if parse_word(p, "NOW") {
                SubscribeFrom::Now
            } else if parse_word(p, "BEGINNING") {
                SubscribeFrom::Beginning
            } else {
                return p.expected("NOW or BEGINNING after FROM", p.peek_token())?;
            }
        } else {
            SubscribeFrom::Now
        };
        return Ok(Statement::Subscribe { name, from });
    }
    if p.parse_keyword(Keyword::ALTER) {
        return parse_restart(p);
    }
    if p.parse_keyword(Keyword::DROP) {
        let kind = if parse_word(p, "STREAM") {
            ObjectKind::Stream
        } else if p.parse_keyword(Keyword::TABLE) {
            ObjectKind::Table
        } else if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            ObjectKind::View
        } else if parse_word(p, "SINK") {
            ObjectKind::Sink
        } else {
            return p.expected(
                "STREAM, TABLE, MATERIALIZED VIEW or SINK after DROP",
                p.peek_token(),
            )?;
        };
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parse_name(p)?;
        return Ok(Statement::Drop {
            kind,
            name,
            if_exists,
        });
    }
    match p.parse_statement()? {
        statement @ ast::Statement::Query(_) => Ok(Statement::Query(Box::new(statement))),
        // EXPLAIN is read-only only over a query: `EXPLAIN ANALYZE` runs
        // what it explains, so it must never wrap a statement that writes.
        ast::Statement::Explain { statement, .. }
            if !matches!(*statement, ast::Statement::Query(_)) =>
        {
            Err(Error::invalid(format!(
                "EXPLAIN takes a query (SELECT, VALUES or WITH), not {}",
                first_words(&statement.to_string())
            )))
        }
        statement @ ast::Statement::Explain { .. } => Ok(Statement::Query(Box::new(statement))),
        statement @ ast::Statement::Insert(_) => Ok(Statement::Insert(Box::new(statement))),
        other => Err(Error::invalid(format!(
            "unsupported statement: {}",
            first_words(&other.to_string())
        ))),
    }
}

/// The rest of `ALTER MATERIALIZED VIEW | SINK name RESTART FROM ...`.
fn parse_restart(p: &mut Parser) -> Result<Statement> {
    let kind = if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
        ObjectKind::View
    } else if parse_word(p, "SINK") {
        ObjectKind::Sink
    } else {
        return p.expected("MATERIALIZED VIEW or SINK after ALTER", p.peek_token())?;
    };
    let name = parse_name(p)?;
    if !parse_word(p, "RESTART") {
        return p.expected(
            "RESTART FROM EARLIEST | LATEST | TIMESTAMP '...'",
            p.peek_token(),
        )?;
    }
    if !p.parse_keyword(Keyword::FROM) {
        return p.expected("FROM after RESTART", p.peek_token())?;
    }
    let from = if parse_word(p, "EARLIEST") {
        RestartFrom::Earliest
    } else if parse_word(p, "LATEST") {
        RestartFrom::Latest
    } else if p.parse_keyword(Keyword::TIMESTAMP) {
        RestartFrom::Timestamp(p.parse_literal_string()?)
    } else {
        return p.expected(
            "EARLIEST, LATEST or TIMESTAMP '...' after RESTART FROM",
            p.peek_token(),
        )?;
    };
    Ok(Statement::Restart { kind, name, from })
}

/// `FROM 'host:port,...'`, if given.
fn parse_from_brokers(p: &mut Parser) -> Result<Option<String>> {
    if !p.parse_keyword(Keyword::FROM) {
        return Ok(None);
    }
    Ok(Some(p.parse_literal_string()?))
}

/// A topic name: a string literal, or an identifier kept as written (topic
/// names are case-sensitive and may contain dots).
fn parse_topic(p: &mut Parser) -> Result<String> {
    if let Token::SingleQuotedString(s) = &p.peek_token().token {
        let topic = s.clone();
        p.next_token();
        return Ok(topic);
    }
    let name: ObjectName = p.parse_object_name(false)?;
    Ok(name
        .0
        .iter()
        .filter_map(|part| part.as_ident().map(|i| i.value.clone()))
        .collect::<Vec<_>>()
        .join("."))
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Consumes the unquoted word `word` (case-insensitive) if it is next.
fn parse_word(p: &mut Parser, word: &str) -> bool {
    match &p.peek_token().token {
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
            p.next_token();
            true
        }
        _ => false,
    }
}

/// An object name: unquoted identifiers are case-insensitive (lower-cased),
/// quoted ones are kept as written.
fn parse_name(p: &mut Parser) -> Result<String> {
    let token = p.peek_token();
    let name: ObjectName = p.parse_object_name(false)?;
    match name.0.as_slice() {
        [part] => match part.as_ident() {
            Some(ident) => Ok(normalize(ident)),
            None => Err(Error::Syntax(format!("expected a name, found {name}"))),
        },
        _ => Err(at(
            &token,
            Error::Syntax(format!(
                "qualified names such as '{name}' are not supported"
            )),
        )),
    }
}

pub(crate) fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn parse_create_stream(p: &mut Parser) -> Result<CreateStream> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parse_name(p)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    if p.consume_token(&Token::LParen) {
        loop {
            if parse_word(p, "WATERMARK") {
                if watermark.is_some() {
                    return Err(Error::invalid(format!(
                        "stream '{name}' declares more than one WATERMARK"
                    )));
                }
                watermark = Some(parse_watermark(p)?);
            } else {
                columns.push(parse_column(p)?);
            }
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma)?;
        }
    }
    let options = parse_with_options(p)?;
    Ok(CreateStream {
        name,
        if_not_exists,
        columns,
        watermark,
        options,
    })
}

fn parse_column(p: &mut Parser) -> Result<ColumnSpec> {
    let def = p.parse_column_def()?;
    let name = normalize(&def.name);
    let data_type = sql_type_to_arrow(&name, &def.data_type)?;
    let mut nullable = true;
    for option in &def.options {
        match &option.option {
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Null => nullable = true,
            other => {
                return Err(Error::invalid(format!(
                    "column option '{other}' of column '{name}' is not supported in a stream"
                )));
            }
        }
    }
    Ok(ColumnSpec {
        name,
        data_type,
        nullable,
    })
}

/// `WATERMARK FOR col AS col - INTERVAL '5' SECOND` (or `AS col` for no delay).
fn parse_watermark(p: &mut Parser) -> Result<WatermarkSpec> {
    p.expect_keyword(Keyword::FOR)?;
    let column = normalize(&p.parse_identifier()?);
    p.expect_keyword(Keyword::AS)?;
    let expr = p.parse_expr()?;
    let shape = || {
        Error::invalid(format!(
            "WATERMARK FOR {column} must be written AS {column} - INTERVAL '<n>' <unit>, found {expr}"
        ))
    };
    let (base, delay_nanos) = match &expr {
        Expr::Identifier(ident) => (normalize(ident), 0),
        Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } => match left.as_ref() {
            Expr::Identifier(ident) => (normalize(ident), interval_nanos(right)?),
            _ => return Err(shape()),
        },
        _ => return Err(shape()),
    };
    if base != column {
        return Err(shape());
    }
    Ok(WatermarkSpec {
        column,
        delay_nanos,
    })
}

fn parse_create_query(p: &mut Parser) -> Result<CreateQuery> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parse_name(p)?;
    let options = parse_with_options(p)?;
    p.expect_keyword(Keyword::AS)?;
    let query = p.parse_query()?;
    Ok(CreateQuery {
        name,
        if_not_exists,
        options,
        query,
    })
}

/// `WITH (key = value, ...)`; keys may be dotted (`properties.security.protocol`)
/// or quoted; values are strings, numbers or bare words.
fn parse_with_options(p: &mut Parser) -> Result<Options> {
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(Options::default());
    }
    p.expect_token(&Token::LParen)?;
    let mut pairs = Vec::new();
    if !p.consume_token(&Token::RParen) {
        loop {
            let key = parse_option_key(p)?;
            p.expect_token(&Token::Eq)?;
            let token = p.next_token();
            let value = match token.token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
                Token::Number(n, _) => n,
                Token::Minus => match p.next_token().token {
                    Token::Number(n, _) => format!("-{n}"),
                    _ => return p.expected("a number after '-'", token)?,
                },
                Token::Word(w) => w.value,
                _ => return p.expected("an option value such as 'text' or 42", token)?,
            };
            pairs.push((key, value));
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma)?;
        }
    }
    Options::from_pairs(pairs)
}

fn parse_option_key(p: &mut Parser) -> Result<String> {
    let token = p.next_token();
    let mut key = match token.token {
        Token::Word(w) => w.value,
        Token::SingleQuotedString(s) => return Ok(s),
        _ => return p.expected("an option name", token)?,
    };
    while p.consume_token(&Token::Period) {
        let part = p.next_token();
        match part.token {
            Token::Word(w) => {
                key.push('.');
                key.push_str(&w.value);
            }
            _ => return p.expected("an option name after '.'", part)?,
        }
    }
    Ok(key)
}

/// Maps sqlparser's (line, column) locations back to byte offsets.
pub(crate) struct LineOffsets {
    starts: Vec<usize>,
    /// The last location looked up and its byte offset: statements are
    /// looked up in order, so the next one usually starts on the same line
    /// further on, and counting characters resumes there instead of from
    /// the line's start (a script on one long line stays linear).
    last: std::cell::Cell<(u64, u64, usize)>,
}

impl LineOffsets {
    pub(crate) fn new(sql: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineOffsets {
            starts,
            last: std::cell::Cell::new((1, 1, 0)),
        }
    }

    fn offset(&self, sql: &str, loc: Location) -> usize {
        if loc.line == 0 {
            return sql.len();
        }
        let Some(&line_start) = self.starts.get(loc.line as usize - 1) else {
            return sql.len();
        };
        let (last_line, last_column, last_offset) = self.last.get();
        let (from, skip) = if last_line == loc.line && last_column <= loc.column {
            (last_offset, loc.column - last_column)
        } else {
            (line_start, loc.column.saturating_sub(1))
        };
        // Columns count characters, not bytes.
        let offset = sql[from..]
            .char_indices()
            .nth(skip as usize)
            .map_or(sql.len(), |(i, _)| from + i);
        self.last.set((loc.line, loc.column, offset));
        offset
    }

    pub(crate) fn slice<'a>(&self, sql: &'a str, start: Location, end: Location) -> &'a str {
        let from = self.offset(sql, start);
        let to = self.offset(sql, end).max(from);
        &sql[from..to]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, TimeUnit};

    #[test]
    fn script_splits_into_statements_with_text_and_line() {
        let sql = "-- setup\nCREATE STREAM t (a INT) WITH (connector = 'file', path = 'x;y');\n\nSHOW STREAMS;\nSELECT 1";
        let stmts = parse_script(sql).unwrap();
        assert_eq!(stmts.len(), 3);
        assert_eq!(
            stmts[0].text,
            "CREATE STREAM t (a INT) WITH (connector = 'file', path = 'x;y')"
        );
        assert_eq!(stmts[0].line, 2);
        assert_eq!(stmts[1].statement, Statement::Show(ShowTarget::Streams));
        assert_eq!(stmts[2].text, "SELECT 1");
    }

    #[test]
    fn create_stream_with_watermark_and_options() {
        let sql = "CREATE STREAM IF NOT EXISTS Trades (symbol TEXT NOT NULL, price DOUBLE, ts TIMESTAMP, \
                   WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
                   WITH (connector = 'kafka', rate = 5000, properties.security.protocol = 'SSL')";
        let Statement::CreateStream(s) = &parse_script(sql).unwrap()[0].statement else {
            panic!("not a stream");
        };
        assert_eq!(s.name, "trades");
        assert!(s.if_not_exists);
        assert_eq!(s.columns.len(), 3);
        assert!(!s.columns[0].nullable);
        assert_eq!(
            s.columns[2].data_type,
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        );
        assert_eq!(
            s.watermark,
            Some(WatermarkSpec {
                column: "ts".into(),
                delay_nanos: 5_000_000_000
            })
        );
        assert_eq!(s.options.get("rate"), Some("5000"));
        assert_eq!(s.options.get("properties.security.protocol"), Some("SSL"));
    }

    #[test]
    fn subscribe() {
        let stmts =
            parse_script("SUBSCRIBE vwap; subscribe Trades FROM beginning; SUBSCRIBE v FROM NOW")
                .unwrap();
        let got: Vec<_> = stmts.into_iter().map(|s| s.statement).collect();
        assert_eq!(
            got,
            [
                Statement::Subscribe {
                    name: "vwap".into(),
                    from: SubscribeFrom::Now
                },
                Statement::Subscribe {
                    name: "trades".into(),
                    from: SubscribeFrom::Beginning
                },
                Statement::Subscribe {
                    name: "v".into(),
                    from: SubscribeFrom::Now
                },
            ]
        );
        let err = parse_script("SUBSCRIBE v FROM yesterday").unwrap_err();
        assert!(err.to_string().contains("NOW or BEGINNING"), "{err}");
        let restarts = parse_script(
            "ALTER MATERIALIZED VIEW v RESTART FROM EARLIEST; alter sink s restart from latest;
             ALTER MATERIALIZED VIEW v RESTART FROM TIMESTAMP '2025-01-02T14:30:00Z'",
        )
        .unwrap();
        let restarts: Vec<_> = restarts.into_iter().map(|s| s.statement).collect();
        assert_eq!(
            restarts,
            [
                Statement::Restart {
                    kind: ObjectKind::View,
                    name: "v".into(),
                    from: RestartFrom::Earliest
                },
                Statement::Restart {
                    kind: ObjectKind::Sink,
                    name: "s".into(),
                    from: RestartFrom::Latest
                },
                Statement::Restart {
                    kind: ObjectKind::View,
                    name: "v".into(),
                    from: RestartFrom::Timestamp("2025-01-02T14:30:00Z".into())
                },
            ]
        );
        let err = parse_script("ALTER MATERIALIZED VIEW v RESTART FROM yesterday").unwrap_err();
        assert!(
            err.to_string().contains("EARLIEST, LATEST or TIMESTAMP"),
            "{err}"
        );
        let err = parse_script("ALTER TABLE t ADD COLUMN x INT").unwrap_err();
        assert!(
            err.to_string()
                .contains("MATERIALIZED VIEW or SINK after ALTER"),
            "{err}"
        );
        let err = parse_script("SUBSCRIBE v FROM yesterday").unwrap_err();
        assert!(err.to_string().contains("NOW or BEGINNING"), "{err}");
    }

    #[test]
    fn views_sinks_drops_and_describe() {
        let sql =
            "CREATE MATERIALIZED VIEW v WITH (archive = 'delta', path = 'v') AS SELECT * FROM t;
                   CREATE SINK s WITH (connector = 'parquet', path = 's') AS SELECT a FROM t;
                   DROP MATERIALIZED VIEW IF EXISTS v; DESCRIBE s; SHOW JOBS";
        let stmts = parse_script(sql).unwrap();
        assert!(matches!(&stmts[0].statement, Statement::CreateView(q) if q.name == "v"));
        assert!(
            matches!(&stmts[1].statement, Statement::CreateSink(q) if q.options.get("connector") == Some("parquet"))
        );
        assert_eq!(
            stmts[2].statement,
            Statement::Drop {
                kind: ObjectKind::View,
                name: "v".into(),
                if_exists: true
            }
        );
        assert_eq!(stmts[3].statement, Statement::Describe("s".into()));
        assert_eq!(stmts[4].statement, Statement::Show(ShowTarget::Jobs));
    }

    #[test]
    fn topics_and_inserts() {
        let stmts = parse_script(
            "SHOW TOPICS; SHOW TOPICS FROM 'k:9092'; DESCRIBE TOPIC 'big-trades'; \
             DESCRIBE TOPIC Trades.v1 FROM 'k:9092'; INSERT INTO s VALUES (1);",
        )
        .unwrap();
        assert_eq!(stmts[0].statement, Statement::ShowTopics { brokers: None });
        assert_eq!(
            stmts[1].statement,
            Statement::ShowTopics {
                brokers: Some("k:9092".into())
            }
        );
        assert_eq!(
            stmts[2].statement,
            Statement::DescribeTopic {
                topic: "big-trades".into(),
                brokers: None
            }
        );
        assert_eq!(
            stmts[3].statement,
            Statement::DescribeTopic {
                topic: "Trades.v1".into(),
                brokers: Some("k:9092".into())
            }
        );
        assert!(matches!(stmts[4].statement, Statement::Insert(_)));
    }

    #[test]
    fn errors_point_at_the_fault() {
        let err = parse_script("SHOW STREAMS;\nCREATE TABEL t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Line: 2"), "{err}");
        let err = parse_script("CREATE STREAM t (a FOO)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown type 'FOO' for column 'a'"), "{err}");
        let err = parse_script(
            "CREATE STREAM t (ts TIMESTAMP, WATERMARK FOR ts AS other - INTERVAL '1' SECOND)",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("WATERMARK FOR ts must be written"), "{err}");
        let err = parse_script("UPDATE t SET a = 1").unwrap_err().to_string();
        assert!(err.contains("unsupported statement: UPDATE t SET"), "{err}");
    }
}
