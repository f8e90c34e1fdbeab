//! Bounds on SQL text, checked on its tokens before a tree is built.
//!
//! sqlparser bounds its own recursion, but it builds chains of infix
//! operators (`1 + 1 + ... + 1`, `a OR b OR ...`, `UNION`s, `JOIN`s) in a
//! loop, so a statement of a few kilobytes becomes a tree thousands of
//! levels deep. Everything that walks that tree afterwards (DataFusion's
//! planner, the optimizer, even dropping it) recurses once per level, and
//! a stack overflow aborts the whole process. The tokens tell how deep the
//! tree can get, so a statement past the bound is refused before it is
//! parsed, with an error naming where it goes too deep.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::{Error, Result};

/// How large and how deep SQL text may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// The longest script, in bytes.
    pub max_script_bytes: usize,
    /// The longest single statement, in bytes.
    pub max_statement_bytes: usize,
    /// The deepest nesting of expressions, queries and joins, counting each
    /// operator of a chain (`a + b + c` is two deep) and each parenthesis.
    pub max_depth: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_script_bytes: 16 << 20,
            max_statement_bytes: 1 << 20,
            max_depth: 256,
        }
    }
}

impl SqlLimits {
    /// Fails when `sql` is longer than a script may be.
    pub(crate) fn check_script(&self, sql: &str) -> Result<()> {
        if sql.len() > self.max_script_bytes {
            return Err(Error::invalid(format!(
                "the SQL text is {} bytes, more than the limit of {} bytes; \
                 split it into smaller scripts",
                sql.len(),
                self.max_script_bytes
            )));
        }
        Ok(())
    }

    /// Fails when a statement of `tokens` would be longer or deeper than
    /// allowed. Statements are separated by `;` tokens.
    pub(crate) fn check_tokens(&self, sql: &str, tokens: &[TokenWithSpan]) -> Result<()> {
        let offsets = crate::parser::LineOffsets::new(sql);
        let mut depth = Depth::default();
        let mut statement_start = None;
        for token in tokens {
            if matches!(token.token, Token::Whitespace(_)) {
                continue;
            }
            if matches!(token.token, Token::SemiColon | Token::EOF) {
                if let Some(start) = statement_start.take() {
                    let bytes = offsets.slice(sql, start, token.span.start).len();
                    if bytes > self.max_statement_bytes {
                        return Err(self.too_long(bytes, start));
                    }
                }
                depth = Depth::default();
                continue;
            }
            statement_start.get_or_insert(token.span.start);
            if depth.take(&token.token) > self.max_depth {
                return Err(Error::Syntax(format!(
                    "the statement nests more than {} levels deep (parentheses, subqueries, and \
                     chains of operators such as a + b + ..., OR, UNION or JOIN) at Line: {}, \
                     Column: {}; simplify it or split it into views",
                    self.max_depth, token.span.start.line, token.span.start.column
                )));
            }
        }
        // The tokenizer emits no EOF token: the last statement ends with
        // the text.
        if let Some(start) = statement_start {
            let bytes = sql.len() - offsets.slice(sql, Location::new(1, 1), start).len();
            if bytes > self.max_statement_bytes {
                return Err(self.too_long(bytes, start));
            }
        }
        Ok(())
    }

    fn too_long(&self, bytes: usize, start: Location) -> Error {
        Error::invalid(format!(
            "the statement at line {} is {bytes} bytes, more than the limit of {} bytes",
            start.line, self.max_statement_bytes
        ))
    }
}

/// The depth a statement's tree reaches, tracked token by token. Each open
/// parenthesis is a level; within a level, every operator of a chain adds
/// one (a chain of expressions restarts after a comma or a clause keyword,
/// chains of set operations and joins do not).
#[derive(Debug, Default)]
struct Depth {
    /// Per open level: (expression chain, set operations, joins).
    levels: Vec<(usize, usize, usize)>,
    /// The sum over `levels` plus their count: the depth reached.
    total: usize,
}

impl Depth {
    /// Takes the next token; returns the depth reached.
    fn take(&mut self, token: &Token) -> usize {
        if self.levels.is_empty() {
            self.levels.push((0, 0, 0));
            self.total = 1;
        }
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                self.levels.push((0, 0, 0));
                self.total += 1;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if self.levels.len() > 1
                    && let Some((e, s, j)) = self.levels.pop()
                {
                    self.total -= e + s + j + 1;
                }
            }
            Token::Comma => self.restart_expression(),
            Token::Word(word) => match word.keyword {
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    self.grow(|l| &mut l.1)
                }
                Keyword::JOIN => self.grow(|l| &mut l.2),
                Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::IN
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::SIMILAR
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::DIV
                | Keyword::OVERLAPS => self.grow(|l| &mut l.0),
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::END => self.restart_expression(),
                _ => {}
            },
            // Names, literals and the like are operands; a period joins
            // the parts of one name.
            Token::Number(..)
            | Token::Char(_)
            | Token::Period
            | Token::Placeholder(_)
            | Token::Whitespace(_)
            | Token::SemiColon
            | Token::EOF => {}
            t if is_literal(t) => {}
            // Any other symbol is an operator (+, ||, ::, ->, =, ...).
            _ => self.grow(|l| &mut l.0),
        }
        self.total
    }

    fn grow(&mut self, part: impl Fn(&mut (usize, usize, usize)) -> &mut usize) {
        if let Some(level) = self.levels.last_mut() {
            *part(level) += 1;
            self.total += 1;
        }
    }

    fn restart_expression(&mut self) {
        if let Some(level) = self.levels.last_mut() {
            self.total -= level.0;
            level.0 = 0;
        }
    }
}

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

#[cfg(test)]
mod tests {
    use crate::parse_script;

    /// The error of parsing `sql`, which must fail (without printing the
    /// statement, which can be megabytes long).
    fn refused(sql: &str) -> String {
        match parse_script(sql) {
            Ok(_) => panic!("a statement of {} bytes was accepted", sql.len()),
            Err(e) => e.to_string(),
        }
    }

    fn sum(terms: usize) -> String {
        format!("SELECT {}", vec!["1"; terms].join(" + "))
    }

    #[test]
    fn a_long_chain_of_operators_is_refused_before_it_is_parsed() {
        let e = refused(&sum(100_000));
        assert!(e.contains("nests more than 256 levels"), "{e}");
        assert!(e.contains("Line: 1"), "{e}");
        let ors = format!("SELECT * FROM t WHERE {}", vec!["a = 1"; 200].join(" OR "));
        let e = refused(&ors);
        assert!(e.contains("nests more than"), "{e}");
        let unions = vec!["SELECT 1"; 300].join(" UNION ALL ");
        refused(&unions);
        let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        refused(&parens);
    }

    #[test]
    fn wide_statements_are_not_deep() {
        let columns: Vec<String> = (0..2000).map(|i| format!("a{i} + b{i} * 2")).collect();
        let wide = format!(
            "SELECT {} FROM t WHERE x = 1 AND y = 2 GROUP BY a1",
            columns.join(", ")
        );
        parse_script(&wide).unwrap();
        parse_script(&sum(200)).unwrap();
        let cases: String = (0..300)
            .map(|i| format!(" WHEN x = {i} THEN {i}"))
            .collect();
        parse_script(&format!("SELECT CASE{cases} END FROM t")).unwrap();
    }

    #[test]
    fn statements_and_scripts_have_a_size_limit() {
        let long = format!("SELECT '{}'", "x".repeat(2 << 20));
        let e = refused(&long);
        assert!(e.contains("more than the limit of 1048576 bytes"), "{e}");
        let huge = "SELECT 1;".repeat(2 << 20);
        let e = refused(&huge);
        assert!(e.contains("split it into smaller scripts"), "{e}");
    }
}
