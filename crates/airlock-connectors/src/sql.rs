//! The `sql` connector: `insert`, `upsert` and `query` against a SQLite file or PostgreSQL.
//!
//! Values are always bound as parameters, never spliced into SQL; table and column names
//! are validated (`[A-Za-z_][A-Za-z0-9_]*`, optionally `schema.table`) and quoted.
//! Workflows write `?` placeholders on both backends; for PostgreSQL they are rewritten
//! to `$1..$n` outside quoted strings, identifiers and comments, so one workflow runs
//! unchanged on SQLite in staging and PostgreSQL in production.
//!
//! Idempotency comes from a unique key: `insert` is `INSERT … ON CONFLICT DO NOTHING`, so
//! a repeat after a crash answers `{"inserted": 0}` instead of failing or duplicating.
//!
//! SQLite: one connection (WAL) owned by the store's group-commit writer
//! (`airlock_store::sqlite::writer`), which commits concurrent calls in groups: one
//! transaction per batch, each call in its own savepoint (a call that fails is rolled back
//! alone), one `COMMIT` and so one fsync per batch, and every caller answered only after
//! that commit, so a success is durable when it is returned; if the batch's transaction
//! fails, every call of it hears a retryable `Connection` ("nothing was written"). Statements
//! SQLite refuses inside a transaction (`PRAGMA`, `VACUUM`, `ATTACH`, transaction control)
//! run alone in autocommit mode. A call that runs past its timeout is interrupted (skipped,
//! if it had not started). PostgreSQL: a small pool of `tokio-postgres`
//! connections, each opened to an address the environment's egress allowlist checked
//! (the host is resolved once per connection and never looked up again). Parameters go to
//! PostgreSQL as untyped text, so the server reads each one as the type it infers from
//! the statement (`'2024-01-01'` into a `timestamptz` column, `"42"` into `numeric`), the
//! way SQLite's dynamic typing accepts them.
//!
//! Results: `insert` → `{"inserted": 0|1}`, `upsert` → `{"affected": n}`, `query` →
//! `{"rows": [{column: value}, …]}` (and `"affected": n` for a statement without result
//! columns). At most 10,000 rows; more is an error.
//!
//! Retry classes:
//! - cannot connect or open the file, connection lost, database locked (SQLite busy),
//!   PostgreSQL deadlock / serialization failure / too many connections → `Connection`
//!   (nothing was written; retried with `connection`);
//! - past the step's timeout (the statement is interrupted / cancelled) → `Timeout`;
//! - a constraint violated (NOT NULL, CHECK, foreign key) → `Failed` (not retried);
//! - bad SQL, unknown table or column, a value the column cannot take, a bad identifier,
//!   wrong credentials or an unknown database → `Invalid` (not retried).

use crate::redact::Redactor;
use crate::{
    CallError, CallRequest, CheckContext, CheckOutcome, Connector, Egress, ResolvedBinding,
};
use airlock_store::sqlite::writer::{Fault, Job, Writer, WriterError, WriterOptions};
use async_trait::async_trait;
use serde_json::{Map, Number, Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{CancelToken, Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What connects one PostgreSQL stream over rustls (the adapter keeps the type private).
type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<TcpStream>>::TlsConnect;

use crate::pg_tls;

/// At most this many rows come back from one `query`; more is an error, never a silent cut.
const MAX_ROWS: usize = 10_000;
/// Pooled PostgreSQL connections per binding.
const PG_POOL_SIZE: usize = 8;
/// How long `check` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// A SQL binding: SQLite file or PostgreSQL server.
pub struct SqlConnector {
    backend: Backend,
}

enum Backend {
    Sqlite(Arc<SqliteDb>),
    Postgres(Arc<PgDb>),
}

impl std::fmt::Debug for SqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        let target = match &self.backend {
            Backend::Sqlite(db) => db.display.clone(),
            Backend::Postgres(db) => db.display.clone(),
        };
        f.debug_struct("SqlConnector")
            .field("target", &target)
            .finish()
    }
}

impl SqlConnector {
    /// Builds the connector from a binding's `url` (`sqlite://PATH` or `postgres://…`).
    /// Nothing is opened or connected yet.
    pub fn new(binding: &ResolvedBinding, egress: Arc<Egress>) -> Result<Self, CallError> {
        let url = match binding.settings.get("url") {
            Some(Value::String(url)) if !url.trim().is_empty() => url.trim(),
            Some(_) => {
                return Err(CallError::Invalid(format!(
                    "connector `{}`: `url` must be a non-empty string",
                    binding.connector
                )));
            }
            None => {
                return Err(CallError::Invalid(format!(
                    "connector `{}`: `url` is required (`sqlite://PATH` or `postgres://…`)",
                    binding.connector
                )));
            }
        };
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(CallError::Invalid(format!(
                    "connector `{}`: `sqlite://` needs a file path",
                    binding.connector
                )));
            }
            let path = PathBuf::from(path);
            let path = if path.is_absolute() {
                path
            } else {
                binding.base_dir.join(path)
            };
            let schema = match binding.settings.get("schema") {
                Some(Value::String(file)) => Some(binding.base_dir.join(file)),
                Some(_) => {
                    return Err(CallError::Invalid(format!(
                        "connector `{}`: `schema` must be a file path",
                        binding.connector
                    )));
                }
                None => None,
            };
            Backend::Sqlite(Arc::new(SqliteDb::new(path, schema)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if binding.settings.contains_key("schema") {
                return Err(CallError::Invalid(format!(
                    "connector `{}`: `schema` is applied to local SQLite files only; a PostgreSQL schema is managed by its owners",
                    binding.connector
                )));
            }
            Backend::Postgres(Arc::new(PgDb::new(
                &binding.connector,
                url,
                &binding.base_dir,
                egress,
            )?))
        } else {
            return Err(CallError::Invalid(format!(
                "connector `{}`: `url` must start with `sqlite://` or `postgres://`",
                binding.connector
            )));
        };
        Ok(Self { backend })
    }
}

#[async_trait]
impl Connector for SqlConnector {
    async fn call(&self, request: &CallRequest) -> Result<Value, CallError> {
        let action = Action::parse(&request.action, &request.args)?;
        match &self.backend {
            Backend::Sqlite(db) => {
                let solo = matches!(&action, Action::Query { sql, .. } if runs_alone(&sql.sqlite));
                db.run(request.timeout, solo, move |conn| {
                    sqlite_action(conn, &action)
                })
                .await
            }
            Backend::Postgres(db) => db.call(&action, request.timeout).await,
        }
    }

    async fn check(&self, context: &CheckContext) -> CheckOutcome {
        let mut tables = Vec::with_capacity(context.tables.len());
        for table in &context.tables {
            match TableName::parse(table) {
                Ok(name) => tables.push(name),
                Err(e) => return CheckOutcome::failed(e.to_string()),
            }
        }
        let result = match &self.backend {
            Backend::Sqlite(db) => {
                let tables2 = tables.clone();
                db.run(CHECK_TIMEOUT, false, move |conn| {
                    sqlite_check(conn, &tables2)
                })
                .await
                .map(|missing| (db.display.clone(), missing))
            }
            Backend::Postgres(db) => db.check(&tables).await.map(|m| (db.display.clone(), m)),
        };
        match result {
            Ok((display, missing)) => match missing.first() {
                Some(table) => CheckOutcome::failed(format!(
                    "{display}: select 1 ok, but table `{table}` does not exist"
                )),
                None if tables.is_empty() => CheckOutcome::ok(format!("{display}: select 1 ok")),
                None => {
                    let names: Vec<String> = tables.iter().map(|t| t.raw.clone()).collect();
                    CheckOutcome::ok(format!(
                        "{display}: select 1 ok, tables exist: {}",
                        names.join(", ")
                    ))
                }
            },
            Err(e) => {
                let display = match &self.backend {
                    Backend::Sqlite(db) => &db.display,
                    Backend::Postgres(db) => &db.display,
                };
                CheckOutcome::failed(format!("{display}: {}", reason(&e)))
            }
        }
    }
}

/// Why a check failed, without the error kind's generic prefix.
fn reason(e: &CallError) -> String {
    match e {
        CallError::Connection(m) | CallError::Invalid(m) | CallError::Failed(m) => m.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Actions and their arguments
// ---------------------------------------------------------------------------------------

/// A validated action, ready for either backend.
#[derive(Debug, Clone)]
enum Action {
    Insert {
        table: TableName,
        columns: Vec<Column>,
        values: Vec<Value>,
    },
    Upsert {
        table: TableName,
        columns: Vec<Column>,
        values: Vec<Value>,
        key: Vec<Column>,
    },
    Query {
        sql: ScannedSql,
        params: Vec<Value>,
    },
}

impl Action {
    fn parse(action: &str, args: &Value) -> Result<Self, CallError> {
        let args = args
            .as_object()
            .ok_or_else(|| CallError::Invalid(format!("`{action}` takes a map of arguments")))?;
        match action {
            "insert" => {
                let table = TableName::parse(required_str(args, action, "table")?)?;
                let (columns, values) = parse_values(args, action)?;
                Ok(Action::Insert {
                    table,
                    columns,
                    values,
                })
            }
            "upsert" => {
                let table = TableName::parse(required_str(args, action, "table")?)?;
                let (columns, values) = parse_values(args, action)?;
                let key = match args.get("key") {
                    Some(Value::String(one)) => vec![Column::parse(one)?],
                    Some(Value::Array(list)) if !list.is_empty() => list
                        .iter()
                        .map(|k| match k {
                            Value::String(k) => Column::parse(k),
                            _ => Err(CallError::Invalid(
                                "`upsert`: `key` must list column names".into(),
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => {
                        return Err(CallError::Invalid(
                            "`upsert` needs `key`: the unique column(s) a row is matched on".into(),
                        ));
                    }
                };
                for k in &key {
                    if !columns.iter().any(|c| c.raw == k.raw) {
                        return Err(CallError::Invalid(format!(
                            "`upsert`: key column `{}` is not among `values`",
                            k.raw
                        )));
                    }
                }
                Ok(Action::Upsert {
                    table,
                    columns,
                    values,
                    key,
                })
            }
            "query" => {
                let sql = required_str(args, action, "sql")?;
                let params = match args.get("params") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(list)) => list.clone(),
                    Some(_) => {
                        return Err(CallError::Invalid(
                            "`query`: `params` must be a list (one value per `?`)".into(),
                        ));
                    }
                };
                Ok(Action::Query {
                    sql: ScannedSql::scan(sql)?,
                    params,
                })
            }
            other => Err(CallError::Invalid(format!(
                "the sql connector has no action `{other}` (insert, upsert, query)"
            ))),
        }
    }
}

fn required_str<'a>(
    args: &'a Map<String, Value>,
    action: &str,
    name: &str,
) -> Result<&'a str, CallError> {
    match args.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(CallError::Invalid(format!(
            "`{action}`: `{name}` must be a non-empty string"
        ))),
        None => Err(CallError::Invalid(format!("`{action}` needs `{name}`"))),
    }
}

fn parse_values(
    args: &Map<String, Value>,
    action: &str,
) -> Result<(Vec<Column>, Vec<Value>), CallError> {
    let values = match args.get("values") {
        Some(Value::Object(map)) if !map.is_empty() => map,
        Some(_) => {
            return Err(CallError::Invalid(format!(
                "`{action}`: `values` must be a non-empty map of column to value"
            )));
        }
        None => return Err(CallError::Invalid(format!("`{action}` needs `values`"))),
    };
    let mut columns = Vec::with_capacity(values.len());
    let mut vals = Vec::with_capacity(values.len());
    for (column, value) in values {
        columns.push(Column::parse(column)?);
        vals.push(value.clone());
    }
    Ok((columns, vals))
}

/// Whether `s` is a plain SQL identifier: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// A validated column name, with its quoted form.
#[derive(Debug, Clone)]
struct Column {
    raw: String,
    quoted: String,
}

impl Column {
    fn parse(name: &str) -> Result<Self, CallError> {
        if !is_identifier(name) {
            return Err(CallError::Invalid(format!(
                "`{}` is not a valid column name (letters, digits and `_`, not starting with a digit)",
                printable(name)
            )));
        }
        Ok(Self {
            raw: name.to_owned(),
            quoted: format!("\"{name}\""),
        })
    }
}

/// A validated table name (`table` or `schema.table`), with its quoted form.
#[derive(Debug, Clone)]
struct TableName {
    raw: String,
    schema: Option<String>,
    name: String,
    quoted: String,
}

impl TableName {
    fn parse(name: &str) -> Result<Self, CallError> {
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        if !is_identifier(table) || schema.is_some_and(|s| !is_identifier(s)) {
            return Err(CallError::Invalid(format!(
                "`{}` is not a valid table name (letters, digits and `_`, optionally `schema.table`)",
                printable(name)
            )));
        }
        let quoted = match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        Ok(Self {
            raw: name.to_owned(),
            schema: schema.map(str::to_owned),
            name: table.to_owned(),
            quoted,
        })
    }
}

/// A name as it may appear in an error: bounded, control characters escaped.
fn printable(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let escaped = short.escape_debug().to_string();
    if s.chars().count() > 64 {
        format!("{escaped}…")
    } else {
        escaped
    }
}

fn insert_sql(table: &TableName, columns: &[Column], placeholder: fn(usize) -> String) -> String {
    let cols: Vec<&str> = columns.iter().map(|c| c.quoted.as_str()).collect();
    let params: Vec<String> = (1..=columns.len()).map(placeholder).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.quoted,
        cols.join(", "),
        params.join(", ")
    )
}

fn insert_ignore_sql(table: &TableName, columns: &[Column], ph: fn(usize) -> String) -> String {
    format!("{} ON CONFLICT DO NOTHING", insert_sql(table, columns, ph))
}

fn upsert_sql(
    table: &TableName,
    columns: &[Column],
    key: &[Column],
    ph: fn(usize) -> String,
) -> String {
    let keys: Vec<&str> = key.iter().map(|c| c.quoted.as_str()).collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.iter().any(|k| k.raw == c.raw))
        .map(|c| format!("{0} = excluded.{0}", c.quoted))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "{} ON CONFLICT ({}) {}",
        insert_sql(table, columns, ph),
        keys.join(", "),
        action
    )
}

fn sqlite_placeholder(i: usize) -> String {
    format!("?{i}")
}

fn pg_placeholder(i: usize) -> String {
    format!("${i}")
}

// ---------------------------------------------------------------------------------------
// Scanning user SQL: one statement, `?` placeholders outside quotes and comments
// ---------------------------------------------------------------------------------------

/// A user's `query` statement, scanned once for both backends.
#[derive(Debug, Clone)]
struct ScannedSql {
    /// The statement as written, without a trailing `;`: what SQLite runs.
    sqlite: String,
    /// The same with `?` rewritten to `$1..$n`: what PostgreSQL runs.
    postgres: String,
    /// How many `?` placeholders it has.
    placeholders: usize,
}

impl ScannedSql {
    /// Scans `sql`. Quoted strings (`'…'`, `E'…'`, `$tag$…$tag$`), quoted identifiers
    /// (`"…"`, `` `…` ``) and comments (`--`, `/* */`) are copied as they are; a `?`
    /// elsewhere is a placeholder. More than one statement is refused.
    fn scan(sql: &str) -> Result<Self, CallError> {
        let chars: Vec<char> = sql.chars().collect();
        let mut pg = String::with_capacity(sql.len() + 8);
        let mut lite = String::with_capacity(sql.len());
        let mut placeholders = 0usize;
        let mut end: Option<usize> = None;
        let mut i = 0;
        let n = chars.len();
        let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
        while i < n {
            let c = chars[i];
            if let Some(_end) = end {
                // After the terminating `;`, only whitespace and comments may follow.
                if c.is_whitespace() {
                    i += 1;
                    continue;
                }
                if c == '-' && chars.get(i + 1) == Some(&'-') {
                    while i < n && chars[i] != '\n' {
                        i += 1;
                    }
                    continue;
                }
                if c == '/' && chars.get(i + 1) == Some(&'*') {
                    i = skip_block_comment(&chars, i)?;
                    continue;
                }
                return Err(CallError::Invalid(
                    "`query` runs one statement; remove everything after the `;`".into(),
                ));
            }
            let start = i;
            match c {
                '\'' => {
                    let escapes = i > 0
                        && matches!(chars[i - 1], 'e' | 'E')
                        && (i < 2 || !is_ident(chars[i - 2]));
                    i = skip_quoted(&chars, i, '\'', escapes)?;
                }
                '"' | '`' => i = skip_quoted(&chars, i, c, false)?,
                '-' if chars.get(i + 1) == Some(&'-') => {
                    while i < n && chars[i] != '\n' {
                        i += 1;
                    }
                }
                '/' if chars.get(i + 1) == Some(&'*') => i = skip_block_comment(&chars, i)?,
                '$' if i == 0 || !is_ident(chars[i - 1]) => match dollar_tag(&chars, i) {
                    Some(tag_len) => {
                        let tag: Vec<char> = chars[i..i + tag_len].to_vec();
                        let mut j = i + tag_len;
                        loop {
                            if j + tag_len > n {
                                return Err(CallError::Invalid(
                                    "unterminated dollar-quoted string in `sql`".into(),
                                ));
                            }
                            if chars[j..j + tag_len] == tag[..] {
                                i = j + tag_len;
                                break;
                            }
                            j += 1;
                        }
                    }
                    None => i += 1,
                },
                '?' => {
                    placeholders += 1;
                    pg.push_str(&format!("${placeholders}"));
                    lite.push('?');
                    i += 1;
                    continue;
                }
                ';' => {
                    end = Some(i);
                    i += 1;
                    continue;
                }
                _ => i += 1,
            }
            let piece: String = chars[start..i].iter().collect();
            pg.push_str(&piece);
            lite.push_str(&piece);
        }
        let sqlite = lite.trim().to_owned();
        let postgres = pg.trim().to_owned();
        if sqlite.is_empty() {
            return Err(CallError::Invalid("`query`: `sql` is empty".into()));
        }
        Ok(Self {
            sqlite,
            postgres,
            placeholders,
        })
    }
}

/// Skips a quoted run starting at `chars[i] == quote`; a doubled quote is an escaped one,
/// and with `backslash` a `\` escapes the next character. Returns the index after it.
fn skip_quoted(chars: &[char], i: usize, quote: char, backslash: bool) -> Result<usize, CallError> {
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j];
        if backslash && c == '\\' {
            j += 2;
            continue;
        }
        if c == quote {
            if chars.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return Ok(j + 1);
        }
        j += 1;
    }
    Err(CallError::Invalid(format!(
        "unterminated {quote}-quoted text in `sql`"
    )))
}

/// Skips a `/* … */` comment (nested, as PostgreSQL allows). Returns the index after it.
fn skip_block_comment(chars: &[char], i: usize) -> Result<usize, CallError> {
    let mut depth = 0usize;
    let mut j = i;
    while j + 1 < chars.len() {
        if chars[j] == '/' && chars[j + 1] == '*' {
            depth += 1;
            j += 2;
        } else if chars[j] == '*' && chars[j + 1] == '/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Ok(j);
            }
        } else {
            j += 1;
        }
    }
    Err(CallError::Invalid(
        "unterminated /* comment in `sql`".into(),
    ))
}

/// The length of a dollar-quote tag (`$$`, `$body$`) starting at `chars[i] == '$'`.
fn dollar_tag(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if let Some(c) = chars.get(j)
        && (c.is_alphabetic() || *c == '_')
    {
        j += 1;
        while let Some(c) = chars.get(j) {
            if c.is_alphanumeric() || *c == '_' {
                j += 1;
            } else {
                break;
            }
        }
    }
    (chars.get(j) == Some(&'$')).then_some(j + 1 - i)
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

/// A SQLite file, written through the store's group-commit writer
/// ([`airlock_store::sqlite::writer`]), started on the first call.
struct SqliteDb {
    path: PathBuf,
    /// A SQL file applied when the connection opens (`CREATE TABLE IF NOT EXISTS …`).
    schema: Option<PathBuf>,
    display: String,
    /// The writer, started on the first call (nothing is opened before).
    writer: Mutex<Option<Arc<Writer<CallError>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Jobs a writer runs in one transaction at most.
const SQLITE_MAX_BATCH: usize = 256;

/// The writer's own failures, as the `sql` connector reports them.
impl WriterError for CallError {
    fn sqlite(_context: &str, error: rusqlite::Error, timeout: Option<Duration>) -> Self {
        sqlite_error(error, timeout.unwrap_or_default())
    }

    fn fault(fault: Fault) -> Self {
        match fault {
            Fault::Start(e) => {
                CallError::Connection(format!("cannot start the SQLite writer: {e}"))
            }
            Fault::Stopped => CallError::Connection("the SQLite writer has stopped".into()),
            Fault::Dropped => CallError::Failed("the SQLite writer dropped the call".into()),
            Fault::Panicked => CallError::Failed("the SQLite job panicked".into()),
            Fault::LeftOpen => CallError::Invalid(
                "`query` may not leave a transaction open; it was rolled back".into(),
            ),
            other => CallError::Connection(format!("SQLite: {other}")),
        }
    }

    fn timeout(after: Duration) -> Self {
        CallError::Timeout(after)
    }

    fn duplicate(&self) -> Self {
        self.clone()
    }

    /// Nothing of a failed transaction was written: the caller may retry.
    fn batch_failure(&self) -> Self {
        match self {
            CallError::Connection(m) => CallError::Connection(m.clone()),
            other => CallError::Connection(format!("nothing was written: {other}")),
        }
    }
}

/// Opens the file on the writer's thread: WAL, foreign keys, then the binding's schema.
fn sqlite_open(path: &Path, schema: Option<&Path>) -> Result<rusqlite::Connection, CallError> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let cannot_open = |e: rusqlite::Error| {
        CallError::Connection(format!(
            "cannot open SQLite database `{}`: {e}",
            path.display()
        ))
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(cannot_open)?;
    let setup = |conn: &rusqlite::Connection| -> rusqlite::Result<()> {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        Ok(())
    };
    setup(&conn).map_err(cannot_open)?;
    if let Some(schema) = schema {
        let sql = std::fs::read_to_string(schema).map_err(|e| {
            CallError::Invalid(format!("cannot read schema `{}`: {e}", schema.display()))
        })?;
        conn.execute_batch(&sql).map_err(|e| {
            CallError::Invalid(format!("schema `{}` failed: {e}", schema.display()))
        })?;
    }
    Ok(conn)
}

impl SqliteDb {
    fn new(path: PathBuf, schema: Option<PathBuf>) -> Self {
        let display = format!("sqlite://{}", path.display());
        Self {
            path,
            schema,
            display,
            writer: Mutex::new(None),
        }
    }

    /// The writer, started on first use; it opens the file on its first batch (and again
    /// after an open failed).
    fn writer(&self) -> Result<Arc<Writer<CallError>>, CallError> {
        let mut writer = lock(&self.writer);
        if let Some(writer) = writer.as_ref() {
            return Ok(Arc::clone(writer));
        }
        let path = self.path.clone();
        let schema = self.schema.clone();
        let started = Arc::new(Writer::start_lazy(
            move || sqlite_open(&path, schema.as_deref()),
            WriterOptions {
                max_batch: SQLITE_MAX_BATCH,
                thread_name: "airlock-sql-writer".into(),
            },
        )?);
        *writer = Some(Arc::clone(&started));
        Ok(started)
    }

    /// Runs `job` on the writer's connection within `timeout`. Concurrent calls share one
    /// transaction (each in its own savepoint) and one fsync; each caller is answered once
    /// that transaction is committed, so a success is on disk when it is returned. `solo`
    /// runs the job alone outside a transaction (statements SQLite refuses inside one).
    /// A caller that gives up (timeout, or its future dropped) has its job skipped while
    /// queued and interrupted while running.
    async fn run<T, F>(&self, timeout: Duration, solo: bool, job: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, CallError> + Send + 'static,
    {
        let writer = self.writer()?;
        writer.run(Job::new(job).solo(solo).timeout(timeout)).await
    }
}

/// Whether SQLite refuses `sql` inside a transaction, or it controls transactions itself:
/// such a `query` runs alone, outside the writer's batches.
fn runs_alone(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(
        word.as_str(),
        "BEGIN"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "SAVEPOINT"
            | "RELEASE"
            | "VACUUM"
            | "PRAGMA"
            | "ATTACH"
            | "DETACH"
    )
}

fn sqlite_value(v: &Value) -> Result<rusqlite::types::Value, CallError> {
    use rusqlite::types::Value as V;
    Ok(match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(i64::from(*b)),
        Value::Number(n) => number_to_sqlite(n)?,
        Value::String(s) => V::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => V::Text(v.to_string()),
    })
}

fn number_to_sqlite(n: &Number) -> Result<rusqlite::types::Value, CallError> {
    use rusqlite::types::Value as V;
    if let Some(i) = n.as_i64() {
        Ok(V::Integer(i))
    } else if n.is_u64() {
        Err(CallError::Invalid(format!(
            "the number {n} is too large for a SQL integer"
        )))
    } else {
        n.as_f64()
            .map(V::Real)
            .ok_or_else(|| CallError::Invalid(format!("the number {n} has no SQL form")))
    }
}

fn sqlite_to_json(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Null => Value::Null,
        V::Integer(i) => Value::from(i),
        V::Real(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        V::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => Value::String(hex::encode(b)),
    }
}

fn sqlite_error(e: rusqlite::Error, timeout: Duration) -> CallError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(err, _) => match err.code {
            C::ConstraintViolation => CallError::Failed(format!("constraint violated: {e}")),
            C::DatabaseBusy | C::DatabaseLocked => CallError::Connection(format!(
                "SQLite database is locked (nothing was written): {e}"
            )),
            C::OperationInterrupted => CallError::Timeout(timeout),
            C::CannotOpen | C::SystemIoFailure | C::PermissionDenied | C::DiskFull => {
                CallError::Connection(format!("SQLite: {e}"))
            }
            C::NotADatabase => CallError::Invalid(format!("not a SQLite database: {e}")),
            C::Unknown | C::TypeMismatch | C::ParameterOutOfRange | C::TooBig => {
                CallError::Invalid(format!("SQLite: {e}"))
            }
            _ => CallError::Failed(format!("SQLite: {e}")),
        },
        rusqlite::Error::InvalidParameterCount(given, expected) => CallError::Invalid(format!(
            "the statement has {expected} placeholder(s) but {given} param(s) were given"
        )),
        rusqlite::Error::MultipleStatement => {
            CallError::Invalid("`query` runs one statement".into())
        }
        _ => CallError::Invalid(format!("SQLite: {e}")),
    }
}

fn sqlite_action(conn: &rusqlite::Connection, action: &Action) -> Result<Value, CallError> {
    // The job runs within the call's timeout; an interrupt surfaces as OperationInterrupted.
    let err = |e| sqlite_error(e, Duration::ZERO);
    match action {
        Action::Insert {
            table,
            columns,
            values,
        } => {
            let params = values
                .iter()
                .map(sqlite_value)
                .collect::<Result<Vec<_>, _>>()?;
            let sql = insert_ignore_sql(table, columns, sqlite_placeholder);
            let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
            let n = stmt
                .execute(rusqlite::params_from_iter(params))
                .map_err(err)?;
            Ok(json!({ "inserted": n }))
        }
        Action::Upsert {
            table,
            columns,
            values,
            key,
        } => {
            let params = values
                .iter()
                .map(sqlite_value)
                .collect::<Result<Vec<_>, _>>()?;
            let sql = upsert_sql(table, columns, key, sqlite_placeholder);
            let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
            let n = stmt
                .execute(rusqlite::params_from_iter(params))
                .map_err(err)?;
            Ok(json!({ "affected": n }))
        }
        Action::Query { sql, params } => {
            let params = params
                .iter()
                .map(sqlite_value)
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt = conn.prepare(&sql.sqlite).map_err(err)?;
            if stmt.parameter_count() != params.len() {
                return Err(CallError::Invalid(format!(
                    "the statement has {} placeholder(s) but {} param(s) were given",
                    stmt.parameter_count(),
                    params.len()
                )));
            }
            let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            if names.is_empty() {
                let n = stmt
                    .execute(rusqlite::params_from_iter(params))
                    .map_err(err)?;
                return Ok(json!({ "rows": [], "affected": n }));
            }
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                if out.len() == MAX_ROWS {
                    return Err(CallError::Invalid(format!(
                        "the query returned more than {MAX_ROWS} rows; add a LIMIT"
                    )));
                }
                let mut obj = Map::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    obj.insert(name.clone(), sqlite_to_json(row.get_ref(i).map_err(err)?));
                }
                out.push(Value::Object(obj));
            }
            Ok(json!({ "rows": out }))
        }
    }
}

/// `select 1`, then the tables that do not exist.
fn sqlite_check(
    conn: &rusqlite::Connection,
    tables: &[TableName],
) -> Result<Vec<String>, CallError> {
    let err = |e| sqlite_error(e, CHECK_TIMEOUT);
    conn.query_row("select 1", [], |row| row.get::<_, i64>(0))
        .map_err(err)?;
    let mut missing = Vec::new();
    for table in tables {
        let master = match &table.schema {
            Some(schema) => format!("\"{schema}\".sqlite_master"),
            None => "sqlite_master".to_owned(),
        };
        let sql = format!(
            "SELECT count(*) FROM {master} WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE"
        );
        let found = match conn.query_row(&sql, [&table.name], |row| row.get::<_, i64>(0)) {
            Ok(n) => n > 0,
            // An unknown schema: the table does not exist either.
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::Unknown => {
                false
            }
            Err(e) => return Err(err(e)),
        };
        if !found {
            missing.push(table.raw.clone());
        }
    }
    Ok(missing)
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// A value sent as untyped text: the server parses it as the type it infers for the
/// parameter, exactly as it would a quoted literal, but it is never part of the SQL.
#[derive(Debug)]
struct TextParam(Option<String>);

impl TextParam {
    fn from_json(v: &Value) -> Self {
        Self(match v {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            Value::Array(_) | Value::Object(_) => Some(v.to_string()),
        })
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

fn text_params(values: &[Value]) -> Vec<TextParam> {
    values.iter().map(TextParam::from_json).collect()
}

fn param_refs(params: &[TextParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

struct PgDb {
    config: tokio_postgres::Config,
    host: String,
    port: u16,
    /// The rustls client when the URL asks for TLS (`sslmode=require|verify-ca|verify-full`).
    tls: Option<MakeRustlsConnect>,
    display: String,
    /// The password, in every form, for the driver's error texts.
    redactor: Redactor,
    egress: Arc<Egress>,
    idle: Mutex<Vec<(Client, SocketAddr)>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from the pool; back into it on drop only if it ended healthy.
struct PooledClient {
    client: Option<Client>,
    addr: SocketAddr,
    db: Arc<PgDb>,
    healthy: bool,
    _permit: OwnedSemaphorePermit,
}

impl PooledClient {
    fn client(&self) -> Result<&Client, CallError> {
        self.client
            .as_ref()
            .ok_or_else(|| CallError::Connection("PostgreSQL connection already released".into()))
    }

    /// Asks the server to cancel what this connection runs (after a timeout), in the
    /// background, through the same checked address and with the same TLS as the
    /// connection (a server that requires TLS refuses a plain cancel request).
    fn cancel(&self) {
        let Some(client) = &self.client else { return };
        let token: CancelToken = client.cancel_token();
        let addr = self.addr;
        let tls = match &self.db.tls {
            Some(make) => match self.db.tls_for_host(make) {
                Ok(tls) => Some(tls),
                Err(_) => return,
            },
            None => None,
        };
        tokio::spawn(async move {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
            {
                let cancel = async {
                    match tls {
                        Some(tls) => token.cancel_query_raw(stream, tls).await,
                        None => token.cancel_query_raw(stream, NoTls).await,
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), cancel).await;
            }
        });
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && self.healthy
            && !client.is_closed()
        {
            lock(&self.db.idle).push((client, self.addr));
        }
    }
}

impl PgDb {
    fn new(
        connector: &str,
        url: &str,
        base_dir: &Path,
        egress: Arc<Egress>,
    ) -> Result<Self, CallError> {
        // The URL's password as written (percent-encoded); the decoded one joins it below.
        let mut redactor = url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(Redactor::of_credential))
            .unwrap_or_default();
        let redact = |msg: String| redactor.redact(&msg);
        // tokio-postgres reads neither verify-ca/verify-full nor sslrootcert: they leave
        // the URL here and become the rustls client below.
        let (url, tls) = pg_tls::split_url(url, base_dir).map_err(|e| {
            CallError::Invalid(redact(format!(
                "connector `{connector}`: invalid PostgreSQL url: {e}"
            )))
        })?;
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                CallError::Invalid(redact(format!(
                    "connector `{connector}`: invalid PostgreSQL url: {e}"
                )))
            })?;
        let host = match config.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            [] => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: the PostgreSQL url names no host"
                )));
            }
            _ => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: the PostgreSQL url must name exactly one TCP host (egress checks it)"
                )));
            }
        };
        let port = match config.get_ports() {
            [] => 5432,
            [port] => *port,
            _ => {
                return Err(CallError::Invalid(format!(
                    "connector `{connector}`: the PostgreSQL url must name one port"
                )));
            }
        };
        let tls_mode = tls.mode;
        let tls = tls
            .connector()
            .map_err(|e| CallError::Invalid(format!("connector `{connector}`: {e}")))?;
        // tokio-postgres asks the server for TLS (and fails if it declines) under
        // `require`; what is checked is the rustls client's business.
        config.ssl_mode(if tls.is_some() {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        });
        if let Some(password) = config.get_password() {
            redactor.extend(&Redactor::of_credential(&String::from_utf8_lossy(password)));
        }
        let display = format!(
            "postgres {}:{}/{} (sslmode={})",
            host,
            port,
            config.get_dbname().or(config.get_user()).unwrap_or(""),
            tls_mode.name()
        );
        Ok(Self {
            config,
            host,
            port,
            tls,
            display,
            redactor,
            egress,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(PG_POOL_SIZE)),
        })
    }

    fn redact(&self, msg: String) -> String {
        self.redactor.redact(&msg)
    }

    /// Maps a driver error, with the password (if any) removed from its text.
    fn error(&self, e: &tokio_postgres::Error, timeout: Duration) -> CallError {
        match pg_error(e, timeout) {
            CallError::Connection(m) => CallError::Connection(self.redact(m)),
            CallError::Invalid(m) => CallError::Invalid(self.redact(m)),
            CallError::Failed(m) => CallError::Failed(self.redact(m)),
            other => other,
        }
    }

    /// The TLS client for one connection: it checks the certificate against the URL's
    /// host (the name, not the address egress resolved it to).
    fn tls_for_host(&self, make: &MakeRustlsConnect) -> Result<RustlsConnect, CallError> {
        MakeTlsConnect::<TcpStream>::make_tls_connect(&mut make.clone(), &self.host).map_err(|e| {
            CallError::Invalid(format!(
                "PostgreSQL host `{}` cannot be checked against a certificate: {e}",
                self.host
            ))
        })
    }

    /// Opens a new connection to an address egress checked.
    async fn connect(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<(Client, SocketAddr), CallError> {
        let addrs = resolve(&self.egress, &self.host, self.port).await?;
        let mut last_error = String::from("no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let client = match &self.tls {
                        Some(make) => {
                            let tls = self.tls_for_host(make)?;
                            let (client, connection) = self
                                .config
                                .connect_raw(stream, tls)
                                .await
                                .map_err(|e| self.error(&e, timeout))?;
                            tokio::spawn(async move {
                                let _ = connection.await;
                            });
                            client
                        }
                        None => {
                            let (client, connection) = self
                                .config
                                .connect_raw(stream, NoTls)
                                .await
                                .map_err(|e| self.error(&e, timeout))?;
                            tokio::spawn(async move {
                                let _ = connection.await;
                            });
                            client
                        }
                    };
                    return Ok((client, addr));
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(CallError::Connection(format!(
            "cannot connect to {}:{}: {last_error}",
            self.host, self.port
        )))
    }

    async fn acquire(self: &Arc<Self>, timeout: Duration) -> Result<PooledClient, CallError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| CallError::Connection("the PostgreSQL pool is closed".into()))?;
        let idle = {
            let mut idle = lock(&self.idle);
            let mut found = None;
            while let Some((client, addr)) = idle.pop() {
                if !client.is_closed() {
                    found = Some((client, addr));
                    break;
                }
            }
            found
        };
        // The pool only keeps connections opened to addresses egress checked.
        let (client, addr) = match idle {
            Some(found) => found,
            None => self.connect(timeout).await?,
        };
        Ok(PooledClient {
            client: Some(client),
            addr,
            db: Arc::clone(self),
            healthy: false,
            _permit: permit,
        })
    }

    async fn call(
        self: &Arc<Self>,
        action: &Action,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let deadline = Instant::now() + timeout;
        let mut pooled = tokio::time::timeout_at(deadline, self.acquire(timeout))
            .await
            .map_err(|_| CallError::Timeout(timeout))??;
        let outcome = {
            let client = pooled.client()?;
            tokio::time::timeout_at(deadline, self.run(client, action, timeout)).await
        };
        match outcome {
            Ok(Ok(value)) => {
                pooled.healthy = true;
                Ok(value)
            }
            Ok(Err(e)) => {
                // An SQL error leaves the connection usable; a broken one is dropped.
                pooled.healthy = !matches!(e, CallError::Connection(_) | CallError::Timeout(_));
                Err(e)
            }
            Err(_) => {
                pooled.cancel();
                Err(CallError::Timeout(timeout))
            }
        }
    }

    async fn run(
        &self,
        client: &Client,
        action: &Action,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let err = |e: tokio_postgres::Error| self.error(&e, timeout);
        match action {
            Action::Insert {
                table,
                columns,
                values,
            } => {
                let sql = insert_ignore_sql(table, columns, pg_placeholder);
                let params = text_params(values);
                let n = client
                    .execute(&sql, &param_refs(&params))
                    .await
                    .map_err(err)?;
                Ok(json!({ "inserted": n }))
            }
            Action::Upsert {
                table,
                columns,
                values,
                key,
            } => {
                let sql = upsert_sql(table, columns, key, pg_placeholder);
                let params = text_params(values);
                let n = client
                    .execute(&sql, &param_refs(&params))
                    .await
                    .map_err(err)?;
                Ok(json!({ "affected": n }))
            }
            Action::Query { sql, params } => {
                if sql.placeholders != params.len() {
                    return Err(CallError::Invalid(format!(
                        "the statement has {} placeholder(s) but {} param(s) were given",
                        sql.placeholders,
                        params.len()
                    )));
                }
                let params = text_params(params);
                let refs = param_refs(&params);
                let described = client.prepare(&sql.postgres).await.map_err(err)?;
                if described.columns().is_empty() {
                    let n = client.execute(&described, &refs).await.map_err(err)?;
                    return Ok(json!({ "rows": [], "affected": n }));
                }
                // Typed rows as JSON, by the server: numbers stay numbers, JSON stays JSON.
                // A CTE wraps SELECT as well as `INSERT/UPDATE/DELETE … RETURNING`.
                let wrapped = format!(
                    "WITH airlock_rows AS (\n{}\n) SELECT row_to_json(airlock_rows)::text FROM airlock_rows",
                    sql.postgres
                );
                let rows = client.query(&wrapped, &refs).await.map_err(err)?;
                if rows.len() > MAX_ROWS {
                    return Err(CallError::Invalid(format!(
                        "the query returned more than {MAX_ROWS} rows; add a LIMIT"
                    )));
                }
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let text: Option<String> = row.try_get(0).map_err(err)?;
                    let value = match text {
                        Some(text) => serde_json::from_str(&text).map_err(|e| {
                            CallError::Failed(format!(
                                "PostgreSQL returned a row that is not JSON: {e}"
                            ))
                        })?,
                        None => Value::Null,
                    };
                    out.push(value);
                }
                Ok(json!({ "rows": out }))
            }
        }
    }

    async fn check(self: &Arc<Self>, tables: &[TableName]) -> Result<Vec<String>, CallError> {
        let deadline = Instant::now() + CHECK_TIMEOUT;
        let work = async {
            let mut pooled = self.acquire(CHECK_TIMEOUT).await?;
            let client = pooled.client()?;
            let err = |e: tokio_postgres::Error| self.error(&e, CHECK_TIMEOUT);
            client.query_one("select 1", &[]).await.map_err(err)?;
            let mut missing = Vec::new();
            for table in tables {
                let name = TextParam(Some(table.quoted.clone()));
                let row = client
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                    .await
                    .map_err(err)?;
                let exists: bool = row.try_get(0).map_err(err)?;
                if !exists {
                    missing.push(table.raw.clone());
                }
            }
            pooled.healthy = true;
            Ok(missing)
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| CallError::Timeout(CHECK_TIMEOUT))?
    }
}

/// Classifies a PostgreSQL error into the retry classes.
fn pg_error(e: &tokio_postgres::Error, timeout: Duration) -> CallError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let mut text = format!("{}: {} ({code})", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        return match code {
            // Query canceled (statement_timeout): the statement did not finish in time.
            "57014" => CallError::Timeout(timeout),
            // Serialization failure, deadlock, lock not available: rolled back, nothing
            // written, safe to try again.
            "40001" | "40P01" | "55P03" => CallError::Connection(format!(
                "PostgreSQL rolled the statement back, try again: {text}"
            )),
            _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") => {
                CallError::Connection(format!("PostgreSQL: {text}"))
            }
            // Bad credentials, unknown database: the binding is wrong.
            _ if code.starts_with("28") || code == "3D000" => {
                CallError::Invalid(format!("PostgreSQL refused the binding: {text}"))
            }
            // Syntax, unknown table or column, data that cannot be read as the column's type.
            _ if code.starts_with("42") || code.starts_with("22") => {
                CallError::Invalid(format!("PostgreSQL: {text}"))
            }
            _ if code.starts_with("23") => {
                CallError::Failed(format!("constraint violated: {text}"))
            }
            _ => CallError::Failed(format!("PostgreSQL: {text}")),
        };
    }
    if e.is_closed() {
        return CallError::Connection(format!("PostgreSQL connection closed: {e}"));
    }
    if let Some(refused) = tls_refusal(e) {
        return refused;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some() {
            return CallError::Connection(format!("PostgreSQL: {e}: {s}"));
        }
        source = s.source();
    }
    CallError::Failed(format!("PostgreSQL: {e}"))
}

/// A TLS handshake that failed on what the binding trusts (the server's certificate, or a
/// server without TLS): `Invalid`, as wrong credentials are, since trying again cannot
/// help. rustls' own error rides inside the `io::Error` tokio-rustls returns.
fn tls_refusal(e: &tokio_postgres::Error) -> Option<CallError> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let rustls_error = s.downcast_ref::<rustls::Error>().or_else(|| {
            s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match rustls_error {
            Some(refused @ rustls::Error::InvalidCertificate(_)) => {
                return Some(CallError::Invalid(format!(
                    "PostgreSQL TLS: the server's certificate is refused ({refused}): is \
                     sslrootcert the CA that signed it, and the url's host one of its names?"
                )));
            }
            Some(other) => {
                return Some(CallError::Invalid(format!(
                    "PostgreSQL TLS failed: {other}"
                )));
            }
            // tokio-postgres' own words when the server answers the TLS request with "no".
            None if s.to_string() == "server does not support TLS" => {
                return Some(CallError::Invalid(
                    "PostgreSQL: the server does not support TLS, and the binding's sslmode asks for it"
                        .into(),
                ));
            }
            None => {}
        }
        source = s.source();
    }
    None
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
    fn placeholders_are_rewritten_outside_quotes_only() {
        let s = ScannedSql::scan(
            "select '?', \"a?\", $$ ? $$, $t$ ?$t$, E'\\'?' , x -- ?\n from t where a = ? /* ? /* ? */ */ and b = ?;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.placeholders, 2);
        assert!(s.postgres.contains("where a = $1"));
        assert!(s.postgres.contains("and b = $2"));
        assert!(s.postgres.contains("'?'"));
        assert!(!s.postgres.ends_with(';'));
        assert!(s.sqlite.contains("where a = ?"));
    }

    #[test]
    fn one_statement_only() {
        assert!(ScannedSql::scan("select 1; -- fine\n /* also */").is_ok());
        assert!(ScannedSql::scan("select 1; drop table t").is_err());
        assert!(ScannedSql::scan("select ';' ; ").is_ok());
        assert!(ScannedSql::scan("select 'open").is_err());
    }

    #[test]
    fn identifiers() {
        assert!(TableName::parse("orders").is_ok());
        assert!(TableName::parse("public.orders").is_ok());
        assert!(TableName::parse("orders; drop").is_err());
        assert!(TableName::parse("a.b.c").is_err());
        assert!(Column::parse("1abc").is_err());
        assert!(Column::parse("a\"b").is_err());
        assert!(Column::parse("_ok9").is_ok());
    }

    /// Concurrent calls share transactions: a call that fails is undone alone, the others
    /// are all on disk when they return, and statements SQLite refuses inside a
    /// transaction still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sqlite_calls_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(SqliteDb::new(dir.path().join("g.db"), None));
        let timeout = Duration::from_secs(10);
        let query = |sql: &str| Action::Query {
            sql: ScannedSql::scan(sql).expect("sql"),
            params: Vec::new(),
        };
        let create = query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
        db.run(timeout, false, move |c| sqlite_action(c, &create))
            .await
            .expect("create");
        let mut calls = Vec::new();
        for i in 0..64i64 {
            let db = Arc::clone(&db);
            let value = if i == 7 { Value::Null } else { json!("x") };
            let action = Action::parse(
                "insert",
                &json!({ "table": "t", "values": { "id": i, "v": value } }),
            )
            .expect("insert");
            calls.push(tokio::spawn(async move {
                db.run(timeout, false, move |c| sqlite_action(c, &action))
                    .await
            }));
        }
        for (i, call) in calls.into_iter().enumerate() {
            let result = call.await.expect("task");
            if i == 7 {
                assert!(matches!(result, Err(CallError::Failed(_))), "{result:?}");
            } else {
                assert_eq!(result.expect("insert"), json!({ "inserted": 1 }));
            }
        }
        let other = rusqlite::Connection::open(dir.path().join("g.db")).expect("open");
        let count: i64 = other
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, 63);
        let pragma = query("PRAGMA journal_mode");
        assert!(runs_alone("  -- why\n pragma journal_mode"));
        let mode = db
            .run(timeout, true, move |c| sqlite_action(c, &pragma))
            .await
            .expect("pragma");
        assert_eq!(mode, json!({ "rows": [{ "journal_mode": "wal" }] }));
        let begin = query("BEGIN");
        let left_open = db
            .run(timeout, true, move |c| sqlite_action(c, &begin))
            .await;
        assert!(
            matches!(left_open, Err(CallError::Invalid(_))),
            "{left_open:?}"
        );
        let insert = Action::parse(
            "insert",
            &json!({ "table": "t", "values": { "id": 100, "v": "y" } }),
        )
        .expect("insert");
        db.run(timeout, false, move |c| sqlite_action(c, &insert))
            .await
            .expect("the writer still serves");
    }

    #[test]
    fn redaction() {
        let db = PgDb::new(
            "pg",
            "postgres://u:p%40ss@127.0.0.1/db",
            Path::new("."),
            Arc::new(Egress::new("staging", vec![])),
        )
        .expect("a valid url");
        assert_eq!(
            db.redact("pw p@ss and p%40ss and cEBzcw==".to_owned()),
            "pw [redacted] and [redacted] and [redacted]"
        );
    }
}
