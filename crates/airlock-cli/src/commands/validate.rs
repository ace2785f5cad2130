use crate::cli::Global;
use crate::error::{CliError, EXIT_USAGE};
use crate::project_dir::ProjectDir;
use crate::render::{self, locate};
use airlock_core::project::{self, Loaded};
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
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .map(|d| locate(d, files))
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
    let project = &loaded.project;
    let environments: Vec<&str> = project
        .manifest
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    if global.json {
        crate::output::json(&serde_json::json!({
            "ok": true,
            "workflows": project.workflows.iter().map(|w| w.workflow.name.as_str()).collect::<Vec<_>>(),
            "environments": environments,
            "connectors": project.manifest.connectors.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "scenarios": project.scenarios.len(),
        }));
    } else {
        println!(
            "ok: {} workflow{}, {} environment{} ({}), {} connector{}, {} scenario{}",
            project.workflows.len(),
            plural(project.workflows.len()),
            environments.len(),
            plural(environments.len()),
            environments.join(", "),
            project.manifest.connectors.len(),
            plural(project.manifest.connectors.len()),
            project.scenarios.len(),
            plural(project.scenarios.len()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
