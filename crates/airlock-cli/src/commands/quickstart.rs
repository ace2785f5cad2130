//! The one-line start on a fresh machine: create the starter project if it is absent,
//! check it, run its order workflow once in staging, durably, in the embedded store;
//! then deploy staging and serve it, printing a signed `curl` for the order webhook.

use crate::cli::Global;
use crate::cli::{LogFormat, ServeArgs};
use crate::error::CliError;
use crate::workspace::Workspace;
use airlock_core::canonical::version_id;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The starter order the quickstart runs.
const EXAMPLE_ORDER: &str = "examples/order.json";

pub fn run(
    global: &Global,
    dir: &Path,
    serve: bool,
    listen: std::net::SocketAddr,
) -> Result<ExitCode, CliError> {
    let created = !dir.join(airlock_core::project::MANIFEST).exists();
    if created {
        super::init::write_project(dir)?;
    }
    let scoped = Global {
        project: Some(dir.to_path_buf()),
        json: global.json,
        color: global.color,
        store: global.store.clone(),
        server: None,
    };
    let loaded = super::validate::load_or_report(&scoped)?;
    let project = &loaded.project;
    if !global.json {
        let verb = if created { "Created" } else { "Using" };
        outln!("{verb} the Airlock project in {}", dir.display());
        outln!(
            "Valid: {} workflows, {} environments, {} connectors, {} scenarios",
            project.workflows.len(),
            project.manifest.environments.len(),
            project.manifest.connectors.len(),
            project.scenarios.len()
        );
        for w in &project.workflows {
            outln!(
                "  {}  {}",
                version_id(&w.workflow).short(),
                w.workflow.name.value
            );
        }
        outln!(
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
    if serve && outcome == ExitCode::SUCCESS {
        return serve_staging(&scoped, dir, listen);
    }
    if !global.json {
        let d = dir.display();
        outln!("\nNext:");
        outln!("  airlock runs -C {d}                       # the run, attributed to its version");
        outln!(
            "  airlock records --env staging -C {d}      # what staging's record-mode bindings received"
        );
        outln!("  airlock validate -C {d}                   # every error, with file:line:col");
    }
    Ok(outcome)
}

/// The staging secret that signs the order webhook; generated once if absent.
const HOOK_SECRET: &str = "ORDER_HOOK_SECRET";

fn serve_staging(
    global: &Global,
    dir: &Path,
    listen: std::net::SocketAddr,
) -> Result<ExitCode, CliError> {
    let quiet = Global {
        project: global.project.clone(),
        json: true,
        color: global.color,
        store: global.store.clone(),
        server: None,
    };
    outln!("\nDeploying the working copy to staging:");
    // The quickstart serves this folder itself: its deploy is local even when
    // AIRLOCK_SERVER names another server.
    let local = Global {
        project: global.project.clone(),
        json: global.json,
        color: global.color,
        store: global.store.clone(),
        server: None,
    };
    let deployed = super::deploy::run(&local, "staging", Some("quickstart"))?;
    if deployed != ExitCode::SUCCESS {
        return Ok(deployed);
    }
    let workspace = Workspace::open(&quiet)?;
    let rt = crate::workspace::runtime()?;
    let stored = rt
        .block_on(workspace.store.secret("staging", HOOK_SECRET))
        .map_err(crate::workspace::store_error)?;
    if stored.is_none() {
        let secret = airlock_ops::tokens::mint_token().hash;
        super::secrets::set_value(&quiet, &workspace, HOOK_SECRET, "staging", &secret)?;
        outln!("Generated the staging secret {HOOK_SECRET} (the order webhook's signing key)");
    }
    let secret = crate::workspace::runtime()?
        .block_on(async {
            airlock_connectors::secrets::SecretLookup::lookup(
                &airlock_engine::runtime::StoreSecrets {
                    store: workspace.store.clone(),
                    keyring: workspace.keyring.clone(),
                },
                "staging",
                HOOK_SECRET,
            )
            .await
        })
        .map_err(|e| CliError::usage(e.to_string(), None))?
        .ok_or_else(|| CliError::usage(format!("{HOOK_SECRET} is not set in staging"), None))?;
    let order_path = dir.join(EXAMPLE_ORDER);
    let order = std::fs::read(&order_path).map_err(|e| CliError::io("read", &order_path, e))?;
    let signature = airlock_core::webhook::sign_github(secret.as_bytes(), &order);
    let args = ServeArgs {
        listen,
        no_execute: false,
        no_schedules: false,
        concurrency: 64,
        lease: Duration::from_secs(30),
        grace: Duration::from_secs(10),
        retain: None,
        audit_anchor_file: None,
        audit_anchor_every: Duration::from_secs(60),
        tls_cert: None,
        tls_key: None,
        log_format: LogFormat::Text,
    };
    super::serve::init_logging(LogFormat::Text);
    let d = dir.display();
    super::serve::serve(&workspace, &args, |address| {
        outln!("\nTrigger the order webhook in staging (signed with {HOOK_SECRET}):");
        outln!(
            "  curl -sS -X POST http://{address}/hooks/staging/orders -H 'Content-Type: application/json' -H 'X-Hub-Signature-256: {signature}' --data-binary @{}",
            order_path.display()
        );
        outln!("Then see the run and its journal:");
        outln!("  airlock runs -C {d}");
        outln!("Ctrl-C stops the server; unfinished runs resume on the next start.");
    })
}
