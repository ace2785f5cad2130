//! The one safe language for templates (`{{ ... }}` in strings) and conditions
//! (`if:`, `switch:`): minijinja, with no loader, no file system, no network and no
//! environment variables, and with fuel and recursion limits so that a hostile
//! template cannot loop or explode.
//!
//! This module checks what can be checked before a run: syntax, which names an
//! expression reads, and that it uses nothing the language does not offer ([`language`]:
//! the documented filters and tests, no functions, no methods, no `self`); [`render`]
//! evaluates templates and conditions against a run's scope, in the same environment and
//! behind the same check, so what was checked is what runs.

use std::sync::OnceLock;

pub mod language;
pub mod render;

pub use language::{FILTERS, TESTS, Unlisted};

/// Instructions a single template or condition may execute before it is stopped.
pub const FUEL: u64 = 50_000;
/// How deeply templates may nest calls and structures.
pub const RECURSION_LIMIT: usize = 64;

/// Names templates may read. `error` is added inside `on_failure` handlers.
pub const ROOTS: &[&str] = &["trigger", "steps", "run", "env", "workflow", "release"];
/// The release a run ran on, its owners and their contacts (`airlock_core::release::scope`).
pub const RELEASE_ROOT: &str = "release";
/// The failure being handled; readable only inside `on_failure`.
pub const ERROR_ROOT: &str = "error";

/// The shared, locked-down environment used to compile and (later) evaluate: minijinja's
/// own filters and tests (fuel-aware) less those the language does not list, no global
/// at all (no `debug()`, which would dump the engine's state, no `range`, `dict` or
/// `namespace`), no loader, no debug information, strict undefined, fuel and recursion
/// limits.
pub fn environment() -> &'static minijinja::Environment<'static> {
    static ENVIRONMENT: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for name in language::BUILTIN_FILTERS {
            if !FILTERS.contains(name) {
                env.remove_filter(name);
            }
        }
        for name in language::BUILTIN_TESTS {
            if !TESTS.contains(name) {
                env.remove_test(name);
            }
        }
        let globals: Vec<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
        for name in globals {
            env.remove_global(&name);
        }
        // No debug information on errors: it carries the template's context.
        env.set_debug(false);
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

/// What a template or condition that parses reads, and what it uses that the language
/// does not offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The names it reads.
    pub references: Vec<Reference>,
    /// What it uses outside the language, each with its place in the text.
    pub unlisted: Vec<Unlisted>,
}

/// Checks a template: the names it reads and what it uses outside the language.
pub fn check_template(text: &str) -> Result<Checked, SyntaxError> {
    let env = environment();
    let template = env
        .template_from_str(text)
        .map_err(|e| syntax_error(text, 0, &e))?;
    let found = language::unlisted_in_template(text);
    Ok(Checked {
        references: references(text, 0, template.undeclared_variables(true), &found.called),
        unlisted: found.unlisted,
    })
}

/// Checks a condition (bare or wrapped in `{{ }}`): the names it reads and what it uses
/// outside the language.
pub fn check_condition(text: &str) -> Result<Checked, SyntaxError> {
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
    let found = language::unlisted_in_expression(body, shift);
    Ok(Checked {
        references: references(
            text,
            shift,
            expression.undeclared_variables(true),
            &found.called,
        ),
        unlisted: found.unlisted,
    })
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
    called: &std::collections::BTreeSet<String>,
) -> Vec<Reference> {
    let mut found: Vec<Reference> = names
        .into_iter()
        .filter(|name| {
            // A name called as a function is reported as the call.
            let root = name.split('.').next().unwrap_or(name);
            !called.contains(root)
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
        let refs = check_template(text).unwrap().references;
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
        let bare = check_condition("steps.a.output.total > 100")
            .unwrap()
            .references;
        let wrapped = check_condition("{{ steps.a.output.total > 100 }}")
            .unwrap()
            .references;
        assert_eq!(bare[0].path, wrapped[0].path);
        assert_eq!(wrapped[0].offset, 3);
        let error = check_condition("{{ steps.a.output.total > }}").unwrap_err();
        assert!(error.range.start >= 3, "{error:?}");
    }

    #[test]
    fn locals_are_not_references() {
        let checked =
            check_template("{% for x in [1, 2] %}{{ x }}{{ loop.index }}{% endfor %}").unwrap();
        assert!(checked.references.is_empty(), "{checked:?}");
        assert!(checked.unlisted.is_empty(), "{checked:?}");
    }

    /// `{{ debug() }}` passed `validate` and at run time returned the template engine's
    /// state (globals, filters, the whole context); `self.__init__` passed too. The
    /// language offers only what its documentation lists.
    #[test]
    fn template_globals_are_not_an_allowlist() {
        for (text, refused) in [
            ("{{ debug() }}", "debug()"),
            ("{{ self.__init__ }}", "self"),
            ("{{ trigger.body.__class__ }}", "__class__"),
            ("{{ trigger.body['__dict__'] }}", "__dict__"),
            ("{{ range(3) | list }}", "range()"),
            ("{{ namespace() }}", "namespace()"),
            ("{{ dict(a=1) }}", "dict()"),
            ("{{ trigger.body.id | pprint }}", "pprint"),
            ("{{ trigger.body.id | attr('x') }}", "attr"),
            ("{{ trigger.body.id is filter }}", "filter"),
            ("{{ trigger.body.name.upper() }}", ".upper()"),
            (
                "{% for x in trigger.body.items %}{{ loop.cycle(1, 2) }}{% endfor %}",
                ".cycle()",
            ),
            ("{% do trigger.body.items.append(1) %}", "{% do %}"),
            (
                "{% autoescape true %}x{% endautoescape %}",
                "{% autoescape %}",
            ),
            ("{% filter nosuch %}x{% endfilter %}", "nosuch"),
        ] {
            let checked = check_template(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            let first = checked
                .unlisted
                .first()
                .unwrap_or_else(|| panic!("{text} passes: {checked:?}"));
            assert!(first.message.contains(refused), "{text}: {first:?}");
            assert!(first.range.end <= text.len(), "{text}: {first:?}");
            assert!(
                checked.references.iter().all(|r| r.root() != "debug"),
                "a call is reported once, as a call: {checked:?}"
            );
        }
        let condition = check_condition("{{ debug() or steps.a.output }}").unwrap();
        assert_eq!(condition.unlisted.len(), 1, "{condition:?}");
        assert_eq!(condition.unlisted[0].range, 3..8);
        for allowed in [
            "{{ trigger.body.amount | float | round(2) }}",
            "{{ trigger.body.items | map(attribute='sku') | join(',') }}",
            "{{ trigger.body.x is defined and trigger.body.n is divisibleby(3) }}",
            "{{ trigger.body.tags | select('string') | list | length }}",
            "{% set n = trigger.body.n %}{% with m = n %}{{ m }}{% endwith %}",
            "{% filter upper %}x{% endfilter %}",
            "{{ trigger.body.__typename }}",
        ] {
            let checked = check_template(allowed).unwrap();
            assert!(checked.unlisted.is_empty(), "{allowed}: {checked:?}");
        }
    }

    /// The filters and tests offered are the ones docs/files.md lists, no more, no less.
    #[test]
    fn the_language_is_what_the_documentation_lists() {
        let docs = include_str!("../../../../docs/files.md");
        let listed = |bullet: &str| -> Vec<String> {
            let start = docs
                .find(bullet)
                .unwrap_or_else(|| panic!("no `{bullet}` in the docs"));
            let rest = &docs[start + bullet.len()..];
            let end = rest.find("\n- ").unwrap_or(rest.len());
            let mut names: Vec<String> = rest[..end]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            names.sort();
            names
        };
        let sorted = |list: &[&str]| {
            let mut names: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            names.sort();
            names
        };
        assert_eq!(listed("- filters:"), sorted(FILTERS));
        assert_eq!(listed("- tests (`x is …`):"), sorted(TESTS));
    }

    /// The environment itself holds only the listed filters and tests, and no global:
    /// a template evaluated without the check cannot reach anything else.
    #[test]
    fn the_environment_holds_only_what_the_language_lists() {
        let env = environment();
        assert_eq!(env.globals().count(), 0);
        assert!(!env.debug(), "no debug information in errors");
        for name in language::BUILTIN_FILTERS {
            let rendered = env.render_str(&format!("{{{{ 1 | {name} }}}}"), ());
            let unknown =
                matches!(&rendered, Err(e) if e.kind() == minijinja::ErrorKind::UnknownFilter);
            assert_eq!(unknown, !FILTERS.contains(name), "{name}: {rendered:?}");
        }
        for name in language::BUILTIN_TESTS {
            let rendered = env.render_str(&format!("{{{{ 1 is {name} }}}}"), ());
            let unknown =
                matches!(&rendered, Err(e) if e.kind() == minijinja::ErrorKind::UnknownTest);
            // `==` and the other symbols are not names the parser reads after `is`.
            if name.chars().all(|c| c.is_ascii_alphabetic()) {
                assert_eq!(unknown, !TESTS.contains(name), "{name}: {rendered:?}");
            }
        }
        for name in FILTERS {
            assert!(
                language::BUILTIN_FILTERS.contains(name),
                "{name} is no filter"
            );
        }
        for name in TESTS {
            assert!(language::BUILTIN_TESTS.contains(name), "{name} is no test");
        }
    }
}
