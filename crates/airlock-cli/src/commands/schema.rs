//! `airlock schema [KIND] [--out DIR]`: the editor schemas compiled into the binary
//! (`airlock_core::schema`), printed or written, so an editor checks files offline.

use crate::cli::{Global, SchemaKind};
use crate::error::CliError;
use airlock_core::schema::FileKind;
use std::path::Path;
use std::process::ExitCode;

pub fn run(
    global: &Global,
    kind: Option<SchemaKind>,
    out: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let kinds: Vec<FileKind> = match kind {
        Some(kind) => vec![kind.file_kind()],
        None => FileKind::ALL.to_vec(),
    };
    let Some(dir) = out else {
        let [kind] = kinds.as_slice() else {
            return Err(CliError::usage(
                "name the kind of file whose schema to print",
                Some(
                    "`airlock schema manifest`, `airlock schema workflow` or `airlock schema \
                     scenario`; or `airlock schema --out DIR` to write all three"
                        .into(),
                ),
            ));
        };
        for line in kind.schema().lines() {
            outln!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, e))?;
    let mut written = Vec::new();
    for kind in kinds {
        let path = dir.join(kind.file_name());
        std::fs::write(&path, kind.schema()).map_err(|e| CliError::io("write", &path, e))?;
        written.push(path.display().to_string());
    }
    if global.json {
        crate::output::json(&serde_json::json!({ "written": written }));
    } else {
        for path in &written {
            outln!("wrote {path}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
