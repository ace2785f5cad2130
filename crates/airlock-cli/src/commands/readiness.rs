//! `airlock readiness [WORKFLOW]`: the six checklist answers per workflow (DESIGN.md §1),
//! from the store and the project (`airlock_ops::readiness`, shared with the
//! API); `airlock_core::readiness` answers them. Against a server, the server's
//! checklist, read back as the same type and printed the same way.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_core::readiness::Readiness;
use airlock_ops as ops;
use airlock_ops::readiness::Checklist;
use std::process::ExitCode;

pub fn run(global: &Global, only: Option<&str>, check: bool) -> Result<ExitCode, CliError> {
    let checklist: Checklist = match Remote::from_global(global)? {
        Some(remote) => {
            // The checklist is the project's, whatever the environment; the API asks for
            // one to authorise the read, and the token's own is the one it may read.
            let environment = remote.environment()?;
            let mut query: Vec<String> = only
                .map(|w| format!("workflow={}", segment(w)))
                .into_iter()
                .collect();
            if check {
                query.push("check=true".into());
            }
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            remote.get(&format!(
                "/api/v1/environments/{}/readiness{query}",
                segment(&environment)
            ))?
        }
        None => {
            let workspace = Workspace::open(global)?;
            let connectors = check.then(|| workspace.connectors());
            workspace::runtime()?
                .block_on(ops::readiness::readiness(
                    &*workspace.store,
                    workspace.project(),
                    only,
                    connectors
                        .as_ref()
                        .map(|c| c as &dyn airlock_engine::Runtime),
                    workspace::now(),
                ))
                .map_err(super::promote::ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&checklist).unwrap_or_default());
    } else {
        let path = checklist
            .path
            .as_ref()
            .map(|p| (p.from.clone(), p.to.clone()));
        print(&checklist.workflows, path.as_ref());
    }
    Ok(if checklist.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn print(answers: &[Readiness], path: Option<&(String, String)>) {
    if let Some((from, to)) = path {
        outln!("readiness of {from} → {to}\n");
    }
    for readiness in answers {
        let risk = serde_json::to_value(readiness.risk)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        outln!(
            "{} ({risk} risk): {}",
            readiness.workflow,
            if readiness.ready {
                "READY"
            } else {
                "NOT READY"
            }
        );
        for (i, answer) in readiness.answers.iter().enumerate() {
            outln!(
                "  {} {}. {}",
                if answer.clear { "✓" } else { "✗" },
                i + 1,
                answer.asks
            );
            outln!(
                "       {}{}",
                if answer.clear { "" } else { "unclear: " },
                answer.answer
            );
        }
        outln!();
    }
    let not_ready: Vec<&str> = answers
        .iter()
        .filter(|r| !r.ready)
        .map(|r| r.workflow.as_str())
        .collect();
    if not_ready.is_empty() {
        outln!("every workflow is ready");
    } else {
        outln!("not ready: {}", not_ready.join(", "));
    }
}
