//! The audit log: append-only events in a SHA-256 hash chain, so an edited event is
//! detected by [`verify_audit_chain`]; and the chain's head ([`AuditHead`]), kept outside
//! the store as an anchor, so that events removed from its end are detected too
//! ([`check_anchor`]): a chain cut short is still a valid chain on its own.

use crate::run::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// When.
    pub at: Timestamp,
    /// Who (a person, a token name, or `airlock` for the engine).
    pub actor: String,
    /// What (`deploy`, `secret.set`, `approve-step`, `refused`, …).
    pub action: String,
    /// The environment it concerns, if any.
    pub environment: Option<String>,
    /// The thing acted on (a workflow, a secret name, a run).
    pub subject: String,
    /// Details (never secret values).
    pub detail: Value,
}

/// An audit event in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: NewAuditEvent,
    /// The previous event's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the event's canonical JSON.
    pub hash: String,
}

impl AuditEvent {
    /// The hash an event must carry given the previous hash.
    pub fn compute_hash(prev_hash: &str, event: &NewAuditEvent) -> String {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_string(event).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(body.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Checks a whole chain; returns the sequence number of the first event that does not fit.
///
/// Sequence numbers must follow each other from 1: they are not hashed, so a renumbered
/// event would otherwise pass, and an anchor names its event by number.
pub fn verify_audit_chain(events: &[AuditEvent]) -> Result<(), i64> {
    let mut prev = GENESIS_HASH.to_owned();
    for (expected_seq, event) in (1..).zip(events) {
        if event.seq != expected_seq
            || event.prev_hash != prev
            || event.hash != AuditEvent::compute_hash(&prev, &event.event)
        {
            return Err(event.seq);
        }
        prev = event.hash.clone();
    }
    Ok(())
}

/// The newest event of the chain: its sequence number and hash. Written down outside the
/// store (a file, another system), it is an anchor: a later chain must still hold that
/// event, unchanged, at that position. Reads and writes as `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The event's position in the chain, from 1.
    pub seq: i64,
    /// Its hash (64 lowercase hex digits).
    pub hash: String,
}

impl std::fmt::Display for AuditHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for AuditHead {
    type Err = String;

    /// `SEQ:HASH`, as `airlock audit head` prints it (surrounding whitespace ignored, so a
    /// file's trailing newline does not matter; the hash in either case).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (seq, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` is not SEQ:HASH"))?;
        let seq: i64 = seq
            .parse()
            .ok()
            .filter(|seq| *seq >= 1)
            .ok_or_else(|| format!("`{seq}` is not an event number (1 or more)"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not an event hash (64 hex digits)"));
        }
        Ok(Self {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// How a chain fails to hold an anchor taken earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnchorMismatch {
    /// The events `from` to `to` are not in the chain, which ends at `ends_at` (0: empty).
    Missing {
        /// The first missing event.
        from: i64,
        /// The last missing event: the anchor's.
        to: i64,
        /// The chain's newest event.
        ends_at: i64,
    },
    /// The event at the anchor's position is not the anchored one.
    Differs {
        /// Its position.
        seq: i64,
        /// The hash the anchor holds.
        anchored: String,
        /// The hash the chain holds there.
        found: String,
    },
}

impl std::fmt::Display for AnchorMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { from, ends_at, .. } if ends_at >= from => write!(
                f,
                "event {from} is missing from the chain, which goes on to {ends_at}"
            ),
            Self::Missing { from, to, ends_at } if from == to => {
                write!(f, "event {from} is missing: the chain ends at {ends_at}")
            }
            Self::Missing { from, to, ends_at } => {
                write!(
                    f,
                    "events {from}–{to} are missing: the chain ends at {ends_at}"
                )
            }
            Self::Differs {
                seq,
                anchored,
                found,
            } => write!(
                f,
                "event {seq} differs from the anchor: its hash is {found}, the anchor's {anchored}"
            ),
        }
    }
}

/// Checks that `events` (a whole chain, oldest first) still hold `anchor`: the chain
/// reaches the anchor's position and the event there has the anchored hash. Since each
/// hash covers every event before it, that one comparison vouches for the whole prefix;
/// [`verify_audit_chain`] vouches for what follows.
pub fn check_anchor(events: &[AuditEvent], anchor: &AuditHead) -> Result<(), AnchorMismatch> {
    let ends_at = events.last().map_or(0, |e| e.seq);
    if ends_at < anchor.seq {
        return Err(AnchorMismatch::Missing {
            from: ends_at + 1,
            to: anchor.seq,
            ends_at,
        });
    }
    match events.iter().find(|e| e.seq == anchor.seq) {
        Some(event) if event.hash.eq_ignore_ascii_case(&anchor.hash) => Ok(()),
        Some(event) => Err(AnchorMismatch::Differs {
            seq: anchor.seq,
            anchored: anchor.hash.clone(),
            found: event.hash.clone(),
        }),
        // A gap before the chain's end: the chain itself is broken there too.
        None => Err(AnchorMismatch::Missing {
            from: anchor.seq,
            to: anchor.seq,
            ends_at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let event = NewAuditEvent {
                    at: seq,
                    actor: "ana".into(),
                    action: "deploy".into(),
                    environment: Some("staging".into()),
                    subject: format!("w{seq}"),
                    detail: serde_json::json!({ "n": seq }),
                };
                let hash = AuditEvent::compute_hash(&prev, &event);
                let stored = AuditEvent {
                    seq,
                    event,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                stored
            })
            .collect()
    }

    fn head(events: &[AuditEvent], seq: i64) -> AuditHead {
        let e = &events[(seq - 1) as usize];
        AuditHead {
            seq: e.seq,
            hash: e.hash.clone(),
        }
    }

    #[test]
    fn a_chain_cut_short_of_its_anchor_names_the_missing_events() {
        let events = chain(45);
        let anchor = head(&events, 45);
        assert_eq!(check_anchor(&events, &anchor), Ok(()));
        let cut = &events[..40];
        assert_eq!(verify_audit_chain(cut), Ok(()), "a prefix is a valid chain");
        let missing = check_anchor(cut, &anchor).expect_err("cut short");
        assert_eq!(
            missing.to_string(),
            "events 41–45 are missing: the chain ends at 40"
        );
        let one = check_anchor(&events[..44], &anchor).expect_err("one short");
        assert_eq!(one.to_string(), "event 45 is missing: the chain ends at 44");
        let empty = check_anchor(&[], &anchor).expect_err("empty");
        assert_eq!(
            empty.to_string(),
            "events 1–45 are missing: the chain ends at 0"
        );
    }

    #[test]
    fn a_longer_chain_holds_its_anchor_and_a_rewritten_one_does_not() {
        let events = chain(50);
        assert_eq!(check_anchor(&events, &head(&events, 45)), Ok(()));
        // Cut at 40 and written again from there: as long, valid, and not the same.
        let mut rewritten = events[..40].to_vec();
        rewritten.extend(chain(50).into_iter().skip(40).map(|mut e| {
            e.event.actor = "mallory".into();
            e
        }));
        let mut prev = rewritten[39].hash.clone();
        for e in &mut rewritten[40..] {
            e.prev_hash = prev.clone();
            e.hash = AuditEvent::compute_hash(&prev, &e.event);
            prev = e.hash.clone();
        }
        assert_eq!(verify_audit_chain(&rewritten), Ok(()));
        match check_anchor(&rewritten, &head(&events, 45)) {
            Err(AnchorMismatch::Differs { seq: 45, .. }) => {}
            other => panic!("expected event 45 to differ, got {other:?}"),
        }
    }

    #[test]
    fn renumbered_events_break_the_chain() {
        let mut events = chain(3);
        events[2].seq = 7;
        assert_eq!(verify_audit_chain(&events), Err(7));
        let mut gap = chain(3);
        gap.remove(0);
        assert_eq!(verify_audit_chain(&gap), Err(2));
    }

    #[test]
    fn an_anchor_reads_and_writes_as_seq_colon_hash() {
        let hash = "ab".repeat(32);
        let anchor: AuditHead = format!(" 41:{}\n", hash.to_uppercase())
            .parse()
            .expect("parses");
        assert_eq!(
            anchor,
            AuditHead {
                seq: 41,
                hash: hash.clone()
            }
        );
        assert_eq!(anchor.to_string(), format!("41:{hash}"));
        for bad in [
            "41",
            "x:ab",
            "0:ab",
            &format!("-1:{hash}"),
            "41:abc",
            &format!("41:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<AuditHead>().is_err(), "{bad}");
        }
    }
}
