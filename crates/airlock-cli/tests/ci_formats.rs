//! What CI reads, checked by its consumers' own parsers: `test --junit` by Python's
//! `junitparser` (PyPI), `validate --format github` by the runner's workflow-command grammar,
//! `diff --format markdown` by a CommonMark renderer with GitHub's tables (pulldown-cmark);
//! and the workflow file in `ci/github/` names only commands this binary takes.

mod support;
use support::*;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The starter with one scenario's expectation made false, so one case fails.
fn starter_with_a_failing_scenario() -> (tempfile::TempDir, std::path::PathBuf) {
    let (temp, project) = init_project();
    let scenario = std::fs::read_dir(project.join("tests/order-intake"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("status: succeeded")
        })
        .expect("a scenario expecting success");
    let before = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(
        &scenario,
        before.replacen("status: succeeded", "status: failed", 1),
    )
    .unwrap();
    (temp, project)
}

#[test]
fn junit_has_one_case_per_scenario_and_each_failure_names_its_expectation() {
    let (_temp, project) = starter_with_a_failing_scenario();
    let junit = project.join("junit.xml");
    let out = airlock(
        &project,
        &["test", "--junit", junit.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let reports = json(&out);
    // Every scenario the suite ran, and each failure, from the test command's own JSON.
    let mut expected = Vec::new();
    for workflow in reports["workflows"].as_array().expect("workflows") {
        for result in workflow["scenarios"].as_array().expect("scenarios") {
            expected.push((
                workflow["workflow"].as_str().unwrap().to_owned(),
                result["name"].as_str().unwrap().to_owned(),
                result["failures"]
                    .as_array()
                    .unwrap()
                    .first()
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ));
        }
    }
    assert!(expected.iter().any(|(_, _, f)| f.is_some()), "{reports:#}");
    assert!(expected.len() >= 4, "{reports:#}");

    // junitparser reads the file as a CI reporter would.
    let script = r#"
import json, sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
cases = []
for suite in xml:
    props = {p.name: p.value for p in suite.properties()}
    for case in suite:
        failures = [r for r in case.result if isinstance(r, Failure)]
        cases.append({
            "suite": suite.name, "version": props.get("version"),
            "classname": case.classname, "name": case.name,
            "failure": failures[0].message if failures else None,
            "text": failures[0].text if failures else None,
        })
print(json.dumps({"tests": xml.tests, "failures": xml.failures, "cases": cases}))
"#;
    let parsed = Command::new("python3")
        .args(["-c", script, junit.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        parsed.status.success(),
        "junitparser could not read the report (is it installed? .ci/run installs it):\n{}",
        text(&parsed.stderr)
    );
    let parsed: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let failed = expected.iter().filter(|(_, _, f)| f.is_some()).count();
    assert_eq!(parsed["tests"], expected.len(), "{parsed:#}");
    assert_eq!(parsed["failures"], failed, "{parsed:#}");
    let cases = parsed["cases"].as_array().unwrap();
    for (workflow, name, failure) in &expected {
        let case = cases
            .iter()
            .find(|c| c["classname"] == workflow.as_str() && c["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no case {workflow}/{name} in {parsed:#}"));
        assert_eq!(case["suite"], workflow.as_str());
        assert_eq!(case["failure"].as_str(), failure.as_deref(), "{case:#}");
        if let Some(failure) = failure {
            assert!(case["text"].as_str().unwrap().contains(failure.as_str()));
        }
    }
    // The version the evidence is bound to travels with each suite.
    let hashes = airlock(&project, &["hash", "--json"]);
    let hashes = text(&hashes.stdout);
    for case in cases {
        let version = case["version"].as_str().expect("a version property");
        assert!(hashes.contains(version), "{version} not in {hashes}");
    }
}

/// One workflow command as the runner reads it (`actions/runner`'s `ActionCommand.TryParseV2`):
/// `::name key=value,key=value::message`, values and message unescaped.
#[derive(Debug)]
struct Annotation {
    command: String,
    properties: Vec<(String, String)>,
    message: String,
}

impl Annotation {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("::")?;
        let end = rest.find("::")?;
        let (head, message) = (&rest[..end], &rest[end + 2..]);
        let (command, properties) = match head.split_once(' ') {
            Some((command, properties)) => (command, properties),
            None => (head, ""),
        };
        let properties = properties
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (key, value) = p.split_once('=')?;
                Some((key.to_owned(), unescape_property(value)))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            command: command.to_owned(),
            properties,
            message: unescape_data(message),
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn unescape_data(text: &str) -> String {
    text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn unescape_property(text: &str) -> String {
    text.replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

#[test]
fn every_problem_of_every_bad_fixture_is_an_annotation_at_its_place() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let repository = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in names {
        // In a subfolder of the "repository", as a project often is.
        let project = repository.path().join("ops").join(&name);
        std::fs::create_dir_all(&project).unwrap();
        copy_dir(&fixtures.join(&name), &project);
        let relative = format!("ops/{name}");
        let problems = airlock(repository.path(), &["-C", &relative, "validate", "--json"]);
        assert_eq!(
            problems.status.code(),
            Some(2),
            "{name}: {}",
            shown(&problems)
        );
        let problems = json(&problems);
        let problems = problems["errors"].as_array().unwrap();

        let out = airlock(
            repository.path(),
            &["-C", &relative, "validate", "--format", "github"],
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", shown(&out));
        let stdout = text(&out.stdout);
        let annotations: Vec<Annotation> = stdout
            .lines()
            .map(|l| {
                Annotation::parse(l)
                    .unwrap_or_else(|| panic!("{name}: not a workflow command: {l:?}"))
            })
            .collect();
        assert_eq!(annotations.len(), problems.len(), "{name}:\n{stdout}");
        for (annotation, problem) in annotations.iter().zip(problems) {
            assert_eq!(annotation.command, "error");
            let code = problem["code"].as_str().unwrap();
            assert!(
                annotation.get("title").unwrap().starts_with(code),
                "{name}: {annotation:?}"
            );
            assert!(
                annotation
                    .message
                    .starts_with(problem["message"].as_str().unwrap()),
                "{name}: {annotation:?} for {problem:#}"
            );
            if let Some(help) = problem["help"].as_str() {
                assert!(annotation.message.contains(help), "{name}: {annotation:?}");
            }
            match problem["path"].as_str() {
                Some(path) => {
                    assert_eq!(
                        annotation.get("file"),
                        Some(format!("{relative}/{path}").as_str()),
                        "{name}"
                    );
                    assert_eq!(
                        annotation.get("line"),
                        Some(problem["line"].to_string().as_str())
                    );
                    assert_eq!(
                        annotation.get("col"),
                        Some(problem["column"].to_string().as_str())
                    );
                }
                None => assert_eq!(annotation.get("file"), None),
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} problems checked");
}

#[test]
fn a_valid_project_has_no_annotations() {
    let (_temp, project) = init_project();
    let out = airlock(&project, &["validate", "--format", "github"]);
    ok(&out, "validate");
    assert!(
        !text(&out.stdout).lines().any(|l| l.starts_with("::")),
        "{}",
        shown(&out)
    );
}

/// Each table of a markdown document as rows of cell texts (header first), as a renderer
/// with GitHub's tables reads it.
fn tables(markdown: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut cell: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => tables.push(Vec::new()),
            Event::Start(Tag::TableHead | Tag::TableRow) => {
                tables.last_mut().unwrap().push(Vec::new())
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                let text = cell.take().unwrap();
                tables.last_mut().unwrap().last_mut().unwrap().push(text);
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(cell) = cell.as_mut() {
                    cell.push_str(&t);
                }
            }
            Event::InlineHtml(h) | Event::Html(h) => {
                if let Some(cell) = cell.as_mut() {
                    // A line break is the one tag a cell may hold.
                    assert_eq!(&*h, "<br>", "raw HTML in a cell: {h}");
                    cell.push('\n');
                }
            }
            _ => {}
        }
    }
    tables
}

#[test]
fn the_markdown_parity_report_says_in_tables_what_the_json_says() {
    let (_temp, project) = init_project();
    // A drift, and a documented difference whose reason is hostile markdown and HTML.
    add_undocumented_billing(&project);
    let hostile =
        "a | b *not bold* `tick` <script>alert(1)</script> [x](http://evil) ~~s~~ \\ & $m$";
    let manifest = std::fs::read_to_string(project.join("airlock.yaml")).unwrap();
    let at = manifest
        .find("reason: \"")
        .expect("a documented difference")
        + "reason: ".len();
    let end = at + 1 + manifest[at + 1..].find('"').unwrap() + 1;
    let changed = format!(
        "{}{}{}",
        &manifest[..at],
        serde_json::to_string(hostile).unwrap(),
        &manifest[end..]
    );
    std::fs::write(project.join("airlock.yaml"), changed).unwrap();

    let out = airlock(&project, &["diff", "staging", "production", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let report = json(&out);
    let out = airlock(
        &project,
        &["diff", "staging", "production", "--format", "markdown"],
    );
    assert_eq!(out.status.code(), Some(1), "drift exits 1 in markdown too");
    let markdown = text(&out.stdout);
    let tables = tables(&markdown);
    assert!(!tables.is_empty(), "{markdown}");
    for table in &tables {
        assert_eq!(table[0], ["what", "staging", "production", "status"]);
        assert!(table.iter().all(|row| row.len() == 4), "{table:?}");
    }
    let rows: Vec<&Vec<String>> = tables.iter().flat_map(|t| &t[1..]).collect();
    let shown_rows: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "same")
        .collect();
    assert_eq!(rows.len(), shown_rows.len(), "{markdown}");
    for finding in shown_rows {
        let row = rows
            .iter()
            .find(|r| r[0] == finding["what"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no row for {finding:#}\n{markdown}"));
        assert_eq!(row[1], finding["from"].as_str().unwrap());
        assert_eq!(row[2], finding["to"].as_str().unwrap());
        if finding["status"] == "drift" {
            assert!(row[3].starts_with("DRIFT"), "{row:?}");
        }
    }
    assert!(
        rows.iter().any(|r| r[3].contains(hostile)),
        "the hostile reason reads as written:\n{markdown}"
    );
    assert!(!markdown.contains("<script>"), "{markdown}");
    assert!(markdown.contains("❌ **1 drift**"), "{markdown}");
}

#[test]
fn the_github_workflow_runs_only_commands_this_airlock_takes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workflow = std::fs::read_to_string(root.join("ci/github/airlock.yml")).unwrap();
    let commands: Vec<String> = workflow
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            l.strip_prefix("airlock ")
                .or_else(|| l.strip_prefix("run: airlock "))
        })
        .map(|l| l.trim_end_matches('\\').trim().to_owned())
        .collect();
    for wanted in [
        "validate --format github",
        "test --junit",
        "diff staging production --format markdown",
        "deploy --env staging",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(wanted)),
            "the workflow does not run `airlock {wanted}`: {commands:?}"
        );
    }
    for command in &commands {
        // Against a server the token's name acts, and a `--as` naming anyone else (the CI's
        // actor, say) is refused: no command of a workflow that holds a token says `--as`.
        assert!(
            !command.split_whitespace().any(|w| w == "--as"),
            "`airlock {command}`: `--as` is refused against a server unless it names the token"
        );
        // Shell variables stand for values; the flags and subcommands must be real.
        let words: Vec<String> = std::iter::once("airlock".to_owned())
            .chain(command.split_whitespace().map(|w| {
                if w.starts_with('"') || w.starts_with('$') {
                    "value".to_owned()
                } else {
                    w.to_owned()
                }
            }))
            .take_while(|w| !matches!(w.as_str(), ">" | "|" | "||" | "&&" | ";"))
            .collect();
        if let Err(error) = <airlock_cli::cli::Cli as clap::Parser>::try_parse_from(&words) {
            panic!("`{}` does not parse: {error}", words.join(" "));
        }
    }
}

proptest::proptest! {
    /// Whatever a value holds, its cell renders back to exactly it, in one cell.
    #[test]
    fn a_cell_reads_back_as_its_value(value in "[ -~\\n<>&|*_`\\[\\]()#!~$é❌]{0,40}") {
        let markdown = format!(
            "| a | b |\n|---|---|\n| {} | x |\n",
            airlock_cli::ci::markdown::cell(&value)
        );
        let tables = tables(&markdown);
        proptest::prop_assert_eq!(tables.len(), 1);
        proptest::prop_assert_eq!(tables[0].len(), 2, "{}", markdown);
        // A renderer trims a cell's edges; a value's own edge spaces are not kept.
        let expected = value.replace("\r\n", "\n").replace('\r', "\n");
        proptest::prop_assert_eq!(tables[0][1][0].trim(), expected.trim(), "{}", markdown);
        proptest::prop_assert_eq!(&tables[0][1][1], "x");
    }

    /// Whatever a problem says, it is one line that the runner's grammar reads back to it.
    #[test]
    fn an_annotation_reads_back_as_its_problem(
        message in "[ -~\\n\\r%:,é]{1,60}",
        label in proptest::option::of("[ -~\\n%:,]{1,20}"),
        path in "[a-z/._:, %-]{1,20}",
    ) {
        let problem = airlock_ops::validate::Problem {
            code: "AL0001".into(),
            path: Some(path.clone()),
            line: 3,
            column: 4,
            end_line: 3,
            end_column: 9,
            message: message.clone(),
            label: label.clone(),
            help: None,
        };
        let text = airlock_cli::ci::annotations::annotations(&[problem], "");
        proptest::prop_assert_eq!(text.lines().count(), 1, "{}", text);
        let annotation = Annotation::parse(text.trim_end_matches('\n')).expect("parses");
        proptest::prop_assert_eq!(annotation.get("file"), Some(path.as_str()));
        let expected = match &label {
            Some(label) => format!("{message}\n{label}"),
            None => message.clone(),
        };
        proptest::prop_assert_eq!(annotation.message, expected);
    }
}
