//! What every end-to-end test of the binary needs: running `airlock` in a folder,
//! reading its output, and a fresh starter project.
#![allow(dead_code)] // each test binary uses its own part of this

pub mod server;

/// An HTTP client for the server under test. reqwest is built without a crypto provider
/// of its own, so it is handed the workspace's TLS setup (ring, the system's and Mozilla's
/// roots, `AIRLOCK_CA_FILE`), as the CLI's own client is.
pub fn http_client() -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder().tls_backend_preconfigured(
        airlock_connectors::tls::client_config(&[]).expect("the TLS setup"),
    )
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `airlock run` of the starter project's order workflow in staging, with the order it
/// ships (`examples/order.json`).
pub const RUN_STARTER_ORDER: &[&str] = &[
    "run",
    "order-intake",
    "--env",
    "staging",
    "--input",
    "examples/order.json",
];

/// Runs the built binary in `dir` with empty stdin, outside any inherited project, key,
/// store or server.
pub fn airlock(dir: &Path, args: &[&str]) -> Output {
    airlock_stdin(dir, args, "")
}

/// Runs the built binary in `dir`, writing `input` to its stdin.
pub fn airlock_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    airlock_with_stdin(dir, args, input, &[])
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command's exit code, stdout and stderr, for an assertion's message.
pub fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Writes `content` to `path` under `dir`, making the folders it needs.
pub fn write(dir: &Path, path: &str, content: &str) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

/// Stdout parsed as JSON, or a panic showing what came out instead.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// Asserts exit 0, showing the output otherwise.
pub fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A fresh `airlock init` project in a temporary folder.
pub fn init_project() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let out = airlock(temp.path(), &["init", "demo"]);
    assert!(out.status.success(), "init failed: {}", text(&out.stderr));
    let project = temp.path().join("demo");
    (temp, project)
}

/// Replaces the first occurrence of `from` in a project file.
pub fn replace_in(project: &Path, file: &str, from: &str, to: &str) {
    let path = project.join(file);
    let before = std::fs::read_to_string(&path).unwrap();
    assert!(before.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, before.replacen(from, to, 1)).unwrap();
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs the built binary in `dir` with `vars` set. Nothing that points a command at a
/// server (AIRLOCK_SERVER, AIRLOCK_TOKEN) is inherited: each test says where it goes.
pub fn airlock_with(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    isolated(dir, args, vars)
        .stdin(Stdio::null())
        .output()
        .expect("the airlock binary runs")
}

/// [`airlock_with`], writing `input` to its stdin.
pub fn airlock_with_stdin(dir: &Path, args: &[&str], input: &str, vars: &[(&str, &str)]) -> Output {
    let mut child = isolated(dir, args, vars)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the airlock binary starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("the airlock binary runs")
}

/// The binary in `dir`, ready to spawn with whatever stdio a test needs (a pipe it closes
/// early, say); it inherits no project, key, store or server.
pub fn airlock_command(dir: &Path, args: &[&str]) -> Command {
    isolated(dir, args, &[])
}

/// The binary in `dir` with `vars`, inheriting no project, key, store or server.
fn isolated(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_airlock"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("AIRLOCK_PROJECT")
        .env_remove("AIRLOCK_FINGERPRINT_KEY")
        .env_remove("AIRLOCK_SERVER")
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_STORE")
        .env("NO_COLOR", "1");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// A project with staging and a protected production, one http connector its workflows do
/// not call, and a promotion path that wants passing tests, clean parity and one approval.
pub fn two_environment_manifest(project: &str) -> String {
    format!(
        r#"project: {project}
connectors:
  sink: {{ kind: http, description: "Not called by these workflows" }}
environments:
  staging:
    approvers: [prod-approver, cfo]
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:9", timeout: 1s }}
  production:
    protected: true
    approvers: [prod-approver, cfo]
    egress: [127.0.0.1]
    bindings:
      sink: {{ base_url: "http://127.0.0.1:9", timeout: 1s }}
differences:
  - {{ path: protected, reason: "production changes only by promotion and rollback" }}
promotion:
  staging -> production:
    require: {{ tests: pass, parity: clean, approvals: 1 }}
"#
    )
}

/// Creates an API token in `project` (`airlock token create --json`) and returns it.
pub fn create_token(project: &Path, environment: &str, role: &str, name: &str) -> String {
    let out = airlock_with(
        project,
        &[
            "token",
            "create",
            "--env",
            environment,
            "--role",
            role,
            "--name",
            name,
            "--json",
        ],
        &[],
    );
    ok(&out, "token create");
    json(&out)["token"].as_str().unwrap_or_default().to_owned()
}

/// The starter's freeze window (Fri 15:00 – Mon 08:00 London) makes a promotion depend on
/// the day the test runs. Replaces the policy's freeze list, whatever it holds, with
/// `windows` (YAML list lines indented for it; empty: no freeze).
pub fn set_freeze(project: &Path, windows: &str) {
    let path = project.join("airlock.yaml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let mut lines = manifest.lines().peekable();
    let mut kept = Vec::new();
    let mut found = false;
    while let Some(line) = lines.next() {
        if line.trim_end() == "    freeze:" {
            found = true;
            while lines.peek().is_some_and(|l| l.starts_with("      ")) {
                lines.next();
            }
            if !windows.is_empty() {
                kept.push(line.to_owned());
                kept.extend(windows.lines().map(str::to_owned));
            }
            continue;
        }
        kept.push(line.to_owned());
    }
    assert!(
        found,
        "the starter's policy has no freeze list:\n{manifest}"
    );
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
}

/// The starter as a promotion needs it: `airlock test` (evidence for the exact hashes),
/// staging's webhook signing secret set, and the working copy deployed to staging by `dev`.
pub fn test_and_deploy_starter(project: &Path) {
    ok(&airlock(project, &["test"]), "test");
    ok(
        &airlock_stdin(
            project,
            &["secrets", "set", "ORDER_HOOK_SECRET", "--env", "staging"],
            "whsec-staging-0123456789",
        ),
        "secrets set",
    );
    ok(
        &airlock(project, &["deploy", "--env", "staging", "--as", "dev"]),
        "deploy",
    );
}

/// A new dependency of the starter, bound differently in each environment, with nothing
/// said about it: `bindings.billing.base_url` is drift.
pub fn add_undocumented_billing(project: &Path) {
    replace_in(
        project,
        "airlock.yaml",
        "  mail:      { kind: smtp,",
        "  billing:   { kind: http,         risk: finance }\n  mail:      { kind: smtp,",
    );
    replace_in(
        project,
        "airlock.yaml",
        "          send: { accepted: true }\n",
        "          send: { accepted: true }\n      billing: { base_url: \"http://localhost:9100\", timeout: 5s }\n",
    );
    replace_in(
        project,
        "airlock.yaml",
        "        tls: starttls\n",
        "        tls: starttls\n      billing: { base_url: \"https://billing.example\", timeout: 5s }\n",
    );
}
