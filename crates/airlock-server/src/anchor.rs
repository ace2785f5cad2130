//! `serve --audit-anchor-file PATH`: the audit chain's head written to a file at start and
//! then at a fixed interval, and once more on the way out, so the anchor is never older
//! than one interval. The file is replaced whole each time (`ops::audit_chain`).

use crate::{App, AuditAnchor};
use airlock_ops::audit_chain;
use std::sync::Arc;

pub(crate) async fn run(
    app: Arc<App>,
    anchor: AuditAnchor,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        match audit_chain::write_anchor(&*app.store, &anchor.file).await {
            Ok(Some(head)) => {
                if last.as_ref() != Some(&head) {
                    tracing::info!(anchor = %head, file = %anchor.file.display(), "audit anchor written");
                    last = Some(head);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the audit anchor could not be written; it is tried again later")
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(anchor.every) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
