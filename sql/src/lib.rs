//! DataFibers SQL: parsing, validation and planning.
//!
//! [`parse_script`] turns SQL text into [`Statement`]s: our own statements
//! (`CREATE STREAM`, `CREATE MATERIALIZED VIEW`, `CREATE SINK`, `SHOW`,
//! `DESCRIBE`, `DROP`) are parsed with sqlparser's primitives, everything
//! else is left to DataFusion. [`plan_continuous_query`] plans the query of a
//! view or sink into a [`ContinuousQuery`]: the stream it reads, its window
//! and a DataFusion logical plan over one batch of that stream. This crate
//! does no I/O.

#![warn(missing_docs)]

mod checked;
mod error;
mod interval;
mod join;
mod limits;
mod options;
mod parser;
mod planner;
mod session;
mod stages;
mod statement;
mod time;
mod types;
mod window;

pub use checked::{CheckedArithmetic, CheckedOp, CheckedSum};
pub use error::{Error, Result, datafusion_message};
pub use interval::{format_duration, parse_duration_option};
pub use join::StreamJoin;
pub use limits::SqlLimits;
pub use options::{OptionValue, Options};
pub use parser::{ParsedStatement, parse_script, parse_script_with};
pub use planner::{ContinuousQuery, QueryInput, StreamInfo, StreamResolver, plan_continuous_query};
pub use session::{check_arithmetic, streaming_session_state, streaming_session_state_with_config};
pub use stages::{Stages, split_stages};
pub use statement::{
    ColumnSpec, CreateQuery, CreateStream, RestartFrom, ShowTarget, Statement, SubscribeFrom,
    WatermarkSpec,
};
pub use time::{TimeAttribute, TimeKind};
pub use types::{arrow_type_to_sql, sql_type_to_arrow};
pub use window::{ARRIVAL_TIME_COLUMN, WINDOW_END, WINDOW_START, Window, WindowKind};

pub use datafusion::sql::sqlparser;
