//! YAML to a spanned tree.
//!
//! serde-saphyr parses (with its budget against alias bombs and over-deep documents)
//! and hands every value over with its location; we keep the result as a plain tree
//! of [`Node`]s with byte spans. Decoding into the model happens afterwards, by hand,
//! so that one file can report every error it has, each at the exact value.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::source::{FileId, SourceFile};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, Spanned};

/// Largest project file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// One YAML value with the byte span it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value is written (for quoted scalars, including the quotes).
    pub span: Span,
    /// The value.
    pub value: Value,
}

/// A YAML value under the core schema. Quoted scalars are always strings; plain
/// scalars resolve to null, booleans (`true`/`false` only), integers, floats or strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order; keys are nodes too so they can be pointed at.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The YAML type's name as users know it, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The string, if this node is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value converted to JSON (mapping keys become strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (key_text(k), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// The text of a mapping key, whatever its scalar type.
pub fn key_text(key: &Node) -> String {
    match &key.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Seq(_) | Value::Map(_) => "<collection>".to_owned(),
    }
}

/// The limits a project file must stay within. Real files are far below them; an
/// alias bomb or a hostile nesting is refused before it costs memory.
fn budget() -> Budget {
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 64;
    budget.max_nodes = 100_000;
    budget.max_total_scalar_bytes = 4 * MAX_FILE_BYTES;
    budget.max_documents = 1;
    budget
}

/// Parses one file into a tree. An empty file is a `Null` node.
pub fn parse(file_id: FileId, file: &SourceFile) -> Result<Node, Diagnostic> {
    if file.text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::new(
            Code::FileTooLarge,
            file_id,
            Span::default(),
            format!(
                "file is {} bytes; the limit is {MAX_FILE_BYTES}",
                file.text.len()
            ),
        ));
    }
    if file.text.trim().is_empty() {
        return Ok(Node {
            span: Span::default(),
            value: Value::Null,
        });
    }
    let options = serde_saphyr::options! {
        budget: Some(budget()),
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(&file.text, options) {
        Ok(root) => Ok(convert(file, root)),
        Err(error) => Err(syntax_diagnostic(file_id, file, &error)),
    }
}

fn syntax_diagnostic(
    file_id: FileId,
    file: &SourceFile,
    error: &serde_saphyr::Error,
) -> Diagnostic {
    let offset = error
        .location()
        .and_then(|loc| file.offset_of(loc.line() as usize, loc.column() as usize))
        .unwrap_or(0);
    let end = file.text[offset..]
        .chars()
        .next()
        .map_or(offset, |c| offset + c.len_utf8());
    let span = Span::new(offset, end);
    let raw = error.without_snippet().to_string();
    let message = strip_location_prefix(&raw);
    if message.contains("budget breached") || message.contains("recursion limit") {
        let what = if message.contains("Depth") || message.contains("recursion") {
            "nested too deeply"
        } else if message.contains("Alias") || message.contains("Anchors") {
            "using too many aliases"
        } else {
            "expanding to too many values (an alias bomb?)"
        };
        return Diagnostic::new(
            Code::YamlLimit,
            file_id,
            span,
            format!("document refused: {what}"),
        )
        .with_label("limit reached here")
        .with_help("project files may nest 64 levels, hold 100,000 values and use 1,000 aliases");
    }
    if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(',').next().unwrap_or(key).trim();
        return Diagnostic::new(
            Code::YamlSyntax,
            file_id,
            span,
            format!("duplicate key `{key}`"),
        )
        .with_label("already set above")
        .with_help("a key may appear once per mapping; remove or rename one of them");
    }
    Diagnostic::new(
        Code::YamlSyntax,
        file_id,
        span,
        format!("invalid YAML: {message}"),
    )
    .with_label(message.to_owned())
}

/// serde-saphyr's messages start with "line L column C: " and some end with
/// " at line L, column C"; our renderer shows the position anyway.
fn strip_location_prefix(message: &str) -> &str {
    let first_line = message.lines().next().unwrap_or(message);
    let message = match first_line.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first_line, |(_, m)| m),
        None => first_line,
    };
    let is_position = |rest: &str| {
        rest.split_once(", column ").is_some_and(|(line, column)| {
            [line, column]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    match message.rsplit_once(" at line ") {
        Some((before, rest)) if is_position(rest.trim_end()) => before,
        _ => message,
    }
    .trim()
}

fn convert(file: &SourceFile, spanned: Spanned<Raw>) -> Node {
    let location = spanned.referenced;
    let start = file
        .offset_of(location.line() as usize, location.column() as usize)
        .unwrap_or(0);
    let char_len = location.span().len() as usize;
    let end = file.text[start..]
        .char_indices()
        .nth(char_len)
        .map_or(file.text.len(), |(i, _)| start + i);
    let value = match spanned.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::Int(i),
        Raw::Float(f) => Value::Float(f),
        Raw::Str(s) => Value::Str(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|n| convert(file, n)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (convert(file, k), convert(file, v)))
                .collect(),
        ),
    };
    Node {
        span: Span::new(start, end),
        value,
    }
}

/// What serde-saphyr hands us: any value, each child wrapped with its location.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        i64::try_from(v)
            .map(Raw::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, Diagnostic> {
        parse(0, &SourceFile::new("t.yaml", text))
    }

    fn slice<'a>(text: &'a str, node: &Node) -> &'a str {
        &text[node.span.start..node.span.end]
    }

    #[test]
    fn spans_cover_the_written_value() {
        let text = "a: 1\nb:\n  - x: \"héllo {{ y }}\"\n    on: [timeout]\n";
        let root = parse_str(text).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        assert_eq!(slice(text, &entries[0].1), "1");
        let Value::Seq(items) = &entries[1].1.value else {
            panic!()
        };
        let Value::Map(step) = &items[0].value else {
            panic!()
        };
        assert_eq!(slice(text, &step[0].1), "\"héllo {{ y }}\"");
        assert_eq!(step[1].0.as_str(), Some("on"), "`on` stays a string");
    }

    #[test]
    fn quoting_decides_the_type() {
        let root = parse_str("a: 100\nb: \"100\"\nc: '100'\n").unwrap();
        let json = root.to_json();
        assert_eq!(json["a"], serde_json::json!(100));
        assert_eq!(json["b"], serde_json::json!("100"));
        assert_eq!(json["c"], serde_json::json!("100"));
    }

    #[test]
    fn alias_bomb_is_refused_fast() {
        let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            text.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
        }
        let started = std::time::Instant::now();
        let error = parse_str(&text).unwrap_err();
        assert_eq!(error.code, Code::YamlLimit);
        assert!(started.elapsed().as_secs() < 2);
    }

    #[test]
    fn over_deep_document_is_refused() {
        let text = format!("a: {}{}\n", "[".repeat(500), "]".repeat(500));
        let error = parse_str(&text).unwrap_err();
        assert_eq!(error.code, Code::YamlLimit);
        assert!(
            error.message.contains("nested too deeply"),
            "{}",
            error.message
        );
    }

    #[test]
    fn syntax_error_is_positioned() {
        let text = "a: [1, 2\nb: 3\n";
        let error = parse_str(text).unwrap_err();
        assert_eq!(error.code, Code::YamlSyntax);
        assert_eq!(
            SourceFile::new("t", text).line_col(error.span.start),
            (2, 2)
        );
    }

    #[test]
    fn messages_do_not_repeat_the_position() {
        assert_eq!(
            strip_location_prefix("line 3 column 4: bad thing"),
            "bad thing"
        );
        assert_eq!(
            strip_location_prefix("did not find expected ',' or '}' at line 28, column 12"),
            "did not find expected ',' or '}'"
        );
        assert_eq!(
            strip_location_prefix("look at line endings"),
            "look at line endings"
        );
        let error = parse_str("a: { b: 1\nc: 2\n").unwrap_err();
        assert!(!error.message.contains("at line"), "{}", error.message);
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let error = parse_str("a: 1\na: 2\n").unwrap_err();
        assert_eq!(error.message, "duplicate key `a`");
    }
}

/// The span, in the file, of `range` (byte offsets into the string value of `node`).
///
/// Plain, quoted and block scalars are all handled by finding each line of the value
/// in the corresponding source line; where escapes make that impossible the whole
/// scalar is returned, which is still the right value, only less precise.
pub fn span_in_scalar(file: &SourceFile, node: &Node, range: std::ops::Range<usize>) -> Span {
    let Value::Str(value) = &node.value else {
        return node.span;
    };
    let start = range.start.min(value.len());
    let end = range.end.clamp(start, value.len());
    let line_index = value[..start].matches('\n').count();
    let value_line_start = value[..start].rfind('\n').map_or(0, |i| i + 1);
    let value_line = value[value_line_start..]
        .split('\n')
        .next()
        .unwrap_or_default();
    let (node_line, _) = file.line_col(node.span.start);
    // Block scalars start their content on the line after the indicator; try both.
    for source_line in [node_line + line_index, node_line + line_index + 1] {
        let Some(line_offset) = file.offset_of(source_line, 1) else {
            continue;
        };
        let Some(line_text) = file.line_text(source_line) else {
            continue;
        };
        let search_from = if source_line == node_line {
            node.span.start - line_offset
        } else {
            0
        };
        if let Some(found) = line_text
            .get(search_from..)
            .and_then(|rest| rest.find(value_line))
        {
            let at = line_offset + search_from + found + (start - value_line_start);
            let line_end = line_offset + line_text.len();
            let width = (end - start).min(line_end.saturating_sub(at));
            return Span::new(at, at + width.max(usize::from(at < line_end)));
        }
    }
    node.span
}

#[cfg(test)]
mod span_tests {
    use super::*;

    fn check(text: &str, needle: &str) {
        let file = SourceFile::new("t.yaml", text);
        let root = parse(0, &file).unwrap();
        let Value::Map(entries) = &root.value else {
            panic!()
        };
        let node = &entries[0].1;
        let value = node.as_str().unwrap();
        let at = value.find(needle).unwrap();
        let span = span_in_scalar(&file, node, at..at + needle.len());
        assert_eq!(&text[span.start..span.end], needle, "in {text:?}");
    }

    #[test]
    fn inner_spans_for_every_scalar_style() {
        check("a: plain {{ x }} text\n", "x }}");
        check("a: \"quoted {{ x }}\"\n", "x }}");
        check("a: 'single {{ x }}'\n", "x }}");
        check("a: |\n  first\n  second {{ x }}\n", "x }}");
        check("a: >-\n  folded {{ x }}\n", "x }}");
    }
}
