//! One file per command.

mod approve_step;
mod audit;
mod check;
mod deploy;
mod diff;
mod explain;
mod hash;
mod init;
mod promote;

pub(crate) use promote::ops_error;
mod quickstart;
mod readiness;
mod records;
mod resume;
pub mod run;
mod runs;
mod secrets;
mod serve;
mod test;
mod token;
pub mod validate;
mod worker;

use crate::cli::{AuditAction, Cli, Color, Command, RunsAction, SecretsAction};
use crate::error::CliError;
use crate::render::Style;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let global = &cli.global;
    match &cli.command {
        Command::Init { dir } => init::run(global, dir),
        Command::Quickstart {
            dir,
            no_serve,
            listen,
        } => quickstart::run(global, dir, !*no_serve, *listen),
        Command::Validate => validate::run(global),
        Command::Serve(args) => serve::run(global, args),
        Command::Token { command } => token::run(global, command),
        Command::Openapi => serve::openapi(),
        Command::Worker {
            concurrency,
            lease,
            grace,
            log_format,
        } => worker::run(global, *concurrency, *lease, *grace, *log_format),
        Command::Migrate => worker::migrate(global),
        Command::Store { command } => worker::store(global, command),
        Command::Hash { workflow } => hash::run(global, workflow.as_deref()),
        Command::Test { workflow } => test::run(global, workflow.as_deref()),
        Command::Explain { code } => explain::run(global, code),
        Command::Run {
            workflow,
            environment,
            input,
            lease,
        } => run::run(
            global,
            run::Options {
                workflow,
                environment,
                input: input.as_deref(),
                lease: *lease,
            },
        ),
        Command::Runs {
            action: Some(RunsAction::Show { id }),
            ..
        } => runs::show(global, id),
        Command::Runs {
            action: Some(RunsAction::Retry { id }),
            ..
        } => runs::retry(global, id),
        Command::Runs {
            action: None,
            environment,
            workflow,
            status,
            limit,
        } => runs::list(
            global,
            runs::ListOptions {
                environment: environment.as_deref(),
                workflow: workflow.as_deref(),
                status: status.as_deref(),
                limit: *limit,
            },
        ),
        Command::Resume { lease, patience } => resume::run(global, *lease, *patience),
        Command::ApproveStep {
            run,
            step,
            approver,
            reject,
        } => approve_step::run(global, run, step, approver.as_deref(), *reject),
        Command::Secrets {
            action: SecretsAction::Set { name, environment },
        } => secrets::set(global, name, environment),
        Command::Secrets {
            action: SecretsAction::List,
        } => secrets::list(global),
        Command::Records { environment } => records::run(global, environment),
        Command::Check { environment } => check::run(global, environment),
        Command::Deploy { environment, actor } => {
            deploy::run(global, environment, actor.as_deref())
        }
        Command::Promote {
            workflow,
            from,
            to,
            author,
        } => promote::promote(global, workflow, from, to, author.as_deref()),
        Command::Approve { request, approver } => {
            promote::decide(global, request, approver.as_deref(), true, None)
        }
        Command::Reject {
            request,
            approver,
            reason,
        } => promote::decide(global, request, approver.as_deref(), false, Some(reason)),
        Command::Rollback {
            workflow,
            environment,
            target,
            actor,
        } => promote::rollback(
            global,
            workflow,
            environment,
            target.as_deref(),
            actor.as_deref(),
        ),
        Command::Releases {
            workflow,
            environment,
        } => promote::releases(global, workflow, environment),
        Command::Diff { from, to } => diff::run(global, from, to),
        Command::Readiness { workflow } => readiness::run(global, workflow.as_deref()),
        Command::Audit { action: None } => audit::list(global),
        Command::Audit {
            action: Some(AuditAction::Verify),
        } => audit::verify(global),
    }
}

/// Diagnostics go to stderr; draw them fancy only for a terminal.
pub fn diagnostic_style(color: Color) -> Style {
    match color {
        Color::Always => Style::Fancy,
        Color::Never => Style::Plain,
        Color::Auto
            if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() =>
        {
            Style::Fancy
        }
        Color::Auto => Style::Plain,
    }
}
