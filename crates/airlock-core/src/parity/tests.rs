//! The classifier, dimension by dimension: what is the same, documented, drift, pending
//! or a note; the literal-leak lint; and that nothing secret is shown.

use super::*;
use crate::project::{Project, load};
use crate::source::SourceFile;
use serde_json::json;

const MANIFEST: &str = r#"
project: parity
connectors:
  crm:  { kind: http, risk: customer }
  chat: { kind: chat_webhook }
  pay:  { kind: http, risk: finance }
environments:
  staging:
    approvers: [lead]
    egress: [localhost]
    secrets: [CRM_TOKEN]
    bindings:
      crm:  { base_url: "https://sandbox.crm.example", token: "${secret:CRM_TOKEN}", timeout: 5s }
      chat: { mode: record, responses: { post: { ok: true } } }
      pay:  { base_url: "http://localhost:9000", timeout: 5s }
  production:
    protected: true
    approvers: [ops, cfo]
    egress: [api.crm.example, hooks.chat.example, pay.example]
    secrets: [CRM_TOKEN, CHAT_URL]
    bindings:
      crm:  { base_url: "https://api.crm.example", token: "${secret:CRM_TOKEN}", timeout: 5s }
      chat: { url: "${secret:CHAT_URL}" }
      pay:  { base_url: "https://pay.example", timeout: 5s }
differences:
  - { path: bindings.crm.base_url, reason: "staging talks to the CRM sandbox" }
  - { path: bindings.chat, reason: "staging records alerts" }
  - { path: bindings.pay.base_url, reason: "a local payment stub" }
  - { path: protected, reason: "only production is protected" }
  - { path: approvers, reason: "production is approved by ops" }
  - { path: egress, reason: "each reaches its own systems" }
  - { path: secrets, reason: "staging has no chat secret" }
promotion:
  staging -> production:
    require: { tests: pass, parity: clean, approvals: 1 }
"#;

const WORKFLOW: &str = r#"
name: orders
trigger: { webhook: { path: orders } }
steps:
  - id: normalize
    map: { total: "{{ trigger.body.amount }}" }
  - id: big
    if: "{{ steps.normalize.output.total > 100 }}"
    then:
      - id: alert
        call: chat.post
        with: { text: "big order" }
  - id: sync
    call: crm.request
    with: { method: POST, path: /orders }
"#;

fn project(manifest: &str, workflows: &[&str]) -> Project {
    let mut files = vec![SourceFile::new("airlock.yaml", manifest)];
    for (i, text) in workflows.iter().enumerate() {
        files.push(SourceFile::new(format!("workflows/w{i}.yaml"), *text));
    }
    let loaded = load(files);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    loaded.project
}

fn edited(from: &str, to: &str) -> String {
    assert!(MANIFEST.contains(from), "{from:?}");
    MANIFEST.replacen(from, to, 1)
}

fn running(workflow: &Workflow) -> Option<Running> {
    Some(Running {
        version: canonical::version_id(workflow).0,
        origin: Origin::Deployed,
        workflow: Some(workflow.clone()),
    })
}

fn sample(workflow: &Workflow, trigger: Value, outputs: &[(&str, Value)]) -> RunSample {
    RunSample {
        run: "run_1".into(),
        version: canonical::version_id(workflow).0,
        trigger,
        outputs: outputs
            .iter()
            .map(|(s, v)| ((*s).to_owned(), v.clone()))
            .collect(),
    }
}

fn one(name: &str, from: Side, to: Side) -> ParityFacts {
    ParityFacts {
        workflows: vec![WorkflowFacts {
            name: name.into(),
            from,
            to,
            target_came_through_source: Some(true),
        }],
        secrets: Vec::new(),
        tokens: Vec::new(),
    }
}

fn report(manifest: &str, facts: &ParityFacts) -> ParityReport {
    compare(
        &project(manifest, &[]).manifest,
        "staging",
        "production",
        facts,
    )
}

fn row<'r>(report: &'r ParityReport, what: &str) -> &'r Finding {
    report
        .findings
        .iter()
        .find(|f| f.what == what)
        .unwrap_or_else(|| {
            panic!(
                "no row {what:?} in {:#?}",
                report.findings.iter().map(|f| &f.what).collect::<Vec<_>>()
            )
        })
}

fn is_documented(finding: &Finding, by: &str) -> bool {
    matches!(&finding.status, Status::Documented { by: b, .. } if b == by)
}

fn drift_whats(report: &ParityReport) -> Vec<&str> {
    report.drift().map(|f| f.what.as_str()).collect()
}

// ---------------------------------------------------------------- documentation

#[test]
fn an_entry_documents_its_path_and_everything_under_it_for_the_pairs_it_names() {
    let manifest = project(
        &edited(
            "  - { path: protected,",
            "  - { path: bindings.crm, reason: \"whole binding\", environments: [staging] }\n  - { path: bindings.crm.timeout, reason: \"the field\", environments: [staging, production] }\n  - { path: bindings.pay.timeout, reason: \"qa only\", environments: [production, qa] }\n  - { path: protected,",
        )
        .replace("  production:\n", "  qa:\n    bindings:\n      crm:  { base_url: \"https://qa.example\" }\n      chat: { mode: record }\n      pay:  { base_url: \"https://qa.example\" }\n  production:\n"),
        &[],
    )
    .manifest;
    let by = |path: &str, a: &str, b: &str| {
        documented_by(&manifest, path, a, b).map(|d| d.reason.value.as_str())
    };
    assert_eq!(
        by("bindings.crm.base_url", "staging", "production"),
        Some("staging talks to the CRM sandbox")
    );
    assert_eq!(
        by("bindings.crm.token", "staging", "production"),
        Some("whole binding"),
        "a binding entry covers its fields"
    );
    assert_eq!(
        by("bindings.crm.timeout", "staging", "production"),
        Some("the field"),
        "the most specific entry wins"
    );
    assert_eq!(
        by("bindings.crm.timeout", "staging", "qa"),
        Some("whole binding"),
        "one environment: against any other"
    );
    assert_eq!(
        by("bindings.crm.token", "qa", "production"),
        None,
        "an entry about staging says nothing of qa and production"
    );
    assert_eq!(
        by("bindings.pay.timeout", "staging", "production"),
        None,
        "a pair list covers only its pair"
    );
    assert_eq!(
        by("bindings.pay.timeout", "qa", "production"),
        Some("qa only")
    );
    assert_eq!(
        by("bindings.crmx", "staging", "production"),
        None,
        "a prefix is a whole segment"
    );
}

// ---------------------------------------------------------------- connector setup

#[test]
fn binding_fields_are_same_documented_or_drift() {
    let r = report(MANIFEST, &ParityFacts::default());
    assert_eq!(row(&r, "crm (kind)").status, Status::Same);
    assert_eq!(row(&r, "bindings.crm.timeout").status, Status::Same);
    assert_eq!(
        row(&r, "bindings.crm.token").status,
        Status::Same,
        "the same reference; values are compared by fingerprint"
    );
    assert!(is_documented(
        row(&r, "bindings.crm.base_url"),
        "bindings.crm.base_url"
    ));
    for field in ["mode", "url", "responses"] {
        assert!(
            is_documented(row(&r, &format!("bindings.chat.{field}")), "bindings.chat"),
            "{field}"
        );
    }
    assert_eq!(row(&r, "bindings.chat.mode").from, "record");
    assert_eq!(row(&r, "bindings.chat.mode").to, "live");
    assert!(r.clean(), "{:?}", drift_whats(&r));

    let r = report(
        &edited("pay.example\", timeout: 5s", "pay.example\", timeout: 30s"),
        &ParityFacts::default(),
    );
    assert_eq!(drift_whats(&r), ["bindings.pay.timeout"]);
    let timeout = row(&r, "bindings.pay.timeout");
    assert_eq!((timeout.from.as_str(), timeout.to.as_str()), ("5s", "30s"));
    assert_eq!(timeout.path.as_deref(), Some("bindings.pay.timeout"));
    assert_eq!(timeout.connector.as_deref(), Some("pay"));

    let r = report(
        &edited("9000\", timeout: 5s }", "9000\" }"),
        &ParityFacts::default(),
    );
    assert_eq!(
        drift_whats(&r),
        ["bindings.pay.timeout"],
        "set on one side only"
    );
    assert_eq!(row(&r, "bindings.pay.timeout").from, "(not set)");
}

#[test]
fn drift_on_a_connector_blocks_only_the_workflows_that_call_it() {
    let p = project(
        &edited("pay.example\", timeout: 5s", "pay.example\", timeout: 30s"),
        &[WORKFLOW],
    );
    let r = compare(
        &p.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    assert!(!r.clean());
    assert!(
        r.clean_for(&p.workflows[0].workflow),
        "orders never calls pay"
    );
    let p = project(
        &edited(
            "sandbox.crm.example\", token",
            "sandbox.crm.example\", headers: { x-trace: \"1\" }, token",
        ),
        &[WORKFLOW],
    );
    let r = compare(
        &p.manifest,
        "staging",
        "production",
        &ParityFacts::default(),
    );
    assert_eq!(drift_whats(&r), ["bindings.crm.headers"]);
    assert!(!r.clean_for(&p.workflows[0].workflow), "orders calls crm");
}

// ---------------------------------------------------------------- permission model

#[test]
fn the_permission_model_counts_the_live_tokens_by_role_and_shows_none_of_them() {
    let token = |env: &str, role: &str| TokenFact {
        environment: env.into(),
        role: role.into(),
    };
    let facts = ParityFacts {
        tokens: vec![
            token("staging", "runner"),
            token("staging", "runner"),
            token("staging", "viewer"),
            token("production", "approver"),
            token("production", "viewer"),
            token("production", "admin"),
        ],
        ..ParityFacts::default()
    };
    let r = report(MANIFEST, &facts);
    let tokens = row(&r, "API tokens (roles)");
    assert_eq!(tokens.dimension, Dimension::Permissions);
    assert_eq!(
        tokens.from, "viewer ×1, runner ×2",
        "in the roles' own order"
    );
    assert_eq!(tokens.to, "viewer ×1, approver ×1, admin ×1");
    assert_eq!(tokens.status, Status::Note, "reported, never drift");
    assert_eq!(
        tokens
            .detail
            .as_deref()
            .unwrap_or_default()
            .split(':')
            .next(),
        Some("only `staging` has runner; only `production` has approver, admin")
    );
    assert!(r.clean(), "{:#?}", r.drift().collect::<Vec<_>>());

    let same = ParityFacts {
        tokens: vec![
            token("staging", "viewer"),
            token("production", "viewer"),
            token("production", "viewer"),
        ],
        ..ParityFacts::default()
    };
    let r = report(MANIFEST, &same);
    let tokens = row(&r, "API tokens (roles)");
    assert_eq!(
        tokens.status,
        Status::Same,
        "the same roles, whatever the counts"
    );
    assert_eq!(
        (tokens.from.as_str(), tokens.to.as_str()),
        ("viewer ×1", "viewer ×2")
    );
}

#[test]
fn protection_approvers_and_egress_are_documented_or_drift() {
    let r = report(MANIFEST, &ParityFacts::default());
    for what in ["protected", "approvers", "egress"] {
        assert!(is_documented(row(&r, what), what), "{what}");
    }
    assert_eq!(
        row(&r, "API tokens (roles)").status,
        Status::Same,
        "no token in either"
    );

    let undocumented = edited(
        "  - { path: egress, reason: \"each reaches its own systems\" }\n",
        "",
    );
    let r = report(&undocumented, &ParityFacts::default());
    assert_eq!(drift_whats(&r), ["egress"]);
    assert_eq!(row(&r, "egress").from, "localhost");

    let same_approvers = edited("approvers: [lead]", "approvers: [cfo, ops]");
    assert_eq!(
        row(
            &report(&same_approvers, &ParityFacts::default()),
            "approvers"
        )
        .status,
        Status::Same,
        "a set: order means nothing"
    );
}

// ---------------------------------------------------------------- credentials

#[test]
fn a_shared_credential_is_drift_whatever_the_documentation() {
    let secret = |env: &str, name: &str, fingerprint: Option<&str>| SecretFact {
        environment: env.into(),
        name: name.into(),
        fingerprint: fingerprint.map(str::to_owned),
    };
    let facts = ParityFacts {
        workflows: Vec::new(),
        secrets: vec![
            secret("staging", "CRM_TOKEN", Some("aa")),
            secret("production", "CRM_TOKEN", Some("bb")),
            secret("production", "CHAT_URL", Some("cc")),
        ],
        tokens: Vec::new(),
    };
    let r = report(MANIFEST, &facts);
    assert!(is_documented(row(&r, "secrets (names)"), "secrets"));
    assert_eq!(row(&r, "shared credentials").status, Status::Same);
    assert!(r.clean());

    let mut shared = facts.clone();
    shared.secrets[2].fingerprint = Some("aa".into());
    let r = report(MANIFEST, &shared);
    assert_eq!(
        drift_whats(&r),
        ["shared credential"],
        "the same value under another name is still shared"
    );
    let finding = row(&r, "shared credential");
    assert_eq!(
        (finding.from.as_str(), finding.to.as_str()),
        ("CRM_TOKEN in staging", "CHAT_URL in production")
    );
    assert!(
        !serde_json::to_string(&r).unwrap().contains("\"aa\""),
        "fingerprints are not shown"
    );

    let mut unknown = facts;
    unknown.secrets[0].fingerprint = None;
    let r = report(MANIFEST, &unknown);
    assert_eq!(
        row(&r, "shared credential check").status,
        Status::Note,
        "what cannot be compared is said, not passed over"
    );
    assert!(r.clean());

    let r = report(
        &edited(
            "  - { path: secrets, reason: \"staging has no chat secret\" }\n",
            "",
        ),
        &ParityFacts::default(),
    );
    assert_eq!(drift_whats(&r), ["secrets (names)"]);
}

// ---------------------------------------------------------------- workflow logic

#[test]
fn versions_are_same_pending_along_the_promotion_path_or_drift() {
    let v1 = project(MANIFEST, &[WORKFLOW]).workflows[0].workflow.clone();
    let v2 = project(MANIFEST, &[&WORKFLOW.replace("total > 100", "total > 500")]).workflows[0]
        .workflow
        .clone();
    let side = |w: &Workflow| Side {
        running: running(w),
        samples: Vec::new(),
    };

    let r = report(MANIFEST, &one("orders", side(&v1), side(&v1)));
    assert_eq!(row(&r, "orders (version)").status, Status::Same);

    let r = report(MANIFEST, &one("orders", side(&v2), side(&v1)));
    assert_eq!(
        row(&r, "orders (version)").status,
        Status::Pending,
        "the change promotion moves"
    );
    let condition = row(&r, "orders · step big: condition");
    assert_eq!(condition.status, Status::Pending);
    assert_eq!(
        (condition.from.as_str(), condition.to.as_str()),
        (
            "steps.normalize.output.total > 500",
            "steps.normalize.output.total > 100"
        )
    );
    assert!(r.clean());

    let mut outside = one("orders", side(&v2), side(&v1));
    outside.workflows[0].target_came_through_source = Some(false);
    let r = report(MANIFEST, &outside);
    assert_eq!(
        row(&r, "orders (version)").status,
        Status::Drift,
        "production runs what staging never ran"
    );

    let no_rule = edited(
        "promotion:\n  staging -> production:\n    require: { tests: pass, parity: clean, approvals: 1 }\n",
        "",
    );
    let r = report(&no_rule, &one("orders", side(&v2), side(&v1)));
    assert_eq!(
        row(&r, "orders (version)").status,
        Status::Drift,
        "nothing reconciles them"
    );
    assert!(!r.promotion_path);

    let r = report(MANIFEST, &one("orders", side(&v1), Side::default()));
    let first = row(&r, "orders (version)");
    assert_eq!(
        (first.to.as_str(), &first.status),
        ("not deployed", &Status::Pending),
        "a first release"
    );

    let r = report(MANIFEST, &one("orders", Side::default(), side(&v1)));
    assert_eq!(
        drift_whats(&r),
        ["orders (version)"],
        "production runs a workflow staging does not"
    );

    // Named the other way round, production is still the target.
    let r = compare(
        &project(MANIFEST, &[]).manifest,
        "production",
        "staging",
        &one("orders", side(&v1), side(&v2)),
    );
    assert_eq!(r.target, "production");
    assert_eq!(row(&r, "orders (version)").status, Status::Pending);
}

#[test]
fn the_structural_diff_names_steps_by_id() {
    let v1 = project(MANIFEST, &[WORKFLOW]).workflows[0].workflow.clone();
    let v2_text = WORKFLOW
        .replace(
            "with: { text: \"big order\" }",
            "with: { text: \"big order!\" }",
        )
        .replace(
            "  - id: sync\n    call: crm.request\n    with: { method: POST, path: /orders }\n",
            "",
        )
        .replace(
            "steps:\n",
            "steps:\n  - id: audit\n    map: { at: \"{{ run.started_at }}\" }\n",
        );
    let v2 = project(MANIFEST, &[&v2_text]).workflows[0].workflow.clone();
    let changes = structural_diff(&v1, &v2);
    let whats: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
    assert_eq!(
        whats,
        ["step audit", "step alert: with", "step sync"],
        "{changes:#?}"
    );
    assert_eq!(changes[0].to, "added (map in steps)");
    assert_eq!(changes[2].to, "removed");

    let moved_text = WORKFLOW.replace(
        "  - id: sync\n    call: crm.request\n    with: { method: POST, path: /orders }\n",
        "",
    )
    .replace("        with: { text: \"big order\" }\n", "        with: { text: \"big order\" }\n      - id: sync\n        call: crm.request\n        with: { method: POST, path: /orders }\n");
    let moved = project(MANIFEST, &[&moved_text]).workflows[0]
        .workflow
        .clone();
    let changes = structural_diff(&v1, &moved);
    assert_eq!(changes[0].what, "step sync: place");
    assert_eq!(
        (changes[0].from.as_str(), changes[0].to.as_str()),
        ("steps", "big.then")
    );

    let reordered_text = WORKFLOW.replace(
        "  - id: sync\n    call: crm.request\n    with: { method: POST, path: /orders }\n",
        "",
    )
    .replace("steps:\n", "steps:\n  - id: sync\n    call: crm.request\n    with: { method: POST, path: /orders }\n");
    let reordered = project(MANIFEST, &[&reordered_text]).workflows[0]
        .workflow
        .clone();
    let whats: Vec<String> = structural_diff(&v1, &reordered)
        .into_iter()
        .map(|c| c.what)
        .collect();
    assert_eq!(whats, ["order of steps"]);
}

// ---------------------------------------------------------------- data shapes

#[test]
fn shapes_seen_only_in_production_are_drift_and_only_in_staging_a_note() {
    let w = project(MANIFEST, &[WORKFLOW]).workflows[0].workflow.clone();
    let staging = Side {
        running: running(&w),
        samples: vec![sample(
            &w,
            json!({"body": {"amount": 120}, "headers": {"x-a": "1"}}),
            &[("sync", json!({"status": 201}))],
        )],
    };
    let production = Side {
        running: running(&w),
        samples: vec![sample(
            &w,
            json!({"body": {"amount": "120", "coupon": "X"}, "headers": {"x-b": "2"}}),
            &[("sync", json!({"status": 201, "body": {"id": "c-1"}}))],
        )],
    };
    let r = report(
        MANIFEST,
        &one("orders", staging.clone(), production.clone()),
    );
    let amount = row(&r, "orders · trigger.body.amount");
    assert_eq!(
        (amount.from.as_str(), amount.to.as_str(), &amount.status),
        ("number", "string", &Status::Drift)
    );
    assert_eq!(
        row(&r, "orders · trigger.body.coupon").status,
        Status::Drift
    );
    assert!(
        r.findings.iter().all(|f| !f.what.contains("headers")),
        "headers depend on the sender"
    );
    let id = row(&r, "orders · sync.output.body.id");
    assert_eq!(
        id.status,
        Status::Drift,
        "staging's canned CRM answer lacks what the real one has"
    );
    assert_eq!(id.path.as_deref(), Some("bindings.crm.responses"));

    // The other way round it is a note: staging exercised more than production.
    let r = report(
        MANIFEST,
        &one("orders", production.clone(), staging.clone()),
    );
    assert_eq!(row(&r, "orders · trigger.body.coupon").status, Status::Note);

    // A call step's answer is documented by its binding's `responses` (for a record-mode
    // binding) or by the whole binding.
    let documented = edited(
        "  - { path: protected,",
        "  - { path: bindings.crm, reason: \"the sandbox answers with less\" }\n  - { path: protected,",
    );
    let r = report(
        &documented,
        &one("orders", staging.clone(), production.clone()),
    );
    assert!(is_documented(
        row(&r, "orders · sync.output.body.id"),
        "bindings.crm"
    ));
    assert_eq!(
        row(&r, "orders · trigger.body.coupon").status,
        Status::Drift,
        "a payload is nobody's binding"
    );

    // Same data: one row per kind of shape.
    let r = report(MANIFEST, &one("orders", staging.clone(), staging.clone()));
    assert_eq!(row(&r, "orders · trigger payload").status, Status::Same);
    assert_eq!(
        row(&r, "orders · step outputs (1 steps)").status,
        Status::Same
    );

    // A step whose definition changed explains its own output.
    let v2 = project(
        MANIFEST,
        &[&WORKFLOW.replace("path: /orders", "path: /v2/orders")],
    )
    .workflows[0]
        .workflow
        .clone();
    let candidate = Side {
        running: running(&v2),
        samples: staging.samples.clone(),
    };
    let r = report(MANIFEST, &one("orders", candidate, production));
    assert_eq!(
        row(&r, "orders · sync.output.body.id").status,
        Status::Pending
    );

    let r = report(
        MANIFEST,
        &one(
            "orders",
            staging,
            Side {
                running: running(&w),
                samples: Vec::new(),
            },
        ),
    );
    assert_eq!(row(&r, "orders · recent runs").status, Status::Note);
    assert_eq!(
        row(&r, "orders · recent runs").detail.as_deref(),
        Some("no runs in production to compare")
    );
}

#[test]
fn a_hostile_payload_cannot_make_the_shape_explode() {
    let mut wide = serde_json::Map::new();
    for i in 0..5_000 {
        wide.insert(format!("k{i}"), json!(i));
    }
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "d": deep });
    }
    assert!(shape_of(&Value::Object(wide), "trigger").len() <= MAX_SHAPE_PATHS);
    assert!(shape_of(&deep, "trigger").len() <= MAX_SHAPE_DEPTH + 1);
}

// ---------------------------------------------------------------- branching

#[test]
fn arms_taken_in_production_and_never_in_staging_are_drift() {
    let w = project(MANIFEST, &[WORKFLOW]).workflows[0].workflow.clone();
    let taken = |branch: &str| {
        sample(
            &w,
            json!({"body": {}}),
            &[("big", json!({ "branch": branch }))],
        )
    };
    let staging = Side {
        running: running(&w),
        samples: vec![taken("then")],
    };
    let production = Side {
        running: running(&w),
        samples: vec![taken("then"), taken("else")],
    };
    let r = report(
        MANIFEST,
        &one("orders", staging.clone(), production.clone()),
    );
    let arm = row(&r, "orders · big → else");
    assert_eq!(
        (arm.from.as_str(), arm.to.as_str(), &arm.status),
        ("never taken", "taken (1)", &Status::Drift)
    );
    let r = report(
        MANIFEST,
        &one("orders", production.clone(), staging.clone()),
    );
    assert_eq!(row(&r, "orders · big → else").status, Status::Note);
    let r = report(MANIFEST, &one("orders", production.clone(), production));
    assert_eq!(
        row(&r, "orders · arms taken in recent runs").status,
        Status::Same
    );

    // Arms in one version only follow the version's status.
    let v2 = project(MANIFEST, &[&WORKFLOW.replace("        with: { text: \"big order\" }\n", "        with: { text: \"big order\" }\n    else:\n      - id: small\n        map: { ok: true }\n")])
        .workflows[0]
        .workflow
        .clone();
    let v3 = project(
        MANIFEST,
        &[&WORKFLOW.replace(
            "  - id: big\n    if: \"{{ steps.normalize.output.total > 100 }}\"\n    then:\n      - id: alert\n        call: chat.post\n        with: { text: \"big order\" }\n",
            "  - id: route\n    switch: \"{{ trigger.body.country }}\"\n    cases:\n      fr: [{ id: alert, call: chat.post, with: { text: \"fr\" } }]\n",
        )],
    )
    .workflows[0]
    .workflow
    .clone();
    assert_eq!(
        arms(&v3),
        BTreeSet::from([
            "route → case \"fr\"".to_owned(),
            "route → default".to_owned()
        ])
    );
    let r = report(
        MANIFEST,
        &one(
            "orders",
            Side {
                running: running(&v3),
                samples: Vec::new(),
            },
            Side {
                running: running(&v2),
                samples: Vec::new(),
            },
        ),
    );
    let arm = row(&r, "orders · route → case \"fr\"");
    assert_eq!(
        (arm.from.as_str(), arm.to.as_str(), &arm.status),
        ("present", "absent", &Status::Pending)
    );
}

// ---------------------------------------------------------------- literal leaks

#[test]
fn sandbox_literals_in_production_and_production_literals_in_staging_are_flagged() {
    let r = report(
        &edited(
            "pay:  { base_url: \"https://pay.example\"",
            "pay:  { base_url: \"https://api.sandbox.pay.example\"",
        ),
        &ParityFacts::default(),
    );
    let leak = row(&r, "bindings.pay.base_url (literal in production)");
    assert_eq!(
        leak.status,
        Status::Drift,
        "bindings.pay.base_url is documented as a difference, which does not excuse a sandbox host"
    );
    assert_eq!(leak.to, "sandbox-looking: host api.sandbox.pay.example");

    let key = edited(
        "pay:  { base_url: \"https://pay.example\", timeout: 5s }",
        "pay:  { base_url: \"https://pay.example\", timeout: 5s, headers: { Authorization: \"Bearer sk_test_abcdef123456\" } }",
    );
    let r = report(&key, &ParityFacts::default());
    let leak = row(&r, "bindings.pay.headers (literal in production)");
    assert_eq!(leak.to, "sandbox-looking: sk_test_…");
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        !json.contains("abcdef123456"),
        "a key is never shown: {json}"
    );
    let pair_wide = key.replace("  - { path: protected,", "  - { path: bindings.pay.headers, reason: \"production sends a trace header\" }\n  - { path: protected,");
    let r = report(&pair_wide, &ParityFacts::default());
    assert!(is_documented(
        row(&r, "bindings.pay.headers"),
        "bindings.pay.headers"
    ));
    assert_eq!(
        row(&r, "bindings.pay.headers (literal in production)").status,
        Status::Drift,
        "documenting that the field differs does not excuse a test key"
    );
    let intended = key.replace("  - { path: protected,", "  - { path: bindings.pay.headers, environments: [production], reason: \"the vendor's test mode is intended\" }\n  - { path: protected,");
    let r = report(&intended, &ParityFacts::default());
    assert!(
        is_documented(
            row(&r, "bindings.pay.headers (literal in production)"),
            "bindings.pay.headers"
        ),
        "an entry for this field of production alone documents it"
    );

    let r = report(
        &edited(
            "base_url: \"http://localhost:9000\"",
            "base_url: \"https://PAY.example/v1\"",
        ),
        &ParityFacts::default(),
    );
    let leak = row(&r, "bindings.pay.base_url (literal in staging)");
    assert_eq!(
        (leak.from.as_str(), &leak.status),
        ("production-looking: host pay.example", &Status::Drift)
    );

    let r = report(
        &edited(
            "base_url: \"http://localhost:9000\"",
            "base_url: \"http://localhost:9000\", token: \"sk_live_zzzz\"",
        ),
        &ParityFacts::default(),
    );
    assert_eq!(
        row(&r, "bindings.pay.token (literal in staging)").from,
        "production-looking: sk_live_…"
    );
    assert_eq!(row(&r, "bindings.pay.token").from, "(literal, hidden)");

    // A record-mode binding never reaches its host, and loopback is this machine, not production.
    let recorded = edited(
        "base_url: \"http://localhost:9000\"",
        "mode: record, base_url: \"https://pay.example\"",
    );
    assert!(
        report(&recorded, &ParityFacts::default())
            .findings
            .iter()
            .all(|f| !f.what.contains("literal in"))
    );
    let loopback = edited(
        "egress: [api.crm.example,",
        "egress: [127.0.0.1, localhost, api.crm.example,",
    )
    .replace(
        "base_url: \"http://localhost:9000\"",
        "base_url: \"http://127.0.0.1:9000\"",
    );
    assert!(
        report(&loopback, &ParityFacts::default())
            .findings
            .iter()
            .all(|f| !f.what.contains("literal in"))
    );

    // Words inside words and secret references are not sandbox markers.
    for host in [
        "https://latest.pay.example",
        "https://contest.example",
        "https://${secret:TEST_HOST}/x",
    ] {
        let r = report(
            &edited(
                "pay:  { base_url: \"https://pay.example\"",
                &format!("pay:  {{ base_url: \"{host}\""),
            )
            .replace(
                "secrets: [CRM_TOKEN, CHAT_URL]",
                "secrets: [CRM_TOKEN, CHAT_URL, TEST_HOST]",
            ),
            &ParityFacts::default(),
        );
        assert!(
            !r.findings.iter().any(|f| f.what.contains("literal in")),
            "{host}: {:?}",
            drift_whats(&r)
        );
    }
}

#[test]
fn leaks_look_at_record_modes_channels_and_smtp_hosts() {
    let manifest = project(
        "project: p\nconnectors:\n  mail: { kind: smtp }\n  chat: { kind: chat_webhook }\nenvironments:\n  production:\n    approvers: [ops]\n    protected: true\n    bindings:\n      mail: { host: smtp.staging.example, from: ops@example }\n      chat: { url: \"https://hooks.example/x?channel=%23ops-test\" }\n",
        &[],
    )
    .manifest;
    let production = manifest.environment("production").unwrap();
    let found: Vec<(String, String)> = leaks(production, None)
        .into_iter()
        .map(|l| (l.field, l.shown))
        .collect();
    assert_eq!(
        found,
        [("host".to_owned(), "host smtp.staging.example".to_owned())]
    );
    let mut recording = production.clone();
    recording.bindings[0].mode.value = BindingMode::Record;
    recording.bindings[1].settings[0].1.value = crate::yaml::Value::Str("#ops-testing".into());
    let fields: Vec<String> = leaks(&recording, None)
        .into_iter()
        .map(|l| l.field)
        .collect();
    assert_eq!(
        fields,
        ["mode", "host", "url"],
        "a record mode in a protected environment, and a test channel"
    );
}

// ---------------------------------------------------------------- showing values

#[test]
fn nothing_secret_is_shown() {
    assert_eq!(
        mask_url_passwords("postgres://app:hunter2@db.internal/ledger"),
        "postgres://app:***@db.internal/ledger"
    );
    assert_eq!(
        mask_url_passwords("https://x.example/a?user=me&password=hunter2&b=1"),
        "https://x.example/a?user=me&password=***&b=1"
    );
    assert_eq!(
        mask_url_passwords("https://token@x.example/"),
        "https://token@x.example/"
    );
    assert_eq!(shown_setting("token", &json!("abc")), "(literal, hidden)");
    assert_eq!(
        shown_setting("token", &json!("${secret:CRM_TOKEN}")),
        "${secret:CRM_TOKEN}"
    );
    assert_eq!(
        shown_setting("headers", &json!({"X-Api-Key": "k", "Accept": "json"})),
        r#"{"Accept":"json","X-Api-Key":"(literal, hidden)"}"#
    );
    assert_eq!(host_of("https://u:p@[::1]:8080/x"), Some("::1".into()));
    assert_eq!(host_of("smtp.example"), None);
}

// ---------------------------------------------------------------- the starter

#[test]
fn the_starter_project_documents_every_difference() {
    let loaded = load(crate::scaffold::files());
    let manifest = &loaded.project.manifest;
    let r = compare(manifest, "staging", "production", &ParityFacts::default());
    assert!(
        r.clean(),
        "the starter has drift: {:#?}",
        r.drift().collect::<Vec<_>>()
    );
    assert!(leaks(manifest.environment("production").unwrap(), None).is_empty());
    assert!(
        leaks(
            manifest.environment("staging").unwrap(),
            manifest.environment("production")
        )
        .is_empty()
    );
}
