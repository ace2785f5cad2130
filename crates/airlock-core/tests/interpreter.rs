//! The interpreter as a pure function: whole runs simulated with a fake clock and
//! scripted connector answers, crashes included.

use airlock_core::interpreter::{self, AttemptFailure, CallPlan, Input, Next};
use airlock_core::model::Workflow;
use airlock_core::model::workflow::RetryOn;

use airlock_core::run::{NewJournalEntry, Run, RunStatus, StepDecision, StepStatus};
use serde_json::{Value, json};
use std::collections::HashMap;

fn scaffold(name: &str) -> Workflow {
    let (_, text) = airlock_core::scaffold::FILES
        .iter()
        .find(|(path, _)| path.ends_with(&format!("{name}.yaml")) && path.starts_with("workflows/"))
        .unwrap();
    airlock_core::model::workflow::decode_source(text).unwrap()
}

fn run(trigger: Value) -> Run {
    Run {
        id: "run_1".into(),
        environment: "staging".into(),
        workflow: "w".into(),
        version: "v1".into(),
        status: RunStatus::Running,
        trigger: trigger.into(),
        dedupe_key: None,
        output: None,
        error: None,
        created_at: 0,
        started_at: Some(0),
        finished_at: None,
        wake_at: None,
        lease_owner: None,
        lease_expires_at: None,
        fencing_token: 1,
        claims: 1,
    }
}

type Answer = Result<Value, (String, AttemptFailure)>;

struct Sim {
    workflow: Workflow,
    run: Run,
    journal: Vec<NewJournalEntry>,
    decisions: HashMap<String, StepDecision>,
    now: i64,
    calls: Vec<CallPlan>,
}

impl Sim {
    fn new(workflow: Workflow, trigger: Value) -> Self {
        Self {
            workflow,
            run: run(trigger),
            journal: Vec::new(),
            decisions: HashMap::new(),
            now: 1_000,
            calls: Vec::new(),
        }
    }

    /// Runs until the run finishes or waits for a person; sleeps are skipped by moving
    /// the clock. `answer` scripts each call.
    fn drive(&mut self, mut answer: impl FnMut(&CallPlan) -> Answer) -> Next {
        for _ in 0..1_000 {
            let decision = interpreter::decide(&Input {
                workflow: &self.workflow,
                version: "v1",
                run: &self.run,
                journal: &self.journal,
                decisions: &self.decisions,
                now: self.now,
                release: None,
            });
            self.journal.extend(decision.entries);
            match decision.next {
                Next::Call(plan) => {
                    self.journal.push(interpreter::started_entry(
                        &plan,
                        Some(plan.args.clone()),
                        self.now,
                    ));
                    self.calls.push(plan.clone());
                    let result = answer(&plan);
                    self.journal.push(interpreter::result_entry(
                        &plan,
                        self.now,
                        self.now + 5,
                        result,
                        0.5,
                    ));
                    self.now += 5;
                }
                Next::Sleep { until } => self.now = until,
                other => return other,
            }
        }
        panic!("the run did not settle in 1000 decisions")
    }

    /// The ops lead decides the approval step the run waits on.
    fn decide(&mut self, step: String, approved: bool) {
        self.decisions.insert(
            step.clone(),
            StepDecision {
                run: "run_1".into(),
                step,
                approver: "ops-lead".into(),
                approved,
                decided_at: self.now,
            },
        );
    }

    fn path(&self) -> Vec<String> {
        let mut path: Vec<String> = Vec::new();
        for entry in &self.journal {
            if !path.contains(&entry.step) {
                path.push(entry.step.clone());
            }
        }
        path
    }
}

fn ok(value: Value) -> Answer {
    Ok(value)
}

fn transient(class: RetryOn) -> Answer {
    Err((
        "connection refused".into(),
        AttemptFailure { class: Some(class) },
    ))
}

#[test]
fn a_big_order_takes_the_alert_branch_and_calls_everything_once() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 1001, "amount": 250, "customer": " ACME-42 "}}),
    );
    let next = sim.drive(|_| ok(json!({"ok": true})));
    assert!(
        matches!(
            next,
            Next::Finish {
                status: RunStatus::Succeeded,
                ..
            }
        ),
        "{next:?}"
    );
    assert_eq!(
        sim.path(),
        [
            "normalize",
            "big_order",
            "alert_big_order",
            "save_order",
            "sync_crm"
        ]
    );
    let targets: Vec<String> = sim
        .calls
        .iter()
        .map(|c| format!("{}.{}", c.connector, c.action))
        .collect();
    assert_eq!(targets, ["chat.post", "orders_db.insert", "crm.request"]);
    assert_eq!(
        sim.calls[0].args["text"],
        "Big order 1001: 250.0 from acme-42"
    );
    assert_eq!(
        sim.calls[1].args["values"]["total"],
        json!(250.0),
        "a whole expression keeps its number type"
    );
    assert_eq!(
        sim.calls[1].idempotency_key, "staging:order-1001",
        "the workflow's own key template, scoped to the environment"
    );
    assert_eq!(
        sim.calls[2].idempotency_key, "staging:run_1:sync_crm",
        "the default key: environment, run, step"
    );
}

#[test]
fn a_small_order_skips_the_alert() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 7, "amount": 40, "customer": "c"}}),
    );
    sim.drive(|_| ok(json!({})));
    assert_eq!(
        sim.path(),
        ["normalize", "big_order", "save_order", "sync_crm"]
    );
}

#[test]
fn a_crash_mid_call_is_outcome_unknown_and_retried_with_the_same_key() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 5, "amount": 40, "customer": "c"}}),
    );
    // Drive until the first call is planned, journal its start, then "crash".
    let decision = interpreter::decide(&Input {
        workflow: &sim.workflow,
        version: "v1",
        run: &sim.run,
        journal: &sim.journal,
        decisions: &sim.decisions,
        now: sim.now,
        release: None,
    });
    sim.journal.extend(decision.entries);
    let Next::Call(plan) = decision.next else {
        panic!("expected a call")
    };
    sim.journal
        .push(interpreter::started_entry(&plan, None, sim.now));
    // Resume: the same step is retried, marked outcome unknown first, with the same key.
    let next = sim.drive(|_| ok(json!({"inserted": 1})));
    assert!(matches!(
        next,
        Next::Finish {
            status: RunStatus::Succeeded,
            ..
        }
    ));
    let save: Vec<&NewJournalEntry> = sim
        .journal
        .iter()
        .filter(|e| e.step == "save_order")
        .collect();
    let statuses: Vec<StepStatus> = save.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Started,
            StepStatus::OutcomeUnknown,
            StepStatus::Started,
            StepStatus::Succeeded
        ]
    );
    assert!(
        save.iter()
            .all(|e| e.idempotency_key.as_deref() == Some("staging:order-5"))
    );
    assert_eq!(
        save.iter()
            .filter(|e| e.status == StepStatus::Succeeded)
            .count(),
        1
    );
}

#[test]
fn a_journaled_step_is_never_planned_again() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 5, "amount": 40, "customer": "c"}}),
    );
    sim.drive(|_| ok(json!({})));
    let calls_before = sim.calls.len();
    let decision = interpreter::decide(&Input {
        workflow: &sim.workflow,
        version: "v1",
        run: &sim.run,
        journal: &sim.journal,
        decisions: &sim.decisions,
        now: sim.now,
        release: None,
    });
    assert!(
        decision.entries.is_empty(),
        "replaying a finished journal adds nothing"
    );
    assert!(matches!(
        decision.next,
        Next::Finish {
            status: RunStatus::Succeeded,
            ..
        }
    ));
    assert_eq!(sim.calls.len(), calls_before);
}

#[test]
fn a_flaky_target_is_retried_with_backoff_then_succeeds() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 9, "amount": 40, "customer": "c"}}),
    );
    let mut crm_failures = 0;
    let next = sim.drive(|plan| {
        if plan.connector == "crm" && crm_failures < 2 {
            crm_failures += 1;
            return transient(RetryOn::Status5xx);
        }
        ok(json!({"status": 201}))
    });
    assert!(matches!(
        next,
        Next::Finish {
            status: RunStatus::Succeeded,
            ..
        }
    ));
    let crm: Vec<&CallPlan> = sim.calls.iter().filter(|c| c.connector == "crm").collect();
    assert_eq!(crm.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    // backoff 2s doubling, equal jitter at 0.5: 1.5s then 3s
    let retries: Vec<i64> = sim
        .journal
        .iter()
        .filter_map(|e| e.output.as_ref()?.get("retry_at")?.as_i64())
        .collect();
    assert_eq!(retries.len(), 2);
}

#[test]
fn a_target_down_past_every_attempt_dead_letters_after_alerting() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 1004, "amount": 80, "customer": "c"}}),
    );
    let next = sim.drive(|plan| {
        if plan.connector == "crm" {
            transient(RetryOn::Connection)
        } else {
            ok(json!({"ok": true}))
        }
    });
    let Next::Finish { status, error, .. } = next else {
        panic!()
    };
    assert_eq!(status, RunStatus::Dead);
    assert!(error.unwrap().contains("sync_crm"));
    assert_eq!(
        sim.calls.iter().filter(|c| c.connector == "crm").count(),
        4,
        "attempts: 4"
    );
    let alert = sim.calls.last().unwrap();
    assert_eq!(alert.step, "alert_failure");
    assert_eq!(
        alert.args["text"], "order-intake failed at sync_crm for order 1004: connection refused",
        "on_failure sees the failure's context"
    );
}

#[test]
fn an_error_that_is_not_transient_fails_without_retrying() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 1, "amount": 40, "customer": "c"}}),
    );
    let next = sim.drive(|plan| {
        if plan.connector == "crm" {
            Err((
                "answered with status 400".into(),
                AttemptFailure { class: None },
            ))
        } else {
            ok(json!({}))
        }
    });
    assert!(matches!(
        next,
        Next::Finish {
            status: RunStatus::Failed,
            ..
        }
    ));
    assert_eq!(sim.calls.iter().filter(|c| c.connector == "crm").count(), 1);
}

#[test]
fn an_approval_waits_then_continues_or_fails_on_rejection() {
    for approved in [true, false] {
        let mut sim = Sim::new(
            scaffold("credit-review"),
            json!({"time": "2026-11-30T07:00:00Z"}),
        );
        let next = sim.drive(|plan| {
            if plan.action == "query" {
                ok(json!({"rows": [{"id": 7, "customer": "acme", "total": 900}]}))
            } else {
                ok(json!({}))
            }
        });
        let Next::Wait { step, deadline } = next else {
            panic!("expected a wait, got {next:?}")
        };
        assert_eq!(step, "approve_reminders");
        assert_eq!(deadline, Some(sim.now + 8 * 3_600_000));
        sim.decide(step, approved);
        let next = sim.drive(|_| ok(json!({"accepted": true})));
        let Next::Finish { status, .. } = next else {
            panic!()
        };
        if approved {
            assert_eq!(status, RunStatus::Succeeded);
            assert_eq!(sim.calls.last().unwrap().action, "send");
        } else {
            assert_eq!(status, RunStatus::Failed);
            assert!(
                sim.calls.iter().all(|c| c.action != "send"),
                "nothing is mailed after a rejection"
            );
        }
    }
}

#[test]
fn an_approval_times_out() {
    let mut sim = Sim::new(scaffold("credit-review"), json!({}));
    let next = sim.drive(|_| ok(json!({"rows": [{"id": 1, "customer": "c", "total": 600}]})));
    let Next::Wait {
        deadline: Some(deadline),
        ..
    } = next
    else {
        panic!()
    };
    sim.now = deadline;
    let next = sim.drive(|_| ok(json!({})));
    let Next::Finish { status, error, .. } = next else {
        panic!()
    };
    assert_eq!(status, RunStatus::Failed);
    assert!(error.unwrap().contains("approval timed out"));
}

#[test]
fn a_retried_dead_run_runs_the_failed_step_and_its_handler_again_and_nothing_before() {
    let mut sim = Sim::new(
        scaffold("order-intake"),
        json!({"body": {"id": 3, "amount": 40, "customer": "c"}}),
    );
    let next = sim.drive(|plan| {
        if plan.connector == "crm" {
            transient(RetryOn::Connection)
        } else {
            ok(json!({}))
        }
    });
    assert!(matches!(
        next,
        Next::Finish {
            status: RunStatus::Dead,
            ..
        }
    ));
    let calls_before = sim.calls.len();
    let marks = interpreter::retry_marks(&sim.journal, sim.now);
    let marked: Vec<&str> = marks.iter().map(|m| m.step.as_str()).collect();
    assert_eq!(marked, ["sync_crm", "alert_failure"]);
    sim.journal.extend(marks);
    let next = sim.drive(|_| ok(json!({"status": 201})));
    assert!(
        matches!(
            next,
            Next::Finish {
                status: RunStatus::Succeeded,
                ..
            }
        ),
        "{next:?}"
    );
    let again: Vec<String> = sim.calls[calls_before..]
        .iter()
        .map(|c| c.step.clone())
        .collect();
    assert_eq!(
        again,
        ["sync_crm"],
        "only the failed step runs again; the order is not saved twice"
    );
    assert_eq!(
        sim.calls[calls_before].idempotency_key, "staging:run_1:sync_crm",
        "the same key as before"
    );
    assert!(
        interpreter::retry_marks(&sim.journal, sim.now).is_empty(),
        "a succeeded run has nothing to retry"
    );
}

#[test]
fn run_started_at_renders_as_rfc3339_in_templates() {
    let mut sim = Sim::new(scaffold("credit-review"), json!({}));
    // 2026-12-07T07:00:00Z, the run's start.
    sim.run.started_at = Some(1_796_626_800_000);
    let next = sim.drive(|plan| {
        if plan.action == "query" {
            ok(json!({"rows": [{"id": 7, "customer": "acme", "total": 900}]}))
        } else {
            ok(json!({}))
        }
    });
    let Next::Wait { step, .. } = next else {
        panic!("expected the approval, got {next:?}")
    };
    sim.decide(step, true);
    sim.drive(|_| ok(json!({})));
    let mail = sim.calls.iter().find(|c| c.action == "send").unwrap();
    assert_eq!(
        mail.args["subject"], "Payment reminders for 2026-12-07T07:00:00.000Z",
        "a person reads the subject line, not epoch milliseconds"
    );
}
