use crate::cli::Global;
use crate::error::CliError;
use airlock_core::scaffold;
use std::path::Path;
use std::process::ExitCode;

pub fn run(global: &Global, dir: &Path, force: bool) -> Result<ExitCode, CliError> {
    if dir.exists() {
        if dir.join(airlock_core::project::MANIFEST).exists() {
            return Err(CliError::usage(
                format!("`{}` already holds an Airlock project", dir.display()),
                Some("nothing was changed; pick another folder".into()),
            ));
        }
        if !force {
            refuse_unless_empty(dir)?;
        }
        for (path, _) in scaffold::FILES {
            if dir.join(path).exists() {
                return Err(CliError::usage(
                    format!("`{}` already exists", dir.join(path).display()),
                    Some("nothing was changed; `airlock init` never overwrites files".into()),
                ));
            }
        }
    }
    write_project(dir)?;
    if global.json {
        crate::output::json(&serde_json::json!({
            "created": dir.display().to_string(),
            "files": scaffold::FILES.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        }));
    } else {
        outln!("Created an Airlock project in {}", dir.display());
        for (path, _) in scaffold::FILES {
            outln!("  {path}");
        }
        outln!("\nNext: cd {} && airlock validate", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How many of a folder's entries a refusal names.
const NAMED: usize = 5;

/// Refuses a folder that holds anything, naming it and what is in it: the help says the
/// folder must be empty, and the starter written among someone's files would mix with
/// them (`.gitignore`, `examples/`, `db/`).
fn refuse_unless_empty(dir: &Path) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::io("read", dir, e))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let more = names.len().saturating_sub(NAMED);
    names.truncate(NAMED);
    let held = match more {
        0 => names.join(", "),
        n => format!("{} and {n} more", names.join(", ")),
    };
    Err(CliError::usage(
        format!("`{}` is not empty: it holds {held}", dir.display()),
        Some(format!(
            "nothing was changed; pick an empty or new folder, or `airlock init --force {}` \
             to add the starter beside them (it never overwrites a file)",
            dir.display()
        )),
    ))
}

/// Writes the starter project into `dir` (which holds none of its files). A file that
/// appears meanwhile is not overwritten: its write fails.
pub fn write_project(dir: &Path) -> Result<(), CliError> {
    for (path, text) in scaffold::FILES {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::io("create", parent, e))?;
        }
        write_new(&full, text).map_err(|e| CliError::io("write", &full, e))?;
    }
    let state = dir.join(crate::workspace::STATE_DIR);
    crate::workspace::create_state_dir(&state)?;
    // One key per environment, 0600, so that each environment's secrets are sealed
    // under their own key from the first `airlock secrets set`.
    let starter = airlock_core::project::load(scaffold::files());
    for environment in &starter.project.manifest.environments {
        airlock_connectors::secrets::Keyring::create_key_file(&state, &environment.name)
            .map_err(|e| CliError::usage(e.to_string(), None))?;
    }
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        write_new(&gitignore, scaffold::GITIGNORE)
            .map_err(|e| CliError::io("write", &gitignore, e))?;
    }
    Ok(())
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(text.as_bytes())
}
