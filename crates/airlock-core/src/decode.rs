//! Turning a spanned YAML tree into the model, reporting every problem at its exact
//! value and carrying on, so one pass finds all the errors of a file.

use crate::diagnostic::{Code, Diagnostic, Diagnostics, Span, suggestion};
use crate::source::FileId;
use crate::yaml::{Node, Value, key_text};
use serde::Serialize;

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    #[serde(skip)]
    pub span: Span,
}

impl<T> Located<T> {
    /// A value at a span.
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Decoding context for one file: where to report and which file the spans belong to.
pub struct Cx<'d> {
    /// The file being decoded.
    pub file: FileId,
    /// Where findings go.
    pub diagnostics: &'d mut Diagnostics,
}

impl<'d> Cx<'d> {
    /// A context for `file`.
    pub fn new(file: FileId, diagnostics: &'d mut Diagnostics) -> Self {
        Self { file, diagnostics }
    }

    /// Reports a finding in this file.
    pub fn report(
        &mut self,
        code: Code,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::new(code, self.file, span, message));
        self.diagnostics.last_pushed_mut()
    }

    fn wrong_type(&mut self, node: &Node, expected: &str) {
        self.report(
            Code::WrongType,
            node.span,
            format!("expected {expected}, found {}", node.value.type_name()),
        )
        .label = Some(format!("expected {expected}"));
    }

    /// The node as a mapping of named fields, or a wrong-type report.
    pub fn fields<'n>(&mut self, node: &'n Node, what: &str) -> Option<Fields<'n>> {
        match &node.value {
            Value::Map(entries) => Some(Fields {
                node,
                entries,
                asked: Vec::new(),
                what: what.to_owned(),
            }),
            Value::Null => Some(Fields {
                node,
                entries: &[],
                asked: Vec::new(),
                what: what.to_owned(),
            }),
            _ => {
                self.wrong_type(node, &format!("a mapping ({what})"));
                None
            }
        }
    }

    /// The node as a mapping whose keys are names chosen by the user (connectors,
    /// environments, cases), in source order.
    pub fn entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(Located<String>, &'n Node)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (Located::new(key_text(k), k.span), v))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(node, &format!("a mapping ({what})"));
                Vec::new()
            }
        }
    }

    /// The node as a list.
    pub fn list<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.wrong_type(node, &format!("a list ({what})"));
                &[]
            }
        }
    }

    /// The node as a string.
    pub fn string(&mut self, node: &Node) -> Option<Located<String>> {
        match &node.value {
            Value::Str(s) => Some(Located::new(s.clone(), node.span)),
            _ => {
                self.wrong_type(node, "a string");
                None
            }
        }
    }

    /// The node as a string; plain numbers and booleans are read as the text written.
    pub fn text(&mut self, node: &Node) -> Option<Located<String>> {
        match &node.value {
            Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                Some(Located::new(key_text(node), node.span))
            }
            _ => {
                self.wrong_type(node, "a string");
                None
            }
        }
    }

    /// The node as a boolean.
    pub fn bool(&mut self, node: &Node) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, "`true` or `false`");
                None
            }
        }
    }

    /// The node as a whole number within `min..=max`.
    pub fn integer(&mut self, node: &Node, min: i64, max: i64) -> Option<Located<i64>> {
        match node.value {
            Value::Int(i) if (min..=max).contains(&i) => Some(Located::new(i, node.span)),
            Value::Int(i) => {
                self.report(
                    Code::InvalidValue,
                    node.span,
                    format!("{i} is out of range: expected {min} to {max}"),
                );
                None
            }
            _ => {
                self.wrong_type(node, "a whole number");
                None
            }
        }
    }

    /// The node as a number within `min..=max`.
    pub fn number(&mut self, node: &Node, min: f64, max: f64) -> Option<Located<f64>> {
        let value = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => {
                self.wrong_type(node, "a number");
                return None;
            }
        };
        if (min..=max).contains(&value) {
            Some(Located::new(value, node.span))
        } else {
            self.report(
                Code::InvalidValue,
                node.span,
                format!("{value} is out of range: expected {min} to {max}"),
            );
            None
        }
    }

    /// The node as a list of strings.
    pub fn strings(&mut self, node: &Node) -> Vec<Located<String>> {
        let items = self.list(node, "of strings");
        items.iter().filter_map(|item| self.text(item)).collect()
    }

    /// The node as a duration (`250ms`, `5s`, `1h 30m`), in milliseconds.
    pub fn duration(&mut self, node: &Node) -> Option<Located<u64>> {
        let text = self.text(node)?;
        match crate::duration::parse(&text) {
            Ok(ms) => Some(Located::new(ms, node.span)),
            Err(reason) => {
                self.report(
                    Code::BadDuration,
                    node.span,
                    format!("`{}` is not a duration: {reason}", text.value),
                )
                .help = Some("write a number and a unit: `250ms`, `5s`, `2m`, `1h`, `1d`".into());
                None
            }
        }
    }

    /// The node as one of a fixed set of words.
    pub fn one_of(&mut self, node: &Node, allowed: &[&str]) -> Option<Located<String>> {
        let text = self.string(node)?;
        if allowed.contains(&text.as_str()) {
            return Some(text);
        }
        let help = suggestion(&text, allowed.iter().copied())
            .unwrap_or_else(|| format!("expected one of: {}", allowed.join(", ")));
        self.report(
            Code::InvalidValue,
            node.span,
            format!("`{}` is not allowed here", text.value),
        )
        .help = Some(help);
        None
    }
}

/// The fields of one YAML mapping that stands for a record of the model. Every key
/// that was never asked for is reported as unknown by [`Fields::finish`].
pub struct Fields<'n> {
    node: &'n Node,
    entries: &'n [(Node, Node)],
    asked: Vec<&'static str>,
    what: String,
}

impl<'n> Fields<'n> {
    /// The mapping node itself.
    pub fn node(&self) -> &'n Node {
        self.node
    }

    /// The value of an optional field.
    pub fn optional(&mut self, name: &'static str) -> Option<&'n Node> {
        self.asked.push(name);
        self.get(name)
    }

    /// The value of a required field, or a missing-field report at the mapping.
    pub fn required(
        &mut self,
        cx: &mut Cx<'_>,
        name: &'static str,
        purpose: &str,
    ) -> Option<&'n Node> {
        self.asked.push(name);
        let found = self.get(name);
        if found.is_none() {
            let span = self.missing_span();
            cx.report(
                Code::MissingField,
                span,
                format!("{} is missing required field `{name}`", self.what),
            )
            .help = Some(format!("add `{name}:` ({purpose})"));
        }
        found
    }

    /// Whether the mapping has this key (without asking for it).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The key node of a field, for pointing at the key rather than the value.
    pub fn key_span(&self, name: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(k, _)| k.span)
    }

    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }

    fn missing_span(&self) -> Span {
        match self.entries.first() {
            Some((key, _)) => key.span,
            None => self.node.span,
        }
    }

    /// Reports every key that was not asked for, with the closest known key as a hint.
    pub fn finish(self, cx: &mut Cx<'_>) {
        for (key, _) in self.entries {
            let name = key_text(key);
            if self.asked.iter().any(|asked| *asked == name) {
                continue;
            }
            let help = suggestion(&name, self.asked.iter().copied())
                .unwrap_or_else(|| format!("known keys here: {}", self.asked.join(", ")));
            cx.report(
                Code::UnknownKey,
                key.span,
                format!("unknown key `{name}` in {}", self.what),
            )
            .help = Some(help);
        }
    }
}
