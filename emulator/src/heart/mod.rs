//! The sans-IO heart of the emulator: a function from a request and the time to a
//! [`Reply`].
//!
//! [`Heart::handle`] takes an `http::Request` whose body was read in full (or `None`
//! when it could not be: too large, or broken), the listener it arrived on and the
//! current real time, and returns the response, the delay before sending it and how
//! to pace its body. It opens no socket and reads no clock: [`crate::Emulator`] runs
//! it behind hyper, and tests can call it directly with any time they like.
//!
//! One module per endpoint family: `login` (login, tokens, the checks every `/dap`
//! request passes), `catalog` (tables and schemas), `jobs` (queries and job status),
//! `object_urls`, `storage` (object downloads on the storage listener) and `control`
//! (`/_emulator/...`).

mod catalog;
mod control;
mod jobs;
mod login;
mod object_urls;
mod ops;
mod reply;
mod route;
mod storage;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};

pub use ops::{ControlError, SchemaBump};
pub use reply::{Pacing, Payload, Reply};

use crate::config::EmulatorConfig;
use crate::data::DataParams;
use crate::faults::FaultAction;
use crate::objects::{MemberCache, ObjectCache};
use crate::state::{Clock, Ids, State};
use reply::Resp;
use route::Route;

/// The listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The API: login, `/dap/...` and `/_emulator/...`.
    Api,
    /// Object storage (pre-signed URLs).
    Storage,
}

/// Everything the emulator knows, and the decisions on every request. `Debug` shows
/// the configuration (without the client secret) and the addresses, not the keys.
pub struct Heart {
    config: EmulatorConfig,
    params: DataParams,
    api_addr: SocketAddr,
    storage_addr: SocketAddr,
    jwt_key: [u8; 32],
    url_key: [u8; 32],
    clock: Clock,
    ids: Ids,
    state: Mutex<State>,
    objects: ObjectCache,
    members: MemberCache,
}

impl std::fmt::Debug for Heart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heart")
            .field("api_addr", &self.api_addr)
            .field("storage_addr", &self.storage_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Heart {
    /// A heart for `config` whose URLs name the two listener addresses.
    pub fn new(config: EmulatorConfig, api_addr: SocketAddr, storage_addr: SocketAddr) -> Self {
        let ids = Ids::new();
        Self {
            params: config.data_params(),
            api_addr,
            storage_addr,
            jwt_key: ids.key(),
            url_key: ids.key(),
            clock: Clock::new(
                i64::try_from(config.clock_offset.as_millis()).unwrap_or(i64::MAX / 4),
                config.frozen_clock_ms,
            ),
            ids,
            state: Mutex::new(State::new(config.faults.clone())),
            objects: ObjectCache::new(config.object_cache_bytes),
            members: MemberCache::default(),
            config,
        }
    }

    /// Answers one request that arrived on `listener` at real time `wall_ms`
    /// (milliseconds since the Unix epoch; the emulator's own time is derived from it).
    /// A `None` body means the body could not be read in full.
    pub fn handle(
        &self,
        listener: Listener,
        request: Request<Option<Bytes>>,
        wall_ms: i64,
    ) -> Reply {
        let now = self.clock.now(wall_ms);
        match listener {
            Listener::Api => self.api(&request, now),
            Listener::Storage => storage::handle(self, &request, now),
        }
    }

    /// The emulator's time at real time `wall_ms`.
    pub fn now_ms(&self, wall_ms: i64) -> i64 {
        self.clock.now(wall_ms)
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// The parameters of the synthetic data.
    pub fn data_params(&self) -> DataParams {
        self.params
    }

    /// Address of the API listener.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Base URL of the API listener.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Base URL of the storage listener.
    pub fn storage_url(&self) -> String {
        format!("http://{}", self.storage_addr)
    }

    /// Locks the state; a poisoned lock is recovered (handlers never panic while
    /// holding it, but a poisoned emulator should keep answering).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn api(&self, req: &Request<Option<Bytes>>, now: i64) -> Reply {
        let route = route::route(req.method(), req.uri().path());
        if route == Route::Control {
            return Reply::new(control::handle(self, req, now));
        }
        let fault = self.lock().begin_request(route.endpoint());
        let response = match &fault.action {
            Some(FaultAction::Status {
                status,
                body,
                retry_after,
            }) => self.fault_response(*status, *body, *retry_after, false),
            _ => self.dispatch(route, req, now),
        };
        Reply {
            response,
            delay: Duration::from_millis(fault.delay_ms),
            pacing: Pacing::of(fault.action.as_ref()),
        }
    }

    fn dispatch(&self, route: Route, req: &Request<Option<Bytes>>, now: i64) -> Resp {
        match route {
            Route::Login => login::login(self, req, now),
            Route::Method(_) => {
                let mut r = self.error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("method {} not allowed here", req.method()),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                r
            }
            Route::NotFound | Route::Control => self.error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no such resource: {}", req.uri().path()),
            ),
            dap => {
                if let Some(refused) = login::gate(self, req, dap.endpoint(), now) {
                    return refused;
                }
                let body = req.body().as_ref();
                match dap {
                    Route::Tables(ns) => catalog::list_tables(self, &ns),
                    Route::Schema(ns, t) => catalog::schema(self, &ns, &t, now),
                    Route::Query(ns, t) => {
                        let scope = route::query_param(req.uri().query(), "scope");
                        jobs::start_query(self, (&ns, &t), scope.as_deref(), body, now)
                    }
                    Route::Job(id) => jobs::job_status(self, &id, now),
                    _ => object_urls::object_urls(self, body, now),
                }
            }
        }
    }
}
