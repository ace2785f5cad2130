//! Outbound HTTPS against a real server on loopback whose certificate a CA made in the test
//! signs: refused without that CA, accepted with the binding's `ca_file`; and calls through
//! a real CONNECT proxy, which egress decides (the final host and the proxy alike) before
//! the proxy hears of them.

#[path = "support/tls.rs"]
mod support;

use airlock_connectors::egress::StaticResolver;
use airlock_connectors::http::HttpConnector;
use airlock_connectors::{CallError, CallRequest, Connector, Egress};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{TestCa, connect_proxy, http_binding, https_server};

fn get(path: &str) -> CallRequest {
    CallRequest {
        run: "r1".to_owned(),
        step: "fetch".to_owned(),
        action: "request".to_owned(),
        args: json!({ "method": "GET", "path": path }),
        idempotency_key: "r1:fetch".to_owned(),
        timeout: Duration::from_secs(10),
    }
}

/// Staging may reach `api.test` (which resolves to loopback, so loopback is listed too),
/// `private.test` (which resolves to an unlisted private address) and nothing else.
fn staging() -> Arc<Egress> {
    Arc::new(
        Egress::new(
            "staging",
            vec![
                "api.test".to_owned(),
                "private.test".to_owned(),
                "127.0.0.1".to_owned(),
            ],
        )
        .with_resolver(Arc::new(
            StaticResolver::new()
                .host("api.test", ["127.0.0.1".parse().expect("ip")])
                .host("private.test", ["10.0.0.7".parse().expect("ip")]),
        )),
    )
}

#[tokio::test]
async fn a_server_signed_by_an_unknown_ca_is_refused_and_trusted_with_ca_file() {
    let ca = TestCa::new();
    let (port, answered) = https_server(&ca, &["api.test"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
    std::fs::write(dir.path().join("certs/company-ca.pem"), ca.pem()).expect("write CA");
    let egress = staging();
    let base_url = format!("https://api.test:{port}");

    let untrusting = HttpConnector::new(
        &http_binding(json!({ "base_url": base_url }), dir.path()),
        Arc::clone(&egress),
    )
    .expect("binding");
    let refused = untrusting
        .call(&get("/orders"))
        .await
        .expect_err("unknown issuer");
    match &refused {
        CallError::Connection(why) => assert!(
            why.contains("certificate") && why.contains("api.test"),
            "the refusal says it is the certificate, and where: {why}"
        ),
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "no request crossed an unverified handshake"
    );

    // Relative to the project folder, as every path of a binding.
    let trusting = HttpConnector::new(
        &http_binding(
            json!({ "base_url": base_url, "ca_file": "certs/company-ca.pem" }),
            dir.path(),
        ),
        Arc::clone(&egress),
    )
    .expect("binding");
    let answer = trusting
        .call(&get("/orders"))
        .await
        .expect("trusted through ca_file");
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"], json!({ "over": "tls" }));
    assert_eq!(answered.load(Ordering::SeqCst), 1);

    // The same Egress, the binding without `ca_file`, is still refused: the trust is the
    // binding's, not the environment's.
    let again = HttpConnector::new(
        &http_binding(json!({ "base_url": base_url }), dir.path()),
        egress,
    )
    .expect("binding");
    assert!(matches!(
        again.call(&get("/orders")).await,
        Err(CallError::Connection(_))
    ));
}

#[tokio::test]
async fn a_missing_or_unparsable_ca_file_is_said_when_the_binding_is_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("words.pem"), "no certificate here\n").expect("write");
    for (file, says) in [
        ("missing.pem", "cannot read ca_file"),
        ("junk.pem", "is not PEM certificates"),
        ("words.pem", "holds no PEM certificate"),
    ] {
        let built = HttpConnector::new(
            &http_binding(
                json!({ "base_url": "https://api.test/", "ca_file": file }),
                dir.path(),
            ),
            staging(),
        );
        match built {
            Err(CallError::Invalid(why)) => assert!(
                why.contains("connector `crm`") && why.contains(says) && why.contains(file),
                "{file}: {why}"
            ),
            other => panic!("{file}: expected Invalid, got {:?}", other.map(|_| ())),
        }
    }
}

/// An HTTPS server for `names`, signed by a fresh CA, and a project folder holding that
/// CA as `ca.pem`.
async fn signed_server(
    names: &[&str],
) -> (u16, Arc<std::sync::atomic::AtomicUsize>, tempfile::TempDir) {
    let ca = TestCa::new();
    let (port, answered) = https_server(&ca, names).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
    (port, answered, dir)
}

/// The binding of a host through a proxy, trusting the test CA.
fn through(base_url: &str, proxy: &str, dir: &std::path::Path) -> HttpConnector {
    HttpConnector::new(
        &http_binding(
            json!({ "base_url": base_url, "proxy": proxy, "ca_file": "ca.pem" }),
            dir,
        ),
        staging(),
    )
    .expect("binding")
}

#[tokio::test]
async fn a_call_through_a_connect_proxy_reaches_its_target_over_tls() {
    let (port, answered, dir) = signed_server(&["api.test"]).await;
    let (proxy, asked) = connect_proxy("127.0.0.1").await;
    let connector = through(
        &format!("https://api.test:{port}"),
        &format!("http://{proxy}"),
        dir.path(),
    );
    let answer = connector
        .call(&get("/orders"))
        .await
        .expect("through the proxy");
    assert_eq!(answer["body"], json!({ "over": "tls" }));
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    // The proxy tunnelled to the name, which TLS then verified end to end.
    assert_eq!(
        asked.lock().expect("list").clone(),
        vec![format!("api.test:{port}")]
    );
}

#[tokio::test]
async fn egress_decides_the_final_host_before_the_proxy_is_asked() {
    let (port, answered, dir) = signed_server(&["api.test", "elsewhere.test"]).await;
    let (proxy, asked) = connect_proxy("127.0.0.1").await;
    let proxy = format!("http://{proxy}");
    // Not listed: refused by name. Listed, but resolving to a private address nobody
    // listed: refused by address, which the proxy would otherwise have resolved itself.
    for (host, why) in [
        ("elsewhere.test", "is not in the egress list"),
        ("private.test", "resolves to 10.0.0.7"),
    ] {
        let connector = through(&format!("https://{host}:{port}"), &proxy, dir.path());
        match connector.call(&get("/orders")).await {
            Err(CallError::Egress(refused)) => {
                assert_eq!(refused.host, host);
                assert!(refused.reason.contains(why), "{host}: {refused}");
            }
            other => panic!("{host}: expected an egress refusal, got {other:?}"),
        }
    }
    assert!(
        asked.lock().expect("list").is_empty(),
        "the proxy saw no CONNECT"
    );
    assert_eq!(answered.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_proxy_outside_the_egress_list_is_refused() {
    let (port, answered, dir) = signed_server(&["api.test"]).await;
    // A real proxy on another loopback address, which staging does not list.
    let (proxy, asked) = connect_proxy("127.0.0.2").await;
    let connector = through(
        &format!("https://api.test:{port}"),
        &format!("http://{proxy}"),
        dir.path(),
    );
    match connector.call(&get("/orders")).await {
        Err(CallError::Egress(refused)) => {
            assert_eq!(refused.host, "127.0.0.2");
            assert!(
                refused.reason.contains("not in the egress list"),
                "{refused}"
            );
        }
        other => panic!("expected an egress refusal, got {other:?}"),
    }
    for (proxy, why) in [
        ("http://user:pw@127.0.0.1:3128", "user or password"),
        ("http://127.0.0.1:3128/path", "with a path"),
        ("socks5://127.0.0.1:1080", "only http and https"),
    ] {
        let refused = staging().check_proxy(proxy).expect_err(proxy);
        assert!(refused.reason.contains(why), "{proxy}: {refused}");
    }
    assert!(
        asked.lock().expect("list").is_empty(),
        "the proxy saw no CONNECT"
    );
    assert_eq!(answered.load(Ordering::SeqCst), 0);
}
