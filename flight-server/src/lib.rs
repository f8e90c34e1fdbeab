//! The DataFibers Arrow Flight SQL service.
//!
//! [`FibersFlightSqlService`] answers Flight SQL requests by running
//! statements on a [`fibers_engine::Engine`]; [`FlightServer`] binds a
//! listener and serves it until a shutdown signal, optionally requiring
//! authentication ([`AuthConfig`]: a Flight handshake with user and
//! password, then bearer tokens) and TLS ([`TlsConfig`]). This crate holds
//! no engine logic: it translates between Flight SQL messages and engine
//! statements and results.

#![warn(missing_docs)]

mod auth;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod server;
mod service;
mod throttle;
mod ticket;
mod tls;
mod token;

pub use auth::{AuthConfig, DEFAULT_TOKEN_TTL, MIN_TOKEN_TTL};
pub use error::{Error, Result};
pub use server::FlightServer;
pub use service::FibersFlightSqlService;
pub use tls::{TlsConfig, install_provider as install_tls_provider};
