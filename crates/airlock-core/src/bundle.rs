//! A project bundle: exactly the files `validate` reads (the manifest, the workflows, the
//! scenarios), as a deploy carries them to a server, content-addressed.
//!
//! The bundle is checked here, from bytes, before anything decodes them: so a server that
//! receives one judges it by the same rules as the client that built it (limits, paths,
//! UTF-8), and neither side trusts the other's reading of a folder. What the files *mean*
//! is `project::load`'s, on [`Bundle::source_files`].

use crate::source::SourceFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// At most this many bytes in all.
pub const MAX_TOTAL_BYTES: usize = 8 * 1024 * 1024;
/// At most this many files.
pub const MAX_FILES: usize = 1_000;
/// At most this many bytes per file: the YAML parser's own limit.
pub const MAX_FILE_BYTES: usize = crate::yaml::MAX_FILE_BYTES;
/// The bundle's hashed form; part of the hash, so a new form never collides with an old id.
pub const FORM_VERSION: u32 = 1;

/// Why a bundle was refused. Each names the file, when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum BundleProblem {
    /// More than [`MAX_FILES`] files.
    #[error("the bundle has {count} files, more than {MAX_FILES}")]
    TooManyFiles {
        /// How many.
        count: usize,
    },
    /// More than [`MAX_TOTAL_BYTES`] in all.
    #[error("the bundle holds {bytes} bytes, more than {MAX_TOTAL_BYTES} (8 MiB)")]
    TooLarge {
        /// How many.
        bytes: usize,
    },
    /// One file over [`MAX_FILE_BYTES`].
    #[error("`{path}` is {bytes} bytes, more than {MAX_FILE_BYTES} (1 MiB)")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size.
        bytes: usize,
    },
    /// A path that is not a relative path inside the project.
    #[error("`{path}`: {why}")]
    BadPath {
        /// The path as sent.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The same path twice.
    #[error("`{path}` is in the bundle twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// Bytes that are not UTF-8 text.
    #[error("`{path}` is not UTF-8 text: an invalid byte at line {line}, column {column}")]
    NotUtf8 {
        /// The file.
        path: String,
        /// Where the first invalid byte is (1-based).
        line: usize,
        /// Its column, in characters (1-based).
        column: usize,
    },
    /// A symbolic link, which a bundle never follows.
    #[error("`{path}` is a symbolic link: a bundle holds files only")]
    Symlink {
        /// The link's path.
        path: String,
    },
}

impl BundleProblem {
    /// The diagnostic code it is reported under, as `validate` reports a file's problems.
    pub fn code(&self) -> crate::diagnostic::Code {
        use crate::diagnostic::Code;
        match self {
            Self::TooLarge { .. } | Self::FileTooLarge { .. } => Code::FileTooLarge,
            _ => Code::ProjectLayout,
        }
    }

    /// Where in its file (1-based line and column), when the problem has a place.
    pub fn position(&self) -> (usize, usize) {
        match self {
            Self::NotUtf8 { line, column, .. } => (*line, *column),
            _ => (0, 0),
        }
    }

    /// The file the problem is about, if one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::TooManyFiles { .. } | Self::TooLarge { .. } => None,
            Self::FileTooLarge { path, .. }
            | Self::BadPath { path, .. }
            | Self::Duplicate { path }
            | Self::NotUtf8 { path, .. }
            | Self::Symlink { path } => Some(path),
        }
    }
}

/// A checked bundle: relative paths, each once, sorted, every file UTF-8 within limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    files: Vec<SourceFile>,
}

/// Why a path cannot be in a bundle, or `None` when it can: relative, `/`-separated, no
/// empty, `.` or `..` segment, no backslash, no NUL, no drive letter.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("an empty path");
    }
    if path.starts_with('/') {
        return Some("an absolute path: a bundle's paths are relative to the project");
    }
    if path.contains('\\') {
        return Some("a backslash: a bundle's paths are separated by `/`");
    }
    if path.contains('\0') || path.chars().any(char::is_control) {
        return Some("a control character in the path");
    }
    if path.as_bytes().get(1) == Some(&b':') {
        return Some("a drive letter: a bundle's paths are relative to the project");
    }
    for segment in path.split('/') {
        match segment {
            "" => return Some("an empty segment (`//` or a trailing `/`)"),
            "." => return Some("a `.` segment"),
            ".." => return Some("a `..` segment: the path leaves the project"),
            _ => {}
        }
    }
    None
}

impl Bundle {
    /// Checks raw files (path, bytes) against the limits and the path rules, all of them:
    /// every problem is returned, not only the first. Nothing is decoded as YAML here.
    pub fn from_bytes(files: Vec<(String, Vec<u8>)>) -> Result<Self, Vec<BundleProblem>> {
        let mut problems = Vec::new();
        if files.len() > MAX_FILES {
            problems.push(BundleProblem::TooManyFiles { count: files.len() });
        }
        let total: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
        if total > MAX_TOTAL_BYTES {
            problems.push(BundleProblem::TooLarge { bytes: total });
        }
        let mut checked = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            if let Some(why) = path_problem(&path) {
                problems.push(BundleProblem::BadPath {
                    path,
                    why: why.to_owned(),
                });
                continue;
            }
            if bytes.len() > MAX_FILE_BYTES {
                problems.push(BundleProblem::FileTooLarge {
                    path,
                    bytes: bytes.len(),
                });
                continue;
            }
            match String::from_utf8(bytes) {
                Ok(text) => checked.push(SourceFile::new(path, text)),
                Err(e) => {
                    let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                    // Everything before the bad byte is UTF-8, so it has lines and columns.
                    let before = String::from_utf8_lossy(valid);
                    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                    problems.push(BundleProblem::NotUtf8 {
                        path,
                        line: before.matches('\n').count() + 1,
                        column: before[line_start..].chars().count() + 1,
                    });
                }
            }
        }
        checked.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in checked.windows(2) {
            if pair[0].path == pair[1].path {
                problems.push(BundleProblem::Duplicate {
                    path: pair[0].path.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(Self { files: checked })
        } else {
            Err(problems)
        }
    }

    /// The files, sorted by path.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The files for `project::load`.
    pub fn source_files(&self) -> Vec<SourceFile> {
        self.files.clone()
    }

    /// The bundle's id: SHA-256 over the form version and each file's path and bytes,
    /// length-prefixed (so no two bundles share a serialisation), in path order.
    pub fn id(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(format!("airlock-bundle/{FORM_VERSION}\n").as_bytes());
        for file in &self.files {
            for part in [file.path.as_bytes(), file.text.as_bytes()] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
        }
        hex::encode(hash.finalize())
    }

    /// The total size in bytes.
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|f| f.text.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> (String, Vec<u8>) {
        (path.to_owned(), text.as_bytes().to_vec())
    }

    #[test]
    fn the_id_follows_the_content_not_the_order() {
        let a = Bundle::from_bytes(vec![
            file("airlock.yaml", "a"),
            file("workflows/x.yaml", "b"),
        ])
        .unwrap();
        let b = Bundle::from_bytes(vec![
            file("workflows/x.yaml", "b"),
            file("airlock.yaml", "a"),
        ])
        .unwrap();
        assert_eq!(a.id(), b.id());
        let changed = Bundle::from_bytes(vec![
            file("airlock.yaml", "a"),
            file("workflows/x.yaml", "c"),
        ])
        .unwrap();
        assert_ne!(a.id(), changed.id());
        // A byte moved from one file's text to the next path's is another bundle.
        let shifted = Bundle::from_bytes(vec![file("ab", "c"), file("d", "")]).unwrap();
        let other = Bundle::from_bytes(vec![file("a", "bc"), file("d", "")]).unwrap();
        assert_ne!(shifted.id(), other.id());
    }

    #[test]
    fn paths_that_leave_the_project_are_refused() {
        for path in [
            "../etc/passwd",
            "/etc/passwd",
            "workflows/../../x.yaml",
            "workflows//x.yaml",
            "./airlock.yaml",
            "workflows\\x.yaml",
            "C:/x.yaml",
            "",
            "workflows/x.yaml/",
        ] {
            let refused = Bundle::from_bytes(vec![file(path, "x: 1")]).unwrap_err();
            assert!(
                matches!(&refused[..], [BundleProblem::BadPath { path: p, .. }] if p == path),
                "{path}: {refused:?}"
            );
        }
    }

    #[test]
    fn limits_utf8_and_duplicates_are_each_reported() {
        let refused = Bundle::from_bytes(vec![
            ("workflows/bad.yaml".into(), b"a\nb\xc3\xa9\xffc".to_vec()),
            ("big.yaml".into(), vec![b' '; MAX_FILE_BYTES + 1]),
            file("airlock.yaml", "a"),
            file("airlock.yaml", "b"),
        ])
        .unwrap_err();
        assert_eq!(
            refused,
            [
                BundleProblem::NotUtf8 {
                    path: "workflows/bad.yaml".into(),
                    line: 2,
                    column: 3
                },
                BundleProblem::FileTooLarge {
                    path: "big.yaml".into(),
                    bytes: MAX_FILE_BYTES + 1
                },
                BundleProblem::Duplicate {
                    path: "airlock.yaml".into()
                },
            ]
        );
        let many: Vec<_> = (0..=MAX_FILES)
            .map(|i| file(&format!("tests/x/{i}.yaml"), ""))
            .collect();
        assert_eq!(
            Bundle::from_bytes(many).unwrap_err(),
            [BundleProblem::TooManyFiles {
                count: MAX_FILES + 1
            }]
        );
        let heavy: Vec<_> = (0..9)
            .map(|i| (format!("tests/x/{i}.yaml"), vec![b' '; MAX_FILE_BYTES]))
            .collect();
        assert!(matches!(
            &Bundle::from_bytes(heavy).unwrap_err()[..],
            [BundleProblem::TooLarge { bytes }] if *bytes == 9 * MAX_FILE_BYTES
        ));
    }
}
