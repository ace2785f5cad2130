//! `console`: how long each page of the web console takes to render on the server with
//! 1,000,000 runs in the store.
//!
//! The starter project on a real SQLite store (a file in `--dir`), served by the router
//! `airlock serve` answers with (`airlock_server::router`, driven in process with tower's
//! `oneshot`, so no socket or browser time is counted). Staging is deployed through the
//! API; then a generator writes N runs straight into the store's file (one transaction,
//! not by running them): both environments, both workflows, 4% failed, a minute apart on
//! average, each with a small trigger payload and no journal, plus one run with a journal.
//! Each page is then requested R times after one warm-up, signed in as a staging admin;
//! the figure is the median server time per page (and the slowest), in ms.
//!
//! ```text
//! cargo run --release -p airlock-bench -- console [--runs N] [--repeats R] [--dir PATH]
//! ```

use airlock_connectors::secrets::Keyring;
use airlock_core::project::{self, Loaded};
use airlock_core::source::SourceFile;
use airlock_engine::{Engine, EngineOptions, ProjectRuntime, SystemClock};
use airlock_server::{Context, ProjectSource, ServerOptions};
use airlock_store::Store;
use airlock_store::sqlite::SqliteStore;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

const USAGE: &str = "usage: airlock-bench console [--runs N] [--repeats R] [--dir PATH]";

struct Files(Vec<SourceFile>);

impl ProjectSource for Files {
    fn load(&self) -> Result<Loaded, String> {
        Ok(project::load(self.0.clone()))
    }
}

pub fn main(args: Vec<String>) -> ExitCode {
    let mut runs = 1_000_000usize;
    let mut repeats = 21usize;
    let mut dir: Option<std::path::PathBuf> = None;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next();
        let parsed = match (flag.as_str(), value) {
            ("--runs", Some(v)) => v.parse().map(|n| runs = n).is_ok(),
            ("--repeats", Some(v)) => v.parse().map(|n: usize| repeats = n.max(1)).is_ok(),
            ("--dir", Some(v)) => {
                dir = Some(v.into());
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(runs, repeats, dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(runs: usize, repeats: usize, dir: Option<std::path::PathBuf>) -> Result<(), String> {
    let temp = match &dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .map_err(|e| e.to_string())?;
    let root = temp.path().join("project");
    let files = airlock_core::scaffold::files();
    for file in &files {
        let path = root.join(&file.path);
        std::fs::create_dir_all(path.parent().ok_or("a path")?).map_err(|e| e.to_string())?;
        std::fs::write(path, &file.text).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(root.join(".airlock")).map_err(|e| e.to_string())?;
    let db = root.join(".airlock/airlock.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).map_err(|e| e.to_string())?);
    let manifest = project::load(files.clone()).project.manifest;
    let keyring = Keyring::from_keys([
        ("staging".to_owned(), [7u8; 32]),
        ("production".to_owned(), [9u8; 32]),
    ]);
    let clock = Arc::new(SystemClock);
    let engine = Engine::new(
        store.clone(),
        Arc::new(ProjectRuntime::new(
            store.clone(),
            manifest.clone(),
            root.clone(),
            keyring.clone(),
            clock.clone(),
        )),
        clock.clone(),
        EngineOptions::default(),
    );
    let router = airlock_server::router(
        Context {
            store: store.clone(),
            manifest: Arc::new(manifest.clone()),
            keyring,
            fingerprinter: None,
            engine,
            clock,
            project: Arc::new(Files(files)),
            root,
        },
        ServerOptions {
            execute: false,
            schedules: false,
            ..ServerOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let admin = airlock_ops::tokens::create(
        &*store,
        &manifest,
        airlock_ops::tokens::TokenToCreate {
            environment: "staging",
            role: "admin",
            name: "bench",
            actor: "bench",
            now: 0,
        },
    )
    .await
    .map_err(|e| e.to_string())?
    .token;
    let send = |request: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, headers, body))
        }
    };
    let (status, ..) = send(
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/environments/staging/deploy")
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .body(Body::empty())
            .map_err(|e| e.to_string())?,
    )
    .await?;
    if status != StatusCode::OK {
        return Err(format!("deploy answered {status}"));
    }
    let generated = Instant::now();
    let sample = generate(&db, runs)?;
    eprintln!(
        "generated {runs} runs and {} closed promotion requests in {:.1} s",
        closed_requests(runs),
        generated.elapsed().as_secs_f64()
    );
    let (status, headers, _) = send(
        Request::builder()
            .method(Method::POST)
            .uri("/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={admin}")))
            .map_err(|e| e.to_string())?,
    )
    .await?;
    if status != StatusCode::SEE_OTHER {
        return Err(format!("sign-in answered {status}"));
    }
    let cookie = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("no session cookie")?
        .to_owned();
    let deep = format!(
        "/runs?env=staging&after={}:{}",
        sample.deep_at, sample.deep_id
    );
    let pages: Vec<(&str, String)> = vec![
        ("home", "/".into()),
        ("inbox", "/inbox?env=staging".into()),
        ("runs, first page", "/runs?env=staging".into()),
        ("runs, a page deep in history", deep),
        (
            "runs, failed only",
            "/runs?env=staging&status=failed".into(),
        ),
        (
            "runs, one workflow",
            "/runs?env=staging&workflow=order-intake".into(),
        ),
        (
            "runs, before a date",
            "/runs?env=staging&before=2026-01-15".into(),
        ),
        ("run and journal", format!("/runs/{}", sample.journaled)),
        ("releases", "/releases?env=staging".into()),
        ("parity", "/parity?from=production&to=staging".into()),
        (
            "runs, dead only (none there)",
            "/runs?env=staging&status=dead".into(),
        ),
        ("readiness", "/readiness?env=staging".into()),
        ("audit", "/audit?env=staging".into()),
        ("records", "/records?env=staging".into()),
    ];
    println!(
        "console pages, server render time with {runs} runs in the store (median of {repeats}, after one warm-up)"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>9}",
        "page", "median ms", "max ms", "KiB"
    );
    for (name, uri) in pages {
        let mut times = Vec::with_capacity(repeats);
        let mut size = 0;
        for i in 0..=repeats {
            let request = Request::builder()
                .method(Method::GET)
                .uri(&uri)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            let started = Instant::now();
            let (status, _, body) = send(request).await?;
            let took = started.elapsed();
            if status != StatusCode::OK {
                return Err(format!("{uri} answered {status}"));
            }
            size = body.len();
            if i > 0 {
                times.push(took.as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<32} {:>10.2} {:>10.2} {:>9.1}",
            times[times.len() / 2],
            times[times.len() - 1],
            size as f64 / 1024.0
        );
    }
    Ok(())
}

struct Sample {
    deep_at: i64,
    deep_id: String,
    journaled: String,
}

/// Writes `runs` runs into the store's file directly, in one transaction.
fn generate(db: &std::path::Path, runs: usize) -> Result<Sample, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut conn = rusqlite::Connection::open(db).map_err(e)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(e)?;
    let version: String = conn
        .query_row(
            "SELECT version FROM deployments WHERE environment = 'staging' AND workflow = 'order-intake'",
            [],
            |row| row.get(0),
        )
        .map_err(e)?;
    let tx = conn.transaction().map_err(e)?;
    // 2026-01-01 00:00 UTC, then a minute apart on average.
    let start: i64 = 1_767_225_600_000;
    let mut sample = Sample {
        deep_at: 0,
        deep_id: String::new(),
        journaled: String::new(),
    };
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO runs (id, environment, workflow, version, status, trigger_payload,
                     output, error, created_at, started_at, finished_at, claims, fencing_token)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, 1)",
            )
            .map_err(e)?;
        for i in 0..runs {
            let at = start + (i as i64) * 60_000 + (i as i64 % 7);
            let environment = if i % 2 == 0 { "staging" } else { "production" };
            let workflow = if i % 3 == 0 {
                "credit-review"
            } else {
                "order-intake"
            };
            let failed = i % 50 == 7 || i % 50 == 8;
            let id = format!("run_{:013x}{:019x}", at, i);
            insert
                .execute(rusqlite::params![
                    id,
                    environment,
                    workflow,
                    version,
                    if failed { "failed" } else { "succeeded" },
                    format!(
                        "{{\"body\":{{\"id\":{i},\"amount\":{},\"customer\":\"cust-{}\"}}}}",
                        i % 500,
                        i % 997
                    ),
                    if failed { None } else { Some("{\"ok\":true}") },
                    failed.then_some("crm.request: status 503"),
                    at,
                    at + 3,
                    at + 40,
                ])
                .map_err(e)?;
            if i == runs / 2 && environment == "staging"
                || (i == runs / 2 + 1 && sample.deep_id.is_empty())
            {
                sample.deep_at = at;
                sample.deep_id = id.clone();
            }
            if i == runs.saturating_sub(2) {
                sample.journaled = id;
            }
        }
        let mut journal = tx
            .prepare(
                "INSERT INTO journal (run, seq, step, attempt, status, input, output, error,
                     idempotency_key, started_at, finished_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, NULL, ?7, ?8, ?9)",
            )
            .map_err(e)?;
        for (seq, (step, status)) in [
            ("normalize", "succeeded"),
            ("big_order", "succeeded"),
            ("save_order", "succeeded"),
            ("sync_crm", "outcome_unknown"),
            ("sync_crm", "succeeded"),
        ]
        .iter()
        .enumerate()
        {
            journal
                .execute(rusqlite::params![
                    sample.journaled,
                    seq as i64 + 1,
                    step,
                    status,
                    "{\"method\":\"POST\",\"path\":\"/orders\"}",
                    "{\"status\":201}",
                    format!("order-{seq}"),
                    start,
                    start + 5,
                ])
                .map_err(e)?;
        }
        // A long history of closed promotion requests (one per 100 runs: 10,000 at a
        // million), so the inbox and the home page show they read only the open ones.
        let mut request = tx
            .prepare(
                "INSERT INTO promotion_requests (id, workflow, version, from_environment,
                     to_environment, author, created_at, status, closed_at)
                 VALUES (?1, ?2, ?3, 'staging', 'production', 'dev', ?4, ?5, ?6)",
            )
            .map_err(e)?;
        for i in 0..closed_requests(runs) {
            let at = start + (i as i64) * 6_000_000;
            request
                .execute(rusqlite::params![
                    format!("req_{:013x}{:019x}", at, i),
                    if i % 3 == 0 {
                        "credit-review"
                    } else {
                        "order-intake"
                    },
                    version,
                    at,
                    ["released", "rejected", "withdrawn", "expired"][i % 4],
                    at + 3_600_000,
                ])
                .map_err(e)?;
        }
    }
    tx.commit().map_err(e)?;
    Ok(sample)
}

/// How many closed promotion requests the generator writes beside `runs` runs.
fn closed_requests(runs: usize) -> usize {
    runs / 100
}
