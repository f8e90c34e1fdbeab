//! The DataFibers engine: connectors, watermarks, window operators,
//! archives and the job manager.
//!
//! [`Engine`] is the entry point: it opens a data dir (its catalog and
//! archives), resumes the jobs defined there, and executes statements. Each
//! view or sink runs as a job: a source task decodes batches and tracks the
//! watermark, an operator runs the query's DataFusion plans over them (two
//! phases for windowed aggregates), and an archive commits the results.
//! Jobs take aligned checkpoints (source positions, operator state, staged
//! output) and resume from the newest after a crash, so each result is
//! committed exactly once.

#![warn(missing_docs)]

pub mod access;
mod archive;
pub mod checkpoint;
mod connector;
mod engine;
mod error;
mod format;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod insert;
mod job;
mod operator;
mod plan;
mod query;
mod result;
mod runner;
mod subscribe;
mod table;
mod watermark;

pub use access::{Access, Confinement};
pub use checkpoint::CheckpointConfig;
/// The `fetch.queue.backoff.ms` a Kafka stream's consumer sets, for
/// clients that should fetch as a stream does (the Kafka benches' baseline).
pub use connector::kafka::FETCH_QUEUE_BACKOFF_MS as KAFKA_FETCH_QUEUE_BACKOFF_MS;
pub use connector::stocks::{StocksConfig, StocksGenerator, default_symbols, stocks_schema};
pub use engine::{Engine, EngineConfig, TableInfo};
pub use error::{Error, ErrorKind, Result, catch_decoder_panic, check_ipc_bounds};
pub use fibers_catalog::ObjectKind;
pub use fibers_sql::{ParsedStatement, SqlLimits, parse_script};
pub use result::{RowStream, StatementOutput, StatementResult};
pub use runner::{QueryRunner, read_stream};
pub use watermark::WatermarkTracker;
