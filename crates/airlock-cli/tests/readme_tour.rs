//! Defect 7 of issue 11: the README's five-minute tour could not be followed as written
//! (`run credit-review` took its `else` arm, so `approve-step` failed; `promote` was refused
//! for want of staging runs, and inside the starter's freeze with no way forward; one
//! `approve` where the policy asks two; `rollback` after a first release).
//!
//! This test reads the tour from `README.md` (every command of the `sh` blocks of its section,
//! exactly as written there) and runs them, in order, in one shell in a fresh folder, with the
//! built binary on the `PATH`: each must exit 0, unless its comment starts with `exit N`. So
//! the README and what the binary does cannot drift apart. It runs twice, with the binary's
//! clock (`AIRLOCK_TEST_NOW`, honoured by debug builds only) inside the starter's freeze
//! window and outside it, since the tour must work on any day.

mod support;
use support::*;

use std::process::{Command, Stdio};

const README: &str = include_str!("../../../README.md");
const TOUR: &str = "## A five-minute tour";

/// Saturday 2026-11-28, 12:00 in London: inside the starter's freeze (Fri 15:00 – Mon 08:00).
const IN_THE_FREEZE: &str = "2026-11-28T12:00:00Z";
/// Wednesday 2026-11-25, 12:00 in London: outside it.
const MIDWEEK: &str = "2026-11-25T12:00:00Z";

/// One command of the tour and the exit code the README gives it.
#[derive(Debug)]
struct Step {
    command: String,
    exit: i32,
}

/// The commands of the `sh` blocks of the tour's section, in order: every line that is not
/// blank and not a comment (a line ending in `\` continues on the next).
fn tour() -> Vec<Step> {
    let start = README.find(TOUR).expect("the README has its tour");
    let section = &README[start + TOUR.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut steps = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in section.lines() {
        let trimmed = line.trim_end();
        if trimmed.starts_with("```") {
            in_sh = trimmed == "```sh";
            continue;
        }
        if !in_sh || trimmed.trim().is_empty() || trimmed.trim_start().starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        let command = format!("{pending}{trimmed}");
        pending.clear();
        // `# exit N: why` after a command: the README says it exits N.
        let exit = command
            .split(" # ")
            .nth(1)
            .and_then(|comment| comment.trim().strip_prefix("exit "))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        steps.push(Step { command, exit });
    }
    steps
}

/// Runs the tour in one `bash` (so that `cd` and the ids it keeps carry over), with the
/// binary's clock at `now`, and answers everything it printed; panics at the first command
/// whose exit code is not the README's.
fn run_tour(now: &str) -> String {
    let steps = tour();
    assert!(steps.len() >= 20, "the tour is found whole: {steps:#?}");
    let temp = tempfile::tempdir().expect("a folder");
    // A pipe's status is its first failing command's, so that `airlock … | tail -1` is
    // judged by airlock.
    let mut script = String::from("set -o pipefail\nexec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "printf '\\n::step {i}\\n'\n{}\nstatus=$?\nif [ \"$status\" -ne {} ]; then printf '\\n::failed {i} %s\\n' \"$status\"; exit 1; fi\n",
            step.command, step.exit
        ));
    }
    script.push_str("printf '\\n::end\\n'\n");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_airlock"));
    let path = format!(
        "{}:{}",
        binary.parent().expect("the binary's folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &script])
        .current_dir(temp.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("AIRLOCK_TEST_NOW", now)
        .env_remove("AIRLOCK_PROJECT")
        .env_remove("AIRLOCK_STORE")
        .env_remove("AIRLOCK_SERVER")
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_FINGERPRINT_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let printed = text(&out.stdout);
    if let Some(failed) = printed.lines().find_map(|l| l.strip_prefix("::failed ")) {
        let mut words = failed.split(' ');
        let index: usize = words.next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let status = words.next().unwrap_or("?");
        let step = &steps[index];
        let since = printed
            .find(&format!("::step {index}\n"))
            .map_or(printed.as_str(), |at| &printed[at..]);
        panic!(
            "the README's tour fails at `{}` (at {now}): exit {status}, the README says {}\n{since}",
            step.command, step.exit
        );
    }
    assert!(
        out.status.success() && printed.contains("\n::end\n"),
        "the tour did not run to its end (at {now}): {}\n{printed}",
        shown(&out)
    );
    // What the tour leaves: two promotions and the rollback to the first.
    let releases = json(&airlock_with(
        &temp.path().join("demo"),
        &["releases", "order-intake", "--json"],
        &[("AIRLOCK_TEST_NOW", now)],
    ));
    let kinds: Vec<&str> = releases
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["rollback", "promotion", "promotion"],
        "{releases:#}"
    );
    assert_eq!(releases[0]["version"], releases[2]["version"]);
    printed
}

#[test]
fn the_readme_tour_works_as_written_inside_the_starters_freeze() {
    let printed = run_tour(IN_THE_FREEZE);
    // A release build ignores the test clock (and then runs the tour on today's date).
    if cfg!(debug_assertions) {
        assert!(
            printed.contains("frozen from Fri 15:00 to Mon 08:00 (Europe/London); exception by dev: trying the tour"),
            "the freeze was met, and got past by the tour's stated exception:\n{printed}"
        );
    }
}

#[test]
fn the_readme_tour_works_as_written_outside_a_freeze() {
    let printed = run_tour(MIDWEEK);
    if cfg!(debug_assertions) {
        assert!(!printed.contains("frozen from"), "{printed}");
    }
}

#[test]
fn the_tour_is_read_from_the_readme_as_written() {
    let steps = tour();
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(commands[0], "airlock init demo && cd demo");
    for expected in [
        "airlock approve-step \"$RUN\" approve_reminders --as staging-lead   # …until an approver decides",
        "airlock approve \"$REQ\" --as cfo        # the second approver: released",
    ] {
        assert!(commands.contains(&expected), "{commands:#?}");
    }
    // The text block (mistakes shown, not made) is not part of the tour.
    assert!(
        !commands.iter().any(|c| c.contains("retyr")),
        "{commands:#?}"
    );
    // Every step exits 0 but the one the README marks: readiness says NOT READY until
    // production is checked and its secrets are set.
    let marked: Vec<&str> = steps
        .iter()
        .filter(|s| s.exit != 0)
        .map(|s| s.command.as_str())
        .collect();
    assert_eq!(marked.len(), 1, "{steps:#?}");
    assert!(
        marked[0].starts_with("airlock readiness order-intake"),
        "{marked:?}"
    );
}
