//! JSON Schemas (draft 2020-12) for the three kinds of file a project holds, so that an
//! editor (yaml-language-server in VS Code, JetBrains, Neovim) completes and checks them
//! offline. The files under `schemas/` are the one source: embedded here for
//! `airlock schema`, written into every new project by `airlock init` (`schemas/`), and
//! held to the decoders in `model` by `tests/schema.rs`.

use crate::project::MANIFEST;

/// One kind of project file, with its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `airlock.yaml`.
    Manifest,
    /// `workflows/NAME.yaml`.
    Workflow,
    /// `tests/WORKFLOW/NAME.yaml`.
    Scenario,
}

/// The folder of a project that holds the schemas its files' modelines point to.
pub const DIR: &str = "schemas";

impl FileKind {
    /// Every kind, in the order `airlock schema` prints them.
    pub const ALL: [FileKind; 3] = [FileKind::Manifest, FileKind::Workflow, FileKind::Scenario];

    /// The kind as `airlock schema` names it.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Manifest => "manifest",
            FileKind::Workflow => "workflow",
            FileKind::Scenario => "scenario",
        }
    }

    /// The kind named `name` (`manifest`, `workflow`, `scenario`).
    pub fn parse(name: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind of a project file at `path` (relative to the project), if it is one.
    pub fn of_path(path: &str) -> Option<FileKind> {
        let parts: Vec<&str> = path.split('/').collect();
        let yaml = |name: &str| name.ends_with(".yaml") || name.ends_with(".yml");
        match parts.as_slice() {
            [MANIFEST] => Some(FileKind::Manifest),
            ["workflows", file] if yaml(file) => Some(FileKind::Workflow),
            ["tests", _, file] if yaml(file) => Some(FileKind::Scenario),
            _ => None,
        }
    }

    /// The schema's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Manifest => "manifest.schema.json",
            FileKind::Workflow => "workflow.schema.json",
            FileKind::Scenario => "scenario.schema.json",
        }
    }

    /// The schema, as JSON text.
    pub fn schema(self) -> &'static str {
        match self {
            FileKind::Manifest => include_str!("../schemas/manifest.schema.json"),
            FileKind::Workflow => include_str!("../schemas/workflow.schema.json"),
            FileKind::Scenario => include_str!("../schemas/scenario.schema.json"),
        }
    }

    /// The first line of a file of this kind in a project whose schemas are in [`DIR`]:
    /// the path is relative to the file, as yaml-language-server reads it.
    pub fn modeline(self) -> String {
        let up = match self {
            FileKind::Manifest => "",
            FileKind::Workflow => "../",
            FileKind::Scenario => "../../",
        };
        format!(
            "# yaml-language-server: $schema={up}{DIR}/{}",
            self.file_name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_and_project_paths_have_theirs() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::parse(kind.name()), Some(kind));
            let schema: serde_json::Value =
                serde_json::from_str(kind.schema()).expect("a schema is JSON");
            assert_eq!(
                schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
        }
        assert_eq!(FileKind::parse("workflows"), None);
        assert_eq!(FileKind::of_path("airlock.yaml"), Some(FileKind::Manifest));
        assert_eq!(
            FileKind::of_path("workflows/a.yml"),
            Some(FileKind::Workflow)
        );
        assert_eq!(
            FileKind::of_path("tests/a/b.yaml"),
            Some(FileKind::Scenario)
        );
        assert_eq!(FileKind::of_path("tests/a.yaml"), None);
        assert_eq!(FileKind::of_path("db/orders.sql"), None);
    }

    /// Every starter file of a kind points at its schema, and `airlock init` writes that
    /// schema where the pointer leads.
    #[test]
    fn every_starter_file_points_at_a_schema_the_starter_holds() {
        let mut seen = 0;
        for (path, text) in crate::scaffold::FILES {
            let Some(kind) = FileKind::of_path(path) else {
                continue;
            };
            seen += 1;
            let first = text.lines().next().unwrap_or_default();
            assert_eq!(first, kind.modeline(), "{path}");
            let target = first
                .rsplit_once('=')
                .map(|(_, target)| target)
                .unwrap_or_default();
            let depth = path.matches('/').count();
            let resolved = target.trim_start_matches("../");
            assert_eq!(target.len() - resolved.len(), 3 * depth, "{path}");
            let written = crate::scaffold::FILES
                .iter()
                .find(|(p, _)| *p == resolved)
                .unwrap_or_else(|| {
                    panic!("{path} points at {resolved}, which init does not write")
                });
            assert_eq!(written.1, kind.schema());
        }
        assert_eq!(seen, 11);
    }
}
