//! The DataFibers Arrow Flight SQL service.
//!
//! [`FibersFlightSqlService`] answers Flight SQL requests by running
//! statements on a [`fibers_engine::Engine`]; [`FlightServer`] binds a
//! listener and serves it until a shutdown signal. This crate holds no
//! engine logic: it translates between Flight SQL messages and engine
//! statements and results.

#![warn(missing_docs)]

mod error;
mod server;
mod service;
mod ticket;

pub use error::{Error, Result};
pub use server::FlightServer;
pub use service::FibersFlightSqlService;
