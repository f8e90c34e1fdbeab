//! What can go wrong in the shell, and the exit status each failure means.

use std::path::PathBuf;

use arrow::error::ArrowError;
use arrow_flight::error::FlightError;

/// A failure of the shell. Statement errors are reported and, in an
/// interactive session, the shell goes on; see [`Error::exit_code`] for the
/// other cases.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached.
    #[error(
        "cannot connect to the Fibers server at {host}: {reason} (is `fibers serve` running there?)"
    )]
    Connect {
        /// The address as the user gave it (normalized to HOST:PORT).
        host: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
    },

    /// The Flight handshake did not authenticate the user.
    #[error("cannot authenticate as '{user}' at {host}: {reason}")]
    Authenticate {
        /// The user name given with --user.
        user: String,
        /// The address of the server.
        host: String,
        /// Why: the server's message, or what was wrong with its answer.
        reason: String,
    },

    /// The server refused a request: the statement is at fault. The
    /// message is the server's own, without gRPC's decoration.
    #[error("{0}")]
    Server(String),

    /// The server could not reach what a request needs (a broker, a
    /// store): the same statement may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// The server failed on its own: a bug to report.
    #[error("internal error: {0}")]
    Internal(String),

    /// A backslash command was misused (unknown command, bad argument,
    /// unknown object).
    #[error("{0}")]
    Command(String),

    /// A script file (`-f`, `\i`) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },

    /// Standard input could not be read.
    #[error("cannot read the input: {0}")]
    ReadInput(String),

    /// Results could not be written to standard output.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),

    /// Results could not be turned into text (a value the formatter
    /// rejects, a malformed schema).
    #[error("cannot display the results: {0}")]
    Render(#[from] ArrowError),

    /// The statement was cancelled with Ctrl-C.
    #[error("cancelled by the user")]
    Cancelled,

    /// An error in a script file (`-f`, `\i`), with where it happened.
    #[error("{location}: {source}")]
    InScript {
        /// `FILE:LINE` of the statement or command.
        location: String,
        /// The error itself.
        source: Box<Error>,
    },
}

impl Error {
    /// The process exit status for this error when it ends the shell:
    /// 2 when no session could be established (like psql), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Connect { .. } | Error::Authenticate { .. } => 2,
            Error::InScript { source, .. } => source.exit_code(),
            _ => 1,
        }
    }

    /// Whether standard output went away (`fibers shell ... | head`): the
    /// shell then stops quietly instead of reporting an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<FlightError> for Error {
    fn from(error: FlightError) -> Self {
        match error {
            FlightError::Tonic(status) => Error::from(*status),
            other => Error::Server(server_message(other)),
        }
    }
}

impl From<tonic::Status> for Error {
    /// The status code says whose move it is (the server maps the
    /// engine's error kinds onto codes).
    fn from(status: tonic::Status) -> Self {
        let message = status_message(&status);
        match status.code() {
            tonic::Code::Unavailable => Error::Unavailable(message),
            tonic::Code::Internal | tonic::Code::DataLoss => Error::Internal(message),
            _ => Error::Server(message),
        }
    }
}

/// The human part of a Flight error: for a gRPC status its message alone
/// (not "status: InvalidArgument, message: ..., details: ..."), else the
/// error's own text.
pub fn server_message(error: FlightError) -> String {
    match error {
        FlightError::Tonic(status) => status_message(&status),
        FlightError::Arrow(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// A status's message, or the description of its code when the server
/// sent no message.
pub fn status_message(status: &tonic::Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        status.code().description().to_string()
    } else {
        message.to_string()
    }
}

/// The innermost cause of `error`: for a transport error, the system's
/// reason ("Connection refused (os error 111)") rather than the wrappers
/// around it ("transport error").
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Result of shell operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_message_of_a_status() {
        let status = tonic::Status::invalid_argument("table 'nowhere' not found");
        let error = Error::from(FlightError::Tonic(Box::new(status)));
        assert_eq!(error.to_string(), "table 'nowhere' not found");

        let bare = tonic::Status::new(tonic::Code::Unimplemented, "");
        assert_eq!(
            status_message(&bare),
            "Operation is not implemented or not supported"
        );
    }

    #[test]
    fn says_whose_move_an_error_is() {
        let down = tonic::Status::unavailable("stream 't': topic 'trades' at 'kafka:9092': down");
        assert_eq!(
            Error::from(down).to_string(),
            "unavailable: stream 't': topic 'trades' at 'kafka:9092': down"
        );
        let bug = tonic::Status::internal("a plan lost its input");
        assert_eq!(
            Error::from(bug).to_string(),
            "internal error: a plan lost its input"
        );
    }

    #[test]
    fn connection_failures_exit_with_2() {
        let refused = Error::Connect {
            host: "127.0.0.1:1".into(),
            reason: "Connection refused (os error 111)".into(),
        };
        assert_eq!(refused.exit_code(), 2);
        assert_eq!(
            refused.to_string(),
            "cannot connect to the Fibers server at 127.0.0.1:1: Connection refused \
             (os error 111) (is `fibers serve` running there?)"
        );
        assert_eq!(Error::Server("bad".into()).exit_code(), 1);
    }
}
