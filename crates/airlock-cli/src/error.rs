//! The CLI's errors and the exit codes they map to.

/// A check ran and failed (drift found, gate not met).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Bad usage or bad input.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },
    /// The problems were already printed (a project's diagnostics, with their sources):
    /// nothing more to say, exit 2.
    #[error("the problems above")]
    Reported,
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn usage(message: impl Into<String>, help: Option<String>) -> Self {
        CliError::Usage {
            message: message.into(),
            help,
        }
    }

    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        CliError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    pub fn help(&self) -> Option<&str> {
        match self {
            CliError::Usage { help, .. } => help.as_deref(),
            CliError::Io { .. } | CliError::Reported => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        EXIT_USAGE
    }
}
