//! A secret echoed back encoded is redacted, whatever the secret and the encoding: random
//! secrets × the encodings targets commonly echo, each written by an encoder of its own
//! (the `base64`, `hex`, `percent-encoding`, `url` and `serde_json` crates, or by hand
//! where no crate of the tree writes it), inside random surrounding text. After
//! redaction no encoded form is left, in a text or in a JSON value.

use airlock_connectors::secrets::{REDACTED, Redactor};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use serde_json::json;

/// RFC 3986's unreserved characters stay; everything else is encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Raw,
    Base64,
    Base64NoPad,
    Base64Url,
    Base64UrlNoPad,
    /// The secret inside a longer base64 text, `prefix` bytes after its start.
    Base64Inside {
        prefix: usize,
        url: bool,
    },
    PercentRfc3986,
    PercentRfc3986Lower,
    PercentAlphanumeric,
    FormUrlencoded,
    /// A base64 credential in a query string.
    PercentOfBase64,
    Json,
    JsonAscii,
    HtmlPython,
    HtmlGo,
    HexLower,
    HexUpper,
}

fn encodings() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Raw),
        Just(Encoding::Base64),
        Just(Encoding::Base64NoPad),
        Just(Encoding::Base64Url),
        Just(Encoding::Base64UrlNoPad),
        (0usize..12, any::<bool>())
            .prop_map(|(prefix, url)| Encoding::Base64Inside { prefix, url }),
        Just(Encoding::PercentRfc3986),
        Just(Encoding::PercentRfc3986Lower),
        Just(Encoding::PercentAlphanumeric),
        Just(Encoding::FormUrlencoded),
        Just(Encoding::PercentOfBase64),
        Just(Encoding::Json),
        Just(Encoding::JsonAscii),
        Just(Encoding::HtmlPython),
        Just(Encoding::HtmlGo),
        Just(Encoding::HexLower),
        Just(Encoding::HexUpper),
    ]
}

/// `%XX` with lower-case hex digits.
fn lower_hex_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits_left = 0;
    for c in text.chars() {
        if c == '%' {
            digits_left = 2;
            out.push(c);
        } else if digits_left > 0 {
            digits_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// As Python's `json.dumps` writes a string (ASCII only), without the quotes.
fn json_ascii(text: &str) -> String {
    let minimal = serde_json::to_string(text).expect("a string serialises");
    let inner = &minimal[1..minimal.len() - 1];
    let mut out = String::new();
    for c in inner.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// As Python's `html.escape` writes it.
fn html_python(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// As Go's `html.EscapeString` writes it.
fn html_go(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
}

/// The secret as `encoding` writes it, with what must not survive redaction: the whole
/// encoded form, or inside a longer base64 text, the characters that encode the secret's
/// bits alone.
fn encode(secret: &str, encoding: Encoding, filler: &[u8]) -> (String, String) {
    let same = |text: String| (text.clone(), text);
    match encoding {
        Encoding::Raw => same(secret.to_owned()),
        Encoding::Base64 => same(STANDARD.encode(secret)),
        Encoding::Base64NoPad => same(STANDARD_NO_PAD.encode(secret)),
        Encoding::Base64Url => same(URL_SAFE.encode(secret)),
        Encoding::Base64UrlNoPad => same(URL_SAFE_NO_PAD.encode(secret)),
        Encoding::Base64Inside { prefix, url } => {
            let mut bytes: Vec<u8> = filler.iter().copied().cycle().take(prefix).collect();
            bytes.extend_from_slice(secret.as_bytes());
            bytes.extend(filler.iter().rev().copied().cycle().take(7));
            let engine = if url { &URL_SAFE } else { &STANDARD };
            let blob = engine.encode(&bytes);
            // Character i covers bits 6i..6i+6; the secret covers 8p..8(p+n).
            let start = (8 * prefix).div_ceil(6);
            let end = 8 * (prefix + secret.len()) / 6;
            (blob.clone(), blob[start..end].to_owned())
        }
        Encoding::PercentRfc3986 => same(utf8_percent_encode(secret, RFC3986).to_string()),
        Encoding::PercentRfc3986Lower => same(lower_hex_escapes(
            &utf8_percent_encode(secret, RFC3986).to_string(),
        )),
        Encoding::PercentAlphanumeric => {
            same(utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string())
        }
        Encoding::FormUrlencoded => {
            same(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect())
        }
        Encoding::PercentOfBase64 => {
            same(utf8_percent_encode(&STANDARD.encode(secret), NON_ALPHANUMERIC).to_string())
        }
        Encoding::Json => {
            let quoted = serde_json::to_string(secret).expect("a string serialises");
            same(quoted[1..quoted.len() - 1].to_owned())
        }
        Encoding::JsonAscii => same(json_ascii(secret)),
        Encoding::HtmlPython => same(html_python(secret)),
        Encoding::HtmlGo => same(html_go(secret)),
        Encoding::HexLower => same(hex::encode(secret)),
        Encoding::HexUpper => same(hex::encode_upper(secret)),
    }
}

/// Secrets as people and providers make them: token alphabets, punctuation that every
/// encoding escapes, spaces, quotes, and letters outside ASCII.
fn secrets() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9_\\-.~+/=!*'()&<>\"\\\\ %?#:@;,éüß中🔑\\n\\t]{8,40}")
        .expect("a valid pattern")
}

/// Text around an echo: words, punctuation, JSON and URL delimiters.
fn surroundings() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z ={}\":,?&/.\\[\\]-]{0,24}").expect("a valid pattern")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_encoded_form_of_a_secret_survives_redaction(
        secret in secrets(),
        encoding in encodings(),
        before in surroundings(),
        after in surroundings(),
        filler in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let mut redactor = Redactor::default();
        redactor.add(&secret);
        let (encoded, core) = encode(&secret, encoding, &filler);
        let text = format!("{before}{encoded}{after}");
        let redacted = redactor.redact(&text);
        prop_assert!(
            !redacted.contains(&core),
            "{encoding:?} of {secret:?} survived: {redacted:?}"
        );
        prop_assert!(redacted.contains(REDACTED));
        let value = json!({ "echo": text, "list": [encoded.clone()] });
        let shown = redactor.redact_json(&value);
        for string in [&shown["echo"], &shown["list"][0]] {
            let string = string.as_str().expect("a string stays a string");
            prop_assert!(!string.contains(&core), "{encoding:?} in JSON: {string:?}");
        }
    }

    #[test]
    fn a_text_without_the_secret_is_left_as_it_is(
        secret in secrets(),
        text in surroundings(),
    ) {
        let mut redactor = Redactor::default();
        redactor.add(&secret);
        prop_assume!(!text.contains(&secret));
        prop_assert_eq!(redactor.redact(&text), text);
    }
}
