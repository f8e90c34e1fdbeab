use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Errors raised by the engine. Messages name the object, option, file or
/// record at fault, so users can see what they must fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement is invalid (parsing, planning, options).
    #[error(transparent)]
    Sql(#[from] fibers_sql::Error),

    /// The catalog refused the change or could not be read.
    #[error(transparent)]
    Catalog(#[from] fibers_catalog::Error),

    /// A statement refers to something that does not exist or cannot be
    /// used that way.
    #[error("{0}")]
    Invalid(String),

    /// A source could not read or decode its input.
    #[error("stream '{stream}': {message}")]
    Source {
        /// The stream being read.
        stream: String,
        /// What went wrong, naming the file, line or record.
        message: String,
    },

    /// An archive or sink could not write or commit.
    #[error("{owner} archive at {location}: {message}")]
    Archive {
        /// The view or sink writing it.
        owner: String,
        /// Where the archive is.
        location: String,
        /// What went wrong.
        message: String,
        /// Whether the store failed (I/O, an object store that did not
        /// answer), so writing again may succeed.
        transient: bool,
    },

    /// File system access failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory at fault.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },

    /// DataFusion failed while executing a plan.
    #[error("{}", fibers_sql::datafusion_message(.0))]
    DataFusion(#[from] DataFusionError),

    /// A subscriber read more slowly than rows were produced, and the rows
    /// it missed are gone from the server's bounded buffer.
    #[error(
        "the subscription to '{name}' fell behind: {skipped} batches were dropped because \
         the client read more slowly than rows were produced (a subscriber may lag by \
         {limit} batches); SUBSCRIBE again, FROM BEGINNING to read the archive first"
    )]
    FellBehind {
        /// The view or sink subscribed to.
        name: String,
        /// Batches the subscriber missed.
        skipped: u64,
        /// How many batches a subscriber may lag.
        limit: usize,
    },

    /// Arrow failed while building or converting batches.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// What an archive's error says when another instance of its job has
/// committed past this one, which must then stop for good.
pub(crate) const FENCED: &str = "another instance of the job has moved on";

impl Error {
    /// Whether running again may succeed: the file system or an archive's
    /// store failed (a directory briefly unwritable, a store that did not
    /// answer). Statements, records, plans and a fenced instance fail the
    /// same way every time.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Error::Io { .. } => true,
            Error::Archive {
                message, transient, ..
            } => *transient && !message.contains(FENCED),
            Error::DataFusion(e) => matches!(
                e.find_root(),
                DataFusionError::IoError(_) | DataFusionError::ObjectStore(_)
            ),
            _ => false,
        }
    }

    /// Whether evaluating an expression over some row failed: an integer
    /// overflow or a division by zero. Such an error belongs to the row,
    /// so a stream that drops bad records may drop that row instead of
    /// failing the job. (A `sum` that overflows belongs to its group, and
    /// is an execution error instead.)
    pub(crate) fn is_row_arithmetic(&self) -> bool {
        let arrow = match self {
            Error::Arrow(e) => Some(e),
            Error::DataFusion(e) => match e.find_root() {
                DataFusionError::ArrowError(e, _) => Some(e.as_ref()),
                _ => None,
            },
            _ => None,
        };
        matches!(
            arrow,
            Some(
                arrow::error::ArrowError::ArithmeticOverflow(_)
                    | arrow::error::ArrowError::DivideByZero
            )
        )
    }

    /// An [`Error::Invalid`] from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
