//! An environment's configuration as a version: everything in `airlock.yaml` that decides
//! how one environment behaves, with a canonical form and a content hash, like a workflow.
//!
//! The configuration of environment E is: its bindings (secret *references*, never
//! values), egress list, approvers, protection and declared secrets; the connectors it
//! binds (their kind and risk: a lower risk is a lighter gate); the documented
//! differences that concern it; and the promotion rules that target it. A protected
//! environment runs its *released* configuration, so that editing the file changes
//! nothing there until a configuration promotion is approved and released.
//!
//! The canonical form is a JSON document shaped like `airlock.yaml` itself, built from the
//! decoded model (never from the text): keys sorted, lists of names sorted and
//! deduplicated. Being JSON it is also YAML, so the stored form decodes with the
//! manifest's own decoder ([`decode`]) and a released configuration is read back with
//! exactly the rules a file is read with.

use crate::decode::Cx;
use crate::diagnostic::Diagnostics;
use crate::model::manifest::{self, Manifest, Requirements};
use crate::model::{BindingMode, Difference, Environment, FreezeWindow, PromotionRule};
use crate::source::SourceFile;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The name configuration versions, requests and releases are stored under in place of
/// a workflow's. A workflow's name cannot start with `@`, so the two never meet.
pub const CONFIG_SUBJECT: &str = "@config";

/// Bumped whenever the canonical form changes shape; part of the hashed bytes.
pub const CONFIG_FORM_VERSION: u32 = 1;

/// The configuration of `environment` in `manifest`, in canonical form, or `None` when
/// the manifest has no such environment.
pub fn document(manifest: &Manifest, environment: &str) -> Option<Value> {
    let env = manifest.environment(environment)?;
    let connectors: Map<String, Value> = env
        .bindings
        .iter()
        .filter_map(|b| manifest.connector(&b.connector.value))
        .map(|c| {
            let mut form = Map::new();
            if let Some(kind) = c.kind {
                form.insert("kind".into(), json!(kind.name()));
            }
            form.insert("risk".into(), json!(risk_name(c.risk)));
            (c.name.value.clone(), Value::Object(form))
        })
        .collect();
    let mut differences: Vec<Value> = manifest
        .differences
        .iter()
        .filter(|d| concerns(d, environment))
        .map(difference)
        .collect();
    differences.sort_by_key(|d| d.to_string());
    differences.dedup();
    let promotion: Map<String, Value> = manifest
        .promotion
        .iter()
        .filter(|r| r.to.value == environment)
        .map(|r| (format!("{} -> {}", r.from.value, r.to.value), rule(r)))
        .collect();
    let mut document = Map::new();
    document.insert(
        "project".into(),
        json!(manifest.project.as_ref().map_or("", |p| p.value.as_str())),
    );
    document.insert("connectors".into(), Value::Object(connectors));
    document.insert(
        "environments".into(),
        json!({ environment: environment_form(env) }),
    );
    if !differences.is_empty() {
        document.insert("differences".into(), Value::Array(differences));
    }
    if !promotion.is_empty() {
        document.insert("promotion".into(), Value::Object(promotion));
    }
    Some(Value::Object(document))
}

/// The bytes a configuration is stored as and hashed from: sorted keys, no white space.
pub fn canonical_text(document: &Value) -> String {
    crate::canonical::sorted_json(document)
}

/// A configuration's version id: the SHA-256 of its form version and canonical text.
pub fn version_id(document: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("airlock-config/{CONFIG_FORM_VERSION}\n"));
    hasher.update(canonical_text(document));
    hex::encode(hasher.finalize())
}

/// The configuration of `environment` and its id, in one go.
pub fn of(manifest: &Manifest, environment: &str) -> Option<(String, Value)> {
    let document = document(manifest, environment)?;
    Some((version_id(&document), document))
}

/// Reads a stored configuration back into a manifest holding just that environment,
/// its connectors, differences and rules, by the manifest's own decoder.
pub fn decode(text: &str) -> Result<Manifest, String> {
    let file = SourceFile::new("configuration", text);
    let node = crate::yaml::parse(0, &file).map_err(|d| d.message)?;
    let mut diagnostics = Diagnostics::default();
    let mut cx = Cx::new(0, &mut diagnostics);
    let decoded = manifest::decode(&mut cx, &node);
    match diagnostics.into_sorted().first() {
        None => Ok(decoded),
        Some(first) => Err(format!(
            "a stored configuration does not decode: {}",
            first.message
        )),
    }
}

/// `working` with what concerns `environment` taken from `released` instead: that
/// environment, the connectors it binds, the differences about it and the rules into it.
/// Everything else (other environments, their rules) stays as the working copy has it.
pub fn overlay(working: &Manifest, environment: &str, released: &Manifest) -> Manifest {
    let mut out = working.clone();
    let Some(env) = released.environment(environment) else {
        return out;
    };
    match out
        .environments
        .iter_mut()
        .find(|e| e.name.value == environment)
    {
        Some(slot) => *slot = env.clone(),
        None => out.environments.push(env.clone()),
    }
    for connector in &released.connectors {
        match out
            .connectors
            .iter_mut()
            .find(|c| c.name.value == connector.name.value)
        {
            Some(slot) => *slot = connector.clone(),
            None => out.connectors.push(connector.clone()),
        }
    }
    out.differences.retain(|d| !concerns(d, environment));
    out.differences.extend(released.differences.iter().cloned());
    out.promotion.retain(|r| r.to.value != environment);
    out.promotion.extend(released.promotion.iter().cloned());
    out
}

/// Whether a documented difference is about `environment` (one naming no environment is
/// about all of them).
fn concerns(difference: &Difference, environment: &str) -> bool {
    difference.environments.is_empty()
        || difference
            .environments
            .iter()
            .any(|e| e.value == environment)
}

/// One line of a configuration diff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiffLine {
    /// `+` added in the new configuration, `-` removed, ` ` unchanged context.
    pub sign: char,
    /// The line, from the pretty-printed configuration, with literal credentials masked.
    pub text: String,
}

/// A readable diff from `old` to `new` (either absent): pretty-printed, sorted JSON,
/// line by line, with three lines of context. Credentials written literally into a
/// binding (a `token` or `password`, a URL's password, an `Authorization` header) are
/// masked on both sides; secret references (`${secret:NAME}`) are shown as written, and
/// secret values are never part of a configuration at all.
pub fn diff(old: Option<&Value>, new: Option<&Value>) -> Vec<DiffLine> {
    let render = |v: Option<&Value>| {
        v.map(|v| {
            let mut v = v.clone();
            mask(&mut v, None);
            crate::canonical::pretty_sorted_json(&v)
        })
        .unwrap_or_default()
    };
    let (old, new) = (render(old), render(new));
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut lines = Vec::new();
    for group in diff.grouped_ops(3) {
        for op in group {
            for change in diff.iter_changes(&op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                lines.push(DiffLine {
                    sign,
                    text: change.value().trim_end_matches('\n').to_owned(),
                });
            }
        }
    }
    lines
}

const MASK: &str = "•••• (a literal credential: not shown)";

fn mask(value: &mut Value, key: Option<&str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                mask(v, Some(k));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask(v, key)),
        Value::String(text) => {
            let credential = matches!(
                key.map(str::to_ascii_lowercase).as_deref(),
                Some("token" | "password" | "authorization")
            );
            if credential && !is_secret_reference(text) {
                *text = MASK.into();
            } else if let Some(masked) = mask_url_password(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

fn is_secret_reference(text: &str) -> bool {
    let text = text.trim();
    text.starts_with("${secret:") && text.ends_with('}') && text.matches("${").count() == 1
}

/// `scheme://user:password@host…` with the password masked, if the text is such a URL.
fn mask_url_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, _) = rest[..authority_end].rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    if password.is_empty() || is_secret_reference(password) {
        return None;
    }
    Some(format!(
        "{scheme}://{user}:••••@{}",
        &rest[userinfo.len() + 1..]
    ))
}

fn risk_name(risk: crate::model::Risk) -> &'static str {
    crate::model::Risk::NAMES[risk as usize]
}

fn sorted_names(names: &[crate::decode::Located<String>]) -> Value {
    let mut names: Vec<&str> = names.iter().map(|n| n.value.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    json!(names)
}

fn environment_form(env: &Environment) -> Value {
    let bindings: Map<String, Value> = env
        .bindings
        .iter()
        .map(|b| {
            let mut form = Map::new();
            if b.mode.value == BindingMode::Record {
                form.insert("mode".into(), json!("record"));
            }
            // Written only when set, so a configuration from before paging hashes as it did.
            if b.pages.as_ref().is_some_and(|p| p.value) {
                form.insert("pages".into(), json!(true));
            }
            for (key, value) in &b.settings {
                form.insert(key.value.clone(), value.to_json());
            }
            if !b.responses.is_empty() {
                form.insert(
                    "responses".into(),
                    Value::Object(
                        b.responses
                            .iter()
                            .map(|(k, v)| (k.value.clone(), v.to_json()))
                            .collect(),
                    ),
                );
            }
            (b.connector.value.clone(), Value::Object(form))
        })
        .collect();
    let mut form = json!({
        "protected": env.protected,
        "approvers": sorted_names(&env.approvers),
        "egress": sorted_names(&env.egress),
        "secrets": sorted_names(&env.secrets),
        "bindings": bindings,
    });
    // Where notifications go is part of how the environment behaves (a protected one's
    // pages change by release, as its bindings do); absent when there is none, so a
    // configuration from before notifications hashes as it did.
    if !env.notify.is_empty() {
        let targets: Vec<Value> = env
            .notify
            .iter()
            .map(|t| {
                let mut target = Map::new();
                target.insert("connector".into(), json!(t.connector.value));
                if !t.events.is_empty() {
                    target.insert("events".into(), sorted_names(&t.events));
                }
                if !t.to.is_empty() {
                    target.insert("to".into(), sorted_names(&t.to));
                }
                if let Some(path) = &t.path {
                    target.insert("path".into(), json!(path.value));
                }
                Value::Object(target)
            })
            .collect();
        form["notify"] = Value::Array(targets);
    }
    form
}

fn difference(d: &Difference) -> Value {
    let mut form = Map::new();
    form.insert("path".into(), json!(d.path.value));
    form.insert("reason".into(), json!(d.reason.value));
    if !d.environments.is_empty() {
        form.insert("environments".into(), sorted_names(&d.environments));
    }
    Value::Object(form)
}

fn rule(r: &PromotionRule) -> Value {
    let mut form = Map::new();
    form.insert("require".into(), requirements(&r.require));
    if !r.by_risk.is_empty() {
        form.insert(
            "by_risk".into(),
            Value::Object(
                r.by_risk
                    .iter()
                    .map(|(risk, req)| (risk_name(*risk).to_owned(), requirements(req)))
                    .collect(),
            ),
        );
    }
    if !r.freeze.is_empty() {
        form.insert(
            "freeze".into(),
            Value::Array(r.freeze.iter().map(freeze).collect()),
        );
    }
    if let Some(ms) = r.expires {
        form.insert("expires".into(), json!(format!("{ms}ms")));
    }
    Value::Object(form)
}

/// Requirements as `airlock.yaml` spells them, only the fields set.
pub fn requirements(r: &Requirements) -> Value {
    let mut form = Map::new();
    if let Some(tests) = r.tests {
        // Coverage shares are part of the test requirement (`tests: { pass, branches,
        // failure_paths }`): lowering one is a change of the configuration too.
        let value = if r.branch_coverage.is_none() && r.failure_path_coverage.is_none() {
            json!(if tests { "pass" } else { "none" })
        } else {
            let mut spelled = Map::new();
            spelled.insert("pass".into(), json!(tests));
            if let Some(share) = r.branch_coverage {
                spelled.insert("branches".into(), json!(share));
            }
            if let Some(share) = r.failure_path_coverage {
                spelled.insert("failure_paths".into(), json!(share));
            }
            Value::Object(spelled)
        };
        form.insert("tests".into(), value);
    }
    if let Some(parity) = r.parity {
        form.insert(
            "parity".into(),
            json!(if parity { "clean" } else { "none" }),
        );
    }
    if let Some(runs) = r.staging_runs {
        form.insert(
            "staging_runs".into(),
            json!({ "min": runs.min, "max_failure_rate": runs.max_failure_rate }),
        );
    }
    if let Some(approvals) = r.approvals {
        form.insert("approvals".into(), json!(approvals));
    }
    Value::Object(form)
}

fn freeze(window: &FreezeWindow) -> Value {
    json!({
        "from": crate::policy::weekly(window.from),
        "to": crate::policy::weekly(window.to),
        "timezone": window.timezone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project;

    fn starter() -> Manifest {
        let loaded = project::load(crate::scaffold::files());
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.project.manifest
    }

    fn edited(find: &str, replace: &str) -> Manifest {
        let files = crate::scaffold::files()
            .into_iter()
            .map(|mut f| {
                if f.path == "airlock.yaml" {
                    assert!(f.text.contains(find), "{find}");
                    f.text = f.text.replacen(find, replace, 1);
                }
                f
            })
            .collect();
        let loaded = project::load(files);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.project.manifest
    }

    #[test]
    fn a_stored_configuration_decodes_back_to_the_same_configuration() {
        let manifest = starter();
        for environment in ["staging", "production"] {
            let (id, document) = of(&manifest, environment).unwrap();
            let decoded = decode(&canonical_text(&document)).unwrap();
            let (again, _) = of(&decoded, environment).unwrap();
            assert_eq!(id, again, "{environment}");
        }
    }

    #[test]
    fn formatting_does_not_change_the_hash_and_meaning_does() {
        let base = of(&starter(), "production").unwrap().0;
        let reordered = edited(
            "approvers: [ops-lead, cfo]",
            "approvers: [cfo, ops-lead]  # same people",
        );
        assert_eq!(of(&reordered, "production").unwrap().0, base);
        let rebound = edited(
            "base_url: \"https://api.crm.example/v2\"",
            "base_url: \"https://api.crm.example/v3\"",
        );
        assert_ne!(of(&rebound, "production").unwrap().0, base);
        let looser = edited("finance:  { approvals: 2 }", "finance:  { approvals: 1 }");
        assert_ne!(of(&looser, "production").unwrap().0, base);
        let uncovered = edited("failure_paths: 1.0", "failure_paths: 0.5");
        assert_ne!(of(&uncovered, "production").unwrap().0, base);
        let cheaper = edited("risk: finance", "risk: internal");
        assert_ne!(of(&cheaper, "production").unwrap().0, base);
    }

    #[test]
    fn staging_changes_do_not_touch_productions_configuration() {
        let base = of(&starter(), "production").unwrap().0;
        let staging_only = edited(
            "approvers: [staging-lead]",
            "approvers: [staging-lead, dev]",
        );
        assert_eq!(of(&staging_only, "production").unwrap().0, base);
    }

    #[test]
    fn overlay_takes_the_released_environment_and_its_rules() {
        let released = decode(&canonical_text(
            &document(&starter(), "production").unwrap(),
        ))
        .unwrap();
        let working = edited(
            "base_url: \"https://api.crm.example/v2\"",
            "base_url: \"https://api.crm.example/v3\"",
        );
        let effective = overlay(&working, "production", &released);
        let url = effective
            .environment("production")
            .and_then(|e| e.binding("crm"))
            .and_then(|b| b.setting("base_url"))
            .and_then(|n| n.as_str().map(str::to_owned));
        assert_eq!(url.as_deref(), Some("https://api.crm.example/v2"));
        assert_eq!(
            of(&effective, "production").unwrap().0,
            of(&starter(), "production").unwrap().0
        );
        // Staging is the working copy's.
        assert_eq!(
            of(&effective, "staging").unwrap().0,
            of(&working, "staging").unwrap().0
        );
    }

    #[test]
    fn the_diff_shows_what_changes_and_masks_literal_credentials() {
        let before = document(&starter(), "production").unwrap();
        let changed = document(
            &edited(
                "url: \"${secret:ORDERS_DB_URL}\"",
                "url: \"postgres://ledger:hunter2@db.internal/orders\"",
            ),
            "production",
        )
        .unwrap();
        let lines = diff(Some(&before), Some(&changed));
        let text: String = lines
            .iter()
            .map(|l| format!("{}{}\n", l.sign, l.text))
            .collect();
        assert!(
            text.contains("-") && text.contains("${secret:ORDERS_DB_URL}"),
            "{text}"
        );
        assert!(
            text.contains("+") && text.contains("ledger:••••@db.internal"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
