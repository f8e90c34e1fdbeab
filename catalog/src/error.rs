use crate::ObjectKind;

/// Errors raised by the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object with this name exists already (names are shared by streams,
    /// views and sinks).
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: ObjectKind, name: String },

    /// No object of this kind has this name.
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: ObjectKind, name: String },

    /// The object cannot be dropped while others are defined over it.
    #[error("cannot drop {kind} '{name}': used by {}", used_by.iter().map(|(k, n)| format!("{k} '{n}'")).collect::<Vec<_>>().join(", "))]
    InUse {
        kind: ObjectKind,
        name: String,
        used_by: Vec<(ObjectKind, String)>,
    },

    /// The catalog file holds a value this version does not understand.
    #[error("catalog entry '{name}' is corrupt: {reason}")]
    Corrupt { name: String, reason: String },

    /// The SQLite store failed.
    #[error("catalog store at {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Result of catalog operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
