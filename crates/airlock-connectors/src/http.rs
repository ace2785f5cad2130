//! The `http` connector: requests to an API under the binding's base URL.
//!
//! Settings: `base_url` (required), `headers` (a map), `token` (sent as
//! `Authorization: Bearer …`), `timeout` (a duration such as `10s`, capping every
//! attempt), `health` (a path `airlock check` requests), `ca_file` (extra CA
//! certificates, PEM, relative to the project) and `proxy` (`http://host:port`, a proxy
//! the environment's egress lists). One action, `request`, with
//! `method`, `path`, `query`, `headers`, and `json` or `body`. Every request carries the
//! step's `Idempotency-Key` and goes through the environment's egress client: the base
//! URL is checked once, every request URL again, names are resolved and pinned by
//! [`Egress`], and every redirect hop is re-checked.

use crate::egress::{ClientOptions, EgressError, MAX_REDIRECTS, TooManyRedirects};
use crate::{
    CallError, CallRequest, CheckContext, CheckOutcome, Connector, Egress, ResolvedBinding,
};
use async_trait::async_trait;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderMap, HeaderName,
    HeaderValue, LOCATION, PROXY_AUTHORIZATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use reqwest::{Method, Request, Response};
use serde_json::{Map, Value, json};
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The largest response body a call reads.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long `check` waits when the binding sets no `timeout`.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers a workflow or binding may not set: they would change how the request is
/// framed or routed, not what it says.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "idempotency-key",
];

/// An HTTP API, bound for one environment.
pub struct HttpConnector {
    connector: String,
    egress: Arc<Egress>,
    transport: Transport,
    /// The checked base URL, or why egress refuses it (reported at call and check).
    base: Result<Url, EgressError>,
    headers: HeaderMap,
    timeout: Option<Duration>,
    health: Option<String>,
}

impl std::fmt::Debug for HttpConnector {
    /// Names the connector and its host only: the base URL's query and the headers may
    /// carry secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnector")
            .field("connector", &self.connector)
            .field("environment", &self.egress.environment)
            .field("host", &self.base.as_ref().ok().and_then(Url::host_str))
            .finish_non_exhaustive()
    }
}

impl HttpConnector {
    /// Builds the connector from its binding. A malformed setting is `Invalid`; a base
    /// URL that egress refuses is reported by every call and by `check`.
    pub fn new(binding: &ResolvedBinding, egress: Arc<Egress>) -> Result<Self, CallError> {
        let name = &binding.connector;
        let settings = &binding.settings;
        let base_url = required_string(settings, "base_url", name)?;
        if Url::parse(base_url.trim()).is_err() {
            return Err(CallError::Invalid(format!(
                "connector `{name}`: `base_url` is not a URL"
            )));
        }
        let base = egress.check_url(base_url);
        let mut headers = match settings.get("headers") {
            None | Some(Value::Null) => HeaderMap::new(),
            Some(value) => header_map(value, &format!("connector `{name}`: `headers`"), true)?,
        };
        match settings.get("token") {
            None | Some(Value::Null) => {}
            Some(Value::String(token)) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        CallError::Invalid(format!(
                            "connector `{name}`: `token` is not a valid header value"
                        ))
                    })?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            Some(_) => {
                return Err(CallError::Invalid(format!(
                    "connector `{name}`: `token` must be a string"
                )));
            }
        }
        let timeout = optional_duration(settings, "timeout", name)?;
        let health = match settings.get("health") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) if path.starts_with('/') => Some(path.clone()),
            Some(_) => {
                return Err(CallError::Invalid(format!(
                    "connector `{name}`: `health` must be a path starting with `/`"
                )));
            }
        };
        let transport = Transport::of(binding, &egress)?;
        Ok(Self {
            connector: name.clone(),
            egress,
            transport,
            base,
            headers,
            timeout,
            health,
        })
    }

    fn base(&self) -> Result<&Url, CallError> {
        self.base.as_ref().map_err(|e| CallError::Egress(e.clone()))
    }

    fn attempt_timeout(&self, requested: Duration) -> Duration {
        match self.timeout {
            Some(cap) => requested.min(cap),
            None => requested,
        }
    }

    fn invalid(&self, what: impl std::fmt::Display) -> CallError {
        CallError::Invalid(format!("connector `{}`: {what}", self.connector))
    }
}

#[async_trait]
impl Connector for HttpConnector {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        if request.action != "request" {
            return Err(self.invalid(format_args!(
                "an http connector has no action `{}`; its action is `request`",
                request.action
            )));
        }
        let args = request
            .args
            .as_object()
            .ok_or_else(|| self.invalid("the arguments of `request` must be a map"))?;
        let method = match args.get("method") {
            Some(Value::String(m)) => parse_method(m).ok_or_else(|| {
                self.invalid(format_args!(
                    "`method` must be GET, POST, PUT, PATCH or DELETE, not `{m}`"
                ))
            })?,
            _ => return Err(self.invalid("`request` needs a `method`")),
        };
        let path = match args.get("path") {
            Some(Value::String(p)) => p,
            _ => return Err(self.invalid("`request` needs a `path`")),
        };
        let mut url = join_path(self.base()?, path).map_err(|e| self.invalid(e))?;
        match args.get("query") {
            None | Some(Value::Null) => {}
            Some(Value::Object(query)) => {
                append_query(&mut url, query).map_err(|e| self.invalid(e))?
            }
            Some(_) => return Err(self.invalid("`query` must be a map")),
        }
        let url = self.egress.check_url(url.as_str())?;
        let mut headers = self.headers.clone();
        match args.get("headers") {
            None | Some(Value::Null) => {}
            Some(value) => headers.extend(header_map(
                value,
                &format!("connector `{}`: `headers`", self.connector),
                false,
            )?),
        }
        headers.insert(
            HeaderName::from_static("idempotency-key"),
            idempotency_value(&request.idempotency_key)?,
        );
        let timeout = self.attempt_timeout(request.timeout);
        let mut builder = self.transport.client.request(method, url).headers(headers);
        match (args.get("json"), args.get("body")) {
            (Some(json), Some(body)) if !json.is_null() && !body.is_null() => {
                return Err(self.invalid("give `json` or `body`, not both"));
            }
            (Some(json), _) if !json.is_null() => builder = builder.json(json),
            (_, Some(Value::String(body))) => builder = builder.body(body.clone()),
            (_, Some(Value::Null) | None) => {}
            (_, Some(_)) => {
                return Err(self.invalid("`body` must be a string (use `json` for data)"));
            }
        }
        let request = builder
            .build()
            .map_err(|e| CallError::Invalid(describe(e)))?;
        let response = send(&self.egress, &self.transport, request, timeout).await?;
        let status = response.status().as_u16();
        let body = read_body(response, timeout).await?;
        if (200..300).contains(&status) {
            Ok(json!({ "status": status, "body": body }))
        } else {
            Err(CallError::Status { status, body })
        }
    }

    async fn check(&self, _context: &CheckContext) -> CheckOutcome {
        let base = match &self.base {
            Ok(base) => base,
            Err(refused) => return CheckOutcome::failed(refused.to_string()),
        };
        let Some(health) = &self.health else {
            return match check_reachable(&self.egress, &self.transport, base).await {
                Ok(detail) => CheckOutcome::ok(format!(
                    "{detail}; no health request is declared (set `health` to a path to \
                     check the credential too)"
                )),
                Err(error) => CheckOutcome::failed(error.to_string()),
            };
        };
        let timeout = self.timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT);
        let url = match join_path(base, health) {
            Ok(url) => url,
            Err(e) => return CheckOutcome::failed(format!("`health`: {e}")),
        };
        let url = match self.egress.check_url(url.as_str()) {
            Ok(url) => url,
            Err(refused) => return CheckOutcome::failed(refused.to_string()),
        };
        let sent = match self
            .transport
            .client
            .get(url)
            .headers(self.headers.clone())
            .build()
        {
            Ok(request) => send(&self.egress, &self.transport, request, timeout).await,
            Err(error) => Err(CallError::Invalid(describe(error))),
        };
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let detail = format!("GET {health} → {status}");
                if response.status().is_success() {
                    CheckOutcome::ok(detail)
                } else {
                    CheckOutcome::failed(detail)
                }
            }
            Err(error) => CheckOutcome::failed(format!("GET {health}: {error}")),
        }
    }
}

/// A binding's way out: the client it sends with (its `ca_file` trusted), and its proxy.
pub(crate) struct Transport {
    pub client: reqwest::Client,
    /// The binding's `proxy:`, checked by egress; a refusal is reported by every call and
    /// `check`, and nothing is sent.
    proxy: Option<Result<Url, EgressError>>,
}

impl Transport {
    /// Reads `ca_file` (relative to the project) and `proxy` from the binding. A missing
    /// or unparsable CA file is `Invalid`, naming the file.
    pub(crate) fn of(binding: &ResolvedBinding, egress: &Arc<Egress>) -> Result<Self, CallError> {
        let name = &binding.connector;
        let ca_file = match binding.settings.get("ca_file") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) if !path.trim().is_empty() => {
                Some(binding.base_dir.join(path.trim()))
            }
            Some(_) => {
                return Err(CallError::Invalid(format!(
                    "connector `{name}`: `ca_file` must be a file path"
                )));
            }
        };
        let proxy = match binding.settings.get("proxy") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) => Some(egress.check_proxy(url)),
            Some(_) => {
                return Err(CallError::Invalid(format!(
                    "connector `{name}`: `proxy` must be a URL such as `http://proxy.example:3128`"
                )));
            }
        };
        let options = ClientOptions {
            ca_file,
            proxy: proxy.as_ref().and_then(|p| p.as_ref().ok()).cloned(),
        };
        let client = egress.http_client(&options).map_err(|e| match e {
            CallError::Invalid(why) => CallError::Invalid(format!("connector `{name}`: {why}")),
            other => other,
        })?;
        Ok(Self { client, proxy })
    }

    /// Whether calls go through a proxy; `Err` when egress refused it.
    fn proxied(&self) -> Result<bool, CallError> {
        match &self.proxy {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(refused)) => Err(CallError::Egress(refused.clone())),
        }
    }
}

/// Checks that `url`'s host is allowed and resolves within egress, without sending
/// anything; says where it resolves (and through which proxy).
pub(crate) async fn check_reachable(
    egress: &Egress,
    transport: &Transport,
    url: &Url,
) -> Result<String, CallError> {
    let proxied = transport.proxied()?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    let addresses = egress.lookup(host, port).await?;
    let list = addresses
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let through = match (&transport.proxy, proxied) {
        (Some(Ok(proxy)), true) => format!(
            " (reached through the proxy {})",
            proxy.host_str().unwrap_or_default()
        ),
        _ => String::new(),
    };
    Ok(format!(
        "{host} is allowed in `{}` and resolves to {list}{through}",
        egress.environment
    ))
}

/// The `Idempotency-Key` header value.
pub(crate) fn idempotency_value(key: &str) -> Result<HeaderValue, CallError> {
    HeaderValue::from_str(key)
        .map_err(|_| CallError::Invalid("the idempotency key is not a valid header value".into()))
}

/// Maps a failed send: an egress refusal (by the resolver or the redirect policy) is
/// `Egress`; no connection is `Connection`; no answer in time is `Timeout`; anything
/// after the request may have been sent is `Failed`. Messages carry no URL and no
/// header value.
pub(crate) fn send_error(error: reqwest::Error, timeout: Duration) -> CallError {
    if let Some(refused) = find_source::<EgressError>(&error) {
        return CallError::Egress(refused.clone());
    }
    if error.is_connect() {
        return CallError::Connection(describe(error));
    }
    if error.is_timeout() {
        return CallError::Timeout(timeout);
    }
    if find_source::<TooManyRedirects>(&error).is_some() {
        return CallError::Failed(TooManyRedirects.to_string());
    }
    if error.is_builder() {
        return CallError::Invalid(describe(error));
    }
    CallError::Failed(describe(error))
}

/// The first error of type `E` in `error`'s source chain.
fn find_source<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// An error and its causes, without the URL (which may carry a secret, as a chat
/// webhook's does). Host and port stay: they are in the egress list.
pub(crate) fn describe(error: reqwest::Error) -> String {
    let target = error.url().and_then(|url| {
        url.host_str()
            .map(|host| match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
    });
    let error = error.without_url();
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    let chain = parts.join(": ");
    match target {
        Some(target) => format!("{target}: {chain}"),
        None => chain,
    }
}

/// Sends `request` through the environment's client, following redirects here, not in
/// reqwest: each hop is decided by [`Egress::check_redirect`] from the `Location` header
/// as the server sent it (reqwest's policy would see only the URL it has normalised, so a
/// hop to `http://2130706433/` would pass as `127.0.0.1`). At most [`MAX_REDIRECTS`]
/// hops, all within `timeout`. 301 and 302 turn a POST into a GET and 303 anything but a
/// HEAD, without the body (as browsers and reqwest do); 307 and 308 keep both. Credentials
/// are dropped at a hop to another host or port. No `Referer` is sent: a URL may be a
/// credential.
///
/// Through a proxy, the proxy resolves each hop's host, not the client's resolver: so
/// egress resolves it here first, and a name that resolves to a refused address is
/// refused before the proxy is asked to connect to it. (The proxy's own lookup may differ:
/// through a proxy the address is checked, not pinned.)
pub(crate) async fn send(
    egress: &Egress,
    transport: &Transport,
    mut request: Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let proxied = transport.proxied()?;
    let client = &transport.client;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut hops = 0;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(CallError::Timeout(timeout));
        }
        *request.timeout_mut() = Some(remaining);
        // Kept for a hop; a body that cannot be copied (none here: bodies are bytes) ends
        // the chain at this answer.
        let again = request.try_clone();
        if proxied {
            let url = request.url();
            egress
                .lookup(
                    url.host_str().unwrap_or_default(),
                    url.port_or_known_default().unwrap_or(0),
                )
                .await?;
        }
        let response = client
            .execute(request)
            .await
            .map_err(|e| send_error(e, timeout))?;
        let status = response.status();
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        let Some(location) = response
            .headers()
            .get(LOCATION)
            .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
        else {
            return Ok(response);
        };
        let next = egress
            .check_redirect(response.url(), location)
            .map_err(CallError::Egress)?;
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(CallError::Failed(TooManyRedirects.to_string()));
        }
        let Some(mut following) = again else {
            return Ok(response);
        };
        let drop_body = match status.as_u16() {
            301 | 302 => following.method() == Method::POST,
            303 => following.method() != Method::HEAD,
            _ => false,
        };
        if drop_body {
            *following.method_mut() = Method::GET;
            *following.body_mut() = None;
            for header in [
                CONTENT_TYPE,
                CONTENT_LENGTH,
                CONTENT_ENCODING,
                TRANSFER_ENCODING,
            ] {
                following.headers_mut().remove(header);
            }
        }
        let previous = response.url();
        if next.host_str() != previous.host_str()
            || next.port_or_known_default() != previous.port_or_known_default()
        {
            for header in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE] {
                following.headers_mut().remove(header);
            }
        }
        *following.url_mut() = next;
        request = following;
    }
}

/// Reads a response body (at most [`MAX_BODY_BYTES`]) as JSON when it parses, as a
/// string otherwise, `null` when empty.
pub(crate) async fn read_body(
    mut response: Response,
    timeout: Duration,
) -> Result<Value, CallError> {
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(CallError::Failed(format!(
                        "the response body is larger than {} MiB",
                        MAX_BODY_BYTES / (1024 * 1024)
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) if error.is_timeout() => return Err(CallError::Timeout(timeout)),
            Err(error) => {
                return Err(CallError::Failed(format!(
                    "reading the response failed: {}",
                    describe(error)
                )));
            }
        }
    }
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

fn parse_method(method: &str) -> Option<Method> {
    Some(match method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => return None,
    })
}

/// `path` (which may carry `?query`) under `base`'s path, on `base`'s scheme, host and
/// port, keeping `base`'s query. A path that would name another host is refused.
fn join_path(base: &Url, path: &str) -> Result<Url, String> {
    if !path.starts_with('/') {
        return Err("`path` must start with `/`".to_owned());
    }
    if path.starts_with("//") || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(
            "`path` must be a path under the binding's base URL, not another host".to_owned(),
        );
    }
    let path = path.split_once('#').map_or(path, |(before, _)| before);
    let (path_part, query_part) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut url = base.clone();
    url.set_fragment(None);
    url.set_path(&format!(
        "{}{}",
        base.path().trim_end_matches('/'),
        path_part
    ));
    if let Some(extra) = query_part.filter(|q| !q.is_empty()) {
        let query = match base.query().filter(|q| !q.is_empty()) {
            Some(existing) => format!("{existing}&{extra}"),
            None => extra.to_owned(),
        };
        url.set_query(Some(&query));
    }
    if url.scheme() != base.scheme()
        || url.host() != base.host()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return Err(
            "`path` must be a path under the binding's base URL, not another host".to_owned(),
        );
    }
    Ok(url)
}

fn append_query(url: &mut Url, query: &Map<String, Value>) -> Result<(), String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in query {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    pairs.push((key.clone(), scalar(item).ok_or_else(|| bad_query(key))?));
                }
            }
            other => pairs.push((key.clone(), scalar(other).ok_or_else(|| bad_query(key))?)),
        }
    }
    if !pairs.is_empty() {
        let mut serializer = url.query_pairs_mut();
        for (key, value) in &pairs {
            serializer.append_pair(key, value);
        }
    }
    Ok(())
}

fn bad_query(key: &str) -> String {
    format!("`query.{key}` must be a string, number, boolean or a list of them")
}

/// A scalar as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A map of header names to scalar values. Values are marked sensitive (they may be
/// secrets) and never appear in an error.
fn header_map(value: &Value, what: &str, sensitive: bool) -> Result<HeaderMap, CallError> {
    let map = value
        .as_object()
        .ok_or_else(|| CallError::Invalid(format!("{what} must be a map")))?;
    let mut headers = HeaderMap::new();
    for (name, value) in map {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| CallError::Invalid(format!("{what}: `{name}` is not a header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(CallError::Invalid(format!(
                "{what}: `{name}` is set by the connector and cannot be set here"
            )));
        }
        let text = scalar(value).ok_or_else(|| {
            CallError::Invalid(format!(
                "{what}: `{name}` must be a string, number or boolean"
            ))
        })?;
        let mut header_value = HeaderValue::from_str(&text).map_err(|_| {
            CallError::Invalid(format!(
                "{what}: the value of `{name}` is not a valid header value"
            ))
        })?;
        header_value.set_sensitive(sensitive);
        headers.insert(header, header_value);
    }
    Ok(headers)
}

/// A required string setting.
pub(crate) fn required_string<'a>(
    settings: &'a Map<String, Value>,
    key: &str,
    connector: &str,
) -> Result<&'a str, CallError> {
    match settings.get(key) {
        Some(Value::String(value)) if !value.trim().is_empty() => Ok(value),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(CallError::Invalid(format!(
            "connector `{connector}`: the binding needs `{key}`"
        ))),
        Some(_) => Err(CallError::Invalid(format!(
            "connector `{connector}`: `{key}` must be a string"
        ))),
    }
}

/// An optional duration setting (`10s`, `500ms`).
pub(crate) fn optional_duration(
    settings: &Map<String, Value>,
    key: &str,
    connector: &str,
) -> Result<Option<Duration>, CallError> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => airlock_core::duration::parse(text)
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|e| {
                CallError::Invalid(format!(
                    "connector `{connector}`: `{key}` is not a duration ({e})"
                ))
            }),
        Some(_) => Err(CallError::Invalid(format!(
            "connector `{connector}`: `{key}` must be a duration such as `10s`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    #[test]
    fn paths_join_under_the_base() {
        let b = base("https://api.example/v1/?key=k");
        assert_eq!(
            join_path(&b, "/orders?x=1").expect("joined").as_str(),
            "https://api.example/v1/orders?key=k&x=1"
        );
        let b = base("http://127.0.0.1:8080");
        assert_eq!(
            join_path(&b, "/a b").expect("joined").as_str(),
            "http://127.0.0.1:8080/a%20b"
        );
    }

    #[test]
    fn paths_cannot_leave_the_host() {
        let b = base("https://api.example/v1");
        for path in [
            "orders",
            "//evil.example/x",
            "/\\evil.example",
            "http://evil.example/",
            "/x\r\nHost: evil",
            "",
        ] {
            assert!(join_path(&b, path).is_err(), "{path:?}");
        }
    }
}
