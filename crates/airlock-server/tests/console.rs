//! The web console through the router `airlock serve` answers with (tower's `oneshot`, no
//! browser): sign-in, every page for a role that may read it and a token that may not,
//! the CSRF token on every POST, the CSP header on every answer, hostile payloads shown
//! as text, and a secret a target echoes back absent from every page. A real SQLite store
//! in a temporary folder, real HTTP targets on loopback, tokens minted into the store.

use airlock_connectors::secrets::Keyring;
use airlock_core::project::{self, Loaded};
use airlock_core::source::SourceFile;
use airlock_engine::{Clock, Engine, EngineOptions, ProjectRuntime};
use airlock_server::{Context, ProjectSource, ServerOptions};
use airlock_store::Store;
use airlock_store::sqlite::SqliteStore;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// Wednesday 2 December 2026, 10:00 in London: outside the starter's weekend freeze.
const WEDNESDAY_MORNING: i64 = 1_796_205_600_000;

struct PinnedClock(AtomicI64);

impl Clock for PinnedClock {
    fn now(&self) -> i64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

struct Files(Mutex<Vec<SourceFile>>);

impl ProjectSource for Files {
    fn load(&self) -> Result<Loaded, String> {
        Ok(project::load(self.0.lock().unwrap().clone()))
    }
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

struct Served {
    _temp: tempfile::TempDir,
    store: Arc<dyn Store>,
    router: Router,
    worker: Arc<Engine>,
}

impl Served {
    /// `files` served over a fresh store, by a router that does not execute (runs wait
    /// for [`Served::work`]).
    async fn new(files: Vec<SourceFile>) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("project");
        for file in &files {
            let path = root.join(&file.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &file.text).unwrap();
        }
        std::fs::create_dir_all(root.join(".airlock")).unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&root.join(".airlock/airlock.db")).unwrap());
        let loaded = project::load(files.clone());
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let manifest = loaded.project.manifest.clone();
        let keyring = Keyring::from_keys([
            ("staging".to_owned(), [7u8; 32]),
            ("production".to_owned(), [9u8; 32]),
        ]);
        let clock = Arc::new(PinnedClock(AtomicI64::new(WEDNESDAY_MORNING)));
        let engine = |worker: &str| {
            Engine::new(
                store.clone(),
                Arc::new(ProjectRuntime::new(
                    store.clone(),
                    manifest.clone(),
                    root.clone(),
                    keyring.clone(),
                    clock.clone(),
                )),
                clock.clone(),
                EngineOptions {
                    worker: worker.to_owned(),
                    ..EngineOptions::default()
                },
            )
        };
        let context = Context {
            store: store.clone(),
            manifest: Arc::new(manifest.clone()),
            keyring: keyring.clone(),
            fingerprinter: None,
            engine: engine("server"),
            clock: clock.clone(),
            project: Arc::new(Files(Mutex::new(files))),
            root: root.clone(),
        };
        let router = airlock_server::router(
            context,
            ServerOptions {
                execute: false,
                schedules: false,
                ..ServerOptions::default()
            },
        )
        .await
        .unwrap();
        let worker = Arc::new(engine("test-worker"));
        Served {
            _temp: temp,
            store,
            router,
            worker,
        }
    }

    async fn token(&self, environment: &str, role: &str, name: &str) -> String {
        airlock_ops::tokens::create(
            &*self.store,
            &project::load(airlock_core::scaffold::files())
                .project
                .manifest,
            airlock_ops::tokens::TokenToCreate {
                environment,
                role,
                name,
                actor: "test",
                now: WEDNESDAY_MORNING,
            },
        )
        .await
        .unwrap()
        .token
    }

    async fn send(&self, request: Request<Body>) -> Page {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, cookie: Option<&str>) -> Page {
        let mut request = Request::builder().method(Method::GET).uri(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, uri: &str, cookie: Option<&str>, form: &str) -> Page {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::from(form.to_owned())).unwrap())
            .await
    }

    async fn api(&self, method: Method, uri: &str, token: &str, body: Option<Value>) -> Value {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let page = self.send(request.body(body).unwrap()).await;
        assert!(page.status.is_success(), "{uri}: {page:?}");
        serde_json::from_str(&page.body).unwrap_or(Value::Null)
    }

    /// Signs in with `token` and returns the session's `Cookie` header and CSRF token.
    async fn sign_in(&self, token: &str) -> (String, String) {
        let page = self
            .post_form("/sign-in", None, &format!("token={token}"))
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:?}");
        let set = page.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/"] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        assert!(!set.contains("Secure"), "plain HTTP: no Secure ({set})");
        let cookie = set.split(';').next().unwrap().to_owned();
        let home = self.get("/", Some(&cookie)).await;
        assert_eq!(home.status, StatusCode::OK, "{home:?}");
        let csrf = csrf_of(&home.body);
        (cookie, csrf)
    }

    async fn work(&self) {
        self.worker.drain(Duration::from_millis(50)).await.unwrap();
    }
}

fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    body[at..at + 64].to_owned()
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_defended(uri: &str, page: &Page) {
    assert_eq!(
        page.headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok()),
        Some(CSP),
        "CSP on {uri} ({})",
        page.status
    );
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY", "{uri}");
    if page.status == StatusCode::OK && uri != "/console.css" {
        assert!(!page.body.contains("<script"), "no script on {uri}");
        assert!(!page.body.contains(" style="), "no inline style on {uri}");
    }
}

/// The console's pages about one environment, for `env`.
fn pages_of(env: &str) -> Vec<String> {
    ["inbox", "runs", "releases", "readiness", "audit", "records"]
        .iter()
        .map(|p| format!("/{p}?env={env}"))
        .chain([format!("/parity?from=staging&to={env}")])
        .collect()
}

#[tokio::test]
async fn every_page_answers_its_readers_refuses_others_and_carries_the_policy() {
    let served = Served::new(airlock_core::scaffold::files()).await;
    let viewer = served.token("staging", "viewer", "sam").await;
    let production = served.token("production", "viewer", "pat").await;
    let (staging_cookie, _) = served.sign_in(&viewer).await;
    let (production_cookie, _) = served.sign_in(&production).await;

    for uri in ["/sign-in", "/console.css"] {
        let page = served.get(uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert_defended(uri, &page);
    }
    // Without a session every page sends to the sign-in page, with the policy all the same.
    for uri in ["/", "/inbox", "/runs", "/runs/run_x", "/audit"] {
        let page = served.get(uri, None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(page.headers[header::LOCATION], "/sign-in");
        assert_defended(uri, &page);
    }
    let mut home = served.get("/", Some(&staging_cookie)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert_defended("/", &home);
    assert!(
        home.body.contains("not visible to your token"),
        "a staging token sees no production column"
    );
    home = served.get("/", Some(&production_cookie)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        !home.body.contains("not visible to your token"),
        "production's reader sees the path's source too, as the parity report shows it"
    );
    for (cookie, own, other) in [
        (&staging_cookie, "staging", "production"),
        (&production_cookie, "production", "staging"),
    ] {
        for uri in pages_of(own) {
            if uri.starts_with("/parity") && own == "staging" {
                continue;
            }
            let page = served.get(&uri, Some(cookie)).await;
            assert_eq!(page.status, StatusCode::OK, "{own} reads {uri}: {page:?}");
            assert_defended(&uri, &page);
        }
        for uri in pages_of(other) {
            if uri.starts_with("/parity") && other == "staging" {
                continue;
            }
            let page = served.get(&uri, Some(cookie)).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{own} reads {uri}");
            assert_defended(&uri, &page);
            assert!(page.body.contains("Not allowed"), "{uri}: {}", page.body);
        }
    }
    // The console's refusals are the API's: audited as `api.denied`, by the token's name.
    let denied = served.store.audit_log().await.unwrap();
    assert!(
        denied
            .iter()
            .any(|e| e.event.action == "api.denied" && e.event.actor == "sam"),
        "denials are audited"
    );
    // Sign-out ends the session in the store: the cookie opens nothing afterwards.
    let csrf = csrf_of(&served.get("/", Some(&staging_cookie)).await.body);
    let out = served
        .post_form("/sign-out", Some(&staging_cookie), &format!("csrf={csrf}"))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = served.get("/", Some(&staging_cookie)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "signed out");
    // A wrong token is refused and signs no one in.
    let wrong = served.post_form("/sign-in", None, "token=alk_nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    assert_defended("/sign-in", &wrong);
    // Revoking the token ends its sessions.
    let tokens = served.store.tokens(Some("production")).await.unwrap();
    served
        .store
        .revoke_token(&tokens[0].token.id, WEDNESDAY_MORNING + 1)
        .await
        .unwrap();
    let revoked = served.get("/", Some(&production_cookie)).await;
    assert_eq!(
        revoked.status,
        StatusCode::SEE_OTHER,
        "revoked token, no session"
    );
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_changes_nothing() {
    let served = Served::new(airlock_core::scaffold::files()).await;
    let deployer = served.token("staging", "deployer", "dev").await;
    served
        .api(
            Method::POST,
            "/api/v1/environments/staging/deploy",
            &deployer,
            None,
        )
        .await;
    let (cookie, csrf) = served.sign_in(&deployer).await;
    let before = served
        .store
        .releases("staging", "order-intake")
        .await
        .unwrap();
    let audit_before = served.store.audit_log().await.unwrap().len();
    for form in [
        "",
        "csrf=",
        "csrf=0000",
        &format!("csrf={}", "0".repeat(64)),
    ] {
        for uri in [
            "/releases/staging/order-intake/rollback",
            "/inbox/req_x/approve",
            "/runs/run_x/retry",
            "/runs/run_x/steps/s/decide",
            "/sign-out",
        ] {
            let page = served.post_form(uri, Some(&cookie), form).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{uri} with {form:?}");
            assert!(page.body.contains("CSRF"), "{uri}: {}", page.body);
            assert_defended(uri, &page);
        }
    }
    assert_eq!(
        served
            .store
            .releases("staging", "order-intake")
            .await
            .unwrap(),
        before
    );
    assert_eq!(
        served.store.audit_log().await.unwrap().len(),
        audit_before,
        "nothing written"
    );
    // The session's own token passes, and the use case's own refusal answers.
    let page = served
        .post_form(
            "/inbox/req_x/approve",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{page:?}");
    assert_eq!(
        served.get("/", Some(&cookie)).await.status,
        StatusCode::OK,
        "still signed in"
    );
}

#[tokio::test]
async fn a_hostile_trigger_payload_shows_as_text() {
    let served = Served::new(airlock_core::scaffold::files()).await;
    let deployer = served.token("staging", "deployer", "dev").await;
    let runner = served.token("staging", "runner", "shop").await;
    served
        .api(
            Method::POST,
            "/api/v1/environments/staging/deploy",
            &deployer,
            None,
        )
        .await;
    let hostile = "<script>alert('owned')</script><img src=x onerror=alert(1)>\"'&";
    let started = served
        .api(
            Method::POST,
            "/api/v1/environments/staging/workflows/order-intake/runs",
            &runner,
            Some(json!({ "body": { "id": hostile, "amount": 5, "customer": hostile } })),
        )
        .await;
    let id = started["run"]
        .as_str()
        .or(started["id"].as_str())
        .unwrap()
        .to_owned();
    served.work().await;
    let (cookie, _) = served.sign_in(&runner).await;
    for uri in [
        format!("/runs/{id}"),
        "/runs?env=staging".to_owned(),
        "/records?env=staging".to_owned(),
    ] {
        let page = served.get(&uri, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(!page.body.contains("<script"), "{uri} holds a live script");
        assert!(
            !page.body.contains("<img src=x"),
            "{uri} holds a live element"
        );
        if uri.starts_with("/runs/") {
            assert!(
                page.body
                    .contains("&lt;script&gt;alert('owned')&lt;/script&gt;"),
                "{uri} shows the payload as text"
            );
        }
    }
    let filtered = served
        .get(
            "/runs?env=staging&workflow=%3Cscript%3Ex&before=%3Cb%3E",
            Some(&cookie),
        )
        .await;
    assert_eq!(filtered.status, StatusCode::BAD_REQUEST);
    assert!(!filtered.body.contains("<b>") && !filtered.body.contains("<script"));
}

/// A target that echoes what it was sent (headers included) back in its answer.
async fn echo_target() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().fallback(|request: Request<Body>| async move {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
            .collect();
        axum::Json(json!({ "you_sent": headers }))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn a_secret_a_target_echoes_is_on_no_page() {
    let target = echo_target().await;
    let secret = "s3cr3t-echoed-token-5f1d";
    let files = vec![
        SourceFile::new(
            "airlock.yaml",
            format!(
                "project: echo\nconnectors:\n  api: {{ kind: http }}\nenvironments:\n  staging:\n    egress: [127.0.0.1]\n    secrets: [API_TOKEN]\n    approvers: [lead]\n    bindings:\n      api: {{ base_url: \"http://{target}\", token: \"${{secret:API_TOKEN}}\" }}\n"
            ),
        ),
        SourceFile::new(
            "workflows/echo.yaml",
            "name: echo\ntrigger: manual\nsteps:\n  - id: call\n    call: api.request\n    with: { method: POST, path: /echo, json: { note: hello } }\n  - id: wait\n    approval: { message: \"go on?\" }\n",
        ),
    ];
    let served = Served::new(files).await;
    let admin = airlock_ops::tokens::create(
        &*served.store,
        &project::load(vec![SourceFile::new(
            "airlock.yaml",
            "project: echo\nenvironments:\n  staging: {}\n",
        )])
        .project
        .manifest,
        airlock_ops::tokens::TokenToCreate {
            environment: "staging",
            role: "admin",
            name: "lead",
            actor: "test",
            now: WEDNESDAY_MORNING,
        },
    )
    .await
    .unwrap()
    .token;
    let put = served
        .send(
            Request::builder()
                .method(Method::PUT)
                .uri("/api/v1/environments/staging/secrets/API_TOKEN")
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .body(Body::from(secret))
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{put:?}");
    served
        .api(
            Method::POST,
            "/api/v1/environments/staging/deploy",
            &admin,
            None,
        )
        .await;
    let started = served
        .api(
            Method::POST,
            "/api/v1/environments/staging/workflows/echo/runs",
            &admin,
            Some(json!({})),
        )
        .await;
    let id = started["run"]
        .as_str()
        .or(started["id"].as_str())
        .unwrap()
        .to_owned();
    served.work().await;
    let shown = served
        .api(Method::GET, &format!("/api/v1/runs/{id}"), &admin, None)
        .await;
    assert_eq!(shown["run"]["status"], "waiting", "{shown:#}");
    assert!(
        shown.to_string().contains("you_sent"),
        "the target's echo is journaled (redacted)"
    );
    let (cookie, _) = served.sign_in(&admin).await;
    let mut rendered = 0;
    for uri in [
        "/".to_owned(),
        format!("/runs/{id}"),
        "/runs?env=staging".to_owned(),
        "/inbox?env=staging".to_owned(),
        "/releases?env=staging".to_owned(),
        "/readiness?env=staging".to_owned(),
        "/audit?env=staging".to_owned(),
        "/records?env=staging".to_owned(),
    ] {
        let page = served.get(&uri, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {page:?}");
        assert!(!page.body.contains(secret), "{uri} shows the secret");
        rendered += 1;
    }
    assert_eq!(rendered, 8);
    let run_page = served.get(&format!("/runs/{id}"), Some(&cookie)).await;
    assert!(
        run_page.body.contains("you_sent"),
        "the echo is on the page, redacted"
    );
    assert!(
        run_page.body.contains("Approve step wait"),
        "the admin may decide the step"
    );
}

/// The audit log and the staging records are read a page at a time, newest first: each
/// next page starts below the last entry shown, and the pages together show every entry
/// of the environment once (none of another's).
#[tokio::test]
async fn audit_and_records_pages_continue_below_the_last_entry_shown() {
    let served = Served::new(airlock_core::scaffold::files()).await;
    for n in 0..130 {
        let environment = if n % 10 == 3 { "production" } else { "staging" };
        served
            .store
            .add_record(&airlock_store::NewTestRecord {
                environment: environment.into(),
                run: format!("run_{n:04}"),
                step: "notify".into(),
                connector: "chat".into(),
                action: "post_message".into(),
                arguments: json!({ "marker": format!("record-{n:04}-{environment}") }),
                idempotency_key: None,
                at: WEDNESDAY_MORNING + n,
            })
            .await
            .unwrap();
        served
            .store
            .audit(&airlock_store::NewAuditEvent {
                at: WEDNESDAY_MORNING + n,
                actor: "ana".into(),
                action: "deploy".into(),
                environment: Some(environment.into()),
                subject: format!("event-{n:04}-{environment}"),
                detail: json!({}),
            })
            .await
            .unwrap();
    }
    let viewer = served.token("staging", "viewer", "sam").await;
    let (cookie, _) = served.sign_in(&viewer).await;
    for (path, marker) in [("/records", "record-"), ("/audit", "event-")] {
        let mut seen: Vec<String> = Vec::new();
        let mut uri = format!("{path}?env=staging");
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 3, "{path}: the pages end");
            let page = served.get(&uri, Some(&cookie)).await;
            assert_eq!(page.status, StatusCode::OK, "{uri}: {page:?}");
            let shown: Vec<String> = page
                .body
                .match_indices(marker)
                .map(|(at, _)| page.body[at..at + marker.len() + 4].to_owned())
                .collect();
            assert!(
                shown.windows(2).all(|w| w[0] > w[1]),
                "{uri}: newest first: {shown:?}"
            );
            seen.extend(shown);
            let Some(at) = page.body.find("rel=\"next\"") else {
                break;
            };
            let href = page.body[..at].rfind("href=\"").unwrap() + 6;
            uri = page.body[href..]
                .split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&");
        }
        assert_eq!(pages, 2, "{path}: 117 entries are two pages of 100");
        let expected: Vec<String> = (0..130)
            .rev()
            .filter(|n| n % 10 != 3)
            .map(|n| format!("{marker}{n:04}"))
            .collect();
        assert_eq!(seen, expected, "{path}: every staging entry once, in order");
    }
    let bad = served
        .get("/records?env=staging&before=x", Some(&cookie))
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "a page that is not a number"
    );
}
