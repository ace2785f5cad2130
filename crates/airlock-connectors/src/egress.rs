//! Egress: which hosts an environment's connectors may reach.
//!
//! Every network connection a connector makes goes through [`Egress`]:
//!
//! - [`Egress::check_url`] admits only `http`/`https` URLs whose host is listed, refuses
//!   numeric host forms other than the canonical dotted quad as written
//!   (`http://2130706433/`, `http://0x7f.1/`, `http://127.1/` …), which the `url` crate
//!   would silently normalise, and requires IP literals to be listed literally.
//! - [`Egress::resolve`] resolves a listed name once and refuses it when any address it
//!   resolves to is special (loopback, private, link-local, mapped, cloud metadata …, see
//!   [`classify`]) unless that exact address is itself listed. Callers connect to exactly
//!   the addresses it returns, so a second lookup cannot rebind the name.
//! - [`Egress::http_client`] is a `reqwest` client whose resolver is [`Egress::resolve`]
//!   and which follows no redirect itself: the connectors follow them, each hop decided by
//!   [`Egress::check_redirect`] from the `Location` header as sent, by the same host rules
//!   as the first request (one function, `decide_host`).

use crate::CallError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::{Host, Url};

/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;

/// Resolves a host name to addresses. The default is the system resolver; tests inject
/// their own so that a listed name can resolve to anything.
#[async_trait]
pub trait HostResolver: Send + Sync {
    /// The addresses of `host` (a name, never a literal).
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`, through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl HostResolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, port)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// A fixed table of names to addresses, for tests: a name that is not in the table is
/// not found, unless the table falls back to the system resolver.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    entries: HashMap<String, Vec<IpAddr>>,
    system_fallback: bool,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// `host` resolves to `addresses`.
    pub fn host(mut self, host: &str, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.entries
            .insert(host.to_ascii_lowercase(), addresses.into_iter().collect());
        self
    }

    /// Names not in the table go to the system resolver.
    pub fn with_system_fallback(mut self) -> Self {
        self.system_fallback = true;
        self
    }
}

#[async_trait]
impl HostResolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        match self.entries.get(&host.to_ascii_lowercase()) {
            Some(addresses) => Ok(addresses.clone()),
            None if self.system_fallback => SystemResolver.resolve(host, port).await,
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no address for `{host}`"),
            )),
        }
    }
}

/// An environment's egress allowlist.
pub struct Egress {
    /// The environment.
    pub environment: String,
    /// Hosts (names or literal addresses) its connectors may reach.
    pub allowed: Vec<String>,
    resolver: Arc<dyn HostResolver>,
    /// The HTTP clients built so far, one per [`ClientOptions`] asked for.
    clients: Mutex<Vec<(ClientOptions, reqwest::Client)>>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("environment", &self.environment)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl Clone for Egress {
    /// A clone shares the resolver but builds its own HTTP client (its rules may change).
    fn clone(&self) -> Self {
        Self {
            environment: self.environment.clone(),
            allowed: self.allowed.clone(),
            resolver: Arc::clone(&self.resolver),
            clients: Mutex::default(),
        }
    }
}

/// How a binding's HTTP client differs from the environment's plain one: what it trusts
/// beside the system's and Mozilla's roots and `AIRLOCK_CA_FILE`, and the proxy it goes
/// through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// A PEM file of extra CA certificates (the binding's `ca_file`, resolved against the
    /// project folder).
    pub ca_file: Option<PathBuf>,
    /// An HTTP proxy (the binding's `proxy:`): `https` URLs are tunnelled through it with
    /// `CONNECT`, `http` URLs sent to it. Checked by [`Egress::check_proxy`] first: the
    /// proxy is a host this environment reaches.
    pub proxy: Option<Url>,
}

/// A destination the allowlist refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress refused in environment `{environment}`: `{host}` {reason}")]
pub struct EgressError {
    /// The environment.
    pub environment: String,
    /// The host asked for.
    pub host: String,
    /// Why (not listed, resolves to a private address, scheme not allowed, …).
    pub reason: String,
}

/// Why [`Egress::lookup`] gave no addresses: a refusal, or a name that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The allowlist refuses the host or one of its addresses.
    #[error(transparent)]
    Refused(#[from] EgressError),
    /// The host is allowed but could not be resolved (a connection failure, retryable).
    #[error("could not resolve `{host}`: {message}")]
    Lookup {
        /// The host.
        host: String,
        /// What the resolver said.
        message: String,
    },
}

impl From<ResolveError> for CallError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::Refused(refused) => CallError::Egress(refused),
            lookup @ ResolveError::Lookup { .. } => CallError::Connection(lookup.to_string()),
        }
    }
}

impl Egress {
    /// The allowlist of `environment`, resolving names with the system resolver.
    pub fn new(environment: impl Into<String>, allowed: Vec<String>) -> Self {
        Self {
            environment: environment.into(),
            allowed,
            resolver: Arc::new(SystemResolver),
            clients: Mutex::default(),
        }
    }

    /// The same allowlist, resolving names with `resolver`.
    pub fn with_resolver(self, resolver: Arc<dyn HostResolver>) -> Self {
        Self {
            environment: self.environment,
            allowed: self.allowed,
            resolver,
            clients: Mutex::default(),
        }
    }

    fn refused(&self, host: impl Into<String>, reason: impl Into<String>) -> EgressError {
        EgressError {
            environment: self.environment.clone(),
            host: host.into(),
            reason: reason.into(),
        }
    }

    fn not_listed(&self) -> String {
        format!(
            "is not in the egress list of environment `{}`",
            self.environment
        )
    }

    /// Whether the address `ip` is listed literally.
    pub fn lists_address(&self, ip: IpAddr) -> bool {
        self.allowed
            .iter()
            .filter_map(|entry| parse_ip_literal(entry.trim()))
            .any(|listed| listed == ip)
    }

    /// Whether the name `host` is listed, exactly (case-insensitive) or under a
    /// `*.domain` entry.
    pub fn lists_name(&self, host: &str) -> bool {
        let host = normalize_name(host);
        if host.is_empty() || !host.chars().all(is_name_char) {
            return false;
        }
        self.allowed.iter().any(|entry| {
            let entry = normalize_name(entry.trim());
            if let Some(domain) = entry.strip_prefix("*.") {
                !domain.is_empty()
                    && host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host[..host.len() - domain.len()].ends_with('.')
            } else {
                entry == host
            }
        })
    }

    /// Checks a URL before anything connects to it: the scheme is `http` or `https`,
    /// the host is listed, an IPv4 host is written as a canonical dotted quad and an IP
    /// literal is listed literally. Names are checked again, after resolution, by
    /// [`Egress::resolve`].
    pub fn check_url(&self, url: &str) -> Result<Url, EgressError> {
        let raw = url.trim_matches(|c: char| c <= ' ');
        let Some(scheme) = raw_scheme(raw) else {
            return Err(self.refused(
                raw_host(raw).unwrap_or("(no host)"),
                "is not an absolute http or https URL",
            ));
        };
        let parsed = Url::parse(raw);
        if scheme != "http" && scheme != "https" {
            let host = match &parsed {
                Ok(u) => u.host_str().filter(|h| !h.is_empty()).map(str::to_owned),
                Err(_) => None,
            }
            .unwrap_or_else(|| format!("{scheme}:"));
            return Err(self.refused(
                host,
                format!("uses the `{scheme}` scheme; only http and https are allowed"),
            ));
        }
        let raw_host = raw_host(raw).unwrap_or("");
        let parsed = parsed.map_err(|e| {
            let shown = if raw_host.is_empty() {
                "(invalid URL)"
            } else {
                raw_host
            };
            self.refused(shown, format!("is not a valid URL ({e})"))
        })?;
        match parsed.host() {
            Some(host) => self.decide_host(raw_host, host)?,
            None => return Err(self.refused("(no host)", "has no host")),
        }
        Ok(parsed)
    }

    /// Checks where a redirect points before it is followed, from the `Location` header
    /// exactly as the server sent it: an absolute or scheme-relative target is decided by
    /// [`Egress::check_url`] on its own text, so `http://2130706433/` is refused at a hop as
    /// it is in a base URL (the `url` crate would already have made it `127.0.0.1`); a
    /// path, query or fragment keeps `from`'s host, which was decided when it was
    /// requested. Returns the URL to request next.
    pub fn check_redirect(&self, from: &Url, location: &str) -> Result<Url, EgressError> {
        // What a URL parser ignores: leading and trailing controls and spaces, and tabs
        // and newlines anywhere. Read the text as it will be read.
        let text: String = location
            .trim_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect();
        if raw_scheme(&text).is_some() {
            return self.check_url(&text);
        }
        // For http and https a backslash is a slash: `/\\host` names a host too.
        let mut leading = text.chars().take_while(|c| matches!(c, '/' | '\\'));
        if leading.next().is_some() && leading.next().is_some() {
            return self.check_url(&format!("{}:{text}", from.scheme()));
        }
        let joined = from.join(&text).map_err(|e| {
            self.refused(
                from.host_str().unwrap_or("(no host)"),
                format!("redirects to an invalid URL ({e})"),
            )
        })?;
        self.check_url(joined.as_str())
    }

    /// The one decision on a host, for the first request, every redirect hop and every
    /// name the resolver is asked for: `raw` is the host as written, `host` what a URL
    /// parser made of it. A numeric form other than the canonical dotted quad (decimal
    /// `2130706433`, hex `0x7f.1`, octal `0177.0.0.1`, short `127.1`) is refused whether
    /// or not it was normalised already, an address literal must be listed as an
    /// address, a name must be listed as a name.
    fn decide_host(&self, raw: &str, host: Host<&str>) -> Result<(), EgressError> {
        match host {
            Host::Ipv4(ip) => {
                if raw != ip.to_string() {
                    return Err(self.refused(
                        raw,
                        format!(
                            "is a non-canonical numeric address (it means {ip}); \
                             only a dotted quad such as {ip} is accepted, and only when listed"
                        ),
                    ));
                }
                self.check_literal(IpAddr::V4(ip))
            }
            Host::Ipv6(ip) => self.check_literal(IpAddr::V6(ip)),
            Host::Domain(name) => self.check_name(raw, name),
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), EgressError> {
        if self.lists_address(ip) {
            return Ok(());
        }
        let mut reason = format!("is an address literal that {}", self.not_listed());
        if let Some(special) = classify(ip) {
            reason.push_str(&format!(" ({special})"));
        }
        Err(self.refused(ip.to_string(), reason))
    }

    fn check_name(&self, raw_host: &str, name: &str) -> Result<(), EgressError> {
        if raw_host.contains('%') || name.contains('%') {
            return Err(self.refused(raw_host, "is percent-encoded; write the host name plainly"));
        }
        if ends_in_number(name) {
            return Err(self.refused(
                name,
                "is a non-canonical numeric address; only a listed dotted quad is accepted",
            ));
        }
        if !self.lists_name(name) {
            return Err(self.refused(name, self.not_listed()));
        }
        Ok(())
    }

    /// Resolves a listed host once and checks every address it resolves to; callers
    /// connect to exactly the returned addresses. A failed lookup is reported as a
    /// refusal too; [`Egress::lookup`] tells the two apart.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        self.lookup(host, port).await.map_err(|error| match error {
            ResolveError::Refused(refused) => refused,
            ResolveError::Lookup { host, message } => {
                self.refused(host, format!("could not be resolved ({message})"))
            }
        })
    }

    /// As [`Egress::resolve`], but a name that does not resolve is a
    /// [`ResolveError::Lookup`] (a connection failure), not a refusal.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let name = normalize_host(host);
        if name.is_empty() {
            return Err(self.refused("(empty)", "is not a host").into());
        }
        // The resolver is asked for what a URL parser made of the host; it is decided by the
        // same rules as the URL it came from.
        let host = match parse_ip_literal(&name) {
            Some(IpAddr::V4(v4)) => Host::Ipv4(v4),
            Some(IpAddr::V6(v6)) => Host::Ipv6(v6),
            None if !name.chars().all(is_name_char) => {
                return Err(self.refused(name, "is not a valid host name").into());
            }
            None => Host::Domain(name.as_str()),
        };
        self.decide_host(&name, host.clone())?;
        match host {
            Host::Ipv4(ip) => return Ok(vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Host::Ipv6(ip) => return Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Host::Domain(_) => {}
        }
        let resolved =
            self.resolver
                .resolve(&name, port)
                .await
                .map_err(|e| ResolveError::Lookup {
                    host: name.clone(),
                    message: e.to_string(),
                })?;
        if resolved.is_empty() {
            return Err(ResolveError::Lookup {
                host: name,
                message: "no addresses".to_owned(),
            });
        }
        let mut addresses: Vec<SocketAddr> = Vec::with_capacity(resolved.len());
        for ip in resolved {
            if let Some(special) = classify(ip)
                && !self.lists_address(ip)
            {
                return Err(self
                    .refused(
                        name,
                        format!(
                            "resolves to {ip}, {special}; list `{ip}` in the egress of `{}` \
                             to allow it",
                            self.environment
                        ),
                    )
                    .into());
            }
            let address = SocketAddr::new(ip, port);
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        Ok(addresses)
    }

    /// Checks a proxy URL by the rules of every host (listed, canonical, resolved within
    /// the list when it is a name, which the client's resolver does on connecting): an
    /// `http` or `https` URL with a host, and nothing else (a path would be ignored, a
    /// credential belongs in a secret the proxy does not log).
    pub fn check_proxy(&self, proxy: &str) -> Result<Url, EgressError> {
        let url = self.check_url(proxy)?;
        let host = url.host_str().unwrap_or("(no host)").to_owned();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.refused(
                host,
                "is a proxy URL with a user or password; Airlock's proxies take none",
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(self.refused(
                host,
                "is a proxy URL with a path; write only `http://host:port`",
            ));
        }
        Ok(url)
    }

    /// This environment's HTTP client for `options`: rustls (see [`crate::tls`]: system
    /// and Mozilla roots, `AIRLOCK_CA_FILE`, the binding's `ca_file`), pooled keep-alive,
    /// names resolved only through [`Egress::resolve`] (the proxy's too), no redirect
    /// followed (the connectors follow them hop by hop, each checked by
    /// [`Egress::check_redirect`], at most [`MAX_REDIRECTS`]), no proxy from the process's
    /// environment (`HTTPS_PROXY` would route every environment's calls through a host
    /// none of their egress lists names), only the binding's own. Built once per `Egress`
    /// and options, and shared by its connectors.
    pub fn http_client(
        self: &Arc<Self>,
        options: &ClientOptions,
    ) -> Result<reqwest::Client, CallError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = clients.iter().find(|(known, _)| known == options) {
            return Ok(client.clone());
        }
        let extra = match &options.ca_file {
            Some(path) => crate::tls::read_ca_file("ca_file", path)
                .map_err(|e| CallError::Invalid(e.to_string()))?,
            None => Vec::new(),
        };
        let tls =
            crate::tls::client_config(&extra).map_err(|e| CallError::Invalid(e.to_string()))?;
        // The resolver holds its own copy of the rules, so the client cached here does not
        // keep its `Egress` alive.
        let rules = Arc::new(Egress::clone(self));
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .dns_resolver(Arc::new(EgressResolver { egress: rules }))
            // Redirects are followed by `http::send`, which decides every hop from the
            // `Location` header as sent ([`Egress::check_redirect`]); reqwest's policy sees
            // only the URL it has already normalised.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10));
        if let Some(proxy) = &options.proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
                CallError::Invalid(format!("the proxy is not usable: {}", e.without_url()))
            })?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| CallError::Connection(format!("could not build the HTTP client: {e}")))?;
        clients.push((options.clone(), client.clone()));
        Ok(client)
    }
}

/// A redirect chain longer than [`MAX_REDIRECTS`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
pub struct TooManyRedirects;

/// `reqwest`'s resolver over [`Egress::lookup`]: reqwest connects only to checked
/// addresses. A refusal surfaces as an [`EgressError`] in the error's source chain.
struct EgressResolver {
    egress: Arc<Egress>,
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = Arc::clone(&self.egress);
        Box::pin(async move {
            match egress.lookup(name.as_str(), 0).await {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs),
                Err(ResolveError::Refused(refused)) => Err(Box::new(refused) as _),
                Err(lookup @ ResolveError::Lookup { .. }) => {
                    Err(Box::new(io::Error::new(io::ErrorKind::NotFound, lookup.to_string())) as _)
                }
            }
        })
    }
}

/// What is special about an address that egress refuses unless it is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT.
    SharedCgnat,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated).
    SiteLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240/4`.
    Reserved,
    /// `192.0.0.0/24`.
    ProtocolAssignment,
    /// `64:ff9b:1::/48`, local-use NAT64.
    LocalNat64,
    /// A cloud provider's instance metadata service.
    CloudMetadata,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedCgnat => "a carrier-grade NAT (shared) address",
            Self::LinkLocal => "a link-local address",
            Self::UniqueLocal => "a unique-local address",
            Self::SiteLocal => "a site-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "a reserved address",
            Self::ProtocolAssignment => "an IETF protocol-assignment address",
            Self::LocalNat64 => "a local-use NAT64 address",
            Self::CloudMetadata => "a cloud metadata address",
        })
    }
}

/// How an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:0:0/96`.
    Mapped,
    /// `::/96` (deprecated IPv4-compatible).
    Compatible,
    /// `64:ff9b::/96`.
    Nat64,
    /// `2002::/16`.
    SixToFour,
    /// `2001::/32` (the client address, de-obfuscated).
    Teredo,
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mapped => "an IPv4-mapped IPv6 form",
            Self::Compatible => "an IPv4-compatible IPv6 form",
            Self::Nat64 => "a NAT64 form",
            Self::SixToFour => "a 6to4 form",
            Self::Teredo => "a Teredo form",
        })
    }
}

/// A special address: its class, and the IPv4 address it embeds when that is what is
/// special about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialAddress {
    /// What is special.
    pub class: AddressClass,
    /// The embedded IPv4 address the class belongs to, and how it is embedded.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for SpecialAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((embedding, v4)) => write!(f, "{embedding} of {v4}, {}", self.class),
            None => write!(f, "{}", self.class),
        }
    }
}

const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack …
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];

const METADATA_V6: [Ipv6Addr; 1] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS (IPv6 IMDS)
];

/// What is special about `ip`, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<SpecialAddress> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|class| SpecialAddress {
            class,
            embedded: None,
        }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    if METADATA_V4.contains(&ip) {
        return Some(AddressClass::CloudMetadata);
    }
    Some(match ip.octets() {
        [0, ..] => AddressClass::Unspecified,
        [10, ..] => AddressClass::Private,
        [100, b, ..] if (64..128).contains(&b) => AddressClass::SharedCgnat,
        [127, ..] => AddressClass::Loopback,
        [169, 254, ..] => AddressClass::LinkLocal,
        [172, b, ..] if (16..32).contains(&b) => AddressClass::Private,
        [192, 0, 0, _] => AddressClass::ProtocolAssignment,
        [192, 168, ..] => AddressClass::Private,
        [255, 255, 255, 255] => AddressClass::Broadcast,
        [224..=239, ..] => AddressClass::Multicast,
        [240..=255, ..] => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<SpecialAddress> {
    let plain = |class| {
        Some(SpecialAddress {
            class,
            embedded: None,
        })
    };
    let embedded = |embedding, v4: Ipv4Addr| {
        classify_v4(v4).map(|class| SpecialAddress {
            class,
            embedded: Some((embedding, v4)),
        })
    };
    if METADATA_V6.contains(&ip) {
        return plain(AddressClass::CloudMetadata);
    }
    if ip.is_unspecified() {
        return plain(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return plain(AddressClass::Loopback);
    }
    let s = ip.segments();
    let low32 = Ipv4Addr::from(((u32::from(s[6])) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => embedded(Embedding::Mapped, low32),
        [0, 0, 0, 0, 0, 0, _, _] => embedded(Embedding::Compatible, low32),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => embedded(Embedding::Nat64, low32),
        [0x64, 0xff9b, 1, ..] => plain(AddressClass::LocalNat64),
        [0x2002, hi, lo, ..] => embedded(
            Embedding::SixToFour,
            Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)),
        ),
        [0x2001, 0, ..] => embedded(Embedding::Teredo, Ipv4Addr::from(!u32::from(low32))),
        [first, ..] if first & 0xfe00 == 0xfc00 => plain(AddressClass::UniqueLocal),
        [first, ..] if first & 0xffc0 == 0xfe80 => plain(AddressClass::LinkLocal),
        [first, ..] if first & 0xffc0 == 0xfec0 => plain(AddressClass::SiteLocal),
        [first, ..] if first & 0xff00 == 0xff00 => plain(AddressClass::Multicast),
        _ => None,
    }
}

/// `[v6]`, `v6` or a v4 literal as an address.
fn parse_ip_literal(text: &str) -> Option<IpAddr> {
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

/// A host as given, lowercased, without brackets.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

/// A name lowercased, without one trailing dot.
fn normalize_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_owned(),
        None => lower,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// Whether a name's last label is a number (decimal, octal or `0x` hex), which URL
/// parsers and `inet_aton` read as an IPv4 address.
fn ends_in_number(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.is_empty() {
        return false;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// The scheme of a raw URL, lowercased.
fn raw_scheme(raw: &str) -> Option<String> {
    let (scheme, _) = raw.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some(scheme.to_ascii_lowercase())
}

/// The host of a raw URL as written, before any normalisation: after the scheme and
/// any slashes or backslashes, up to the path, query or fragment, after any userinfo
/// and before any port (as a WHATWG URL parser reads a special URL).
fn raw_host(raw: &str) -> Option<&str> {
    let (_, rest) = raw.split_once(':')?;
    let rest = rest.trim_start_matches(['/', '\\']);
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    if host_port.starts_with('[') {
        return Some(match host_port.find(']') {
            Some(close) => &host_port[..=close],
            None => host_port,
        });
    }
    Some(match host_port.find(':') {
        Some(colon) => &host_port[..colon],
        None => host_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> IpAddr {
        IpAddr::V4(text.parse().expect("test literal"))
    }

    fn v6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse().expect("test literal"))
    }

    #[test]
    fn classifies_every_special_form() {
        use AddressClass::*;
        use Embedding::*;
        let plain: &[(&str, AddressClass)] = &[
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.7", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("169.254.170.2", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("192.0.0.192", CloudMetadata),
            ("192.0.0.8", ProtocolAssignment),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("fec0::1", SiteLocal),
            ("ff02::1", Multicast),
            ("64:ff9b:1::1", LocalNat64),
        ];
        for (text, class) in plain {
            let ip: IpAddr = text.parse().expect("test literal");
            assert_eq!(
                classify(ip),
                Some(SpecialAddress {
                    class: *class,
                    embedded: None
                }),
                "{text}"
            );
        }
        let embedded: &[(&str, Embedding, &str, AddressClass)] = &[
            (
                "::ffff:169.254.169.254",
                Mapped,
                "169.254.169.254",
                CloudMetadata,
            ),
            ("::ffff:127.0.0.1", Mapped, "127.0.0.1", Loopback),
            ("::ffff:10.0.0.7", Mapped, "10.0.0.7", Private),
            ("::ffff:0.0.0.0", Mapped, "0.0.0.0", Unspecified),
            ("::ffff:7f00:1", Mapped, "127.0.0.1", Loopback),
            ("::127.0.0.1", Compatible, "127.0.0.1", Loopback),
            (
                "::169.254.169.254",
                Compatible,
                "169.254.169.254",
                CloudMetadata,
            ),
            (
                "64:ff9b::a9fe:a9fe",
                Nat64,
                "169.254.169.254",
                CloudMetadata,
            ),
            ("64:ff9b::192.168.0.1", Nat64, "192.168.0.1", Private),
            ("2002:7f00:1::1", SixToFour, "127.0.0.1", Loopback),
            (
                "2002:a9fe:a9fe::",
                SixToFour,
                "169.254.169.254",
                CloudMetadata,
            ),
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                Teredo,
                "127.0.0.1",
                Loopback,
            ),
        ];
        for (text, embedding, inner, class) in embedded {
            let ip: IpAddr = text.parse().expect("test literal");
            assert_eq!(
                classify(ip),
                Some(SpecialAddress {
                    class: *class,
                    embedded: Some((*embedding, inner.parse().expect("test literal"))),
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn ordinary_public_addresses_are_not_special() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "192.169.0.1",
            "11.0.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = text.parse().expect("test literal");
            assert_eq!(classify(ip), None, "{text}");
        }
    }

    #[test]
    fn messages_name_the_embedded_address() {
        let special = classify(v6("::ffff:169.254.169.254")).expect("special");
        assert_eq!(
            special.to_string(),
            "an IPv4-mapped IPv6 form of 169.254.169.254, a cloud metadata address"
        );
    }

    #[test]
    fn raw_hosts_are_read_as_written() {
        for (url, host) in [
            ("http://2130706433/", "2130706433"),
            ("http://0x7f.1/x", "0x7f.1"),
            ("http://user:pw@127.1:80/", "127.1"),
            ("http:\\\\127.1\\x", "127.1"),
            ("http:127.1", "127.1"),
            ("https://[::1]:8443/a", "[::1]"),
            ("http://a.example?x", "a.example"),
            ("http://a.example#x", "a.example"),
        ] {
            assert_eq!(raw_host(url), Some(host), "{url}");
        }
    }

    #[test]
    fn numeric_names_are_detected() {
        for name in [
            "2130706433",
            "127.1",
            "0x7f.1",
            "1.2.3.0x4",
            "017700000001",
            "a.1.",
        ] {
            assert!(ends_in_number(name), "{name}");
        }
        for name in ["example.com", "1.example", "x0x7f", "0xg"] {
            assert!(!ends_in_number(name), "{name}");
        }
    }

    #[test]
    fn names_match_exactly_or_under_a_wildcard() {
        let egress = Egress::new(
            "staging",
            vec!["API.example.com".into(), "*.hooks.example".into()],
        );
        assert!(egress.lists_name("api.example.com"));
        assert!(egress.lists_name("Api.Example.Com."));
        assert!(!egress.lists_name("example.com"));
        assert!(!egress.lists_name("xapi.example.com"));
        assert!(egress.lists_name("a.hooks.example"));
        assert!(egress.lists_name("b.a.hooks.example"));
        assert!(!egress.lists_name("hooks.example"));
        assert!(!egress.lists_name("evilhooks.example"));
        assert!(!egress.lists_name("evil.com/.hooks.example"));
    }

    #[test]
    fn literals_are_compared_as_addresses() {
        let egress = Egress::new("staging", vec!["127.0.0.1".into(), "[::1]".into()]);
        assert!(egress.lists_address(v4("127.0.0.1")));
        assert!(egress.lists_address(v6("0:0:0:0:0:0:0:1")));
        assert!(!egress.lists_address(v6("::ffff:127.0.0.1")));
        assert!(!egress.lists_address(v4("127.0.0.2")));
    }

    #[test]
    fn check_url_refuses_schemes_numeric_forms_and_unlisted_hosts() {
        let egress = Egress::new(
            "staging",
            vec!["127.0.0.1".into(), "api.example".into(), "[::1]".into()],
        );
        for url in [
            "file:///etc/passwd",
            "ftp://api.example/",
            "gopher://api.example/",
            "data:text/plain,hi",
            "javascript:alert(1)",
            "//api.example/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://127.0.0.1./",
            "http:\\\\127.1\\",
            "http://%31%32%37.0.0.1/",
            "http://api.example@127.1/",
            "http://other.example/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.7/",
        ] {
            assert!(egress.check_url(url).is_err(), "{url} should be refused");
        }
        for url in [
            "http://127.0.0.1:8080/x",
            "https://API.example/x?y=1",
            "http://user@api.example/",
            "http://[::1]:9/",
        ] {
            assert!(egress.check_url(url).is_ok(), "{url} should pass");
        }
    }

    #[test]
    fn a_redirect_is_decided_from_the_location_as_sent() {
        let egress = Egress::new("staging", vec!["127.0.0.1".into(), "api.example".into()]);
        let from = Url::parse("http://127.0.0.1:8080/a/b").expect("test URL");
        for location in [
            "http://2130706433:8080/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "//127.1/x",
            "/\\127.1/x",
            "\\\\0x7f.1/",
            " \thttp://127.1/",
            "/\t/127.1/",
            "http:\\\\127.1\\",
            "ftp://api.example/",
            "http://other.example/",
        ] {
            assert!(
                egress.check_redirect(&from, location).is_err(),
                "{location:?} should be refused"
            );
        }
        for (location, next) in [
            ("/c", "http://127.0.0.1:8080/c"),
            ("c?d=1", "http://127.0.0.1:8080/a/c?d=1"),
            ("http://api.example/x", "http://api.example/x"),
            ("//api.example/y", "http://api.example/y"),
            ("http://127.0.0.1:9/z", "http://127.0.0.1:9/z"),
        ] {
            assert_eq!(
                egress.check_redirect(&from, location).map(String::from),
                Ok(next.to_owned()),
                "{location:?}"
            );
        }
    }

    #[test]
    fn refusals_name_the_host_the_environment_and_why() {
        let egress = Egress::new("staging", vec![]);
        let error = egress
            .check_url("http://0x7f.1/")
            .expect_err("numeric form");
        assert_eq!(error.host, "0x7f.1");
        assert!(error.to_string().contains("`staging`"), "{error}");
        assert!(error.reason.contains("127.0.0.1"), "{error}");
        let error = egress.check_url("file:///etc/passwd").expect_err("file");
        assert!(error.reason.contains("`file` scheme"), "{error}");
    }

    #[tokio::test]
    async fn resolve_checks_every_address_and_pins_them() {
        let resolver = StaticResolver::new()
            .host("localhost", [v4("127.0.0.1")])
            .host("both.example", [v4("93.184.216.34"), v4("10.0.0.7")])
            .host("public.example", [v4("93.184.216.34"), v4("93.184.216.34")]);
        let egress = Egress::new(
            "staging",
            vec![
                "127.0.0.1".into(),
                "localhost".into(),
                "both.example".into(),
                "public.example".into(),
            ],
        )
        .with_resolver(Arc::new(resolver));
        assert_eq!(
            egress.resolve("localhost", 80).await,
            Ok(vec![SocketAddr::new(v4("127.0.0.1"), 80)])
        );
        let error = egress
            .resolve("both.example", 80)
            .await
            .expect_err("one private address");
        assert!(
            error
                .reason
                .contains("resolves to 10.0.0.7, a private address")
        );
        assert_eq!(
            egress.resolve("public.example", 443).await,
            Ok(vec![SocketAddr::new(v4("93.184.216.34"), 443)])
        );
        assert_eq!(
            egress.resolve("127.0.0.1", 5).await,
            Ok(vec![SocketAddr::new(v4("127.0.0.1"), 5)])
        );
        for host in ["127.1", "2130706433", "0x7f.1", "10.0.0.7", "[::1]"] {
            assert!(egress.resolve(host, 80).await.is_err(), "{host}");
        }
        assert!(matches!(
            egress.lookup("missing.example", 80).await,
            Err(ResolveError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_a_refusal() {
        let egress = Egress::new("staging", vec!["gone.example".into()])
            .with_resolver(Arc::new(StaticResolver::new()));
        assert!(matches!(
            egress.lookup("gone.example", 80).await,
            Err(ResolveError::Lookup { .. })
        ));
        let call: CallError = egress
            .lookup("gone.example", 80)
            .await
            .expect_err("lookup")
            .into();
        assert!(matches!(call, CallError::Connection(_)));
    }
}
