//! A whole project: its files, decoded and checked together.

use crate::decode::Cx;
use crate::diagnostic::{Code, Diagnostic, Diagnostics, Span};
use crate::model::{Manifest, Scenario, Workflow, manifest, scenario, workflow};
use crate::source::{FileId, SourceFile};
use crate::yaml;

/// The manifest's path inside a project.
pub const MANIFEST: &str = "airlock.yaml";

/// A workflow and the file it came from.
#[derive(Debug, Clone)]
pub struct WorkflowFile {
    /// Its file.
    pub file: FileId,
    /// The workflow.
    pub workflow: Workflow,
}

/// A scenario and the file it came from.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    /// Its file.
    pub file: FileId,
    /// The scenario.
    pub scenario: Scenario,
}

/// A project, decoded as far as its files allow.
#[derive(Debug, Clone)]
pub struct Project {
    /// Every file, indexed by [`FileId`].
    pub files: Vec<SourceFile>,
    /// The manifest's file, if there is one.
    pub manifest_file: Option<FileId>,
    /// `airlock.yaml`.
    pub manifest: Manifest,
    /// Whether `airlock.yaml` parsed as YAML. When it did not, `manifest` is empty and
    /// references to its connectors are not checked: each would only echo that one error.
    pub manifest_parsed: bool,
    /// The workflows, in path order.
    pub workflows: Vec<WorkflowFile>,
    /// The scenarios, in path order.
    pub scenarios: Vec<ScenarioFile>,
}

/// The outcome of loading: the project as far as it decoded, and every finding.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The project.
    pub project: Project,
    /// Every finding, sorted by file and position. Empty means valid.
    pub diagnostics: Vec<Diagnostic>,
}

/// What a path inside a project is.
enum Role<'a> {
    Manifest,
    Workflow,
    Scenario { workflow: &'a str, name: &'a str },
    Other,
}

fn role(path: &str) -> Role<'_> {
    let yaml_stem = |name: &str| -> Option<usize> {
        name.strip_suffix(".yaml")
            .or_else(|| name.strip_suffix(".yml"))
            .map(str::len)
    };
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [MANIFEST] => Role::Manifest,
        ["workflows", file] if yaml_stem(file).is_some() => Role::Workflow,
        ["tests", workflow, file] => match yaml_stem(file) {
            Some(len) => Role::Scenario {
                workflow,
                name: &file[..len],
            },
            None => Role::Other,
        },
        _ => Role::Other,
    }
}

/// Whether a relative path is one a project reads (the manifest, a workflow, a scenario).
pub fn is_project_file(path: &str) -> bool {
    !matches!(role(path), Role::Other)
}

/// Decodes and checks every file of a project. Files are sorted by path first, so the
/// result does not depend on the order the caller found them in.
pub fn load(mut files: Vec<SourceFile>) -> Loaded {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut diagnostics = Diagnostics::default();
    let mut project = Project {
        manifest_file: None,
        manifest: Manifest::default(),
        manifest_parsed: false,
        workflows: Vec::new(),
        scenarios: Vec::new(),
        files: Vec::new(),
    };
    for (id, file) in files.iter().enumerate() {
        let tree = match yaml::parse(id, file) {
            Ok(tree) => tree,
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                if matches!(role(&file.path), Role::Manifest) {
                    project.manifest_file = Some(id);
                }
                continue;
            }
        };
        let mut cx = Cx::new(id, &mut diagnostics);
        match role(&file.path) {
            Role::Manifest => {
                project.manifest_file = Some(id);
                project.manifest_parsed = true;
                project.manifest = manifest::decode(&mut cx, &tree);
            }
            Role::Workflow => {
                if let Some(workflow) = workflow::decode(&mut cx, &tree) {
                    project.workflows.push(WorkflowFile { file: id, workflow });
                }
            }
            Role::Scenario { workflow, name } => {
                if let Some(scenario) = scenario::decode(&mut cx, &tree, workflow, name) {
                    project.scenarios.push(ScenarioFile { file: id, scenario });
                }
            }
            Role::Other => {
                cx.report(
                    Code::ProjectLayout,
                    Span::default(),
                    format!("`{}` is not a project file", file.path),
                )
                .help = Some("workflows go in `workflows/NAME.yaml`, scenarios in `tests/WORKFLOW/NAME.yaml`".into());
            }
        }
    }
    project.files = files;
    if project.manifest_file.is_none() {
        // Reported against no file: the CLI says which folder it looked in.
        diagnostics.push(
            Diagnostic::new(
                Code::ProjectLayout,
                crate::source::NO_FILE,
                Span::default(),
                format!("no `{MANIFEST}` found: this folder is not an Airlock project"),
            )
            .with_help(
                "run `airlock init` to create one, or pass the project folder with `--project`",
            ),
        );
    } else {
        crate::validate::check(&project, &mut diagnostics);
    }
    Loaded {
        project,
        diagnostics: diagnostics.into_sorted(),
    }
}

impl Project {
    /// The workflow called `name`.
    pub fn workflow(&self, name: &str) -> Option<&WorkflowFile> {
        self.workflows
            .iter()
            .find(|w| w.workflow.name.value == name)
    }

    /// The scenarios of workflow `name`.
    pub fn scenarios_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ScenarioFile> + 'a {
        self.scenarios
            .iter()
            .filter(move |s| s.scenario.workflow == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST_TEXT: &str = "project: p\nconnectors:\n  crm: { kind: http }\nenvironments:\n  staging:\n    secrets: [HOOK]\n    bindings:\n      crm: { mode: record }\n";
    const WORKFLOW: &str = "# the shop signs with HOOK\nname: w\ntrigger:\n  webhook:\n    path: w\n    signature: { scheme: github, secret: HOOK }\nsteps:\n  - id: a\n    call: crm.request\n    with: { method: GET, path: / }\n";

    fn load_with(manifest: &str) -> Loaded {
        load(vec![
            SourceFile::new(MANIFEST, manifest),
            SourceFile::new("workflows/w.yaml", WORKFLOW),
        ])
    }

    #[test]
    fn the_test_project_is_valid() {
        assert_eq!(load_with(MANIFEST_TEXT).diagnostics, []);
    }

    #[test]
    fn a_manifest_that_does_not_parse_is_its_only_error() {
        let loaded = load_with("project: [\n");
        let codes: Vec<Code> = loaded.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [Code::YamlSyntax],
            "no `unknown connector` for each call"
        );
    }

    #[test]
    fn an_undeclared_signing_secret_is_pointed_at_in_the_trigger() {
        let loaded = load_with(&MANIFEST_TEXT.replace("secrets: [HOOK]", "secrets: []"));
        let [diagnostic] = loaded.diagnostics.as_slice() else {
            panic!("{:?}", loaded.diagnostics)
        };
        assert_eq!(diagnostic.code, Code::UnknownSecret);
        let at = WORKFLOW.find("secret: HOOK").unwrap() + "secret: ".len();
        assert_eq!(
            diagnostic.span,
            Span::new(at, at + "HOOK".len()),
            "not the comment's `HOOK`"
        );
    }

    #[test]
    fn a_scenario_folder_named_after_a_file_but_not_its_workflow_is_reported() {
        let loaded = load(vec![
            SourceFile::new(MANIFEST, MANIFEST_TEXT),
            SourceFile::new("workflows/intake.yaml", WORKFLOW),
            SourceFile::new("tests/intake/s.yaml", "expect: { status: succeeded }\n"),
        ]);
        let codes: Vec<Code> = loaded.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::UnknownWorkflow], "the workflow is named `w`");
    }

    #[test]
    fn a_webhook_idempotency_key_is_checked_like_any_template() {
        let workflow = WORKFLOW.replace(
            "    path: w\n",
            "    path: w\n    idempotency_key: \"w-{{ trigerr.body.id }}-{{ steps.a.output }}\"\n",
        );
        let loaded = load(vec![
            SourceFile::new(MANIFEST, MANIFEST_TEXT),
            SourceFile::new("workflows/w.yaml", workflow.as_str()),
        ]);
        let found: Vec<(Code, &str)> = loaded
            .diagnostics
            .iter()
            .map(|d| (d.code, &workflow[d.span.start..d.span.end]))
            .collect();
        assert_eq!(
            found,
            [(Code::UnknownRoot, "trigerr"), (Code::UnknownStep, "a")]
        );
    }
}
