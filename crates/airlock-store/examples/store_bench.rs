//! A throughput sanity check of `SqliteStore` (not a test: nothing here asserts a time).
//!
//! Enqueues N runs from C concurrent tasks, then C tasks claim them one at a time and make
//! four commits per run (journal entries; the last one finishes the run), the shape of the
//! engine's hot path. Prints the median of R repeats, each on a fresh file.
//!
//! ```text
//! cargo run --release -p airlock-store --example store_bench -- \
//!     [--runs 20000] [--concurrency 32] [--repeats 3] [--claim-batch 1] \
//!     [--durability full|normal] [--dir PATH]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use airlock_store::{
    Commit, Durability, NewJournalEntry, NewRun, RunStatus, Settlement, SqliteOptions, SqliteStore,
    StepStatus, Store,
};
use serde_json::json;

struct Args {
    runs: usize,
    concurrency: usize,
    repeats: usize,
    claim_batch: usize,
    durability: Durability,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 20_000,
        concurrency: 32,
        repeats: 3,
        claim_batch: 1,
        durability: Durability::Full,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: String| text.parse::<usize>().map_err(|e| format!("{text}: {e}"));
        match flag.as_str() {
            "--runs" => args.runs = number(value()?)?,
            "--concurrency" => args.concurrency = number(value()?)?.max(1),
            "--repeats" => args.repeats = number(value()?)?.max(1),
            "--claim-batch" => args.claim_batch = number(value()?)?.max(1),
            "--durability" => {
                args.durability = match value()?.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    other => return Err(format!("--durability full|normal, not {other}")),
                }
            }
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn step(name: &str, status: StepStatus, at: i64) -> NewJournalEntry {
    NewJournalEntry {
        step: name.to_owned(),
        attempt: 1,
        status,
        input: Some(
            json!({"url": "http://127.0.0.1:9000/sink", "method": "POST", "body": {"order": 1234, "amount": 99.5}}),
        ),
        output: (status == StepStatus::Succeeded)
            .then(|| json!({"status": 200, "body": {"ok": true, "id": "ab12cd34"}})),
        error: None,
        idempotency_key: Some(format!("{name}-key-0123456789abcdef")),
        started_at: at,
        finished_at: (status == StepStatus::Succeeded).then_some(at + 1),
    }
}

/// A bijective scramble of `n` (splitmix64's finalizer), for keys in no particular order.
fn scatter(mut n: u64) -> u64 {
    n = (n ^ (n >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    n = (n ^ (n >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    n ^ (n >> 31)
}

/// CPU seconds this process has used so far (Linux; zero elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

struct Figures {
    cpu_us_per_run: f64,
    enqueues_per_s: f64,
    runs_per_s: f64,
    commits_per_s: f64,
    end_to_end_runs_per_s: f64,
}

async fn once(args: &Args, dir: &std::path::Path, repeat: usize) -> Result<Figures, String> {
    let path = dir.join(format!("bench-{repeat}.db"));
    let options = SqliteOptions {
        durability: args.durability,
        ..SqliteOptions::default()
    };
    let store = Arc::new(SqliteStore::open_with(&path, options).map_err(|e| e.to_string())?);
    let per_task = args.runs.div_ceil(args.concurrency);
    let total = per_task * args.concurrency;

    // Ids and acceptance times rise together, as UUIDv7 ids and a clock make them; the
    // dedupe keys (delivery ids chosen by senders) are scattered.
    let counter = Arc::new(AtomicUsize::new(0));
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (store, counter) = (Arc::clone(&store), Arc::clone(&counter));
        tasks.spawn(async move {
            for _ in 0..per_task {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let run = NewRun {
                    id: format!("0190aaaa-0000-7000-8000-{n:012}"),
                    environment: "production".to_owned(),
                    workflow: "webhook".to_owned(),
                    version: "3f9a0c1e".to_owned(),
                    trigger: json!({"body": {"order": n, "amount": 99.5, "customer": "c-42"},
                                    "headers": {"content-type": "application/json"}, "query": {}})
                    .into(),
                    dedupe_key: Some(format!("delivery-{:016x}", scatter(n as u64))),
                    created_at: n as i64,
                };
                store.enqueue(&run).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let enqueue_time = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let now = 1_000_000_000_i64;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..args.concurrency {
        let store = Arc::clone(&store);
        let batch = args.claim_batch;
        tasks.spawn(async move {
            let worker = format!("worker-{t}");
            let mut done = 0usize;
            loop {
                let claims = store
                    .claim(&worker, now, 60_000, batch)
                    .await
                    .map_err(|e| e.to_string())?;
                if claims.is_empty() {
                    return Ok::<usize, String>(done);
                }
                for claim in claims {
                    let (id, token) = (claim.run.id, claim.token);
                    let commits = [
                        Commit {
                            entries: vec![step("map", StepStatus::Succeeded, now)],
                            ..Commit::default()
                        },
                        Commit {
                            entries: vec![step("call", StepStatus::Started, now)],
                            ..Commit::default()
                        },
                        Commit {
                            entries: vec![step("call", StepStatus::Succeeded, now)],
                            ..Commit::default()
                        },
                        Commit {
                            entries: vec![step("answer", StepStatus::Succeeded, now)],
                            lease_until: None,
                            settle: Some(Settlement::Finish {
                                status: RunStatus::Succeeded,
                                output: Some(json!({"ok": true})),
                                error: None,
                                at: now,
                            }),
                        },
                    ];
                    for commit in commits {
                        store
                            .commit(&id, token, commit)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    done += 1;
                }
            }
        });
    }
    let mut processed = 0;
    while let Some(done) = tasks.join_next().await {
        processed += done.map_err(|e| e.to_string())??;
    }
    let process_time = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    if processed != total {
        return Err(format!("processed {processed} runs, expected {total}"));
    }
    drop(store);
    let _ = std::fs::remove_file(&path);
    Ok(Figures {
        cpu_us_per_run: cpu * 1e6 / total as f64,
        enqueues_per_s: total as f64 / enqueue_time,
        runs_per_s: total as f64 / process_time,
        commits_per_s: (total * 4) as f64 / process_time,
        end_to_end_runs_per_s: total as f64 / (enqueue_time + process_time),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    println!(
        "store_bench: {} runs, {} tasks, claim batch {}, durability {:?}, {} repeats, in {}",
        args.runs,
        args.concurrency,
        args.claim_batch,
        args.durability,
        args.repeats,
        dir.display()
    );
    let mut all = Vec::new();
    for repeat in 0..args.repeats {
        let f = once(&args, &dir, repeat).await?;
        println!(
            "  repeat {}: enqueue {:>8.0}/s | claim+4 commits {:>7.0} runs/s, {:>8.0} commits/s | end to end {:>7.0} runs/s, {:>4.0} µs CPU/run",
            repeat + 1,
            f.enqueues_per_s,
            f.runs_per_s,
            f.commits_per_s,
            f.end_to_end_runs_per_s,
            f.cpu_us_per_run
        );
        all.push(f);
    }
    println!(
        "median: enqueue {:.0}/s, {:.0} runs/s ({:.0} commits/s) claim+4 commits, {:.0} runs/s end to end (enqueue+claim+4 commits = 6 writes/run), {:.0} µs CPU/run",
        median(all.iter().map(|f| f.enqueues_per_s).collect()),
        median(all.iter().map(|f| f.runs_per_s).collect()),
        median(all.iter().map(|f| f.commits_per_s).collect()),
        median(all.iter().map(|f| f.end_to_end_runs_per_s).collect()),
        median(all.iter().map(|f| f.cpu_us_per_run).collect()),
    );
    Ok(())
}
