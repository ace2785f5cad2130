//! The `chat_webhook` connector: a Slack-compatible incoming webhook.
//!
//! Settings: `url` (required; usually a secret, since the URL is the credential), and as
//! for `http`, `ca_file` and `proxy`. One
//! action, `post`, with `text` (required) and `blocks` (optional), sent as
//! `{"text": …, "blocks": …}` with the step's `Idempotency-Key`, through the
//! environment's egress client. The URL never appears in an error or a check detail:
//! only its host does.

use crate::egress::EgressError;
use crate::http::{
    Transport, check_reachable, describe, idempotency_value, read_body, required_string, send,
};
use crate::{
    CallError, CallRequest, CheckContext, CheckOutcome, Connector, Egress, ResolvedBinding,
};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use url::Url;

/// A chat webhook, bound for one environment.
pub struct ChatConnector {
    connector: String,
    egress: Arc<Egress>,
    transport: Transport,
    /// The checked webhook URL, or why egress refuses it.
    url: Result<Url, EgressError>,
}

impl std::fmt::Debug for ChatConnector {
    /// Names the connector and its host only: a webhook URL is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatConnector")
            .field("connector", &self.connector)
            .field("environment", &self.egress.environment)
            .field("host", &self.url.as_ref().ok().and_then(Url::host_str))
            .finish_non_exhaustive()
    }
}

impl ChatConnector {
    /// Builds the connector from its binding. A missing `url` is `Invalid`; a URL that
    /// egress refuses is reported by every call and by `check`.
    pub fn new(binding: &ResolvedBinding, egress: Arc<Egress>) -> Result<Self, CallError> {
        let name = &binding.connector;
        let raw = required_string(&binding.settings, "url", name)?;
        if Url::parse(raw.trim()).is_err() {
            return Err(CallError::Invalid(format!(
                "connector `{name}`: `url` is not a URL"
            )));
        }
        let url = egress.check_url(raw);
        let transport = Transport::of(binding, &egress)?;
        Ok(Self {
            connector: name.clone(),
            egress,
            transport,
            url,
        })
    }

    fn invalid(&self, what: impl std::fmt::Display) -> CallError {
        CallError::Invalid(format!("connector `{}`: {what}", self.connector))
    }
}

#[async_trait]
impl Connector for ChatConnector {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        if request.action != "post" {
            return Err(self.invalid(format_args!(
                "a chat_webhook connector has no action `{}`; its action is `post`",
                request.action
            )));
        }
        let url = self.url.clone()?;
        let args = request
            .args
            .as_object()
            .ok_or_else(|| self.invalid("the arguments of `post` must be a map"))?;
        let text = match args.get("text") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => return Err(self.invalid("`post` needs `text`")),
            Some(_) => return Err(self.invalid("`text` must be a string")),
        };
        let mut payload = Map::new();
        payload.insert("text".to_owned(), Value::String(text));
        match args.get("blocks") {
            None | Some(Value::Null) => {}
            Some(blocks) => {
                payload.insert("blocks".to_owned(), blocks.clone());
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("idempotency-key"),
            idempotency_value(&request.idempotency_key)?,
        );
        let timeout = request.timeout;
        let request = self
            .transport
            .client
            .post(url)
            .headers(headers)
            .json(&Value::Object(payload))
            .build()
            .map_err(|e| CallError::Invalid(describe(e)))?;
        let response = send(&self.egress, &self.transport, request, timeout).await?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            Ok(json!({ "ok": true, "status": status }))
        } else {
            let body = read_body(response, timeout).await?;
            Err(CallError::Status { status, body })
        }
    }

    async fn check(&self, _context: &CheckContext) -> CheckOutcome {
        let url = match &self.url {
            Ok(url) => url,
            Err(refused) => return CheckOutcome::failed(refused.to_string()),
        };
        match check_reachable(&self.egress, &self.transport, url).await {
            Ok(detail) => CheckOutcome::ok(format!(
                "{detail}; nothing was posted (a webhook has no side-effect-free request)"
            )),
            Err(error) => CheckOutcome::failed(error.to_string()),
        }
    }
}
