//! The promotion path through `--server`: each command prints what it prints locally,
//! human and `--json`, with the token's name as who acts; and the server's refusals print
//! as clearly as local ones, never with the token.
//!
//! Two identical projects go through the same steps: one locally (`--as NAME`), the other
//! through `airlock serve` (tokens named NAME). Their outputs are compared byte for byte,
//! once the ids and clock readings each store generates are replaced by placeholders
//! (`req#0`, `<ms>`); read-only commands are compared on one project, local against
//! remote, byte for byte with nothing replaced.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::server::Twins;
use support::{airlock_with, airlock_with_stdin, json as stdout_json, ok, shown, text, write};

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
        &support::two_environment_manifest("remote-story"),
    );
    write(dir, "workflows/greet.yaml", &greet("hello"));
    write(dir, "tests/greet/hello.yaml", SCENARIO);
}

/// Ids a store generates (`req_…`, `rel_…`) become `req#N` in order of appearance, and the
/// clock readings of JSON answers `<ms>`: what two stores cannot share. Everything else
/// is kept byte for byte.
fn normalize(output: &str) -> String {
    let bytes = output.as_bytes();
    let mut seen: Vec<&str> = Vec::new();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if boundary && (rest.starts_with(b"req_") || rest.starts_with(b"rel_")) {
            let end = 4 + rest[4..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            if end > 4 {
                // ASCII from `i` to `i + end`: both are character boundaries.
                let id = &output[i..i + end];
                let n = seen.iter().position(|s| *s == id).unwrap_or_else(|| {
                    seen.push(id);
                    seen.len() - 1
                });
                out.extend_from_slice(format!("{}#{n}", &id[..3]).as_bytes());
                i += end;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    let ided = String::from_utf8(out).expect("only ASCII was replaced");
    ided.lines()
        // The evidence a release cites: the server's own run (issue 14) or `airlock test`'s.
        .filter(|line| !line.contains("\"runner\": \"server\""))
        .map(|line| {
            for key in [
                "\"at\": ",
                "\"created_at\": ",
                "\"decided_at\": ",
                "\"updated_at\": ",
                // Evidence ids: the server records its own at each deploy.
                "\"id\": ",
            ] {
                // The audit head a release records is its own store's chain.
                if let Some(at) = line.find("\"audit_head\": \"") {
                    return format!("{}\"audit_head\": \"<head>\",", &line[..at]);
                }
                if let Some(at) = line.find(key) {
                    let value = &line[at + key.len()..];
                    if value.starts_with(|c: char| c.is_ascii_digit()) {
                        let digits = value
                            .find(|c: char| !c.is_ascii_digit())
                            .unwrap_or(value.len());
                        return format!("{}{key}<ms>{}", &line[..at], &value[digits..]);
                    }
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same exit code and the same stdout (normalized when `ids` says the two sides'
/// stores generated their own ids).
fn same(local: &Output, remote: &Output, ids: bool, what: &str) {
    let (l, r) = (text(&local.stdout), text(&remote.stdout));
    let (l, r) = if ids {
        (normalize(&l), normalize(&r))
    } else {
        (l, r)
    };
    assert_eq!(
        local.status.code(),
        remote.status.code(),
        "{what}: exit codes differ\nlocal: {}\nremote: {}",
        shown(local),
        shown(remote)
    );
    assert!(
        !l.trim().is_empty(),
        "{what}: nothing printed\n{}",
        shown(local)
    );
    assert_eq!(
        l,
        r,
        "{what}: outputs differ\nlocal: {}\nremote: {}",
        shown(local),
        shown(remote)
    );
}

/// The first `req_…` id an output names.
fn request_of(out: &Output) -> String {
    let printed = text(&out.stdout);
    let at = printed
        .find("req_")
        .unwrap_or_else(|| panic!("no request in\n{}", shown(out)));
    printed[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

struct Sides {
    /// `local` is worked on with `--as NAME`, `remote` through the server with tokens.
    twins: Twins,
    dev: String,
    releaser: String,
    approver: String,
}

impl Sides {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// [`Sides::start`], with `prepare` run on each project before the server starts
    /// (it reads its manifest once, at start).
    fn start_with(prepare: impl Fn(&Path)) -> Self {
        let twins = Twins::start(|dir| {
            new_project(dir);
            prepare(dir);
        });
        let dev = support::create_token(&twins.remote, "staging", "deployer", "dev");
        let releaser = support::create_token(&twins.remote, "production", "deployer", "releaser");
        let approver =
            support::create_token(&twins.remote, "production", "approver", "prod-approver");
        Sides {
            twins,
            dev,
            releaser,
            approver,
        }
    }

    /// A command on the local project.
    fn here(&self, args: &[&str]) -> Output {
        airlock_with(&self.twins.local, args, &[])
    }

    /// A command on the served project, locally (same files, same store as the server).
    fn beside(&self, args: &[&str]) -> Output {
        airlock_with(&self.twins.remote, args, &[])
    }

    /// A command through the server, with `token`, from a folder with no project: nothing
    /// local is read.
    fn through(&self, token: &str, args: &[&str]) -> Output {
        self.twins.through_from(&self.twins.elsewhere, token, args)
    }

    /// `deploy` through the server, from the served project's folder: the versions it
    /// sends are hashed from the working copy there.
    fn deploying(&self, token: &str, args: &[&str]) -> Output {
        self.twins.through_from(&self.twins.remote, token, args)
    }

    /// Both projects' working copy of `greet`, tested.
    fn edit(&self, greeting: &str, tested: bool) {
        for dir in [&self.twins.local, &self.twins.remote] {
            write(dir, "workflows/greet.yaml", &greet(greeting));
            if tested {
                ok(&airlock_with(dir, &["test"], &[]), "test");
            }
        }
    }
}

#[test]
fn the_promotion_path_prints_the_same_through_a_server() {
    let s = Sides::start();
    for dir in [&s.twins.local, &s.twins.remote] {
        ok(&airlock_with(dir, &["test"], &[]), "test v1");
    }

    // deploy: no `--as` through the server, the token (`dev`) deploys.
    let l = s.here(&["deploy", "--env", "staging", "--as", "dev"]);
    let r = s.deploying(&s.dev, &["deploy", "--env", "staging"]);
    ok(&r, "remote deploy");
    same_deploy(&l, &r, "deploy");
    assert!(text(&r.stdout).contains("+ greet"), "{}", shown(&r));
    same_deploy(
        &s.here(&["deploy", "--env", "staging", "--as", "dev", "--json"]),
        &s.deploying(&s.dev, &["deploy", "--env", "staging", "--json"]),
        "deploy --json",
    );

    // promote, then approve with the approver's token and no `--as`.
    let l = s.here(&["promote", "greet", "--as", "releaser"]);
    let r = s.through(&s.releaser, &["promote", "greet"]);
    ok(&r, "remote promote");
    same(&l, &r, true, "promote");
    assert!(text(&r.stdout).contains("· by releaser"), "{}", shown(&r));
    let (lq, rq) = (request_of(&l), request_of(&r));
    let l = s.here(&["approve", &lq, "--as", "prod-approver"]);
    let r = s.through(&s.approver, &["approve", &rq]);
    ok(&r, "remote approve");
    same(&l, &r, true, "approve");
    assert!(
        text(&r.stdout).starts_with(&format!("approved {rq} by prod-approver\n")),
        "the token's name is the approver: {}",
        shown(&r)
    );

    // v2, as JSON all the way.
    s.edit("hello again", true);
    same_deploy(
        &s.here(&["deploy", "--env", "staging", "--as", "dev", "--json"]),
        &s.deploying(&s.dev, &["deploy", "--env", "staging", "--json"]),
        "deploy --json (changed)",
    );
    let l = s.here(&["promote", "greet", "--as", "releaser", "--json"]);
    let r = s.through(&s.releaser, &["promote", "greet", "--json"]);
    same(&l, &r, true, "promote --json");
    let (lq, rq) = (
        stdout_json(&l)["request"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        stdout_json(&r)["request"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let r = s.through(&s.approver, &["approve", &rq, "--json"]);
    same(
        &s.here(&["approve", &lq, "--as", "prod-approver", "--json"]),
        &r,
        true,
        "approve --json",
    );
    assert!(stdout_json(&r)["release"]["id"].is_string());

    // reject, human then JSON, each of a version production does not run yet.
    for json in [false, true] {
        let flag: &[&str] = if json { &["--json"] } else { &[] };
        s.edit(if json { "hey" } else { "howdy" }, true);
        same_deploy(
            &s.here(&["deploy", "--env", "staging", "--as", "dev"]),
            &s.deploying(&s.dev, &["deploy", "--env", "staging"]),
            "deploy before reject",
        );
        let l = s.here(&[&["promote", "greet", "--as", "releaser"][..], flag].concat());
        let r = s.through(&s.releaser, &[&["promote", "greet"][..], flag].concat());
        same(&l, &r, true, "promote before reject");
        let (lq, rq) = (request_of(&l), request_of(&r));
        let reason = ["--reason", "not this week"];
        same(
            &s.here(&[&["reject", &lq, "--as", "prod-approver"][..], &reason, flag].concat()),
            &s.through(&s.approver, &[&["reject", &rq][..], &reason, flag].concat()),
            true,
            "reject",
        );
    }

    // rollback, human then JSON (back to v1, then forward again to v2).
    let args = ["rollback", "greet", "--env", "production"];
    same(
        &s.here(&[&args[..], &["--as", "releaser"]].concat()),
        &s.through(&s.releaser, &args),
        true,
        "rollback",
    );
    same(
        &s.here(&[&args[..], &["--as", "releaser", "--json"]].concat()),
        &s.through(&s.releaser, &[&args[..], &["--json"]].concat()),
        true,
        "rollback --json",
    );

    // v3 fails its scenario: tested here by `airlock test`, on the server by the deploy
    // itself (the files it received); the gate refuses to open its request, exit 1 on
    // both sides.
    s.edit("hi", false);
    for dir in [&s.twins.local, &s.twins.remote] {
        write(
            dir,
            "tests/greet/hello.yaml",
            &SCENARIO.replace("status: succeeded", "status: failed"),
        );
    }
    assert_eq!(s.here(&["test"]).status.code(), Some(1));
    let r = s.deploying(&s.dev, &["deploy", "--env", "staging"]);
    same_deploy(
        &s.here(&["deploy", "--env", "staging", "--as", "dev"]),
        &r,
        "deploy v3",
    );
    assert!(text(&r.stdout).contains("✗ greet"), "{}", shown(&r));
    for flag in [None, Some("--json")] {
        let extra: Vec<&str> = flag.into_iter().collect();
        let l = s.here(&[&["promote", "greet", "--as", "releaser"][..], &extra].concat());
        let r = s.through(&s.releaser, &[&["promote", "greet"][..], &extra].concat());
        assert_eq!(r.status.code(), Some(1), "{}", shown(&r));
        same(&l, &r, true, "promote refused by the gate");
    }

    // What only reads: the served project locally and through its server, unaltered.
    for args in [
        &["releases", "greet", "--env", "production"][..],
        &["readiness"],
        &["readiness", "greet"],
        &["diff", "staging", "production"],
        &["validate"],
    ] {
        for json in [false, true] {
            let args = [args, if json { &["--json"][..] } else { &[] }].concat();
            same(
                &s.beside(&args),
                &s.through(&s.approver, &args),
                false,
                &args.join(" "),
            );
        }
    }

    // A broken working copy on the server: the same JSON problems, and through the
    // server each problem's heading as locally (the lines are drawn from local files only).
    write(
        &s.twins.remote,
        "workflows/greet.yaml",
        "name: greet\nsteps:\n  - id: hello\n    mapp: {}\n",
    );
    let l = s.beside(&["validate", "--json"]);
    let r = s.through(&s.approver, &["validate", "--json"]);
    assert_eq!(r.status.code(), Some(2), "{}", shown(&r));
    same(&l, &r, false, "validate --json (broken)");
    let l = s.beside(&["validate"]);
    let r = s.through(&s.approver, &["validate"]);
    assert_eq!(l.status.code(), r.status.code());
    let heading = "workflows/greet.yaml:4:5: unknown key `mapp`";
    for out in [&l, &r] {
        assert!(text(&out.stderr).contains(heading), "{}", shown(out));
    }
    assert_eq!(
        text(&l.stderr).lines().last(),
        text(&r.stderr).lines().last(),
        "the same count of problems"
    );
}

#[test]
fn the_token_decides_who_acts_and_refusals_print_clearly() {
    let s = Sides::start();
    ok(&s.beside(&["test"]), "test");
    let refused = |out: &Output, says: &str, token: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", shown(out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "`{says}` missing:\n{}", shown(out));
        assert!(!stderr.contains(token), "the token leaked:\n{}", shown(out));
        assert!(
            !text(&out.stdout).contains(token),
            "the token leaked:\n{}",
            shown(out)
        );
    };

    // A staging deployer reaches nothing in production: not deploy, not promote.
    let out = s.deploying(&s.dev, &["deploy", "--env", "production"]);
    refused(
        &out,
        "this token is scoped to staging, not production",
        &s.dev,
    );
    assert!(
        text(&out.stderr).contains(&format!("({} answered 403 Forbidden)", s.twins.served.url)),
        "{}",
        shown(&out)
    );
    let out = s.through(
        &s.dev,
        &[
            "promote",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
        ],
    );
    refused(
        &out,
        "this token is scoped to staging, not production",
        &s.dev,
    );
    // A production deployer is refused by the path's rule, as locally: same reason, same hint.
    let local = s.beside(&["deploy", "--env", "production", "--as", "releaser"]);
    let out = s.deploying(&s.releaser, &["deploy", "--env", "production"]);
    refused(&out, "`production` is protected", &s.releaser);
    let (local_err, remote_err) = (text(&local.stderr), text(&out.stderr));
    let local_lines: Vec<&str> = local_err.lines().collect();
    let remote_lines: Vec<&str> = remote_err.lines().collect();
    assert_eq!(local_lines.len(), 2, "{local_err}");
    assert_eq!(
        remote_lines,
        [
            format!(
                "{} ({} answered 403 Forbidden)",
                local_lines[0], s.twins.served.url
            )
            .as_str(),
            local_lines[1]
        ],
        "the local refusal, then who answered"
    );

    // The approver is the token: `--as` may repeat its name, never change it.
    ok(
        &s.deploying(&s.dev, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy",
    );
    let opened = s.through(&s.releaser, &["promote", "greet", "--json"]);
    ok(&opened, "promote");
    let request = stdout_json(&opened)["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = s.through(&s.approver, &["approve", &request, "--as", "cfo"]);
    refused(&out, "it is `prod-approver`, not `cfo`", &s.approver);
    // On the served store's machine, a typed name proves nothing once tokens exist: a
    // local approval (or any change to protected production) is refused, nothing written.
    for args in [
        &["approve", &request, "--as", "cfo"][..],
        &["approve", &request, "--as", "prod-approver"],
        &[
            "rollback",
            "greet",
            "--env",
            "production",
            "--as",
            "releaser",
        ],
        &[
            "promote",
            "--config",
            "--to",
            "production",
            "--as",
            "releaser",
        ],
    ] {
        let local = s.beside(args);
        assert_eq!(local.status.code(), Some(2), "{}", shown(&local));
        assert!(
            text(&local.stderr).contains("this store is served with API tokens")
                && text(&local.stderr).contains("--server"),
            "{}",
            shown(&local)
        );
    }
    let approvals = stdout_json(&s.beside(&["promotions", "--json"]));
    assert!(
        approvals
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request"]["id"] == request.as_str())
            .is_some_and(|r| r["approvals"].as_array().unwrap().is_empty()),
        "{approvals}"
    );
    let out = s.through(&s.releaser, &["approve", &request]);
    refused(&out, "may not", &s.releaser);
    let out = s.through(&s.approver, &["approve", &request, "--as", "prod-approver"]);
    ok(&out, "approve as the token's own name");
    // 409: decided already; 404: no such request.
    let out = s.through(&s.approver, &["approve", &request]);
    refused(&out, &format!("request {request} is released"), &s.approver);
    assert!(
        text(&out.stderr).contains("answered 409 Conflict"),
        "{}",
        shown(&out)
    );
    let out = s.through(&s.approver, &["approve", "req_missing"]);
    refused(&out, "no promotion request `req_missing`", &s.approver);
    assert!(
        text(&out.stderr).contains("answered 404 Not Found"),
        "{}",
        shown(&out)
    );
    // A name missing from the environment's approvers: the one rule, its hint and its audit.
    let outsider = support::create_token(&s.twins.remote, "production", "approver", "someone-else");
    let out = s.through(&outsider, &["reject", &request, "--reason", "no"]);
    refused(
        &out,
        "`someone-else` is not an approver in environment `production`",
        &outsider,
    );
    assert!(
        text(&out.stderr).contains("help: approvers of `production`: cfo, prod-approver"),
        "{}",
        shown(&out)
    );
    let audit = stdout_json(&s.beside(&["audit", "--json"])).to_string();
    assert!(audit.contains("reject.refused"), "{audit}");

    // The server deploys only the versions hashed here: a working copy that differs from
    // the server's is refused, and staging keeps running what it ran.
    let deployments = || {
        support::http_client()
            .build()
            .expect("an HTTP client")
            .get(format!(
                "{}/api/v1/environments/staging/deployments",
                s.twins.served.url
            ))
            .bearer_auth(&s.dev)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    };
    let before = deployments();
    write(
        &s.twins.local,
        "workflows/greet.yaml",
        &greet("something else"),
    );
    let out = s
        .twins
        .through_from(&s.twins.local, &s.dev, &["deploy", "--env", "staging"]);
    // The deploy carries its files (issue 14): the client's version is what is deployed,
    // whatever the server's own folder holds.
    ok(&out, "deploy of the client's files");
    assert_ne!(before, deployments(), "the client's version was deployed");

    // An unknown token, a server that does not answer (its URL's password masked), and a
    // command the server cannot do: each a clear refusal, exit 2.
    let out = airlock_with(
        &s.twins.elsewhere,
        &["--server", &s.twins.served.url, "releases", "greet"],
        &[("AIRLOCK_TOKEN", "alk_not-a-token")],
    );
    refused(&out, "unknown or revoked API token", "alk_not-a-token");
    assert!(
        text(&out.stderr).contains("help: AIRLOCK_TOKEN"),
        "{}",
        shown(&out)
    );
    let out = airlock_with(
        &s.twins.elsewhere,
        &[
            "--server",
            "http://ops:hunter2@127.0.0.1:9",
            "releases",
            "greet",
        ],
        &[("AIRLOCK_TOKEN", &s.approver)],
    );
    refused(&out, "127.0.0.1:9", &s.approver);
    assert!(!text(&out.stderr).contains("hunter2"), "{}", shown(&out));
}

/// A deploy here and the same through the server: the same changes, human and JSON; the
/// server's answer adds the bundle it kept and the suites it ran (which a local deploy,
/// whose evidence `airlock test` records, does not).
fn same_deploy(local: &Output, remote: &Output, what: &str) {
    let (l, r) = (text(&local.stdout), text(&remote.stdout));
    assert_eq!(
        local.status.code(),
        remote.status.code(),
        "{what}: {}",
        shown(remote)
    );
    if l.trim_start().starts_with('{') {
        let mut r: Value = serde_json::from_str(&r).expect("JSON");
        assert!(r["bundle"].is_string(), "{what}: {r}");
        let object = r.as_object_mut().unwrap();
        object.remove("bundle");
        object.remove("evidence");
        assert_eq!(serde_json::from_str::<Value>(&l).unwrap(), r, "{what}");
    } else {
        let (changes, added) = r.split_once("files: bundle ").expect("the bundle is said");
        assert_eq!(l, changes, "{what}");
        assert!(added.contains("tested by the server"), "{what}: {r}");
    }
}

/// The values the next test stores: neither may ever be printed or answered.
const CRM_VALUE: &str = "crm-value-5e1d9a7c3b";
const CHAT_VALUE: &str = "chat-value-8b2f6d4e0a";

/// `secrets list` and `audit` through the server print what they print beside it for the
/// token's environment (`--env`), byte for byte, human and JSON. Both sides read the one
/// store, so there are no ids or clock readings to replace.
#[test]
fn secrets_and_the_audit_log_print_the_same_through_a_server() {
    let s = Sides::start_with(|dir| {
        support::replace_in(
            dir,
            "airlock.yaml",
            "  staging:\n",
            "  staging:\n    secrets: [CRM_TOKEN, CHAT_HOOK, MAIL_PASSWORD]\n",
        );
        support::replace_in(
            dir,
            "airlock.yaml",
            "  production:\n",
            "  production:\n    secrets: [CRM_TOKEN]\n",
        );
        // Set before the server starts: this also makes staging's key, which the server
        // loads at start to seal what is set through it.
        let out = airlock_with_stdin(
            dir,
            &["secrets", "set", "CRM_TOKEN", "--env", "staging"],
            &format!("{CRM_VALUE}\n"),
            &[],
        );
        ok(&out, "secrets set");
    });
    let admin = support::create_token(&s.twins.remote, "staging", "admin", "ops-admin");
    let out = airlock_with_stdin(
        &s.twins.elsewhere,
        &[
            "--server",
            &s.twins.served.url,
            "secrets",
            "set",
            "CHAT_HOOK",
            "--env",
            "staging",
        ],
        CHAT_VALUE,
        &[("AIRLOCK_TOKEN", &admin)],
    );
    ok(&out, "remote secrets set");
    // Events of staging (and of no environment: the deploy's policy change).
    ok(
        &s.deploying(&s.dev, &["deploy", "--env", "staging"]),
        "deploy",
    );

    // Everything printed or answered, searched for the values at the end.
    let mut printed = String::new();
    let both = |out: &Output| format!("{}{}", text(&out.stdout), text(&out.stderr));
    for (token, environment) in [(&s.dev, "staging"), (&s.releaser, "production")] {
        for command in [&["secrets", "list"][..], &["audit"]] {
            for json in [false, true] {
                let flag: &[&str] = if json { &["--json"] } else { &[] };
                let what = format!("{} in {environment} (json: {json})", command.join(" "));
                let here = s.beside(&[command, &["--env", environment], flag].concat());
                ok(&here, &what);
                // The token's environment, implied.
                let there = s.through(token, &[command, flag].concat());
                ok(&there, &what);
                same(&here, &there, false, &what);
                if !json {
                    assert!(
                        text(&there.stderr).contains("note: the "),
                        "one environment's, and said so: {}",
                        shown(&there)
                    );
                }
                // Or named.
                let named = s.through(token, &[command, &["--env", environment], flag].concat());
                same(&here, &named, false, &what);
                for out in [&here, &there, &named] {
                    printed.push_str(&both(out));
                }
            }
        }
    }

    // The rows: every declared secret, set or not, and nothing else.
    let rows = stdout_json(&s.through(&s.dev, &["secrets", "list", "--json"]));
    let rows = rows.as_array().expect("rows");
    let summary: Vec<(&str, &str, bool, bool)> = rows
        .iter()
        .map(|r| {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["environment", "name", "set", "updated_at"], "{r}");
            (
                r["environment"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["set"] == true,
                r["updated_at"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("staging", "CRM_TOKEN", true, true),
            ("staging", "CHAT_HOOK", true, true),
            ("staging", "MAIL_PASSWORD", false, false),
        ]
    );
    // The API answers the CLI's own rows.
    let client = support::http_client().build().expect("an HTTP client");
    let get = |path: &str, token: &str| {
        let answer = client
            .get(format!("{}{path}", s.twins.served.url))
            .bearer_auth(token)
            .send()
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.text().unwrap()
    };
    let answered = get("/api/v1/environments/staging/secrets", &s.dev);
    let local = stdout_json(&s.beside(&["secrets", "list", "--env", "staging", "--json"]));
    assert_eq!(
        serde_json::from_str::<Value>(&answered).unwrap()["secrets"],
        local
    );
    printed.push_str(&answered);
    printed.push_str(&get("/api/v1/environments/staging/audit", &s.dev));

    // Through the server, one environment's events; here, every environment's.
    let events = stdout_json(&s.through(&s.dev, &["audit", "--json"]));
    let events = events.as_array().expect("events");
    assert!(
        events.iter().all(|e| e["environment"] == "staging"),
        "{events:?}"
    );
    for action in ["token.create", "secret.set", "deploy"] {
        assert!(
            events.iter().any(|e| e["action"] == action),
            "no {action} in {events:?}"
        );
    }
    let everything = s.beside(&["audit", "--json"]);
    assert!(text(&everything.stdout).contains("policy.change"));
    printed.push_str(&both(&everything));
    printed.push_str(&both(&s.beside(&["audit"])));
    // A token reads its own environment only.
    let out = s.through(&s.dev, &["audit", "--env", "production"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("this token is scoped to staging, not production"),
        "{}",
        shown(&out)
    );

    for value in [CRM_VALUE, CHAT_VALUE] {
        assert!(!printed.contains(value), "a secret's value was shown");
    }
}

/// Commands that act on the local store or process, with no API, refuse a server (exit
/// 2, naming themselves, with a hint) before reading or writing anything; commands that
/// touch no store ignore it.
#[test]
fn commands_without_an_api_refuse_a_server_and_change_nothing() {
    let s = Sides::start();
    let admin = support::create_token(&s.twins.remote, "staging", "admin", "ops-admin");
    // What the served store holds, as the CLI shows it beside the server.
    let state = || -> Vec<String> {
        let views: [&[&str]; 3] = [
            &["audit", "--json"],
            &["token", "list", "--json"],
            &["runs", "--json"],
        ];
        views
            .iter()
            .map(|args| {
                let out = s.beside(args);
                ok(&out, &args.join(" "));
                text(&out.stdout)
            })
            .collect()
    };
    let before = state();
    let refused = |out: &Output, command: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", shown(out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with(&format!("error: `{command}` does not work with --server: ")),
            "{}",
            shown(out)
        );
        assert_eq!(
            stderr.lines().count(),
            2,
            "a reason and a hint: {}",
            shown(out)
        );
        assert!(stderr.contains("\nhelp: "), "{}", shown(out));
        assert!(text(&out.stdout).is_empty(), "{}", shown(out));
        assert!(!stderr.contains(&admin), "the token leaked: {}", shown(out));
    };
    let cases: [(&[&str], &str); 6] = [
        (&["resume"], "resume"),
        (
            &[
                "token", "create", "--env", "staging", "--role", "admin", "--name", "sneaky",
            ],
            "token create",
        ),
        (&["token", "list"], "token list"),
        (&["audit", "verify"], "audit verify"),
        (&["worker"], "worker"),
        (&["migrate"], "migrate"),
    ];
    for (args, command) in cases {
        // From the served project's folder: its store is right here, and stays untouched.
        refused(
            &s.twins.through_from(&s.twins.remote, &admin, args),
            command,
        );
    }
    // AIRLOCK_SERVER is --server too; the refusal comes before any need of a token.
    let out = airlock_with(
        &s.twins.remote,
        &[
            "token", "create", "--env", "staging", "--role", "admin", "--name", "sneaky",
        ],
        &[("AIRLOCK_SERVER", &s.twins.served.url)],
    );
    refused(&out, "token create");
    assert!(
        text(&out.stderr).contains("where the store is"),
        "{}",
        shown(&out)
    );
    let out = s.through(&admin, &["resume"]);
    refused(&out, "resume");
    assert!(
        text(&out.stderr).contains("where the server's store is"),
        "{}",
        shown(&out)
    );
    assert_eq!(state(), before, "a refused command changed the store");

    // Commands that touch no store print the same with AIRLOCK_SERVER set as without.
    for args in [&["hash"][..], &["explain", "AL0001"], &["hash", "--json"]] {
        let plain = airlock_with(&s.twins.remote, args, &[]);
        let served = airlock_with(
            &s.twins.remote,
            args,
            &[("AIRLOCK_SERVER", &s.twins.served.url)],
        );
        ok(&served, &args.join(" "));
        assert_eq!(text(&plain.stdout), text(&served.stdout), "{args:?}");
    }
}
