//! `validate`: every problem of a loaded project, positioned, and what it holds.

use airlock_core::diagnostic::Diagnostic;
use airlock_core::project::Loaded;
use airlock_core::source::{NO_FILE, SourceFile};
use serde::{Deserialize, Serialize};

/// A project's check: its problems (none when `ok`) and what it declares. Deserialize
/// too: the CLI reads it back from the API and prints it as it prints its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// No problem was found.
    pub ok: bool,
    /// Every problem, sorted by file and position.
    pub errors: Vec<Problem>,
    /// The workflows' names.
    pub workflows: Vec<String>,
    /// The environments' names.
    pub environments: Vec<String>,
    /// The connectors' names.
    pub connectors: Vec<String>,
    /// How many scenarios there are.
    pub scenarios: usize,
}

/// One diagnostic with its place resolved to path, line and column (1-based).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub code: String,
    pub path: Option<String>,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Problem {
    /// Resolves a diagnostic's byte span in `files`.
    pub fn locate(diagnostic: &Diagnostic, files: &[SourceFile]) -> Self {
        let file = (diagnostic.file != NO_FILE).then(|| &files[diagnostic.file]);
        let (line, column) = file.map_or((0, 0), |f| f.line_col(diagnostic.span.start));
        let (end_line, end_column) = file.map_or((0, 0), |f| f.line_col(diagnostic.span.end));
        Self {
            code: diagnostic.code.as_str().to_owned(),
            path: file.map(|f| f.path.clone()),
            line,
            column,
            end_line,
            end_column,
            message: diagnostic.message.clone(),
            label: diagnostic.label.clone(),
            help: diagnostic.help.clone(),
        }
    }
}

/// The check of a loaded project.
pub fn validate(loaded: &Loaded) -> Validation {
    let project = &loaded.project;
    Validation {
        ok: loaded.diagnostics.is_empty(),
        errors: loaded
            .diagnostics
            .iter()
            .map(|d| Problem::locate(d, &project.files))
            .collect(),
        workflows: project
            .workflows
            .iter()
            .map(|w| w.workflow.name.value.clone())
            .collect(),
        environments: project
            .manifest
            .environments
            .iter()
            .map(|e| e.name.value.clone())
            .collect(),
        connectors: project
            .manifest
            .connectors
            .iter()
            .map(|c| c.name.value.clone())
            .collect(),
        scenarios: project.scenarios.len(),
    }
}

/// What `validate` checks beyond the files' text, on the folder they were read from: the
/// files a binding names (`ca_file`: readable PEM certificates, resolved against `root`)
/// and each binding's `proxy` (a URL its environment's egress admits). Appended to
/// `loaded`'s diagnostics, positioned at the value, sorted with the rest. Core cannot:
/// it does no I/O.
pub fn check_bindings(loaded: &mut Loaded, root: &std::path::Path) {
    use airlock_core::diagnostic::Code;
    use airlock_core::yaml::Value;
    let project = &loaded.project;
    let Some(file) = project.manifest_file else {
        return;
    };
    let mut found = Vec::new();
    for environment in &project.manifest.environments {
        let egress = airlock_connectors::Egress::new(
            environment.name.value.clone(),
            environment.egress.iter().map(|h| h.value.clone()).collect(),
        );
        for binding in &environment.bindings {
            let connector = &binding.connector.value;
            let env = &environment.name.value;
            for (key, expected) in [
                ("ca_file", "a file path"),
                ("proxy", "a URL such as `http://proxy.example:3128`"),
            ] {
                let Some(node) = binding.setting(key) else {
                    continue;
                };
                let text = match &node.value {
                    // Absent, as the connector reads it; a secret's value is judged when
                    // the connector is built.
                    Value::Null => continue,
                    Value::Str(text) if text.contains("${") => continue,
                    Value::Str(text) if !text.trim().is_empty() => text.trim(),
                    other => {
                        let written = match other {
                            Value::Str(_) => "an empty string",
                            other => other.type_name(),
                        };
                        found.push(
                            Diagnostic::new(
                                Code::WrongType,
                                file,
                                node.span,
                                format!(
                                    "`{key}` of `{connector}` must be {expected}, not {written}"
                                ),
                            )
                            .with_label(format!("expected {expected}")),
                        );
                        continue;
                    }
                };
                let problem = if key == "ca_file" {
                    airlock_connectors::tls::read_ca_file("ca_file", &root.join(text))
                        .err()
                        .map(|e| {
                            let e = e.written_as(std::path::Path::new(text));
                            (
                                format!("`ca_file` of `{connector}` in `{env}`: {e}"),
                                "not a readable PEM file of CA certificates",
                                "name a PEM file of one or more CA certificates, relative to the project folder".to_owned(),
                            )
                        })
                } else {
                    egress.check_proxy(text).err().map(|refused| {
                        (
                            refused.to_string(),
                            "this proxy cannot be used",
                            format!("write `http://host:port` and list the proxy's host in the egress of `{env}`"),
                        )
                    })
                };
                if let Some((message, label, help)) = problem {
                    found.push(
                        Diagnostic::new(Code::InvalidValue, file, node.span, message)
                            .with_label(label)
                            .with_help(help),
                    );
                }
            }
        }
    }
    if found.is_empty() {
        return;
    }
    loaded.diagnostics.extend(found);
    loaded
        .diagnostics
        .sort_by_key(|d| (d.file, d.span.start, d.span.end, d.code.as_str()));
}
