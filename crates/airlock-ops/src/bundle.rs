//! Project bundles: a project folder read into exactly the files `validate` reads, and the
//! form a deploy carries them in over the API (each file's bytes in base64, so that a file
//! that is not UTF-8 reaches the server as it is and is refused there by the same rule,
//! `airlock_core::bundle`, not lost in the client's reading).

use super::OpsError;
use super::validate::Problem;
use airlock_core::bundle::{Bundle, BundleProblem};
use airlock_core::project::{MANIFEST, is_project_file};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How deep under `workflows/` and `tests/` files are looked for.
const MAX_DEPTH: usize = 3;

/// The files of the project at `root` that `validate` reads, relative and `/`-separated:
/// the manifest, then every YAML file (and every project file) under `workflows/` and
/// `tests/`, in name order. Symbolic links are listed as they are found (not followed into),
/// so a reader can refuse them.
pub fn project_paths(root: &Path) -> std::io::Result<Vec<String>> {
    let mut paths = vec![MANIFEST.to_owned()];
    for folder in ["workflows", "tests"] {
        collect(root, Path::new(folder), 0, &mut paths)?;
    }
    Ok(paths)
}

fn collect(
    root: &Path,
    relative: &Path,
    depth: usize,
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    let full = root.join(relative);
    if depth > MAX_DEPTH || !full.is_dir() {
        return Ok(());
    }
    let mut names: Vec<_> = std::fs::read_dir(&full)?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let child = relative.join(&name);
        let meta = std::fs::symlink_metadata(root.join(&child))?;
        if meta.is_dir() {
            collect(root, &child, depth + 1, out)?;
            continue;
        }
        let text = child.to_string_lossy().replace('\\', "/");
        let is_yaml = text.ends_with(".yaml") || text.ends_with(".yml");
        if is_yaml || is_project_file(&text) || meta.file_type().is_symlink() {
            out.push(text);
        }
    }
    Ok(())
}

/// Why a folder could not be read into a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be read.
    #[error("cannot read `{}`: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The files break a bundle's rules (each problem names its file).
    #[error("the project cannot be bundled: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Problems { problems: Vec<BundleProblem> },
}

/// Reads the project at `root` into a bundle: the files [`project_paths`] lists, as bytes,
/// checked by `Bundle::from_bytes`. A symbolic link is refused, not followed: a bundle is
/// what the folder holds, not what it points at. A file over the per-file limit is not
/// read into memory.
pub fn read_folder(root: &Path) -> Result<Bundle, ReadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ReadError::Io { path, error }
    };
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for relative in project_paths(root).map_err(io(root))? {
        let full = root.join(&relative);
        let meta = std::fs::symlink_metadata(&full).map_err(io(&full))?;
        if meta.file_type().is_symlink() {
            problems.push(BundleProblem::Symlink { path: relative });
            continue;
        }
        let bytes = if meta.len() as usize > airlock_core::bundle::MAX_FILE_BYTES {
            // Its size is all the check needs: one byte over the limit stands for it.
            vec![
                b' ';
                meta.len()
                    .min(airlock_core::bundle::MAX_FILE_BYTES as u64 + 1) as usize
            ]
        } else {
            std::fs::read(&full).map_err(io(&full))?
        };
        files.push((relative, bytes));
    }
    match Bundle::from_bytes(files) {
        Ok(bundle) if problems.is_empty() => Ok(bundle),
        Ok(_) => Err(ReadError::Problems { problems }),
        Err(more) => {
            problems.extend(more);
            Err(ReadError::Problems { problems })
        }
    }
}

/// The project deployed last to `store`, loaded (problems, if any, as diagnostics; a
/// deployed bundle validated when it was deployed): `None` when nothing was deployed with
/// its files yet.
pub async fn latest_project(
    store: &dyn airlock_store::Store,
) -> Result<Option<airlock_core::project::Loaded>, OpsError> {
    Ok(store.latest_bundle().await?.map(|bundle| {
        airlock_core::project::load(
            bundle
                .files
                .into_iter()
                .map(|f| airlock_core::source::SourceFile::new(f.path, f.text))
                .collect(),
        )
    }))
}

/// The project a server with no folder of its own serves: the bundle deployed last, read
/// from the store again at each use (so a deploy by any process is what is judged next).
pub struct DeployedProject {
    pub store: std::sync::Arc<dyn airlock_store::Store>,
}

/// What a server with no project folder answers before anything was deployed to it.
pub const NOTHING_DEPLOYED: &str = "no project was deployed to this server yet: `airlock deploy --env ENV --server URL` uploads one";

impl super::ProjectSource for DeployedProject {
    fn load(&self) -> Result<airlock_core::project::Loaded, String> {
        // Called off the async threads (`load_served`), inside the runtime.
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        runtime
            .block_on(latest_project(&*self.store))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| NOTHING_DEPLOYED.to_owned())
    }
}

/// A bundle on the wire: its id as the sender computed it, and each file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WireBundle {
    /// The bundle's content id as its sender computed it (`airlock_core::bundle::Bundle::id`).
    pub id: String,
    /// Every file.
    pub files: Vec<WireFile>,
}

/// One file of a [`WireBundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WireFile {
    /// Relative to the project, `/`-separated.
    pub path: String,
    /// The file's bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

impl WireBundle {
    /// A checked bundle as it is sent.
    pub fn of(bundle: &Bundle) -> Self {
        Self {
            id: bundle.id(),
            files: bundle
                .files()
                .iter()
                .map(|f| WireFile {
                    path: f.path.clone(),
                    base64: STANDARD.encode(f.text.as_bytes()),
                })
                .collect(),
        }
    }

    /// The bundle received, checked by the same rules its sender's was (400 with every
    /// problem, positioned, when it breaks them), and the id its sender claimed for it.
    pub fn open(self) -> Result<(Bundle, String), OpsError> {
        let mut files = Vec::with_capacity(self.files.len());
        for file in self.files {
            let bytes = STANDARD.decode(file.base64.as_bytes()).map_err(|e| {
                OpsError::bad_request(
                    format!("`{}` in the bundle is not base64: {e}", file.path),
                    None,
                )
            })?;
            files.push((file.path, bytes));
        }
        let bundle = Bundle::from_bytes(files).map_err(|problems| refused(&problems))?;
        Ok((bundle, self.id))
    }
}

/// The refusal of a bundle that breaks the rules: 400, every problem as `validate` reports
/// one (code, file, line, column).
pub fn refused(problems: &[BundleProblem]) -> OpsError {
    let n = problems.len();
    OpsError::Invalid {
        message: format!(
            "the bundle is refused: {n} problem{}; nothing was deployed",
            if n == 1 { "" } else { "s" }
        ),
        problems: problems.iter().map(problem).collect(),
    }
}

/// A bundle's problem as `validate` reports a file's.
pub fn problem(p: &BundleProblem) -> Problem {
    let (line, column) = p.position();
    Problem {
        code: p.code().as_str().to_owned(),
        path: p.path().map(str::to_owned),
        line,
        column,
        end_line: line,
        end_column: column,
        message: p.to_string(),
        label: None,
        help: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_reads_into_the_files_validate_reads_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::create_dir_all(root.join("tests/greet")).unwrap();
        std::fs::write(root.join("airlock.yaml"), "project: x\n").unwrap();
        std::fs::write(root.join("workflows/greet.yaml"), "name: greet\n").unwrap();
        std::fs::write(root.join("tests/greet/hello.yaml"), "trigger: {}\n").unwrap();
        std::fs::write(root.join("workflows/notes.txt"), "not read").unwrap();
        std::fs::write(root.join("README.md"), "not read").unwrap();
        let bundle = read_folder(root).unwrap();
        let paths: Vec<&str> = bundle.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "airlock.yaml",
                "tests/greet/hello.yaml",
                "workflows/greet.yaml"
            ]
        );
        // Through the wire and back: the same bundle, the same id.
        let (opened, claimed) = WireBundle::of(&bundle).open().unwrap();
        assert_eq!(opened, bundle);
        assert_eq!(claimed, bundle.id());

        std::os::unix::fs::symlink("/etc/passwd", root.join("workflows/evil.yaml")).unwrap();
        let refused = read_folder(root).unwrap_err();
        assert!(
            matches!(&refused, ReadError::Problems { problems }
                if problems == &[BundleProblem::Symlink { path: "workflows/evil.yaml".into() }]),
            "{refused:?}"
        );
    }
}
