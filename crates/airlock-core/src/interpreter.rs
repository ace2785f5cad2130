//! The engine's decisions, as a pure function.
//!
//! Given a workflow, a run and its journal so far (and the decisions people made on
//! approval steps, and the time), [`decide`] walks the steps, replays every result
//! the journal already holds, computes the pure steps that follow (map, if, switch,
//! fail), and stops at the first thing that needs the world: a connector call, a
//! sleep, a wait for a person, or the end of the run. It returns the journal entries
//! to append and that next action. The executor performs the action and asks again;
//! it is the only place with I/O. Replaying a journal always reaches the same point,
//! so a run resumed after a crash continues exactly where its journal stops.

use crate::expr::render::{self, Context, RenderError, Scope};
use crate::model::workflow::RetryOn;
use crate::model::{Retry, Step, StepKind, Workflow};
use crate::run::{NewJournalEntry, Run, RunStatus, StepDecision, StepStatus, Timestamp};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Attempts allowed past a step's policy when the outcome of an attempt was unknown
/// (the process stopped mid-call): the step is retried with the same key, never
/// silently dropped, but not forever.
pub const EXTRA_ATTEMPTS_AFTER_UNKNOWN: u32 = 3;
/// A call's timeout when the step sets none.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 30_000;

/// A connector call the executor must perform.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    /// The step.
    pub step: String,
    /// The connector.
    pub connector: String,
    /// The action.
    pub action: String,
    /// Rendered arguments.
    pub args: Value,
    /// The same on every attempt of this step in this run, scoped to the environment.
    pub idempotency_key: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// How long it may take.
    pub timeout_ms: u64,
    /// The step's retry policy.
    pub retry: Option<Retry>,
}

/// What the executor does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Journal `Started`, perform the call, journal its result, and ask again.
    Call(CallPlan),
    /// Release the run until then (a delay, a retry backoff).
    Sleep {
        /// When.
        until: Timestamp,
    },
    /// Release the run until a person decides (or the deadline passes).
    Wait {
        /// The approval step.
        step: String,
        /// When it times out.
        deadline: Option<Timestamp>,
    },
    /// The run is over.
    Finish {
        /// succeeded, failed or dead.
        status: RunStatus,
        /// The outputs of the steps that ran, by id.
        output: Option<Value>,
        /// What went wrong.
        error: Option<String>,
    },
}

/// Entries to append, then what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// New journal entries, in order.
    pub entries: Vec<NewJournalEntry>,
    /// The next action.
    pub next: Next,
}

/// Everything a decision depends on.
pub struct Input<'a> {
    /// The workflow version the run executes.
    pub workflow: &'a Workflow,
    /// The workflow's version id.
    pub version: &'a str,
    /// The run.
    pub run: &'a Run,
    /// The journal so far.
    pub journal: &'a [NewJournalEntry],
    /// Decisions on approval steps, by step id.
    pub decisions: &'a HashMap<String, StepDecision>,
    /// The time now.
    pub now: Timestamp,
    /// What `{{ release.* }}` reads ([`crate::release::scope`]); `None` for a run that ran
    /// on nothing known (a scenario), which reads no owner. The engine looks it up only
    /// for a workflow that reads it ([`Workflow::reads_release`]).
    pub release: Option<&'a Arc<Value>>,
}

/// What `{{ release.* }}` reads where no release is known: no owner, no contacts.
fn no_release() -> Arc<Value> {
    static NONE: std::sync::OnceLock<Arc<Value>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::new(crate::release::scope(None, "", &[], &[])))
        .clone()
}

/// Decides what happens next.
pub fn decide(input: &Input<'_>) -> Decision {
    let mut walker = Walker::new(input);
    let next = walker.workflow();
    Decision {
        entries: walker.entries,
        next,
    }
}

/// How a step failed for good.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    step: String,
    message: String,
    status: RunStatus,
    handled: bool,
}

impl Failure {
    fn scope_value(&self) -> Value {
        json!({ "step": self.step, "message": self.message, "status": self.status.as_str() })
    }
}

enum Flow {
    Continue,
    Stop(Next),
    Fail(Failure),
}

/// Per-step facts read off the journal: its entries, borrowed from the journal (owned
/// only for those this decision adds).
#[derive(Default, Clone)]
struct StepState<'a> {
    entries: Vec<Cow<'a, NewJournalEntry>>,
}

impl StepState<'_> {
    fn last(&self) -> Option<&NewJournalEntry> {
        self.entries.last().map(|e| e.as_ref())
    }

    fn succeeded(&self) -> Option<&NewJournalEntry> {
        self.entries
            .iter()
            .rev()
            .map(|e| e.as_ref())
            .find(|e| e.status == StepStatus::Succeeded)
    }

    fn final_failure(&self) -> Option<&NewJournalEntry> {
        self.entries
            .iter()
            .rev()
            .map(|e| e.as_ref())
            .find(|e| e.status == StepStatus::Failed && final_marker(e).is_some())
    }

    fn attempts(&self) -> u32 {
        self.entries.iter().map(|e| e.attempt).max().unwrap_or(0)
    }

    fn key(&self) -> Option<&str> {
        self.entries
            .iter()
            .find_map(|e| e.idempotency_key.as_deref())
    }
}

/// What `{{ run.* }}` reads. Times are RFC 3339 (`2026-11-30T07:00:00.000Z`), as a
/// person reads them in a subject line; `*_ms` carry the same instants as milliseconds
/// since the epoch for arithmetic.
fn run_scope(run: &Run, now: Timestamp) -> Arc<Value> {
    let started_at = run.started_at.unwrap_or(now);
    Arc::new(json!({
        "id": run.id,
        "environment": run.environment,
        "created_at": crate::time::rfc3339(run.created_at),
        "created_at_ms": run.created_at,
        "started_at": crate::time::rfc3339(started_at),
        "started_at_ms": started_at,
    }))
}

fn final_marker(entry: &NewJournalEntry) -> Option<RunStatus> {
    let status = entry.output.as_ref()?.get("final")?.as_str()?;
    RunStatus::parse(status)
}

struct Walker<'a> {
    input: &'a Input<'a>,
    states: HashMap<String, StepState<'a>>,
    scope: Scope,
    /// `scope` as templates read it, built on first use and dropped when `scope` changes.
    context: Option<Context>,
    entries: Vec<NewJournalEntry>,
}

impl<'a> Walker<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        let mut states: HashMap<String, StepState<'a>> = HashMap::new();
        for entry in input.journal {
            let state = match states.get_mut(entry.step.as_str()) {
                Some(state) => state,
                None => states.entry(entry.step.clone()).or_default(),
            };
            if entry.status == StepStatus::Retried {
                // A person retried the run: this step's life starts again here.
                state.entries.clear();
            } else {
                state.entries.push(Cow::Borrowed(entry));
            }
        }
        let run = input.run;
        let scope = Scope {
            trigger: Arc::clone(&run.trigger),
            steps: BTreeMap::new(),
            run: run_scope(run, input.now),
            env: Arc::new(json!({ "name": run.environment })),
            workflow: Arc::new(json!({ "name": run.workflow, "version": input.version })),
            error: None,
            release: Some(input.release.cloned().unwrap_or_else(no_release)),
        };
        Self {
            input,
            states,
            scope,
            context: None,
            entries: Vec::new(),
        }
    }

    /// What templates read now.
    fn context(&mut self) -> Context {
        self.context
            .get_or_insert_with(|| self.scope.context())
            .clone()
    }

    fn state(&self, step: &str) -> StepState<'a> {
        self.states.get(step).cloned().unwrap_or_default()
    }

    fn record(&mut self, entry: NewJournalEntry) {
        self.states
            .entry(entry.step.clone())
            .or_default()
            .entries
            .push(Cow::Owned(entry.clone()));
        self.entries.push(entry);
    }

    fn entry(&self, step: &str, attempt: u32, status: StepStatus) -> NewJournalEntry {
        NewJournalEntry {
            step: step.to_owned(),
            attempt,
            status,
            input: None,
            output: None,
            error: None,
            idempotency_key: None,
            started_at: self.input.now,
            finished_at: Some(self.input.now),
        }
    }

    fn succeed(&mut self, step: &Step, output: Value) {
        let mut entry = self.entry(&step.id, 1, StepStatus::Succeeded);
        entry.output = Some(output.clone());
        self.record(entry);
        self.remember(&step.id, output);
    }

    fn remember(&mut self, step: &str, output: Value) {
        self.context = None;
        self.scope.steps.insert(
            step.to_owned(),
            Arc::new(json!({ "output": output, "status": "succeeded" })),
        );
    }

    fn fail_for_good(
        &mut self,
        step: &Step,
        attempt: u32,
        status: RunStatus,
        message: String,
    ) -> Flow {
        let mut entry = self.entry(&step.id, attempt.max(1), StepStatus::Failed);
        entry.error = Some(message.clone());
        entry.output = Some(json!({ "final": status.as_str() }));
        self.record(entry);
        Flow::Fail(Failure {
            step: step.id.value.clone(),
            message,
            status,
            handled: false,
        })
    }

    fn workflow(&mut self) -> Next {
        let workflow = self.input.workflow;
        match self.steps(&workflow.steps) {
            Flow::Continue => match &workflow.output {
                None => Next::Finish {
                    status: RunStatus::Succeeded,
                    output: Some(self.outputs()),
                    error: None,
                },
                Some(declared) => match render::value_in(&declared.to_json(), &self.context()) {
                    Ok(output) => Next::Finish {
                        status: RunStatus::Succeeded,
                        output: Some(output),
                        error: None,
                    },
                    Err(e) => Next::Finish {
                        status: RunStatus::Failed,
                        output: Some(self.outputs()),
                        error: Some(format!("the workflow's output: {e}")),
                    },
                },
            },
            Flow::Stop(next) => next,
            Flow::Fail(failure) => {
                if failure.handled || workflow.on_failure.is_empty() {
                    return self.finish_failed(&failure);
                }
                self.scope.error = Some(Arc::new(failure.scope_value()));
                self.context = None;
                match self.steps(&workflow.on_failure) {
                    Flow::Continue => self.finish_failed(&failure),
                    Flow::Stop(next) => next,
                    Flow::Fail(second) => self.finish_failed(&second),
                }
            }
        }
    }

    fn finish_failed(&self, failure: &Failure) -> Next {
        Next::Finish {
            status: failure.status,
            output: Some(self.outputs()),
            error: Some(format!("step `{}`: {}", failure.step, failure.message)),
        }
    }

    fn outputs(&self) -> Value {
        Value::Object(
            self.scope
                .steps
                .iter()
                .map(|(id, v)| (id.clone(), v.get("output").cloned().unwrap_or(Value::Null)))
                .collect(),
        )
    }

    fn steps(&mut self, steps: &'a [Step]) -> Flow {
        for step in steps {
            match self.step(step) {
                Flow::Continue => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    fn step(&mut self, step: &'a Step) -> Flow {
        match self.step_body(step) {
            Flow::Fail(failure) if !failure.handled && !step.on_failure.is_empty() => {
                let saved = self.scope.error.replace(Arc::new(failure.scope_value()));
                self.context = None;
                let flow = match self.steps(&step.on_failure) {
                    Flow::Continue => Flow::Fail(Failure {
                        handled: true,
                        ..failure
                    }),
                    other => other,
                };
                self.scope.error = saved;
                self.context = None;
                flow
            }
            other => other,
        }
    }

    fn step_body(&mut self, step: &'a Step) -> Flow {
        let state = self.state(&step.id);
        if let Some(done) = state.succeeded() {
            let output = done.output.clone().unwrap_or(Value::Null);
            self.remember(&step.id, output.clone());
            return self.branch_after(step, &output);
        }
        if let Some(failed) = state.final_failure() {
            return Flow::Fail(Failure {
                step: step.id.value.clone(),
                message: failed.error.clone().unwrap_or_default(),
                status: final_marker(failed).unwrap_or(RunStatus::Failed),
                handled: false,
            });
        }
        match &step.kind {
            StepKind::Map { values } => {
                match render::value_in(&values.to_json(), &self.context()) {
                    Ok(output) => {
                        self.succeed(step, output);
                        Flow::Continue
                    }
                    Err(e) => self.fail_for_good(step, 1, RunStatus::Failed, e.to_string()),
                }
            }
            StepKind::If { condition, .. } => {
                match render::condition_in(condition, &self.context()) {
                    Ok(holds) => {
                        let output = json!({ "branch": if holds { "then" } else { "else" } });
                        self.succeed(step, output.clone());
                        self.branch_after(step, &output)
                    }
                    Err(e) => self.fail_for_good(step, 1, RunStatus::Failed, e.to_string()),
                }
            }
            StepKind::Switch { value, cases, .. } => {
                match render::eval_in(value, &self.context()) {
                    Ok(value) => {
                        let text = match &value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let branch = cases
                            .iter()
                            .find(|(case, _)| case.value == text)
                            .map_or_else(|| "default".to_owned(), |(case, _)| case.value.clone());
                        let output = json!({ "branch": branch, "value": value });
                        self.succeed(step, output.clone());
                        self.branch_after(step, &output)
                    }
                    Err(e) => self.fail_for_good(step, 1, RunStatus::Failed, e.to_string()),
                }
            }
            StepKind::Fail { message } => {
                let text = render::string(message, &self.scope)
                    .unwrap_or_else(|e| format!("{} ({e})", message.value));
                self.fail_for_good(step, 1, RunStatus::Failed, text)
            }
            StepKind::Delay { duration } => self.delay(step, duration.value, &state),
            StepKind::Approval { message, timeout } => {
                let message = message.as_ref().map(|m| m.value.clone());
                self.approval(step, message, timeout.as_ref().map(|t| t.value), &state)
            }
            StepKind::Call {
                connector,
                action,
                with,
                idempotency_key,
                ..
            } => self.call(
                step,
                connector,
                action,
                with.as_ref().map(|w| w.to_json()),
                idempotency_key.as_ref().map(|k| k.value.clone()),
                &state,
            ),
        }
    }

    /// After a branching step succeeded, walk the arm it chose.
    fn branch_after(&mut self, step: &'a Step, output: &Value) -> Flow {
        let branch = output
            .get("branch")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match &step.kind {
            StepKind::If {
                then, otherwise, ..
            } => {
                if branch == "then" {
                    self.steps(then)
                } else {
                    self.steps(otherwise)
                }
            }
            StepKind::Switch { cases, default, .. } => {
                match cases.iter().find(|(case, _)| case.value == branch) {
                    Some((_, steps)) => self.steps(steps),
                    None => self.steps(default),
                }
            }
            _ => Flow::Continue,
        }
    }

    fn delay(&mut self, step: &Step, duration_ms: u64, state: &StepState) -> Flow {
        let now = self.input.now;
        let until = match state.last() {
            Some(waiting) if waiting.status == StepStatus::Waiting => waiting
                .output
                .as_ref()
                .and_then(|o| o.get("until"))
                .and_then(Value::as_i64)
                .unwrap_or(now),
            _ => {
                let until = now.saturating_add(duration_ms as i64);
                let mut entry = self.entry(&step.id, 1, StepStatus::Waiting);
                entry.output = Some(json!({ "until": until }));
                entry.finished_at = None;
                self.record(entry);
                until
            }
        };
        if now >= until {
            self.succeed(step, json!({ "waited_ms": duration_ms }));
            Flow::Continue
        } else {
            Flow::Stop(Next::Sleep { until })
        }
    }

    fn approval(
        &mut self,
        step: &Step,
        message: Option<String>,
        timeout: Option<u64>,
        state: &StepState,
    ) -> Flow {
        let now = self.input.now;
        let deadline = match state.last() {
            Some(waiting) if waiting.status == StepStatus::Waiting => waiting
                .output
                .as_ref()
                .and_then(|o| o.get("deadline"))
                .and_then(Value::as_i64),
            _ => {
                let deadline = timeout.map(|t| now.saturating_add(t as i64));
                let rendered = message.map(|m| render::string(&m, &self.scope).unwrap_or(m));
                let mut entry = self.entry(&step.id, 1, StepStatus::Waiting);
                entry.output = Some(json!({ "deadline": deadline, "message": rendered }));
                entry.finished_at = None;
                self.record(entry);
                deadline
            }
        };
        if let Some(decision) = self.input.decisions.get(&step.id.value) {
            return if decision.approved {
                self.succeed(step, json!({ "approved": true, "approver": decision.approver, "decided_at": decision.decided_at }));
                Flow::Continue
            } else {
                self.fail_for_good(
                    step,
                    1,
                    RunStatus::Failed,
                    format!("rejected by {}", decision.approver),
                )
            };
        }
        match deadline {
            Some(deadline) if now >= deadline => {
                self.fail_for_good(step, 1, RunStatus::Failed, "approval timed out".into())
            }
            _ => Flow::Stop(Next::Wait {
                step: step.id.value.clone(),
                deadline,
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        step: &Step,
        connector: &str,
        action: &str,
        with: Option<Value>,
        key_template: Option<String>,
        state: &StepState,
    ) -> Flow {
        let now = self.input.now;
        let run = self.input.run;
        let mut attempt = state.attempts() + 1;
        match state.last() {
            Some(last) if last.status == StepStatus::Started => {
                // The process stopped after this attempt may have reached its target.
                let mut entry = self.entry(&step.id, last.attempt, StepStatus::OutcomeUnknown);
                entry.idempotency_key = last.idempotency_key.clone();
                entry.error = Some(
                    "the process stopped during the call; retrying with the same idempotency key"
                        .into(),
                );
                self.record(entry);
            }
            Some(last) if last.status == StepStatus::Failed => {
                if let Some(retry_at) = last
                    .output
                    .as_ref()
                    .and_then(|o| o.get("retry_at"))
                    .and_then(Value::as_i64)
                    && now < retry_at
                {
                    return Flow::Stop(Next::Sleep { until: retry_at });
                }
            }
            _ => {}
        }
        let allowed = step.retry.as_ref().map_or(1, |r| r.attempts);
        let unknowns = self
            .state(&step.id)
            .entries
            .iter()
            .filter(|e| e.status == StepStatus::OutcomeUnknown)
            .count() as u32;
        if attempt > allowed + unknowns.min(EXTRA_ATTEMPTS_AFTER_UNKNOWN) {
            attempt -= 1;
            return self.fail_for_good(
                step,
                attempt,
                RunStatus::Dead,
                "the outcome stayed unknown after every attempt".into(),
            );
        }
        let args = match with
            .map(|w| render::value_in(&w, &self.context()))
            .transpose()
        {
            Ok(args) => args.unwrap_or(Value::Object(Map::new())),
            Err(e) => {
                return self.fail_for_good(
                    step,
                    attempt,
                    RunStatus::Failed,
                    format!("arguments: {e}"),
                );
            }
        };
        let key = match state.key() {
            Some(key) => key.to_owned(),
            None => match key_template {
                Some(template) => match render::string_in(&template, &self.context()) {
                    Ok(rendered) => format!("{}:{rendered}", run.environment),
                    Err(e) => {
                        return self.fail_for_good(
                            step,
                            attempt,
                            RunStatus::Failed,
                            format!("idempotency_key: {e}"),
                        );
                    }
                },
                None => format!("{}:{}:{}", run.environment, run.id, step.id.value),
            },
        };
        Flow::Stop(Next::Call(CallPlan {
            step: step.id.value.clone(),
            connector: connector.to_owned(),
            action: action.to_owned(),
            args,
            idempotency_key: key,
            attempt,
            timeout_ms: step
                .timeout
                .as_ref()
                .map_or(DEFAULT_CALL_TIMEOUT_MS, |t| t.value),
            retry: step.retry.clone(),
        }))
    }
}

/// The marks `airlock runs retry` appends so that a dead or failed run runs again: the
/// step that failed for good, and every step that ran after it (its failure handlers),
/// start over; steps that succeeded before it are kept and never run again.
pub fn retry_marks(journal: &[NewJournalEntry], now: Timestamp) -> Vec<NewJournalEntry> {
    let since_last_retry = journal
        .iter()
        .rposition(|e| e.status == StepStatus::Retried)
        .map_or(0, |i| i + 1);
    let recent = &journal[since_last_retry..];
    let Some(first_failure) = recent
        .iter()
        .position(|e| e.status == StepStatus::Failed && final_marker(e).is_some())
    else {
        return Vec::new();
    };
    let mut steps: Vec<&str> = Vec::new();
    for entry in &recent[first_failure..] {
        if !steps.contains(&entry.step.as_str()) {
            steps.push(&entry.step);
        }
    }
    steps
        .into_iter()
        .map(|step| NewJournalEntry {
            step: step.to_owned(),
            attempt: 0,
            status: StepStatus::Retried,
            input: None,
            output: None,
            error: None,
            idempotency_key: None,
            started_at: now,
            finished_at: Some(now),
        })
        .collect()
}

/// The journal entry written before a call reaches its target.
pub fn started_entry(plan: &CallPlan, input: Option<Value>, now: Timestamp) -> NewJournalEntry {
    NewJournalEntry {
        step: plan.step.clone(),
        attempt: plan.attempt,
        status: StepStatus::Started,
        input,
        output: None,
        error: None,
        idempotency_key: Some(plan.idempotency_key.clone()),
        started_at: now,
        finished_at: None,
    }
}

/// How a failed attempt is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptFailure {
    /// The retry class of the error, if it is transient.
    pub class: Option<RetryOn>,
}

/// The failures every connector kind words and classifies alike, whatever it talks to.
/// The connectors' errors display these words, and the scenario suite's faults use them,
/// so a stubbed `timeout` fails a step exactly as a real one does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransportFault {
    /// No answer in time. The target may have acted.
    #[error("timed out after {0}ms")]
    Timeout(u64),
    /// The connection could not be made.
    #[error("connection refused or failed: {0}")]
    Connection(String),
    /// The target answered with an error status.
    #[error("answered with status {0}")]
    Status(u16),
}

impl TransportFault {
    /// The retry class: timeouts, connection failures, 429 and 5xx are transient.
    pub fn retry_class(&self) -> Option<RetryOn> {
        match self {
            TransportFault::Timeout(_) => Some(RetryOn::Timeout),
            TransportFault::Connection(_) => Some(RetryOn::Connection),
            TransportFault::Status(429) => Some(RetryOn::Status429),
            TransportFault::Status(status) if *status >= 500 => Some(RetryOn::Status5xx),
            TransportFault::Status(_) => None,
        }
    }

    /// The failed attempt as the interpreter takes it: the message and its class.
    pub fn attempt(&self) -> (String, AttemptFailure) {
        (
            self.to_string(),
            AttemptFailure {
                class: self.retry_class(),
            },
        )
    }
}

/// The journal entry for a call's result: success, a failure to retry at a time, or a
/// failure for good (dead when transient errors outlasted the attempts, failed when the
/// error is not one to retry). `jitter` is a number in [0, 1) drawn by the caller.
pub fn result_entry(
    plan: &CallPlan,
    started_at: Timestamp,
    now: Timestamp,
    result: Result<Value, (String, AttemptFailure)>,
    jitter: f64,
) -> NewJournalEntry {
    let mut entry = NewJournalEntry {
        step: plan.step.clone(),
        attempt: plan.attempt,
        status: StepStatus::Succeeded,
        input: None,
        output: None,
        error: None,
        idempotency_key: Some(plan.idempotency_key.clone()),
        started_at,
        finished_at: Some(now),
    };
    match result {
        Ok(output) => entry.output = Some(output),
        Err((message, failure)) => {
            entry.status = StepStatus::Failed;
            entry.error = Some(message);
            let retryable = match (&plan.retry, failure.class) {
                (Some(retry), Some(class)) => retry.on.contains(&class),
                _ => false,
            };
            let attempts = plan.retry.as_ref().map_or(1, |r| r.attempts);
            entry.output = Some(if retryable && plan.attempt < attempts {
                json!({ "retry_at": now.saturating_add(backoff_ms(plan, jitter) as i64) })
            } else if failure.class.is_some() {
                json!({ "final": RunStatus::Dead.as_str() })
            } else {
                json!({ "final": RunStatus::Failed.as_str() })
            });
        }
    }
    entry
}

/// Exponential backoff: `backoff × 2^(attempt-1)`, capped, with "equal jitter" (half
/// fixed, half random) so that many runs failing together do not retry together.
pub fn backoff_ms(plan: &CallPlan, jitter: f64) -> u64 {
    let Some(retry) = &plan.retry else { return 0 };
    let exponent = plan.attempt.saturating_sub(1).min(30);
    let raw = retry
        .backoff_ms
        .saturating_mul(1u64 << exponent)
        .min(retry.max_backoff_ms.max(retry.backoff_ms));
    if retry.jitter {
        let half = raw / 2;
        half + ((raw - half) as f64 * jitter.clamp(0.0, 1.0)) as u64
    } else {
        raw
    }
}

/// Whether an error message is a budget stop (for tests and reports).
pub fn is_budget_error(error: &RenderError) -> bool {
    matches!(error, RenderError::Budget(_))
}
