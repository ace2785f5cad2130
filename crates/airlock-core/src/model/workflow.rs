//! `workflows/NAME.yaml`: a trigger and a tree of steps.
//!
//! A step is a mapping with an `id` and exactly one kind key (`map`, `if`, `switch`,
//! `call`, `approval`, `delay`, `fail`). It is decoded by hand rather than through a
//! tagged serde enum so that every error points at the exact value inside the step.

use crate::decode::{Cx, Fields, Located};
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
    /// What a successful run answers (templates over the run, like a `map` step); without
    /// it, the run's output is every step's output by id. A synchronous webhook answers
    /// with it.
    pub output: Option<Node>,
    /// Whether a template or condition reads `release`, worked out on first ask: the
    /// engine looks the release up only for a workflow that reads it.
    pub release_read: std::sync::OnceLock<bool>,
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
        /// How a delivery is answered. Serialised only when not the default, as are
        /// the limits below: a workflow that does not use them keeps its version id.
        #[serde(skip_serializing_if = "Respond::is_default")]
        respond: Respond,
        /// For `respond: sync`: how long a delivery waits for the run's output, in ms.
        #[serde(skip_serializing_if = "is_default_wait")]
        wait_ms: u64,
        /// The largest body accepted, in bytes.
        #[serde(skip_serializing_if = "is_default_max_body")]
        max_body: u64,
        /// The deepest JSON nesting accepted.
        #[serde(skip_serializing_if = "is_default_max_depth")]
        max_depth: u32,
        /// How many deliveries are accepted per unit of time, if limited.
        #[serde(skip_serializing_if = "Option::is_none")]
        rate_limit: Option<RateLimit>,
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
    /// Name of a second secret also accepted while the sender's key is rotated: the
    /// sender moves to the new key (`secret`) while deliveries signed with the old one
    /// (`previous_secret`) still pass, so no delivery is refused during the switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// Where the previous secret's name is written, for diagnostics.
    #[serde(skip)]
    pub previous_secret_span: crate::diagnostic::Span,
}

/// How a webhook delivery is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Respond {
    /// `202 Accepted` with the run's id as soon as the run is stored: the sender is
    /// never held up by the workflow, and a slow step cannot make it retry.
    #[default]
    Async,
    /// The run's output, once it finishes within `wait`; for senders that need an
    /// answer (a form, a chat command).
    Sync,
}

impl Respond {
    fn is_default(&self) -> bool {
        *self == Respond::default()
    }
}

/// How long a synchronous delivery waits by default, in ms.
pub const DEFAULT_WAIT_MS: u64 = 10_000;
/// The longest a synchronous delivery may wait, in ms: the sender's connection (and a
/// server slot) is held that long, and most senders time out near a minute.
pub const MAX_WAIT_MS: u64 = 60_000;
/// The largest webhook body accepted by default: 1 MiB.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
/// The largest `max_body` a workflow may ask for: 16 MiB. A body is held in memory and
/// journaled whole, so a larger one belongs in object storage, passed by reference.
pub const MAX_MAX_BODY: u64 = 16 * 1024 * 1024;
/// The deepest JSON nesting accepted by default.
pub const DEFAULT_MAX_DEPTH: u32 = 64;

fn is_default_wait(ms: &u64) -> bool {
    *ms == DEFAULT_WAIT_MS
}

fn is_default_max_body(bytes: &u64) -> bool {
    *bytes == DEFAULT_MAX_BODY
}

fn is_default_max_depth(depth: &u32) -> bool {
    *depth == DEFAULT_MAX_DEPTH
}

/// A webhook's rate limit: at most `requests` deliveries per `per`. The limiter is the
/// server's; the model only says what was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Deliveries allowed per unit.
    pub requests: u32,
    /// The unit.
    pub per: RateUnit,
}

/// The unit of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateUnit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
}

impl RateUnit {
    /// The unit's length in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            RateUnit::Second => 1_000,
            RateUnit::Minute => 60_000,
            RateUnit::Hour => 3_600_000,
        }
    }

    fn short(self) -> &'static str {
        match self {
            RateUnit::Second => "s",
            RateUnit::Minute => "min",
            RateUnit::Hour => "h",
        }
    }
}

/// The most requests a rate limit may name per unit.
pub const MAX_RATE_REQUESTS: u32 = 1_000_000;

impl RateLimit {
    /// Reads `100/s`, `600/min`, `10000/h` (also `sec`, `second`, `m`, `minute`,
    /// `hour`), or says why the text is not a rate.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let Some((count, unit)) = text.split_once('/') else {
            return Err("expected requests per unit, such as `100/s`".into());
        };
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{count}` is not a whole number of requests"));
        }
        let requests = match count.parse::<u32>() {
            Ok(n @ 1..=MAX_RATE_REQUESTS) => n,
            _ => {
                return Err(format!(
                    "the number of requests must be from 1 to {MAX_RATE_REQUESTS}"
                ));
            }
        };
        let per = match unit.trim() {
            "s" | "sec" | "second" => RateUnit::Second,
            "m" | "min" | "minute" => RateUnit::Minute,
            "h" | "hour" => RateUnit::Hour,
            other => return Err(format!("`{other}` is not a unit: use `s`, `min` or `h`")),
        };
        Ok(RateLimit { requests, per })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, self.per.short())
    }
}

/// Reads a size in bytes: a whole number, optionally followed by a unit — `B`, `KiB`,
/// `MiB`, `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000), in any case.
/// Fractions are refused rather than rounded, so the limit is exactly what is written.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err("expected a number of bytes with a unit, such as `256KiB`".into());
    }
    let unit = unit.trim();
    if unit.starts_with(['.', ',']) {
        return Err("write a whole number, e.g. `1536KiB` rather than `1.5MiB`".into());
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("`{unit}` is not a size unit: use `KiB` or `MiB`")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "too large".to_owned())
}

/// Formats a byte count the way users write sizes.
pub fn format_size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
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

/// Decodes a stored version's source (the YAML a version was hashed from) into the
/// workflow the interpreter runs; the first problem's message when it does not decode.
pub fn decode_source(source: &str) -> Result<Workflow, String> {
    let file = crate::source::SourceFile::new("workflow.yaml", source);
    let node = crate::yaml::parse(0, &file).map_err(|d| d.message)?;
    let mut diagnostics = crate::diagnostic::Diagnostics::default();
    let mut cx = Cx::new(0, &mut diagnostics);
    let workflow = decode(&mut cx, &node);
    match workflow {
        Some(w) if diagnostics.is_empty() => Ok(w),
        _ => Err(diagnostics.into_sorted().first().map_or_else(
            || "the workflow does not decode".to_owned(),
            |d| d.message.clone(),
        )),
    }
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
    let output = fields.optional("output").cloned();
    fields.finish(cx);
    Some(Workflow {
        name: name?,
        description,
        trigger,
        steps,
        on_failure,
        output,
        release_read: std::sync::OnceLock::new(),
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
        // The one rule for webhook paths, which the server applies to every delivery too.
        let route = path.as_ref().map(|p| crate::webhook::hook_path(p));
        if let (Some(path), Some(Err(unsafe_path))) = (&path, &route) {
            cx.report(
                Code::UnsafeWebhookPath,
                path.span,
                format!("webhook path `{}` {unsafe_path}", path.value),
            );
        }
        let signature = f
            .optional("signature")
            .and_then(|n| decode_signature(cx, n));
        let idempotency_key = f.optional("idempotency_key").and_then(|n| cx.string(n));
        let limits = decode_webhook_limits(cx, &mut f);
        f.finish(cx);
        return Some(Trigger::Webhook {
            path: match route? {
                Ok(key) => key,
                Err(_) => path?.value.trim_matches('/').to_owned(),
            },
            signature,
            idempotency_key_span: idempotency_key.as_ref().map(|k| k.span).unwrap_or_default(),
            idempotency_key: idempotency_key.map(|k| k.value),
            respond: limits.respond,
            wait_ms: limits.wait_ms,
            max_body: limits.max_body,
            max_depth: limits.max_depth,
            rate_limit: limits.rate_limit,
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
        if let Err(error) = crate::schedule::parse_cron(&schedule.value) {
            cx.report(
                Code::BadCron,
                schedule.span,
                format!(
                    "`{}` is not a valid cron expression: {error}",
                    schedule.value
                ),
            )
            .help = Some(
                "five fields: minute hour day-of-month month day-of-week, e.g. `0 7 * * 1-5` (or six, with seconds first)"
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
    let previous_secret = f.optional("previous_secret").and_then(|n| cx.string(n));
    f.finish(cx);
    let secret = secret?;
    if let Some(previous) = &previous_secret
        && previous.value == secret.value
    {
        cx.report(
            Code::InvalidValue,
            previous.span,
            format!(
                "`previous_secret` names the same secret as `secret` (`{}`)",
                previous.value
            ),
        )
        .help = Some(
            "during a rotation, `secret` names the new key and `previous_secret` the old one; once the sender uses the new key, remove `previous_secret`"
                .into(),
        );
    }
    Some(WebhookSignature {
        scheme: scheme?.value,
        secret_span: secret.span,
        secret: secret.value,
        header,
        previous_secret_span: previous_secret.as_ref().map(|p| p.span).unwrap_or_default(),
        previous_secret: previous_secret.map(|p| p.value),
    })
}

/// A webhook's answer mode and limits, defaults filled in.
struct WebhookLimits {
    respond: Respond,
    wait_ms: u64,
    max_body: u64,
    max_depth: u32,
    rate_limit: Option<RateLimit>,
}

/// Decodes `respond`, `wait`, `max_body`, `max_depth` and `rate_limit`, reporting each
/// problem at its value. A value in error is replaced by its default so that the rest
/// of the workflow is still checked; the diagnostic keeps the project from loading, so
/// no webhook runs with a limit other than the one written.
fn decode_webhook_limits(cx: &mut Cx<'_>, f: &mut Fields<'_>) -> WebhookLimits {
    let respond = match f
        .optional("respond")
        .and_then(|n| cx.one_of(n, &["async", "sync"]))
    {
        Some(r) if r.value == "sync" => Respond::Sync,
        _ => Respond::Async,
    };
    let wait = f.optional("wait").and_then(|n| cx.duration(n));
    if let Some(wait) = &wait {
        if respond != Respond::Sync {
            let span = f.key_span("wait").unwrap_or(wait.span);
            cx.report(
                Code::InvalidValue,
                span,
                "`wait` applies only to `respond: sync`",
            )
            .help = Some(
                "an asynchronous webhook answers 202 with the run id at once; add `respond: sync` to wait for the run's output, or remove `wait`"
                    .into(),
            );
        } else if wait.value == 0 || wait.value > MAX_WAIT_MS {
            cx.report(
                Code::InvalidValue,
                wait.span,
                format!(
                    "`wait` must be longer than zero and at most {}, found {}",
                    crate::duration::format(MAX_WAIT_MS),
                    crate::duration::format(wait.value)
                ),
            )
            .help = Some(
                "the sender's connection is held open while it waits; for longer work use `respond: async` and read the run through the API"
                    .into(),
            );
        }
    }
    let max_body = f.optional("max_body").and_then(|n| {
        let text = cx.text(n)?;
        match parse_size(&text) {
            Ok(0) => {
                cx.report(Code::InvalidValue, text.span, "`max_body` must be larger than zero");
                None
            }
            Ok(bytes) if bytes > MAX_MAX_BODY => {
                cx.report(
                    Code::InvalidValue,
                    text.span,
                    format!(
                        "`{}` is above the {} limit for a webhook body",
                        text.value,
                        format_size(MAX_MAX_BODY)
                    ),
                )
                .help = Some(
                    "a body is held in memory and journaled whole; send a larger document by reference (a URL the workflow fetches)"
                        .into(),
                );
                None
            }
            Ok(bytes) => Some(bytes),
            Err(reason) => {
                cx.report(
                    Code::InvalidValue,
                    text.span,
                    format!("`{}` is not a size: {reason}", text.value),
                )
                .help = Some("write a whole number and a unit: `256KiB`, `1MiB`, `16MiB`".into());
                None
            }
        }
    });
    let max_depth = f.optional("max_depth").and_then(|n| {
        cx.integer(n, 1, crate::webhook::MAX_JSON_DEPTH as i64)
            .map(|d| d.value as u32)
    });
    let rate_limit = f.optional("rate_limit").and_then(|n| {
        let text = cx.text(n)?;
        match RateLimit::parse(&text) {
            Ok(rate) => Some(rate),
            Err(reason) => {
                cx.report(
                    Code::InvalidValue,
                    text.span,
                    format!("`{}` is not a rate limit: {reason}", text.value),
                )
                .help = Some("write requests per unit: `100/s`, `600/min`, `10000/h`".into());
                None
            }
        }
    });
    WebhookLimits {
        respond,
        wait_ms: wait
            .filter(|w| (1..=MAX_WAIT_MS).contains(&w.value))
            .map_or(DEFAULT_WAIT_MS, |w| w.value),
        max_body: max_body.unwrap_or(DEFAULT_MAX_BODY),
        max_depth: max_depth.unwrap_or(DEFAULT_MAX_DEPTH),
        rate_limit,
    }
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

    /// Whether any of its templates or conditions reads `release` (the release a run ran
    /// on and its owners). Known once per decoded workflow.
    pub fn reads_release(&self) -> bool {
        *self
            .release_read
            .get_or_init(|| self.reads(crate::expr::RELEASE_ROOT))
    }

    /// Whether any of its templates or conditions reads the name `root`.
    fn reads(&self, root: &str) -> bool {
        fn template(text: &str, root: &str) -> bool {
            crate::expr::is_template(text)
                && crate::expr::check_template(text)
                    .is_ok_and(|c| c.references.iter().any(|r| r.root() == root))
        }
        fn condition(text: &str, root: &str) -> bool {
            crate::expr::check_condition(text)
                .is_ok_and(|c| c.references.iter().any(|r| r.root() == root))
        }
        fn node(at: &Node, root: &str) -> bool {
            match &at.value {
                Value::Str(text) => template(text, root),
                Value::Seq(items) => items.iter().any(|i| node(i, root)),
                Value::Map(entries) => entries.iter().any(|(_, v)| node(v, root)),
                _ => false,
            }
        }
        self.output.as_ref().is_some_and(|o| node(o, root))
            || self.all_steps().iter().any(|step| match &step.kind {
                StepKind::Map { values } => node(values, root),
                StepKind::If { condition: c, .. } => condition(c, root),
                StepKind::Switch { value, .. } => condition(value, root),
                StepKind::Call {
                    with,
                    idempotency_key,
                    ..
                } => {
                    with.as_ref().is_some_and(|w| node(w, root))
                        || idempotency_key.as_ref().is_some_and(|k| template(k, root))
                }
                StepKind::Approval { message, .. } => {
                    message.as_ref().is_some_and(|m| template(m, root))
                }
                StepKind::Delay { .. } => false,
                StepKind::Fail { message } => template(message, root),
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Diagnostics;
    use crate::source::SourceFile;

    /// Decodes a workflow whose trigger is `webhook:` with `fields` (indented under it),
    /// returning the trigger and each diagnostic as (code, the text it points at, message).
    fn webhook(fields: &str) -> (Option<Trigger>, Vec<(Code, String, String)>) {
        let text = format!(
            "name: w\ntrigger:\n  webhook:\n    path: w\n{fields}steps:\n  - id: a\n    map: {{ x: 1 }}\n"
        );
        let file = SourceFile::new("workflows/w.yaml", text.as_str());
        let node = crate::yaml::parse(0, &file).unwrap_or_else(|d| panic!("{}", d.message));
        let mut diagnostics = Diagnostics::default();
        let workflow = decode(&mut Cx::new(0, &mut diagnostics), &node);
        let found = diagnostics
            .into_sorted()
            .into_iter()
            .map(|d| (d.code, text[d.span.start..d.span.end].to_owned(), d.message))
            .collect();
        (workflow.and_then(|w| w.trigger), found)
    }

    fn limits(trigger: &Option<Trigger>) -> (Respond, u64, u64, u32, Option<RateLimit>) {
        match trigger {
            Some(Trigger::Webhook {
                respond,
                wait_ms,
                max_body,
                max_depth,
                rate_limit,
                ..
            }) => (*respond, *wait_ms, *max_body, *max_depth, *rate_limit),
            other => panic!("not a webhook: {other:?}"),
        }
    }

    #[test]
    fn webhook_defaults() {
        let (trigger, found) = webhook("");
        assert_eq!(found, []);
        assert_eq!(
            limits(&trigger),
            (
                Respond::Async,
                DEFAULT_WAIT_MS,
                DEFAULT_MAX_BODY,
                DEFAULT_MAX_DEPTH,
                None
            )
        );
    }

    #[test]
    fn webhook_limits_as_written() {
        let (trigger, found) = webhook(
            "    respond: sync\n    wait: 30s\n    max_body: 256KiB\n    max_depth: 16\n    rate_limit: 600/min\n",
        );
        assert_eq!(found, []);
        assert_eq!(
            limits(&trigger),
            (
                Respond::Sync,
                30_000,
                256 * 1024,
                16,
                Some(RateLimit {
                    requests: 600,
                    per: RateUnit::Minute
                })
            )
        );
        let (trigger, found) = webhook("    max_body: 1048576\n    rate_limit: 100/s\n");
        assert_eq!(found, []);
        assert_eq!(limits(&trigger).2, 1 << 20);
    }

    #[test]
    fn webhook_limits_out_of_range_are_pointed_at() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "    respond: sync\n    wait: 2m\n",
                "2m",
                "`wait` must be longer than zero and at most 1m, found 2m",
            ),
            (
                "    wait: 5s\n",
                "wait",
                "`wait` applies only to `respond: sync`",
            ),
            (
                "    max_body: 32MiB\n",
                "32MiB",
                "`32MiB` is above the 16 MiB limit for a webhook body",
            ),
            (
                "    max_body: 1.5MiB\n",
                "1.5MiB",
                "`1.5MiB` is not a size: write a whole number, e.g. `1536KiB` rather than `1.5MiB`",
            ),
            (
                "    max_body: 10 parsecs\n",
                "10 parsecs",
                "`10 parsecs` is not a size: `parsecs` is not a size unit: use `KiB` or `MiB`",
            ),
            (
                "    max_depth: 500\n",
                "500",
                "500 is out of range: expected 1 to 127",
            ),
            (
                "    rate_limit: 100/fortnight\n",
                "100/fortnight",
                "`100/fortnight` is not a rate limit: `fortnight` is not a unit: use `s`, `min` or `h`",
            ),
            (
                "    rate_limit: 0/s\n",
                "0/s",
                "`0/s` is not a rate limit: the number of requests must be from 1 to 1000000",
            ),
            (
                "    respond: later\n",
                "later",
                "`later` is not allowed here",
            ),
        ];
        for (fields, at, message) in cases {
            let (_, found) = webhook(fields);
            assert_eq!(
                found,
                [(Code::InvalidValue, (*at).to_owned(), (*message).to_owned())],
                "{fields}"
            );
        }
    }

    #[test]
    fn previous_secret_is_decoded_and_must_differ() {
        let (trigger, found) = webhook(
            "    signature: { scheme: github, secret: HOOK_NEW, previous_secret: HOOK_OLD }\n",
        );
        assert_eq!(found, []);
        let Some(Trigger::Webhook {
            signature: Some(signature),
            ..
        }) = trigger
        else {
            panic!("{trigger:?}")
        };
        assert_eq!(signature.previous_secret.as_deref(), Some("HOOK_OLD"));
        assert!(!signature.previous_secret_span.is_empty());
        let (_, found) =
            webhook("    signature: { scheme: github, secret: HOOK, previous_secret: HOOK }\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "HOOK");
        assert!(found[0].2.contains("same secret"), "{found:?}");
    }

    #[test]
    fn sizes_and_rates_read_as_written() {
        assert_eq!(parse_size("256KiB"), Ok(262_144));
        assert_eq!(parse_size("1 MiB"), Ok(1_048_576));
        assert_eq!(parse_size("1mb"), Ok(1_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(1536), "1536 B");
        assert_eq!(format_size(256 << 10), "256 KiB");
        let rate = RateLimit::parse("100/s").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rate.to_string(), "100/s");
        assert_eq!(rate.per.millis(), 1_000);
        assert_eq!(
            RateLimit::parse("10000 / hour").map(|r| r.to_string()),
            Ok("10000/h".to_owned())
        );
        assert!(RateLimit::parse("-1/s").is_err());
        assert!(RateLimit::parse("100").is_err());
    }
}
