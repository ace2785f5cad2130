//! `airlock-bench relay`: the shared webhook workload with nothing stored, the machine's
//! ceiling for it (`/work/shared/bench/README.md`: "axum + reqwest, parse, branch, POST,
//! answer; nothing stored").
//!
//! Its figure is quoted beside Airlock's, measured by the same script in the same sitting
//! (`bench/webhook/run.sh --relay`), so that a result on one machine can be read against
//! what that machine can do at all: machines of the same kind differ by more than our
//! changes do.
//!
//! ```text
//! airlock-bench relay [--listen 127.0.0.1:8080] [--sink http://127.0.0.1:18999]
//! ```

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;

const USAGE: &str = "usage: airlock-bench relay [--listen ADDR] [--sink URL]

  The shared webhook workload with nothing stored: POST /hooks/staging/orders parses the
  order, maps it, branches on total > 100, POSTs it to SINK/high or SINK/low and answers
  with {orderId, total, customer, tier, sink: true}. /readyz answers 200.
  --listen  loopback address to serve on (default 127.0.0.1:8080)
  --sink    the sink's base URL (default http://127.0.0.1:18999)";

struct Relay {
    client: reqwest::Client,
    sink: String,
}

/// Runs the relay until the process is stopped.
pub fn main(args: Vec<String>) -> std::process::ExitCode {
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut sink = "http://127.0.0.1:18999".to_owned();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--sink" => &mut sink,
            _ => {
                eprintln!("{USAGE}");
                return std::process::ExitCode::from(2);
            }
        };
        match it.next() {
            Some(value) => *slot = value,
            None => {
                eprintln!("{flag} needs a value\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    match serve(&listen, sink.trim_end_matches('/')) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(listen: &str, sink: &str) -> Result<(), String> {
    let address: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    if !address.ip().is_loopback() {
        return Err(format!(
            "--listen {listen}: the relay serves on loopback only"
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        // The workspace's one TLS setup (ring): reqwest is built without a provider of its own.
        let tls = airlock_connectors::tls::client_config(&[]).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let relay = Arc::new(Relay {
            client,
            sink: sink.to_owned(),
        });
        let app = axum::Router::new()
            .route("/hooks/staging/orders", post(order))
            .route("/readyz", get(|| async { "ready" }))
            .with_state(relay);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("serving: {e}"))
    })
}

async fn order(State(relay): State<Arc<Relay>>, Json(body): Json<Value>) -> Response {
    let total = match &body["amount"] {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    };
    let tier = if total > 100.0 { "high" } else { "low" };
    let mut order = json!({
        "orderId": body["id"],
        "total": total,
        "customer": body["customer"],
        "tier": tier,
    });
    let sent = relay
        .client
        .post(format!("{}/{tier}", relay.sink))
        .json(&order)
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => {
            // Read the sink's answer to the end, as an engine does, so the connection is reused.
            let _ = answer.bytes().await;
            order["sink"] = Value::Bool(true);
            Json(order).into_response()
        }
        Ok(answer) => (
            StatusCode::BAD_GATEWAY,
            format!("sink: {}", answer.status()),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("sink: {e}")).into_response(),
    }
}
