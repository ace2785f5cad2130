//! The one-line start on a fresh machine: create the starter project if it is
//! absent, check it, and show each workflow's version id and what to do next.

use crate::cli::Global;
use crate::error::CliError;
use airlock_core::canonical::version_id;
use std::path::Path;
use std::process::ExitCode;

pub fn run(global: &Global, dir: &Path) -> Result<ExitCode, CliError> {
    let created = !dir.join(airlock_core::project::MANIFEST).exists();
    if created {
        super::init::write_project(dir)?;
    }
    let scoped = Global {
        project: Some(dir.to_path_buf()),
        json: global.json,
        color: global.color,
    };
    let loaded = match super::validate::load_or_report(&scoped)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let project = &loaded.project;
    if global.json {
        crate::output::json(&serde_json::json!({
            "project": dir.display().to_string(),
            "created": created,
            "workflows": project.workflows.iter().map(|w| serde_json::json!({
                "workflow": w.workflow.name.value,
                "version": version_id(&w.workflow),
            })).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if created { "Created" } else { "Using" };
    println!("{verb} the Airlock project in {}", dir.display());
    println!(
        "Valid: {} workflows, {} environments, {} connectors, {} scenarios\n",
        project.workflows.len(),
        project.manifest.environments.len(),
        project.manifest.connectors.len(),
        project.scenarios.len()
    );
    println!("Version ids (the hash promotion moves from staging to production):");
    for w in &project.workflows {
        println!(
            "  {}  {}",
            version_id(&w.workflow).short(),
            w.workflow.name.value
        );
    }
    println!("\nNext:");
    println!(
        "  airlock validate -C {}     # every error, with file:line:col",
        dir.display()
    );
    println!(
        "  airlock hash -C {}         # full version ids",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
