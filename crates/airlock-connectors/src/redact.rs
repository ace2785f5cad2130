//! Redaction: a secret value removed from everything that is stored or shown, in the
//! forms a target commonly echoes it back, not only as itself.
//!
//! For each value, [`Redactor`] precomputes once the texts it stands as (its *needles*)
//! and builds one Aho-Corasick automaton over all of them, so that an answer holding no
//! secret costs one linear scan, however many values and forms there are:
//!
//! - the value itself;
//! - hex, lower and upper case;
//! - base64, standard and URL-safe, with and without padding; and, for a value embedded in
//!   a longer base64 text (`Basic base64(user:secret)`), the characters that depend only
//!   on the value at each of the three byte alignments (`aligned_base64`);
//! - percent-encoding as common encoders write it (RFC 3986, alphanumerics only, HTML
//!   forms with `+` for a space, JavaScript's `encodeURIComponent`, Python's `quote`,
//!   every byte), upper and lower case hex; percent-encoding and `\/` of the base64 forms
//!   too (a base64 credential in a query string);
//! - JSON string escaping (minimal as serde writes it, ASCII-only as Python writes it,
//!   with `\/` as PHP writes it, HTML-safe as Go writes it);
//! - HTML escaping (`&quot;`/`&#x27;`, `&#34;`/`&#39;`, `&quot;`/`&#39;`, `&quot;`/`&apos;`,
//!   `&#x2f;` for `/`, quotes left alone).
//!
//! Not caught: other encodings (base32, UTF-16, gzip …), a value cut into pieces, encodings
//! stacked more than these two layers deep, mixed-case hex in one value, and at a base64
//! value's edges inside a longer base64 text up to two characters that also carry bits of
//! the text around it (at most 4 bits of the value at each end stay readable).

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not redacted by [`Redactor::add`]: redacting `a` would
/// make every text unreadable and protects nothing.
const MIN_VALUE_BYTES: usize = 4;

/// The shortest base64 alignment form kept: shorter ones would match unrelated base64
/// text by chance (6 characters are 36 bits).
const MIN_ALIGNED_CHARS: usize = 6;

/// Replaces secret values, and the encoded forms of them, with `[redacted]` in everything
/// that is stored or shown. Cheap to clone: the needles and their automaton are shared.
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Arc<Needles>,
}

#[derive(Default)]
struct Needles {
    /// The values, as added.
    values: Vec<String>,
    /// Every form of every value, longest first.
    needles: Vec<String>,
    /// One automaton over `needles`; `None` when there are none, or when it could not be
    /// built (then `needles` are replaced one by one, slowly but completely).
    matcher: Option<AhoCorasick>,
    /// The question asked of every answer, "is any needle there?", answered by SIMD
    /// searchers (Teddy) over groups of needles: with more than a few dozen needles the
    /// automaton above scans byte by byte, these skip. Empty when this CPU has no such
    /// searcher; then the automaton answers.
    probes: Vec<aho_corasick::packed::Searcher>,
}

/// Needles per SIMD probe: Teddy stays fast up to a few dozen patterns.
const NEEDLES_PER_PROBE: usize = 32;

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Redactor({} values, {} forms)",
            self.inner.values.len(),
            self.inner.needles.len()
        )
    }
}

impl Redactor {
    /// Remembers a value to redact. Values shorter than 4 bytes are ignored.
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_VALUE_BYTES {
            self.add_values([value]);
        }
    }

    /// A redactor of one credential, whatever its length: for a connector's own error
    /// text, where even a short password must not appear.
    pub fn of_credential(value: &str) -> Self {
        let mut redactor = Self::default();
        if !value.is_empty() {
            redactor.add_values([value]);
        }
        redactor
    }

    /// Merges another redactor's values.
    pub fn extend(&mut self, other: &Redactor) {
        self.add_values(other.inner.values.iter().map(String::as_str));
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.inner.values.is_empty()
    }

    fn add_values<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        let mut all = self.inner.values.clone();
        for value in values {
            if !all.iter().any(|v| v == value) {
                all.push(value.to_owned());
            }
        }
        if all.len() == self.inner.values.len() {
            return;
        }
        let mut needles: Vec<String> = all.iter().flat_map(|v| forms(v)).collect();
        // Longest first, so that a form containing another is redacted whole (by the
        // slow path; the automaton matches leftmost-longest).
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)
            .ok();
        let probes: Option<Vec<_>> = needles
            .chunks(NEEDLES_PER_PROBE)
            .map(|group| {
                aho_corasick::packed::Config::new()
                    .builder()
                    .extend(group)
                    .build()
            })
            .collect();
        self.inner = Arc::new(Needles {
            values: all,
            needles,
            matcher,
            probes: probes.unwrap_or_default(),
        });
    }

    /// Whether `text` holds a value in any of its forms.
    pub fn finds(&self, text: &str) -> bool {
        if !self.inner.probes.is_empty() {
            return self.inner.probes.iter().any(|p| p.find(text).is_some());
        }
        match &self.inner.matcher {
            Some(matcher) => matcher.is_match(text),
            None => self.inner.needles.iter().any(|n| text.contains(n.as_str())),
        }
    }

    /// `text` with every value, in every form, replaced; borrowed when there is none.
    pub fn redact_str<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.inner.needles.is_empty() || !self.finds(text) {
            return Cow::Borrowed(text);
        }
        match &self.inner.matcher {
            Some(matcher) => {
                let replacements = vec![REDACTED; self.inner.needles.len()];
                Cow::Owned(matcher.replace_all(text, &replacements))
            }
            None => {
                let mut out = text.to_owned();
                for needle in &self.inner.needles {
                    if out.contains(needle.as_str()) {
                        out = out.replace(needle.as_str(), REDACTED);
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// The text with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        self.redact_str(text).into_owned()
    }

    /// The JSON value with every secret value replaced, in keys and strings.
    pub fn redact_json(&self, value: &Value) -> Value {
        self.redacted(value.clone())
    }

    /// [`Redactor::redact_json`] of a value the caller owns, changed in place: a value
    /// holding no secret is neither copied nor reallocated.
    pub fn redacted(&self, mut value: Value) -> Value {
        if !self.is_empty() {
            self.redact_in_place(&mut value);
        }
        value
    }

    fn redact_in_place(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Cow::Owned(redacted) = self.redact_str(text) {
                    *text = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_in_place(v)),
            Value::Object(map) => {
                if map.keys().any(|k| self.finds(k)) {
                    let entries = std::mem::take(map);
                    for (key, item) in entries {
                        map.insert(self.redact(&key), item);
                    }
                }
                map.values_mut().for_each(|v| self.redact_in_place(v));
            }
            _ => {}
        }
    }
}

/// Every form `value` is redacted in (see the module's documentation), possibly with
/// repeats and the value itself among them.
fn forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut out = vec![value.to_owned()];
    out.extend(text_escapes(value));
    out.push(hex::encode(bytes));
    out.push(hex::encode_upper(bytes));
    let mut base64: Vec<String> = vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    base64.extend(aligned_base64(bytes));
    for form in &base64 {
        // `+`, `/` and `=` are what a base64 credential is escaped for in a URL or JSON.
        out.push(percent(form, unreserved, false, true));
        out.push(percent(form, unreserved, false, false));
        out.push(form.replace('/', "\\/"));
    }
    out.extend(base64);
    out.retain(|form| !form.is_empty());
    out
}

/// The characters of `bytes`' base64 that depend on `bytes` alone when they sit at byte
/// offset 0, 1 or 2 (mod 3) of a longer text, in both alphabets: the text's base64 holds
/// them whatever comes before and after. At offset `k`, character `i` covers bits
/// `6i..6i+6` of the text and the value covers `8k..8(k+n)`, so the stable characters are
/// `ceil(8k/6) .. floor(8(k+n)/6)`.
fn aligned_base64(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for offset in 0..3 {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(bytes);
        let encoded = STANDARD_NO_PAD.encode(&shifted);
        let start = (8 * offset).div_ceil(6);
        let end = (8 * (offset + bytes.len()) / 6).min(encoded.len());
        if end >= start + MIN_ALIGNED_CHARS {
            let core = &encoded[start..end];
            out.push(core.to_owned());
            out.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    out
}

/// The percent, JSON and HTML escapes of `value` that common encoders write.
fn text_escapes(value: &str) -> Vec<String> {
    let alphanumeric = |b: u8| b.is_ascii_alphanumeric();
    let form = |b: u8| b.is_ascii_alphanumeric() || b"*-._".contains(&b);
    let component = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b);
    let python = |b: u8| unreserved(b) || b == b'/';
    let nothing = |_: u8| false;
    vec![
        percent(value, unreserved, false, true),
        percent(value, unreserved, false, false),
        percent(value, alphanumeric, false, true),
        percent(value, alphanumeric, false, false),
        percent(value, form, true, true),
        percent(value, unreserved, true, true),
        percent(value, component, false, true),
        percent(value, python, false, true),
        percent(value, nothing, false, true),
        percent(value, nothing, false, false),
        json(value, JsonStyle::Minimal),
        json(value, JsonStyle::Ascii),
        json(value, JsonStyle::AsciiSlash),
        json(value, JsonStyle::HtmlSafe),
        html(value, Some(("&quot;", "&#x27;")), false),
        html(value, Some(("&#34;", "&#39;")), false),
        html(value, Some(("&quot;", "&#39;")), false),
        html(value, Some(("&quot;", "&apos;")), false),
        html(value, Some(("&quot;", "&#x27;")), true),
        html(value, None, false),
    ]
}

/// RFC 3986's unreserved characters, which every percent-encoder leaves as they are.
fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// `text` percent-encoded: bytes `keep` accepts stay, a space is `+` when `plus`, every
/// other byte is `%XX`.
fn percent(text: &str, keep: impl Fn(u8) -> bool, plus: bool, upper: bool) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = if upper { UPPER } else { LOWER };
    let mut out = String::with_capacity(text.len() * 3);
    for &byte in text.as_bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else if plus && byte == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(digits[usize::from(byte >> 4)]));
            out.push(char::from(digits[usize::from(byte & 0xf)]));
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum JsonStyle {
    /// As serde_json and JavaScript write it: only `"`, `\` and controls escaped.
    Minimal,
    /// As Python's `json.dumps` writes it: every non-ASCII character as `\uXXXX`.
    Ascii,
    /// As PHP's `json_encode` writes it: ASCII-only, and `/` as `\/`.
    AsciiSlash,
    /// As Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 as `\u….`.
    HtmlSafe,
}

/// The inside of a JSON string holding `text`, escaped in `style`.
fn json(text: &str, style: JsonStyle) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if style == JsonStyle::AsciiSlash => out.push_str("\\/"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if style == JsonStyle::HtmlSafe => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c if !c.is_ascii() && matches!(style, JsonStyle::Ascii | JsonStyle::AsciiSlash) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` HTML-escaped: `&`, `<` and `>` always; `"` and `'` as `quotes` says (left alone
/// when `None`); `/` as `&#x2f;` when `slash`.
fn html(text: &str, quotes: Option<(&str, &str)>, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (c, quotes) {
            ('&', _) => out.push_str("&amp;"),
            ('<', _) => out.push_str("&lt;"),
            ('>', _) => out.push_str("&gt;"),
            ('"', Some((double, _))) => out.push_str(double),
            ('\'', Some((_, single))) => out.push_str(single),
            ('/', _) if slash => out.push_str("&#x2f;"),
            (c, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_strings_keys_and_nested_values() {
        let mut redactor = Redactor::default();
        redactor.add("hunter2-long");
        redactor.add("ab");
        let value = serde_json::json!({"auth": "Bearer hunter2-long", "list": ["x hunter2-long y"], "hunter2-long": 1, "ab": "ab"});
        let redacted = redactor.redact_json(&value).to_string();
        assert!(!redacted.contains("hunter2-long"), "{redacted}");
        assert!(redacted.contains("\"ab\""), "short values are left alone");
    }

    #[test]
    fn a_short_credential_is_redacted_in_its_own_errors() {
        let redactor = Redactor::of_credential("p@s");
        assert_eq!(
            redactor.redact("pw p@s and p%40s"),
            "pw [redacted] and [redacted]"
        );
    }

    #[test]
    fn the_alignment_forms_of_a_basic_credential_are_found_inside_its_base64() {
        let mut redactor = Redactor::default();
        redactor.add("s3cr3t-Pa55word");
        for user in ["u", "us", "use", "user"] {
            let header = format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:s3cr3t-Pa55word"))
            );
            let redacted = redactor.redact(&header);
            assert!(redacted.contains(REDACTED), "{user}: {redacted}");
        }
    }

    #[test]
    fn a_text_without_a_secret_is_borrowed_not_copied() {
        let mut redactor = Redactor::default();
        redactor.add("tok-9f8e7d-secret");
        assert!(matches!(
            redactor.redact_str("nothing here"),
            Cow::Borrowed(_)
        ));
        assert!(format!("{redactor:?}").starts_with("Redactor(1 values"));
    }
}
