//! Evaluating templates and conditions against a run's scope.
//!
//! Only the workflow's own strings are templates. Values that come from outside — a
//! trigger payload, a connector's answer — enter the scope as data and are never
//! rendered, so a payload holding `{{ ... }}` stays text. A string that is exactly one
//! `{{ expression }}` keeps the expression's type (a number stays a number); any
//! other template renders to a string.

use airlock_core::expr;
use serde_json::{Map, Value};

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
    fn context(&self) -> minijinja::Value {
        let mut root = Map::new();
        root.insert("trigger".into(), self.trigger.clone());
        root.insert("steps".into(), Value::Object(self.steps.clone()));
        root.insert("run".into(), self.run.clone());
        root.insert("env".into(), self.env.clone());
        root.insert("workflow".into(), self.workflow.clone());
        if let Some(error) = &self.error {
            root.insert("error".into(), error.clone());
        }
        minijinja::Value::from(minijinja::value::Serde(Value::Object(root)))
    }
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
    let (body, _) = expr::condition_body(text);
    let env = expr::environment();
    let expression = env.compile_expression(body).map_err(|e| classify(&e))?;
    let value = expression.eval(scope.context()).map_err(|e| classify(&e))?;
    let json = to_json(&value)?;
    check_size(&json)?;
    Ok(json)
}

/// Evaluates a condition to true or false (by the language's truthiness).
pub fn condition(text: &str, scope: &Scope) -> Result<bool, RenderError> {
    let (body, _) = expr::condition_body(text);
    let env = expr::environment();
    let expression = env.compile_expression(body).map_err(|e| classify(&e))?;
    let value = expression.eval(scope.context()).map_err(|e| classify(&e))?;
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
    let env = expr::environment();
    let template = env.template_from_str(text).map_err(|e| classify(&e))?;
    let out = template.render(scope.context()).map_err(|e| classify(&e))?;
    if out.len() > MAX_RENDERED_BYTES {
        return Err(RenderError::Budget(
            "the rendered text is larger than 1 MiB".into(),
        ));
    }
    Ok(out)
}

/// Renders every template string inside a value; keys and non-strings are kept.
pub fn value(value: &Value, scope: &Scope) -> Result<Value, RenderError> {
    match value {
        Value::String(text) if expr::is_template(text) => {
            let (body, shift) = expr::condition_body(text);
            if shift > 0 && !body.contains("{%") && !body.contains("{#") {
                eval(text, scope)
            } else {
                string(text, scope).map(Value::String)
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|item| self::value(item, scope))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, item) in map {
                out.insert(key.clone(), self::value(item, scope)?);
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
