//! Airlock's benchmark harness (not a test: nothing here asserts a time).
//!
//! `engine` drives durable runs of a four-step workflow (map, sql insert into a SQLite
//! file, if, http POST to a sink) through the real engine (`Engine::work`), the real
//! SQLite store (group commit, `synchronous=FULL` by default) and the real connectors, in
//! one process, and prints runs/s, p50/p99 run latency, peak RSS and the journal rows
//! written per run. See `bench/README.md`.
//!
//! ```text
//! cargo run --release -p airlock-bench -- engine [--runs N] [--concurrency C[,C2,...]]
//!     [--repeats R] [--mode closed|backlog] [--sink URL] [--durability full|normal]
//!     [--poll-ms P] [--warmup W] [--dir PATH] [--timings] [--workload four-step|webhook]
//!     [--orders-sync full|normal]
//! ```

mod console;
mod project;
mod redaction;
mod relay;
mod scenarios;
mod sink;
mod timing;

use airlock_connectors::secrets::Keyring;
use airlock_core::canonical;
use airlock_engine::{
    Clock, Engine, EngineOptions, Observer, ProjectRuntime, Runtime, SystemClock,
};
use airlock_store::{
    Durability, NewJournalEntry, NewRun, Run, RunFilter, RunStatus, Settlement, SqliteOptions,
    SqliteStore, Store, WorkflowVersion,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

// The allocator the `airlock` binary runs on, so that runs here cost what they cost there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "usage: airlock-bench engine [--runs N] [--concurrency C[,C2,...]] [--repeats R]
       [--mode closed|backlog] [--sink URL] [--durability full|normal] [--poll-ms P]
       [--warmup W] [--dir PATH] [--timings] [--workload four-step|webhook]
       [--orders-sync full|normal]

  --workload      four-step (default): map, sql insert, if, http POST; webhook: map, if,
                  http POST (the shared workload of /work/shared/bench/README.md).
  --mode closed   (default) C clients each accept a run (Store::enqueue) and wait until it
                  is finished, then accept the next: the webhook workload at c=C. Latency
                  is created → finished, measured in process (µs).
  --mode backlog  N runs are enqueued first (timed apart), then Engine::work drains them
                  with C in flight. Latency is claimed → finished (the store's ms stamps).
  --durability    the store's: full (default, synchronous=FULL) or normal.
  --orders-sync   normal: the sql connector's orders.db skips its per-insert fsync (an
                  experiment; full, SQLite's default, is the honest setting).
  --timings       also print where a run waits: each store call and connector call.";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Closed,
    Backlog,
}

#[derive(Clone)]
struct Args {
    runs: usize,
    concurrency: Vec<usize>,
    repeats: usize,
    mode: Mode,
    sink: Option<String>,
    durability: Durability,
    poll: Duration,
    warmup: Option<usize>,
    dir: Option<PathBuf>,
    timings: bool,
    workload: project::Workload,
    orders_sync_normal: bool,
    /// Internal: run one repeat at one concurrency and print its figures as JSON.
    child: bool,
}

impl Args {
    /// The arguments of a child process running one repeat at `concurrency`.
    fn child_args(&self, concurrency: usize) -> Vec<String> {
        let mut out: Vec<String> = vec![
            "engine".into(),
            "--child".into(),
            "--runs".into(),
            self.runs.to_string(),
            "--concurrency".into(),
            concurrency.to_string(),
            "--mode".into(),
            match self.mode {
                Mode::Closed => "closed".into(),
                Mode::Backlog => "backlog".into(),
            },
            "--durability".into(),
            match self.durability {
                Durability::Normal => "normal".into(),
                _ => "full".into(),
            },
            "--poll-ms".into(),
            self.poll.as_millis().to_string(),
            "--workload".into(),
            match self.workload {
                project::Workload::FourStep => "four-step".into(),
                project::Workload::Webhook => "webhook".into(),
            },
        ];
        if let Some(sink) = &self.sink {
            out.extend(["--sink".into(), sink.clone()]);
        }
        if let Some(warmup) = self.warmup {
            out.extend(["--warmup".into(), warmup.to_string()]);
        }
        if let Some(dir) = &self.dir {
            out.extend(["--dir".into(), dir.display().to_string()]);
        }
        if self.timings {
            out.push("--timings".into());
        }
        if self.orders_sync_normal {
            out.extend(["--orders-sync".into(), "normal".into()]);
        }
        out
    }
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("engine") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_owned()),
        Some(other) => return Err(format!("unknown mode `{other}`\n{USAGE}")),
    }
    let mut args = Args {
        runs: 20_000,
        concurrency: vec![32],
        repeats: 3,
        mode: Mode::Closed,
        sink: None,
        durability: Durability::Full,
        poll: Duration::from_millis(1),
        warmup: None,
        dir: None,
        timings: false,
        workload: project::Workload::FourStep,
        orders_sync_normal: false,
        child: false,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|e| format!("{text}: {e}"))
        };
        match flag.as_str() {
            "--runs" => args.runs = number(&value()?)?.max(1),
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(|c| number(c).map(|c| c.max(1)))
                    .collect::<Result<_, _>>()?
            }
            "--repeats" => args.repeats = number(&value()?)?.max(1),
            "--mode" => {
                args.mode = match value()?.as_str() {
                    "closed" => Mode::Closed,
                    "backlog" => Mode::Backlog,
                    other => return Err(format!("--mode closed|backlog, not {other}")),
                }
            }
            "--sink" => args.sink = Some(value()?),
            "--durability" => {
                args.durability = match value()?.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    other => return Err(format!("--durability full|normal, not {other}")),
                }
            }
            "--poll-ms" => args.poll = Duration::from_millis(number(&value()?)? as u64),
            "--warmup" => args.warmup = Some(number(&value()?)?),
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--timings" => args.timings = true,
            "--child" => args.child = true,
            "--orders-sync" => {
                args.orders_sync_normal = match value()?.as_str() {
                    "full" => false,
                    "normal" => true,
                    other => return Err(format!("--orders-sync full|normal, not {other}")),
                }
            }
            "--workload" => {
                args.workload = match value()?.as_str() {
                    "four-step" => project::Workload::FourStep,
                    "webhook" => project::Workload::Webhook,
                    other => return Err(format!("--workload four-step|webhook, not {other}")),
                }
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// Sees every commit and settlement the engine makes.
#[derive(Default)]
struct Probe {
    rows: AtomicU64,
    commits: AtomicU64,
    finished: AtomicU64,
    not_succeeded: AtomicU64,
    target: AtomicU64,
    all_done: tokio::sync::Notify,
    waiters: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Probe {
    fn reset(&self, target: u64) {
        self.rows.store(0, Ordering::SeqCst);
        self.commits.store(0, Ordering::SeqCst);
        self.finished.store(0, Ordering::SeqCst);
        self.not_succeeded.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }
}

impl Observer for Probe {
    fn journaled(&self, _run: &Run, entries: &[NewJournalEntry]) {
        self.rows.fetch_add(entries.len() as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    fn settled(&self, run: &Run, settlement: &Settlement) {
        let Settlement::Finish { status, .. } = settlement else {
            return;
        };
        if *status != RunStatus::Succeeded {
            self.not_succeeded.fetch_add(1, Ordering::Relaxed);
        }
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run.id);
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        if finished == self.target.load(Ordering::SeqCst) {
            self.all_done.notify_one();
        }
    }
}

/// `VmHWM` and `VmRSS` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time counters, in clock ticks (USER_HZ): the whole machine's busy and total time
/// (all cores, from `/proc/stat`) and this process's own (`/proc/self/stat`).
#[derive(Clone, Copy)]
struct CpuMark {
    machine_busy: u64,
    machine_total: u64,
    own: u64,
}

impl CpuMark {
    fn now() -> CpuMark {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu  user nice system idle iowait irq softirq steal guest guest_nice
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 12th and 13th.
        let own = own_stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        CpuMark {
            machine_busy: total - idle,
            machine_total: total,
            own,
        }
    }

    /// This process's CPU per run (µs) and the share of the machine other processes used
    /// (%) since `self`.
    fn since(self, runs: usize) -> (f64, f64) {
        let now = CpuMark::now();
        let tick_us = 1e6 / 100.0; // USER_HZ is 100 on Linux
        let own = now.own.saturating_sub(self.own) as f64;
        let busy = now.machine_busy.saturating_sub(self.machine_busy) as f64;
        let total = now.machine_total.saturating_sub(self.machine_total).max(1) as f64;
        let others = ((busy - own).max(0.0) / total) * 100.0;
        (own * tick_us / runs.max(1) as f64, others)
    }
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so each repeat reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    if values.is_empty() {
        f64::NAN
    } else {
        values[values.len() / 2]
    }
}

#[derive(Debug, Clone, Default)]
struct Figures {
    runs_per_s: f64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: f64,
    rss_before_mib: f64,
    cpu_us_per_run: f64,
    others_cpu_pct: f64,
    rows_per_run: f64,
    commits_per_run: f64,
    enqueue_per_s: Option<f64>,
}

impl Figures {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "runs_per_s": self.runs_per_s,
            "seconds": self.seconds,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "peak_rss_mib": self.peak_rss_mib,
            "rss_before_mib": self.rss_before_mib,
            "cpu_us_per_run": self.cpu_us_per_run,
            "others_cpu_pct": self.others_cpu_pct,
            "rows_per_run": self.rows_per_run,
            "commits_per_run": self.commits_per_run,
            "enqueue_per_s": self.enqueue_per_s,
        })
    }

    fn from_json(v: &serde_json::Value) -> Figures {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        Figures {
            runs_per_s: f("runs_per_s"),
            seconds: f("seconds"),
            p50_ms: f("p50_ms"),
            p99_ms: f("p99_ms"),
            peak_rss_mib: f("peak_rss_mib"),
            rss_before_mib: f("rss_before_mib"),
            cpu_us_per_run: f("cpu_us_per_run"),
            others_cpu_pct: f("others_cpu_pct"),
            rows_per_run: f("rows_per_run"),
            commits_per_run: f("commits_per_run"),
            enqueue_per_s: v["enqueue_per_s"].as_f64(),
        }
    }
}

/// The prefix of the line a child prints its figures on.
const RESULT: &str = "RESULT ";

/// Runs one repeat in a fresh process, so that its peak RSS is its own.
fn repeat_in_child(args: &Args, concurrency: usize) -> Result<Figures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let output = std::process::Command::new(exe)
        .args(args.child_args(concurrency))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start a repeat: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut figures = None;
    for line in stdout.lines() {
        match line.strip_prefix(RESULT) {
            Some(json) => {
                let value: serde_json::Value =
                    serde_json::from_str(json).map_err(|e| format!("child result: {e}"))?;
                figures = Some(Figures::from_json(&value));
            }
            None => println!("    {line}"),
        }
    }
    match figures {
        Some(f) if output.status.success() => Ok(f),
        _ => Err(format!("a repeat failed ({})", output.status)),
    }
}

/// Everything one repeat needs.
struct Bench {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    probe: Arc<Probe>,
    timings: Option<Arc<timing::Timings>>,
    version: String,
    next_order: AtomicUsize,
    project_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl Bench {
    async fn open(args: &Args, concurrency: usize, sink_url: &str) -> Result<Bench, String> {
        let sink_host = url::Url::parse(sink_url)
            .map_err(|e| format!("--sink {sink_url}: {e}"))?
            .host_str()
            .ok_or_else(|| format!("--sink {sink_url}: no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let temp = tempfile::Builder::new()
            .prefix("airlock-bench-")
            .tempdir_in(&parent)
            .map_err(|e| format!("temp dir in {}: {e}", parent.display()))?;
        let dir = temp.path().to_path_buf();
        let (project, workflow) = project::create(
            &dir,
            args.workload,
            sink_url,
            &sink_host,
            args.orders_sync_normal,
        )?;
        let state = dir.join(".airlock");
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let sqlite = SqliteStore::open_with(
            &state.join("airlock.db"),
            SqliteOptions {
                durability: args.durability,
                ..SqliteOptions::default()
            },
        )
        .map_err(|e| format!("store: {e}"))?;
        let timings = args.timings.then(|| Arc::new(timing::Timings::default()));
        let store: Arc<dyn Store> = match &timings {
            Some(t) => Arc::new(timing::TimedStore {
                inner: Arc::new(sqlite),
                timings: t.clone(),
            }),
            None => Arc::new(sqlite),
        };
        let keyring = Keyring::load(&state, &["staging"]).map_err(|e| e.to_string())?;
        let clock = Arc::new(SystemClock);
        let project_runtime = ProjectRuntime::new(
            store.clone(),
            project.manifest.clone(),
            dir.clone(),
            keyring,
            clock.clone(),
        );
        let runtime: Arc<dyn Runtime> = match &timings {
            Some(t) => Arc::new(timing::TimedRuntime {
                inner: project_runtime,
                timings: t.clone(),
            }),
            None => Arc::new(project_runtime),
        };
        let version = canonical::version_id(&workflow).0;
        store
            .put_version(&WorkflowVersion {
                id: version.clone(),
                workflow: workflow.name.value.clone(),
                canonical: String::from_utf8_lossy(&canonical::canonical_bytes(&workflow))
                    .into_owned(),
                source: args.workload.source(),
                created_at: clock.now(),
            })
            .await
            .map_err(|e| format!("store: {e}"))?;
        let probe = Arc::new(Probe::default());
        let engine = Engine::new(
            store.clone(),
            runtime,
            clock,
            EngineOptions {
                worker: "bench".into(),
                lease_ms: 30_000,
                concurrency,
                inline_sleep_ms: 0,
            },
        )
        .with_observer(probe.clone());
        Ok(Bench {
            store,
            engine: Arc::new(engine),
            probe,
            timings,
            version,
            next_order: AtomicUsize::new(1),
            project_dir: dir,
            _temp: temp,
        })
    }

    fn new_run(&self) -> NewRun {
        let order = self.next_order.fetch_add(1, Ordering::Relaxed);
        NewRun {
            id: airlock_engine::new_run_id(),
            environment: "staging".into(),
            workflow: "order".into(),
            version: self.version.clone(),
            trigger: json!({
                "body": {
                    "id": order,
                    "amount": if order.is_multiple_of(2) { 50 } else { 150 },
                    "customer": format!("cust-{}", order % 1000),
                },
                "headers": {},
                "query": {},
            })
            .into(),
            dedupe_key: None,
            created_at: SystemClock.now(),
        }
    }

    /// Starts `Engine::work`; the returned sender stops it.
    fn start_worker(
        &self,
        poll: Duration,
    ) -> (
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<Result<(), String>>,
    ) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let engine = self.engine.clone();
        let task =
            tokio::spawn(async move { engine.work(rx, poll).await.map_err(|e| e.to_string()) });
        (tx, task)
    }

    async fn stop_worker(
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), String>>,
    ) -> Result<(), String> {
        let _ = stop.send(true);
        task.await.map_err(|e| format!("worker: {e}"))?
    }

    /// `clients` clients each accept a run and wait for it to finish, `n` runs in all.
    /// Returns each run's created → finished latency and its id.
    async fn closed_loop(
        self: &Arc<Self>,
        n: usize,
        clients: usize,
    ) -> Result<Vec<(String, Duration)>, String> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients.min(n) {
            let bench = self.clone();
            let next = next.clone();
            tasks.spawn(async move {
                let mut done = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let run = bench.new_run();
                    let (tx, rx) = oneshot::channel();
                    bench
                        .probe
                        .waiters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(run.id.clone(), tx);
                    let started = Instant::now();
                    bench
                        .store
                        .enqueue(&run)
                        .await
                        .map_err(|e| format!("enqueue: {e}"))?;
                    tokio::time::timeout(Duration::from_secs(60), rx)
                        .await
                        .map_err(|_| format!("run {} did not finish within 60 s", run.id))?
                        .map_err(|_| format!("run {}: lost", run.id))?;
                    done.push((run.id, started.elapsed()));
                }
                Ok::<_, String>(done)
            });
        }
        let mut all = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined.map_err(|e| format!("client: {e}"))??);
        }
        Ok(all)
    }

    /// Enqueues `n` runs from `clients` concurrent tasks; returns their ids.
    async fn enqueue_all(
        self: &Arc<Self>,
        n: usize,
        clients: usize,
    ) -> Result<Vec<String>, String> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients.min(n) {
            let bench = self.clone();
            let next = next.clone();
            tasks.spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let run = bench.new_run();
                    bench
                        .store
                        .enqueue(&run)
                        .await
                        .map_err(|e| format!("enqueue: {e}"))?;
                    ids.push(run.id);
                }
                Ok::<_, String>(ids)
            });
        }
        let mut all = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined.map_err(|e| format!("client: {e}"))??);
        }
        Ok(all)
    }
}

/// One repeat at one concurrency: warm up, measure, check.
async fn repeat(
    args: &Args,
    concurrency: usize,
    sink_url: &str,
    sink: Option<&sink::Sink>,
) -> Result<(Figures, Vec<String>), String> {
    let bench = Arc::new(Bench::open(args, concurrency, sink_url).await?);
    let n = args.runs;

    // Warm-up (untimed): opens the SQL file, the HTTP connections, the caches.
    let warmup = args.warmup.unwrap_or((concurrency * 4).max(200));
    let sink_before_warmup = sink.map(sink::Sink::received);
    if warmup > 0 {
        bench.probe.reset(warmup as u64);
        let (stop, task) = bench.start_worker(args.poll);
        bench.closed_loop(warmup, concurrency).await?;
        Bench::stop_worker(stop, task).await?;
    }
    bench.probe.reset(n as u64);
    if let Some(t) = &bench.timings {
        t.reset();
    }
    let sink_before = sink.map(sink::Sink::received);
    reset_peak_rss();
    let (_, rss_before) = memory_kib();

    let mut figures = Figures::default();
    let (ids, seconds) = match args.mode {
        Mode::Closed => {
            let (stop, task) = bench.start_worker(args.poll);
            let started = Instant::now();
            let cpu = CpuMark::now();
            let done = bench.closed_loop(n, concurrency).await?;
            let seconds = started.elapsed().as_secs_f64();
            (figures.cpu_us_per_run, figures.others_cpu_pct) = cpu.since(n);
            Bench::stop_worker(stop, task).await?;
            let mut latencies: Vec<f64> = done.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
            latencies.sort_by(|a, b| a.total_cmp(b));
            figures.p50_ms = percentile(&latencies, 50);
            figures.p99_ms = percentile(&latencies, 99);
            (
                done.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
                seconds,
            )
        }
        Mode::Backlog => {
            let enqueue_started = Instant::now();
            let ids = bench.enqueue_all(n, concurrency.max(32)).await?;
            figures.enqueue_per_s = Some(n as f64 / enqueue_started.elapsed().as_secs_f64());
            let cpu = CpuMark::now();
            let (stop, task) = bench.start_worker(args.poll);
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            // A wake-up left over from the warm-up is harmless: the count decides.
            while bench.probe.finished.load(Ordering::SeqCst) < n as u64 {
                tokio::time::timeout_at(deadline, bench.probe.all_done.notified())
                    .await
                    .map_err(|_| "the runs did not finish within 600 s".to_owned())?;
            }
            let seconds = started.elapsed().as_secs_f64();
            (figures.cpu_us_per_run, figures.others_cpu_pct) = cpu.since(n);
            Bench::stop_worker(stop, task).await?;
            (ids, seconds)
        }
    };
    let (peak, _) = memory_kib();
    figures.seconds = seconds;
    figures.runs_per_s = n as f64 / seconds;
    figures.peak_rss_mib = peak as f64 / 1024.0;
    figures.rss_before_mib = rss_before as f64 / 1024.0;
    figures.rows_per_run = bench.probe.rows.load(Ordering::SeqCst) as f64 / n as f64;
    figures.commits_per_run = bench.probe.commits.load(Ordering::SeqCst) as f64 / n as f64;
    let mut notes = Vec::new();
    if let Some(t) = &bench.timings {
        notes.extend(t.report(n));
    }

    // Checks (untimed): every run succeeded, every POST and every row arrived.
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let runs = bench
        .store
        .runs(&RunFilter::default())
        .await
        .map_err(|e| format!("store: {e}"))?;
    let mut succeeded = 0;
    let mut claim_to_finish = Vec::new();
    for run in runs.iter().filter(|r| wanted.contains(r.id.as_str())) {
        if run.status == RunStatus::Succeeded {
            succeeded += 1;
        }
        if let (Some(s), Some(f)) = (run.started_at, run.finished_at) {
            claim_to_finish.push((f - s) as f64);
        }
    }
    if args.mode == Mode::Backlog {
        claim_to_finish.sort_by(|a, b| a.total_cmp(b));
        figures.p50_ms = percentile(&claim_to_finish, 50);
        figures.p99_ms = percentile(&claim_to_finish, 99);
    }
    let failed = bench.probe.not_succeeded.load(Ordering::SeqCst);
    if succeeded != n || failed > 0 {
        return Err(format!(
            "{succeeded} of {n} runs succeeded ({failed} finished otherwise)"
        ));
    }
    let orders = if args.workload == project::Workload::FourStep {
        let orders = rusqlite::Connection::open(bench.project_dir.join(project::ORDERS_DB))
            .and_then(|c| c.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0)))
            .map_err(|e| format!("orders.db: {e}"))? as usize;
        if orders != n + warmup {
            return Err(format!("{orders} rows in orders.db, not {}", n + warmup));
        }
        format!(", {orders} rows in orders.db (with {warmup} warm-up runs)")
    } else {
        String::new()
    };
    if let (Some(sink), Some(before), Some(warm)) = (sink, sink_before, sink_before_warmup) {
        let posts = (sink.received() - before) as usize;
        if posts != n || before - warm != warmup as u64 {
            return Err(format!("{posts} POSTs at the sink for {n} runs"));
        }
    }
    notes.insert(
        0,
        format!(
            "checked: {n} runs succeeded{orders}{}",
            if sink.is_some() {
                format!(", {n} POSTs at the sink")
            } else {
                String::new()
            }
        ),
    );
    Ok((figures, notes))
}

fn print_figures(label: &str, f: &Figures, mode: Mode) {
    let latency = match mode {
        Mode::Closed => "created→finished",
        Mode::Backlog => "claimed→finished",
    };
    let enqueue = f
        .enqueue_per_s
        .map(|e| format!(" · enqueue {e:.0}/s (apart)"))
        .unwrap_or_default();
    println!(
        "{label}: {:>7.0} runs/s ({:.2} s) · {latency} p50 {:.2} ms p99 {:.2} ms · peak RSS {:.1} MiB (before {:.1}) · CPU {:.0} µs/run · others used {:.0}% of the machine · {:.2} journal rows/run · {:.2} commits/run{enqueue}",
        f.runs_per_s,
        f.seconds,
        f.p50_ms,
        f.p99_ms,
        f.peak_rss_mib,
        f.rss_before_mib,
        f.cpu_us_per_run,
        f.others_cpu_pct,
        f.rows_per_run,
        f.commits_per_run,
    );
}

fn median_figures(all: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(&mut all.iter().map(f).collect::<Vec<_>>());
    Figures {
        runs_per_s: pick(|f| f.runs_per_s),
        seconds: pick(|f| f.seconds),
        p50_ms: pick(|f| f.p50_ms),
        p99_ms: pick(|f| f.p99_ms),
        peak_rss_mib: pick(|f| f.peak_rss_mib),
        rss_before_mib: pick(|f| f.rss_before_mib),
        cpu_us_per_run: pick(|f| f.cpu_us_per_run),
        others_cpu_pct: pick(|f| f.others_cpu_pct),
        rows_per_run: pick(|f| f.rows_per_run),
        commits_per_run: pick(|f| f.commits_per_run),
        enqueue_per_s: all
            .iter()
            .all(|f| f.enqueue_per_s.is_some())
            .then(|| pick(|f| f.enqueue_per_s.unwrap_or(0.0))),
    }
}

const TARGET_RUNS_PER_S: f64 = 5_000.0;

async fn main_async(args: Args, internal: Option<&sink::Sink>) -> Result<(), String> {
    let sink_url = args
        .sink
        .clone()
        .or_else(|| internal.map(|s| s.url.clone()))
        .unwrap_or_default();
    if args.child {
        let concurrency = args.concurrency.first().copied().unwrap_or(32);
        let (figures, notes) = repeat(&args, concurrency, &sink_url, internal).await?;
        for note in notes {
            println!("{note}");
        }
        println!("{RESULT}{}", figures.to_json());
        return Ok(());
    }
    println!(
        "airlock-bench engine · workload {:?} · mode {:?} · {} runs × {} repeats (each in a fresh process) · durability {:?} · sink {} · poll {:?} · dir {}",
        args.workload,
        args.mode,
        args.runs,
        args.repeats,
        args.durability,
        args.sink.as_deref().unwrap_or("in process"),
        args.poll,
        args.dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .display()
    );
    let mut summary = Vec::new();
    for &concurrency in &args.concurrency {
        let mut all = Vec::new();
        for r in 1..=args.repeats {
            let figures = repeat_in_child(&args, concurrency)?;
            print_figures(
                &format!("C={concurrency:<3} repeat {r}/{}", args.repeats),
                &figures,
                args.mode,
            );
            all.push(figures);
        }
        let median = median_figures(&all);
        print_figures(
            &format!("C={concurrency:<3} median    "),
            &median,
            args.mode,
        );
        summary.push((concurrency, median));
    }
    println!();
    println!(
        "| C | runs/s | p50 ms | p99 ms | peak RSS MiB | journal rows/run | CPU µs/run | others' CPU | vs 5,000/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (c, f) in &summary {
        println!(
            "| {c} | {:.0} | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} | {:.0}% | {:.2}× |",
            f.runs_per_s,
            f.p50_ms,
            f.p99_ms,
            f.peak_rss_mib,
            f.rows_per_run,
            f.cpu_us_per_run,
            f.others_cpu_pct,
            f.runs_per_s / TARGET_RUNS_PER_S
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("scenarios") {
        return scenarios::main(std::env::args().skip(2).collect());
    }
    if std::env::args().nth(1).as_deref() == Some("redaction") {
        return redaction::main(std::env::args().skip(2).collect());
    }
    if std::env::args().nth(1).as_deref() == Some("console") {
        return console::main(std::env::args().skip(2).collect());
    }
    if std::env::args().nth(1).as_deref() == Some("relay") {
        return relay::main(std::env::args().skip(2).collect());
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    // The in-process sink runs on a runtime of its own, started (and dropped) outside the
    // engine's.
    let internal = match &args.sink {
        Some(_) => None,
        None if !args.child => None,
        None => match sink::Sink::start() {
            Ok(sink) => Some(sink),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(args, internal.as_ref())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
