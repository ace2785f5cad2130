use crate::cli::Global;
use crate::error::CliError;
use airlock_core::scaffold;
use std::path::Path;
use std::process::ExitCode;

pub fn run(global: &Global, dir: &Path) -> Result<ExitCode, CliError> {
    if dir.exists() {
        if dir.join(airlock_core::project::MANIFEST).exists() {
            return Err(CliError::usage(
                format!("`{}` already holds an Airlock project", dir.display()),
                Some("nothing was changed; pick another folder".into()),
            ));
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

/// Writes the starter project into `dir` (which holds none of its files).
pub fn write_project(dir: &Path) -> Result<(), CliError> {
    for (path, text) in scaffold::FILES {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::io("create", parent, e))?;
        }
        std::fs::write(&full, text).map_err(|e| CliError::io("write", &full, e))?;
    }
    let state = dir.join(crate::workspace::STATE_DIR);
    std::fs::create_dir_all(&state).map_err(|e| CliError::io("create", &state, e))?;
    // One key per environment, 0600, so that each environment's secrets are sealed
    // under their own key from the first `airlock secrets set`.
    let starter = airlock_core::project::load(scaffold::files());
    for environment in &starter.project.manifest.environments {
        airlock_connectors::secrets::Keyring::create_key_file(&state, &environment.name)
            .map_err(|e| CliError::usage(e.to_string(), None))?;
    }
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, scaffold::GITIGNORE)
            .map_err(|e| CliError::io("write", &gitignore, e))?;
    }
    Ok(())
}
