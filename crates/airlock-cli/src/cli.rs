//! Arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Airlock: workflow automation where staging and production are first-class.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The project folder (the one holding airlock.yaml). Default: the current folder.
    #[arg(
        long,
        short = 'C',
        global = true,
        env = "AIRLOCK_PROJECT",
        value_name = "DIR"
    )]
    pub project: Option<PathBuf>,
    /// Machine-readable JSON on stdout instead of tables and diagnostics.
    #[arg(long, global = true)]
    pub json: bool,
    /// Colour and Unicode in diagnostics: auto (when stderr is a terminal), always or never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a working project: two environments, two workflows, scenarios.
    Init {
        /// Where to create it (created if absent; must be empty otherwise).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Create the starter project if absent, check it, and show what to do next.
    Quickstart {
        /// The project folder.
        #[arg(default_value = "airlock-demo")]
        dir: PathBuf,
    },
    /// Parse and check every file; print each problem with its place and a hint.
    Validate,
    /// Print each workflow's version id: the hash of its canonical form.
    Hash {
        /// Only this workflow.
        workflow: Option<String>,
    },
    /// Explain an error code (for example AL0003).
    Explain {
        /// The code.
        code: String,
    },
}
