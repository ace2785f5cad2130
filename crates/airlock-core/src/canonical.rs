//! The canonical form of a workflow and its version id.
//!
//! The canonical form is built from the decoded model, not from the text, so it does
//! not see formatting, comments, key order or quoting style; it sees every field that
//! changes what the workflow does. It is written as JSON with object keys sorted and no
//! white space, then hashed with SHA-256. The form carries its own version number, so
//! a deliberate change of the form changes every hash rather than colliding.

use crate::model::{Retry, Step, StepKind, Trigger, Workflow};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Bumped whenever the canonical form changes shape.
/// 2: an approval's own timeout is kept (it was overwritten by the step's), and
/// switch cases are sorted by value.
pub const FORM_VERSION: u32 = 2;

/// A workflow's version id: the SHA-256 of its canonical form, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct VersionId(pub String);

impl VersionId {
    /// The first twelve hex digits, for tables.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl std::fmt::Display for VersionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical form as a JSON value.
pub fn canonical_value(workflow: &Workflow) -> Value {
    let mut form = json!({
        "form": FORM_VERSION,
        "name": workflow.name.value,
        "description": workflow.description,
        "trigger": workflow.trigger.as_ref().map(trigger),
        "steps": steps(&workflow.steps),
        "on_failure": steps(&workflow.on_failure),
    });
    // Only when declared: a workflow without `output` keeps the id it had before the field.
    if let (Some(output), Some(form)) = (&workflow.output, form.as_object_mut()) {
        form.insert("output".into(), output.to_json());
    }
    form
}

/// The canonical form as bytes: sorted keys, no white space.
pub fn canonical_bytes(workflow: &Workflow) -> Vec<u8> {
    let mut out = String::new();
    write_sorted(&canonical_value(workflow), &mut out);
    out.into_bytes()
}

/// The workflow's version id.
pub fn version_id(workflow: &Workflow) -> VersionId {
    VersionId(hex::encode(Sha256::digest(canonical_bytes(workflow))))
}

fn trigger(trigger: &Trigger) -> Value {
    serde_json::to_value(trigger).unwrap_or(Value::Null)
}

fn steps(steps: &[Step]) -> Value {
    Value::Array(steps.iter().map(step).collect())
}

fn step(step: &Step) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(step.id.value));
    out.insert("kind".into(), json!(step.kind.name()));
    match &step.kind {
        StepKind::Map { values } => {
            out.insert("values".into(), values.to_json());
        }
        StepKind::If {
            condition,
            then,
            otherwise,
        } => {
            out.insert(
                "condition".into(),
                json!(crate::expr::condition_body(condition).0.trim()),
            );
            out.insert("then".into(), steps(then));
            out.insert("else".into(), steps(otherwise));
        }
        StepKind::Switch {
            value,
            cases,
            default,
        } => {
            out.insert(
                "value".into(),
                json!(crate::expr::condition_body(value).0.trim()),
            );
            // Cases are a mapping: the order they are written in means nothing.
            let mut cases: Vec<_> = cases.iter().collect();
            cases.sort_by(|(a, _), (b, _)| a.value.cmp(&b.value));
            let cases: Vec<Value> = cases
                .into_iter()
                .map(|(case, s)| json!({ "case": case.value, "steps": steps(s) }))
                .collect();
            out.insert("cases".into(), Value::Array(cases));
            out.insert("default".into(), steps(default));
        }
        StepKind::Call {
            connector,
            action,
            with,
            idempotency_key,
            ..
        } => {
            out.insert("connector".into(), json!(connector));
            out.insert("action".into(), json!(action));
            out.insert(
                "with".into(),
                with.as_ref().map_or(Value::Null, |w| w.to_json()),
            );
            out.insert(
                "idempotency_key".into(),
                json!(idempotency_key.as_ref().map(|k| &k.value)),
            );
        }
        StepKind::Approval { message, timeout } => {
            out.insert("message".into(), json!(message.as_ref().map(|m| &m.value)));
            // Not `timeout_ms`: that is the step's own timeout, written below.
            out.insert(
                "approval_timeout_ms".into(),
                json!(timeout.as_ref().map(|t| t.value)),
            );
        }
        StepKind::Delay { duration } => {
            out.insert("duration_ms".into(), json!(duration.value));
        }
        StepKind::Fail { message } => {
            out.insert("message".into(), json!(message.value));
        }
    }
    out.insert(
        "retry".into(),
        step.retry.as_ref().map_or(Value::Null, retry),
    );
    out.insert(
        "timeout_ms".into(),
        json!(step.timeout.as_ref().map(|t| t.value)),
    );
    out.insert("on_failure".into(), steps(&step.on_failure));
    Value::Object(out)
}

fn retry(retry: &Retry) -> Value {
    let mut on: Vec<Value> = retry
        .on
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();
    // The set of retried errors has no order.
    on.sort_by_key(|v| v.to_string());
    on.dedup();
    json!({
        "attempts": retry.attempts,
        "backoff_ms": retry.backoff_ms,
        "max_backoff_ms": retry.max_backoff_ms,
        "jitter": retry.jitter,
        "on": on,
    })
}

/// JSON with object keys in byte order and no white space.
pub fn sorted_json(value: &Value) -> String {
    let mut out = String::new();
    write_sorted(value, &mut out);
    out
}

/// JSON with object keys in byte order, indented by two spaces: for people to read and
/// diff line by line.
pub fn pretty_sorted_json(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(value, 0, &mut out);
    out
}

fn write_pretty(value: &Value, depth: usize, out: &mut String) {
    let indent = |out: &mut String, depth: usize| out.push_str(&"  ".repeat(depth));
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("{\n");
            for (i, key) in keys.iter().enumerate() {
                indent(out, depth + 1);
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push_str(": ");
                write_pretty(&map[*key], depth + 1, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                write_pretty(item, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push(']');
        }
        other => write_sorted(other, out),
    }
}

/// Writes JSON with object keys in byte order, whatever map type serde_json was built with.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Cx;
    use crate::diagnostic::Diagnostics;
    use crate::model::workflow;
    use crate::source::SourceFile;

    fn decode(text: &str) -> (Option<Workflow>, Vec<String>) {
        let file = SourceFile::new("workflows/w.yaml", text);
        let node = crate::yaml::parse(0, &file).unwrap_or_else(|d| panic!("{}", d.message));
        let mut diagnostics = Diagnostics::default();
        let workflow = workflow::decode(&mut Cx::new(0, &mut diagnostics), &node);
        let messages = diagnostics
            .into_sorted()
            .into_iter()
            .map(|d| d.message)
            .collect();
        (workflow, messages)
    }

    fn hash(text: &str) -> String {
        let (workflow, messages) = decode(text);
        assert!(messages.is_empty(), "{messages:?}");
        version_id(&workflow.unwrap_or_else(|| panic!("no workflow"))).0
    }

    const SIGNED_HOOK: &str = "name: hook\ntrigger:\n  webhook:\n    path: orders\n    signature: { scheme: stripe, secret: STRIPE_SIGNING }\n    idempotency_key: \"{{ trigger.body.id }}\"\nsteps:\n  - id: note\n    map: { a: 1 }\n";

    /// The form of a webhook trigger written before `respond`, `wait`, `max_body`,
    /// `max_depth`, `rate_limit` and `previous_secret` existed, pinned byte for byte:
    /// those fields enter the form only when used, so no existing hash moved.
    #[test]
    fn a_webhook_without_the_new_fields_keeps_its_form() {
        let (workflow, _) = decode(SIGNED_HOOK);
        let bytes = canonical_bytes(&workflow.unwrap_or_else(|| panic!("no workflow")));
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"description":null,"form":2,"name":"hook","on_failure":[],"steps":[{"id":"note","kind":"map","on_failure":[],"retry":null,"timeout_ms":null,"values":{"a":1}}],"trigger":{"webhook":{"idempotency_key":"{{ trigger.body.id }}","path":"orders","signature":{"scheme":"stripe","secret":"STRIPE_SIGNING"}}}}"#
        );
    }
    #[test]
    fn the_new_webhook_fields_hash_only_when_they_mean_something() {
        let with = |fields: &str| {
            hash(&SIGNED_HOOK.replace(
                "    idempotency_key:",
                &format!("{fields}    idempotency_key:"),
            ))
        };
        let base = hash(SIGNED_HOOK);
        // The defaults written out are the defaults left out.
        assert_eq!(
            with("    respond: async\n    max_body: 1MiB\n    max_depth: 64\n"),
            base
        );
        assert_eq!(with("    max_body: 1048576\n"), base);
        assert_eq!(
            with("    respond: sync\n    wait: 10s\n"),
            with("    respond: sync\n")
        );
        // Anything else is another version.
        let variants = [
            with("    respond: sync\n"),
            with("    respond: sync\n    wait: 20s\n"),
            with("    max_body: 2MiB\n"),
            with("    max_depth: 8\n"),
            with("    rate_limit: 100/s\n"),
            with("    rate_limit: 100/min\n"),
            hash(&SIGNED_HOOK.replace(
                "secret: STRIPE_SIGNING }",
                "secret: STRIPE_SIGNING, previous_secret: STRIPE_OLD }",
            )),
        ];
        for (i, a) in variants.iter().enumerate() {
            assert_ne!(*a, base, "variant {i}");
            for b in &variants[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Spellings of one rate are one rate.
        assert_eq!(
            with("    rate_limit: 100/s\n"),
            with("    rate_limit: 100/second\n")
        );
    }
}
