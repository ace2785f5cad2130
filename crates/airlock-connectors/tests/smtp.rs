//! The smtp connector against a real SMTP server on loopback: Python's aiosmtpd, started
//! by each test (`tests/support/smtp_server.py`), which writes every message it accepts
//! to a directory. Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`); without them
//! these tests fail, they do not skip.

use airlock_connectors::smtp::{SmtpConnector, message_id};
use airlock_connectors::{
    CallError, CallRequest, CheckContext, Connector, Egress, ResolvedBinding,
};
use airlock_core::model::ConnectorKind;
use airlock_core::model::workflow::RetryOn;
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "mailer";
const PASSWORD: &str = "s3cret-Pa55word";

/// An aiosmtpd process on 127.0.0.1; killed on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start(auth_required: bool) -> Self {
        match Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output()
        {
            Err(e) => panic!(
                "the smtp tests need python3 with aiosmtpd, but python3 could not be run ({e}); \
                 install python3 and run `pip install aiosmtpd`"
            ),
            Ok(out) if !out.status.success() => panic!(
                "the smtp tests need the aiosmtpd Python package: run `pip install aiosmtpd` \
                 ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Ok(_) => {}
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("mail dir");
        let stderr = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .arg("--dir")
            .arg(&mail_dir)
            .args(["--user", USER, "--password", PASSWORD])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if auth_required {
            command.arg("--auth-required");
        }
        let mut child = command.spawn().expect("start the aiosmtpd test server");
        let stdout = child.stdout.take().expect("server stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("the aiosmtpd test server did not start (printed {line:?}):\n{log}");
        };
        Self { child, port, dir }
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The messages received so far, in order: (raw message, envelope).
    fn received(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for n in 1.. {
            let eml = self.mail_dir().join(format!("{n}.eml"));
            let Ok(raw) = std::fs::read_to_string(&eml) else {
                break;
            };
            let meta = std::fs::read_to_string(self.mail_dir().join(format!("{n}.json")))
                .expect("envelope file");
            out.push((raw, serde_json::from_str(&meta).expect("envelope json")));
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

fn binding(port: u16, settings: Value) -> ResolvedBinding {
    let mut map = Map::new();
    map.insert("host".into(), json!("127.0.0.1"));
    map.insert("port".into(), json!(port));
    map.insert("from".into(), json!("Acme Ops <ops@acme.example>"));
    map.insert("tls".into(), json!("none"));
    if let Value::Object(extra) = settings {
        map.extend(extra);
    }
    ResolvedBinding {
        connector: "mail".into(),
        kind: ConnectorKind::Smtp,
        environment: "staging".into(),
        settings: map,
        base_dir: PathBuf::from("."),
    }
}

fn egress() -> Arc<Egress> {
    Arc::new(Egress::new("staging", vec!["127.0.0.1".into()]))
}

fn connector(port: u16, settings: Value) -> SmtpConnector {
    SmtpConnector::new(&binding(port, settings), egress()).expect("connector")
}

fn with_auth(password: &str) -> Value {
    json!({ "username": USER, "password": password })
}

fn send_request(key: &str, args: Value) -> CallRequest {
    CallRequest {
        run: "run-1".into(),
        step: "notify".into(),
        action: "send".into(),
        args,
        idempotency_key: key.into(),
        timeout: Duration::from_secs(10),
    }
}

/// The header `name` of a raw message (unfolded), if present.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn body(raw: &str) -> String {
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.trim_end().to_owned())
        .unwrap_or_default()
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test]
async fn send_delivers_the_message_with_a_message_id_from_the_key() {
    let server = SmtpServer::start(true);
    let mail = connector(server.port, with_auth(PASSWORD));
    let key = "staging/run-1/notify";
    let result = mail
        .call(&send_request(
            key,
            json!({
                "to": ["Ana Lima <ana@example.com>", "bo@example.com"],
                "cc": "carol@example.com",
                "reply_to": "support@acme.example",
                "subject": "Order 1042 received",
                "body": "Hello Ana,\nyour order 1042 is in.\n-- Acme",
            }),
        ))
        .await
        .expect("send");

    let expected_id = message_id(key);
    assert_eq!(
        result,
        json!({
            "accepted": ["ana@example.com", "bo@example.com", "carol@example.com"],
            "message_id": expected_id,
        })
    );

    let received = server.received();
    assert_eq!(received.len(), 1, "exactly one message arrived");
    let (raw, envelope) = &received[0];
    assert_eq!(envelope["mail_from"], json!("ops@acme.example"));
    assert_eq!(
        envelope["rcpt_tos"],
        json!(["ana@example.com", "bo@example.com", "carol@example.com"])
    );
    let from = header(raw, "From").expect("From header");
    assert!(
        from.contains("Acme Ops") && from.contains("<ops@acme.example>"),
        "{from}"
    );
    let to = header(raw, "To").expect("To header");
    assert!(
        to.contains("Ana Lima") && to.contains("<ana@example.com>"),
        "{to}"
    );
    assert!(to.contains("bo@example.com"), "{to}");
    assert_eq!(header(raw, "Cc").as_deref(), Some("carol@example.com"));
    assert_eq!(
        header(raw, "Reply-To").as_deref(),
        Some("support@acme.example")
    );
    assert_eq!(
        header(raw, "Subject").as_deref(),
        Some("Order 1042 received")
    );
    assert_eq!(header(raw, "Message-ID"), Some(expected_id.clone()));
    assert!(
        expected_id.len() == "<@airlock>".len() + 64,
        "sha256 hex: {expected_id}"
    );
    assert_eq!(body(raw), "Hello Ana,\r\nyour order 1042 is in.\r\n-- Acme");
}

#[tokio::test]
async fn a_repeat_with_the_same_key_carries_the_same_message_id() {
    let server = SmtpServer::start(false);
    let mail = connector(server.port, json!({}));
    let args = json!({ "to": "ana@example.com", "subject": "Hi", "body": "one" });
    let first = mail
        .call(&send_request("k-1", args.clone()))
        .await
        .expect("first");
    let again = mail
        .call(&send_request("k-1", args.clone()))
        .await
        .expect("repeat");
    let other = mail.call(&send_request("k-2", args)).await.expect("other");
    assert_eq!(first["message_id"], again["message_id"]);
    assert_ne!(first["message_id"], other["message_id"]);
    let ids: Vec<Option<String>> = server
        .received()
        .iter()
        .map(|(raw, _)| header(raw, "Message-ID"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], ids[1], "receivers can dedupe the repeat");
    assert_ne!(ids[0], ids[2]);
}

#[tokio::test]
async fn check_passes_with_the_right_password() {
    let server = SmtpServer::start(true);
    let outcome = connector(server.port, with_auth(PASSWORD))
        .check(&CheckContext::default())
        .await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        outcome.detail,
        format!("connected to 127.0.0.1:{}, EHLO ok, AUTH ok", server.port)
    );
    assert!(server.received().is_empty(), "check sends no mail");
}

#[tokio::test]
async fn a_wrong_password_fails_check_and_send_without_showing_it() {
    let server = SmtpServer::start(true);
    let wrong = "Wr0ng-Secret-Value";
    let mail = connector(server.port, with_auth(wrong));
    let outcome = mail.check(&CheckContext::default()).await;
    assert!(!outcome.ok, "{outcome:?}");
    assert!(
        outcome.detail.contains("refused the credentials"),
        "{outcome:?}"
    );
    assert!(!outcome.detail.contains(wrong), "{outcome:?}");
    assert!(!outcome.detail.contains(PASSWORD), "{outcome:?}");

    let error = mail
        .call(&send_request(
            "k",
            json!({ "to": "ana@example.com", "subject": "Hi", "body": "x" }),
        ))
        .await
        .expect_err("wrong password");
    assert!(matches!(error, CallError::Invalid(_)), "{error:?}");
    assert_eq!(error.retry_class(), None, "retrying cannot fix a password");
    assert!(!format!("{error} {error:?}").contains(wrong));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error_and_fails_check() {
    let port = closed_port();
    let mail = connector(port, json!({}));
    let error = mail
        .call(&send_request(
            "k",
            json!({ "to": "ana@example.com", "subject": "Hi", "body": "x" }),
        ))
        .await
        .expect_err("closed port");
    assert!(matches!(error, CallError::Connection(_)), "{error:?}");
    assert_eq!(error.retry_class(), Some(RetryOn::Connection));
    let outcome = mail.check(&CheckContext::default()).await;
    assert!(!outcome.ok, "{outcome:?}");
    assert!(
        outcome.detail.contains(&format!("127.0.0.1:{port}")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_host_outside_egress_is_refused() {
    let server = SmtpServer::start(false);
    let only_elsewhere = Arc::new(Egress::new("staging", vec!["smtp.allowed.example".into()]));
    let mail =
        SmtpConnector::new(&binding(server.port, json!({})), only_elsewhere).expect("connector");
    let error = mail
        .call(&send_request(
            "k",
            json!({ "to": "ana@example.com", "subject": "Hi", "body": "x" }),
        ))
        .await
        .expect_err("egress");
    match &error {
        CallError::Egress(refused) => {
            assert_eq!(refused.host, "127.0.0.1");
            assert_eq!(refused.environment, "staging");
        }
        other => panic!("expected an egress refusal, got {other:?}"),
    }
    let outcome = mail.check(&CheckContext::default()).await;
    assert!(!outcome.ok);
    assert!(outcome.detail.contains("egress"), "{outcome:?}");
    assert!(server.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn permanent_replies_fail_and_transient_ones_retry() {
    let server = SmtpServer::start(false);
    let mail = connector(server.port, json!({}));
    let rejected = mail
        .call(&send_request(
            "k1",
            json!({ "to": "nobody@reject.example", "subject": "Hi", "body": "x" }),
        ))
        .await
        .expect_err("550");
    match &rejected {
        CallError::Failed(text) => {
            assert!(text.contains("550"), "{text}");
            assert!(text.contains("mailbox unavailable"), "{text}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(rejected.retry_class(), None);

    let busy = mail
        .call(&send_request(
            "k2",
            json!({ "to": "someone@busy.example", "subject": "Hi", "body": "x" }),
        ))
        .await
        .expect_err("451");
    assert!(matches!(busy, CallError::Connection(_)), "{busy:?}");
    assert!(busy.to_string().contains("451"), "{busy}");
    assert_eq!(busy.retry_class(), Some(RetryOn::Connection));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn starttls_is_required_by_default() {
    let server = SmtpServer::start(false);
    let mail = connector(server.port, json!({ "tls": "starttls" }));
    let outcome = mail.check(&CheckContext::default()).await;
    assert!(!outcome.ok, "{outcome:?}");
    assert!(outcome.detail.contains("STARTTLS"), "{outcome:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let mail = connector(port, json!({}));
    let mut request = send_request(
        "k",
        json!({ "to": "ana@example.com", "subject": "Hi", "body": "x" }),
    );
    request.timeout = Duration::from_millis(300);
    let error = mail.call(&request).await.expect_err("timeout");
    assert!(matches!(error, CallError::Timeout(_)), "{error:?}");
    assert_eq!(error.retry_class(), Some(RetryOn::Timeout));
}

#[tokio::test]
async fn bad_arguments_and_settings_are_invalid() {
    let mail = connector(closed_port(), json!({}));
    for args in [
        json!({ "subject": "Hi", "body": "x" }),
        json!({ "to": [], "subject": "Hi", "body": "x" }),
        json!({ "to": "not an address", "subject": "Hi", "body": "x" }),
        json!({ "to": "a@example.com", "subject": "Hi\r\nBcc: x@evil.example", "body": "x" }),
        json!({ "to": "a@example.com", "subject": "Hi" }),
    ] {
        let error = mail
            .call(&send_request("k", args.clone()))
            .await
            .expect_err("invalid");
        assert!(matches!(error, CallError::Invalid(_)), "{args}: {error:?}");
    }
    for settings in [
        json!({ "host": null }),
        json!({ "from": "nope" }),
        json!({ "tls": "ssl3" }),
        json!({ "port": 70000 }),
        json!({ "username": "u" }),
    ] {
        let error = SmtpConnector::new(&binding(25, settings.clone()), egress())
            .expect_err("invalid settings");
        assert!(
            matches!(error, CallError::Invalid(_)),
            "{settings}: {error:?}"
        );
    }
}

#[tokio::test]
async fn implicit_tls_against_a_plain_server_fails_the_handshake() {
    let server = SmtpServer::start(false);
    let mail = connector(server.port, json!({ "tls": "tls" }));
    let mut request = send_request(
        "k",
        json!({ "to": "ana@example.com", "subject": "Hi", "body": "x" }),
    );
    request.timeout = Duration::from_secs(5);
    let error = mail.call(&request).await.expect_err("no TLS there");
    assert!(matches!(error, CallError::Connection(_)), "{error:?}");
    let outcome = mail.check(&CheckContext::default()).await;
    assert!(!outcome.ok, "{outcome:?}");
    assert!(server.received().is_empty());
}
