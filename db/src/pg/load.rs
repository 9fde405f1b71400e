//! One load, one transaction: create or stage, `COPY` every object as it downloads,
//! apply, move the position, commit. Any failure (a download that fails verification
//! included) rolls everything back.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::Transaction;

use super::sql::{self, SavedView};
use super::{PgSession, PgStore};
use crate::dialect::{Dialect, Postgres, pk_name, shadow_name};
use crate::error::Error;
use crate::model::TableModel;
use crate::plan::Target;
use crate::source::Chunks;
use crate::store::{Feed, LoadJob, LoadStats, ObjectError, add_columns, naive_utc};
use crate::tsv::{LoadKind, Rewriter};

/// Bytes gathered before they are sent to the server.
const FLUSH: usize = 256 * 1024;

pub(super) async fn run(
    session: &mut PgSession,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
) -> Result<LoadStats, Error> {
    let store = session.store.clone();
    let model = job.model;
    let table = Postgres.qualified(&model.namespace, &model.table);
    let started = std::time::Instant::now();
    let tx = session
        .client
        .transaction()
        .await
        .map_err(|e| store.fail("starting a transaction", &e))?;
    let staged = job.landing.dedupe || job.landing.target == Target::Merge;
    let into = prepare(&tx, &store, job, staged).await?;
    let copy_into = if staged {
        sql::STAGE.to_owned()
    } else {
        into.clone()
    };
    let mut stats = LoadStats::default();
    let columns = copy_all(&tx, &store, &copy_into, job, feed, &mut stats).await?;
    phase("copy", started, stats.lines);
    let views = if job.disturbs_views {
        save_views(&tx, &store, &table).await?
    } else {
        Vec::new()
    };
    let drops: Vec<String> = views.iter().rev().map(SavedView::drop).collect();
    batch(&tx, &store, &drops, "dropping the views on the table").await?;
    apply(&tx, &store, job, staged, &into, &columns, &mut stats).await?;
    phase("apply", started, stats.upserted + stats.deleted);
    stats.views = recreate_views(&tx, &store, &views, &table).await?;
    write_position(&tx, &store, job).await?;
    tx.commit()
        .await
        .map_err(|e| store.fail("committing", &e))?;
    phase("commit", started, 0);
    Ok(stats)
}

fn phase(name: &str, started: std::time::Instant, rows: u64) {
    tracing::debug!(
        phase = name,
        rows,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "load phase done"
    );
}

/// Creates the table (or its new copy) and the staging table; returns where the rows
/// finally go.
async fn prepare(
    tx: &Transaction<'_>,
    store: &PgStore,
    job: &LoadJob<'_>,
    staged: bool,
) -> Result<String, Error> {
    let model = job.model;
    let ns = &model.namespace;
    let shadow = shadow_name(&model.table);
    let into = match job.landing.target {
        Target::Create => {
            let stmts = Postgres.create_table(model, &model.table, &pk_name(&model.table));
            batch(tx, store, &stmts, "creating the table").await?;
            Postgres.qualified(ns, &model.table)
        }
        Target::Replace => {
            let mut stmts = vec![Postgres.drop_table(ns, &shadow)];
            stmts.extend(Postgres.create_table(model, &shadow, &pk_name(&shadow)));
            batch(tx, store, &stmts, "creating the new copy of the table").await?;
            Postgres.qualified(ns, &shadow)
        }
        Target::Merge => Postgres.qualified(ns, &model.table),
    };
    if staged {
        batch(
            tx,
            store,
            &[sql::create_stage(model)],
            "creating the staging table",
        )
        .await?;
    }
    Ok(into)
}

/// Streams every object into `COPY`; returns the columns the data had.
async fn copy_all(
    tx: &Transaction<'_>,
    store: &PgStore,
    copy_into: &str,
    job: &LoadJob<'_>,
    feed: Feed<'_>,
    stats: &mut LoadStats,
) -> Result<Vec<String>, Error> {
    let mut columns: Vec<String> = Vec::new();
    for i in 0..feed.len() {
        let (cols, lines) = copy_object(tx, store, copy_into, feed.open(i), job.model, job.kind)
            .await
            .map_err(|e| e.in_object(&feed, i))?;
        stats.lines += lines;
        add_columns(&mut columns, cols);
    }
    Ok(columns)
}

/// Changes the layout, applies staged rows, swaps a new copy in.
async fn apply(
    tx: &Transaction<'_>,
    store: &PgStore,
    job: &LoadJob<'_>,
    staged: bool,
    into: &str,
    columns: &[String],
    stats: &mut LoadStats,
) -> Result<(), Error> {
    let model = job.model;
    let merge = job.landing.target == Target::Merge;
    if merge {
        batch(tx, store, &job.migration, "changing the table's layout").await?;
    }
    if staged && !columns.is_empty() {
        batch(
            tx,
            store,
            &sql::dedupe_stage(model),
            "keeping the last change of each key",
        )
        .await?;
        let whole_rows = model.columns.iter().all(|c| columns.contains(&c.name));
        if merge && whole_rows && !has_dependents(tx, store, into).await? {
            // The data has every column and nothing refers to the rows: replacing them
            // is invisible, and faster than updating them in place.
            stats.deleted = count(
                tx,
                store,
                &sql::delete_staged_keys(model, into),
                "deleting the changed rows",
            )
            .await?;
            stats.upserted = tx
                .execute(&sql::insert_upserts(into, columns), &[])
                .await
                .map_err(|e| store.fail("inserting the changed rows", &e))?;
            return swap(tx, store, job).await;
        }
        if merge {
            stats.deleted = tx
                .execute(&sql::merge_delete(model, into), &[])
                .await
                .map_err(|e| store.fail("deleting the deleted rows", &e))?;
        }
        if let Some(update) = sql::merge_update(model, into, columns) {
            stats.upserted = tx
                .execute(&update, &[])
                .await
                .map_err(|e| store.fail("updating the changed rows", &e))?;
        }
        stats.upserted += tx
            .execute(&sql::merge_insert(model, into, columns), &[])
            .await
            .map_err(|e| store.fail("inserting the new rows", &e))?;
    } else if !staged {
        stats.upserted = stats.lines;
    }
    swap(tx, store, job).await
}

async fn has_dependents(tx: &Transaction<'_>, store: &PgStore, table: &str) -> Result<bool, Error> {
    tx.query_one(sql::HAS_DEPENDENTS, &[&table])
        .await
        .map(|r| r.get(0))
        .map_err(|e| store.fail("reading what refers to the table", &e))
}

async fn count(
    tx: &Transaction<'_>,
    store: &PgStore,
    query: &str,
    what: &str,
) -> Result<u64, Error> {
    let n: i64 = tx
        .query_one(query, &[])
        .await
        .map_err(|e| store.fail(what, &e))?
        .get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Swaps a new copy of the table in, when the load built one.
async fn swap(tx: &Transaction<'_>, store: &PgStore, job: &LoadJob<'_>) -> Result<(), Error> {
    let model = job.model;
    if job.landing.target == Target::Replace {
        let (ns, shadow) = (&model.namespace, shadow_name(&model.table));
        let mut stmts = vec![format!(
            "DROP TABLE IF EXISTS {}",
            Postgres.qualified(ns, &model.table)
        )];
        stmts.extend(Postgres.rename_table(
            ns,
            &shadow,
            &model.table,
            &pk_name(&shadow),
            &pk_name(&model.table),
        ));
        batch(tx, store, &stmts, "swapping in the new copy of the table").await?;
    }
    Ok(())
}

async fn batch(
    tx: &Transaction<'_>,
    store: &PgStore,
    stmts: &[String],
    what: &str,
) -> Result<(), Error> {
    for s in stmts {
        tx.batch_execute(s)
            .await
            .map_err(|e| store.fail(what, &e))?;
    }
    Ok(())
}

/// Streams one object into `COPY`; returns its columns and its number of data lines.
async fn copy_object(
    tx: &Transaction<'_>,
    store: &PgStore,
    into: &str,
    mut chunks: Chunks,
    model: &TableModel,
    kind: LoadKind,
) -> Result<(Vec<String>, u64), ObjectError> {
    let mut rewriter = Rewriter::new(model, kind);
    let mut out: Vec<u8> = Vec::with_capacity(FLUSH * 2);
    let mut sink = None;
    let what = "loading rows with COPY";
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(Error::from)?;
        rewriter.push(&chunk, &mut out).map_err(ObjectError::Data)?;
        if sink.is_none() {
            if let Some(layout) = rewriter.layout() {
                let s = tx
                    .copy_in::<_, Bytes>(&sql::copy_in(into, &layout.columns))
                    .await
                    .map_err(|e| store.fail(what, &e))?;
                sink = Some(Box::pin(s));
            }
        }
        if let Some(s) = sink.as_mut() {
            if out.len() >= FLUSH {
                let data = Bytes::from(std::mem::replace(&mut out, Vec::with_capacity(FLUSH * 2)));
                s.send(data).await.map_err(|e| store.fail(what, &e))?;
            }
        }
    }
    rewriter.finish(&mut out).map_err(ObjectError::Data)?;
    let layout = rewriter
        .layout()
        .cloned()
        .ok_or(ObjectError::Data(crate::tsv::TsvError::NoHeader))?;
    let mut s = match sink {
        Some(s) => s,
        None => Box::pin(
            tx.copy_in::<_, Bytes>(&sql::copy_in(into, &layout.columns))
                .await
                .map_err(|e| store.fail(what, &e))?,
        ),
    };
    if !out.is_empty() {
        s.send(Bytes::from(out))
            .await
            .map_err(|e| store.fail(what, &e))?;
    }
    s.as_mut()
        .finish()
        .await
        .map_err(|e| store.fail(what, &e))?;
    let lines = rewriter.lines().saturating_sub(1);
    let columns = layout.columns;
    Ok((columns, lines))
}

async fn save_views(
    tx: &Transaction<'_>,
    store: &PgStore,
    table: &str,
) -> Result<Vec<SavedView>, Error> {
    let rows = tx
        .query(sql::DEPENDENT_VIEWS, &[&table])
        .await
        .map_err(|e| store.fail("reading the views on the table", &e))?;
    Ok(rows
        .iter()
        .map(|r| SavedView {
            schema: r.get(0),
            name: r.get(1),
            materialized: r.get::<_, String>(2) == "m",
            definition: r.get(3),
            comment: r.get(4),
        })
        .collect())
}

async fn recreate_views(
    tx: &Transaction<'_>,
    store: &PgStore,
    views: &[SavedView],
    table: &str,
) -> Result<u64, Error> {
    for v in views {
        for stmt in v.create() {
            tx.batch_execute(&stmt).await.map_err(|e| Error::View {
                view: v.qualified(),
                table: table.to_owned(),
                reason: crate::error::redact(&crate::error::chain(&e), store.password()),
            })?;
        }
    }
    Ok(views.len() as u64)
}

async fn write_position(
    tx: &Transaction<'_>,
    store: &PgStore,
    job: &LoadJob<'_>,
) -> Result<(), Error> {
    let model = job.model;
    let ts = naive_utc(job.next_position);
    let version = i64::try_from(model.schema_version).unwrap_or(i64::MAX);
    let what = "recording the table's position in instructure_dap.table_sync";
    match job.position {
        Some(p) => tx
            .execute(
                &sql::update_position(),
                &[&p.id, &ts, &version, &model.schema_description],
            )
            .await
            .map_err(|e| store.fail(what, &e))?,
        None => tx
            .execute(
                &sql::insert_position(),
                &[
                    &model.namespace,
                    &model.table,
                    &ts,
                    &version,
                    &model.schema_description,
                ],
            )
            .await
            .map_err(|e| store.fail(what, &e))?,
    };
    Ok(())
}
