//! Which deployed workflow version answers which webhook, per environment.
//!
//! Built from the store's deployments, so a deploy, a promotion or a rollback made by any
//! process (the CLI, another server) is picked up within [`REFRESH`]; a version is
//! immutable, so its decoded definition is cached by id forever.

use crate::App;
use airlock_core::model::workflow::{Trigger, Workflow};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the table is rebuilt from the store.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// One deployed workflow version in one environment.
#[derive(Debug)]
pub(crate) struct Route {
    pub environment: String,
    pub workflow: String,
    pub version: String,
    pub definition: Arc<Workflow>,
}

#[derive(Default)]
struct Table {
    /// (environment, webhook path) → route.
    hooks: HashMap<(String, String), Arc<Route>>,
    /// Every deployed workflow with a cron trigger.
    schedules: Vec<Arc<Route>>,
}

/// The current routes, swapped whole on refresh.
#[derive(Default)]
pub(crate) struct RouteTable {
    table: RwLock<Arc<Table>>,
    definitions: RwLock<HashMap<String, Arc<Workflow>>>,
}

impl RouteTable {
    /// The route of a webhook path in an environment.
    pub fn hook(&self, environment: &str, path: &str) -> Option<Arc<Route>> {
        let table = self.table.read().ok()?.clone();
        table
            .hooks
            .get(&(environment.to_owned(), path.to_owned()))
            .cloned()
    }

    /// Every deployed workflow with a schedule.
    pub fn schedules(&self) -> Vec<Arc<Route>> {
        self.table
            .read()
            .map(|t| t.schedules.clone())
            .unwrap_or_default()
    }

    /// Rebuilds the table from the store's deployments.
    pub async fn refresh(&self, app: &App) -> Result<(), airlock_store::Error> {
        let mut table = Table::default();
        for environment in &app.manifest.environments {
            let environment = environment.name.value.as_str();
            for deployment in app.store.deployments(Some(environment)).await? {
                if deployment.workflow == airlock_core::config::CONFIG_SUBJECT {
                    continue;
                }
                let Some(definition) = self.definition(app, &deployment.version).await? else {
                    continue;
                };
                let route = Arc::new(Route {
                    environment: environment.to_owned(),
                    workflow: deployment.workflow.clone(),
                    version: deployment.version.clone(),
                    definition: definition.clone(),
                });
                match &definition.trigger {
                    Some(Trigger::Webhook { path, .. }) => {
                        let key = (environment.to_owned(), path.clone());
                        if let Some(taken) = table.hooks.get(&key) {
                            tracing::warn!(
                                environment,
                                path,
                                kept = %taken.workflow,
                                ignored = %route.workflow,
                                "two deployed workflows claim one webhook path"
                            );
                            continue;
                        }
                        table.hooks.insert(key, route);
                    }
                    Some(Trigger::Cron { .. }) => table.schedules.push(route),
                    _ => {}
                }
            }
        }
        if let Ok(mut current) = self.table.write() {
            *current = Arc::new(table);
        }
        Ok(())
    }

    async fn definition(
        &self,
        app: &App,
        version: &str,
    ) -> Result<Option<Arc<Workflow>>, airlock_store::Error> {
        if let Some(found) = self
            .definitions
            .read()
            .ok()
            .and_then(|d| d.get(version).cloned())
        {
            return Ok(Some(found));
        }
        let Some(stored) = app.store.version(version).await? else {
            tracing::warn!(
                version,
                "a deployment names a version the store does not hold"
            );
            return Ok(None);
        };
        let workflow = match airlock_core::model::workflow::decode_source(&stored.source) {
            Ok(w) => Arc::new(w),
            Err(reason) => {
                tracing::warn!(version, %reason, "a deployed version does not decode");
                return Ok(None);
            }
        };
        if let Ok(mut definitions) = self.definitions.write() {
            definitions.insert(version.to_owned(), workflow.clone());
        }
        Ok(Some(workflow))
    }
}
