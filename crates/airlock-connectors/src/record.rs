//! Record mode: the lightweight staging for a system with no sandbox of its own.
//!
//! A binding in `mode: record` sends nothing. Every call is recorded as a test record
//! (connector, action, rendered arguments, idempotency key) and answered with the
//! binding's configured response for that action. The connector's kind stays the same
//! as in production, so the workflow and its parity do not change.

use crate::{CallError, CallRequest, CheckContext, CheckOutcome, Connector};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

/// One call a record-mode binding received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The environment.
    pub environment: String,
    /// The connector.
    pub connector: String,
    /// The action.
    pub action: String,
    /// The run.
    pub run: String,
    /// The step.
    pub step: String,
    /// The rendered arguments.
    pub arguments: Value,
    /// The call's idempotency key.
    pub idempotency_key: String,
}

/// Where recorded calls go (the engine writes them to the store).
#[async_trait]
pub trait RecordSink: Send + Sync {
    /// Stores one recorded call.
    async fn record(&self, call: RecordedCall) -> Result<(), String>;
}

/// A connector in record mode.
pub struct RecordConnector {
    environment: String,
    connector: String,
    responses: serde_json::Map<String, Value>,
    sink: Arc<dyn RecordSink>,
}

impl RecordConnector {
    /// A record-mode connector answering with `responses` (by action).
    pub fn new(
        environment: impl Into<String>,
        connector: impl Into<String>,
        responses: serde_json::Map<String, Value>,
        sink: Arc<dyn RecordSink>,
    ) -> Self {
        Self {
            environment: environment.into(),
            connector: connector.into(),
            responses,
            sink,
        }
    }
}

#[async_trait]
impl Connector for RecordConnector {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        self.sink
            .record(RecordedCall {
                environment: self.environment.clone(),
                connector: self.connector.clone(),
                action: request.action.clone(),
                run: request.run.clone(),
                step: request.step.clone(),
                arguments: request.args.clone(),
                idempotency_key: request.idempotency_key.clone(),
            })
            .await
            .map_err(|e| CallError::Failed(format!("could not store the test record: {e}")))?;
        Ok(self
            .responses
            .get(&request.action)
            .cloned()
            .unwrap_or_else(|| json!({ "recorded": true })))
    }

    async fn check(&self, _context: &CheckContext) -> CheckOutcome {
        CheckOutcome::ok("record mode: calls are kept as test records; nothing is sent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Memory(Mutex<Vec<RecordedCall>>);

    #[async_trait]
    impl RecordSink for Memory {
        async fn record(&self, call: RecordedCall) -> Result<(), String> {
            self.0.lock().map_err(|e| e.to_string())?.push(call);
            Ok(())
        }
    }

    #[tokio::test]
    async fn records_the_call_and_answers_from_the_configured_response() {
        let sink = Arc::new(Memory::default());
        let mut responses = serde_json::Map::new();
        responses.insert("request".into(), json!({"status": 201}));
        let connector = RecordConnector::new("staging", "crm", responses, sink.clone());
        let request = CallRequest {
            run: "r1".into(),
            step: "sync_crm".into(),
            action: "request".into(),
            args: json!({"method": "POST", "path": "/orders"}),
            idempotency_key: "staging:r1:sync_crm".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            connector.call(&request).await.unwrap(),
            json!({"status": 201})
        );
        let recorded = sink.0.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].arguments["path"], "/orders");
        assert_eq!(recorded[0].idempotency_key, "staging:r1:sync_crm");
    }
}
