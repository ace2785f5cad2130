//! Scale-out on PostgreSQL (127.0.0.1:5432): several `airlock serve` and `airlock worker`
//! processes share one store. Each test works in a database of its own, dropped after.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::server::{Served, Sink};
use support::{json as stdout_json, ok, text};

/// A database of its own, dropped when the test ends.
struct Database {
    name: String,
}

fn admin_url() -> String {
    std::env::var("AIRLOCK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(admin_url())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
}

/// One value from a query against a test database.
fn query(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

impl Database {
    fn create() -> Self {
        let name = format!(
            "airlock_scale_{}_{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() % 1_000_000 + rand_suffix()
        );
        psql(&format!("CREATE DATABASE {name}"));
        Self { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn write_project(dir: &Path, sink_port: u16) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("airlock.yaml"),
        format!(
            r#"project: scale-out
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
"#,
    )
    .unwrap();
}

fn airlock(project: &Path, store: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("-C")
        .arg(project)
        .args(["--store", store])
        .args(args)
        .env_remove("AIRLOCK_PROJECT")
        .env("NO_COLOR", "1")
        .output()
        .expect("airlock runs")
}

fn worker(project: &Path, store: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("-C")
        .arg(project)
        .args([
            "--store",
            store,
            "worker",
            "--concurrency",
            "16",
            "--lease",
            "2s",
        ])
        .env_remove("AIRLOCK_PROJECT")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("airlock worker starts")
}

/// A database of its own with the counting project migrated and deployed to staging; the
/// temporary folder holds the project.
fn deployed_staging() -> (Database, tempfile::TempDir, std::path::PathBuf, Sink) {
    let database = Database::create();
    let store = database.url();
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    let sink = Sink::start();
    write_project(&project, sink.port);
    ok(&airlock(&project, &store, &["migrate"]), "migrate");
    ok(
        &airlock(&project, &store, &["deploy", "--env", "staging"]),
        "deploy",
    );
    (database, temp, project, sink)
}

fn runs(project: &Path, store: &str) -> Vec<Value> {
    let out = airlock(project, store, &["runs", "--json", "--limit", "100000"]);
    ok(&out, "runs");
    stdout_json(&out).as_array().cloned().unwrap()
}

/// 2,000 runs queued through a server that does not execute, then four worker processes
/// race over them; one is killed with SIGKILL mid-work. Every run completes, each keyed call
/// reached the sink once in effect, and no step was journaled as done twice.
#[test]
fn four_workers_share_2000_runs_and_finish_a_killed_ones_work() {
    const RUNS: usize = 2_000;
    let (database, _temp, project, sink) = deployed_staging();
    let store = database.url();

    let accepting = Served::start_with_store(&project, &store, &["--no-execute"]);
    let client = support::http_client().build().expect("an HTTP client");
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let client = client.clone();
            let url = format!("{}/hooks/staging/orders", accepting.url);
            std::thread::spawn(move || {
                for id in (sender..RUNS).step_by(4) {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"id": {id}}}"#))
                        .send()
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    drop(accepting);
    assert_eq!(
        sink.snapshot().total,
        0,
        "an accept-only server executed runs"
    );

    let started = Instant::now();
    let mut workers: Vec<Child> = (0..4).map(|_| worker(&project, &store)).collect();
    // Kill one once the work is under way, while it holds runs mid-step.
    while sink.snapshot().total < (RUNS / 10) as u32 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    workers[0].kill().unwrap(); // SIGKILL
    let _ = workers[0].wait();

    let deadline = Instant::now() + Duration::from_secs(180);
    let runs = loop {
        let runs = runs(&project, &store);
        let done = runs.iter().filter(|r| r["status"] == "succeeded").count();
        if done == RUNS {
            break runs;
        }
        assert!(Instant::now() < deadline, "{done} of {RUNS} runs finished");
        std::thread::sleep(Duration::from_millis(250));
    };
    let took = started.elapsed();
    for mut worker in workers.into_iter().skip(1) {
        let _ = worker.kill();
        let _ = worker.wait();
    }
    assert_eq!(runs.len(), RUNS, "a run was lost or duplicated");
    let received = sink.snapshot();
    assert_eq!(received.by_key.len(), RUNS, "distinct keys at the sink");
    // More than one request for a key happens only for calls the killed worker had in
    // flight (retried with the same key, harmless at the sink).
    let repeated: Vec<_> = received.by_key.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.len() <= 16, "too many repeated keys: {repeated:?}");
    let claimed_twice = runs
        .iter()
        .filter(|r| r["claims"].as_i64().unwrap_or(1) > 1)
        .count();
    // No step of any run was journaled as done twice (two workers never both did it).
    let doubled = query(
        &store,
        "SELECT count(*) FROM (SELECT run, step FROM journal WHERE status = 'succeeded' \
         GROUP BY run, step HAVING count(*) > 1) d",
    );
    assert_eq!(doubled, "0", "steps journaled as succeeded twice");
    let succeeded_steps = query(
        &store,
        "SELECT count(*) FROM journal WHERE status = 'succeeded' AND step = 'post'",
    );
    assert_eq!(succeeded_steps, RUNS.to_string());
    eprintln!(
        "scale-out: {RUNS} runs by 4 workers in {took:.1?} (one killed), {} runs claimed more than once, {} keys repeated",
        claimed_twice,
        repeated.len()
    );
}

/// Two servers on different ports, one store: the same delivery accepted by both is one run.
#[test]
fn two_servers_dedupe_one_delivery() {
    let database = Database::create();
    let store = database.url();
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    let sink = Sink::start();
    write_project(&project, sink.port);
    ok(
        &airlock(&project, &store, &["deploy", "--env", "staging"]),
        "deploy",
    );
    let first = Served::start_with_store(&project, &store, &[]);
    let second = Served::start_with_store(&project, &store, &[]);
    assert_ne!(first.url, second.url);
    let client = support::http_client().build().expect("an HTTP client");
    let mut ids = Vec::new();
    for served in [&first, &second, &first] {
        let response = client
            .post(format!("{}/hooks/staging/orders", served.url))
            .header("content-type", "application/json")
            .header("idempotency-key", "delivery-77")
            .body(r#"{"id": 77}"#)
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().unwrap();
        ids.push(body["run"].as_str().unwrap().to_owned());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.snapshot().total < 1 {
        assert!(Instant::now() < deadline, "the run never reached the sink");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(&project, &store).len(), 1);
    assert_eq!(sink.snapshot().total, 1);
}

/// A six-field cron (every 2 s) deployed once, three `airlock serve` processes on one
/// PostgreSQL store for ~7 s: every tick is one run (never two), ticks 2 s apart, none missed.
#[test]
fn three_servers_on_postgres_fire_each_tick_once() {
    let database = Database::create();
    let store = database.url();
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    std::fs::create_dir_all(project.join("workflows")).unwrap();
    std::fs::write(
        project.join("airlock.yaml"),
        "project: schedules\nconnectors: {}\nenvironments:\n  staging: { bindings: {} }\n",
    )
    .unwrap();
    std::fs::write(
        project.join("workflows/tick.yaml"),
        r#"name: tick
trigger:
  cron:
    schedule: "*/2 * * * * *"
    timezone: Europe/London
    catch_up: all
steps:
  - id: note
    map:
      at: "{{ trigger.time }}"
"#,
    )
    .unwrap();
    ok(
        &airlock(&project, &store, &["deploy", "--env", "staging"]),
        "deploy",
    );

    let servers: Vec<Served> = (0..3)
        .map(|_| Served::start_with_store(&project, &store, &[]))
        .collect();
    std::thread::sleep(Duration::from_millis(7_000));
    let logs: Vec<String> = servers
        .iter()
        .map(|s| s.logs.lock().unwrap().clone())
        .collect();
    drop(servers);

    let out = airlock(
        &project,
        &store,
        &["runs", "--json", "--limit", "1000", "--workflow", "tick"],
    );
    ok(&out, "runs");
    let runs = stdout_json(&out).as_array().cloned().unwrap();
    let mut ticks: Vec<i64> = runs
        .iter()
        .map(|r| {
            let time = r["trigger"]["time"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(time)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    ticks.sort_unstable();
    let distinct: std::collections::BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(
        ticks.len() >= 3,
        "too few ticks in 7 s: {ticks:?}\n{}",
        logs.join("\n---\n")
    );
    // Every tick on an even second, 2 s after the one before: none missed.
    assert!(ticks.iter().all(|t| t % 2_000 == 0), "{ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 2_000, "a tick is missing: {ticks:?}");
    }
    // The store holds exactly these runs' dedupe keys, once each.
    let keys = query(
        &store,
        "SELECT count(*), count(DISTINCT dedupe_key) FROM runs WHERE workflow = 'tick'",
    );
    assert_eq!(keys, format!("{0}|{0}", ticks.len()));
}

/// The README's scale-out topology, observed: a worker started with `--listen` answers
/// `/healthz` and `/readyz`, and its `/metrics`, scraped while it executes and read by
/// Prometheus' own text parser (`prometheus_client`, from PyPI), counts the runs it
/// finished, their durations and its connector calls by connector and environment, with
/// the build and process figures beside them; its log lines name each run's id, workflow,
/// version and environment.
#[test]
fn a_worker_serves_health_readiness_and_metrics_while_it_executes() {
    const RUNS: usize = 20;
    let (database, _temp, project, sink) = deployed_staging();
    let store = database.url();
    let accepting = Served::start_with_store(&project, &store, &["--no-execute"]);
    let client = support::http_client().build().expect("an HTTP client");
    for id in 0..RUNS {
        let response = client
            .post(format!("{}/hooks/staging/orders", accepting.url))
            .header("content-type", "application/json")
            .body(format!(r#"{{"id": {id}}}"#))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    let mut worker = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("-C")
        .arg(&project)
        .args(["--store", &store, "worker", "--listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env_remove("AIRLOCK_PROJECT")
        .env("RUST_LOG", "airlock=debug,info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("airlock worker starts");
    let mut stdout = std::io::BufReader::new(worker.stdout.take().unwrap());
    let address = {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned()
    };
    let stderr = worker.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    assert_eq!(
        client
            .get(format!("{address}/healthz"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = runs(&project, &store)
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count();
        if done == RUNS {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {RUNS} runs finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sink.snapshot().by_key.len(),
        RUNS,
        "each run's call reached the sink"
    );
    let ready = client.get(format!("{address}/readyz")).send().unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let exposition = client
        .get(format!("{address}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();

    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": sample.name,
                        "labels": sample.labels, "value": sample.value})
print(json.dumps(samples))
"#;
    let mut parser = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut parser.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "prometheus_client could not parse /metrics (is it installed? .ci/run installs it):\n{}\n{exposition}",
        text(&parsed.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&parsed.stdout).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| s["name"] == name)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };
    let staging = [("workflow", "orders"), ("environment", "staging")];
    assert_eq!(
        value(
            "airlock_runs_total",
            &[staging[0], staging[1], ("status", "succeeded")]
        ),
        RUNS as f64,
        "{exposition}"
    );
    assert_eq!(
        value(
            "airlock_run_duration_seconds_count",
            &[staging[0], staging[1], ("status", "succeeded")]
        ),
        RUNS as f64
    );
    assert_eq!(
        value(
            "airlock_connector_calls_total",
            &[
                ("connector", "sink"),
                ("environment", "staging"),
                ("outcome", "succeeded")
            ]
        ),
        RUNS as f64
    );
    assert_eq!(
        value(
            "airlock_connector_call_duration_seconds_count",
            &[("connector", "sink"), ("environment", "staging")]
        ),
        RUNS as f64
    );
    assert_eq!(
        value(
            "airlock_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(
        value("process_resident_memory_bytes", &[]) > 0.0,
        "{exposition}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s["name"] == "process_cpu_seconds_total")
    );

    // SIGTERM: it drains and stops; its log names every run it finished.
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let status = worker.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logs = logs.join().unwrap();
    let finished: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "run finished")
        .collect();
    assert_eq!(finished.len(), RUNS, "{logs}");
    for line in &finished {
        for field in ["run", "workflow", "version", "environment", "status"] {
            assert!(line["fields"][field].is_string(), "no {field}: {line}");
        }
    }
    for message in ["run claimed", "step started", "step succeeded"] {
        assert!(
            logs.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|l| l["fields"]["message"] == message && l["fields"]["run"].is_string()),
            "no {message:?} line with a run id:\n{logs}"
        );
    }
    drop(accepting);
}
