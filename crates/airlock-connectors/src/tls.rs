//! What an outbound TLS connection of ours trusts, and how a CA file is read.
//!
//! Every HTTPS client Airlock builds (the `http` and `chat_webhook` connectors' through
//! [`crate::Egress`], the CLI's `--server` client) verifies with webpki against the
//! operating system's store (rustls-native-certs) **plus** the Mozilla bundle
//! (webpki-roots), so a container without `ca-certificates` still reaches public hosts,
//! **plus** the certificates of `AIRLOCK_CA_FILE` (process-wide) and of a binding's
//! `ca_file`. The crypto provider is ring, as for every other TLS client in the workspace,
//! handed to each configuration explicitly: no process-wide default is installed or needed.

/// A certificate, DER: what [`read_ca_file`] reads and [`client_config`] trusts.
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The environment variable naming a PEM file of extra CA certificates trusted by every
/// outbound HTTPS connection of the process.
pub const CA_FILE_ENV: &str = "AIRLOCK_CA_FILE";

/// Why a file of CA certificates cannot be used. `what` names where the file was given
/// (`ca_file`, `AIRLOCK_CA_FILE`, `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read (missing, a folder, no permission).
    #[error("cannot read {what} {}: {reason}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The file is not PEM.
    #[error("{what} {} is not PEM certificates: {reason}", path.display())]
    NotPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A PEM block that is not a certificate a verifier can use as a root.
    #[error("{what} {} holds a bad certificate (number {number}): {reason}", path.display())]
    BadCertificate {
        what: &'static str,
        path: PathBuf,
        number: usize,
        reason: String,
    },
    /// rustls refused the configuration (with ring, every safe default version is there:
    /// not expected).
    #[error("TLS setup: {0}")]
    Setup(String),
    /// PEM, but no `CERTIFICATE` block in it.
    #[error("{what} {} holds no PEM certificate", path.display())]
    Empty { what: &'static str, path: PathBuf },
}

impl CaFileError {
    /// The same problem, naming the file as `written` (relative to the project, as in
    /// `airlock.yaml`) rather than where it was read.
    pub fn written_as(mut self, written: &Path) -> Self {
        match &mut self {
            Self::Unreadable { path, .. }
            | Self::NotPem { path, .. }
            | Self::BadCertificate { path, .. }
            | Self::Empty { path, .. } => *path = written.to_path_buf(),
            Self::Setup(_) => {}
        }
        self
    }
}

/// Reads every certificate of a PEM file (several may follow one another), each checked to
/// be usable as a trust anchor, so a bad file is refused when it is named, not at the
/// first handshake.
pub fn read_ca_file(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let pem = std::fs::read(path).map_err(|e| CaFileError::Unreadable {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut certificates = Vec::new();
    let mut check = RootCertStore::empty();
    for (index, certificate) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let certificate = certificate.map_err(|e| CaFileError::NotPem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        check
            .add(certificate.clone())
            .map_err(|e| CaFileError::BadCertificate {
                what,
                path: path.to_path_buf(),
                number: index + 1,
                reason: e.to_string(),
            })?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(CaFileError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The certificates of `AIRLOCK_CA_FILE`, read once per process (none when it is unset or
/// empty). A bad file is an error every client build reports, naming the variable.
pub fn environment_roots() -> Result<&'static [CertificateDer<'static>], CaFileError> {
    static ROOTS: OnceLock<Result<Vec<CertificateDer<'static>>, CaFileError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| match std::env::var_os(CA_FILE_ENV) {
            Some(path) if !path.is_empty() => read_ca_file(CA_FILE_ENV, Path::new(&path)),
            _ => Ok(Vec::new()),
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

/// The operating system's roots, read once per process (reading them is file I/O).
/// Unparsable ones are skipped, as every TLS client does; none at all is fine, the Mozilla
/// bundle is there too.
pub(crate) fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The rustls configuration of an outbound HTTPS client: webpki over the system's roots,
/// the Mozilla bundle, `AIRLOCK_CA_FILE` and `extra` (a binding's `ca_file`), ring.
pub fn client_config(extra: &[CertificateDer<'static>]) -> Result<ClientConfig, CaFileError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(system_roots().iter().cloned());
    // Checked when read: these add.
    roots.add_parsable_certificates(environment_roots()?.iter().cloned());
    roots.add_parsable_certificates(extra.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring supports every safe default version: this cannot fail with it.
        .map_err(|e| CaFileError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
