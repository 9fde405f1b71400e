//! The pump: for each table, ask the plan, then do what it says with DAP and the
//! database. Tables run in parallel (query starts paced to DAP's limit); each one
//! holds its table's lock from first read to commit.

use std::time::Instant;

use dap_proto::chain::{Chain, Reason, Recovery, Step};
use dap_proto::{Format, Mode, QueryResult};
use futures_util::stream::{self, StreamExt};
use jiff::Timestamp;
use tracing::{info, warn};

use crate::error::Error;
use crate::migrate::{self, ExistingTable, Migration};
use crate::model::TableModel;
use crate::pace::Pacer;
use crate::plan::{self, Command, Next, Position, Target};
use crate::source::Source;
use crate::store::{Feed, LoadJob, LoadStats, Store, TableSession};
use crate::tsv::LoadKind;

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Tables replicated at once.
    pub concurrency: usize,
    /// Query starts allowed per minute (0: no pacing).
    pub queries_per_minute: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 4,
            queries_per_minute: 5,
        }
    }
}

/// What happened to a table.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// `initdb` loaded a snapshot.
    Initialized,
    /// `syncdb` applied a window of changes.
    Synced,
    /// The table was replaced by a new snapshot, for the reason given.
    Reinitialized(String),
    /// `dropdb` removed it.
    Dropped,
}

/// A table done.
#[derive(Debug, Clone, PartialEq)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// What was done.
    pub action: Action,
    /// The job whose data was applied.
    pub job: Option<String>,
    /// The table's position afterwards.
    pub position: Option<Timestamp>,
    /// The schema version of the layout.
    pub schema_version: Option<u64>,
    /// Whether the layout changed in place.
    pub migrated: bool,
    /// Rows and changes.
    pub stats: LoadStats,
    /// Milliseconds taken.
    pub elapsed_ms: u64,
}

impl TableReport {
    fn new(table: &str, action: Action) -> Self {
        Self {
            table: table.to_owned(),
            action,
            job: None,
            position: None,
            schema_version: None,
            migrated: false,
            stats: LoadStats::default(),
            elapsed_ms: 0,
        }
    }
}

/// The outcome of one table of a batch.
#[derive(Debug)]
pub enum TableOutcome {
    /// Done.
    Done(TableReport),
    /// Failed.
    Failed(String, Error),
    /// Not attempted, because an earlier failure made it pointless.
    Skipped(String),
}

/// Runs `command` on `tables`, in parallel, stopping new tables after a fatal error.
/// Outcomes come in the order of `tables`.
pub async fn run<S: Store>(
    store: &S,
    source: &dyn Source,
    command: Command,
    namespace: &str,
    tables: &[String],
    options: Options,
) -> Vec<TableOutcome> {
    let pacer = Pacer::per_minute(options.queries_per_minute);
    let fatal = std::sync::atomic::AtomicBool::new(false);
    let total = tables.len();
    let verb = match command {
        Command::Init => "initdb",
        Command::Sync => "syncdb",
    };
    let mut results: Vec<(usize, TableOutcome)> = stream::iter(tables.iter().enumerate())
        .map(|(i, table)| {
            let (pacer, fatal) = (&pacer, &fatal);
            async move {
                if fatal.load(std::sync::atomic::Ordering::Relaxed) {
                    return (i, TableOutcome::Skipped(table.clone()));
                }
                let of = position_text(i, total);
                info!("Starting {verb} of table '{table}'{of}");
                let started = Instant::now();
                match run_table(store, source, pacer, command, namespace, table).await {
                    Ok(mut report) => {
                        report.elapsed_ms =
                            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        info!("Finished {verb} of table '{table}'{of}");
                        (i, TableOutcome::Done(report))
                    }
                    Err(e) => {
                        if e.is_fatal() {
                            fatal.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        tracing::error!("Operation {verb} failed for table '{table}'{of}: {e}");
                        (i, TableOutcome::Failed(table.clone(), e))
                    }
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

fn position_text(i: usize, total: usize) -> String {
    if total > 1 {
        format!(" ({} of {total})", i + 1)
    } else {
        String::new()
    }
}

fn recovery_reason(why: Recovery) -> &'static str {
    match why {
        Recovery::SnapshotRequired => {
            "DAP reloaded the table (SnapshotRequired), so the changes since the stored position no longer exist"
        }
        Recovery::OutOfRange => "the stored position is older than DAP keeps changes (OutOfRange)",
        _ => "DAP can no longer continue from the stored position",
    }
}

async fn model_of(source: &dyn Source, namespace: &str, table: &str) -> Result<TableModel, Error> {
    let schema = source.schema(namespace, table).await?;
    Ok(TableModel::from_schema(
        namespace,
        table,
        schema.raw(),
        schema.version,
    )?)
}

/// Runs `command` on one table.
pub async fn run_table<S: Store>(
    store: &S,
    source: &dyn Source,
    pacer: &Pacer,
    command: Command,
    namespace: &str,
    table: &str,
) -> Result<TableReport, Error> {
    let mut session = store.session(namespace, table).await?;
    let stored = session.position().await?;
    let existing = session.existing().await?;
    let mut model = model_of(source, namespace, table).await?;
    let ctx = Ctx {
        store,
        source,
        pacer,
        namespace,
        table,
        chain: Chain::new(Format::Tsv, stored.as_ref().map(|p| p.timestamp))
            .with_mode(Mode::Condensed),
        stored: stored.as_ref(),
    };
    match plan::next(command, stored.as_ref(), existing.is_some()) {
        Next::Refuse(message) => Err(Error::Refused(message.to_owned())),
        Next::Snapshot { replace } => {
            let action = if command == Command::Init {
                Action::Initialized
            } else {
                let reason = "its table is missing from the database".to_owned();
                warn!("Table '{table}': {reason}; loading it afresh from a new snapshot");
                Action::Reinitialized(reason)
            };
            let step = ctx.chain.next(stored.is_some());
            ctx.snapshot(&mut session, &mut model, step, replace, action)
                .await
        }
        Next::Incremental { .. } => {
            let existing = existing.unwrap_or_default();
            ctx.incremental(&mut session, &mut model, &existing).await
        }
    }
}

struct Ctx<'a, S> {
    store: &'a S,
    source: &'a dyn Source,
    pacer: &'a Pacer,
    namespace: &'a str,
    table: &'a str,
    /// The table's chain of queries (shared rules with `dap sync`).
    chain: Chain,
    stored: Option<&'a Position>,
}

impl<S: Store> Ctx<'_, S> {
    /// Runs a step's query; if the job follows another schema version than `model`,
    /// reads the schema again (once).
    async fn query(&self, model: &mut TableModel, step: &Step) -> Result<QueryResult, Error> {
        self.pacer.start().await;
        let result = self
            .source
            .query(self.namespace, self.table, step.query)
            .await?;
        if result.schema_version != model.schema_version {
            *model = model_of(self.source, self.namespace, self.table).await?;
            if result.schema_version != model.schema_version {
                return Err(Error::Refused(format!(
                    "job {} follows schema version {} but DAP describes version {} of table '{}'; run again later",
                    result.job, result.schema_version, model.schema_version, self.table
                )));
            }
        }
        Ok(result)
    }

    async fn prepare_enums(
        &self,
        session: &mut S::Session,
        model: &TableModel,
    ) -> Result<(), Error> {
        let names: Vec<String> = model.enums.iter().map(|e| e.name.clone()).collect();
        let existing = session.enums(&names).await?;
        let changes = migrate::enum_changes(&existing, model);
        if !changes.is_empty() {
            let stmts = changes.statements(self.store.dialect(), self.namespace);
            session.execute_each(&stmts).await?;
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        session: &mut S::Session,
        model: &mut TableModel,
        step: Step,
        replace: bool,
        action: Action,
    ) -> Result<TableReport, Error> {
        let result = self.query(model, &step).await?;
        let advance = self.chain.accept(&step, &result.range)?;
        if matches!(action, Action::Reinitialized(_)) {
            plan::check_reinit(advance.position, self.stored.map(|p| p.timestamp))?;
        }
        self.prepare_enums(session, model).await?;
        let landing = plan::landing(self.namespace, self.table, advance.apply, replace);
        let job = LoadJob {
            model,
            landing,
            kind: LoadKind::Snapshot,
            migration: Vec::new(),
            disturbs_views: landing.target == Target::Replace,
            position: self.stored,
            next_position: advance.position,
        };
        let stats = session.load(&job, Feed::new(self.source, &result)).await?;
        info!(
            "Table '{}': {} rows loaded from snapshot job {} (as of {})",
            self.table, stats.upserted, result.job, advance.position
        );
        Ok(self.report(action, &result, advance.position, model, stats, false))
    }

    async fn incremental(
        &self,
        session: &mut S::Session,
        model: &mut TableModel,
        existing: &ExistingTable,
    ) -> Result<TableReport, Error> {
        let dialect = self.store.dialect();
        let migration = migrate::diff(existing, model, dialect);
        if let Some(reason) = self.reinit_reason(&migration) {
            return self.reinit(session, model, reason).await;
        }
        let step = self.chain.next(false);
        let result = match self.query(model, &step).await {
            Ok(r) => r,
            Err(Error::Source(e)) => {
                let recovery = e
                    .dap_kind()
                    .and_then(|kind| self.chain.recover(&step, kind));
                return match recovery.map(|s| s.reason) {
                    Some(Reason::Recover(why)) => {
                        self.reinit(session, model, recovery_reason(why).to_owned())
                            .await
                    }
                    _ => Err(Error::Source(e)),
                };
            }
            Err(e) => return Err(e),
        };
        let advance = self.chain.accept(&step, &result.range)?;
        // The job may follow a newer schema than the one read first.
        let migration = migrate::diff(existing, model, dialect);
        if let Some(reason) = self.reinit_reason(&migration) {
            return self.reinit(session, model, reason).await;
        }
        self.prepare_enums(session, model).await?;
        if !migration.is_empty() {
            info!(
                "Table '{}': schema version {} changes the table's layout; changing it in place",
                self.table, model.schema_version
            );
        }
        let job = LoadJob {
            model,
            landing: plan::landing(self.namespace, self.table, advance.apply, true),
            kind: LoadKind::Changes,
            migration: migration.statements(dialect, model),
            disturbs_views: migration.disturbs_views(),
            position: self.stored,
            next_position: advance.position,
        };
        let stats = session.load(&job, Feed::new(self.source, &result)).await?;
        info!(
            "Table '{}': {} changes applied ({} upserted, {} deleted), now as of {}",
            self.table, stats.lines, stats.upserted, stats.deleted, advance.position
        );
        Ok(self.report(
            Action::Synced,
            &result,
            advance.position,
            model,
            stats,
            !migration.is_empty(),
        ))
    }

    fn reinit_reason(&self, migration: &Migration) -> Option<String> {
        if let Some(r) = &migration.reinit {
            return Some(format!("the new schema cannot be applied in place: {r}"));
        }
        migration.rebuild.then(|| {
            format!(
                "the {} database cannot change the table's columns in place",
                self.store.dialect().name()
            )
        })
    }

    async fn reinit(
        &self,
        session: &mut S::Session,
        model: &mut TableModel,
        reason: String,
    ) -> Result<TableReport, Error> {
        warn!(
            "Table '{}': {reason}. Re-initialising it from a new snapshot; the current copy \
             stays readable until the new one replaces it in one transaction",
            self.table
        );
        let step = self.chain.next(true);
        self.snapshot(session, model, step, true, Action::Reinitialized(reason))
            .await
    }

    fn report(
        &self,
        action: Action,
        result: &QueryResult,
        position: Timestamp,
        model: &TableModel,
        stats: LoadStats,
        migrated: bool,
    ) -> TableReport {
        let mut r = TableReport::new(self.table, action);
        r.job = Some(result.job.to_string());
        r.position = Some(position);
        r.schema_version = Some(model.schema_version);
        r.migrated = migrated;
        r.stats = stats;
        r
    }
}

/// Drops replicated tables (`all`: every table of the namespace in `table_sync`).
pub async fn drop_tables<S: Store>(
    store: &S,
    namespace: &str,
    tables: &[String],
) -> Vec<TableOutcome> {
    let mut out = Vec::new();
    for table in tables {
        let result = async {
            let mut session = store.session(namespace, table).await?;
            if session.drop_table().await? {
                Ok(TableReport::new(table, Action::Dropped))
            } else {
                Err(Error::Refused(plan::NOT_INITIALIZED.to_owned()))
            }
        }
        .await;
        out.push(match result {
            Ok(r) => {
                info!("Deleted table '{table}'");
                TableOutcome::Done(r)
            }
            Err(e) => {
                tracing::error!("Could not delete table '{table}'. Reason: {e}");
                TableOutcome::Failed(table.clone(), e)
            }
        });
    }
    out
}
