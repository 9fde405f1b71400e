//! The SQLite driver (rusqlite, bundled): one file, no server. A session holds a file
//! lock beside the database (`<file>.dap-lock`) for as long as it works on a table, so
//! two runs never interleave; within one process, sessions take turns. Blocking calls
//! run on tokio's blocking threads.

mod load;
pub(crate) mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

use crate::conn::{ConnectionString, Target};
use crate::dialect::{Dialect, META_NAMESPACE, Sqlite, shadow_name};
use crate::error::Error;
use crate::migrate::{ExistingColumn, ExistingTable};
use crate::plan::Position;
use crate::store::{Feed, LoadJob, LoadStats, Store, SyncRow, TableSession, parse_naive_utc};

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    gate: Arc<tokio::sync::Mutex<()>>,
}

fn fail(what: impl Into<String>, e: &rusqlite::Error) -> Error {
    Error::database(what, e)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::database("running a database task", e))?
}

impl SqliteStore {
    /// A store for the file `conn` names; `None` if it names another kind.
    pub fn new(conn: &ConnectionString) -> Option<Self> {
        match conn.target() {
            Target::Sqlite(p) => Some(Self::at(p)),
            _ => None,
        }
    }

    /// A store for the database file at `path`.
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            gate: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn open(path: &Path) -> Result<Connection, Error> {
        let io = |e: rusqlite::Error| Error::Io {
            what: "cannot open the SQLite database",
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let conn = Connection::open(path).map_err(io)?;
        conn.busy_timeout(std::time::Duration::from_secs(600))
            .map_err(io)?;
        // Renaming a table must not check or rewrite the views on it (they are kept as
        // they are, and refer to the table by name).
        conn.execute_batch("PRAGMA legacy_alter_table = ON; PRAGMA foreign_keys = OFF;")
            .map_err(io)?;
        Ok(conn)
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let path = self.path.clone();
        blocking(move || f(&mut Self::open(&path)?)).await
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".dap-lock");
    PathBuf::from(name)
}

fn lock_file(db: &Path, table: &str) -> Result<std::fs::File, Error> {
    use fs4::FileExt;
    let path = lock_path(db);
    let io = |e| Error::Io {
        what: "cannot lock",
        path: path.display().to_string(),
        source: e,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            tracing::warn!(
                "Table '{table}': another run is writing to {}; waiting for it to finish",
                db.display()
            );
            FileExt::lock(&file).map_err(io)?;
        }
        Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
    }
    Ok(file)
}

impl Store for SqliteStore {
    type Session = SqliteSession;

    fn dialect(&self) -> &'static dyn Dialect {
        &Sqlite
    }

    async fn prepare(&self, _namespace: &str) -> Result<(), Error> {
        let _gate = self.gate.lock().await;
        let path = self.path.clone();
        blocking(move || {
            let _lock = lock_file(&path, META_NAMESPACE)?;
            let mut conn = Self::open(&path)?;
            let tx = conn
                .transaction()
                .map_err(|e| fail("creating the meta tables", &e))?;
            for s in Sqlite.create_meta() {
                tx.execute_batch(&s)
                    .map_err(|e| fail("creating the meta tables", &e))?;
            }
            tx.commit()
                .map_err(|e| fail("creating the meta tables", &e))
        })
        .await
    }

    async fn session(&self, namespace: &str, table: &str) -> Result<SqliteSession, Error> {
        let gate = Arc::clone(&self.gate).lock_owned().await;
        let path = self.path.clone();
        let t = table.to_owned();
        let (conn, lock) = blocking(move || {
            let lock = lock_file(&path, &t)?;
            Ok((Self::open(&path)?, lock))
        })
        .await?;
        Ok(SqliteSession {
            conn: Some(conn),
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            _lock: lock,
            _gate: gate,
        })
    }

    async fn positions(&self, namespace: &str) -> Result<Vec<SyncRow>, Error> {
        let ns = namespace.to_owned();
        self.with_conn(move |conn| {
            let what = "reading instructure_dap__table_sync";
            let mut stmt = conn
                .prepare(&sql::select_positions())
                .map_err(|e| fail(what, &e))?;
            let rows = stmt
                .query_map([&ns], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(|e| fail(what, &e))?;
            let mut out = Vec::new();
            for row in rows {
                let (table, ts, version, target_schema, target_table) =
                    row.map_err(|e| fail(what, &e))?;
                out.push(SyncRow {
                    timestamp: parse_naive_utc(&ts)
                        .ok_or_else(|| Error::database(what, format!("bad timestamp {ts}")))?,
                    table,
                    schema_version: u64::try_from(version).unwrap_or(0),
                    target_schema,
                    target_table,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self, namespace: &str, table: &str) -> Result<u64, Error> {
        let name = Sqlite.qualified(namespace, table);
        self.with_conn(move |conn| {
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM {name}"), [], |r| r.get(0))
                .map_err(|e| fail(format!("counting the rows of {name}"), &e))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

/// One SQLite table, locked.
#[derive(Debug)]
pub struct SqliteSession {
    conn: Option<Connection>,
    namespace: String,
    table: String,
    _lock: std::fs::File,
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteSession {
    /// Runs `f` on the connection on a blocking thread.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let mut conn = self.conn.take().ok_or_else(|| {
            Error::database("using the SQLite database", "a previous task failed")
        })?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut conn);
            (conn, r)
        })
        .await
        .map_err(|e| Error::database("running a database task", e))?;
        self.conn = Some(conn);
        result
    }
}

impl TableSession for SqliteSession {
    async fn position(&mut self) -> Result<Option<Position>, Error> {
        let (ns, t) = (self.namespace.clone(), self.table.clone());
        self.run(move |conn| {
            let what = "reading instructure_dap__table_sync";
            let row = conn
                .query_row(&sql::select_position(), [&ns, &t], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .optional()
                .map_err(|e| fail(what, &e))?;
            row.map(|(id, ts, version, description)| {
                Ok(Position {
                    id,
                    timestamp: parse_naive_utc(&ts)
                        .ok_or_else(|| Error::database(what, format!("bad timestamp {ts}")))?,
                    schema_version: u64::try_from(version).unwrap_or(0),
                    schema_description: description,
                })
            })
            .transpose()
        })
        .await
    }

    async fn existing(&mut self) -> Result<Option<ExistingTable>, Error> {
        let name = format!("{}__{}", self.namespace, self.table);
        self.run(move |conn| {
            let what = "reading the table's columns";
            let mut stmt = conn
                .prepare(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
                )
                .map_err(|e| fail(what, &e))?;
            let rows = stmt
                .query_map([&name], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(|e| fail(what, &e))?;
            let mut table = ExistingTable::default();
            for row in rows {
                let (name, ty, notnull, pk) = row.map_err(|e| fail(what, &e))?;
                if pk > 0 {
                    table.primary_key.push(name.clone());
                }
                table.columns.push(ExistingColumn {
                    name,
                    type_name: ty,
                    nullable: notnull == 0,
                    comment: None,
                });
            }
            Ok((!table.columns.is_empty()).then_some(table))
        })
        .await
    }

    async fn enums(&mut self, _names: &[String]) -> Result<Vec<(String, Vec<String>)>, Error> {
        Ok(Vec::new())
    }

    async fn execute_each(&mut self, statements: &[String]) -> Result<(), Error> {
        let statements = statements.to_vec();
        self.run(move |conn| {
            for s in &statements {
                conn.execute_batch(s)
                    .map_err(|e| fail("changing the database", &e))?;
            }
            Ok(())
        })
        .await
    }

    async fn load(&mut self, job: &LoadJob<'_>, feed: Feed<'_>) -> Result<LoadStats, Error> {
        load::run(self, job, feed).await
    }

    async fn drop_table(&mut self) -> Result<bool, Error> {
        let Some(position) = self.position().await? else {
            return Ok(false);
        };
        let (ns, t) = (self.namespace.clone(), self.table.clone());
        self.run(move |conn| {
            let what = "dropping the table";
            let tx = conn.transaction().map_err(|e| fail(what, &e))?;
            tx.execute(&sql::delete_position(), [position.id])
                .map_err(|e| fail(what, &e))?;
            tx.execute_batch(&format!(
                "{}; {}",
                Sqlite.drop_table(&ns, &t),
                Sqlite.drop_table(&ns, &shadow_name(&t))
            ))
            .map_err(|e| fail(what, &e))?;
            tx.commit().map_err(|e| fail(what, &e))?;
            Ok(true)
        })
        .await
    }
}

/// The rows of a replicated table in a SQLite file, ordered by key, each value as
/// [`crate::model::canonical`] text: for checking a copy against what DAP served.
pub fn canonical_rows(
    path: &Path,
    model: &crate::model::TableModel,
) -> Result<Vec<Vec<Option<String>>>, Error> {
    use rusqlite::types::ValueRef;
    let conn = SqliteStore::open(path)?;
    let what = "reading the table";
    let cols: Vec<String> = model
        .columns
        .iter()
        .map(|c| Sqlite.ident(&c.name))
        .collect();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM {} ORDER BY {}",
            cols.join(", "),
            Sqlite.qualified(&model.namespace, &model.table),
            Sqlite.ident(&model.primary_key)
        ))
        .map_err(|e| fail(what, &e))?;
    let mut rows = stmt.query([]).map_err(|e| fail(what, &e))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| fail(what, &e))? {
        let mut line = Vec::with_capacity(model.columns.len());
        for (i, c) in model.columns.iter().enumerate() {
            let text = match r.get_ref(i).map_err(|e| fail(what, &e))? {
                ValueRef::Null => None,
                ValueRef::Integer(n) => Some(n.to_string()),
                ValueRef::Real(f) => Some(f.to_string()),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Some(String::from_utf8_lossy(t).into_owned())
                }
            };
            line.push(text.map(|t| crate::model::canonical(&c.ty, &t)));
        }
        out.push(line);
    }
    Ok(out)
}
