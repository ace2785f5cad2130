//! The audit chain anchored outside itself: its head (the newest event's sequence number
//! and hash), the chain's verification against an anchor taken earlier, and the anchor
//! file a server keeps up to date.
//!
//! A chain cut short is still a valid chain: every event left links to the one before
//! it. Only a head written down elsewhere (a file backed up off the machine, another
//! system, a release record) shows that events were removed from its end, so `audit
//! verify --expect SEQ:HASH` checks the chain against one.

use super::OpsError;
pub use airlock_core::audit::{AnchorMismatch, AuditHead};
use airlock_store::{Store, check_anchor, verify_audit_chain};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The newest event's sequence number and hash; `None` while the log is empty. One row
/// read, whatever the log's length: what `airlock audit head`, `GET /api/v1/audit/head`,
/// the server's anchor file and a release record take.
pub async fn audit_head(store: &dyn Store) -> Result<Option<AuditHead>, OpsError> {
    Ok(store.audit_head().await?)
}

/// The chain's head as `airlock audit head --json` prints it and the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Head {
    /// The newest event; `null` while the log is empty.
    #[schema(value_type = Option<Object>)]
    pub head: Option<AuditHead>,
    /// The same as `SEQ:HASH`, what `audit verify --expect` takes.
    pub anchor: Option<String>,
}

/// [`audit_head`], answered as [`Head`].
pub async fn head(store: &dyn Store) -> Result<Head, OpsError> {
    let head = audit_head(store).await?;
    Ok(Head {
        anchor: head.as_ref().map(ToString::to_string),
        head,
    })
}

/// What `airlock audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Events in the chain.
    pub events: usize,
    /// The chain is intact and, when an anchor was given, holds it.
    pub ok: bool,
    /// The first event that does not fit the chain (changed, removed, inserted or
    /// renumbered), if any.
    pub first_bad: Option<i64>,
    /// The chain's newest event.
    pub head: Option<AuditHead>,
    /// The anchor it was checked against, if one was given.
    pub anchor: Option<AuditHead>,
    /// How the chain fails to hold the anchor, if it does.
    pub anchor_mismatch: Option<AnchorMismatch>,
}

/// Checks the whole chain, and against `anchor` when one is given: an anchor past the
/// chain's end names the events missing, and one whose event now has another hash names
/// that event. Reads the whole log, by design.
pub async fn verify(
    store: &dyn Store,
    anchor: Option<&AuditHead>,
) -> Result<Verification, OpsError> {
    let events = store.audit_log().await?;
    let first_bad = verify_audit_chain(&events).err();
    let anchor_mismatch = anchor.and_then(|anchor| check_anchor(&events, anchor).err());
    Ok(Verification {
        events: events.len(),
        ok: first_bad.is_none() && anchor_mismatch.is_none(),
        first_bad,
        head: events.last().map(|e| AuditHead {
            seq: e.seq,
            hash: e.hash.clone(),
        }),
        anchor: anchor.cloned(),
        anchor_mismatch,
    })
}

/// Writes the chain's head to `path` as one `SEQ:HASH` line, atomically: a temporary file
/// beside it, flushed, then renamed over it, so a reader (a backup, a shipper) never sees
/// half an anchor. Writes nothing while the log is empty. Returns the head written.
pub async fn write_anchor(store: &dyn Store, path: &Path) -> Result<Option<AuditHead>, OpsError> {
    let Some(head) = audit_head(store).await? else {
        return Ok(None);
    };
    write_anchor_file(path, &head).map_err(|e| OpsError::Unavailable {
        message: format!("cannot write the audit anchor to {}: {e}", path.display()),
    })?;
    Ok(Some(head))
}

fn write_anchor_file(path: &Path, head: &AuditHead) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        writeln!(file, "{head}")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::{NewAuditEvent, SqliteStore};

    async fn store_with(events: i64) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = SqliteStore::open(&dir.path().join("airlock.db")).expect("a store");
        for n in 1..=events {
            store
                .audit(&NewAuditEvent {
                    at: n,
                    actor: "ana".into(),
                    action: "deploy".into(),
                    environment: Some("staging".into()),
                    subject: format!("w{n}"),
                    detail: serde_json::json!({}),
                })
                .await
                .expect("audit");
        }
        (dir, store)
    }

    #[tokio::test]
    async fn the_anchor_file_holds_the_head_and_is_replaced_whole() {
        let (dir, store) = store_with(0).await;
        let path = dir.path().join("anchor");
        assert_eq!(write_anchor(&store, &path).await.expect("written"), None);
        assert!(!path.exists(), "nothing to anchor in an empty log");
        let (dir, store) = store_with(3).await;
        let path = dir.path().join("anchor");
        std::fs::write(
            &path,
            "an older, longer anchor that must not survive in part\n",
        )
        .expect("an old file");
        let head = write_anchor(&store, &path)
            .await
            .expect("written")
            .expect("a head");
        let text = std::fs::read_to_string(&path).expect("the anchor");
        assert_eq!(text, format!("{head}\n"));
        assert_eq!(text.parse::<AuditHead>(), Ok(head.clone()));
        assert_eq!(head.seq, 3);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("the folder")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "no temporary file left: {leftovers:?}"
        );
        let verified = verify(&store, Some(&head)).await.expect("verified");
        assert!(verified.ok, "{verified:?}");
    }

    #[tokio::test]
    async fn an_anchor_file_that_cannot_be_written_is_an_error() {
        let (dir, store) = store_with(1).await;
        let path = dir.path().join("no-such-folder").join("anchor");
        let error = write_anchor(&store, &path).await.expect_err("no folder");
        assert!(
            error
                .to_string()
                .starts_with("cannot write the audit anchor to "),
            "{error}"
        );
    }
}
