//! What an installed `airlock` brings besides itself: shell completions that a real bash
//! loads and completes with, and manual pages that groff renders without a warning, one per
//! command, made from the same arguments the binary parses.

mod support;
use support::*;

use clap::CommandFactory;
use std::process::Command;

/// Every command a user can type (hidden ones aside).
fn commands() -> Vec<String> {
    airlock_cli::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect()
}

#[test]
fn bash_completes_commands_and_their_flags() {
    let temp = tempfile::tempdir().unwrap();
    let out = airlock(temp.path(), &["completions", "bash"]);
    ok(&out, "completions bash");
    let script = temp.path().join("airlock.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash offers at `airlock dep<TAB>` and at `airlock deploy --<TAB>`.
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _airlock airlock '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash")
            .args(["--norc", "-c", &program])
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{}", shown(&out));
        text(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("airlock dep"), ["deploy"]);
    let flags = complete("airlock deploy --");
    for flag in ["--env", "--as", "--server", "--project"] {
        assert!(flags.iter().any(|f| f == flag), "{flag} not in {flags:?}");
    }
    let all = complete("airlock ");
    for command in commands() {
        assert!(all.contains(&command), "{command} not completed: {all:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let temp = tempfile::tempdir().unwrap();
    for shell in ["zsh", "fish"] {
        let out = airlock(temp.path(), &["completions", shell]);
        ok(&out, shell);
        let script = text(&out.stdout);
        for command in commands() {
            assert!(script.contains(&command), "{shell}: no {command}");
        }
    }
}

#[test]
fn each_command_has_a_manual_page_groff_renders_cleanly() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("man");
    let out = airlock(temp.path(), &["man", "--out", dir.to_str().unwrap()]);
    ok(&out, "man --out");
    let mut pages = vec!["airlock.1".to_owned()];
    pages.extend(commands().iter().map(|c| format!("airlock-{c}.1")));
    for page in &pages {
        let path = dir.join(page);
        assert!(path.is_file(), "no {page}");
        let rendered = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww"])
            .arg(&path)
            .output()
            .expect("groff runs");
        assert!(rendered.status.success(), "{page}: {}", shown(&rendered));
        assert_eq!(text(&rendered.stderr), "", "{page} warns");
        assert!(!rendered.stdout.is_empty());
    }
    // Without --out, the main page on stdout, listing every command.
    let out = airlock(temp.path(), &["man"]);
    ok(&out, "man");
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie"), "{page}");
    for command in commands() {
        assert!(page.contains(&command.replace('-', "\\-")), "no {command}");
    }
}

/// The units in `dist/systemd`, pointed at this build's binary, as systemd itself reads
/// them: `systemd-analyze verify` (every directive known, the binary there, the manual page
/// its `Documentation=` names found) and its offline security review under a threshold.
#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let temp = tempfile::tempdir().unwrap();
    let man = temp.path().join("man");
    let out = airlock(
        temp.path(),
        &["man", "--out", man.join("man1").to_str().unwrap()],
    );
    ok(&out, "man --out");
    let binary = env!("CARGO_BIN_EXE_airlock");
    for (file, instance) in [
        ("airlock.service", "airlock.service"),
        ("airlock-worker@.service", "airlock-worker@1.service"),
    ] {
        let unit = std::fs::read_to_string(root.join("dist/systemd").join(file)).unwrap();
        assert!(unit.contains("ExecStart=/usr/local/bin/airlock "), "{file}");
        for hardening in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "StateDirectory=airlock",
            "NoNewPrivileges=yes",
        ] {
            assert!(
                unit.lines().any(|l| l == hardening),
                "{file}: no {hardening}"
            );
        }
        let path = temp.path().join(instance);
        std::fs::write(&path, unit.replace("/usr/local/bin/airlock", binary)).unwrap();
        let verified = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .env("MANPATH", &man)
            .output()
            .expect("systemd-analyze runs");
        assert!(verified.status.success(), "{file}: {}", shown(&verified));
        assert_eq!(text(&verified.stderr), "", "{file}: {}", shown(&verified));
        let review = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(&path)
            .output()
            .expect("systemd-analyze runs");
        assert!(
            review.status.success(),
            "{file} is exposed above 2.0 (20 of 100):\n{}",
            shown(&review)
        );
    }
}

/// The Containerfile, read by a real Dockerfile parser (`dockerfile-parse`, from PyPI; no
/// OCI builder can fetch a base image on this network, see docs/install.md for the manual
/// check): two stages, the final one holding the binary only, as a non-root user, with
/// `/readyz` as its health check, starting a command this binary takes.
#[test]
fn the_containerfile_builds_the_binary_and_runs_it_unprivileged() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = r#"
import json, sys
from dockerfile_parse import DockerfileParser
parsed = DockerfileParser(fileobj=open(sys.argv[1], "rb"))
print(json.dumps({"parents": parsed.parent_images, "structure": parsed.structure}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(root.join("Containerfile"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "dockerfile-parse could not read the Containerfile (is it installed? .ci/run installs it):\n{}",
        text(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parents = parsed["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "a build stage and a runtime stage");
    // The build stage's toolchain is at least the workspace's rust-version.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let wanted = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version");
    let toolchain = parents[0].as_str().unwrap();
    let version = toolchain
        .rsplit_once(':')
        .and_then(|(_, tag)| tag.split('-').next())
        .unwrap();
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(parse(version) >= parse(wanted), "{toolchain} < {wanted}");

    let instructions: Vec<(String, String)> = parsed["structure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instruction"].as_str().unwrap().to_owned(),
                i["value"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(instruction, _)| instruction != "COMMENT")
        .collect();
    let last_from = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let (build, runtime) = instructions.split_at(last_from);
    assert!(
        build
            .iter()
            .any(|(i, v)| i == "RUN" && v.contains("cargo build --release --locked")),
        "{build:?}"
    );
    let copies: Vec<&String> = runtime
        .iter()
        .filter(|(i, _)| i == "COPY" || i == "ADD")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        copies,
        ["--from=build /src/target/release/airlock /usr/local/bin/airlock"],
        "the runtime stage holds the binary only"
    );
    let user = runtime
        .iter()
        .rfind(|(i, _)| i == "USER")
        .map(|(_, v)| v.as_str())
        .expect("a USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    let health = runtime
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .map(|(_, v)| v.as_str())
        .expect("a HEALTHCHECK");
    assert!(health.contains("/readyz"), "{health}");
    let json_words = |instruction: &str| -> Vec<String> {
        let value = &runtime.iter().rfind(|(i, _)| i == instruction).unwrap().1;
        serde_json::from_str(value).unwrap_or_else(|e| panic!("{instruction} {value}: {e}"))
    };
    let entrypoint = json_words("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/airlock"]);
    let mut words = vec!["airlock".to_owned()];
    words.extend(json_words("CMD"));
    <airlock_cli::cli::Cli as clap::Parser>::try_parse_from(&words)
        .unwrap_or_else(|e| panic!("CMD {words:?} does not parse: {e}"));
}
