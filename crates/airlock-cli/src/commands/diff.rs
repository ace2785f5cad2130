//! `airlock diff FROM TO`: the parity report between two environments. The facts come
//! from the project and the store (`airlock_ops::diff`, shared with the API);
//! `airlock_core::parity` judges them. Against a server, the server's report (its project,
//! its store), read back as the same type and printed the same way.

use crate::cli::{DiffFormat, Global};
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::remote::{Remote, segment};
use crate::workspace::{self, Workspace};
use airlock_core::parity::{Dimension, Finding, ParityReport, Status};
use airlock_ops as ops;
use airlock_ops::diff::Diff;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;
use std::process::ExitCode;

pub fn run(
    global: &Global,
    from: &str,
    to: &str,
    format: DiffFormat,
) -> Result<ExitCode, CliError> {
    let diff: Diff = match Remote::from_global(global)? {
        Some(remote) => remote.get(&format!(
            "/api/v1/diff?from={}&to={}",
            segment(from),
            segment(to)
        ))?,
        None => {
            let workspace = Workspace::open(global)?;
            workspace::runtime()?
                .block_on(ops::diff::diff(
                    &*workspace.store,
                    workspace.project(),
                    from,
                    to,
                    workspace::now(),
                ))
                .map_err(super::promote::ops_error)?
        }
    };
    if global.json {
        crate::output::json(&serde_json::to_value(&diff).unwrap_or(Value::Null));
    } else if format == DiffFormat::Markdown {
        for line in crate::ci::markdown::render(&diff).lines() {
            outln!("{line}");
        }
    } else {
        print(&diff.report);
        for status in diff.configuration.iter().filter(|s| s.differs()) {
            outln!(
                "\nconfiguration of {}: it runs {} (released); the working copy is {}. A configuration promotion would change:",
                status.environment,
                ops::short(status.released.as_deref().unwrap_or_default()),
                ops::short(&status.working)
            );
            super::promote::print_config_diff(&status.diff);
        }
    }
    Ok(if diff.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// A row's status; an entry's reason is written out the first time a table cites it.
pub(crate) fn status_cell(finding: &Finding, cited: &mut Vec<String>) -> String {
    let detail = finding.detail.as_deref();
    match &finding.status {
        Status::Same => "same".to_owned(),
        Status::Documented { by, .. } if cited.contains(by) => {
            format!("documented ({by}, as above)")
        }
        Status::Documented { by, reason } => {
            cited.push(by.clone());
            format!("documented ({by}): {reason}")
        }
        Status::Drift => match detail {
            Some(d) => format!("DRIFT: {d}"),
            None => "DRIFT: not documented".to_owned(),
        },
        Status::Pending => format!(
            "pending: {}",
            detail.unwrap_or("the change promotion moves")
        ),
        Status::Note => format!("note: {}", detail.unwrap_or_default()),
    }
}

fn print(report: &ParityReport) {
    for dimension in Dimension::ALL {
        let rows = report.rows(dimension);
        if rows.is_empty() {
            continue;
        }
        outln!("{}", dimension.title());
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        // Wrapped to a terminal's width; one line per row when piped, so `grep` finds rows.
        table.set_content_arrangement(ContentArrangement::Dynamic);
        table.set_header(["what", report.from.as_str(), report.to.as_str(), "status"]);
        let mut cited = Vec::new();
        for row in rows {
            table.add_row([
                row.what.clone(),
                row.from.clone(),
                row.to.clone(),
                status_cell(row, &mut cited),
            ]);
        }
        outln!("{table}\n");
    }
    for note in &report.notes {
        outln!("note: {note}");
    }
    let counts = report.counts();
    let drift: Vec<&str> = report.drift().map(|f| f.what.as_str()).collect();
    outln!(
        "{} → {}: {} same, {} documented, {} drift, {} pending promotion, {} notes",
        report.from,
        report.to,
        counts.same,
        counts.documented,
        counts.drift,
        counts.pending,
        counts.notes
    );
    if drift.is_empty() {
        outln!("clean: every difference is documented");
        return;
    }
    outln!("DRIFT: {}", drift.join(", "));
    for advice in drift_advice(report) {
        outln!("{advice}");
    }
}

/// What to do about the drift: document what can be, fix what cannot.
pub(crate) fn drift_advice(report: &ParityReport) -> Vec<String> {
    let mut advice = Vec::new();
    let documentable: Vec<&str> = report.drift().filter_map(|f| f.path.as_deref()).collect();
    if !documentable.is_empty() {
        advice.push(format!(
            "document each intended difference under `differences:` in airlock.yaml (`- {{ path: {}, reason: … }}`), or remove it",
            documentable[0]
        ));
    }
    let fixable: Vec<&str> = report
        .drift()
        .filter(|f| f.path.is_none())
        .map(|f| f.what.as_str())
        .collect();
    if !fixable.is_empty() {
        advice.push(format!(
            "{} cannot be documented away: give each environment its own credential, run the versions through promotion, and let staging see data like production's",
            fixable.join(", ")
        ));
    }
    advice
}
