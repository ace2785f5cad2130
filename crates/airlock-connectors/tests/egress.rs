//! Egress, enforced for every connection a connector makes: hosts outside the list,
//! listed names that resolve to special addresses, numeric host forms, other schemes
//! and redirects to any of those are refused, and the forbidden target receives
//! nothing. Real servers on loopback, names resolved by a fake resolver.

use airlock_connectors::chat::ChatConnector;
use airlock_connectors::egress::{HostResolver, StaticResolver};
use airlock_connectors::http::HttpConnector;
use airlock_connectors::{
    CallError, CallRequest, CheckContext, Connector, Egress, EgressError, ResolvedBinding,
};
use airlock_core::model::ConnectorKind;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A server that counts what it receives and answers by path: `/redirect/<n>` redirects
/// to the target registered as number `n`, `/hop/<k>` redirects `k` more times, anything
/// else answers 200.
#[derive(Default)]
struct Server {
    hits: AtomicUsize,
    redirects: std::sync::Mutex<Vec<String>>,
}

async fn answer(State(server): State<Arc<Server>>, uri: Uri) -> Response {
    server.hits.fetch_add(1, Ordering::SeqCst);
    let path = uri.path();
    if let Some(n) = path.strip_prefix("/redirect/") {
        let target = n.parse::<usize>().ok().and_then(|n| {
            server
                .redirects
                .lock()
                .ok()
                .and_then(|list| list.get(n).cloned())
        });
        if let Some(target) = target {
            return (StatusCode::FOUND, [(header::LOCATION, target)]).into_response();
        }
    }
    if let Some(k) = path.strip_prefix("/hop/") {
        let k = k.parse::<usize>().unwrap_or(0);
        if k > 0 {
            return (
                StatusCode::FOUND,
                [(header::LOCATION, format!("/hop/{}", k - 1))],
            )
                .into_response();
        }
    }
    (StatusCode::OK, "reached").into_response()
}

async fn serve_on(address: &str) -> std::io::Result<(u16, Arc<Server>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let port = listener.local_addr()?.port();
    let server = Arc::new(Server::default());
    let app = Router::new()
        .fallback(answer)
        .with_state(Arc::clone(&server));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((port, server))
}

async fn serve() -> (u16, Arc<Server>) {
    serve_on("127.0.0.1:0").await.expect("bind a loopback port")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn egress(allowed: &[&str], resolver: StaticResolver) -> Arc<Egress> {
    Arc::new(
        Egress::new("staging", allowed.iter().map(|h| (*h).to_owned()).collect())
            .with_resolver(Arc::new(resolver)),
    )
}

fn binding(kind: ConnectorKind, key: &str, url: &str) -> ResolvedBinding {
    let mut settings = serde_json::Map::new();
    settings.insert(key.to_owned(), Value::String(url.to_owned()));
    ResolvedBinding {
        connector: "target".to_owned(),
        kind,
        environment: "staging".to_owned(),
        settings,
        base_dir: std::env::temp_dir(),
    }
}

fn http(base_url: &str, egress: &Arc<Egress>) -> HttpConnector {
    HttpConnector::new(
        &binding(ConnectorKind::Http, "base_url", base_url),
        Arc::clone(egress),
    )
    .expect("connector")
}

fn get(path: &str) -> CallRequest {
    CallRequest {
        run: "run-1".to_owned(),
        step: "fetch".to_owned(),
        action: "request".to_owned(),
        args: json!({ "method": "GET", "path": path }),
        idempotency_key: "staging/run-1/fetch".to_owned(),
        timeout: Duration::from_secs(5),
    }
}

fn refused(result: Result<Value, CallError>) -> EgressError {
    match result {
        Err(CallError::Egress(refused)) => refused,
        other => panic!("expected an egress refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn staging_cannot_reach_a_host_outside_its_list() {
    let egress = egress(
        &["127.0.0.1", "sandbox.crm.example"],
        StaticResolver::new().host("api.crm.example", [ip("93.184.216.34")]),
    );
    let error = refused(
        http("https://api.crm.example/v1", &egress)
            .call(&get("/orders"))
            .await,
    );
    assert_eq!(error.host, "api.crm.example");
    assert_eq!(error.environment, "staging");
    let message = CallError::Egress(error).to_string();
    assert!(message.contains("`staging`"), "{message}");
    assert!(message.contains("api.crm.example"), "{message}");
    assert!(message.contains("not in the egress list"), "{message}");
    assert!(egress.resolve("api.crm.example", 443).await.is_err());
    let check = http("https://api.crm.example/v1", &egress)
        .check(&CheckContext::default())
        .await;
    assert!(!check.ok, "{check:?}");
}

#[tokio::test]
async fn listed_names_resolving_to_special_addresses_are_refused() {
    let cases = [
        ("meta.example", "169.254.169.254", "cloud metadata"),
        ("internal.example", "10.0.0.7", "private"),
        ("mapped.example", "::ffff:169.254.169.254", "IPv4-mapped"),
        ("imds6.example", "fd00:ec2::254", "cloud metadata"),
        ("cgnat.example", "100.64.1.2", "carrier-grade NAT"),
        ("loop.example", "127.0.0.1", "loopback"),
        ("nat64.example", "64:ff9b::a9fe:a9fe", "NAT64"),
    ];
    let mut resolver = StaticResolver::new();
    let mut allowed = vec![];
    for (name, address, _) in cases {
        resolver = resolver.host(name, [ip(address)]);
        allowed.push(name);
    }
    let egress = egress(&allowed, resolver);
    for (name, address, why) in cases {
        let error = egress.resolve(name, 80).await.expect_err("special address");
        assert_eq!(error.host, name);
        assert!(
            error.reason.contains(&format!("resolves to {address}")),
            "{error}"
        );
        assert!(error.reason.contains(why), "{error}");
        // The same refusal when reqwest resolves the name for a real request.
        let through_http = refused(
            http(&format!("http://{name}/"), &egress)
                .call(&get("/latest/meta-data/"))
                .await,
        );
        assert_eq!(through_http, error);
        let check = http(&format!("http://{name}/"), &egress)
            .check(&CheckContext::default())
            .await;
        assert!(!check.ok, "{check:?}");
        assert!(check.detail.contains(address), "{check:?}");
    }
}

#[tokio::test]
async fn one_special_address_among_public_ones_refuses_the_name() {
    let egress = egress(
        &["mixed.example"],
        StaticResolver::new().host("mixed.example", [ip("93.184.216.34"), ip("10.0.0.7")]),
    );
    let error = egress
        .resolve("mixed.example", 80)
        .await
        .expect_err("refused");
    assert!(error.reason.contains("10.0.0.7"), "{error}");
}

#[tokio::test]
async fn numeric_host_forms_are_refused_even_when_the_address_is_listed() {
    let (port, server) = serve().await;
    let egress = egress(&["127.0.0.1"], StaticResolver::new());
    for host in [
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "0177.0.0.1",
        "127.1",
        "127.0.1",
        "127.0.0.1.",
        "%31%32%37.0.0.1",
    ] {
        let url = format!("http://{host}:{port}/");
        let error = egress.check_url(&url).expect_err("numeric form");
        assert!(
            error.reason.contains("numeric") || error.reason.contains("percent"),
            "{url}: {error}"
        );
        let through_http = refused(http(&url, &egress).call(&get("/steal")).await);
        assert_eq!(through_http, error, "{url}");
        // As a bare host handed to `resolve` (as the SMTP and SQL connectors do).
        if !host.contains('%') {
            assert!(egress.resolve(host, port).await.is_err(), "{host}");
        }
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn forbidden_address_literals_are_refused_before_reqwest_sees_them() {
    // reqwest does not resolve an IP literal, so the literal check is the only check:
    // prove it with a real server on an address that is not listed.
    let (port, server) = serve().await;
    let egress = egress(&["api.example"], StaticResolver::new());
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://10.0.0.7/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let error = refused(http(&url, &egress).call(&get("/x")).await);
        assert!(error.reason.contains("not in the egress list"), "{error}");
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    let error = egress
        .check_url("http://169.254.169.254/")
        .expect_err("metadata literal");
    assert!(error.reason.contains("cloud metadata"), "{error}");
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let egress = egress(&["127.0.0.1", "files.example"], StaticResolver::new());
    for url in [
        "file:///etc/passwd",
        "ftp://files.example/pub",
        "gopher://files.example/",
        "data:text/plain,hello",
        "dict://files.example:11211/",
        "ws://files.example/",
    ] {
        let error = egress.check_url(url).expect_err("scheme");
        assert!(
            error.reason.contains("only http and https"),
            "{url}: {error}"
        );
        let through_http = refused(http(url, &egress).call(&get("/")).await);
        assert_eq!(through_http, error);
        let chat = ChatConnector::new(
            &binding(ConnectorKind::ChatWebhook, "url", url),
            Arc::clone(&egress),
        )
        .expect("connector");
        let request = CallRequest {
            action: "post".to_owned(),
            args: json!({ "text": "hi" }),
            ..get("/")
        };
        assert_eq!(refused(chat.call(&request).await), error);
    }
}

#[tokio::test]
async fn redirects_to_forbidden_destinations_are_refused_and_reach_nothing() {
    let (port, origin) = serve().await;
    let (forbidden_port, forbidden) = serve().await;
    // A target on IPv6 loopback, which a listed name resolves to but which is not itself
    // listed: if the resolver check were skipped on a redirect, it would be reached.
    let v6_target = serve_on("[::1]:0").await.ok();
    let mut resolver = StaticResolver::new()
        .host("forbidden.test", [ip("127.0.0.1")])
        .host("meta.example", [ip("169.254.169.254")]);
    let mut allowed = vec!["127.0.0.1", "meta.example"];
    if v6_target.is_some() {
        resolver = resolver.host("sneaky.example", [ip("::1")]);
        allowed.push("sneaky.example");
    }
    let egress = egress(&allowed, resolver);
    let mut targets = vec![
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
        ),
        (
            "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
            "::ffff:169.254.169.254",
        ),
        (
            format!("http://forbidden.test:{forbidden_port}/steal"),
            "forbidden.test",
        ),
        (
            "http://meta.example/latest/meta-data/".to_owned(),
            "meta.example",
        ),
        ("file:///etc/passwd".to_owned(), "file:"),
        ("ftp://meta.example/".to_owned(), "meta.example"),
    ];
    if let Some((v6_port, _)) = &v6_target {
        targets.push((
            format!("http://sneaky.example:{v6_port}/steal"),
            "sneaky.example",
        ));
    }
    if let Ok(mut list) = origin.redirects.lock() {
        list.extend(targets.iter().map(|(url, _)| url.clone()));
    }
    let connector = http(&format!("http://127.0.0.1:{port}"), &egress);
    for (n, (url, host)) in targets.iter().enumerate() {
        let result = connector.call(&get(&format!("/redirect/{n}"))).await;
        let error = refused(result);
        assert_eq!(error.host, *host, "{url}: {error}");
    }
    assert_eq!(origin.hits.load(Ordering::SeqCst), targets.len());
    assert_eq!(forbidden.hits.load(Ordering::SeqCst), 0);
    if let Some((_, v6_server)) = &v6_target {
        assert_eq!(v6_server.hits.load(Ordering::SeqCst), 0);
    }
}

/// A base URL written `2130706433` or `0x7f.1` was refused, but a redirect to those forms
/// was followed: reqwest's redirect policy saw the URL after the `url` crate had made it
/// `127.0.0.1`. Every hop is now decided from the `Location` header as sent, by the host
/// rules of the first request, even though the canonical `127.0.0.1` is listed here.
#[tokio::test]
async fn redirect_hops_skip_the_numeric_host_check() {
    let (port, origin) = serve().await;
    let (target_port, target) = serve().await;
    let egress = egress(&["127.0.0.1"], StaticResolver::new());
    let forms = [
        ("2130706433", "http://2130706433:{port}/"),
        ("0x7f.1", "http://0x7f.1:{port}/"),
        ("0177.0.0.1", "http://0177.0.0.1:{port}/"),
        ("127.1", "http://127.1:{port}/"),
        ("0x7f000001", "//0x7f000001:{port}/"),
        ("127.1", "/\\127.1:{port}/"),
        ("127.1", "  http://127.1:{port}/"),
    ];
    let targets: Vec<String> = forms
        .iter()
        .map(|(_, form)| form.replace("{port}", &target_port.to_string()))
        .collect();
    if let Ok(mut list) = origin.redirects.lock() {
        list.extend(targets.iter().cloned());
    }
    let connector = http(&format!("http://127.0.0.1:{port}"), &egress);
    for (n, ((host, _), url)) in forms.iter().zip(&targets).enumerate() {
        // The same form as a base URL is refused, with the same host.
        if url.trim().starts_with("http") {
            let as_base = http(url.trim(), &egress).call(&get("/")).await;
            assert_eq!(refused(as_base).host, *host, "{url} as a base URL");
        }
        let error = refused(connector.call(&get(&format!("/redirect/{n}"))).await);
        assert_eq!(error.host, *host, "{url}: {error}");
        assert!(error.reason.contains("non-canonical"), "{url}: {error}");
    }
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        0,
        "no numeric form was followed"
    );
    // The canonical form of the same listed address is followed: the check refuses
    // spellings, not the address.
    if let Ok(mut list) = origin.redirects.lock() {
        list.push(format!("http://127.0.0.1:{target_port}/"));
    }
    let followed = connector
        .call(&get(&format!("/redirect/{}", targets.len())))
        .await
        .expect("the canonical form is listed");
    assert_eq!(followed, json!({ "status": 200, "body": "reached" }));
    assert_eq!(target.hits.load(Ordering::SeqCst), 1);
}

/// Method, body and credentials across hops, as reqwest treated them when it followed
/// redirects: 302 turns a POST into a GET without its body, 307 keeps both, and a hop to
/// another port drops the `Authorization` header.
#[tokio::test]
async fn redirects_keep_or_drop_the_method_body_and_credentials_as_http_says() {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method};
    type Seen = Arc<std::sync::Mutex<Vec<(String, String, String, Option<String>)>>>;
    async fn record(
        State(seen): State<Seen>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Ok(mut list) = seen.lock() {
            list.push((
                method.to_string(),
                uri.path().to_owned(),
                String::from_utf8_lossy(&body).into_owned(),
                auth,
            ));
        }
        (StatusCode::OK, "reached").into_response()
    }
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(record).with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (port, origin) = serve().await;
    let same_host = format!("http://127.0.0.1:{port}");
    if let Ok(mut list) = origin.redirects.lock() {
        list.push(format!("http://127.0.0.1:{other_port}/after-302"));
    }
    let egress = egress(&["127.0.0.1"], StaticResolver::new());
    let mut binding = binding(ConnectorKind::Http, "base_url", &same_host);
    binding
        .settings
        .insert("token".to_owned(), Value::String("tok-1234".to_owned()));
    let connector = HttpConnector::new(&binding, Arc::clone(&egress)).expect("connector");
    let post = |path: &str| CallRequest {
        args: json!({ "method": "POST", "path": path, "body": "payload" }),
        ..get(path)
    };
    connector
        .call(&post("/redirect/0"))
        .await
        .expect("followed");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        vec![(
            "GET".to_owned(),
            "/after-302".to_owned(),
            String::new(),
            None
        )],
        "302: a GET without the body, and no credential for another port"
    );
}

#[tokio::test]
async fn redirects_within_egress_are_followed_up_to_five_hops() {
    let (port, origin) = serve().await;
    let egress = egress(&["127.0.0.1"], StaticResolver::new());
    let connector = http(&format!("http://127.0.0.1:{port}"), &egress);
    let answer = connector.call(&get("/hop/5")).await.expect("five hops");
    assert_eq!(answer, json!({ "status": 200, "body": "reached" }));
    assert_eq!(origin.hits.load(Ordering::SeqCst), 6);
    match connector.call(&get("/hop/6")).await {
        Err(CallError::Failed(message)) => assert!(message.contains("redirects"), "{message}"),
        other => panic!("expected too many redirects, got {other:?}"),
    }
}

#[tokio::test]
async fn a_listed_loopback_literal_works_and_localhost_through_it() {
    let (port, server) = serve().await;
    let staging = egress(
        &["127.0.0.1", "localhost"],
        StaticResolver::new().host("localhost", [ip("127.0.0.1")]),
    );
    for base in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://LOCALHOST:{port}/"),
    ] {
        let answer = http(&base, &staging)
            .call(&get("/ok"))
            .await
            .expect("listed loopback");
        assert_eq!(answer["status"], 200);
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    assert_eq!(
        staging.resolve("localhost", port).await,
        Ok(vec![SocketAddr::new(ip("127.0.0.1"), port)])
    );
    // `localhost` alone does not make its loopback address reachable.
    let name_only = egress(
        &["localhost"],
        StaticResolver::new().host("localhost", [ip("127.0.0.1")]),
    );
    let error = refused(
        http(&format!("http://localhost:{port}"), &name_only)
            .call(&get("/ok"))
            .await,
    );
    assert!(
        error
            .reason
            .contains("resolves to 127.0.0.1, a loopback address"),
        "{error}"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

/// A resolver that answers a public-looking address first and the metadata address on
/// every later lookup: the rebinding attack. Counts lookups.
#[derive(Default)]
struct Rebinding {
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl HostResolver for Rebinding {
    async fn resolve(&self, _host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(vec![if n == 0 {
            ip("127.0.0.1")
        } else {
            ip("169.254.169.254")
        }])
    }
}

#[tokio::test]
async fn a_name_is_resolved_once_per_connection_and_every_answer_is_checked() {
    let (port, server) = serve().await;
    let rebinding = Arc::new(Rebinding::default());
    let egress = Arc::new(
        Egress::new(
            "staging",
            vec!["127.0.0.1".to_owned(), "rebind.example".to_owned()],
        )
        .with_resolver(Arc::clone(&rebinding) as Arc<dyn HostResolver>),
    );
    let connector = http(&format!("http://rebind.example:{port}"), &egress);
    // First request: one lookup, checked, pinned; the pooled connection is reused.
    connector.call(&get("/a")).await.expect("first answer");
    connector.call(&get("/b")).await.expect("same connection");
    assert_eq!(rebinding.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // A fresh lookup (through `resolve`) now rebinds to the metadata address: refused.
    let error = egress
        .resolve("rebind.example", port)
        .await
        .expect_err("rebound");
    assert!(error.reason.contains("169.254.169.254"), "{error}");
}
