//! The audit chain anchored outside itself, end to end with the built binary: `audit head`
//! takes an anchor, rows are removed or rewritten in the real SQLite file behind the
//! store's back, and `audit verify --expect` finds it; `serve --audit-anchor-file` keeps
//! an anchor file up to date.

mod support;
use support::*;

use airlock_core::audit::{AuditEvent, NewAuditEvent};
use std::path::Path;
use std::time::{Duration, Instant};

/// Appends one audit event (`secret.set`) through the CLI.
fn audited_change(project: &Path, n: usize) {
    ok(
        &airlock_stdin(
            project,
            &["secrets", "set", "ORDER_HOOK_SECRET", "--env", "staging"],
            &format!("whsec-staging-{n:04}-0123456789"),
        ),
        "secrets set",
    );
}

/// `airlock audit head`: the anchor, `SEQ:HASH`.
fn head(project: &Path) -> String {
    let out = airlock(project, &["audit", "head"]);
    ok(&out, "audit head");
    text(&out.stdout).trim().to_owned()
}

fn seq_of(anchor: &str) -> i64 {
    anchor
        .split_once(':')
        .and_then(|(seq, _)| seq.parse().ok())
        .unwrap_or_else(|| panic!("not SEQ:HASH: {anchor}"))
}

fn store(project: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(project.join(".airlock/airlock.db")).expect("the store's file")
}

/// A project with `events` audit events and the anchor of its newest.
fn anchored(events: usize) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (temp, project) = init_project();
    for n in 0..events {
        audited_change(&project, n);
    }
    let anchor = head(&project);
    (temp, project, anchor)
}

/// Hashes are redacted from the snapshots: events carry the time they were written.
const HASH: (&str, &str) = (r"[0-9a-f]{64}", "[hash]");

fn assert_report(name: &str, out: &std::process::Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{name}:\n{}", shown(out));
    insta::with_settings!({ filters => vec![HASH] }, {
        insta::assert_snapshot!(name, text(&out.stdout));
    });
}

#[test]
fn audit_head_prints_the_newest_event_as_seq_colon_hash() {
    let (_temp, project) = init_project();
    let empty = airlock(&project, &["audit", "head"]);
    ok(&empty, "audit head of an empty log");
    assert_eq!(text(&empty.stdout), "", "no anchor to print");
    assert!(text(&empty.stderr).contains("the audit log is empty"));
    audited_change(&project, 0);
    audited_change(&project, 1);
    let anchor = head(&project);
    let out = airlock(&project, &["audit", "--json"]);
    let events = json(&out);
    let newest = events
        .as_array()
        .and_then(|e| e.last())
        .expect("two events");
    assert_eq!(
        anchor,
        format!("{}:{}", newest["seq"], newest["hash"].as_str().unwrap())
    );
    let out = airlock(&project, &["audit", "head", "--json"]);
    ok(&out, "audit head --json");
    assert_eq!(
        json(&out),
        serde_json::json!({
            "head": { "seq": newest["seq"], "hash": newest["hash"] },
            "anchor": anchor,
        })
    );
}

#[test]
fn truncating_the_audit_tail_is_detected_against_an_anchor_naming_the_missing_range() {
    let (_temp, project, anchor) = anchored(5);
    let seq = seq_of(&anchor);
    assert_eq!(seq, 5, "five changes, five events");
    let held = airlock(&project, &["audit", "verify", "--expect", &anchor]);
    assert_report("verify_holds_its_anchor", &held, 0);

    // The newest three rows go, behind the store's back.
    let deleted = store(&project)
        .execute("DELETE FROM audit WHERE seq > ?1", [seq - 3])
        .expect("rows deleted");
    assert_eq!(deleted, 3);

    // On its own the shorter chain is intact: nothing in it says events are missing.
    let alone = airlock(&project, &["audit", "verify"]);
    ok(&alone, "a prefix of the chain verifies");
    assert!(text(&alone.stdout).starts_with("audit chain intact: 2 events"));

    let cut = airlock(&project, &["audit", "verify", "--expect", &anchor]);
    assert!(
        text(&cut.stdout).contains("events 3–5 are missing: the chain ends at 2"),
        "{}",
        shown(&cut)
    );
    assert_report("verify_finds_the_tail_cut", &cut, 1);
    let out = airlock(
        &project,
        &["audit", "verify", "--expect", &anchor, "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let verdict = json(&out);
    assert_eq!(verdict["ok"], false);
    assert_eq!(
        verdict["anchor_mismatch"],
        serde_json::json!({ "kind": "missing", "from": 3, "to": 5, "ends_at": 2 })
    );

    // Writing new events after the cut does not pass for the removed ones.
    for n in 10..13 {
        audited_change(&project, n);
    }
    let rewritten = airlock(&project, &["audit", "verify", "--expect", &anchor]);
    assert_eq!(rewritten.status.code(), Some(1), "{}", shown(&rewritten));
    assert!(
        text(&rewritten.stdout).contains("event 5 differs from the anchor"),
        "{}",
        shown(&rewritten)
    );
}

#[test]
fn an_intact_longer_chain_holds_an_older_anchor() {
    let (_temp, project, anchor) = anchored(2);
    for n in 2..6 {
        audited_change(&project, n);
    }
    let out = airlock(&project, &["audit", "verify", "--expect", &anchor]);
    ok(&out, "a longer chain holds the anchor");
    assert!(
        text(&out.stdout).contains(&format!("anchor {anchor}: held")),
        "{}",
        shown(&out)
    );
    assert!(text(&out.stdout).starts_with("audit chain intact: 6 events"));
}

#[test]
fn an_edited_row_at_the_anchor_fails_verification() {
    let (_temp, project, anchor) = anchored(3);
    let seq = seq_of(&anchor);
    // Edited in place: the chain itself no longer fits there.
    store(&project)
        .execute("UPDATE audit SET actor = 'mallory' WHERE seq = ?1", [seq])
        .expect("row edited");
    let out = airlock(&project, &["audit", "verify", "--expect", &anchor]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(
        text(&out.stdout).starts_with(&format!("audit chain BROKEN at event {seq}")),
        "{}",
        shown(&out)
    );

    // Edited and its hash written again to fit: the chain is intact, the anchor is not.
    rehash_from(&project, seq);
    let alone = airlock(&project, &["audit", "verify"]);
    ok(&alone, "a rewritten chain verifies on its own");
    let out = airlock(&project, &["audit", "verify", "--expect", &anchor]);
    assert_report("verify_finds_the_anchored_event_rewritten", &out, 1);
}

/// Recomputes the hashes of the events from `seq` on, as someone with write access to the
/// file and the source code could: the chain then fits together again.
fn rehash_from(project: &Path, seq: i64) {
    let db = store(project);
    let mut prev: String = db
        .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq - 1], |r| {
            r.get(0)
        })
        .expect("the event before");
    let rows: Vec<(i64, NewAuditEvent)> = db
        .prepare(
            "SELECT seq, at, actor, action, environment, subject, detail FROM audit WHERE seq >= ?1 ORDER BY seq",
        )
        .unwrap()
        .query_map([seq], |r| {
            let detail: String = r.get(6)?;
            Ok((
                r.get(0)?,
                NewAuditEvent {
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    environment: r.get(4)?,
                    subject: r.get(5)?,
                    detail: serde_json::from_str(&detail).expect("stored JSON"),
                },
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (seq, event) in rows {
        let hash = AuditEvent::compute_hash(&prev, &event);
        db.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn audit_verify_refuses_an_anchor_that_is_not_seq_colon_hash() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["audit", "verify", "--expect", "41"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("is not SEQ:HASH"),
        "{}",
        shown(&out)
    );
}

/// Waits (at most ten seconds) until `path` holds `expected` as its one line.
fn wait_for_anchor(path: &Path, expected: &str) {
    let started = Instant::now();
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now == format!("{expected}\n") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the anchor file holds {now:?}, not {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_writes_the_audit_head_to_the_anchor_file_as_it_moves() {
    let (temp, project, anchor) = anchored(2);
    let file = temp.path().join("anchors").join("audit-head");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let file_arg = file.to_str().expect("a UTF-8 path");
    let served = support::server::Served::start(
        &project,
        &[
            "--audit-anchor-file",
            file_arg,
            "--audit-anchor-every",
            "100ms",
        ],
    );
    wait_for_anchor(&file, &anchor);
    // A change made beside the server (another process on the same store) moves the head,
    // and the file follows within an interval.
    audited_change(&project, 7);
    let moved = head(&project);
    assert_ne!(moved, anchor);
    wait_for_anchor(&file, &moved);
    drop(served);
    let leftovers: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "audit-head")
        .collect();
    assert!(
        leftovers.is_empty(),
        "only the anchor is left: {leftovers:?}"
    );
    // The file is what `verify --expect` takes, as it is.
    let anchor_text = std::fs::read_to_string(&file).unwrap();
    let out = airlock(&project, &["audit", "verify", "--expect", &anchor_text]);
    ok(&out, "verify against the served anchor");
}
