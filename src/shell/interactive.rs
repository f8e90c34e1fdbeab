//! The interactive shell: a prompt with line editing and a history file,
//! and the password prompt.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;

use rustyline::completion::Completer;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, FileHistory};
use rustyline::validate::Validator;
use rustyline::{Behavior, ColorMode, Config, Editor, Helper};
use unicode_width::UnicodeWidthStr;

use super::client::Host;
use super::error::{Error, Result};
use super::input::StatementSplitter;
use super::{Flow, Shell};

/// The prompt for a new statement.
pub const PROMPT: &str = "fibers=> ";
/// The prompt while a statement (or string, or comment) goes on.
pub const CONTINUATION_PROMPT: &str = "fibers-> ";
/// The history file, in the home directory.
const HISTORY_FILE: &str = ".fibers_history";
/// Entries the history keeps.
const HISTORY_SIZE: usize = 1000;

/// Reads lines from the terminal and runs them until `\q` or Ctrl-D.
/// Errors of statements and commands are printed and the shell goes on;
/// Ctrl-C clears the input at the prompt and cancels a running statement.
pub fn run(shell: &mut Shell<'_>, host: &Host) -> Result<()> {
    // Installs the SIGINT handler now, for the whole session: from here
    // on Ctrl-C cancels a statement instead of ending the process. At the
    // prompt the terminal is in raw mode, so Ctrl-C is a key, not a signal.
    let _interrupts = catch_interrupts(shell);
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)
        .map_err(|e| Error::ReadInput(e.to_string()))?
        .auto_add_history(false)
        .build();
    let mut editor = Editor::<(), FileHistory>::with_config(config)
        .map_err(|e| Error::ReadInput(format!("cannot set up the terminal: {e}")))?;
    let history = history_path();
    if let Some(path) = &history {
        match editor.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: cannot read the history {}: {e}", path.display()),
        }
    }
    writeln!(
        shell.out,
        "fibers shell {}, connected to {}.\nType \\? for help, \\q to quit.\n",
        env!("CARGO_PKG_VERSION"),
        host.name()
    )?;
    shell.out.flush()?;

    let mut splitter = StatementSplitter::new();
    let result = 'session: loop {
        let prompt = if splitter.is_pending() {
            CONTINUATION_PROMPT
        } else {
            PROMPT
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    // A history that cannot grow is no reason to stop.
                    let _ = editor.add_history_entry(line.as_str());
                }
                for input in splitter.push_lines(&line) {
                    match shell.run_input(&input) {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Quit) => break 'session Ok(()),
                        Err(e) if e.is_broken_pipe() => break 'session Err(e),
                        Err(e) => shell.report(&e),
                    }
                }
            }
            Err(ReadlineError::Interrupted) => splitter.clear(),
            Err(ReadlineError::Eof) => {
                writeln!(shell.out)?;
                break Ok(());
            }
            Err(e) => break Err(Error::ReadInput(e.to_string())),
        }
    };
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!("warning: cannot save the history {}: {e}", path.display());
    }
    shell.out.flush()?;
    result
}

/// `$HOME/.fibers_history`, or none without a home directory.
fn history_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|home| !home.is_empty())?;
    Some(PathBuf::from(home).join(HISTORY_FILE))
}

/// Registers the process's SIGINT handler (kept while the returned value
/// lives); each statement then waits for Ctrl-C on its own.
#[cfg(unix)]
fn catch_interrupts(shell: &Shell<'_>) -> Option<tokio::signal::unix::Signal> {
    let _runtime = shell.runtime.enter();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            eprintln!("warning: Ctrl-C cannot cancel statements: {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn catch_interrupts(_shell: &Shell<'_>) -> Option<()> {
    None
}

/// Reads a password from the terminal without showing it.
pub fn read_password(prompt: &str) -> std::result::Result<String, String> {
    // On the terminal itself, so the prompt never lands in redirected
    // output.
    let config = Config::builder().behavior(Behavior::PreferTerm).build();
    let mut editor = Editor::<Hidden, DefaultHistory>::with_config(config)
        .map_err(|e| format!("cannot set up the terminal: {e}"))?;
    editor.set_helper(Some(Hidden));
    // The mask is drawn as highlighting, which rustyline applies only
    // when it may use colours.
    editor.set_color_mode(ColorMode::Forced);
    editor.set_auto_add_history(false);
    match editor.readline(prompt) {
        Ok(password) => Ok(password),
        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Err("no password given".into()),
        Err(e) => Err(format!("cannot read the password: {e}")),
    }
}

/// Draws what is typed as blanks.
struct Hidden;

impl Highlighter for Hidden {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Owned(" ".repeat(line.width()))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        kind != CmdKind::MoveCursor
    }
}

impl Completer for Hidden {
    type Candidate = String;
}

impl Hinter for Hidden {
    type Hint = String;
}

impl Validator for Hidden {}

impl Helper for Hidden {}
