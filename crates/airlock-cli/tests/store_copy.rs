//! `airlock store copy`: history built in the embedded SQLite store (tests, a staging
//! deploy, runs, a promotion approved into a production release) moved through the CLI to
//! PostgreSQL (127.0.0.1:5432), where every command reads the same history and the audit
//! chain still verifies. A copy into a database that already holds anything is refused and
//! changes nothing. Each test works in databases of its own, dropped after.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use support::{
    RUN_STARTER_ORDER, airlock, init_project, json as stdout_json, ok, set_freeze,
    test_and_deploy_starter, text,
};

/// A database of its own, dropped when the test ends.
struct Database {
    name: String,
}

fn admin_url() -> String {
    std::env::var("AIRLOCK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

impl Database {
    fn create(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000;
        let name = format!("airlock_copy_{tag}_{}_{nanos}", std::process::id());
        psql(&admin_url(), &format!("CREATE DATABASE {name}"));
        Self { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            &admin_url(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// `airlock --store STORE ARGS…` in the project.
fn on(project: &Path, store: &str, args: &[&str]) -> Output {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    airlock(project, &all)
}

/// What the CLI shows of the store's history, as JSON, one entry per view.
fn history(project: &Path, store: Option<&str>) -> Vec<(String, Value)> {
    let views: &[&[&str]] = &[
        &["runs", "--json", "--limit", "1000"],
        &["releases", "order-intake", "--env", "production", "--json"],
        &["releases", "order-intake", "--env", "staging", "--json"],
        &["audit", "--json"],
        &["audit", "verify", "--json"],
        &["records", "--env", "staging", "--json"],
        &["secrets", "list", "--json"],
    ];
    views
        .iter()
        .map(|args| {
            let out = match store {
                Some(store) => on(project, store, args),
                None => airlock(project, args),
            };
            ok(&out, &args.join(" "));
            (args.join(" "), stdout_json(&out))
        })
        .collect()
}

/// The evidence rows as the SQLite file holds them: id, workflow, version, kind, passed, summary.
fn sqlite_evidence(path: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = conn
        .prepare("SELECT id, workflow, version, kind, passed, summary FROM evidence ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| {
            let summary: String = row.get(5)?;
            Ok(format!(
                "{}|{}|{}|{}|{}|{}",
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)? != 0,
                serde_json::from_str::<Value>(&summary).unwrap()
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The same rows read back from PostgreSQL.
fn postgres_evidence(url: &str) -> Vec<String> {
    psql(
        url,
        "SELECT id || '|' || workflow || '|' || version || '|' || kind || '|' || passed || '|' \
         || summary::text FROM evidence ORDER BY id",
    )
    .lines()
    .map(|line| {
        let (head, summary) = line.rsplit_once('|').unwrap();
        let summary: Value = serde_json::from_str(summary).unwrap();
        format!("{head}|{summary}")
    })
    .collect()
}

/// The starter project with history: scenario evidence, a staging deploy, five staging
/// runs, a sealed secret, and a promotion approved by two approvers into a production
/// release. Returns the embedded store's path.
fn build_history(project: &Path) -> std::path::PathBuf {
    // The starter's freeze window would make the promotion depend on the day the test runs.
    set_freeze(project, "");
    test_and_deploy_starter(project);
    for input in ["examples/order.json", "examples/small-order.json"]
        .iter()
        .cycle()
        .take(5)
    {
        ok(
            &airlock(
                project,
                &["run", "order-intake", "--env", "staging", "--input", input],
            ),
            "run",
        );
    }
    let promoted = airlock(
        project,
        &["promote", "order-intake", "--as", "dev", "--json"],
    );
    ok(&promoted, "promote");
    let request = stdout_json(&promoted)["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &airlock(project, &["approve", &request, "--as", "ops-lead"]),
        "approve ops-lead",
    );
    let approved = airlock(project, &["approve", &request, "--as", "cfo", "--json"]);
    ok(&approved, "approve cfo");
    assert!(
        stdout_json(&approved)["release"]["id"].is_string(),
        "not released: {}",
        text(&approved.stdout)
    );
    project.join(".airlock/airlock.db")
}

#[test]
fn copy_to_postgres_keeps_runs_releases_evidence_and_the_audit_chain() {
    let (_temp, project) = init_project();
    let sqlite = build_history(&project);
    let before = history(&project, None);
    let runs = before[0].1.as_array().unwrap();
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert_eq!(
        before[1].1.as_array().unwrap().len(),
        1,
        "one production release"
    );
    assert_eq!(before[4].1["ok"], true, "the SQLite chain verifies");
    let events = before[4].1["events"].as_u64().unwrap();
    assert!(events >= 5, "{events} audit events");
    assert!(!before[5].1.as_array().unwrap().is_empty(), "test records");
    let secret = before[6]
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["environment"] == "staging" && s["name"] == "ORDER_HOOK_SECRET")
        .cloned()
        .unwrap();
    assert_eq!(secret["set"], true, "{secret}");
    let evidence = sqlite_evidence(&sqlite);
    assert!(!evidence.is_empty());

    let database = Database::create("full");
    let store = database.url();
    let from = format!("sqlite:{}", sqlite.display());
    let copied = airlock(
        &project,
        &["store", "copy", "--from", &from, "--to", &store, "--json"],
    );
    ok(&copied, "store copy");
    let report = stdout_json(&copied);
    assert_eq!(report["audit_chain_intact"], true, "{report}");
    let rows = |table: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} not in {report}"))["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("runs"), 5);
    // The workflow's release, and production's first configuration, adopted.
    assert_eq!(rows("releases"), 2);
    assert_eq!(rows("audit"), events);
    assert_eq!(rows("evidence"), evidence.len() as u64);
    assert_eq!(rows("secrets"), 1);

    // Every view reads the same on PostgreSQL as on SQLite, field for field.
    let after = history(&project, Some(&store));
    for ((view, sqlite_json), (_, postgres_json)) in before.iter().zip(&after) {
        assert_eq!(
            sqlite_json, postgres_json,
            "`airlock {view}` differs after the copy"
        );
    }
    // One run in full, with its journal.
    let id = runs[0]["id"].as_str().unwrap();
    let show = |store: Option<&str>| {
        let args = ["runs", "show", id, "--json"];
        let out = match store {
            Some(store) => on(&project, store, &args),
            None => airlock(&project, &args),
        };
        ok(&out, "runs show");
        stdout_json(&out)
    };
    assert_eq!(show(None), show(Some(&store)));
    assert_eq!(postgres_evidence(&store), evidence, "evidence rows");
    // The secret is still sealed, byte for byte (the copy never holds a key).
    let sealed: Vec<u8> = rusqlite::Connection::open(&sqlite)
        .unwrap()
        .query_row(
            "SELECT sealed FROM secrets WHERE environment = 'staging' AND name = 'ORDER_HOOK_SECRET'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        psql(
            &store,
            "SELECT encode(sealed, 'hex') FROM secrets \
             WHERE environment = 'staging' AND name = 'ORDER_HOOK_SECRET'"
        ),
        hex
    );

    // `airlock audit verify` passes on the copy, in words too.
    let verified = on(&project, &store, &["audit", "verify"]);
    ok(&verified, "audit verify");
    assert!(
        text(&verified.stdout).contains(&format!("audit chain intact: {events} events")),
        "{}",
        text(&verified.stdout)
    );

    // The copy is a working store: new evidence continues after the copied ids, a new run
    // is added, and the chain still verifies.
    ok(&on(&project, &store, &["test"]), "test on PostgreSQL");
    let ids: Vec<i64> = psql(&store, "SELECT id FROM evidence ORDER BY id")
        .lines()
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(ids.len() > evidence.len(), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    ok(
        &on(&project, &store, RUN_STARTER_ORDER),
        "run on PostgreSQL",
    );
    let runs_now = stdout_json(&on(&project, &store, &["runs", "--json"]));
    assert_eq!(runs_now.as_array().unwrap().len(), 6);
    ok(
        &on(&project, &store, &["audit", "verify"]),
        "audit verify after new writes",
    );
    // The SQLite store is as it was.
    assert_eq!(history(&project, None)[0], before[0]);
}

#[test]
fn copy_into_a_database_with_history_is_refused_and_changes_nothing() {
    let (_temp, project) = init_project();
    let sqlite = build_history(&project);
    let from = format!("sqlite:{}", sqlite.display());

    // A database that already has a little history of its own: one deploy.
    let database = Database::create("busy");
    let store = database.url();
    ok(
        &on(
            &project,
            &store,
            &["deploy", "--env", "staging", "--as", "dev"],
        ),
        "deploy on PostgreSQL",
    );
    let before = history(&project, Some(&store));
    let snapshot = |store: &str| {
        psql(
            store,
            "SELECT (SELECT count(*) FROM runs) || ' ' || (SELECT count(*) FROM versions) || ' ' \
             || (SELECT count(*) FROM deployments) || ' ' || (SELECT count(*) FROM audit) || ' ' \
             || (SELECT count(*) FROM evidence) || ' ' || (SELECT count(*) FROM releases)",
        )
    };
    let rows_before = snapshot(&store);

    // With a password in the URL (trust authentication ignores it): never shown.
    let with_password = store.replace("postgres@", "postgres:hunter2@");
    let refused = airlock(
        &project,
        &["store", "copy", "--from", &from, "--to", &with_password],
    );
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}\n{}",
        text(&refused.stdout),
        text(&refused.stderr)
    );
    let message = text(&refused.stderr);
    assert!(
        message.contains("not empty") && message.contains("new database"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(snapshot(&store), rows_before);
    assert_eq!(history(&project, Some(&store)), before);

    // A second copy into a database that received one is refused just the same.
    let fresh = Database::create("twice");
    let target = fresh.url();
    ok(
        &airlock(
            &project,
            &["store", "copy", "--from", &from, "--to", &target],
        ),
        "first copy",
    );
    let copied = snapshot(&target);
    let again = airlock(
        &project,
        &["store", "copy", "--from", &from, "--to", &target],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert_eq!(snapshot(&target), copied, "the refused copy added rows");
    assert_eq!(
        on(&project, &target, &["audit", "verify"]).status.code(),
        Some(0)
    );
}
