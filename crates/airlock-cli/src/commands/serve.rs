//! `airlock serve`: the project's server, on the embedded store by default.

use crate::cli::{Global, LogFormat, ServeArgs};
use crate::error::CliError;
use crate::workspace::{self, Workspace};
use airlock_connectors::secrets::Fingerprinter;
use airlock_core::project::Loaded;
use airlock_engine::EngineOptions;
use airlock_server::{Context, ProjectSource, Server, ServerOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The project folder the server serves, read again whenever the API needs the working
/// copy (deploy, promotions, diff, readiness, validate), as each CLI command reads it.
struct ProjectFolder {
    root: PathBuf,
}

impl ProjectSource for ProjectFolder {
    fn load(&self) -> Result<Loaded, String> {
        let dir = crate::project_dir::ProjectDir {
            root: self.root.clone(),
        };
        dir.load().map_err(|e| e.to_string())
    }
}

pub fn run(global: &Global, args: &ServeArgs) -> Result<ExitCode, CliError> {
    use airlock_ops::retention;
    if let Some(retain) = args.retain
        && retain.as_millis() < retention::SHORTEST_MS as u128
    {
        return Err(CliError::usage(
            "--retain must be at least 1h",
            Some(retention::SHORTEST_WHY.into()),
        ));
    }
    if args.audit_anchor_file.is_some() && args.audit_anchor_every.is_zero() {
        return Err(CliError::usage(
            "--audit-anchor-every must be more than 0s",
            Some("say how often the anchor is written, e.g. `--audit-anchor-every 60s`".into()),
        ));
    }
    init_logging(args.log_format);
    let workspace = Workspace::open_serving(global)?;
    if workspace.deployed {
        // A server with no checkout: say which project it serves, since none is in sight.
        if workspace.project().manifest.environments.is_empty() {
            errln!(
                "note: no airlock.yaml here and nothing deployed yet: serving an empty project until `airlock deploy --server` uploads one"
            );
        } else {
            errln!(
                "note: no airlock.yaml here: serving the project deployed last ({} workflows); a deploy that changes airlock.yaml reaches webhooks and the engine at the next start",
                workspace.project().workflows.len()
            );
        }
    }
    serve(&workspace, args, |_| {})
}

/// Serves an opened workspace until SIGTERM or Ctrl-C; `ready` is called once the
/// listener is bound, with its address (the quickstart prints its curl then).
pub fn serve(
    workspace: &Workspace,
    args: &ServeArgs,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<ExitCode, CliError> {
    let lease_ms = args.lease.as_millis() as i64;
    let engine = workspace.engine(EngineOptions {
        lease_ms,
        concurrency: args.concurrency,
        ..EngineOptions::default()
    });
    let environments: Vec<&str> = workspace
        .project()
        .manifest
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let fingerprinter = Fingerprinter::load(&workspace.state_dir(), &environments)
        .ok()
        .flatten();
    let context = Context {
        store: workspace.store.clone(),
        manifest: Arc::new(workspace.project().manifest.clone()),
        keyring: workspace.keyring.clone(),
        fingerprinter,
        engine,
        clock: Arc::new(crate::workspace::CliClock),
        project: if workspace.deployed {
            Arc::new(airlock_ops::bundle::DeployedProject {
                store: workspace.store.clone(),
            }) as Arc<dyn ProjectSource>
        } else {
            Arc::new(ProjectFolder {
                root: workspace.root.clone(),
            })
        },
        root: workspace.root.clone(),
    };
    let options = ServerOptions {
        listen: args.listen,
        execute: !args.no_execute,
        schedules: !args.no_schedules,
        shutdown_grace: args.grace,
        retain: args.retain,
        audit_anchor: args
            .audit_anchor_file
            .as_ref()
            .map(|file| airlock_server::AuditAnchor {
                // Relative to where the command was started, as any path argument is.
                file: file.clone(),
                every: args.audit_anchor_every,
            }),
        lease_ms,
        concurrency: args.concurrency,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(airlock_server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        ..ServerOptions::default()
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let rt = workspace::runtime()?;
    rt.block_on(async {
        let server = Server::bind(context, options)
            .await
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        let address = server
            .local_addr()
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        outln!("listening on {scheme}://{address}");
        ready(address);
        server
            .run(airlock_server::shutdown_signal())
            .await
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        outln!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Structured logs on stderr: text or one JSON object per line; `RUST_LOG` filters
/// (default `info`). Nothing logs a secret's value: connectors and the server log names.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// `airlock openapi`: the document the server serves at `/openapi.json`.
pub fn openapi() -> Result<ExitCode, CliError> {
    let document = airlock_server::openapi_document();
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| CliError::usage(format!("cannot render the OpenAPI document: {e}"), None))?;
    outln!("{text}");
    Ok(ExitCode::SUCCESS)
}
