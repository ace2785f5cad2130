//! Webhook deliveries, the pure part: signature verification over the raw body, the
//! matching signers, and bounded JSON parsing of the payload.
//!
//! Nothing here does I/O or reads a clock: the server passes the raw body bytes, a
//! header accessor, the secrets it resolved for the environment, and `now`. That is
//! what lets the tests below check each scheme against the senders' own published
//! vectors at the instant those vectors were made.
//!
//! Every scheme is HMAC-SHA256. Comparisons are constant-time (`Mac::verify_slice`),
//! and one or two secrets are accepted, so that a key can be rotated without a window
//! in which genuine deliveries are refused: the sender signs with the new key while
//! the workflow still lists the old one as `previous_secret`.
//!
//! Errors never contain a secret, an expected signature, or the received header value:
//! they are logged and answered to whoever sent the request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from `now`, either way, in seconds: Stripe's and
/// the Standard Webhooks libraries' default. Older deliveries are replays (or a
/// sender's queue far behind); newer ones come from a clock that cannot be trusted.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 300;

/// The header the `hex` scheme reads when the workflow names none.
pub const DEFAULT_HEX_HEADER: &str = "X-Signature";

/// GitHub's signature header.
pub const GITHUB_HEADER: &str = "X-Hub-Signature-256";
/// Stripe's signature header.
pub const STRIPE_HEADER: &str = "Stripe-Signature";
/// Standard Webhooks: the message id, part of what is signed (and a natural idempotency key).
pub const STANDARD_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: the signing time, in Unix seconds.
pub const STANDARD_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `v1,<base64>` signatures.
pub const STANDARD_SIGNATURE_HEADER: &str = "webhook-signature";

/// The SHA-256 output length; a candidate signature of any other length cannot match.
const TAG_LEN: usize = 32;

/// Looks a request header up by name, case-insensitively, returning its value when it
/// is present and is text. The server passes a closure over axum's `HeaderMap`
/// (`&|name| headers.get(name).and_then(|v| v.to_str().ok())`); tests use [`header_list`].
pub type HeaderLookup<'h> = dyn Fn(&str) -> Option<&'h str> + 'h;

/// A header accessor over a list of `(name, value)` pairs, matching names
/// case-insensitively as HTTP does. For tests and for the quickstart's signed curl.
pub fn header_list<'h>(pairs: &'h [(String, String)]) -> impl Fn(&str) -> Option<&'h str> + 'h {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The signature formats that real senders use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]` over `"{t}.{body}"`.
    Stripe,
    /// Standard Webhooks (Svix and others): `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64> …` over `"{id}.{timestamp}.{body}"`.
    StandardWebhooks,
    /// A plain hex HMAC-SHA256 of the body in one header (default `X-Signature`).
    Hex,
}

impl Scheme {
    /// The schemes' names as a workflow writes them.
    pub const NAMES: &'static [&'static str] = &["github", "stripe", "standard_webhooks", "hex"];

    /// The scheme a workflow names (`signature.scheme`), if it is one.
    pub fn from_name(name: &str) -> Option<Scheme> {
        match name {
            "github" => Some(Scheme::Github),
            "stripe" => Some(Scheme::Stripe),
            "standard_webhooks" => Some(Scheme::StandardWebhooks),
            "hex" => Some(Scheme::Hex),
            _ => None,
        }
    }

    /// The name as a workflow writes it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::StandardWebhooks => "standard_webhooks",
            Scheme::Hex => "hex",
        }
    }
}

/// Which of the configured secrets a delivery was signed with. A delivery signed with
/// the previous secret is genuine, but says the sender has not switched yet: the
/// server can log it, so that the rotation is finished only once none arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUsed {
    /// `signature.secret`.
    Current,
    /// `signature.previous_secret`.
    Previous,
}

/// What a delivery is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The format.
    pub scheme: Scheme,
    /// The header carrying the signature, for [`Scheme::Hex`] (default
    /// [`DEFAULT_HEX_HEADER`]); the other schemes use their senders' fixed headers.
    pub header: Option<&'a str>,
    /// The current secret's value, as stored: for Stripe the `whsec_…` string itself,
    /// for Standard Webhooks `whsec_<base64>`.
    pub secret: &'a [u8],
    /// The previous secret's value during a rotation.
    pub previous_secret: Option<&'a [u8]>,
    /// How far a signed timestamp may be from `now`, in seconds (Stripe and Standard
    /// Webhooks only).
    pub tolerance_secs: u64,
}

impl<'a> Verifier<'a> {
    /// A verifier with one secret and the default tolerance.
    pub fn new(scheme: Scheme, secret: &'a [u8]) -> Self {
        Self {
            scheme,
            header: None,
            secret,
            previous_secret: None,
            tolerance_secs: TIMESTAMP_TOLERANCE_SECS,
        }
    }

    /// Also accepts deliveries signed with `previous` (a key rotation in progress).
    pub fn with_previous(mut self, previous: Option<&'a [u8]>) -> Self {
        self.previous_secret = previous;
        self
    }

    /// Reads the signature from `header` (the `hex` scheme).
    pub fn with_header(mut self, header: Option<&'a str>) -> Self {
        self.header = header;
        self
    }

    /// Checks a delivery: `body` is the raw request body, byte for byte as received
    /// (a re-serialised JSON body would not match), `headers` looks headers up
    /// case-insensitively, `now` is the server's clock.
    ///
    /// The signature is checked before the timestamp, so [`SignatureError::Stale`] and
    /// [`SignatureError::Future`] are only ever said of a genuine delivery (a replay,
    /// a sender's backlog, a skewed clock): an operator reading them knows the sender
    /// is real. A secret that the scheme cannot use, current or previous, is an error
    /// even when the other would match: a broken rotation is reported, not hidden.
    pub fn verify(
        &self,
        headers: &HeaderLookup<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SecretUsed, SignatureError> {
        match self.scheme {
            Scheme::Github => {
                let value = require(headers, GITHUB_HEADER)?;
                let tag = value
                    .trim()
                    .strip_prefix("sha256=")
                    .and_then(decode_hex_tag)
                    .ok_or(SignatureError::MalformedHeader {
                        header: GITHUB_HEADER.into(),
                        reason: "expected `sha256=` followed by 64 hex digits",
                    })?;
                self.match_any(&[body], &[tag])
            }
            Scheme::Hex => {
                let name = self.header.unwrap_or(DEFAULT_HEX_HEADER);
                let value = headers(name).ok_or_else(|| SignatureError::MissingHeader {
                    header: name.to_owned(),
                })?;
                let tag = decode_hex_tag(value.trim()).ok_or_else(|| {
                    SignatureError::MalformedHeader {
                        header: name.to_owned(),
                        reason: "expected 64 hex digits",
                    }
                })?;
                self.match_any(&[body], &[tag])
            }
            Scheme::Stripe => {
                let value = require(headers, STRIPE_HEADER)?;
                let parsed = parse_stripe_header(value)?;
                let t = parsed.timestamp.to_string();
                let used = self.match_any(&[t.as_bytes(), b".", body], &parsed.v1)?;
                check_timestamp(parsed.timestamp, now, self.tolerance_secs)?;
                Ok(used)
            }
            Scheme::StandardWebhooks => {
                let id = require(headers, STANDARD_ID_HEADER)?;
                let timestamp = parse_unix_seconds(require(headers, STANDARD_TIMESTAMP_HEADER)?)
                    .ok_or(SignatureError::MalformedHeader {
                        header: STANDARD_TIMESTAMP_HEADER.into(),
                        reason: "expected whole Unix seconds",
                    })?;
                let signatures =
                    parse_standard_signatures(require(headers, STANDARD_SIGNATURE_HEADER)?)?;
                let t = timestamp.to_string();
                let current = standard_webhooks_key(self.secret)?;
                let previous = self
                    .previous_secret
                    .map(standard_webhooks_key)
                    .transpose()?;
                let used = match_secrets(
                    &current,
                    previous.as_deref(),
                    &[id.as_bytes(), b".", t.as_bytes(), b".", body],
                    &signatures,
                )?;
                check_timestamp(timestamp, now, self.tolerance_secs)?;
                Ok(used)
            }
        }
    }

    /// Whether any candidate is the HMAC of `parts` under the current or previous secret.
    fn match_any(
        &self,
        parts: &[&[u8]],
        candidates: &[[u8; TAG_LEN]],
    ) -> Result<SecretUsed, SignatureError> {
        match_secrets(self.secret, self.previous_secret, parts, candidates)
    }
}

/// Signature verification failures. None of them names a secret, an expected
/// signature or a received value: they reach logs and the sender's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent (or not text).
    #[error("missing header `{header}`")]
    MissingHeader {
        /// The header's name.
        header: String,
    },
    /// A header is present but not in the scheme's format.
    #[error("malformed header `{header}`: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: String,
        /// What was expected.
        reason: &'static str,
    },
    /// The signed timestamp is older than the tolerance allows: a replay, or a
    /// sender far behind.
    #[error(
        "signature timestamp is {behind_secs} s old, {over_secs} s past the {tolerance_secs} s tolerance"
    )]
    Stale {
        /// How old the timestamp is.
        behind_secs: u64,
        /// By how much it exceeds the tolerance.
        over_secs: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// The signed timestamp is further in the future than the tolerance allows.
    #[error(
        "signature timestamp is {ahead_secs} s in the future, {over_secs} s past the {tolerance_secs} s tolerance"
    )]
    Future {
        /// How far ahead the timestamp is.
        ahead_secs: u64,
        /// By how much it exceeds the tolerance.
        over_secs: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// The header was well formed but no signature in it matched any configured secret.
    #[error("no signature matched")]
    NoMatch,
    /// The configured secret cannot be used by this scheme (for Standard Webhooks: not
    /// `whsec_` followed by base64). A configuration error, not the sender's.
    #[error("the signing secret cannot be used: {reason}")]
    UnusableSecret {
        /// What is wrong, without the value.
        reason: &'static str,
    },
}

fn require<'h>(headers: &HeaderLookup<'h>, name: &'static str) -> Result<&'h str, SignatureError> {
    headers(name).ok_or(SignatureError::MissingHeader {
        header: name.to_owned(),
    })
}

/// Exactly 32 bytes of hex, either case.
fn decode_hex_tag(text: &str) -> Option<[u8; TAG_LEN]> {
    let mut out = [0u8; TAG_LEN];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Unix seconds as senders write them: ASCII digits only (no sign, no fraction), so
/// that the value signed and the value checked are the same text.
fn parse_unix_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

struct StripeHeader {
    timestamp: i64,
    v1: Vec<[u8; TAG_LEN]>,
}

/// `t=<unix>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`. Like Stripe's libraries, unknown
/// schemes (`v0`, the test-mode signature) and unreadable `v1` values are ignored, so
/// one good `v1` among them is enough; a header with no usable `v1` is malformed.
fn parse_stripe_header(value: &str) -> Result<StripeHeader, SignatureError> {
    let malformed = |reason| SignatureError::MalformedHeader {
        header: STRIPE_HEADER.into(),
        reason,
    };
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                timestamp = Some(
                    parse_unix_seconds(val).ok_or(malformed("`t=` must be whole Unix seconds"))?,
                )
            }
            "v1" => {
                if let Some(tag) = decode_hex_tag(val.trim()) {
                    v1.push(tag);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(malformed("no `t=` timestamp"))?;
    if v1.is_empty() {
        return Err(malformed("no `v1=` signature of 64 hex digits"));
    }
    Ok(StripeHeader { timestamp, v1 })
}

/// Space-separated `v1,<base64>` entries; other versions (`v1a`, asymmetric) and
/// undecodable entries are ignored, as the reference libraries do.
fn parse_standard_signatures(value: &str) -> Result<Vec<[u8; TAG_LEN]>, SignatureError> {
    let tags: Vec<[u8; TAG_LEN]> = value
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .filter_map(|bytes| <[u8; TAG_LEN]>::try_from(bytes.as_slice()).ok())
        .collect();
    if tags.is_empty() {
        return Err(SignatureError::MalformedHeader {
            header: STANDARD_SIGNATURE_HEADER.into(),
            reason: "no `v1,<base64>` signature of 32 bytes",
        });
    }
    Ok(tags)
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_` (the prefix
/// is optional, as in the reference libraries).
fn standard_webhooks_key(secret: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let encoded = secret.strip_prefix(b"whsec_").unwrap_or(secret);
    let key = BASE64
        .decode(encoded)
        .map_err(|_| SignatureError::UnusableSecret {
            reason: "a Standard Webhooks secret is `whsec_` followed by base64",
        })?;
    if key.is_empty() {
        return Err(SignatureError::UnusableSecret {
            reason: "the Standard Webhooks secret is empty",
        });
    }
    Ok(key)
}

fn mac_over(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length (RFC 2104: longer ones are hashed first); the
    // `Result` exists for MACs with fixed key sizes and is never an error here.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .expect("HMAC-SHA256 accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Tries every candidate against the current secret, then the previous one. Each
/// comparison is constant-time; stopping at the first match reveals only that one
/// matched, which the response reveals anyway.
fn match_secrets(
    current: &[u8],
    previous: Option<&[u8]>,
    parts: &[&[u8]],
    candidates: &[[u8; TAG_LEN]],
) -> Result<SecretUsed, SignatureError> {
    let keys = [
        (Some(current), SecretUsed::Current),
        (previous, SecretUsed::Previous),
    ];
    for (key, used) in keys {
        let Some(key) = key else { continue };
        let mac = mac_over(key, parts);
        if candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
        {
            return Ok(used);
        }
    }
    Err(SignatureError::NoMatch)
}

fn check_timestamp(signed: i64, now: DateTime<Utc>, tolerance: u64) -> Result<(), SignatureError> {
    let delta = i128::from(now.timestamp()) - i128::from(signed);
    let distance = u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX);
    if distance <= tolerance {
        return Ok(());
    }
    let over = distance - tolerance;
    Err(if delta > 0 {
        SignatureError::Stale {
            behind_secs: distance,
            over_secs: over,
            tolerance_secs: tolerance,
        }
    } else {
        SignatureError::Future {
            ahead_secs: distance,
            over_secs: over,
            tolerance_secs: tolerance,
        }
    })
}

fn tag_of(secret: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&mac_over(secret, parts).finalize().into_bytes());
    out
}

/// GitHub's `X-Hub-Signature-256` value for `body`: `sha256=<hex>`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(tag_of(secret, &[body])))
}

/// The `hex` scheme's header value for `body`: lowercase hex.
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    hex::encode(tag_of(secret, &[body]))
}

/// Stripe's `Stripe-Signature` value for `body` signed at `timestamp` (Unix seconds),
/// with the secret used as its literal bytes, as Stripe's libraries do.
pub fn sign_stripe(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let tag = tag_of(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(tag))
}

/// The Standard Webhooks `webhook-signature` value (`v1,<base64>`) for message `id`
/// signed at `timestamp` (Unix seconds). Fails only for a secret that is not
/// `whsec_<base64>`.
pub fn sign_standard_webhooks(
    secret: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = standard_webhooks_key(secret)?;
    let t = timestamp.to_string();
    let tag = tag_of(&key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]);
    Ok(format!("v1,{}", BASE64.encode(tag)))
}

/// The headers a sender using `scheme` would attach to `body`, signed at `now`: what
/// the quickstart prints as a curl command and what tests deliver. `id` is the
/// Standard Webhooks message id (ignored by the other schemes); `header` names the
/// `hex` scheme's header (default [`DEFAULT_HEX_HEADER`]).
pub fn sign(
    scheme: Scheme,
    header: Option<&str>,
    secret: &[u8],
    body: &[u8],
    id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, SignatureError> {
    let t = now.timestamp();
    Ok(match scheme {
        Scheme::Github => vec![(GITHUB_HEADER.into(), sign_github(secret, body))],
        Scheme::Hex => vec![(
            header.unwrap_or(DEFAULT_HEX_HEADER).into(),
            sign_hex(secret, body),
        )],
        Scheme::Stripe => vec![(STRIPE_HEADER.into(), sign_stripe(secret, t, body))],
        Scheme::StandardWebhooks => vec![
            (STANDARD_ID_HEADER.into(), id.to_owned()),
            (STANDARD_TIMESTAMP_HEADER.into(), t.to_string()),
            (
                STANDARD_SIGNATURE_HEADER.into(),
                sign_standard_webhooks(secret, id, t, body)?,
            ),
        ],
    })
}

/// Why a payload was refused. Positions are 1-based lines and byte columns, as
/// serde_json reports them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Arrays and objects nest deeper than the workflow's `max_depth`.
    #[error("JSON nests deeper than {max_depth} levels at line {line}, column {column}")]
    TooDeep {
        /// The limit.
        max_depth: usize,
        /// Line of the first bracket past the limit.
        line: usize,
        /// Column of that bracket.
        column: usize,
    },
    /// Not JSON.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        /// Where serde_json stopped.
        line: usize,
        /// Where serde_json stopped.
        column: usize,
        /// serde_json's reason, without its position.
        message: String,
    },
}

/// The nesting serde_json itself allows; deeper limits could never be reached.
pub const MAX_JSON_DEPTH: usize = 127;

/// Parses a webhook body as JSON, refusing nesting deeper than `max_depth` (at most
/// [`MAX_JSON_DEPTH`]).
///
/// The depth is measured first by one linear scan that only counts brackets outside
/// strings, with no recursion, so a hostile `[[[[…` of any length costs one pass and a
/// few bytes of state before anything is built; serde_json then parses a body already
/// known to be shallow. A scalar is depth 0, `[]` depth 1, `[{}]` depth 2.
pub fn parse_json_payload(
    bytes: &[u8],
    max_depth: usize,
) -> Result<serde_json::Value, PayloadError> {
    let max_depth = max_depth.min(MAX_JSON_DEPTH);
    if let Some(offset) = first_too_deep(bytes, max_depth) {
        let (line, column) = line_column(bytes, offset);
        return Err(PayloadError::TooDeep {
            max_depth,
            line,
            column,
        });
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let (line, column) = (error.line(), error.column());
        let text = error.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
        PayloadError::Malformed {
            line,
            column,
            message,
        }
    })
}

/// The byte offset of the first `[` or `{` that opens level `max_depth + 1`, outside
/// strings. Malformed input is not judged here: serde_json reports it precisely.
fn first_too_deep(bytes: &[u8], max_depth: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// 1-based line and column (in bytes, counting from 1) of `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, offset - line_start + 1)
}

// ---- webhook paths ----

/// Why a webhook path is refused: each is a path that only looks like the route it names,
/// because a proxy, a browser or a framework that normalises paths would route it
/// elsewhere (`../production/orders` into another environment, `a%2Fb` to `a/b`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// Nothing but slashes.
    #[error("is empty")]
    Empty,
    /// `a//b`: an empty segment, which normalisation removes.
    #[error("has an empty segment (`//`)")]
    EmptySegment {
        /// Byte offset of the segment in the path.
        at: usize,
    },
    /// `.` or `..`: a segment that normalisation resolves away.
    #[error("has a `{segment}` segment")]
    DotSegment {
        /// The segment.
        segment: String,
        /// Byte offset of the segment in the path.
        at: usize,
    },
    /// `\`, which some servers and every browser read as `/`.
    #[error("holds a backslash, which is read as `/` elsewhere")]
    Backslash {
        /// Byte offset in the path.
        at: usize,
    },
    /// `%2f`, `%2F`, `%5c` or `%5C`: an encoded separator, decoded by some and not others.
    #[error("holds the percent-encoded separator `{text}`")]
    EncodedSeparator {
        /// The escape as written.
        text: String,
        /// Byte offset in the path.
        at: usize,
    },
    /// Any other `%XX`: a path names its characters plainly.
    #[error("holds the percent-encoded character `{text}`")]
    PercentEncoded {
        /// The escape as written.
        text: String,
        /// Byte offset in the path.
        at: usize,
    },
    /// A character outside letters, digits, `-`, `_`, `.` and `/`.
    #[error("holds `{character}`; a path uses only letters, digits, `-`, `_`, `.` and `/`")]
    Character {
        /// The character.
        character: char,
        /// Byte offset in the path.
        at: usize,
    },
}

impl UnsafePath {
    /// Where in the path, in bytes (empty for [`UnsafePath::Empty`]).
    pub fn range(&self) -> std::ops::Range<usize> {
        match self {
            UnsafePath::Empty => 0..0,
            UnsafePath::EmptySegment { at } => *at..*at,
            UnsafePath::DotSegment { segment, at } => *at..at + segment.len(),
            UnsafePath::Backslash { at } => *at..at + 1,
            UnsafePath::EncodedSeparator { text, at } | UnsafePath::PercentEncoded { text, at } => {
                *at..at + text.len()
            }
            UnsafePath::Character { character, at } => *at..at + character.len_utf8(),
        }
    }
}

/// The one decision on a webhook path, for a path a workflow declares (at `validate`) and
/// for the path a delivery asks for (`/hooks/{environment}` followed by it, in the server,
/// before anything is read or written): at most one `/` at each end, then segments of
/// letters, digits, `-`, `_` and `.` separated by single `/`, none of them `.` or `..`.
/// Returns the route's key: the segments joined by `/`.
pub fn hook_path(path: &str) -> Result<String, UnsafePath> {
    let (inner, offset) = match path.strip_prefix('/') {
        Some(rest) => (rest, 1),
        None => (path, 0),
    };
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Err(UnsafePath::Empty);
    }
    let mut at = offset;
    for segment in inner.split('/') {
        if segment.is_empty() {
            return Err(UnsafePath::EmptySegment { at });
        }
        for (i, character) in segment.char_indices() {
            let here = at + i;
            match character {
                c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') => {}
                '\\' => return Err(UnsafePath::Backslash { at: here }),
                '%' => {
                    let text: String = segment[i..].chars().take(3).collect();
                    let separator = matches!(text.to_ascii_lowercase().as_str(), "%2f" | "%5c");
                    return Err(if separator {
                        UnsafePath::EncodedSeparator { text, at: here }
                    } else {
                        UnsafePath::PercentEncoded { text, at: here }
                    });
                }
                character => {
                    return Err(UnsafePath::Character {
                        character,
                        at: here,
                    });
                }
            }
        }
        if segment == "." || segment == ".." {
            return Err(UnsafePath::DotSegment {
                segment: segment.to_owned(),
                at,
            });
        }
        at += segment.len() + 1;
    }
    Ok(inner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(unix: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(unix, 0)
            .single()
            .expect("a valid instant")
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check(
        verifier: &Verifier<'_>,
        pairs: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SecretUsed, SignatureError> {
        verifier.verify(&header_list(pairs), body, now)
    }

    // GitHub's documentation, "Validating webhook deliveries", "Testing the webhook
    // payload validation": secret "It's a Secret to Everybody", payload
    // "Hello, World!", signature sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17.
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_docs_vector() {
        assert_eq!(sign_github(GITHUB_SECRET, GITHUB_BODY), GITHUB_SIGNATURE);
        let verifier = Verifier::new(Scheme::Github, GITHUB_SECRET);
        // Header names are matched case-insensitively, as HTTP does.
        let h = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        assert_eq!(
            check(&verifier, &h, GITHUB_BODY, at(0)),
            Ok(SecretUsed::Current)
        );
        // Upper-case hex is the same signature.
        let upper = format!("sha256={}", GITHUB_SIGNATURE[7..].to_uppercase());
        let h = headers(&[("X-Hub-Signature-256", &upper)]);
        assert!(check(&verifier, &h, GITHUB_BODY, at(0)).is_ok());
        // One byte more in the body, and it is another message.
        assert_eq!(
            check(&verifier, &h, b"Hello, World!\n", at(0)),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn github_header_problems_are_named() {
        let verifier = Verifier::new(Scheme::Github, GITHUB_SECRET);
        let err = check(&verifier, &[], GITHUB_BODY, at(0)).unwrap_err();
        assert_eq!(err.to_string(), "missing header `X-Hub-Signature-256`");
        // The SHA-1 form GitHub also sends is not accepted as the SHA-256 one.
        let h = headers(&[("X-Hub-Signature-256", &GITHUB_SIGNATURE[7..])]);
        assert!(matches!(
            check(&verifier, &h, GITHUB_BODY, at(0)),
            Err(SignatureError::MalformedHeader { .. })
        ));
        let h = headers(&[("X-Hub-Signature-256", "sha256=abc")]);
        assert!(matches!(
            check(&verifier, &h, GITHUB_BODY, at(0)),
            Err(SignatureError::MalformedHeader { .. })
        ));
    }

    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn hex_scheme_matches_rfc_4231() {
        let tag = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign_hex(b"Jefe", b"what do ya want for nothing?"), tag);
        let verifier = Verifier::new(Scheme::Hex, b"Jefe");
        let h = headers(&[("x-signature", &tag.to_uppercase())]);
        assert!(check(&verifier, &h, b"what do ya want for nothing?", at(0)).is_ok());
        let named = Verifier::new(Scheme::Hex, b"Jefe").with_header(Some("X-Acme-Signature"));
        assert_eq!(
            check(&named, &h, b"what do ya want for nothing?", at(0))
                .unwrap_err()
                .to_string(),
            "missing header `X-Acme-Signature`"
        );
        let h = headers(&[("X-Acme-Signature", tag)]);
        assert!(check(&named, &h, b"what do ya want for nothing?", at(0)).is_ok());
    }

    // stripe-dotnet, src/StripeTests/Services/Events/EventUtilityTest.cs: secret
    // "webhook_secret", timestamp 1533204620, the fixture
    // src/StripeTests/Resources/event_test_signature.json (with its final newline), and
    // the header below; that test verifies it with now = timestamp + 100 and tolerance
    // 300, and refuses it at timestamp + 400.
    const STRIPE_SECRET: &[u8] = b"webhook_secret";
    const STRIPE_TIMESTAMP: i64 = 1_533_204_620;
    const STRIPE_HEADER_VALUE: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    const STRIPE_BODY: &str = "{\n  \"id\": \"evt_123\",\n  \"object\": \"event\",\n  \"account\": \"acct_123\",\n  \"api_version\": \"2017-05-25\",\n  \"created\": 1533204620,\n  \"data\": {\n    \"object\": {\n      \"id\": \"cus_123\",\n      \"object\": \"customer\",\n      \"created\": 123456789,\n      \"email\": \"test@stripe.com\",\n      \"livemode\": false,\n      \"metadata\": {}\n    }\n  },\n  \"livemode\": false,\n  \"pending_webhooks\": 1,\n  \"request\": {\n    \"id\": \"req_123\",\n    \"idempotency_key\": \"idempotency-key-123\"\n  },\n  \"type\": \"customer.created\"\n}\n";

    #[test]
    fn stripe_library_vector() {
        let verifier = Verifier::new(Scheme::Stripe, STRIPE_SECRET);
        let h = headers(&[("stripe-signature", STRIPE_HEADER_VALUE)]);
        let body = STRIPE_BODY.as_bytes();
        assert_eq!(
            check(&verifier, &h, body, at(STRIPE_TIMESTAMP + 100)),
            Ok(SecretUsed::Current)
        );
        assert_eq!(
            sign_stripe(STRIPE_SECRET, STRIPE_TIMESTAMP, body),
            STRIPE_HEADER_VALUE[..STRIPE_HEADER_VALUE.find(",v0=").unwrap_or(0)]
        );
        assert_eq!(
            check(&verifier, &h, body, at(STRIPE_TIMESTAMP + 400)),
            Err(SignatureError::Stale {
                behind_secs: 400,
                over_secs: 100,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check(&verifier, &h, body, at(STRIPE_TIMESTAMP - 301))
                .unwrap_err()
                .to_string(),
            "signature timestamp is 301 s in the future, 1 s past the 300 s tolerance"
        );
        // Exactly at the edge is accepted, both ways.
        assert!(check(&verifier, &h, body, at(STRIPE_TIMESTAMP + 300)).is_ok());
        assert!(check(&verifier, &h, body, at(STRIPE_TIMESTAMP - 300)).is_ok());
        // stripe-dotnet's RejectIncorrectSignature: the body changed.
        let changed = format!("{STRIPE_BODY}this_changes_the_json");
        assert_eq!(
            check(&verifier, &h, changed.as_bytes(), at(STRIPE_TIMESTAMP)),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn stripe_accepts_any_v1_and_ignores_v0_and_junk() {
        let secret = b"whsec_test_secret";
        let body = b"{}";
        let good = sign_stripe(secret, 1_700_000_000, body);
        let tag = &good[good.find("v1=").unwrap_or(0) + 3..];
        let verifier = Verifier::new(Scheme::Stripe, secret);
        let zeros = "0".repeat(64);
        for value in [
            format!("t=1700000000,v1={zeros},v1={tag}"),
            format!("t=1700000000,v1=bad_signature,v1={tag},v0={zeros}"),
            format!("{good},v1=bad_signature"),
        ] {
            let h = headers(&[("Stripe-Signature", &value)]);
            assert!(
                check(&verifier, &h, body, at(1_700_000_000)).is_ok(),
                "{value}"
            );
        }
        // Only a v0 (the test-mode scheme) is not enough.
        let h = headers(&[("Stripe-Signature", &format!("t=1700000000,v0={tag}"))]);
        assert!(matches!(
            check(&verifier, &h, body, at(1_700_000_000)),
            Err(SignatureError::MalformedHeader { .. })
        ));
        // Header values from stripe-dotnet's ValidateSignatureHandlesIncorrectHeaderValues.
        for value in [
            "t=,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7",
            "t,v1=,v0=",
            "t,,",
            ",,",
            "t",
            "i'm not even a real signature header",
        ] {
            let h = headers(&[("Stripe-Signature", value)]);
            assert!(
                matches!(
                    check(&verifier, &h, body, at(0)),
                    Err(SignatureError::MalformedHeader { .. })
                ),
                "{value}"
            );
        }
    }

    // The Standard Webhooks reference libraries' vector: libraries/go/webhook_test.go,
    // TestWebhookSign, in github.com/standard-webhooks/standard-webhooks (also in the
    // svix-webhooks libraries).
    const SW_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_headers(signature: &str, timestamp: &str) -> Vec<(String, String)> {
        headers(&[
            ("Webhook-Id", SW_ID),
            ("Webhook-Timestamp", timestamp),
            ("Webhook-Signature", signature),
        ])
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        assert_eq!(
            sign_standard_webhooks(SW_SECRET, SW_ID, SW_TIMESTAMP, SW_BODY),
            Ok(SW_SIGNATURE.to_owned())
        );
        // The reference libraries accept the secret without its prefix too.
        assert_eq!(
            sign_standard_webhooks(&SW_SECRET[6..], SW_ID, SW_TIMESTAMP, SW_BODY),
            Ok(SW_SIGNATURE.to_owned())
        );
        let verifier = Verifier::new(Scheme::StandardWebhooks, SW_SECRET);
        let h = sw_headers(SW_SIGNATURE, "1614265330");
        assert!(check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP + 10)).is_ok());
        // The reference tests' multi-signature header: a valid one among others.
        let multi = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SW_SIGNATURE} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        let h = sw_headers(&multi, "1614265330");
        assert!(check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP)).is_ok());
        // Their "invalid signature is invalid".
        let h = sw_headers(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "1614265330",
        );
        assert_eq!(
            check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP)),
            Err(SignatureError::NoMatch)
        );
        // The id is signed: another id, another message.
        let mut h = sw_headers(SW_SIGNATURE, "1614265330");
        h[0].1 = "msg_other".into();
        assert_eq!(
            check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP)),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn standard_webhooks_tolerance_and_missing_headers() {
        let verifier = Verifier::new(Scheme::StandardWebhooks, SW_SECRET);
        let h = sw_headers(SW_SIGNATURE, "1614265330");
        assert!(matches!(
            check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP + 301)),
            Err(SignatureError::Stale { over_secs: 1, .. })
        ));
        assert!(matches!(
            check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP - 301)),
            Err(SignatureError::Future { over_secs: 1, .. })
        ));
        for missing in 0..3 {
            let mut h = sw_headers(SW_SIGNATURE, "1614265330");
            let name = h.remove(missing).0.to_ascii_lowercase();
            assert_eq!(
                check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP)),
                Err(SignatureError::MissingHeader { header: name })
            );
        }
        let h = sw_headers(SW_SIGNATURE, "1614265330.5");
        assert!(matches!(
            check(&verifier, &h, SW_BODY, at(SW_TIMESTAMP)),
            Err(SignatureError::MalformedHeader { .. })
        ));
        let bad = Verifier::new(Scheme::StandardWebhooks, b"whsec_not base64!");
        let h = sw_headers(SW_SIGNATURE, "1614265330");
        let err = check(&bad, &h, SW_BODY, at(SW_TIMESTAMP)).unwrap_err();
        assert!(matches!(err, SignatureError::UnusableSecret { .. }));
        assert!(!err.to_string().contains("not base64!"));
    }

    #[test]
    fn a_rotation_accepts_both_secrets_and_says_which() {
        let new = b"whsec_bmV3LXNlY3JldC1ieXRlcw==";
        let body = b"{\"a\":1}";
        let now = at(1_700_000_000);
        for scheme in [
            Scheme::Github,
            Scheme::Stripe,
            Scheme::StandardWebhooks,
            Scheme::Hex,
        ] {
            let rotating = Verifier::new(scheme, new).with_previous(Some(SW_SECRET));
            let by_old = sign(scheme, None, SW_SECRET, body, "msg_1", now).unwrap();
            let by_new = sign(scheme, None, new, body, "msg_1", now).unwrap();
            assert_eq!(
                check(&rotating, &by_new, body, now),
                Ok(SecretUsed::Current)
            );
            assert_eq!(
                check(&rotating, &by_old, body, now),
                Ok(SecretUsed::Previous)
            );
            // Once the rotation is over, the old secret is refused.
            let done = Verifier::new(scheme, new);
            assert_eq!(
                check(&done, &by_old, body, now),
                Err(SignatureError::NoMatch)
            );
        }
    }

    #[test]
    fn errors_never_carry_the_secret_or_the_expected_signature() {
        let secret = b"whsec_c3VwZXItc2VjcmV0LXZhbHVl";
        let body = b"{}";
        let now = at(1_700_000_000);
        for scheme in [
            Scheme::Github,
            Scheme::Stripe,
            Scheme::StandardWebhooks,
            Scheme::Hex,
        ] {
            let expected = sign(scheme, None, secret, body, "msg_1", now).unwrap();
            let forged = sign(scheme, None, b"whsec_b3RoZXI=", body, "msg_1", now).unwrap();
            let verifier = Verifier::new(scheme, secret);
            for when in [now, at(1_700_001_000), at(1_600_000_000)] {
                let Err(err) = check(&verifier, &forged, body, when) else {
                    panic!("a forged delivery passed");
                };
                let text = format!("{err} {err:?}");
                assert!(
                    !text.contains("c3VwZXIt") && !text.contains("whsec_"),
                    "{text}"
                );
                for (_, value) in &expected {
                    let tag = value.rsplit(['=', ',']).next().unwrap_or(value);
                    assert!(tag.len() < 20 || !text.contains(tag), "{text}");
                }
            }
        }
    }

    #[test]
    fn scheme_names_round_trip() {
        for name in Scheme::NAMES {
            assert_eq!(Scheme::from_name(name).map(Scheme::name), Some(*name));
        }
        assert_eq!(Scheme::from_name("sha1"), None);
    }

    #[test]
    fn json_payload_depth_is_checked_before_parsing() {
        assert_eq!(
            parse_json_payload(b"[[1]]", 2),
            Ok(serde_json::json!([[1]]))
        );
        assert_eq!(parse_json_payload(b"7", 0), Ok(serde_json::json!(7)));
        assert_eq!(
            parse_json_payload(b"{\"a\":\n  [[1]]}", 2),
            Err(PayloadError::TooDeep {
                max_depth: 2,
                line: 2,
                column: 4
            })
        );
        // Brackets inside strings, escaped quotes included, are text.
        assert!(parse_json_payload(br#"{"a":"[[[[\"[[[["}"#, 1).is_ok());
        // A hostile nesting is refused in one pass, at its 65th bracket.
        let hostile = vec![b'['; 100_000];
        let started = std::time::Instant::now();
        assert_eq!(
            parse_json_payload(&hostile, 64),
            Err(PayloadError::TooDeep {
                max_depth: 64,
                line: 1,
                column: 65
            })
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Limits past serde_json's own are clamped to it rather than failing oddly.
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(parse_json_payload(deep.as_bytes(), 1_000).is_ok());
    }

    #[test]
    fn malformed_json_reports_serde_positions() {
        let err = parse_json_payload(b"{\n  \"a\": 1,\n  \"b\": ,\n}", 64).unwrap_err();
        let PayloadError::Malformed {
            line,
            column,
            message,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((*line, *column), (3, 8));
        assert!(!message.contains("at line"), "{message}");
        assert_eq!(
            err.to_string(),
            format!("malformed JSON at line 3, column 8: {message}")
        );
        assert!(matches!(
            parse_json_payload(b"", 64),
            Err(PayloadError::Malformed {
                line: 1,
                column: 0,
                ..
            })
        ));
    }

    fn any_scheme() -> impl Strategy<Value = Scheme> {
        prop_oneof![
            Just(Scheme::Github),
            Just(Scheme::Stripe),
            Just(Scheme::StandardWebhooks),
            Just(Scheme::Hex),
        ]
    }

    proptest! {
        #[test]
        fn signed_deliveries_verify(
            scheme in any_scheme(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            key in proptest::collection::vec(any::<u8>(), 1..64),
            t in 1_000_000_000i64..4_000_000_000,
            skew in -300i64..=300,
        ) {
            let secret = format!("whsec_{}", BASE64.encode(&key));
            let h = sign(scheme, None, secret.as_bytes(), &body, "msg_x", at(t)).unwrap();
            let verifier = Verifier::new(scheme, secret.as_bytes());
            prop_assert_eq!(check(&verifier, &h, &body, at(t + skew)), Ok(SecretUsed::Current));
        }

        #[test]
        fn any_flipped_byte_fails(
            scheme in any_scheme(),
            body in proptest::collection::vec(any::<u8>(), 1..256),
            which in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            in_signature in any::<bool>(),
        ) {
            let secret = b"whsec_c2VjcmV0LWZvci1mbGlwcw==";
            let now = at(1_700_000_000);
            let mut h = sign(scheme, None, secret, &body, "msg_x", now).unwrap();
            let mut body = body;
            if in_signature {
                // Flip one byte of the signature itself (the last header is the signature).
                let Some((_, value)) = h.last_mut() else { unreachable!() };
                let start = match scheme {
                    Scheme::Github => "sha256=".len(),
                    Scheme::Stripe => value.find("v1=").map_or(0, |i| i + 3),
                    Scheme::StandardWebhooks => "v1,".len(),
                    Scheme::Hex => 0,
                };
                let mut bytes = value.clone().into_bytes();
                let i = start + which.index(bytes.len() - start);
                // Hex is read in either case: a flip that only changes a letter's case
                // writes the same signature.
                prop_assume!(!(bytes[i] ^ flip).eq_ignore_ascii_case(&bytes[i]));
                bytes[i] ^= flip;
                *value = String::from_utf8_lossy(&bytes).into_owned();
            } else {
                let i = which.index(body.len());
                body[i] ^= flip;
            }
            let verifier = Verifier::new(scheme, secret);
            prop_assert!(check(&verifier, &h, &body, now).is_err());
        }
    }

    /// `../production/orders` passed `validate` and was served at the literal path.
    #[test]
    fn paths_that_only_look_safe_are_refused() {
        for (path, key) in [
            ("orders", "orders"),
            ("/orders/", "orders"),
            ("shop/orders.v2", "shop/orders.v2"),
            ("a-b_c/...", "a-b_c/..."),
        ] {
            assert_eq!(hook_path(path).as_deref(), Ok(key), "{path}");
        }
        for (path, refused) in [
            ("../production/orders", "`..` segment"),
            ("orders/../../production/orders", "`..` segment"),
            ("./orders", "`.` segment"),
            ("orders/.", "`.` segment"),
            ("a//b", "empty segment"),
            ("//orders", "empty segment"),
            ("orders//", "empty segment"),
            ("/", "is empty"),
            ("", "is empty"),
            ("a%2fb", "separator `%2f`"),
            ("a%2Fb", "separator `%2F`"),
            ("a%5cb", "separator `%5c`"),
            ("a%5Cb", "separator `%5C`"),
            ("%2e%2e/production", "character `%2e`"),
            ("a\\b", "backslash"),
            ("a b", "holds ` `"),
            ("ordérs", "holds `é`"),
        ] {
            let error = hook_path(path).expect_err(path);
            assert!(error.to_string().contains(refused), "{path}: {error}");
            assert!(error.range().end <= path.len(), "{path}: {error:?}");
        }
        assert_eq!(
            hook_path("x/../y").expect_err("dot").range(),
            2..4,
            "the range names the segment"
        );
    }
}
