//! Who answers for a run: the release it ran on and that release's owners. The engine
//! reads it for templates (`{{ release.* }}`), and the notifications of a run's failure
//! (`airlock_ops::notify`) for their recipients: one lookup, one rule.

use airlock_core::release::{Release, ran_on};
use airlock_store::Store;

/// The release a run of `version` ran on and who owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct RanOn {
    /// The release ([`airlock_core::release::ran_on`]); `None` where the environment
    /// deploys (an unprotected one) or the version was never released there.
    pub release: Option<Release>,
    /// Its owner then its co-owners; where nothing was released, who deployed the
    /// version the environment runs, when it is this one.
    pub owners: Vec<String>,
}

/// What a run of `version` of `workflow` in `environment` ran on: two indexed reads at
/// most (the release history, then the deployment where nothing was released).
pub async fn ran_on_release(
    store: &dyn Store,
    environment: &str,
    workflow: &str,
    version: &str,
) -> Result<RanOn, airlock_store::Error> {
    let history = store.releases(environment, workflow).await?;
    if let Some(release) = ran_on(&history, version) {
        return Ok(RanOn {
            owners: release.owners(),
            release: Some(release.clone()),
        });
    }
    let owners = match store.deployment(environment, workflow).await? {
        Some(d) if d.version == version => vec![d.actor],
        _ => Vec::new(),
    };
    Ok(RanOn {
        release: None,
        owners,
    })
}
