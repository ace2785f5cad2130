//! The parity report: how two environments differ over the dimensions that make one a
//! trustworthy signal for the other, and whether each difference is documented or drift.
//!
//! Pure: the caller gathers the facts (what each environment runs, samples of its recent
//! runs, the keyed fingerprints of its secrets) and passes them in.
//!
//! The dimensions:
//! 1. **logic**: the version each environment runs; when they differ, a structural diff of
//!    the steps (added, removed, moved, changed fields by step id);
//! 2. **connectors**: each connector's kind and its two bindings side by side, field by
//!    field; and the literal-leak lint (a sandbox identifier in a protected environment's
//!    binding, a production one in an unprotected environment's);
//! 3. **permissions**: the protected flag, approvers, egress, and the roles the live API
//!    tokens of each environment hold (counted by role; a token's secret, hash or name never
//!    enters the report);
//! 4. **data shapes**: the JSON type-shape of trigger payloads and of each step's output in
//!    recent runs of each environment (no workflow declares schemas yet);
//! 5. **branching**: branch arms present in one version and not the other, and arms taken in
//!    recent runs of one environment but never in the other;
//!
//! and **credentials**: declared secret names, and a credential shared by the two
//! environments, found by comparing keyed fingerprints, never values.
//!
//! Every row gets a [`Status`]. A difference is *documented* when an entry of
//! `differences` covers its path for this pair of environments (`bindings.crm` covers
//! every field of the binding, `bindings.crm.base_url` that field alone); otherwise it is
//! *drift*. Two more statuses keep the report honest about what promotion is for: a version
//! difference between environments joined by a promotion rule is *pending* (it is the change
//! promotion moves, judged by the other gates), and a *note* reports what could not be
//! compared, or what the source environment exercised and the target has not (harmless).
//! Only drift makes a report unclean.

use crate::canonical;
use crate::decode::Located;
use crate::diagnostic::Span;
use crate::model::{BindingMode, Difference, Environment, Manifest, Step, StepKind, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How many recent runs per environment and workflow a caller samples.
pub const SAMPLE_RUNS: usize = 20;

/// Past this many distinct paths a sample's shape stops growing (a hostile payload cannot
/// make the report explode).
const MAX_SHAPE_PATHS: usize = 1_000;
/// Past this depth a sample's shape is not followed.
const MAX_SHAPE_DEPTH: usize = 16;
/// Longest value shown in a table cell.
const MAX_SHOWN: usize = 80;

// ---------------------------------------------------------------- facts

/// What the report compares, gathered by the caller from the store and the project.
#[derive(Debug, Clone, Default)]
pub struct ParityFacts {
    /// Every workflow either environment runs (or would run), in any order.
    pub workflows: Vec<WorkflowFacts>,
    /// The secrets that are set in either environment, with their keyed fingerprints.
    pub secrets: Vec<SecretFact>,
    /// The live (not revoked) API tokens of either environment, by role.
    pub tokens: Vec<TokenFact>,
}

/// A live API token, as the permission model sees it: where it acts and with which role.
/// Nothing that could identify or present it (its secret, hash, id or name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFact {
    /// The one environment it is valid in.
    pub environment: String,
    /// Its role, as stored (`viewer`, `runner`, `deployer`, `approver`, `admin`).
    pub role: String,
}

/// One workflow in both environments.
#[derive(Debug, Clone)]
pub struct WorkflowFacts {
    /// The workflow's name.
    pub name: String,
    /// What the first environment runs, and samples of its recent runs.
    pub from: Side,
    /// What the second environment runs, and samples of its recent runs.
    pub to: Side,
    /// Whether the version the promotion target runs is known to have come through the
    /// source (it ran there, or was promoted from there). `None` when not known or not
    /// applicable.
    pub target_came_through_source: Option<bool>,
}

/// One workflow in one environment.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// The version the environment runs; `None` when it runs none.
    pub running: Option<Running>,
    /// Recent runs, newest first.
    pub samples: Vec<RunSample>,
}

/// The version an environment runs.
#[derive(Debug, Clone)]
pub struct Running {
    /// The version id.
    pub version: String,
    /// Where it comes from.
    pub origin: Origin,
    /// The decoded version; `None` when the stored version cannot be read.
    pub workflow: Option<Workflow>,
}

/// Why an environment runs a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// It was deployed (or released) there.
    Deployed,
    /// Nothing is deployed in this unprotected environment: it runs the working copy.
    WorkingCopy,
}

/// One recent run, reduced to what shapes and branching need.
#[derive(Debug, Clone)]
pub struct RunSample {
    /// The run's id.
    pub run: String,
    /// The version it ran.
    pub version: String,
    /// Its trigger payload.
    pub trigger: Value,
    /// Each step's output (its last successful attempt), in journal order.
    pub outputs: Vec<(String, Value)>,
}

/// A secret that is set in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFact {
    /// The environment that owns it.
    pub environment: String,
    /// Its name.
    pub name: String,
    /// Its keyed fingerprint; `None` when it was set before fingerprints were recorded.
    pub fingerprint: Option<String>,
}

// ---------------------------------------------------------------- report

/// What a row compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The versions and their steps.
    Logic,
    /// Connector kinds and bindings.
    Connectors,
    /// Protection, approvers, egress, the roles of API tokens.
    Permissions,
    /// Shapes of trigger payloads and step outputs in recent runs.
    DataShapes,
    /// Branch arms in the versions and in recent runs.
    Branching,
    /// Secret names and shared credentials.
    Credentials,
}

impl Dimension {
    /// Every dimension, in report order.
    pub const ALL: [Dimension; 6] = [
        Dimension::Logic,
        Dimension::Connectors,
        Dimension::Permissions,
        Dimension::DataShapes,
        Dimension::Branching,
        Dimension::Credentials,
    ];

    /// The heading of its table.
    pub fn title(self) -> &'static str {
        match self {
            Dimension::Logic => "workflow logic",
            Dimension::Connectors => "connector setup",
            Dimension::Permissions => "permission model",
            Dimension::DataShapes => "data shapes (recent runs)",
            Dimension::Branching => "branching",
            Dimension::Credentials => "credentials",
        }
    }
}

/// What a row says about a difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// No difference.
    Same,
    /// A difference an entry of `differences` covers.
    Documented {
        /// The entry's path.
        by: String,
        /// The entry's reason.
        reason: String,
    },
    /// A difference nothing documents: it blocks `parity: clean`.
    Drift,
    /// A version difference along a promotion path: the change promotion moves.
    Pending,
    /// Reported, not a difference that blocks (could not compare, or the source exercised
    /// more than the target).
    Note,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The dimension it belongs to.
    pub dimension: Dimension,
    /// What is compared, in words (`bindings.crm.timeout`, `order-intake · step sync_crm: retry`).
    pub what: String,
    /// The `differences` path that would document it, where one can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The first environment's side, safe to show (no secret value, no URL password).
    pub from: String,
    /// The second environment's side, safe to show.
    pub to: String,
    /// Documented, drift, …
    #[serde(flatten)]
    pub status: Status,
    /// Why it has this status, when that is not obvious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The workflow it concerns; `None` when it concerns the environments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The connector it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

impl Finding {
    /// Whether this row is drift.
    pub fn is_drift(&self) -> bool {
        self.status == Status::Drift
    }

    /// Whether this row concerns a workflow that calls `connectors`: its own rows, and the
    /// environments' rows about connectors it calls or about no connector in particular.
    pub fn concerns(&self, workflow: &str, connectors: &[&str]) -> bool {
        match (&self.workflow, &self.connector) {
            (Some(w), _) => w == workflow,
            (None, Some(c)) => connectors.contains(&c.as_str()),
            (None, None) => true,
        }
    }
}

/// How drift on a row goes away: documented under `differences:` when it has a path,
/// else (a shared credential, an unpromoted version, shapes seen only in the target)
/// by making the environments agree.
pub fn fix_hint(finding: &Finding) -> String {
    match &finding.path {
        Some(path) => format!(
            "document it under `differences:` in airlock.yaml (`- {{ path: {path}, reason: … }}`), or remove the difference"
        ),
        None => "this cannot be documented away: give each environment its own credential, run versions through promotion, and let staging see data like production's".to_owned(),
    }
}

/// How many rows have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Same on both sides.
    pub same: usize,
    /// Documented differences.
    pub documented: usize,
    /// Undocumented differences.
    pub drift: usize,
    /// Version differences promotion moves.
    pub pending: usize,
    /// Notes.
    pub notes: usize,
}

impl Counts {
    fn of<'a>(findings: impl Iterator<Item = &'a Finding>) -> Self {
        let mut counts = Counts::default();
        for finding in findings {
            match finding.status {
                Status::Same => counts.same += 1,
                Status::Documented { .. } => counts.documented += 1,
                Status::Drift => counts.drift += 1,
                Status::Pending => counts.pending += 1,
                Status::Note => counts.notes += 1,
            }
        }
        counts
    }
}

/// The parity report between two environments. Deserialize too: the CLI reads it back
/// from the API and prints it as it prints its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityReport {
    /// The first environment.
    pub from: String,
    /// The second environment.
    pub to: String,
    /// The environment of the pair that promotion moves versions into (the rule's target;
    /// without a rule, the protected one; otherwise the second). Shapes and branch arms
    /// seen there but never in the other are drift; the other way round, notes.
    pub target: String,
    /// Whether a promotion rule joins the two environments.
    pub promotion_path: bool,
    /// Every row, dimension by dimension.
    pub findings: Vec<Finding>,
    /// What the report does not compare, and why.
    pub notes: Vec<String>,
}

impl ParityReport {
    /// Whether nothing is drift.
    pub fn clean(&self) -> bool {
        !self.findings.iter().any(Finding::is_drift)
    }

    /// The rows of one dimension, in report order.
    pub fn rows(&self, dimension: Dimension) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.dimension == dimension)
            .collect()
    }

    /// The drift rows.
    pub fn drift(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_drift())
    }

    /// Rows per status.
    pub fn counts(&self) -> Counts {
        Counts::of(self.findings.iter())
    }

    /// The rows that concern one workflow (see [`Finding::concerns`]).
    pub fn findings_for<'a>(&'a self, workflow: &'a Workflow) -> impl Iterator<Item = &'a Finding> {
        let connectors = workflow.connectors_called();
        let name = workflow.name.value.as_str();
        self.findings
            .iter()
            .filter(move |f| f.concerns(name, &connectors))
    }

    /// Whether nothing that concerns `workflow` is drift: the `parity: clean` gate of
    /// promoting it.
    pub fn clean_for(&self, workflow: &Workflow) -> bool {
        !self.findings_for(workflow).any(Finding::is_drift)
    }

    /// Rows per status, of the rows that concern one workflow.
    pub fn counts_for(&self, workflow: &Workflow) -> Counts {
        Counts::of(self.findings_for(workflow))
    }
}

// ---------------------------------------------------------------- documentation

/// Whether a `differences` entry is about the pair `a`, `b`: an entry without
/// `environments` is about every pair; one environment means that environment against any
/// other; several mean pairs among them.
fn about_pair(entry: &Difference, a: &str, b: &str) -> bool {
    match entry.environments.as_slice() {
        [] => true,
        [one] => one.value == a || one.value == b,
        many => many.iter().any(|e| e.value == a) && many.iter().any(|e| e.value == b),
    }
}

/// The entry of `differences` that documents `path` for the pair `a`, `b`: the most
/// specific entry whose path is `path` or a parent of it (`bindings.crm` documents
/// `bindings.crm.base_url`).
pub fn documented_by<'m>(
    manifest: &'m Manifest,
    path: &str,
    a: &str,
    b: &str,
) -> Option<&'m Difference> {
    manifest
        .differences
        .iter()
        .filter(|d| about_pair(d, a, b))
        .filter(|d| {
            path == d.path.value
                || (path.starts_with(d.path.value.as_str())
                    && path[d.path.value.len()..].starts_with('.'))
        })
        .max_by_key(|d| d.path.value.len())
}

/// The entry that documents a literal leak: one for exactly this field of exactly the
/// environment that holds the literal (`environments: [production]`). An entry written for
/// a difference between the pair (`bindings.crm.base_url` differs because staging uses the
/// sandbox) must not excuse the sandbox's host turning up in production.
fn documents_leak<'m>(
    manifest: &'m Manifest,
    path: &str,
    environment: &str,
) -> Option<&'m Difference> {
    manifest.differences.iter().find(|d| {
        d.path.value == path
            && matches!(d.environments.as_slice(), [only] if only.value == environment)
    })
}

fn documented_status(entry: Option<&Difference>) -> Status {
    match entry {
        Some(d) => Status::Documented {
            by: d.path.value.clone(),
            reason: d.reason.value.clone(),
        },
        None => Status::Drift,
    }
}

// ---------------------------------------------------------------- compare

/// Compares environment `from` with environment `to`.
pub fn compare(manifest: &Manifest, from: &str, to: &str, facts: &ParityFacts) -> ParityReport {
    let placeholder = |name: &str| Environment {
        name: Located::new(name.to_owned(), Span::default()),
        protected: false,
        approvers: Vec::new(),
        egress: Vec::new(),
        secrets: Vec::new(),
        bindings: Vec::new(),
        notify: Vec::new(),
    };
    let env_from = manifest
        .environment(from)
        .cloned()
        .unwrap_or_else(|| placeholder(from));
    let env_to = manifest
        .environment(to)
        .cloned()
        .unwrap_or_else(|| placeholder(to));
    let forward = crate::policy::rule(manifest, from, to).is_some();
    let backward = crate::policy::rule(manifest, to, from).is_some();
    let target_is_to = promotion_target(manifest, from, to) == to;
    let mut cx = Compare {
        manifest,
        from: &env_from,
        to: &env_to,
        target_is_to,
        promotable: forward || backward,
        findings: Vec::new(),
    };
    for name in [from, to] {
        if manifest.environment(name).is_none() {
            cx.push(Finding {
                detail: Some(format!(
                    "environment `{name}` is not declared in airlock.yaml"
                )),
                ..cx.row(Dimension::Permissions, "environment", "", "", Status::Drift)
            });
        }
    }
    let mut workflows: Vec<&WorkflowFacts> = facts.workflows.iter().collect();
    workflows.sort_by(|a, b| a.name.cmp(&b.name));
    for workflow in workflows {
        cx.workflow(workflow);
    }
    cx.connectors();
    cx.permissions(&facts.tokens);
    cx.credentials(&facts.secrets);
    let mut findings = cx.findings;
    findings.sort_by_key(|f| f.dimension);
    ParityReport {
        from: from.to_owned(),
        to: to.to_owned(),
        target: if target_is_to {
            to.to_owned()
        } else {
            from.to_owned()
        },
        promotion_path: forward || backward,
        findings,
        notes: vec![format!(
            "data shapes and branch arms come from the last {SAMPLE_RUNS} runs per environment; trigger headers are not compared (they depend on the sender)"
        )],
    }
}

/// Of two environments, the one promotion moves versions into: the target of a promotion
/// rule between them; without one, the protected one; otherwise `b`.
pub fn promotion_target<'e>(manifest: &Manifest, a: &'e str, b: &'e str) -> &'e str {
    let protected = |name: &str| manifest.environment(name).is_some_and(|e| e.protected);
    if crate::policy::rule(manifest, a, b).is_some() {
        b
    } else if crate::policy::rule(manifest, b, a).is_some() || (protected(a) && !protected(b)) {
        a
    } else {
        b
    }
}

struct Compare<'a> {
    manifest: &'a Manifest,
    from: &'a Environment,
    to: &'a Environment,
    /// Whether `to` is the promotion target of the pair.
    target_is_to: bool,
    promotable: bool,
    findings: Vec<Finding>,
}

/// A row's two sides in the target's terms.
enum Gap {
    /// Seen in the target, never in the source.
    InTarget,
    /// Seen in the source, never in the target.
    InSource,
}

impl<'a> Compare<'a> {
    fn names(&self) -> (&'a str, &'a str) {
        (self.from.name.value.as_str(), self.to.name.value.as_str())
    }

    fn source_name(&self) -> &'a str {
        if self.target_is_to {
            &self.from.name.value
        } else {
            &self.to.name.value
        }
    }

    fn target_name(&self) -> &'a str {
        if self.target_is_to {
            &self.to.name.value
        } else {
            &self.from.name.value
        }
    }

    fn row(
        &self,
        dimension: Dimension,
        what: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        status: Status,
    ) -> Finding {
        Finding {
            dimension,
            what: what.into(),
            path: None,
            from: from.into(),
            to: to.into(),
            status,
            detail: None,
            workflow: None,
            connector: None,
        }
    }

    fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Same, documented or drift, for a difference at a documentable path.
    fn classify(&self, path: &str, same: bool) -> Status {
        if same {
            return Status::Same;
        }
        let (a, b) = self.names();
        documented_status(documented_by(self.manifest, path, a, b))
    }

    // ------------------------------------------------------------ connectors

    fn connectors(&mut self) {
        for connector in &self.manifest.connectors {
            let name = connector.name.value.as_str();
            let kind = connector.kind.map_or("?", |k| k.name());
            // The kind is declared once for every environment, so it cannot differ.
            self.push(Finding {
                connector: Some(name.to_owned()),
                ..self.row(
                    Dimension::Connectors,
                    format!("{name} (kind)"),
                    kind,
                    kind,
                    Status::Same,
                )
            });
            let path = format!("bindings.{name}");
            match (self.from.binding(name), self.to.binding(name)) {
                (None, None) => {}
                (Some(f), Some(t)) => {
                    let mode = |b: &crate::model::Binding| match b.mode.value {
                        BindingMode::Live => "live",
                        BindingMode::Record => "record",
                    };
                    let mut fields: Vec<(String, String, String, bool)> = Vec::new();
                    fields.push((
                        "mode".into(),
                        mode(f).into(),
                        mode(t).into(),
                        f.mode.value == t.mode.value,
                    ));
                    let mut keys: Vec<&str> = connector
                        .kind
                        .map(|k| k.binding_fields().iter().map(|f| f.name).collect())
                        .unwrap_or_default();
                    for (key, _) in f.settings.iter().chain(&t.settings) {
                        if !keys.contains(&key.value.as_str()) {
                            keys.push(&key.value);
                        }
                    }
                    for key in keys {
                        let (vf, vt) = (
                            f.setting(key).map(|n| n.to_json()),
                            t.setting(key).map(|n| n.to_json()),
                        );
                        if vf.is_none() && vt.is_none() {
                            continue;
                        }
                        let show = |v: &Option<Value>| {
                            v.as_ref()
                                .map_or_else(|| "(not set)".to_owned(), |v| shown_setting(key, v))
                        };
                        fields.push((key.to_owned(), show(&vf), show(&vt), vf == vt));
                    }
                    let responses = |b: &crate::model::Binding| {
                        Value::Object(
                            b.responses
                                .iter()
                                .map(|(k, v)| (k.value.clone(), v.to_json()))
                                .collect(),
                        )
                    };
                    let (rf, rt) = (responses(f), responses(t));
                    if !f.responses.is_empty() || !t.responses.is_empty() {
                        let show = |b: &crate::model::Binding, v: &Value| {
                            if b.responses.is_empty() {
                                "(none)".to_owned()
                            } else {
                                shown_setting("responses", v)
                            }
                        };
                        fields.push(("responses".into(), show(f, &rf), show(t, &rt), rf == rt));
                    }
                    for (field, vf, vt, same) in fields {
                        let field_path = format!("{path}.{field}");
                        let status = self.classify(&field_path, same);
                        self.push(Finding {
                            path: Some(field_path.clone()),
                            connector: Some(name.to_owned()),
                            ..self.row(Dimension::Connectors, field_path, vf, vt, status)
                        });
                    }
                }
                (f, t) => {
                    let show = |b: Option<&crate::model::Binding>| {
                        if b.is_some() { "bound" } else { "not bound" }
                    };
                    let status = self.classify(&path, false);
                    self.push(Finding {
                        path: Some(path.clone()),
                        connector: Some(name.to_owned()),
                        ..self.row(
                            Dimension::Connectors,
                            path.clone(),
                            show(f),
                            show(t),
                            status,
                        )
                    });
                }
            }
        }
        self.literal_leaks();
    }

    fn literal_leaks(&mut self) {
        for (env, other, env_is_from) in [(self.from, self.to, true), (self.to, self.from, false)] {
            let protected_other = (!env.protected && other.protected).then_some(other);
            for leak in leaks(env, protected_other) {
                let path = format!("bindings.{}.{}", leak.connector, leak.field);
                let status =
                    documented_status(documents_leak(self.manifest, &path, &env.name.value));
                let here = format!("{}: {}", leak.kind, leak.shown);
                let (vf, vt) = if env_is_from {
                    (here, "—".to_owned())
                } else {
                    ("—".to_owned(), here)
                };
                let detail = match status {
                    Status::Drift => format!(
                        "{}; if it is intended, document it for `{}` alone: {{ path: {path}, environments: [{}], reason: … }}",
                        leak.why, env.name.value, env.name.value
                    ),
                    _ => leak.why,
                };
                self.push(Finding {
                    path: Some(path.clone()),
                    detail: Some(detail),
                    connector: Some(leak.connector.clone()),
                    ..self.row(
                        Dimension::Connectors,
                        format!("{path} (literal in {})", env.name.value),
                        vf,
                        vt,
                        status,
                    )
                });
            }
        }
    }

    // ------------------------------------------------------------ permissions

    fn permissions(&mut self, tokens: &[TokenFact]) {
        let yes_no = |p: bool| if p { "protected" } else { "not protected" };
        let status = self.classify("protected", self.from.protected == self.to.protected);
        self.push(Finding {
            path: Some("protected".into()),
            ..self.row(
                Dimension::Permissions,
                "protected",
                yes_no(self.from.protected),
                yes_no(self.to.protected),
                status,
            )
        });
        for (what, f, t) in [
            ("approvers", &self.from.approvers, &self.to.approvers),
            ("egress", &self.from.egress, &self.to.egress),
        ] {
            let (sf, st) = (set_of(f), set_of(t));
            let status = self.classify(what, sf == st);
            self.push(Finding {
                path: Some(what.into()),
                ..self.row(Dimension::Permissions, what, list(&sf), list(&st), status)
            });
        }
        self.token_roles(tokens);
    }

    /// Who may act through the API in each environment: the roles its live tokens hold.
    /// Tokens are each environment's own identities (made where the store is, one role in
    /// one environment), so different roles are reported, not drift that blocks a
    /// promotion: staging's CI runner needs no twin in production, nor production's
    /// approvers one in staging.
    fn token_roles(&mut self, tokens: &[TokenFact]) {
        let (a, b) = self.names();
        let roles = |env: &str| {
            let mut counts: BTreeMap<(usize, &str), usize> = BTreeMap::new();
            for token in tokens.iter().filter(|t| t.environment == env) {
                // Listed in the roles' own order (viewer … admin), an unknown one last.
                let rank = crate::authz::Role::ALL
                    .iter()
                    .position(|r| r.as_str() == token.role)
                    .unwrap_or(usize::MAX);
                *counts.entry((rank, token.role.as_str())).or_default() += 1;
            }
            counts
        };
        let (in_from, in_to) = (roles(a), roles(b));
        let shown = |counts: &BTreeMap<(usize, &str), usize>| {
            if counts.is_empty() {
                "(none)".to_owned()
            } else {
                counts
                    .iter()
                    .map(|((_, role), n)| format!("{role} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let only = |these: &BTreeMap<(usize, &str), usize>,
                    those: &BTreeMap<(usize, &str), usize>| {
            these
                .keys()
                .filter(|k| !those.contains_key(*k))
                .map(|(_, role)| (*role).to_owned())
                .collect::<Vec<String>>()
        };
        let (only_from, only_to) = (only(&in_from, &in_to), only(&in_to, &in_from));
        let (status, detail) = if only_from.is_empty() && only_to.is_empty() {
            let detail = if in_from.is_empty() {
                "no live API token in either environment (`airlock token create`)".to_owned()
            } else {
                "the same roles in both (counted from the live tokens, never shown)".to_owned()
            };
            (Status::Same, detail)
        } else {
            let mut parts = Vec::new();
            if !only_from.is_empty() {
                parts.push(format!("only `{a}` has {}", only_from.join(", ")));
            }
            if !only_to.is_empty() {
                parts.push(format!("only `{b}` has {}", only_to.join(", ")));
            }
            (
                Status::Note,
                format!(
                    "{}: each environment's tokens are its own identities (`airlock token list`), so this is reported, not drift",
                    parts.join("; ")
                ),
            )
        };
        self.push(Finding {
            detail: Some(detail),
            ..self.row(
                Dimension::Permissions,
                "API tokens (roles)",
                shown(&in_from),
                shown(&in_to),
                status,
            )
        });
    }

    // ------------------------------------------------------------ credentials

    fn credentials(&mut self, secrets: &[SecretFact]) {
        let (a, b) = self.names();
        let (sf, st) = (set_of(&self.from.secrets), set_of(&self.to.secrets));
        let status = self.classify("secrets", sf == st);
        self.push(Finding {
            path: Some("secrets".into()),
            ..self.row(
                Dimension::Credentials,
                "secrets (names)",
                list(&sf),
                list(&st),
                status,
            )
        });
        let of = |env: &str| {
            secrets
                .iter()
                .filter(|s| s.environment == env)
                .collect::<Vec<_>>()
        };
        let (in_from, in_to) = (of(a), of(b));
        let mut shared = 0;
        for x in &in_from {
            for y in &in_to {
                if let (Some(fx), Some(fy)) = (&x.fingerprint, &y.fingerprint)
                    && fx == fy
                {
                    shared += 1;
                    self.push(Finding {
                        detail: Some(format!(
                            "the same value is set in both environments (their keyed fingerprints match); a credential belongs to one environment: set a separate one in `{a}` or `{b}`"
                        )),
                        ..self.row(Dimension::Credentials, "shared credential", format!("{} in {a}", x.name), format!("{} in {b}", y.name), Status::Drift)
                    });
                }
            }
        }
        for secret in in_from
            .iter()
            .chain(&in_to)
            .filter(|s| s.fingerprint.is_none())
        {
            let here = format!("{} (no fingerprint)", secret.name);
            let (vf, vt) = if secret.environment == a {
                (here, "—".to_owned())
            } else {
                ("—".to_owned(), here)
            };
            self.push(Finding {
                detail: Some(format!(
                    "set before fingerprints were recorded, so it cannot be compared: set it again with `airlock secrets set {} --env {}`",
                    secret.name, secret.environment
                )),
                ..self.row(Dimension::Credentials, "shared credential check", vf, vt, Status::Note)
            });
        }
        if shared == 0 {
            let count = |v: &[&SecretFact]| {
                format!(
                    "{} set",
                    v.iter().filter(|s| s.fingerprint.is_some()).count()
                )
            };
            self.push(Finding {
                detail: Some(
                    "no value is set in both (compared by keyed fingerprint, never by value)"
                        .into(),
                ),
                ..self.row(
                    Dimension::Credentials,
                    "shared credentials",
                    count(&in_from),
                    count(&in_to),
                    Status::Same,
                )
            });
        }
    }

    // ------------------------------------------------------------ one workflow

    fn workflow(&mut self, facts: &WorkflowFacts) {
        let name = facts.name.as_str();
        let (source, target) = if self.target_is_to {
            (&facts.from, &facts.to)
        } else {
            (&facts.to, &facts.from)
        };
        let (source_name, target_name) = (self.source_name(), self.target_name());
        let (status, detail) = match (&source.running, &target.running) {
            (None, None) => return,
            (Some(s), Some(t)) if s.version == t.version => (Status::Same, None),
            (Some(_), None) if self.promotable => (
                Status::Pending,
                Some(format!("not released in {target_name} yet: promotion moves it")),
            ),
            (Some(_), None) => (Status::Note, Some(format!("{target_name} runs no version of it"))),
            (None, Some(_)) => (
                Status::Drift,
                Some(format!("{target_name} runs it and {source_name} does not: nothing in {source_name} exercises it")),
            ),
            (Some(_), Some(_)) if !self.promotable => (
                Status::Drift,
                Some("no promotion rule joins the two environments, so nothing will reconcile the versions".into()),
            ),
            (Some(_), Some(_)) if facts.target_came_through_source == Some(false) => (
                Status::Drift,
                Some(format!(
                    "{target_name} runs a version that never ran in {source_name} (a change made outside promotion): carry it back to {source_name}"
                )),
            ),
            (Some(_), Some(_)) => (
                Status::Pending,
                Some(format!("{source_name}'s version is the change promotion would move to {target_name}")),
            ),
        };
        let shown = |side: &Side| match &side.running {
            None => "not deployed".to_owned(),
            Some(r) => format!(
                "{}{}",
                short(&r.version),
                if r.origin == Origin::WorkingCopy {
                    " (working copy)"
                } else {
                    ""
                }
            ),
        };
        self.push(Finding {
            detail,
            workflow: Some(name.to_owned()),
            ..self.row(
                Dimension::Logic,
                format!("{name} (version)"),
                shown(&facts.from),
                shown(&facts.to),
                status.clone(),
            )
        });

        let (def_from, def_to) = (definition(&facts.from), definition(&facts.to));
        let mut changed_steps = BTreeSet::new();
        if status != Status::Same {
            match (def_from, def_to) {
                (Some(wf), Some(wt)) => {
                    for change in structural_diff(wf, wt) {
                        if let Some(step) = &change.step {
                            changed_steps.insert(step.clone());
                        }
                        self.push(Finding {
                            workflow: Some(name.to_owned()),
                            ..self.row(
                                Dimension::Logic,
                                format!("{name} · {}", change.what),
                                change.from,
                                change.to,
                                status.clone(),
                            )
                        });
                    }
                    let (af, at) = (arms(wf), arms(wt));
                    for arm in af.symmetric_difference(&at) {
                        let (vf, vt) = if af.contains(arm) {
                            ("present", "absent")
                        } else {
                            ("absent", "present")
                        };
                        self.push(Finding {
                            detail: Some("a branch arm in one version only".into()),
                            workflow: Some(name.to_owned()),
                            ..self.row(
                                Dimension::Branching,
                                format!("{name} · {arm}"),
                                vf,
                                vt,
                                status.clone(),
                            )
                        });
                    }
                }
                _ => {
                    for side in [&facts.from, &facts.to] {
                        if let Some(r) = &side.running
                            && r.workflow.is_none()
                        {
                            self.push(Finding {
                                detail: Some(format!(
                                    "version {} cannot be read, so its steps are not compared",
                                    short(&r.version)
                                )),
                                workflow: Some(name.to_owned()),
                                ..self.row(
                                    Dimension::Logic,
                                    format!("{name} · steps"),
                                    "?",
                                    "?",
                                    Status::Note,
                                )
                            });
                        }
                    }
                }
            }
        }

        if source.samples.is_empty() || target.samples.is_empty() {
            let count = |side: &Side| format!("{} runs", side.samples.len());
            let missing: Vec<&str> = [(source, source_name), (target, target_name)]
                .into_iter()
                .filter(|(side, _)| side.samples.is_empty())
                .map(|(_, n)| n)
                .collect();
            let detail = format!("no runs in {} to compare", missing.join(" or "));
            for dimension in [Dimension::DataShapes, Dimension::Branching] {
                self.push(Finding {
                    detail: Some(detail.clone()),
                    workflow: Some(name.to_owned()),
                    ..self.row(
                        dimension,
                        format!("{name} · recent runs"),
                        count(&facts.from),
                        count(&facts.to),
                        Status::Note,
                    )
                });
            }
            return;
        }
        let defs: Vec<&Workflow> = [def_from, def_to].into_iter().flatten().collect();
        let source_def = definition(source);
        self.shapes(name, facts, &defs, &changed_steps);
        self.arms_taken(name, facts, &defs, source_def, &changed_steps);
    }

    /// The status of something seen in one environment's runs and never in the other's.
    fn gap_status(
        &self,
        gap: Gap,
        step: Option<&str>,
        defs: &[&Workflow],
        changed: &BTreeSet<String>,
    ) -> (Status, Option<String>) {
        if matches!(gap, Gap::InSource) {
            return (Status::Note, None);
        }
        if let Some(step) = step {
            if self.promotable && changed.contains(step) {
                return (Status::Pending, None);
            }
            if let Some(connector) = call_connector(defs, step) {
                let path = format!("bindings.{connector}.responses");
                let (a, b) = self.names();
                return (
                    documented_status(documented_by(self.manifest, &path, a, b)),
                    Some(path),
                );
            }
        }
        (Status::Drift, None)
    }

    fn shapes(
        &mut self,
        name: &str,
        facts: &WorkflowFacts,
        defs: &[&Workflow],
        changed: &BTreeSet<String>,
    ) {
        let trigger = |side: &Side| {
            let mut shape = Shape::new();
            for sample in &side.samples {
                let mut payload = sample.trigger.clone();
                if let Value::Object(map) = &mut payload {
                    map.remove("headers");
                }
                add_shape(&payload, "trigger".to_owned(), 0, &mut shape);
            }
            shape
        };
        let differing = self.shape_rows(
            name,
            None,
            &trigger(&facts.from),
            &trigger(&facts.to),
            defs,
            changed,
        );
        if differing == 0 {
            self.push(Finding {
                workflow: Some(name.to_owned()),
                ..self.row(
                    Dimension::DataShapes,
                    format!("{name} · trigger payload"),
                    format!("{} runs", facts.from.samples.len()),
                    format!("{} runs", facts.to.samples.len()),
                    Status::Same,
                )
            });
        }
        let outputs = |side: &Side| {
            let mut by_step: BTreeMap<String, Shape> = BTreeMap::new();
            for sample in &side.samples {
                for (step, output) in &sample.outputs {
                    add_shape(
                        output,
                        format!("{step}.output"),
                        0,
                        by_step.entry(step.clone()).or_default(),
                    );
                }
            }
            by_step
        };
        let (of, ot) = (outputs(&facts.from), outputs(&facts.to));
        let mut compared = 0;
        let mut differing = 0;
        for (step, shape_from) in &of {
            let Some(shape_to) = ot.get(step) else {
                continue;
            };
            compared += 1;
            differing += self.shape_rows(name, Some(step), shape_from, shape_to, defs, changed);
        }
        if compared > 0 && differing == 0 {
            self.push(Finding {
                workflow: Some(name.to_owned()),
                ..self.row(
                    Dimension::DataShapes,
                    format!("{name} · step outputs ({compared} steps)"),
                    format!("{} runs", facts.from.samples.len()),
                    format!("{} runs", facts.to.samples.len()),
                    Status::Same,
                )
            });
        }
    }

    /// Rows for the paths whose types differ; returns how many.
    fn shape_rows(
        &mut self,
        name: &str,
        step: Option<&str>,
        from: &Shape,
        to: &Shape,
        defs: &[&Workflow],
        changed: &BTreeSet<String>,
    ) -> usize {
        let (source_name, target_name) = (self.source_name(), self.target_name());
        let paths: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
        let empty = BTreeSet::new();
        let mut rows = 0;
        for path in paths {
            let (tf, tt) = (
                from.get(path).unwrap_or(&empty),
                to.get(path).unwrap_or(&empty),
            );
            if tf == tt {
                continue;
            }
            rows += 1;
            let (ts, tg) = if self.target_is_to {
                (tf, tt)
            } else {
                (tt, tf)
            };
            let gap = if tg.difference(ts).next().is_some() {
                Gap::InTarget
            } else {
                Gap::InSource
            };
            let detail = match gap {
                Gap::InTarget => format!(
                    "seen in {target_name}'s runs and never in {source_name}'s: {source_name}'s data does not exercise it"
                ),
                Gap::InSource => format!("seen in {source_name}'s runs only"),
            };
            let (status, doc_path) = self.gap_status(gap, step, defs, changed);
            let types = |t: &BTreeSet<&str>| {
                if t.is_empty() {
                    "never seen".to_owned()
                } else {
                    t.iter().copied().collect::<Vec<_>>().join(" | ")
                }
            };
            self.push(Finding {
                path: doc_path,
                detail: Some(detail),
                workflow: Some(name.to_owned()),
                ..self.row(
                    Dimension::DataShapes,
                    format!("{name} · {path}"),
                    types(tf),
                    types(tt),
                    status,
                )
            });
        }
        rows
    }

    fn arms_taken(
        &mut self,
        name: &str,
        facts: &WorkflowFacts,
        defs: &[&Workflow],
        source_def: Option<&Workflow>,
        changed: &BTreeSet<String>,
    ) {
        let (source_name, target_name) = (self.source_name(), self.target_name());
        let taken = |side: &Side| {
            let mut arms: BTreeMap<(String, String), usize> = BTreeMap::new();
            for sample in &side.samples {
                for (step, output) in &sample.outputs {
                    if branching_step(defs, step).is_some()
                        && let Some(branch) = output.get("branch").and_then(Value::as_str)
                    {
                        *arms.entry((step.clone(), branch.to_owned())).or_default() += 1;
                    }
                }
            }
            arms
        };
        let (tf, tt) = (taken(&facts.from), taken(&facts.to));
        let (ts, tg, ns, ng) = if self.target_is_to {
            (&tf, &tt, facts.from.samples.len(), facts.to.samples.len())
        } else {
            (&tt, &tf, facts.to.samples.len(), facts.from.samples.len())
        };
        let mut rows = 0;
        let keys: BTreeSet<&(String, String)> = tf.keys().chain(tt.keys()).collect();
        for key in keys {
            let (step, branch) = key;
            let (in_source, in_target) = (
                ts.get(key).copied().unwrap_or(0),
                tg.get(key).copied().unwrap_or(0),
            );
            if (in_source > 0) == (in_target > 0) {
                continue;
            }
            let label = arm_label(defs, step, branch);
            let (status, detail) = if in_target > 0 {
                // An arm the source's version does not have is part of the logic diff.
                if source_def.is_some_and(|d| !arm_exists(d, step, branch)) {
                    continue;
                }
                let (status, _) = self.gap_status(Gap::InTarget, Some(step), &[], changed);
                (
                    status,
                    format!(
                        "taken in {in_target} of {target_name}'s last {ng} runs, never in {source_name}'s last {ns}"
                    ),
                )
            } else {
                (
                    Status::Note,
                    format!("taken in {source_name}'s runs only ({in_source} of {ns})"),
                )
            };
            rows += 1;
            let count = |t: &BTreeMap<(String, String), usize>| match t.get(key) {
                Some(n) => format!("taken ({n})"),
                None => "never taken".to_owned(),
            };
            self.push(Finding {
                detail: Some(detail),
                workflow: Some(name.to_owned()),
                ..self.row(
                    Dimension::Branching,
                    format!("{name} · {label}"),
                    count(&tf),
                    count(&tt),
                    status,
                )
            });
        }
        if rows == 0 {
            let shown = |t: &BTreeMap<(String, String), usize>| {
                if t.is_empty() {
                    "no branch taken".to_owned()
                } else {
                    t.keys()
                        .map(|(s, b)| arm_label(defs, s, b))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            self.push(Finding {
                workflow: Some(name.to_owned()),
                ..self.row(
                    Dimension::Branching,
                    format!("{name} · arms taken in recent runs"),
                    shown(&tf),
                    shown(&tt),
                    Status::Same,
                )
            });
        }
    }
}

// ---------------------------------------------------------------- structural diff

/// One difference between two versions of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepChange {
    /// What differs: `step sync_crm: retry`, `step alert added`, `trigger`.
    pub what: String,
    /// The first version's side.
    pub from: String,
    /// The second version's side.
    pub to: String,
    /// The step concerned, if one.
    pub step: Option<String>,
}

#[derive(Default)]
struct Flat {
    /// Each step's own fields (nested step lists left out) and where it sits.
    steps: BTreeMap<String, (String, BTreeMap<String, Value>)>,
    /// Each list of steps, by place, as ids in order.
    lists: BTreeMap<String, Vec<String>>,
    /// Every id, in the order the workflow is written (depth first).
    order: Vec<String>,
}

fn flatten(workflow: &Workflow) -> (Value, Flat) {
    let form = canonical::canonical_value(workflow);
    let mut flat = Flat::default();
    flatten_list(&form["steps"], "steps", &mut flat);
    flatten_list(&form["on_failure"], "on_failure", &mut flat);
    (form, flat)
}

fn flatten_list(list: &Value, place: &str, flat: &mut Flat) {
    let Some(items) = list.as_array() else { return };
    let mut ids = Vec::new();
    for item in items {
        let Some(map) = item.as_object() else {
            continue;
        };
        let id = map
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        flat.order.push(id.clone());
        let mut fields = BTreeMap::new();
        for (key, value) in map {
            match key.as_str() {
                "id" => {}
                "then" | "else" | "default" | "on_failure" => {
                    flatten_list(value, &format!("{id}.{key}"), flat)
                }
                "cases" => {
                    let mut cases = Vec::new();
                    for case in value.as_array().into_iter().flatten() {
                        let label = case.get("case").and_then(Value::as_str).unwrap_or_default();
                        cases.push(Value::String(label.to_owned()));
                        flatten_list(&case["steps"], &format!("{id}.case {label:?}"), flat);
                    }
                    fields.insert("cases".to_owned(), Value::Array(cases));
                }
                _ => {
                    fields.insert(key.clone(), value.clone());
                }
            }
        }
        ids.push(id.clone());
        flat.steps.insert(id, (place.to_owned(), fields));
    }
    flat.lists.insert(place.to_owned(), ids);
}

/// The differences between two versions of a workflow, step by step (by id): steps added
/// and removed, moved to another list, reordered, and each field that changed; the
/// trigger and the description.
pub fn structural_diff(from: &Workflow, to: &Workflow) -> Vec<StepChange> {
    let (form_from, flat_from) = flatten(from);
    let (form_to, flat_to) = flatten(to);
    let mut changes = Vec::new();
    for key in ["trigger", "description"] {
        if form_from[key] != form_to[key] {
            changes.push(StepChange {
                what: key.to_owned(),
                from: shown(&form_from[key]),
                to: shown(&form_to[key]),
                step: None,
            });
        }
    }
    // In the order the second version writes them, then the removed ones.
    let ordered = flat_to.order.iter().chain(
        flat_from
            .order
            .iter()
            .filter(|id| !flat_to.steps.contains_key(*id)),
    );
    for id in ordered {
        match (flat_from.steps.get(id), flat_to.steps.get(id)) {
            (None, Some((place, fields))) => changes.push(StepChange {
                what: format!("step {id}"),
                from: "absent".into(),
                to: format!("added ({} in {place})", kind_of(fields)),
                step: Some(id.clone()),
            }),
            (Some((place, fields)), None) => changes.push(StepChange {
                what: format!("step {id}"),
                from: format!("{} in {place}", kind_of(fields)),
                to: "removed".into(),
                step: Some(id.clone()),
            }),
            (Some((place_from, fields_from)), Some((place_to, fields_to))) => {
                if place_from != place_to {
                    changes.push(StepChange {
                        what: format!("step {id}: place"),
                        from: place_from.clone(),
                        to: place_to.clone(),
                        step: Some(id.clone()),
                    });
                }
                let keys: BTreeSet<&String> = fields_from.keys().chain(fields_to.keys()).collect();
                for key in keys {
                    let (a, b) = (fields_from.get(key), fields_to.get(key));
                    if a != b {
                        let show = |v: Option<&Value>| v.map_or_else(|| "(none)".to_owned(), shown);
                        changes.push(StepChange {
                            what: format!("step {id}: {key}"),
                            from: show(a),
                            to: show(b),
                            step: Some(id.clone()),
                        });
                    }
                }
            }
            (None, None) => {}
        }
    }
    for (place, list_to) in &flat_to.lists {
        let Some(list_from) = flat_from.lists.get(place) else {
            continue;
        };
        let common_from: Vec<&String> =
            list_from.iter().filter(|id| list_to.contains(id)).collect();
        let common_to: Vec<&String> = list_to.iter().filter(|id| list_from.contains(id)).collect();
        if common_from != common_to {
            changes.push(StepChange {
                what: format!("order of {place}"),
                from: common_from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                to: common_to
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                step: None,
            });
        }
    }
    changes
}

fn definition(side: &Side) -> Option<&Workflow> {
    side.running.as_ref().and_then(|r| r.workflow.as_ref())
}

fn kind_of(fields: &BTreeMap<String, Value>) -> &str {
    fields.get("kind").and_then(Value::as_str).unwrap_or("step")
}

/// Every branch arm of a workflow: `big_order → then`, `route → case "eu"`, `route → default`.
pub fn arms(workflow: &Workflow) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for step in workflow.all_steps() {
        let id = &step.id.value;
        match &step.kind {
            StepKind::If { .. } => {
                out.insert(format!("{id} → then"));
                out.insert(format!("{id} → else"));
            }
            StepKind::Switch { cases, .. } => {
                for (case, _) in cases {
                    out.insert(format!("{id} → case {:?}", case.value));
                }
                out.insert(format!("{id} → default"));
            }
            _ => {}
        }
    }
    out
}

fn branching_step<'w>(defs: &[&'w Workflow], id: &str) -> Option<&'w Step> {
    defs.iter().flat_map(|d| d.all_steps()).find(|s| {
        s.id.value == id && matches!(s.kind, StepKind::If { .. } | StepKind::Switch { .. })
    })
}

fn arm_exists(workflow: &Workflow, id: &str, branch: &str) -> bool {
    workflow.all_steps().into_iter().any(|s| {
        s.id.value == id
            && match &s.kind {
                StepKind::If { .. } => branch == "then" || branch == "else",
                StepKind::Switch { cases, .. } => {
                    branch == "default" || cases.iter().any(|(c, _)| c.value == branch)
                }
                _ => false,
            }
    })
}

fn arm_label(defs: &[&Workflow], id: &str, branch: &str) -> String {
    match branching_step(defs, id).map(|s| &s.kind) {
        Some(StepKind::Switch { cases, .. }) if cases.iter().any(|(c, _)| c.value == branch) => {
            format!("{id} → case {branch:?}")
        }
        _ => format!("{id} → {branch}"),
    }
}

fn call_connector<'w>(defs: &[&'w Workflow], id: &str) -> Option<&'w str> {
    defs.iter()
        .flat_map(|d| d.all_steps())
        .find_map(|s| match &s.kind {
            StepKind::Call { connector, .. } if s.id.value == id => Some(connector.as_str()),
            _ => None,
        })
}

// ---------------------------------------------------------------- shapes

/// A JSON type-shape: each path (`trigger.body.items[].sku`) and the types seen there.
pub type Shape = BTreeMap<String, BTreeSet<&'static str>>;

/// The type-shape of one value, under `root`.
pub fn shape_of(value: &Value, root: &str) -> Shape {
    let mut shape = Shape::new();
    add_shape(value, root.to_owned(), 0, &mut shape);
    shape
}

fn add_shape(value: &Value, path: String, depth: usize, shape: &mut Shape) {
    if depth > MAX_SHAPE_DEPTH || (shape.len() >= MAX_SHAPE_PATHS && !shape.contains_key(&path)) {
        return;
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    shape.entry(path.clone()).or_default().insert(kind);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                add_shape(item, format!("{path}.{key}"), depth + 1, shape);
            }
        }
        Value::Array(items) => {
            for item in items {
                add_shape(item, format!("{path}[]"), depth + 1, shape);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- literal leaks

/// A literal in a binding that belongs to the other kind of environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The connector.
    pub connector: String,
    /// The binding field (`mode`, `base_url`, `headers`, …).
    pub field: String,
    /// `sandbox-looking` or `production-looking`.
    pub kind: &'static str,
    /// What was recognised, safe to show (a host, a key's prefix, never a whole key).
    pub shown: String,
    /// Why it is flagged.
    pub why: String,
}

const TEST_KEY_PREFIXES: &[&str] = &["sk_test_", "pk_test_", "rk_test_"];
const LIVE_KEY_PREFIXES: &[&str] = &["sk_live_", "pk_live_", "rk_live_"];
const SANDBOX_WORDS: &[&str] = &["test", "tests", "testing", "sandbox", "staging"];

/// The literal-leak lint of one environment's bindings. In a protected environment: a
/// `record` mode, a test API key (`sk_test_…`), a host or channel that says `test`,
/// `sandbox` or `staging`. In an unprotected one: a live API key (`sk_live_…`), and, in a
/// live binding, a host that `protected` (the protected environment it is compared with)
/// lists in its egress, loopback excepted. Secret references are never looked into: only
/// what is written in the file.
pub fn leaks(environment: &Environment, protected: Option<&Environment>) -> Vec<Leak> {
    let env = environment.name.value.as_str();
    let mut out = Vec::new();
    for binding in &environment.bindings {
        let connector = binding.connector.value.clone();
        let mut flag = |field: &str, kind: &'static str, shown: String, why: String| {
            let leak = Leak {
                connector: connector.clone(),
                field: field.to_owned(),
                kind,
                shown,
                why,
            };
            if !out.contains(&leak) {
                out.push(leak);
            }
        };
        if environment.protected && binding.mode.value == BindingMode::Record {
            flag(
                "mode",
                "sandbox-looking",
                "record".into(),
                format!("protected `{env}` records `{connector}`'s calls instead of sending them"),
            );
        }
        for (key, node) in &binding.settings {
            let mut strings = Vec::new();
            collect_strings(&key.value, &node.to_json(), &mut strings);
            for (name, text) in strings {
                let literal = without_secret_references(&text);
                if environment.protected {
                    for prefix in TEST_KEY_PREFIXES {
                        if literal.contains(prefix) {
                            flag(
                                &key.value,
                                "sandbox-looking",
                                format!("{prefix}…"),
                                format!("a test API key in protected `{env}`"),
                            );
                        }
                    }
                    let host = host_of(&literal)
                        .or_else(|| (name == "host").then(|| literal.trim().to_ascii_lowercase()));
                    if let Some(host) = host
                        && let Some(word) = sandbox_word(&host)
                    {
                        flag(
                            &key.value,
                            "sandbox-looking",
                            format!("host {host}"),
                            format!("the host says `{word}`, in protected `{env}`"),
                        );
                    }
                    if (name.contains("channel") || literal.starts_with('#'))
                        && let Some(word) = sandbox_word(&literal)
                    {
                        flag(
                            &key.value,
                            "sandbox-looking",
                            format!("channel {}", literal.trim()),
                            format!("the channel says `{word}`, in protected `{env}`"),
                        );
                    }
                } else {
                    for prefix in LIVE_KEY_PREFIXES {
                        if literal.contains(prefix) {
                            flag(
                                &key.value,
                                "production-looking",
                                format!("{prefix}…"),
                                format!("a live API key in unprotected `{env}`"),
                            );
                        }
                    }
                    // A record-mode binding sends nothing, and a loopback address names
                    // this machine rather than production: neither reaches production.
                    if let Some(protected) =
                        protected.filter(|_| binding.mode.value == BindingMode::Live)
                    {
                        let host = host_of(&literal).or_else(|| {
                            (name == "host").then(|| literal.trim().to_ascii_lowercase())
                        });
                        if let Some(host) = host
                            && !is_loopback(&host)
                            && egress_lists(protected, &host)
                        {
                            flag(
                                &key.value,
                                "production-looking",
                                format!("host {host}"),
                                format!(
                                    "`{host}` is a destination of protected `{}` (its egress lists it), bound in unprotected `{env}`",
                                    protected.name.value
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}

fn collect_strings(name: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((name.to_ascii_lowercase(), s.clone())),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(name, v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| collect_strings(k, v, out)),
        _ => {}
    }
}

fn without_secret_references(text: &str) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (_, range) in crate::validate::secret_references(text) {
        out.push_str(&text[last..range.start.saturating_sub(9)]);
        last = (range.end + 1).min(text.len());
    }
    out.push_str(&text[last..]);
    out
}

fn sandbox_word(text: &str) -> Option<&'static str> {
    text.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(|token| token.trim_end_matches(|c: char| c.is_ascii_digit()))
        .find_map(|token| SANDBOX_WORDS.iter().copied().find(|w| *w == token))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn egress_lists(environment: &Environment, host: &str) -> bool {
    environment.egress.iter().any(|entry| {
        let entry = entry.value.to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => entry == host,
        }
    })
}

/// The host of a URL written in `text` (`https://user:pw@Api.Example:443/x` → `api.example`).
pub fn host_of(text: &str) -> Option<String> {
    let (_, rest) = text.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

// ---------------------------------------------------------------- showing values safely

fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "secret",
        "key",
        "authorization",
        "credential",
        "cookie",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// A binding setting as it can be shown: secret references by name, a literal under a
/// credential's name hidden, passwords in URLs masked, long values cut.
pub fn shown_setting(name: &str, value: &Value) -> String {
    match safe(name, value) {
        Value::String(s) => cut(&s),
        other => cut(&other.to_string()),
    }
}

fn safe(name: &str, value: &Value) -> Value {
    match value {
        Value::String(s) if s.contains("${secret:") => Value::String(mask_url_passwords(s)),
        Value::String(s) if is_credential_name(name) && !s.is_empty() => {
            Value::String("(literal, hidden)".into())
        }
        Value::String(s) => Value::String(mask_url_passwords(s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| safe(name, v)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), safe(k, v))).collect())
        }
        other => other.clone(),
    }
}

/// `postgres://app:hunter2@db/x` → `postgres://app:***@db/x`; `?password=x` → `?password=***`.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(['/', '?', '#', ' ', '"', '\''])
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@{host}")),
                None => out.push_str(&format!("{userinfo}@{host}")),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    mask_query_secrets(&out)
}

fn mask_query_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['?', '&']) {
        let (head, tail) = rest.split_at(i + 1);
        out.push_str(head);
        let end = tail.find(['&', '#', ' ']).unwrap_or(tail.len());
        let pair = &tail[..end];
        match pair.split_once('=') {
            Some((key, value)) if is_credential_name(key) && !value.is_empty() => {
                out.push_str(&format!("{key}=***"))
            }
            _ => out.push_str(pair),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => cut(&mask_url_passwords(s)),
        other => cut(&mask_url_passwords(&other.to_string())),
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_SHOWN {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX_SHOWN - 1).collect::<String>())
    }
}

fn short(version: &str) -> String {
    version.chars().take(12).collect()
}

fn set_of(items: &[Located<String>]) -> BTreeSet<String> {
    items.iter().map(|i| i.value.clone()).collect()
}

fn list(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests;
