//! `initdb`, `syncdb`, `dropdb` and `listdb`: the database commands, on top of dap-db.

use std::collections::BTreeMap;

use dap_db::conn::{ConnectionString, Target};
use dap_db::listdb;
use dap_db::mysql::MySqlStore;
use dap_db::pg::PgStore;
use dap_db::plan::Command as DbCommand;
use dap_db::replicate::{self, Action, Options, TableOutcome, TableReport};
use dap_db::source::{HyperSource, Source};
use dap_db::sqlite::SqliteStore;
use dap_db::store::Store;
use dap_hyper::Client;
use serde_json::{Value, json};
use tracing::info;

use crate::args::{DbArgs, ListdbArgs};
use crate::batch::{Outcome, resolve_tables};
use crate::context::Context;
use crate::errors::CliError;
use crate::print_stdout;
use crate::redact::redact;

fn connection(text: Option<&str>) -> Result<ConnectionString, CliError> {
    ConnectionString::parse(text.unwrap_or("")).map_err(|e| CliError::Usage(e.to_string()))
}

/// Runs `f` with the store the connection string names.
macro_rules! with_store {
    ($conn:expr, |$store:ident| $body:expr) => {
        match $conn.target() {
            Target::Postgres(_) => {
                let $store = PgStore::new(&$conn)
                    .ok_or_else(|| CliError::Other("internal: not postgres".to_owned()))?;
                $body
            }
            Target::MySql(_) => {
                let $store = MySqlStore::new(&$conn)
                    .ok_or_else(|| CliError::Other("internal: not mysql".to_owned()))?;
                $body
            }
            Target::Sqlite(_) => {
                let $store = SqliteStore::new(&$conn)
                    .ok_or_else(|| CliError::Other("internal: not sqlite".to_owned()))?;
                $body
            }
            _ => Err(CliError::Usage(format!("{} is not supported", $conn))),
        }
    };
}

fn db_error(what: &str, e: dap_db::error::Error) -> CliError {
    CliError::Other(redact(&format!("{what}: {e}")))
}

/// `dap initdb`.
pub(crate) async fn initdb(ctx: &Context<'_>, args: &DbArgs) -> Result<Outcome, CliError> {
    let conn = connection(args.target.connection_string.as_deref())?;
    replicate(&ctx.client()?, args, conn, DbCommand::Init).await
}

/// `dap syncdb`.
pub(crate) async fn syncdb(ctx: &Context<'_>, args: &DbArgs) -> Result<Outcome, CliError> {
    let conn = connection(args.target.connection_string.as_deref())?;
    replicate(&ctx.client()?, args, conn, DbCommand::Sync).await
}

/// `initdb` and `syncdb`.
async fn replicate(
    client: &Client,
    args: &DbArgs,
    conn: ConnectionString,
    command: DbCommand,
) -> Result<Outcome, CliError> {
    let tables = resolve_tables(client, &args.target.namespace, &args.table).await?;
    let source = HyperSource::new(client.clone());
    let options = Options {
        concurrency: usize::from(args.concurrency),
        ..Options::default()
    };
    let outcomes = with_store!(conn, |store| {
        store
            .prepare(&args.target.namespace)
            .await
            .map_err(|e| db_error("preparing the database", e))?;
        Ok::<_, CliError>(
            replicate::run(
                &store,
                &source,
                command,
                &args.target.namespace,
                &tables,
                options,
            )
            .await,
        )
    })?;
    let name = match command {
        DbCommand::Init => "initdb",
        DbCommand::Sync => "syncdb",
    };
    Ok(summarise(name, &args.target.namespace, &conn, outcomes))
}

/// `dap dropdb` (needs no DAP credentials).
pub(crate) async fn dropdb(_ctx: &Context<'_>, args: &DbArgs) -> Result<Outcome, CliError> {
    let conn = connection(args.target.connection_string.as_deref())?;
    let outcomes = with_store!(conn, |store| {
        store
            .prepare(&args.target.namespace)
            .await
            .map_err(|e| db_error("preparing the database", e))?;
        let tables: Vec<String> = if args.table.trim().eq_ignore_ascii_case("all") {
            let rows = store
                .positions(&args.target.namespace)
                .await
                .map_err(|e| db_error("reading instructure_dap.table_sync", e))?;
            let names: Vec<String> = rows.into_iter().map(|r| r.table).collect();
            info!(
                "all local database tables in namespace {} : {names:?}",
                args.target.namespace
            );
            names
        } else {
            split_tables(&args.table)
        };
        if tables.is_empty() {
            tracing::warn!("No tables to drop in namespace {}", args.target.namespace);
        }
        Ok::<_, CliError>(replicate::drop_tables(&store, &args.target.namespace, &tables).await)
    })?;
    Ok(summarise("dropdb", &args.target.namespace, &conn, outcomes))
}

fn split_tables(spec: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !out.iter().any(|x| x == t) {
            out.push(t.to_owned());
        }
    }
    out
}

fn summarise(
    name: &str,
    namespace: &str,
    conn: &ConnectionString,
    outcomes: Vec<TableOutcome>,
) -> Outcome {
    let mut reports: Vec<Value> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let total = outcomes.len();
    for o in outcomes {
        match o {
            TableOutcome::Done(r) => reports.push(report_json(&r)),
            TableOutcome::Failed(table, e) => {
                reports.push(json!({
                    "table": table,
                    "status": "failed",
                    "error": redact(&e.to_string()),
                }));
                failed.push(table);
            }
            TableOutcome::Skipped(table) => {
                reports.push(json!({ "table": table, "status": "skipped" }));
                failed.push(table);
            }
        }
    }
    let ok = failed.is_empty();
    if ok {
        if total > 1 {
            info!("Operation {name} completed: {total} table(s) succeeded.");
        }
    } else {
        tracing::error!(
            "Operation {name} completed with issues: {} failed out of {total} table(s): {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Outcome {
        json: json!({
            "command": name,
            "ok": ok,
            "namespace": namespace,
            "database": conn.to_string(),
            "tables": reports,
            "failed": failed,
        }),
        ok,
        reports: None,
    }
}

fn report_json(r: &TableReport) -> Value {
    let (action, reason) = match &r.action {
        Action::Initialized => ("initialized", None),
        Action::Synced => ("synced", None),
        Action::Reinitialized(reason) => ("reinitialized", Some(reason.clone())),
        Action::Dropped => ("dropped", None),
        _ => ("other", None),
    };
    json!({
        "table": r.table,
        "status": "ok",
        "action": action,
        "reason": reason,
        "job_id": r.job,
        "position": r.position.map(|p| p.to_string()),
        "schema_version": r.schema_version,
        "schema_migrated": r.migrated,
        "lines": r.stats.lines,
        "upserted": r.stats.upserted,
        "deleted": r.stats.deleted,
        "views_recreated": r.stats.views,
        "elapsed_ms": r.elapsed_ms,
    })
}

/// `dap listdb`: the official JSON with `--non-interactive`, a table otherwise.
pub(crate) async fn listdb(ctx: &Context<'_>, args: &ListdbArgs) -> Result<Outcome, CliError> {
    let conn = connection(args.target.connection_string.as_deref())?;
    let interactive = !ctx.global.non_interactive;
    let json_output = ctx.json_output();
    let source = HyperSource::new(ctx.client()?);
    let dap_tables = source
        .tables(&args.target.namespace)
        .await
        .map_err(|e| CliError::Other(redact(&e.to_string())))?;
    let (positions, counts) = with_store!(conn, |store| {
        store
            .prepare(&args.target.namespace)
            .await
            .map_err(|e| db_error("preparing the database", e))?;
        let positions = store
            .positions(&args.target.namespace)
            .await
            .map_err(|e| db_error("reading instructure_dap.table_sync", e))?;
        let mut counts = BTreeMap::new();
        if !args.omit_record_count {
            for p in &positions {
                let n = store
                    .count(&args.target.namespace, &p.table)
                    .await
                    .map_err(|e| db_error("counting rows", e))?;
                counts.insert(p.table.clone(), n);
            }
        }
        Ok::<_, CliError>((positions, counts))
    })?;
    let tz = jiff::tz::TimeZone::system();
    let rows = listdb::rows(
        &dap_tables,
        &positions,
        &counts,
        args.omit_not_replicated,
        jiff::Timestamp::now(),
        &tz,
    );
    let with_records = !args.omit_record_count;
    let text = listdb::to_json(&rows, with_records);
    if !json_output {
        if interactive {
            print_stdout(&listdb::to_table(
                &args.target.namespace,
                &rows,
                with_records,
            ));
        } else {
            print_stdout(&format!("{text}\n"));
        }
    }
    let tables: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Outcome {
        json: json!({
            "command": "listdb",
            "ok": true,
            "namespace": args.target.namespace,
            "database": conn.to_string(),
            "tables": tables,
        }),
        ok: true,
        reports: None,
    })
}

/// `dap demo`'s database step: `initdb` of `table` into a SQLite file in `dir`, an hour
/// of changes, `syncdb`, then every row checked against the emulator's own answer.
/// Returns the line to show and the step's JSON.
pub(crate) async fn demo_step(
    client: &Client,
    emu: &dap_emulator::Emulator,
    namespace: &str,
    table: &str,
    dir: &std::path::Path,
) -> Result<(String, Value), CliError> {
    let path = dir.join("dap-demo.db");
    let store = SqliteStore::at(&path);
    let source = HyperSource::new(client.clone());
    let tables = vec![table.to_owned()];
    let options = Options {
        concurrency: 1,
        queries_per_minute: 0,
    };
    let fail = |e: dap_db::error::Error| CliError::Other(format!("demo database step: {e}"));
    store.prepare(namespace).await.map_err(fail)?;
    let mut reports = Vec::new();
    for (i, command) in [DbCommand::Init, DbCommand::Sync].into_iter().enumerate() {
        if i > 0 {
            emu.advance_clock(std::time::Duration::from_secs(3600));
        }
        for o in replicate::run(&store, &source, command, namespace, &tables, options).await {
            match o {
                TableOutcome::Done(r) => reports.push(r),
                TableOutcome::Failed(_, e) => return Err(fail(e)),
                TableOutcome::Skipped(t) => {
                    return Err(CliError::Other(format!("demo: {t} skipped")));
                }
            }
        }
    }
    let schema = source
        .schema(namespace, table)
        .await
        .map_err(|e| CliError::Other(format!("demo database step: {e}")))?;
    let model =
        dap_db::model::TableModel::from_schema(namespace, table, schema.raw(), schema.version)
            .map_err(|e| fail(e.into()))?;
    let got = dap_db::sqlite::canonical_rows(&path, &model).map_err(fail)?;
    // Compare with the table as it stood at the position syncdb reached, not at the
    // emulator's "now": its rows change every minute, and a minute may turn between
    // the sync and this check.
    let at_ms = reports
        .last()
        .and_then(|r| r.position)
        .map_or_else(|| emu.now_ms(), |p| p.as_millisecond());
    let expected: Vec<Vec<Option<String>>> = emu
        .expected_records(
            namespace,
            table,
            dap_emulator::EmulatedRange::Snapshot { at_ms },
        )
        .unwrap_or_default()
        .iter()
        .map(|r| {
            model
                .columns
                .iter()
                .map(|c| {
                    r.column(&c.label())
                        .flatten()
                        .map(|t| dap_db::model::canonical(&c.ty, &t))
                })
                .collect()
        })
        .collect();
    if got != expected {
        return Err(CliError::Other(format!(
            "demo: the SQLite copy of {table} differs from the emulator ({} rows, {} expected)",
            got.len(),
            expected.len()
        )));
    }
    let (init, sync) = (&reports[0], &reports[1]);
    let line = format!(
        "initdb {} rows, syncdb {} changes ({} deleted) into SQLite {}; {} rows match the emulator",
        init.stats.upserted,
        sync.stats.lines,
        sync.stats.deleted,
        path.display(),
        got.len()
    );
    let json = json!({
        "step": "database",
        "database": format!("sqlite://{}", path.display()),
        "initdb_rows": init.stats.upserted,
        "syncdb_changes": sync.stats.lines,
        "rows": got.len(),
    });
    Ok((line, json))
}
