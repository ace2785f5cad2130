//! A real `airlock serve` process and a real counting HTTP sink, for end-to-end tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `airlock serve`; killed (SIGKILL) when dropped.
pub struct Served {
    pub child: Child,
    pub url: String,
    /// Everything it wrote on stderr (its logs), collected by a thread.
    pub logs: Arc<Mutex<String>>,
    /// The CA certificates a client of it trusts besides the usual ones (a server started
    /// with `--tls-cert` signed by a test CA).
    pub trust: Vec<airlock_connectors::tls::CertificateDer<'static>>,
}

impl Served {
    /// Starts `airlock serve --listen 127.0.0.1:0 EXTRA…` in `project` and waits until it listens.
    pub fn start(project: &Path, extra: &[&str]) -> Self {
        Self::spawn(project, &[], extra, Vec::new())
    }

    /// [`Served::start`] serving TLS (`extra` names `--tls-cert`/`--tls-key`), its
    /// certificate signed by the CA in `ca_file`, which its clients trust.
    pub fn start_tls(project: &Path, ca_file: &Path, extra: &[&str]) -> Self {
        let trust =
            airlock_connectors::tls::read_ca_file("the test CA", ca_file).expect("the test CA");
        Self::spawn(project, &[], extra, trust)
    }

    /// A client of this server (trusting its test CA, if it has one).
    pub fn client(&self) -> reqwest::blocking::ClientBuilder {
        reqwest::blocking::Client::builder().tls_backend_preconfigured(
            airlock_connectors::tls::client_config(&self.trust).expect("the TLS setup"),
        )
    }

    /// [`Served::start`] on the store at `store` (`postgres://…`).
    pub fn start_with_store(project: &Path, store: &str, extra: &[&str]) -> Self {
        Self::spawn(project, &["--store", store], extra, Vec::new())
    }

    // The child moves into `Served`, whose `Drop` kills and reaps it; only a failed
    // assertion (which ends the test process) skips that.
    #[allow(clippy::zombie_processes)]
    fn spawn(
        project: &Path,
        global: &[&str],
        extra: &[&str],
        trust: Vec<airlock_connectors::tls::CertificateDer<'static>>,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("-C")
            .arg(project)
            .args(global)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("AIRLOCK_PROJECT")
            // `serve` refuses --server: a server set in the caller's shell is not this one.
            .env_remove("AIRLOCK_SERVER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("airlock serve starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let collected = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = collected.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let started = Instant::now();
        loop {
            line.clear();
            let read = stdout.read_line(&mut line).expect("stdout readable");
            assert!(
                read > 0,
                "airlock serve exited before listening:\n{}",
                logs.lock().unwrap()
            );
            if let Some(address) = line.trim().strip_prefix("listening on ") {
                let url = address.to_owned();
                // Keep draining stdout so the server never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut sink = String::new();
                    while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
                        sink.clear();
                    }
                });
                let served = Self {
                    child,
                    url,
                    logs,
                    trust,
                };
                served.wait_ready();
                return served;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no listening line"
            );
        }
    }

    fn wait_ready(&self) {
        let client = self.client().build().expect("an HTTP client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/readyz", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server never became ready");
    }

    /// SIGTERM, then waits for the exit; returns whether it exited 0.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the sink received, by idempotency key and by path.
#[derive(Default, Debug, Clone)]
pub struct Received {
    pub by_key: HashMap<String, u32>,
    pub bodies: Vec<serde_json::Value>,
    pub total: u32,
    /// When each answer was ready to be sent (a slow sink's after its delay).
    pub answered: Vec<Instant>,
}

/// A counting HTTP sink on a loopback port, on its own runtime.
pub struct Sink {
    _runtime: tokio::runtime::Runtime,
    pub received: Arc<Mutex<Received>>,
    pub port: u16,
}

impl Sink {
    pub fn start() -> Self {
        Self::answering_after(Duration::ZERO)
    }

    /// A sink that counts each request when it arrives and answers it `delay` later.
    pub fn answering_after(delay: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = received.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    {
                        let mut received = state.lock().unwrap();
                        received.total += 1;
                        if let Some(key) =
                            headers.get("idempotency-key").and_then(|v| v.to_str().ok())
                        {
                            *received.by_key.entry(key.to_owned()).or_default() += 1;
                        }
                        if let Ok(value) = serde_json::from_slice(&body) {
                            received.bodies.push(value);
                        }
                    }
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    state.lock().unwrap().answered.push(Instant::now());
                    axum::Json(serde_json::json!({ "ok": true }))
                }
            },
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            _runtime: runtime,
            received,
            port,
        }
    }

    pub fn snapshot(&self) -> Received {
        self.received.lock().unwrap().clone()
    }
}

/// One project twice, to compare a command run here with the same command through a
/// server: `local` is worked on here, `remote` is served, and `elsewhere` holds no
/// project (commands through the server run there, so nothing local is read).
pub struct Twins {
    _temp: tempfile::TempDir,
    /// Worked on here.
    pub local: PathBuf,
    /// Served; worked on through `--server`.
    pub remote: PathBuf,
    /// No project at all.
    pub elsewhere: PathBuf,
    pub served: Served,
}

impl Twins {
    /// Makes each project with `make` (`local`, then `remote`) and serves `remote`; `make`
    /// runs before the server starts, which reads its manifest and keys once, at start.
    pub fn start(make: impl Fn(&Path)) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let local = temp.path().join("local");
        let remote = temp.path().join("remote");
        let elsewhere = temp.path().join("elsewhere");
        for dir in [&local, &remote, &elsewhere] {
            std::fs::create_dir_all(dir).unwrap();
        }
        make(&local);
        make(&remote);
        let served = Served::start(&remote, &[]);
        Twins {
            _temp: temp,
            local,
            remote,
            elsewhere,
            served,
        }
    }

    /// `args` through the server with `token` (in AIRLOCK_TOKEN), from `dir`.
    pub fn through_from(&self, dir: &Path, token: &str, args: &[&str]) -> Output {
        let all = [&["--server", self.served.url.as_str()][..], args].concat();
        super::airlock_with(dir, &all, &[("AIRLOCK_TOKEN", token)])
    }
}
