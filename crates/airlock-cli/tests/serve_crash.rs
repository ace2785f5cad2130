//! `kill -9` of `airlock serve` under a bounded burst of webhooks: every delivery answered
//! 202 has a run that completes after a restart, and its side effect reaches the sink
//! exactly once in effect (one distinct idempotency key per run and step; a repeat after a
//! crash carries the same key). And SIGTERM while webhook runs are mid-call: the process
//! exits once they have finished, each call made once.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::server::{Served, Sink};
use support::{airlock, airlock_stdin, json as stdout_json, ok};

/// Server lives killed.
const KILLS: usize = 6;
/// Deliveries per burst.
const BURST: usize = 60;
/// Concurrent senders per burst.
const SENDERS: usize = 6;

fn write_project(dir: &Path, sink_port: u16) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("airlock.yaml"),
        format!(
            r#"project: serve-crash
connectors:
  sink: {{ kind: http, description: "The counting sink" }}
environments:
  staging:
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{sink_port}", timeout: 5s }}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/orders.yaml"),
        r#"name: orders
trigger:
  webhook:
    path: orders
steps:
  - id: normalize
    map:
      order_id: "{{ trigger.body.id }}"
  - id: post
    call: sink.request
    with: { method: POST, path: /orders, json: { order: "{{ steps.normalize.output.order_id }}" } }
    retry: { attempts: 5, backoff: 10ms, on: [timeout, connection, status_5xx] }
  - id: confirm
    call: sink.request
    with: { method: POST, path: /confirm, json: { order: "{{ steps.normalize.output.order_id }}" } }
    retry: { attempts: 5, backoff: 10ms, on: [timeout, connection, status_5xx] }
"#,
    )
    .unwrap();
}

#[test]
fn kill_9_under_a_webhook_burst_loses_no_accepted_run() {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    let sink = Sink::start();
    write_project(&project, sink.port);
    ok(
        &airlock(&project, &["deploy", "--env", "staging"]),
        "deploy",
    );

    let accepted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let started = Instant::now();
    let mut next_id = 0usize;
    for life in 0..KILLS {
        // Short leases, so the next life takes over the killed one's runs quickly.
        let served = Served::start(&project, &["--lease", "1s"]);
        let url = served.url.clone();
        let mut senders = Vec::new();
        for sender in 0..SENDERS {
            let url = url.clone();
            let accepted = accepted.clone();
            let ids: Vec<usize> = (0..BURST / SENDERS)
                .map(|i| next_id + sender * (BURST / SENDERS) + i)
                .collect();
            senders.push(std::thread::spawn(move || {
                let client = support::http_client()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for id in ids {
                    let Ok(response) = client
                        .post(format!("{url}/hooks/staging/orders"))
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"id": {id}}}"#))
                        .send()
                    else {
                        return; // the server died under us
                    };
                    if response.status() == StatusCode::ACCEPTED
                        && let Ok(body) = response.json::<Value>()
                        && let Some(run) = body["run"].as_str()
                    {
                        accepted.lock().unwrap().insert(run.to_owned());
                    }
                }
            }));
        }
        next_id += BURST;
        // Kill at a different moment in each life: early in the burst, late, or after.
        std::thread::sleep(Duration::from_millis(5 + 37 * life as u64 % 120));
        drop(served); // SIGKILL
        for sender in senders {
            let _ = sender.join();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "kill loop too slow"
        );
    }

    // A last life finishes everything the killed ones left (leases expire after 1 s).
    let served = Served::start(&project, &["--lease", "1s"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let out = airlock(&project, &["runs", "--json", "--limit", "100000"]);
        ok(&out, "runs");
        let runs = stdout_json(&out).as_array().cloned().unwrap();
        let unfinished = runs
            .iter()
            .filter(|r| !["succeeded", "failed", "dead"].contains(&r["status"].as_str().unwrap()))
            .count();
        if unfinished == 0 {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} runs never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(served);

    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 30,
        "too few deliveries accepted: {}",
        accepted.len()
    );
    let by_id: HashMap<&str, &Value> = runs
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    for run in &accepted {
        let found = by_id
            .get(run.as_str())
            .unwrap_or_else(|| panic!("run {run} was answered 202 but is not in the store"));
        assert_eq!(found["status"], "succeeded", "{found}");
    }
    // Every run in the store (answered or not before its kill) did each keyed call once
    // in effect: two distinct keys per run, and no key for a run that does not exist.
    let received = sink.snapshot();
    let keys: BTreeSet<&String> = received.by_key.keys().collect();
    assert_eq!(keys.len(), runs.len() * 2, "distinct keys at the sink");
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let out = airlock(&project, &["runs", "show", id, "--json"]);
        let journal = stdout_json(&out)["journal"].as_array().cloned().unwrap();
        for step in ["post", "confirm"] {
            let succeeded = journal
                .iter()
                .filter(|e| e["step"] == step && e["status"] == "succeeded")
                .count();
            assert_eq!(
                succeeded, 1,
                "run {id} step {step} journaled {succeeded} successes"
            );
        }
    }
    eprintln!(
        "serve crash test: {KILLS} kills, {} deliveries answered 202, {} runs in the store, {} requests at the sink for {} keys, {:.1?}",
        accepted.len(),
        runs.len(),
        received.total,
        keys.len(),
        started.elapsed()
    );
}

/// Runs accepted from webhooks run on tasks of their own; SIGTERM used to wait only for
/// the worker loop's runs, so `serve` exited at once and left every webhook run
/// `running`, to be called again as `outcome unknown` after its lease. Now the process
/// waits (within `--grace`) for every run it executes: it exits after the target has
/// answered each call, every run succeeded, and each call reached the target once.
#[test]
fn sigterm_does_not_wait_for_runs_accepted_from_webhooks() {
    const RUNS: usize = 40;
    const SECRET: &str = "whsec-graceful-0123456789";
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    // Each call is counted when it arrives and answered 1.5 s later.
    let sink = Sink::answering_after(Duration::from_millis(1_500));
    std::fs::create_dir_all(project.join("workflows")).unwrap();
    std::fs::write(
        project.join("airlock.yaml"),
        format!(
            r#"project: graceful-stop
connectors:
  sink: {{ kind: http, description: "The slow sink" }}
environments:
  staging:
    egress: [127.0.0.1]
    secrets: [HOOK_SECRET]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{}", timeout: 10s }}
"#,
            sink.port
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("workflows/orders.yaml"),
        r#"name: orders
trigger:
  webhook:
    path: orders
    signature: { scheme: github, secret: HOOK_SECRET }
steps:
  - id: post
    call: sink.request
    with: { method: POST, path: /orders, json: { order: "{{ trigger.body.id }}" } }
"#,
    )
    .unwrap();
    ok(
        &airlock_stdin(
            &project,
            &["secrets", "set", "HOOK_SECRET", "--env", "staging"],
            SECRET,
        ),
        "secrets set",
    );
    ok(
        &airlock(&project, &["deploy", "--env", "staging"]),
        "deploy",
    );
    // A lease far longer than the test: a run left behind would stay `running`.
    let mut served = Served::start(&project, &["--lease", "5m", "--grace", "20s"]);
    let client = support::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut accepted = BTreeSet::new();
    for id in 0..RUNS {
        let body = format!(r#"{{"id": {id}}}"#);
        let response = client
            .post(format!("{}/hooks/staging/orders", served.url))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                airlock_core::webhook::sign_github(SECRET.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .expect("the server answers");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().unwrap();
        accepted.insert(answer["run"].as_str().expect("a run id").to_owned());
    }
    // Every run is mid-call once the sink has seen every call arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.snapshot().total < RUNS as u32 {
        assert!(Instant::now() < deadline, "the calls never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        sink.snapshot().answered.is_empty(),
        "SIGTERM comes while the calls are in flight"
    );

    let pid = served.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, exited) = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break (status, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let logs = served.logs.lock().unwrap().clone();
    assert!(status.success(), "serve exited with {status}:\n{logs}");
    let received = sink.snapshot();
    assert_eq!(
        received.answered.len(),
        RUNS,
        "the process exited before the target answered every call:\n{logs}"
    );
    assert!(
        received.answered.iter().all(|answered| *answered <= exited),
        "the process exited before the runs finished"
    );

    let out = airlock(&project, &["runs", "--json", "--limit", "1000"]);
    ok(&out, "runs");
    let runs = stdout_json(&out).as_array().cloned().unwrap();
    assert_eq!(runs.len(), RUNS);
    for run in &runs {
        assert!(accepted.contains(run["id"].as_str().unwrap()));
        assert_eq!(run["status"], "succeeded", "left behind by SIGTERM: {run}");
    }
    // One call per run, each once: nothing is left to repeat as `outcome unknown`.
    assert_eq!(received.total, RUNS as u32, "calls at the target");
    assert_eq!(received.by_key.len(), RUNS, "distinct idempotency keys");
    assert!(
        received.by_key.values().all(|&calls| calls == 1),
        "a call repeated: {:?}",
        received.by_key
    );
}
