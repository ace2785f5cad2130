use crate::cli::Global;
use crate::error::CliError;
use airlock_core::canonical::version_id;
use airlock_core::diagnostic::suggestion;
use std::process::ExitCode;

pub fn run(global: &Global, only: Option<&str>) -> Result<ExitCode, CliError> {
    let loaded = super::validate::load_or_report(global)?;
    let project = &loaded.project;
    let selected: Vec<_> = match only {
        Some(name) => match project.workflow(name) {
            Some(w) => vec![w],
            None => {
                let names = project.workflows.iter().map(|w| w.workflow.name.as_str());
                return Err(CliError::usage(
                    format!("no workflow named `{name}`"),
                    suggestion(name, names),
                ));
            }
        },
        None => project.workflows.iter().collect(),
    };
    let rows: Vec<_> = selected
        .iter()
        .map(|w| {
            serde_json::json!({
                "workflow": w.workflow.name.value,
                "version": version_id(&w.workflow),
                "file": project.files[w.file].path,
            })
        })
        .collect();
    if global.json {
        crate::output::json(&rows);
    } else {
        for w in &selected {
            outln!("{}  {}", version_id(&w.workflow), w.workflow.name.value);
        }
        // Each environment's configuration is a version too (what `promote --config` moves).
        if only.is_none() {
            for env in &project.manifest.environments {
                if let Some((id, _)) = airlock_core::config::of(&project.manifest, &env.name.value)
                {
                    outln!("{id}  configuration of {}", env.name.value);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
