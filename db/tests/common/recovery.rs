//! The recovery scenarios that PostgreSQL and MySQL share, over a [`Replica`]: each
//! backend's test file runs them on a database of the test's own and adds its own checks.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dap_db::model::TableModel;
use dap_db::plan::Command;
use dap_db::replicate::{Action, TableReport};
use dap_db::store::Store;
use dap_emulator::{Emulator, EmulatorConfig};

use super::{Tweaked, emulator_with, run1, source};

/// The rows of a table, normalised for comparison, ordered by key.
pub type Rows = Vec<Vec<Option<String>>>;

/// A test database of one backend, as the shared scenarios use it.
pub trait Replica: Sized {
    /// The backend's store.
    type Store: Store;
    /// Creates a database of the test's own, named after `tag`.
    fn create(tag: &str) -> impl Future<Output = Self>;
    /// A store on the database.
    fn open_store(&self) -> Self::Store;
    /// The rows of a replicated table.
    fn read_rows(&self, model: &TableModel) -> impl Future<Output = Rows>;
    /// The stored position of a table.
    fn read_position(&self, table: &str) -> impl Future<Output = Option<String>>;
    /// The rows the emulator holds at `at_ms`, normalised as this backend keeps them.
    fn expected(emu: &Emulator, model: &TableModel, at_ms: i64) -> Rows;
}

/// An emulator with 20,000 rows a table, so a load streams long enough to be killed.
pub fn big() -> EmulatorConfig {
    EmulatorConfig {
        rows_per_table: Some(20_000),
        ..EmulatorConfig::default()
    }
}

/// A database, an emulator, a source with hooks and a store with `canvas` prepared.
pub struct Ctx<R: Replica> {
    pub db: R,
    pub emu: Emulator,
    pub src: Tweaked,
    pub store: R::Store,
}

impl<R: Replica> Ctx<R> {
    pub async fn new(tag: &str, cfg: EmulatorConfig) -> Self {
        let db = R::create(tag).await;
        let emu = emulator_with(cfg);
        let src = Tweaked::new(source(&emu));
        let store = db.open_store();
        store.prepare("canvas").await.unwrap();
        Self {
            db,
            emu,
            src,
            store,
        }
    }

    /// Runs `cmd` on `canvas.table`.
    pub async fn run(&self, cmd: Command, table: &str) -> Result<TableReport, String> {
        run1(&self.store, &self.src, cmd, table).await
    }

    /// The model of `canvas.table` as DAP serves it (not as the hooks change it).
    pub async fn model(&self, table: &str) -> TableModel {
        super::model(&self.src.inner, table).await
    }

    /// Asserts that the table holds the emulator's rows at `at_ms`.
    pub async fn assert_rows_at(&self, model: &TableModel, at_ms: i64, what: &str) {
        let want = R::expected(&self.emu, model, at_ms);
        assert_eq!(
            self.db.read_rows(model).await,
            want,
            "{}: {what}",
            model.table
        );
    }

    /// Asserts that the table holds the emulator's rows of now.
    pub async fn assert_current(&self, model: &TableModel) {
        let now = self.emu.now_ms();
        self.assert_rows_at(model, now, "the rows of now").await;
    }

    /// Starts `cmd` with objects that stall after their first chunk, waits until data
    /// is flowing, then kills the run (its connection closes mid-transaction or
    /// mid-load).
    pub async fn kill_midway(&self, cmd: Command, table: &str) {
        self.src.stalling.store(true, Ordering::Relaxed);
        {
            let run = self.run(cmd, table);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => panic!("the run ended before it could be killed: {r:?}"),
                () = self.src.first_chunk.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(30)) => panic!("the load never started streaming"),
            }
            // Dropping the run closes its connection, as a kill would.
        }
        self.src.stalling.store(false, Ordering::Relaxed);
    }

    /// After a killed initdb: no position, and a rerun initialises the complete table.
    pub async fn rerun_initialises(&self, table: &str) {
        assert_eq!(self.db.read_position(table).await, None);
        let r = self.run(Command::Init, table).await.unwrap();
        assert_eq!(r.action, Action::Initialized);
        self.assert_current(&self.model(table).await).await;
    }

    /// Requires a snapshot of the initialised `table` upstream; the next syncdb
    /// reinitialises it with the emulator's rows. The table's model.
    pub async fn reload_upstream(&self, table: &str) -> TableModel {
        self.emu.advance_clock(Duration::from_secs(600));
        self.emu.require_snapshot("canvas", table).unwrap();
        self.emu.advance_clock(Duration::from_secs(600));
        let r = self.run(Command::Sync, table).await.unwrap();
        assert!(
            matches!(&r.action, Action::Reinitialized(why) if why.contains("SnapshotRequired")),
            "{r:?}"
        );
        let m = self.model(table).await;
        self.assert_current(&m).await;
        m
    }

    /// Ten minutes on, a syncdb applies the changes to the table of `model`.
    pub async fn chain_goes_on(&self, model: &TableModel) {
        self.emu.advance_clock(Duration::from_secs(600));
        let r = self.run(Command::Sync, &model.table).await.unwrap();
        assert_eq!(r.action, Action::Synced);
        self.assert_current(model).await;
    }

    /// Bumps the emulator's schema of the initialised `table`; a syncdb an hour on
    /// migrates it in place and loads the rows. The models before and after.
    pub async fn bump_and_sync(&self, table: &str) -> (TableModel, TableModel) {
        let before = self.model(table).await;
        self.emu.bump_schema("canvas", table).unwrap();
        self.emu.advance_clock(Duration::from_secs(3600));
        let r = self.run(Command::Sync, table).await.unwrap();
        assert_eq!(r.action, Action::Synced);
        assert!(r.migrated, "{r:?}");
        let after = self.model(table).await;
        assert!(after.columns.len() > before.columns.len());
        self.assert_current(&after).await;
        (before, after)
    }
}

/// A syncdb killed half-way changes nothing; the rerun applies the window once.
pub async fn killed_syncdb_changes_nothing<R: Replica>(tag: &str) {
    let c = Ctx::<R>::new(tag, big()).await;
    let at = c.emu.now_ms();
    c.run(Command::Init, "users").await.unwrap();
    let m = c.model("users").await;
    let before = c.db.read_position("users").await;
    // A day of changes: every row changes at least once.
    c.emu.advance_clock(Duration::from_secs(86_400 * 30));
    c.kill_midway(Command::Sync, "users").await;
    assert_eq!(
        c.db.read_position("users").await,
        before,
        "position unchanged"
    );
    c.assert_rows_at(&m, at, "rows unchanged").await;
    let r = c.run(Command::Sync, "users").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert!(r.stats.deleted > 0 && r.stats.upserted > 0);
    c.assert_current(&m).await;
}

/// Two initdbs at once: one wins; two syncdbs at once: one applies the window, the
/// other, after waiting for the lock, starts from there.
pub async fn two_runs_take_turns<R: Replica>(tag: &str) {
    let c = Ctx::<R>::new(tag, EmulatorConfig::default()).await;
    let (a, b) = tokio::join!(c.run(Command::Init, "users"), c.run(Command::Init, "users"));
    let (ok, refused): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "one initdb wins");
    assert!(
        refused[0]
            .as_ref()
            .unwrap_err()
            .contains("already initialized")
    );
    c.emu.advance_clock(Duration::from_secs(3600));
    let (a, b) = tokio::join!(c.run(Command::Sync, "users"), c.run(Command::Sync, "users"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.position, b.position);
    assert!(a.stats.lines == 0 || b.stats.lines == 0, "{a:?} {b:?}");
    c.assert_current(&c.model("users").await).await;
}
