//! The DataFibers catalog: the definitions of streams, materialized views and
//! sinks, and the state of the jobs that run them.
//!
//! [`Catalog`] is the entry point. It persists to an embedded SQLite file in
//! the data dir, so a restart of the engine finds every definition again and
//! resumes the jobs that had not finished. Definitions are stored as the SQL
//! text that created them: the SQL layer re-plans them at start-up, which
//! keeps the stored format stable while the planner evolves.

#![warn(missing_docs)]

mod error;
mod model;
mod store;

pub use error::{Error, Result};
pub use model::{Definition, JobCounters, JobRecord, JobStatus, ObjectKind};
pub use store::Catalog;
