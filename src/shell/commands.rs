//! Backslash commands: parsing `\d trades`, `\x on`, ... into [`Command`]s.

use std::path::PathBuf;

use super::error::{Error, Result};
use crate::output::Format;

/// What `\?` prints.
pub const HELP: &str = "\
General
  \\q                      quit (Ctrl-D does too)
  \\?                      show this help
  \\i FILE                 run the statements and commands in FILE (stops at its first error)

Informational
  \\d                      list streams, tables, materialized views and sinks
  \\d NAME                 show the columns of NAME
  \\dt                     list streams
  \\dv                     list materialized views
  \\ds                     list sinks
  \\dr                     list reference tables

Formatting
  \\x [on|off]             expanded display: one line per column (toggles without an argument)
  \\format [table|csv|json]
                          how rows are printed (json: one object per line)
  \\timing [on|off]        print how long each statement took

SQL statements end with ';' and may span lines. SUBSCRIBE prints rows as
they arrive until Ctrl-C. Ctrl-C at the prompt clears the input.
";

/// The kinds of object the engine has, as Flight SQL's GetTables lists
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `CREATE STREAM`.
    Stream,
    /// `CREATE MATERIALIZED VIEW`.
    View,
    /// `CREATE SINK`.
    Sink,
    /// `CREATE TABLE`: reference data.
    Table,
}

impl ObjectKind {
    /// The Flight SQL table type of this kind.
    pub fn table_type(self) -> &'static str {
        match self {
            ObjectKind::Stream => "STREAM",
            ObjectKind::View => "MATERIALIZED VIEW",
            ObjectKind::Sink => "SINK",
            ObjectKind::Table => "TABLE",
        }
    }

    /// The kind with Flight SQL table type `table_type`.
    pub fn from_table_type(table_type: &str) -> Option<Self> {
        [
            ObjectKind::Stream,
            ObjectKind::View,
            ObjectKind::Sink,
            ObjectKind::Table,
        ]
        .into_iter()
        .find(|kind| kind.table_type().eq_ignore_ascii_case(table_type))
    }

    /// What users call one of them: `materialized view`.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Stream => "stream",
            ObjectKind::View => "materialized view",
            ObjectKind::Sink => "sink",
            ObjectKind::Table => "table",
        }
    }
}

/// A parsed backslash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\d` (every kind), `\dt`, `\dv`, `\ds`.
    List(Option<ObjectKind>),
    /// `\d NAME`.
    Describe(String),
    /// `\timing [on|off]`; `None` toggles.
    Timing(Option<bool>),
    /// `\x [on|off]`; `None` toggles.
    Expanded(Option<bool>),
    /// `\format [table|csv|json]`; `None` shows the current format.
    Format(Option<Format>),
    /// `\i FILE`.
    Include(PathBuf),
    /// `\?`.
    Help,
    /// `\q`.
    Quit,
}

/// Parses a command line that starts with `\`.
pub fn parse(text: &str) -> Result<Command> {
    let text = text.trim();
    let name_end = text
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_whitespace())
        .map_or(text.len(), |(i, _)| i);
    let (name, rest) = text.split_at(name_end);
    let arguments = split_arguments(rest)?;
    let args: Vec<String> = arguments.iter().map(|a| a.text.clone()).collect();
    let no_args = |command: Command| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(Error::Command(format!("{name} takes no argument")))
        }
    };
    match name {
        "\\d" => match arguments.as_slice() {
            [] => Ok(Command::List(None)),
            // Like the engine (and psql), unquoted names are lower-cased.
            [object] if object.quoted => Ok(Command::Describe(object.text.clone())),
            [object] => Ok(Command::Describe(object.text.to_lowercase())),
            _ => Err(Error::Command("\\d takes at most one name".into())),
        },
        "\\dt" => no_args(Command::List(Some(ObjectKind::Stream))),
        "\\dv" => no_args(Command::List(Some(ObjectKind::View))),
        "\\ds" => no_args(Command::List(Some(ObjectKind::Sink))),
        "\\dr" => no_args(Command::List(Some(ObjectKind::Table))),
        "\\timing" => Ok(Command::Timing(on_off(name, &args)?)),
        "\\x" => Ok(Command::Expanded(on_off(name, &args)?)),
        "\\format" => match args.as_slice() {
            [] => Ok(Command::Format(None)),
            [format] => Ok(Command::Format(Some(parse_format(format)?))),
            _ => Err(Error::Command(
                "\\format takes one of: table, csv, json".into(),
            )),
        },
        "\\i" => match args.as_slice() {
            [file] => Ok(Command::Include(PathBuf::from(file))),
            _ => Err(Error::Command("\\i takes one file name".into())),
        },
        "\\?" => no_args(Command::Help),
        "\\q" => no_args(Command::Quit),
        _ => Err(Error::Command(format!(
            "invalid command {name}; try \\? for help"
        ))),
    }
}

fn on_off(name: &str, args: &[String]) -> Result<Option<bool>> {
    match args {
        [] => Ok(None),
        [value] => match value.to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(Some(true)),
            "off" | "false" => Ok(Some(false)),
            _ => Err(Error::Command(format!(
                "{name} takes on or off, not '{value}'"
            ))),
        },
        _ => Err(Error::Command(format!("{name} takes on or off"))),
    }
}

fn parse_format(value: &str) -> Result<Format> {
    match value.to_ascii_lowercase().as_str() {
        "table" => Ok(Format::Table),
        "csv" => Ok(Format::Csv),
        "json" => Ok(Format::Json),
        _ => Err(Error::Command(format!(
            "unknown format '{value}'; valid formats: table, csv, json"
        ))),
    }
}

/// The name of a format, as `\format` takes it.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Table => "table",
        Format::Csv => "csv",
        Format::Json => "json",
    }
}

/// One argument of a command.
struct Argument {
    text: String,
    /// Whether it was written in quotes.
    quoted: bool,
}

/// Splits arguments at blanks; a '...' or "..." argument may hold blanks
/// (a doubled quote inside stands for one).
fn split_arguments(text: &str) -> Result<Vec<Argument>> {
    let mut args = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&first) = chars.peek() {
        if first.is_whitespace() {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        let quoted = first == '\'' || first == '"';
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some(c) if c == first => {
                        if chars.peek() == Some(&first) {
                            chars.next();
                            arg.push(first);
                        } else {
                            break;
                        }
                    }
                    Some(c) => arg.push(c),
                    None => {
                        return Err(Error::Command(format!(
                            "unterminated quoted argument: {first}{arg}"
                        )));
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(Argument { text: arg, quoted });
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Command {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match parse(text) {
            Ok(command) => panic!("{text} parsed as {command:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn listing_and_describing() {
        assert_eq!(parsed("\\d"), Command::List(None));
        assert_eq!(parsed("\\dt"), Command::List(Some(ObjectKind::Stream)));
        assert_eq!(parsed("\\dv  "), Command::List(Some(ObjectKind::View)));
        assert_eq!(parsed("\\ds"), Command::List(Some(ObjectKind::Sink)));
        assert_eq!(parsed("\\dr"), Command::List(Some(ObjectKind::Table)));
        assert_eq!(parsed("\\d trades"), Command::Describe("trades".into()));
        assert_eq!(parsed("\\d Trades"), Command::Describe("trades".into()));
        assert_eq!(
            parsed("\\d \"Odd Name\""),
            Command::Describe("Odd Name".into())
        );
        assert_eq!(refused("\\dt trades"), "\\dt takes no argument");
        assert_eq!(refused("\\d a b"), "\\d takes at most one name");
    }

    #[test]
    fn settings() {
        assert_eq!(parsed("\\timing"), Command::Timing(None));
        assert_eq!(parsed("\\timing on"), Command::Timing(Some(true)));
        assert_eq!(parsed("\\x OFF"), Command::Expanded(Some(false)));
        assert_eq!(parsed("\\format"), Command::Format(None));
        assert_eq!(parsed("\\format csv"), Command::Format(Some(Format::Csv)));
        assert_eq!(parsed("\\format JSON"), Command::Format(Some(Format::Json)));
        assert_eq!(refused("\\x maybe"), "\\x takes on or off, not 'maybe'");
        assert_eq!(
            refused("\\format xml"),
            "unknown format 'xml'; valid formats: table, csv, json"
        );
    }

    #[test]
    fn files_help_and_quit() {
        assert_eq!(
            parsed("\\i 'my script.sql'"),
            Command::Include("my script.sql".into())
        );
        assert_eq!(
            parsed("\\i it''s.sql"),
            Command::Include("it''s.sql".into())
        );
        assert_eq!(
            parsed("\\i 'it''s.sql'"),
            Command::Include("it's.sql".into())
        );
        assert_eq!(refused("\\i"), "\\i takes one file name");
        assert_eq!(refused("\\i 'open"), "unterminated quoted argument: 'open");
        assert_eq!(parsed("\\?"), Command::Help);
        assert_eq!(parsed("\\q"), Command::Quit);
    }

    #[test]
    fn unknown_commands_point_at_the_help() {
        assert_eq!(
            refused("\\foo bar"),
            "invalid command \\foo; try \\? for help"
        );
        assert_eq!(refused("\\"), "invalid command \\; try \\? for help");
    }

    #[test]
    fn table_types_round_trip() {
        for kind in [
            ObjectKind::Stream,
            ObjectKind::View,
            ObjectKind::Sink,
            ObjectKind::Table,
        ] {
            assert_eq!(ObjectKind::from_table_type(kind.table_type()), Some(kind));
        }
        assert_eq!(ObjectKind::from_table_type("INDEX"), None);
    }
}
