//! Arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Airlock: workflow automation in which staging and production are first-class.
///
/// Workflows are files in git: a change is tried safely in staging, and production runs only
/// the exact version tested and approved there; going back is one command.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, propagate_version = true)]
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
    /// The store: `postgres://…` for scale-out, `sqlite:PATH`, or (by default) the project's
    /// embedded `.airlock/airlock.db`.
    #[arg(long, global = true, env = "AIRLOCK_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Work against a running server instead of the local store (run, runs, records,
    /// check, secrets set and list, audit, audit head, approve-step, deploy, promote,
    /// approve, reject, rollback, releases, readiness, diff, validate); the API token comes from
    /// AIRLOCK_TOKEN, and its name is who acts. Commands that act on the local store or
    /// process (resume, test, token, worker, serve, migrate, store copy, audit verify)
    /// refuse it; init, quickstart, hash, explain and openapi never touch a store and
    /// ignore it.
    #[arg(long, global = true, env = "AIRLOCK_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    Human,
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Human,
    Markdown,
}

/// The kinds of project file `airlock schema` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    Manifest,
    Workflow,
    Scenario,
}

impl SchemaKind {
    pub fn file_kind(self) -> airlock_core::schema::FileKind {
        use airlock_core::schema::FileKind;
        match self {
            SchemaKind::Manifest => FileKind::Manifest,
            SchemaKind::Workflow => FileKind::Workflow,
            SchemaKind::Scenario => FileKind::Scenario,
        }
    }
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
        /// Where to create it (created if absent; must be empty otherwise, unless --force).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the starter into a folder that is not empty, beside what is there; a file
        /// of the starter's that exists already is never overwritten (nothing is written then).
        #[arg(long)]
        force: bool,
    },
    /// Create the starter project if absent, check it, and show what to do next.
    Quickstart {
        /// The project folder.
        #[arg(default_value = "airlock-demo")]
        dir: PathBuf,
        /// Run the order workflow once and exit instead of serving.
        #[arg(long)]
        no_serve: bool,
        /// Where the server listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Parse and check every file; print each problem with its place and a hint.
    Validate {
        /// `human` (diagnostics with the offending lines, on stderr) or `github` (one
        /// GitHub Actions `::error file=…,line=…,col=…::` annotation per problem, on stdout,
        /// placed on the pull request's lines).
        #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
        format: ValidateFormat,
    },
    /// Serve the project: webhooks, schedules, the REST API, metrics; and execute runs.
    /// Embedded SQLite store by default.
    Serve(ServeArgs),
    /// API tokens: each grants one role in one environment; the store keeps only a hash.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the server's OpenAPI document.
    #[command(hide = true)]
    Openapi,
    /// Print a shell completion script: `airlock completions bash > /etc/bash_completion.d/airlock`,
    /// `airlock completions zsh > ~/.zfunc/_airlock`, `airlock completions fish >
    /// ~/.config/fish/completions/airlock.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (`airlock.1` and one per command, `airlock-deploy.1`, …) into
    /// DIR, or print `airlock.1` on stdout without one: `airlock man | man -l -`.
    Man {
        /// Where to write the pages (created if absent).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema (2020-12) of a kind of project file, for editors:
    /// `airlock schema workflow`, or write all three (`manifest.schema.json`,
    /// `workflow.schema.json`, `scenario.schema.json`) into DIR with `--out DIR`, replacing
    /// older copies. `airlock init` writes them into the project's `schemas/`, where each
    /// file's `# yaml-language-server: $schema=…` first line points.
    Schema {
        /// The kind of file: `manifest` (airlock.yaml), `workflow` (workflows/NAME.yaml) or
        /// `scenario` (tests/WORKFLOW/NAME.yaml). With `--out`, only that one is written.
        #[arg(value_enum)]
        kind: Option<SchemaKind>,
        /// Where to write the schemas (created if absent).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Execute runs only (no HTTP): an extra executor beside `serve`, usually with
    /// `--store postgres://…`, on this machine or another.
    Worker {
        /// Runs executed at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The lease this process takes on the runs it claims.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        lease: std::time::Duration,
        /// After SIGTERM, how long running runs may take to finish.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// Log lines as text or JSON.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) at ADDR, e.g.
        /// 127.0.0.1:9090; port 0 takes a free one (the address is printed).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Create or upgrade the store's schema (`--store`; the embedded file by default).
    Migrate,
    /// Move a store's whole history: `airlock store copy --from sqlite:PATH --to postgres://…`.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Run the scenarios under tests/ offline, with coverage; record the result as evidence
    /// for each workflow's version hash.
    Test {
        /// Only this workflow's scenarios.
        workflow: Option<String>,
        /// Also write the results as JUnit XML to FILE (one test case per scenario), for a
        /// CI system's test report.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Print each workflow's version id: the hash of its canonical form.
    Hash {
        /// Only this workflow.
        workflow: Option<String>,
    },
    /// Run a workflow once, durably, in an environment, and print its journal as it goes.
    /// Against a server (`--server`, a runner's token), the server runs what it has
    /// deployed there and this command follows the run.
    Run {
        /// The workflow.
        workflow: String,
        /// The environment to run in.
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
        /// A JSON file: the trigger's body.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// How long this process holds a run without writing before another may take it
        /// over (against a server, the server's own lease applies).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        lease: std::time::Duration,
    },
    /// List runs, show one with its journal, or retry a dead one.
    Runs {
        #[command(subcommand)]
        action: Option<RunsAction>,
        /// Only this environment.
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this status (queued, running, waiting, succeeded, failed, dead).
        #[arg(long)]
        status: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Finish the runs a stopped process left behind (after their lease expires); with RUN,
    /// that run alone, followed until it finishes or waits for a person.
    Resume {
        /// Only this run: no other is claimed or executed.
        run: Option<String>,
        /// The lease this process takes on the runs it claims.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        lease: std::time::Duration,
        /// How long to wait for runs held by a stopped process to become free.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        patience: std::time::Duration,
    },
    /// Approve (or reject) a step that waits for a person; the run then continues.
    ///
    /// The approver (`--as` locally, the token's name against a server) must be one of
    /// the run's environment's approvers.
    ApproveStep {
        /// The run.
        run: String,
        /// The approval step.
        step: String,
        /// Who decides (locally; against a server, the token's name decides).
        #[arg(long = "as", value_name = "NAME")]
        approver: Option<String>,
        /// Reject instead of approving.
        #[arg(long)]
        reject: bool,
    },
    /// Store a credential for one environment (read from stdin), or list names.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// List the calls record-mode bindings received (test records).
    Records {
        /// The environment.
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
    },
    /// Confirm every binding of an environment: reached for real, within its egress.
    /// Against a server (`--server`, a deployer's token), from the server's side: its
    /// keys, secrets and network.
    Check {
        /// The environment.
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
    },
    /// Make an unprotected environment run the working copy's workflow versions.
    ///
    /// Against a server, the server deploys its own working copy, and only when it hashes
    /// to exactly the versions this working copy hashes to.
    Deploy {
        /// The environment (a protected one is refused: use `promote`).
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
        /// Who deploys (recorded in the audit log; default `cli`; against a server, the
        /// token's name).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Open a promotion request for the exact version FROM runs, and print the policy's verdict.
    ///
    /// Locally `--as` says who asks; against a server (`--server`) the token's name does.
    Promote {
        /// The workflow (none with `--config`).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        workflow: Option<String>,
        /// Promote the working copy's configuration of the target instead (its bindings,
        /// egress, approvers, declared secrets, and the differences and rules about it):
        /// `airlock promote --config --to production`.
        #[arg(long)]
        config: bool,
        /// The source environment.
        #[arg(long, default_value = "staging")]
        from: String,
        /// The target environment.
        #[arg(long, default_value = "production")]
        to: String,
        /// Who asks (cannot approve their own request); against a server, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        author: Option<String>,
        /// Why this promotion goes ahead inside a freeze window of the policy: kept with the
        /// request, shown to its approvers and audited. Without it a freeze refuses.
        #[arg(long, value_name = "REASON")]
        freeze_exception: Option<String>,
    },
    /// Approve a promotion request; when every requirement holds it becomes a release.
    ///
    /// The approver (`--as` locally, the token's name against a server) must be an
    /// approver of the target environment and not the request's author.
    Approve {
        /// The request.
        request: String,
        /// Who approves; against a server, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        approver: Option<String>,
    },
    /// Reject a promotion request.
    Reject {
        /// The request.
        request: String,
        /// Who rejects; against a server, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        approver: Option<String>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Make the previous (or a named) release current again, at once.
    Rollback {
        /// The workflow (none with `--config`). Rolling back a first release takes the
        /// workflow out of the environment (as `disable`).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        workflow: Option<String>,
        /// Roll back the environment's configuration instead.
        #[arg(long)]
        config: bool,
        /// The environment.
        #[arg(long = "env", value_name = "ENV", default_value = "production")]
        environment: String,
        /// The release to return to (default: the one before the current).
        #[arg(long = "to", value_name = "RELEASE")]
        target: Option<String>,
        /// Who rolls back (default `cli`; against a server, the token's name).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Release history: who, when, which hash, and the failure rate before and after each.
    Releases {
        /// The workflow (none with `--config`).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        workflow: Option<String>,
        /// The environment's configuration releases instead.
        #[arg(long)]
        config: bool,
        /// The environment.
        #[arg(long = "env", value_name = "ENV", default_value = "production")]
        environment: String,
    },
    /// The promotion requests, newest first, with each open one's verdict now: the
    /// approvers' inbox.
    Promotions {
        /// Only requests of this status: open, released, rejected, withdrawn, expired.
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only requests into this environment (against a server: the token's, unless given).
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
        /// Only the open requests you may decide (an approver of their target, not their
        /// author), each with its verdict requirement by requirement.
        #[arg(long)]
        inbox: bool,
        /// Whose inbox, here (`--inbox`); against a server, the token's name.
        #[arg(long = "as", value_name = "NAME", requires = "inbox")]
        approver: Option<String>,
    },
    /// Take back your own open promotion request.
    Withdraw {
        /// The request.
        request: String,
        /// Who withdraws (the request's author); against a server, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        author: Option<String>,
    },
    /// Take a workflow out of an environment: its triggers stop, runs in flight finish.
    /// Recorded as a release; `enable` brings it back.
    Disable {
        /// The workflow.
        workflow: String,
        /// The environment.
        #[arg(long = "env", value_name = "ENV", default_value = "production")]
        environment: String,
        /// Who disables it; against a server, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Bring a disabled workflow back on the version it ran: at once in an unprotected
    /// environment, through the gate (a request its approvers decide) in a protected one.
    Enable {
        /// The workflow.
        workflow: String,
        /// The environment.
        #[arg(long = "env", value_name = "ENV", default_value = "production")]
        environment: String,
        /// Who asks; against a server, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// The audit log; `verify` checks its hash chain.
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// Only the events of this environment (against a server: the token's
        /// environment, the only one it may read, unless given).
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
    },
    /// The parity report: logic, connector setup, permission model, data shapes and
    /// branching, each difference documented or drift; shared credentials flagged (by keyed
    /// fingerprint, never by value). Exit 1 on any drift.
    Diff {
        /// The first environment (usually the source of promotions: staging).
        from: String,
        /// The second environment (usually the target: production).
        to: String,
        /// `human` (tables) or `markdown` (GitHub-flavoured tables of what differs, for a
        /// pull-request comment).
        #[arg(long, value_enum, default_value_t = DiffFormat::Human)]
        format: DiffFormat,
    },
    /// The readiness checklist per workflow: what was tested, what differs, what is
    /// documented, how it moves and who owns the release, how it rolls back, and whether
    /// the target can run it (its newest `check`, its secrets, a freeze, its configuration
    /// as released). Exit 1 when any workflow is not ready.
    Readiness {
        /// Only this workflow.
        workflow: Option<String>,
        /// Check the target's bindings now first (as `airlock check --env TARGET`).
        #[arg(long)]
        check: bool,
    },
    /// Explain an error code (for example AL0003).
    Explain {
        /// The code.
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// One run with its journal.
    Show {
        /// The run.
        id: String,
    },
    /// Put a dead or failed run back in the queue and follow it; steps that succeeded are not run again.
    Retry {
        /// The run.
        id: String,
    },
    /// Retention: delete the runs accepted and finished more than a given time ago, with
    /// their journals (queued, running and waiting runs are kept). A pruned run's webhook
    /// idempotency key goes with it: keep runs longer than senders retry.
    Prune {
        /// How old a finished run must be to go, at least 1h (e.g. 30d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        older_than: i64,
        /// Only this environment's runs.
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsAction {
    /// Store NAME for one environment; the value is read from stdin, never an argument.
    Set {
        /// The secret's name, as declared under the environment's `secrets:`.
        name: String,
        /// The environment.
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
    },
    /// Every declared secret, set or not, with when it was set; never values.
    List {
        /// Only this environment's (against a server: the token's environment unless given).
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
    },
}

fn parse_duration_ms(text: &str) -> Result<i64, String> {
    airlock_core::duration::parse(text).map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    airlock_core::duration::parse(text).map(std::time::Duration::from_millis)
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain: exit 1 when any event was changed, removed or inserted, or
    /// when the chain no longer holds an anchor taken earlier (`--expect`).
    Verify {
        /// An anchor taken earlier, as `airlock audit head` printed it (`SEQ:HASH`): the
        /// chain must still reach event SEQ, with that hash. Without one, events removed
        /// from the chain's end cannot be told from events never written.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_anchor)]
        expect: Option<airlock_ops::AuditHead>,
    },
    /// Print the newest event's sequence number and hash as `SEQ:HASH`: an anchor to keep
    /// outside the store and give `audit verify --expect` later.
    Head,
}

fn parse_anchor(text: &str) -> Result<airlock_ops::AuditHead, String> {
    text.parse()
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Loopback by default; say 0.0.0.0:PORT to listen on every address.
    #[arg(long, default_value = "127.0.0.1:8080", env = "AIRLOCK_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Accept only: leave execution to other processes (`airlock worker`).
    #[arg(long)]
    pub no_execute: bool,
    /// Do not fire cron schedules from this process.
    #[arg(long)]
    pub no_schedules: bool,
    /// Runs executed at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The lease this process takes on the runs it claims.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: std::time::Duration,
    /// After SIGTERM, how long running steps may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: std::time::Duration,
    /// Retention: delete finished runs (and their journals) older than this, at start and
    /// every 10 minutes, as `airlock runs prune --older-than` does; at least 1h. Kept
    /// forever when absent.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retain: Option<std::time::Duration>,
    /// Write the audit chain's head (`SEQ:HASH`, as `airlock audit head` prints it) to
    /// this file at start, every `--audit-anchor-every` and on the way out, replacing it
    /// whole each time: copied off the machine, it is what `audit verify --expect` checks
    /// a chain against, so events removed from the chain's end are found.
    #[arg(long, value_name = "PATH")]
    pub audit_anchor_file: Option<PathBuf>,
    /// How often the audit anchor file is written.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "audit_anchor_file")]
    pub audit_anchor_every: std::time::Duration,
    /// Serve HTTPS with this certificate chain (PEM, leaf first), for an install without a
    /// reverse proxy in front. Needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "AIRLOCK_TLS_CERT"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "AIRLOCK_TLS_KEY"
    )]
    pub tls_key: Option<PathBuf>,
    /// Log lines as text or JSON (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once.
    Create {
        /// The environment it acts in.
        #[arg(long = "env")]
        environment: String,
        /// viewer, runner, deployer, approver or admin.
        #[arg(long)]
        role: String,
        /// Its name: the identity in the audit log, and the approver's name.
        #[arg(long)]
        name: String,
        /// Who creates it (recorded in the audit log).
        #[arg(long = "as", value_name = "NAME", default_value = "cli")]
        actor: String,
    },
    /// List tokens (names, environments, roles; never the tokens).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `airlock token list`).
        id: String,
        /// Who revokes it (recorded in the audit log).
        #[arg(long = "as", value_name = "NAME", default_value = "cli")]
        actor: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy everything (runs, journals, releases, evidence, secrets still sealed, the audit
    /// chain with its hashes) from an embedded SQLite store into an empty PostgreSQL one.
    Copy {
        /// The SQLite store: `sqlite:PATH` or a path.
        #[arg(long)]
        from: String,
        /// The PostgreSQL store: `postgres://…` (must be empty).
        #[arg(long)]
        to: String,
    },
}
