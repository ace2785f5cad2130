//! The one-line start on a fresh machine: create the starter project if it is absent,
//! check it, and run its order workflow once in staging, durably, in the embedded store.

use crate::cli::Global;
use crate::error::CliError;
use airlock_core::canonical::version_id;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The starter order the quickstart runs.
const EXAMPLE_ORDER: &str = "examples/order.json";

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
    if !global.json {
        let verb = if created { "Created" } else { "Using" };
        println!("{verb} the Airlock project in {}", dir.display());
        println!(
            "Valid: {} workflows, {} environments, {} connectors, {} scenarios",
            project.workflows.len(),
            project.manifest.environments.len(),
            project.manifest.connectors.len(),
            project.scenarios.len()
        );
        for w in &project.workflows {
            println!(
                "  {}  {}",
                version_id(&w.workflow).short(),
                w.workflow.name.value
            );
        }
        println!(
            "\nRunning order-intake in staging (offline: record-mode bindings, a local SQLite file):"
        );
    }
    let input = dir.join(EXAMPLE_ORDER);
    let outcome = super::run::run(
        &scoped,
        super::run::Options {
            workflow: "order-intake",
            environment: "staging",
            input: input.exists().then_some(input.as_path()),
            lease: Duration::from_secs(30),
        },
    )?;
    if !global.json {
        let d = dir.display();
        println!("\nNext:");
        println!(
            "  airlock runs -C {d}                       # the run, attributed to its version"
        );
        println!(
            "  airlock records --env staging -C {d}      # what staging's record-mode bindings received"
        );
        println!("  airlock validate -C {d}                   # every error, with file:line:col");
    }
    Ok(outcome)
}
