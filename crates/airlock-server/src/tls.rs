//! `airlock serve --tls-cert FILE --tls-key FILE`: HTTPS served by the process itself, for
//! small installs without a reverse proxy.
//!
//! rustls (ring, as every TLS client of the workspace) under axum's own serve loop: a
//! [`TlsListener`] is an `axum::serve::Listener` whose connections arrive already past
//! their handshake. Handshakes run on tasks of their own, each bounded in time, so a
//! client that opens a connection and says nothing holds up no one else.

use crate::error::ServerError;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many handshakes in progress at once; more connections wait to be accepted.
const HANDSHAKES_AT_ONCE: usize = 256;

/// The certificate chain and private key a server serves TLS with (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// The private key of the leaf (`--tls-key`): PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files and builds the acceptor. Every problem names its file; the key's
    /// content never appears in an error.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, ServerError> {
        let certs = read_chain(&self.cert)?;
        let key = read_key(&self.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                ServerError::Tls(format!(
                    "--tls-key {} does not go with --tls-cert {}: {e}",
                    self.key.display(),
                    self.cert.display()
                ))
            })?;
        // axum serves HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| ServerError::Tls(format!("cannot read --tls-cert {shown}: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ServerError::Tls(format!("--tls-cert {shown} is not PEM certificates: {e}"))
        })?;
    if chain.is_empty() {
        return Err(ServerError::Tls(format!(
            "--tls-cert {shown} holds no PEM certificate"
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| ServerError::Tls(format!("cannot read --tls-key {shown}: {e}")))?;
    // The parser's error names the PEM problem, never the key's bytes.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        ServerError::Tls(format!(
            "--tls-key {shown} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })
}

/// A TCP listener whose connections are handed over after their TLS handshake.
pub(crate) struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(HANDSHAKES_AT_ONCE);
        let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // As axum's own listener: a full descriptor table passes.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            incoming,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    /// Serving stopped: no more connections are accepted.
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accepting task ended (only when aborted): nothing comes any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
