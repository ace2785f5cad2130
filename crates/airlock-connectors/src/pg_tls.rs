//! TLS for the `sql` connector's PostgreSQL connections, with rustls.
//!
//! The URL speaks libpq's words, `sslmode` and `sslrootcert`, but tokio-postgres knows only
//! `disable|prefer|require` and no `sslrootcert`: [`split_url`] takes both out of the URL
//! before tokio-postgres reads it, and [`TlsSettings::connector`] builds the rustls client
//! that checks what the mode promises:
//!
//! - `disable` (and no `sslmode` at all): plain TCP, as before;
//! - `require`: encrypted; the certificate is not checked (any server that speaks TLS);
//!   with an `sslrootcert` given it is `verify-ca`, as in libpq;
//! - `verify-ca`: the certificate chains to a trusted root; its name is not checked;
//! - `verify-full`: the chain, and the URL's host is one of the certificate's names.
//!
//! `allow` and `prefer` are refused: both fall back to plain text without a word, which a
//! binding that reads "TLS" must never do. Trusted roots: the PEM file `sslrootcert` names
//! (only those, as libpq does), else (or with `sslrootcert=system`) the system's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What a connection promises about TLS (libpq's `sslmode`, less `allow` and `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// The operating system's store (rustls-native-certs).
    System,
    /// A PEM file of one or more certificates.
    File(PathBuf),
}

/// The TLS half of a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    pub(crate) roots: Roots,
}

/// Takes `sslmode` and `sslrootcert` out of `url` (the rest is left byte for byte as
/// written) and says what they ask for. A relative `sslrootcert` is read from `base_dir`
/// (the project's directory, as a `sqlite://` path is). Errors name the parameter, never
/// the URL (it may carry a password).
pub(crate) fn split_url(url: &str, base_dir: &Path) -> Result<(String, TlsSettings), String> {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((base, query)) => (base, query),
        None => (before_fragment, ""),
    };
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("`{key}` is not UTF-8 once percent-decoded"))?
            .into_owned();
        if slot.replace(value).is_some() {
            return Err(format!("`{key}` is given twice"));
        }
    }
    let roots = match root.as_deref() {
        None | Some("system") => Roots::System,
        Some("") => return Err("`sslrootcert` is empty (name a PEM file, or `system`)".into()),
        Some(path) => {
            let path = PathBuf::from(path);
            Roots::File(if path.is_absolute() {
                path
            } else {
                base_dir.join(path)
            })
        }
    };
    let mode = match mode.as_deref() {
        None | Some("disable") => SslMode::Disable,
        // As libpq: `require` with a root certificate named checks the chain.
        Some("require") if matches!(roots, Roots::File(_)) => SslMode::VerifyCa,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(downgrade @ ("allow" | "prefer")) => {
            return Err(format!(
                "sslmode={downgrade} is not supported: it falls back to an unencrypted \
                 connection without saying so; write sslmode=verify-full (or verify-ca, \
                 require), or sslmode=disable for plain text"
            ));
        }
        Some(other) => {
            return Err(format!(
                "unknown sslmode `{other}` (disable, require, verify-ca or verify-full)"
            ));
        }
    };
    if mode == SslMode::Disable && root.is_some() {
        return Err(
            "`sslrootcert` is given but TLS is not: add sslmode=verify-full (or verify-ca)".into(),
        );
    }
    let mut stripped = base.to_owned();
    if !kept.is_empty() {
        stripped.push('?');
        stripped.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        stripped.push('#');
        stripped.push_str(fragment);
    }
    Ok((stripped, TlsSettings { mode, roots }))
}

impl TlsSettings {
    /// The rustls client for this mode, or `None` for plain TCP. Reads the root
    /// certificates now, so a missing or unreadable file is said when the binding is built.
    pub(crate) fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = match self.mode {
            SslMode::Disable => return Ok(None),
            SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly {
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
            SslMode::VerifyCa => {
                let chain = webpki_verifier(self.roots()?, &provider)?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { chain }))
                    .with_no_client_auth()
            }
            SslMode::VerifyFull => builder
                .with_webpki_verifier(webpki_verifier(self.roots()?, &provider)?)
                .with_no_client_auth(),
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::File(path) => {
                store.add_parsable_certificates(
                    crate::tls::read_ca_file("sslrootcert", path).map_err(|e| e.to_string())?,
                );
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err(format!(
                        "sslmode={} needs trusted roots and the system store has none{}; \
                         name a CA file with sslrootcert=",
                        self.mode.name(),
                        found
                            .errors
                            .first()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        Ok(store)
    }
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| format!("TLS setup: {e}"))
}

/// `sslmode=require`: any certificate is accepted (the connection is encrypted, its peer
/// unchecked), but the handshake's signatures are still verified against it, so the
/// session is with whoever holds that certificate's key.
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the full webpki check (chain, validity, key usage), except that a
/// certificate valid for another name is accepted. webpki checks the name last, after the
/// chain, so a name mismatch means everything else held.
#[derive(Debug)]
struct ChainOnly {
    chain: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(String, TlsSettings), String> {
        split_url(url, Path::new("/project"))
    }

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays_as_written() {
        let (url, tls) = split(
            "postgres://u:p%26w@db.example:5433/app?application_name=a%20b&sslmode=verify-full&sslrootcert=certs/ca.pem&connect_timeout=5",
        )
        .expect("valid");
        assert_eq!(
            url,
            "postgres://u:p%26w@db.example:5433/app?application_name=a%20b&connect_timeout=5"
        );
        assert_eq!(
            tls,
            TlsSettings {
                mode: SslMode::VerifyFull,
                roots: Roots::File(PathBuf::from("/project/certs/ca.pem")),
            }
        );
        let (url, tls) = split("postgres://u@h/db?sslmode=require").expect("valid");
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(tls.roots, Roots::System);
    }

    #[test]
    fn no_sslmode_is_plain_and_require_with_a_root_checks_the_chain() {
        assert_eq!(
            split("postgres://u@h/db").expect("valid").1.mode,
            SslMode::Disable
        );
        let (_, tls) =
            split("postgres://u@h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem").expect("valid");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.roots, Roots::File(PathBuf::from("/etc/ca.pem")));
        let (_, tls) =
            split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=system").expect("valid");
        assert_eq!(tls.roots, Roots::System);
    }

    #[test]
    fn downgrading_unknown_and_repeated_modes_are_refused_by_name() {
        for (url, said) in [
            (
                "postgres://u:secret@h/db?sslmode=prefer",
                "sslmode=prefer is not supported",
            ),
            (
                "postgres://u:secret@h/db?sslmode=allow",
                "sslmode=allow is not supported",
            ),
            (
                "postgres://u:secret@h/db?sslmode=verify",
                "unknown sslmode `verify`",
            ),
            (
                "postgres://u:secret@h/db?sslmode=require&sslmode=disable",
                "`sslmode` is given twice",
            ),
            (
                "postgres://u:secret@h/db?sslrootcert=ca.pem",
                "`sslrootcert` is given but TLS is not",
            ),
            (
                "postgres://u:secret@h/db?sslmode=verify-ca&sslrootcert=",
                "`sslrootcert` is empty",
            ),
        ] {
            let error = split(url).expect_err(url);
            assert!(error.contains(said), "{url}: {error}");
            assert!(!error.contains("secret"), "{url}: {error}");
        }
    }

    #[test]
    fn a_missing_or_empty_root_file_is_said_when_the_binding_is_built() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = TlsSettings {
            mode: SslMode::VerifyFull,
            roots: Roots::File(dir.path().join("nope.pem")),
        };
        let error = missing.connector().err().expect("missing file");
        assert!(
            error.contains("cannot read sslrootcert") && error.contains("nope.pem"),
            "{error}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let error = TlsSettings {
            mode: SslMode::VerifyCa,
            roots: Roots::File(empty),
        }
        .connector()
        .err()
        .expect("no certificate");
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}
