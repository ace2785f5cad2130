//! `airlock serve --tls-cert --tls-key`: the real binary serving HTTPS on loopback with a
//! certificate a CA made in the test signs. A client trusting that CA reads `/readyz` and
//! signs in to the console, whose cookie is `Secure`; the CLI's own `--server` client
//! trusts it through `AIRLOCK_CA_FILE`; bad files stop the server before it listens,
//! naming the file.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::StatusCode;
use std::path::Path;
use support::server::Served;
use support::{airlock, airlock_with, create_token, init_project, shown, text};

/// A CA, and a server certificate and key it signs for loopback, written as PEM files
/// into `dir`: `ca.pem`, `server.pem`, `server.key`.
fn certificates(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
}

#[test]
fn serves_https_with_a_secure_console_cookie() {
    let (temp, project) = init_project();
    let tls = temp.path();
    certificates(tls);
    let cert = tls.join("server.pem").display().to_string();
    let key = tls.join("server.key").display().to_string();
    let ca = tls.join("ca.pem");
    let served = Served::start_tls(&project, &ca, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(
        served.url.starts_with("https://127.0.0.1:"),
        "{}",
        served.url
    );

    let client = served
        .client()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let ready = client
        .get(format!("{}/readyz", served.url))
        .send()
        .expect("/readyz over TLS");
    assert_eq!(ready.status(), StatusCode::OK);

    // Without the CA the handshake is refused: the server's certificate is the test CA's.
    let stranger = support::http_client().build().expect("client");
    let refused = stranger
        .get(format!("{}/readyz", served.url))
        .send()
        .expect_err("an unknown issuer");
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );
    // Nor does plain HTTP reach anything on the TLS port.
    let plain = served.url.replacen("https://", "http://", 1);
    assert!(
        stranger
            .get(format!("{plain}/readyz"))
            .send()
            .map(|r| r.status() != StatusCode::OK)
            .unwrap_or(true)
    );

    let token = create_token(&project, "staging", "runner", "ops");
    let signed = client
        .post(format!("{}/sign-in", served.url))
        .header("content-type", "application/x-www-form-urlencoded")
        // A token is `alk_` and URL-safe characters: nothing to encode.
        .body(format!("token={token}"))
        .send()
        .expect("sign in");
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("; Secure"),
        "the session cookie never travels in the clear: {cookie}"
    );
    // No `X-Forwarded-Proto` was sent: Secure comes from the direct TLS itself.
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let home = client
        .get(format!("{}/", served.url))
        .header("cookie", session)
        .send()
        .expect("home page");
    assert_eq!(home.status(), StatusCode::OK);

    // The CLI's `--server` client trusts what AIRLOCK_CA_FILE names.
    let args = ["--server", served.url.as_str(), "validate"];
    let ca_text = ca.display().to_string();
    let trusted = airlock_with(
        &project,
        &args,
        &[
            ("AIRLOCK_TOKEN", token.as_str()),
            ("AIRLOCK_CA_FILE", ca_text.as_str()),
        ],
    );
    assert!(trusted.status.success(), "{}", shown(&trusted));
    let untrusted = airlock_with(&project, &args, &[("AIRLOCK_TOKEN", token.as_str())]);
    assert!(!untrusted.status.success(), "{}", shown(&untrusted));
    assert!(served.terminate(), "a clean stop");
}

#[test]
fn bad_certificate_or_key_files_stop_the_server_naming_the_file() {
    let (temp, project) = init_project();
    let tls = temp.path();
    certificates(tls);
    std::fs::create_dir(tls.join("other")).expect("mkdir");
    certificates(&tls.join("other"));
    std::fs::write(tls.join("words.pem"), "not a certificate\n").expect("write");
    let path = |name: &str| tls.join(name).display().to_string();
    for (cert, key, says) in [
        (
            path("missing.pem"),
            path("server.key"),
            format!("cannot read --tls-cert {}", path("missing.pem")),
        ),
        (
            path("words.pem"),
            path("server.key"),
            format!("--tls-cert {} holds no PEM certificate", path("words.pem")),
        ),
        (
            path("server.pem"),
            path("server.pem"),
            format!("--tls-key {} holds no PEM private key", path("server.pem")),
        ),
        (
            path("server.pem"),
            path("other/server.key"),
            format!(
                "--tls-key {} does not go with --tls-cert",
                path("other/server.key")
            ),
        ),
    ] {
        let out = airlock(
            &project,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
        assert!(
            text(&out.stderr).contains(&says),
            "{says}:\n{}",
            shown(&out)
        );
        assert!(!text(&out.stdout).contains("listening"), "{}", shown(&out));
        let key_text = std::fs::read_to_string(tls.join("server.key")).expect("key");
        let secret_line = key_text.lines().nth(1).unwrap_or_default();
        assert!(!shown(&out).contains(secret_line), "the key never appears");
    }
    let alone = airlock(&project, &["serve", "--tls-cert", &path("server.pem")]);
    assert_eq!(alone.status.code(), Some(2), "{}", shown(&alone));
    assert!(
        text(&alone.stderr).contains("--tls-key"),
        "{}",
        shown(&alone)
    );
}
