use crate::ObjectKind;

/// Errors raised by the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object with this name exists already (names are shared by streams,
    /// views and sinks).
    #[error("{kind} '{name}' already exists")]
    AlreadyExists {
        /// The kind of the existing object.
        kind: ObjectKind,
        /// The name in use.
        name: String,
    },

    /// No object of this kind has this name.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// The kind asked for.
        kind: ObjectKind,
        /// The missing name.
        name: String,
    },

    /// The object cannot be dropped while others are defined over it.
    #[error("cannot drop {kind} '{name}': used by {}", used_by.iter().map(|(k, n)| format!("{k} '{n}'")).collect::<Vec<_>>().join(", "))]
    InUse {
        /// The kind of the object to drop.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// The objects defined over it.
        used_by: Vec<(ObjectKind, String)>,
    },

    /// The catalog file holds a value this version does not understand.
    #[error("catalog entry '{name}' is corrupt: {reason}")]
    Corrupt {
        /// The entry at fault.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The SQLite store failed.
    #[error("catalog store at {path}: {source}")]
    Store {
        /// The catalog file.
        path: String,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
}

/// Result of catalog operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
