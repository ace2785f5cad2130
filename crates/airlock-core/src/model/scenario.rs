//! `tests/<workflow>/<name>.yaml`: one scenario — a trigger, stubbed connector
//! answers and faults, approval decisions, and what must happen.

use crate::decode::{Cx, Located};
use crate::diagnostic::Code;
use crate::yaml::Node;

/// One scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The workflow it exercises (its folder's name).
    pub workflow: String,
    /// The scenario's name (its file stem).
    pub name: String,
    /// What it shows, for people.
    pub description: Option<String>,
    /// The trigger payload: `body`, `headers`, `query` for webhooks.
    pub trigger: Option<Node>,
    /// Stubbed answers per `connector.action`.
    pub stubs: Vec<Stub>,
    /// Decisions for approval steps: step id, decision, who.
    pub approvals: Vec<(Located<String>, bool, Option<String>)>,
    /// What must happen.
    pub expect: Expectations,
}

/// Stubbed answers for one connector action, one per attempt; the last repeats.
#[derive(Debug, Clone)]
pub struct Stub {
    /// `connector.action` as written.
    pub target: Located<String>,
    /// Answers in attempt order.
    pub replies: Vec<StubReply>,
}

/// One stubbed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StubReply {
    /// Answer with this value.
    Respond(Node),
    /// The attempt times out.
    Timeout,
    /// The connection is refused.
    ConnectionRefused,
    /// The target answers with an error status.
    Status(u16, Option<Node>),
}

/// How expected call arguments are compared with the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    /// Every argument equal.
    Exact,
    /// The expected arguments are contained in the real ones.
    Subset,
}

/// A call the scenario expects.
#[derive(Debug, Clone)]
pub struct ExpectedCall {
    /// `connector.action`.
    pub target: Located<String>,
    /// The expected rendered arguments.
    pub with: Option<Node>,
    /// How to compare.
    pub mode: MatchMode,
}

/// What must happen.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Final status: succeeded, failed, waiting, dead.
    pub status: Option<Located<String>>,
    /// The step ids taken, in order.
    pub path: Vec<Located<String>>,
    /// Calls made, in order.
    pub calls: Vec<ExpectedCall>,
    /// Connector actions that must not be called.
    pub not_called: Vec<Located<String>>,
    /// Expected step outputs (subset match).
    pub outputs: Vec<(Located<String>, Node)>,
}

/// Final statuses a scenario can expect.
pub const STATUSES: &[&str] = &["succeeded", "failed", "waiting", "dead"];

/// Decodes a scenario file.
pub fn decode(cx: &mut Cx<'_>, root: &Node, workflow: &str, name: &str) -> Option<Scenario> {
    let mut fields = cx.fields(root, "scenario")?;
    let description = fields
        .optional("description")
        .and_then(|n| cx.string(n))
        .map(|d| d.value);
    let trigger = fields.optional("trigger").cloned();
    if let Some(trigger) = &trigger
        && let Some(mut t) = cx.fields(trigger, "scenario trigger")
    {
        t.optional("body");
        t.optional("headers");
        t.optional("query");
        t.optional("time");
        t.finish(cx);
    }
    let mut stubs = Vec::new();
    if let Some(n) = fields.optional("stubs") {
        for (target, node) in cx.entries(n, "stubs by `connector.action`") {
            let replies = match &node.value {
                crate::yaml::Value::Seq(items) => {
                    items.iter().filter_map(|i| decode_reply(cx, i)).collect()
                }
                _ => decode_reply(cx, node).into_iter().collect(),
            };
            stubs.push(Stub { target, replies });
        }
    }
    let mut approvals = Vec::new();
    if let Some(n) = fields.optional("approvals") {
        for (step, node) in cx.entries(n, "approval decisions by step id") {
            let Some(mut f) = cx.fields(node, "approval decision") else {
                continue;
            };
            let decision = f
                .required(cx, "decision", "approve or reject")
                .and_then(|n| cx.one_of(n, &["approve", "reject"]));
            let by = f.optional("by").and_then(|n| cx.string(n)).map(|b| b.value);
            f.finish(cx);
            if let Some(decision) = decision {
                approvals.push((step, decision.value == "approve", by));
            }
        }
    }
    let expect = match fields.required(cx, "expect", "what must happen") {
        Some(n) => decode_expectations(cx, n),
        None => Expectations::default(),
    };
    fields.finish(cx);
    Some(Scenario {
        workflow: workflow.to_owned(),
        name: name.to_owned(),
        description,
        trigger,
        stubs,
        approvals,
        expect,
    })
}

fn decode_reply(cx: &mut Cx<'_>, node: &Node) -> Option<StubReply> {
    let mut f = cx.fields(node, "stub reply")?;
    let respond = f.optional("respond");
    let fail = f.optional("fail");
    f.finish(cx);
    match (respond, fail) {
        (Some(value), None) => Some(StubReply::Respond(value.clone())),
        (None, Some(fault)) => {
            if let Some(word) = fault.as_str() {
                return match word {
                    "timeout" => Some(StubReply::Timeout),
                    "connection_refused" => Some(StubReply::ConnectionRefused),
                    _ => {
                        cx.one_of(fault, &["timeout", "connection_refused"]);
                        None
                    }
                };
            }
            let mut f = cx.fields(fault, "fault")?;
            let status = f
                .required(cx, "status", "the error status the target answers")
                .and_then(|n| cx.integer(n, 400, 599));
            let body = f.optional("body").cloned();
            f.finish(cx);
            Some(StubReply::Status(status?.value as u16, body))
        }
        _ => {
            cx.report(
                Code::InvalidValue,
                node.span,
                "a stub reply is exactly one of `respond: VALUE` or `fail: timeout | connection_refused | {status: N}`",
            );
            None
        }
    }
}

fn decode_expectations(cx: &mut Cx<'_>, node: &Node) -> Expectations {
    let mut expect = Expectations::default();
    let Some(mut f) = cx.fields(node, "expectations") else {
        return expect;
    };
    expect.status = f.optional("status").and_then(|n| cx.one_of(n, STATUSES));
    if let Some(n) = f.optional("path") {
        expect.path = cx.strings(n);
    }
    if let Some(n) = f.optional("calls") {
        for item in cx.list(n, "of expected calls") {
            let Some(mut c) = cx.fields(item, "expected call") else {
                continue;
            };
            let target = c
                .required(cx, "call", "the `connector.action` expected")
                .and_then(|n| cx.string(n));
            let with = c.optional("with").cloned();
            let mode = c
                .optional("match")
                .and_then(|n| cx.one_of(n, &["exact", "subset"]))
                .map_or(MatchMode::Subset, |m| {
                    if m.value == "exact" {
                        MatchMode::Exact
                    } else {
                        MatchMode::Subset
                    }
                });
            c.finish(cx);
            if let Some(target) = target {
                expect.calls.push(ExpectedCall { target, with, mode });
            }
        }
    }
    if let Some(n) = f.optional("not_called") {
        expect.not_called = cx.strings(n);
    }
    if let Some(n) = f.optional("outputs") {
        expect.outputs = cx
            .entries(n, "expected outputs by step id")
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
    }
    f.finish(cx);
    expect
}
