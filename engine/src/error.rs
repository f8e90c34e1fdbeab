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

    /// A source could not read its input: a file, a broker or a topic
    /// that failed or is missing.
    #[error("stream '{stream}': {message}")]
    Source {
        /// The stream being read.
        stream: String,
        /// What went wrong, naming the file, broker or topic.
        message: String,
    },

    /// A record could not be decoded and the stream's `bad_data` is
    /// `'fail'`.
    #[error("stream '{stream}': {message}")]
    BadRecord {
        /// The stream being read.
        stream: String,
        /// What is wrong with the record, naming its file and line or its
        /// partition and offset.
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

/// Whose move an error is: what a client, a shell or a script runner
/// tells the person who ran the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The statement, one of its options or the input data is at fault:
    /// running it again fails the same way until the user changes it.
    User,
    /// Something outside the engine failed or is missing (a broker, a
    /// store, the file system): the same statement may succeed later.
    External,
    /// The engine itself failed or found its own files damaged: a bug to
    /// report, or a data dir to repair.
    Internal,
}

impl ErrorKind {
    /// The word for the kind in messages: `user`, `external`, `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::User => "user",
            ErrorKind::External => "external",
            ErrorKind::Internal => "internal",
        }
    }
}

impl ErrorKind {
    /// What messages of this kind start with (`unavailable`, `internal
    /// error`); none for the user's own errors, which are the common case
    /// and read as plain messages.
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            ErrorKind::User => None,
            ErrorKind::External => Some("unavailable"),
            ErrorKind::Internal => Some("internal error"),
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an archive's error says when another instance of its job has
/// committed past this one, which must then stop for good.
pub(crate) const FENCED: &str = "another instance of the job has moved on";

impl Error {
    /// Whose move the error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Sql(fibers_sql::Error::DataFusion(e)) | Error::DataFusion(e) => {
                datafusion_kind(e)
            }
            Error::Sql(_) | Error::Invalid(_) | Error::BadRecord { .. } => ErrorKind::User,
            Error::Catalog(e) => match e {
                fibers_catalog::Error::AlreadyExists { .. }
                | fibers_catalog::Error::NotFound { .. }
                | fibers_catalog::Error::InUse { .. } => ErrorKind::User,
                fibers_catalog::Error::Store { .. } => ErrorKind::External,
                fibers_catalog::Error::Corrupt { .. } => ErrorKind::Internal,
            },
            Error::Source { .. } | Error::Io { .. } | Error::FellBehind { .. } => {
                ErrorKind::External
            }
            // A fenced instance or a table of another shape will not
            // change by writing again.
            Error::Archive { .. } if self.is_transient() => ErrorKind::External,
            Error::Archive { .. } => ErrorKind::User,
            Error::Arrow(e) => arrow_kind(e),
        }
    }

    /// The message with its kind in front when it is not the user's:
    /// `unavailable: ...` for an external failure, `internal error: ...`
    /// for the engine's own. A plain message is the statement's to fix.
    pub fn with_kind(&self) -> String {
        match self.kind().prefix() {
            Some(prefix) => format!("{prefix}: {self}"),
            None => self.to_string(),
        }
    }

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

/// Runs `decode` over bytes from outside this process (a checkpoint file,
/// a client's ticket), turning a panic into `Err` with its message: Arrow's
/// IPC reader panics on some damaged buffers instead of returning an error,
/// and damaged input must never take the process down.
pub fn catch_decoder_panic<T>(decode: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).map_err(panic_message)
}

/// Checks that every message an Arrow IPC file (`file`) or stream names
/// lies within `bytes`: arrow's readers allocate a message's stated length
/// before reading it, so a damaged length would ask for exabytes and abort
/// the process. Run before handing outside bytes to a reader.
pub fn check_ipc_bounds(bytes: &[u8], file: bool) -> std::result::Result<(), String> {
    let total = bytes.len() as u64;
    let past_end = |what: &str| Err(format!("{what} lies past the end of the data"));
    if file {
        let Some(tail) = bytes.last_chunk::<10>() else {
            return Err("too short for an Arrow IPC file".into());
        };
        let footer_len =
            arrow::ipc::reader::read_footer_length(*tail).map_err(|e| e.to_string())?;
        let Some(footer_start) = bytes.len().checked_sub(10 + footer_len) else {
            return past_end("the footer");
        };
        let footer = arrow::ipc::root_as_footer(&bytes[footer_start..bytes.len() - 10])
            .map_err(|e| format!("damaged footer: {e}"))?;
        let blocks = footer.recordBatches().into_iter().flatten();
        for block in blocks.chain(footer.dictionaries().into_iter().flatten()) {
            let end = u64::try_from(block.offset())
                .ok()
                .zip(u64::try_from(block.metaDataLength()).ok())
                .zip(u64::try_from(block.bodyLength()).ok())
                .and_then(|((offset, meta), body)| offset.checked_add(meta)?.checked_add(body));
            if end.is_none_or(|end| end > total) {
                return past_end("a record batch");
            }
        }
        return Ok(());
    }
    let mut at = 0usize;
    while let Some(word) = bytes.get(at..at + 4) {
        let mut length = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        at += 4;
        if length == u32::MAX {
            let Some(word) = bytes.get(at..at + 4) else {
                return past_end("a message length");
            };
            length = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            at += 4;
        }
        if length == 0 {
            return Ok(());
        }
        let Some(meta) = bytes.get(at..at + length as usize) else {
            return past_end("a message");
        };
        let message =
            arrow::ipc::root_as_message(meta).map_err(|e| format!("damaged message: {e}"))?;
        let body = u64::try_from(message.bodyLength()).map_err(|_| "a negative body length")?;
        let end = (at as u64 + u64::from(length)).checked_add(body);
        if end.is_none_or(|end| end > total) {
            return past_end("a message body");
        }
        at = at + length as usize + body as usize;
    }
    Ok(())
}

/// The message a panic was raised with.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Whose move a DataFusion error is, from its innermost cause.
fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    match e.find_root() {
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ResourcesExhausted(_) => ErrorKind::External,
        DataFusionError::Internal(_) | DataFusionError::Substrait(_) => ErrorKind::Internal,
        DataFusionError::ArrowError(e, _) => arrow_kind(e),
        DataFusionError::External(e) => match e.downcast_ref::<Error>() {
            Some(inner) => inner.kind(),
            None => ErrorKind::External,
        },
        // Planning, schemas, unsupported features, configuration and
        // execution over the user's data (a failed cast, an overflow).
        _ => ErrorKind::User,
    }
}

/// Whose move an Arrow error is.
fn arrow_kind(e: &arrow::error::ArrowError) -> ErrorKind {
    use arrow::error::ArrowError;
    match e {
        ArrowError::IoError(..) | ArrowError::ExternalError(_) => ErrorKind::External,
        ArrowError::MemoryError(_) => ErrorKind::External,
        _ => ErrorKind::User,
    }
}

/// Result of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_whose_move_it_is() {
        let user = Error::invalid("column 'x' not found");
        assert_eq!(user.kind(), ErrorKind::User);
        assert_eq!(user.with_kind(), "column 'x' not found");

        let bad = Error::BadRecord {
            stream: "t".into(),
            message: "trades.jsonl line 2: expected a number".into(),
        };
        assert_eq!(bad.kind(), ErrorKind::User);

        let down = Error::Source {
            stream: "t".into(),
            message: "topic 'trades' at 'kafka:9092': broker transport failure".into(),
        };
        assert_eq!(down.kind(), ErrorKind::External);
        assert_eq!(
            down.with_kind(),
            "unavailable: stream 't': topic 'trades' at 'kafka:9092': broker transport failure"
        );

        let overflow = Error::Arrow(arrow::error::ArrowError::ArithmeticOverflow(
            "Overflow happened on: 9223372036854775807 + 1".into(),
        ));
        assert_eq!(overflow.kind(), ErrorKind::User);

        let bug = Error::DataFusion(DataFusionError::Internal("lost a column".into()));
        assert_eq!(bug.kind(), ErrorKind::Internal);
        assert!(bug.with_kind().starts_with("internal error: "));

        let store = Error::DataFusion(DataFusionError::Context(
            "writing the archive".into(),
            Box::new(DataFusionError::IoError(std::io::Error::other("disk full"))),
        ));
        assert_eq!(store.kind(), ErrorKind::External);

        let wrapped = Error::DataFusion(DataFusionError::External(Box::new(Error::invalid(
            "no such stream",
        ))));
        assert_eq!(wrapped.kind(), ErrorKind::User);
    }
}
