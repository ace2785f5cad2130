//! Evaluating templates and conditions against a run's scope.
//!
//! Only the workflow's own strings are templates. Values that come from outside — a
//! trigger payload, a connector's answer — enter the scope as data and are never
//! rendered, so a payload holding `{{ ... }}` stays text. A string that is exactly one
//! `{{ expression }}` keeps the expression's type (a number stays a number); any
//! other template renders to a string.

use airlock_core::expr;
use minijinja::value::Serde;
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

/// What templates may read.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `trigger`: the payload.
    pub trigger: Value,
    /// `steps`: id → `{ output, status }` of the steps that ran.
    pub steps: Map<String, Value>,
    /// `run`: id, environment, timestamps.
    pub run: Value,
    /// `env`: the environment's name.
    pub env: Value,
    /// `workflow`: name and version.
    pub workflow: Value,
    /// `error`: the failure being handled, inside `on_failure` only.
    pub error: Option<Value>,
}

impl Scope {
    /// What templates read, built once: evaluate many templates against one scope with
    /// the `*_in` functions instead of rebuilding it for each.
    pub fn context(&self) -> Context {
        let mut root: BTreeMap<&'static str, minijinja::Value> = BTreeMap::new();
        root.insert("trigger", Serde(&self.trigger).into());
        root.insert("steps", Serde(&self.steps).into());
        root.insert("run", Serde(&self.run).into());
        root.insert("env", Serde(&self.env).into());
        root.insert("workflow", Serde(&self.workflow).into());
        if let Some(error) = &self.error {
            root.insert("error", Serde(error).into());
        }
        Context(minijinja::Value::from_object(root))
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
            trigger,
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
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
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

    #[test]
    fn undefined_names_are_errors_not_empty_strings() {
        let s = scope(json!({"body": {}}));
        assert!(value(&json!("{{ trigger.body.missing.deeper }}"), &s).is_err());
    }
}
