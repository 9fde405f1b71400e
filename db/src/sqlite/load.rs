//! One SQLite load, one transaction: the objects stream into a blocking worker that
//! owns the connection, splits the lines, converts each cell to its column's type and
//! inserts it; the worker then applies, moves the position and commits. A failed
//! download aborts the worker, which rolls back.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;
use futures_util::StreamExt;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::{SqliteSession, fail, sql};
use crate::dialect::{Dialect, Sqlite, pk_name, shadow_name};
use crate::error::Error;
use crate::model::{ColumnType, TableModel};
use crate::plan::{Landing, Position, Target};
use crate::store::{Feed, LoadJob, LoadStats, naive_utc};
use crate::tsv::{Layout, LoadKind, TsvError, cells};

enum Msg {
    Chunk(Bytes),
    /// An object ended.
    End,
    /// Every object was read: apply and commit.
    Done,
}

/// What the worker needs, owned.
struct Job {
    model: TableModel,
    landing: Landing,
    kind: LoadKind,
    migration: Vec<String>,
    position: Option<Position>,
    next_position: String,
    job_id: String,
}

pub(super) async fn run(
    session: &mut SqliteSession,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
) -> Result<LoadStats, Error> {
    let owned = Job {
        model: job.model.clone(),
        landing: job.landing,
        kind: job.kind,
        migration: job.migration.clone(),
        position: job.position.cloned(),
        next_position: naive_utc(job.next_position),
        job_id: feed.job(),
    };
    let (tx, rx) = sync_channel::<Msg>(8);
    let mut conn = session
        .conn
        .take()
        .ok_or_else(|| Error::database("using the SQLite database", "a previous task failed"))?;
    let worker = tokio::task::spawn_blocking(move || {
        let r = work(&mut conn, &owned, &rx);
        (conn, r)
    });
    let fed = feed_objects(feed, &tx).await;
    drop(tx);
    let (conn, result) = worker
        .await
        .map_err(|e| Error::database("running a database task", e))?;
    session.conn = Some(conn);
    // A download failure is the cause; the worker only saw the channel close.
    fed?;
    result
}

async fn feed_objects(feed: Feed<'_>, tx: &SyncSender<Msg>) -> Result<(), Error> {
    for i in 0..feed.len() {
        let mut chunks = feed.open(i);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if send(tx, Msg::Chunk(chunk)).await.is_err() {
                return Ok(());
            }
        }
        if send(tx, Msg::End).await.is_err() {
            return Ok(());
        }
    }
    let _ = send(tx, Msg::Done).await;
    Ok(())
}

/// Sends without blocking the runtime: the channel is bounded.
async fn send(tx: &SyncSender<Msg>, mut msg: Msg) -> Result<(), ()> {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(m)) => {
                msg = m;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(()),
        }
    }
}

fn work(conn: &mut Connection, job: &Job, rx: &Receiver<Msg>) -> Result<LoadStats, Error> {
    let model = &job.model;
    let ns = &model.namespace;
    let table = Sqlite.qualified(ns, &model.table);
    let shadow = shadow_name(&model.table);
    let tx = conn
        .transaction()
        .map_err(|e| fail("starting a transaction", &e))?;
    let staged = job.landing.dedupe || job.landing.target == Target::Merge;
    let into = match job.landing.target {
        Target::Create => {
            exec(
                &tx,
                &Sqlite.create_table(model, &model.table, &pk_name(&model.table)),
                "creating the table",
            )?;
            table.clone()
        }
        Target::Replace => {
            let mut stmts = vec![Sqlite.drop_table(ns, &shadow)];
            stmts.extend(Sqlite.create_table(model, &shadow, &pk_name(&shadow)));
            exec(&tx, &stmts, "creating the new copy of the table")?;
            Sqlite.qualified(ns, &shadow)
        }
        Target::Merge => table.clone(),
    };
    if staged {
        exec(
            &tx,
            &[sql::create_stage(model)],
            "creating the staging table",
        )?;
    }
    let insert_into = if staged {
        sql::STAGE.to_owned()
    } else {
        into.clone()
    };
    let mut stats = LoadStats::default();
    let columns = receive(&tx, job, rx, &insert_into, &mut stats)?;
    if job.landing.target == Target::Merge {
        exec(&tx, &job.migration, "changing the table's layout")?;
    }
    if staged && !columns.is_empty() {
        if job.landing.target == Target::Merge {
            stats.deleted =
                tx.execute(&sql::merge_delete(model, &into), [])
                    .map_err(|e| fail("deleting the deleted rows", &e))? as u64;
        }
        stats.upserted = tx
            .execute(&sql::merge_upsert(model, &into, &columns), [])
            .map_err(|e| fail("upserting the changed rows", &e))? as u64;
    } else {
        stats.upserted = stats.lines;
    }
    if staged {
        exec(
            &tx,
            &[format!("DROP TABLE IF EXISTS {}", sql::STAGE)],
            "dropping the staging table",
        )?;
    }
    if job.landing.target == Target::Replace {
        let mut stmts = vec![Sqlite.drop_table(ns, &model.table)];
        stmts.extend(Sqlite.rename_table(ns, &shadow, &model.table, "", ""));
        exec(&tx, &stmts, "swapping in the new copy of the table")?;
    }
    write_position(&tx, job)?;
    tx.commit().map_err(|e| fail("committing", &e))?;
    Ok(stats)
}

/// Loads the objects `rx` brings into `insert_into` until [`Msg::Done`]; the columns of
/// their headers, in order of first appearance.
fn receive(
    tx: &rusqlite::Transaction<'_>,
    job: &Job,
    rx: &Receiver<Msg>,
    insert_into: &str,
    stats: &mut LoadStats,
) -> Result<Vec<String>, Error> {
    let to = Insert {
        tx,
        model: &job.model,
        kind: job.kind,
        table: insert_into,
    };
    let mut columns: Vec<String> = Vec::new();
    let mut object = 0;
    let mut reader = ObjectReader::default();
    loop {
        let msg = rx
            .recv()
            .map_err(|_| Error::database("loading rows", "the download stopped"))?;
        let data_error = |error| Error::Data {
            object: object + 1,
            job: job.job_id.clone(),
            error,
        };
        match msg {
            Msg::Chunk(bytes) => reader
                .push(&bytes, &to, stats)
                .map_err(|e| e.into_error(data_error))?,
            Msg::End => {
                reader
                    .finish(&to, stats)
                    .map_err(|e| e.into_error(data_error))?;
                if let Some(layout) = reader.layout.take() {
                    crate::store::add_columns(&mut columns, layout.columns);
                } else {
                    return Err(data_error(TsvError::NoHeader));
                }
                reader = ObjectReader::default();
                object += 1;
            }
            Msg::Done => return Ok(columns),
        }
    }
}

fn exec(tx: &rusqlite::Transaction<'_>, stmts: &[String], what: &str) -> Result<(), Error> {
    for s in stmts {
        tx.execute_batch(s).map_err(|e| fail(what, &e))?;
    }
    Ok(())
}

fn write_position(tx: &rusqlite::Transaction<'_>, job: &Job) -> Result<(), Error> {
    let model = &job.model;
    let version = i64::try_from(model.schema_version).unwrap_or(i64::MAX);
    let what = "recording the table's position";
    match &job.position {
        Some(p) => tx.execute(
            &sql::update_position(),
            rusqlite::params![p.id, job.next_position, version, model.schema_description],
        ),
        None => tx.execute(
            &sql::insert_position(),
            rusqlite::params![
                model.namespace,
                model.table,
                job.next_position,
                version,
                model.schema_description
            ],
        ),
    }
    .map_err(|e| fail(what, &e))?;
    Ok(())
}

enum LineError {
    Data(TsvError),
    Db(Error),
}

impl LineError {
    fn into_error(self, data: impl FnOnce(TsvError) -> Error) -> Error {
        match self {
            Self::Data(e) => data(e),
            Self::Db(e) => e,
        }
    }
}

/// Where the lines of an object go: `table`, in `tx`, as `model` and `kind` read them.
struct Insert<'a, 'c> {
    tx: &'a rusqlite::Transaction<'c>,
    model: &'a TableModel,
    kind: LoadKind,
    table: &'a str,
}

/// Splits one object into lines and inserts them.
#[derive(Default)]
struct ObjectReader {
    partial: Vec<u8>,
    layout: Option<Layout>,
    line: u64,
}

impl ObjectReader {
    fn push(
        &mut self,
        mut chunk: &[u8],
        to: &Insert<'_, '_>,
        stats: &mut LoadStats,
    ) -> Result<(), LineError> {
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            if self.partial.is_empty() {
                self.line(&chunk[..nl], to, stats)?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..nl]);
                self.line(&line, to, stats)?;
            }
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(&mut self, to: &Insert<'_, '_>, stats: &mut LoadStats) -> Result<(), LineError> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, to, stats)?;
        }
        Ok(())
    }

    fn line(
        &mut self,
        line: &[u8],
        to: &Insert<'_, '_>,
        stats: &mut LoadStats,
    ) -> Result<(), LineError> {
        self.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(layout) = &self.layout else {
            let header = Layout::from_header(line, to.model, to.kind);
            self.layout = Some(header.map_err(LineError::Data)?);
            return Ok(());
        };
        if line.is_empty() {
            return Ok(());
        }
        let values = row_values(layout, line, self.line).map_err(LineError::Data)?;
        let mut stmt = to
            .tx
            .prepare_cached(&sql::insert(to.table, &layout.columns))
            .map_err(|e| LineError::Db(fail("preparing the insert", &e)))?;
        stmt.execute(rusqlite::params_from_iter(values))
            .map_err(|e| LineError::Db(fail(format!("inserting line {}", self.line), &e)))?;
        stats.lines += 1;
        Ok(())
    }
}

/// The typed values of one line, in the layout's column order.
fn row_values(layout: &Layout, line: &[u8], line_no: u64) -> Result<Vec<Value>, TsvError> {
    let cells = cells(line).map_err(|_| TsvError::NotUtf8(line_no))?;
    if cells.len() != layout.field_count() {
        return Err(TsvError::FieldCount {
            line: line_no,
            found: cells.len(),
            expected: layout.field_count(),
        });
    }
    let mut values = vec![Value::Null; layout.columns.len()];
    for (cell, slot) in cells.into_iter().zip(layout.field_columns()) {
        let Some(i) = slot else { continue };
        let ty = layout.types.get(i).and_then(Option::as_ref);
        values[i] = value(ty, cell).map_err(|reason| TsvError::BadValue {
            line: line_no,
            column: layout.columns[i].clone(),
            reason,
        })?;
    }
    Ok(values)
}

/// One cell as the SQLite value its column stores.
pub(crate) fn value(ty: Option<&ColumnType>, cell: Option<String>) -> Result<Value, String> {
    let Some(text) = cell else {
        return Ok(Value::Null);
    };
    Ok(match ty {
        Some(ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt) => Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| format!("{text:?} is not an integer"))?,
        ),
        Some(ColumnType::Real | ColumnType::Double) => Value::Real(
            text.trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a number"))?,
        ),
        Some(ColumnType::Boolean) => match text.trim() {
            "true" | "t" | "1" => Value::Integer(1),
            "false" | "f" | "0" => Value::Integer(0),
            _ => return Err(format!("{text:?} is not a boolean")),
        },
        Some(ColumnType::Timestamp) => Value::Text(crate::store::utc_timestamp(&text)?),
        _ => Value::Text(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_type() {
        let s = |t: &str| Some(t.to_owned());
        assert_eq!(
            value(Some(&ColumnType::BigInt), s("42")).unwrap(),
            Value::Integer(42)
        );
        assert_eq!(
            value(Some(&ColumnType::Double), s("1.5")).unwrap(),
            Value::Real(1.5)
        );
        assert_eq!(
            value(Some(&ColumnType::Boolean), s("false")).unwrap(),
            Value::Integer(0)
        );
        assert_eq!(
            value(Some(&ColumnType::Json), s("{\"a\":1}")).unwrap(),
            Value::Text("{\"a\":1}".to_owned())
        );
        assert_eq!(value(Some(&ColumnType::Int), None).unwrap(), Value::Null);
        assert!(
            value(Some(&ColumnType::Int), s("x"))
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(value(Some(&ColumnType::Boolean), s("yes")).is_err());
    }

    #[test]
    fn timestamps_become_utc_text() {
        for (input, want) in [
            ("2024-01-01T10:00:00Z", "2024-01-01 10:00:00"),
            ("2024-01-01T10:00:00.250Z", "2024-01-01 10:00:00.25"),
            ("2024-01-01T12:00:00+02:00", "2024-01-01 10:00:00"),
            ("2024-01-01 10:00:00", "2024-01-01 10:00:00"),
        ] {
            assert_eq!(crate::store::utc_timestamp(input).unwrap(), want, "{input}");
        }
        assert!(crate::store::utc_timestamp("yesterday").is_err());
    }
}
