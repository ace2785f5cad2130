//! `airlock diff` and `airlock readiness`, the built binary on real project folders: the
//! starter documents its differences; an undocumented one is drift until documented; a
//! credential shared between environments is flagged without its value ever printed.

mod support;
use support::*;

use serde_json::Value;
use std::path::Path;

fn diff_json(project: &Path) -> (Option<i32>, Value) {
    let out = airlock(project, &["diff", "staging", "production", "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn findings(json: &Value) -> &Vec<Value> {
    json["findings"].as_array().expect("findings")
}

fn drift(json: &Value) -> Vec<String> {
    findings(json)
        .iter()
        .filter(|f| f["status"] == "drift")
        .map(|f| f["what"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn row<'j>(json: &'j Value, what: &str) -> &'j Value {
    findings(json)
        .iter()
        .find(|f| f["what"] == what)
        .unwrap_or_else(|| panic!("no row {what:?}"))
}

/// The rows with a status, as `what` (or `what by path` when documented), sorted.
fn with_status(json: &Value, status: &str) -> Vec<String> {
    let mut rows: Vec<String> = findings(json)
        .iter()
        .filter(|f| f["status"] == status)
        .map(|f| match f["by"].as_str() {
            Some(by) => format!("{} by {by}", f["what"].as_str().unwrap_or_default()),
            None => f["what"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn the_starter_project_documents_every_difference() {
    let (_temp, project) = init_project();
    let (code, json) = diff_json(&project);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["clean"], true);
    assert_eq!(json["target"], "production");
    assert_eq!(
        json["counts"],
        serde_json::json!({ "same": 7, "documented": 22, "drift": 0, "pending": 2, "notes": 4 })
    );
    assert_eq!(
        with_status(&json, "documented"),
        [
            "approvers by approvers",
            "bindings.chat.mode by bindings.chat.mode",
            "bindings.chat.responses by bindings.chat.responses",
            "bindings.chat.url by bindings.chat.url",
            "bindings.crm.base_url by bindings.crm",
            "bindings.crm.mode by bindings.crm",
            "bindings.crm.responses by bindings.crm",
            "bindings.crm.timeout by bindings.crm",
            "bindings.crm.token by bindings.crm",
            "bindings.mail.from by bindings.mail",
            "bindings.mail.host by bindings.mail",
            "bindings.mail.mode by bindings.mail",
            "bindings.mail.password by bindings.mail",
            "bindings.mail.port by bindings.mail",
            "bindings.mail.responses by bindings.mail",
            "bindings.mail.tls by bindings.mail",
            "bindings.mail.username by bindings.mail",
            "bindings.orders_db.schema by bindings.orders_db.schema",
            "bindings.orders_db.url by bindings.orders_db.url",
            "egress by egress",
            "protected by protected",
            "secrets (names) by secrets",
        ]
    );
    assert_eq!(
        with_status(&json, "same"),
        [
            "API tokens (roles)",
            "bindings.orders_db.mode",
            "chat (kind)",
            "crm (kind)",
            "mail (kind)",
            "orders_db (kind)",
            "shared credentials"
        ]
    );
    // Nothing is released yet: each workflow is the change a first promotion moves.
    assert_eq!(
        with_status(&json, "pending"),
        ["credit-review (version)", "order-intake (version)"]
    );
    assert_eq!(row(&json, "order-intake (version)")["to"], "not deployed");
    assert_eq!(
        row(&json, "API tokens (roles)")["detail"],
        "no live API token in either environment (`airlock token create`)"
    );

    let out = airlock(&project, &["diff", "staging", "production"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for heading in [
        "workflow logic",
        "connector setup",
        "permission model",
        "data shapes (recent runs)",
        "branching",
        "credentials",
    ] {
        assert!(
            stdout.lines().any(|l| l == heading),
            "no {heading:?} table:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "documented (bindings.orders_db.url): staging writes orders to a local SQLite file"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("clean: every difference is documented"),
        "{stdout}"
    );
}

#[test]
fn an_undocumented_difference_is_drift_until_documented() {
    let (_temp, project) = init_project();
    add_undocumented_billing(&project);
    let out = airlock(&project, &["diff", "staging", "production"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "drift exits 1:\n{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("bindings.billing.base_url") && l.contains("DRIFT")),
        "the drift is named:\n{stdout}"
    );
    assert!(
        stdout.contains("DRIFT: bindings.billing.base_url\n"),
        "{stdout}"
    );
    let (_, json) = diff_json(&project);
    assert_eq!(drift(&json), ["bindings.billing.base_url"]);
    assert_eq!(row(&json, "bindings.billing.timeout")["status"], "same");

    replace_in(
        &project,
        "airlock.yaml",
        "differences:                     # the documented ones; anything else is drift\n",
        "differences:                     # the documented ones; anything else is drift\n  - { path: bindings.billing.base_url, reason: \"staging bills against a local stub\" }\n",
    );
    // The documentation is part of production's configuration: judged once released.
    let (code, json) = diff_json(&project);
    assert_eq!(code, Some(1), "not released yet: {:?}", drift(&json));
    assert_eq!(json["configuration"][0]["environment"], "production");
    release_configuration(&project);
    let (code, json) = diff_json(&project);
    assert_eq!(
        code,
        Some(0),
        "documented, so clean again: {:?}",
        drift(&json)
    );
    let documented = row(&json, "bindings.billing.base_url");
    assert_eq!(documented["status"], "documented");
    assert_eq!(documented["reason"], "staging bills against a local stub");

    // A change to a field that the entry does not cover is drift again, once production
    // runs it; until then it is a pending change of production's configuration.
    replace_in(
        &project,
        "airlock.yaml",
        "billing.example\", timeout: 5s",
        "billing.example\", timeout: 30s",
    );
    let (code, json) = diff_json(&project);
    assert_eq!(
        code,
        Some(0),
        "production still runs 5s: {:?}",
        drift(&json)
    );
    assert!(
        json["configuration"][0]["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["sign"] == "+" && l["text"].as_str().unwrap().contains("30s")),
        "{}",
        json["configuration"]
    );
    release_configuration(&project);
    let (code, json) = diff_json(&project);
    assert_eq!(
        (code, drift(&json)),
        (Some(1), vec!["bindings.billing.timeout".to_owned()])
    );
}

/// `promote --config --to production` as dev, approved by the starter's two production
/// approvers: released.
fn release_configuration(project: &Path) {
    let opened = airlock(
        project,
        &[
            "promote",
            "--config",
            "--to",
            "production",
            "--as",
            "dev",
            "--json",
        ],
    );
    let opened: Value = serde_json::from_slice(&opened.stdout).unwrap();
    let request = opened["request"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{opened}"))
        .to_owned();
    for approver in ["ops-lead", "cfo"] {
        let out = airlock(project, &["approve", &request, "--as", approver]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
}

#[test]
fn a_production_host_in_a_staging_binding_is_drift() {
    let (_temp, project) = init_project();
    replace_in(
        &project,
        "airlock.yaml",
        "  mail:      { kind: smtp,",
        "  billing:   { kind: http,         risk: finance }\n  mail:      { kind: smtp,",
    );
    replace_in(
        &project,
        "airlock.yaml",
        "          send: { accepted: true }\n",
        "          send: { accepted: true }\n      billing: { base_url: \"https://api.crm.example/billing\" }\n",
    );
    replace_in(
        &project,
        "airlock.yaml",
        "        tls: starttls\n",
        "        tls: starttls\n      billing: { base_url: \"https://api.crm.example/billing\" }\n",
    );
    let (code, json) = diff_json(&project);
    assert_eq!(code, Some(1));
    assert_eq!(
        drift(&json),
        ["bindings.billing.base_url (literal in staging)"],
        "the values are equal; the literal leaks"
    );
    let leak = row(&json, "bindings.billing.base_url (literal in staging)");
    assert_eq!(leak["from"], "production-looking: host api.crm.example");
}

#[test]
fn a_credential_shared_between_environments_is_flagged_and_never_shown() {
    let (_temp, project) = init_project();
    replace_in(
        &project,
        "airlock.yaml",
        "    secrets: [ORDER_HOOK_SECRET]\n",
        "    secrets: [ORDER_HOOK_SECRET, CRM_TOKEN]\n",
    );
    let value = "tok-shared-8b1f2c7d";
    for environment in ["staging", "production"] {
        let out = airlock_stdin(
            &project,
            &["secrets", "set", "CRM_TOKEN", "--env", environment],
            value,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!text(&out.stdout).contains(value));
    }
    assert!(
        project.join(".airlock/keys/fingerprint.key").is_file(),
        "a fingerprint key of its own"
    );
    let human = airlock(&project, &["diff", "staging", "production"]);
    let (code, json) = diff_json(&project);
    assert_eq!(code, Some(1));
    assert_eq!(human.status.code(), Some(1));
    assert_eq!(drift(&json), ["shared credential"]);
    let shared = row(&json, "shared credential");
    assert_eq!(
        (shared["from"].as_str(), shared["to"].as_str()),
        (
            Some("CRM_TOKEN in staging"),
            Some("CRM_TOKEN in production")
        )
    );
    let everything = format!("{}{}{json}", text(&human.stdout), text(&human.stderr));
    assert!(!everything.contains(value), "the value is never printed");
    assert!(
        text(&human.stdout)
            .lines()
            .any(|l| l.contains("shared credential") && l.contains("DRIFT"))
    );

    // Documenting does not excuse it: only a separate credential does.
    replace_in(
        &project,
        "airlock.yaml",
        "differences:                     # the documented ones; anything else is drift\n",
        "differences:                     # the documented ones; anything else is drift\n  - { path: bindings.crm.token, reason: \"trying to excuse it\" }\n",
    );
    assert_eq!(diff_json(&project).0, Some(1));
    let out = airlock_stdin(
        &project,
        &["secrets", "set", "CRM_TOKEN", "--env", "staging"],
        "tok-staging-only-91",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, json) = diff_json(&project);
    assert_eq!(code, Some(0), "{:?}", drift(&json));
    assert_eq!(row(&json, "shared credentials")["status"], "same");
}

#[test]
fn diff_refuses_bad_names_with_exit_2() {
    let (_temp, project) = init_project();
    let same = airlock(&project, &["diff", "staging", "staging"]);
    assert_eq!(same.status.code(), Some(2));
    let unknown = airlock(&project, &["diff", "staging", "prod"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no environment named `prod`"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn readiness_answers_the_six_questions_and_says_what_is_unclear() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["readiness", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a fresh project is not ready: {}",
        text(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ready"], false);
    assert_eq!(
        json["path"],
        serde_json::json!({ "from": "staging", "to": "production" })
    );
    let workflows = json["workflows"].as_array().unwrap();
    assert_eq!(workflows.len(), 2);
    for workflow in workflows {
        let answers = workflow["answers"].as_array().unwrap();
        let clear: Vec<(&str, bool)> = answers
            .iter()
            .map(|a| {
                (
                    a["question"].as_str().unwrap_or_default(),
                    a["clear"] == true,
                )
            })
            .collect();
        assert_eq!(
            clear,
            [
                ("tested", false),
                ("differs", true),
                ("documented", true),
                ("release", true),
                ("rollback", true),
                ("target", false)
            ],
            "{workflow:#}"
        );
        assert!(
            answers[0]["answer"]
                .as_str()
                .unwrap()
                .contains("was never tested")
        );
    }

    let out = airlock(&project, &["readiness", "order-intake"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("order-intake (finance risk): NOT READY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✗ 6. can the target run it now?"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("credit-review"),
        "only the workflow asked for"
    );
    assert_eq!(
        airlock(&project, &["readiness", "nope"]).status.code(),
        Some(2)
    );
}

/// Defect 4 of issue 11: the permission model said "API tokens and their scopes do not exist
/// yet (they come with the server)" with tokens in the store. It tells the roles the live
/// tokens of each environment hold, and nothing that would identify or present a token.
#[test]
fn diff_tells_the_roles_of_each_environments_tokens_without_revealing_one() {
    let (_temp, project) = init_project();
    let tokens = [
        create_token(&project, "staging", "runner", "ci-runner"),
        create_token(&project, "staging", "runner", "nightly-runner"),
        create_token(&project, "production", "approver", "release-approver"),
        create_token(&project, "production", "viewer", "dashboard"),
    ];
    // A revoked token grants nothing any more: it is not counted.
    let revoked = create_token(&project, "production", "admin", "former-admin");
    let listed = json(&airlock(&project, &["token", "list", "--json"]));
    let id = listed["tokens"]
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == "former-admin"))
        .and_then(|t| t["id"].as_str())
        .expect("the admin's token id")
        .to_owned();
    ok(&airlock(&project, &["token", "revoke", &id]), "revoke");

    let (code, json) = diff_json(&project);
    assert_eq!(
        code,
        Some(0),
        "token roles are reported, not drift: {json:#}"
    );
    let roles = row(&json, "API tokens (roles)");
    assert_eq!(roles["dimension"], "permissions");
    assert_eq!(roles["from"], "runner ×2");
    assert_eq!(roles["to"], "viewer ×1, approver ×1");
    assert_eq!(roles["status"], "note");
    assert_eq!(
        roles["detail"],
        "only `staging` has runner; only `production` has viewer, approver: each environment's tokens are its own identities (`airlock token list`), so this is reported, not drift"
    );

    let out = airlock(&project, &["diff", "staging", "production"]);
    ok(&out, "diff");
    let human = text(&out.stdout);
    assert!(
        human
            .lines()
            .any(|l| l.contains("API tokens (roles)") && l.contains("runner ×2")),
        "{human}"
    );
    let shown = format!("{human}{json}");
    assert!(!shown.contains("do not exist yet"), "{shown}");
    for secret in tokens.iter().chain([&revoked]) {
        assert!(secret.starts_with("alk_"), "a token: {secret}");
        assert!(!shown.contains(secret.as_str()), "a token was shown");
    }
    for name in [
        "ci-runner",
        "nightly-runner",
        "release-approver",
        "dashboard",
        "former-admin",
        &id,
    ] {
        assert!(!shown.contains(name), "{name} was shown:\n{shown}");
    }
}
