//! `airlock run --server`: the server runs what it has deployed and the command follows
//! the run, printing what a local run prints (its journal line by line, the outcome, the
//! `--json` answer) and exiting with the same code.
//!
//! Two identical projects with the same version deployed in staging: one run here, the
//! other through `airlock serve` with a runner's token, from a folder with no project.
//! Outputs are compared byte for byte once what two stores and two clocks cannot share is
//! replaced: run ids (`run#N`, in order of appearance), clock readings (`<time>`,
//! `<ms>`) and durations (`<ms>`; a journal line shows a step's duration only when it
//! is above 0 ms, so it is dropped there).

mod support;

use serde_json::Value;
use std::process::Output;
use support::server::Twins;
use support::{airlock_with, json as stdout_json, ok, shown, text, write};

const MANIFEST: &str = r#"project: remote-run
connectors:
  crm: { kind: http, description: "Customer records" }
  ledger: { kind: http, description: "Nothing listens there" }
environments:
  staging:
    approvers: [lead]
    egress: [127.0.0.1]
    bindings:
      crm:
        mode: record
        responses:
          request: { status: 201, body: { id: "crm-1" } }
      ledger: { base_url: "http://127.0.0.1:9", timeout: 1s }
  production:
    protected: true
    approvers: [lead]
    egress: [127.0.0.1]
    bindings:
      crm: { base_url: "http://127.0.0.1:9", timeout: 1s }
      ledger: { base_url: "http://127.0.0.1:9", timeout: 1s }
differences:
  - { path: bindings.crm, reason: "staging records CRM calls" }
  - { path: protected, reason: "production changes only by promotion" }
"#;

/// A pure step, a branch, a delay (the run sleeps and is taken up again), a recorded call
/// (its idempotency key) and, for a small order, a step that fails the run.
const ORDER: &str = r#"name: order
trigger: { webhook: { path: order } }
steps:
  - id: normalize
    map: { total: "{{ trigger.body.amount | float }}" }
  - id: big
    if: "{{ steps.normalize.output.total > 100 }}"
    then:
      - id: pause
        delay: 300ms
      - id: sync
        call: crm.request
        with: { method: POST, path: /orders, json: { total: "{{ steps.normalize.output.total }}" } }
  - id: refuse_small
    if: "{{ steps.normalize.output.total < 1 }}"
    then:
      - id: too_small
        fail: "order total {{ steps.normalize.output.total }} is too small"
"#;

/// A call nothing answers: retried once, then dead-lettered.
const POST: &str = r#"name: post
trigger: { webhook: { path: post } }
steps:
  - id: book
    call: ledger.request
    with: { method: POST, path: /book }
    retry: { attempts: 2, backoff: 100ms }
"#;

/// Stops at an approval.
const REVIEW: &str = r#"name: review
trigger: { webhook: { path: review } }
steps:
  - id: ask
    approval: { message: "Ship it?" }
  - id: done
    map: { ok: true }
"#;

struct Sides {
    /// `local` runs here, `remote` through the server; `elsewhere` holds the input files.
    twins: Twins,
    /// A runner of staging, named `ci`.
    runner: String,
    /// A runner of production.
    production_runner: String,
}

impl Sides {
    fn start() -> Self {
        let twins = Twins::start(|dir| {
            write(dir, "airlock.yaml", MANIFEST);
            write(dir, "workflows/order.yaml", ORDER);
            write(dir, "workflows/post.yaml", POST);
            write(dir, "workflows/review.yaml", REVIEW);
            // Both sides run the same deployed versions (a server runs nothing else).
            ok(
                &airlock_with(dir, &["deploy", "--env", "staging"], &[]),
                "deploy",
            );
        });
        write(&twins.elsewhere, "big.json", r#"{ "amount": 250 }"#);
        write(&twins.elsewhere, "small.json", r#"{ "amount": 0 }"#);
        let runner = support::create_token(&twins.remote, "staging", "runner", "ci");
        let production_runner =
            support::create_token(&twins.remote, "production", "runner", "prod-ci");
        Sides {
            twins,
            runner,
            production_runner,
        }
    }

    /// `run ARGS` here, with the input files named as from `elsewhere`.
    fn here(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| self.input(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        airlock_with(&self.twins.local, &[&["run"][..], &args].concat(), &[])
    }

    /// `run ARGS` through the server with `token`, from the folder with no project.
    fn through(&self, token: &str, args: &[&str]) -> Output {
        let twins = &self.twins;
        twins.through_from(&twins.elsewhere, token, &[&["run"][..], args].concat())
    }

    /// An input file's name as the local side reaches it.
    fn input(&self, arg: &str) -> String {
        if arg.ends_with(".json") {
            self.twins.elsewhere.join(arg).display().to_string()
        } else {
            arg.to_owned()
        }
    }
}

/// Replaces, in `text`, run ids (`run_…` → `run#N` by order of first appearance in
/// `seen`), RFC 3339 times (`<time>`) and millisecond counts (`123ms` → `<ms>`).
fn normalize_text(text: &str, seen: &mut Vec<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let rest = &text[i..];
        if boundary && rest.starts_with("run_") {
            let end = 4 + rest[4..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            if end > 4 {
                let id = &rest[..end];
                let n = seen.iter().position(|s| s == id).unwrap_or_else(|| {
                    seen.push(id.to_owned());
                    seen.len() - 1
                });
                out.push_str(&format!("run#{n}"));
                i += end;
                continue;
            }
        }
        if boundary && is_time(rest) {
            out.push_str("<time>");
            i += "2026-11-27T05:21:01.123Z".len();
            continue;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if boundary
            && digits > 0
            && rest[digits..].starts_with("ms")
            && !rest[digits + 2..].starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            out.push_str("<ms>");
            i += digits + 2;
            continue;
        }
        let c = rest.chars().next().expect("not at the end");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Whether `text` starts with a time as the CLI and the API write one
/// (`2026-11-27T05:21:01.123Z`).
fn is_time(text: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() >= shape.len()
        && shape.bytes().zip(text.bytes()).all(|(s, t)| match s {
            b'd' => t.is_ascii_digit(),
            other => other == t,
        })
}

/// Human output, normalized; a journal line's duration (shown only when above 0 ms) and
/// its padding dropped.
fn normalize_lines(text: &str) -> String {
    let mut seen = Vec::new();
    normalize_text(text, &mut seen)
        .lines()
        .map(|line| {
            let line = if line.starts_with("  ") {
                line.strip_suffix(" <ms>").unwrap_or(line)
            } else {
                line
            };
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// A `--json` answer, normalized: ids and times in strings, and every clock reading or
/// duration in milliseconds (`…_at`, a delay's `until` and `waited_ms`).
fn normalize_json(value: &mut Value, seen: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let clock = key.ends_with("_at") || key == "until" || key == "waited_ms";
                if clock && field.is_number() {
                    *field = Value::from("<ms>");
                } else {
                    normalize_json(field, seen);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalize_json(v, seen)),
        Value::String(s) => *s = normalize_text(s, seen),
        _ => {}
    }
}

/// The same exit code and the same stdout, normalized.
fn same(local: &Output, remote: &Output, what: &str) {
    assert_eq!(
        local.status.code(),
        remote.status.code(),
        "{what}: exit codes differ\nlocal: {}\nremote: {}",
        shown(local),
        shown(remote)
    );
    let (l, r) = (
        normalize_lines(&text(&local.stdout)),
        normalize_lines(&text(&remote.stdout)),
    );
    assert!(!l.trim().is_empty(), "{what}: nothing printed");
    assert_eq!(
        l,
        r,
        "{what}: outputs differ\nlocal: {}\nremote: {}",
        shown(local),
        shown(remote)
    );
}

#[test]
fn a_run_through_a_server_prints_what_a_local_run_prints() {
    let s = Sides::start();
    let cases: [(&[&str], Option<i32>, &str); 4] = [
        (
            &["order", "--env", "staging", "--input", "big.json"],
            Some(0),
            "succeeded in <ms>",
        ),
        (
            &["order", "--env", "staging", "--input", "small.json"],
            Some(1),
            "error: step `too_small`: order total 0.0 is too small",
        ),
        (
            &["post", "--env", "staging"],
            Some(1),
            "dead-lettered · retry with `airlock runs retry run#0`",
        ),
        (
            &["review", "--env", "staging"],
            Some(0),
            "waiting for approval · continue with `airlock approve-step run#0 STEP --as NAME`",
        ),
    ];
    for (args, code, last) in cases {
        let what = args.join(" ");
        let local = s.here(args);
        let remote = s.through(&s.runner, args);
        assert_eq!(remote.status.code(), code, "{what}: {}", shown(&remote));
        same(&local, &remote, &what);
        let printed = normalize_lines(&text(&remote.stdout));
        assert_eq!(printed.lines().last(), Some(last), "{what}: {printed}");
        assert!(
            printed.starts_with("run run#0 · "),
            "{what}: the run's line first: {printed}"
        );
    }
    // The journal as it went, delay and call included.
    let remote = s.through(
        &s.runner,
        &["order", "--env", "staging", "--input", "big.json"],
    );
    let steps: Vec<String> = normalize_lines(&text(&remote.stdout))
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        steps,
        [
            "normalize succeeded",
            "big succeeded",
            "pause waiting",
            "pause succeeded",
            "sync started",
            "sync succeeded",
            "refuse_small succeeded",
        ],
        "{}",
        shown(&remote)
    );

    // `--json`: the run and its whole journal, as locally; the server's run also says who
    // started it (the token's name), which a local run has no one to name.
    for (args, code) in [
        (&["order", "--env", "staging", "--input", "big.json"][..], 0),
        (&["order", "--env", "staging", "--input", "small.json"], 1),
    ] {
        let args = [args, &["--json"]].concat();
        let local = s.here(&args);
        let remote = s.through(&s.runner, &args);
        assert_eq!(local.status.code(), Some(code), "{}", shown(&local));
        assert_eq!(remote.status.code(), Some(code), "{}", shown(&remote));
        assert!(text(&remote.stderr).is_empty(), "{}", shown(&remote));
        let mut l = stdout_json(&local);
        let mut r = stdout_json(&remote);
        let by = r["run"]["trigger"]
            .as_object_mut()
            .and_then(|t| t.remove("by"));
        assert_eq!(by, Some(Value::from("ci")), "{}", shown(&remote));
        normalize_json(&mut l, &mut Vec::new());
        normalize_json(&mut r, &mut Vec::new());
        assert_eq!(l, r, "{}: --json differs", args.join(" "));
        assert!(r["journal"].as_array().is_some_and(|j| !j.is_empty()));
    }
}

#[test]
fn a_run_through_a_server_is_refused_as_clearly_as_a_local_one_and_creates_nothing() {
    let s = Sides::start();
    let runs = || {
        let out = airlock_with(&s.twins.remote, &["runs", "--json"], &[]);
        ok(&out, "runs");
        stdout_json(&out)
    };
    let before = runs();

    // A runner of staging runs nothing in production.
    let out = s.through(&s.runner, &["order", "--env", "production"]);
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: this token is scoped to staging, not production ({} answered 403 Forbidden)\n",
            s.twins.served.url
        )),
        "{}",
        shown(&out)
    );
    assert!(text(&out.stdout).is_empty(), "{}", shown(&out));
    assert!(!stderr.contains(&s.runner), "the token leaked");

    // Nothing released in production: the local refusal, word for word, then who answered.
    let local = s.here(&["order", "--env", "production"]);
    let out = s.through(&s.production_runner, &["order", "--env", "production"]);
    assert_eq!(local.status.code(), Some(2), "{}", shown(&local));
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    let local_lines: Vec<String> = text(&local.stderr).lines().map(str::to_owned).collect();
    assert_eq!(local_lines.len(), 2, "{}", shown(&local));
    assert!(
        local_lines[0].contains("`production` is protected and runs only released versions"),
        "{}",
        shown(&local)
    );
    assert_eq!(
        text(&out.stderr).lines().collect::<Vec<_>>(),
        [
            format!(
                "{} ({} answered 404 Not Found)",
                local_lines[0], s.twins.served.url
            ),
            local_lines[1].clone()
        ],
        "{}",
        shown(&out)
    );

    // Not a JSON input: refused here, before the server is asked.
    write(&s.twins.elsewhere, "broken.json", "{ amount: ");
    let out = s.through(
        &s.runner,
        &["order", "--env", "staging", "--input", "broken.json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("broken.json:1:3: not JSON"),
        "{}",
        shown(&out)
    );

    assert_eq!(runs(), before, "a refused run was created");
}
