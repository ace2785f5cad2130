use crate::cli::Global;
use crate::error::{CliError, EXIT_USAGE};
use crate::project_dir::ProjectDir;
use crate::render;
use airlock_core::project::{self, Loaded};
use airlock_server::ops::validate::{self as check, Problem};
use std::process::ExitCode;

/// Loads the project and, when it has problems, prints them all.
/// Returns the loaded project when it is valid.
pub fn load_or_report(global: &Global) -> Result<Result<Loaded, ExitCode>, CliError> {
    let dir = ProjectDir::locate(global.project.as_deref())?;
    let loaded = project::load(dir.read()?);
    if loaded.diagnostics.is_empty() {
        return Ok(Ok(loaded));
    }
    report(global, &loaded);
    Ok(Err(ExitCode::from(EXIT_USAGE)))
}

fn report(global: &Global, loaded: &Loaded) {
    let files = &loaded.project.files;
    if global.json {
        let errors: Vec<Problem> = loaded
            .diagnostics
            .iter()
            .map(|d| Problem::locate(d, files))
            .collect();
        crate::output::json(&serde_json::json!({ "ok": false, "errors": errors }));
        return;
    }
    let style = super::diagnostic_style(global.color);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{}", render::render(diagnostic, files, style));
    }
    let file_count = {
        let mut ids: Vec<_> = loaded.diagnostics.iter().map(|d| d.file).collect();
        ids.dedup();
        ids.len()
    };
    let n = loaded.diagnostics.len();
    eprintln!(
        "error: {n} problem{} in {file_count} file{}",
        if n == 1 { "" } else { "s" },
        if file_count == 1 { "" } else { "s" }
    );
}

pub fn run(global: &Global) -> Result<ExitCode, CliError> {
    let loaded = match load_or_report(global)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let validation = check::validate(&loaded);
    if global.json {
        crate::output::json(&serde_json::json!({
            "ok": true,
            "workflows": validation.workflows,
            "environments": validation.environments,
            "connectors": validation.connectors,
            "scenarios": validation.scenarios,
        }));
    } else {
        let count = |n: usize, what: &str| format!("{n} {what}{}", plural(n));
        println!(
            "ok: {}, {} ({}), {}, {}",
            count(validation.workflows.len(), "workflow"),
            count(validation.environments.len(), "environment"),
            validation.environments.join(", "),
            count(validation.connectors.len(), "connector"),
            count(validation.scenarios, "scenario"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
