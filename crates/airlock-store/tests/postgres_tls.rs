//! The PostgreSQL store over TLS, against the local PostgreSQL that `ci/postgres-tls.sh`
//! gave a certificate (SAN `localhost` and `127.0.0.1`) signed by a test CA.
//!
//! The CA is read from `AIRLOCK_TEST_PG_CA` (default `/etc/postgresql-airlock-tls/ca.pem`),
//! the CA that signed nothing from `AIRLOCK_TEST_PG_WRONG_CA`. Without them these tests say
//! so loudly and pass, except under CI (`AIRLOCK_CI` set), where they fail.
//!
//! Whether a connection is encrypted is read from the server's side: `pg_stat_ssl` for
//! every backend on the test's own database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_store::PostgresStore;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const CERT_DIR: &str = "/etc/postgresql-airlock-tls";

/// The test CA and the wrong one, or `None` (said on stderr) where this machine has none.
fn cas() -> Option<(PathBuf, PathBuf)> {
    let path = |var: &str, file: &str| {
        std::env::var_os(var).map_or_else(|| PathBuf::from(CERT_DIR).join(file), PathBuf::from)
    };
    let ca = path("AIRLOCK_TEST_PG_CA", "ca.pem");
    let wrong = path("AIRLOCK_TEST_PG_WRONG_CA", "wrong-ca.pem");
    if ca.is_file() && wrong.is_file() {
        return Some((ca, wrong));
    }
    assert!(
        std::env::var_os("AIRLOCK_CI").is_none(),
        "no PostgreSQL test CA at {} / {}: ci/postgres-tls.sh did not run",
        ca.display(),
        wrong.display()
    );
    eprintln!(
        "SKIPPED: no PostgreSQL test CA at {} (run `sudo bash ci/postgres-tls.sh`)",
        ca.display()
    );
    None
}

/// A database of its own, dropped afterwards (also when the test fails).
struct TestDatabase {
    name: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "airlock_tls_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(ADMIN_URL).await.expect("admin");
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .execute(&mut admin)
        .await
        .expect("create a test database");
        let _ = admin.close().await;
        TestDatabase { name }
    }

    /// A URL to this database at `host:port` with `query` (`sslmode=…`).
    fn url(&self, host: &str, port: u16, query: &str) -> String {
        format!(
            "postgres://postgres:s3cret-in-url@{host}:{port}/{}?{query}",
            self.name
        )
    }

    /// (backends on this database, how many of them are encrypted), as the server sees it.
    async fn encrypted_backends(&self) -> (i64, i64) {
        let mut admin = PgConnection::connect(ADMIN_URL).await.expect("admin");
        let row: (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await
        .expect("read pg_stat_ssl");
        let _ = admin.close().await;
        row
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(ADMIN_URL)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            })
        })
        .join();
    }
}

/// A TCP forwarder to 127.0.0.1:5432 listening on 127.0.0.2: the same server reached by an
/// address its certificate does not name.
async fn unnamed_address() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

fn param(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaches_postgres_over_verified_tls() {
    let Some((ca, _)) = cas() else { return };
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect(&db.url(
        "localhost",
        5432,
        &format!("sslmode=verify-full&sslrootcert={}", param(&ca)),
    ))
    .await
    .expect("verify-full with the test CA");
    let (backends, encrypted) = db.encrypted_backends().await;
    assert!(backends > 0, "the store holds connections");
    assert_eq!(encrypted, backends, "every connection of the store is TLS");
    assert_eq!(
        store.schema_version().await.expect("version"),
        airlock_store::postgres::SCHEMA_VERSION,
        "and it migrated over TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sslmode_is_plain_text_and_require_is_encrypted() {
    let Some(_) = cas() else { return };
    let plain = TestDatabase::create().await;
    let _store = PostgresStore::connect(&plain.url("127.0.0.1", 5432, "application_name=t"))
        .await
        .expect("plain");
    let (backends, encrypted) = plain.encrypted_backends().await;
    assert!(backends > 0);
    assert_eq!(encrypted, 0, "no sslmode means disable, not a quiet prefer");

    let required = TestDatabase::create().await;
    let _store = PostgresStore::connect(&required.url("127.0.0.1", 5432, "sslmode=require"))
        .await
        .expect("require trusts no CA and still encrypts");
    let (backends, encrypted) = required.encrypted_backends().await;
    assert!(backends > 0);
    assert_eq!(encrypted, backends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_checks_the_chain_and_verify_full_the_name() {
    let Some((ca, _)) = cas() else { return };
    let port = unnamed_address().await;
    let db = TestDatabase::create().await;
    let root = format!("sslrootcert={}", param(&ca));

    let error =
        PostgresStore::connect(&db.url("127.0.0.2", port, &format!("sslmode=verify-full&{root}")))
            .await
            .expect_err("127.0.0.2 is not a name of the certificate");
    let said = error.to_string();
    assert!(said.contains("TLS (sslmode=verify-full) failed"), "{said}");
    assert!(said.contains("not valid for name \"127.0.0.2\""), "{said}");
    assert!(!said.contains("s3cret-in-url"), "{said}");

    let _store =
        PostgresStore::connect(&db.url("127.0.0.2", port, &format!("sslmode=verify-ca&{root}")))
            .await
            .expect("verify-ca checks the chain only");
    let (backends, encrypted) = db.encrypted_backends().await;
    assert!(backends > 0);
    assert_eq!(encrypted, backends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_without_the_password() {
    let Some((_, wrong)) = cas() else { return };
    let db = TestDatabase::create().await;
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = PostgresStore::connect(&db.url(
            "localhost",
            5432,
            &format!("sslmode={mode}&sslrootcert={}", param(&wrong)),
        ))
        .await
        .expect_err("the server's certificate is not signed by the wrong CA");
        let said = error.to_string();
        // `require` with a root given checks the chain, as libpq does.
        let checked = if mode == "require" { "verify-ca" } else { mode };
        assert!(
            said.contains(&format!("TLS (sslmode={checked}) failed")),
            "{mode}: {said}"
        );
        assert!(said.contains("UnknownIssuer"), "{mode}: {said}");
        assert!(said.contains("localhost:5432"), "{mode}: {said}");
        assert!(!said.contains("s3cret-in-url"), "{mode}: {said}");
    }
    let (backends, _) = db.encrypted_backends().await;
    assert_eq!(backends, 0, "nothing stayed connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_that_fall_back_to_plain_text_are_refused() {
    let Some(_) = cas() else { return };
    for mode in ["prefer", "allow"] {
        let url = format!("postgres://postgres:s3cret-in-url@127.0.0.1:5432/test?sslmode={mode}");
        let said = PostgresStore::connect(&url)
            .await
            .expect_err("a downgrading mode")
            .to_string();
        assert!(
            said.contains(&format!("sslmode={mode} is not supported")),
            "{said}"
        );
        assert!(said.contains("verify-full"), "{said}");
        assert!(!said.contains("s3cret-in-url"), "{said}");
    }
}
