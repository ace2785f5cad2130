//! `airlock`: the command line. Thin: parses arguments, calls the crates, prints.
//! This file is the one error boundary that turns errors into messages and exit codes.

#![deny(clippy::print_stdout, clippy::print_stderr)]

use airlock_cli::{cli, commands, errln, error};
use clap::Parser;
use std::process::ExitCode;

// The hot path (a delivery, its run, its journal, its call) allocates many small,
// short-lived values across threads: under load glibc's malloc and free were a fifth of
// the server's CPU samples. See .cargo/config.toml for how mimalloc keeps idle RSS low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap's own help and version are successes; everything else is usage.
            return if error.use_stderr() {
                ExitCode::from(error::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(error::CliError::Reported) => ExitCode::from(error::EXIT_USAGE),
        Err(error) => {
            errln!("error: {error}");
            if let Some(help) = error.help() {
                errln!("help: {help}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}
