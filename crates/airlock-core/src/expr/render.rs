//! Evaluating templates and conditions against a run's scope.
//!
//! Only the workflow's own strings are templates. Values that come from outside — a
//! trigger payload, a connector's answer — enter the scope as data and are never
//! rendered, so a payload holding `{{ ... }}` stays text. A string that is exactly one
//! `{{ expression }}` keeps the expression's type (a number stays a number); any
//! other template renders to a string.

use crate::expr;
use minijinja::value::{Enumerator, Object, ObjectRepr};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

/// Largest rendered string accepted; beyond it, evaluation stops with "budget exceeded".
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The expression ran out of fuel or produced too much.
    #[error("budget exceeded: {0}")]
    Budget(String),
    /// The expression failed (an undefined name, a type error, a syntax error).
    #[error("{0}")]
    Expression(String),
}

/// What templates may read. Values are shared, not copied: building a context for each
/// evaluation costs a few reference counts, whatever the size of the payload.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `trigger`: the payload.
    pub trigger: Arc<Value>,
    /// `steps`: id → `{ output, status }` of the steps that ran.
    pub steps: BTreeMap<String, Arc<Value>>,
    /// `run`: id, environment, timestamps.
    pub run: Arc<Value>,
    /// `env`: the environment's name.
    pub env: Arc<Value>,
    /// `workflow`: name and version.
    pub workflow: Arc<Value>,
    /// `error`: the failure being handled, inside `on_failure` only.
    pub error: Option<Arc<Value>>,
    /// `release`: the release the run ran on and its owners (where a run is in scope).
    pub release: Option<Arc<Value>>,
}

impl Scope {
    /// What templates read, built once: evaluate many templates against one scope with
    /// the `*_in` functions instead of rebuilding it for each.
    pub fn context(&self) -> Context {
        let mut root: BTreeMap<&'static str, minijinja::Value> = BTreeMap::new();
        root.insert("trigger", JsonView::of(&self.trigger));
        root.insert(
            "steps",
            minijinja::Value::from_object(
                self.steps
                    .iter()
                    .map(|(id, step)| (id.clone(), JsonView::of(step)))
                    .collect::<BTreeMap<String, minijinja::Value>>(),
            ),
        );
        root.insert("run", JsonView::of(&self.run));
        root.insert("env", JsonView::of(&self.env));
        root.insert("workflow", JsonView::of(&self.workflow));
        if let Some(error) = &self.error {
            root.insert("error", JsonView::of(error));
        }
        if let Some(release) = &self.release {
            root.insert("release", JsonView::of(release));
        }
        Context(minijinja::Value::from_object(root))
    }
}

/// A place inside a JSON value: an object's key or an array's index.
#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A JSON object or array as templates read it, in place: a template reading
/// `trigger.body.id` looks up `body`, then `id`, and converts only that number, where
/// converting the value whole would copy every header of the payload on every evaluation.
#[derive(Debug)]
struct JsonView {
    root: Arc<Value>,
    path: Vec<Segment>,
}

impl JsonView {
    /// `value` for templates: scalars as themselves, objects and arrays as views.
    fn of(value: &Arc<Value>) -> minijinja::Value {
        match &**value {
            Value::Object(_) | Value::Array(_) => minijinja::Value::from_object(JsonView {
                root: Arc::clone(value),
                path: Vec::new(),
            }),
            scalar => scalar_value(scalar),
        }
    }

    /// The value this view stands for.
    fn value(&self) -> &Value {
        let mut here = &*self.root;
        for segment in &self.path {
            here = match (segment, here) {
                (Segment::Key(key), Value::Object(map)) => map.get(key).unwrap_or(&Value::Null),
                (Segment::Index(index), Value::Array(items)) => {
                    items.get(*index).unwrap_or(&Value::Null)
                }
                _ => &Value::Null,
            };
        }
        here
    }

    fn child(&self, segment: Segment, value: &Value) -> minijinja::Value {
        match value {
            Value::Object(_) | Value::Array(_) => {
                let mut path = Vec::with_capacity(self.path.len() + 1);
                path.extend(self.path.iter().cloned());
                path.push(segment);
                minijinja::Value::from_object(JsonView {
                    root: Arc::clone(&self.root),
                    path,
                })
            }
            scalar => scalar_value(scalar),
        }
    }
}

fn scalar_value(value: &Value) -> minijinja::Value {
    match value {
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                minijinja::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                minijinja::Value::from(u)
            } else {
                minijinja::Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => minijinja::Value::from(text.as_str()),
        _ => minijinja::Value::from(()),
    }
}

impl Object for JsonView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.value() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        match self.value() {
            Value::Object(map) => {
                let key = key.as_str()?;
                let found = map.get(key)?;
                Some(self.child(Segment::Key(key.to_owned()), found))
            }
            Value::Array(items) => {
                let index = key.as_usize()?;
                let found = items.get(index)?;
                Some(self.child(Segment::Index(index), found))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.value() {
            Value::Object(map) => Enumerator::Values(
                map.keys()
                    .map(|key| minijinja::Value::from(key.as_str()))
                    .collect(),
            ),
            Value::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }
}

/// A [`Scope`] as templates read it (cheap to clone).
#[derive(Debug, Clone)]
pub struct Context(minijinja::Value);

/// Compiled expressions and templates, by their text: a workflow's templates are parsed
/// and compiled once, not on every run. Only workflow text is ever compiled (never data),
/// so the cache holds what the deployed versions contain; past this many entries it
/// starts over.
const MAX_CACHED: usize = 4096;

type Expression = minijinja::Expression<'static, 'static>;

fn expressions() -> &'static RwLock<HashMap<String, Arc<Expression>>> {
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<Expression>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The expression `body`, compiled once.
fn expression(body: &str) -> Result<Arc<Expression>, RenderError> {
    let cache = expressions();
    if let Some(found) = read(cache).get(body) {
        return Ok(found.clone());
    }
    // The last line: a stored version that never passed `validate` still cannot use what
    // the language does not offer.
    let found = expr::language::unlisted_in_expression(body, 0);
    if let Some(refused) = expr::language::first_refusal(&found) {
        return Err(RenderError::Expression(refused));
    }
    let compiled = Arc::new(
        expr::environment()
            .compile_expression_owned(body.to_owned())
            .map_err(|e| classify(&e))?,
    );
    let mut cache = write(cache);
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(body.to_owned(), compiled.clone());
    Ok(compiled)
}

/// Templates are kept in an environment of their own, named by their text, configured as
/// [`expr::environment`] (and never auto-escaped, whatever their text ends with).
struct Templates {
    env: minijinja::Environment<'static>,
    count: usize,
}

fn templates() -> &'static RwLock<Templates> {
    static CACHE: OnceLock<RwLock<Templates>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut env = expr::environment().clone();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        RwLock::new(Templates { env, count: 0 })
    })
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Renders the template `text`, compiled once.
fn render_template(text: &str, context: &Context) -> Result<String, RenderError> {
    let cache = templates();
    {
        let cached = read(cache);
        if let Ok(template) = cached.env.get_template(text) {
            return template.render(context.0.clone()).map_err(|e| classify(&e));
        }
    }
    {
        let mut cached = write(cache);
        if cached.env.get_template(text).is_err() {
            // The last line, as for expressions; checked once, before the template is kept.
            let found = expr::language::unlisted_in_template(text);
            if let Some(refused) = expr::language::first_refusal(&found) {
                return Err(RenderError::Expression(refused));
            }
            if cached.count >= MAX_CACHED {
                cached.env.clear_templates();
                cached.count = 0;
            }
            cached
                .env
                .add_template_owned(text.to_owned(), text.to_owned())
                .map_err(|e| classify(&e))?;
            cached.count += 1;
        }
    }
    let cached = read(cache);
    let template = cached.env.get_template(text).map_err(|e| classify(&e))?;
    template.render(context.0.clone()).map_err(|e| classify(&e))
}

fn classify(error: &minijinja::Error) -> RenderError {
    match error.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            RenderError::Budget("the expression ran too long".into())
        }
        _ => {
            let detail = error
                .detail()
                .map_or_else(|| error.kind().to_string(), str::to_owned);
            if detail.contains("too large") || detail.contains("too many") {
                RenderError::Budget(detail)
            } else {
                RenderError::Expression(detail)
            }
        }
    }
}

fn to_json(value: &minijinja::Value) -> Result<Value, RenderError> {
    if value.is_undefined() {
        return Err(RenderError::Expression(
            "the expression is undefined".into(),
        ));
    }
    serde_json::to_value(value).map_err(|e| RenderError::Expression(e.to_string()))
}

/// Evaluates an expression (bare, or wrapped in `{{ }}`) to a JSON value.
pub fn eval(text: &str, scope: &Scope) -> Result<Value, RenderError> {
    eval_in(text, &scope.context())
}

/// [`eval`] against a context already built.
pub fn eval_in(text: &str, context: &Context) -> Result<Value, RenderError> {
    let (body, _) = expr::condition_body(text);
    let value = expression(body)?
        .eval(context.0.clone())
        .map_err(|e| classify(&e))?;
    let json = to_json(&value)?;
    check_size(&json)?;
    Ok(json)
}

/// Evaluates a condition to true or false (by the language's truthiness).
pub fn condition(text: &str, scope: &Scope) -> Result<bool, RenderError> {
    condition_in(text, &scope.context())
}

/// [`condition`] against a context already built.
pub fn condition_in(text: &str, context: &Context) -> Result<bool, RenderError> {
    let (body, _) = expr::condition_body(text);
    let value = expression(body)?
        .eval(context.0.clone())
        .map_err(|e| classify(&e))?;
    if value.is_undefined() {
        return Err(RenderError::Expression("the condition is undefined".into()));
    }
    Ok(value.is_true())
}

/// Renders a template string to text.
pub fn string(text: &str, scope: &Scope) -> Result<String, RenderError> {
    if !expr::is_template(text) {
        return Ok(text.to_owned());
    }
    string_in(text, &scope.context())
}

/// [`string`] against a context already built.
pub fn string_in(text: &str, context: &Context) -> Result<String, RenderError> {
    if !expr::is_template(text) {
        return Ok(text.to_owned());
    }
    let out = render_template(text, context)?;
    if out.len() > MAX_RENDERED_BYTES {
        return Err(RenderError::Budget(
            "the rendered text is larger than 1 MiB".into(),
        ));
    }
    Ok(out)
}

/// Renders every template string inside a value; keys and non-strings are kept.
pub fn value(value: &Value, scope: &Scope) -> Result<Value, RenderError> {
    if !has_template(value) {
        return Ok(value.clone());
    }
    value_in(value, &scope.context())
}

/// Whether a value holds a template string anywhere.
fn has_template(value: &Value) -> bool {
    match value {
        Value::String(text) => expr::is_template(text),
        Value::Array(items) => items.iter().any(has_template),
        Value::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

/// [`value`] against a context already built.
pub fn value_in(value: &Value, context: &Context) -> Result<Value, RenderError> {
    match value {
        Value::String(text) if expr::is_template(text) => {
            let (body, shift) = expr::condition_body(text);
            if shift > 0 && !body.contains("{%") && !body.contains("{#") {
                eval_in(text, context)
            } else {
                string_in(text, context).map(Value::String)
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|item| value_in(item, context))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, item) in map {
                out.insert(key.clone(), value_in(item, context)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

fn check_size(value: &Value) -> Result<(), RenderError> {
    if let Value::String(s) = value
        && s.len() > MAX_RENDERED_BYTES
    {
        return Err(RenderError::Budget("the value is larger than 1 MiB".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(trigger: Value) -> Scope {
        Scope {
            trigger: Arc::new(trigger),
            ..Scope::default()
        }
    }

    #[test]
    fn a_whole_expression_keeps_its_type() {
        let s = scope(json!({"body": {"amount": 150, "id": 7}}));
        assert_eq!(
            value(&json!("{{ trigger.body.amount }}"), &s).unwrap(),
            json!(150)
        );
        assert_eq!(
            value(&json!("{{ trigger.body.amount * 2 > 100 }}"), &s).unwrap(),
            json!(true)
        );
        assert_eq!(
            value(&json!("order-{{ trigger.body.id }}"), &s).unwrap(),
            json!("order-7")
        );
    }

    #[test]
    fn payload_data_is_never_evaluated() {
        let s = scope(json!({"body": {"note": "{{ 7 * 7 }}"}}));
        assert_eq!(
            value(&json!("{{ trigger.body.note }}"), &s).unwrap(),
            json!("{{ 7 * 7 }}")
        );
        assert_eq!(
            string("x {{ trigger.body.note }}", &s).unwrap(),
            "x {{ 7 * 7 }}"
        );
    }

    #[test]
    fn loops_and_huge_values_stop_with_budget_exceeded() {
        let s = scope(json!({}));
        let looping = string(
            "{% set n = 'x' * 10000 %}{% for i in n %}{% for j in n %}x{% endfor %}{% endfor %}",
            &s,
        );
        assert!(
            matches!(looping, Err(RenderError::Budget(_))),
            "{looping:?}"
        );
        let huge = eval("'x' * 200000000", &s);
        assert!(matches!(huge, Err(RenderError::Budget(_))), "{huge:?}");
        let big = eval("'x' * 5000000", &s);
        assert!(matches!(big, Err(RenderError::Budget(_))), "{big:?}");
    }

    /// The last line of `template_globals_are_not_an_allowlist`: evaluated without
    /// `validate`, `{{ debug() }}` and `self.__init__` are refused, and nothing of the
    /// engine's state is rendered.
    #[test]
    fn unlisted_globals_are_refused_when_evaluated() {
        let s = scope(json!({"body": {"secret_looking": "tok-123"}}));
        for text in [
            "{{ debug() }}",
            "x {{ debug() }}",
            "{{ self.__init__ }}",
            "{{ range(3) }}",
            "{{ trigger.body | pprint }}",
            "{{ trigger.body.secret_looking.upper() }}",
        ] {
            match value(&json!(text), &s) {
                Err(RenderError::Expression(message)) => {
                    assert!(
                        message.contains("not part of the expression language")
                            || message.contains("not a filter"),
                        "{text}: {message}"
                    );
                    assert!(!message.contains("tok-123"), "{text}: {message}");
                }
                other => panic!("{text} evaluated: {other:?}"),
            }
        }
        assert!(condition("debug()", &s).is_err());
    }

    #[test]
    fn undefined_names_are_errors_not_empty_strings() {
        let s = scope(json!({"body": {}}));
        assert!(value(&json!("{{ trigger.body.missing.deeper }}"), &s).is_err());
    }

    /// Templates read a payload through a view exactly as they read a full copy of it.
    #[test]
    fn a_view_reads_like_a_copy() {
        let payload = json!({
            "body": {
                "id": 7, "big": 18446744073709551615u64, "neg": -3, "ratio": 0.5,
                "name": "Ada", "none": null, "yes": true,
                "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
                "tags": ["x", "y", "z"],
                "map": {"b": 2, "a": 1},
                "nested": {"deep": {"value": "found"}}
            },
            "headers": {"content-type": "application/json"}
        });
        let view = scope(payload.clone()).context();
        let mut copy: BTreeMap<&'static str, minijinja::Value> = BTreeMap::new();
        copy.insert("trigger", minijinja::value::Serde(&payload).into());
        let copy = Context(minijinja::Value::from_object(copy));
        for template in [
            "{{ trigger.body.id + 1 }}",
            "{{ trigger.body.big }}",
            "{{ trigger.body.neg * 2 }} {{ trigger.body.ratio }}",
            "{{ trigger.body.name | lower }}",
            "{{ trigger.body.none is none }} {{ trigger.body.yes }}",
            "{{ trigger.body.items[1].sku }}",
            "{{ trigger.body.items | length }} {{ trigger.body.map | length }}",
            "{{ trigger.body.items | map(attribute='sku') | join(',') }}",
            "{{ trigger.body.tags[-1] }} {{ trigger.body.tags | first }} {{ trigger.body.tags | last }}",
            "{{ trigger.body.tags | reverse | join('') }}",
            "{% for k, v in trigger.body.map | items %}{{ k }}={{ v }};{% endfor %}",
            "{% for item in trigger.body.items %}{{ loop.index }}:{{ item.qty }} {% endfor %}",
            "{{ 'name' in trigger.body }} {{ 'x' in trigger.body.tags }}",
            "{{ trigger.body.missing is undefined }} {{ trigger.body.nested.deep.value }}",
            "{{ trigger.body.map }} {{ trigger.body.tags }} {{ trigger.body.items }}",
            "{{ trigger.body.items[0] == trigger.body.items[0] }}",
            "{{ trigger.headers['content-type'] }}",
        ] {
            assert_eq!(
                string_in(template, &view),
                string_in(template, &copy),
                "{template}"
            );
        }
        for expression in [
            "trigger.body",
            "trigger.body.items",
            "trigger.body.nested",
            "trigger.body.items[1]",
            "trigger.body.tags",
        ] {
            assert_eq!(
                eval_in(expression, &view),
                eval_in(expression, &copy),
                "{expression}"
            );
        }
        assert_eq!(
            eval_in("trigger.body", &view).expect("evaluates"),
            payload["body"],
            "a whole object comes back as it went in"
        );
    }
}
