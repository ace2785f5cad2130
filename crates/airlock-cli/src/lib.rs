//! The `airlock` command line as a library, so that tests can call the same
//! rendering and project reading the binary uses. `main.rs` is the one error boundary.

pub mod cli;
pub mod commands;
pub mod error;
pub mod output;
pub mod project_dir;
pub mod remote;
pub mod render;
pub mod workspace;
