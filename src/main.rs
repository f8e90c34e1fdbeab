//! `fibers`: the DataFibers command line.

mod config;
mod output;
mod run;
mod serve;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use output::Format;

/// mimalloc rather than the system allocator: batches allocate and free
/// large buffers at a high rate, which glibc's allocator serves with
/// fresh mappings from the kernel each time (see BENCHMARKS.md, Ingest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// DataFibers: continuous SQL over streams, archived to Delta Lake.
#[derive(Debug, Parser)]
#[command(name = "fibers", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where an engine keeps its catalog and, by default, its archives.
#[derive(Debug, clap::Args)]
struct DataDir {
    /// Directory holding the catalog and, by default, the archives
    /// [default: fibers-data]
    // No clap default: `fibers serve` must tell an unset flag from one
    // set to the default, so that its config file can fill it in.
    #[arg(long = "data-dir", value_name = "DIR", env = "FIBERS_DATA_DIR")]
    path: Option<PathBuf>,
}

impl DataDir {
    /// The data dir used when neither a flag nor a config file names one.
    fn default_path() -> PathBuf {
        PathBuf::from("fibers-data")
    }

    /// The directory given, or the default.
    fn or_default(self) -> PathBuf {
        self.path.unwrap_or_else(DataDir::default_path)
    }
}

/// How often jobs checkpoint, and where.
#[derive(Debug, Clone, Default, clap::Args)]
struct CheckpointArgs {
    /// Time between a job's checkpoints (e.g. 10s, 1m), or `off`. A job's
    /// `checkpoint_interval` in its WITH overrides it [default: 10s]
    #[arg(
        long = "checkpoint-interval",
        value_name = "DURATION",
        env = "FIBERS_CHECKPOINT_INTERVAL",
        value_parser = parse_checkpoint_interval
    )]
    interval: Option<CheckpointInterval>,
    /// Where checkpoints are stored: a URL such as file:///var/fibers/cp or
    /// s3://bucket/prefix (credentials from the AWS_* variables) [default:
    /// the data dir's `checkpoints` directory]
    #[arg(
        long = "checkpoint-url",
        value_name = "URL",
        env = "FIBERS_CHECKPOINT_URL"
    )]
    url: Option<String>,
    /// Complete checkpoints kept per job; older ones are deleted
    /// [default: 3]
    #[arg(long = "checkpoints-retained", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    retained: Option<u32>,
}

/// A checkpoint interval; `None` when checkpoints are off.
#[derive(Debug, Clone, Copy)]
struct CheckpointInterval(Option<Duration>);

fn parse_checkpoint_interval(value: &str) -> Result<CheckpointInterval, String> {
    fibers_engine::checkpoint::parse_interval(value).map(CheckpointInterval)
}

impl CheckpointArgs {
    /// The engine's settings: these flags over `fallback` (a config file's).
    fn resolve(self, fallback: fibers_engine::CheckpointConfig) -> fibers_engine::CheckpointConfig {
        fibers_engine::CheckpointConfig {
            interval: self.interval.map_or(fallback.interval, |i| i.0),
            url: self.url.or(fallback.url),
            retained: self.retained.map_or(fallback.retained, |n| n as usize),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a SQL script with an embedded engine (no server, no broker).
    ///
    /// Statements run in order. Views and sinks keep running after the
    /// script: until --for has passed, Ctrl-C, or (when every source is
    /// bounded) until all input is consumed and every result is committed.
    /// Definitions persist in the data dir; running again resumes their jobs.
    Run {
        /// The SQL script (statements separated by ';').
        file: PathBuf,
        #[command(flatten)]
        data_dir: DataDir,
        /// Stop the jobs after this long (e.g. 30s, 5m); default: run until
        /// bounded input ends, or until Ctrl-C.
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        run_for: Option<Duration>,
        /// How query results are printed.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// Serve the engine over Arrow Flight SQL until Ctrl-C or SIGTERM.
    ///
    /// Jobs defined earlier in the data dir resume at start. The server
    /// listens on loopback by default; any other address requires a user
    /// (--user, or [auth] in the config file). Clients then authenticate
    /// with a Flight handshake (Basic user:password) and send the bearer
    /// token it returns; tokens expire after [auth] token_ttl (default 12h).
    ///
    /// Settings, highest precedence first: command-line flags (and the
    /// environment variables named beside them), then the --config file,
    /// then the defaults. Relative paths in the file are relative to its
    /// directory. The password is never a flag: it comes from
    /// FIBERS_PASSWORD, else from the file's [auth] password_env (the name
    /// of a variable holding it) or password.
    Serve(config::ServeArgs),
    /// A psql-like shell over Flight SQL, for `fibers serve`.
    ///
    /// Interactive on a terminal: line editing, history in
    /// ~/.fibers_history, statements ending in ';' over several lines,
    /// backslash commands (\? lists them), Ctrl-C to cancel a statement
    /// such as SUBSCRIBE. With -c or -f, or with piped input, it runs the
    /// statements in order and stops at the first error.
    ///
    /// Exit status: 0 on success, 1 if a statement or command failed, 2 if
    /// the server could not be reached or authentication failed.
    Shell(shell::ShellArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIBERS_LOG")
                // Delta's kernel logs each error it returns, with its
                // backtrace when RUST_BACKTRACE is set (hundreds of lines
                // for one damaged log entry); the engine reports them once.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,buoyant_kernel=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        // The shell drives the runtime itself: it reads the terminal
        // between statements, outside any async task.
        Command::Shell(args) => return shell::run(&runtime, args),
        Command::Run {
            file,
            data_dir,
            run_for,
            format,
            checkpoints,
        } => {
            let mut config = fibers_engine::EngineConfig::new(data_dir.or_default());
            config.checkpoints = checkpoints.resolve(config.checkpoints);
            runtime.block_on(run::run(&file, config, run_for, format))
        }
        Command::Serve(args) => runtime.block_on(serve::serve(args)),
    };
    // Jobs and sessions have stopped; a read still blocked on a broker
    // that does not answer must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
