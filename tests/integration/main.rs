//! Integration tests, compiled into one binary.

mod checkpoint;
mod common;
mod crash;
mod dataloss;
mod escape;
mod fake_flight;
mod flight;
mod flight_auth;
mod flight_python;
mod flight_stream;
mod kafka;
mod kafka_join;
mod lookup;
mod nexmark;
mod poison;
mod proxy;
mod retry;
mod run_cli;
mod server;
mod shell;
mod starved;
mod statements;
mod subscribe;
mod terminal;
