//! The one safe language for templates (`{{ ... }}` in strings) and conditions
//! (`if:`, `switch:`): minijinja, with no loader, no file system, no network and no
//! environment variables, and with fuel and recursion limits so that a hostile
//! template cannot loop or explode.
//!
//! This module checks what can be checked before a run: syntax, and which names an
//! expression reads; [`render`] evaluates templates and conditions against a run's scope,
//! in the same environment, so what was checked is what runs.

use std::sync::OnceLock;

pub mod render;

/// Instructions a single template or condition may execute before it is stopped.
pub const FUEL: u64 = 50_000;
/// How deeply templates may nest calls and structures.
pub const RECURSION_LIMIT: usize = 64;

/// Names templates may read. `error` is added inside `on_failure` handlers.
pub const ROOTS: &[&str] = &["trigger", "steps", "run", "env", "workflow"];
/// The failure being handled; readable only inside `on_failure`.
pub const ERROR_ROOT: &str = "error";

/// The shared, locked-down environment used to compile and (later) evaluate.
pub fn environment() -> &'static minijinja::Environment<'static> {
    static ENVIRONMENT: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_debug(true);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env
    })
}

/// Whether a string is a template (holds `{{`, `{%` or `{#`) rather than a literal.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A condition written as `{{ expr }}` is the same as `expr`; this returns the bare
/// expression and the byte offset it starts at inside `text`.
pub fn condition_body(text: &str) -> (&str, usize) {
    let trimmed_start = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
    {
        return (inner, trimmed_start + 2);
    }
    (text, 0)
}

/// A syntax error, positioned inside the checked text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte range inside the text.
    pub range: std::ops::Range<usize>,
    /// What the parser said.
    pub message: String,
}

/// A name an expression reads, such as `steps.normalize.output.total`, split on dots,
/// with the byte offset of its first occurrence in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The dotted path, split.
    pub path: Vec<String>,
    /// Byte offset of the root name inside the text.
    pub offset: usize,
}

impl Reference {
    /// The first segment: `trigger`, `steps`, …
    pub fn root(&self) -> &str {
        &self.path[0]
    }
}

/// Checks a template and returns the names it reads.
pub fn check_template(text: &str) -> Result<Vec<Reference>, SyntaxError> {
    let env = environment();
    let template = env
        .template_from_str(text)
        .map_err(|e| syntax_error(text, 0, &e))?;
    Ok(references(text, 0, template.undeclared_variables(true)))
}

/// Checks a condition (bare or wrapped in `{{ }}`) and returns the names it reads.
pub fn check_condition(text: &str) -> Result<Vec<Reference>, SyntaxError> {
    let (body, shift) = condition_body(text);
    if body.trim().is_empty() {
        return Err(SyntaxError {
            range: shift..shift,
            message: "the condition is empty".into(),
        });
    }
    let env = environment();
    let expression = env
        .compile_expression(body)
        .map_err(|e| syntax_error(body, shift, &e))?;
    Ok(references(
        text,
        shift,
        expression.undeclared_variables(true),
    ))
}

fn syntax_error(body: &str, shift: usize, error: &minijinja::Error) -> SyntaxError {
    let range = error
        .range()
        .map(|r| r.start.min(body.len())..r.end.min(body.len()))
        .or_else(|| {
            error.line().map(|line| {
                let start = body
                    .split_inclusive('\n')
                    .take(line.saturating_sub(1))
                    .map(str::len)
                    .sum::<usize>();
                start..start
            })
        })
        .unwrap_or(0..0);
    let message = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_owned);
    SyntaxError {
        range: range.start + shift..range.end + shift,
        message,
    }
}

fn references(
    text: &str,
    shift: usize,
    names: std::collections::HashSet<String>,
) -> Vec<Reference> {
    let globals: Vec<String> = environment()
        .globals()
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut found: Vec<Reference> = names
        .into_iter()
        .filter(|name| {
            let root = name.split('.').next().unwrap_or(name);
            !globals.iter().any(|g| g == root)
        })
        .map(|name| {
            let offset = find_identifier(text, &name, shift)
                .or_else(|| find_identifier(text, name.split('.').next().unwrap_or(&name), shift))
                .unwrap_or(shift);
            Reference {
                path: name.split('.').map(str::to_owned).collect(),
                offset,
            }
        })
        .collect();
    // `steps['id']` is an item lookup, which minijinja's analysis does not follow.
    for quote in ['\'', '"'] {
        let open = format!("steps[{quote}");
        let mut from = shift;
        while let Some(at) = text.get(from..).and_then(|t| t.find(&open)) {
            let start = from + at;
            let id_start = start + open.len();
            let Some(len) = text[id_start..].find(quote) else {
                break;
            };
            found.push(Reference {
                path: vec![
                    "steps".to_owned(),
                    text[id_start..id_start + len].to_owned(),
                ],
                offset: start,
            });
            from = id_start + len;
        }
    }
    found.sort_by(|a, b| (a.offset, &a.path).cmp(&(b.offset, &b.path)));
    found.dedup_by(|a, b| a.path.len() <= 2 && a.path == b.path);
    found
}

/// The first occurrence of `name` in `text` (at or after `from`) that stands as a
/// whole identifier: not preceded by a dot or an identifier character.
fn find_identifier(text: &str, name: &str, from: usize) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut start = from;
    while let Some(found) = text.get(start..)?.find(name) {
        let at = start + found;
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        let clean_before = before.is_none_or(|c| !is_ident(c) && c != '.');
        let clean_after = after.is_none_or(|c| !is_ident(c));
        if clean_before && clean_after {
            return Some(at);
        }
        start = at + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_references_are_found_with_positions() {
        let text = "Order {{ steps.normalize.output.id }} for {{ trigger.body.customer | upper }}";
        let refs = check_template(text).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].path, ["steps", "normalize", "output", "id"]);
        assert_eq!(&text[refs[0].offset..refs[0].offset + 5], "steps");
        assert_eq!(refs[1].root(), "trigger");
    }

    #[test]
    fn template_syntax_error_points_inside_the_text() {
        let text = "Hello {{ trigger.body.name | }} there";
        let error = check_template(text).unwrap_err();
        assert!(error.range.start >= 6, "{error:?}");
        assert!(error.range.start <= text.len());
    }

    #[test]
    fn conditions_accept_bare_and_wrapped_forms() {
        let bare = check_condition("steps.a.output.total > 100").unwrap();
        let wrapped = check_condition("{{ steps.a.output.total > 100 }}").unwrap();
        assert_eq!(bare[0].path, wrapped[0].path);
        assert_eq!(wrapped[0].offset, 3);
        let error = check_condition("{{ steps.a.output.total > }}").unwrap_err();
        assert!(error.range.start >= 3, "{error:?}");
    }

    #[test]
    fn locals_and_globals_are_not_references() {
        let refs = check_template("{% for x in range(3) %}{{ x }}{% endfor %}").unwrap();
        assert!(refs.is_empty(), "{refs:?}");
    }
}
