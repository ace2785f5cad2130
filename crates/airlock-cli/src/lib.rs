//! The `airlock` command line as a library, so that tests can call the same
//! rendering and project reading the binary uses. `main.rs` is the one error boundary.

// Every line goes through `output` (`outln!`, `errln!`): a print macro panics when its
// reader has gone (`airlock … | head -1`), and a panic abandons the run being driven.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// First, so that its `outln!` and `errln!` are in scope in every module below.
#[macro_use]
pub mod output;

pub mod ci;
pub mod cli;
pub mod commands;
pub mod error;
pub mod project_dir;
pub mod remote;
pub mod render;
pub mod workspace;
