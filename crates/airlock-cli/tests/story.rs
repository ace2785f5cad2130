//! The path from staging to production, end to end with the built binary:
//! tests → evidence → deploy → staging runs → parity drift found and documented →
//! promotion gated on approvals (the author's own refused) → release → production runs
//! the new hash → v2 → a long production run in flight → rollback → new runs on v1 while
//! the in-flight run finishes on v2 → the audit chain verifies, then detects tampering.
//! Production's configuration travels the same gate: documenting a difference and moving
//! production's ledger binding to a new server change nothing there until a configuration
//! request is approved by production's approvers and released; rolling the configuration
//! back sends the next run to the old server again.

mod support;
use support::*;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The production ledger: a real HTTP server that counts what it receives.
fn start_ledger() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let n = stream.read(&mut buffer).unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}");
        }
    });
    (port, seen)
}

fn manifest(port: u16, documented_approvers: bool) -> String {
    manifest_with(port, port, documented_approvers)
}

/// The project with staging bound to `port` and production to `production_port`.
fn manifest_with(port: u16, production_port: u16, documented_approvers: bool) -> String {
    let mut approvers_difference = if documented_approvers {
        "  - { path: approvers, reason: \"production payouts are approved by the ops lead and the CFO\" }\n"
    } else {
        ""
    }
    .to_owned();
    if production_port != port {
        approvers_difference.push_str(
            "  - { path: bindings.ledger.base_url, reason: \"production posts to the new ledger\" }\n",
        );
    }
    format!(
        r#"project: story
connectors:
  ledger: {{ kind: http, risk: finance }}
environments:
  staging:
    approvers: [staging-lead]
    egress: [127.0.0.1]
    secrets: [LEDGER_TOKEN]
    bindings:
      ledger: {{ base_url: "http://127.0.0.1:{port}", token: "${{secret:LEDGER_TOKEN}}", mode: record, responses: {{ request: {{ status: 201 }} }} }}
  production:
    protected: true
    approvers: [ops-lead, cfo]
    egress: [127.0.0.1]
    secrets: [LEDGER_TOKEN]
    bindings:
      ledger: {{ base_url: "http://127.0.0.1:{production_port}", token: "${{secret:LEDGER_TOKEN}}" }}
differences:
  - {{ path: bindings.ledger.mode, reason: "staging records ledger calls; production posts them" }}
  - {{ path: bindings.ledger.responses, reason: "the recorded answers staging gives in place of the ledger" }}
  - {{ path: protected, reason: "production changes only by promotion and rollback" }}
{approvers_difference}promotion:
  staging -> production:
    require: {{ tests: pass, parity: clean, staging_runs: {{ min: 2, max_failure_rate: 0.0 }}, approvals: 1 }}
    by_risk: {{ finance: {{ approvals: 2 }} }}
"#
    )
}

const PAYOUT_V1: &str = r#"name: payout
trigger: { webhook: { path: payouts } }
steps:
  - id: amount
    map: { cents: "{{ trigger.body.amount * 100 }}" }
  - id: post
    call: ledger.request
    with: { method: POST, path: /payouts, json: { cents: "{{ steps.amount.output.cents }}" } }
"#;

const PAYOUT_V2: &str = r#"name: payout
trigger: { webhook: { path: payouts } }
steps:
  - id: amount
    map: { cents: "{{ trigger.body.amount * 100 }}" }
  - id: confirm
    approval: { message: "Pay out {{ steps.amount.output.cents }} cents?", timeout: 1h }
  - id: post
    call: ledger.request
    with: { method: POST, path: /payouts, json: { cents: "{{ steps.amount.output.cents }}" } }
"#;

const SCENARIO_V1: &str = r#"trigger: { body: { amount: 5 } }
stubs:
  ledger.request: { respond: { status: 201 } }
expect:
  status: succeeded
  path: [amount, post]
  calls:
    - { call: ledger.request, with: { json: { cents: 500 } } }
"#;

const SCENARIO_V2: &str = r#"trigger: { body: { amount: 5 } }
stubs:
  ledger.request: { respond: { status: 201 } }
approvals:
  confirm: { decision: approve, by: ops-lead }
expect:
  status: succeeded
  path: [amount, confirm, post]
"#;

fn hash(dir: &Path) -> String {
    let out = airlock(dir, &["hash", "payout", "--json"]);
    json(&out)[0]["version"].as_str().unwrap().to_owned()
}

fn latest_run(dir: &Path, env: &str) -> serde_json::Value {
    json(&airlock(
        dir,
        &["runs", "--env", env, "--limit", "1", "--json"],
    ))[0]
        .clone()
}

/// Promotes the working copy's configuration into production as `dev`, and has both of
/// production's approvers approve it (its strictest rule asks two): released.
fn release_configuration(dir: &Path) {
    let opened = json(&airlock(
        dir,
        &[
            "promote",
            "--config",
            "--to",
            "production",
            "--as",
            "dev",
            "--json",
        ],
    ));
    assert_eq!(opened["opened"], true, "{opened}");
    assert!(!opened["diff"].as_array().unwrap().is_empty(), "{opened}");
    let request = opened["request"]["id"].as_str().unwrap().to_owned();
    let own = airlock(dir, &["approve", &request, "--as", "dev"]);
    assert_eq!(own.status.code(), Some(2), "the author cannot approve");
    let first = json(&airlock(
        dir,
        &["approve", &request, "--as", "ops-lead", "--json"],
    ));
    assert!(first["release"].is_null(), "two approvals: {first}");
    let second = json(&airlock(
        dir,
        &["approve", &request, "--as", "cfo", "--json"],
    ));
    assert!(second["release"]["id"].is_string(), "{second}");
}

#[test]
fn from_staging_to_production_and_back() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let (port, ledger) = start_ledger();
    ok(&airlock(dir, &["init", "."]), "init");
    // This story's own project, in the initialised folder.
    for file in [
        "workflows/order-intake.yaml",
        "workflows/credit-review.yaml",
    ] {
        std::fs::remove_file(dir.join(file)).unwrap();
    }
    std::fs::remove_dir_all(dir.join("tests")).unwrap();
    write(dir, "airlock.yaml", &manifest(port, false));
    write(dir, "workflows/payout.yaml", PAYOUT_V1);
    write(dir, "tests/payout/pays.yaml", SCENARIO_V1);
    write(dir, "payout.json", r#"{"amount": 5}"#);
    ok(&airlock(dir, &["validate"]), "validate");
    for env in ["staging", "production"] {
        ok(
            &airlock_stdin(
                dir,
                &["secrets", "set", "LEDGER_TOKEN", "--env", env],
                &format!("tok-{env}-0123456789"),
            ),
            "secret",
        );
    }
    let v1 = hash(dir);

    // Scenario tests record evidence for the exact hash.
    ok(&airlock(dir, &["test"]), "test v1");
    ok(
        &airlock(dir, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy staging",
    );
    for _ in 0..2 {
        ok(
            &airlock(
                dir,
                &[
                    "run",
                    "payout",
                    "--env",
                    "staging",
                    "--input",
                    "payout.json",
                ],
            ),
            "staging run",
        );
    }
    assert!(
        ledger.lock().unwrap().is_empty(),
        "staging records; it never reaches the ledger"
    );

    // Parity: the approvers differ and nobody wrote down why.
    let drift = airlock(dir, &["diff", "staging", "production"]);
    assert_eq!(drift.status.code(), Some(1), "{}", text(&drift.stdout));
    assert!(
        text(&drift.stdout).to_lowercase().contains("approvers"),
        "{}",
        text(&drift.stdout)
    );
    write(dir, "airlock.yaml", &manifest(port, true));
    // The documentation is part of production's configuration: until it is released,
    // production is judged on the one it runs, and `diff` shows what would change.
    let pending = airlock(dir, &["diff", "staging", "production"]);
    assert_eq!(pending.status.code(), Some(1), "{}", text(&pending.stdout));
    assert!(
        text(&pending.stdout).contains("configuration of production"),
        "{}",
        text(&pending.stdout)
    );
    release_configuration(dir);
    ok(
        &airlock(dir, &["diff", "staging", "production"]),
        "documented: clean",
    );

    // Promotion: every gate but approvals holds; the author cannot approve.
    let promoted = airlock(dir, &["promote", "payout", "--as", "dev", "--json"]);
    ok(&promoted, "promote");
    let promoted = json(&promoted);
    assert!(
        promoted["release"].is_null(),
        "not released without approvals"
    );
    let request = promoted["request"]["id"].as_str().unwrap().to_owned();
    let own = airlock(dir, &["approve", &request, "--as", "dev"]);
    assert_eq!(own.status.code(), Some(2));
    let outsider = airlock(dir, &["approve", &request, "--as", "staging-lead"]);
    assert_eq!(
        outsider.status.code(),
        Some(2),
        "not an approver of production"
    );
    let first = json(&airlock(
        dir,
        &["approve", &request, "--as", "ops-lead", "--json"],
    ));
    assert!(first["release"].is_null(), "finance needs two approvals");
    let second = json(&airlock(
        dir,
        &["approve", &request, "--as", "cfo", "--json"],
    ));
    let release_v1 = second["release"]["id"]
        .as_str()
        .expect("released")
        .to_owned();

    // Production runs the released hash, for real.
    ok(
        &airlock(
            dir,
            &[
                "run",
                "payout",
                "--env",
                "production",
                "--input",
                "payout.json",
            ],
        ),
        "production run v1",
    );
    assert_eq!(latest_run(dir, "production")["version"], v1.as_str());
    assert_eq!(ledger.lock().unwrap().len(), 1);
    assert!(ledger.lock().unwrap()[0].contains("Bearer tok-production-0123456789"));

    // Production's ledger moves to a new server: a change of its binding, which does not
    // take effect until it is released.
    let (new_port, new_ledger) = start_ledger();
    write(dir, "airlock.yaml", &manifest_with(port, new_port, true));
    let noted = airlock(dir, &["validate"]);
    ok(&noted, "validate with a configuration change");
    assert!(
        text(&noted.stderr).contains("keeps running its released configuration"),
        "{}",
        text(&noted.stderr)
    );
    ok(
        &airlock(
            dir,
            &[
                "run",
                "payout",
                "--env",
                "production",
                "--input",
                "payout.json",
            ],
        ),
        "production run before the configuration is released",
    );
    assert_eq!(
        ledger.lock().unwrap().len(),
        2,
        "still the released binding"
    );
    assert!(new_ledger.lock().unwrap().is_empty());

    // v2 adds a confirmation step; it goes the same way, and travels with the new binding.
    write(dir, "workflows/payout.yaml", PAYOUT_V2);
    write(dir, "tests/payout/pays.yaml", SCENARIO_V2);
    let v2 = hash(dir);
    assert_ne!(v1, v2);
    ok(&airlock(dir, &["test"]), "test v2");
    ok(&airlock(dir, &["deploy", "--env", "staging"]), "deploy v2");
    for _ in 0..2 {
        let run = json(&airlock(
            dir,
            &[
                "run",
                "payout",
                "--env",
                "staging",
                "--input",
                "payout.json",
                "--json",
            ],
        ));
        let id = run["run"]["id"].as_str().unwrap().to_owned();
        ok(
            &airlock(
                dir,
                &["approve-step", &id, "confirm", "--as", "staging-lead"],
            ),
            "staging confirm",
        );
    }
    release_configuration(dir);
    let promoted = json(&airlock(
        dir,
        &["promote", "payout", "--as", "dev", "--json"],
    ));
    let request = promoted["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{promoted}"))
        .to_owned();
    ok(
        &airlock(dir, &["approve", &request, "--as", "ops-lead"]),
        "approve v2",
    );
    let released = json(&airlock(
        dir,
        &["approve", &request, "--as", "cfo", "--json"],
    ));
    assert!(released["release"]["id"].is_string());

    // A production run on v2 waits for its confirmation…
    let in_flight = json(&airlock(
        dir,
        &[
            "run",
            "payout",
            "--env",
            "production",
            "--input",
            "payout.json",
            "--json",
        ],
    ));
    assert_eq!(in_flight["run"]["status"], "waiting");
    assert_eq!(in_flight["run"]["version"], v2.as_str());
    let in_flight = in_flight["run"]["id"].as_str().unwrap().to_owned();

    // …when production is rolled back: new runs use v1 at once.
    ok(
        &airlock(
            dir,
            &[
                "rollback",
                "payout",
                "--env",
                "production",
                "--as",
                "ops-lead",
            ],
        ),
        "rollback",
    );
    let after = json(&airlock(
        dir,
        &[
            "run",
            "payout",
            "--env",
            "production",
            "--input",
            "payout.json",
            "--json",
        ],
    ));
    assert_eq!(after["run"]["version"], v1.as_str());
    assert_eq!(after["run"]["status"], "succeeded");
    assert_eq!(
        new_ledger.lock().unwrap().len(),
        1,
        "the released configuration sends it to the new ledger"
    );
    // The configuration is rolled back too: the next run reaches the old ledger again.
    ok(
        &airlock(
            dir,
            &[
                "rollback",
                "--config",
                "--env",
                "production",
                "--as",
                "ops-lead",
            ],
        ),
        "configuration rollback",
    );
    let before = ledger.lock().unwrap().len();
    ok(
        &airlock(
            dir,
            &[
                "run",
                "payout",
                "--env",
                "production",
                "--input",
                "payout.json",
            ],
        ),
        "production run after the configuration rollback",
    );
    assert_eq!(ledger.lock().unwrap().len(), before + 1);
    assert_eq!(new_ledger.lock().unwrap().len(), 1);
    let configs = json(&airlock(
        dir,
        &["releases", "--config", "--env", "production", "--json"],
    ));
    let kinds: Vec<&str> = configs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback", "promotion", "promotion", "adopted"]);
    // The run in flight finishes on the version it started with.
    let finished = json(&airlock(
        dir,
        &[
            "approve-step",
            &in_flight,
            "confirm",
            "--as",
            "ops-lead",
            "--json",
        ],
    ));
    assert_eq!(finished["run"]["status"], "succeeded");
    assert_eq!(finished["run"]["version"], v2.as_str());
    let steps: Vec<&str> = finished["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"confirm"));

    // History: three releases, the rollback pointing back to v1; a target never released is refused.
    let history = json(&airlock(dir, &["releases", "payout", "--json"]));
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback", "promotion", "promotion"]);
    assert_eq!(history[0]["version"], v1.as_str());
    assert_eq!(history[2]["release"], release_v1.as_str());
    assert_eq!(
        airlock(dir, &["rollback", "payout", "--to", "rel_nope"])
            .status
            .code(),
        Some(2)
    );

    // Every change is in the audit log: policy, deploys, the refused approvals, releases.
    let audit = json(&airlock(dir, &["audit", "--json"]));
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "policy.change",
        "secret.set",
        "deploy",
        "promotion.request",
        "approve.refused",
        "approve",
        "release",
        "rollback",
        "config.adopt",
        "config.request",
        "config.release",
        "config.rollback",
    ] {
        assert!(
            actions.contains(&action),
            "no `{action}` in the audit log: {actions:?}"
        );
    }
    assert!(
        !audit.to_string().contains("tok-production-0123456789"),
        "secret values never reach the audit log"
    );

    // The audit chain holds, and any edit breaks it.
    ok(&airlock(dir, &["audit", "verify"]), "audit verify");
    let db = rusqlite::Connection::open(dir.join(".airlock/airlock.db")).unwrap();
    db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
        .unwrap();
    drop(db);
    let broken = airlock(dir, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken.stdout));
    assert!(text(&broken.stdout).contains("BROKEN at event 3"));
}
