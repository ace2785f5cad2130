//! Cron triggers: each deployed workflow with a schedule fires once per tick, per
//! environment that runs it, whatever the number of server processes.
//!
//! Two mechanisms, both in the store, so they hold across processes and machines: a
//! tick's run is enqueued with the dedupe key `cron:{workflow}:{tick}`, so racing
//! processes create one run; and a per-(environment, workflow) cursor, moved by
//! compare-and-set, records how far ticks were considered, so ticks missed while no
//! server ran are found after a restart and handled by the trigger's catch-up policy.

use crate::App;
use crate::routes::Route;
use airlock_core::model::workflow::Trigger;
use airlock_core::schedule::{self, CatchUp};
use airlock_store::NewRun;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// At most this many missed ticks are fired at once by the `all` policy.
const CATCH_UP_LIMIT: usize = 1_000;

pub(crate) async fn run(
    app: Arc<App>,
    tick: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        for route in app.routes.schedules() {
            if let Err(e) = fire_due(&app, &route).await {
                tracing::warn!(
                    environment = %route.environment,
                    workflow = %route.workflow,
                    error = %e,
                    "a schedule could not fire"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Fires the ticks of one schedule that came since its cursor; returns the runs created.
pub(crate) async fn fire_due(app: &App, route: &Route) -> Result<usize, String> {
    let Some(Trigger::Cron {
        schedule: expression,
        timezone,
        catch_up,
    }) = &route.definition.trigger
    else {
        return Ok(0);
    };
    let store = &app.store;
    let now_ms = app.clock.now();
    let cursor = store
        .schedule_cursor(&route.environment, &route.workflow)
        .await
        .map_err(|e| e.to_string())?;
    let policy = CatchUp::from_name(catch_up)
        .ok_or_else(|| format!("unknown catch-up policy `{catch_up}`"))?;
    let cursor = cursor.map(utc);
    let now = utc(now_ms);
    let ticks = schedule::due_ticks(expression, timezone, cursor, now, policy, CATCH_UP_LIMIT)
        .map_err(|e| e.to_string())?;
    let mut created = 0;
    for tick in &ticks {
        let tick_ms = tick.timestamp_millis();
        let time = tick.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let enqueued = store
            .enqueue(&NewRun {
                id: airlock_engine::new_run_id(),
                environment: route.environment.clone(),
                workflow: route.workflow.clone(),
                version: route.version.clone(),
                trigger: json!({
                    "body": {},
                    "headers": {},
                    "query": {},
                    "time": time,
                    "schedule": { "tick": time, "expression": expression, "timezone": timezone },
                })
                .into(),
                dedupe_key: Some(format!("cron:{}:{tick_ms}", route.workflow)),
                created_at: now_ms,
            })
            .await
            .map_err(|e| e.to_string())?;
        if enqueued.created {
            created += 1;
            tracing::info!(
                environment = %route.environment,
                workflow = %route.workflow,
                tick = %time,
                run = %enqueued.run,
                "schedule fired"
            );
        }
    }
    // Another process may have moved the cursor meanwhile; its runs and ours are the same
    // runs (dedupe keys), so losing this race changes nothing.
    if let Some(next) = schedule::next_cursor(cursor, &ticks, now) {
        store
            .advance_schedule(
                &route.environment,
                &route.workflow,
                cursor.map(|c| c.timestamp_millis()),
                next.timestamp_millis(),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(created)
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}
