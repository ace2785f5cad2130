//! Who may do what, where: the authorization model of the API's scoped tokens. Pure.
//!
//! A token carries one [`Grant`]: a [`Role`] in ONE environment. [`permits`] answers
//! whether that grant allows an [`Action`] in an environment. The rules are:
//!
//! - **A grant never crosses environments.** There is no wildcard and no "all
//!   environments" role: a staging token can do nothing in production, not even read,
//!   because production's runs, journals and records are production's data (DESIGN §5.10,
//!   §5.11: nothing falls back to another environment).
//! - **Roles are fixed sets of actions**, written out in [`Role::allows`] as one match, so
//!   the whole matrix reads in one place and a new action must be placed in it explicitly.
//! - **Secrets are write-only.** No action reads a secret's value; [`Action::ListSecrets`]
//!   shows names and update times, [`Action::SetSecret`] replaces a value.
//!
//! This module decides what a *role* may attempt. The rules of the path between
//! environments are checked elsewhere, on top of it, and a permitted action may still be
//! refused by them: a protected environment changes only by promotion or rollback, an
//! approver must be listed in the target environment's `approvers` and may not approve
//! their own request, a promotion must pass its gate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a token may do in its environment. Ordered loosely by power; the order means
/// nothing for authorization (an approver may not run, a runner may not approve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (runs, journals, releases, readiness, records, audit, diff,
    /// deployments, test results) and validates; changes nothing.
    Viewer,
    /// A viewer that also starts runs, retries dead runs and resumes them: operates
    /// workflows without changing which version runs.
    Runner,
    /// A runner that also changes what runs: deploys, records test evidence, opens
    /// promotion requests, rolls back; sees secret names and has the server check its
    /// bindings (a binding's setup), never values.
    Deployer,
    /// A viewer that also decides promotion requests and approval steps. Deliberately
    /// not a deployer: the person who says yes is not the one who ships (four eyes).
    Approver,
    /// Everything in its environment, including setting secrets and managing tokens.
    Admin,
}

impl Role {
    /// Every role, in the order they are listed to users.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Runner,
        Role::Deployer,
        Role::Approver,
        Role::Admin,
    ];

    /// The role's name, as stored with a token and as written by users.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Deployer => "deployer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may perform `action` in its own environment: the role matrix.
    ///
    /// Every role is matched with every action by name (no `_` arm), so adding an action
    /// or a role does not compile until someone decides who may do it.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Viewer => matches!(action, Read | Validate),
            Role::Runner => matches!(action, Read | Validate | Run),
            Role::Deployer => matches!(
                action,
                Read | Validate | Run | Deploy | Test | Promote | Rollback | ListSecrets | Check
            ),
            Role::Approver => matches!(action, Read | Validate | Approve),
            Role::Admin => match action {
                Read | Validate | Run | Deploy | Test | Promote | Approve | Rollback
                | SetSecret | ListSecrets | Check | ManageTokens => true,
            },
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {given:?}: expected one of viewer, runner, deployer, approver, admin")]
pub struct UnknownRole {
    /// What was given.
    pub given: String,
}

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses a role name exactly as [`Role::as_str`] writes it (lowercase): a token's
    /// role is a stored value, so "Admin" is a typo to report, not a spelling to accept.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole {
                given: text.to_owned(),
            })
    }
}

/// Everything the API does, as far as authorization is concerned. Each endpoint maps to
/// exactly one action, in the environment the action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read anything of the environment: runs, journals, releases, readiness, test
    /// records, audit events, the parity diff, deployments, test results.
    Read,
    /// Check a project (parse and validate). Changes nothing, so a viewer may.
    Validate,
    /// Start a run, retry a dead run, resume one.
    Run,
    /// Make the environment run a version (refused for a protected environment by the
    /// path's own rules, whatever the role).
    Deploy,
    /// Record test evidence for a version.
    Test,
    /// Open a promotion request INTO the environment: the environment is the request's
    /// target, because what a promotion changes is what the target runs. A staging
    /// deployer therefore cannot ask for production; a production deployer can.
    Promote,
    /// Approve or reject a promotion request into the environment, or decide an
    /// approval step of a run in it.
    Approve,
    /// Make the environment run an earlier release again.
    Rollback,
    /// Store a secret's value (write-only: no action reads one back).
    SetSecret,
    /// List the names and update times of the environment's secrets, never values.
    ListSecrets,
    /// Reach each binding of the environment from the server (`check`): an OK or a reason
    /// per binding, never a value. Placed with [`Action::ListSecrets`] (deployer, admin)
    /// rather than with [`Action::Run`]: the reasons name the environment's secrets that
    /// are missing or refused and the addresses its bindings resolve to, which is a
    /// binding's setup, the deployer's concern; and it makes the server connect to every
    /// binding, called by a deployed workflow or not.
    Check,
    /// Create, list and revoke the environment's API tokens.
    ManageTokens,
}

impl Action {
    /// Every action, in the order of the role matrix.
    pub const ALL: [Action; 12] = [
        Action::Read,
        Action::Validate,
        Action::Run,
        Action::Deploy,
        Action::Test,
        Action::Promote,
        Action::Approve,
        Action::Rollback,
        Action::SetSecret,
        Action::ListSecrets,
        Action::Check,
        Action::ManageTokens,
    ];

    /// The action's name, as serialized (for logs and audit details).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Validate => "validate",
            Action::Run => "run",
            Action::Deploy => "deploy",
            Action::Test => "test",
            Action::Promote => "promote",
            Action::Approve => "approve",
            Action::Rollback => "rollback",
            Action::SetSecret => "set_secret",
            Action::ListSecrets => "list_secrets",
            Action::Check => "check",
            Action::ManageTokens => "manage_tokens",
        }
    }

    /// The action as a verb phrase, for "role R in E may not …".
    fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Validate => "validate",
            Action::Run => "run workflows",
            Action::Deploy => "deploy",
            Action::Test => "record test evidence",
            Action::Promote => "promote",
            Action::Approve => "approve",
            Action::Rollback => "roll back",
            Action::SetSecret => "set secrets",
            Action::ListSecrets => "list secrets",
            Action::Check => "check bindings",
            Action::ManageTokens => "manage tokens",
        }
    }

    /// The roles that may perform this action, in [`Role::ALL`]'s order.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|role| role.allows(self))
            .collect()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token holds: one role in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The one environment the grant is valid in (exact name).
    pub environment: String,
    /// What it allows there.
    pub role: Role,
}

/// Why an action was refused, worded for the person holding the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The token belongs to another environment. Checked first, so a token learns
    /// nothing about what its role could do elsewhere.
    #[error("this token is scoped to {scope}, not {requested}")]
    OtherEnvironment {
        /// The token's environment.
        scope: String,
        /// The environment the action is about.
        requested: String,
    },
    /// The token's role does not include the action.
    #[error("role {role} in {environment} may not {verb} (needs {needed})", verb = .action.verb(), needed = roles_phrase(&.action.roles()))]
    Role {
        /// The token's role.
        role: Role,
        /// The environment (the token's own).
        environment: String,
        /// What was attempted.
        action: Action,
    },
}

/// "deployer or admin", "admin".
fn roles_phrase(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    match names.split_last() {
        None => "no role".to_owned(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Whether `grant` allows `action` in `environment`.
///
/// `environment` is the environment the action is about: where a run starts, what is
/// deployed or rolled back, whose secrets or tokens change, and for [`Action::Promote`]
/// and [`Action::Approve`] the promotion's *target*. Environments are compared exactly.
pub fn permits(grant: &Grant, environment: &str, action: Action) -> Result<(), Denial> {
    if grant.environment != environment {
        return Err(Denial::OtherEnvironment {
            scope: grant.environment.clone(),
            requested: environment.to_owned(),
        });
    }
    if grant.role.allows(action) {
        Ok(())
    } else {
        Err(Denial::Role {
            role: grant.role,
            environment: grant.environment.clone(),
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(environment: &str, role: Role) -> Grant {
        Grant {
            environment: environment.to_owned(),
            role,
        }
    }

    /// The whole matrix, written out: one row per action, one column per role
    /// (viewer, runner, deployer, approver, admin). Changing who may do what means
    /// changing this table on purpose.
    #[test]
    fn the_role_matrix() {
        use Action::*;
        const Y: bool = true;
        const N: bool = false;
        let table: [(Action, [bool; 5]); 12] = [
            //              viewer runner deployer approver admin
            (Read, [Y, Y, Y, Y, Y]),
            (Validate, [Y, Y, Y, Y, Y]),
            (Run, [N, Y, Y, N, Y]),
            (Deploy, [N, N, Y, N, Y]),
            (Test, [N, N, Y, N, Y]),
            (Promote, [N, N, Y, N, Y]),
            (Approve, [N, N, N, Y, Y]),
            (Rollback, [N, N, Y, N, Y]),
            (SetSecret, [N, N, N, N, Y]),
            (ListSecrets, [N, N, Y, N, Y]),
            (Check, [N, N, Y, N, Y]),
            (ManageTokens, [N, N, N, N, Y]),
        ];
        let listed: Vec<Action> = table.iter().map(|(a, _)| *a).collect();
        assert_eq!(listed, Action::ALL, "the table covers every action");
        for (action, row) in table {
            for (role, expected) in Role::ALL.into_iter().zip(row) {
                let g = grant("staging", role);
                let verdict = permits(&g, "staging", action);
                assert_eq!(
                    verdict.is_ok(),
                    expected,
                    "{role} {action}: expected {}, got {verdict:?}",
                    if expected { "allowed" } else { "denied" }
                );
                if let Err(denial) = verdict {
                    assert_eq!(
                        denial,
                        Denial::Role {
                            role,
                            environment: "staging".into(),
                            action
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn a_grant_never_crosses_environments() {
        for role in Role::ALL {
            for action in Action::ALL {
                let g = grant("staging", role);
                let denial = permits(&g, "production", action)
                    .expect_err("a staging grant permits nothing in production");
                assert_eq!(
                    denial.to_string(),
                    "this token is scoped to staging, not production"
                );
                // Exact names: no prefix, case or empty-name match.
                for other in ["Staging", "staging-eu", "stag", ""] {
                    assert!(
                        permits(&g, other, action).is_err(),
                        "{role} in staging must not act in {other:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn denials_read_as_sentences() {
        let denial = permits(&grant("staging", Role::Viewer), "staging", Action::Deploy)
            .expect_err("viewers do not deploy");
        assert_eq!(
            denial.to_string(),
            "role viewer in staging may not deploy (needs deployer or admin)"
        );
        let denial = permits(
            &grant("production", Role::Deployer),
            "production",
            Action::Approve,
        )
        .expect_err("deployers do not approve");
        assert_eq!(
            denial.to_string(),
            "role deployer in production may not approve (needs approver or admin)"
        );
        let denial = permits(
            &grant("staging", Role::Runner),
            "staging",
            Action::SetSecret,
        )
        .expect_err("runners do not set secrets");
        assert_eq!(
            denial.to_string(),
            "role runner in staging may not set secrets (needs admin)"
        );
        let denial = permits(&grant("staging", Role::Approver), "staging", Action::Run)
            .expect_err("approvers do not run");
        assert_eq!(
            denial.to_string(),
            "role approver in staging may not run workflows (needs runner, deployer or admin)"
        );
    }

    /// Promotion is judged in the target: a staging deployer cannot open a request into
    /// production; a production deployer can.
    #[test]
    fn promotion_is_authorized_in_its_target() {
        let staging = grant("staging", Role::Deployer);
        assert!(permits(&staging, "production", Action::Promote).is_err());
        let production = grant("production", Role::Deployer);
        assert!(permits(&production, "production", Action::Promote).is_ok());
    }

    #[test]
    fn roles_parse_print_and_serialize_as_lowercase() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
            let json = serde_json::to_string(&role).expect("serialize");
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            let back: Role = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, role);
        }
        let error = "owner".parse::<Role>().expect_err("not a role");
        assert_eq!(
            error.to_string(),
            "unknown role \"owner\": expected one of viewer, runner, deployer, approver, admin"
        );
        assert!("Admin".parse::<Role>().is_err(), "role names are exact");
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }

    #[test]
    fn actions_serialize_as_snake_case() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).expect("serialize");
            assert_eq!(json, format!("\"{action}\""));
        }
        let grant = grant("staging", Role::Runner);
        let json = serde_json::to_value(&grant).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"environment": "staging", "role": "runner"})
        );
    }

    /// No role reads a secret's value: there is no such action, and listing names is
    /// not given to roles that only operate or approve.
    #[test]
    fn secrets_are_write_only() {
        assert_eq!(Action::SetSecret.roles(), vec![Role::Admin]);
        assert_eq!(
            Action::ListSecrets.roles(),
            vec![Role::Deployer, Role::Admin]
        );
    }
}
