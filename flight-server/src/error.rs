use std::net::SocketAddr;
use std::path::PathBuf;

use fibers_engine::ErrorKind;
use tonic::Status;

/// Errors of the Flight SQL service. They become a [`tonic::Status`] only
/// at the gRPC edge (see the `From` impl), so a request's error code says
/// whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused or failed the statement; the message is the
    /// engine's, naming the statement, option or column at fault.
    #[error(transparent)]
    Engine(#[from] fibers_engine::Error),

    /// The request itself is malformed (not one statement, a ticket this
    /// server did not issue, ...).
    #[error("{0}")]
    InvalidRequest(String),

    /// Results could not be encoded for the wire.
    #[error("cannot encode the results: {0}")]
    Encode(#[from] arrow_flight::error::FlightError),

    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },

    /// Authentication settings that cannot work (empty password, ...).
    #[error("invalid authentication settings: {0}")]
    InvalidAuthConfig(String),

    /// The operating system gave no random bytes for keys or tokens.
    #[error("cannot get random bytes from the operating system")]
    Random,

    /// A TLS certificate or key file cannot be used.
    #[error("TLS {what} {}: {reason}", path.display())]
    TlsFile {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The certificate and key cannot serve TLS together (say, the key
    /// belongs to another certificate).
    #[error(
        "cannot serve TLS with certificate {} and key {}: {reason}",
        cert.display(),
        key.display()
    )]
    Tls {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// What rustls reported.
        reason: String,
    },

    /// The gRPC server failed.
    #[error("the Flight SQL server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            // The subscriber was too slow; the server's buffer is bounded.
            Error::Engine(fibers_engine::Error::FellBehind { .. }) => {
                Status::resource_exhausted(error.to_string())
            }
            // A bad statement is the client's to fix; a broker or store
            // that failed may answer later; the rest is the server's bug.
            Error::Engine(ref e) => match e.kind() {
                ErrorKind::User => Status::invalid_argument(error.to_string()),
                ErrorKind::External => Status::unavailable(error.to_string()),
                ErrorKind::Internal => Status::internal(error.to_string()),
            },
            Error::InvalidRequest(_) => Status::invalid_argument(error.to_string()),
            // The rest happen at start-up or are the server's fault.
            Error::Encode(_)
            | Error::Listen { .. }
            | Error::InvalidAuthConfig(_)
            | Error::Random
            | Error::TlsFile { .. }
            | Error::Tls { .. }
            | Error::Transport(_) => Status::internal(error.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(error: arrow::error::ArrowError) -> Self {
        Error::Encode(error.into())
    }
}

/// Result of Flight SQL service operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: fibers_engine::Error) -> tonic::Code {
        Status::from(Error::Engine(error)).code()
    }

    #[test]
    fn each_kind_of_engine_error_has_its_own_code() {
        assert_eq!(
            code(fibers_engine::Error::invalid("no such column")),
            tonic::Code::InvalidArgument
        );
        let down = fibers_engine::Error::Io {
            path: "/data/trades".into(),
            source: std::io::Error::other("the disk went away"),
        };
        assert_eq!(code(down), tonic::Code::Unavailable);
        let bug = fibers_engine::Error::DataFusion(datafusion::error::DataFusionError::Internal(
            "a plan lost its input".into(),
        ));
        assert_eq!(code(bug), tonic::Code::Internal);
    }
}
