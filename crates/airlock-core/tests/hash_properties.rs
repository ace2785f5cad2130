//! Property tests for the workflow version id (`airlock_core::canonical::version_id`).
//!
//! A random *abstract* workflow is generated, then written out as YAML by an emitter
//! in this file that picks a *style* at random: block or flow collections (one line or
//! several), key order shuffled in every mapping, 2 or 4 space indentation, compact or
//! indented sequences, comments on their own lines and at line ends, plain, single- or
//! double-quoted strings (escaped properly, sometimes `!!str`-tagged), and the many
//! spellings YAML has for the same number, boolean or null. On top of that the emitter
//! uses the model's own equivalences: durations in different units (`90s`, `1m 30s`,
//! `90000ms`), conditions and switch values with or without `{{ }}`, defaults written
//! or left out (retry backoff, max backoff, jitter, `on` in any order, cron time zone
//! and catch-up, empty `else`/`default`/`on_failure` as `[]`, `null` or nothing),
//! `manual` or `{ manual: … }`, webhook paths with surrounding slashes.
//!
//! Workflows have 1–6 steps of every kind (map with nested values, if, switch, call
//! with arguments, idempotency key, retry and timeout, approval, delay, fail), nested
//! branches and failure handlers, and a webhook (with signature and idempotency key),
//! cron or manual trigger.
//!
//! Property A: every rendering of one abstract workflow has the same version id.
//! Property B: every single meaning-changing mutation changes the version id.

use airlock_core::canonical::{canonical_bytes, version_id};
use airlock_core::decode::Cx;
use airlock_core::diagnostic::Diagnostics;
use airlock_core::model::Workflow;
use airlock_core::model::workflow;
use airlock_core::project;
use airlock_core::source::SourceFile;
use airlock_core::yaml;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------
// The project the generated workflows live in.
// ---------------------------------------------------------------------------------

/// Two connectors of every kind, so that a call can move to another connector and
/// stay valid; all bound (in record mode) in both environments.
const MANIFEST: &str = "\
project: hash-props
connectors:
  crm: { kind: http }
  crm2: { kind: http }
  chat: { kind: chat_webhook }
  alerts: { kind: chat_webhook }
  db: { kind: sql }
  db2: { kind: sql }
  mail: { kind: smtp }
  mail2: { kind: smtp }
environments:
  staging:
    secrets: [HOOK_SECRET, OTHER_SECRET]
    bindings:
      crm: { mode: record }
      crm2: { mode: record }
      chat: { mode: record }
      alerts: { mode: record }
      db: { mode: record }
      db2: { mode: record }
      mail: { mode: record }
      mail2: { mode: record }
  production:
    secrets: [HOOK_SECRET, OTHER_SECRET]
    bindings:
      crm: { mode: record }
      crm2: { mode: record }
      chat: { mode: record }
      alerts: { mode: record }
      db: { mode: record }
      db2: { mode: record }
      mail: { mode: record }
      mail2: { mode: record }
";

const HTTP_ARGS: Args = &[
    ("method", true),
    ("path", true),
    ("query", false),
    ("headers", false),
    ("json", false),
    ("body", false),
];
const CHAT_ARGS: Args = &[("text", true), ("blocks", false)];
const SMTP_ARGS: Args = &[
    ("to", true),
    ("subject", true),
    ("body", true),
    ("cc", false),
    ("reply_to", false),
];
const SQL_INSERT_ARGS: Args = &[("table", true), ("values", true)];
const SQL_UPSERT_ARGS: Args = &[("table", true), ("values", true), ("key", true)];
const SQL_QUERY_ARGS: Args = &[("sql", true), ("params", false)];

/// An action's arguments: name and whether it is required.
type Args = &'static [(&'static str, bool)];

/// Every call target the generator uses, with the arguments its action takes.
const TARGETS: &[(&str, &str, Args)] = &[
    ("crm", "request", HTTP_ARGS),
    ("crm2", "request", HTTP_ARGS),
    ("chat", "post", CHAT_ARGS),
    ("alerts", "post", CHAT_ARGS),
    ("db", "insert", SQL_INSERT_ARGS),
    ("db", "upsert", SQL_UPSERT_ARGS),
    ("db2", "query", SQL_QUERY_ARGS),
    ("mail", "send", SMTP_ARGS),
    ("mail2", "send", SMTP_ARGS),
];

/// Connectors of the same kind, in pairs.
const SIBLINGS: &[(&str, &str)] = &[
    ("crm", "crm2"),
    ("chat", "alerts"),
    ("db", "db2"),
    ("mail", "mail2"),
];

const RETRY_ON: &[&str] = &["timeout", "connection", "status_5xx", "status_429"];
const SCHEDULES: &[&str] = &[
    "0 7 * * 1-5",
    "*/5 * * * *",
    "0 0 1 * *",
    "30 2 * * 0",
    "15 */2 * * *",
];
const TIMEZONES: &[&str] = &["UTC", "Europe/London", "America/New_York"];
const CATCH_UP: &[&str] = &["skip", "latest", "all"];
const OPS: &[&str] = &[">", ">=", "<", "<=", "==", "!="];

// ---------------------------------------------------------------------------------
// The abstract workflow.
// ---------------------------------------------------------------------------------

/// A YAML value as the workflow means it.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<V>),
    Map(Vec<(String, V)>),
}

#[derive(Debug, Clone)]
struct Signature {
    scheme: &'static str,
    secret: &'static str,
    header: Option<String>,
}

#[derive(Debug, Clone)]
enum Trig {
    Webhook {
        path: String,
        signature: Option<Signature>,
        idempotency_key: Option<String>,
    },
    Cron {
        schedule: String,
        timezone: String,
        catch_up: String,
    },
    Manual,
}

/// `trigger.body.FIELD OP RHS`.
#[derive(Debug, Clone)]
struct Cond {
    field: String,
    op: &'static str,
    rhs: i64,
}

impl Cond {
    fn text(&self) -> String {
        format!("trigger.body.{} {} {}", self.field, self.op, self.rhs)
    }
}

#[derive(Debug, Clone)]
struct Retry {
    attempts: i64,
    backoff_ms: u64,
    max_backoff_ms: u64,
    jitter: bool,
    on: BTreeSet<&'static str>,
}

#[derive(Debug, Clone)]
enum Kind {
    Map(Vec<(String, V)>),
    If {
        cond: Cond,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    /// `switch: trigger.body.FIELD` with cases by value.
    Switch {
        field: String,
        cases: Vec<(String, Vec<Step>)>,
        default: Vec<Step>,
    },
    Call {
        connector: String,
        action: String,
        with: Vec<(String, V)>,
        idempotency_key: Option<String>,
        retry: Option<Retry>,
    },
    Approval {
        message: Option<String>,
        timeout_ms: Option<u64>,
    },
    Delay(u64),
    Fail(String),
}

#[derive(Debug, Clone)]
struct Step {
    id: String,
    kind: Kind,
    timeout_ms: Option<u64>,
    on_failure: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Wf {
    name: String,
    description: Option<String>,
    trigger: Trig,
    steps: Vec<Step>,
    on_failure: Vec<Step>,
}

impl Wf {
    /// Steps in all, nested ones included (what `Workflow::all_steps` counts).
    fn step_count(&self) -> usize {
        let mut n = 0;
        walk_steps(self, &mut |_| n += 1);
        n
    }

    fn ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        walk_steps(self, &mut |s| {
            ids.insert(s.id.clone());
        });
        ids
    }

    /// A step id not used yet.
    fn fresh_id(&self, base: &str) -> String {
        let ids = self.ids();
        let mut id = base.to_owned();
        let mut n = 0;
        while ids.contains(&id) {
            n += 1;
            id = format!("{base}_{n}");
        }
        id
    }
}

/// The lists of steps directly inside a step: branches, cases, its failure handler.
fn child_lists(step: &Step) -> Vec<&Vec<Step>> {
    let mut lists: Vec<&Vec<Step>> = match &step.kind {
        Kind::If {
            then, otherwise, ..
        } => vec![then, otherwise],
        Kind::Switch { cases, default, .. } => {
            cases.iter().map(|(_, s)| s).chain([default]).collect()
        }
        _ => Vec::new(),
    };
    lists.push(&step.on_failure);
    lists
}

fn child_lists_mut(step: &mut Step) -> Vec<&mut Vec<Step>> {
    let mut lists: Vec<&mut Vec<Step>> = match &mut step.kind {
        Kind::If {
            then, otherwise, ..
        } => vec![then, otherwise],
        Kind::Switch { cases, default, .. } => {
            cases.iter_mut().map(|(_, s)| s).chain([default]).collect()
        }
        _ => Vec::new(),
    };
    lists.push(&mut step.on_failure);
    lists
}

/// Every step of the workflow, depth first.
fn walk_steps(w: &Wf, f: &mut dyn FnMut(&Step)) {
    fn walk(steps: &[Step], f: &mut dyn FnMut(&Step)) {
        for step in steps {
            f(step);
            for list in child_lists(step) {
                walk(list, f);
            }
        }
    }
    walk(&w.steps, f);
    walk(&w.on_failure, f);
}

fn walk_steps_mut(w: &mut Wf, f: &mut dyn FnMut(&mut Step)) {
    fn walk(steps: &mut [Step], f: &mut dyn FnMut(&mut Step)) {
        for step in steps {
            f(step);
            for list in child_lists_mut(step) {
                walk(list, f);
            }
        }
    }
    walk(&mut w.steps, f);
    walk(&mut w.on_failure, f);
}

/// Every list of steps: the workflow's, its handler's, and each one inside a step.
fn walk_lists_mut(w: &mut Wf, f: &mut dyn FnMut(&mut Vec<Step>)) {
    fn walk(steps: &mut Vec<Step>, f: &mut dyn FnMut(&mut Vec<Step>)) {
        f(steps);
        for step in steps.iter_mut() {
            for list in child_lists_mut(step) {
                walk(list, f);
            }
        }
    }
    walk(&mut w.steps, f);
    walk(&mut w.on_failure, f);
}

/// Every value node (depth first, containers before their items) of map steps and
/// call arguments.
fn walk_values_mut(w: &mut Wf, f: &mut dyn FnMut(&mut V)) {
    fn value(v: &mut V, f: &mut dyn FnMut(&mut V)) {
        f(v);
        match v {
            V::List(items) => items.iter_mut().for_each(|i| value(i, f)),
            V::Map(entries) => entries.iter_mut().for_each(|(_, i)| value(i, f)),
            _ => {}
        }
    }
    walk_steps_mut(w, &mut |step| match &mut step.kind {
        Kind::Map(entries) | Kind::Call { with: entries, .. } => {
            entries.iter_mut().for_each(|(_, v)| value(v, f));
        }
        _ => {}
    });
}

// ---------------------------------------------------------------------------------
// Generation.
// ---------------------------------------------------------------------------------

const WORDS: &[&str] = &[
    "orders",
    "GET",
    "POST",
    "ops team",
    "hello world",
    "/orders",
    "acme.example",
    "yes",
    "no",
    "on",
    "off",
    "null",
    "Null",
    "true",
    "False",
    "~",
    "100",
    "-7",
    "1.5",
    "1e3",
    "0x1f",
    "0o17",
    ".inf",
    ".nan",
    "nan",
    "2001-12-14",
    "12:30",
    "",
    " ",
    " padded ",
    "it's",
    "say \"hi\"",
    "back\\slash",
    "a: b",
    "# not a comment",
    "x #y",
    "tab\there",
    "line\nbreak",
    "trailing\n",
    "héllo",
    "emoji 🚀",
    "[x]",
    "{y}",
    "- dash",
    "? q",
    "*star",
    "&amp",
    "!bang",
    "%pct",
    "@at",
    "`tick`",
    "| pipe",
    "> gt",
    "SELECT * FROM t WHERE a = ?",
    "1m 30s",
    "2s",
];

const FIELDS: &[&str] = &["id", "amount", "customer", "x", "items", "kind"];

fn template() -> impl Strategy<Value = String> {
    (prop::sample::select(FIELDS), 0..5usize).prop_map(|(f, form)| match form {
        0 => format!("{{{{ trigger.body.{f} }}}}"),
        1 => format!("order-{{{{ trigger.body.{f} }}}}"),
        2 => format!("{{{{ trigger.body.{f} | lower }}}}"),
        3 => format!("{{{{ run.id }}}}-{{{{ trigger.body.{f} }}}}"),
        _ => format!("{{{{trigger.body.{f}}}}}"),
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        2 => template(),
        // No `{`: a random string must not turn into a (broken) template.
        3 => "[a-zA-Z0-9 _.:#'\"\\\\,\\[\\]}/\\-é\t\n]{0,12}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_]{0,6}",
        1 => prop::sample::select(&["on", "yes", "no", "null", "true", "id", "if", "call", "with", "a b", "x-y", "é"][..])
            .prop_map(str::to_owned),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        3 => (-4000i32..4000).prop_map(|i| f64::from(i) / 4.0),
        1 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
    ]
}

fn scalar() -> impl Strategy<Value = V> {
    prop_oneof![
        1 => Just(V::Null),
        1 => any::<bool>().prop_map(V::Bool),
        2 => prop_oneof![-1000i64..1000, any::<i64>()].prop_map(V::Int),
        1 => float().prop_map(V::Float),
        4 => text().prop_map(V::Str),
    ]
}

fn dedup(entries: Vec<(String, V)>) -> Vec<(String, V)> {
    let mut seen = BTreeSet::new();
    entries
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

fn value() -> impl Strategy<Value = V> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(V::List),
            prop::collection::vec((key(), inner), 0..4).prop_map(|e| V::Map(dedup(e))),
        ]
    })
}

fn entries(size: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(String, V)>> {
    prop::collection::vec((key(), value()), size).prop_map(dedup)
}

fn duration_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => prop::sample::select(&[250u64, 500, 1_000, 1_500, 2_000, 30_000, 60_000, 90_000, 3_600_000, 5_400_000, 86_400_000][..]),
        1 => 1u64..=10_000_000,
    ]
}

fn retry() -> impl Strategy<Value = Retry> {
    (
        1i64..=100,
        prop_oneof![Just(1_000u64), duration_ms()],
        prop::option::of(duration_ms()),
        prop::bool::weighted(0.7),
        prop_oneof![
            Just(RETRY_ON.iter().copied().collect::<BTreeSet<_>>()),
            prop::sample::subsequence(RETRY_ON, 0..=4).prop_map(|v| v.into_iter().collect()),
        ],
    )
        .prop_map(|(attempts, backoff_ms, max, jitter, on)| Retry {
            attempts,
            backoff_ms,
            max_backoff_ms: max.unwrap_or(backoff_ms.saturating_mul(32).max(backoff_ms)),
            jitter,
            on,
        })
}

fn call() -> impl Strategy<Value = Kind> {
    (
        0..TARGETS.len(),
        prop::collection::vec(value(), 6),
        prop::collection::vec(any::<bool>(), 6),
        prop::option::of(prop_oneof![template(), text()]),
        prop::option::weighted(0.4, retry()),
    )
        .prop_map(|(target, values, optional, idempotency_key, retry)| {
            let (connector, action, spec) = TARGETS[target];
            let with = spec
                .iter()
                .zip(values)
                .zip(optional)
                .filter(|(((_, required), _), keep)| *required || *keep)
                .map(|(((name, _), value), _)| ((*name).to_owned(), value))
                .collect();
            Kind::Call {
                connector: connector.to_owned(),
                action: action.to_owned(),
                with,
                idempotency_key,
                retry,
            }
        })
}

fn leaf_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => entries(0..5).prop_map(Kind::Map),
        4 => call(),
        1 => (prop::option::of(prop_oneof![template(), text()]), prop::option::of(duration_ms()))
            .prop_map(|(message, timeout_ms)| Kind::Approval { message, timeout_ms }),
        1 => duration_ms().prop_map(Kind::Delay),
        1 => prop_oneof![template(), text()].prop_map(Kind::Fail),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    (
        prop::sample::select(FIELDS),
        prop::sample::select(OPS),
        -1000i64..1000,
    )
        .prop_map(|(f, op, rhs)| Cond {
            field: f.to_owned(),
            op,
            rhs,
        })
}

/// A step without a failure handler, with a placeholder id (ids are given out
/// afterwards, unique).
fn simple_step() -> impl Strategy<Value = Step> {
    (leaf_kind(), prop::option::weighted(0.3, duration_ms())).prop_map(|(kind, timeout_ms)| Step {
        id: String::new(),
        kind,
        timeout_ms,
        on_failure: Vec::new(),
    })
}

/// A failure handler: usually none.
fn handler() -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![
        5 => Just(Vec::new()),
        1 => prop::collection::vec(simple_step(), 1..=2),
    ]
}

fn step_with(kind: impl Strategy<Value = Kind>) -> impl Strategy<Value = Step> {
    (kind, prop::option::weighted(0.3, duration_ms()), handler()).prop_map(
        |(kind, timeout_ms, on_failure)| Step {
            id: String::new(),
            kind,
            timeout_ms,
            on_failure,
        },
    )
}

fn if_kind(children: BoxedStrategy<Step>) -> impl Strategy<Value = Kind> {
    (
        cond(),
        prop::collection::vec(children.clone(), 1..=2),
        prop::collection::vec(children, 0..=2),
    )
        .prop_map(|(cond, then, otherwise)| Kind::If {
            cond,
            then,
            otherwise,
        })
}

fn case_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_]{0,5}",
        1 => prop::sample::select(&["big", "small", "100", "-1", "true", "null", "a b", "é"][..]).prop_map(str::to_owned),
    ]
}

fn switch_kind(children: BoxedStrategy<Step>) -> impl Strategy<Value = Kind> {
    (
        prop::sample::select(FIELDS),
        prop::collection::vec(
            (case_key(), prop::collection::vec(children.clone(), 0..=2)),
            1..=3,
        ),
        prop::collection::vec(children, 0..=1),
    )
        .prop_map(|(field, cases, default)| {
            let mut seen = BTreeSet::new();
            Kind::Switch {
                field: field.to_owned(),
                cases: cases
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .collect(),
                default,
            }
        })
}

fn step() -> impl Strategy<Value = Step> {
    let leaf = step_with(leaf_kind()).boxed();
    let inner = prop_oneof![
        8 => leaf.clone(),
        1 => step_with(if_kind(leaf.clone())),
        1 => step_with(switch_kind(leaf.clone())),
    ]
    .boxed();
    prop_oneof![
        6 => leaf,
        1 => step_with(if_kind(inner.clone())),
        1 => step_with(switch_kind(inner)),
    ]
}

fn signature() -> impl Strategy<Value = Signature> {
    (
        prop::sample::select(&["github", "stripe", "standard_webhooks", "hex"][..]),
        prop::sample::select(&["HOOK_SECRET", "OTHER_SECRET"][..]),
        prop::option::of("X-[A-Z][a-z]{1,6}"),
    )
        .prop_map(|(scheme, secret, header)| Signature {
            scheme,
            secret,
            header,
        })
}

fn trig() -> impl Strategy<Value = Trig> {
    prop_oneof![
        3 => (
            "[a-z0-9]{1,8}(/[a-z0-9][a-z0-9._-]{0,7}){0,2}",
            prop::option::of(signature()),
            prop::option::of(template()),
        )
            .prop_map(|(path, signature, idempotency_key)| Trig::Webhook { path, signature, idempotency_key }),
        2 => (
            prop::sample::select(SCHEDULES),
            prop::sample::select(TIMEZONES),
            prop::sample::select(CATCH_UP)
        )
            .prop_map(|(s, t, c)| Trig::Cron {
                schedule: s.to_owned(),
                timezone: t.to_owned(),
                catch_up: c.to_owned(),
            }),
        1 => Just(Trig::Manual),
    ]
}

fn wf() -> impl Strategy<Value = Wf> {
    (
        "[a-z][a-z0-9_-]{0,10}",
        prop::option::of(text()),
        trig(),
        prop::collection::vec(step(), 1..=6),
        prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(step_with(leaf_kind()), 1..=2)],
        prop::collection::vec("[a-z][a-z0-9_]{0,8}", 1..8),
    )
        .prop_map(|(name, description, trigger, steps, on_failure, pool)| {
            let mut w = Wf {
                name,
                description,
                trigger,
                steps,
                on_failure,
            };
            let mut used = BTreeSet::new();
            let mut n = 0usize;
            walk_steps_mut(&mut w, &mut |step| {
                let base = &pool[n % pool.len()];
                let mut id = base.clone();
                let mut suffix = 0;
                while used.contains(&id) {
                    suffix += 1;
                    id = format!("{base}_{suffix}");
                }
                used.insert(id.clone());
                step.id = id;
                n += 1;
            });
            w
        })
}

// ---------------------------------------------------------------------------------
// A small deterministic random source for the emitter's style choices.
// ---------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `percent`%.
    fn chance(&mut self, percent: u32) -> bool {
        (self.next() % 100) < u64::from(percent)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------
// Abstract workflow -> YAML tree, using the model's equivalences.
// ---------------------------------------------------------------------------------

/// A YAML tree to be written; mapping keys are strings.
#[derive(Debug, Clone)]
enum Y {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

fn s(text: impl Into<String>) -> Y {
    Y::Str(text.into())
}

fn entry(key: &str, value: Y) -> (String, Y) {
    (key.to_owned(), value)
}

/// Equal spellings of a duration.
fn duration_forms(ms: u64) -> Vec<String> {
    let human = airlock_core::duration::format(ms);
    let mut forms = vec![format!("{ms}ms"), human.replace(' ', ""), human];
    if ms.is_multiple_of(1_000) {
        forms.push(format!("{}s", ms / 1_000));
        forms.push(format!("{}sec", ms / 1_000));
    }
    if ms.is_multiple_of(60_000) {
        forms.push(format!("{}m", ms / 60_000));
        forms.push(format!("{}min", ms / 60_000));
    }
    if ms.is_multiple_of(3_600_000) {
        forms.push(format!("{}h", ms / 3_600_000));
    }
    if ms > 1_000 {
        forms.push(format!("{}s {}ms", ms / 1_000, ms % 1_000));
    }
    forms
}

fn duration(ms: u64, r: &mut Rng) -> Y {
    let forms = duration_forms(ms);
    s(r.pick(&forms).clone())
}

/// A condition or switch expression, bare or in `{{ }}`, with white space around.
fn condition(body: &str, r: &mut Rng) -> Y {
    let body = body.to_owned();
    s(match r.below(5) {
        0 => body,
        1 => format!("{{{{ {body} }}}}"),
        2 => format!("{{{{{body}}}}}"),
        3 => format!(" {body}  "),
        _ => format!("  {{{{  {body} }}}} "),
    })
}

fn value_y(v: &V) -> Y {
    match v {
        V::Null => Y::Null,
        V::Bool(b) => Y::Bool(*b),
        V::Int(i) => Y::Int(*i),
        V::Float(f) => Y::Float(*f),
        V::Str(t) => s(t.clone()),
        V::List(items) => Y::Seq(items.iter().map(value_y).collect()),
        V::Map(entries) => map_y(entries),
    }
}

fn map_y(entries: &[(String, V)]) -> Y {
    Y::Map(
        entries
            .iter()
            .map(|(k, v)| (k.clone(), value_y(v)))
            .collect(),
    )
}

fn retry_y(retry: &Retry, r: &mut Rng) -> Y {
    let mut e = vec![entry("attempts", Y::Int(retry.attempts))];
    if retry.backoff_ms != 1_000 || r.chance(50) {
        e.push(entry("backoff", duration(retry.backoff_ms, r)));
    }
    let default_max = retry.backoff_ms.saturating_mul(32).max(retry.backoff_ms);
    if retry.max_backoff_ms != default_max || r.chance(50) {
        e.push(entry("max_backoff", duration(retry.max_backoff_ms, r)));
    }
    if !retry.jitter || r.chance(50) {
        e.push(entry("jitter", Y::Bool(retry.jitter)));
    }
    if retry.on.len() != RETRY_ON.len() || r.chance(50) {
        let mut on: Vec<&str> = retry.on.iter().copied().collect();
        // The set of retried errors has no order, and naming one twice is naming it.
        if !on.is_empty() && r.chance(20) {
            let again = *r.pick(&on);
            on.push(again);
        }
        r.shuffle(&mut on);
        e.push(entry("on", Y::Seq(on.into_iter().map(s).collect())));
    }
    Y::Map(e)
}

fn steps_y(steps: &[Step], r: &mut Rng) -> Y {
    Y::Seq(steps.iter().map(|st| step_y(st, r)).collect())
}

/// An optional list of steps: left out when empty, or written `[]` or `null`.
fn optional_steps(e: &mut Vec<(String, Y)>, key: &str, steps: &[Step], r: &mut Rng) {
    if !steps.is_empty() {
        e.push(entry(key, steps_y(steps, r)));
    } else if r.chance(20) {
        e.push(entry(key, Y::Seq(Vec::new())));
    } else if r.chance(10) {
        e.push(entry(key, Y::Null));
    }
}

fn step_y(step: &Step, r: &mut Rng) -> Y {
    let mut e = vec![entry("id", s(step.id.clone()))];
    match &step.kind {
        Kind::Map(values) => e.push(entry("map", map_y(values))),
        Kind::If {
            cond,
            then,
            otherwise,
        } => {
            e.push(entry("if", condition(&cond.text(), r)));
            e.push(entry("then", steps_y(then, r)));
            optional_steps(&mut e, "else", otherwise, r);
        }
        Kind::Switch {
            field,
            cases,
            default,
        } => {
            e.push(entry(
                "switch",
                condition(&format!("trigger.body.{field}"), r),
            ));
            let cases = cases
                .iter()
                .map(|(k, steps)| (k.clone(), steps_y(steps, r)))
                .collect();
            e.push(entry("cases", Y::Map(cases)));
            optional_steps(&mut e, "default", default, r);
        }
        Kind::Call {
            connector,
            action,
            with,
            idempotency_key,
            retry,
        } => {
            e.push(entry("call", s(format!("{connector}.{action}"))));
            e.push(entry("with", map_y(with)));
            if let Some(k) = idempotency_key {
                e.push(entry("idempotency_key", s(k.clone())));
            }
            if let Some(retry) = retry {
                e.push(entry("retry", retry_y(retry, r)));
            }
        }
        Kind::Approval {
            message,
            timeout_ms,
        } => {
            let mut a = Vec::new();
            if let Some(m) = message {
                a.push(entry("message", s(m.clone())));
            }
            if let Some(t) = timeout_ms {
                a.push(entry("timeout", duration(*t, r)));
            }
            e.push(entry("approval", Y::Map(a)));
        }
        Kind::Delay(ms) => e.push(entry("delay", duration(*ms, r))),
        Kind::Fail(message) => e.push(entry("fail", s(message.clone()))),
    }
    if let Some(t) = step.timeout_ms {
        e.push(entry("timeout", duration(t, r)));
    }
    optional_steps(&mut e, "on_failure", &step.on_failure, r);
    Y::Map(e)
}

fn trigger_y(trigger: &Trig, r: &mut Rng) -> Y {
    match trigger {
        Trig::Webhook {
            path,
            signature,
            idempotency_key,
        } => {
            // Surrounding slashes are not part of the path.
            let path = match r.below(6) {
                0 => format!("/{path}"),
                1 => format!("{path}/"),
                2 => format!("/{path}/"),
                _ => path.clone(),
            };
            let mut e = vec![entry("path", s(path))];
            if let Some(sig) = signature {
                let mut f = vec![
                    entry("scheme", s(sig.scheme)),
                    entry("secret", s(sig.secret)),
                ];
                if let Some(h) = &sig.header {
                    f.push(entry("header", s(h.clone())));
                }
                e.push(entry("signature", Y::Map(f)));
            }
            if let Some(k) = idempotency_key {
                e.push(entry("idempotency_key", s(k.clone())));
            }
            Y::Map(vec![entry("webhook", Y::Map(e))])
        }
        Trig::Cron {
            schedule,
            timezone,
            catch_up,
        } => {
            let mut e = vec![entry("schedule", s(schedule.clone()))];
            if timezone != "UTC" || r.chance(50) {
                e.push(entry("timezone", s(timezone.clone())));
            }
            if catch_up != "skip" || r.chance(50) {
                e.push(entry("catch_up", s(catch_up.clone())));
            }
            Y::Map(vec![entry("cron", Y::Map(e))])
        }
        // `manual`, or a mapping whose `manual` says nothing more.
        Trig::Manual => match r.below(4) {
            0 => s("manual"),
            1 => Y::Map(vec![entry("manual", Y::Map(Vec::new()))]),
            2 => Y::Map(vec![entry("manual", Y::Null)]),
            _ => Y::Map(vec![entry("manual", Y::Bool(true))]),
        },
    }
}

fn workflow_y(w: &Wf, r: &mut Rng) -> Y {
    let mut e = vec![
        entry("name", s(w.name.clone())),
        entry("trigger", trigger_y(&w.trigger, r)),
        entry("steps", steps_y(&w.steps, r)),
    ];
    if let Some(d) = &w.description {
        e.push(entry("description", s(d.clone())));
    }
    optional_steps(&mut e, "on_failure", &w.on_failure, r);
    Y::Map(e)
}

/// A parsed YAML tree as a tree to re-emit (for the starter project's files).
fn node_y(node: &yaml::Node) -> Y {
    match &node.value {
        yaml::Value::Null => Y::Null,
        yaml::Value::Bool(b) => Y::Bool(*b),
        yaml::Value::Int(i) => Y::Int(*i),
        yaml::Value::Float(f) => Y::Float(*f),
        yaml::Value::Str(t) => s(t.clone()),
        yaml::Value::Seq(items) => Y::Seq(items.iter().map(node_y).collect()),
        yaml::Value::Map(entries) => Y::Map(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), node_y(v)))
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------
// YAML tree -> text, in a random style.
// ---------------------------------------------------------------------------------

/// The style knobs proptest chooses; everything finer comes from `seed`.
#[derive(Debug, Clone)]
struct Style {
    seed: u64,
    indent: usize,
    /// Chance (%) that a non-empty collection is written in flow style.
    flow: u32,
    /// Chance (%) of a comment at each opportunity.
    comments: u32,
    /// 0: plain when safe; 1: single quotes; 2: double quotes; 3: any.
    quoting: u8,
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<u64>(),
        prop::sample::select(&[2usize, 4][..]),
        prop::sample::select(&[0u32, 25, 60, 100][..]),
        prop::sample::select(&[0u32, 15, 40][..]),
        0u8..4,
    )
        .prop_map(|(seed, indent, flow, comments, quoting)| Style {
            seed,
            indent,
            flow,
            comments,
            quoting,
        })
}

const COMMENTS: &[&str] = &[
    "a comment",
    "key: value",
    "- not an item",
    "\"quoted\" and 'single'",
    "{{ trigger.body.x }}",
    "# twice",
    "id: other",
    "é 🚀",
];

/// Words a plain scalar must not be, whatever its case: they would read as something else.
const RESERVED: &[&str] = &[
    "null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "nan", "infinity",
];

/// Whether `text` can be written as a plain scalar and read back as the same string,
/// in block and flow context alike. Deliberately conservative.
fn plain_ok(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let middle_ok = |c: char| c.is_alphanumeric() || " _./-><=!'\"()".contains(c);
    if !text.chars().all(middle_ok) || text.ends_with(' ') {
        return false;
    }
    if first.is_alphabetic() {
        return !RESERVED.contains(&text.to_ascii_lowercase().as_str());
    }
    // Durations such as `90s` or `1m 30s`: a digit first, a letter last and no
    // prefix that makes a number (`0x1d` is an integer).
    first.is_ascii_digit()
        && text.chars().last().is_some_and(|c| c.is_ascii_lowercase())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && !["0x", "0o", "0b"].iter().any(|p| text.starts_with(p))
}

/// Whether `text` is a syntactically plain scalar, to be used after a `!!str` tag.
fn tagged_ok(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

struct Emitter {
    out: String,
    r: Rng,
    style: Style,
}

impl Emitter {
    fn new(style: &Style) -> Self {
        Self {
            out: String::new(),
            r: Rng(style.seed),
            style: style.clone(),
        }
    }

    fn pad(col: usize) -> String {
        " ".repeat(col)
    }

    fn comment(&mut self) -> String {
        format!("# {}", self.r.pick(COMMENTS))
    }

    /// A comment at the end of a line, or nothing.
    fn eol(&mut self) -> String {
        if self.r.chance(self.style.comments) {
            let gap = Self::pad(1 + self.r.below(3));
            format!("{gap}{}", self.comment())
        } else {
            String::new()
        }
    }

    /// A comment on its own line, or nothing.
    fn own_line(&mut self, col: usize) {
        if self.r.chance(self.style.comments) {
            let col = if self.r.chance(30) {
                self.r.below(9)
            } else {
                col
            };
            let comment = self.comment();
            self.out.push_str(&format!("{}{comment}\n", Self::pad(col)));
        }
        if self.r.chance(self.style.comments / 3) {
            self.out.push('\n');
        }
    }

    fn use_flow(&mut self) -> bool {
        self.r.chance(self.style.flow)
    }

    fn double_quoted(&mut self, text: &str) -> String {
        let escape_unicode = self.r.chance(30);
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' if self.r.chance(50) => out.push_str("\\t"),
                '\t' => out.push('\t'),
                '/' if self.r.chance(30) => out.push_str("\\/"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c if !c.is_ascii() && escape_unicode => {
                    if (c as u32) > 0xFFFF {
                        out.push_str(&format!("\\U{:08X}", c as u32));
                    } else {
                        out.push_str(&format!("\\u{:04X}", c as u32));
                    }
                }
                c if c.is_ascii_alphabetic() && self.r.chance(5) => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn string(&mut self, text: &str, is_key: bool) -> String {
        #[derive(Clone, Copy, PartialEq)]
        enum Q {
            Plain,
            Single,
            Double,
            Tagged,
        }
        let mut options = vec![Q::Double];
        if !text.chars().any(|c| c.is_control() && c != '\t') {
            options.push(Q::Single);
        }
        if plain_ok(text) {
            options.push(Q::Plain);
        }
        if !is_key && tagged_ok(text) {
            options.push(Q::Tagged);
        }
        let preferred = match self.style.quoting {
            0 => Some(Q::Plain),
            1 => Some(Q::Single),
            2 => Some(Q::Double),
            _ => None,
        };
        let choice = match preferred {
            Some(p) if options.contains(&p) && self.r.chance(85) => p,
            _ => *self.r.pick(&options),
        };
        match choice {
            Q::Plain => text.to_owned(),
            Q::Single => format!("'{}'", text.replace('\'', "''")),
            Q::Double => self.double_quoted(text),
            Q::Tagged => format!("!!str {text}"),
        }
    }

    /// A scalar; `may_be_empty` where nothing at all is read as null.
    fn scalar(&mut self, y: &Y, may_be_empty: bool) -> String {
        match y {
            Y::Null => {
                let forms: &[&str] = if may_be_empty {
                    &["null", "~", "Null", "NULL", ""]
                } else {
                    &["null", "~", "Null", "NULL"]
                };
                (*self.r.pick(forms)).to_owned()
            }
            Y::Bool(b) => {
                let forms: &[&str] = if *b {
                    &["true", "True", "TRUE"]
                } else {
                    &["false", "False", "FALSE"]
                };
                (*self.r.pick(forms)).to_owned()
            }
            Y::Int(i) => match (i >= &0, self.r.below(5)) {
                (true, 1) => format!("+{i}"),
                (true, 2) => format!("0x{i:x}"),
                (true, 3) => format!("0o{i:o}"),
                _ => i.to_string(),
            },
            Y::Float(f) => match self.r.below(3) {
                0 => format!("{f:e}"),
                1 => format!("{f:E}"),
                _ => format!("{f:?}"),
            },
            Y::Str(t) => self.string(t, false),
            Y::Seq(_) | Y::Map(_) => unreachable!("not a scalar"),
        }
    }

    fn is_block_collection(y: &Y) -> bool {
        match y {
            Y::Seq(items) => !items.is_empty(),
            Y::Map(entries) => !entries.is_empty(),
            _ => false,
        }
    }

    /// A flow collection on one line.
    fn flow_inline(&mut self, y: &Y) -> String {
        let inner = if self.r.chance(50) { " " } else { "" };
        let trailing = if self.r.chance(10) { "," } else { "" };
        match y {
            Y::Seq(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.flow_item(i)).collect();
                if parts.is_empty() {
                    return "[]".to_owned();
                }
                format!("[{inner}{}{trailing}{inner}]", parts.join(", "))
            }
            Y::Map(entries) => {
                let parts = self.flow_entries(entries);
                if parts.is_empty() {
                    return "{}".to_owned();
                }
                format!("{{{inner}{}{trailing}{inner}}}", parts.join(", "))
            }
            _ => unreachable!("not a collection"),
        }
    }

    fn flow_item(&mut self, y: &Y) -> String {
        match y {
            Y::Seq(_) | Y::Map(_) => self.flow_inline(y),
            scalar => self.scalar(scalar, false),
        }
    }

    fn flow_entries(&mut self, entries: &[(String, Y)]) -> Vec<String> {
        let mut order: Vec<usize> = (0..entries.len()).collect();
        self.r.shuffle(&mut order);
        order
            .into_iter()
            .map(|i| {
                let (k, v) = &entries[i];
                let key = self.string(k, true);
                let value = match v {
                    Y::Seq(_) | Y::Map(_) => self.flow_inline(v),
                    scalar => self.scalar(scalar, true),
                };
                if value.is_empty() {
                    format!("{key}: ")
                } else {
                    format!("{key}: {value}")
                }
            })
            .collect()
    }

    /// A flow collection, sometimes over several lines (with comments), continuing
    /// at column `col`. Returns the text from the opening bracket on, without the
    /// final line break.
    fn flow(&mut self, y: &Y, col: usize) -> String {
        if !Self::is_block_collection(y) || !self.r.chance(40) {
            return self.flow_inline(y);
        }
        let (open, close, parts) = match y {
            Y::Seq(items) => (
                "[",
                "]",
                items.iter().map(|i| self.flow_item(i)).collect::<Vec<_>>(),
            ),
            Y::Map(entries) => ("{", "}", self.flow_entries(entries)),
            _ => unreachable!(),
        };
        let mut text = format!("{open}{}\n", self.eol());
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let comma = if i < last || self.r.chance(20) {
                ","
            } else {
                ""
            };
            let eol = self.eol();
            text.push_str(&format!("{}{part}{comma}{eol}\n", Self::pad(col)));
        }
        text.push_str(&format!("{}{close}", Self::pad(col)));
        text
    }

    /// The value after `key:`, through the end of its last line. `col` is the key's column.
    fn after_key(&mut self, v: &Y, col: usize) {
        let unit = self.style.indent;
        if Self::is_block_collection(v) && !self.use_flow() {
            let eol = self.eol();
            self.out.push_str(&eol);
            self.out.push('\n');
            match v {
                Y::Map(entries) => self.block_map(entries, col + unit, None),
                Y::Seq(items) => {
                    let at = if self.r.chance(40) { col } else { col + unit };
                    self.block_seq(items, at, None);
                }
                _ => unreachable!(),
            }
            return;
        }
        let text = match v {
            Y::Seq(_) | Y::Map(_) => self.flow(v, col + unit),
            scalar => self.scalar(scalar, true),
        };
        if !text.is_empty() {
            self.out.push(' ');
            self.out.push_str(&text);
        }
        let eol = self.eol();
        self.out.push_str(&eol);
        self.out.push('\n');
    }

    /// A block mapping at column `col`. With `lead`, the first key goes right after
    /// what is already written on the current line (a `- `), which is taken to end
    /// at column `col`.
    fn block_map(&mut self, entries: &[(String, Y)], col: usize, mut lead: Option<()>) {
        let mut order: Vec<usize> = (0..entries.len()).collect();
        self.r.shuffle(&mut order);
        for i in order {
            if lead.take().is_none() {
                self.own_line(col);
                self.out.push_str(&Self::pad(col));
            }
            let (k, v) = &entries[i];
            let key = self.string(k, true);
            self.out.push_str(&key);
            self.out.push(':');
            self.after_key(v, col);
        }
    }

    /// A block sequence with its dashes at column `col`.
    fn block_seq(&mut self, items: &[Y], col: usize, mut lead: Option<()>) {
        let unit = self.style.indent;
        for item in items {
            if lead.take().is_none() {
                self.own_line(col);
                self.out.push_str(&Self::pad(col));
            }
            self.out.push('-');
            if Self::is_block_collection(item) && !self.use_flow() {
                if self.r.chance(20) {
                    // The item starts on the next line.
                    let eol = self.eol();
                    self.out.push_str(&eol);
                    self.out.push('\n');
                    match item {
                        Y::Map(entries) => self.block_map(entries, col + unit, None),
                        Y::Seq(items) => self.block_seq(items, col + unit, None),
                        _ => unreachable!(),
                    }
                } else {
                    // `-` and then the item on the same line, aligned at col + unit.
                    self.out.push_str(&Self::pad(unit - 1));
                    match item {
                        Y::Map(entries) => self.block_map(entries, col + unit, Some(())),
                        Y::Seq(items) => self.block_seq(items, col + unit, Some(())),
                        _ => unreachable!(),
                    }
                }
                continue;
            }
            let text = match item {
                Y::Seq(_) | Y::Map(_) => self.flow(item, col + unit),
                scalar => self.scalar(scalar, true),
            };
            if !text.is_empty() {
                self.out.push(' ');
                self.out.push_str(&text);
            }
            let eol = self.eol();
            self.out.push_str(&eol);
            self.out.push('\n');
        }
    }

    fn document(mut self, root: &Y) -> String {
        if self.r.chance(20) {
            let comment = self.comment();
            self.out.push_str(&format!("{comment}\n"));
        }
        if self.r.chance(25) {
            self.out.push_str("---\n");
        }
        let Y::Map(entries) = root else {
            unreachable!("a workflow is a mapping")
        };
        if self.style.flow == 100 && self.r.chance(50) {
            let unit = self.style.indent;
            let text = self.flow(root, unit);
            self.out.push_str(&text);
            self.out.push('\n');
        } else {
            self.block_map(entries, 0, None);
        }
        if self.r.chance(self.style.comments) {
            let comment = self.comment();
            self.out.push_str(&format!("{comment}\n"));
        }
        self.out
    }
}

fn emit(root: &Y, style: &Style) -> String {
    Emitter::new(style).document(root)
}

/// The abstract workflow written in `style`.
fn render(w: &Wf, style: &Style) -> String {
    let mut r = Rng(style.seed ^ 0x5EED);
    emit(&workflow_y(w, &mut r), style)
}

// ---------------------------------------------------------------------------------
// Decoding and hashing.
// ---------------------------------------------------------------------------------

/// Decodes one workflow file without the project checks; returns it with every
/// diagnostic decoding raised.
fn decode(text: &str) -> (Option<Workflow>, Vec<String>) {
    let file = SourceFile::new("workflows/w.yaml", text);
    let node = match yaml::parse(0, &file) {
        Ok(node) => node,
        Err(d) => return (None, vec![d.message]),
    };
    let mut diagnostics = Diagnostics::default();
    let workflow = workflow::decode(&mut Cx::new(0, &mut diagnostics), &node);
    let messages = diagnostics
        .into_sorted()
        .into_iter()
        .map(|d| d.message)
        .collect();
    (workflow, messages)
}

/// Decodes and checks a workflow within the test project; it must be valid.
fn load_valid(text: &str) -> Result<Workflow, TestCaseError> {
    let loaded = project::load(vec![
        SourceFile::new("airlock.yaml", MANIFEST),
        SourceFile::new("workflows/w.yaml", text),
    ]);
    let messages: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    prop_assert!(messages.is_empty(), "diagnostics {messages:#?} for\n{text}");
    prop_assert_eq!(loaded.project.workflows.len(), 1);
    Ok(loaded
        .project
        .workflows
        .into_iter()
        .next()
        .map(|w| w.workflow)
        .unwrap())
}

/// Decodes a workflow that must decode cleanly (project checks aside).
fn decode_clean(text: &str) -> Result<Workflow, TestCaseError> {
    let (workflow, messages) = decode(text);
    prop_assert!(messages.is_empty(), "diagnostics {messages:#?} for\n{text}");
    workflow.ok_or_else(|| TestCaseError::fail(format!("no workflow from\n{text}")))
}

fn canonical(workflow: &Workflow) -> String {
    String::from_utf8(canonical_bytes(workflow)).unwrap()
}

fn config(cases: u32) -> Config {
    Config {
        // `PROPTEST_CASES=10000 cargo test …` for a longer hunt.
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            Config::default().cases
        } else {
            cases
        },
        // Failing cases are saved and replayed first next time (the default looks
        // for `src/`, which an integration test is not in).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/hash_properties.txt",
        ))),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------
// Property A: formatting never changes the hash.
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn every_rendering_of_a_workflow_has_the_same_version_id(
        w in wf(),
        styles in prop::collection::vec(style(), 3),
    ) {
        let reference_text = render(&w, &styles[0]);
        let reference = load_valid(&reference_text)?;
        prop_assert_eq!(reference.all_steps().len(), w.step_count());
        let expected = canonical(&reference);
        for style in &styles[1..] {
            let text = render(&w, style);
            let workflow = decode_clean(&text)?;
            prop_assert_eq!(
                &canonical(&workflow),
                &expected,
                "renderings differ:\n--- first ---\n{}\n--- second ---\n{}",
                reference_text,
                text
            );
            prop_assert_eq!(version_id(&workflow), version_id(&reference));
        }
    }

    #[test]
    fn starter_workflows_hash_the_same_in_any_style(style in style(), which in 0usize..2) {
        let (path, original) = airlock_core::scaffold::FILES
            .iter()
            .filter(|(p, _)| p.starts_with("workflows/"))
            .nth(which)
            .copied()
            .unwrap();
        let node = yaml::parse(0, &SourceFile::new(path, original)).unwrap();
        let text = emit(&node_y(&node), &style);
        let expected = version_id(&decode_clean(original)?);
        prop_assert_eq!(version_id(&decode_clean(&text)?), expected, "re-emitted:\n{}", text);
    }

    #[test]
    fn every_spelling_of_a_duration_means_the_same(ms in duration_ms()) {
        for form in duration_forms(ms) {
            prop_assert_eq!(airlock_core::duration::parse(&form), Ok(ms), "{}", form);
        }
    }
}

// ---------------------------------------------------------------------------------
// Property B: every change of meaning changes the hash.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mutation {
    WorkflowName,
    StepId,
    SwapSteps,
    AddStep,
    RemoveStep,
    StringChar,
    IntValue,
    IntToString,
    FloatValue,
    BoolFlip,
    NullToString,
    RenameKey,
    Condition,
    SwitchValue,
    SwitchCase,
    SwapCases,
    RetryAttempts,
    RetryOn,
    RetryJitter,
    TriggerPath,
    TriggerKind,
    TriggerSignature,
    TriggerIdempotencyKey,
    CallConnector,
    CallAction,
    Duration,
    Timeout,
    IdempotencyKey,
    ApprovalTimeout,
    ApprovalMessage,
}

const MUTATIONS: &[Mutation] = &[
    Mutation::WorkflowName,
    Mutation::StepId,
    Mutation::SwapSteps,
    Mutation::AddStep,
    Mutation::RemoveStep,
    Mutation::StringChar,
    Mutation::IntValue,
    Mutation::IntToString,
    Mutation::FloatValue,
    Mutation::BoolFlip,
    Mutation::NullToString,
    Mutation::RenameKey,
    Mutation::Condition,
    Mutation::SwitchValue,
    Mutation::SwitchCase,
    Mutation::SwapCases,
    Mutation::RetryAttempts,
    Mutation::RetryOn,
    Mutation::RetryJitter,
    Mutation::TriggerPath,
    Mutation::TriggerKind,
    Mutation::TriggerSignature,
    Mutation::TriggerIdempotencyKey,
    Mutation::CallConnector,
    Mutation::CallAction,
    Mutation::Duration,
    Mutation::Timeout,
    Mutation::IdempotencyKey,
    Mutation::ApprovalTimeout,
    Mutation::ApprovalMessage,
];

/// Replaces one character of `text` with a different letter (or adds one to an empty text).
fn change_char(text: &mut String, r: &mut Rng) {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        text.push('a');
        return;
    }
    let at = r.below(chars.len());
    let replacement = if chars[at] == 'q' { 'z' } else { 'q' };
    *text = chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i == at { replacement } else { *c })
        .collect();
}

/// Calls `f` on the `k`-th value matching `matches`, `k` chosen at random; false if none.
fn mutate_value(
    w: &mut Wf,
    r: &mut Rng,
    matches: fn(&V) -> bool,
    f: &mut dyn FnMut(&mut V, &mut Rng),
) -> bool {
    let mut count = 0;
    walk_values_mut(w, &mut |v| count += usize::from(matches(v)));
    if count == 0 {
        return false;
    }
    let target = r.below(count);
    let mut seen = 0;
    walk_values_mut(w, &mut |v| {
        if matches(v) {
            if seen == target {
                f(v, r);
            }
            seen += 1;
        }
    });
    true
}

/// Calls `f` on a random step for which `matches` holds; false if none.
fn mutate_step(
    w: &mut Wf,
    r: &mut Rng,
    matches: fn(&Step) -> bool,
    f: &mut dyn FnMut(&mut Step, &mut Rng),
) -> bool {
    let mut count = 0;
    walk_steps(w, &mut |s| count += usize::from(matches(s)));
    if count == 0 {
        return false;
    }
    let target = r.below(count);
    let mut seen = 0;
    walk_steps_mut(w, &mut |s| {
        if matches(s) {
            if seen == target {
                f(s, r);
            }
            seen += 1;
        }
    });
    true
}

/// Calls `f` on a random list of steps with at least `min` steps; false if none.
fn mutate_list(
    w: &mut Wf,
    r: &mut Rng,
    min: usize,
    f: &mut dyn FnMut(&mut Vec<Step>, &mut Rng),
) -> bool {
    let mut count = 0;
    walk_lists_mut(w, &mut |l| count += usize::from(l.len() >= min));
    if count == 0 {
        return false;
    }
    let target = r.below(count);
    let mut seen = 0;
    walk_lists_mut(w, &mut |l| {
        if l.len() >= min {
            if seen == target {
                f(l, r);
            }
            seen += 1;
        }
    });
    true
}

fn is_approval(s: &Step) -> bool {
    matches!(s.kind, Kind::Approval { .. })
}

fn is_switch(s: &Step) -> bool {
    matches!(s.kind, Kind::Switch { .. })
}

/// Pairs of cases of a switch step whose steps differ: swapping them changes what runs.
fn swappable_cases(s: &Step) -> Vec<(usize, usize)> {
    let Kind::Switch { cases, .. } = &s.kind else {
        return Vec::new();
    };
    let ids = |steps: &[Step]| steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let mut pairs = Vec::new();
    for i in 0..cases.len() {
        for j in i + 1..cases.len() {
            if ids(&cases[i].1) != ids(&cases[j].1) {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

fn is_call(s: &Step) -> bool {
    matches!(s.kind, Kind::Call { .. })
}

fn has_retry(s: &Step) -> bool {
    matches!(s.kind, Kind::Call { retry: Some(_), .. })
}

fn retry_of(s: &mut Step) -> &mut Retry {
    match &mut s.kind {
        Kind::Call {
            retry: Some(retry), ..
        } => retry,
        _ => unreachable!("a step with a retry"),
    }
}

/// Applies one meaning-changing mutation; false if the workflow has nowhere to apply it.
fn mutate(w: &mut Wf, m: Mutation, r: &mut Rng) -> bool {
    match m {
        Mutation::WorkflowName => {
            change_char(&mut w.name, r);
            true
        }
        Mutation::StepId => {
            let fresh = w.fresh_id("renamed");
            mutate_step(w, r, |_| true, &mut |s, _| s.id = fresh.clone())
        }
        Mutation::SwapSteps => mutate_list(w, r, 2, &mut |list, r| {
            let i = r.below(list.len());
            let j = (i + 1 + r.below(list.len() - 1)) % list.len();
            list.swap(i, j);
        }),
        Mutation::AddStep => {
            let id = w.fresh_id("added");
            let kind = if r.chance(50) {
                Kind::Delay(1_000)
            } else {
                Kind::Fail("stop".into())
            };
            mutate_list(w, r, 0, &mut |list, r| {
                let at = r.below(list.len() + 1);
                list.insert(
                    at,
                    Step {
                        id: id.clone(),
                        kind: kind.clone(),
                        timeout_ms: None,
                        on_failure: Vec::new(),
                    },
                );
            })
        }
        Mutation::RemoveStep => mutate_list(w, r, 1, &mut |list, r| {
            list.remove(r.below(list.len()));
        }),
        Mutation::StringChar => {
            let strings = |v: &V| matches!(v, V::Str(_));
            let fails = |s: &Step| {
                matches!(
                    s.kind,
                    Kind::Fail(_)
                        | Kind::Call {
                            idempotency_key: Some(_),
                            ..
                        }
                        | Kind::Approval {
                            message: Some(_),
                            ..
                        }
                )
            };
            if r.chance(70)
                && mutate_value(w, r, strings, &mut |v, r| {
                    if let V::Str(t) = v {
                        change_char(t, r);
                    }
                })
            {
                return true;
            }
            mutate_step(w, r, fails, &mut |s, r| match &mut s.kind {
                Kind::Fail(message) => change_char(message, r),
                Kind::Call {
                    idempotency_key: Some(key),
                    ..
                } => change_char(key, r),
                Kind::Approval {
                    message: Some(message),
                    ..
                } => change_char(message, r),
                _ => unreachable!(),
            })
        }
        Mutation::IntValue => mutate_value(w, r, |v| matches!(v, V::Int(_)), &mut |v, _| {
            if let V::Int(i) = v {
                *i = if *i == i64::MAX { *i - 1 } else { *i + 1 };
            }
        }),
        Mutation::IntToString => mutate_value(w, r, |v| matches!(v, V::Int(_)), &mut |v, _| {
            if let V::Int(i) = v {
                *v = V::Str(i.to_string());
            }
        }),
        Mutation::FloatValue => mutate_value(w, r, |v| matches!(v, V::Float(_)), &mut |v, _| {
            if let V::Float(f) = v {
                *f = f64::from_bits(f.to_bits() ^ 1);
            }
        }),
        Mutation::BoolFlip => mutate_value(w, r, |v| matches!(v, V::Bool(_)), &mut |v, _| {
            if let V::Bool(b) = v {
                *b = !*b;
            }
        }),
        Mutation::NullToString => mutate_value(w, r, |v| matches!(v, V::Null), &mut |v, _| {
            *v = V::Str("null".into());
        }),
        Mutation::RenameKey => {
            let rename = |entries: &mut Vec<(String, V)>, r: &mut Rng| {
                let at = r.below(entries.len());
                let mut key = entries[at].0.clone();
                while entries.iter().any(|(k, _)| *k == key) {
                    key.push('x');
                }
                entries[at].0 = key;
            };
            if r.chance(50)
                && mutate_value(
                    w,
                    r,
                    |v| matches!(v, V::Map(e) if !e.is_empty()),
                    &mut |v, r| {
                        if let V::Map(entries) = v {
                            rename(entries, r);
                        }
                    },
                )
            {
                return true;
            }
            mutate_step(
                w,
                r,
                |s| matches!(&s.kind, Kind::Map(e) if !e.is_empty()),
                &mut |s, r| {
                    if let Kind::Map(entries) = &mut s.kind {
                        rename(entries, r);
                    }
                },
            )
        }
        Mutation::Condition => {
            mutate_step(w, r, |s| matches!(s.kind, Kind::If { .. }), &mut |s, r| {
                if let Kind::If { cond, .. } = &mut s.kind {
                    match r.below(3) {
                        0 => cond.rhs += 1,
                        1 => cond.op = if cond.op == ">" { "<" } else { ">" },
                        _ => cond.field.push('s'),
                    }
                }
            })
        }
        Mutation::RetryAttempts => mutate_step(w, r, has_retry, &mut |s, _| {
            let retry = retry_of(s);
            retry.attempts = if retry.attempts < 100 {
                retry.attempts + 1
            } else {
                99
            };
        }),
        Mutation::RetryOn => mutate_step(w, r, has_retry, &mut |s, r| {
            let on = &mut retry_of(s).on;
            let error = *r.pick(RETRY_ON);
            if !on.remove(error) {
                on.insert(error);
            }
        }),
        Mutation::RetryJitter => mutate_step(w, r, has_retry, &mut |s, _| {
            let retry = retry_of(s);
            retry.jitter = !retry.jitter;
        }),
        Mutation::TriggerPath => {
            match &mut w.trigger {
                Trig::Webhook { path, .. } => {
                    // Change a character that is not a `/` (a letter there would be a new segment).
                    let positions: Vec<usize> = path
                        .char_indices()
                        .filter(|(_, c)| *c != '/')
                        .map(|(i, _)| i)
                        .collect();
                    let at = *r.pick(&positions);
                    let replacement = if path[at..].starts_with('q') {
                        "z"
                    } else {
                        "q"
                    };
                    path.replace_range(at..at + 1, replacement);
                }
                Trig::Cron { schedule, .. } => {
                    let others: Vec<&str> = SCHEDULES
                        .iter()
                        .copied()
                        .filter(|s| s != schedule)
                        .collect();
                    *schedule = (*r.pick(&others)).to_owned();
                }
                Trig::Manual => return false,
            }
            true
        }
        Mutation::TriggerKind => {
            w.trigger = match &w.trigger {
                Trig::Webhook { .. } => Trig::Cron {
                    schedule: SCHEDULES[0].into(),
                    timezone: "UTC".into(),
                    catch_up: "skip".into(),
                },
                Trig::Cron { .. } if r.chance(50) => Trig::Manual,
                Trig::Cron { .. } | Trig::Manual => Trig::Webhook {
                    path: "hook".into(),
                    signature: None,
                    idempotency_key: None,
                },
            };
            true
        }
        Mutation::TriggerSignature => {
            let Trig::Webhook { signature, .. } = &mut w.trigger else {
                return false;
            };
            match signature {
                None => {
                    *signature = Some(Signature {
                        scheme: "github",
                        secret: "HOOK_SECRET",
                        header: None,
                    })
                }
                Some(sig) => match r.below(4) {
                    0 => *signature = None,
                    1 => sig.scheme = if sig.scheme == "hex" { "github" } else { "hex" },
                    2 => {
                        sig.secret = if sig.secret == "HOOK_SECRET" {
                            "OTHER_SECRET"
                        } else {
                            "HOOK_SECRET"
                        }
                    }
                    _ => match &mut sig.header {
                        Some(h) => change_char(h, r),
                        None => sig.header = Some("X-Sig".into()),
                    },
                },
            }
            true
        }
        Mutation::TriggerIdempotencyKey => {
            let Trig::Webhook {
                idempotency_key, ..
            } = &mut w.trigger
            else {
                return false;
            };
            match idempotency_key {
                Some(k) if r.chance(50) => change_char(k, r),
                Some(_) => *idempotency_key = None,
                None => *idempotency_key = Some("{{ trigger.body.id }}".into()),
            }
            true
        }
        Mutation::CallConnector => mutate_step(w, r, is_call, &mut |s, _| {
            if let Kind::Call { connector, .. } = &mut s.kind {
                let (a, b) = SIBLINGS
                    .iter()
                    .find(|(a, b)| a == connector || b == connector)
                    .unwrap();
                *connector = if connector == a {
                    (*b).to_owned()
                } else {
                    (*a).to_owned()
                };
            }
        }),
        Mutation::CallAction => mutate_step(w, r, is_call, &mut |s, _| {
            if let Kind::Call { action, .. } = &mut s.kind {
                *action = match action.as_str() {
                    "insert" => "upsert".into(),
                    "upsert" => "query".into(),
                    "query" => "insert".into(),
                    // The only action of its kind: another name (unknown to the
                    // connector, but that is validation's business, not the hash's).
                    other => format!("{other}_v2"),
                };
            }
        }),
        Mutation::Duration => {
            let delta = if r.chance(50) { 1 } else { 1_000 };
            let has_duration = |s: &Step| {
                s.timeout_ms.is_some()
                    || matches!(
                        s.kind,
                        Kind::Delay(_)
                            | Kind::Call { retry: Some(_), .. }
                            | Kind::Approval {
                                timeout_ms: Some(_),
                                ..
                            }
                    )
            };
            mutate_step(w, r, has_duration, &mut |s, r| {
                let mut sites: Vec<&mut u64> = Vec::new();
                if let Some(t) = &mut s.timeout_ms {
                    sites.push(t);
                }
                match &mut s.kind {
                    Kind::Delay(ms) => sites.push(ms),
                    Kind::Call {
                        retry: Some(retry), ..
                    } => {
                        sites.push(&mut retry.backoff_ms);
                        sites.push(&mut retry.max_backoff_ms);
                    }
                    Kind::Approval {
                        timeout_ms: Some(t),
                        ..
                    } => sites.push(t),
                    _ => {}
                }
                let at = r.below(sites.len());
                *sites[at] += delta;
            })
        }
        Mutation::ApprovalTimeout => mutate_step(w, r, is_approval, &mut |s, _| {
            if let Kind::Approval { timeout_ms, .. } = &mut s.kind {
                *timeout_ms = match timeout_ms {
                    Some(t) if *t > 60_000 => Some(*t / 2),
                    Some(_) => None,
                    None => Some(3_600_000),
                };
            }
        }),
        Mutation::ApprovalMessage => mutate_step(w, r, is_approval, &mut |s, r| {
            if let Kind::Approval { message, .. } = &mut s.kind {
                match message {
                    Some(m) if r.chance(50) => change_char(m, r),
                    Some(_) => *message = None,
                    None => *message = Some("Go ahead?".into()),
                }
            }
        }),
        Mutation::SwitchValue => mutate_step(w, r, is_switch, &mut |s, _| {
            if let Kind::Switch { field, .. } = &mut s.kind {
                field.push('s');
            }
        }),
        Mutation::SwitchCase => mutate_step(w, r, is_switch, &mut |s, r| {
            if let Kind::Switch { cases, .. } = &mut s.kind {
                let at = r.below(cases.len());
                let mut key = cases[at].0.clone();
                change_char(&mut key, r);
                while cases.iter().any(|(k, _)| *k == key) {
                    key.push('x');
                }
                cases[at].0 = key;
            }
        }),
        Mutation::SwapCases => {
            mutate_step(w, r, |s| !swappable_cases(s).is_empty(), &mut |s, r| {
                let pairs = swappable_cases(s);
                let (i, j) = *r.pick(&pairs);
                if let Kind::Switch { cases, .. } = &mut s.kind {
                    let steps_i = std::mem::take(&mut cases[i].1);
                    cases[i].1 = std::mem::replace(&mut cases[j].1, steps_i);
                }
            })
        }
        Mutation::Timeout => mutate_step(w, r, |_| true, &mut |s, _| {
            s.timeout_ms = match s.timeout_ms {
                Some(_) => None,
                None => Some(5_000),
            };
        }),
        Mutation::IdempotencyKey => mutate_step(w, r, is_call, &mut |s, _| {
            if let Kind::Call {
                idempotency_key, ..
            } = &mut s.kind
            {
                *idempotency_key = match idempotency_key {
                    Some(_) => None,
                    None => Some("key-{{ trigger.body.id }}".into()),
                };
            }
        }),
    }
}

#[test]
fn every_meaning_change_changes_the_version_id() {
    let mut runner = TestRunner::new(config(128));
    let applied = std::cell::RefCell::new(BTreeMap::<Mutation, usize>::new());
    let strategy = (wf(), style(), any::<u64>());
    runner
        .run(&strategy, |(w, style, seed)| {
            let original_text = render(&w, &style);
            let original = load_valid(&original_text)?;
            let original_id = version_id(&original);
            let mut r = Rng(seed);
            for &m in MUTATIONS {
                let mut mutant = w.clone();
                if !mutate(&mut mutant, m, &mut r) {
                    continue;
                }
                *applied.borrow_mut().entry(m).or_default() += 1;
                // Any style: the hash must not care how the change is written.
                let mutant_style = Style {
                    seed: r.next(),
                    ..style.clone()
                };
                let text = render(&mutant, &mutant_style);
                let (workflow, messages) = decode(&text);
                let workflow = workflow.ok_or_else(|| {
                    TestCaseError::fail(format!("{m:?}: no workflow from\n{text}"))
                })?;
                // Decoding must have kept every step, or the comparison proves nothing.
                prop_assert!(
                    messages.is_empty(),
                    "{:?}: diagnostics {:#?} for\n{}",
                    m,
                    messages,
                    text
                );
                prop_assert_eq!(workflow.all_steps().len(), mutant.step_count(), "{:?}", m);
                prop_assert_ne!(
                    version_id(&workflow),
                    original_id.clone(),
                    "{:?} did not change the hash\n--- original ---\n{}\n--- mutant ---\n{}",
                    m,
                    original_text,
                    text
                );
            }
            Ok(())
        })
        .unwrap();
    // Each kind of change must really have been tried, on a fair number of workflows.
    let applied = applied.into_inner();
    let at_least = (runner.config().cases / 25).max(1) as usize;
    eprintln!("mutations applied: {applied:?}");
    for m in MUTATIONS {
        let count = applied.get(m).copied().unwrap_or(0);
        assert!(
            count >= at_least,
            "mutation {m:?} applied only {count} times: {applied:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Hand-written checks.
// ---------------------------------------------------------------------------------

fn scaffold_workflow(name: &str) -> String {
    airlock_core::scaffold::files()
        .into_iter()
        .find(|f| f.path == format!("workflows/{name}.yaml"))
        .unwrap()
        .text
}

/// `order-intake` rewritten by hand: flow style, other key order, other quoting,
/// other spellings of its durations and condition, comments everywhere.
const ORDER_INTAKE_REFORMATTED: &str = r#"# order-intake, rewritten
steps: [
    { id: normalize, map: { customer: '{{ trigger.body.customer | trim | lower }}', total: "{{ trigger.body.amount | float }}", order_id: "{{ trigger.body.id }}" } },  # first
    { then: [ { with: { text: "Big order {{ steps.normalize.output.order_id }}: {{ steps.normalize.output.total }} from {{ steps.normalize.output.customer }}" }, call: 'chat.post', id: alert_big_order } ],
      if: 'steps.normalize.output.total > 100', id: big_order },
    # a comment between steps
    { idempotency_key: 'order-{{ steps.normalize.output.order_id }}', id: save_order, call: orders_db.insert,
      with: { values: { total: "{{ steps.normalize.output.total }}", id: "{{ steps.normalize.output.order_id }}", customer: "{{ steps.normalize.output.customer }}" }, "table": "orders" } },
    { timeout: 10000ms, "id": sync_crm, call: "crm.request",
      retry: { on: [status_429, timeout, status_5xx, connection, timeout], max_backoff: 30sec, backoff: 2000ms, attempts: 0x4, jitter: TRUE },
      with: { json: { total: "{{ steps.normalize.output.total }}", customer: "{{ steps.normalize.output.customer }}", external_id: "{{ steps.normalize.output.order_id }}" }, path: '/orders', method: "POST" } }
  ]
on_failure:
- call: chat.post   # the only handler
  with:
      text: "order-intake failed at {{ error.step }} for order {{ trigger.body.id }}: {{ error.message }}"
  id: alert_failure
trigger: { webhook: { idempotency_key: "order-{{ trigger.body.id }}", signature: { secret: "ORDER_HOOK_SECRET", scheme: 'github' }, path: "/orders/" } }
"description": 'Takes a new order from the shop, records it once, syncs it to the CRM, and alerts ops about big ones.'
name: "order-intake"   # same name
"#;

#[test]
fn order_intake_hash_survives_a_hand_reformatting() {
    let loaded = project::load(airlock_core::scaffold::files());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let original = loaded.project.workflow("order-intake").unwrap();
    let id = version_id(&original.workflow);
    assert_eq!(id.0.len(), 64, "{id}");
    assert!(
        id.0.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{id}"
    );

    // Within the starter project, replacing the file: still valid, same hash.
    let mut files = airlock_core::scaffold::files();
    for file in &mut files {
        if file.path == "workflows/order-intake.yaml" {
            file.text = ORDER_INTAKE_REFORMATTED.to_owned();
        }
    }
    let reloaded = project::load(files);
    assert!(
        reloaded.diagnostics.is_empty(),
        "{:#?}",
        reloaded.diagnostics
    );
    let reformatted = reloaded.project.workflow("order-intake").unwrap();
    assert_eq!(
        String::from_utf8(canonical_bytes(&reformatted.workflow)).unwrap(),
        String::from_utf8(canonical_bytes(&original.workflow)).unwrap()
    );
    assert_eq!(version_id(&reformatted.workflow), id);

    // The text really is different, and a one-character change of meaning is seen.
    assert_ne!(ORDER_INTAKE_REFORMATTED, scaffold_workflow("order-intake"));
    let changed = ORDER_INTAKE_REFORMATTED.replace("total > 100", "total > 101");
    let (workflow, messages) = decode(&changed);
    assert!(messages.is_empty(), "{messages:#?}");
    assert_ne!(version_id(&workflow.unwrap()), id);
}

fn with_durations(delay: &str, timeout: &str, backoff: &str) -> String {
    format!(
        "name: d\ntrigger: {{ webhook: {{ path: p }} }}\nsteps:\n  - id: wait\n    delay: {delay}\n    timeout: {timeout}\n  - id: post\n    call: chat.post\n    with: {{ text: hi }}\n    retry: {{ attempts: 3, backoff: {backoff} }}\n"
    )
}

#[test]
fn equal_durations_written_differently_hash_the_same() {
    let id = |text: &str| version_id(&decode(text).0.unwrap());
    let base = id(&with_durations("90s", "2s", "2s"));
    for (delay, timeout, backoff) in [
        ("1m 30s", "2000ms", "2s"),
        ("90000ms", "2s", "2000ms"),
        ("1m30s", "'2s'", "\"2 s\""),
        ("1min 30sec", "2sec", "2000 ms"),
        ("\"1m 30s\"", "0.5s 1500ms", "1s 1000ms"),
    ] {
        let text = with_durations(delay, timeout, backoff);
        let (workflow, messages) = decode(&text);
        assert!(messages.is_empty(), "{messages:#?} in\n{text}");
        assert_eq!(
            version_id(&workflow.unwrap()),
            base,
            "{delay} / {timeout} / {backoff}"
        );
    }
    // And unequal ones do not.
    assert_ne!(id(&with_durations("91s", "2s", "2s")), base);
    assert_ne!(id(&with_durations("90s", "2001ms", "2s")), base);
    assert_ne!(id(&with_durations("90s", "2s", "3s")), base);
}

#[test]
fn an_integer_and_its_digits_as_a_string_differ() {
    let id = |value: &str| {
        let text =
            format!("name: n\ntrigger: manual\nsteps:\n  - id: m\n    map: {{ limit: {value} }}\n");
        version_id(&decode_clean(&text).unwrap())
    };
    assert_eq!(id("100"), id("+100"));
    assert_eq!(id("100"), id("0x64"));
    assert_eq!(id("'100'"), id("\"100\""));
    assert_eq!(id("'100'"), id("!!str 100"));
    assert_ne!(id("100"), id("'100'"));
    assert_ne!(id("100"), id("100.0"));
    assert_ne!(id("true"), id("'true'"));
    assert_ne!(id("null"), id("'null'"));
    assert_eq!(id("null"), id("~"));
}

/// Regression: the approval's own timeout was overwritten in the canonical form by
/// the step's `timeout`, so changing how long an approval waits kept the hash.
#[test]
fn an_approval_timeout_is_part_of_the_hash() {
    let id = |approval: &str, step_timeout: &str| {
        let text = format!(
            "name: a\ntrigger: manual\nsteps:\n  - id: ask\n    approval: {approval}\n{step_timeout}"
        );
        version_id(&decode_clean(&text).unwrap())
    };
    let base = id("{ message: ok?, timeout: 8h }", "");
    assert_eq!(base, id("{ timeout: 480m, message: 'ok?' }", ""));
    assert_ne!(base, id("{ message: ok?, timeout: 4h }", ""));
    assert_ne!(base, id("{ message: ok? }", ""));
    // The step's timeout and the approval's are different things.
    assert_ne!(
        id("{ message: ok?, timeout: 8h }", "    timeout: 1h\n"),
        id("{ message: ok?, timeout: 1h }", "    timeout: 8h\n")
    );
}

/// Regression: switch cases are a mapping, but their written order changed the hash.
#[test]
fn the_order_switch_cases_are_written_in_does_not_matter() {
    let id = |cases: &str| {
        let text = format!(
            "name: s\ntrigger: manual\nsteps:\n  - id: pick\n    switch: trigger.body.kind\n    cases: {cases}\n"
        );
        version_id(&decode_clean(&text).unwrap())
    };
    let base = id("{ big: [{ id: b, delay: 1s }], small: [{ id: s, delay: 2s }] }");
    assert_eq!(
        base,
        id("{ small: [{ id: s, delay: 2s }], big: [{ id: b, delay: 1s }] }")
    );
    // Which steps belong to which case still matters.
    assert_ne!(
        base,
        id("{ big: [{ id: s, delay: 2s }], small: [{ id: b, delay: 1s }] }")
    );
}
