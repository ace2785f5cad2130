//! The `chat_webhook` connector against a real Slack-like webhook on loopback.

use airlock_connectors::chat::ChatConnector;
use airlock_connectors::egress::StaticResolver;
use airlock_connectors::{
    CallError, CallRequest, CheckContext, Connector, Egress, ResolvedBinding,
};
use airlock_core::model::ConnectorKind;
use airlock_core::model::workflow::RetryOn;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The secret part of the webhook URL, as Slack's are.
const HOOK_PATH: &str = "/services/T000/B000/hook-secret-XYZ";

#[derive(Debug, Clone)]
struct Posted {
    path: String,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    json: Value,
}

#[derive(Default)]
struct Hook {
    posted: Mutex<Vec<Posted>>,
}

impl Hook {
    fn posted(&self) -> Vec<Posted> {
        self.posted.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

async fn webhook(
    State(hook): State<Arc<Hook>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let posted = Posted {
        path: uri.path().to_owned(),
        content_type: header("content-type"),
        idempotency_key: header("idempotency-key"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    if let Ok(mut list) = hook.posted.lock() {
        list.push(posted);
    }
    if uri.path() == HOOK_PATH {
        // Slack answers a plain `ok`.
        (StatusCode::OK, "ok").into_response()
    } else if uri.path() == "/broken" {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal_error").into_response()
    } else {
        (StatusCode::NOT_FOUND, "no_service").into_response()
    }
}

async fn serve() -> (u16, Arc<Hook>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let hook = Arc::new(Hook::default());
    let app = Router::new()
        .fallback(webhook)
        .with_state(Arc::clone(&hook));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hook)
}

fn egress(allowed: &[&str]) -> Arc<Egress> {
    Arc::new(
        Egress::new("staging", allowed.iter().map(|h| (*h).to_owned()).collect()).with_resolver(
            Arc::new(
                StaticResolver::new()
                    .host("hooks.chat.test", ["127.0.0.1".parse().expect("ip")])
                    .host(
                        "metadata.chat.test",
                        ["169.254.169.254".parse().expect("ip")],
                    ),
            ),
        ),
    )
}

fn chat(url: &str, egress: &Arc<Egress>) -> ChatConnector {
    let mut settings = serde_json::Map::new();
    settings.insert("url".to_owned(), Value::String(url.to_owned()));
    ChatConnector::new(
        &ResolvedBinding {
            connector: "alerts".to_owned(),
            kind: ConnectorKind::ChatWebhook,
            environment: "staging".to_owned(),
            settings,
            base_dir: std::env::temp_dir(),
        },
        Arc::clone(egress),
    )
    .expect("connector")
}

fn post(args: Value) -> CallRequest {
    CallRequest {
        run: "run-9".to_owned(),
        step: "notify".to_owned(),
        action: "post".to_owned(),
        args,
        idempotency_key: "staging:run-9:notify".to_owned(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn the_message_arrives_as_slack_expects() {
    let (port, hook) = serve().await;
    let egress = egress(&["127.0.0.1", "hooks.chat.test"]);
    let connector = chat(
        &format!("http://hooks.chat.test:{port}{HOOK_PATH}"),
        &egress,
    );
    let answer = connector
        .call(&post(
            json!({ "text": "Order 7 needs review {{ not evaluated }}" }),
        ))
        .await
        .expect("posted");
    assert_eq!(answer, json!({ "ok": true, "status": 200 }));
    assert!(!format!("{connector:?}").contains("hook-secret"));
    let posted = hook.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].path, HOOK_PATH);
    assert_eq!(posted[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        posted[0].idempotency_key.as_deref(),
        Some("staging:run-9:notify")
    );
    assert_eq!(
        posted[0].json,
        json!({ "text": "Order 7 needs review {{ not evaluated }}" })
    );
}

#[tokio::test]
async fn blocks_pass_through_unchanged() {
    let (port, hook) = serve().await;
    let egress = egress(&["127.0.0.1"]);
    let blocks = json!([
        { "type": "header", "text": { "type": "plain_text", "text": "New order" } },
        { "type": "section", "text": { "type": "mrkdwn", "text": "*Total:* 42.00 EUR" },
          "accessory": { "type": "button", "text": { "type": "plain_text", "text": "Open" },
                         "url": "https://shop.example/orders/7" } },
        { "type": "divider" }
    ]);
    let connector = chat(&format!("http://127.0.0.1:{port}{HOOK_PATH}"), &egress);
    connector
        .call(&post(
            json!({ "text": "New order", "blocks": blocks.clone() }),
        ))
        .await
        .expect("posted");
    assert_eq!(
        hook.posted()[0].json,
        json!({ "text": "New order", "blocks": blocks })
    );
}

#[tokio::test]
async fn errors_are_statuses_and_name_no_url() {
    let (port, hook) = serve().await;
    let egress = egress(&["127.0.0.1"]);
    let broken = chat(&format!("http://127.0.0.1:{port}/broken"), &egress);
    let error = broken
        .call(&post(json!({ "text": "hi" })))
        .await
        .expect_err("500");
    assert!(
        matches!(&error, CallError::Status { status: 500, body } if body == "internal_error"),
        "{error:?}"
    );
    assert_eq!(error.retry_class(), Some(RetryOn::Status5xx));
    let missing_text = chat(&format!("http://127.0.0.1:{port}{HOOK_PATH}"), &egress)
        .call(&post(json!({ "blocks": [] })))
        .await
        .expect_err("no text");
    assert!(matches!(missing_text, CallError::Invalid(_)));
    assert_eq!(hook.posted().len(), 1);

    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let error = chat(
        &format!("http://127.0.0.1:{closed_port}{HOOK_PATH}"),
        &egress,
    )
    .call(&post(json!({ "text": "hi" })))
    .await
    .expect_err("closed");
    assert!(matches!(error, CallError::Connection(_)), "{error:?}");
    assert!(!error.to_string().contains("hook-secret"), "{error}");
}

#[tokio::test]
async fn check_resolves_within_egress_and_posts_nothing() {
    let (port, hook) = serve().await;
    let egress = egress(&["127.0.0.1", "hooks.chat.test", "metadata.chat.test"]);
    let ok = chat(
        &format!("http://hooks.chat.test:{port}{HOOK_PATH}"),
        &egress,
    )
    .check(&CheckContext::default())
    .await;
    assert!(ok.ok, "{ok:?}");
    assert!(ok.detail.contains("hooks.chat.test"), "{ok:?}");
    assert!(ok.detail.contains("resolves to 127.0.0.1"), "{ok:?}");
    assert!(ok.detail.contains("nothing was posted"), "{ok:?}");
    assert!(!ok.detail.contains("hook-secret"), "{ok:?}");
    assert!(hook.posted().is_empty());

    let unlisted = chat(
        "https://hooks.slack.example/services/T/B/hook-secret-XYZ",
        &egress,
    )
    .check(&CheckContext::default())
    .await;
    assert!(!unlisted.ok, "{unlisted:?}");
    assert!(
        unlisted.detail.contains("hooks.slack.example"),
        "{unlisted:?}"
    );
    assert!(!unlisted.detail.contains("hook-secret"), "{unlisted:?}");

    let metadata = chat("http://metadata.chat.test/hook", &egress)
        .check(&CheckContext::default())
        .await;
    assert!(!metadata.ok, "{metadata:?}");
    assert!(metadata.detail.contains("169.254.169.254"), "{metadata:?}");

    let refused = chat(
        "https://hooks.slack.example/services/T/B/hook-secret-XYZ",
        &egress,
    )
    .call(&post(json!({ "text": "hi" })))
    .await
    .expect_err("refused");
    assert!(matches!(refused, CallError::Egress(_)), "{refused:?}");
}
