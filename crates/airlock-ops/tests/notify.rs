//! Notifications end to end on a real embedded store: the promotion use cases and the real
//! engine report events to the outbox, and the deliverer sends them through production's
//! own bindings to a real chat webhook (an HTTP server on loopback, Slack's
//! `{"text": …}` format) and a real SMTP server (aiosmtpd, started by the test, as the
//! smtp connector's tests do; needs `python3` with `aiosmtpd`: without it this fails).
//! The chat server is down when the first request opens: the promotion is not blocked, and
//! the notification is delivered once the server is up. No message carries a secret.

use airlock_connectors::secrets::Keyring;
use airlock_core::notify::EventKind;
use airlock_core::project::{Project, load};
use airlock_core::source::SourceFile;
use airlock_engine::{Clock, Engine, EngineOptions, ProjectRuntime, SystemClock};
use airlock_ops::notify::{Deliverer, RunAlerts};
use airlock_ops::secrets::{SecretToSet, set};
use airlock_ops::{Actor, Via, deploy, evidence, promotion};
use airlock_store::sqlite::SqliteStore;
use airlock_store::{RunStatus, Store};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CHAT_TOKEN: &str = "T0KEN-chat-9f8e7d6c5b4a";
const SMTP_USER: &str = "mailer";
const SMTP_PASSWORD: &str = "s3cret-Pa55word-for-mail";

fn manifest(chat_port: u16, smtp_port: u16) -> String {
    format!(
        r#"project: notify
connectors:
  chat: {{ kind: chat_webhook }}
  mail: {{ kind: smtp }}
  sink: {{ kind: http }}
  pager: {{ kind: http }}
environments:
  staging:
    approvers: [lead]
    egress: [127.0.0.1]
    notify:
      - {{ connector: chat, events: [run.failed] }}
    bindings:
      chat: {{ mode: record, responses: {{ post: {{ ok: true }} }} }}
      mail: {{ mode: record }}
      sink: {{ base_url: "http://127.0.0.1:9", timeout: 1s }}
      pager: {{ mode: record }}
  production:
    protected: true
    approvers: [ana, bo]
    egress: [127.0.0.1]
    secrets: [CHAT_URL, SMTP_PASSWORD]
    notify:
      - {{ connector: chat }}
      - {{ connector: mail }}
    bindings:
      chat: {{ url: "${{secret:CHAT_URL}}", pages: true }}
      mail:
        host: 127.0.0.1
        port: {smtp_port}
        username: {SMTP_USER}
        password: "${{secret:SMTP_PASSWORD}}"
        from: "Airlock <airlock@acme.example>"
        tls: none
      sink: {{ base_url: "http://127.0.0.1:9", timeout: 1s }}
      pager: {{ base_url: "http://127.0.0.1:{chat_port}", timeout: 5s }}
people:
  ana: {{ chat: "@ana", email: "ana@acme.example" }}
  bo: {{ email: "bo@acme.example" }}
  dev: {{ chat: "@dev", email: "dev@acme.example" }}
  cy: {{ chat: "@cy", email: "cy@acme.example" }}
promotion:
  staging -> production:
    require: {{ tests: pass, approvals: 1 }}
"#
    )
}

fn workflow(greeting: &str) -> String {
    format!(
        r#"name: greet
trigger: {{ webhook: {{ path: greet }} }}
steps:
  - id: route
    switch: trigger.body.mode
    cases:
      fail:
        - id: boom
          fail: "asked to fail"
      ask:
        - id: sign_off
          approval: {{ message: "sign off?", timeout: 1h }}
      soon:
        - id: sign_off_soon
          approval: {{ message: "sign off quickly?", timeout: 10m }}
      dead:
        - id: reach
          call: sink.request
          with: {{ method: GET, path: /x }}
          retry: {{ attempts: 1 }}
    default:
      - id: hello
        map: {{ greeting: "{greeting}" }}
on_failure:
  - id: page_owner
    call: pager.request
    with:
      method: POST
      path: /alerts
      json:
        run: "{{{{ run.id }}}}"
        release: "{{{{ release.id }}}}"
        owner: "{{{{ release.owner }}}}"
        to: "{{{{ release.emails }}}}"
        text: "greet failed in {{{{ env.name }}}} ({{{{ error.message }}}}); {{{{ release.owner_chat }}}} owns it"
"#
    )
}

const SCENARIO: &str = "trigger: { body: { mode: ok } }\nexpect:\n  status: succeeded\n";

fn project(chat_port: u16, smtp_port: u16, greeting: &str) -> Project {
    let loaded = load(vec![
        SourceFile::new("airlock.yaml", manifest(chat_port, smtp_port)),
        SourceFile::new("workflows/greet.yaml", workflow(greeting)),
        SourceFile::new("tests/greet/ok.yaml", SCENARIO),
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    loaded.project
}

/// A chat webhook on loopback, which also takes the workflow's own alerts (`/alerts`):
/// every POST body it receives with its path, answered `ok`.
struct ChatServer {
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl ChatServer {
    fn start(listener: std::net::TcpListener) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut data = Vec::new();
                let mut buffer = [0u8; 8192];
                // Read the head, then the body by its length.
                let body = loop {
                    let Ok(n) = stream.read(&mut buffer) else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&data).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break Some((
                                text[..end].to_owned(),
                                data[end + 4..end + 4 + length].to_vec(),
                            ));
                        }
                    }
                };
                let Some((head, body)) = body else { continue };
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                    sink.lock().unwrap().push((path, value));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Self { received }
    }

    /// The chat messages: what was posted to the bound webhook URL.
    fn texts(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| *path == format!("/hooks/{CHAT_TOKEN}"))
            .map(|(_, v)| v["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The workflow's own `on_failure` alerts, by the run they are about.
    fn alert(&self, run: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, v)| path == "/alerts" && v["run"] == run)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every body received (the path is the bound URL, which holds the token), for the
    /// secret check.
    fn everything(&self) -> String {
        let received = self.received.lock().unwrap();
        format!("{:?}", received.iter().map(|(_, v)| v).collect::<Vec<_>>())
    }
}

/// aiosmtpd on loopback (the smtp connector's own test server); killed on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../airlock-connectors/tests/support/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--dir")
            .arg(&mail)
            .args(["--user", SMTP_USER, "--password", SMTP_PASSWORD])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the aiosmtpd test server (pip install aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("aiosmtpd did not start (needs `pip install aiosmtpd`): {line:?}")
            });
        Self { child, port, dir }
    }

    /// (raw message, recipients) of every message received, in order.
    fn received(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for n in 1.. {
            let base = self.dir.path().join("mail").join(n.to_string());
            let Ok(raw) = std::fs::read_to_string(base.with_extension("eml")) else {
                break;
            };
            let meta: Value = serde_json::from_str(
                &std::fs::read_to_string(base.with_extension("json")).unwrap(),
            )
            .unwrap();
            let to = meta["rcpt_tos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            out.push((raw, to));
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    SystemClock.now()
}

/// The system's clock, read `0` milliseconds ahead: a deliverer that lives later, for the
/// notifications written ahead of their time.
struct Ahead(i64);

impl Clock for Ahead {
    fn now(&self) -> i64 {
        SystemClock.now() + self.0
    }
}

async fn tested(store: &dyn Store, project: &Project) {
    let suites = airlock_core::suite::suites(project, None);
    let reports = airlock_core::suite::run_suites(&suites, &|| {});
    assert!(reports.iter().all(|r| r.passed));
    evidence::record(store, project, &reports, now())
        .await
        .unwrap();
}

/// Delivers until nothing is due (a few passes of two deliverers at once, as two processes
/// on one store would).
async fn deliver(one: &Deliverer, two: &Deliverer) -> usize {
    let mut delivered = 0;
    for _ in 0..5 {
        let (a, b) = tokio::join!(one.deliver_due(), two.deliver_due());
        delivered += a.unwrap() + b.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    delivered
}

async fn promote(store: &dyn Store, project: &Project, author: &str) -> String {
    let promotion = promotion::promote(
        store,
        project,
        "greet",
        "staging",
        "production",
        Actor::local(author),
        None,
        now(),
    )
    .await
    .unwrap();
    assert!(promotion.opened, "{promotion:?}");
    promotion.request.unwrap().request.id
}

async fn run_in_production(store: &Arc<dyn Store>, engine: &Engine, mode: &str) -> String {
    let version = store
        .deployment("production", "greet")
        .await
        .unwrap()
        .unwrap()
        .version;
    let id = engine.new_run_id();
    let mut run = airlock_store::conformance::new_run(&id, "production", "greet", now());
    run.version = version;
    run.trigger = Arc::new(json!({ "body": { "mode": mode }, "headers": {}, "query": {} }));
    store.enqueue(&run).await.unwrap();
    for _ in 0..20 {
        engine.process_run(&id).await.unwrap();
        let status = store.run(&id).await.unwrap().unwrap().status;
        if matches!(
            status,
            RunStatus::Failed | RunStatus::Dead | RunStatus::Waiting | RunStatus::Succeeded
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The observer writes its report on a task of its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_reaches_chat_and_mail_once_without_a_secret_and_a_down_target_blocks_nothing()
{
    let temp = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    // The chat server's port is reserved now and served later: it is down at first.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let chat_port = reserved.local_addr().unwrap().port();
    drop(reserved);

    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&temp.path().join("airlock.db")).unwrap());
    let keyring = Keyring::from_keys([("production".to_owned(), [7u8; 32])]);
    let v1 = project(chat_port, smtp.port, "hello");
    for (name, value) in [
        (
            "CHAT_URL",
            format!("http://127.0.0.1:{chat_port}/hooks/{CHAT_TOKEN}"),
        ),
        ("SMTP_PASSWORD", SMTP_PASSWORD.to_owned()),
    ] {
        set(
            &*store,
            &v1.manifest,
            &keyring,
            None,
            SecretToSet {
                environment: "production",
                name,
                value: &value,
                actor: "ops",
                via: Via::Local,
                now: now(),
            },
        )
        .await
        .unwrap();
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let runtime = Arc::new(ProjectRuntime::new(
        store.clone(),
        v1.manifest.clone(),
        temp.path().to_owned(),
        keyring.clone(),
        clock.clone(),
    ));
    let engine = Engine::new(
        store.clone(),
        runtime.clone(),
        clock.clone(),
        EngineOptions::default(),
    )
    .with_observer(Arc::new(RunAlerts::new(
        store.clone(),
        Arc::new(v1.manifest.clone()),
        clock.clone(),
        None,
    )));
    let one = Deliverer::new(store.clone(), runtime.clone(), clock.clone(), "one");
    let two = Deliverer::new(store.clone(), runtime.clone(), clock.clone(), "two");

    // dev promotes v1 while the chat webhook is down: the request opens all the same.
    deploy::deploy(&*store, &v1, "staging", None, "dev", now())
        .await
        .unwrap();
    tested(&*store, &v1).await;
    let first = promote(&*store, &v1, "dev").await;
    deliver(&one, &two).await;
    let waiting = store.notifications(Some("production")).await.unwrap();
    let chat_row = waiting
        .iter()
        .find(|n| n.notification.target == "chat")
        .expect("the request's chat notification is in the outbox");
    assert!(
        chat_row.delivered_at.is_none() && chat_row.attempts >= 1,
        "{chat_row:?}"
    );
    assert!(
        chat_row
            .last_error
            .as_deref()
            .is_some_and(|e| !e.contains(CHAT_TOKEN)),
        "the failure is kept, without the URL's secret: {chat_row:?}"
    );
    // Mail was up: the approvers were written to.
    let mails = smtp.received();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].1, ["ana@acme.example", "bo@acme.example"]);

    // The webhook comes up: the retry delivers it (after its backoff).
    let chat = ChatServer::start(std::net::TcpListener::bind(("127.0.0.1", chat_port)).unwrap());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    deliver(&one, &two).await;
    assert_eq!(chat.texts().len(), 1, "{:?}", chat.texts());
    assert!(chat.texts()[0].contains(&format!("airlock approve {first}")));

    // ana approves: approved, and released (one approval is enough).
    promotion::decide(&*store, &v1, &first, Actor::local("ana"), true, None, now())
        .await
        .unwrap();
    // v1 runs well in production once: the rate v2 is compared with.
    let fine = run_in_production(&store, &engine, "ok").await;
    assert_eq!(
        store.run(&fine).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    // cy promotes v2; bo rejects it; cy promotes it again and ana approves.
    let v2 = project(chat_port, smtp.port, "hello again");
    deploy::deploy(&*store, &v2, "staging", None, "cy", now())
        .await
        .unwrap();
    tested(&*store, &v2).await;
    let second = promote(&*store, &v2, "cy").await;
    promotion::decide(
        &*store,
        &v2,
        &second,
        Actor::local("bo"),
        false,
        Some("not on a Friday"),
        now(),
    )
    .await
    .unwrap();
    let third = promote(&*store, &v2, "cy").await;
    promotion::decide(&*store, &v2, &third, Actor::local("ana"), true, None, now())
        .await
        .unwrap();
    deliver(&one, &two).await;

    // A run of v2 waits at its approval step, another fails, another is dead-lettered.
    let asked = run_in_production(&store, &engine, "ask").await;
    let failed_v2 = run_in_production(&store, &engine, "fail").await;
    let dead = run_in_production(&store, &engine, "dead").await;
    assert_eq!(
        store.run(&dead).await.unwrap().unwrap().status,
        RunStatus::Dead
    );
    // Another waits with a 10-minute timeout: near after 8 minutes, not before.
    let soon = run_in_production(&store, &engine, "soon").await;
    deliver(&one, &two).await;
    let near = |texts: &[String], run: &str| {
        texts
            .iter()
            .filter(|t| t.contains(&format!("run {run} times out soon at step")))
            .count()
    };
    assert_eq!(near(&chat.texts(), &soon), 0, "not near yet");
    // ana decides the hour-long one: its timeout's warning, written ahead, is dropped.
    store
        .decide_step(&airlock_store::StepDecision {
            run: asked.clone(),
            step: "sign_off".into(),
            approver: "ana".into(),
            approved: true,
            decided_at: now(),
        })
        .await
        .unwrap();
    // Fifty minutes later (deliverers whose clock reads ahead), past both warnings' times:
    // the undecided run's is sent once, with two deliverers and after a "restart" (new
    // deliverers on the same store), and the decided one's never.
    for _ in 0..2 {
        let ahead: Arc<dyn Clock> = Arc::new(Ahead(50 * 60_000));
        let later_one = Deliverer::new(store.clone(), runtime.clone(), ahead.clone(), "one");
        let later_two = Deliverer::new(store.clone(), runtime.clone(), ahead, "two");
        deliver(&later_one, &later_two).await;
    }
    assert_eq!(near(&chat.texts(), &soon), 1, "{:#?}", chat.texts());
    assert_eq!(near(&chat.texts(), &asked), 0, "{:#?}", chat.texts());

    // ana rolls production back to v1 (dev's release); a failed run then alerts dev.
    promotion::rollback(
        &*store,
        &v2,
        "greet",
        "production",
        None,
        Actor::local("ana"),
        now(),
    )
    .await
    .unwrap();
    let failed_v1 = run_in_production(&store, &engine, "fail").await;
    deliver(&one, &two).await;

    let texts = chat.texts();
    let has = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
    for (needle, count) in [
        ("waits for your approval into production", 3),
        ("approved by ana", 2),
        ("rejected by bo", 1),
        ("not on a Friday", 1),
        ("released to production", 2),
        ("rolled back", 1),
        (
            &format!("run {asked} waits for approval at step sign_off") as &str,
            1,
        ),
        (&format!("run {failed_v2} failed") as &str, 1),
        (&format!("run {dead} dead-lettered") as &str, 1),
        (&format!("run {failed_v1} failed") as &str, 1),
        // v2 fails where v1 did not: told once, though two of its runs failed.
        ("fails more than the release before it", 1),
        (
            &format!("run {soon} times out soon at step sign_off_soon") as &str,
            1,
        ),
    ] {
        assert_eq!(has(needle), count, "{needle:?} in {texts:#?}");
    }
    for text in &texts {
        assert!(
            text.contains("greet") && text.contains("production"),
            "{text}"
        );
        let act = text
            .lines()
            .find(|l| l.starts_with("→ "))
            .unwrap_or_default();
        assert!(
            act.contains("airlock ") && act.contains("API: "),
            "the command and the API call to act: {text}"
        );
    }
    // Exactly once per event and target, with two deliverers on the store; every row
    // delivered but the dropped warning, which says why it was not sent.
    let rows = store.notifications(Some("production")).await.unwrap();
    let chat_rows = rows
        .iter()
        .filter(|n| n.notification.target == "chat" && n.delivered_at.is_some())
        .count();
    assert_eq!(texts.len(), chat_rows, "{texts:#?}");
    let (delivered, dropped): (Vec<_>, Vec<_>) =
        rows.iter().partition(|n| n.delivered_at.is_some());
    assert_eq!(
        dropped.len(),
        2,
        "chat and mail of one warning: {dropped:#?}"
    );
    for row in dropped {
        assert!(
            row.notification.id.contains(&asked)
                && row.notification.event == "step.timeout_approaching"
                && row
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("not sent")),
            "{row:#?}"
        );
    }
    // Every kind of event there is reached both targets, for real.
    for kind in EventKind::ALL {
        for target in ["chat", "mail"] {
            assert!(
                delivered
                    .iter()
                    .any(|n| n.notification.event == kind.as_str()
                        && n.notification.target == target),
                "no {} delivered to {target}: {delivered:#?}",
                kind.as_str()
            );
        }
    }

    // The workflow's own on_failure alert addresses the owner of the release the run ran
    // on, from `{{ release.* }}`: cy (who asked for v2, ana approving), then after the
    // rollback dev (who owns v1's release).
    let v2_release = store.releases("production", "greet").await.unwrap();
    let alert = chat.alert(&failed_v2);
    assert_eq!(alert.len(), 1, "{alert:#?}");
    assert_eq!(alert[0]["owner"], "cy");
    assert_eq!(
        alert[0]["to"],
        json!(["cy@acme.example", "ana@acme.example"])
    );
    assert!(
        alert[0]["text"].as_str().unwrap().contains("@cy owns it")
            && alert[0]["text"].as_str().unwrap().contains("asked to fail"),
        "{alert:#?}"
    );
    assert!(
        v2_release
            .iter()
            .any(|r| r.release.id == alert[0]["release"] && r.release.author == "cy"),
        "{alert:#?}"
    );
    let alert = chat.alert(&failed_v1);
    assert_eq!(alert.len(), 1, "{alert:#?}");
    assert_eq!(alert[0]["owner"], "dev");
    assert_eq!(
        alert[0]["to"],
        json!(["dev@acme.example", "ana@acme.example"])
    );
    assert_eq!(
        chat.alert(&dead)[0]["owner"],
        "cy",
        "a dead-lettered run too"
    );

    let mails = smtp.received();
    let to_of = |needle: &str| -> Vec<Vec<String>> {
        mails
            .iter()
            .filter(|(raw, _)| raw.contains(needle))
            .map(|(_, to)| to.clone())
            .collect()
    };
    // The failed run of v2 reached cy, who released it (and ana, who approved it); after
    // the rollback the failed run reached dev, who owns v1's release.
    assert_eq!(
        to_of(&failed_v2),
        [vec![
            "cy@acme.example".to_owned(),
            "ana@acme.example".to_owned()
        ]]
    );
    assert_eq!(
        to_of(&failed_v1),
        [vec![
            "dev@acme.example".to_owned(),
            "ana@acme.example".to_owned()
        ]]
    );
    assert_eq!(
        to_of(&asked),
        [vec![
            "ana@acme.example".to_owned(),
            "bo@acme.example".to_owned()
        ]]
    );
    for (raw, _) in &mails {
        assert!(raw.contains("production"), "{raw}");
    }

    // No secret in any message, any outbox row or any error.
    let everything = format!(
        "{} {mails:?} {}",
        chat.everything(),
        serde_json::to_string(&store.notifications(None).await.unwrap()).unwrap()
    );
    for secret in [CHAT_TOKEN, SMTP_PASSWORD] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    // Staging's run.failed would go to staging's own (recorded) chat: nothing of
    // production's reached it, and production's events never reach staging's targets.
    assert!(
        store
            .notifications(Some("staging"))
            .await
            .unwrap()
            .is_empty()
    );
}
