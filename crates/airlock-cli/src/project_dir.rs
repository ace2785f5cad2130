//! Reading a project folder into source files for the core.

use crate::error::CliError;
use airlock_core::project::MANIFEST;
use airlock_core::source::SourceFile;
use std::path::{Path, PathBuf};

/// The project folder to use, and where that choice came from (so staging and
/// production folders are never confused).
pub struct ProjectDir {
    pub root: PathBuf,
}

impl ProjectDir {
    pub fn locate(flag: Option<&Path>) -> Result<Self, CliError> {
        let root = match flag {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir().map_err(|e| CliError::io("read", Path::new("."), e))?,
        };
        if !root.join(MANIFEST).is_file() {
            return Err(CliError::usage(
                format!(
                    "no {MANIFEST} in `{}`: this folder is not an Airlock project",
                    root.display()
                ),
                Some("run `airlock init DIR` to create one, or pass `--project DIR`".into()),
            ));
        }
        Ok(Self { root })
    }

    /// The project loaded and checked as `validate` checks it: its files' text, then what
    /// they name in this folder (a binding's `ca_file`, `proxy`).
    pub fn load(&self) -> Result<airlock_core::project::Loaded, CliError> {
        let mut loaded = airlock_core::project::load(self.read()?);
        airlock_ops::validate::check_bindings(&mut loaded, &self.root);
        Ok(loaded)
    }

    /// The manifest, every workflow and every scenario, plus any YAML file under
    /// `workflows/` or `tests/` that sits in the wrong place (the core reports those).
    pub fn read(&self) -> Result<Vec<SourceFile>, CliError> {
        // The one listing of a project's files, which a deploy's bundle is made of too.
        let paths = airlock_ops::bundle::project_paths(&self.root)
            .map_err(|e| CliError::io("read", &self.root, e))?;
        paths
            .into_iter()
            .map(|relative| {
                let full = self.root.join(&relative);
                let metadata =
                    std::fs::metadata(&full).map_err(|e| CliError::io("read", &full, e))?;
                if metadata.len() as usize > airlock_core::yaml::MAX_FILE_BYTES {
                    // The core reports it with its code; do not read a huge file into memory.
                    return Ok(SourceFile::new(
                        relative,
                        " ".repeat(airlock_core::yaml::MAX_FILE_BYTES + 1),
                    ));
                }
                let text =
                    std::fs::read_to_string(&full).map_err(|e| CliError::io("read", &full, e))?;
                Ok(SourceFile::new(relative, text))
            })
            .collect()
    }
}
