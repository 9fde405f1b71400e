//! The PostgreSQL driver (tokio-postgres, rustls): connects, locks, reads the catalog,
//! and runs the statements the plan and the dialect wrote.

mod load;
pub(crate) mod sql;

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use crate::conn::{ConnectionString, PgTarget, ServerConn, SslMode, Target};
use crate::dialect::{Dialect, Postgres, shadow_name};
use crate::error::{Error, chain, redact};
use crate::migrate::{ExistingColumn, ExistingTable};
use crate::plan::Position;
use crate::store::{Feed, LoadJob, LoadStats, Store, SyncRow, TableSession, parse_naive_utc};

/// A PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    inner: Arc<ServerConn>,
}

impl PgStore {
    /// A store for the database `conn` names; `None` if it names another kind.
    pub fn new(conn: &ConnectionString) -> Option<Self> {
        match conn.target() {
            Target::Postgres(t) => Some(Self {
                inner: Arc::new(ServerConn::new(t, conn)),
            }),
            _ => None,
        }
    }

    fn password(&self) -> Option<&str> {
        self.inner.password()
    }

    /// A failed statement, its text redacted.
    pub(crate) fn fail(&self, what: impl Into<String>, e: &tokio_postgres::Error) -> Error {
        Error::database(what, redact(&chain(e), self.password()))
    }

    /// Opens a connection.
    pub async fn connect(&self) -> Result<Client, Error> {
        let t = &self.inner.target;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&t.host)
            .port(t.port)
            .user(
                t.user
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "postgres".to_owned())
                    .as_str(),
            )
            .application_name("dap")
            .connect_timeout(std::time::Duration::from_secs(30));
        if let Some(p) = &t.password {
            config.password(p.secret());
        }
        if let Some(db) = &t.database {
            config.dbname(db);
        }
        let fail = |e: String| Error::Connect {
            target: self.inner.shown.clone(),
            reason: redact(&e, self.password()),
        };
        let result = match t.ssl {
            SslMode::Disable => connect_plain(&config).await,
            SslMode::Allow => match connect_plain(&config).await {
                Ok(c) => Ok(c),
                Err(_) => connect_tls(&config, tokio_postgres::config::SslMode::Require, t).await,
            },
            SslMode::Prefer => {
                connect_tls(&config, tokio_postgres::config::SslMode::Prefer, t).await
            }
            _ => connect_tls(&config, tokio_postgres::config::SslMode::Require, t).await,
        };
        result.map_err(fail)
    }
}

async fn connect_plain(config: &tokio_postgres::Config) -> Result<Client, String> {
    let mut config = config.clone();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| chain(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn connect_tls(
    config: &tokio_postgres::Config,
    mode: tokio_postgres::config::SslMode,
    t: &PgTarget,
) -> Result<Client, String> {
    let mut config = config.clone();
    config.ssl_mode(mode);
    let tls = crate::tls::client_config(t.ssl, t.root_cert.as_deref())?;
    let (client, connection) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await
        .map_err(|e| chain(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The advisory lock key of a table (FNV-1a of its qualified name).
pub(crate) fn lock_key(namespace: &str, table: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("instructure_dap.table_sync:{namespace}.{table}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

impl Store for PgStore {
    type Session = PgSession;

    fn dialect(&self) -> &'static dyn Dialect {
        &Postgres
    }

    async fn prepare(&self, namespace: &str) -> Result<(), Error> {
        let mut client = self.connect().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail("starting a transaction", &e))?;
        // Two first runs at once must not both create the meta tables.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key("", "")])
            .await
            .map_err(|e| self.fail("locking the meta tables", &e))?;
        for stmt in Postgres
            .create_meta()
            .into_iter()
            .chain(Postgres.create_namespace(namespace))
        {
            tx.batch_execute(&stmt)
                .await
                .map_err(|e| self.fail("creating the meta tables", &e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.fail("creating the meta tables", &e))
    }

    async fn session(&self, namespace: &str, table: &str) -> Result<PgSession, Error> {
        let client = self.connect().await?;
        let key = lock_key(namespace, table);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| self.fail("locking the table", &e))?
            .get(0);
        if !got {
            tracing::warn!(
                "Table '{table}' is being replicated by another run; waiting for it to finish"
            );
            client
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .map_err(|e| self.fail("waiting for the table's lock", &e))?;
        }
        Ok(PgSession {
            store: self.clone(),
            client,
            namespace: namespace.to_owned(),
            table: table.to_owned(),
        })
    }

    async fn positions(&self, namespace: &str) -> Result<Vec<SyncRow>, Error> {
        let client = self.connect().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT \"source_table\"::text, \"timestamp\"::text, \"schema_version\", \
                     \"target_schema\"::text, \"target_table\"::text FROM {} \
                     WHERE \"source_namespace\" = $1 ORDER BY \"source_table\"",
                    sql::table_sync()
                ),
                &[&namespace],
            )
            .await
            .map_err(|e| self.fail("reading instructure_dap.table_sync", &e))?;
        rows.iter()
            .map(|r| {
                let ts: String = r.get(1);
                Ok(SyncRow {
                    table: r.get(0),
                    timestamp: parse_naive_utc(&ts).ok_or_else(|| {
                        Error::database("reading table_sync", format!("bad timestamp {ts}"))
                    })?,
                    schema_version: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                    target_schema: r.get(3),
                    target_table: r.get(4),
                })
            })
            .collect()
    }

    async fn count(&self, namespace: &str, table: &str) -> Result<u64, Error> {
        let client = self.connect().await?;
        let n: i64 = client
            .query_one(
                &format!(
                    "SELECT COUNT(*) FROM {}",
                    Postgres.qualified(namespace, table)
                ),
                &[],
            )
            .await
            .map_err(|e| self.fail(format!("counting the rows of {namespace}.{table}"), &e))?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// One PostgreSQL table, locked by this session's connection.
#[derive(Debug)]
pub struct PgSession {
    store: PgStore,
    client: Client,
    namespace: String,
    table: String,
}

impl PgSession {
    fn quoted(&self) -> String {
        Postgres.qualified(&self.namespace, &self.table)
    }
}

const COLUMNS: &str = "\
SELECT a.attname::text,
       CASE WHEN t.typtype = 'e' THEN tn.nspname || '.' || t.typname
            WHEN et.typtype = 'e' THEN etn.nspname || '.' || et.typname || '[]'
            ELSE format_type(a.atttypid, a.atttypmod) END,
       NOT a.attnotnull,
       col_description(a.attrelid, a.attnum)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_namespace etn ON etn.oid = et.typnamespace
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

const PRIMARY_KEY: &str = "\
SELECT a.attname::text FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum";

const ENUMS: &str = "\
SELECT t.typname::text, e.enumlabel::text FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
JOIN pg_enum e ON e.enumtypid = t.oid
WHERE n.nspname = $1 AND t.typname = ANY($2)
ORDER BY t.typname, e.enumsortorder";

impl TableSession for PgSession {
    async fn position(&mut self) -> Result<Option<Position>, Error> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT \"id\", \"timestamp\"::text, \"schema_version\", \"schema_description\" \
                     FROM {} WHERE \"source_namespace\" = $1 AND \"source_table\" = $2 ORDER BY \"id\" LIMIT 1",
                    sql::table_sync()
                ),
                &[&self.namespace, &self.table],
            )
            .await
            .map_err(|e| self.store.fail("reading instructure_dap.table_sync", &e))?;
        let Some(row) = row else { return Ok(None) };
        let ts: String = row.get(1);
        Ok(Some(Position {
            id: row.get(0),
            timestamp: parse_naive_utc(&ts).ok_or_else(|| {
                Error::database("reading table_sync", format!("bad timestamp {ts}"))
            })?,
            schema_version: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
            schema_description: row.get(3),
        }))
    }

    async fn existing(&mut self) -> Result<Option<ExistingTable>, Error> {
        let name = self.quoted();
        let what = "reading the table's columns";
        let rows = self
            .client
            .query(COLUMNS, &[&name])
            .await
            .map_err(|e| self.store.fail(what, &e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let columns = rows
            .iter()
            .map(|r| ExistingColumn {
                name: r.get(0),
                type_name: r.get(1),
                nullable: r.get(2),
                comment: r.get(3),
            })
            .collect();
        let primary_key = self
            .client
            .query(PRIMARY_KEY, &[&name])
            .await
            .map_err(|e| self.store.fail(what, &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let comment: Option<String> = self
            .client
            .query_one(
                "SELECT obj_description(to_regclass($1), 'pg_class')",
                &[&name],
            )
            .await
            .map_err(|e| self.store.fail(what, &e))?
            .get(0);
        Ok(Some(ExistingTable {
            columns,
            comment,
            primary_key,
        }))
    }

    async fn enums(&mut self, names: &[String]) -> Result<Vec<(String, Vec<String>)>, Error> {
        let rows = self
            .client
            .query(ENUMS, &[&self.namespace, &names])
            .await
            .map_err(|e| self.store.fail("reading the enumeration types", &e))?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows {
            let (name, value): (String, String) = (r.get(0), r.get(1));
            match out.last_mut() {
                Some((n, values)) if *n == name => values.push(value),
                _ => out.push((name, vec![value])),
            }
        }
        Ok(out)
    }

    async fn execute_each(&mut self, statements: &[String]) -> Result<(), Error> {
        for s in statements {
            self.client
                .batch_execute(s)
                .await
                .map_err(|e| self.store.fail("changing an enumeration type", &e))?;
        }
        Ok(())
    }

    async fn load(&mut self, job: &LoadJob<'_>, feed: Feed<'_>) -> Result<LoadStats, Error> {
        load::run(self, job, feed).await
    }

    async fn drop_table(&mut self) -> Result<bool, Error> {
        let Some(position) = self.position().await? else {
            return Ok(false);
        };
        let store = self.store.clone();
        let name = self.quoted();
        let shadow = Postgres.drop_table(&self.namespace, &shadow_name(&self.table));
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| store.fail("starting a transaction", &e))?;
        tx.execute(
            &format!("DELETE FROM {} WHERE \"id\" = $1", sql::table_sync()),
            &[&position.id],
        )
        .await
        .map_err(|e| store.fail("deleting the table_sync row", &e))?;
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}; {shadow}"))
            .await
            .map_err(|e| store.fail(format!("dropping {name}"), &e))?;
        tx.commit()
            .await
            .map_err(|e| store.fail(format!("dropping {name}"), &e))?;
        Ok(true)
    }
}
