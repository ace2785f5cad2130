//! The executor against a real SQLite store and a real HTTP server on loopback:
//! retries against a flaky target, timeouts, `on_failure` with the failure's context,
//! secrets scoped to their environment, and a finished run never executed again.

use airlock_connectors::secrets::Keyring;
use airlock_core::source::SourceFile;
use airlock_engine::{Engine, EngineOptions, ProjectRuntime, SystemClock};
use airlock_store::sqlite::SqliteStore;
use airlock_store::{NewRun, RunStatus, SealedSecret, StepStatus, Store, WorkflowVersion};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A sink that fails the first `failures` requests with 503, optionally sleeps, and
/// remembers every request's idempotency key and headers.
#[derive(Clone, Default)]
struct Sink {
    failures: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn receive(
    State(sink): State<Sink>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    sink.seen
        .lock()
        .unwrap()
        .push((key, format!("{auth} {body}")));
    let delay = sink.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    if sink.failures.load(Ordering::SeqCst) > 0 {
        sink.failures.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"busy\"}".into(),
        );
    }
    (StatusCode::CREATED, "{\"id\":\"crm-1\"}".into())
}

async fn start_sink(sink: Sink) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/orders", post(receive))
        .with_state(sink);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn manifest(port: u16) -> String {
    format!(
        r#"project: t
connectors:
  crm: {{ kind: http }}
  chat: {{ kind: chat_webhook }}
environments:
  staging:
    egress: [127.0.0.1]
    secrets: [CRM_TOKEN]
    bindings:
      crm: {{ base_url: "http://127.0.0.1:{port}", token: "${{secret:CRM_TOKEN}}" }}
      chat: {{ mode: record }}
  production:
    protected: true
    approvers: [ops]
    egress: [127.0.0.1]
    secrets: [CRM_TOKEN]
    bindings:
      crm: {{ base_url: "http://127.0.0.1:{port}", token: "${{secret:CRM_TOKEN}}" }}
      chat: {{ url: "http://127.0.0.1:{port}/orders" }}
"#
    )
}

const WORKFLOW: &str = r#"name: sync
trigger: manual
steps:
  - id: push
    call: crm.request
    with: { method: POST, path: /orders, json: { id: "{{ trigger.body.id }}" } }
    retry: { attempts: 3, backoff: 10ms, on: [status_5xx, timeout] }
    timeout: 300ms
on_failure:
  - id: alert
    call: chat.post
    with: { text: "sync failed at {{ error.step }}: {{ error.message }}" }
"#;

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    keyring: Keyring,
}

async fn harness(port: u16, keys: &[&str]) -> Harness {
    harness_with(port, keys, 5_000).await
}

async fn harness_with(port: u16, keys: &[&str], lease_ms: i64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let loaded = airlock_core::project::load(vec![
        SourceFile::new("airlock.yaml", manifest(port)),
        SourceFile::new("workflows/sync.yaml", WORKFLOW),
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).unwrap());
    let keyring = Keyring::from_keys(keys.iter().map(|env| (env.to_string(), [7u8; 32])));
    let workflow = &loaded.project.workflows[0].workflow;
    store
        .put_version(&WorkflowVersion {
            id: "v1".into(),
            workflow: "sync".into(),
            canonical: String::from_utf8(airlock_core::canonical::canonical_bytes(workflow))
                .unwrap(),
            source: WORKFLOW.into(),
            created_at: 0,
        })
        .await
        .unwrap();
    let clock = Arc::new(SystemClock);
    let runtime = ProjectRuntime::new(
        store.clone(),
        loaded.project.manifest.clone(),
        dir.path().to_path_buf(),
        keyring.clone(),
        clock.clone(),
    );
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(runtime),
        clock,
        EngineOptions {
            lease_ms,
            inline_sleep_ms: 1_000,
            ..EngineOptions::default()
        },
    ));
    Harness {
        _dir: dir,
        store,
        engine,
        keyring,
    }
}

async fn set_secret(h: &Harness, environment: &str, value: &str) {
    let sealed = h.keyring.seal(environment, "CRM_TOKEN", value).unwrap();
    h.store
        .put_secret(&SealedSecret {
            environment: environment.into(),
            name: "CRM_TOKEN".into(),
            sealed,
            fingerprint: None,
            updated_at: 0,
        })
        .await
        .unwrap();
}

async fn start_run(h: &Harness, environment: &str, id: &str) {
    h.store
        .enqueue(&NewRun {
            id: id.into(),
            environment: environment.into(),
            workflow: "sync".into(),
            version: "v1".into(),
            trigger: json!({ "body": { "id": 42 } }).into(),
            dedupe_key: None,
            created_at: 0,
        })
        .await
        .unwrap();
    h.engine.drain(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_flaky_target_is_retried_with_the_same_key_until_it_accepts() {
    let sink = Sink::default();
    sink.failures.store(2, Ordering::SeqCst);
    let port = start_sink(sink.clone()).await;
    let h = harness(port, &["staging"]).await;
    set_secret(&h, "staging", "tok-staging-123456").await;
    start_run(&h, "staging", "run_a").await;

    let run = h.store.run("run_a").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let seen = sink.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two 503s then a 201");
    assert!(
        seen.iter().all(|(key, _)| key == "staging:run_a:push"),
        "{seen:?}"
    );
    assert!(
        seen[0].1.starts_with("Bearer tok-staging-123456"),
        "the binding's credential is sent"
    );
    let journal = h.store.journal("run_a").await.unwrap();
    let succeeded = journal
        .iter()
        .filter(|e| e.entry.status == StepStatus::Succeeded)
        .count();
    assert_eq!(succeeded, 1);

    // A finished run is never executed again.
    h.engine.drain(Duration::from_millis(50)).await.unwrap();
    assert_eq!(sink.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn timeouts_past_every_attempt_dead_letter_and_on_failure_sees_the_error() {
    let sink = Sink::default();
    sink.delay_ms.store(1_000, Ordering::SeqCst);
    let port = start_sink(sink.clone()).await;
    let h = harness(port, &["staging"]).await;
    set_secret(&h, "staging", "tok-staging-123456").await;
    start_run(&h, "staging", "run_t").await;

    let run = h.store.run("run_t").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Dead);
    let journal = h.store.journal("run_t").await.unwrap();
    let failures: Vec<_> = journal
        .iter()
        .filter(|e| e.entry.step == "push" && e.entry.status == StepStatus::Failed)
        .collect();
    assert_eq!(failures.len(), 3);
    assert!(
        failures[0]
            .entry
            .error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
    let records = h.store.records("staging").await.unwrap();
    assert_eq!(records.len(), 1, "the failure alert is recorded, not sent");
    let text = records[0].record.arguments["text"].as_str().unwrap();
    assert!(text.starts_with("sync failed at push: timed out"), "{text}");
    let dead = h
        .store
        .runs(&airlock_store::RunFilter {
            status: Some(RunStatus::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn staging_cannot_use_a_production_secret_and_nothing_is_sent() {
    let sink = Sink::default();
    let port = start_sink(sink.clone()).await;
    // This process holds both keys; the secret exists only in production.
    let h = harness(port, &["staging", "production"]).await;
    set_secret(&h, "production", "tok-production-999999").await;
    start_run(&h, "staging", "run_s").await;

    let run = h.store.run("run_s").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap();
    assert!(
        error.contains("secret `CRM_TOKEN` not found in environment `staging`"),
        "{error}"
    );
    assert!(
        sink.seen.lock().unwrap().is_empty(),
        "nothing reached the target"
    );
}

#[tokio::test]
async fn a_process_without_the_production_key_cannot_open_production_secrets() {
    let sink = Sink::default();
    let port = start_sink(sink.clone()).await;
    let writer = harness(port, &["staging", "production"]).await;
    let sealed = writer
        .keyring
        .seal("production", "CRM_TOKEN", "tok-production-999999")
        .unwrap();
    // A reader holding only the staging key sees the sealed bytes and nothing more.
    let staging_only = Keyring::from_keys([("staging".to_owned(), [7u8; 32])]);
    assert!(
        staging_only
            .unseal("production", "CRM_TOKEN", &sealed)
            .is_err()
    );
    assert!(!String::from_utf8_lossy(&sealed).contains("tok-production"));
}

#[tokio::test]
async fn secrets_never_reach_the_journal_or_the_store_file() {
    let sink = Sink::default();
    sink.failures.store(1, Ordering::SeqCst);
    let port = start_sink(sink.clone()).await;
    let h = harness(port, &["staging"]).await;
    let secret = "tok-super-secret-value-42";
    set_secret(&h, "staging", secret).await;
    start_run(&h, "staging", "run_r").await;
    assert_eq!(
        h.store.run("run_r").await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    let journal = serde_json::to_string(&h.store.journal("run_r").await.unwrap()).unwrap();
    assert!(!journal.contains(secret));
    let bytes = std::fs::read(h._dir.path().join("airlock.db")).unwrap();
    let wal = std::fs::read(h._dir.path().join("airlock.db-wal")).unwrap_or_default();
    for file in [&bytes, &wal] {
        assert!(
            !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is stored in clear"
        );
    }
}

/// `text` with every byte but letters and digits as `%XX` (what the echo sink sends).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A target that echoes the credential it was sent back in the forms targets do:
/// base64 (standard and URL-safe, inside a `Basic` header's base64 too), percent-encoded
/// in a URL, hex, and inside a JSON text carried as a string.
async fn echo(headers: HeaderMap) -> (StatusCode, String) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let body = json!({
        "b64": STANDARD.encode(&token),
        "b64url": URL_SAFE_NO_PAD.encode(&token),
        "basic": format!("Basic {}", STANDARD.encode(format!("ops:{token}"))),
        "next": format!("https://api.example/cb?token={}&x=1", percent_encoded(&token)),
        "hex": token.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
        "raw_json": serde_json::to_string(&json!({ "seen": token })).unwrap(),
    });
    (StatusCode::CREATED, body.to_string())
}

/// A target echoed the credential base64- or URL-encoded, and those forms were stored in
/// the journal, the run's answer and the SQLite file: the redactor removed the raw value
/// only.
#[tokio::test]
async fn a_secret_echoed_back_in_an_encoded_form_is_stored_and_shown() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/orders", post(echo));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let h = harness(port, &["staging"]).await;
    let secret = "tok/Secret+42=ab&c?d~x";
    set_secret(&h, "staging", secret).await;
    start_run(&h, "staging", "run_e").await;
    let run = h.store.run("run_e").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);

    let forms = [
        secret.to_owned(),
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        percent_encoded(secret),
        secret.bytes().map(|b| format!("{b:02x}")).collect(),
        // The credential's own characters inside `base64("ops:" + secret)`: "ops:" is 4
        // bytes, so the secret starts at offset 1 of a 3-byte group.
        STANDARD.encode(format!("ops:{secret}"))[8..24].to_owned(),
    ];
    let journal = serde_json::to_string(&h.store.journal("run_e").await.unwrap()).unwrap();
    let answer = serde_json::to_string(&run.output).unwrap();
    assert!(
        journal.contains("[redacted]"),
        "the echo was journaled: {journal}"
    );
    let bytes = std::fs::read(h._dir.path().join("airlock.db")).unwrap();
    let wal = std::fs::read(h._dir.path().join("airlock.db-wal")).unwrap_or_default();
    for form in &forms {
        assert!(
            !journal.contains(form.as_str()),
            "{form} in the journal: {journal}"
        );
        assert!(
            !answer.contains(form.as_str()),
            "{form} in the answer: {answer}"
        );
        for file in [&bytes, &wal] {
            assert!(
                !file.windows(form.len()).any(|w| w == form.as_bytes()),
                "{form} is in the store file"
            );
        }
    }
}

#[tokio::test]
async fn a_call_longer_than_the_lease_keeps_its_run_by_heartbeat() {
    let sink = Sink::default();
    sink.delay_ms.store(250, Ordering::SeqCst);
    let port = start_sink(sink.clone()).await;
    // A 90 ms lease against a 250 ms call (the step's timeout is 300 ms).
    let h = harness_with(port, &["staging"], 90).await;
    set_secret(&h, "staging", "tok-staging-123456").await;
    h.store
        .enqueue(&NewRun {
            id: "run_h".into(),
            environment: "staging".into(),
            workflow: "sync".into(),
            version: "v1".into(),
            trigger: json!({ "body": { "id": 1 } }).into(),
            dedupe_key: None,
            created_at: 0,
        })
        .await
        .unwrap();
    let engine = h.engine.clone();
    let worker = tokio::spawn(async move { engine.drain(Duration::from_secs(2)).await });
    // Another worker keeps trying to take the run while the call is in flight.
    let mut stolen = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        stolen += h.store.claim("thief", now, 90, 10).await.unwrap().len();
    }
    worker.await.unwrap().unwrap();
    assert_eq!(stolen, 0, "a live worker's run was taken over");
    assert_eq!(
        h.store.run("run_h").await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        sink.seen.lock().unwrap().len(),
        1,
        "the call reached the target once"
    );
}

fn delivery(id: &str, dedupe_key: Option<&str>) -> NewRun {
    NewRun {
        id: id.into(),
        environment: "staging".into(),
        workflow: "sync".into(),
        version: "v1".into(),
        trigger: json!({ "body": { "id": 7 } }).into(),
        dedupe_key: dedupe_key.map(str::to_owned),
        created_at: now_ms(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A webhook server accepts a run and journals its first call's intent in the same write:
/// the call has not happened yet, and when it does it carries the journaled key.
#[tokio::test]
async fn an_accepted_run_journals_its_first_calls_intent_with_the_acceptance() {
    let sink = Sink::default();
    let port = start_sink(sink.clone()).await;
    let h = harness(port, &["staging"]).await;
    set_secret(&h, "staging", "tok-staging-123456").await;
    let (enqueued, accepted) = h
        .engine
        .accept(
            &delivery("run_a", Some("delivery-1")),
            h.engine.workflow("run_a", "v1").await.unwrap(),
        )
        .await
        .unwrap();
    assert!(enqueued.created);
    let accepted = accepted.expect("a SQLite store claims what it accepts");
    assert_eq!(accepted.run().status, RunStatus::Running);
    let journal = h.store.journal("run_a").await.unwrap();
    let written: Vec<(&str, StepStatus)> = journal
        .iter()
        .map(|e| (e.entry.step.as_str(), e.entry.status))
        .collect();
    assert_eq!(written, [("push", StepStatus::Started)]);
    let key = journal[0].entry.idempotency_key.clone().expect("a key");
    assert!(sink.seen.lock().unwrap().is_empty(), "nothing called yet");

    h.engine.go_on(accepted).await.unwrap();
    let run = h.store.run("run_a").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    let statuses: Vec<StepStatus> = h
        .store
        .journal("run_a")
        .await
        .unwrap()
        .iter()
        .map(|e| e.entry.status)
        .collect();
    assert_eq!(statuses, [StepStatus::Started, StepStatus::Succeeded]);
    let seen = sink.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, key, "the call carries the journaled key");

    let (again, claim) = h
        .engine
        .accept(
            &delivery("run_b", Some("delivery-1")),
            h.engine.workflow("run_b", "v1").await.unwrap(),
        )
        .await
        .unwrap();
    assert!(!again.created && again.run == "run_a" && claim.is_none());
    assert!(h.store.journal("run_b").await.unwrap().is_empty());
    assert_eq!(
        sink.seen.lock().unwrap().len(),
        1,
        "a duplicate calls nothing"
    );
}

/// A process that dies right after accepting (its intent journaled, the call perhaps
/// made) leaves a run that another worker takes over when the lease ends: the call is
/// marked outcome unknown and made again with the same key, once.
#[tokio::test]
async fn a_run_whose_acceptor_died_is_finished_by_another_worker_with_the_same_key() {
    let sink = Sink::default();
    let port = start_sink(sink.clone()).await;
    let h = harness_with(port, &["staging"], 100).await;
    set_secret(&h, "staging", "tok-staging-123456").await;
    let (_, accepted) = h
        .engine
        .accept(
            &delivery("run_c", None),
            h.engine.workflow("run_c", "v1").await.unwrap(),
        )
        .await
        .unwrap();
    let key = h.store.journal("run_c").await.unwrap()[0]
        .entry
        .idempotency_key
        .clone();
    drop(accepted);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let processed = h.engine.drain(Duration::from_secs(2)).await.unwrap();
    assert_eq!(processed, 1, "the expired claim is taken over");
    let journal = h.store.journal("run_c").await.unwrap();
    let statuses: Vec<StepStatus> = journal.iter().map(|e| e.entry.status).collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Started,
            StepStatus::OutcomeUnknown,
            StepStatus::Started,
            StepStatus::Succeeded
        ]
    );
    assert!(journal.iter().all(|e| e.entry.idempotency_key == key));
    assert_eq!(
        h.store.run("run_c").await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    let seen = sink.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(Some(seen[0].0.clone()), key);
}
