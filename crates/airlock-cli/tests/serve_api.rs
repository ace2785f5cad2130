//! The promotion path over the server's API: deploy, evidence, readiness, promote,
//! approve, reject, rollback, releases, diff and validate, each with a scoped token,
//! against a real `airlock serve` process. The decisions are the ones the CLI makes
//! (`airlock_ops`), so the same rules hold: a protected environment is never
//! deployed to, a promotion is authorised in its target, the approver is the token's
//! name and must be an approver of the target, never the request's author.

mod support;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::server::Served;
use support::{airlock, json as stdout_json, ok, write};

const GREET_V1: &str = r#"name: greet
trigger: { webhook: { path: greet } }
steps:
  - id: hello
    map: { greeting: "hello {{ trigger.body.name }}" }
"#;

const GREET_V2: &str = r#"name: greet
trigger: { webhook: { path: greet } }
steps:
  - id: hello
    map: { greeting: "hello again {{ trigger.body.name }}" }
"#;

const SCENARIO: &str = r#"trigger: { body: { name: ada } }
expect:
  status: succeeded
  path: [hello]
"#;

struct Api {
    _temp: tempfile::TempDir,
    project: PathBuf,
    served: Served,
    client: Client,
}

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.served.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("the server answers");
        let status = response.status();
        (status, response.json().unwrap_or(Value::Null))
    }
}

fn start() -> Api {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    write(
        &project,
        "airlock.yaml",
        &support::two_environment_manifest("api-story"),
    );
    write(&project, "workflows/greet.yaml", GREET_V1);
    write(&project, "tests/greet/hello.yaml", SCENARIO);
    ok(&airlock(&project, &["validate"]), "validate");
    let served = Served::start(&project, &[]);
    Api {
        _temp: temp,
        project,
        served,
        client: support::http_client()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

fn audit_actions(project: &Path) -> Vec<String> {
    let out = airlock(project, &["audit", "--json"]);
    ok(&out, "audit");
    stdout_json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("event")
                .and_then(|e| e.get("action"))
                .or_else(|| e.get("action"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_promotion_path_over_http_with_scoped_tokens() {
    let api = start();
    let p = &api.project;
    let staging_deployer = support::create_token(p, "staging", "deployer", "dev");
    let staging_viewer = support::create_token(p, "staging", "viewer", "watcher");
    let releaser = support::create_token(p, "production", "deployer", "releaser");
    let approver = support::create_token(p, "production", "approver", "prod-approver");
    let unlisted = support::create_token(p, "production", "approver", "someone-else");
    let cfo_admin = support::create_token(p, "production", "admin", "cfo");

    // The project validates, as the server reads it now.
    let (status, validation) = api.call("POST", "/api/v1/validate", &staging_viewer, None);
    assert_eq!(status, StatusCode::OK, "{validation}");
    assert_eq!(validation["ok"], true, "{validation}");
    assert_eq!(validation["workflows"], json!(["greet"]));

    // Evidence for v1, recorded by the CLI's `test`, is read over the API.
    ok(&airlock(p, &["test"]), "test v1");
    let (status, evidence) = api.call("GET", "/api/v1/workflows/greet/evidence", &approver, None);
    assert_eq!(status, StatusCode::OK, "{evidence}");
    let v1 = evidence["evidence"][0]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(evidence["evidence"][0]["passed"], true, "{evidence}");

    // Deploy staging as a staging deployer: the working copy runs there.
    let (status, deployed) = api.call(
        "POST",
        "/api/v1/environments/staging/deploy",
        &staging_deployer,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{deployed}");
    assert_eq!(deployed["changes"][0]["change"], "added", "{deployed}");
    assert_eq!(deployed["changes"][0]["to"], v1.as_str(), "{deployed}");
    // A protected environment is never deployed to, whatever the role: 403, audited.
    let (status, refused) = api.call(
        "POST",
        "/api/v1/environments/production/deploy",
        &releaser,
        None,
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("protected"),
        "{refused}"
    );
    assert!(audit_actions(p).contains(&"deploy.refused".to_owned()));

    // Readiness of staging → production, over the API.
    let (status, readiness) = api.call(
        "GET",
        "/api/v1/environments/staging/readiness",
        &staging_viewer,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{readiness}");
    assert_eq!(
        readiness["path"],
        json!({ "from": "staging", "to": "production" })
    );
    assert_eq!(readiness["workflows"][0]["workflow"], "greet");

    // A staging deployer cannot ask for production: Promote is checked in the target.
    let promote = json!({ "from": "staging", "to": "production" });
    let (status, denied) = api.call(
        "POST",
        "/api/v1/workflows/greet/promotions",
        &staging_deployer,
        Some(promote.clone()),
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{denied}");
    // A production deployer can: the request for the exact hash staging runs.
    let (status, opened) = api.call(
        "POST",
        "/api/v1/workflows/greet/promotions",
        &releaser,
        Some(promote.clone()),
    );
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    assert_eq!(opened["opened"], true);
    assert_eq!(opened["version"], v1.as_str());
    assert_eq!(
        opened["release"],
        Value::Null,
        "one approval is still needed"
    );
    let request = opened["request"]["id"].as_str().unwrap().to_owned();
    let checks = opened["verdict"]["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["requirement"] == "approvals" && c["met"] == false),
        "{opened}"
    );

    // Approving: a deployer's role does not allow it; an approver whose token name is not
    // among production's approvers is refused (audited); the listed approver releases it.
    let approve = format!("/api/v1/promotions/{request}/approve");
    let (status, _) = api.call("POST", &approve, &releaser, None);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api.call("POST", &approve, &unlisted, None);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not an approver"),
        "{body}"
    );
    assert!(audit_actions(p).contains(&"approve.refused".to_owned()));
    let (status, approved) = api.call(
        "POST",
        &approve,
        &approver,
        Some(json!({ "reason": "looks right" })),
    );
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    let first_release = approved["release"]["id"]
        .as_str()
        .expect("released")
        .to_owned();
    // Decided requests stay decided.
    let (status, _) = api.call("POST", &approve, &approver, None);
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, deployments) = api.call(
        "GET",
        "/api/v1/environments/production/deployments",
        &approver,
        None,
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deployments["deployments"][0]["version"],
        v1.as_str(),
        "{deployments}"
    );

    // v2: the working copy changes on disk, is tested, deployed to staging over the API.
    write(p, "workflows/greet.yaml", GREET_V2);
    ok(&airlock(p, &["test"]), "test v2");
    let (status, deployed) = api.call(
        "POST",
        "/api/v1/environments/staging/deploy",
        &staging_deployer,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{deployed}");
    assert_eq!(deployed["changes"][0]["change"], "changed", "{deployed}");
    let v2 = deployed["changes"][0]["to"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);

    // The requester cannot approve their own request, even as a listed approver (admin).
    let (status, opened) = api.call(
        "POST",
        "/api/v1/workflows/greet/promotions",
        &cfo_admin,
        Some(promote.clone()),
    );
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let own = opened["request"]["id"].as_str().unwrap().to_owned();
    let (status, body) = api.call(
        "POST",
        &format!("/api/v1/promotions/{own}/approve"),
        &cfo_admin,
        None,
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("own promotion"),
        "{body}"
    );
    let (status, approved) = api.call(
        "POST",
        &format!("/api/v1/promotions/{own}/approve"),
        &approver,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["release"]["version"], v2.as_str(), "{approved}");

    // Rollback (a production deployer): v1 runs again at once.
    let rollback = "/api/v1/environments/production/workflows/greet/rollback";
    let (status, _) = api.call("POST", rollback, &staging_deployer, None);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, rolled) = api.call("POST", rollback, &releaser, None);
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["restored"]["id"], first_release.as_str(), "{rolled}");
    assert_eq!(rolled["release"]["version"], v1.as_str(), "{rolled}");
    let (status, releases) = api.call(
        "GET",
        "/api/v1/environments/production/workflows/greet/releases",
        &approver,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{releases}");
    let rows = releases["releases"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{releases}");
    assert_eq!(rows[0]["kind"], "rollback");
    assert_eq!(rows[0]["current"], true);
    assert_eq!(rows[0]["version"], v1.as_str());
    assert_eq!(rows[0]["author"], "releaser");
    assert_eq!(rows[1]["approvers"], json!(["prod-approver"]));
    // The CLI sees the same history.
    let out = airlock(p, &["releases", "greet", "--env", "production", "--json"]);
    ok(&out, "releases");
    assert_eq!(stdout_json(&out)[0]["release"], rows[0]["release"]);

    // Reject: a reason is required; a rejected request cannot then be approved.
    let (status, opened) = api.call(
        "POST",
        "/api/v1/workflows/greet/promotions",
        &releaser,
        Some(promote),
    );
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let third = opened["request"]["id"].as_str().unwrap().to_owned();
    let reject = format!("/api/v1/promotions/{third}/reject");
    let (status, _) = api.call("POST", &reject, &approver, None);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, rejected) = api.call(
        "POST",
        &reject,
        &approver,
        Some(json!({ "reason": "not this week" })),
    );
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    let (status, _) = api.call(
        "POST",
        &format!("/api/v1/promotions/{third}/approve"),
        &approver,
        None,
    );
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api.call(
        "POST",
        "/api/v1/promotions/req_missing/approve",
        &approver,
        None,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The diff staging → production needs Read in the target: production's people read it.
    let (status, body) = api.call(
        "GET",
        "/api/v1/diff?from=staging&to=production",
        &staging_viewer,
        None,
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api.call("GET", "/api/v1/diff?from=staging", &staging_viewer, None);
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Every action is in the audit chain, under the token's name, and the chain verifies.
    let actions = audit_actions(p);
    for expected in [
        "deploy",
        "promotion.request",
        "approve",
        "release",
        "rollback",
        "reject",
        "api.denied",
    ] {
        assert!(
            actions.contains(&expected.to_owned()),
            "{expected} missing in {actions:?}"
        );
    }
    ok(&airlock(p, &["audit", "verify"]), "audit verify");
}

/// The server judges the files as they are now: a broken working copy is reported by
/// validate and refused for deploy, not deployed half-read.
#[test]
fn a_broken_working_copy_is_reported_and_never_deployed() {
    let api = start();
    let p = &api.project;
    let deployer = support::create_token(p, "staging", "deployer", "dev");
    write(
        p,
        "workflows/greet.yaml",
        "name: greet\nsteps:\n  - id: hello\n    mapp: {}\n",
    );
    let (status, validation) = api.call("POST", "/api/v1/validate", &deployer, None);
    assert_eq!(status, StatusCode::OK, "{validation}");
    assert_eq!(validation["ok"], false, "{validation}");
    let errors = validation["errors"].as_array().unwrap();
    let misspelt = errors
        .iter()
        .find(|e| e["message"].as_str().unwrap().contains("mapp"))
        .unwrap_or_else(|| panic!("{validation}"));
    assert_eq!(misspelt["path"], "workflows/greet.yaml", "{validation}");
    assert_eq!(
        (misspelt["line"].as_u64(), misspelt["column"].as_u64()),
        (Some(4), Some(5))
    );
    assert_eq!(misspelt["code"], "AL0003");
    let deployments = || {
        let (status, body) = api.call(
            "GET",
            "/api/v1/environments/staging/deployments",
            &deployer,
            None,
        );
        assert_eq!(status, StatusCode::OK);
        body
    };
    let before = deployments();
    let (status, body) = api.call(
        "POST",
        "/api/v1/environments/staging/deploy",
        &deployer,
        None,
    );
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        before,
        deployments(),
        "nothing was deployed from the broken files"
    );
}

/// A step approval is one rule, in `airlock_ops::runs::decide_step` and the store: the CLI
/// and the API refuse alike a decision on a step the run does not wait on (here a later
/// step of the same workflow), with the same reason, and decide nothing.
#[test]
fn cli_and_api_refuse_alike_a_step_approval_for_a_step_the_run_does_not_wait_on() {
    let (_temp, project) = support::init_project();
    support::test_and_deploy_starter(&project);
    ok(
        &airlock(
            &project,
            &[
                "run",
                "order-intake",
                "--env",
                "staging",
                "--input",
                "examples/overdue-order.json",
            ],
        ),
        "run order-intake",
    );
    // Waits at `approve_reminders`; `send_reminders` comes after it.
    let _ = airlock(&project, &["run", "credit-review", "--env", "staging"]);
    let waiting = airlock(
        &project,
        &[
            "runs",
            "--workflow",
            "credit-review",
            "--status",
            "waiting",
            "--json",
        ],
    );
    ok(&waiting, "runs");
    let run = stdout_json(&waiting)[0]["id"]
        .as_str()
        .expect("a credit review waits at its approval")
        .to_owned();

    let by_cli = airlock(
        &project,
        &[
            "approve-step",
            &run,
            "send_reminders",
            "--as",
            "staging-lead",
            "--json",
        ],
    );
    assert!(!by_cli.status.success(), "{}", support::shown(&by_cli));
    let cli_says = support::shown(&by_cli);

    let token = support::create_token(&project, "staging", "approver", "staging-lead");
    let served = Served::start(&project, &[]);
    let answer = support::http_client()
        .build()
        .expect("an HTTP client")
        .post(format!(
            "{}/api/v1/runs/{run}/steps/send_reminders/approve",
            served.url
        ))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .expect("the server answers");
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    let api_says: Value = answer.json().unwrap();
    let reason = api_says["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("approve_reminders"),
        "the API names the step the run waits on: {api_says}"
    );
    assert!(
        cli_says.contains(&reason),
        "the CLI gives the API's reason ({reason}):\n{cli_says}"
    );
    drop(served);

    let audit = audit_actions(&project);
    assert!(
        !audit.iter().any(|a| a == "step.approve"),
        "nothing was approved: {audit:?}"
    );
    let shown = airlock(&project, &["runs", "show", &run, "--json"]);
    ok(&shown, "runs show");
    assert_eq!(stdout_json(&shown)["run"]["status"], "waiting");
}
