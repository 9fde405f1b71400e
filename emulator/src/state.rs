//! Shared mutable state: clock offset, tokens, jobs, statistics, faults.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{EmulatorConfig, Endpoint, FaultAction, Faults};
use crate::data::{DataParams, QueryRange, TableDef};
use crate::encode::{Format, Mode};

/// Request counts per endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointCounts {
    /// `POST /ids/auth/login`.
    pub login: u64,
    /// List tables.
    pub tables: u64,
    /// Table schema.
    pub schema: u64,
    /// Start query.
    pub query: u64,
    /// Job status.
    pub job: u64,
    /// Object URLs.
    pub object_urls: u64,
    /// Storage (object downloads).
    pub storage: u64,
    /// Anything else (unknown paths).
    pub other: u64,
}

impl EndpointCounts {
    /// The count of one endpoint.
    pub fn get(&self, e: Endpoint) -> u64 {
        match e {
            Endpoint::Login => self.login,
            Endpoint::Tables => self.tables,
            Endpoint::Schema => self.schema,
            Endpoint::Query => self.query,
            Endpoint::Job => self.job,
            Endpoint::ObjectUrls => self.object_urls,
            Endpoint::Storage => self.storage,
        }
    }

    fn bump(&mut self, e: Option<Endpoint>) {
        let c = match e {
            Some(Endpoint::Login) => &mut self.login,
            Some(Endpoint::Tables) => &mut self.tables,
            Some(Endpoint::Schema) => &mut self.schema,
            Some(Endpoint::Query) => &mut self.query,
            Some(Endpoint::Job) => &mut self.job,
            Some(Endpoint::ObjectUrls) => &mut self.object_urls,
            Some(Endpoint::Storage) => &mut self.storage,
            None => &mut self.other,
        };
        *c += 1;
    }
}

/// What the emulator has seen since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Requests per endpoint (counted before faults, auth and validation).
    pub requests: EndpointCounts,
    /// Successful logins.
    pub logins: u64,
    /// Rejected logins.
    pub login_failures: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Requests on the storage listener.
    pub storage_requests: u64,
    /// Storage requests that carried `Authorization` or `x-instauth`.
    pub storage_with_credentials: u64,
    /// Storage requests that carried `Authorization`.
    pub storage_with_authorization: u64,
    /// Storage requests that carried `x-instauth`.
    pub storage_with_instauth: u64,
    /// Jobs created (deduplicated queries do not count).
    pub jobs_created: u64,
    /// `/dap` requests rejected with 401.
    pub unauthorized: u64,
    /// `/dap` requests rejected with 403 for a missing User-Agent.
    pub missing_user_agent: u64,
    /// Requests answered 429 by the rate limiter.
    pub rate_limited: u64,
    /// Requests answered by a fault rule (status faults and storage faults).
    pub faults_injected: u64,
}

/// Status of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobStatus {
    Waiting,
    Running,
    Complete,
    Failed,
}

impl JobStatus {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }
}

/// A query job.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) table: &'static TableDef,
    pub(crate) format: Format,
    pub(crate) mode: Mode,
    pub(crate) range: QueryRange,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: i64,
    /// Error uuid when the job fails.
    pub(crate) failed: Option<String>,
    /// Object file names (`part-00000-<uuid>-c000.json.gz`).
    pub(crate) files: Vec<String>,
    /// Real-content objects (gzip), built on first use.
    pub(crate) content: OnceLock<Vec<Bytes>>,
}

impl Job {
    pub(crate) fn status(&self, cfg: &EmulatorConfig, now_ms: i64) -> JobStatus {
        let waiting = cfg.job_waiting.as_millis() as i64;
        let running = cfg.job_running.as_millis() as i64;
        let age = now_ms.saturating_sub(self.created_ms);
        if age < waiting {
            JobStatus::Waiting
        } else if age < waiting.saturating_add(running) {
            JobStatus::Running
        } else if self.failed.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Complete
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    /// Issued token ids and their serial numbers.
    pub(crate) tokens: HashMap<String, u64>,
    pub(crate) next_token_serial: u64,
    /// Tokens with a serial below this are revoked.
    pub(crate) revoked_below: u64,
    pub(crate) jobs: HashMap<String, Arc<Job>>,
    /// Query fingerprint to job id.
    pub(crate) dedup: HashMap<String, String>,
    /// Per endpoint: (minute window, count).
    pub(crate) rate: HashMap<Endpoint, (i64, u32)>,
}

/// Outcome of evaluating the fault rules for one request.
#[derive(Debug, Default)]
pub(crate) struct FaultOutcome {
    pub(crate) delay_ms: u64,
    pub(crate) action: Option<FaultAction>,
}

/// Everything the request handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) params: DataParams,
    pub(crate) api_addr: SocketAddr,
    pub(crate) storage_addr: SocketAddr,
    pub(crate) jwt_key: [u8; 32],
    pub(crate) url_key: [u8; 32],
    offset_ms: AtomicI64,
    id_counter: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<State>,
    pub(crate) members: Mutex<HashMap<crate::storage::MemberKey, Arc<crate::storage::Member>>>,
}

impl Shared {
    pub(crate) fn new(
        config: EmulatorConfig,
        api_addr: SocketAddr,
        storage_addr: SocketAddr,
    ) -> Self {
        let hasher = std::collections::hash_map::RandomState::new();
        let mut jwt_key = [0u8; 32];
        let mut url_key = [0u8; 32];
        for (i, chunk) in jwt_key
            .chunks_mut(8)
            .chain(url_key.chunks_mut(8))
            .enumerate()
        {
            chunk.copy_from_slice(&hasher.hash_one(("key", i)).to_le_bytes());
        }
        let state = State {
            faults: config.faults.clone(),
            ..State::default()
        };
        Self {
            params: config.data_params(),
            offset_ms: AtomicI64::new(config.clock_offset.as_millis() as i64),
            config,
            api_addr,
            storage_addr,
            jwt_key,
            url_key,
            id_counter: AtomicU64::new(0),
            hasher,
            state: Mutex::new(state),
            members: Mutex::new(HashMap::new()),
        }
    }

    /// Locks the state; a poisoned lock is recovered (handlers never panic while
    /// holding it, but a poisoned emulator should keep answering).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Emulator time in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        let real = self.config.frozen_clock_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        });
        real.saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .clamp(0, 253_402_300_799_000)
    }

    pub(crate) fn advance(&self, ms: i64) {
        let ms = ms.clamp(0, 100 * 365 * 86_400_000);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(ms))
            });
    }

    /// A fresh random UUID (version 4 layout).
    pub(crate) fn uuid(&self) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let a = self.hasher.hash_one((n, 1u8));
        let b = self.hasher.hash_one((n, 2u8));
        format!(
            "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a & 0xfff,
            8 + (b >> 62),
            (b >> 48) & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Counts a request and evaluates the fault rules for it.
    pub(crate) fn begin_request(&self, endpoint: Option<Endpoint>) -> FaultOutcome {
        let mut st = self.lock();
        st.stats.requests.bump(endpoint);
        let Some(endpoint) = endpoint else {
            return FaultOutcome::default();
        };
        let mut out = FaultOutcome::default();
        for rule in st.faults.rules.iter_mut() {
            if rule.endpoint != endpoint || rule.count == 0 {
                continue;
            }
            let storage_only = matches!(
                rule.action,
                FaultAction::DropAfter { .. }
                    | FaultAction::TruncateGzip
                    | FaultAction::CorruptGzip
            );
            if storage_only && endpoint != Endpoint::Storage {
                continue;
            }
            rule.count -= 1;
            if let FaultAction::Delay { millis } = rule.action {
                out.delay_ms = out.delay_ms.saturating_add(millis);
                continue;
            }
            out.action = Some(rule.action.clone());
            break;
        }
        st.faults.rules.retain(|r| r.count > 0);
        if out.action.is_some() {
            st.stats.faults_injected += 1;
        }
        out
    }

    /// Applies the rate limit of `endpoint`: `Some(retry_after_secs)` when exceeded.
    pub(crate) fn rate_limit(&self, endpoint: Endpoint) -> Option<u64> {
        let limit = endpoint.rate_limit_per_minute()?;
        let now = self.now_ms();
        let mut st = self.lock();
        if !st.faults.rate_limits {
            return None;
        }
        let window = now.div_euclid(60_000);
        let entry = st.rate.entry(endpoint).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            st.stats.rate_limited += 1;
            let left_ms = (window + 1) * 60_000 - now;
            return Some(((left_ms + 999) / 1000).max(1) as u64);
        }
        entry.1 += 1;
        None
    }
}
