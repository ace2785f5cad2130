//! The `http` connector against real servers on loopback.

use airlock_connectors::egress::StaticResolver;
use airlock_connectors::http::HttpConnector;
use airlock_connectors::{
    CallError, CallRequest, CheckContext, Connector, Egress, ResolvedBinding,
};
use airlock_core::model::ConnectorKind;
use airlock_core::model::workflow::RetryOn;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "tok-9f8e7d-secret";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Sink {
    seen: Mutex<Vec<Seen>>,
}

impl Sink {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn answer(
    State(sink): State<Arc<Sink>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let authorized =
        seen.headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {TOKEN}"));
    if let Ok(mut list) = sink.seen.lock() {
        list.push(seen);
    }
    match uri.path() {
        "/api/orders" => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"created": 7}"#,
        )
            .into_response(),
        "/api/text" => (StatusCode::OK, "plain words").into_response(),
        "/api/empty" => StatusCode::NO_CONTENT.into_response(),
        "/api/unavailable" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error": "down"}"#,
        )
            .into_response(),
        "/api/busy" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        "/api/missing" => (StatusCode::NOT_FOUND, "no such thing").into_response(),
        "/api/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, "late").into_response()
        }
        "/api/health" | "/health" if authorized => (StatusCode::OK, "fine").into_response(),
        "/api/health" | "/health" => (StatusCode::UNAUTHORIZED, "who are you").into_response(),
        _ => (StatusCode::OK, "ok").into_response(),
    }
}

async fn serve() -> (u16, Arc<Sink>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let sink = Arc::new(Sink::default());
    let app = Router::new().fallback(answer).with_state(Arc::clone(&sink));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, sink)
}

fn staging() -> Arc<Egress> {
    Arc::new(
        Egress::new(
            "staging",
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        )
        .with_resolver(Arc::new(
            StaticResolver::new().host("localhost", ["127.0.0.1".parse().expect("ip")]),
        )),
    )
}

fn connector(settings: Value, egress: &Arc<Egress>) -> Result<HttpConnector, CallError> {
    let settings = match settings {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    HttpConnector::new(
        &ResolvedBinding {
            connector: "crm".to_owned(),
            kind: ConnectorKind::Http,
            environment: "staging".to_owned(),
            settings,
            base_dir: std::env::temp_dir(),
        },
        Arc::clone(egress),
    )
}

fn crm(port: u16, egress: &Arc<Egress>) -> HttpConnector {
    connector(
        json!({
            "base_url": format!("http://127.0.0.1:{port}/api"),
            "token": TOKEN,
            "headers": { "X-Team": "ops", "X-Version": 3 },
            "health": "/health",
        }),
        egress,
    )
    .expect("connector")
}

fn request(args: Value) -> CallRequest {
    CallRequest {
        run: "run-1".to_owned(),
        step: "create".to_owned(),
        action: "request".to_owned(),
        args,
        idempotency_key: "staging:run-1:create".to_owned(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_request_arrives_with_everything_it_carries() {
    let (port, sink) = serve().await;
    let egress = staging();
    let answer = crm(port, &egress)
        .call(&request(json!({
            "method": "POST",
            "path": "/orders",
            "query": { "dry_run": false, "n": 2, "tag": ["a", "b c"] },
            "headers": { "X-Trace": "t-1" },
            "json": { "id": 7, "items": [{ "sku": "X1", "qty": 2 }] },
        })))
        .await
        .expect("created");
    assert_eq!(answer, json!({ "status": 201, "body": { "created": 7 } }));
    let seen = sink.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/api/orders");
    assert_eq!(
        seen.query.as_deref(),
        Some("dry_run=false&n=2&tag=a&tag=b+c")
    );
    assert_eq!(seen.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(seen.headers["idempotency-key"], "staging:run-1:create");
    assert_eq!(seen.headers["x-team"], "ops");
    assert_eq!(seen.headers["x-version"], "3");
    assert_eq!(seen.headers["x-trace"], "t-1");
    assert_eq!(seen.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&seen.body).expect("JSON body");
    assert_eq!(
        body,
        json!({ "id": 7, "items": [{ "sku": "X1", "qty": 2 }] })
    );
}

#[tokio::test]
async fn methods_string_bodies_and_plain_answers() {
    let (port, sink) = serve().await;
    let egress = staging();
    let crm = crm(port, &egress);
    for method in ["GET", "put", "PATCH", "DELETE"] {
        let answer = crm
            .call(&request(
                json!({ "method": method, "path": "/text", "body": "raw text" }),
            ))
            .await
            .expect("answer");
        assert_eq!(answer, json!({ "status": 200, "body": "plain words" }));
    }
    let methods: Vec<String> = sink.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["GET", "PUT", "PATCH", "DELETE"]);
    assert!(sink.seen().iter().all(|s| s.body == b"raw text"));
    let empty = crm
        .call(&request(json!({ "method": "DELETE", "path": "/empty" })))
        .await
        .expect("no content");
    assert_eq!(empty, json!({ "status": 204, "body": null }));
}

#[tokio::test]
async fn error_statuses_carry_their_retry_class() {
    let (port, _sink) = serve().await;
    let egress = staging();
    let crm = crm(port, &egress);
    let unavailable = crm
        .call(&request(
            json!({ "method": "POST", "path": "/unavailable" }),
        ))
        .await
        .expect_err("503");
    assert!(
        matches!(&unavailable, CallError::Status { status: 503, body } if body == &json!({ "error": "down" })),
        "{unavailable:?}"
    );
    assert_eq!(unavailable.retry_class(), Some(RetryOn::Status5xx));
    assert!(unavailable.may_have_reached_target());
    let busy = crm
        .call(&request(json!({ "method": "GET", "path": "/busy" })))
        .await
        .expect_err("429");
    assert!(
        matches!(&busy, CallError::Status { status: 429, body } if body == "slow down"),
        "{busy:?}"
    );
    assert_eq!(busy.retry_class(), Some(RetryOn::Status429));
    let missing = crm
        .call(&request(json!({ "method": "GET", "path": "/missing" })))
        .await
        .expect_err("404");
    assert!(matches!(missing, CallError::Status { status: 404, .. }));
    assert_eq!(missing.retry_class(), None);
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let (port, _sink) = serve().await;
    let egress = staging();
    let mut slow = request(json!({ "method": "GET", "path": "/slow" }));
    slow.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let error = crm(port, &egress).call(&slow).await.expect_err("timeout");
    assert!(
        matches!(error, CallError::Timeout(d) if d == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.retry_class(), Some(RetryOn::Timeout));
    assert!(error.may_have_reached_target());
    // The binding's `timeout` caps the step's.
    let capped = connector(
        json!({ "base_url": format!("http://127.0.0.1:{port}/api"), "timeout": "200ms" }),
        &egress,
    )
    .expect("connector");
    let mut long = request(json!({ "method": "GET", "path": "/slow" }));
    long.timeout = Duration::from_secs(30);
    let error = capped.call(&long).await.expect_err("capped");
    assert!(
        matches!(error, CallError::Timeout(d) if d == Duration::from_millis(200)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connection_failure_that_names_no_secret() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let egress = staging();
    let closed = connector(
        json!({
            "base_url": format!("http://127.0.0.1:{port}/api?api_key=query-secret-123"),
            "token": TOKEN,
            "headers": { "X-Api-Key": "header-secret-456" },
        }),
        &egress,
    )
    .expect("connector");
    let error = closed
        .call(&request(
            json!({ "method": "POST", "path": "/orders", "json": {} }),
        ))
        .await
        .expect_err("refused");
    assert!(matches!(error, CallError::Connection(_)), "{error:?}");
    assert_eq!(error.retry_class(), Some(RetryOn::Connection));
    assert!(!error.may_have_reached_target());
    let message = error.to_string();
    let debug = format!("{closed:?} {error:?}");
    for secret in [TOKEN, "query-secret-123", "header-secret-456"] {
        assert!(!message.contains(secret), "{message}");
        assert!(!debug.contains(secret), "{debug}");
    }
    let check = closed.check(&CheckContext::default()).await;
    assert!(
        check.ok,
        "no health request: only resolution is checked: {check:?}"
    );
}

#[tokio::test]
async fn check_sends_the_health_request_with_the_credential() {
    let (port, sink) = serve().await;
    let egress = staging();
    let outcome = crm(port, &egress).check(&CheckContext::default()).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.detail, "GET /health → 200");
    assert_eq!(sink.seen()[0].path, "/api/health");

    let wrong = connector(
        json!({
            "base_url": format!("http://localhost:{port}"),
            "token": "wrong-token-value",
            "health": "/health",
        }),
        &egress,
    )
    .expect("connector");
    let outcome = wrong.check(&CheckContext::default()).await;
    assert!(!outcome.ok, "{outcome:?}");
    assert_eq!(outcome.detail, "GET /health → 401");

    let undeclared = connector(
        json!({ "base_url": format!("http://localhost:{port}") }),
        &egress,
    )
    .expect("connector");
    let outcome = undeclared.check(&CheckContext::default()).await;
    assert!(outcome.ok, "{outcome:?}");
    assert!(
        outcome.detail.contains("resolves to 127.0.0.1"),
        "{outcome:?}"
    );
    assert!(
        outcome.detail.contains("no health request is declared"),
        "{outcome:?}"
    );
    assert_eq!(sink.seen().len(), 2, "the undeclared check sends nothing");
}

#[tokio::test]
async fn arguments_that_would_leave_the_base_url_are_invalid() {
    let (port, sink) = serve().await;
    let egress = staging();
    let crm = crm(port, &egress);
    for args in [
        json!({ "method": "GET", "path": "//evil.example/x" }),
        json!({ "method": "GET", "path": "http://evil.example/x" }),
        json!({ "method": "GET", "path": "/\\evil.example" }),
        json!({ "method": "GET", "path": "orders" }),
        json!({ "method": "TRACE", "path": "/orders" }),
        json!({ "path": "/orders" }),
        json!({ "method": "GET" }),
        json!({ "method": "POST", "path": "/o", "json": {}, "body": "x" }),
        json!({ "method": "GET", "path": "/o", "headers": { "Host": "internal" } }),
        json!({ "method": "GET", "path": "/o", "query": { "deep": { "x": 1 } } }),
    ] {
        let error = crm.call(&request(args.clone())).await.expect_err("invalid");
        assert!(matches!(error, CallError::Invalid(_)), "{args}: {error:?}");
        assert_eq!(error.retry_class(), None);
    }
    let other_action = CallRequest {
        action: "send".to_owned(),
        ..request(json!({}))
    };
    assert!(matches!(
        crm.call(&other_action).await,
        Err(CallError::Invalid(_))
    ));
    assert!(sink.seen().is_empty());
    assert!(matches!(
        connector(json!({ "token": TOKEN }), &egress),
        Err(CallError::Invalid(_))
    ));
    assert!(matches!(
        connector(
            json!({ "base_url": "http://127.0.0.1/", "timeout": "soon" }),
            &egress
        ),
        Err(CallError::Invalid(_))
    ));
}
