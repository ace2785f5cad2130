//! The `smtp` connector: action `send`, over lettre's async SMTP client.
//!
//! The server's name is resolved once through the environment's egress allowlist and the
//! connection is made to the checked address; TLS (implicit or STARTTLS) still verifies
//! the certificate against the configured host name. The Message-ID is derived from the
//! step's idempotency key, `<sha256(key)@airlock>`, so a repeat after a crash carries the
//! same Message-ID and receivers can drop the duplicate.
//!
//! Retry classes:
//! - refused / unreachable / TLS handshake / connection lost → [`CallError::Connection`];
//! - a 4xx (transient) reply → [`CallError::Connection`]: the server declined *for now*
//!   and accepted nothing, so it is safe to retry and it is retried with `connection`
//!   (a [`CallError::Status`] below 500 would not be retryable);
//! - a 5xx (permanent) reply to the mail → [`CallError::Failed`] with the server's text;
//! - the server refused the credentials (5xx to AUTH), or offers no usable AUTH or no
//!   STARTTLS when it is required → [`CallError::Invalid`]: the binding is wrong, no mail
//!   was submitted;
//! - no answer within the step's timeout → [`CallError::Timeout`].

use crate::redact::Redactor;
use crate::{
    CallError, CallRequest, CheckContext, CheckOutcome, Connector, Egress, ResolvedBinding,
};
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long `check` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No TLS at all (a local relay).
    None,
}

/// An SMTP binding.
pub struct SmtpConnector {
    connector: String,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    from: Mailbox,
    tls: TlsMode,
    egress: Arc<Egress>,
}

impl std::fmt::Debug for SmtpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnector")
            .field("connector", &self.connector)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from.to_string())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Where in the conversation an error happened: it decides the retry class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Auth,
    Send,
}

fn setting_str<'a>(binding: &'a ResolvedBinding, name: &str) -> Result<Option<&'a str>, CallError> {
    match binding.settings.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(CallError::Invalid(format!(
            "connector `{}`: `{name}` must be a string",
            binding.connector
        ))),
    }
}

impl SmtpConnector {
    /// Builds the connector from a binding's settings: `host` (required), `port` (587),
    /// `username`, `password`, `from` (required), `tls` (`starttls`, `tls` or `none`).
    pub fn new(binding: &ResolvedBinding, egress: Arc<Egress>) -> Result<Self, CallError> {
        let connector = binding.connector.clone();
        let host = match setting_str(binding, "host")? {
            Some(h) if !h.trim().is_empty() => h.trim().to_owned(),
            _ => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: `host` is required"
                )));
            }
        };
        let port = match binding.settings.get("port") {
            None | Some(Value::Null) => 587,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    CallError::Invalid(format!("connector `{connector}`: `port` must be 1-65535"))
                })?,
            Some(Value::String(s)) => s
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    CallError::Invalid(format!("connector `{connector}`: `port` must be 1-65535"))
                })?,
            Some(_) => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: `port` must be a number"
                )));
            }
        };
        let username = setting_str(binding, "username")?.filter(|u| !u.is_empty());
        let password = setting_str(binding, "password")?;
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            (Some(_), None) => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: `username` is set but `password` is not"
                )));
            }
            (None, Some(p)) if !p.is_empty() => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: `password` is set but `username` is not"
                )));
            }
            (None, _) => None,
        };
        let from = match setting_str(binding, "from")? {
            Some(f) if !f.trim().is_empty() => f.trim().parse::<Mailbox>().map_err(|e| {
                CallError::Invalid(format!(
                    "connector `{connector}`: `from` is not a valid address ({e})"
                ))
            })?,
            _ => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: `from` is required (e.g. `Acme Ops <ops@acme.example>`)"
                )));
            }
        };
        let tls = match setting_str(binding, "tls")?.map(str::trim) {
            None | Some("starttls") => TlsMode::StartTls,
            Some("tls") => TlsMode::Tls,
            Some("none") => TlsMode::None,
            Some(other) => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: `tls` is `{other}`; use starttls, tls or none"
                )));
            }
        };
        Ok(Self {
            connector,
            host,
            port,
            credentials,
            from,
            tls,
            egress,
        })
    }

    /// `text` without the password, whatever put it there.
    fn redact(&self, text: String) -> String {
        match &self.credentials {
            Some((_, password)) => Redactor::of_credential(password).redact(&text),
            _ => text,
        }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, CallError> {
        TlsParameters::new(self.host.clone()).map_err(|e| {
            CallError::Invalid(format!(
                "connector `{}`: cannot set up TLS for `{}`: {e}",
                self.connector, self.host
            ))
        })
    }

    /// Maps a lettre error to a call error, by where it happened.
    fn error(
        &self,
        e: &lettre::transport::smtp::Error,
        phase: Phase,
        timeout: Duration,
    ) -> CallError {
        let at = format!("{}:{}", self.host, self.port);
        let text = self.redact(e.to_string());
        if e.is_timeout() {
            return CallError::Timeout(timeout);
        }
        if e.is_transient() {
            let code = e.status().map(u16::from).unwrap_or(400);
            return CallError::Connection(format!(
                "{at} answered {code} (transient, nothing accepted; safe to retry): {text}"
            ));
        }
        if e.is_permanent() {
            return match phase {
                Phase::Auth => CallError::Invalid(format!(
                    "{at} refused the credentials of `{}`: {text}",
                    self.connector
                )),
                Phase::Connect | Phase::Send => CallError::Failed(format!("{at} refused: {text}")),
            };
        }
        if e.is_tls() {
            return CallError::Connection(format!("TLS with {at} failed: {text}"));
        }
        if e.is_client() {
            return match phase {
                Phase::Auth => CallError::Invalid(format!(
                    "{at} offers no AUTH PLAIN or LOGIN (is `tls` right?): {text}"
                )),
                _ => CallError::Failed(format!("{at}: {text}")),
            };
        }
        if e.is_response() {
            return CallError::Failed(format!("{at} sent an unreadable reply: {text}"));
        }
        CallError::Connection(format!("{at}: {text}"))
    }

    /// Connects to an address egress checked, says EHLO, secures the connection as
    /// configured and authenticates when a username is set. Returns what was done.
    async fn open(
        &self,
        timeout: Duration,
    ) -> Result<(AsyncSmtpConnection, Vec<&'static str>), CallError> {
        let addrs = resolve(&self.egress, &self.host, self.port).await?;
        let hello = ClientId::default();
        let wrapper = match self.tls {
            TlsMode::Tls => Some(self.tls_parameters()?),
            TlsMode::StartTls | TlsMode::None => None,
        };
        let mut last: Option<CallError> = None;
        let mut connected = None;
        for addr in addrs {
            match AsyncSmtpConnection::connect_tokio1(
                addr,
                Some(timeout),
                &hello,
                wrapper.clone(),
                None,
            )
            .await
            {
                Ok(conn) => {
                    connected = Some(conn);
                    break;
                }
                Err(e) => {
                    let err = self.error(&e, Phase::Connect, timeout);
                    // Only a failure to reach this address moves on to the next one.
                    if !matches!(err, CallError::Connection(_)) {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        let Some(mut conn) = connected else {
            return Err(last.unwrap_or_else(|| {
                CallError::Connection(format!(
                    "{}:{} resolved to no address",
                    self.host, self.port
                ))
            }));
        };
        let mut steps = vec!["EHLO ok"];
        match self.tls {
            TlsMode::StartTls => {
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(CallError::Invalid(format!(
                        "{}:{} does not offer STARTTLS (set `tls: none` only for a local relay)",
                        self.host, self.port
                    )));
                }
                let params = self.tls_parameters()?;
                if let Err(e) = conn.starttls(params, &hello).await {
                    return Err(self.error(&e, Phase::Connect, timeout));
                }
                steps.push("STARTTLS ok");
            }
            TlsMode::Tls => steps.push("TLS ok"),
            TlsMode::None => {}
        }
        if let Some((username, password)) = &self.credentials {
            let credentials = Credentials::new(username.clone(), password.clone());
            if let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
            {
                conn.abort().await;
                return Err(self.error(&e, Phase::Auth, timeout));
            }
            steps.push("AUTH ok");
        }
        Ok((conn, steps))
    }

    async fn send(&self, request: &CallRequest) -> Result<Value, CallError> {
        let args = request
            .args
            .as_object()
            .ok_or_else(|| CallError::Invalid("`send` takes a map of arguments".into()))?;
        let to = mailboxes(args.get("to"), "to")?;
        if to.is_empty() {
            return Err(CallError::Invalid(
                "`send` needs at least one `to` address".into(),
            ));
        }
        let cc = mailboxes(args.get("cc"), "cc")?;
        let reply_to = mailboxes(args.get("reply_to"), "reply_to")?;
        let subject = match args.get("subject") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(CallError::Invalid("`send`: `subject` must be text".into())),
            None => return Err(CallError::Invalid("`send` needs `subject`".into())),
        };
        if subject.contains(['\r', '\n']) {
            return Err(CallError::Invalid(
                "`send`: `subject` must be one line (no line breaks)".into(),
            ));
        }
        let body = match args.get("body") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(CallError::Invalid("`send`: `body` must be text".into())),
            None => return Err(CallError::Invalid("`send` needs `body`".into())),
        };
        let message_id = message_id(&request.idempotency_key);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id.clone()));
        for m in &to {
            builder = builder.to(m.clone());
        }
        for m in &cc {
            builder = builder.cc(m.clone());
        }
        for m in &reply_to {
            builder = builder.reply_to(m.clone());
        }
        let message = builder
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| CallError::Invalid(format!("`send`: cannot build the message: {e}")))?;
        let accepted: Vec<String> = to
            .iter()
            .chain(cc.iter())
            .map(|m| m.email.to_string())
            .collect();

        let timeout = request.timeout;
        let attempt = async {
            let (mut conn, _) = self.open(timeout).await?;
            let sent = conn.send(message.envelope(), &message.formatted()).await;
            match sent {
                Ok(_) => {
                    let _ = conn.quit().await;
                    Ok(json!({ "accepted": accepted, "message_id": message_id }))
                }
                Err(e) => {
                    conn.abort().await;
                    Err(self.error(&e, Phase::Send, timeout))
                }
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| CallError::Timeout(timeout))?
    }
}

#[async_trait]
impl Connector for SmtpConnector {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        match request.action.as_str() {
            "send" => self.send(request).await,
            other => Err(CallError::Invalid(format!(
                "the smtp connector has no action `{other}` (send)"
            ))),
        }
    }

    async fn check(&self, _context: &CheckContext) -> CheckOutcome {
        let at = format!("{}:{}", self.host, self.port);
        let attempt = async {
            let (mut conn, steps) = self.open(CHECK_TIMEOUT).await?;
            let alive = conn.test_connected().await;
            let _ = conn.quit().await;
            if alive {
                Ok(steps)
            } else {
                Err(CallError::Connection(format!(
                    "{at} stopped answering after EHLO"
                )))
            }
        };
        match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
            Ok(Ok(steps)) => {
                let mut detail = format!("connected to {at}, {}", steps.join(", "));
                if self.credentials.is_none() {
                    detail.push_str(" (no AUTH configured)");
                }
                CheckOutcome::ok(detail)
            }
            Ok(Err(e)) => CheckOutcome::failed(self.redact(match e {
                CallError::Connection(m) | CallError::Invalid(m) | CallError::Failed(m) => m,
                other => other.to_string(),
            })),
            Err(_) => CheckOutcome::failed(format!(
                "{at}: no answer within {}s",
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}

/// The Message-ID of the mail sent under `key`: the same key gives the same Message-ID.
pub fn message_id(key: &str) -> String {
    format!("<{}@airlock>", hex::encode(Sha256::digest(key.as_bytes())))
}

/// Addresses from a string or a list of strings (`a@x`, `Name <a@x>`).
fn mailboxes(value: Option<&Value>, name: &str) -> Result<Vec<Mailbox>, CallError> {
    let parse = |s: &str| {
        s.trim().parse::<Mailbox>().map_err(|e| {
            CallError::Invalid(format!(
                "`send`: `{name}` has an invalid address `{}` ({e})",
                s.escape_debug()
            ))
        })
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![parse(s)?]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => parse(s),
                _ => Err(CallError::Invalid(format!(
                    "`send`: `{name}` must list addresses as text"
                ))),
            })
            .collect(),
        Some(_) => Err(CallError::Invalid(format!(
            "`send`: `{name}` must be an address or a list of addresses"
        ))),
    }
}

/// Resolves `host:port` through the environment's egress allowlist: a refusal is an
/// [`CallError::Egress`], a name that does not resolve a [`CallError::Connection`].
async fn resolve(egress: &Egress, host: &str, port: u16) -> Result<Vec<SocketAddr>, CallError> {
    let addrs = egress.lookup(host, port).await?;
    if addrs.is_empty() {
        return Err(CallError::Connection(format!(
            "{host}:{port} resolved to no address"
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_stable_per_key() {
        assert_eq!(message_id("k1"), message_id("k1"));
        assert_ne!(message_id("k1"), message_id("k2"));
        assert!(message_id("k1").starts_with('<') && message_id("k1").ends_with("@airlock>"));
    }
}
