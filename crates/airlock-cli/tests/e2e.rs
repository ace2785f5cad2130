//! End to end: the built `airlock` binary on real project folders.

mod support;
use support::*;

use std::path::Path;

#[test]
fn init_then_validate_is_clean() {
    let (_temp, project) = init_project();
    for file in [
        "airlock.yaml",
        "workflows/order-intake.yaml",
        "workflows/credit-review.yaml",
    ] {
        assert!(project.join(file).is_file(), "{file} was not created");
    }
    let out = airlock(&project, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "ok: 2 workflows, 2 environments (staging, production), 4 connectors, 8 scenarios"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&airlock(&project, &["validate", "--json"]).stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(
        json["environments"],
        serde_json::json!(["staging", "production"])
    );
}

/// `airlock schema` prints the schemas compiled into the binary byte for byte, `--out`
/// writes them, and the project `airlock init` writes holds them where each file's
/// modeline points.
#[test]
fn schema_prints_and_writes_the_embedded_schemas_and_init_points_at_them() {
    use airlock_core::schema::FileKind;
    let temp = tempfile::tempdir().unwrap();
    for kind in FileKind::ALL {
        let out = airlock(temp.path(), &["schema", kind.name()]);
        ok(&out, kind.name());
        assert_eq!(text(&out.stdout), kind.schema(), "{}", kind.name());
    }
    let out = airlock(temp.path(), &["schema"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty());
    assert!(
        text(&out.stderr).contains("airlock schema --out DIR"),
        "{}",
        text(&out.stderr)
    );
    let out = airlock(temp.path(), &["schema", "workflows"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let dir = temp.path().join("editor/schemas");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("workflow.schema.json"), "{}").unwrap();
    let out = airlock(
        temp.path(),
        &["schema", "--out", dir.to_str().unwrap(), "--json"],
    );
    ok(&out, "schema --out");
    assert_eq!(json(&out)["written"].as_array().map(Vec::len), Some(3));
    for kind in FileKind::ALL {
        let written = std::fs::read_to_string(dir.join(kind.file_name())).unwrap();
        assert_eq!(written, kind.schema(), "an older copy is replaced");
    }

    let (_temp, project) = init_project();
    let mut pointed = 0;
    for (path, _) in airlock_core::scaffold::FILES {
        let Some(kind) = FileKind::of_path(path) else {
            continue;
        };
        let file = project.join(path);
        let text = std::fs::read_to_string(&file).unwrap();
        let target = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# yaml-language-server: $schema="))
            .unwrap_or_else(|| panic!("{path} has no modeline"));
        let schema = file.parent().unwrap().join(target);
        assert_eq!(
            std::fs::read_to_string(&schema).unwrap_or_else(|e| panic!("{path} -> {target}: {e}")),
            kind.schema(),
            "{path}"
        );
        pointed += 1;
    }
    assert_eq!(pointed, 11);
}

#[test]
fn init_never_overwrites_a_project() {
    let (temp, project) = init_project();
    replace_in(
        &project,
        "airlock.yaml",
        "project: acme-ops",
        "project: mine",
    );
    let out = airlock(temp.path(), &["init", "demo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already holds an Airlock project"));
    let manifest = std::fs::read_to_string(project.join("airlock.yaml")).unwrap();
    assert!(
        manifest.contains("project: mine"),
        "the existing project was changed"
    );
}

/// Regression (`init` writes into a folder that is not empty, though its help says it
/// must be empty): refused, naming the folder and what is in it, and nothing written;
/// `--force` adds the starter beside what is there, never overwriting a file.
#[test]
fn init_refuses_a_folder_that_is_not_empty_and_force_never_overwrites() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("notes");
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::write(dir.join("todo.txt"), "buy milk\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "mine\n").unwrap();

    let out = airlock(temp.path(), &["init", "notes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`notes` is not empty: it holds .gitignore, examples, todo.txt"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(!dir.join("airlock.yaml").exists(), "nothing was written");
    assert!(!dir.join(".airlock").exists(), "nothing was written");

    let out = airlock(temp.path(), &["init", "--force", "notes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(dir.join("airlock.yaml").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("todo.txt")).unwrap(),
        "buy milk\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "mine\n",
        "an existing file is never overwritten"
    );
    let out = airlock(&dir, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Forced over a starter file that exists: refused before anything is written.
    let other = temp.path().join("other");
    std::fs::create_dir_all(other.join("workflows")).unwrap();
    std::fs::write(other.join("workflows/order-intake.yaml"), "mine\n").unwrap();
    let out = airlock(temp.path(), &["init", "--force", "other"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(other.join("workflows/order-intake.yaml")).unwrap(),
        "mine\n"
    );
    assert!(!other.join("airlock.yaml").exists());
}

/// Regression (files readable by others): `.airlock/` was created 0755 and its store
/// 0644; they are 0700 and 0600 now, as the keys are.
#[cfg(unix)]
#[test]
fn init_and_the_first_store_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (_temp, project) = init_project();
    let out = airlock(&project, &["runs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mode = |path: &str| {
        std::fs::metadata(project.join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".airlock"), 0o700);
    assert_eq!(mode(".airlock/airlock.db"), 0o600);
}

/// Each corruption of the starter project: file, text to replace, replacement, the
/// `path:line:col` that must be reported, and the code.
const CORRUPTIONS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "workflows/order-intake.yaml",
        "    retry:\n",
        "    retyr:\n",
        "workflows/order-intake.yaml:45:5",
        "AL0003",
    ),
    (
        "workflows/order-intake.yaml",
        "name: order-intake\n",
        "",
        "workflows/order-intake.yaml:2:1",
        "AL0004",
    ),
    (
        "workflows/order-intake.yaml",
        "attempts: 4",
        "attempts: [4]",
        "workflows/order-intake.yaml:46:17",
        "AL0005",
    ),
    (
        "workflows/order-intake.yaml",
        "id: save_order",
        "id: normalize",
        "workflows/order-intake.yaml:26:9",
        "AL0006",
    ),
    (
        "workflows/order-intake.yaml",
        "{{ steps.normalize.output.total > 100 }}",
        "{{ steps.normalise.output.total > 100 }}",
        "workflows/order-intake.yaml:19:19",
        "AL0007",
    ),
    (
        "workflows/order-intake.yaml",
        "call: crm.request",
        "call: crmm.request",
        "workflows/order-intake.yaml:37:11",
        "AL0008",
    ),
    (
        "workflows/order-intake.yaml",
        "{{ steps.normalize.output.total > 100 }}",
        "{{ steps.normalize.output.total > }}",
        "workflows/order-intake.yaml:19:42",
        "AL0013",
    ),
    (
        "workflows/order-intake.yaml",
        "customer: \"{{ steps.normalize.output.customer }}\"\n        total",
        "customer: \"{{ stepz.normalize.output.customer }}\"\n        total",
        "workflows/order-intake.yaml:32:23",
        "AL0014",
    ),
    (
        "workflows/order-intake.yaml",
        "backoff: 2s",
        "backoff: 5 parsecs",
        "workflows/order-intake.yaml:47:16",
        "AL0016",
    ),
    (
        "workflows/order-intake.yaml",
        "call: crm.request",
        "call: crm.requets",
        "workflows/order-intake.yaml:37:15",
        "AL0022",
    ),
    (
        "workflows/order-intake.yaml",
        "  - id: normalize\n    map:",
        "  - id: normalize\n    map: [",
        "workflows/order-intake.yaml:15:7",
        "AL0001",
    ),
    (
        "workflows/credit-review.yaml",
        "\"0 7 * * 1-5\"",
        "\"0 7 * * 1-9\"",
        "workflows/credit-review.yaml:7:15",
        "AL0015",
    ),
    (
        "airlock.yaml",
        "kind: smtp,",
        "kind: smtpp,",
        "airlock.yaml:10:22",
        "AL0011",
    ),
    (
        "airlock.yaml",
        "\"${secret:CRM_TOKEN}\"",
        "\"${secret:CRM_TOKN}\"",
        "airlock.yaml:55:26",
        "AL0010",
    ),
    (
        "airlock.yaml",
        "staging -> production",
        "staging -> prod",
        "airlock.yaml:97:14",
        "AL0009",
    ),
    (
        "airlock.yaml",
        "path: bindings.chat.mode",
        "path: bindings.chatt.mode",
        "airlock.yaml:81:20",
        "AL0017",
    ),
    (
        "airlock.yaml",
        "    approvers: [ops-lead, cfo]\n",
        "",
        "airlock.yaml:41:3",
        "AL0018",
    ),
    // A coverage share is 0.0 to 1.0, not a percentage.
    (
        "airlock.yaml",
        "failure_paths: 1.0 }",
        "failure_paths: 100 }",
        "airlock.yaml:101:58",
        "AL0020",
    ),
    (
        "airlock.yaml",
        "      mail:\n        host",
        "      post:\n        host",
        "workflows/credit-review.yaml:27:15",
        "AL0012",
    ),
];

#[test]
fn each_corruption_exits_2_at_its_place() {
    let (_temp, pristine) = init_project();
    for (file, from, to, place, code) in CORRUPTIONS {
        let temp = tempfile::tempdir().unwrap();
        copy_dir(&pristine, temp.path());
        replace_in(temp.path(), file, from, to);
        let out = airlock(temp.path(), &["validate"]);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file}: {from:?} -> {to:?} should exit 2:\n{stderr}"
        );
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("{place}: ")) && l.ends_with(&format!("[{code}]"))),
            "{file}: {from:?} -> {to:?} should report {code} at {place}:\n{stderr}"
        );
        // The same finding in machine form.
        let json: serde_json::Value =
            serde_json::from_slice(&airlock(temp.path(), &["validate", "--json"]).stdout).unwrap();
        assert_eq!(json["ok"], false);
        assert!(
            json["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["code"] == *code),
            "{code} missing from JSON: {json}"
        );
    }
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let (_temp, project) = init_project();
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "    retry:\n",
        "    retyr:\n",
    );
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "call: crm.request",
        "call: crmm.request",
    );
    replace_in(&project, "airlock.yaml", "kind: smtp,", "kind: smtpp,");
    let out = airlock(&project, &["validate"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !stderr.contains("AL0024"),
        "a broken workflow must not make its scenarios noisy:\n{stderr}"
    );
    for code in ["AL0003", "AL0008", "AL0011"] {
        assert!(stderr.contains(code), "{code} missing:\n{stderr}");
    }
    assert!(stderr.contains("error: 3 problems in 2 files"), "{stderr}");
    assert!(stderr.contains("did you mean `retry`?"), "{stderr}");
}

#[test]
fn hash_is_stable_across_formatting_and_changes_with_meaning() {
    let (_temp, project) = init_project();
    let hashes = |dir: &Path| -> serde_json::Value {
        let out = airlock(dir, &["hash", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = hashes(&project);
    assert_eq!(before.as_array().unwrap().len(), 2);
    for row in before.as_array().unwrap() {
        let version = row["version"].as_str().unwrap();
        assert_eq!(version.len(), 64);
        assert!(version.chars().all(|c| c.is_ascii_hexdigit()));
    }
    // Comments, quoting, key order and equal durations do not change what the workflow does.
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "      table: orders\n",
        "      table: 'orders'   # the ledger table\n",
    );
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "      attempts: 4\n      backoff: 2s\n",
        "      backoff: \"2000ms\"\n      attempts: 4\n",
    );
    assert_eq!(hashes(&project), before);
    // A change of meaning does.
    replace_in(
        &project,
        "workflows/order-intake.yaml",
        "attempts: 4",
        "attempts: 5",
    );
    let after = hashes(&project);
    let version_of = |rows: &serde_json::Value, name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["workflow"] == name)
            .unwrap()["version"]
            .clone()
    };
    assert_ne!(
        version_of(&after, "order-intake"),
        version_of(&before, "order-intake")
    );
    assert_eq!(
        version_of(&after, "credit-review"),
        version_of(&before, "credit-review")
    );

    let one = airlock(&project, &["hash", "order-intake"]);
    let line = text(&one.stdout);
    assert!(line.trim().ends_with("  order-intake"), "{line}");
    let unknown = airlock(&project, &["hash", "order-intak"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("did you mean `order-intake`?"));
}

#[test]
fn usage_errors_exit_2() {
    let temp = tempfile::tempdir().unwrap();
    let out = airlock(temp.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not an Airlock project"));
    assert_eq!(
        airlock(temp.path(), &["validate", "--frobnicate"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        airlock(temp.path(), &["explain", "AL9999"]).status.code(),
        Some(2)
    );
    let explain = airlock(temp.path(), &["explain", "al0003"]);
    assert_eq!(explain.status.code(), Some(0));
    assert!(text(&explain.stdout).starts_with("AL0003: unknown key"));
}

#[test]
fn quickstart_creates_then_reuses_the_project() {
    let temp = tempfile::tempdir().unwrap();
    let first = airlock(temp.path(), &["quickstart", "--no-serve"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(text(&first.stdout).starts_with("Created the Airlock project in airlock-demo"));
    let second = airlock(temp.path(), &["quickstart", "--no-serve"]);
    assert!(text(&second.stdout).starts_with("Using the Airlock project in airlock-demo"));
}
