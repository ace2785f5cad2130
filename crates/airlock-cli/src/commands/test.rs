//! `airlock test [WORKFLOW]`: every scenario under `tests/`, offline, through the real
//! interpreter with stubbed connectors; branch, failure-path and connector coverage per
//! workflow; the result recorded as evidence bound to each workflow's version hash.

use crate::cli::Global;
use crate::error::{CliError, EXIT_CHECK_FAILED};
use crate::workspace::{self, Workspace};
use airlock_core::suite::{self, Category, Coverage, WorkflowReport};
use airlock_ops as ops;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A suite longer than this shows a progress bar (on a terminal).
const PROGRESS_ABOVE: usize = 200;

pub fn run(
    global: &Global,
    only: Option<&str>,
    junit: Option<&Path>,
) -> Result<ExitCode, CliError> {
    if let Some(remote) = crate::remote::Remote::from_global(global)? {
        return on_server(global, &remote, only, junit);
    }
    let workspace = Workspace::open(global)?;
    if let Some(name) = only {
        workspace.workflow(name)?;
    }
    let project = workspace.project();
    let suites = suite::suites(project, only);
    let total: usize = suites.iter().map(|s| s.scenarios.len()).sum();
    let bar =
        (!global.json && total > PROGRESS_ABOVE && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} scenarios {elapsed}")
            {
                bar.set_style(style);
            }
            bar
        });
    let started = Instant::now();
    let reports = suite::run_suites(&suites, &|| {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    });
    let elapsed = started.elapsed();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let evidence = workspace::runtime()?
        .block_on(ops::evidence::record(
            &*workspace.store,
            project,
            &reports,
            workspace::now(),
        ))
        .map_err(super::promote::ops_error)?;
    let files: HashMap<(&str, &str), &str> = project
        .scenarios
        .iter()
        .map(|s| {
            let key = (s.scenario.workflow.as_str(), s.scenario.name.as_str());
            (key, project.files[s.file].path.as_str())
        })
        .collect();
    if let Some(path) = junit {
        write_junit(path, &reports, &files, elapsed)?;
    }
    let ok = reports.iter().all(|r| r.passed);
    if global.json {
        print_json(&reports, &evidence, ok);
    } else {
        for report in &reports {
            print_report(report, &files);
        }
        print_summary(&reports, elapsed, total);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// The JUnit report, written whole to a temporary file beside `path` and renamed, so a
/// reader never sees half of one.
fn write_junit(
    path: &Path,
    reports: &[WorkflowReport],
    files: &HashMap<(&str, &str), &str>,
    elapsed: Duration,
) -> Result<(), CliError> {
    let xml = crate::ci::junit::report(reports, files, elapsed)
        .to_string()
        .map_err(|e| CliError::usage(format!("cannot write JUnit XML: {e}"), None))?;
    let partial = path.with_extension("xml.partial");
    std::fs::write(&partial, xml).map_err(|e| CliError::io("write", &partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| CliError::io("write", path, e))
}

fn short(version: &str) -> &str {
    &version[..12.min(version.len())]
}

fn print_report(report: &WorkflowReport, files: &HashMap<(&str, &str), &str>) {
    let count = report.results.len();
    outln!(
        "{}@{}  {count} scenario{}",
        report.workflow,
        short(&report.version),
        plural(count)
    );
    if count == 0 {
        outln!(
            "  no scenarios under tests/{}/: nothing was tested",
            report.workflow
        );
    }
    for result in &report.results {
        if result.passed {
            outln!("  ✓ {}", result.name);
            continue;
        }
        match files.get(&(result.workflow.as_str(), result.name.as_str())) {
            Some(path) => outln!("  ✗ {} ({path})", result.name),
            None => outln!("  ✗ {}", result.name),
        }
        for failure in &result.failures {
            outln!("      {failure}");
        }
    }
    print_coverage(&report.coverage);
    outln!(
        "  evidence: {} for {}@{}",
        if report.passed { "passed" } else { "failed" },
        report.workflow,
        short(&report.version)
    );
    outln!();
}

fn print_coverage(coverage: &Coverage) {
    if coverage.items.is_empty() {
        outln!("  coverage: nothing to cover (no branches, failure paths or calls)");
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["item", "kind", "covered"]);
    for entry in &coverage.items {
        let covered = match &entry.by {
            Some(by) => format!("✓ {by}"),
            None => "✗ not covered".to_owned(),
        };
        table.add_row(vec![
            entry.label.clone(),
            entry.category.kind().to_owned(),
            covered,
        ]);
    }
    for line in table.to_string().lines() {
        outln!("  {line}");
    }
    let tallies: Vec<String> = Category::ALL
        .iter()
        .map(|c| {
            let t = coverage.tally(*c);
            format!(
                "{} {}/{} ({}%)",
                c.as_str().replace('_', " "),
                t.covered,
                t.total,
                t.percent
            )
        })
        .collect();
    outln!("  coverage: {}", tallies.join(" · "));
    let uncovered: Vec<&str> = coverage.uncovered().map(|e| e.label.as_str()).collect();
    if !uncovered.is_empty() {
        outln!("  uncovered: {}", uncovered.join(", "));
    }
}

fn print_summary(reports: &[WorkflowReport], elapsed: Duration, total: usize) {
    let failed: usize = reports.iter().map(|r| r.failed().count()).sum();
    let untested: Vec<&str> = reports
        .iter()
        .filter(|r| r.results.is_empty())
        .map(|r| r.workflow.as_str())
        .collect();
    outln!(
        "{total} scenario{} in {} workflow{}: {} passed, {failed} failed ({} ms)",
        plural(total),
        reports.len(),
        plural(reports.len()),
        total - failed,
        elapsed.as_millis()
    );
    if !untested.is_empty() {
        outln!("without scenarios: {}", untested.join(", "));
    }
    outln!(
        "evidence recorded for {} version{}",
        reports.len(),
        plural(reports.len())
    );
}

fn print_json(reports: &[WorkflowReport], evidence: &[i64], ok: bool) {
    let total: usize = reports.iter().map(|r| r.results.len()).sum();
    let failed: usize = reports.iter().map(|r| r.failed().count()).sum();
    let workflows: Vec<Value> = reports
        .iter()
        .zip(evidence)
        .map(|(report, id)| {
            json!({
                "workflow": report.workflow,
                "version": report.version,
                "passed": report.passed,
                "evidence": id,
                "summary": report.summary(),
                "scenarios": report.results,
                "coverage": report.coverage.items,
            })
        })
        .collect();
    crate::output::json(&json!({
        "ok": ok,
        "scenarios": total,
        "passed": total - failed,
        "failed": failed,
        "workflows": workflows,
    }));
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `airlock test --server URL`: the server runs the scenario suites itself, offline, on
/// the versions deployed in the token's environment (the files it received), and records
/// the evidence; this prints what it ran. Nothing is tested or recorded here, and no
/// result of this machine's is sent: a server takes no evidence over its API.
fn on_server(
    global: &Global,
    remote: &crate::remote::Remote,
    only: Option<&str>,
    junit: Option<&Path>,
) -> Result<ExitCode, CliError> {
    if junit.is_some() {
        return Err(CliError::usage(
            "--junit writes the scenarios run here; with --server they run on the server",
            Some("run `airlock test --junit FILE` without --server for CI's report".into()),
        ));
    }
    let answer: ops::evidence::ServerRun =
        remote.post("/api/v1/evidence/run", json!({ "workflow": only }))?;
    let ok = answer.recorded.iter().all(|r| r.passed);
    if global.json {
        crate::output::json(&serde_json::to_value(&answer).unwrap_or_default());
    } else {
        print_server_run(&answer);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn print_server_run(answer: &ops::evidence::ServerRun) {
    outln!(
        "the server tested what `{}` runs, on its own side:",
        answer.environment
    );
    for recorded in &answer.recorded {
        let count = |key: &str| recorded.summary[key].as_u64().unwrap_or(0);
        outln!(
            "  {} {} {} — {} of {} scenarios passed (evidence #{})",
            if recorded.passed { "✓" } else { "✗" },
            recorded.workflow,
            short(&recorded.version),
            count("passed"),
            count("scenarios"),
            recorded.evidence
        );
        if let Some(failed) = recorded.summary["failed_scenarios"].as_array() {
            for name in failed.iter().filter_map(|n| n.as_str()) {
                outln!("      ✗ {name}");
            }
        }
    }
    for skipped in &answer.skipped {
        outln!(
            "  - {} {} not tested: {}",
            skipped.workflow,
            short(&skipped.version),
            skipped.reason
        );
    }
}
