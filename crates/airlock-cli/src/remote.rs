//! The CLI against a running server: `--server URL` (or `AIRLOCK_SERVER`) with the token in
//! `AIRLOCK_TOKEN` (an environment variable, never an argument: arguments show in `ps`).
//! Commands fetch the same records over the API that they read from the store locally and
//! print them the same way.

use crate::cli::Global;
use crate::error::CliError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The variable that carries the API token.
pub const TOKEN_VARIABLE: &str = "AIRLOCK_TOKEN";

/// A server and the token to call it with.
pub struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Remote {
    /// The server the command talks to, if `--server` was given.
    pub fn from_global(global: &Global) -> Result<Option<Remote>, CliError> {
        let Some(server) = global.server.as_deref() else {
            return Ok(None);
        };
        let token = std::env::var(TOKEN_VARIABLE).map_err(|_| {
            CliError::usage(
                format!("--server needs an API token in {TOKEN_VARIABLE}"),
                Some(
                    "create one with `airlock token create --env ENV --role ROLE --name NAME`"
                        .into(),
                ),
            )
        })?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::usage(format!("cannot build an HTTP client: {e}"), None))?;
        Ok(Some(Remote {
            base: server.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            client,
        }))
    }

    /// GET `path`, answered with JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.call(reqwest::Method::GET, path, Body::None)
    }

    /// POST `path` with a JSON body.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, CliError> {
        self.call(reqwest::Method::POST, path, Body::Json(body))
    }

    /// PUT `path` with a plain-text body (a secret's value).
    pub fn put_text(&self, path: &str, text: String) -> Result<(), CliError> {
        self.call::<Value>(reqwest::Method::PUT, path, Body::Text(text))
            .map(|_| ())
    }

    /// The environment the token acts in.
    pub fn environment(&self) -> Result<String, CliError> {
        let who: Value = self.get("/api/v1/whoami")?;
        who["environment"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::usage("the server did not say who the token is", None))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Text(text) => request.body(text),
        };
        let answered = crate::workspace::runtime()?.block_on(async {
            let response = request.send().await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        });
        let (status, bytes) = answered.map_err(|e| {
            CliError::usage(
                format!("{} {}: {}", method, self.base, without_url(&e)),
                None,
            )
        })?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(CliError::usage(
                format!("{} answered {}: {reason}", self.base, status.as_u16()),
                None,
            ));
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| {
            CliError::usage(
                format!("{} answered something unexpected: {e}", self.base),
                None,
            )
        })
    }
}

enum Body {
    None,
    Json(Value),
    Text(String),
}

/// A transport error's message, without the URL (it is shown once, by the caller).
fn without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(url.as_str(), "").replace(" ()", "");
    }
    message
}

/// A path segment, percent-encoded.
pub fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
