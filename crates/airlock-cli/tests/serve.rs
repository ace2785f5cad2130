//! `airlock serve` end to end: the real binary, real HTTP, a real sink on loopback.

mod support;

use airlock_core::webhook;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::server::{Served, Sink};
use support::{airlock, airlock_stdin, json as stdout_json, ok, text};

const SECRET: &str = "whsec-current-0123456789";
const OLD_SECRET: &str = "whsec-previous-9876543210";

fn write_project(dir: &Path, sink_port: u16) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let environment = |name: &str, protected: bool| {
        format!(
            r#"  {name}:
    protected: {protected}
    egress: [127.0.0.1]
    secrets: [HOOK_SECRET, HOOK_SECRET_OLD]
    approvers: [ops-lead]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{sink_port}", timeout: 5s }}
"#
        )
    };
    std::fs::write(
        dir.join("airlock.yaml"),
        format!(
            "project: serve-test\nconnectors:\n  sink: {{ kind: http, description: \"The counting sink\" }}\nenvironments:\n{}{}",
            environment("staging", false),
            environment("production", true)
        ),
    )
    .unwrap();
    let steps = r#"steps:
  - id: normalize
    map:
      order_id: "{{ trigger.body.id }}"
      total: "{{ trigger.body.amount | float }}"
  - id: tier
    if: "steps.normalize.output.total > 100"
    then:
      - id: post_high
        call: sink.request
        with: { method: POST, path: /high, json: { order: "{{ steps.normalize.output.order_id }}" } }
    else:
      - id: post_low
        call: sink.request
        with: { method: POST, path: /low, json: { order: "{{ steps.normalize.output.order_id }}" } }
"#;
    let hook = |name: &str, trigger: &str| {
        std::fs::write(
            dir.join(format!("workflows/{name}.yaml")),
            format!("name: {name}\ntrigger:\n  webhook:\n{trigger}\n{steps}"),
        )
        .unwrap();
    };
    hook(
        "github-orders",
        "    path: orders\n    signature: { scheme: github, secret: HOOK_SECRET, previous_secret: HOOK_SECRET_OLD }\n    idempotency_key: \"order-{{ trigger.body.id }}\"\n    max_body: 1KiB",
    );
    hook(
        "stripe-orders",
        "    path: stripe\n    signature: { scheme: stripe, secret: HOOK_SECRET }",
    );
    hook("quote", "    path: quote\n    respond: sync\n    wait: 10s");
    hook("limited", "    path: limited\n    rate_limit: 3/min");
    // The quote answers with a declared output, not every step's output.
    let quote = dir.join("workflows/quote.yaml");
    let mut text = std::fs::read_to_string(&quote).unwrap();
    text.push_str(
        "output:\n  orderId: \"{{ steps.normalize.output.order_id }}\"\n  tier: \"{{ 'high' if steps.normalize.output.total > 100 else 'low' }}\"\n  sink: true\n",
    );
    std::fs::write(&quote, text).unwrap();
}

struct Fixture {
    _temp: tempfile::TempDir,
    project: std::path::PathBuf,
    sink: Sink,
    served: Served,
    client: Client,
}

fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    let sink = Sink::start();
    write_project(&project, sink.port);
    ok(&airlock(&project, &["validate"]), "validate");
    for (name, value) in [("HOOK_SECRET", SECRET), ("HOOK_SECRET_OLD", OLD_SECRET)] {
        ok(
            &airlock_stdin(
                &project,
                &["secrets", "set", name, "--env", "staging"],
                value,
            ),
            "secrets set",
        );
    }
    ok(
        &airlock(&project, &["deploy", "--env", "staging"]),
        "deploy",
    );
    let served = Served::start(&project, &["--lease", "60s"]);
    Fixture {
        _temp: temp,
        project,
        sink,
        served,
        client: support::http_client()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

impl Fixture {
    fn post(&self, path: &str, body: &[u8], headers: &[(&str, String)]) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.served.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().expect("the server answers");
        let status = response.status();
        let body = response.json().unwrap_or(Value::Null);
        (status, body)
    }

    fn runs(&self) -> Vec<Value> {
        let out = airlock(&self.project, &["runs", "--json", "--limit", "100000"]);
        ok(&out, "runs");
        stdout_json(&out).as_array().cloned().unwrap_or_default()
    }

    fn wait_run(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = airlock(&self.project, &["runs", "show", id, "--json"]);
            if out.status.success() {
                let shown = stdout_json(&out);
                let status = shown["run"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if ["succeeded", "failed", "dead"].contains(&status.as_str()) {
                    return shown;
                }
            }
            assert!(Instant::now() < deadline, "run {id} did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn github(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![(
        "x-hub-signature-256",
        webhook::sign_github(secret.as_bytes(), body),
    )]
}

#[test]
fn a_signed_webhook_becomes_a_run_that_reaches_the_sink_once() {
    let f = fixture();
    let body = br#"{"id": 41, "amount": 150}"#;
    let (status, answer) = f.post("/hooks/staging/orders", body, &github(SECRET, body));
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run = answer["run"].as_str().expect("a run id").to_owned();
    let shown = f.wait_run(&run);
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    let received = f.sink.snapshot();
    assert_eq!(received.total, 1);
    assert_eq!(received.bodies, vec![json!({ "order": 41 })]);

    // The same delivery again (the sender retries): the first run's id, nothing new.
    let (status, again) = f.post("/hooks/staging/orders", body, &github(SECRET, body));
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["run"], run.as_str());
    assert_eq!(again["duplicate"], true);

    // Signed with the previous secret during a rotation: accepted.
    let other = br#"{"id": 42, "amount": 20}"#;
    let (status, _) = f.post("/hooks/staging/orders", other, &github(OLD_SECRET, other));
    assert_eq!(status, StatusCode::ACCEPTED);

    let runs = f.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[test]
fn bad_missing_stale_or_oversize_deliveries_are_refused_and_queue_nothing() {
    let f = fixture();
    let body = br#"{"id": 7, "amount": 150}"#;
    // (what, body, headers, expected status)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, String)>, StatusCode);
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            body.to_vec(),
            github("not-the-secret", body),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no signature",
            body.to_vec(),
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "signature of another body",
            body.to_vec(),
            github(SECRET, br#"{"id": 7, "amount": 1}"#),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "oversize",
            {
                let big = format!(r#"{{"id": 8, "pad": "{}"}}"#, "x".repeat(2048));
                big.into_bytes()
            },
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, headers, expected) in cases {
        let (status, answer) = f.post("/hooks/staging/orders", &body, &headers);
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
        assert!(
            !answer.to_string().contains(SECRET),
            "{what}: the answer leaks the secret"
        );
    }
    // Malformed JSON, correctly signed: 400 naming the place.
    let broken = br#"{"id": 9, "amount": }"#;
    let (status, answer) = f.post("/hooks/staging/orders", broken, &github(SECRET, broken));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("column"),
        "{answer}"
    );

    // Stripe-style: a correct signature whose timestamp is outside the 300 s tolerance
    // (a replay) is refused; the same body signed now is accepted.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stale = webhook::sign_stripe(SECRET.as_bytes(), now - 600, body);
    let (status, answer) = f.post(
        "/hooks/staging/stripe",
        body,
        &[("stripe-signature", stale)],
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(f.runs().len(), 0, "a refused delivery queued a run");
    let fresh = webhook::sign_stripe(SECRET.as_bytes(), now, body);
    let (status, answer) = f.post(
        "/hooks/staging/stripe",
        body,
        &[("stripe-signature", fresh)],
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Unknown hooks and environments: 404.
    let (status, _) = f.post("/hooks/staging/nope", b"{}", &[]);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.post("/hooks/nowhere/orders", b"{}", &[]);
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Production runs nothing deployed: its hooks do not exist.
    let (status, _) = f.post("/hooks/production/quote", b"{}", &[]);
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The rate limit answers 429 once the hook's budget is spent.
    let statuses: Vec<StatusCode> = (0..5)
        .map(|_| {
            f.post("/hooks/staging/limited", br#"{"id": 1, "amount": 1}"#, &[])
                .0
        })
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);

    let logs = f.served.logs.lock().unwrap().clone();
    assert!(!logs.contains(SECRET), "the logs leak the secret");
}

#[test]
fn a_sync_hook_answers_with_the_runs_output() {
    let f = fixture();
    let (status, answer) = f.post("/hooks/staging/quote", br#"{"id": 5, "amount": 500}"#, &[]);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({ "orderId": 5, "tier": "high", "sink": true })
    );
    assert_eq!(f.sink.snapshot().total, 1);
}

/// A sender that hangs up while its delivery is being written (a client timing out, a load
/// tester stopping) does not strand the run it started: the run finishes at once, not when
/// its lease (here a minute) runs out and another claim takes it over.
#[test]
fn a_delivery_whose_sender_hung_up_still_runs_at_once() {
    use std::io::Write;
    let f = fixture();
    // Hold the store's write lock, so that the deliveries wait in their acceptance write
    // (the server's writer waits up to 10 s for the lock) while their senders hang up.
    let store = rusqlite::Connection::open(f.project.join(".airlock/airlock.db")).unwrap();
    store.execute_batch("BEGIN IMMEDIATE").unwrap();
    let address = f.served.url.trim_start_matches("http://").to_owned();
    let body = br#"{"id": 9, "amount": 500}"#;
    let senders: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            write!(
                stream,
                "POST /hooks/staging/quote HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
            stream
        })
        .collect();
    // Time for the deliveries to reach the acceptance write, where they wait for the lock.
    std::thread::sleep(Duration::from_millis(1_000));
    // Gone without reading the answer, while the acceptance is still being written.
    drop(senders);
    std::thread::sleep(Duration::from_millis(500));
    store.execute_batch("ROLLBACK").unwrap();
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = f.runs();
        let unfinished: Vec<String> = runs
            .iter()
            .filter(|r| {
                !["succeeded", "failed", "dead"].contains(&r["status"].as_str().unwrap_or(""))
            })
            .map(|r| format!("{} {}", r["id"], r["status"]))
            .collect();
        // A delivery that had not reached its write when its sender left was never
        // accepted and has no run (on a slow machine, perhaps some): each run there is
        // must finish.
        if !runs.is_empty() && unfinished.is_empty() {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} runs unfinished 10 s after their senders hung up: {unfinished:?}",
            unfinished.len(),
            runs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
    assert_eq!(
        f.sink.snapshot().total as usize,
        runs.len(),
        "one POST per run"
    );
}

#[test]
fn health_metrics_and_a_graceful_stop() {
    let f = fixture();
    let body = br#"{"id": 1, "amount": 150}"#;
    let (status, answer) = f.post("/hooks/staging/orders", body, &github(SECRET, body));
    assert_eq!(status, StatusCode::ACCEPTED);
    f.wait_run(answer["run"].as_str().unwrap());
    let get = |path: &str| {
        f.client
            .get(format!("{}{path}", f.served.url))
            .send()
            .unwrap()
    };
    assert_eq!(get("/healthz").status(), StatusCode::OK);
    assert_eq!(get("/readyz").status(), StatusCode::OK);
    let metrics = get("/metrics").text().unwrap();
    for expected in [
        r#"airlock_runs_total{workflow="github-orders",environment="staging",status="succeeded"} 1"#,
        "airlock_step_duration_seconds_bucket",
        r#"airlock_webhook_requests_total{environment="staging",outcome="accepted"} 1"#,
        "airlock_queue_depth",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    let Fixture { served, .. } = f;
    assert!(
        served.terminate(),
        "SIGTERM did not stop the server cleanly"
    );
}

/// Every documented path answers something other than 404 on a live server, and every
/// API route is documented: the document and the router come from one declaration.
#[test]
fn the_openapi_document_matches_the_routes() {
    let f = fixture();
    let document: Value = f
        .client
        .get(format!("{}/openapi.json", f.served.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10, "{paths:?}");
    for (path, operations) in paths {
        let concrete = path
            .replace("{environment}", "staging")
            .replace("{workflow}", "quote")
            .replace("{id}", "run_missing")
            .replace("{step}", "approve")
            .replace("{name}", "HOOK_SECRET")
            .replace("{path}", "quote");
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = f
                .client
                .request(method.clone(), format!("{}{concrete}", f.served.url))
                .send()
                .unwrap()
                .status();
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed"
            );
            if !concrete.contains("run_missing") {
                assert_ne!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
    let cli = airlock(&f.project, &["openapi"]);
    ok(&cli, "openapi");
    let printed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(printed["paths"], document["paths"]);
    let _ = text(&cli.stderr);
}

/// Each role × environment × a sample of endpoints: allowed calls get past the door,
/// denied ones get 403 with a reason, and every denial is in the audit log. The matrix
/// itself is `airlock_core::authz`'s (unit-tested there); this checks the server enforces it.
#[test]
fn tokens_are_scoped_to_one_role_in_one_environment() {
    use airlock_core::authz::{Action, Grant, Role};
    let f = fixture();
    let roles = ["viewer", "runner", "deployer", "approver", "admin"];
    let mut tokens = Vec::new();
    for environment in ["staging", "production"] {
        for role in roles {
            let name = format!("{role}-{environment}");
            let token = support::create_token(&f.project, environment, role, &name);
            assert!(token.len() >= 64, "a high-entropy token");
            tokens.push((environment, role, token));
        }
    }
    // The store keeps hashes only: no token appears in the database file.
    let database = std::fs::read(f.project.join(".airlock/airlock.db")).unwrap();
    for (_, _, token) in &tokens {
        assert!(
            !database.windows(token.len()).any(|w| w == token.as_bytes()),
            "a token is stored in clear"
        );
    }
    let samples: [(&str, &str, Action); 11] = [
        ("GET", "/api/v1/environments/{env}/runs", Action::Read),
        (
            "POST",
            "/api/v1/environments/{env}/workflows/quote/runs",
            Action::Run,
        ),
        (
            "GET",
            "/api/v1/environments/{env}/secrets",
            Action::ListSecrets,
        ),
        (
            "PUT",
            "/api/v1/environments/{env}/secrets/HOOK_SECRET",
            Action::SetSecret,
        ),
        ("GET", "/api/v1/environments/{env}/audit", Action::Read),
        ("POST", "/api/v1/environments/{env}/deploy", Action::Deploy),
        // Promote is authorised in the target (the body's `to`).
        (
            "POST",
            "/api/v1/workflows/quote/promotions",
            Action::Promote,
        ),
        (
            "POST",
            "/api/v1/environments/{env}/workflows/quote/rollback",
            Action::Rollback,
        ),
        (
            "GET",
            "/api/v1/environments/{env}/workflows/quote/releases",
            Action::Read,
        ),
        ("GET", "/api/v1/environments/{env}/readiness", Action::Read),
        ("GET", "/api/v1/environments/{env}/check", Action::Check),
    ];
    let mut denials = 0;
    for (token_environment, role, token) in &tokens {
        let grant = Grant {
            environment: (*token_environment).to_owned(),
            role: role.parse::<Role>().unwrap(),
        };
        for target in ["staging", "production"] {
            for (method, path, action) in &samples {
                let url = format!("{}{}", f.served.url, path.replace("{env}", target));
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let mut request = f.client.request(method.clone(), &url).bearer_auth(token);
                request = if method == reqwest::Method::PUT {
                    request.body("a-new-value")
                } else if *action == Action::Promote {
                    request.json(&json!({ "from": "staging", "to": target }))
                } else {
                    request.json(&json!({}))
                };
                let response = request.send().unwrap();
                let status = response.status();
                let body: Value = response.json().unwrap_or(Value::Null);
                let allowed = airlock_core::authz::permits(&grant, target, *action).is_ok();
                if allowed && *action == Action::Deploy && target == "production" {
                    // The role may deploy, but the path's own rule refuses it: production
                    // is protected (403, audited as `deploy.refused`, not `api.denied`).
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{role} of {token_environment}: {body}"
                    );
                    assert!(
                        body["error"].as_str().unwrap().contains("protected"),
                        "{body}"
                    );
                } else if allowed {
                    assert_ne!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{role} of {token_environment} on {method} {url}: {body}"
                    );
                    assert_ne!(status, StatusCode::UNAUTHORIZED);
                } else {
                    denials += 1;
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{role} of {token_environment} on {method} {url}: {body}"
                    );
                    assert!(body["error"].as_str().is_some_and(|r| !r.is_empty()));
                }
            }
        }
        // Evidence belongs to versions, and validating changes nothing: every token may,
        // in its own environment.
        for (method, path) in [
            ("GET", "/api/v1/workflows/quote/evidence"),
            ("POST", "/api/v1/validate"),
        ] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = f
                .client
                .request(method.clone(), format!("{}{path}", f.served.url))
                .bearer_auth(token)
                .send()
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{role} of {token_environment} on {method} {path}"
            );
        }
        // The diff staging → production is read by production's people (Read in the target).
        let response = f
            .client
            .get(format!(
                "{}/api/v1/diff?from=staging&to=production",
                f.served.url
            ))
            .bearer_auth(token)
            .send()
            .unwrap();
        if *token_environment == "production" {
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{role} of production on diff"
            );
        } else {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            denials += 1;
        }
    }
    // No token, or a made-up one: 401.
    let url = format!("{}/api/v1/environments/staging/runs", f.served.url);
    assert_eq!(
        f.client.get(&url).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let forged = f.client.get(&url).bearer_auth("alk_0000").send().unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let out = airlock(&f.project, &["audit", "--json"]);
    ok(&out, "audit");
    let log = stdout_json(&out).to_string();
    assert_eq!(
        log.matches("api.denied").count(),
        denials,
        "every denial audited"
    );
    assert!(denials > 0);
}

/// The README's first command: quickstart creates the project, serves it, and prints a
/// signed curl that, pasted into a shell, triggers the order webhook in staging.
#[test]
fn quickstart_serves_and_its_printed_curl_triggers_a_run() {
    use std::io::{BufRead, BufReader};
    let temp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["quickstart", "demo", "--listen", "127.0.0.1:0"])
        .current_dir(temp.path())
        .env_remove("AIRLOCK_PROJECT")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut curl, mut show) = (None, None);
    let mut seen = String::new();
    while curl.is_none() || show.is_none() {
        let line = lines.next().expect("quickstart printed a curl").unwrap();
        seen.push_str(&line);
        seen.push('\n');
        let trimmed = line.trim();
        if trimmed.starts_with("curl ") {
            curl = Some(trimmed.to_owned());
        } else if trimmed.starts_with("airlock runs") {
            show = Some(trimmed.to_owned());
        }
        assert!(Instant::now() < deadline, "{seen}");
    }
    let curl = curl.unwrap();
    assert!(curl.contains("X-Hub-Signature-256: sha256="), "{curl}");
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let answered = std::process::Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .current_dir(temp.path())
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&answered.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&answered.stdout)));
    let run = answer["run"].as_str().expect("a run id").to_owned();
    assert_eq!(show.unwrap(), "airlock runs -C demo");
    let project = temp.path().join("demo");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = airlock(&project, &["runs", "show", &run, "--json"]);
        if out.status.success() && stdout_json(&out)["run"]["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the quickstart's run did not succeed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The CLI against the server (`--server`, token in AIRLOCK_TOKEN) prints what it prints
/// locally, and the token's scope holds.
#[test]
fn the_cli_works_against_a_remote_server_with_the_same_output() {
    let f = fixture();
    let body = br#"{"id": 9, "amount": 150}"#;
    let (status, answer) = f.post("/hooks/staging/orders", body, &github(SECRET, body));
    assert_eq!(status, StatusCode::ACCEPTED);
    let run = answer["run"].as_str().unwrap().to_owned();
    f.wait_run(&run);
    let token = |role: &str| {
        let out = airlock(
            &f.project,
            &[
                "token",
                "create",
                "--env",
                "staging",
                "--role",
                role,
                "--name",
                &format!("remote-{role}"),
                "--json",
            ],
        );
        ok(&out, "token create");
        stdout_json(&out)["token"].as_str().unwrap().to_owned()
    };
    let viewer = token("viewer");
    // From another folder: nothing local is read.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["--server", &f.served.url])
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove("AIRLOCK_PROJECT")
            .env("AIRLOCK_TOKEN", token)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for args in [
        vec!["runs", "--json"],
        vec!["runs"],
        vec!["runs", "show", &run],
        vec!["runs", "show", &run, "--json"],
    ] {
        let local = airlock(&f.project, &args);
        ok(&local, "local");
        let over_http = remote(&viewer, &args);
        ok(&over_http, "remote");
        assert_eq!(text(&over_http.stdout), text(&local.stdout), "{args:?}");
    }
    // A viewer may not retry; the server's reason is shown, exit 2.
    let refused = remote(&viewer, &["runs", "retry", &run]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("403"),
        "{}",
        text(&refused.stderr)
    );
    // No token: a clear error before any request.
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["--server", &f.served.url, "runs"])
        .env_remove("AIRLOCK_TOKEN")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("AIRLOCK_TOKEN"));
    // An admin sets a secret over the API: write-only, sealed under staging's key, and the
    // hook now verifies against the new value.
    let admin = token("admin");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "--server",
            &f.served.url,
            "secrets",
            "set",
            "HOOK_SECRET",
            "--env",
            "staging",
        ])
        .env("AIRLOCK_TOKEN", &admin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"rotated-secret-value\n")
        .unwrap();
    let set = child.wait_with_output().unwrap();
    ok(&set, "remote secrets set");
    let other = br#"{"id": 10, "amount": 1}"#;
    let (status, _) = f.post(
        "/hooks/staging/orders",
        other,
        &github("rotated-secret-value", other),
    );
    assert_eq!(status, StatusCode::ACCEPTED);
}
