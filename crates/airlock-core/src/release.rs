//! The path between environments: stored workflow versions, what each environment runs,
//! evidence bound to a version hash, promotion requests and their approvals, releases.

use crate::run::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A workflow version: the canonical form and the source it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersion {
    /// The version id (the canonical form's SHA-256).
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The canonical JSON.
    pub canonical: String,
    /// The YAML it was decoded from, so the exact version can be run again.
    pub source: String,
    /// When it was first stored.
    pub created_at: Timestamp,
}

/// Which version an environment runs for a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The environment.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The version id.
    pub version: String,
    /// Who made the change.
    pub actor: String,
    /// When.
    pub updated_at: Timestamp,
}

/// A fact about one workflow version: a scenario-suite result, a replay comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvidence {
    /// The workflow.
    pub workflow: String,
    /// The exact version the fact is about.
    pub version: String,
    /// What kind of fact (`scenarios`).
    pub kind: String,
    /// Whether it counts in the version's favour.
    pub passed: bool,
    /// The details: counts, coverage, uncovered items.
    pub summary: Value,
    /// When.
    pub at: Timestamp,
}

/// Evidence as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Its sequence number.
    pub id: i64,
    /// The fact.
    #[serde(flatten)]
    pub evidence: NewEvidence,
}

/// Where a promotion request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for its requirements (approvals) to hold.
    Open,
    /// It became a release.
    Released,
    /// An approver rejected it.
    Rejected,
    /// Its author took it back.
    Withdrawn,
    /// Nobody decided it within the time the policy gives a request.
    Expired,
}

impl RequestStatus {
    /// The status as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Released => "released",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Withdrawn => "withdrawn",
            RequestStatus::Expired => "expired",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => RequestStatus::Open,
            "released" => RequestStatus::Released,
            "rejected" => RequestStatus::Rejected,
            "withdrawn" => RequestStatus::Withdrawn,
            "expired" => RequestStatus::Expired,
            _ => return None,
        })
    }
}

/// "Run version H of workflow W in environment T", asked by someone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPromotionRequest {
    /// Its id (`req_…`).
    pub id: String,
    /// The workflow.
    pub workflow: String,
    /// The exact version the source environment runs.
    pub version: String,
    /// The source environment.
    pub from_environment: String,
    /// The target environment.
    pub to_environment: String,
    /// Who asked.
    pub author: String,
    /// When.
    pub created_at: Timestamp,
}

/// A promotion request as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRequest {
    /// The request.
    #[serde(flatten)]
    pub request: NewPromotionRequest,
    /// Where it stands.
    pub status: RequestStatus,
    /// When it was released, rejected, withdrawn or expired.
    pub closed_at: Option<Timestamp>,
}

/// A named person's decision on a promotion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The request.
    pub request: String,
    /// Who.
    pub approver: String,
    /// Yes or no.
    pub approved: bool,
    /// Why (required for a rejection by the CLI).
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// What made a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    /// An accepted promotion request.
    Promotion,
    /// A return to an earlier release's version.
    Rollback,
    /// A protected environment's first configuration, adopted from the files as the store
    /// first met it: the trust root every later configuration change is judged against.
    Adopted,
    /// The workflow taken out of the environment: its triggers stop, runs in flight finish.
    /// The release's `version` is the one that stopped running (what `enable` brings back).
    Disable,
}

impl ReleaseKind {
    /// The kind as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseKind::Promotion => "promotion",
            ReleaseKind::Rollback => "rollback",
            ReleaseKind::Adopted => "adopted",
            ReleaseKind::Disable => "disable",
        }
    }

    /// The kind stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "promotion" => ReleaseKind::Promotion,
            "rollback" => ReleaseKind::Rollback,
            "adopted" => ReleaseKind::Adopted,
            "disable" => ReleaseKind::Disable,
            _ => return None,
        })
    }

    /// Whether the environment runs the release's version from then on (a disable is the
    /// one release after which it runs none).
    pub fn runs_version(self) -> bool {
        self != ReleaseKind::Disable
    }
}

/// A release to record: the environment runs `version` of `workflow` from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRelease {
    /// Its id (`rel_…`).
    pub id: String,
    /// The environment.
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The version released.
    pub version: String,
    /// Promotion or rollback.
    pub kind: ReleaseKind,
    /// The promotion request it came from, if any (closed as released in the same write).
    pub request: Option<String>,
    /// Who asked for it.
    pub author: String,
    /// Who approved it.
    pub approvers: Vec<String>,
    /// The evidence and the policy's verdict at the time.
    pub evidence: Value,
    /// The release the caller believes is current (None: none yet). If another release
    /// happened meanwhile, the store refuses the write as a conflict.
    pub expected_current: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A release as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The release.
    #[serde(flatten)]
    pub release: NewRelease,
    /// The release that was current before it (what a rollback returns to).
    pub previous: Option<String>,
}

impl Release {
    /// The people the release belongs to: its owner (who asked for it) first, then its
    /// co-owners (who approved it), each once.
    pub fn owners(&self) -> Vec<String> {
        let mut people = vec![self.release.author.clone()];
        for approver in &self.release.approvers {
            if !people.contains(approver) {
                people.push(approver.clone());
            }
        }
        people
    }
}

/// The release a run of `version` ran on, in a history newest first: the newest release
/// of that version that made it run (a promotion, an adoption or an enable), never a
/// rollback's, so that after a rollback the owner of the release rolled back to is the
/// one who answers for its runs.
pub fn ran_on<'a>(history: &'a [Release], version: &str) -> Option<&'a Release> {
    history
        .iter()
        .find(|r| r.release.version == version && r.release.kind != ReleaseKind::Rollback)
}

/// A failure rate: failed runs of finished ones; `None` without a finished run.
pub fn failure_rate(finished: usize, failed: usize) -> Option<f64> {
    (finished > 0).then(|| failed as f64 / finished as f64)
}

/// The one rule for "this release fails more than the one before it": both have finished
/// runs, and the share of them that failed is higher now. The release history's rows,
/// readiness's rollback question and the `release.failure_rate` notification all judge
/// by it.
pub fn fails_more(now: (usize, usize), before: (usize, usize)) -> bool {
    match (failure_rate(now.0, now.1), failure_rate(before.0, before.1)) {
        (Some(now), Some(before)) => now > before,
        _ => false,
    }
}

/// What `{{ release.* }}` reads in a run: the release it ran on (`id`, `null` where the
/// environment deploys rather than releases, `version`), its owner and co-owners by
/// identity, and their contacts as `people:` maps them: `owner_email`, `owner_chat`
/// (`null` when unmapped), and `emails` and `chats` of every owner, the owner first (for a
/// mail's `to:` or a chat mention). A run that ran on nothing known (a scenario of `airlock
/// test`) reads `owner: null` and empty lists.
pub fn scope(
    id: Option<&str>,
    version: &str,
    owners: &[String],
    people: &[crate::model::manifest::Person],
) -> Value {
    let person = |id: &str| people.iter().find(|p| p.id.value == id);
    let email = |id: &str| {
        person(id)
            .and_then(|p| p.email.as_ref())
            .map(|e| e.value.clone())
    };
    let chat = |id: &str| {
        person(id)
            .and_then(|p| p.chat.as_ref())
            .map(|c| c.value.clone())
    };
    let owner = owners.first().map(String::as_str);
    serde_json::json!({
        "id": id,
        "version": version,
        "owner": owner,
        "co_owners": owners.iter().skip(1).collect::<Vec<_>>(),
        "owner_email": owner.and_then(email),
        "owner_chat": owner.and_then(chat),
        "emails": owners.iter().filter_map(|o| email(o)).collect::<Vec<_>>(),
        "chats": owners.iter().filter_map(|o| chat(o)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::workflow::decode_source;

    const READS: &str = r#"name: w
trigger: { webhook: { path: w } }
steps:
  - id: boom
    fail: "no"
on_failure:
  - id: tell
    map: { to: "{{ release.emails }}" }
"#;

    #[test]
    fn only_a_workflow_whose_templates_read_release_costs_a_lookup() {
        assert!(decode_source(READS).unwrap().reads_release());
        let elsewhere = READS.replace("{{ release.emails }}", "release.emails, {{ run.id }}");
        assert!(
            !decode_source(&elsewhere).unwrap().reads_release(),
            "the word outside a template reads nothing"
        );
        for (path, text) in crate::scaffold::FILES {
            if path.starts_with("workflows/") {
                assert!(!decode_source(text).unwrap().reads_release(), "{path}");
            }
        }
    }

    #[test]
    fn the_scope_names_the_owner_first_and_maps_contacts_through_people() {
        let loaded = crate::project::load(vec![crate::source::SourceFile::new(
            "airlock.yaml",
            "project: p\npeople:\n  cy: { chat: \"@cy\", email: cy@acme.example }\n  ana: { email: ana@acme.example }\n",
        )]);
        let people = &loaded.project.manifest.people;
        let owners = ["cy".to_owned(), "ana".to_owned(), "bo".to_owned()];
        let scope = scope(Some("rel_1"), "v1", &owners, people);
        assert_eq!(
            scope,
            serde_json::json!({
                "id": "rel_1", "version": "v1", "owner": "cy", "co_owners": ["ana", "bo"],
                "owner_email": "cy@acme.example", "owner_chat": "@cy",
                "emails": ["cy@acme.example", "ana@acme.example"], "chats": ["@cy"],
            })
        );
        let nobody = super::scope(None, "v1", &[], people);
        assert_eq!(nobody["owner"], Value::Null);
        assert_eq!(nobody["emails"], serde_json::json!([]));
    }

    #[test]
    fn fails_more_needs_finished_runs_on_both_sides() {
        assert!(fails_more((2, 1), (4, 1)));
        assert!(!fails_more((4, 1), (4, 1)));
        assert!(!fails_more((0, 0), (4, 1)));
        assert!(!fails_more((3, 3), (0, 0)));
    }
}
