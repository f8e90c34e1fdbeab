//! Integration tests, compiled into one binary.

mod common;
mod run_cli;
