//! `scenarios`: how long `airlock test`'s core takes on a suite of N scenarios.
//!
//! The suite is the starter project's two workflows with N scenarios made from its seven
//! starter scenarios, each copy with its own order id (and overdue total), so no two
//! are the same text. Three figures, each the median of R repeats:
//! - `load`: reading the files into a project (YAML parse, decode, validation of every
//!   file: what `airlock test` does before running anything);
//! - `run`: hashing each workflow, running every scenario through the interpreter (on
//!   every core) and computing coverage (`suite::suites` + `suite::run_suites`);
//! - `total`: both, back to back (what the command spends, less reading files from disk,
//!   printing and recording two evidence rows).
//!
//! ```text
//! cargo run --release -p airlock-bench -- scenarios [--count N] [--repeats R]
//! ```

use airlock_core::project;
use airlock_core::source::SourceFile;
use airlock_core::suite;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: airlock-bench scenarios [--count N] [--repeats R]";

/// Entry point; `args` are the arguments after `scenarios`.
pub fn main(args: Vec<String>) -> ExitCode {
    let (count, repeats) = match count_and_repeats(&args, 1_000, 5) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let files = suite_files(count);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("scenarios: {count} scenarios over 2 workflows, {repeats} repeats, {threads} threads");

    // One untimed pass: every scenario must pass, or the figure means nothing.
    let loaded = project::load(files.clone());
    if let Some(first) = loaded.diagnostics.first() {
        eprintln!("error: the generated suite is invalid: {}", first.message);
        return ExitCode::FAILURE;
    }
    if loaded.project.scenarios.len() != count {
        eprintln!(
            "error: {} scenarios loaded, {count} written",
            loaded.project.scenarios.len()
        );
        return ExitCode::FAILURE;
    }
    let reports = suite::run_suites(&suite::suites(&loaded.project, None), &|| {});
    let failed: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.failed()
                .map(|s| format!("{}/{}: {:?}", s.workflow, s.name, s.failures))
        })
        .collect();
    if let Some(first) = failed.first() {
        eprintln!(
            "error: {} of {count} scenarios failed; first: {first}",
            failed.len()
        );
        return ExitCode::FAILURE;
    }

    let mut load = Vec::new();
    let mut run = Vec::new();
    let mut sequential = Vec::new();
    let mut total = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let loaded = project::load(files.clone());
        let loaded_at = started.elapsed();
        let suites = suite::suites(&loaded.project, None);
        let reports = suite::run_suites(&suites, &|| {});
        let finished = started.elapsed();
        std::hint::black_box(&reports);
        load.push(loaded_at);
        run.push(finished - loaded_at);
        total.push(finished);

        // The same run on one thread, for comparison.
        let started = Instant::now();
        let suites = suite::suites(&loaded.project, None);
        for suite in &suites {
            let results: Vec<_> = suite
                .scenarios
                .iter()
                .map(|s| suite.prepared.run(s))
                .collect();
            std::hint::black_box(suite.prepared.coverage(&results));
        }
        sequential.push(started.elapsed());
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / count.max(1) as f64;
    for (name, samples) in [
        ("load (parse+validate)", &mut load),
        ("run (all threads)", &mut run),
        ("run (one thread)", &mut sequential),
        ("total (load + run)", &mut total),
    ] {
        let median = median(samples);
        println!(
            "{name:<24} median {:>8.1} ms  ({:>6.1} µs/scenario)  min {:>8.1} ms  max {:>8.1} ms",
            median.as_secs_f64() * 1e3,
            per(median),
            samples.first().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
    }
    ExitCode::SUCCESS
}

/// `--count N` and `--repeats R` (the modes that take only those), with their defaults.
pub(crate) fn count_and_repeats(
    args: &[String],
    mut count: usize,
    mut repeats: usize,
) -> Result<(usize, usize), String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} takes a positive number"))
        };
        match arg.as_str() {
            "--count" => count = number("--count")?,
            "--repeats" => repeats = number("--repeats")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((count, repeats))
}

/// Sorts the samples and returns the median.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// The starter project with `count` scenarios made from its seven.
fn suite_files(count: usize) -> Vec<SourceFile> {
    let starters: Vec<&(&str, &str)> = airlock_core::scaffold::FILES
        .iter()
        .filter(|(path, _)| path.starts_with("tests/"))
        .collect();
    let mut files: Vec<SourceFile> = airlock_core::scaffold::FILES
        .iter()
        .filter(|(path, _)| !path.starts_with("tests/") && project::is_project_file(path))
        .map(|(path, text)| SourceFile::new(*path, *text))
        .collect();
    for i in 0..count {
        let (path, text) = starters[i % starters.len()];
        let id = 100_000 + i;
        let text = text
            .replace("1001", &id.to_string())
            .replace("1002", &id.to_string())
            .replace("1003", &id.to_string())
            .replace("1004", &id.to_string())
            .replace("total: 900", &format!("total: {}", 600 + i % 400));
        files.push(SourceFile::new(
            path.replace(".yaml", &format!("-{i:04}.yaml")),
            text,
        ));
    }
    files
}
