//! `airlock completions SHELL` and `airlock man`: made from the arguments clap declares, so
//! they cannot fall out of step with the commands.

use crate::cli::Cli;
use crate::error::CliError;
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode, CliError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "airlock", &mut script);
    emit(&script);
    Ok(ExitCode::SUCCESS)
}

pub fn man(out: Option<&Path>) -> Result<ExitCode, CliError> {
    let command = Cli::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|e| CliError::io("write", Path::new("-"), e))?;
        emit(&page);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, e))?;
    clap_mangen::generate_to(command, dir).map_err(|e| CliError::io("write", dir, e))?;
    outln!("wrote the manual pages to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Generated text, line by line through the one writer of stdout.
fn emit(bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        outln!("{line}");
    }
}
