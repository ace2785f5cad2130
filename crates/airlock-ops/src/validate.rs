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
