//! One MySQL load. Each object streams from the download through the `LOAD DATA`
//! rewriter into `LOAD DATA LOCAL INFILE`, fed by the connection's local-infile handler
//! (no file is written). A snapshot fills a hidden copy of the table and is published
//! with its position by one `RENAME TABLE`; changes fill a temporary staging table and
//! are applied, with the new position, in one transaction. Anything that fails before
//! the publication leaves the table and its position as they were.

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;
use jiff::Timestamp;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

use super::{MySqlSession, MySqlStore, NEW, OLD, count_of, rows, run_all, sql};
use crate::dialect::mysql::{load_data, quote_ident, work_table};
use crate::dialect::{Dialect, MySql};
use crate::error::Error;
use crate::model::TableModel;
use crate::plan::Target;
use crate::source::Chunks;
use crate::store::{Feed, LoadJob, LoadStats, ObjectError, add_columns, naive_utc};
use crate::tsv::{Encoding, LoadKind, Rewriter, TsvError};

/// Bytes gathered before they are handed to the driver.
const FLUSH: usize = 256 * 1024;

pub(super) async fn run(
    session: &mut MySqlSession,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
) -> Result<LoadStats, Error> {
    let store = session.store.clone();
    let started = std::time::Instant::now();
    let result = match job.landing.target {
        Target::Merge => merge(session, job, feed).await,
        Target::Create | Target::Replace => snapshot(session, job, feed).await,
    };
    if result.is_err() {
        // Nothing was published: drop what was built (a new run would anyway).
        let model = job.model;
        let cleanup = [
            "ROLLBACK".to_owned(),
            sql::drop_stage(),
            format!(
                "DROP TABLE IF EXISTS {}",
                quote_ident(&work_table(&model.namespace, &model.table, NEW))
            ),
        ];
        if let Err(e) = run_all(&mut session.conn, &store, "cleaning up", &cleanup).await {
            tracing::warn!("Table '{}': {e}", model.table);
        }
    }
    tracing::debug!(
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "load done"
    );
    result
}

/// A snapshot: the hidden copy is created, loaded and committed, then published.
async fn snapshot(
    session: &mut MySqlSession,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
) -> Result<LoadStats, Error> {
    let store = session.store.clone();
    let model = job.model;
    let (ns, t) = (&model.namespace, &model.table);
    let shadow = work_table(ns, t, NEW);
    let conn = &mut session.conn;
    run_all(
        conn,
        &store,
        "creating the new copy of the table",
        &[
            format!("DROP TABLE IF EXISTS {}", quote_ident(&shadow)),
            format!(
                "DROP TABLE IF EXISTS {}",
                quote_ident(&work_table(ns, t, OLD))
            ),
            MySql.create_table_in(model, &shadow, !session.utf8mb4_default),
            "START TRANSACTION".to_owned(),
        ],
    )
    .await?;
    let mut stats = LoadStats::default();
    load_all(
        conn,
        &store,
        &shadow,
        job,
        feed,
        job.landing.dedupe,
        &mut stats,
    )
    .await?;
    stats.upserted = if job.landing.dedupe {
        count_of(
            conn,
            &store,
            "counting the rows",
            &format!("SELECT COUNT(*) FROM {}", quote_ident(&shadow)),
        )
        .await?
    } else {
        stats.lines
    };
    run_all(
        conn,
        &store,
        "committing the new copy",
        &["COMMIT".to_owned()],
    )
    .await?;
    publish(conn, &store, job, &shadow).await?;
    Ok(stats)
}

/// Records the position and renames the copy into place: the server commits the row
/// as it starts the `RENAME TABLE`, so a kill cannot separate them.
async fn publish(
    conn: &mut Conn,
    store: &MySqlStore,
    job: &LoadJob<'_>,
    shadow: &str,
) -> Result<(), Error> {
    let model = job.model;
    let (ns, t) = (&model.namespace, &model.table);
    let real = MySql.qualified(ns, t);
    let old = quote_ident(&work_table(ns, t, OLD));
    let rename = match job.landing.target {
        Target::Replace => format!(
            "RENAME TABLE {real} TO {old}, {} TO {real}",
            quote_ident(shadow)
        ),
        _ => format!("RENAME TABLE {} TO {real}", quote_ident(shadow)),
    };
    run_all(
        conn,
        store,
        "publishing the table",
        &["START TRANSACTION".to_owned()],
    )
    .await?;
    let inserted = write_position(conn, store, job).await?;
    if let Err(e) = conn.query_drop(&rename).await {
        let error = store.fail("publishing the table", &e);
        undo_position(conn, store, job, inserted).await;
        return Err(error);
    }
    if job.landing.target == Target::Replace {
        if let Err(e) = conn.query_drop(format!("DROP TABLE IF EXISTS {old}")).await {
            tracing::warn!("Table '{t}': the replaced copy {old} could not be dropped: {e}");
        }
    }
    Ok(())
}

/// Takes back a position committed by a `RENAME TABLE` that then failed.
async fn undo_position(
    conn: &mut Conn,
    store: &MySqlStore,
    job: &LoadJob<'_>,
    inserted: Option<u64>,
) {
    let undo = match (job.position, inserted) {
        (Some(p), _) => {
            conn.exec_drop(
                sql::update_position(),
                (
                    naive_utc(p.timestamp),
                    i64::try_from(p.schema_version).unwrap_or(i64::MAX),
                    &p.schema_description,
                    p.id,
                ),
            )
            .await
        }
        (None, Some(id)) => conn.exec_drop(sql::delete_position(), (id,)).await,
        (None, None) => Ok(()),
    };
    if let Err(e) = undo {
        tracing::error!(
            "Table '{}': the table could not be published and its position could not be \
             taken back ({}); run again to repair it",
            job.model.table,
            store.fail("restoring the position", &e)
        );
    }
}

/// Changes: staged, then deleted and upserted with the new position in one transaction.
async fn merge(
    session: &mut MySqlSession,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
) -> Result<LoadStats, Error> {
    let store = session.store.clone();
    let model = job.model;
    let conn = &mut session.conn;
    run_all(
        conn,
        &store,
        "creating the staging table",
        &[sql::drop_stage(), sql::create_stage(model)],
    )
    .await?;
    let mut stats = LoadStats::default();
    let columns = load_all(conn, &store, sql::STAGE, job, feed, true, &mut stats).await?;
    // Schema changes are DDL, which MySQL commits at once; each is idempotent, and the
    // position only moves with the data below.
    run_all(conn, &store, "changing the table's layout", &job.migration).await?;
    run_all(
        conn,
        &store,
        "starting a transaction",
        &["START TRANSACTION".to_owned()],
    )
    .await?;
    if !columns.is_empty() {
        conn.query_drop(sql::merge_delete(model))
            .await
            .map_err(|e| store.fail("deleting the deleted rows", &e))?;
        stats.deleted = conn.affected_rows();
        stats.upserted = count_of(
            conn,
            &store,
            "counting the changed rows",
            &sql::count_upserts(),
        )
        .await?;
        conn.query_drop(sql::merge_upsert(model, &columns))
            .await
            .map_err(|e| store.fail("upserting the changed rows", &e))?;
    }
    write_position(conn, &store, job).await?;
    run_all(
        conn,
        &store,
        "committing",
        &["COMMIT".to_owned(), sql::drop_stage()],
    )
    .await?;
    Ok(stats)
}

/// Writes the position (whole seconds, as the `datetime` column keeps it: never later
/// than the job's); returns the id of an inserted row.
async fn write_position(
    conn: &mut Conn,
    store: &MySqlStore,
    job: &LoadJob<'_>,
) -> Result<Option<u64>, Error> {
    let model = job.model;
    let ts = Timestamp::from_second(job.next_position.as_second()).unwrap_or(job.next_position);
    let ts = naive_utc(ts);
    let version = i64::try_from(model.schema_version).unwrap_or(i64::MAX);
    let what = "recording the table's position in instructure_dap__table_sync";
    match job.position {
        Some(p) => {
            conn.exec_drop(
                sql::update_position(),
                (ts, version, &model.schema_description, p.id),
            )
            .await
            .map_err(|e| store.fail(what, &e))?;
            Ok(None)
        }
        None => {
            let (ns, t) = (&model.namespace, &model.table);
            conn.exec_drop(
                sql::insert_position(),
                (ns, t, ts, version, ns, t, &model.schema_description),
            )
            .await
            .map_err(|e| store.fail(what, &e))?;
            Ok(conn.last_insert_id())
        }
    }
}

/// Loads every object into the bare table `into`; returns the columns the data had.
async fn load_all(
    conn: &mut Conn,
    store: &MySqlStore,
    into: &str,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
    replace: bool,
    stats: &mut LoadStats,
) -> Result<Vec<String>, Error> {
    let mut columns: Vec<String> = Vec::new();
    for i in 0..feed.len() {
        let target = LoadTarget {
            into,
            model: job.model,
            kind: job.kind,
            replace,
            object: i + 1,
        };
        let (cols, lines) = load_object(conn, store, &target, feed.open(i))
            .await
            .map_err(|e| e.in_object(&feed, i))?;
        stats.lines += lines;
        add_columns(&mut columns, cols);
    }
    Ok(columns)
}

/// Where one object goes.
struct LoadTarget<'a> {
    into: &'a str,
    model: &'a TableModel,
    kind: LoadKind,
    replace: bool,
    object: usize,
}

/// Streams one object into `LOAD DATA LOCAL INFILE`; returns its columns and its number
/// of data lines.
async fn load_object(
    conn: &mut Conn,
    store: &MySqlStore,
    target: &LoadTarget<'_>,
    mut chunks: Chunks,
) -> Result<(Vec<String>, u64), ObjectError> {
    let mut rewriter = Rewriter::with_encoding(target.model, target.kind, Encoding::LoadData);
    let mut out: Vec<u8> = Vec::with_capacity(FLUSH * 2);
    // The header names the statement's columns.
    let mut ended = false;
    while rewriter.layout().is_none() {
        match chunks.next().await {
            Some(chunk) => rewriter
                .push(&chunk.map_err(Error::from)?, &mut out)
                .map_err(ObjectError::Data)?,
            None => {
                rewriter.finish(&mut out).map_err(ObjectError::Data)?;
                ended = true;
            }
        }
    }
    let columns = rewriter
        .layout()
        .map(|l| l.columns.clone())
        .ok_or(ObjectError::Data(TsvError::NoHeader))?;
    let statement = load_data(target.into, &columns, target.replace, target.object);
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    conn.set_infile_handler(async move {
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(stream.boxed())
    });
    let (produced, loaded) = {
        let producer = async {
            // On a failure the data just ends: the load completes on what it got, inside
            // a transaction that is then rolled back, and the connection stays usable
            // (aborting the transfer would close it, and with it the table's lock).
            let result = produce(&mut rewriter, &mut chunks, out, ended, &tx).await;
            drop(tx);
            result
        };
        let load = conn.query_drop(statement);
        tokio::pin!(load, producer);
        let mut produced = None;
        let loaded = loop {
            tokio::select! {
                r = &mut load => break r,
                p = &mut producer, if produced.is_none() => produced = Some(p),
            }
        };
        (produced, loaded)
    };
    let what = format!("loading object {} into {}", target.object, target.into);
    // A failure to read the data comes first: it is why the load stopped.
    if let Some(Err(e)) = produced {
        return Err(e);
    }
    loaded.map_err(|e| store.fail(what.clone(), &e))?;
    check_warnings(conn, store, &what).await?;
    let lines = rewriter.lines().saturating_sub(1);
    Ok((columns, lines))
}

/// Feeds the rest of an object, rewritten, to the load.
async fn produce(
    rewriter: &mut Rewriter<'_>,
    chunks: &mut Chunks,
    mut out: Vec<u8>,
    mut ended: bool,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), ObjectError> {
    let send = |data: Vec<u8>| async move {
        // A closed channel means the load already ended; it reports why.
        let _ = tx.send(Ok(Bytes::from(data))).await;
    };
    while !ended {
        match chunks.next().await {
            Some(chunk) => {
                rewriter
                    .push(&chunk.map_err(Error::from)?, &mut out)
                    .map_err(ObjectError::Data)?;
                if out.len() >= FLUSH {
                    send(std::mem::replace(&mut out, Vec::with_capacity(FLUSH * 2))).await;
                }
            }
            None => {
                rewriter.finish(&mut out).map_err(ObjectError::Data)?;
                ended = true;
            }
        }
    }
    if !out.is_empty() {
        send(out).await;
    }
    Ok(())
}

/// `LOAD DATA LOCAL` turns a value it cannot take into a warning (and stores something
/// else): any warning fails the load.
async fn check_warnings(conn: &mut Conn, store: &MySqlStore, what: &str) -> Result<(), Error> {
    if conn.get_warnings() == 0 {
        return Ok(());
    }
    let warnings: Vec<(String, u32, String)> = rows(
        conn,
        store,
        what,
        "SHOW WARNINGS LIMIT 3",
        mysql_async::Params::Empty,
    )
    .await?;
    let text: Vec<String> = warnings
        .into_iter()
        .map(|(level, code, message)| format!("{level} {code}: {message}"))
        .collect();
    Err(Error::database(
        what,
        format!(
            "the server did not store every value as sent ({})",
            text.join("; ")
        ),
    ))
}
