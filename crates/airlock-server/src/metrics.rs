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

/// Run duration buckets, in seconds: from a run of pure steps to one that waited on a
/// person for a day.
const RUN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    3600.0, 86400.0,
];

/// The process's metrics recorder. Metrics are process-global (one recorder per process),
/// so every server in a process shares one.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's own figures (CPU seconds, resident memory, open files, threads), read
/// from the OS at each scrape.
static PROCESS: std::sync::LazyLock<metrics_process::Collector> =
    std::sync::LazyLock::new(metrics_process::Collector::default);

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
                    .set_buckets_for_metric(
                        Matcher::Full("airlock_connector_call_duration_seconds".into()),
                        STEP_BUCKETS,
                    )
                    .map_err(|e| e.to_string())?
                    .set_buckets_for_metric(
                        Matcher::Full("airlock_run_duration_seconds".into()),
                        RUN_BUCKETS,
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
                metrics::describe_histogram!(
                    "airlock_run_duration_seconds",
                    metrics::Unit::Seconds,
                    "From a run's acceptance to its finish, by workflow, environment and status."
                );
                metrics::describe_counter!(
                    "airlock_connector_calls_total",
                    "Call attempts, by connector, environment and outcome (succeeded, failed)."
                );
                metrics::describe_histogram!(
                    "airlock_connector_call_duration_seconds",
                    metrics::Unit::Seconds,
                    "Call attempt latency, by connector, environment and outcome."
                );
                metrics::describe_gauge!(
                    "airlock_build_info",
                    "1, labelled with the version of the binary that runs."
                );
                metrics::gauge!("airlock_build_info", "version" => env!("CARGO_PKG_VERSION"))
                    .set(1.0);
                PROCESS.describe();
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
        PROCESS.collect();
        self.handle.render()
    }

    /// `/metrics`' answer: the text exposition, as Prometheus reads it.
    pub(crate) fn exposition(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            self.render(),
        )
            .into_response()
    }

    /// The engine's observer for a process that only executes (`airlock worker`): the
    /// same run, step and call metrics as a server's, no synchronous answers to give.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(EngineObserver {
            _metrics: self.clone(),
            completions: None,
        })
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
    completions: Option<Arc<Completions>>,
}

impl EngineObserver {
    pub fn new(metrics: Metrics, completions: Arc<Completions>) -> Self {
        Self {
            _metrics: metrics,
            completions: Some(completions),
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
            if let Settlement::Finish { at, .. } = settlement {
                metrics::histogram!(
                    "airlock_run_duration_seconds",
                    "workflow" => run.workflow.clone(),
                    "environment" => run.environment.clone(),
                    "status" => status.as_str()
                )
                .record((at - run.created_at).max(0) as f64 / 1000.0);
            }
            if let Some(completions) = &self.completions {
                completions.finished(&run.id, || Outcome {
                    run: run.id.clone(),
                    status: *status,
                    output: output.clone(),
                    error: error.clone(),
                });
            }
        }
    }

    fn called(&self, run: &Run, connector: &str, result: &NewJournalEntry) {
        let outcome = result.status.as_str();
        metrics::counter!(
            "airlock_connector_calls_total",
            "connector" => connector.to_owned(),
            "environment" => run.environment.clone(),
            "outcome" => outcome
        )
        .increment(1);
        if let Some(finished) = result.finished_at {
            metrics::histogram!(
                "airlock_connector_call_duration_seconds",
                "connector" => connector.to_owned(),
                "environment" => run.environment.clone(),
                "outcome" => outcome
            )
            .record((finished - result.started_at).max(0) as f64 / 1000.0);
        }
    }
}
