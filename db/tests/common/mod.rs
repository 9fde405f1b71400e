//! Shared pieces of the database tests: a PostgreSQL database of their own on a real
//! server, the in-process emulator, and comparisons against the emulator's records.
#![allow(dead_code, unreachable_pub)]

pub mod mysql;
pub mod recovery;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dap_db::conn::ConnectionString;
use dap_db::model::{ColumnType, TableModel};
use dap_db::pg::PgStore;
use dap_db::source::HyperSource;
use dap_emulator::{EmulatedRange, Emulator, EmulatorConfig, Record};
use dap_proto::{Config, PollPolicy, RetryPolicy};

/// The server tests use: `DAP_TEST_DATABASE_URL`, else the local default.
pub fn server_url() -> String {
    std::env::var("DAP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The name of a test's own database: `dap_test_<pid>_<n>_<tag>`.
pub fn test_db_name(tag: &str) -> String {
    format!(
        "dap_test_{}_{}_{tag}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `work` to completion on a runtime of its own on a thread of its own (a test
/// database's `Drop` runs outside any runtime's async context).
pub fn on_own_runtime(work: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work);
    })
    .join();
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("//").map_or(0, |i| i + 2);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    /// Creates `dap_test_<pid>_<n>_<tag>`; fails with instructions if no server answers.
    pub async fn new(tag: &str) -> Self {
        let admin = server_url();
        let name = test_db_name(tag);
        let client = admin_client(&admin).await;
        for stmt in [
            format!("DROP DATABASE IF EXISTS \"{name}\""),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            client
                .batch_execute(&stmt)
                .await
                .expect("create the test database");
        }
        Self {
            url: with_database(&admin, &name),
            name,
            admin,
        }
    }

    pub fn store(&self) -> PgStore {
        PgStore::new(&ConnectionString::parse(&self.url).expect("url")).expect("postgres")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        self.store()
            .connect()
            .await
            .expect("connect to the test database")
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let conn = ConnectionString::parse(url).expect("DAP_TEST_DATABASE_URL is a connection string");
    let store = PgStore::new(&conn).expect("DAP_TEST_DATABASE_URL names a PostgreSQL server");
    match store.connect().await {
        Ok(c) => c,
        Err(e) => panic!(
            "these tests need a PostgreSQL server and none answered at {conn} ({e}). Start one \
             (`.ci/run` installs and starts it; or `pg_ctlcluster 15 main start`), or point \
             DAP_TEST_DATABASE_URL at a server where the user may create databases"
        ),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        on_own_runtime(async move {
            let c = admin_client(&admin).await;
            let _ = c
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        });
    }
}

/// An emulator whose clock only moves when told.
pub fn emulator() -> Emulator {
    emulator_with(EmulatorConfig::default())
}

pub fn emulator_with(mut cfg: EmulatorConfig) -> Emulator {
    // Frozen at a whole second of the real time, so tokens are valid for the client.
    let now = jiff::Timestamp::now().as_second() * 1000;
    cfg.frozen_clock_ms = Some(now);
    cfg.history_origin_ms = now - 3 * 86_400_000;
    Emulator::start(cfg).expect("emulator starts")
}

pub fn source(emu: &Emulator) -> HyperSource {
    let config = Config::builder(emu.client_id(), emu.client_secret())
        .base_url(emu.base_url())
        .poll(PollPolicy::new(
            Duration::from_millis(2),
            Duration::from_millis(10),
        ))
        .retry(RetryPolicy::new(
            4,
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .build()
        .expect("config");
    HyperSource::new(dap_hyper::Client::new(config).expect("client"))
}

/// The model of an emulated table, from its schema endpoint.
pub async fn model(src: &HyperSource, table: &str) -> TableModel {
    use dap_db::source::Source;
    let schema = src.schema("canvas", table).await.expect("schema");
    TableModel::from_schema("canvas", table, schema.raw(), schema.version).unwrap()
}

/// A cell normalised for comparison: timestamps as instants, numbers as f64, JSON as
/// values.
pub fn normalise(ty: &ColumnType, text: Option<&str>) -> Option<String> {
    normalise_as(ty, text, false)
}

/// A cell normalised for comparison; `mysql`: as MySQL keeps it (timestamps in whole
/// seconds, arrays as JSON values).
pub fn normalise_as(ty: &ColumnType, text: Option<&str>, mysql: bool) -> Option<String> {
    let text = text?;
    Some(match ty {
        ColumnType::Timestamp => {
            let t = text.trim_end_matches('Z').replace(' ', "T");
            let civil: jiff::civil::DateTime =
                t.parse().unwrap_or_else(|_| panic!("timestamp {text}"));
            if mysql {
                let whole = civil.with().subsec_nanosecond(0).build();
                whole.expect("whole seconds").to_string()
            } else {
                civil.to_string()
            }
        }
        ColumnType::Double | ColumnType::Real => text.parse::<f64>().unwrap().to_string(),
        ColumnType::Array(_) if !mysql => text.to_owned(),
        ColumnType::Json | ColumnType::Array(_) => serde_json::from_str::<serde_json::Value>(text)
            .unwrap()
            .to_string(),
        ColumnType::Boolean => match text {
            "t" | "true" | "1" => "true".to_owned(),
            _ => "false".to_owned(),
        },
        _ => text.to_owned(),
    })
}

/// The expected rows of `table` at `at_ms`, normalised, ordered by key.
pub fn expected_rows(emu: &Emulator, model: &TableModel, at_ms: i64) -> Vec<Vec<Option<String>>> {
    expected_rows_as(emu, "canvas", model, at_ms, normalise)
}

/// The expected rows of `namespace.table` at `at_ms`, each cell normalised by
/// `normalise`, ordered by key.
pub fn expected_rows_as(
    emu: &Emulator,
    namespace: &str,
    model: &TableModel,
    at_ms: i64,
    normalise: fn(&ColumnType, Option<&str>) -> Option<String>,
) -> Vec<Vec<Option<String>>> {
    let records: Vec<Record> = emu
        .expected_records(namespace, &model.table, EmulatedRange::Snapshot { at_ms })
        .expect("known table");
    records
        .iter()
        .map(|r| {
            model
                .columns
                .iter()
                .map(|c| normalise(&c.ty, r.column(&c.label()).flatten().as_deref()))
                .collect()
        })
        .collect()
}

/// The rows of a PostgreSQL table, normalised, ordered by key.
pub async fn pg_rows(db: &TestDb, model: &TableModel) -> Vec<Vec<Option<String>>> {
    let client = db.client().await;
    let cols: Vec<String> = model
        .columns
        .iter()
        .map(|c| format!("t.\"{}\"::text", c.name))
        .collect();
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM \"{}\".\"{}\" AS t ORDER BY t.\"{}\"",
                cols.join(", "),
                model.namespace,
                model.table,
                model.primary_key
            ),
            &[],
        )
        .await
        .expect("read the table");
    rows.iter()
        .map(|r| {
            model
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| normalise(&c.ty, r.get::<_, Option<String>>(i).as_deref()))
                .collect()
        })
        .collect()
}

/// The stored position of a table.
pub async fn pg_position(db: &TestDb, table: &str) -> Option<String> {
    let client = db.client().await;
    client
        .query_opt(
            "SELECT \"timestamp\"::text FROM instructure_dap.table_sync WHERE source_table = $1",
            &[&table],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

impl recovery::Replica for TestDb {
    type Store = PgStore;

    async fn create(tag: &str) -> Self {
        Self::new(tag).await
    }

    fn open_store(&self) -> PgStore {
        self.store()
    }

    async fn read_rows(&self, model: &TableModel) -> recovery::Rows {
        pg_rows(self, model).await
    }

    async fn read_position(&self, table: &str) -> Option<String> {
        pg_position(self, table).await
    }

    fn expected(emu: &Emulator, model: &TableModel, at_ms: i64) -> recovery::Rows {
        expected_rows(emu, model, at_ms)
    }
}

/// What the methods of a [`dap_db::source::Source`] return.
type SourceFuture<'a, T> =
    futures_util::future::BoxFuture<'a, Result<T, dap_db::source::SourceError>>;

/// A [`Source`] over the emulator with hooks: a schema that replaces DAP's, snapshots
/// made to look older, and objects that stall after their first chunk until released.
pub struct Tweaked {
    pub inner: HyperSource,
    pub schema: std::sync::Mutex<Option<(String, u64)>>,
    pub snapshot_at: std::sync::Mutex<Option<jiff::Timestamp>>,
    pub stall: std::sync::Arc<tokio::sync::Semaphore>,
    pub stalling: std::sync::atomic::AtomicBool,
    pub first_chunk: std::sync::Arc<tokio::sync::Notify>,
}

impl Tweaked {
    pub fn new(inner: HyperSource) -> Self {
        Self {
            inner,
            schema: std::sync::Mutex::new(None),
            snapshot_at: std::sync::Mutex::new(None),
            stall: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
            stalling: std::sync::atomic::AtomicBool::new(false),
            first_chunk: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl dap_db::source::Source for Tweaked {
    fn tables<'a>(&'a self, namespace: &'a str) -> SourceFuture<'a, Vec<String>> {
        self.inner.tables(namespace)
    }

    fn schema<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
    ) -> SourceFuture<'a, dap_proto::TableSchema> {
        Box::pin(async move {
            let replaced = self.schema.lock().unwrap().clone();
            match replaced {
                Some((text, version)) => Ok(dap_proto::TableSchema {
                    schema: serde_json::value::RawValue::from_string(text).unwrap(),
                    version,
                }),
                None => self.inner.schema(namespace, table).await,
            }
        })
    }

    fn query<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
        query: dap_proto::Query,
    ) -> SourceFuture<'a, dap_proto::QueryResult> {
        Box::pin(async move {
            let mut r = self.inner.query(namespace, table, query).await?;
            if let Some((_, version)) = &*self.schema.lock().unwrap() {
                r.schema_version = *version;
            }
            if let (Some(at), dap_proto::DataRange::Snapshot { .. }) =
                (*self.snapshot_at.lock().unwrap(), r.range)
            {
                r.range = dap_proto::DataRange::Snapshot { at };
            }
            Ok(r)
        })
    }

    fn object(&self, result: &dap_proto::QueryResult, index: usize) -> dap_db::source::Chunks {
        use futures_util::StreamExt;
        let inner = self.inner.object(result, index);
        if !self.stalling.load(Ordering::Relaxed) {
            return inner;
        }
        let (stall, first) = (self.stall.clone(), self.first_chunk.clone());
        Box::pin(inner.enumerate().then(move |(i, chunk)| {
            let (stall, first) = (stall.clone(), first.clone());
            async move {
                if i == 1 {
                    first.notify_one();
                    let _ = stall.acquire().await.map(|p| p.forget());
                }
                chunk
            }
        }))
    }
}

/// Adds a property to the `value` object of a schema text, and bumps nothing else.
pub fn with_value_property(schema: &str, name: &str, property: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(schema).unwrap();
    v["properties"]["value"]["properties"][name] = property;
    v.to_string()
}

/// Whether a table exists.
pub async fn table_exists(db: &TestDb, table: &str) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("canvas.{table}")],
        )
        .await
        .unwrap()
        .get(0)
}

/// A [`Source`] that serves one hand-written schema and, for any query, the given
/// objects (decompressed TSV) with the given range: for data the emulator does not make.
pub struct StaticSource {
    pub schema: String,
    pub version: u64,
    pub objects: std::sync::Mutex<Vec<Vec<u8>>>,
    pub range: std::sync::Mutex<dap_proto::DataRange>,
}

impl StaticSource {
    pub fn new(schema: &str, version: u64) -> Self {
        Self {
            schema: schema.to_owned(),
            version,
            objects: std::sync::Mutex::new(Vec::new()),
            range: std::sync::Mutex::new(dap_proto::DataRange::Snapshot {
                at: "2024-01-01T00:00:00Z".parse().unwrap(),
            }),
        }
    }

    /// The next query answers with these objects covering `range`.
    pub fn serve(&self, objects: &[&str], range: dap_proto::DataRange) {
        *self.objects.lock().unwrap() = objects.iter().map(|o| o.as_bytes().to_vec()).collect();
        *self.range.lock().unwrap() = range;
    }
}

impl dap_db::source::Source for StaticSource {
    fn tables<'a>(&'a self, _namespace: &'a str) -> SourceFuture<'a, Vec<String>> {
        Box::pin(async { Ok(vec!["things".to_owned()]) })
    }

    fn schema<'a>(
        &'a self,
        _namespace: &'a str,
        _table: &'a str,
    ) -> SourceFuture<'a, dap_proto::TableSchema> {
        Box::pin(async move {
            Ok(dap_proto::TableSchema {
                schema: serde_json::value::RawValue::from_string(self.schema.clone()).unwrap(),
                version: self.version,
            })
        })
    }

    fn query<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
        query: dap_proto::Query,
    ) -> SourceFuture<'a, dap_proto::QueryResult> {
        Box::pin(async move {
            let n = self.objects.lock().unwrap().len();
            Ok(dap_proto::QueryResult {
                namespace: namespace.to_owned(),
                table: table.to_owned(),
                job: dap_proto::JobId::new("static-job"),
                format: query.format(),
                expires_at: None,
                schema_version: self.version,
                range: *self.range.lock().unwrap(),
                objects: (0..n)
                    .map(|i| dap_proto::ObjectUrl {
                        id: dap_proto::ObjectId::new(format!("o{i}")),
                        url: dap_proto::PresignedUrl::new(format!("http://127.0.0.1:1/o{i}")),
                    })
                    .collect(),
                pending: Vec::new(),
                urls_issued_at: std::time::Instant::now(),
            })
        })
    }

    fn object(&self, _result: &dap_proto::QueryResult, index: usize) -> dap_db::source::Chunks {
        let data = self
            .objects
            .lock()
            .unwrap()
            .get(index)
            .cloned()
            .unwrap_or_default();
        // Split into small chunks, so lines cross chunk boundaries.
        let chunks: Vec<Result<bytes::Bytes, dap_db::source::SourceError>> = data
            .chunks(7)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures_util::stream::iter(chunks))
    }
}

/// Runs `cmd` on one table of `canvas`; the report, or the error as text.
pub async fn run1<S: dap_db::store::Store>(
    store: &S,
    src: &dyn dap_db::source::Source,
    cmd: dap_db::plan::Command,
    table: &str,
) -> Result<dap_db::replicate::TableReport, String> {
    use dap_db::replicate::{self, Options, TableOutcome};
    match replicate::run(
        store,
        src,
        cmd,
        "canvas",
        &[table.to_owned()],
        Options::default(),
    )
    .await
    .pop()
    {
        Some(TableOutcome::Done(r)) => Ok(r),
        Some(TableOutcome::Failed(_, e)) => Err(e.to_string()),
        other => Err(format!("unexpected outcome {other:?}")),
    }
}

/// A second initdb of `canvas.table` is refused with the official message.
pub async fn assert_second_initdb_refused<S: dap_db::store::Store>(
    store: &S,
    src: &dyn dap_db::source::Source,
    table: &str,
) {
    let again = run1(store, src, dap_db::plan::Command::Init, table).await;
    let e = again.expect_err("a second initdb");
    assert!(e.contains("already initialized"), "{e}");
}

pub fn workspace_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// The official client's `dap`, installed if missing (into `target/official-venv`,
/// shared with `scripts/official-common.sh`; `DAP_CHECK_VENV` overrides the place).
pub fn official_dap() -> PathBuf {
    let venv = std::env::var_os("DAP_CHECK_VENV")
        .map_or_else(|| workspace_target().join("official-venv"), PathBuf::from);
    let dap = venv.join("bin/dap");
    let ready = venv.join("lib").exists()
        && std::process::Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import asyncpg, aiomysql, pymysql, importlib.metadata as m; \
                 assert m.version('instructure-dap-client') == '2.3.1'",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if dap.exists() && ready {
        return dap;
    }
    std::fs::create_dir_all(workspace_target()).expect("target directory");
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "instructure-dap-client[postgresql,mysql]==2.3.1",
            ])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok && dap.exists(),
        "this test needs the official client: `python3 -m venv {0} && {0}/bin/pip install \
         'instructure-dap-client[postgresql,mysql]==2.3.1'` failed (python3 and PyPI must be \
         reachable), or set DAP_CHECK_VENV to a virtualenv that has it",
        venv.display()
    );
    dap
}
