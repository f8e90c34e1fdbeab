use std::net::SocketAddr;

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
            // A bad statement is the client's to fix; the server lives on.
            Error::Engine(_) | Error::InvalidRequest(_) => {
                Status::invalid_argument(error.to_string())
            }
            Error::Encode(_) | Error::Listen { .. } | Error::Transport(_) => {
                Status::internal(error.to_string())
            }
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
