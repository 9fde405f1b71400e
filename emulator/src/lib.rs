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
//! # Listeners and URLs
//! * API at [`Emulator::base_url`]: `POST /ids/auth/login`,
//!   `GET /dap/query/{ns}/table`, `GET /dap/query/{ns}/table/{t}/schema`,
//!   `POST /dap/query/{ns}/table/{t}/data`, `GET /dap/job/{id}`, `POST /dap/object/url`.
//! * Control (no authentication) under the same base: `GET /_emulator/stats`,
//!   `POST /_emulator/stats/reset`, `GET|PUT /_emulator/faults` (JSON [`Faults`]),
//!   `POST /_emulator/faults/rules` (append one JSON [`FaultRule`]),
//!   `POST /_emulator/advance` (`{"seconds": N}` or `{"millis": N}` or `?seconds=N`),
//!   `POST /_emulator/revoke`, `GET /_emulator/now`, `GET /_emulator/info`,
//!   `GET /_emulator/expected?namespace=&table=&at=` (or `&since=&until=`, JSON Lines).
//! * Storage on a second listener ([`Emulator::storage_url`], a different port, so
//!   "another host" is observable): objects at
//!   `/output/rootAccountId=emulator/queryId=<job>/<file>?X-Amz-...&X-Amz-Signature=..`.
//!
//! # Time
//! The emulator's "now" is the wall clock plus an offset that
//! [`Emulator::advance_clock`] increases; token expiry, job and URL lifetimes, rate
//! limit windows and the data change history all follow it.
//!
//! # Data
//! See [`data`] for the model; [`Emulator::expected_records`] (or the pure
//! [`data::expected_records`]) tells exactly what a query returns.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
pub mod data;
pub mod encode;
mod jwt;
mod schema;
mod server;
mod state;
mod storage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{
    DEFAULT_HISTORY_ORIGIN_MS, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, EmulatorConfig, Endpoint,
    FaultAction, FaultBody, FaultRule, Faults,
};
pub use data::{QueryRange, Record};
pub use state::{EndpointCounts, Stats};

use state::Shared;

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
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts an emulator on its own tokio runtime (2 worker threads) in a background
    /// thread and returns once both listeners are bound. Usable from blocking code and
    /// from inside an async runtime alike.
    pub fn start(config: EmulatorConfig) -> Result<Self, StartError> {
        let (tx, rx) = std::sync::mpsc::channel::<Result<Arc<Shared>, StartError>>();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("dap-emulator".to_owned())
            .spawn(move || run(config, tx, stop_rx))
            .map_err(|e| StartError::Thread(e.to_string()))?;
        match rx.recv() {
            Ok(Ok(shared)) => Ok(Self {
                shared,
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

    /// Base URL of the API, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.api_addr)
    }

    /// Address of the API listener.
    pub fn addr(&self) -> SocketAddr {
        self.shared.api_addr
    }

    /// Base URL of the storage listener that pre-signed URLs point at.
    pub fn storage_url(&self) -> String {
        format!("http://{}", self.shared.storage_addr)
    }

    /// The accepted client id.
    pub fn client_id(&self) -> &str {
        &self.shared.config.client_id
    }

    /// The accepted client secret.
    pub fn client_secret(&self) -> &str {
        &self.shared.config.client_secret
    }

    /// The configuration the emulator was started with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Resets the statistics to zero.
    pub fn reset_stats(&self) {
        self.shared.lock().stats = Stats::default();
    }

    /// The current faults and switches (rules with their remaining counts).
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// Replaces the faults and switches.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Appends one fault rule to the current faults.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.rules.push(rule);
    }

    /// Moves the emulator clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.shared
            .advance(i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4));
    }

    /// The emulator's current time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.shared.now_ms()
    }

    /// The emulator's current time.
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or_default()
    }

    /// Revokes every token issued so far; returns how many were live.
    pub fn revoke_tokens(&self) -> usize {
        revoke(&self.shared)
    }

    /// The parameters of the synthetic data of this instance.
    pub fn data_params(&self) -> data::DataParams {
        self.shared.params
    }

    /// The exact records a query on `namespace.table` over `range` returns (real
    /// content mode, i.e. without `object_size_bytes`); `None` for an unknown table.
    pub fn expected_records(
        &self,
        namespace: &str,
        table: &str,
        range: QueryRange,
    ) -> Option<Vec<Record>> {
        data::expected_records(&self.shared.params, namespace, table, range)
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

pub(crate) fn revoke(shared: &Shared) -> usize {
    let mut st = shared.lock();
    let live = st
        .tokens
        .values()
        .filter(|s| **s >= st.revoked_below)
        .count();
    st.revoked_below = st.next_token_serial;
    live
}

fn run(
    config: EmulatorConfig,
    tx: std::sync::mpsc::Sender<Result<Arc<Shared>, StartError>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dap-emulator-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(StartError::Runtime(e)));
            return;
        }
    };
    rt.block_on(async move {
        let bind = |port: u16| async move {
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|source| StartError::Bind { port, source })
        };
        let api = match bind(config.port).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let storage = match bind(config.storage_port).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let addrs = api
            .local_addr()
            .and_then(|a| Ok((a, storage.local_addr()?)));
        let (api_addr, storage_addr) = match addrs {
            Ok(a) => a,
            Err(e) => {
                let _ = tx.send(Err(StartError::Bind { port: 0, source: e }));
                return;
            }
        };
        let shared = Arc::new(Shared::new(config, api_addr, storage_addr));
        if tx.send(Ok(shared.clone())).is_err() {
            return;
        }
        let a = tokio::spawn(serve(api, shared.clone(), false, stop.clone()));
        let s = tokio::spawn(serve(storage, shared, true, stop));
        let _ = a.await;
        let _ = s.await;
    });
    rt.shutdown_timeout(Duration::from_millis(100));
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    storage: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    if storage {
                        server::handle_storage(shared, req).await
                    } else {
                        server::handle_api(shared, req).await
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, svc)
                .await;
        });
    }
}
