//! Splitting typed or scripted text into SQL statements and backslash
//! commands.
//!
//! A statement ends at a `;` outside single-quoted strings, double-quoted
//! identifiers, `--` comments and (nested) `/* */` comments, the same
//! lexical rules the engine's parser applies. A backslash command is the
//! rest of a line from a `\` that starts the line or stands between
//! statements; it needs no `;`. As in psql, a command typed in the middle
//! of a statement runs at once and the statement's text is kept.

/// What a piece of input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A SQL statement for the server.
    Sql,
    /// A backslash command for the shell, such as `\d trades`.
    Command,
}

/// One statement or backslash command, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Statement or command.
    pub kind: InputKind,
    /// The text: a statement without its `;` and without comments or
    /// blank lines before it; a command from its `\` to the end of line.
    pub text: String,
    /// The 1-based line of the input the text starts on.
    pub line: usize,
}

/// Where the lexer is between characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    SingleQuote,
    DoubleQuote,
    LineComment,
    /// Inside a block comment, nested `depth` deep.
    BlockComment {
        depth: usize,
    },
}

/// Accumulates lines and hands out each statement or command as soon as
/// it is complete.
#[derive(Debug)]
pub struct StatementSplitter {
    state: State,
    /// The pending statement's text; empty until its first character
    /// that is neither blank nor part of a comment.
    buffer: String,
    /// The line the pending statement starts on.
    start_line: usize,
    /// Lines seen so far.
    lines: usize,
}

impl Default for StatementSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatementSplitter {
    /// A splitter with nothing pending.
    pub fn new() -> Self {
        StatementSplitter {
            state: State::Normal,
            buffer: String::new(),
            start_line: 0,
            lines: 0,
        }
    }

    /// Whether a statement (or a string or comment) has begun and not
    /// ended: an interactive shell then shows its continuation prompt.
    pub fn is_pending(&self) -> bool {
        !self.buffer.is_empty() || self.state != State::Normal
    }

    /// Forgets the pending statement (Ctrl-C at the prompt).
    pub fn clear(&mut self) {
        self.state = State::Normal;
        self.buffer.clear();
    }

    /// Adds `text`, which may hold several lines (a paste), and returns
    /// the statements and commands it completes, in order.
    pub fn push_lines(&mut self, text: &str) -> Vec<Input> {
        let mut complete = Vec::new();
        for line in text.lines() {
            self.push_line(line, &mut complete);
        }
        if text.is_empty() {
            self.push_line("", &mut complete);
        }
        complete
    }

    /// Ends the input: returns the pending statement, if any, though no
    /// `;` ended it (psql runs such a last statement too). An unterminated
    /// string is sent as it is, for the server to report.
    pub fn finish(&mut self) -> Option<Input> {
        let input = self.take_statement();
        self.clear();
        input
    }

    fn push_line(&mut self, line: &str, complete: &mut Vec<Input>) {
        self.lines += 1;
        let chars: Vec<char> = line.chars().collect();
        let mut at_line_start = true;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match self.state {
                State::Normal => {
                    if c == '\\' && (at_line_start || self.buffer.is_empty()) {
                        let command: String = chars[i..].iter().collect();
                        complete.push(Input {
                            kind: InputKind::Command,
                            text: command.trim_end().to_string(),
                            line: self.lines,
                        });
                        return;
                    }
                    if c.is_whitespace() {
                        if !self.buffer.is_empty() {
                            self.buffer.push(c);
                        }
                        i += 1;
                        continue;
                    }
                    at_line_start = false;
                    match (c, next) {
                        (';', _) => {
                            complete.extend(self.take_statement());
                        }
                        ('-', Some('-')) => {
                            self.state = State::LineComment;
                            self.push_kept("--");
                            i += 1;
                        }
                        ('/', Some('*')) => {
                            self.state = State::BlockComment { depth: 1 };
                            self.push_kept("/*");
                            i += 1;
                        }
                        _ => {
                            if self.buffer.is_empty() {
                                self.start_line = self.lines;
                            }
                            self.buffer.push(c);
                            if c == '\'' {
                                self.state = State::SingleQuote;
                            } else if c == '"' {
                                self.state = State::DoubleQuote;
                            }
                        }
                    }
                }
                // A doubled quote ('it''s') closes and at once reopens the
                // string, so it needs no case of its own.
                State::SingleQuote => {
                    self.buffer.push(c);
                    if c == '\'' {
                        self.state = State::Normal;
                    }
                }
                State::DoubleQuote => {
                    self.buffer.push(c);
                    if c == '"' {
                        self.state = State::Normal;
                    }
                }
                State::LineComment => self.push_kept_char(c),
                State::BlockComment { depth } => match (c, next) {
                    ('/', Some('*')) => {
                        self.state = State::BlockComment { depth: depth + 1 };
                        self.push_kept("/*");
                        i += 1;
                    }
                    ('*', Some('/')) => {
                        self.state = if depth == 1 {
                            State::Normal
                        } else {
                            State::BlockComment { depth: depth - 1 }
                        };
                        self.push_kept("*/");
                        i += 1;
                    }
                    _ => self.push_kept_char(c),
                },
            }
            i += 1;
        }
        if self.state == State::LineComment {
            self.state = State::Normal;
        }
        if !self.buffer.is_empty() {
            self.buffer.push('\n');
        }
    }

    /// Keeps comment text that is inside a statement; a comment before a
    /// statement's first token is dropped.
    fn push_kept(&mut self, text: &str) {
        if !self.buffer.is_empty() {
            self.buffer.push_str(text);
        }
    }

    fn push_kept_char(&mut self, c: char) {
        if !self.buffer.is_empty() {
            self.buffer.push(c);
        }
    }

    fn take_statement(&mut self) -> Option<Input> {
        let text = self.buffer.trim_end().to_string();
        self.buffer.clear();
        (!text.is_empty()).then_some(Input {
            kind: InputKind::Sql,
            text,
            line: self.start_line,
        })
    }
}

/// The first word of a statement, upper-cased (`SELECT`, `CREATE`,
/// `SUBSCRIBE`): what the shell needs to know to print its result.
pub fn leading_keyword(statement: &str) -> String {
    statement
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str, line: usize) -> Input {
        Input {
            kind: InputKind::Sql,
            text: text.into(),
            line,
        }
    }

    fn command(text: &str, line: usize) -> Input {
        Input {
            kind: InputKind::Command,
            text: text.into(),
            line,
        }
    }

    /// Feeds `script` line by line, then finishes.
    fn split(script: &str) -> Vec<Input> {
        let mut splitter = StatementSplitter::new();
        let mut inputs = Vec::new();
        for line in script.split('\n') {
            inputs.extend(splitter.push_lines(line));
        }
        inputs.extend(splitter.finish());
        inputs
    }

    #[test]
    fn splits_at_semicolons_across_lines() {
        assert_eq!(
            split("SELECT 1; SELECT 2;\nSHOW\n  STREAMS\n;"),
            [
                sql("SELECT 1", 1),
                sql("SELECT 2", 1),
                sql("SHOW\n  STREAMS", 2)
            ]
        );
    }

    #[test]
    fn a_last_statement_needs_no_semicolon() {
        assert_eq!(
            split("SELECT 1;\nSELECT 2\n"),
            [sql("SELECT 1", 1), sql("SELECT 2", 2)]
        );
        assert_eq!(split("  \n;;\n"), []);
    }

    #[test]
    fn semicolons_in_strings_and_identifiers_do_not_split() {
        assert_eq!(
            split("SELECT 'a;b', \"c;d\" FROM t;"),
            [sql("SELECT 'a;b', \"c;d\" FROM t", 1)]
        );
        // A doubled quote stays inside the string.
        assert_eq!(
            split("SELECT 'it''s; fine', \"x\"\"; y\";"),
            [sql("SELECT 'it''s; fine', \"x\"\"; y\"", 1)]
        );
        // A string may span lines.
        assert_eq!(
            split("INSERT INTO t VALUES ('one;\ntwo');"),
            [sql("INSERT INTO t VALUES ('one;\ntwo')", 1)]
        );
    }

    #[test]
    fn semicolons_in_comments_do_not_split() {
        assert_eq!(
            split("SELECT 1 -- a; comment\n+ 1;"),
            [sql("SELECT 1 -- a; comment\n+ 1", 1)]
        );
        assert_eq!(
            split("SELECT /* a; /* nested; */ still; */ 2;"),
            [sql("SELECT /* a; /* nested; */ still; */ 2", 1)]
        );
        // Comments before a statement are not part of it, nor a statement
        // of their own.
        assert_eq!(
            split("-- setup;\n/* two;\n lines; */\nSELECT 3;\n-- the end;"),
            [sql("SELECT 3", 4)]
        );
    }

    #[test]
    fn backslash_commands_need_no_semicolon() {
        assert_eq!(
            split("\\d trades\nSELECT 1; \\x on\n  \\timing"),
            [
                command("\\d trades", 1),
                sql("SELECT 1", 2),
                command("\\x on", 2),
                command("\\timing", 3)
            ]
        );
    }

    #[test]
    fn a_command_inside_a_statement_runs_and_keeps_the_statement() {
        assert_eq!(
            split("SELECT\n\\timing on\n1;"),
            [command("\\timing on", 2), sql("SELECT\n1", 1)]
        );
        // In a string, a backslash is text.
        assert_eq!(split("SELECT 'a\n\\d';"), [sql("SELECT 'a\n\\d'", 1)]);
    }

    #[test]
    fn reports_what_is_pending_and_clears() {
        let mut splitter = StatementSplitter::new();
        assert!(!splitter.is_pending());
        assert!(splitter.push_lines("/* a comment").is_empty());
        assert!(splitter.is_pending(), "inside a comment");
        assert!(splitter.push_lines("*/").is_empty());
        assert!(!splitter.is_pending());
        assert!(splitter.push_lines("SELECT 'x").is_empty());
        assert!(splitter.is_pending());
        splitter.clear();
        assert!(!splitter.is_pending());
        assert_eq!(splitter.push_lines("SELECT 2;"), [sql("SELECT 2", 4)]);
    }

    #[test]
    fn a_paste_of_several_lines_splits_like_typed_lines() {
        let mut splitter = StatementSplitter::new();
        assert_eq!(
            splitter.push_lines("SELECT 1;\nSELECT\n2;\n\\q"),
            [sql("SELECT 1", 1), sql("SELECT\n2", 2), command("\\q", 4)]
        );
    }

    #[test]
    fn finds_the_leading_keyword() {
        assert_eq!(leading_keyword("subscribe v FROM NOW"), "SUBSCRIBE");
        assert_eq!(leading_keyword("(SELECT 1)"), "SELECT");
        assert_eq!(leading_keyword("CREATE STREAM s"), "CREATE");
    }
}
