//! `airlock validate`: every problem of the project with its place and a hint. Against a
//! server, the server's project as its files are now (`POST /api/v1/validate`).

use crate::cli::{Global, ValidateFormat};
use crate::error::{CliError, EXIT_USAGE};
use crate::project_dir::ProjectDir;
use crate::remote::Remote;
use crate::render;
use airlock_core::project::Loaded;
use airlock_ops::validate::{self as check, Problem, Validation};
use std::process::ExitCode;

/// Loads the project and, when it has problems, prints them all and answers
/// [`CliError::Reported`]. Returns the loaded project when it is valid.
pub fn load_or_report(global: &Global) -> Result<Loaded, CliError> {
    let dir = ProjectDir::locate(global.project.as_deref())?;
    let loaded = dir.load()?;
    if loaded.diagnostics.is_empty() {
        return Ok(loaded);
    }
    report(global, &loaded);
    Err(CliError::Reported)
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
        errln!("{}", render::render(diagnostic, files, style));
    }
    let file_count = {
        let mut ids: Vec<_> = loaded.diagnostics.iter().map(|d| d.file).collect();
        ids.dedup();
        ids.len()
    };
    print_count(loaded.diagnostics.len(), file_count);
}

/// The problems as GitHub Actions annotations on stdout (where the runner reads workflow
/// commands), each placed by its path from the repository's root, and the count on stderr.
fn annotate(global: &Global, problems: &[Problem]) {
    for line in crate::ci::annotations::annotations(problems, &repository_prefix(global)).lines() {
        outln!("{line}");
    }
    let mut paths: Vec<_> = problems.iter().map(|p| p.path.as_deref()).collect();
    paths.dedup();
    print_count(problems.len(), paths.len());
}

/// The project folder as a path from the current folder, which on a CI runner is the
/// repository's root: `--project ops/airlock` places `workflows/a.yaml` at
/// `ops/airlock/workflows/a.yaml`.
fn repository_prefix(global: &Global) -> String {
    let Some(dir) = global.project.as_deref() else {
        return String::new();
    };
    let relative = match std::env::current_dir() {
        Ok(cwd) if dir.is_absolute() => dir.strip_prefix(&cwd).unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    };
    let parts: Vec<String> = relative
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

fn print_count(n: usize, file_count: usize) {
    errln!(
        "error: {n} problem{} in {file_count} file{}",
        if n == 1 { "" } else { "s" },
        if file_count == 1 { "" } else { "s" }
    );
}

/// The server's problems. Its files are not here to draw the offending lines from, so each
/// problem is its heading (the same `path:line:col: message [code]` as locally) and hint.
fn report_remote(global: &Global, errors: &[Problem]) {
    if global.json {
        crate::output::json(&serde_json::json!({ "ok": false, "errors": errors }));
        return;
    }
    for problem in errors {
        match &problem.path {
            Some(path) => errln!(
                "  x {path}:{}:{}: {} [{}]",
                problem.line,
                problem.column,
                problem.message,
                problem.code
            ),
            None => errln!("  x {} [{}]", problem.message, problem.code),
        }
        if let Some(help) = &problem.help {
            errln!("  help: {help}");
        }
        errln!();
    }
    let file_count = {
        let mut paths: Vec<_> = errors.iter().map(|p| p.path.as_deref()).collect();
        paths.dedup();
        paths.len()
    };
    print_count(errors.len(), file_count);
}

pub fn run(global: &Global, format: ValidateFormat) -> Result<ExitCode, CliError> {
    let validation = match Remote::from_global(global)? {
        Some(remote) => {
            let validation: Validation = remote.post("/api/v1/validate", serde_json::json!({}))?;
            if !validation.ok {
                match format {
                    ValidateFormat::Github => annotate(global, &validation.errors),
                    ValidateFormat::Human => report_remote(global, &validation.errors),
                }
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            validation
        }
        None if format == ValidateFormat::Github => {
            let dir = ProjectDir::locate(global.project.as_deref())?;
            let loaded = dir.load()?;
            if !loaded.diagnostics.is_empty() {
                let problems: Vec<Problem> = loaded
                    .diagnostics
                    .iter()
                    .map(|d| Problem::locate(d, &loaded.project.files))
                    .collect();
                annotate(global, &problems);
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            check::validate(&loaded)
        }
        None => {
            let loaded = load_or_report(global)?;
            if !global.json {
                note_configuration_here(global, &loaded.project.manifest)?;
            }
            check::validate(&loaded)
        }
    };
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
        outln!(
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

/// When the project's store exists (it is never created here), says on stderr which
/// protected environments keep running a released configuration the working copy differs
/// from.
fn note_configuration_here(
    global: &Global,
    manifest: &airlock_core::model::Manifest,
) -> Result<(), CliError> {
    let root = ProjectDir::locate(global.project.as_deref())?.root;
    let embedded = root
        .join(crate::workspace::STATE_DIR)
        .join(crate::workspace::STORE_FILE);
    if global.store.is_none() && !embedded.exists() {
        return Ok(());
    }
    let store = crate::workspace::open_store(global.store.as_deref(), &embedded)?;
    crate::workspace::runtime()?.block_on(note_configuration(&*store, manifest, None));
    Ok(())
}

/// Says on stderr, for each protected environment (or `only`), when the working copy's
/// configuration differs from the one it runs.
pub(crate) async fn note_configuration(
    store: &dyn airlock_store::Store,
    manifest: &airlock_core::model::Manifest,
    only: Option<&str>,
) {
    let Ok(statuses) = airlock_ops::config::statuses(store, manifest).await else {
        return;
    };
    for status in statuses
        .iter()
        .filter(|s| s.differs() && only.is_none_or(|o| o == s.environment))
    {
        let changed = status.diff.iter().filter(|l| l.sign != ' ').count();
        errln!(
            "note: `{env}` keeps running its released configuration {released} until the working copy's ({working}, {changed} changed line{s}) is released: `airlock diff` shows it, `airlock promote --config --to {env}` asks for it",
            env = status.environment,
            released = airlock_ops::short(status.released.as_deref().unwrap_or_default()),
            working = airlock_ops::short(&status.working),
            s = plural(changed),
        );
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
