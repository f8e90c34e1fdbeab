//! Integration tests, compiled into one binary.

mod common;
mod kafka;
mod run_cli;
