//! `fibers shell`: a psql-like client of `fibers serve`, speaking only
//! Arrow Flight SQL.
//!
//! [`run`] connects and then reads statements from the terminal (with
//! line editing and history), from `-c` and `-f`, or from piped standard
//! input; [`Shell`] runs each statement or backslash command and prints
//! its result as it arrives.

mod client;
mod commands;
mod error;
mod input;
mod interactive;
mod render;
mod session;

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Stdout, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use tokio::runtime::Runtime;

use crate::output::Format;
use client::{Client, Host};
use commands::{Command, HELP, format_name};
use error::{Error, Result};
use input::{Input, InputKind, StatementSplitter};
use render::DisplayOptions;
use session::{Cancel, Session};

/// How deep `\i` may nest (a file including itself stops here).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The environment variable holding the password for `--user`.
const PASSWORD_VARIABLE: &str = "FIBERS_PASSWORD";

/// Options of `fibers shell`.
#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The server: HOST:PORT, HOST (port 50051), http://HOST:PORT, or
    /// https://HOST:PORT for TLS (trusting the system's root certificates
    /// unless --tls-ca is given).
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "FIBERS_HOST",
        default_value = "127.0.0.1:50051"
    )]
    host: String,

    /// Run these statements, then exit; repeatable, and each may hold
    /// several statements separated by ';' or a backslash command.
    /// Stops at the first error, with exit status 1.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,

    /// Run the statements and backslash commands in FILE, then exit.
    /// Stops at the first error, with exit status 1.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "commands"
    )]
    file: Option<PathBuf>,

    /// Authenticate as USER (Flight SQL handshake). The password is read
    /// from FIBERS_PASSWORD, or asked for on the terminal; it is never
    /// taken on the command line.
    #[arg(long, value_name = "USER", env = "FIBERS_USER")]
    user: Option<String>,

    /// Connect over TLS, trusting the PEM certificate(s) in FILE (for a
    /// server with a self-signed or private CA's certificate).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// How rows are printed (also `\format` in the shell).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `fibers shell` and returns its exit status: 0 on success, 1 when
/// a statement or command failed, 2 when the server could not be reached
/// or the user not authenticated.
pub fn run(runtime: &Runtime, args: ShellArgs) -> ExitCode {
    let host = match Host::parse(&args.host) {
        Ok(host) => host,
        Err(e) => {
            eprintln!("fibers shell: invalid --host {e}");
            return ExitCode::from(2);
        }
    };
    let interactive =
        args.commands.is_empty() && args.file.is_none() && std::io::stdin().is_terminal();
    let display = DisplayOptions {
        format: args.format,
        expanded: false,
    };
    let session = match connect(
        runtime,
        &host,
        args.tls_ca.as_deref(),
        args.user.as_deref(),
        display,
    ) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("fibers shell: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let cancel = if interactive {
        Cancel::OnCtrlC
    } else {
        Cancel::Never
    };
    let mut shell = Shell::new(runtime, session, cancel);

    let result = if interactive {
        interactive::run(&mut shell, &host)
    } else if let Some(file) = &args.file {
        shell.run_file(file).map(|_| ())
    } else if !args.commands.is_empty() {
        shell.run_commands(&args.commands)
    } else {
        let stdin = std::io::stdin().lock();
        shell.run_script(stdin, None).map(|_| ())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            shell.report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Connects to `host` and, with a user, authenticates.
fn connect(
    runtime: &Runtime,
    host: &Host,
    tls_ca: Option<&Path>,
    user: Option<&str>,
    display: DisplayOptions,
) -> Result<Session> {
    let password = match user {
        Some(user) => Some(password_for(host, user)?),
        None => None,
    };
    runtime.block_on(async {
        let mut client = Client::connect(host, tls_ca).await?;
        if let (Some(user), Some(password)) = (user, password) {
            client.authenticate(user, &password).await?;
        }
        Ok(Session::new(client, display))
    })
}

/// The password of `user`: from FIBERS_PASSWORD, else asked for on the
/// terminal.
fn password_for(host: &Host, user: &str) -> Result<String> {
    if let Some(password) = std::env::var_os(PASSWORD_VARIABLE) {
        return password.into_string().map_err(|_| Error::Authenticate {
            user: user.to_string(),
            host: host.name().to_string(),
            reason: format!("{PASSWORD_VARIABLE} is not valid UTF-8"),
        });
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Authenticate {
            user: user.to_string(),
            host: host.name().to_string(),
            reason: format!("no password: set {PASSWORD_VARIABLE}"),
        });
    }
    interactive::read_password(&format!("Password for user {user}: ")).map_err(|reason| {
        Error::Authenticate {
            user: user.to_string(),
            host: host.name().to_string(),
            reason,
        }
    })
}

/// What the shell does after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next input.
    Continue,
    /// `\q`: stop.
    Quit,
}

/// Runs statements and backslash commands on a session, printing results
/// to standard output and errors to standard error.
pub struct Shell<'r> {
    runtime: &'r Runtime,
    session: Session,
    out: BufWriter<Stdout>,
    cancel: Cancel,
    timing: bool,
    include_depth: usize,
}

impl<'r> Shell<'r> {
    fn new(runtime: &'r Runtime, session: Session, cancel: Cancel) -> Self {
        Shell {
            runtime,
            session,
            out: BufWriter::new(std::io::stdout()),
            cancel,
            timing: false,
            include_depth: 0,
        }
    }

    /// Prints `error` to standard error, after what is pending on
    /// standard output; `file:line:` first for an error in a script.
    pub fn report(&mut self, error: &Error) {
        // Standard output may be gone; the error is reported regardless.
        let _ = self.out.flush();
        match error {
            Error::Cancelled => eprintln!("Cancelled."),
            Error::InScript { location, source } if !matches!(**source, Error::Cancelled) => {
                eprintln!("{location}: ERROR: {source}");
            }
            Error::InScript { .. } => eprintln!("Cancelled."),
            other => eprintln!("ERROR: {other}"),
        }
    }

    /// Runs one statement or command.
    pub fn run_input(&mut self, input: &Input) -> Result<Flow> {
        let flow = match input.kind {
            InputKind::Sql => {
                let started = Instant::now();
                let result = self.runtime.block_on(self.session.run_sql(
                    &input.text,
                    &mut self.out,
                    self.cancel,
                ));
                if self.timing && result.is_ok() {
                    let millis = started.elapsed().as_secs_f64() * 1000.0;
                    writeln!(self.out, "Time: {millis:.3} ms")?;
                }
                result.map(|()| Flow::Continue)
            }
            InputKind::Command => self.run_command(&input.text),
        };
        self.out.flush()?;
        flow
    }

    fn run_command(&mut self, text: &str) -> Result<Flow> {
        match commands::parse(text)? {
            Command::List(kind) => {
                self.runtime
                    .block_on(self.session.list(kind, &mut self.out))?;
            }
            Command::Describe(name) => {
                self.runtime
                    .block_on(self.session.describe(&name, &mut self.out))?;
            }
            Command::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                writeln!(self.out, "Timing is {}.", on_off(self.timing))?;
            }
            Command::Expanded(on) => {
                let display = &mut self.session.display;
                display.expanded = on.unwrap_or(!display.expanded);
                writeln!(
                    self.out,
                    "Expanded display is {}.",
                    on_off(display.expanded)
                )?;
            }
            Command::Format(format) => {
                if let Some(format) = format {
                    self.session.display.format = format;
                }
                let name = format_name(self.session.display.format);
                writeln!(self.out, "Output format is {name}.")?;
            }
            Command::Include(path) => return self.run_file(&path),
            Command::Help => write!(self.out, "{HELP}")?,
            Command::Quit => return Ok(Flow::Quit),
        }
        Ok(Flow::Continue)
    }

    /// Runs each `-c` text in turn (each one split into its statements),
    /// stopping at the first error or `\q`.
    fn run_commands(&mut self, texts: &[String]) -> Result<()> {
        for text in texts {
            let mut splitter = StatementSplitter::new();
            let inputs = splitter
                .push_lines(text)
                .into_iter()
                .chain(splitter.finish());
            for input in inputs {
                if self.run_input(&input)? == Flow::Quit {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Runs the file `path` (`-f`, `\i`), stopping at its first error.
    pub fn run_file(&mut self, path: &Path) -> Result<Flow> {
        if self.include_depth >= MAX_INCLUDE_DEPTH {
            return Err(Error::Command(format!(
                "cannot run {}: files nest more than {MAX_INCLUDE_DEPTH} deep",
                path.display()
            )));
        }
        let file = std::fs::File::open(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        self.include_depth += 1;
        let flow = self.run_script(BufReader::new(file), Some(path));
        self.include_depth -= 1;
        flow
    }

    /// Runs what `reader` holds as it is read, stopping at the first
    /// error or `\q`; errors of a named `file` carry its name and line.
    pub fn run_script(&mut self, mut reader: impl BufRead, file: Option<&Path>) -> Result<Flow> {
        let mut splitter = StatementSplitter::new();
        let mut line = String::new();
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(|e| match file {
                Some(path) => Error::ReadFile {
                    path: path.to_path_buf(),
                    source: e,
                },
                None => Error::ReadInput(e.to_string()),
            })?;
            let inputs = if read == 0 {
                splitter.finish().into_iter().collect()
            } else {
                splitter.push_lines(line.trim_end_matches(['\n', '\r']))
            };
            for input in inputs {
                let flow = self
                    .run_input(&input)
                    .map_err(|e| locate(e, file, &input))?;
                if flow == Flow::Quit {
                    return Ok(Flow::Quit);
                }
            }
            if read == 0 {
                return Ok(Flow::Continue);
            }
        }
    }
}

/// Adds the file and line of `input` to an error in a script file
/// (unless an inner `\i` file already did).
fn locate(error: Error, file: Option<&Path>, input: &Input) -> Error {
    match (file, error) {
        (_, error @ Error::InScript { .. }) => error,
        (_, error @ Error::Output(_)) => error,
        (Some(path), error) => Error::InScript {
            location: format!("{}:{}", path.display(), input.line),
            source: Box::new(error),
        },
        (None, error) => error,
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
