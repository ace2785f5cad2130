//! `AIRLOCK_CA_FILE`: the process's extra CA certificates, trusted by every outbound
//! HTTPS client. A file of its own: the variable is read once per process.

#[path = "support/tls.rs"]
mod support;

use airlock_connectors::egress::StaticResolver;
use airlock_connectors::http::HttpConnector;
use airlock_connectors::{CallRequest, Connector, Egress};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::{TestCa, http_binding, https_server};

#[tokio::test]
async fn a_server_signed_by_the_ca_in_airlock_ca_file_is_trusted() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle.pem");
    // Several certificates in one file, as a company bundle has them.
    std::fs::write(&bundle, format!("{}{}", other.pem(), ca.pem())).expect("write");
    // SAFETY: set before anything in this process reads the environment (this binary has
    // this one test), and never changed after.
    unsafe { std::env::set_var(airlock_connectors::tls::CA_FILE_ENV, &bundle) };

    let (port, _) = https_server(&ca, &["api.test"]).await;
    let egress = Arc::new(
        Egress::new(
            "staging",
            vec!["api.test".to_owned(), "127.0.0.1".to_owned()],
        )
        .with_resolver(Arc::new(
            StaticResolver::new().host("api.test", ["127.0.0.1".parse().expect("ip")]),
        )),
    );
    let connector = HttpConnector::new(
        &http_binding(
            json!({ "base_url": format!("https://api.test:{port}") }),
            dir.path(),
        ),
        egress,
    )
    .expect("binding");
    let answer = connector
        .call(&CallRequest {
            run: "r1".to_owned(),
            step: "fetch".to_owned(),
            action: "request".to_owned(),
            args: json!({ "method": "GET", "path": "/" }),
            idempotency_key: "r1:fetch".to_owned(),
            timeout: Duration::from_secs(10),
        })
        .await
        .expect("trusted through AIRLOCK_CA_FILE");
    assert_eq!(answer["body"], json!({ "over": "tls" }));
}
