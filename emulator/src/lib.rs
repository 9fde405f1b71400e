//! A local emulator of Instructure's Data Access Platform (DAP, Canvas Data 2) API.
//!
//! It serves the login endpoint, the `/dap` query API and pre-signed object storage
//! on 127.0.0.1, with deterministic synthetic data, a fast-forwardable clock,
//! statistics and fault injection. Integration tests, demos and benchmarks of the
//! toolkit run against it; the official Python client accepts it too.
//!
//! ```no_run
//! use dap_emulator::{Emulator, EmulatorConfig};
//!
//! let emu = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
//! println!("DAP_API_URL={}", emu.base_url());
//! // ... drive a client against it ...
//! emu.advance_clock(std::time::Duration::from_secs(3600));
//! assert_eq!(emu.stats().storage_with_credentials, 0);
//! // dropping `emu` shuts the server down
//! ```
//!
//! # Shape
//! The decisions live in a sans-IO [`heart::Heart`]: a function from a request and
//! the time to a response (whose body may be a slice of a stored object) plus how to
//! deliver it. [`Emulator`] runs it behind hyper on two listeners; tests can also call
//! it directly.
//!
//! # Listeners and URLs
//! * API at [`Emulator::base_url`]: `POST /ids/auth/login`,
//!   `GET /dap/query/{ns}/table`, `GET /dap/query/{ns}/table/{t}/schema`,
//!   `POST /dap/query/{ns}/table/{t}/data`, `GET /dap/job/{id}`, `POST /dap/object/url`.
//! * Control (no authentication) under the same base: `GET /_emulator/stats`,
//!   `POST /_emulator/stats/reset`, `GET|PUT /_emulator/faults` (JSON [`Faults`]),
//!   `POST /_emulator/faults/rules` (append one JSON [`FaultRule`]),
//!   `POST /_emulator/advance` (`{"seconds": N}` or `{"millis": N}` or `?seconds=N`),
//!   `POST /_emulator/revoke`, `GET /_emulator/now`, `GET /_emulator/info`,
//!   `GET /_emulator/expected?namespace=&table=&at=` (or `&since=&until=`, JSON Lines),
//!   `GET /_emulator/schema?namespace=&table=`,
//!   `POST /_emulator/schema/bump` (`{"namespace", "table", "at"?}`),
//!   `POST /_emulator/snapshot-required` (`{"namespace", "table"}`).
//! * Storage on a second listener ([`Emulator::storage_url`], a different port, so
//!   "another host" is observable): objects at
//!   `/output/rootAccountId=emulator/queryId=<job>/<file>?X-Amz-...&X-Amz-Signature=..`.
//!   A URL expires at `X-Amz-Date + X-Amz-Expires` (seconds), as on S3.
//!
//! # Jobs are reused
//! Like DAP, posting a query identical to an earlier one (same table, format, mode,
//! `since`, `until`) returns the earlier job for as long as it lives (24 h by
//! default): faults and switches set after the first post never reach that job, and a
//! snapshot keeps its `at`. Turn this off with [`EmulatorConfig::reuse_jobs`].
//!
//! # Time
//! The emulator's "now" is the wall clock plus an offset that
//! [`Emulator::advance_clock`] increases; token expiry, job and URL lifetimes, rate
//! limit windows, schema bumps and the data change history all follow it.
//!
//! # Data
//! See [`data`] for the model and the `new_quizzes` tables made for database
//! replication; [`Emulator::expected_records`] tells exactly what a query returns.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
pub mod data;
pub mod encode;
mod faults;
pub mod heart;
mod job;
mod jwt;
pub mod measure;
mod member;
mod objects;
mod pump;
mod schema;
mod signing;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{
    DEFAULT_HISTORY_ORIGIN_MS, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, EmulatorConfig, Endpoint,
};
pub use data::{EmulatedRange, Record};
pub use faults::{FaultAction, FaultBody, FaultRule, Faults};
pub use heart::{ControlError, Heart, SchemaBump};
pub use state::{EndpointCounts, Stats};

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The tokio runtime could not be built.
    #[error("cannot build the tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A listener could not be bound.
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The server thread could not be spawned or died during start.
    #[error("emulator thread failed to start: {0}")]
    Thread(String),
}

/// A running emulator. Dropping it shuts the server down and joins its thread.
#[derive(Debug)]
pub struct Emulator {
    heart: Arc<Heart>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts an emulator on its own tokio runtime (2 worker threads) in a background
    /// thread and returns once both listeners are bound. Usable from blocking code and
    /// from inside an async runtime alike.
    pub fn start(config: EmulatorConfig) -> Result<Self, StartError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("dap-emulator".to_owned())
            .spawn(move || pump::run(config, tx, stop_rx))
            .map_err(|e| StartError::Thread(e.to_string()))?;
        match rx.recv() {
            Ok(Ok(heart)) => Ok(Self {
                heart,
                shutdown: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(StartError::Thread("server thread exited".to_owned()))
            }
        }
    }

    /// The sans-IO heart the listeners run.
    pub fn heart(&self) -> &Heart {
        &self.heart
    }

    /// Base URL of the API, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.heart.api_url()
    }

    /// Address of the API listener.
    pub fn addr(&self) -> SocketAddr {
        self.heart.api_addr()
    }

    /// Base URL of the storage listener that pre-signed URLs point at.
    pub fn storage_url(&self) -> String {
        self.heart.storage_url()
    }

    /// The accepted client id.
    pub fn client_id(&self) -> &str {
        &self.heart.config().client_id
    }

    /// The accepted client secret.
    pub fn client_secret(&self) -> &str {
        &self.heart.config().client_secret
    }

    /// The configuration the emulator was started with.
    pub fn config(&self) -> &EmulatorConfig {
        self.heart.config()
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        self.heart.stats()
    }

    /// Resets the statistics to zero.
    pub fn reset_stats(&self) {
        self.heart.reset_stats();
    }

    /// The current faults and switches (rules with their remaining counts).
    pub fn faults(&self) -> Faults {
        self.heart.faults()
    }

    /// Replaces the faults and switches.
    pub fn set_faults(&self, faults: Faults) {
        self.heart.set_faults(faults);
    }

    /// Appends one fault rule to the current faults.
    pub fn add_fault(&self, rule: FaultRule) {
        self.heart.add_fault(rule);
    }

    /// Moves the emulator clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.heart
            .advance(i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4));
    }

    /// The emulator's current time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.heart.now_ms(pump::wall_ms())
    }

    /// The emulator's current time.
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or_default()
    }

    /// Revokes every token issued so far; returns how many were live.
    pub fn revoke_tokens(&self) -> usize {
        self.heart.revoke_tokens()
    }

    /// The parameters of the synthetic data of this instance.
    pub fn data_params(&self) -> data::DataParams {
        self.heart.data_params()
    }

    /// The schema version of `namespace.table` in effect now.
    pub fn schema_version(&self, namespace: &str, table: &str) -> Result<u32, ControlError> {
        self.heart.schema_version(namespace, table, self.now_ms())
    }

    /// Schedules the next schema version of `namespace.table` for the next whole second
    /// of emulator time: the schema gains a nullable column and its first enum column a
    /// value ([`data::EVOLUTIONS`]), both in `/schema` and in the data of records
    /// written from then on. Advance the clock by a second (or wait) to see it. A table
    /// takes at most three bumps.
    pub fn bump_schema(&self, namespace: &str, table: &str) -> Result<SchemaBump, ControlError> {
        self.heart
            .bump_schema(namespace, table, None, self.now_ms())
    }

    /// Like [`Emulator::bump_schema`], effective at `at` (later than now and than the
    /// table's previous bump).
    pub fn bump_schema_at(
        &self,
        namespace: &str,
        table: &str,
        at: jiff::Timestamp,
    ) -> Result<SchemaBump, ControlError> {
        let at = Some(at.as_millisecond());
        self.heart.bump_schema(namespace, table, at, self.now_ms())
    }

    /// Marks `namespace.table` reloaded now (rounded down to the second): incremental
    /// queries whose `since` is earlier get `SnapshotRequired`, and earlier identical
    /// queries stop reusing their jobs. Returns the reload time (ms since the epoch).
    pub fn require_snapshot(&self, namespace: &str, table: &str) -> Result<i64, ControlError> {
        self.heart.require_snapshot(namespace, table, self.now_ms())
    }

    /// The exact records a query on `namespace.table` over `range` returns (real
    /// content mode, i.e. without `object_size_bytes`), under the table's schema bumps;
    /// `None` for an unknown table.
    pub fn expected_records(
        &self,
        namespace: &str,
        table: &str,
        range: EmulatedRange,
    ) -> Option<Vec<Record>> {
        self.heart.expected_records(namespace, table, range)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
