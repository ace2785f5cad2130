//! `airlock check --env E`: every binding of E reached for real, within E's egress.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace};
use airlock_connectors::CheckContext;
use airlock_core::model::{BindingMode, StepKind};
use airlock_engine::ProjectRuntime;
use airlock_engine::Runtime;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(global: &Global, environment: &str) -> Result<ExitCode, CliError> {
    let workspace = match Workspace::open(global)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    let env = workspace.environment(environment)?;
    let runtime = ProjectRuntime::new(
        workspace.store.clone(),
        workspace.project().manifest.clone(),
        workspace.root.clone(),
        workspace.keyring.clone(),
        Arc::new(airlock_engine::SystemClock),
    );
    let rt = workspace::runtime()?;
    let mut rows = Vec::new();
    for binding in &env.bindings {
        let name = binding.connector.value.clone();
        let context = CheckContext {
            tables: tables_written(&workspace, &name),
        };
        let outcome = rt.block_on(async {
            match runtime.connector(environment, &name).await {
                Ok(connector) => connector.check(&context).await,
                Err(e) => airlock_connectors::CheckOutcome::failed(e.to_string()),
            }
        });
        let kind = workspace
            .project()
            .manifest
            .connector(&name)
            .and_then(|c| c.kind)
            .map_or("?", |k| k.name());
        let mode = if binding.mode.value == BindingMode::Record {
            "record"
        } else {
            "live"
        };
        rows.push(json!({ "connector": name, "kind": kind, "mode": mode, "ok": outcome.ok, "detail": outcome.detail }));
    }
    let failed = rows.iter().filter(|r| r["ok"] != true).count();
    if global.json {
        crate::output::json(
            &json!({ "environment": environment, "ok": failed == 0, "bindings": rows }),
        );
    } else {
        println!("check of `{environment}`:");
        for row in &rows {
            println!(
                "  {:<4} {:<12} {:<13} {}",
                if row["ok"] == true { "OK" } else { "FAIL" },
                row["connector"].as_str().unwrap_or_default(),
                format!(
                    "{} ({})",
                    row["kind"].as_str().unwrap_or_default(),
                    row["mode"].as_str().unwrap_or_default()
                ),
                row["detail"].as_str().unwrap_or_default()
            );
        }
        if failed > 0 {
            println!(
                "{failed} binding{} failed",
                if failed == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// The tables the project's workflows insert into or upsert into through `connector`
/// (literal table names only).
fn tables_written(workspace: &Workspace, connector: &str) -> Vec<String> {
    let mut tables = Vec::new();
    for workflow in &workspace.project().workflows {
        for step in workflow.workflow.all_steps() {
            if let StepKind::Call {
                connector: c,
                action,
                with: Some(with),
                ..
            } = &step.kind
                && c == connector
                && (action == "insert" || action == "upsert")
                && let Some(table) = with
                    .to_json()
                    .get("table")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                && !tables.contains(&table)
            {
                tables.push(table);
            }
        }
    }
    tables
}
