//! The emulator's mutable state (statistics, tokens, jobs, schema histories, faults)
//! and its clock. Everything here is plain data with pure methods; the heart holds it
//! behind one lock.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::Endpoint;
use crate::data::SchemaHistory;
use crate::faults::{FaultOutcome, Faults};
use crate::job::Job;

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
    /// Storage requests that carried a `Range` header (resumed downloads).
    pub storage_range_requests: u64,
    /// Storage requests that carried `Authorization` or `x-instauth`.
    pub storage_with_credentials: u64,
    /// Storage requests that carried `Authorization`.
    pub storage_with_authorization: u64,
    /// Storage requests that carried `x-instauth`.
    pub storage_with_instauth: u64,
    /// Jobs created (reused jobs do not count).
    pub jobs_created: u64,
    /// `/dap` requests rejected with 401.
    pub unauthorized: u64,
    /// `/dap` requests rejected with 403 for a missing User-Agent.
    pub missing_user_agent: u64,
    /// Requests answered 429 by the rate limiter.
    pub rate_limited: u64,
    /// Requests answered by a fault rule (status, trickle and storage faults).
    pub faults_injected: u64,
}

/// Why a token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Revoked,
    Unknown,
}

/// A table, as `(namespace, name)`.
pub(crate) type TableKey = (&'static str, &'static str);

/// The mutable state.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    /// Issued token ids and their serial numbers.
    tokens: HashMap<String, u64>,
    next_token_serial: u64,
    /// Tokens with a serial below this are revoked.
    revoked_below: u64,
    pub(crate) jobs: HashMap<Arc<str>, Arc<Job>>,
    /// Query fingerprint to job id, for job reuse.
    pub(crate) reuse: HashMap<String, Arc<str>>,
    /// Per endpoint: (minute window, count).
    rate: HashMap<Endpoint, (i64, u32)>,
    /// Schema histories of the tables that were bumped.
    pub(crate) schemas: HashMap<TableKey, SchemaHistory>,
    /// When tables were last reloaded (incrementals from before need a snapshot).
    pub(crate) reloads: HashMap<TableKey, i64>,
}

impl State {
    pub(crate) fn new(faults: Faults) -> Self {
        Self {
            faults,
            ..Self::default()
        }
    }

    /// Counts a request and consumes the fault rules that apply to it.
    pub(crate) fn begin_request(&mut self, endpoint: Option<Endpoint>) -> FaultOutcome {
        self.stats.requests.bump(endpoint);
        let Some(endpoint) = endpoint else {
            return FaultOutcome::default();
        };
        let out = self.faults.take(endpoint);
        if out.action.is_some() {
            self.stats.faults_injected += 1;
        }
        out
    }

    /// Applies the rate limit of `endpoint` at `now`: `Some(retry_after_secs)` when
    /// exceeded.
    pub(crate) fn rate_limit(&mut self, endpoint: Endpoint, now: i64) -> Option<u64> {
        let limit = endpoint.rate_limit_per_minute()?;
        if !self.faults.rate_limits {
            return None;
        }
        let window = now.div_euclid(60_000);
        let entry = self.rate.entry(endpoint).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            self.stats.rate_limited += 1;
            let left_ms = (window + 1) * 60_000 - now;
            return Some(u64::try_from((left_ms + 999) / 1000).unwrap_or(1).max(1));
        }
        entry.1 += 1;
        None
    }

    /// Records a newly issued token.
    pub(crate) fn issue_token(&mut self, jti: String) {
        let serial = self.next_token_serial;
        self.next_token_serial += 1;
        self.tokens.insert(jti, serial);
        self.stats.logins += 1;
        self.stats.tokens_issued += 1;
    }

    /// Whether a token id was issued and not revoked.
    pub(crate) fn check_token(&self, jti: &str) -> Result<(), TokenProblem> {
        match self.tokens.get(jti) {
            Some(serial) if *serial >= self.revoked_below => Ok(()),
            Some(_) => Err(TokenProblem::Revoked),
            None => Err(TokenProblem::Unknown),
        }
    }

    /// Revokes every token issued so far; returns how many were live.
    pub(crate) fn revoke_all(&mut self) -> usize {
        let live = self
            .tokens
            .values()
            .filter(|s| **s >= self.revoked_below)
            .count();
        self.revoked_below = self.next_token_serial;
        live
    }

    /// The schema history of a table.
    pub(crate) fn schema(&self, key: TableKey) -> SchemaHistory {
        self.schemas.get(&key).cloned().unwrap_or_default()
    }

    /// Drops expired jobs and the reuse entries that point at them.
    pub(crate) fn expire_jobs(&mut self, now: i64) {
        self.jobs.retain(|_, j| j.expires_ms > now);
        let jobs = &self.jobs;
        self.reuse.retain(|_, id| jobs.contains_key(id));
    }
}

/// The emulator clock: the wall clock (or a frozen instant) plus an offset that only
/// grows.
#[derive(Debug)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
    frozen_ms: Option<i64>,
}

/// Latest instant the clock shows (9999-12-31T23:59:59Z).
const MAX_MS: i64 = 253_402_300_799_000;

impl Clock {
    pub(crate) fn new(offset_ms: i64, frozen_ms: Option<i64>) -> Self {
        Self {
            offset_ms: AtomicI64::new(offset_ms),
            frozen_ms,
        }
    }

    /// Emulator time at real time `wall_ms`.
    pub(crate) fn now(&self, wall_ms: i64) -> i64 {
        self.frozen_ms
            .unwrap_or(wall_ms)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .clamp(0, MAX_MS)
    }

    /// Moves the clock forward by `ms` (at most a century at a time).
    pub(crate) fn advance(&self, ms: i64) {
        let ms = ms.clamp(0, 100 * 365 * 86_400_000);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(ms))
            });
    }
}

/// Random-looking identifiers and keys.
#[derive(Debug)]
pub(crate) struct Ids {
    counter: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

impl Ids {
    pub(crate) fn new() -> Self {
        Self {
            counter: AtomicU64::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// A fresh random key.
    pub(crate) fn key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            chunk.copy_from_slice(&self.hasher.hash_one(("key", n)).to_le_bytes());
        }
        key
    }

    /// A fresh random UUID (version 4 layout).
    pub(crate) fn uuid(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_use_minute_windows() {
        let mut st = State::new(Faults {
            rate_limits: true,
            ..Faults::default()
        });
        for _ in 0..5 {
            assert_eq!(st.rate_limit(Endpoint::Query, 60_000), None);
        }
        assert_eq!(st.rate_limit(Endpoint::Query, 90_000), Some(30));
        assert_eq!(st.rate_limit(Endpoint::Job, 90_000), None);
        assert_eq!(st.rate_limit(Endpoint::Query, 120_000), None);
        assert_eq!(st.rate_limit(Endpoint::Login, 120_000), None);
        assert_eq!(st.stats.rate_limited, 1);
    }

    #[test]
    fn tokens_are_revoked_by_serial() {
        let mut st = State::default();
        st.issue_token("a".into());
        st.issue_token("b".into());
        assert_eq!(st.revoke_all(), 2);
        st.issue_token("c".into());
        assert_eq!(st.check_token("a"), Err(TokenProblem::Revoked));
        assert_eq!(st.check_token("c"), Ok(()));
        assert_eq!(st.check_token("zz"), Err(TokenProblem::Unknown));
        assert_eq!(st.revoke_all(), 1);
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let c = Clock::new(5, Some(1_000));
        assert_eq!(c.now(123_456), 1_005);
        c.advance(-50);
        assert_eq!(c.now(0), 1_005);
        c.advance(2_000);
        assert_eq!(c.now(0), 3_005);
        assert_eq!(Clock::new(0, None).now(77), 77);
    }
}
