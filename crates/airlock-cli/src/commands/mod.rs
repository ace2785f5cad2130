//! One file per command.

mod approve_step;
mod audit;
mod check;
mod deploy;
pub(crate) mod diff;
mod explain;
mod hash;
mod init;
mod manual;
mod promote;
mod prune;

pub(crate) use promote::ops_error;
mod quickstart;
mod readiness;
mod records;
mod resume;
pub mod run;
mod runs;
mod schema;
mod secrets;
mod serve;
mod test;
mod token;
pub mod validate;
mod worker;

use crate::cli::{
    AuditAction, Cli, Color, Command, RunsAction, SecretsAction, StoreCommand, TokenCommand,
};
use crate::error::CliError;
use crate::render::Style;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let global = &cli.global;
    // Before anything is opened: a refused command reads and writes nothing.
    if global.server.is_some() {
        refuse_remote(&cli.command)?;
    }
    match &cli.command {
        Command::Init { dir, force } => init::run(global, dir, *force),
        Command::Quickstart {
            dir,
            no_serve,
            listen,
        } => quickstart::run(global, dir, !*no_serve, *listen),
        Command::Validate { format } => validate::run(global, *format),
        Command::Serve(args) => serve::run(global, args),
        Command::Token { command } => token::run(global, command),
        Command::Openapi => serve::openapi(),
        Command::Completions { shell } => manual::completions(*shell),
        Command::Man { out } => manual::man(out.as_deref()),
        Command::Schema { kind, out } => schema::run(global, *kind, out.as_deref()),
        Command::Worker {
            concurrency,
            lease,
            grace,
            log_format,
            listen,
        } => worker::run(
            global,
            worker::WorkerArgs {
                concurrency: *concurrency,
                lease: *lease,
                grace: *grace,
                log_format: *log_format,
                listen: *listen,
            },
        ),
        Command::Migrate => worker::migrate(global),
        Command::Store { command } => worker::store(global, command),
        Command::Hash { workflow } => hash::run(global, workflow.as_deref()),
        Command::Test { workflow, junit } => {
            test::run(global, workflow.as_deref(), junit.as_deref())
        }
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
            action:
                Some(RunsAction::Prune {
                    older_than,
                    environment,
                }),
            ..
        } => prune::run(global, *older_than, environment.as_deref()),
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
        Command::Resume {
            run,
            lease,
            patience,
        } => resume::run(global, run.as_deref(), *lease, *patience),
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
            action: SecretsAction::List { environment },
        } => secrets::list(global, environment.as_deref()),
        Command::Records { environment } => records::run(global, environment),
        Command::Check { environment } => check::run(global, environment),
        Command::Deploy { environment, actor } => {
            deploy::run(global, environment, actor.as_deref())
        }
        Command::Promote {
            workflow: None,
            config: true,
            to,
            author,
            ..
        } => promote::promote_config(global, to, author.as_deref()),
        Command::Promote {
            workflow,
            from,
            to,
            author,
            freeze_exception,
            ..
        } => promote::promote(
            global,
            promote::Ask {
                workflow: workflow.as_deref().unwrap_or_default(),
                from,
                to,
                author: author.as_deref(),
                freeze_exception: freeze_exception.as_deref(),
            },
        ),
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
            config,
            environment,
            target,
            actor,
        } => promote::rollback(
            global,
            &promote::subject(workflow.as_deref(), *config),
            environment,
            target.as_deref(),
            actor.as_deref(),
        ),
        Command::Releases {
            workflow,
            config,
            environment,
        } => promote::releases(
            global,
            &promote::subject(workflow.as_deref(), *config),
            environment,
        ),
        Command::Promotions {
            inbox: true,
            environment,
            status,
            approver,
        } => promote::inbox(
            global,
            environment.as_deref(),
            status.as_deref(),
            approver.as_deref(),
        ),
        Command::Promotions {
            status,
            environment,
            ..
        } => promote::promotions(global, status.as_deref(), environment.as_deref()),
        Command::Withdraw { request, author } => {
            promote::withdraw(global, request, author.as_deref())
        }
        Command::Disable {
            workflow,
            environment,
            actor,
        } => promote::disable(global, workflow, environment, actor.as_deref()),
        Command::Enable {
            workflow,
            environment,
            actor,
        } => promote::enable(global, workflow, environment, actor.as_deref()),
        Command::Diff { from, to, format } => diff::run(global, from, to, *format),
        Command::Readiness { workflow, check } => {
            readiness::run(global, workflow.as_deref(), *check)
        }
        Command::Audit {
            action: None,
            environment,
        } => audit::list(global, environment.as_deref()),
        Command::Audit {
            action: Some(AuditAction::Verify { expect }),
            environment,
        } => audit::verify(global, environment.as_deref(), expect.as_ref()),
        Command::Audit {
            action: Some(AuditAction::Head),
            environment,
        } => audit::head(global, environment.as_deref()),
    }
}

/// What a command does when `--server` (or AIRLOCK_SERVER) names a server.
enum Reach {
    /// It calls the server's API instead of the store (or, `test`, refuses in its own
    /// file).
    Api,
    /// It never touches a store, so a server changes nothing for it: ignored, so that
    /// AIRLOCK_SERVER set in a shell does not get in its way.
    Local,
    /// It acts on the local store or in this process and the API has no equivalent:
    /// refused, rather than silently doing it here while the user believes it happened
    /// on the server.
    Refused {
        command: &'static str,
        reason: &'static str,
        hint: &'static str,
    },
}

/// Every command's answer to `--server`, in one exhaustive match: a new command has to
/// say here whether it works remotely, so none acts on the local store by default.
fn reach(command: &Command) -> Reach {
    match command {
        // Writes files in a folder; no store, no server.
        Command::Init { .. } => Reach::Local,
        // Makes, runs and serves a demo project of its own in a folder of its own: the
        // server it talks to is the one it starts (it clears `server` itself).
        Command::Quickstart { .. } => Reach::Local,
        // Hashes the working copy here, which is what `deploy --server` sends.
        Command::Hash { .. } => Reach::Local,
        // Text compiled into the binary.
        Command::Explain { .. } => Reach::Local,
        // This binary's document; a server serves its own at /openapi.json.
        Command::Openapi => Reach::Local,
        // Text made from this binary's own arguments.
        Command::Completions { .. } | Command::Man { .. } => Reach::Local,
        // Schemas compiled into the binary.
        Command::Schema { .. } => Reach::Local,
        // The server runs the suites on what it received and records the evidence.
        Command::Test { .. } => Reach::Api,
        Command::Validate { .. }
        | Command::Run { .. }
        | Command::Runs {
            action: None | Some(RunsAction::Show { .. } | RunsAction::Retry { .. }),
            ..
        }
        | Command::ApproveStep { .. }
        | Command::Secrets { .. }
        | Command::Records { .. }
        | Command::Check { .. }
        | Command::Deploy { .. }
        | Command::Promote { .. }
        | Command::Approve { .. }
        | Command::Reject { .. }
        | Command::Rollback { .. }
        | Command::Releases { .. }
        | Command::Promotions { .. }
        | Command::Withdraw { .. }
        | Command::Disable { .. }
        | Command::Enable { .. }
        | Command::Diff { .. }
        | Command::Readiness { .. }
        | Command::Audit { action: None, .. }
        | Command::Audit {
            action: Some(AuditAction::Head),
            ..
        } => Reach::Api,
        Command::Resume { .. } => Reach::Refused {
            command: "resume",
            reason: "it finishes in this process the runs left in the local store; a server resumes its own runs when their leases expire",
            hint: "run `airlock resume` where the server's store is (its folder, or --store URL), without --server",
        },
        Command::Token { command } => Reach::Refused {
            command: match command {
                TokenCommand::Create { .. } => "token create",
                TokenCommand::List => "token list",
                TokenCommand::Revoke { .. } => "token revoke",
            },
            reason: "it manages tokens in the store directly, and the API does not create, list or revoke tokens",
            hint: "tokens are made where the store is, by someone with access to it: run `airlock token …` there (its folder, or --store URL), without --server",
        },
        Command::Worker { .. } => Reach::Refused {
            command: "worker",
            reason: "it executes runs in this process from a store it opens itself",
            hint: "point it at the server's store with --store URL (postgres://…), without --server",
        },
        Command::Serve(_) => Reach::Refused {
            command: "serve",
            reason: "it starts a server here rather than connecting to one",
            hint: "drop --server (and unset AIRLOCK_SERVER) to serve; --listen says where",
        },
        Command::Runs {
            action: Some(RunsAction::Prune { .. }),
            ..
        } => Reach::Refused {
            command: "runs prune",
            reason: "it deletes history from the store it opens, and the API has no retention",
            hint: "run it where the store is (its folder, or --store URL), without --server; from cron, say",
        },
        Command::Migrate => Reach::Refused {
            command: "migrate",
            reason: "it upgrades a store's schema by opening the store itself, and the API has no migration",
            hint: "name the store with --store URL (or run it in the project folder), without --server",
        },
        Command::Store {
            command: StoreCommand::Copy { .. },
        } => Reach::Refused {
            command: "store copy",
            reason: "it copies one store into another by opening both itself, and the API has no copy",
            hint: "name both with --from and --to, without --server",
        },
        Command::Audit {
            action: Some(AuditAction::Verify { .. }),
            ..
        } => Reach::Refused {
            command: "audit verify",
            reason: "it checks the whole hash chain, which links every environment's events, and the API answers one environment's",
            hint: "run `airlock audit verify` where the store is (its folder, or --store URL); `airlock audit head --server URL` gives an anchor to check it against",
        },
    }
}

/// Refuses `--server` for a command that would act on the local store or process.
fn refuse_remote(command: &Command) -> Result<(), CliError> {
    match reach(command) {
        Reach::Api | Reach::Local => Ok(()),
        Reach::Refused {
            command,
            reason,
            hint,
        } => Err(CliError::usage(
            format!("`{command}` does not work with --server: {reason}"),
            Some(hint.to_owned()),
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The refusal `--server` meets before `args` run, if any.
    fn refusal(args: &[&str]) -> Option<CliError> {
        let all = [&["airlock", "--server", "http://127.0.0.1:9"][..], args].concat();
        let cli = Cli::try_parse_from(all).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        refuse_remote(&cli.command).err()
    }

    #[test]
    fn commands_on_the_local_store_or_process_refuse_a_server_and_name_themselves() {
        let cases: [(&[&str], &str); 10] = [
            (&["resume"], "resume"),
            (&["runs", "prune", "--older-than", "30d"], "runs prune"),
            (
                &[
                    "token", "create", "--env", "staging", "--role", "admin", "--name", "n",
                ],
                "token create",
            ),
            (&["token", "list"], "token list"),
            (&["token", "revoke", "tok_x"], "token revoke"),
            (&["worker"], "worker"),
            (&["serve"], "serve"),
            (&["migrate"], "migrate"),
            (
                &["store", "copy", "--from", "a.db", "--to", "postgres://h/d"],
                "store copy",
            ),
            (&["audit", "verify"], "audit verify"),
        ];
        for (args, name) in cases {
            let error = refusal(args).unwrap_or_else(|| panic!("{args:?} accepted --server"));
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("`{name}` does not work with --server: ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(
                error.help().is_some_and(|h| !h.is_empty()),
                "{args:?} gives no hint"
            );
        }
    }

    #[test]
    fn commands_that_call_the_api_or_touch_no_store_accept_a_server() {
        let accepted: [&[&str]; 26] = [
            // Touch no store (AIRLOCK_SERVER set in a shell must not get in their way).
            &["init", "somewhere"],
            &["quickstart"],
            &["hash"],
            &["explain", "AL0001"],
            &["openapi"],
            // Call the API (`test` refuses in test.rs, with its own reason).
            &["test"],
            &["validate"],
            &["run", "greet", "--env", "staging"],
            &["runs"],
            &["runs", "show", "run_x"],
            &["runs", "retry", "run_x"],
            &["approve-step", "run_x", "review"],
            &["secrets", "set", "NAME", "--env", "staging"],
            &["secrets", "list"],
            &["records", "--env", "staging"],
            &["check", "--env", "staging"],
            &["deploy", "--env", "staging"],
            &["promote", "greet"],
            &["approve", "req_x"],
            &["reject", "req_x", "--reason", "no"],
            &["rollback", "greet"],
            &["releases", "greet"],
            &["diff", "staging", "production"],
            &["readiness"],
            &["audit"],
            &["audit", "head"],
        ];
        for args in accepted {
            assert!(refusal(args).is_none(), "{args:?} refused --server");
        }
    }
}
