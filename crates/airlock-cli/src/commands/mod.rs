//! One file per command.

mod explain;
mod hash;
mod init;
mod quickstart;
mod validate;

use crate::cli::{Cli, Color, Command};
use crate::error::CliError;
use crate::render::Style;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let global = &cli.global;
    match &cli.command {
        Command::Init { dir } => init::run(global, dir),
        Command::Quickstart { dir } => quickstart::run(global, dir),
        Command::Validate => validate::run(global),
        Command::Hash { workflow } => hash::run(global, workflow.as_deref()),
        Command::Explain { code } => explain::run(global, code),
    }
}

/// Diagnostics go to stderr; draw them fancy only for a terminal.
pub fn diagnostic_style(color: Color) -> Style {
    match color {
        Color::Always => Style::Fancy,
        Color::Never => Style::Plain,
        Color::Auto
            if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() =>
        {
            Style::Fancy
        }
        Color::Auto => Style::Plain,
    }
}
