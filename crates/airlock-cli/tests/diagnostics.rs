//! Snapshots of the diagnostics `airlock validate` prints, one bad project per folder
//! under `tests/fixtures/invalid/`. Each fixture is a complete project that is valid
//! except for the error it is named after (a few hold several, to show that every
//! error is reported, not only the first). Adding a fixture needs no code change
//! beyond one line in [`EXPECTED`]; accept its snapshot with
//! `INSTA_UPDATE=always cargo test -p airlock-cli --test diagnostics`, then read it.

use airlock_cli::project_dir::ProjectDir;
use airlock_cli::render::{Style, render};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The codes each fixture must report. A snapshot accepted without reading cannot
/// hide a change in the kind of error: this table fails first.
const EXPECTED: &[(&str, &[&str])] = &[
    ("01-yaml-syntax", &["AL0001"]),
    ("02-unknown-step-key", &["AL0003"]),
    ("03-unknown-manifest-key", &["AL0003"]),
    ("04-missing-field", &["AL0004"]),
    ("05-wrong-type", &["AL0005"]),
    ("06-duplicate-step-id", &["AL0006"]),
    ("07-unknown-step-reference", &["AL0007"]),
    ("08-step-runs-later", &["AL0007"]),
    ("09-unknown-connector", &["AL0008"]),
    ("10-unknown-action", &["AL0022"]),
    ("11-promotion-unknown-environment", &["AL0009"]),
    ("12-difference-unknown-environment", &["AL0009"]),
    ("13-unknown-secret", &["AL0010"]),
    ("14-webhook-secret-not-declared", &["AL0010"]),
    ("15-unknown-connector-kind", &["AL0011"]),
    ("16-unbound-connector", &["AL0012"]),
    ("17-template-syntax", &["AL0013"]),
    ("18-condition-syntax", &["AL0013"]),
    ("19-unknown-root", &["AL0014"]),
    ("20-error-outside-on-failure", &["AL0014"]),
    ("21-bad-cron", &["AL0015"]),
    ("22-bad-timezone", &["AL0015"]),
    ("23-bad-duration", &["AL0016"]),
    ("24-dangling-difference", &["AL0017"]),
    ("25-protected-without-approvers", &["AL0018"]),
    ("26-protected-record-mode", &["AL0021"]),
    ("27-duplicate-workflow-name", &["AL0019"]),
    ("28-alias-bomb", &["AL0002"]),
    ("29-deep-document", &["AL0002"]),
    ("30-duplicate-yaml-key", &["AL0001"]),
    ("31-scenario-unknown-step", &["AL0007"]),
    ("32-scenario-unknown-action", &["AL0022"]),
    ("33-scenario-unknown-workflow", &["AL0024"]),
    ("34-missing-argument", &["AL0004"]),
    ("35-step-id-with-dash", &["AL0020"]),
    ("36-manifest-yaml-syntax", &["AL0001"]),
    (
        "37-several-errors",
        &["AL0003", "AL0007", "AL0008", "AL0010"],
    ),
    ("38-idempotency-key-unknown-root", &["AL0014"]),
    ("39-coverage-share-out-of-range", &["AL0020"]),
    ("45-unmeetable-approvals", &["AL0026"]),
    ("46-template-engine-global", &["AL0027"]),
    ("47-webhook-path-escapes", &["AL0028"]),
    ("48-notify-unbound-target", &["AL0029"]),
    ("49-paging-in-staging", &["AL0030"]),
    ("50-outbound-tls-files", &["AL0020"]),
];

/// Far above what any fixture needs (milliseconds); an alias bomb or a deep document
/// that was expanded instead of refused would blow it.
const PER_FIXTURE: Duration = Duration::from_secs(2);

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

/// Every fixture folder's name, sorted.
fn fixture_names() -> Vec<String> {
    let root = fixtures_root();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|entry| entry.expect("a readable folder entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Reads and loads one fixture the way `airlock validate` does, and renders every
/// diagnostic. Returns how many there were and the rendered text.
fn render_fixture(dir: &Path) -> (usize, String) {
    // With what the files name in the folder (`ca_file`, `proxy`), as `validate` checks it.
    let loaded = ProjectDir::locate(Some(dir))
        .and_then(|project| project.load())
        .unwrap_or_else(|e| panic!("cannot read {}: {e:?}", dir.display()));
    let rendered: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| render(d, &loaded.project.files, Style::Plain))
        .collect();
    (loaded.diagnostics.len(), rendered.join("\n"))
}

#[test]
fn every_invalid_fixture_renders_its_diagnostics() {
    let names = fixture_names();
    assert!(names.len() >= 28, "only {} fixtures", names.len());
    for (name, _) in EXPECTED {
        assert!(
            names.iter().any(|n| n == name),
            "EXPECTED lists `{name}`, but there is no such fixture folder"
        );
    }
    for name in &names {
        let Some((_, codes)) = EXPECTED.iter().find(|(n, _)| n == name) else {
            panic!("fixture `{name}` is not listed in EXPECTED with the code(s) it must report");
        };
        let started = Instant::now();
        let (count, rendered) = render_fixture(&fixtures_root().join(name));
        let elapsed = started.elapsed();
        assert!(count > 0, "fixture `{name}` validates: it tests nothing");
        for code in *codes {
            assert!(
                rendered.contains(&format!("[{code}]")),
                "fixture `{name}` should report {code}; it reports:\n{rendered}"
            );
        }
        assert!(
            elapsed < PER_FIXTURE,
            "fixture `{name}` took {elapsed:?} to refuse"
        );
        insta::assert_snapshot!(name.as_str(), rendered);
    }
}
