//! `airlock check --server`: the server reaches each binding from its side and answers
//! the rows `airlock check` prints where the project is; printed the same, human and
//! `--json`, with the same exit code, and never with a secret's value.

mod support;

use support::server::{Served, Sink};
use support::{airlock_with, airlock_with_stdin, json as stdout_json, ok, shown, text};

/// The one secret: sent by the server to the reachable binding, never shown.
const API_TOKEN: &str = "api-token-7c1e4b9d2f";

/// Staging binds one connector to a listening sink (with a secret token and a health
/// path) and one to a port nothing listens on.
fn manifest(port: u16) -> String {
    format!(
        r#"project: remote-check
connectors:
  api: {{ kind: http, description: "Answers" }}
  ledger: {{ kind: http, description: "Nothing listens there" }}
environments:
  staging:
    egress: [127.0.0.1]
    secrets: [API_TOKEN]
    bindings:
      api: {{ base_url: "http://127.0.0.1:{port}", token: "${{secret:API_TOKEN}}", health: /health, timeout: 2s }}
      ledger: {{ base_url: "http://127.0.0.1:9", health: /health, timeout: 1s }}
"#
    )
}

#[test]
fn check_through_a_server_prints_what_check_prints_beside_it() {
    let sink = Sink::start();
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    let elsewhere = temp.path().join("elsewhere");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(project.join("airlock.yaml"), manifest(sink.port)).unwrap();
    // Set before the server starts: this also makes staging's key, which it loads at start.
    ok(
        &airlock_with_stdin(
            &project,
            &["secrets", "set", "API_TOKEN", "--env", "staging"],
            &format!("{API_TOKEN}\n"),
            &[],
        ),
        "secrets set",
    );
    let deployer = support::create_token(&project, "staging", "deployer", "dev");
    let runner = support::create_token(&project, "staging", "runner", "ci");
    let served = Served::start(&project, &[]);
    let through = |token: &str, args: &[&str]| {
        let all = [&["--server", served.url.as_str()][..], args].concat();
        airlock_with(&elsewhere, &all, &[("AIRLOCK_TOKEN", token)])
    };

    let mut printed = String::new();
    for json in [false, true] {
        let args = [
            &["check", "--env", "staging"][..],
            if json { &["--json"] } else { &[] },
        ]
        .concat();
        let local = airlock_with(&project, &args, &[]);
        let remote = through(&deployer, &args);
        for out in [&local, &remote] {
            assert_eq!(out.status.code(), Some(1), "{}", shown(out));
            printed.push_str(&text(&out.stdout));
            printed.push_str(&text(&out.stderr));
        }
        assert_eq!(
            text(&local.stdout),
            text(&remote.stdout),
            "local: {}\nremote: {}",
            shown(&local),
            shown(&remote)
        );
        if json {
            let rows = stdout_json(&remote);
            assert_eq!(rows["ok"], false, "{rows}");
            let answered: Vec<(&str, bool)> = rows["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["connector"].as_str().unwrap(), r["ok"] == true))
                .collect();
            assert_eq!(answered, [("api", true), ("ledger", false)], "{rows}");
        } else {
            let stdout = text(&remote.stdout);
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), 5, "{stdout}");
            assert_eq!(lines[0], "check of `staging`:");
            assert!(
                lines[1].starts_with("  OK   api          http (live)   GET /health → 200"),
                "{stdout}"
            );
            assert!(
                lines[2].starts_with(
                    "  FAIL ledger       http (live)   GET /health: connection refused"
                ),
                "{stdout}"
            );
            // The server's store is the project's file: the same row from either side.
            assert!(
                lines[3].starts_with("store: ")
                    && lines[3].ends_with(".airlock/airlock.db (file 0600, folder 0700): private"),
                "{stdout}"
            );
            assert_eq!(lines[4], "1 binding failed");
        }
    }
    // The server did reach the sink, with the token it holds.
    assert!(sink.snapshot().total >= 2, "{:?}", sink.snapshot());

    // The API answers the CLI's own rows.
    let answered = support::http_client()
        .build()
        .expect("an HTTP client")
        .get(format!("{}/api/v1/environments/staging/check", served.url))
        .bearer_auth(&deployer)
        .send()
        .unwrap();
    assert_eq!(answered.status(), 200);
    let answered = answered.text().unwrap();
    printed.push_str(&answered);
    let local = stdout_json(&airlock_with(
        &project,
        &["check", "--env", "staging", "--json"],
        &[],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answered).unwrap(),
        local
    );

    // A runner does not check bindings; nor does a token of another environment.
    let out = through(&runner, &["check", "--env", "staging"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).starts_with(
            "error: role runner in staging may not check bindings (needs deployer or admin)"
        ),
        "{}",
        shown(&out)
    );
    let out = through(&deployer, &["check", "--env", "production"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("this token is scoped to staging, not production"),
        "{}",
        shown(&out)
    );
    assert!(text(&out.stdout).is_empty(), "{}", shown(&out));

    printed.push_str(&served.logs.lock().unwrap());
    assert!(!printed.contains(API_TOKEN), "the secret's value was shown");
    assert!(!printed.contains(&deployer), "the token was shown");
}
