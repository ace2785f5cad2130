//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `.ci/run` installs), driven over WebDriver (fantoccini) by chromedriver started
//! here on loopback, against the real `airlock serve` binary:
//!
//! sign in with an approver's token; the home page shows staging ahead of production;
//! the inbox; the author's session sees no Approve button; the approver approves; the
//! release appears with its chart; a rollback from the releases page; a run's journal
//! shows `outcome unknown` for a call interrupted by `kill -9` of the server. Each page's
//! screenshot is kept under `target/console-screenshots/`.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::server::Served;
use support::{airlock, airlock_with, create_token, ok, shown, write};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

fn greet(greeting: &str) -> String {
    format!(
        "name: greet\ndescription: Greets whoever the shop names.\ntrigger: {{ webhook: {{ path: greet }} }}\nsteps:\n  - id: hello\n    map: {{ greeting: \"{greeting} {{{{ trigger.body.name }}}}\" }}\n"
    )
}

fn new_project(dir: &Path, target_port: u16) {
    write(
        dir,
        "airlock.yaml",
        &format!(
            r#"project: console-tour
connectors:
  sink: {{ kind: http, description: "The order sink" }}
environments:
  staging:
    approvers: [prod-approver]
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{target_port}", timeout: 60s }}
  production:
    protected: true
    approvers: [prod-approver]
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:{target_port}", timeout: 60s }}
differences:
  - {{ path: protected, reason: "production changes only by promotion and rollback" }}
promotion:
  staging -> production:
    require: {{ tests: pass, parity: clean, approvals: 1 }}
"#
        ),
    );
    write(dir, "workflows/greet.yaml", &greet("hello"));
    write(
        dir,
        "tests/greet/hello.yaml",
        "trigger: { body: { name: ada } }\nexpect:\n  status: succeeded\n  path: [hello]\n",
    );
    write(
        dir,
        "workflows/ping.yaml",
        "name: ping\ntrigger: manual\nsteps:\n  - id: post\n    call: sink.request\n    with: { method: POST, path: /orders, json: { order: 42 } }\n    retry: { attempts: 3, backoff: 10ms, on: [timeout, connection, status_5xx] }\n",
    );
    write(
        dir,
        "tests/ping/posts.yaml",
        "trigger: { body: {} }\nstubs:\n  sink.request: { respond: { status: 200, body: {} } }\nexpect:\n  status: succeeded\n  path: [post]\n",
    );
}

/// A target whose first request is never answered (the connection is held open, as a
/// hung server would), and whose later ones are: what a crash mid-call meets.
struct HangingTarget {
    port: u16,
    keys: Arc<Mutex<Vec<String>>>,
}

impl HangingTarget {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let keys: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = keys.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buffer).unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..n]).to_lowercase();
                let key = request
                    .lines()
                    .find_map(|l| l.strip_prefix("idempotency-key:"))
                    .map(|k| k.trim().to_owned())
                    .unwrap_or_default();
                let first = {
                    let mut keys = seen.lock().unwrap();
                    keys.push(key);
                    keys.len() == 1
                };
                if first {
                    held.push(stream);
                    continue;
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\nconnection: close\r\n\r\n{\"saved\":true}");
            }
        });
        Self { port, keys }
    }

    fn requests(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    // The child moves into `Driver`, whose `Drop` kills and reaps it.
    #[allow(clippy::zombie_processes)]
    fn start() -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver (.ci/run does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn api(url: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let client = support::http_client().build().expect("an HTTP client");
    let request = match method {
        "POST" => client.post(format!("{url}{path}")),
        _ => client.get(format!("{url}{path}")),
    }
    .bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().unwrap();
    let status = response.status();
    let value: Value = response.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

/// What the browser does, page by page.
struct Tour<'a> {
    browser: &'a Client,
    url: &'a str,
    shots: PathBuf,
}

impl Tour<'_> {
    async fn open(&self, path: &str) -> String {
        self.browser
            .goto(&format!("{}{path}", self.url))
            .await
            .unwrap();
        self.browser.source().await.unwrap()
    }

    async fn shoot(&self, name: &str) {
        let png = self.browser.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits (bounded) until the browser has left `from` after a form was sent: a click
    /// returns when the event is dispatched, not when the next page has loaded.
    async fn left(&self, from: &url::Url) {
        for _ in 0..200 {
            let now = self.browser.current_url().await.unwrap();
            let ready = self
                .browser
                .execute("return document.readyState", vec![])
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            if &now != from && ready.as_deref() == Some("complete") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser never left {from}");
    }

    async fn sign_in(&self, token: &str) {
        self.open("/sign-in").await;
        let field = self.browser.find(Locator::Id("token")).await.unwrap();
        field.send_keys(token).await.unwrap();
        let from = self.browser.current_url().await.unwrap();
        self.browser
            .find(Locator::Css("form[action='/sign-in'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.left(&from).await;
        let home = self.browser.source().await.unwrap();
        assert!(home.contains("Sign out"), "signed in: {home}");
    }

    async fn sign_out(&self) {
        let from = self.browser.current_url().await.unwrap();
        self.browser
            .find(Locator::Css("form[action='/sign-out'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.left(&from).await;
        assert!(
            self.browser
                .current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/sign-in")
        );
    }

    async fn click(&self, css: &str) -> String {
        let from = self.browser.current_url().await.unwrap();
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
        self.left(&from).await;
        self.browser.source().await.unwrap()
    }
}

#[test]
fn the_console_in_a_real_browser() {
    let target = HangingTarget::start();
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    new_project(&project, target.port);
    ok(&airlock(&project, &["test"]), "test v1");
    let dev = create_token(&project, "staging", "deployer", "dev");
    let shop = create_token(&project, "staging", "runner", "shop");
    let releaser = create_token(&project, "production", "deployer", "releaser");
    let approver = create_token(&project, "production", "approver", "prod-approver");
    let oncall = create_token(&project, "production", "runner", "oncall");

    // A call interrupted by kill -9: the first server dies while the target holds the
    // call; the next takes the run over once its lease has run out and retries the call
    // with the same key.
    let served = Served::start(&project, &["--lease", "2s"]);
    let through = |token: &str, args: &[&str]| {
        let all = [&["--server", served.url.as_str()][..], args].concat();
        airlock_with(&project, &all, &[("AIRLOCK_TOKEN", token)])
    };
    ok(&through(&dev, &["deploy", "--env", "staging"]), "deploy v1");
    let started = api(
        &served.url,
        &shop,
        "POST",
        "/api/v1/environments/staging/workflows/ping/runs",
        Some(json!({})),
    );
    let run = started["run"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the call never reached the target"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(served); // SIGKILL, mid-call.
    let served = Served::start(&project, &["--lease", "2s"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = api(
            &served.url,
            &shop,
            "GET",
            &format!("/api/v1/runs/{run}"),
            None,
        );
        if shown["run"]["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run never finished: {shown:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    {
        let keys = target.keys.lock().unwrap();
        assert!(
            keys.len() >= 2 && keys.iter().all(|k| k == &keys[0] && !k.is_empty()),
            "retried with the same key: {keys:?}"
        );
    }
    let through = |token: &str, args: &[&str]| {
        let all = [&["--server", served.url.as_str()][..], args].concat();
        airlock_with(&project, &all, &[("AIRLOCK_TOKEN", token)])
    };

    // v1 released to production; v2 deployed to staging and asked for by `releaser`.
    let promoted = through(&releaser, &["promote", "greet", "--json"]);
    ok(&promoted, "promote v1");
    let first: Value = serde_json::from_slice(&promoted.stdout).unwrap();
    let request = first["request"]["id"].as_str().unwrap().to_owned();
    ok(&through(&approver, &["approve", &request]), "approve v1");
    // Runs of v1 in production, so the chart has something to show.
    for name in ["ada", "grace", "edsger"] {
        api(
            &served.url,
            &oncall,
            "POST",
            "/api/v1/environments/production/workflows/greet/runs",
            Some(json!({ "name": name })),
        );
    }
    write(&project, "workflows/greet.yaml", &greet("hello again"));
    ok(&airlock(&project, &["test"]), "test v2");
    ok(&through(&dev, &["deploy", "--env", "staging"]), "deploy v2");
    let promoted = through(&releaser, &["promote", "greet", "--json"]);
    ok(&promoted, "promote v2");
    let second: Value = serde_json::from_slice(&promoted.stdout).unwrap();
    assert!(
        second["request"]["id"].is_string() && second["release"].is_null(),
        "a request waits for its approver: {}",
        shown(&promoted)
    );

    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,900"],
            }),
        );
        let browser = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a Chromium session");
        let tour = Tour {
            browser: &browser,
            url: &served.url,
            shots: screenshots(),
        };

        // The approver signs in; home shows staging ahead of production.
        tour.sign_in(&approver).await;
        let home = tour.open("/").await;
        assert!(home.contains("staging ahead of production"), "{home}");
        assert!(home.contains("1 pending"), "{home}");
        tour.shoot("home").await;

        let inbox = tour.open("/inbox").await;
        assert!(inbox.contains("greet"), "{inbox}");
        assert!(
            inbox.contains(">Approve<"),
            "the approver may approve: {inbox}"
        );
        assert!(
            inbox.contains("hello again"),
            "the change is shown: {inbox}"
        );
        tour.shoot("inbox").await;
        for page in ["parity", "readiness", "audit"] {
            tour.open(&format!("/{page}")).await;
            tour.shoot(page).await;
        }
        tour.sign_out().await;

        // The author sees the request, and no Approve button.
        tour.sign_in(&releaser).await;
        let inbox = tour.open("/inbox").await;
        assert!(inbox.contains("greet"), "{inbox}");
        assert!(
            !inbox.contains(">Approve<"),
            "never for the author: {inbox}"
        );
        assert!(inbox.contains("You asked for this promotion"), "{inbox}");
        tour.shoot("inbox-author").await;
        tour.sign_out().await;

        // The approver approves: the release appears, with its chart.
        tour.sign_in(&approver).await;
        tour.open("/inbox").await;
        let releases = tour
            .click("form[action$='/approve'] button[type='submit']")
            .await;
        assert!(
            tour.browser
                .current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/releases"),
            "to the release"
        );
        assert!(releases.contains("<svg"), "the chart: {releases}");
        assert!(releases.contains("current"), "{releases}");
        let svg = tour.browser.find(Locator::Css("svg.chart")).await.unwrap();
        assert!(svg.is_displayed().await.unwrap());
        tour.shoot("releases").await;
        tour.sign_out().await;

        // A deployer of production rolls back from the releases page.
        tour.sign_in(&releaser).await;
        tour.open("/releases?env=production").await;
        let after = tour.click("form[action$='/rollback'] button").await;
        assert!(after.contains("rollback"), "a rollback release: {after}");
        tour.shoot("releases-rolled-back").await;
        tour.sign_out().await;

        // The interrupted call, as the journal tells it.
        tour.sign_in(&shop).await;
        let journal = tour.open(&format!("/runs/{run}")).await;
        assert!(journal.contains("outcome unknown"), "{journal}");
        tour.shoot("run").await;
        tour.open("/runs").await;
        tour.shoot("runs").await;
        tour.open("/records").await;
        tour.shoot("records").await;
        // A phone's width: the same pages, the navigation wrapped, tables scrolled in place.
        browser.set_window_size(390, 844).await.unwrap();
        tour.open(&format!("/runs/{run}")).await;
        tour.shoot("run-phone").await;
        browser.close().await.unwrap();
    });

    // What the browser did is what the store holds: the rollback made production run v1.
    let releases = through(
        &approver,
        &["releases", "greet", "--env", "production", "--json"],
    );
    ok(&releases, "releases");
    let rows: Value = serde_json::from_slice(&releases.stdout).unwrap();
    let rows = rows
        .as_array()
        .or(rows["releases"].as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(rows[0]["kind"], "rollback");
    assert_eq!(rows[0]["author"], "releaser");
    assert_eq!(rows[1]["approvers"], json!(["prod-approver"]));
}
