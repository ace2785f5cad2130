//! The readiness checklist of DESIGN.md §1: for one workflow, the five questions answered
//! from facts, each answer clear or not.
//!
//! 1. What was tested in staging before release: the newest scenario evidence for the
//!    exact version the source environment runs, its coverage and age, and the staging runs.
//! 2. Which dependencies, credentials and destinations differ: the parity report's rows
//!    that concern this workflow.
//! 3. Which of those are documented: documented against drift.
//! 4. How a change moves and who owns the release: the promotion rule and its requirements
//!    for the workflow's risk class, the approvers, the last release's author.
//! 5. How it rolls back: the release a rollback would return to (or, for a first
//!    release, taking the workflow out), and whether that release failed more.
//! 6. Whether the target can run it: the newest `check` of the configuration it runs,
//!    its missing secrets, an unset webhook signing secret, a freeze now, and a working
//!    copy of its configuration that differs from the release.
//!
//! Pure: the caller gathers the facts from the store and the project.

use crate::model::{Manifest, Risk, Workflow};
use crate::parity::{Dimension, ParityReport, Status};
use crate::policy;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// A scenario-suite result, as evidence bound to one version.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TestEvidence {
    /// The version it is about.
    pub version: String,
    /// Whether every scenario passed.
    pub passed: bool,
    /// When it was recorded, in milliseconds since the epoch.
    pub at_ms: i64,
    /// How many scenarios ran.
    pub scenarios: Option<u64>,
    /// How many of them failed, and which.
    pub failed: Vec<String>,
    /// Coverage per category (`branches`, `failure_paths`, `connectors`).
    pub coverage: Vec<Tally>,
    /// What no scenario reached.
    pub uncovered: Vec<String>,
}

/// Covered against total items of one coverage category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// The category.
    pub category: String,
    /// Items reached.
    pub covered: u64,
    /// Items in all.
    pub total: u64,
}

/// A release of the workflow in the target environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseFact {
    /// Its id.
    pub id: String,
    /// The version released.
    pub version: String,
    /// `promotion` or `rollback`.
    pub kind: String,
    /// Who asked for it.
    pub author: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The release that was current before it.
    pub previous: Option<String>,
    /// Runs accepted while it was current.
    pub runs: u64,
    /// How many of them failed.
    pub failed: u64,
}

/// What is known of the target environment itself, whatever the workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetFacts {
    /// The environment.
    pub environment: String,
    /// The newest `check` of the configuration it runs (`None`: never checked).
    pub check: Option<CheckFact>,
    /// Secrets its configuration declares that have no value.
    pub missing_secrets: Vec<String>,
    /// The signing secret this workflow's webhook names, when it has no value there.
    pub webhook_secret_unset: Option<String>,
    /// The freeze window that covers now, as text.
    pub frozen: Option<String>,
    /// The working copy's configuration differs from the released one (by this many lines).
    pub config_changes: usize,
}

/// A recorded `check` of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFact {
    /// When, in ms since the epoch.
    pub at_ms: i64,
    /// How many bindings were checked.
    pub bindings: usize,
    /// Those that failed, as `connector: why`.
    pub failed: Vec<String>,
}

/// What is known about one workflow.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The workflow (the working copy: its risk class comes from the connectors it calls).
    pub workflow: &'a Workflow,
    /// The promotion path it takes: (source, target), e.g. (`staging`, `production`).
    pub path: Option<(String, String)>,
    /// The version the source runs.
    pub source_version: Option<String>,
    /// The newest scenario evidence for exactly that version.
    pub tests: Option<TestEvidence>,
    /// The newest scenario evidence of any version of the workflow.
    pub newest_tests: Option<TestEvidence>,
    /// Finished runs of that version in the source.
    pub source_runs: u32,
    /// How many of them failed or went dead.
    pub source_failures: u32,
    /// The parity report between the source and the target.
    pub parity: Option<&'a ParityReport>,
    /// The workflow's releases in the target, newest first.
    pub releases: Vec<ReleaseFact>,
    /// Now, in milliseconds since the epoch.
    pub now_ms: i64,
    /// The target environment's own state (`None`: not gathered, which reads unclear).
    pub target: Option<TargetFacts>,
}

/// The six questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// What was tested in staging before release?
    Tested,
    /// Which dependencies, credentials and destinations differ from production?
    Differs,
    /// Which of those differences are documented and understood?
    Documented,
    /// How does a change move to production, and who owns the release?
    Release,
    /// How do we roll back?
    Rollback,
    /// Can the target run it now?
    Target,
}

impl Question {
    /// The question as the checklist asks it.
    pub fn asks(self) -> &'static str {
        match self {
            Question::Tested => "what was tested in staging before release?",
            Question::Differs => "which dependencies, credentials and destinations differ?",
            Question::Documented => "which differences are documented?",
            Question::Release => "how does a change move, and who owns the release?",
            Question::Rollback => "how do we roll back?",
            Question::Target => "can the target run it now?",
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Which question.
    pub question: Question,
    /// The question in words (borrowed when assessed here, owned when read back from JSON).
    pub asks: Cow<'static, str>,
    /// The answer, from facts.
    pub answer: String,
    /// Whether the answer is clear; an unclear one says what is missing.
    pub clear: bool,
}

/// The checklist of one workflow. Deserialize too: the CLI reads it back from the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The workflow.
    pub workflow: String,
    /// Its risk class.
    pub risk: Risk,
    /// Whether every answer is clear.
    pub ready: bool,
    /// The five answers, in checklist order.
    pub answers: Vec<Answer>,
}

/// Answers the checklist for one workflow.
pub fn assess(manifest: &Manifest, facts: &Facts<'_>) -> Readiness {
    let risk = policy::workflow_risk(manifest, facts.workflow);
    let answers = vec![
        tested(facts),
        differs(facts),
        documented(facts),
        release(manifest, facts, risk),
        rollback(facts),
        target(facts),
    ];
    Readiness {
        workflow: facts.workflow.name.value.clone(),
        risk,
        ready: answers.iter().all(|a| a.clear),
        answers,
    }
}

fn answer(question: Question, clear: bool, text: impl Into<String>) -> Answer {
    Answer {
        question,
        asks: Cow::Borrowed(question.asks()),
        answer: text.into(),
        clear,
    }
}

const NO_PATH: &str = "no promotion rule leads into a protected environment: add `promotion: { staging -> production: { require: … } }` to airlock.yaml";

fn tested(facts: &Facts<'_>) -> Answer {
    let q = Question::Tested;
    let name = &facts.workflow.name.value;
    let Some((source, _)) = &facts.path else {
        return answer(q, false, NO_PATH);
    };
    let Some(version) = &facts.source_version else {
        return answer(
            q,
            false,
            format!("{source} runs no version of {name}: `airlock deploy --env {source}`"),
        );
    };
    let runs = format!(
        "{} finished run{} of it in {source}, {} failed",
        facts.source_runs,
        plural(facts.source_runs),
        facts.source_failures
    );
    match &facts.tests {
        Some(t) if t.passed => {
            let mut text = format!(
                "scenarios passed for {} ({}, {})",
                short(version),
                suite(t),
                age(facts.now_ms, t.at_ms)
            );
            if !t.uncovered.is_empty() {
                text.push_str(&format!("; not covered: {}", first(&t.uncovered, 4)));
            }
            answer(q, true, format!("{text}; {runs}"))
        }
        Some(t) => answer(
            q,
            false,
            format!(
                "scenarios FAILED for {} ({}; failed: {}); {runs}",
                short(version),
                age(facts.now_ms, t.at_ms),
                first(&t.failed, 4)
            ),
        ),
        None => match &facts.newest_tests {
            Some(other) => answer(
                q,
                false,
                format!(
                    "the newest scenario evidence is for {}, not for {} that {source} runs: `airlock test {name}`; {runs}",
                    short(&other.version),
                    short(version)
                ),
            ),
            None => answer(
                q,
                false,
                format!(
                    "{} was never tested: `airlock test {name}`; {runs}",
                    short(version)
                ),
            ),
        },
    }
}

fn suite(t: &TestEvidence) -> String {
    let mut parts = Vec::new();
    if let Some(n) = t.scenarios {
        parts.push(format!("{n} scenario{}", if n == 1 { "" } else { "s" }));
    }
    let coverage: Vec<String> = t
        .coverage
        .iter()
        .map(|c| format!("{} {}/{}", c.category.replace('_', " "), c.covered, c.total))
        .collect();
    if !coverage.is_empty() {
        parts.push(coverage.join(", "));
    }
    parts.join("; ")
}

fn relevant<'r>(facts: &'r Facts<'_>) -> Vec<&'r crate::parity::Finding> {
    match facts.parity {
        Some(report) => report
            .findings_for(facts.workflow)
            .filter(|f| {
                matches!(
                    f.status,
                    Status::Documented { .. } | Status::Drift | Status::Pending
                )
            })
            .collect(),
        None => Vec::new(),
    }
}

fn differs(facts: &Facts<'_>) -> Answer {
    let q = Question::Differs;
    let Some(report) = facts.parity else {
        return answer(q, false, NO_PATH);
    };
    let rows = relevant(facts);
    if rows.is_empty() {
        return answer(
            q,
            true,
            format!(
                "nothing differs between {} and {} for this workflow",
                report.from, report.to
            ),
        );
    }
    let mut parts = Vec::new();
    let dependencies: BTreeSet<&str> = rows
        .iter()
        .filter(|f| f.dimension == Dimension::Connectors)
        .filter_map(|f| f.connector.as_deref())
        .collect();
    if !dependencies.is_empty() {
        parts.push(format!(
            "dependencies: {}",
            dependencies.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let whats = |dimension: Dimension| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for f in rows.iter().filter(|f| f.dimension == dimension) {
            let what = f
                .what
                .strip_prefix(&format!("{} · ", facts.workflow.name.value))
                .unwrap_or(&f.what)
                .to_owned();
            if !seen.contains(&what) {
                seen.push(what);
            }
        }
        seen
    };
    for (dimension, label) in [
        (Dimension::Credentials, "credentials"),
        (Dimension::Permissions, "destinations and permissions"),
        (Dimension::Logic, "logic"),
        (Dimension::DataShapes, "data shapes"),
        (Dimension::Branching, "branching"),
    ] {
        let items = whats(dimension);
        if !items.is_empty() {
            parts.push(format!("{label}: {}", first(&items, 5)));
        }
    }
    answer(
        q,
        true,
        format!(
            "{} difference{} between {} and {} — {}",
            rows.len(),
            plural(rows.len() as u32),
            report.from,
            report.to,
            parts.join("; ")
        ),
    )
}

fn documented(facts: &Facts<'_>) -> Answer {
    let q = Question::Documented;
    if facts.parity.is_none() {
        return answer(q, false, NO_PATH);
    }
    let rows = relevant(facts);
    let count = |pred: fn(&Status) -> bool| rows.iter().filter(|f| pred(&f.status)).count();
    let documented = count(|s| matches!(s, Status::Documented { .. }));
    let pending = count(|s| *s == Status::Pending);
    let drift: Vec<String> = rows
        .iter()
        .filter(|f| f.is_drift())
        .map(|f| f.what.clone())
        .collect();
    let mut text = format!("{documented} documented, {} drift", drift.len());
    if pending > 0 {
        text.push_str(&format!(
            ", {pending} pending promotion (the change itself)"
        ));
    }
    if drift.is_empty() {
        answer(q, true, text)
    } else {
        answer(
            q,
            false,
            format!(
                "{text}: {} — document or fix them (`airlock diff`)",
                first(&drift, 5)
            ),
        )
    }
}

fn release(manifest: &Manifest, facts: &Facts<'_>, risk: Risk) -> Answer {
    let q = Question::Release;
    let name = &facts.workflow.name.value;
    let Some((from, to)) = &facts.path else {
        return answer(q, false, NO_PATH);
    };
    let Some(rule) = policy::rule(manifest, from, to) else {
        return answer(
            q,
            false,
            format!("no promotion rule `{from} -> {to}`: nothing says how a change reaches {to}"),
        );
    };
    let required = policy::requirements(rule, risk);
    let mut needs = Vec::new();
    let coverage: Vec<String> = [
        ("branch", "branches", required.branch_coverage),
        (
            "failure path",
            "failure paths",
            required.failure_path_coverage,
        ),
    ]
    .into_iter()
    .filter_map(|(one, items, share)| {
        let share = share?;
        Some(if share >= 1.0 {
            format!("every {one}")
        } else {
            format!("≥{} of {items}", policy::percent(share))
        })
    })
    .collect();
    let covering = if coverage.is_empty() {
        String::new()
    } else {
        format!(", covering {}", coverage.join(" and "))
    };
    if required.tests == Some(true) {
        needs.push(format!("scenarios passed for the exact hash{covering}"));
    } else if !covering.is_empty() {
        needs.push(format!("scenarios of the exact hash{covering}"));
    }
    if required.parity == Some(true) {
        needs.push("parity clean".to_owned());
    }
    if let Some(runs) = required.staging_runs {
        needs.push(format!(
            "≥{} {from} run{} at ≤{:.0}% failures",
            runs.min,
            plural(runs.min),
            runs.max_failure_rate * 100.0
        ));
    }
    let approvals = required.approvals.unwrap_or(0);
    let approvers: Vec<&str> = manifest
        .environment(to)
        .map(|e| e.approvers.iter().map(|a| a.value.as_str()).collect())
        .unwrap_or_default();
    if approvals > 0 {
        needs.push(format!(
            "{approvals} approval{} from {} (not the author)",
            plural(approvals),
            if approvers.is_empty() {
                "nobody".to_owned()
            } else {
                approvers.join(", ")
            }
        ));
    }
    let risk_name = serde_json::to_value(risk)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut text = format!(
        "`airlock promote {name} --from {from} --to {to}`; {risk_name} risk requires {}",
        if needs.is_empty() {
            "nothing".to_owned()
        } else {
            needs.join(", ")
        }
    );
    match facts.releases.first() {
        Some(last) => text.push_str(&format!(
            "; release owner: {} (released {} {}, {}{})",
            last.author,
            last.id,
            age(facts.now_ms, last.at_ms),
            last.kind,
            if last.approvers.is_empty() {
                String::new()
            } else {
                format!(", approved by {}", last.approvers.join(", "))
            }
        )),
        None => text.push_str(&format!(
            "; no release in {to} yet: its owner will be whoever promotes it"
        )),
    }
    if (approvers.len() as u32) < approvals {
        return answer(
            q,
            false,
            format!(
                "{text} — but {to} has {} approver{} for {approvals} required approvals",
                approvers.len(),
                plural(approvers.len() as u32)
            ),
        );
    }
    answer(q, true, text)
}

fn rollback(facts: &Facts<'_>) -> Answer {
    let q = Question::Rollback;
    let name = &facts.workflow.name.value;
    let Some((_, to)) = &facts.path else {
        return answer(q, false, NO_PATH);
    };
    let disable = format!(
        "`airlock rollback {name} --env {to}` takes it out of {to} (its triggers stop, runs in flight finish)"
    );
    let Some(current) = facts.releases.first() else {
        return answer(
            q,
            true,
            format!("{name} was never released to {to}; after its first release, {disable}"),
        );
    };
    if current.kind == "disable" {
        return answer(
            q,
            true,
            format!(
                "{name} is disabled in {to} ({}): nothing runs to roll back; `airlock enable {name} --env {to}` brings it back through the gate",
                current.id
            ),
        );
    }
    let Some(previous) = &current.previous else {
        return answer(
            q,
            true,
            format!("one release in {to} ({}): {disable}", current.id),
        );
    };
    let Some(p) = facts.releases.iter().find(|r| &r.id == previous) else {
        return answer(
            q,
            false,
            format!("the release before {} ({previous}) is missing", current.id),
        );
    };
    if p.kind == "disable" {
        return answer(
            q,
            true,
            format!(
                "the release before {} took {name} out of {to}: {disable}",
                current.id
            ),
        );
    }
    let detail = format!(
        "{} ({}, released by {} {})",
        p.id,
        short(&p.version),
        p.author,
        age(facts.now_ms, p.at_ms)
    );
    let rate = |r: &ReleaseFact| {
        crate::release::failure_rate(
            usize::try_from(r.runs).unwrap_or(usize::MAX),
            usize::try_from(r.failed).unwrap_or(usize::MAX),
        )
    };
    if let Some(then) = rate(p) {
        let now = rate(current).unwrap_or(0.0);
        if then > now {
            return answer(
                q,
                false,
                format!(
                    "`airlock rollback {name} --env {to}` would make {detail} current again, but {} failed {:.0}% of its {} runs against {:.0}% now: roll back to another release (`airlock releases {name} --env {to}`) or {disable}",
                    p.id,
                    then * 100.0,
                    p.runs,
                    now * 100.0
                ),
            );
        }
    }
    answer(
        q,
        true,
        format!("`airlock rollback {name} --env {to}` makes {detail} current again, at once"),
    )
}

fn target(facts: &Facts<'_>) -> Answer {
    let q = Question::Target;
    let Some((_, to)) = &facts.path else {
        return answer(q, false, NO_PATH);
    };
    let Some(t) = &facts.target else {
        return answer(q, false, format!("{to}'s state was not gathered"));
    };
    let mut problems = Vec::new();
    match &t.check {
        None => problems.push(format!(
            "its configuration was never checked: `airlock check --env {to}`"
        )),
        Some(c) if !c.failed.is_empty() => problems.push(format!(
            "`check` failed {} of {} bindings {}: {}",
            c.failed.len(),
            c.bindings,
            age(facts.now_ms, c.at_ms),
            first(&c.failed, 4)
        )),
        Some(_) => {}
    }
    if !t.missing_secrets.is_empty() {
        problems.push(format!(
            "secret{} not set: {} (`airlock secrets set NAME --env {to}`)",
            plural(t.missing_secrets.len() as u32),
            first(&t.missing_secrets, 5)
        ));
    }
    if let Some(secret) = &t.webhook_secret_unset {
        problems.push(format!(
            "the webhook's signing secret {secret} is not set: every delivery would be refused"
        ));
    }
    if let Some(window) = &t.frozen {
        problems.push(format!("promotion is frozen now ({window})"));
    }
    if t.config_changes > 0 {
        problems.push(format!(
            "the working copy of its configuration differs from the released one ({} changed line{}): `airlock diff` shows it, `airlock promote --config --to {to}` asks for it",
            t.config_changes,
            plural(t.config_changes as u32)
        ));
    }
    if problems.is_empty() {
        let checked = t
            .check
            .as_ref()
            .map(|c| {
                format!(
                    "{} binding{} checked {}",
                    c.bindings,
                    plural(c.bindings as u32),
                    age(facts.now_ms, c.at_ms)
                )
            })
            .unwrap_or_default();
        return answer(
            q,
            true,
            format!("{to} is ready: {checked}, every secret set, its configuration as released"),
        );
    }
    answer(q, false, format!("{to}: {}", problems.join("; ")))
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn short(version: &str) -> String {
    version.chars().take(12).collect()
}

fn first(items: &[String], n: usize) -> String {
    let mut text = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        text.push_str(&format!(" and {} more", items.len() - n));
    }
    text
}

/// `just now`, `12 min ago`, `5 h ago`, `3 days ago`.
pub fn age(now_ms: i64, at_ms: i64) -> String {
    let seconds = (now_ms - at_ms).max(0) / 1000;
    match seconds {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", seconds / 60),
        3_600..172_800 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests;
