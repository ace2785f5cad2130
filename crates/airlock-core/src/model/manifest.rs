//! `airlock.yaml`: connectors, environments and their bindings, documented
//! differences, and the promotion policy.

use crate::decode::{Cx, Located};
use crate::diagnostic::{Code, suggestion};
use crate::yaml::{Node, Value};
use serde::{Deserialize, Serialize};

/// The whole of `airlock.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The project's name.
    pub project: Option<Located<String>>,
    /// Declared connectors, in file order.
    pub connectors: Vec<Connector>,
    /// Declared environments, in file order.
    pub environments: Vec<Environment>,
    /// Documented differences between environments.
    pub differences: Vec<Difference>,
    /// Promotion rules, one per `from -> to` pair.
    pub promotion: Vec<PromotionRule>,
    /// Who is who: the identities of approvers and authors mapped to their contacts.
    pub people: Vec<Person>,
}

/// One identity (the name an approval, a request or a token carries) and how to reach it.
#[derive(Debug, Clone)]
pub struct Person {
    /// The identity (`ops-lead`).
    pub id: Located<String>,
    /// A chat handle, mentioned in chat notifications (`@ana`).
    pub chat: Option<Located<String>>,
    /// An e-mail address, which mail notifications are sent to.
    pub email: Option<Located<String>>,
}

/// Where an environment's notifications go: one connector, for some events or all.
#[derive(Debug, Clone)]
pub struct NotifyTarget {
    /// The connector (chat_webhook, smtp or http) that carries them, bound in the
    /// environment like any other.
    pub connector: Located<String>,
    /// The events it carries (`promotion.requested`, …); empty: every event.
    pub events: Vec<Located<String>>,
    /// Fixed addresses a mail target always writes to, besides the recipients' own.
    pub to: Vec<Located<String>>,
    /// For an http target: the path the event is posted to (`/` when unset).
    pub path: Option<Located<String>>,
}

impl NotifyTarget {
    /// Whether this target carries `event`.
    pub fn carries(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e.value == event)
    }
}

impl Manifest {
    /// The connector called `name`.
    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.name.value == name)
    }

    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name.value == name)
    }

    /// The person whose identity is `id`.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id.value == id)
    }
}

/// What kind of system a connector talks to. The kind is the same in every
/// environment; only the binding differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// An HTTP API.
    Http,
    /// A Slack-compatible incoming webhook.
    ChatWebhook,
    /// Mail over SMTP.
    Smtp,
    /// A SQL database (SQLite or PostgreSQL).
    Sql,
}

/// A field a binding of some kind may set.
#[derive(Debug, Clone, Copy)]
pub struct BindingField {
    /// The key.
    pub name: &'static str,
    /// Whether a live binding must set it.
    pub required: bool,
    /// What it is for, in a few words.
    pub purpose: &'static str,
}

const fn field(name: &'static str, required: bool, purpose: &'static str) -> BindingField {
    BindingField {
        name,
        required,
        purpose,
    }
}

impl ConnectorKind {
    /// Every kind, as written in files.
    pub const NAMES: &'static [&'static str] = &["http", "chat_webhook", "smtp", "sql"];

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "http" => Self::Http,
            "chat_webhook" => Self::ChatWebhook,
            "smtp" => Self::Smtp,
            "sql" => Self::Sql,
            _ => return None,
        })
    }

    /// The kind as written in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::ChatWebhook => "chat_webhook",
            Self::Smtp => "smtp",
            Self::Sql => "sql",
        }
    }

    /// The actions a workflow can call on a connector of this kind.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Self::Http => &["request"],
            Self::ChatWebhook => &["post"],
            Self::Smtp => &["send"],
            Self::Sql => &["insert", "upsert", "query"],
        }
    }

    /// The arguments (`with:`) an action takes: (name, required).
    pub fn action_arguments(self, action: &str) -> &'static [(&'static str, bool)] {
        match (self, action) {
            (Self::Http, "request") => &[
                ("method", true),
                ("path", true),
                ("query", false),
                ("headers", false),
                ("json", false),
                ("body", false),
            ],
            (Self::ChatWebhook, "post") => &[("text", true), ("blocks", false)],
            (Self::Smtp, "send") => &[
                ("to", true),
                ("subject", true),
                ("body", true),
                ("cc", false),
                ("reply_to", false),
            ],
            (Self::Sql, "insert") => &[("table", true), ("values", true)],
            (Self::Sql, "upsert") => &[("table", true), ("values", true), ("key", true)],
            (Self::Sql, "query") => &[("sql", true), ("params", false)],
            _ => &[],
        }
    }

    /// The fields a binding of this kind may set (besides `mode` and `responses`).
    pub fn binding_fields(self) -> &'static [BindingField] {
        match self {
            Self::Http => HTTP_FIELDS,
            Self::ChatWebhook => CHAT_FIELDS,
            Self::Smtp => SMTP_FIELDS,
            Self::Sql => SQL_FIELDS,
        }
    }
}

const HTTP_FIELDS: &[BindingField] = &[
    field("base_url", true, "the API's base URL"),
    field("headers", false, "headers sent with every request"),
    field("token", false, "a bearer token, usually `${secret:NAME}`"),
    field("timeout", false, "default request timeout"),
    field(
        "health",
        false,
        "a path `airlock check` requests (GET) to confirm the endpoint and credential",
    ),
    CA_FILE_FIELD,
    PROXY_FIELD,
];
const CHAT_FIELDS: &[BindingField] = &[
    field("url", true, "the incoming-webhook URL"),
    CA_FILE_FIELD,
    PROXY_FIELD,
];
/// Outbound HTTPS: extra roots beside the system's, Mozilla's and `AIRLOCK_CA_FILE`.
const CA_FILE_FIELD: BindingField = field(
    "ca_file",
    false,
    "a PEM file of CA certificates (relative to the project) trusted besides the system's",
);
const PROXY_FIELD: BindingField = field(
    "proxy",
    false,
    "an HTTP proxy, `http://host:port`, that the environment's egress lists",
);
const SMTP_FIELDS: &[BindingField] = &[
    field("host", true, "the SMTP server"),
    field("port", false, "the SMTP port"),
    field("username", false, "the SMTP login"),
    field(
        "password",
        false,
        "the SMTP password, usually `${secret:NAME}`",
    ),
    field("from", true, "the sender address"),
    field("tls", false, "starttls, tls or none"),
];
const SQL_FIELDS: &[BindingField] = &[
    field(
        "url",
        true,
        "`sqlite://path` or `postgres://…`, usually `${secret:NAME}`",
    ),
    field(
        "schema",
        false,
        "a SQL file (relative to the project) applied when the connector first connects, for local databases",
    ),
];

/// What a connector touches; a workflow's risk is the highest of the connectors it calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Internal systems only: the lightest path.
    Internal,
    /// Operational state: queues, tickets, owners.
    Operations,
    /// Customers: messages, records they see.
    Customer,
    /// Money: payments, refunds, orders.
    Finance,
}

impl Risk {
    /// Every class, as written in files.
    pub const NAMES: &'static [&'static str] = &["internal", "operations", "customer", "finance"];

    /// The class named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "internal" => Self::Internal,
            "operations" => Self::Operations,
            "customer" => Self::Customer,
            "finance" => Self::Finance,
            _ => return None,
        })
    }
}

/// A named dependency workflows call.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Its name (`crm`).
    pub name: Located<String>,
    /// Its kind, if it names one that exists.
    pub kind: Option<ConnectorKind>,
    /// What it touches.
    pub risk: Risk,
}

/// Whether a binding sends for real or records calls as test records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingMode {
    /// Calls reach the bound system.
    Live,
    /// Calls are recorded as test records and answered from `responses`.
    Record,
}

/// How one environment binds one connector.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The connector bound.
    pub connector: Located<String>,
    /// Live or record.
    pub mode: Located<BindingMode>,
    /// The kind-specific settings, as written.
    pub settings: Vec<(Located<String>, Node)>,
    /// Configured answers per action, for record mode.
    pub responses: Vec<(Located<String>, Node)>,
    /// A paging destination (`pages: true`): someone is woken by what it carries, so
    /// only a protected environment may bind it (`validate`, AL0030).
    pub pages: Option<Located<bool>>,
}

impl Binding {
    /// The setting called `name`.
    pub fn setting(&self, name: &str) -> Option<&Node> {
        self.settings
            .iter()
            .find(|(k, _)| k.value == name)
            .map(|(_, v)| v)
    }
}

/// One environment: its bindings, secrets, egress, approvers and protection.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Its name (`staging`).
    pub name: Located<String>,
    /// Only promotion and rollback change what a protected environment runs.
    pub protected: bool,
    /// Who may approve promotions into it and approval steps in it.
    pub approvers: Vec<Located<String>>,
    /// Hosts its connectors may reach.
    pub egress: Vec<Located<String>>,
    /// Names of the secrets it holds (values live encrypted in the store).
    pub secrets: Vec<Located<String>>,
    /// Its bindings, one per connector.
    pub bindings: Vec<Binding>,
    /// Where its notifications go (`notify:`), through its own bindings only.
    pub notify: Vec<NotifyTarget>,
}

impl Environment {
    /// The binding of connector `name`.
    pub fn binding(&self, name: &str) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.connector.value == name)
    }
}

/// A documented difference between environments.
#[derive(Debug, Clone)]
pub struct Difference {
    /// What differs: `bindings.crm.base_url`, `egress`, `approvers`, …
    pub path: Located<String>,
    /// Why.
    pub reason: Located<String>,
    /// Which environments it is about (all when empty).
    pub environments: Vec<Located<String>>,
}

/// How many staging runs a version needs, and how many may fail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StagingRuns {
    /// At least this many runs.
    pub min: u32,
    /// At most this share failed (0.0 to 1.0).
    pub max_failure_rate: f64,
}

/// What a promotion requires. Unset fields inherit from the base requirements.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Requirements {
    /// Scenario tests must pass for the exact hash.
    pub tests: Option<bool>,
    /// The share (0.0 to 1.0) of the workflow's branch arms its scenarios must reach
    /// (`tests: { branches: 1.0 }`). Set only with `tests`, and inherited with it: a
    /// `by_risk` class that says `tests` says the whole test requirement.
    // Absent from the policy's form when unset, so a policy without coverage hashes as
    // it did before coverage could be required (no spurious `policy.change`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_coverage: Option<f64>,
    /// The share (0.0 to 1.0) of the workflow's failure paths (retries after a fault,
    /// `on_failure` handlers) its scenarios must exercise (`tests: { failure_paths: 1.0 }`);
    /// set and inherited as [`Requirements::branch_coverage`] is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_path_coverage: Option<f64>,
    /// The parity report must show no drift.
    pub parity: Option<bool>,
    /// Staging runs of the exact hash.
    pub staging_runs: Option<StagingRuns>,
    /// Approvals needed.
    pub approvals: Option<u32>,
}

/// A weekly window in which promotion is refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FreezeWindow {
    /// Start, as (weekday 0 = Monday, minute of day).
    pub from: (u8, u16),
    /// End, same form.
    pub to: (u8, u16),
    /// IANA time zone.
    pub timezone: String,
}

/// The rule for one `from -> to` path.
#[derive(Debug, Clone)]
pub struct PromotionRule {
    /// Source environment.
    pub from: Located<String>,
    /// Target environment.
    pub to: Located<String>,
    /// Baseline requirements.
    pub require: Requirements,
    /// Stricter (or lighter) requirements by risk class.
    pub by_risk: Vec<(Risk, Requirements)>,
    /// Freeze windows.
    pub freeze: Vec<FreezeWindow>,
    /// How long a request along this path stays open undecided (ms); `None`: the default,
    /// [`DEFAULT_REQUEST_LIFETIME_MS`].
    pub expires: Option<u64>,
}

/// How long a promotion request stays open when its rule declares no `expires`: a week.
pub const DEFAULT_REQUEST_LIFETIME_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Decodes `airlock.yaml`.
pub fn decode(cx: &mut Cx<'_>, root: &Node) -> Manifest {
    let mut manifest = Manifest::default();
    let Some(mut fields) = cx.fields(root, "airlock.yaml") else {
        return manifest;
    };
    manifest.project = fields
        .required(cx, "project", "the project's name")
        .and_then(|n| cx.string(n));
    if let Some(node) = fields.required(cx, "connectors", "the systems workflows call") {
        manifest.connectors = cx
            .entries(node, "connectors by name")
            .into_iter()
            .filter_map(|(name, node)| decode_connector(cx, name, node))
            .collect();
    }
    if let Some(node) = fields.required(cx, "environments", "staging, production, …") {
        manifest.environments = cx
            .entries(node, "environments by name")
            .into_iter()
            .map(|(name, node)| decode_environment(cx, &manifest.connectors, name, node))
            .collect();
    }
    if let Some(node) = fields.optional("differences") {
        for item in cx.list(node, "documented differences") {
            if let Some(difference) = decode_difference(cx, item) {
                manifest.differences.push(difference);
            }
        }
    }
    if let Some(node) = fields.optional("promotion") {
        for (key, node) in cx.entries(node, "promotion rules by `from -> to`") {
            if let Some(rule) = decode_rule(cx, key, node) {
                manifest.promotion.push(rule);
            }
        }
    }
    if let Some(node) = fields.optional("people") {
        for (id, node) in cx.entries(node, "people by identity") {
            if let Some(person) = decode_person(cx, id, node) {
                manifest.people.push(person);
            }
        }
    }
    fields.finish(cx);
    manifest
}

fn decode_person(cx: &mut Cx<'_>, id: Located<String>, node: &Node) -> Option<Person> {
    let mut fields = cx.fields(node, &format!("person `{}`", id.value))?;
    let chat = fields.optional("chat").and_then(|n| cx.string(n));
    let email = fields.optional("email").and_then(|n| cx.string(n));
    fields.finish(cx);
    Some(Person { id, chat, email })
}

fn decode_notify(cx: &mut Cx<'_>, node: &Node) -> Option<NotifyTarget> {
    let mut fields = cx.fields(node, "notification target")?;
    let connector = fields
        .required(
            cx,
            "connector",
            "the chat_webhook, smtp or http connector that carries them",
        )
        .and_then(|n| cx.string(n));
    let events = fields
        .optional("events")
        .map(|n| cx.strings(n))
        .unwrap_or_default();
    let to = fields
        .optional("to")
        .map(|n| cx.strings(n))
        .unwrap_or_default();
    let path = fields.optional("path").and_then(|n| cx.string(n));
    fields.finish(cx);
    Some(NotifyTarget {
        connector: connector?,
        events,
        to,
        path,
    })
}

fn decode_connector(cx: &mut Cx<'_>, name: Located<String>, node: &Node) -> Option<Connector> {
    let mut fields = cx.fields(node, &format!("connector `{}`", name.value))?;
    let kind = fields
        .required(cx, "kind", "http, chat_webhook, smtp or sql")
        .and_then(|n| cx.string(n))
        .and_then(|kind| match ConnectorKind::parse(&kind) {
            Some(k) => Some(k),
            None => {
                let help = suggestion(&kind, ConnectorKind::NAMES.iter().copied())
                    .unwrap_or_else(|| format!("kinds are: {}", ConnectorKind::NAMES.join(", ")));
                cx.report(
                    Code::UnknownConnectorKind,
                    kind.span,
                    format!("connector kind `{}` does not exist", kind.value),
                )
                .help = Some(help);
                None
            }
        });
    let risk = fields
        .optional("risk")
        .and_then(|n| cx.one_of(n, Risk::NAMES))
        .and_then(|r| Risk::parse(&r))
        .unwrap_or(Risk::Internal);
    fields.optional("description").and_then(|n| cx.string(n));
    fields.finish(cx);
    Some(Connector { name, kind, risk })
}

fn decode_environment(
    cx: &mut Cx<'_>,
    connectors: &[Connector],
    name: Located<String>,
    node: &Node,
) -> Environment {
    let mut environment = Environment {
        name: name.clone(),
        protected: false,
        approvers: Vec::new(),
        egress: Vec::new(),
        secrets: Vec::new(),
        bindings: Vec::new(),
        notify: Vec::new(),
    };
    let Some(mut fields) = cx.fields(node, &format!("environment `{}`", name.value)) else {
        return environment;
    };
    environment.protected = fields
        .optional("protected")
        .and_then(|n| cx.bool(n))
        .unwrap_or(false);
    if let Some(n) = fields.optional("approvers") {
        environment.approvers = cx.strings(n);
    }
    if let Some(n) = fields.optional("egress") {
        environment.egress = cx.strings(n);
    }
    if let Some(n) = fields.optional("secrets") {
        environment.secrets = cx.strings(n);
    }
    fields.optional("description").and_then(|n| cx.string(n));
    if let Some(n) = fields.optional("notify") {
        for item in cx.list(n, "notification targets") {
            if let Some(target) = decode_notify(cx, item) {
                environment.notify.push(target);
            }
        }
    }
    if let Some(n) = fields.required(cx, "bindings", "how each connector is reached here") {
        for (connector, node) in cx.entries(n, "bindings by connector") {
            let kind = connectors
                .iter()
                .find(|c| c.name.value == connector.value)
                .and_then(|c| c.kind);
            if let Some(binding) = decode_binding(cx, connector, kind, node) {
                environment.bindings.push(binding);
            }
        }
    }
    fields.finish(cx);
    environment
}

fn decode_binding(
    cx: &mut Cx<'_>,
    connector: Located<String>,
    kind: Option<ConnectorKind>,
    node: &Node,
) -> Option<Binding> {
    let what = format!("binding of `{}`", connector.value);
    let mut fields = cx.fields(node, &what)?;
    let mode = match fields.optional("mode") {
        Some(n) => {
            let span = n.span;
            match cx
                .one_of(n, &["live", "record"])
                .as_deref()
                .map(String::as_str)
            {
                Some("record") => Located::new(BindingMode::Record, span),
                _ => Located::new(BindingMode::Live, span),
            }
        }
        None => Located::new(BindingMode::Live, fields.node().span),
    };
    let responses = fields
        .optional("responses")
        .map(|n| cx.entries(n, "responses by action"))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    let pages = fields.optional("pages").and_then(|n| {
        let span = n.span;
        cx.bool(n).map(|b| Located::new(b, span))
    });
    let mut settings = Vec::new();
    if let Some(kind) = kind {
        for spec in kind.binding_fields() {
            let value = if spec.required && mode.value == BindingMode::Live {
                fields.required(cx, spec.name, spec.purpose)
            } else {
                fields.optional(spec.name)
            };
            if let Some(value) = value {
                let key_span = fields.key_span(spec.name).unwrap_or(value.span);
                settings.push((Located::new(spec.name.to_owned(), key_span), value.clone()));
            }
        }
        fields.finish(cx);
    }
    Some(Binding {
        connector,
        mode,
        settings,
        responses,
        pages,
    })
}

fn decode_difference(cx: &mut Cx<'_>, node: &Node) -> Option<Difference> {
    let mut fields = cx.fields(node, "difference")?;
    let path = fields
        .required(cx, "path", "what differs, e.g. `bindings.crm.base_url`")
        .and_then(|n| cx.string(n));
    let reason = fields
        .required(cx, "reason", "why it differs")
        .and_then(|n| cx.string(n));
    let environments = fields
        .optional("environments")
        .map(|n| cx.strings(n))
        .unwrap_or_default();
    fields.finish(cx);
    Some(Difference {
        path: path?,
        reason: reason?,
        environments,
    })
}

fn decode_rule(cx: &mut Cx<'_>, key: Located<String>, node: &Node) -> Option<PromotionRule> {
    let Some((from, to)) = key.value.split_once("->") else {
        cx.report(
            Code::InvalidValue,
            key.span,
            format!("promotion rule `{}` is not `from -> to`", key.value),
        )
        .help = Some("write the path as `staging -> production`".into());
        return None;
    };
    // Point at each environment name inside the key, so an unknown one is underlined alone.
    let located = |part: &str, base: usize| {
        let trimmed = part.trim();
        let offset = base + part.find(trimmed).unwrap_or(0);
        let quote = usize::from(cx_text_is_quoted(&key));
        Located::new(
            trimmed.to_owned(),
            key.span.sub(quote + offset, quote + offset + trimmed.len()),
        )
    };
    let from = located(from, 0);
    let to = located(to, key.value.find("->").unwrap_or(0) + 2);
    let mut fields = cx.fields(node, &format!("promotion rule `{}`", key.value))?;
    let require = fields
        .optional("require")
        .map(|n| decode_requirements(cx, n))
        .unwrap_or_default();
    let mut by_risk = Vec::new();
    if let Some(n) = fields.optional("by_risk") {
        for (risk, node) in cx.entries(n, "requirements by risk class") {
            match Risk::parse(&risk) {
                Some(r) => by_risk.push((r, decode_requirements(cx, node))),
                None => {
                    let help = suggestion(&risk, Risk::NAMES.iter().copied())
                        .unwrap_or_else(|| format!("risk classes are: {}", Risk::NAMES.join(", ")));
                    cx.report(
                        Code::InvalidValue,
                        risk.span,
                        format!("risk class `{}` does not exist", risk.value),
                    )
                    .help = Some(help);
                }
            }
        }
    }
    let mut freeze = Vec::new();
    if let Some(n) = fields.optional("freeze") {
        for item in cx.list(n, "freeze windows") {
            if let Some(window) = decode_freeze(cx, item) {
                freeze.push(window);
            }
        }
    }
    let expires = fields
        .optional("expires")
        .and_then(|n| cx.duration(n))
        .map(|d| d.value);
    fields.finish(cx);
    Some(PromotionRule {
        from,
        to,
        require,
        by_risk,
        freeze,
        expires,
    })
}

/// Keys in flow or quoted style keep their quote inside the span.
fn cx_text_is_quoted(key: &Located<String>) -> bool {
    key.span.len() == key.value.len() + 2
}

fn decode_requirements(cx: &mut Cx<'_>, node: &Node) -> Requirements {
    let mut requirements = Requirements::default();
    let Some(mut fields) = cx.fields(node, "requirements") else {
        return requirements;
    };
    if let Some(n) = fields.optional("tests") {
        decode_tests(cx, n, &mut requirements);
    }
    requirements.parity = fields
        .optional("parity")
        .and_then(|n| cx.one_of(n, &["clean", "none"]))
        .map(|v| v.value == "clean");
    requirements.approvals = fields
        .optional("approvals")
        .and_then(|n| cx.integer(n, 0, 10))
        .map(|v| v.value as u32);
    if let Some(n) = fields.optional("staging_runs")
        && let Some(mut runs) = cx.fields(n, "staging_runs")
    {
        let min = runs
            .required(cx, "min", "how many staging runs of the version")
            .and_then(|n| cx.integer(n, 0, 1_000_000));
        let rate = runs
            .optional("max_failure_rate")
            .and_then(|n| cx.number(n, 0.0, 1.0));
        runs.finish(cx);
        if let Some(min) = min {
            requirements.staging_runs = Some(StagingRuns {
                min: min.value as u32,
                max_failure_rate: rate.map_or(0.0, |r| r.value),
            });
        }
    }
    fields.finish(cx);
    requirements
}

/// `tests: pass | none`, or `tests: { pass: true, branches: 1.0, failure_paths: 1.0 }`
/// (`pass` is `true` unless said otherwise; a share is of the items `airlock test` counts).
fn decode_tests(cx: &mut Cx<'_>, node: &Node, requirements: &mut Requirements) {
    if !matches!(node.value, Value::Map(_)) {
        requirements.tests = cx
            .one_of(node, &["pass", "none"])
            .map(|v| v.value == "pass");
        return;
    }
    let Some(mut fields) = cx.fields(node, "tests") else {
        return;
    };
    let pass = fields.optional("pass").and_then(|n| cx.bool(n));
    requirements.branch_coverage = fields
        .optional("branches")
        .and_then(|n| coverage_share(cx, n));
    requirements.failure_path_coverage = fields
        .optional("failure_paths")
        .and_then(|n| coverage_share(cx, n));
    fields.finish(cx);
    requirements.tests = Some(pass.unwrap_or(true));
}

/// A coverage share, 0.0 to 1.0 (an integer 0 or 1 too).
fn coverage_share(cx: &mut Cx<'_>, node: &Node) -> Option<f64> {
    let value = match node.value {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        _ => {
            cx.report(
                Code::WrongType,
                node.span,
                format!(
                    "expected a share from 0.0 to 1.0, found {}",
                    node.value.type_name()
                ),
            )
            .help = Some("write 1.0 for every item covered, 0.8 for 80% of them".into());
            return None;
        }
    };
    if (0.0..=1.0).contains(&value) {
        return Some(value);
    }
    cx.report(
        Code::InvalidValue,
        node.span,
        format!("{value} is not a share of the items: expected 0.0 to 1.0"),
    )
    .help = Some("write 1.0 for every item covered, 0.8 for 80% of them".into());
    None
}

const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn decode_freeze(cx: &mut Cx<'_>, node: &Node) -> Option<FreezeWindow> {
    let mut fields = cx.fields(node, "freeze window")?;
    let from = fields
        .required(cx, "from", "when the freeze starts, e.g. `Fri 15:00`")
        .and_then(|n| weekly_time(cx, n));
    let to = fields
        .required(cx, "to", "when the freeze ends, e.g. `Mon 08:00`")
        .and_then(|n| weekly_time(cx, n));
    let timezone = match fields.optional("timezone") {
        Some(n) => timezone(cx, n)?,
        None => "UTC".to_owned(),
    };
    fields.finish(cx);
    Some(FreezeWindow {
        from: from?,
        to: to?,
        timezone,
    })
}

fn weekly_time(cx: &mut Cx<'_>, node: &Node) -> Option<(u8, u16)> {
    let text = cx.string(node)?;
    let parsed = text.split_once(' ').and_then(|(day, time)| {
        let day = WEEKDAYS
            .iter()
            .position(|d| day.to_ascii_lowercase().starts_with(d))?;
        let (h, m) = time.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some((day as u8, h * 60 + m))
    });
    if parsed.is_none() {
        cx.report(
            Code::InvalidValue,
            text.span,
            format!("`{}` is not a weekday and a time", text.value),
        )
        .help = Some("write it as `Fri 15:00`".into());
    }
    parsed
}

/// Checks an IANA time zone name.
pub(crate) fn timezone(cx: &mut Cx<'_>, node: &Node) -> Option<String> {
    let text = cx.string(node)?;
    if text.parse::<chrono_tz::Tz>().is_ok() {
        return Some(text.value);
    }
    let diagnostic = cx.report(
        Code::BadCron,
        text.span,
        format!("unknown time zone `{}`", text.value),
    );
    diagnostic.label = Some("not an IANA time zone".into());
    diagnostic.help = Some("use an IANA name such as `UTC` or `Europe/Paris`".into());
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    /// The manifest's promotion rule and the diagnostics, from `require` and `by_risk`
    /// written as given.
    fn rule(require: &str, by_risk: &str) -> (Option<PromotionRule>, Vec<(String, String)>) {
        let manifest = format!(
            "project: p\nconnectors: {{}}\nenvironments:\n  staging:\n    bindings: {{}}\n  production:\n    protected: true\n    approvers: [a]\n    bindings: {{}}\npromotion:\n  staging -> production:\n    require: {require}\n    by_risk: {by_risk}\n"
        );
        let loaded = crate::project::load(vec![SourceFile::new("airlock.yaml", &manifest)]);
        let found = loaded
            .diagnostics
            .iter()
            .map(|d| {
                (
                    manifest[d.span.start..d.span.end].to_owned(),
                    d.message.clone(),
                )
            })
            .collect();
        (loaded.project.manifest.promotion.into_iter().next(), found)
    }

    #[test]
    fn tests_read_as_pass_or_none_or_a_mapping_with_coverage_shares() {
        for (written, tests, branches, failure_paths) in [
            ("{ tests: pass }", Some(true), None, None),
            ("{ tests: none }", Some(false), None, None),
            (
                "{ tests: { pass: true, branches: 1.0, failure_paths: 1.0 } }",
                Some(true),
                Some(1.0),
                Some(1.0),
            ),
            (
                "{ tests: { failure_paths: 0.5 } }",
                Some(true),
                None,
                Some(0.5),
            ),
            ("{ tests: { branches: 1 } }", Some(true), Some(1.0), None),
            (
                "{ tests: { pass: false, branches: 0 } }",
                Some(false),
                Some(0.0),
                None,
            ),
        ] {
            let (rule, found) = rule(written, "{}");
            assert!(found.is_empty(), "{written}: {found:?}");
            let require = rule.expect("a rule").require;
            assert_eq!(
                (
                    require.tests,
                    require.branch_coverage,
                    require.failure_path_coverage
                ),
                (tests, branches, failure_paths),
                "{written}"
            );
        }
    }

    #[test]
    fn a_coverage_share_outside_0_to_1_is_refused_at_its_value() {
        let (_, found) = rule(
            "{ tests: { pass: true, branches: 1.5, failure_paths: 100 } }",
            "{ finance: { tests: { branches: -0.1, failure_paths: all } } }",
        );
        let at: Vec<&str> = found.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(at, ["1.5", "100", "-0.1", "all"], "{found:?}");
        assert_eq!(
            found[0].1,
            "1.5 is not a share of the items: expected 0.0 to 1.0"
        );
        assert_eq!(
            found[3].1,
            "expected a share from 0.0 to 1.0, found a string"
        );
        let (_, found) = rule("{ tests: { pass: yes, connectors: 1.0 } }", "{}");
        assert_eq!(
            found.len(),
            2,
            "a wrong `pass` and an unknown key: {found:?}"
        );
    }

    #[test]
    fn a_policy_without_coverage_keeps_its_form() {
        // The policy's form is hashed into `policy.change` events: a project that asks for
        // no coverage must hash as it did before coverage could be asked for.
        let (rule, _) = rule("{ tests: pass, approvals: 1 }", "{}");
        let form = serde_json::to_value(rule.expect("a rule").require).expect("serializes");
        assert_eq!(
            form,
            serde_json::json!({ "tests": true, "parity": null, "staging_runs": null, "approvals": 1 })
        );
    }
}
