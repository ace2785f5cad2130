//! End to end with the built binary: durable runs of the starter project offline,
//! approvals across processes, dead-lettering and retry, secrets that never show.

mod support;
use support::*;

#[test]
fn the_starter_project_runs_offline_out_of_the_box() {
    let (_temp, project) = init_project();
    let out = airlock(&project, RUN_STARTER_ORDER);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for line in [
        "normalize",
        "big_order",
        "alert_big_order",
        "save_order",
        "sync_crm",
        "succeeded in",
    ] {
        assert!(stdout.contains(line), "missing {line}:\n{stdout}");
    }
    // Record-mode bindings kept test records with the rendered arguments.
    let records = json(&airlock(
        &project,
        &["records", "--env", "staging", "--json"],
    ));
    let calls: Vec<String> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}.{}",
                r["connector"].as_str().unwrap(),
                r["action"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(calls, ["chat.post", "crm.request"]);
    assert_eq!(
        records[0]["arguments"]["text"],
        "Big order 1001: 250.0 from acme-42"
    );
    // The order landed once in the real SQLite file, even when the same order runs twice.
    let again = airlock(&project, RUN_STARTER_ORDER);
    assert_eq!(again.status.code(), Some(0));
    let db = rusqlite::Connection::open(project.join(".airlock/staging-orders.db")).unwrap();
    let rows: i64 = db
        .query_row("select count(*) from orders where id = '1001'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);
    // The runs are listed with their version and shown with their journal.
    let runs = json(&airlock(&project, &["runs", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let id = runs[0]["id"].as_str().unwrap();
    let shown = json(&airlock(&project, &["runs", "show", id, "--json"]));
    assert_eq!(shown["run"]["status"], "succeeded");
    assert_eq!(shown["run"]["version"].as_str().unwrap().len(), 64);
    let steps: Vec<&str> = shown["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"sync_crm"));
    // `check` of staging: record bindings say so, the SQLite file answers.
    let check = airlock(&project, &["check", "--env", "staging"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
    assert!(
        text(&check.stdout).contains("tables exist: orders"),
        "{}",
        text(&check.stdout)
    );
    // Production has no secrets set here: check fails, naming what is missing.
    let check = airlock(&project, &["check", "--env", "production"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stdout).contains("secret `CRM_TOKEN` not found in environment `production`"),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn an_approval_waits_across_processes_and_only_an_approver_continues_it() {
    let (_temp, project) = init_project();
    std::fs::write(
        project.join("examples/overdue.json"),
        r#"{"id": 77, "amount": 900, "customer": "late-payer"}"#,
    )
    .unwrap();
    assert!(
        airlock(
            &project,
            &[
                "run",
                "order-intake",
                "--env",
                "staging",
                "--input",
                "examples/overdue.json"
            ]
        )
        .status
        .success()
    );
    let out = airlock(
        &project,
        &["run", "credit-review", "--env", "staging", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let waiting = json(&out);
    assert_eq!(waiting["run"]["status"], "waiting");
    let run = waiting["run"]["id"].as_str().unwrap().to_owned();

    // Another process, a name that is not an approver of staging: refused, nothing moves.
    let refused = airlock(
        &project,
        &["approve-step", &run, "approve_reminders", "--as", "mallory"],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("`mallory` is not an approver in environment `staging`")
    );
    let still = json(&airlock(&project, &["runs", "show", &run, "--json"]));
    assert_eq!(still["run"]["status"], "waiting");

    let approved = airlock(
        &project,
        &[
            "approve-step",
            &run,
            "approve_reminders",
            "--as",
            "staging-lead",
            "--json",
        ],
    );
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}",
        text(&approved.stderr)
    );
    assert_eq!(json(&approved)["run"]["status"], "succeeded");
    let records = json(&airlock(
        &project,
        &["records", "--env", "staging", "--json"],
    ));
    let mail: Vec<_> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["connector"] == "mail")
        .collect();
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0]["arguments"]["body"]
            .as_str()
            .unwrap()
            .contains("late-payer")
    );
}

#[test]
fn secrets_are_set_from_stdin_listed_without_values_and_never_shown() {
    let (_temp, project) = init_project();
    let secret = "hook-secret-3f9a7c1e5d";
    let out = airlock_stdin(
        &project,
        &["secrets", "set", "ORDER_HOOK_SECRET", "--env", "staging"],
        &format!("{secret}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Not declared in staging: refused.
    let out = airlock_stdin(
        &project,
        &["secrets", "set", "CRM_TOKEN", "--env", "staging"],
        "x-value",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not declare a secret `CRM_TOKEN`"));
    let list = airlock(&project, &["secrets", "list"]);
    let listed = text(&list.stdout);
    assert!(
        listed.contains("ORDER_HOOK_SECRET") && listed.contains("set"),
        "{listed}"
    );
    let everything = format!(
        "{listed}{}{}",
        text(&list.stderr),
        text(&airlock(&project, &["secrets", "list", "--json"]).stdout)
    );
    assert!(!everything.contains(secret));
    for file in ["airlock.db", "airlock.db-wal"] {
        let bytes = std::fs::read(project.join(".airlock").join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} holds the secret in clear"
        );
    }
    let audit_free = airlock(&project, &["runs", "--json"]);
    assert!(!text(&audit_free.stdout).contains(secret));
}

#[test]
fn a_dead_run_is_listed_and_retried_by_hand() {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path();
    // A port with nothing listening: every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::create_dir_all(project.join("workflows")).unwrap();
    std::fs::write(
        project.join("airlock.yaml"),
        format!(
            "project: t\nconnectors:\n  api: {{ kind: http }}\nenvironments:\n  staging:\n    egress: [127.0.0.1]\n    bindings:\n      api: {{ base_url: \"http://127.0.0.1:{port}\" }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("workflows/ping.yaml"),
        "name: ping\ntrigger: manual\nsteps:\n  - id: ping\n    call: api.request\n    with: { method: POST, path: /ping }\n    retry: { attempts: 2, backoff: 10ms }\n",
    )
    .unwrap();
    let out = airlock(project, &["run", "ping", "--env", "staging", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a dead run is a failed check: {}",
        text(&out.stderr)
    );
    let run = json(&out)["run"].clone();
    assert_eq!(run["status"], "dead");
    let dead = json(&airlock(project, &["runs", "--status", "dead", "--json"]));
    assert_eq!(dead.as_array().unwrap().len(), 1);

    // The target comes back; the run is retried by hand and finishes.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut buffer = [0u8; 4096];
        let _ = stream.read(&mut buffer).unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{}").unwrap();
        String::from_utf8_lossy(&buffer).into_owned()
    });
    let retried = airlock(
        project,
        &["runs", "retry", run["id"].as_str().unwrap(), "--json"],
    );
    assert_eq!(retried.status.code(), Some(0), "{}", text(&retried.stderr));
    assert_eq!(json(&retried)["run"]["status"], "succeeded");
    let request = server.join().unwrap();
    assert!(
        request
            .to_ascii_lowercase()
            .contains("idempotency-key: staging:"),
        "{request}"
    );
}

#[test]
fn a_secret_used_by_a_live_binding_never_reaches_the_store_the_journal_or_the_output() {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path();
    let secret = "tok-live-7e21c0ffee99";
    // A target that echoes the credential it received back in its answer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut buffer = [0u8; 8192];
        let n = stream.read(&mut buffer).unwrap();
        let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let auth = request
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .map(|l| l[14..].trim().to_owned())
            .unwrap_or_default();
        let body = format!("{{\"echo\":\"{auth}\"}}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
        request
    });
    std::fs::create_dir_all(project.join("workflows")).unwrap();
    std::fs::write(
        project.join("airlock.yaml"),
        format!(
            "project: t\nconnectors:\n  api: {{ kind: http }}\nenvironments:\n  staging:\n    egress: [127.0.0.1]\n    secrets: [API_TOKEN]\n    bindings:\n      api: {{ base_url: \"http://127.0.0.1:{port}\", token: \"${{secret:API_TOKEN}}\" }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("workflows/ping.yaml"),
        "name: ping\ntrigger: manual\nsteps:\n  - id: ping\n    call: api.request\n    with: { method: POST, path: /ping }\n",
    )
    .unwrap();
    let set = airlock_stdin(
        project,
        &["secrets", "set", "API_TOKEN", "--env", "staging"],
        secret,
    );
    assert_eq!(set.status.code(), Some(0), "{}", text(&set.stderr));
    let run = airlock(project, &["run", "ping", "--env", "staging"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    let request = server.join().unwrap();
    assert!(
        request.contains(&format!("Bearer {secret}")),
        "the target did get the credential"
    );
    let id = json(&airlock(project, &["runs", "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = airlock(project, &["runs", "show", &id, "--json"]);
    assert!(
        text(&shown.stdout).contains("[redacted]"),
        "the echoed credential is redacted: {}",
        text(&shown.stdout)
    );
    let outputs = [
        run.stdout,
        run.stderr,
        set.stdout,
        set.stderr,
        shown.stdout,
        shown.stderr,
        airlock(project, &["runs", "show", &id]).stdout,
    ];
    for output in outputs {
        assert!(
            !text(&output).contains(secret),
            "the secret was printed: {}",
            text(&output)
        );
    }
    for file in ["airlock.db", "airlock.db-wal"] {
        let bytes = std::fs::read(project.join(".airlock").join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} holds the secret in clear"
        );
    }
}

/// The ids of every run in the project's store, newest first.
fn run_ids(project: &std::path::Path) -> Vec<String> {
    json(&airlock(project, &["runs", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Moves runs two days into the past, as far as the store knows: as if they had been
/// accepted, started and finished then.
fn age_by_two_days(project: &std::path::Path, ids: &[String]) {
    let db = rusqlite::Connection::open(project.join(".airlock/airlock.db")).unwrap();
    for id in ids {
        db.execute(
            "UPDATE runs SET created_at = created_at - ?2, started_at = started_at - ?2,
                 finished_at = finished_at - ?2 WHERE id = ?1",
            rusqlite::params![id, 2 * 86_400_000_i64],
        )
        .unwrap();
    }
}

/// Retention: `runs prune` deletes the runs accepted and finished before its cutoff, with
/// their journals, keeps the others, refuses a cutoff shorter than an hour (a pruned run's
/// webhook idempotency key goes with it), and is audited.
#[test]
fn old_finished_runs_are_pruned_with_their_journals_and_the_rest_kept() {
    let (_temp, project) = init_project();
    for _ in 0..3 {
        ok(&airlock(&project, RUN_STARTER_ORDER), "run");
    }
    let listed = run_ids;
    let ids = listed(&project);
    assert_eq!(ids.len(), 3);
    // The two oldest ran two days ago, as far as the store knows.
    let (old, recent) = (&ids[1..], &ids[0]);
    age_by_two_days(&project, old);
    let db = rusqlite::Connection::open(project.join(".airlock/airlock.db")).unwrap();
    let journal_rows = |id: &str| -> i64 {
        db.query_row("SELECT count(*) FROM journal WHERE run = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap()
    };
    assert!(journal_rows(&old[0]) > 0);

    let refused = airlock(&project, &["runs", "prune", "--older-than", "10m"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("at least 1h"));
    assert_eq!(listed(&project).len(), 3, "a refused prune deletes nothing");

    let out = airlock(&project, &["runs", "prune", "--older-than", "1d", "--json"]);
    ok(&out, "runs prune");
    assert_eq!(json(&out)["pruned"], 2);
    assert_eq!(
        listed(&project),
        std::slice::from_ref(recent),
        "the recent run is kept"
    );
    for id in old {
        assert_eq!(journal_rows(id), 0, "{id}'s journal went with it");
        let shown = airlock(&project, &["runs", "show", id]);
        assert!(!shown.status.success(), "{id} is gone");
    }
    assert!(journal_rows(recent) > 0);
    let audit = json(&airlock(&project, &["audit", "--json"]));
    let last = audit.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "runs.prune", "{last}");
    assert_eq!(last["detail"]["pruned"], 2, "{last}");
    let again = airlock(&project, &["runs", "prune", "--older-than", "1d"]);
    ok(&again, "runs prune again");
    assert!(
        text(&again.stdout).starts_with("pruned 0 runs"),
        "{}",
        text(&again.stdout)
    );
}

/// `serve --retain` prunes on its own: at its start, a finished run older than the
/// retention goes and a recent one stays, and the pass is audited as `retention`. A
/// retention shorter than an hour is refused before anything is served.
#[test]
fn a_server_with_retention_prunes_old_finished_runs_on_its_own() {
    let (_temp, project) = init_project();
    for _ in 0..2 {
        ok(&airlock(&project, RUN_STARTER_ORDER), "run");
    }
    let ids = run_ids(&project);
    age_by_two_days(&project, &ids[1..]);
    let refused = airlock(
        &project,
        &["serve", "--retain", "10m", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("at least 1h"));

    let served = support::server::Served::start(&project, &["--retain", "1d"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while run_ids(&project).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old run is still there 10 s after the server started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(run_ids(&project), ids[..1], "the recent run is kept");
    let audit = json(&airlock(&project, &["audit", "--json"]));
    let pass = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "runs.prune")
        .unwrap_or_else(|| panic!("no runs.prune event: {audit}"))
        .clone();
    assert_eq!(pass["actor"], "retention", "{pass}");
    assert_eq!(pass["detail"]["pruned"], 1, "{pass}");
    assert!(served.terminate(), "the server stops cleanly");
}
