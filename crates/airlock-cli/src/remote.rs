//! The CLI against a running server: `--server URL` (or `AIRLOCK_SERVER`) with the token in
//! `AIRLOCK_TOKEN` (an environment variable, never an argument: arguments show in `ps`).
//! Commands fetch the same records over the API that they read from the store locally and
//! print them the same way: the promotion path's answers are `airlock_ops`'s own
//! result types, read back from JSON, so one renderer prints both. Which commands do
//! this, which ignore the flag and which refuse it is decided in `commands::reach`.
//!
//! A refusal prints like a local one (the server's reason, then its hint), followed by
//! which server answered and with what status. The token is sent in a header only: it is
//! never part of a message, and a password in the server's URL is masked.

use crate::cli::Global;
use crate::error::CliError;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The variable that carries the API token.
pub const TOKEN_VARIABLE: &str = "AIRLOCK_TOKEN";

/// A server and the token to call it with.
pub struct Remote {
    base: String,
    /// `base` as it may be printed: without a password.
    shown: String,
    token: String,
    client: reqwest::Client,
}

/// Who a token is (`GET /api/v1/whoami`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Whoami {
    /// The token's name: the identity the server records, and the approver's name.
    pub name: String,
    /// The one environment it acts in.
    pub environment: String,
    pub role: String,
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
        // What the connectors trust: the system's and Mozilla's roots and AIRLOCK_CA_FILE,
        // so a server serving TLS with a company CA (`serve --tls-cert`) is reached too.
        let tls = airlock_connectors::tls::client_config(&[])
            .map_err(|e| CliError::usage(e.to_string(), None))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::usage(format!("cannot build an HTTP client: {e}"), None))?;
        let base = server.trim_end_matches('/').to_owned();
        Ok(Some(Remote {
            shown: crate::workspace::redact_url(&base)
                .trim_end_matches('/')
                .to_owned(),
            base,
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

    /// POST `path` with a JSON body; the JSON answer when it succeeded or when `result`
    /// says a refusal carries a result (a promotion the gate refused answers 409 with its
    /// verdict); any other refusal is an error.
    pub fn post_answer(
        &self,
        path: &str,
        body: Value,
        result: impl Fn(StatusCode, &Value) -> bool,
    ) -> Result<Value, CliError> {
        let (status, bytes) = self.send(reqwest::Method::POST, path, Body::Json(body))?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        match value {
            Some(value) if status.is_success() || result(status, &value) => Ok(value),
            _ if status.is_success() => Err(CliError::usage(
                format!("{} answered something that is not JSON", self.shown),
                None,
            )),
            _ => Err(self.refusal(status, &bytes)),
        }
    }

    /// Who the token is.
    pub fn whoami(&self) -> Result<Whoami, CliError> {
        self.get("/api/v1/whoami")
    }

    /// The environment the token acts in.
    pub fn environment(&self) -> Result<String, CliError> {
        Ok(self.whoami()?.environment)
    }

    /// The environment a listing asks the server for: `only`, or else the token's own. The
    /// same listing spans every environment locally, so the fallback is said on stderr
    /// (not under `--json`, whose output is only the answer).
    pub fn listed_environment(
        &self,
        only: Option<&str>,
        json: bool,
        what: &str,
    ) -> Result<String, CliError> {
        if let Some(name) = only {
            return Ok(name.to_owned());
        }
        let environment = self.environment()?;
        if !json {
            errln!(
                "note: the {what} of `{environment}`, this token's environment (a server lists one environment's)"
            );
        }
        Ok(environment)
    }

    /// Against a server the token's name is who acts. `--as NAME` is accepted only when
    /// it names the token (asked with one more call, only when given), so that no one
    /// believes they acted as someone else.
    pub fn confirm_as(&self, asked: Option<&str>) -> Result<(), CliError> {
        let Some(asked) = asked else {
            return Ok(());
        };
        let who = self.whoami()?;
        if asked == who.name {
            return Ok(());
        }
        Err(CliError::usage(
            format!(
                "against a server the token says who acts: it is `{}`, not `{asked}`",
                who.name
            ),
            Some(format!(
                "leave out `--as`, or put `{asked}`'s token in {TOKEN_VARIABLE}"
            )),
        ))
    }

    /// A JSON answer as `T`.
    pub fn decode<T: DeserializeOwned>(&self, value: Value) -> Result<T, CliError> {
        serde_json::from_value(value).map_err(|e| self.unexpected(e))
    }

    /// A refusal as the CLI reports it: the server's reason and hint, as a local refusal
    /// prints, then which server answered what.
    pub fn refusal(&self, status: StatusCode, body: &[u8]) -> CliError {
        let answer = serde_json::from_slice::<Value>(body).ok();
        let field = |name: &str| {
            answer
                .as_ref()
                .and_then(|v| v[name].as_str())
                .map(str::to_owned)
        };
        let reason = field("error").unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("refused").to_owned()
            } else {
                text
            }
        });
        let help = field("help").or_else(|| match status {
            StatusCode::UNAUTHORIZED => Some(format!(
                "{TOKEN_VARIABLE} must hold a token of this server: `airlock token create --env ENV --role ROLE --name NAME` where it runs"
            )),
            // A role or scope denial: the server's reason names what was missing.
            StatusCode::FORBIDDEN => Some(format!(
                "a token grants one role in one environment: put a token of that environment, with a role that allows this, in {TOKEN_VARIABLE}"
            )),
            _ => None,
        });
        let code = match status.canonical_reason() {
            Some(words) => format!("{} {words}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        // Files the server judged invalid: each problem where `validate` puts it.
        let problems: String = answer
            .as_ref()
            .and_then(|v| v["problems"].as_array())
            .map(|problems| {
                problems
                    .iter()
                    .map(|p| {
                        let at =
                            match (p["path"].as_str(), p["line"].as_u64(), p["column"].as_u64()) {
                                (Some(path), Some(line), Some(column)) if line > 0 => {
                                    format!("{path}:{line}:{column}")
                                }
                                (Some(path), _, _) => path.to_owned(),
                                _ => "project".to_owned(),
                            };
                        format!(
                            "\n  {at}: {} {}",
                            p["code"].as_str().unwrap_or(""),
                            p["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        CliError::usage(
            format!("{reason} ({} answered {code}){problems}", self.shown),
            help,
        )
    }

    fn unexpected(&self, error: serde_json::Error) -> CliError {
        CliError::usage(
            format!("{} answered something unexpected: {error}", self.shown),
            Some("is the server running the same version of airlock as this command?".into()),
        )
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
    ) -> Result<T, CliError> {
        let (status, bytes) = self.send(method, path, body)?;
        if !status.is_success() {
            return Err(self.refusal(status, &bytes));
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| self.unexpected(e))
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
    ) -> Result<(StatusCode, Vec<u8>), CliError> {
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
            let bytes = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, bytes))
        });
        answered.map_err(|e| {
            CliError::usage(
                format!("{} {}: {}", method, self.shown, without_url(&e)),
                Some(
                    "is `airlock serve` running there? (--server or AIRLOCK_SERVER names it)"
                        .into(),
                ),
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
