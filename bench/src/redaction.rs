//! `redaction`: what redacting a call's answer costs the executor, per answer.
//!
//! What the executor does for every call result, timed in a loop: get the environment's
//! redactor (`Runtime::redactor`, a clone) and redact the answer before it is journaled.
//! Three answers that hold no secret (the shared workload's small JSON answer, a 64 KiB
//! JSON answer, a 1 MiB text) and the small one holding the secret base64-encoded; three
//! redactors: none, one secret and ten secrets. `raw only` is the redactor as it was
//! before encoded forms (a list of values, `contains` and `replace` for each, the answer
//! copied whole), kept here as the baseline; `encoded` is `airlock_connectors::redact`.
//! Each figure is the median of R repeats of N answers (fewer for the large ones), in ns
//! per answer; `copy` is what making the owned answer costs alone, inside both figures.
//!
//! ```text
//! cargo run --release -p airlock-bench -- redaction [--count N] [--repeats R]
//! ```

use airlock_connectors::secrets::Redactor;
use serde_json::{Value, json};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: airlock-bench redaction [--count N] [--repeats R]";

/// The redactor before encoded forms: values, longest first, each looked for in turn.
#[derive(Clone, Default)]
struct RawOnly {
    values: Vec<String>,
}

impl RawOnly {
    fn add(&mut self, value: &str) {
        if value.len() >= 4 && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "[redacted]");
            }
        }
        out
    }

    fn redact_json(&self, value: &Value) -> Value {
        if self.values.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.redact(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Entry point; `args` are the arguments after `redaction`.
pub fn main(args: Vec<String>) -> ExitCode {
    let (count, repeats) = match crate::scenarios::count_and_repeats(&args, 200_000, 5) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let secrets: Vec<String> = (0..10)
        .map(|i| format!("tok_{i}_9f8e7d6c5b4a39281706f5e4d3c2b1a0"))
        .collect();
    let small = json!({ "status": 201, "body": { "id": "crm-1", "ok": true } });
    let large = json!({
        "status": 200,
        "body": (0..512)
            .map(|i| json!({ "id": i, "name": format!("customer {i}"), "email": format!("c{i}@example.com"), "note": "x".repeat(64) }))
            .collect::<Vec<_>>(),
    });
    let text = json!({ "status": 200, "body": "lorem ipsum dolor sit amet ".repeat(40_000) });
    use base64::Engine as _;
    let echoed = json!({ "status": 201, "body": {
        "id": "crm-1",
        "echo": base64::engine::general_purpose::STANDARD.encode(&secrets[0]),
    }});
    let answers: [(&str, &Value, usize); 4] = [
        ("small answer, no secret", &small, count),
        ("64 KiB JSON, no secret", &large, (count / 200).max(1)),
        ("1 MiB text, no secret", &text, (count / 2000).max(1)),
        ("small answer, secret echoed base64", &echoed, count),
    ];
    println!(
        "redaction: ns per answer, median of {repeats} repeats ({} bytes, {} bytes, {} bytes, {} bytes)",
        small.to_string().len(),
        large.to_string().len(),
        text.to_string().len(),
        echoed.to_string().len()
    );
    for (name, answer, n) in answers {
        for held in [0usize, 1, 10] {
            let mut raw = RawOnly::default();
            let mut encoded = Redactor::default();
            for secret in &secrets[..held] {
                raw.add(secret);
                encoded.add(secret);
            }
            // Both loops start from an answer the executor owns, as it does: a copy made
            // in the loop, whose cost `copy` gives alone.
            let copy = median(
                (0..repeats)
                    .map(|_| time(n, || drop(black_box(black_box(answer).clone()))))
                    .collect(),
            );
            let before = median(
                (0..repeats)
                    .map(|_| {
                        time(n, || {
                            let owned = black_box(answer).clone();
                            let redactor = black_box(&raw).clone();
                            drop(black_box(redactor.redact_json(&owned)));
                        })
                    })
                    .collect(),
            );
            let after = median(
                (0..repeats)
                    .map(|_| {
                        time(n, || {
                            let owned = black_box(answer).clone();
                            let redactor = black_box(&encoded).clone();
                            drop(black_box(redactor.redacted(owned)));
                        })
                    })
                    .collect(),
            );
            println!(
                "{name:<36} {held:>2} secrets   copy {copy:>11.0} ns   raw only {before:>11.0} ns   encoded {after:>11.0} ns",
            );
        }
    }
    ExitCode::SUCCESS
}

/// What one call of `work` costs, in ns, over `n` calls.
fn time(n: usize, mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        work();
    }
    started.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}
