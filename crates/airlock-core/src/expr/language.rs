//! What the expression language offers, as an allowlist, and the check that a template
//! or condition uses nothing else.
//!
//! A template reads the names of [`super::ROOTS`] (and `error` inside `on_failure`),
//! applies the [`FILTERS`] and [`TESTS`] listed here (and in `docs/files.md`), and uses
//! `{% if %}`, `{% for %}`, `{% set %}`, `{% with %}` and `{% filter %}`. It calls no
//! function and no method, never reads `self`, and never reads a name of the form
//! `__name__`. [`unlisted`] walks the parsed template and names everything else, with its
//! place: `validate` reports each, and evaluation refuses a template that has any before
//! compiling it, so a stored version that skipped `validate` cannot reach an engine
//! internal either.

use minijinja::machinery::{self, ast};
use std::collections::BTreeSet;
use std::ops::Range;

/// The filters templates may apply: pure functions of their input, each bounded by the
/// evaluation's fuel.
pub const FILTERS: &[&str] = &[
    "abs",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "first",
    "float",
    "int",
    "items",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
];

/// The tests templates may apply (`x is defined`, `select('odd')`).
pub const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sequence",
    "startingwith",
    "string",
    "true",
    "undefined",
];

/// minijinja's own filters (3.1): those not in [`FILTERS`] are removed from the
/// environment, so that even a template that escaped [`unlisted`] cannot apply them.
pub(crate) const BUILTIN_FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];

/// minijinja's own tests (3.1); those not in [`TESTS`] are removed.
pub(crate) const BUILTIN_TESTS: &[&str] = &[
    "!=",
    "<",
    "<=",
    "==",
    ">",
    ">=",
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// Something a template uses that the language does not offer, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlisted {
    /// Byte range inside the checked text.
    pub range: Range<usize>,
    /// What is refused, in one sentence.
    pub message: String,
    /// What is offered instead.
    pub help: Option<String>,
}

/// What a walk found: the refusals, and the names called as functions (reported as
/// calls, not again as unknown names).
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub unlisted: Vec<Unlisted>,
    pub called: BTreeSet<String>,
}

/// Everything the template `text` uses outside the language. `text` must parse (check
/// the syntax first); a text that does not gives nothing here.
pub(crate) fn unlisted_in_template(text: &str) -> Found {
    let mut found = Found::default();
    if let Ok(template) = machinery::parse(text, "<template>", Default::default()) {
        Walker {
            shift: 0,
            found: &mut found,
        }
        .stmt(&template);
    }
    found
}

/// Everything the expression `body` uses outside the language; ranges are shifted by
/// `shift` (where `body` starts in the checked text).
pub(crate) fn unlisted_in_expression(body: &str, shift: usize) -> Found {
    let mut found = Found::default();
    if let Ok(expression) = machinery::parse_expr(body) {
        Walker {
            shift,
            found: &mut found,
        }
        .expr(&expression);
    }
    found
}

/// The first refusal of a template or expression, for evaluation's last line.
pub(crate) fn first_refusal(found: &Found) -> Option<String> {
    found.unlisted.first().map(|u| u.message.clone())
}

struct Walker<'f> {
    shift: usize,
    found: &'f mut Found,
}

/// `__name__`: how Python-like engines name their internals. Nothing of ours is named so.
fn is_dunder(name: &str) -> bool {
    name.len() > 4 && name.starts_with("__") && name.ends_with("__")
}

fn language_help() -> String {
    "templates read trigger, steps, run, env, workflow and release (and error inside on_failure), \
     with the filters and tests docs/files.md lists (`airlock explain AL0027`)"
        .to_owned()
}

impl Walker<'_> {
    fn refuse(&mut self, span: machinery::Span, message: String, help: Option<String>) {
        let start = span.start_offset as usize + self.shift;
        let end = (span.end_offset as usize + self.shift).max(start);
        self.found.unlisted.push(Unlisted {
            range: start..end,
            message,
            help,
        });
    }

    /// Refuses a filter or test (`kind`) that `list` does not hold.
    fn listed(&mut self, kind: &str, name: &str, list: &[&str], span: machinery::Span) {
        if !list.contains(&name) {
            let help = crate::diagnostic::suggestion(name, list.iter().copied())
                .or_else(|| Some(format!("{kind}s: {}", list.join(", "))));
            self.refuse(
                span,
                format!("`{name}` is not a {kind} of the expression language"),
                help,
            );
        }
    }

    /// Refuses reading a name of the form `__name__`.
    fn not_dunder(&mut self, name: &str, span: machinery::Span) {
        if is_dunder(name) {
            self.refuse(
                span,
                format!(
                    "`{name}` cannot be read: names of the form `__name__` are not part of the \
                     expression language"
                ),
                None,
            );
        }
    }

    fn stmts(&mut self, stmts: &[ast::Stmt<'_>]) {
        for stmt in stmts {
            self.stmt(stmt);
        }
    }

    // The statements minijinja offers depend on its features; any this build does not
    // know is refused, so the match is exhaustive in every build.
    #[allow(unreachable_patterns)]
    fn stmt(&mut self, stmt: &ast::Stmt<'_>) {
        match stmt {
            ast::Stmt::Template(t) => self.stmts(&t.children),
            ast::Stmt::EmitExpr(e) => self.expr(&e.expr),
            ast::Stmt::EmitRaw(_) => {}
            ast::Stmt::ForLoop(f) => {
                self.expr(&f.target);
                self.expr(&f.iter);
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter);
                }
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            ast::Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            ast::Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(target);
                    self.expr(value);
                }
                self.stmts(&w.body);
            }
            ast::Stmt::Set(s) => {
                self.expr(&s.target);
                self.expr(&s.expr);
            }
            ast::Stmt::SetBlock(s) => {
                self.expr(&s.target);
                if let Some(filter) = &s.filter {
                    self.expr(filter);
                }
                self.stmts(&s.body);
            }
            ast::Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.stmts(&f.body);
            }
            ast::Stmt::AutoEscape(a) => self.refuse(
                a.span(),
                "`{% autoescape %}` is not part of the expression language".to_owned(),
                Some("templates are never escaped; use a filter such as `replace`".to_owned()),
            ),
            ast::Stmt::Do(d) => self.refuse(
                d.span(),
                "`{% do %}` is not part of the expression language: it only calls".to_owned(),
                None,
            ),
            other => self.refuse(
                stmt_span(other),
                "this statement is not part of the expression language".to_owned(),
                Some(
                    "templates use {% if %}, {% for %}, {% set %}, {% with %} and {% filter %}"
                        .to_owned(),
                ),
            ),
        }
    }

    fn args(&mut self, args: &[ast::CallArg<'_>]) {
        for arg in args {
            match arg {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn expr(&mut self, expr: &ast::Expr<'_>) {
        match expr {
            ast::Expr::Var(v) => {
                if v.id == "self" {
                    self.refuse(
                        v.span(),
                        "`self` is not part of the expression language".to_owned(),
                        Some(language_help()),
                    );
                }
            }
            ast::Expr::Const(_) => {}
            ast::Expr::Slice(s) => {
                self.expr(&s.expr);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part);
                }
            }
            ast::Expr::UnaryOp(u) => self.expr(&u.expr),
            ast::Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            ast::Expr::Compare(c) => {
                self.expr(&c.expr);
                for op in &c.ops {
                    self.expr(&op.expr);
                }
            }
            ast::Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(otherwise) = &i.false_expr {
                    self.expr(otherwise);
                }
            }
            ast::Expr::Filter(f) => {
                self.listed("filter", f.name, FILTERS, f.span());
                if let Some(inner) = &f.expr {
                    self.expr(inner);
                }
                self.args(&f.args);
            }
            ast::Expr::Test(t) => {
                self.listed("test", t.name, TESTS, t.span());
                self.expr(&t.expr);
                self.args(&t.args);
            }
            ast::Expr::GetAttr(a) => {
                // Inside out, so that `self.__init__` is refused first for `self`.
                self.expr(&a.expr);
                self.not_dunder(a.name, a.span());
            }
            ast::Expr::GetItem(i) => {
                self.expr(&i.expr);
                if let ast::Expr::Const(key) = &i.subscript_expr
                    && let Some(name) = key.value.as_str()
                {
                    self.not_dunder(name, i.span());
                }
                self.expr(&i.subscript_expr);
            }
            ast::Expr::Call(c) => {
                match &c.expr {
                    ast::Expr::Var(v) => {
                        self.found.called.insert(v.id.to_owned());
                        self.refuse(
                            v.span(),
                            format!(
                                "`{}()` is not part of the expression language: it has no functions",
                                v.id
                            ),
                            Some(language_help()),
                        );
                    }
                    ast::Expr::GetAttr(a) => {
                        self.refuse(
                            c.span(),
                            format!(
                                "`.{}()` is not part of the expression language: values have no methods",
                                a.name
                            ),
                            Some(language_help()),
                        );
                        self.expr(&a.expr);
                    }
                    other => {
                        self.refuse(
                            c.span(),
                            "calls are not part of the expression language".to_owned(),
                            Some(language_help()),
                        );
                        self.expr(other);
                    }
                }
                self.args(&c.args);
            }
            ast::Expr::List(l) => l.items.iter().for_each(|e| self.expr(e)),
            ast::Expr::Tuple(t) => t.items.iter().for_each(|e| self.expr(e)),
            ast::Expr::Map(m) => {
                for (key, value) in m.keys.iter().zip(&m.values) {
                    self.expr(key);
                    self.expr(value);
                }
            }
        }
    }
}

/// Where a statement is, for the statements this build does not list by name.
#[allow(unreachable_patterns)]
fn stmt_span(stmt: &ast::Stmt<'_>) -> machinery::Span {
    match stmt {
        ast::Stmt::Template(s) => s.span(),
        ast::Stmt::EmitExpr(s) => s.span(),
        ast::Stmt::EmitRaw(s) => s.span(),
        ast::Stmt::ForLoop(s) => s.span(),
        ast::Stmt::IfCond(s) => s.span(),
        ast::Stmt::WithBlock(s) => s.span(),
        ast::Stmt::Set(s) => s.span(),
        ast::Stmt::SetBlock(s) => s.span(),
        ast::Stmt::AutoEscape(s) => s.span(),
        ast::Stmt::FilterBlock(s) => s.span(),
        ast::Stmt::Do(s) => s.span(),
        _ => machinery::Span::default(),
    }
}
