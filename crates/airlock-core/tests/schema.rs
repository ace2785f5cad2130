//! The editor schemas (`schemas/*.schema.json`, printed by `airlock schema`) held to the
//! decoders in `airlock_core::model`, with a real validator (the `jsonschema` crate).
//!
//! An editor that flags a valid file, or passes one `airlock validate` refuses for its
//! shape, teaches the wrong language. So: the schemas are valid 2020-12 schemas; the
//! starter and every file of the fixtures validates except the bad files a schema can tell
//! (listed by name); their words (kinds, risks, step kinds…) are the model's own; and
//! the decoder and the schema give the same verdict on thousands of mutations of the
//! starter (an unknown key added to every mapping, every key removed, every value
//! replaced by values of each type), apart from the few gaps a schema cannot close,
//! each named with its reason.

use airlock_core::decode::Cx;
use airlock_core::diagnostic::Diagnostics;
use airlock_core::model::{self, ConnectorKind, RetryOn, Risk};
use airlock_core::schema::FileKind;
use airlock_core::source::SourceFile;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn schema(kind: FileKind) -> Value {
    serde_json::from_str(kind.schema())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", kind.file_name()))
}

fn validator(kind: FileKind) -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema(kind))
        .unwrap_or_else(|e| panic!("{} does not compile: {e}", kind.file_name()))
}

/// The errors the schema finds in `document`, one line each, with where.
fn schema_errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect()
}

/// A file read the way Airlock reads it (YAML 1.2, under the parser's limits), as JSON;
/// `None` when the parser refuses it.
fn parse(path: &str, text: &str) -> Option<Value> {
    let file = SourceFile::new(path, text);
    airlock_core::yaml::parse(0, &file)
        .ok()
        .map(|node| node.to_json())
}

/// Whether the decoder of `kind` takes `document` without a finding. Only the decoder:
/// what `validate` checks across files (references, secrets, templates) is no schema's.
fn decodes(kind: FileKind, document: &Value) -> bool {
    // JSON is YAML: the decoder reads the document through the same parser as a file.
    let text = serde_json::to_string(document).expect("serializes");
    let file = SourceFile::new("doc.yaml", text.as_str());
    let node = airlock_core::yaml::parse(0, &file)
        .unwrap_or_else(|d| panic!("JSON read as YAML: {}: {text}", d.message));
    let mut diagnostics = Diagnostics::default();
    let mut cx = Cx::new(0, &mut diagnostics);
    match kind {
        FileKind::Manifest => {
            model::manifest::decode(&mut cx, &node);
        }
        FileKind::Workflow => {
            model::workflow::decode(&mut cx, &node);
        }
        FileKind::Scenario => {
            model::scenario::decode(&mut cx, &node, "workflow", "scenario");
        }
    }
    diagnostics.is_empty()
}

#[test]
fn the_schemas_are_valid_2020_12_schemas() {
    for kind in FileKind::ALL {
        let schema = schema(kind);
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            kind.file_name()
        );
        if let Err(error) = jsonschema::draft202012::meta::validate(&schema) {
            panic!(
                "{} is not a valid 2020-12 schema: {error}",
                kind.file_name()
            );
        }
        validator(kind);
    }
}

#[test]
fn every_starter_file_validates() {
    let mut checked = 0;
    for (path, text) in airlock_core::scaffold::FILES {
        let Some(kind) = FileKind::of_path(path) else {
            continue;
        };
        let document = parse(path, text).unwrap_or_else(|| panic!("{path} parses"));
        let errors = schema_errors(&validator(kind), &document);
        assert!(errors.is_empty(), "{path}:\n{}", errors.join("\n"));
        checked += 1;
    }
    assert_eq!(checked, 11, "the starter's YAML files");
}

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../airlock-cli/tests/fixtures/invalid")
}

/// The project files under `dir`, relative to it, sorted.
fn project_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("under the root");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|path| FileKind::of_path(path).is_some());
    out.sort();
    out
}

/// The bad files of the fixtures whose fault is in their shape — an unknown key, a wrong
/// type, a missing required field, a word outside its list, a value outside its range or
/// form — which the schema refuses, as the decoder does.
const REFUSED_BY_THE_SCHEMA: &[&str] = &[
    "02-unknown-step-key/workflows/order-intake.yaml",
    "03-unknown-manifest-key/airlock.yaml",
    "04-missing-field/workflows/order-intake.yaml",
    "05-wrong-type/workflows/order-intake.yaml",
    "15-unknown-connector-kind/airlock.yaml",
    "23-bad-duration/workflows/order-intake.yaml",
    "35-step-id-with-dash/workflows/order-intake.yaml",
    "37-several-errors/workflows/order-intake.yaml",
    "39-coverage-share-out-of-range/airlock.yaml",
    "47-webhook-path-escapes/workflows/order-intake.yaml",
];

/// Files Airlock's parser refuses (YAML syntax, an alias bomb, a document nested too
/// deeply, a duplicate key): there is no document for a schema to judge.
const REFUSED_BY_THE_PARSER: &[&str] = &[
    "01-yaml-syntax/workflows/order-intake.yaml",
    "28-alias-bomb/workflows/order-intake.yaml",
    "29-deep-document/tests/order-intake/big-order.yaml",
    "30-duplicate-yaml-key/workflows/order-intake.yaml",
    "36-manifest-yaml-syntax/airlock.yaml",
];

/// Every other file of the fixtures validates: those a fixture keeps valid, and the bad
/// ones whose fault a schema cannot see (a reference to a step, connector, secret or
/// environment; a template; a cron expression or time zone; a rule across files).
#[test]
fn fixtures_validate_except_the_bad_files_a_schema_can_tell() {
    let root = fixtures_root();
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| path.is_dir())
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 40, "only {} fixtures", fixtures.len());
    let validators = FileKind::ALL.map(|kind| (kind, validator(kind)));
    let (mut refused, mut unparsed, mut valid) = (Vec::new(), Vec::new(), 0);
    for fixture in &fixtures {
        let name = fixture.file_name().expect("a name").to_string_lossy();
        for path in project_files(fixture) {
            let id = format!("{name}/{path}");
            let text = std::fs::read_to_string(fixture.join(&path)).expect("readable");
            let Some(document) = parse(&path, &text) else {
                unparsed.push(id);
                continue;
            };
            let kind = FileKind::of_path(&path).expect("a project file");
            let (_, validator) = validators.iter().find(|(k, _)| *k == kind).expect("one");
            let errors = schema_errors(validator, &document);
            if errors.is_empty() {
                valid += 1;
            } else if REFUSED_BY_THE_SCHEMA.contains(&id.as_str()) {
                refused.push(id);
            } else {
                panic!(
                    "{id} is refused by the schema but is not listed as bad:\n{}",
                    errors.join("\n")
                );
            }
        }
    }
    assert_eq!(unparsed, REFUSED_BY_THE_PARSER);
    assert_eq!(
        refused, REFUSED_BY_THE_SCHEMA,
        "each bad file listed must be refused"
    );
    assert!(valid > 100, "only {valid} valid fixture files");
}

/// The words the decoders accept are the schemas' enums, so a new kind or risk cannot be
/// added to one and forgotten in the other.
#[test]
fn the_schemas_use_the_models_words() {
    let manifest = schema(FileKind::Manifest);
    let workflow = schema(FileKind::Workflow);
    let scenario = schema(FileKind::Scenario);
    let words = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("an enum: {value}"))
            .iter()
            .map(|v| v.as_str().expect("a word").to_owned())
            .collect()
    };
    let defs = &manifest["$defs"];
    assert_eq!(
        words(&defs["connector"]["properties"]["kind"]["enum"]),
        ConnectorKind::NAMES
    );
    assert_eq!(
        words(&defs["connector"]["properties"]["risk"]["enum"]),
        Risk::NAMES
    );
    assert_eq!(
        words(&defs["promotion_rule"]["properties"]["by_risk"]["propertyNames"]["enum"]),
        Risk::NAMES
    );
    // A binding may set the fields of any kind (the schema cannot see the connector's
    // kind from the binding), and none other.
    let mut fields: Vec<String> = ConnectorKind::NAMES
        .iter()
        .filter_map(|name| ConnectorKind::parse(name))
        .flat_map(|kind| kind.binding_fields().iter().map(|f| f.name.to_owned()))
        .chain([
            "mode".to_owned(),
            "responses".to_owned(),
            "pages".to_owned(),
        ])
        .collect();
    fields.sort();
    fields.dedup();
    let mut declared: Vec<String> = defs["binding"]["properties"]
        .as_object()
        .expect("binding properties")
        .keys()
        .cloned()
        .collect();
    declared.sort();
    assert_eq!(declared, fields);

    let step = &workflow["$defs"]["step"];
    let kinds: Vec<String> = step["oneOf"]
        .as_array()
        .expect("one of the kinds")
        .iter()
        .map(|branch| branch["required"][0].as_str().expect("a kind").to_owned())
        .collect();
    assert_eq!(kinds, model::workflow::STEP_KINDS);
    assert_eq!(
        words(&workflow["$defs"]["retry"]["properties"]["on"]["items"]["enum"]),
        RetryOn::NAMES
    );
    assert_eq!(
        words(&scenario["properties"]["expect"]["properties"]["status"]["enum"]),
        model::scenario::STATUSES
    );
}

/// One step of a path into a document.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seg::Key(key) => write!(f, ".{key}"),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// A key no record has, added to the mapping at the path.
    AddUnknownKey,
    /// The key at the end of the path removed.
    Remove,
    /// The value at the path replaced.
    Replace(Value),
}

fn at<'v>(document: &'v mut Value, path: &[Seg]) -> &'v mut Value {
    path.iter().fold(document, |value, seg| match seg {
        Seg::Key(key) => &mut value[key.as_str()],
        Seg::Index(i) => &mut value[*i],
    })
}

fn apply(document: &Value, path: &[Seg], mutation: &Mutation) -> Value {
    let mut mutated = document.clone();
    match mutation {
        Mutation::AddUnknownKey => {
            if let Value::Object(map) = at(&mut mutated, path) {
                map.insert("zz_unknown".into(), json!(1));
            }
        }
        Mutation::Remove => {
            let (last, parent) = path.split_last().expect("a key to remove");
            match (at(&mut mutated, parent), last) {
                (Value::Object(map), Seg::Key(key)) => {
                    map.remove(key);
                }
                (Value::Array(items), Seg::Index(i)) => {
                    items.remove(*i);
                }
                _ => unreachable!("a path leads to what it names"),
            }
        }
        Mutation::Replace(value) => *at(&mut mutated, path) = value.clone(),
    }
    mutated
}

/// Every mutation of `document`: at every mapping an unknown key, and every key and item
/// removed and replaced by a value of each type.
fn mutations(document: &Value) -> Vec<(Vec<Seg>, Mutation)> {
    fn walk(value: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, Mutation)>) {
        let children: Vec<(Seg, &Value)> = match value {
            Value::Object(map) => {
                out.push((path.clone(), Mutation::AddUnknownKey));
                map.iter().map(|(k, v)| (Seg::Key(k.clone()), v)).collect()
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Seg::Index(i), v))
                .collect(),
            _ => Vec::new(),
        };
        for (seg, child) in children {
            path.push(seg);
            out.push((path.clone(), Mutation::Remove));
            for replacement in [
                json!("zz"),
                json!(7),
                json!(true),
                json!(null),
                json!([]),
                json!({ "zz": 1 }),
            ] {
                out.push((path.clone(), Mutation::Replace(replacement)));
            }
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(document, &mut Vec::new(), &mut out);
    out
}

/// Where the schema and the decoder may disagree, and why: what a schema cannot know.
fn known_gap(kind: FileKind, path: &[Seg], mutation: &Mutation) -> Option<&'static str> {
    let keys: Vec<&str> = path
        .iter()
        .map(|seg| match seg {
            Seg::Key(key) => key.as_str(),
            Seg::Index(_) => "[]",
        })
        .collect();
    match (kind, keys.as_slice(), mutation) {
        // A binding's required fields depend on its connector's kind, declared elsewhere
        // in the file; its fields' types are checked by the connector of that kind
        // (`airlock check`), which the schema's types describe.
        (FileKind::Manifest, ["environments", _, "bindings", _, field, ..], _)
            if *field != "mode" && *field != "responses" =>
        {
            Some("binding settings")
        }
        (
            FileKind::Manifest,
            ["environments", _, "bindings", _],
            Mutation::Replace(Value::Null) | Mutation::Replace(Value::Object(_)),
        ) => Some("binding settings"),
        // Without `mode: record` a binding is live, and a live binding needs its kind's
        // required fields.
        (FileKind::Manifest, ["environments", _, "bindings", _, "mode"], Mutation::Remove) => {
            Some("binding settings")
        }
        // `with` must be a mapping of the action's arguments: `validate` says so (it
        // knows the action), the decoder takes any value.
        (FileKind::Workflow, [.., "with"], Mutation::Replace(_)) => Some("arguments"),
        // A cron expression and an IANA zone are checked by their parsers.
        (_, [.., "schedule" | "timezone"], Mutation::Replace(Value::String(_))) => {
            Some("parsed values")
        }
        _ => None,
    }
}

#[test]
fn the_decoder_and_the_schema_agree_on_every_mutation_of_the_starter() {
    let validators = FileKind::ALL.map(|kind| (kind, validator(kind)));
    let (mut compared, mut gaps, mut disagreements) = (0, 0, Vec::new());
    for (path, text) in airlock_core::scaffold::FILES {
        let Some(kind) = FileKind::of_path(path) else {
            continue;
        };
        let (_, validator) = validators.iter().find(|(k, _)| *k == kind).expect("one");
        let document = parse(path, text).expect("the starter parses");
        for (at, mutation) in mutations(&document) {
            let mutated = apply(&document, &at, &mutation);
            let decoded = decodes(kind, &mutated);
            let valid = validator.is_valid(&mutated);
            compared += 1;
            if decoded == valid {
                continue;
            }
            if known_gap(kind, &at, &mutation).is_some() {
                gaps += 1;
                continue;
            }
            let where_: String = at.iter().map(ToString::to_string).collect();
            disagreements.push(format!(
                "{path} {mutation:?} at `{where_}`: the decoder {}, the schema {}{}",
                if decoded { "accepts" } else { "refuses" },
                if valid { "accepts" } else { "refuses" },
                schema_errors(validator, &mutated)
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {compared} mutations:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(compared > 3_000, "only {compared} mutations");
    assert!(gaps < compared / 10, "{gaps} gaps of {compared}");
}

/// Values of the fields whose form a pattern carries (durations, sizes, rates, weekly
/// times, webhook paths, names): the pattern and the decoder agree on each.
#[test]
fn patterns_and_the_decoder_agree_on_written_forms() {
    let workflow = |trigger: Value, step: Value| -> Value {
        let mut step_ = json!({ "id": "a" });
        step_
            .as_object_mut()
            .expect("a step")
            .extend(step.as_object().expect("fields").clone());
        json!({ "name": "w", "trigger": trigger, "steps": [step_] })
    };
    let fill = json!({ "map": { "x": 1 } });
    let webhook = |fields: Value| {
        let mut hook = json!({ "path": "w" });
        hook.as_object_mut()
            .expect("a webhook")
            .extend(fields.as_object().expect("fields").clone());
        json!({ "webhook": hook })
    };
    let mut cases: Vec<(FileKind, Value)> = Vec::new();
    for duration in [
        json!("250ms"),
        json!("5s"),
        json!("1h 30m"),
        json!("1h30m"),
        json!("1.5h"),
        json!("2d"),
        json!("1 week"),
        json!("3M"),
        json!("10µs"),
        json!(" 5s "),
        json!("0"),
        json!(0),
        json!("0s"),
        json!("5"),
        json!(5),
        json!("5 parsecs"),
        json!(""),
        json!("s"),
        json!("1.s"),
        json!("-5s"),
        json!("5m s"),
        json!(true),
    ] {
        cases.push((
            FileKind::Workflow,
            workflow(json!("manual"), json!({ "delay": duration })),
        ));
    }
    for size in [
        json!("256KiB"),
        json!("1 MiB"),
        json!("1mb"),
        json!("512"),
        json!(1_048_576),
        json!(16 * 1024 * 1024),
        json!(16 * 1024 * 1024 + 1),
        json!("0"),
        json!(0),
        json!("1.5MiB"),
        json!(1.5),
        json!("10 parsecs"),
        json!("KiB"),
        json!(true),
    ] {
        cases.push((
            FileKind::Workflow,
            workflow(webhook(json!({ "max_body": size })), fill.clone()),
        ));
    }
    for rate in [
        "100/s",
        "600/min",
        "10000/h",
        "10 / hour",
        "1000000/s",
        "1000001/s",
        "0/s",
        "100",
        "100/fortnight",
        "-1/s",
        "+1/s",
    ] {
        cases.push((
            FileKind::Workflow,
            workflow(webhook(json!({ "rate_limit": rate })), fill.clone()),
        ));
    }
    cases.push((
        FileKind::Workflow,
        workflow(webhook(json!({ "rate_limit": 100 })), fill.clone()),
    ));
    for path in [
        "orders",
        "/orders/",
        "a/b.c",
        "a.b/.c/d..e",
        "../x",
        "a/./b",
        "a/..",
        "a//b",
        "",
        "/",
        "a b",
        "a%2fb",
        "a\\b",
        "..",
        "é",
    ] {
        cases.push((
            FileKind::Workflow,
            workflow(json!({ "webhook": { "path": path } }), fill.clone()),
        ));
    }
    for (respond, wait) in [
        (json!("sync"), json!("30s")),
        (json!(null), json!("30s")),
        (json!("async"), json!("30s")),
    ] {
        let mut fields = json!({ "wait": wait });
        if !respond.is_null() {
            fields["respond"] = respond;
        }
        cases.push((FileKind::Workflow, workflow(webhook(fields), fill.clone())));
    }
    for id in [
        json!("a"),
        json!("a_1"),
        json!("A"),
        json!("1a"),
        json!("sync-crm"),
        json!("_a"),
        json!(true),
        json!(7),
    ] {
        cases.push((
            FileKind::Workflow,
            json!({ "name": "w", "trigger": "manual", "steps": [{ "id": id, "fail": "x" }] }),
        ));
    }
    for name in ["order-intake", "a_b", "Order", "a b", ""] {
        cases.push((
            FileKind::Workflow,
            json!({ "name": name, "trigger": "manual", "steps": [] }),
        ));
    }
    for call in ["crm.request", "crm", "."] {
        cases.push((
            FileKind::Workflow,
            workflow(json!("manual"), json!({ "call": call })),
        ));
    }
    for trigger in [
        json!("manual"),
        json!("webhook"),
        json!({ "manual": {} }),
        json!({ "manual": null, "cron": { "schedule": "0 7 * * *" } }),
        json!({}),
    ] {
        cases.push((FileKind::Workflow, workflow(trigger, fill.clone())));
    }
    for time in [
        "Fri 15:00",
        "fri 7:05",
        "Friday 23:59",
        "FRI  08:00",
        "Sun 0:0",
        "Mon 24:00",
        "Mon 08:60",
        "Fr 10:00",
        "Fri 15",
        "Fri15:00",
        "Fri 1:2:3",
        "15:00 Fri",
    ] {
        cases.push((
            FileKind::Manifest,
            json!({
                "project": "p",
                "connectors": {},
                "environments": {},
                "promotion": { "a -> b": { "freeze": [{ "from": time, "to": "Mon 08:00" }] } }
            }),
        ));
    }
    for reply in [
        json!({ "respond": 1 }),
        json!({ "fail": "timeout" }),
        json!({ "fail": { "status": 503 } }),
        json!({ "fail": { "status": 200 } }),
        json!({ "fail": "later" }),
        json!({ "respond": 1, "fail": "timeout" }),
        json!({}),
        json!([{ "respond": 1 }, { "fail": "connection_refused" }]),
    ] {
        cases.push((
            FileKind::Scenario,
            json!({ "stubs": { "crm.request": reply }, "expect": null }),
        ));
    }
    let validators = FileKind::ALL.map(|kind| (kind, validator(kind)));
    let mut disagreements = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (kind, document) in &cases {
        let (_, validator) = validators.iter().find(|(k, _)| k == kind).expect("one");
        let decoded = decodes(*kind, document);
        if decoded != validator.is_valid(document) {
            disagreements.push(format!(
                "the decoder {} {document}",
                if decoded { "accepts" } else { "refuses" }
            ));
        }
        if decoded {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        disagreements.is_empty(),
        "the schema says otherwise:\n{}",
        disagreements.join("\n")
    );
    assert!(accepted > 30 && refused > 30, "{accepted} / {refused}");
}
