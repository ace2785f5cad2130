//! `workflows/NAME.yaml`: a trigger and a tree of steps.
//!
//! A step is a mapping with an `id` and exactly one kind key (`map`, `if`, `switch`,
//! `call`, `approval`, `delay`, `fail`). It is decoded by hand rather than through a
//! tagged serde enum so that every error points at the exact value inside the step.

use crate::decode::{Cx, Located};
use crate::diagnostic::{Code, suggestion};
use crate::yaml::{Node, Value};
use serde::Serialize;

/// A workflow as written.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its unique name.
    pub name: Located<String>,
    /// What it does, for people.
    pub description: Option<String>,
    /// What starts it.
    pub trigger: Option<Trigger>,
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// Steps run when the workflow fails.
    pub on_failure: Vec<Step>,
}

/// What starts a workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An HTTP request to `/hooks/{environment}/{path}`.
    Webhook {
        /// The path under the environment's hook prefix.
        path: String,
        /// Signature verification, if the sender signs.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<WebhookSignature>,
        /// Template for a delivery's idempotency key.
        #[serde(skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        /// Where the idempotency key is written, for diagnostics.
        #[serde(skip)]
        idempotency_key_span: crate::diagnostic::Span,
    },
    /// A cron schedule.
    Cron {
        /// The cron expression.
        schedule: String,
        /// IANA time zone the schedule is read in.
        timezone: String,
        /// What to do about ticks missed while down: `skip`, `latest` or `all`.
        catch_up: String,
    },
    /// Started by hand (`airlock run`) or through the API.
    Manual,
}

/// How a webhook sender signs its deliveries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookSignature {
    /// `github`, `stripe`, `standard_webhooks` or `hex`.
    pub scheme: String,
    /// Name of the secret holding the signing key (in each environment).
    pub secret: String,
    /// Where the secret's name is written, for diagnostics.
    #[serde(skip)]
    pub secret_span: crate::diagnostic::Span,
    /// Header carrying the signature, for the `hex` scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique within the workflow.
    pub id: Located<String>,
    /// What the step does.
    pub kind: StepKind,
    /// Where the step's mapping is written.
    pub span: crate::diagnostic::Span,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// How long one attempt may take, in milliseconds.
    pub timeout: Option<Located<u64>>,
    /// Steps run when this step fails for good.
    pub on_failure: Vec<Step>,
}

/// The kinds of step.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Compute values; strings are templates.
    Map {
        /// The values to compute.
        values: Node,
    },
    /// Branch on a condition.
    If {
        /// The condition.
        condition: Located<String>,
        /// Steps when true.
        then: Vec<Step>,
        /// Steps when false.
        otherwise: Vec<Step>,
    },
    /// Branch on a value.
    Switch {
        /// The expression switched on.
        value: Located<String>,
        /// Case value and its steps.
        cases: Vec<(Located<String>, Vec<Step>)>,
        /// Steps when no case matches.
        default: Vec<Step>,
    },
    /// Call a connector action.
    Call {
        /// `connector.action` as written.
        target: Located<String>,
        /// The connector's name.
        connector: String,
        /// The action's name.
        action: String,
        /// Arguments; strings are templates.
        with: Option<Node>,
        /// Template for the idempotency key; a default is derived when absent.
        idempotency_key: Option<Located<String>>,
    },
    /// Wait for a person's decision.
    Approval {
        /// What the approver is asked.
        message: Option<Located<String>>,
        /// How long to wait before the step fails.
        timeout: Option<Located<u64>>,
    },
    /// Wait.
    Delay {
        /// For how long, in milliseconds.
        duration: Located<u64>,
    },
    /// Stop the run as failed.
    Fail {
        /// The failure message (a template).
        message: Located<String>,
    },
}

/// The step kind keys.
pub const STEP_KINDS: &[&str] = &["map", "if", "switch", "call", "approval", "delay", "fail"];

/// Errors a retry policy may retry on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The attempt timed out.
    Timeout,
    /// The connection failed or was refused.
    Connection,
    /// The target answered 5xx.
    Status5xx,
    /// The target answered 429.
    Status429,
}

impl RetryOn {
    /// Names as written.
    pub const NAMES: &'static [&'static str] =
        &["timeout", "connection", "status_5xx", "status_429"];
    /// Every variant, in the order of [`RetryOn::NAMES`].
    pub const ALL: &'static [RetryOn] = &[
        Self::Timeout,
        Self::Connection,
        Self::Status5xx,
        Self::Status429,
    ];
}

/// A step's retry policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First backoff, in milliseconds; doubles each attempt.
    pub backoff_ms: u64,
    /// Backoff ceiling, in milliseconds.
    pub max_backoff_ms: u64,
    /// Whether backoffs are randomised.
    pub jitter: bool,
    /// Which errors are retried.
    pub on: Vec<RetryOn>,
}

/// Context for step decoding.
struct StepCx<'a, 'd> {
    cx: &'a mut Cx<'d>,
}

/// Decodes a workflow file.
pub fn decode(cx: &mut Cx<'_>, root: &Node) -> Option<Workflow> {
    let mut fields = cx.fields(root, "workflow")?;
    let name = fields
        .required(cx, "name", "the workflow's unique name")
        .and_then(|n| cx.string(n));
    if let Some(name) = &name
        && !is_identifier(name)
    {
        cx.report(
            Code::InvalidValue,
            name.span,
            format!(
                "workflow name `{}` may use only a-z, 0-9, `-` and `_`",
                name.value
            ),
        );
    }
    let description = fields
        .optional("description")
        .and_then(|n| cx.string(n))
        .map(|d| d.value);
    let trigger = fields
        .required(cx, "trigger", "webhook, cron or manual")
        .and_then(|n| decode_trigger(cx, n));
    let mut scx = StepCx { cx };
    let steps = match fields.required(scx.cx, "steps", "what the workflow does") {
        Some(n) => scx.steps(n),
        None => Vec::new(),
    };
    let on_failure = fields
        .optional("on_failure")
        .map(|n| scx.steps(n))
        .unwrap_or_default();
    fields.finish(cx);
    Some(Workflow {
        name: name?,
        description,
        trigger,
        steps,
        on_failure,
    })
}

/// Whether `text` is a usable name: lower-case letters, digits, `-`, `_`.
pub fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Whether `text` can be a step id: it must read as `steps.<id>` in a template.
pub fn is_step_id(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn decode_trigger(cx: &mut Cx<'_>, node: &Node) -> Option<Trigger> {
    if let Value::Str(s) = &node.value
        && s == "manual"
    {
        return Some(Trigger::Manual);
    }
    let mut fields = cx.fields(node, "trigger")?;
    let webhook = fields.optional("webhook");
    let cron = fields.optional("cron");
    let manual = fields.optional("manual");
    fields.finish(cx);
    let present = [webhook, cron, manual].iter().flatten().count();
    if present != 1 {
        cx.report(
            Code::InvalidValue,
            node.span,
            "a trigger is exactly one of `webhook`, `cron` or `manual`",
        );
        return None;
    }
    if let Some(n) = webhook {
        let mut f = cx.fields(n, "webhook trigger")?;
        let path = f
            .required(cx, "path", "the path under /hooks/{environment}/")
            .and_then(|n| cx.string(n));
        if let Some(path) = &path
            && (path.is_empty()
                || !path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c)))
        {
            cx.report(
                Code::InvalidValue,
                path.span,
                format!(
                    "webhook path `{}` may use only letters, digits, `-`, `_`, `.` and `/`",
                    path.value
                ),
            );
        }
        let signature = f
            .optional("signature")
            .and_then(|n| decode_signature(cx, n));
        let idempotency_key = f.optional("idempotency_key").and_then(|n| cx.string(n));
        f.finish(cx);
        return Some(Trigger::Webhook {
            path: path?.value.trim_matches('/').to_owned(),
            signature,
            idempotency_key_span: idempotency_key.as_ref().map(|k| k.span).unwrap_or_default(),
            idempotency_key: idempotency_key.map(|k| k.value),
        });
    }
    if let Some(n) = cron {
        let mut f = cx.fields(n, "cron trigger")?;
        let schedule = f
            .required(cx, "schedule", "a cron expression such as `0 7 * * 1-5`")
            .and_then(|n| cx.string(n));
        let timezone = match f.optional("timezone") {
            Some(n) => crate::model::manifest::timezone(cx, n),
            None => Some("UTC".to_owned()),
        };
        let catch_up = f
            .optional("catch_up")
            .and_then(|n| cx.one_of(n, &["skip", "latest", "all"]))
            .map_or_else(|| "skip".to_owned(), |c| c.value);
        f.finish(cx);
        let schedule = schedule?;
        if let Err(error) = schedule.value.parse::<croner::Cron>() {
            cx.report(
                Code::BadCron,
                schedule.span,
                format!(
                    "`{}` is not a valid cron expression: {error}",
                    schedule.value
                ),
            )
            .help = Some(
                "five fields: minute hour day-of-month month day-of-week, e.g. `0 7 * * 1-5`"
                    .into(),
            );
            return None;
        }
        return Some(Trigger::Cron {
            schedule: schedule.value,
            timezone: timezone?,
            catch_up,
        });
    }
    Some(Trigger::Manual)
}

fn decode_signature(cx: &mut Cx<'_>, node: &Node) -> Option<WebhookSignature> {
    let mut f = cx.fields(node, "webhook signature")?;
    let scheme = f
        .required(cx, "scheme", "github, stripe, standard_webhooks or hex")
        .and_then(|n| cx.one_of(n, &["github", "stripe", "standard_webhooks", "hex"]));
    let secret = f
        .required(
            cx,
            "secret",
            "the name of the secret holding the signing key",
        )
        .and_then(|n| cx.string(n));
    let header = f
        .optional("header")
        .and_then(|n| cx.string(n))
        .map(|h| h.value);
    f.finish(cx);
    let secret = secret?;
    Some(WebhookSignature {
        scheme: scheme?.value,
        secret_span: secret.span,
        secret: secret.value,
        header,
    })
}

impl StepCx<'_, '_> {
    fn steps(&mut self, node: &Node) -> Vec<Step> {
        let items = self.cx.list(node, "of steps");
        items.iter().filter_map(|item| self.step(item)).collect()
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        let cx = &mut *self.cx;
        let mut fields = cx.fields(node, "step")?;
        let id = fields
            .required(cx, "id", "a unique name for the step")
            .and_then(|n| cx.text(n));
        if let Some(id) = &id
            && !is_step_id(id)
        {
            let suggested = id.to_ascii_lowercase().replace(['-', ' ', '.'], "_");
            cx.report(
                Code::InvalidValue,
                id.span,
                format!(
                    "step id `{}` may use only a-z, 0-9 and `_`, starting with a letter",
                    id.value
                ),
            )
            .help = Some(format!(
                "templates read it as `steps.<id>`, where `-` would be a minus: try `{suggested}`"
            ));
        }
        fields.optional("name");
        let kinds: Vec<(&str, &Node)> = STEP_KINDS
            .iter()
            .filter_map(|k| fields.optional(k).map(|n| (*k, n)))
            .collect();
        // Keys that belong to a kind; asked for up front so that `finish` knows them all.
        let then = fields.optional("then");
        let otherwise = fields.optional("else");
        let cases = fields.optional("cases");
        let default = fields.optional("default");
        let with = fields.optional("with");
        let idempotency_key = fields.optional("idempotency_key");
        let retry = fields.optional("retry");
        let timeout = fields.optional("timeout");
        let on_failure = fields.optional("on_failure");
        let unknown_before = cx.diagnostics.len();
        fields.finish(cx);
        let had_unknown_keys = cx.diagnostics.len() > unknown_before;

        let (kind_name, kind_node) = match kinds.as_slice() {
            [one] => *one,
            [] => {
                if !had_unknown_keys {
                    cx.report(
                        Code::MissingField,
                        id.as_ref().map_or(node.span, |i| i.span),
                        "step has no kind",
                    )
                    .help = Some(format!("add exactly one of: {}", STEP_KINDS.join(", ")));
                }
                return None;
            }
            [_, second, ..] => {
                let span = fields_key_span(node, second.0).unwrap_or(node.span);
                cx.report(
                    Code::InvalidValue,
                    span,
                    format!(
                        "step has more than one kind: {}",
                        kinds
                            .iter()
                            .map(|(k, _)| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .help = Some("split it into one step per kind".into());
                return None;
            }
        };

        let misplaced = |cx: &mut Cx<'_>, key: &str, present: Option<&Node>, allowed: &[&str]| {
            if present.is_some() && !allowed.contains(&kind_name) {
                let span = fields_key_span(node, key).unwrap_or(node.span);
                cx.report(
                    Code::UnknownKey,
                    span,
                    format!("`{key}` does not apply to a `{kind_name}` step"),
                )
                .help = Some(format!("`{key}` belongs to {} steps", allowed.join(", ")));
            }
        };
        misplaced(cx, "then", then, &["if"]);
        misplaced(cx, "else", otherwise, &["if"]);
        misplaced(cx, "cases", cases, &["switch"]);
        misplaced(cx, "default", default, &["switch"]);
        misplaced(cx, "with", with, &["call"]);
        misplaced(cx, "idempotency_key", idempotency_key, &["call"]);
        misplaced(cx, "retry", retry, &["call"]);

        let kind = match kind_name {
            "map" => {
                if !matches!(kind_node.value, Value::Map(_)) {
                    cx.report(
                        Code::WrongType,
                        kind_node.span,
                        format!(
                            "expected a mapping of values to compute, found {}",
                            kind_node.value.type_name()
                        ),
                    );
                    return None;
                }
                StepKind::Map {
                    values: kind_node.clone(),
                }
            }
            "if" => {
                let condition = cx.text(kind_node)?;
                if then.is_none() {
                    let span = fields_key_span(node, "if").unwrap_or(node.span);
                    cx.report(
                        Code::MissingField,
                        span,
                        "`if` step is missing required field `then`",
                    )
                    .help =
                        Some("add `then:` with the steps to run when the condition holds".into());
                }
                StepKind::If {
                    condition,
                    then: then.map(|n| self.steps(n)).unwrap_or_default(),
                    otherwise: otherwise.map(|n| self.steps(n)).unwrap_or_default(),
                }
            }
            "switch" => {
                let value = cx.text(kind_node)?;
                let Some(cases_node) = cases else {
                    let span = fields_key_span(node, "switch").unwrap_or(node.span);
                    cx.report(
                        Code::MissingField,
                        span,
                        "`switch` step is missing required field `cases`",
                    )
                    .help = Some("add `cases:` mapping each value to its steps".into());
                    return None;
                };
                let entries = cx.entries(cases_node, "cases by value");
                let cases = entries
                    .into_iter()
                    .map(|(value, steps)| (value, self.steps(steps)))
                    .collect();
                StepKind::Switch {
                    value,
                    cases,
                    default: default.map(|n| self.steps(n)).unwrap_or_default(),
                }
            }
            "call" => {
                let target = cx.string(kind_node)?;
                let Some((connector, action)) = target.split_once('.') else {
                    cx.report(
                        Code::InvalidValue,
                        target.span,
                        format!("`{}` is not `connector.action`", target.value),
                    )
                    .help = Some("name the connector and its action, e.g. `crm.request`".into());
                    return None;
                };
                let (connector, action) = (connector.to_owned(), action.to_owned());
                StepKind::Call {
                    target,
                    connector,
                    action,
                    with: with.cloned(),
                    idempotency_key: idempotency_key.and_then(|n| cx.string(n)),
                }
            }
            "approval" => {
                let mut f = cx.fields(kind_node, "approval")?;
                let message = f.optional("message").and_then(|n| cx.string(n));
                let wait = f.optional("timeout").and_then(|n| cx.duration(n));
                f.finish(cx);
                StepKind::Approval {
                    message,
                    timeout: wait,
                }
            }
            "delay" => StepKind::Delay {
                duration: cx.duration(kind_node)?,
            },
            "fail" => StepKind::Fail {
                message: cx.string(kind_node)?,
            },
            _ => return None,
        };
        let cx = &mut *self.cx;
        let retry = retry.and_then(|n| decode_retry(cx, n));
        let timeout = timeout.and_then(|n| cx.duration(n));
        if let Some(t) = &timeout
            && t.value == 0
        {
            cx.report(
                Code::InvalidValue,
                t.span,
                "a timeout must be longer than zero",
            );
        }
        let on_failure = on_failure.map(|n| self.steps(n)).unwrap_or_default();
        Some(Step {
            id: id?,
            kind,
            span: node.span,
            retry,
            timeout,
            on_failure,
        })
    }
}

fn fields_key_span(node: &Node, key: &str) -> Option<crate::diagnostic::Span> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k.span),
        _ => None,
    }
}

fn decode_retry(cx: &mut Cx<'_>, node: &Node) -> Option<Retry> {
    let mut f = cx.fields(node, "retry")?;
    let attempts = f
        .required(cx, "attempts", "attempts in all, the first included")
        .and_then(|n| cx.integer(n, 1, 100));
    let backoff = f.optional("backoff").and_then(|n| cx.duration(n));
    let max_backoff = f.optional("max_backoff").and_then(|n| cx.duration(n));
    let jitter = f
        .optional("jitter")
        .and_then(|n| cx.bool(n))
        .unwrap_or(true);
    let on = match f.optional("on") {
        Some(n) => cx
            .list(n, "of errors to retry")
            .iter()
            .filter_map(|item| {
                let name = cx.string(item)?;
                match RetryOn::NAMES.iter().position(|k| *k == name.value) {
                    Some(i) => Some(RetryOn::ALL[i]),
                    None => {
                        let help = suggestion(&name, RetryOn::NAMES.iter().copied())
                            .unwrap_or_else(|| {
                                format!("retryable errors are: {}", RetryOn::NAMES.join(", "))
                            });
                        cx.report(
                            Code::InvalidValue,
                            name.span,
                            format!("`{}` is not a retryable error", name.value),
                        )
                        .help = Some(help);
                        None
                    }
                }
            })
            .collect(),
        None => RetryOn::ALL.to_vec(),
    };
    f.finish(cx);
    let backoff_ms = backoff.map_or(1_000, |b| b.value);
    Some(Retry {
        attempts: attempts?.value as u32,
        backoff_ms,
        max_backoff_ms: max_backoff
            .map_or(backoff_ms.saturating_mul(32).max(backoff_ms), |m| m.value),
        jitter,
        on,
    })
}

impl Workflow {
    /// Every step, depth first in execution order: the main path, each step's
    /// `on_failure`, then the workflow's `on_failure`.
    pub fn all_steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for step in steps {
                out.push(step);
                match &step.kind {
                    StepKind::If {
                        then, otherwise, ..
                    } => {
                        walk(then, out);
                        walk(otherwise, out);
                    }
                    StepKind::Switch { cases, default, .. } => {
                        for (_, steps) in cases {
                            walk(steps, out);
                        }
                        walk(default, out);
                    }
                    _ => {}
                }
                walk(&step.on_failure, out);
            }
        }
        walk(&self.steps, &mut out);
        walk(&self.on_failure, &mut out);
        out
    }

    /// The connectors this workflow calls, by name, each once, in order of first use.
    pub fn connectors_called(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for step in self.all_steps() {
            if let StepKind::Call { connector, .. } = &step.kind
                && !names.contains(&connector.as_str())
            {
                names.push(connector);
            }
        }
        names
    }
}

impl StepKind {
    /// The kind's key as written.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Map { .. } => "map",
            StepKind::If { .. } => "if",
            StepKind::Switch { .. } => "switch",
            StepKind::Call { .. } => "call",
            StepKind::Approval { .. } => "approval",
            StepKind::Delay { .. } => "delay",
            StepKind::Fail { .. } => "fail",
        }
    }
}
