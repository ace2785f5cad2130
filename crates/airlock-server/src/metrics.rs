//! `/metrics` in Prometheus format, fed by the engine's observer and the webhook handler.

use crate::ServerError;
use crate::completions::{Completions, Outcome};
use airlock_engine::Observer;
use airlock_store::{NewJournalEntry, Run, RunFilter, RunStatus, Settlement, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

/// Step latency buckets, in seconds: from a map step (sub-millisecond) to a slow call.
const STEP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's metrics recorder. Metrics are process-global (one recorder per process),
/// so every server in a process shares one.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

impl Metrics {
    /// Installs the recorder (once per process) and describes the metrics.
    pub fn install() -> Result<Self, ServerError> {
        let handle = HANDLE
            .get_or_init(|| {
                let handle = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full("airlock_step_duration_seconds".into()),
                        STEP_BUCKETS,
                    )
                    .map_err(|e| e.to_string())?
                    .install_recorder()
                    .map_err(|e| e.to_string())?;
                metrics::describe_counter!(
                    "airlock_runs_total",
                    "Runs finished, by workflow, environment and status."
                );
                metrics::describe_histogram!(
                    "airlock_step_duration_seconds",
                    metrics::Unit::Seconds,
                    "Step attempt latency, by workflow, environment and status."
                );
                metrics::describe_gauge!("airlock_queue_depth", "Runs queued and not yet started.");
                metrics::describe_counter!(
                    "airlock_webhook_requests_total",
                    "Webhook deliveries, by environment and outcome."
                );
                Ok(handle)
            })
            .clone()
            .map_err(ServerError::Metrics)?;
        Ok(Self { handle })
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Counts one webhook delivery's outcome (`accepted`, `duplicate`, `unauthorized`, …).
    pub fn webhook(&self, environment: &str, outcome: &'static str) {
        metrics::counter!(
            "airlock_webhook_requests_total",
            "environment" => environment.to_owned(),
            "outcome" => outcome
        )
        .increment(1);
    }

    /// Samples the queue depth from the store.
    pub async fn queue_depth(&self, store: &dyn Store) {
        let queued = store
            .count_runs(&RunFilter {
                status: Some(RunStatus::Queued),
                ..RunFilter::default()
            })
            .await;
        if let Ok(queued) = queued {
            metrics::gauge!("airlock_queue_depth").set(queued as f64);
        }
    }
}

/// Watches the engine: counts runs and step latencies, answers synchronous webhooks.
pub(crate) struct EngineObserver {
    _metrics: Metrics,
    completions: Arc<Completions>,
}

impl EngineObserver {
    pub fn new(metrics: Metrics, completions: Arc<Completions>) -> Self {
        Self {
            _metrics: metrics,
            completions,
        }
    }
}

impl Observer for EngineObserver {
    fn journaled(&self, run: &Run, entries: &[NewJournalEntry]) {
        for entry in entries {
            let Some(finished) = entry.finished_at else {
                continue;
            };
            let seconds = (finished - entry.started_at).max(0) as f64 / 1000.0;
            metrics::histogram!(
                "airlock_step_duration_seconds",
                "workflow" => run.workflow.clone(),
                "environment" => run.environment.clone(),
                "status" => entry.status.as_str()
            )
            .record(seconds);
        }
    }

    fn settled(&self, run: &Run, settlement: &Settlement) {
        if let Settlement::Finish {
            status,
            output,
            error,
            ..
        } = settlement
        {
            metrics::counter!(
                "airlock_runs_total",
                "workflow" => run.workflow.clone(),
                "environment" => run.environment.clone(),
                "status" => status.as_str()
            )
            .increment(1);
            self.completions.finished(&run.id, || Outcome {
                run: run.id.clone(),
                status: *status,
                output: output.clone(),
                error: error.clone(),
            });
        }
    }
}
