//! Scenario tests: each scenario runs offline through the real interpreter.
//!
//! A scenario (`tests/<workflow>/<name>.yaml`) gives a trigger, stubbed answers and
//! faults per `connector.action`, decisions for approval steps, and what must happen.
//! [`run_scenario`] drives [`interpreter::decide`] exactly as the executor does — the
//! same journal entries, the same retry classification, the same idempotency keys —
//! with a fake clock instead of the system's and the stubs instead of connectors:
//!
//! - a stub's replies are used one per call of its `connector.action`, in order, and
//!   the last repeats;
//! - a fault fails the attempt exactly as a real connector would word and classify it:
//!   `timeout` is "timed out after {timeout}ms" (retry class `timeout`, the fake clock
//!   moves by the step's timeout), `connection_refused` is "connection refused or
//!   failed: connection refused" (`connection`), `status: N` is "answered with status
//!   N" (`status_5xx` for 5xx, `status_429` for 429, not retryable otherwise);
//! - a call with no stub stops the scenario, which fails: "no stub for crm.request";
//! - sleeps (delays, retry backoffs) are skipped by moving the fake clock;
//! - an approval step waits for the scenario's decision on it; without one the run
//!   ends `waiting`.
//!
//! The run's environment is `test` (`env.name` in templates); its clock starts at the
//! trigger's `time` when given (RFC 3339), at [`DEFAULT_START`] otherwise, so every
//! scenario is deterministic.
//!
//! Expectations: `status`; `path` (the step ids taken, each once, in the order first
//! seen in the journal, failure handlers included) compared exactly; `calls` as an
//! ordered subsequence of every attempt made, each with its arguments compared
//! exactly or as a subset (every expected key or item present and equal, recursively;
//! numbers compare by value, so `250` matches `250.0`); `not_called`; `outputs` per
//! step as a subset. Messages (a chat text, a mail subject or body) are arguments
//! like any other, so a wrong customer message is caught by an expected `with`.
//!
//! [`coverage`] gathers, per workflow, which branch arms, failure paths and connector
//! actions the scenarios reached; see [`Item`].

use crate::interpreter::{self, AttemptFailure, CallPlan, Input, Next, TransportFault};
use crate::model::{MatchMode, Scenario, Step, StepKind, StubReply, Workflow};
use crate::project::Project;
use crate::run::{NewJournalEntry, Run, RunStatus, StepDecision, StepStatus, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The fake clock's start when the trigger gives no `time`: 2026-01-01T00:00:00Z.
pub const DEFAULT_START: Timestamp = 1_767_225_600_000;
/// The trigger `time` when the scenario gives none (the same instant as [`DEFAULT_START`]).
pub const DEFAULT_TIME: &str = "2026-01-01T00:00:00Z";
/// The environment a scenario runs in (`env.name`).
pub const ENVIRONMENT: &str = "test";
/// The run id a scenario's run has (it appears in default idempotency keys).
pub const RUN_ID: &str = "run_scenario";
/// A run that has not settled after this many decisions is stopped (a safety net: a
/// workflow has no loops, so a real run settles in far fewer).
const MAX_DECISIONS: usize = 10_000;
/// Mismatches reported per compared value before the rest are summarised.
const MAX_MISMATCHES: usize = 8;
/// Longest value shown in a failure message.
const MAX_SHOWN: usize = 2_000;
/// The fake clock's step for an answered call.
const CALL_MS: i64 = 1;

/// The outcome of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// The workflow.
    pub workflow: String,
    /// The scenario's name.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// Each failed expectation, as a sentence naming what was expected and what happened.
    pub failures: Vec<String>,
    /// How the run ended: `succeeded`, `failed`, `dead`, `waiting`, or `incomplete` when
    /// the scenario stopped it (a call without a stub).
    pub status: String,
    /// The run's error, when it failed.
    pub error: Option<String>,
    /// The step ids taken, each once, in first-seen order.
    pub path: Vec<String>,
    /// Every attempt of every call, in order.
    pub calls: Vec<CallRecord>,
    /// The outputs of the steps that succeeded, by id.
    pub outputs: Map<String, Value>,
    /// What this scenario covered.
    pub covered: CoverageHits,
}

/// One attempt of a call, as the stubs answered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// The step.
    pub step: String,
    /// `connector.action`.
    pub target: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The rendered arguments.
    pub args: Value,
    /// The stub's answer, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// The fault, when the attempt failed (worded as the real connector words it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A branch arm.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// An `if`'s `then`.
    Then,
    /// An `if`'s `else` (taken, and covered, even when the `if` has no `else` steps:
    /// then the arm skips the `then` steps).
    Else,
    /// A `switch` case.
    Case(String),
    /// A `switch`'s `default`.
    Default,
}

/// One thing a workflow's scenarios should reach.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// A branch arm of an `if` or `switch` step, taken.
    Branch {
        /// The branching step.
        step: String,
        /// The arm.
        arm: Arm,
    },
    /// A step with a retry policy that a stubbed fault reached.
    Retry {
        /// The step.
        step: String,
    },
    /// A step's `on_failure` handler, run after the step failed for good.
    OnFailure {
        /// The step.
        step: String,
    },
    /// The workflow's `on_failure` handler, run.
    WorkflowOnFailure,
    /// A connector action, called.
    Action {
        /// `connector.action`.
        target: String,
    },
}

/// The three coverage categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Every arm of every `if` and `switch`.
    Branches,
    /// Every step with `retry` or `on_failure` exercised by a failure, and the
    /// workflow's own `on_failure`.
    FailurePaths,
    /// Every connector action the workflow calls.
    Connectors,
}

impl Category {
    /// Every category, in table order.
    pub const ALL: [Category; 3] = [
        Category::Branches,
        Category::FailurePaths,
        Category::Connectors,
    ];

    /// The name as printed and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Branches => "branches",
            Category::FailurePaths => "failure_paths",
            Category::Connectors => "connectors",
        }
    }

    /// The singular kind shown in a table.
    pub fn kind(self) -> &'static str {
        match self {
            Category::Branches => "branch",
            Category::FailurePaths => "failure path",
            Category::Connectors => "connector",
        }
    }
}

impl Item {
    /// Its category.
    pub fn category(&self) -> Category {
        match self {
            Item::Branch { .. } => Category::Branches,
            Item::Retry { .. } | Item::OnFailure { .. } | Item::WorkflowOnFailure => {
                Category::FailurePaths
            }
            Item::Action { .. } => Category::Connectors,
        }
    }

    /// How it reads in a table: `big_order → else`, `sync_crm: retry after a fault`.
    pub fn label(&self) -> String {
        match self {
            Item::Branch {
                step,
                arm: Arm::Then,
            } => format!("{step} → then"),
            Item::Branch {
                step,
                arm: Arm::Else,
            } => format!("{step} → else"),
            Item::Branch {
                step,
                arm: Arm::Case(case),
            } => format!("{step} → case {case:?}"),
            Item::Branch {
                step,
                arm: Arm::Default,
            } => format!("{step} → default"),
            Item::Retry { step } => format!("{step}: retry after a fault"),
            Item::OnFailure { step } => format!("{step}: on_failure handler"),
            Item::WorkflowOnFailure => "workflow on_failure handler".to_owned(),
            Item::Action { target } => target.clone(),
        }
    }
}

/// What one scenario reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CoverageHits {
    /// The items reached.
    pub items: BTreeSet<Item>,
}

/// One coverage item of a workflow and whether a scenario reached it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageEntry {
    /// The item.
    pub item: Item,
    /// Its category.
    pub category: Category,
    /// How it reads.
    pub label: String,
    /// Whether any scenario reached it.
    pub covered: bool,
    /// The first scenario (in path order) that reached it.
    pub by: Option<String>,
}

/// Covered and total items of one category.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tally {
    /// Items reached.
    pub covered: usize,
    /// Items in all.
    pub total: usize,
    /// covered / total in percent, to a tenth; 100 when there is nothing to cover.
    pub percent: f64,
    /// covered / total, unrounded (0.0 to 1.0); 1.0 when there is nothing to cover: what
    /// a policy's `tests: { branches, failure_paths }` shares are compared with.
    pub ratio: f64,
}

/// A workflow's coverage by its scenarios.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The workflow.
    pub workflow: String,
    /// Every item, branches first, then failure paths, then connector actions, each in
    /// the order the workflow is written.
    pub items: Vec<CoverageEntry>,
}

impl Coverage {
    /// Covered and total items of a category.
    pub fn tally(&self, category: Category) -> Tally {
        let of: Vec<&CoverageEntry> = self
            .items
            .iter()
            .filter(|e| e.category == category)
            .collect();
        let covered = of.iter().filter(|e| e.covered).count();
        let total = of.len();
        let ratio = if total == 0 {
            1.0
        } else {
            covered as f64 / total as f64
        };
        Tally {
            covered,
            total,
            percent: (ratio * 1000.0).round() / 10.0,
            ratio,
        }
    }

    /// The items no scenario reached.
    pub fn uncovered(&self) -> impl Iterator<Item = &CoverageEntry> {
        self.items.iter().filter(|e| !e.covered)
    }

    /// The counts per category and the uncovered items' labels, as stored in evidence.
    pub fn summary(&self) -> Value {
        let mut categories = Map::new();
        for category in Category::ALL {
            let tally = self.tally(category);
            categories.insert(category.as_str().to_owned(), json!(tally));
        }
        json!({
            "coverage": categories,
            "uncovered": self.uncovered().map(|e| json!({ "kind": e.category.as_str(), "item": e.label })).collect::<Vec<_>>(),
        })
    }
}

/// Runs one scenario of `workflow` through the interpreter and checks its expectations.
pub fn run_scenario(workflow: &Workflow, scenario: &Scenario) -> ScenarioResult {
    Prepared::new(workflow).run(scenario)
}

/// Which items of `workflow` the `results` (of its scenarios) reached.
pub fn coverage(workflow: &Workflow, results: &[ScenarioResult]) -> Coverage {
    Prepared::new(workflow).coverage(results)
}

/// A workflow ready to run scenarios: its version id, its steps by id, its items.
pub struct Prepared<'a> {
    workflow: &'a Workflow,
    version: String,
    steps: HashMap<&'a str, &'a Step>,
    items: Vec<Item>,
}

impl<'a> Prepared<'a> {
    /// Prepares `workflow` (hashing it for its version id).
    pub fn new(workflow: &'a Workflow) -> Self {
        let version = crate::canonical::version_id(workflow).0;
        Self::with_version(workflow, version)
    }

    /// Prepares `workflow` whose version id is already known.
    pub fn with_version(workflow: &'a Workflow, version: String) -> Self {
        let mut steps = HashMap::new();
        let mut branches = Vec::new();
        let mut failures = Vec::new();
        let mut actions: Vec<Item> = Vec::new();
        index(
            &workflow.steps,
            &mut steps,
            &mut branches,
            &mut failures,
            &mut actions,
        );
        if !workflow.on_failure.is_empty() {
            failures.push(Item::WorkflowOnFailure);
        }
        index(
            &workflow.on_failure,
            &mut steps,
            &mut branches,
            &mut failures,
            &mut actions,
        );
        let mut items = branches;
        items.extend(failures);
        items.extend(actions);
        Self {
            workflow,
            version,
            steps,
            items,
        }
    }

    /// The workflow's version id.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every item the scenarios should reach, in table order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Runs one scenario and checks its expectations.
    pub fn run(&self, scenario: &Scenario) -> ScenarioResult {
        let sim = self.simulate(scenario);
        let mut failures = Vec::new();
        let status = sim.status.clone();
        if let Some(stop) = &sim.stopped {
            failures.push(stop.clone());
        } else {
            check(scenario, &sim, &mut failures);
        }
        let covered = self.hits(&sim);
        ScenarioResult {
            workflow: scenario.workflow.clone(),
            name: scenario.name.clone(),
            passed: failures.is_empty(),
            failures,
            status,
            error: sim.error,
            path: sim.path,
            calls: sim.calls,
            outputs: sim.outputs,
            covered,
        }
    }

    /// Which items the results reached.
    pub fn coverage(&self, results: &[ScenarioResult]) -> Coverage {
        let items = self
            .items
            .iter()
            .map(|item| {
                let by = results
                    .iter()
                    .find(|r| r.covered.items.contains(item))
                    .map(|r| r.name.clone());
                CoverageEntry {
                    item: item.clone(),
                    category: item.category(),
                    label: item.label(),
                    covered: by.is_some(),
                    by,
                }
            })
            .collect();
        Coverage {
            workflow: self.workflow.name.value.clone(),
            items,
        }
    }

    fn simulate(&self, scenario: &Scenario) -> Sim {
        let (trigger, start) = trigger(scenario);
        let run = Run {
            id: RUN_ID.into(),
            environment: ENVIRONMENT.into(),
            workflow: self.workflow.name.value.clone(),
            version: self.version.clone(),
            status: RunStatus::Running,
            trigger: trigger.into(),
            dedupe_key: None,
            output: None,
            error: None,
            created_at: start,
            started_at: Some(start),
            finished_at: None,
            wake_at: None,
            lease_owner: None,
            lease_expires_at: None,
            fencing_token: 1,
            claims: 1,
        };
        let stubs: HashMap<&str, &[StubReply]> = scenario
            .stubs
            .iter()
            .filter(|s| !s.replies.is_empty())
            .map(|s| (s.target.value.as_str(), s.replies.as_slice()))
            .collect();
        let mut used: HashMap<String, usize> = HashMap::new();
        let mut journal: Vec<NewJournalEntry> = Vec::new();
        let mut decisions: HashMap<String, StepDecision> = HashMap::new();
        let mut calls = Vec::new();
        let mut faulted = HashSet::new();
        let mut now = start;
        let mut status = None;
        let mut error = None;
        let mut stopped = None;
        for _ in 0..MAX_DECISIONS {
            let decision = interpreter::decide(&Input {
                workflow: self.workflow,
                version: &self.version,
                run: &run,
                journal: &journal,
                decisions: &decisions,
                now,
                release: None,
            });
            journal.extend(decision.entries);
            match decision.next {
                Next::Call(plan) => {
                    let target = format!("{}.{}", plan.connector, plan.action);
                    let Some(replies) = stubs.get(target.as_str()) else {
                        stopped = Some(format!(
                            "no stub for {target}: step `{}` calls it; give the scenario `stubs: {{ {target}: {{ respond: … }} }}`",
                            plan.step
                        ));
                        break;
                    };
                    let n = used.entry(target.clone()).or_insert(0);
                    let reply = &replies[(*n).min(replies.len() - 1)];
                    *n += 1;
                    journal.push(interpreter::started_entry(&plan, None, now));
                    let started = now;
                    let (result, took) = answer(reply, &plan);
                    now = now.saturating_add(took);
                    let mut record = CallRecord {
                        step: plan.step.clone(),
                        target,
                        attempt: plan.attempt,
                        args: plan.args.clone(),
                        answer: None,
                        error: None,
                    };
                    match &result {
                        Ok(value) => record.answer = Some(value.clone()),
                        Err((message, _)) => {
                            record.error = Some(message.clone());
                            faulted.insert(plan.step.clone());
                        }
                    }
                    calls.push(record);
                    journal.push(interpreter::result_entry(&plan, started, now, result, 0.5));
                }
                Next::Sleep { until } => now = now.max(until),
                Next::Wait { step, .. } => {
                    let decided = scenario
                        .approvals
                        .iter()
                        .find(|(id, _, _)| id.value == step);
                    match decided {
                        Some((_, approved, by)) if !decisions.contains_key(&step) => {
                            decisions.insert(
                                step.clone(),
                                StepDecision {
                                    run: RUN_ID.into(),
                                    step,
                                    approver: by.clone().unwrap_or_else(|| "scenario".into()),
                                    approved: *approved,
                                    decided_at: now,
                                },
                            );
                        }
                        _ => {
                            status = Some(RunStatus::Waiting.as_str().to_owned());
                            break;
                        }
                    }
                }
                Next::Finish {
                    status: finished,
                    error: e,
                    ..
                } => {
                    status = Some(finished.as_str().to_owned());
                    error = e;
                    break;
                }
            }
        }
        if status.is_none() && stopped.is_none() {
            stopped = Some(format!(
                "the run did not settle after {MAX_DECISIONS} decisions"
            ));
        }
        let mut path: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut outputs = Map::new();
        for entry in &journal {
            if seen.insert(entry.step.as_str()) {
                path.push(entry.step.clone());
            }
            if entry.status == StepStatus::Succeeded {
                outputs.insert(
                    entry.step.clone(),
                    entry.output.clone().unwrap_or(Value::Null),
                );
            }
        }
        Sim {
            status: status.unwrap_or_else(|| "incomplete".to_owned()),
            error,
            stopped,
            journal,
            path,
            calls,
            outputs,
            faulted,
        }
    }

    fn hits(&self, sim: &Sim) -> CoverageHits {
        let mut items = BTreeSet::new();
        let ran: HashSet<&str> = sim.path.iter().map(String::as_str).collect();
        for entry in &sim.journal {
            if entry.status != StepStatus::Succeeded {
                continue;
            }
            let Some(step) = self.steps.get(entry.step.as_str()) else {
                continue;
            };
            let branch = entry
                .output
                .as_ref()
                .and_then(|o| o.get("branch"))
                .and_then(Value::as_str);
            let arm = match (&step.kind, branch) {
                (StepKind::If { .. }, Some("then")) => Arm::Then,
                (StepKind::If { .. }, Some(_)) => Arm::Else,
                (StepKind::Switch { cases, .. }, Some(branch)) => {
                    match cases.iter().find(|(c, _)| c.value == branch) {
                        Some((case, _)) => Arm::Case(case.value.clone()),
                        None => Arm::Default,
                    }
                }
                _ => continue,
            };
            items.insert(Item::Branch {
                step: step.id.value.clone(),
                arm,
            });
        }
        for step in &sim.faulted {
            if self
                .steps
                .get(step.as_str())
                .is_some_and(|s| s.retry.is_some())
            {
                items.insert(Item::Retry { step: step.clone() });
            }
        }
        for id in &sim.path {
            if let Some(step) = self.steps.get(id.as_str())
                && let Some(first) = step.on_failure.first()
                && ran.contains(first.id.value.as_str())
            {
                items.insert(Item::OnFailure { step: id.clone() });
            }
        }
        if let Some(first) = self.workflow.on_failure.first()
            && ran.contains(first.id.value.as_str())
        {
            items.insert(Item::WorkflowOnFailure);
        }
        for call in &sim.calls {
            items.insert(Item::Action {
                target: call.target.clone(),
            });
        }
        CoverageHits { items }
    }
}

/// What a simulated run did.
struct Sim {
    status: String,
    error: Option<String>,
    /// Why the scenario stopped the run before it settled.
    stopped: Option<String>,
    journal: Vec<NewJournalEntry>,
    path: Vec<String>,
    calls: Vec<CallRecord>,
    outputs: Map<String, Value>,
    /// Steps at which a stubbed fault failed an attempt.
    faulted: HashSet<String>,
}

/// Indexes steps by id and lists their coverage items, in the order they are written.
fn index<'a>(
    steps: &'a [Step],
    by_id: &mut HashMap<&'a str, &'a Step>,
    branches: &mut Vec<Item>,
    failures: &mut Vec<Item>,
    actions: &mut Vec<Item>,
) {
    for step in steps {
        let id = step.id.value.as_str();
        by_id.insert(id, step);
        if step.retry.is_some() {
            failures.push(Item::Retry {
                step: id.to_owned(),
            });
        }
        if !step.on_failure.is_empty() {
            failures.push(Item::OnFailure {
                step: id.to_owned(),
            });
        }
        match &step.kind {
            StepKind::If {
                then, otherwise, ..
            } => {
                branches.push(Item::Branch {
                    step: id.to_owned(),
                    arm: Arm::Then,
                });
                branches.push(Item::Branch {
                    step: id.to_owned(),
                    arm: Arm::Else,
                });
                index(then, by_id, branches, failures, actions);
                index(otherwise, by_id, branches, failures, actions);
            }
            StepKind::Switch { cases, default, .. } => {
                for (case, arm) in cases {
                    branches.push(Item::Branch {
                        step: id.to_owned(),
                        arm: Arm::Case(case.value.clone()),
                    });
                    index(arm, by_id, branches, failures, actions);
                }
                branches.push(Item::Branch {
                    step: id.to_owned(),
                    arm: Arm::Default,
                });
                index(default, by_id, branches, failures, actions);
            }
            StepKind::Call {
                connector, action, ..
            } => {
                let item = Item::Action {
                    target: format!("{connector}.{action}"),
                };
                if !actions.contains(&item) {
                    actions.push(item);
                }
            }
            _ => {}
        }
        index(&step.on_failure, by_id, branches, failures, actions);
    }
}

/// The run's trigger (`body`, `headers`, `query`, `time`, with the scenario's values
/// over empty defaults) and the fake clock's start.
fn trigger(scenario: &Scenario) -> (Value, Timestamp) {
    let mut trigger = Map::new();
    trigger.insert("body".into(), json!({}));
    trigger.insert("headers".into(), json!({}));
    trigger.insert("query".into(), json!({}));
    trigger.insert("time".into(), json!(DEFAULT_TIME));
    if let Some(Value::Object(given)) = scenario.trigger.as_ref().map(|t| t.to_json()) {
        trigger.extend(given);
    }
    let start = trigger
        .get("time")
        .and_then(Value::as_str)
        .and_then(crate::time::parse_rfc3339)
        .unwrap_or(DEFAULT_START);
    (Value::Object(trigger), start)
}

/// A stub's answer to one attempt, and how long the fake clock moves.
fn answer(reply: &StubReply, plan: &CallPlan) -> (Result<Value, (String, AttemptFailure)>, i64) {
    match reply {
        StubReply::Respond(value) => (Ok(value.to_json()), CALL_MS),
        StubReply::Timeout => (
            Err(TransportFault::Timeout(plan.timeout_ms).attempt()),
            i64::try_from(plan.timeout_ms).unwrap_or(i64::MAX),
        ),
        StubReply::ConnectionRefused => (
            Err(TransportFault::Connection("connection refused".into()).attempt()),
            CALL_MS,
        ),
        StubReply::Status(status, _body) => {
            (Err(TransportFault::Status(*status).attempt()), CALL_MS)
        }
    }
}

/// Checks a settled run against the scenario's expectations.
fn check(scenario: &Scenario, sim: &Sim, failures: &mut Vec<String>) {
    let expect = &scenario.expect;
    if let Some(status) = &expect.status
        && status.value != sim.status
    {
        let why = sim
            .error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        failures.push(format!(
            "status: expected {}, got {}{why}",
            status.value, sim.status
        ));
    }
    if !expect.path.is_empty() {
        let expected: Vec<&str> = expect.path.iter().map(|p| p.value.as_str()).collect();
        if expected != sim.path {
            failures.push(path_failure(&expected, &sim.path));
        }
    }
    check_calls(scenario, sim, failures);
    for target in &expect.not_called {
        let made: Vec<&CallRecord> = sim
            .calls
            .iter()
            .filter(|c| c.target == target.value)
            .collect();
        if let Some(first) = made.first() {
            failures.push(format!(
                "not_called: {} was called {} (first by step `{}`)",
                target.value,
                times(made.len()),
                first.step
            ));
        }
    }
    for (step, expected) in &expect.outputs {
        let prefix = format!("outputs.{}", step.value);
        match sim.outputs.get(&step.value) {
            Some(actual) => {
                let mut mismatches = Vec::new();
                compare(
                    &expected.to_json(),
                    actual,
                    MatchMode::Subset,
                    &prefix,
                    &mut mismatches,
                );
                failures.extend(mismatches);
            }
            None => failures.push(format!(
                "{prefix}: expected an output, but step `{}` did not succeed",
                step.value
            )),
        }
    }
}

fn times(n: usize) -> String {
    if n == 1 {
        "once".to_owned()
    } else {
        format!("{n} times")
    }
}

fn path_failure(expected: &[&str], actual: &[String]) -> String {
    let first = expected
        .iter()
        .zip(actual)
        .position(|(e, a)| *e != a.as_str())
        .unwrap_or_else(|| expected.len().min(actual.len()));
    let detail = match (expected.get(first), actual.get(first)) {
        (Some(e), Some(a)) => format!("step {} is `{a}`, expected `{e}`", first + 1),
        (Some(e), None) => format!("the run stopped before `{e}`"),
        (None, Some(a)) => format!("the run went on to `{a}`"),
        (None, None) => String::new(),
    };
    format!(
        "path: expected [{}], got [{}]: {detail}",
        expected.join(", "),
        actual.join(", ")
    )
}

/// Expected calls are matched, in order, against the attempts made: each one against
/// the first later attempt with its target and matching arguments.
fn check_calls(scenario: &Scenario, sim: &Sim, failures: &mut Vec<String>) {
    let mut cursor = 0;
    for (i, expected) in scenario.expect.calls.iter().enumerate() {
        let target = expected.target.value.as_str();
        let with = expected.with.as_ref().map(|w| w.to_json());
        let mode_word = match expected.mode {
            MatchMode::Exact => " (exact match)",
            MatchMode::Subset => "",
        };
        let candidates: Vec<(usize, &CallRecord)> = sim
            .calls
            .iter()
            .enumerate()
            .skip(cursor)
            .filter(|(_, c)| c.target == target)
            .collect();
        let mut closest: Option<(&CallRecord, Vec<String>)> = None;
        let mut matched = None;
        for (at, call) in &candidates {
            let mut mismatches = Vec::new();
            if let Some(with) = &with {
                compare(with, &call.args, expected.mode, "with", &mut mismatches);
            }
            if mismatches.is_empty() {
                matched = Some(*at);
                break;
            }
            if closest
                .as_ref()
                .is_none_or(|(_, best)| mismatches.len() < best.len())
            {
                closest = Some((call, mismatches));
            }
        }
        match (matched, closest) {
            (Some(at), _) => cursor = at + 1,
            (None, Some((call, mismatches))) => {
                let others = if candidates.len() > 1 {
                    format!(" (the closest of {} calls to {target})", candidates.len())
                } else {
                    String::new()
                };
                failures.push(format!(
                    "call #{} {target} by step `{}` attempt {}{others}{mode_word}: {}",
                    i + 1,
                    call.step,
                    call.attempt,
                    mismatches.join("; ")
                ));
            }
            (None, None) => {
                let earlier = sim.calls[..cursor].iter().any(|c| c.target == target);
                let made: Vec<&str> = sim.calls.iter().map(|c| c.target.as_str()).collect();
                let made = if made.is_empty() {
                    "none".to_owned()
                } else {
                    made.join(", ")
                };
                failures.push(if earlier {
                    format!(
                        "call #{} {target}: not called after the calls matched before it (calls made, in order: {made})",
                        i + 1
                    )
                } else {
                    format!("call #{} {target}: never called (calls made, in order: {made})", i + 1)
                });
            }
        }
    }
}

/// Compares an expected value with an actual one, pushing one sentence per mismatch
/// (`with.json.total expected 250, got "250"`).
fn compare(expected: &Value, actual: &Value, mode: MatchMode, path: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_MISMATCHES {
        if out.len() == MAX_MISMATCHES {
            out.push("and more differences".into());
        }
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let at = format!("{path}.{key}");
                match a.get(key) {
                    Some(av) => compare(ev, av, mode, &at, out),
                    None => out.push(format!("{at} expected {}, but it is absent", show(ev))),
                }
            }
            if mode == MatchMode::Exact {
                for (key, av) in a {
                    if !e.contains_key(key) {
                        out.push(format!("{path}.{key} is not expected, got {}", show(av)));
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => match mode {
            MatchMode::Exact if e.len() != a.len() => {
                out.push(format!(
                    "{path} expected {} items {}, got {} items {}",
                    e.len(),
                    show(expected),
                    a.len(),
                    show(actual)
                ));
            }
            MatchMode::Exact => {
                for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                    compare(ev, av, mode, &format!("{path}[{i}]"), out);
                }
            }
            MatchMode::Subset => {
                let mut used = vec![false; a.len()];
                for ev in e {
                    let found = a
                        .iter()
                        .enumerate()
                        .position(|(j, av)| !used[j] && matches(ev, av, mode));
                    match found {
                        Some(j) => used[j] = true,
                        None => out.push(format!(
                            "{path} expected an item matching {}, got {}",
                            show(ev),
                            show(actual)
                        )),
                    }
                }
            }
        },
        _ if scalars_equal(expected, actual) => {}
        (Value::String(e), Value::String(a)) => {
            let at = e
                .chars()
                .zip(a.chars())
                .position(|(x, y)| x != y)
                .unwrap_or_else(|| e.chars().count().min(a.chars().count()));
            out.push(format!(
                "{path} expected {}, got {} (the texts differ from character {})",
                show(expected),
                show(actual),
                at + 1
            ));
        }
        _ => out.push(format!(
            "{path} expected {}, got {}",
            show(expected),
            show(actual)
        )),
    }
}

fn matches(expected: &Value, actual: &Value, mode: MatchMode) -> bool {
    let mut out = Vec::new();
    compare(expected, actual, mode, "", &mut out);
    out.is_empty()
}

/// Equal scalars; numbers by value (`250` equals `250.0`).
fn scalars_equal(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            if let (Some(x), Some(y)) = (e.as_i64(), a.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (e.as_u64(), a.as_u64()) {
                x == y
            } else {
                e.as_f64().zip(a.as_f64()).is_some_and(|(x, y)| x == y)
            }
        }
        (Value::Object(_) | Value::Array(_), _) => false,
        _ => expected == actual,
    }
}

/// A value as JSON, shortened past [`MAX_SHOWN`] characters.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_SHOWN {
        return text;
    }
    let cut: String = text.chars().take(MAX_SHOWN).collect();
    format!("{cut}…")
}

// ---- suites ----

/// One workflow's scenarios, ready to run.
pub struct Suite<'a> {
    /// The workflow, prepared.
    pub prepared: Prepared<'a>,
    /// Its scenarios, in path order.
    pub scenarios: Vec<&'a Scenario>,
}

/// One workflow's results and coverage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowReport {
    /// The workflow.
    pub workflow: String,
    /// Its version id (the evidence is bound to it).
    pub version: String,
    /// Whether it has scenarios and every one passed.
    pub passed: bool,
    /// Each scenario's result, in path order.
    pub results: Vec<ScenarioResult>,
    /// What they covered.
    pub coverage: Coverage,
}

impl WorkflowReport {
    /// Scenarios that failed.
    pub fn failed(&self) -> impl Iterator<Item = &ScenarioResult> {
        self.results.iter().filter(|r| !r.passed)
    }

    /// The evidence summary: counts, coverage per category, uncovered items.
    pub fn summary(&self) -> Value {
        let failed: Vec<&str> = self.failed().map(|r| r.name.as_str()).collect();
        let mut summary = json!({
            "scenarios": self.results.len(),
            "passed": self.results.len() - failed.len(),
            "failed": failed.len(),
            "failed_scenarios": failed,
        });
        if let (Value::Object(out), Value::Object(coverage)) =
            (&mut summary, self.coverage.summary())
        {
            out.extend(coverage);
        }
        summary
    }
}

/// The suites of a project: every workflow, or only `only`, with its scenarios.
/// (A workflow without scenarios is included: it has nothing to pass.)
pub fn suites<'a>(project: &'a Project, only: Option<&str>) -> Vec<Suite<'a>> {
    project
        .workflows
        .iter()
        .filter(|w| only.is_none_or(|name| w.workflow.name.value == name))
        .map(|w| Suite {
            prepared: Prepared::new(&w.workflow),
            scenarios: project
                .scenarios_of(&w.workflow.name.value)
                .map(|s| &s.scenario)
                .collect(),
        })
        .collect()
}

/// Runs every scenario of every suite, on every core, and reports per workflow.
/// The results do not depend on the number of threads. `progress` is called once per
/// finished scenario, from any thread.
pub fn run_suites(suites: &[Suite<'_>], progress: &(dyn Fn() + Sync)) -> Vec<WorkflowReport> {
    let jobs: Vec<(usize, &Scenario)> = suites
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.scenarios.iter().map(move |scenario| (i, *scenario)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len().div_ceil(16))
        .max(1);
    let mut results: Vec<Option<ScenarioResult>> = vec![None; jobs.len()];
    if threads == 1 {
        for (slot, (suite, scenario)) in results.iter_mut().zip(&jobs) {
            *slot = Some(suites[*suite].prepared.run(scenario));
            progress();
        }
    } else {
        let next = AtomicUsize::new(0);
        let done = Mutex::new(Vec::with_capacity(jobs.len()));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some((suite, scenario)) = jobs.get(at) else {
                            break;
                        };
                        mine.push((at, suites[*suite].prepared.run(scenario)));
                        progress();
                    }
                    done.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
                });
            }
        });
        for (at, result) in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
            results[at] = Some(result);
        }
    }
    let mut results = results.into_iter();
    suites
        .iter()
        .map(|suite| {
            let results: Vec<ScenarioResult> = results
                .by_ref()
                .take(suite.scenarios.len())
                .flatten()
                .collect();
            let coverage = suite.prepared.coverage(&results);
            WorkflowReport {
                workflow: suite.prepared.workflow.name.value.clone(),
                version: suite.prepared.version.clone(),
                passed: !results.is_empty() && results.iter().all(|r| r.passed),
                results,
                coverage,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_milliseconds() {
        assert_eq!(
            crate::time::parse_rfc3339(DEFAULT_TIME),
            Some(DEFAULT_START)
        );
        assert_eq!(crate::time::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            crate::time::parse_rfc3339("1970-01-01T01:00:00.250+01:00"),
            Some(250)
        );
        assert_eq!(
            crate::time::parse_rfc3339("2026-11-30T07:00:00Z"),
            Some(1_796_022_000_000)
        );
        assert_eq!(crate::time::parse_rfc3339("yesterday"), None);
        assert_eq!(crate::time::parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn values_compare_exactly_or_as_a_subset() {
        let actual = json!({"a": 1, "b": [1, 2, {"c": "x", "d": 2.0}], "e": "text"});
        let mut out = Vec::new();
        compare(
            &json!({"b": [{"c": "x"}], "a": 1.0}),
            &actual,
            MatchMode::Subset,
            "with",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        compare(
            &json!({"b": [{"c": "x"}], "a": 1}),
            &actual,
            MatchMode::Exact,
            "with",
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].starts_with("with.b expected 1 items"), "{out:?}");
        assert_eq!(out[1], "with.e is not expected, got \"text\"");
        out.clear();
        compare(
            &json!({"a": "1"}),
            &actual,
            MatchMode::Subset,
            "with",
            &mut out,
        );
        assert_eq!(out, ["with.a expected \"1\", got 1"]);
    }
}
