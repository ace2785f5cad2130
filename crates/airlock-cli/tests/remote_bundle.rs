//! Deploys carry their files (issue 14): a server started in an empty folder, with no
//! checkout of the project, receives the project's bundle from `airlock deploy --server`,
//! checks, validates and hashes it itself, keeps it (serving it after a restart), runs the
//! scenario suites on its own side and records the evidence the promotion gate reads; a
//! bundle that does not hash to what the client named, or breaks the rules, changes
//! nothing. And the approvers' inbox, through the API and the CLI.

mod support;

use airlock_core::bundle::Bundle;
use airlock_ops::bundle::{WireBundle, read_folder};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use support::server::Served;
use support::{airlock_with, json as stdout_json, ok, shown, text, write};

const SCENARIO: &str = r#"trigger: { body: { name: ada } }
expect:
  status: succeeded
  path: [hello]
"#;

fn greet(greeting: &str) -> String {
    format!(
        "name: greet\ntrigger: {{ webhook: {{ path: greet }} }}\nsteps:\n  - id: hello\n    map: {{ greeting: \"{greeting} {{{{ trigger.body.name }}}}\" }}\n"
    )
}

fn new_project(dir: &Path) {
    write(
        dir,
        "airlock.yaml",
        &support::two_environment_manifest("bundle-story"),
    );
    write(dir, "workflows/greet.yaml", &greet("hello"));
    write(dir, "tests/greet/hello.yaml", SCENARIO);
}

/// Each workflow's version id, as the client computes it from the files it sends.
fn versions(bundle: &Bundle) -> BTreeMap<String, String> {
    airlock_core::project::load(bundle.source_files())
        .project
        .workflows
        .iter()
        .map(|w| {
            (
                w.workflow.name.value.clone(),
                airlock_core::canonical::version_id(&w.workflow).0,
            )
        })
        .collect()
}

struct Api {
    url: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: support::http_client()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None)
    }

    fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
    }

    fn deployments(&self, token: &str) -> Value {
        let (status, answer) = self.get("/api/v1/environments/staging/deployments", token);
        assert_eq!(status, 200, "{answer}");
        answer
    }
}

fn files_of(deploy: &Value) -> usize {
    deploy["deployments"].as_array().map_or(0, Vec::len)
}

/// Ids and clock readings the store makes: `req#N`, `<hash>`, `<time>`.
fn normalized(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| c.is_whitespace() || c == '`') {
        let trimmed = word.trim_end_matches(|c: char| c.is_whitespace() || c == '`');
        let tail = &word[trimmed.len()..];
        if trimmed.starts_with("req_") {
            out.push_str("req#");
        } else if trimmed.len() == 12 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<hash>");
        } else if trimmed.len() >= 10
            && trimmed.as_bytes()[4] == b'-'
            && trimmed[..4].chars().all(|c| c.is_ascii_digit())
        {
            out.push_str("<date>");
        } else if trimmed.len() == 5 && trimmed.as_bytes()[2] == b':' {
            out.push_str("<time>");
        } else {
            out.push_str(trimmed);
        }
        out.push_str(tail);
    }
    out
}

#[test]
fn a_server_with_no_checkout_deploys_tests_and_promotes_what_it_receives() {
    let temp = tempfile::tempdir().unwrap();
    let server_dir = temp.path().join("server");
    let client = temp.path().join("client");
    std::fs::create_dir_all(&server_dir).unwrap();
    std::fs::create_dir_all(&client).unwrap();
    new_project(&client);

    // The first tokens of a store that serves no project yet name their environments.
    let ci = support::create_token(&server_dir, "staging", "deployer", "ci");
    let dev = support::create_token(&server_dir, "production", "deployer", "dev");
    let cfo = support::create_token(&server_dir, "production", "approver", "cfo");
    let mallory = support::create_token(&server_dir, "production", "approver", "mallory");
    let watcher = support::create_token(&server_dir, "staging", "viewer", "watcher");
    let served = Served::start(&server_dir, &[]);
    assert!(
        served.logs.lock().unwrap().contains("nothing deployed yet"),
        "{}",
        served.logs.lock().unwrap()
    );
    let api = Api::new(&served.url);
    let deploy_path = "/api/v1/environments/staging/deploy";

    let honest = read_folder(&client).expect("the client's folder bundles");
    let expected = versions(&honest);

    // A tampered bundle: one file changed after hashing. The workflow's version no longer
    // matches the client's, nor the bundle its id: 409, nothing deployed.
    let tamper = |path: &str, text: &str| {
        let files = honest
            .files()
            .iter()
            .map(|f| {
                let body = if f.path == path {
                    text
                } else {
                    f.text.as_str()
                };
                (f.path.clone(), body.as_bytes().to_vec())
            })
            .collect();
        let mut wire = WireBundle::of(&Bundle::from_bytes(files).unwrap());
        wire.id = honest.id();
        wire
    };
    for (path, changed, says) in [
        (
            "workflows/greet.yaml",
            greet("pwned"),
            "do not hash to the bundle",
        ),
        (
            "tests/greet/hello.yaml",
            SCENARIO.replace("ada", "eve"),
            "do not hash to the bundle",
        ),
    ] {
        let (status, answer) = api.post(
            deploy_path,
            &ci,
            json!({ "versions": expected, "bundle": tamper(path, &changed) }),
        );
        assert_eq!(status, 409, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    // Honest bytes under the right id, but not the versions the client named: 409 too.
    let mut wrong = expected.clone();
    wrong.insert("greet".into(), "0".repeat(64));
    let (status, answer) = api.post(
        deploy_path,
        &ci,
        json!({ "versions": wrong, "bundle": WireBundle::of(&honest) }),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(files_of(&api.deployments(&ci)), 0, "nothing deployed");

    // Bad bundles, each refused with diagnostics naming the file (and line and column
    // where there is one); nothing deployed.
    let raw = |files: Vec<(&str, String)>| json!({ "bundle": { "id": "x", "files": files.into_iter().map(|(path, b64)| json!({ "path": path, "base64": b64 })).collect::<Vec<_>>() } });
    let spaces = |n: usize| "ICAg".repeat(n / 3);
    let cases = [
        (
            raw(vec![("../outside.yaml", "eDogMQ==".into())]),
            "../outside.yaml",
            "AL0025",
            0,
        ),
        (
            raw(vec![("/etc/passwd", "eDogMQ==".into())]),
            "/etc/passwd",
            "AL0025",
            0,
        ),
        // "a\nb" then a byte that is no UTF-8: line 2, column 2.
        (
            raw(vec![("workflows/greet.yaml", "YQpi/w==".into())]),
            "workflows/greet.yaml",
            "AL0025",
            2,
        ),
        (
            raw((0..8)
                .map(|i| {
                    (
                        [
                            "tests/greet/a.yaml",
                            "tests/greet/b.yaml",
                            "tests/greet/c.yaml",
                            "tests/greet/d.yaml",
                            "tests/greet/e.yaml",
                            "tests/greet/f.yaml",
                            "tests/greet/g.yaml",
                            "tests/greet/h.yaml",
                        ][i],
                        spaces(1_048_575),
                    )
                })
                .chain([("airlock.yaml", spaces(12))])
                .collect()),
            "",
            "AL0023",
            0,
        ),
    ];
    for (body, path, code, line) in cases {
        let (status, answer) = api.post(deploy_path, &ci, body);
        assert_eq!(status, 400, "{path}: {answer}");
        let problem = &answer["problems"][0];
        assert_eq!(problem["code"], code, "{answer}");
        if path.is_empty() {
            assert!(
                problem["message"].as_str().unwrap().contains("8 MiB"),
                "{answer}"
            );
        } else {
            assert_eq!(problem["path"], path, "{answer}");
            assert_eq!(problem["line"], line, "{answer}");
        }
    }
    // Invalid YAML: the server's diagnostics are `validate`'s, file, line and column.
    let broken_dir = temp.path().join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    new_project(&broken_dir);
    write(
        &broken_dir,
        "workflows/greet.yaml",
        "name: greet\nsteps: [\n  - id: x\n",
    );
    let local = airlock_with(&broken_dir, &["validate", "--json"], &[]);
    let broken = Bundle::from_bytes(
        [
            "airlock.yaml",
            "workflows/greet.yaml",
            "tests/greet/hello.yaml",
        ]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(broken_dir.join(p)).unwrap()))
        .collect(),
    )
    .unwrap();
    let (status, answer) = api.post(
        deploy_path,
        &ci,
        json!({ "bundle": WireBundle::of(&broken) }),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["problems"],
        stdout_json(&local)["errors"],
        "the same diagnostics as validate"
    );
    assert!(
        answer["problems"][0]["line"].as_u64().unwrap() > 0,
        "{answer}"
    );
    // A symbolic link in the folder is refused by the client before anything is sent.
    let linked = temp.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    new_project(&linked);
    std::os::unix::fs::symlink(
        linked.join("tests/greet/hello.yaml"),
        linked.join("tests/greet/again.yaml"),
    )
    .unwrap();
    ok(
        &airlock_with(&linked, &["validate"], &[]),
        "validate follows the link",
    );
    let out = airlock_with(
        &linked,
        &["--server", &served.url, "deploy", "--env", "staging"],
        &[("AIRLOCK_TOKEN", &ci)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("tests/greet/again.yaml` is a symbolic link"),
        "{}",
        shown(&out)
    );
    assert_eq!(files_of(&api.deployments(&ci)), 0, "nothing deployed");

    // The honest deploy, from the folder that exists only on the client.
    let out = airlock_with(
        &client,
        &["--server", &served.url, "deploy", "--env", "staging"],
        &[("AIRLOCK_TOKEN", &ci)],
    );
    ok(&out, "deploy --server");
    let printed = text(&out.stdout);
    assert!(printed.contains("+ greet"), "{printed}");
    assert!(printed.contains("tested by the server"), "{printed}");
    assert!(printed.contains("✓ greet"), "{printed}");
    assert!(
        !server_dir.join("airlock.yaml").exists(),
        "the server still has no checkout"
    );
    let greet_version = &expected["greet"];
    let (_, evidence) = api.get(
        &format!("/api/v1/workflows/greet/evidence?version={greet_version}"),
        &watcher,
    );
    let recorded = evidence["evidence"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "{evidence}");
    assert_eq!(recorded[0]["summary"]["runner"], "server", "{evidence}");
    assert_eq!(recorded[0]["passed"], true, "{evidence}");

    // A client cannot post evidence: no route takes it.
    for (method, path) in [
        (
            reqwest::Method::POST,
            "/api/v1/workflows/greet/evidence".to_owned(),
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/workflows/greet/evidence".to_owned(),
        ),
        (reqwest::Method::POST, "/api/v1/evidence".to_owned()),
        (
            reqwest::Method::POST,
            format!("/api/v1/workflows/greet/versions/{greet_version}/evidence"),
        ),
        (reqwest::Method::PUT, "/api/v1/evidence/run".to_owned()),
    ] {
        let (status, answer) = api.call(
            method.clone(),
            &path,
            &ci,
            Some(json!({ "workflow": "greet", "version": greet_version, "kind": "scenarios", "passed": true, "summary": {} })),
        );
        assert!(
            matches!(status, 404 | 405),
            "{method} {path}: {status} {answer}"
        );
    }
    let (_, document) = api.get("/openapi.json", &ci);
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/evidence/run") && paths.contains_key("/api/v1/inbox"));
    for (path, item) in paths {
        if path.contains("evidence") && path != "/api/v1/evidence/run" {
            assert!(
                item.get("post").is_none() && item.get("put").is_none(),
                "{path}: {item}"
            );
        }
    }

    // Restarted, the server serves the deployed bundle from its store.
    assert!(served.terminate());
    let served = Served::start(&server_dir, &[]);
    assert!(
        served
            .logs
            .lock()
            .unwrap()
            .contains("serving the project deployed last (1 workflows)"),
        "{}",
        served.logs.lock().unwrap()
    );
    let through = |token: &str, args: &[&str]| {
        let all = [&["--server", served.url.as_str()][..], args].concat();
        airlock_with(temp.path(), &all, &[("AIRLOCK_TOKEN", token)])
    };
    write(temp.path(), "input.json", r#"{ "name": "ada" }"#);
    let out = through(
        &ci,
        &["run", "greet", "--env", "staging", "--input", "input.json"],
    );
    ok(&out, "run --server");
    assert!(text(&out.stdout).contains("succeeded"), "{}", shown(&out));

    // `airlock test --server`: the server tests what staging runs and records it.
    let out = through(&ci, &["test"]);
    ok(&out, "test --server");
    assert!(
        text(&out.stdout).contains("the server tested what `staging` runs"),
        "{}",
        shown(&out)
    );
    assert!(text(&out.stdout).contains("✓ greet"), "{}", shown(&out));
    let api = Api::new(&served.url);
    let (_, evidence) = api.get("/api/v1/workflows/greet/evidence", &watcher);
    assert_eq!(
        evidence["evidence"].as_array().unwrap().len(),
        2,
        "{evidence}"
    );
    // A viewer may not make evidence.
    let out = through(&watcher, &["test"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));

    // The promotion's tests are met by the server's evidence: no `airlock test` ran on
    // the server's machine (there is no project there to run it on).
    let out = through(
        &dev,
        &[
            "promote",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--json",
        ],
    );
    ok(&out, "promote --server");
    let promotion = stdout_json(&out);
    assert_eq!(promotion["request"]["status"], "open", "{promotion}");
    let tests = promotion["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["requirement"] == "tests")
        .cloned()
        .unwrap();
    assert_eq!(tests["met"], true, "{tests}");
    let request = promotion["request"]["id"].as_str().unwrap().to_owned();

    // The inbox: cfo (a listed approver of production) sees it with its verdict; mallory
    // holds an approver's token but is not listed; dev opened it and may not approve it.
    let (status, inbox) = api.get("/api/v1/inbox", &cfo);
    assert_eq!(status, 200, "{inbox}");
    assert_eq!(inbox["environments"], json!(["production"]), "{inbox}");
    let ids: Vec<&str> = inbox["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [request.as_str()], "{inbox}");
    let checks = inbox["requests"][0]["verdict"]["checks"]
        .as_array()
        .unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["requirement"] == "approvals" && c["met"] == false),
        "{inbox}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["requirement"] == "tests" && c["met"] == true),
        "{inbox}"
    );
    for (token, who) in [(&mallory, "mallory"), (&dev, "dev"), (&ci, "ci")] {
        let (status, theirs) = api.get("/api/v1/inbox", token);
        assert_eq!(status, 200, "{theirs}");
        assert_eq!(theirs["approver"], who);
        assert_eq!(theirs["requests"], json!([]), "{who}: {theirs}");
    }
    // The CLI prints the same answer (`--json`) and a report a person reads.
    let out = through(&cfo, &["promotions", "--inbox", "--json"]);
    ok(&out, "promotions --inbox --json");
    let mut cli = stdout_json(&out);
    let mut api_inbox = inbox.clone();
    // Only the verdict's clock-dependent wording may differ between the two readings.
    for value in [&mut cli, &mut api_inbox] {
        value["requests"][0]["expires_at"] = Value::Null;
    }
    assert_eq!(cli, api_inbox, "API and CLI agree");
    let out = through(&cfo, &["promotions", "--inbox"]);
    ok(&out, "promotions --inbox");
    insta::assert_snapshot!("inbox_report", normalized(&text(&out.stdout)));
    let out = through(&mallory, &["promotions", "--inbox"]);
    ok(&out, "promotions --inbox (mallory)");
    assert!(
        text(&out.stdout).contains("`mallory` approves in no environment"),
        "{}",
        shown(&out)
    );

    // cfo approves: released, and the inbox is empty.
    let out = through(&cfo, &["approve", &request]);
    ok(&out, "approve --server");
    let (_, inbox) = api.get("/api/v1/inbox", &cfo);
    assert_eq!(inbox["requests"], json!([]), "{inbox}");
    let (_, deployed) = api.get("/api/v1/environments/production/deployments", &dev);
    assert_eq!(
        deployed["deployments"][0]["version"],
        greet_version.as_str(),
        "{deployed}"
    );
}
