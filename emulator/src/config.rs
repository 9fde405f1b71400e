//! Configuration and fault-injection settings of the emulator.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::Faults;

/// The demo client id accepted by default. It carries a region prefix and a `#`,
/// like real DAP client ids; the Basic header must be built from it raw.
pub const DEMO_CLIENT_ID: &str = "us-east-1#demo-client";

/// The demo client secret accepted by default.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// Start of the synthetic change history, in milliseconds since the Unix epoch
/// (2024-01-01T00:00:00Z). Base records carry this timestamp.
pub const DEFAULT_HISTORY_ORIGIN_MS: i64 = 1_704_067_200_000;

/// Settings of an emulator instance. Build one with [`EmulatorConfig::default`] and
/// adjust the fields you need. `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Port of the API listener on 127.0.0.1; 0 picks a free port.
    pub port: u16,
    /// Port of the object-storage listener on 127.0.0.1; 0 picks a free port. Storage
    /// always runs on its own listener so that "a different host" is observable.
    pub storage_port: u16,
    /// Accepted client id (compared raw, `#` included).
    pub client_id: String,
    /// Accepted client secret.
    pub client_secret: String,
    /// Lifetime of issued access tokens (whole seconds are used).
    pub token_lifetime: Duration,
    /// How long (emulator time) a new job stays `waiting`.
    pub job_waiting: Duration,
    /// How long (emulator time) a job stays `running` after waiting.
    pub job_running: Duration,
    /// How long a job and its objects exist after creation (`expires_at`).
    pub job_lifetime: Duration,
    /// Lifetime of pre-signed object URLs, in whole seconds (at least 1). A URL carries
    /// it as S3 does: `X-Amz-Date` (signing time, `YYYYMMDDTHHMMSSZ`) plus
    /// `X-Amz-Expires` (seconds); storage answers 403 once the emulator clock passes
    /// their sum.
    pub url_lifetime: Duration,
    /// Change interval (emulator time, at least 1 ms): most tables change one record
    /// per interval, some more ([`crate::data::TableDef::changes_per_interval`]).
    pub change_interval: Duration,
    /// Retention window: an incremental `since` older than `now - retention` is
    /// answered with `OutOfRange`.
    pub retention: Duration,
    /// Start of the change history in milliseconds since the Unix epoch.
    pub history_origin_ms: i64,
    /// Overrides the number of rows of every table (each table has its own default).
    pub rows_per_table: Option<u64>,
    /// Number of objects (files) each completed job produces (at least 1). Object `i`
    /// of `n` holds the records of the keys `[i * rows / n, (i + 1) * rows / n)`, so
    /// objects may be empty (a header only) when `n` is large; each is generated when
    /// first downloaded, and a job keeps no per-object state.
    pub objects_per_job: u32,
    /// When set, every object is a synthetic "bulk" object of about this many
    /// uncompressed bytes, made of one cached gzip member (about 1 MiB of records)
    /// repeated; use it for benchmarks. When `None`, objects hold the real query result.
    pub object_size_bytes: Option<u64>,
    /// Reuse jobs like DAP: posting a query identical to an earlier one (same table,
    /// format, mode, `since`, `until` and scope) returns the earlier job for as long as
    /// it lives (`job_lifetime`, 24 h by default), whatever happened since: a fault rule
    /// or switch set after the first post never reaches that job, and a snapshot keeps
    /// its `at`. `false` gives every post a new job. Default `true`.
    pub reuse_jobs: bool,
    /// Memory budget (bytes of gzip) of the cache of generated objects; the oldest
    /// objects are dropped beyond it and generated again when asked for.
    pub object_cache_bytes: u64,
    /// Faults and switches active from the start.
    pub faults: Faults,
    /// Initial offset of the emulator clock ahead of the wall clock.
    pub clock_offset: Duration,
    /// When set, the emulator clock is frozen at this instant (milliseconds since the
    /// Unix epoch, plus `clock_offset`) and moves only through
    /// [`crate::Emulator::advance_clock`]: fully deterministic timestamps for tests.
    pub frozen_clock_ms: Option<i64>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            storage_port: 0,
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: DEMO_CLIENT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(3600),
            job_waiting: Duration::ZERO,
            job_running: Duration::ZERO,
            job_lifetime: Duration::from_secs(24 * 3600),
            url_lifetime: Duration::from_secs(900),
            change_interval: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 24 * 3600),
            history_origin_ms: DEFAULT_HISTORY_ORIGIN_MS,
            rows_per_table: None,
            objects_per_job: 1,
            object_size_bytes: None,
            reuse_jobs: true,
            object_cache_bytes: 256 << 20,
            faults: Faults::default(),
            clock_offset: Duration::ZERO,
            frozen_clock_ms: None,
        }
    }
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("port", &self.port)
            .field("storage_port", &self.storage_port)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("token_lifetime", &self.token_lifetime)
            .field("job_waiting", &self.job_waiting)
            .field("job_running", &self.job_running)
            .field("job_lifetime", &self.job_lifetime)
            .field("url_lifetime", &self.url_lifetime)
            .field("change_interval", &self.change_interval)
            .field("retention", &self.retention)
            .field("history_origin_ms", &self.history_origin_ms)
            .field("rows_per_table", &self.rows_per_table)
            .field("objects_per_job", &self.objects_per_job)
            .field("object_size_bytes", &self.object_size_bytes)
            .field("reuse_jobs", &self.reuse_jobs)
            .field("object_cache_bytes", &self.object_cache_bytes)
            .field("faults", &self.faults)
            .field("clock_offset", &self.clock_offset)
            .field("frozen_clock_ms", &self.frozen_clock_ms)
            .finish()
    }
}

impl EmulatorConfig {
    /// The parameters that determine the synthetic data (see [`crate::data`]).
    pub fn data_params(&self) -> crate::data::DataParams {
        crate::data::DataParams {
            origin_ms: self.history_origin_ms,
            change_interval_ms: u64::try_from(self.change_interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            rows_per_table: self.rows_per_table,
        }
    }
}

/// Groups of requests the emulator counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /ids/auth/login`.
    Login,
    /// `GET /dap/query/{ns}/table`.
    Tables,
    /// `GET /dap/query/{ns}/table/{table}/schema`.
    Schema,
    /// `POST /dap/query/{ns}/table/{table}/data`.
    Query,
    /// `GET /dap/job/{id}`.
    Job,
    /// `POST /dap/object/url`.
    ObjectUrls,
    /// Object downloads on the storage listener.
    Storage,
}

impl Endpoint {
    /// All endpoints, in a fixed order.
    pub const ALL: [Self; 7] = [
        Self::Login,
        Self::Tables,
        Self::Schema,
        Self::Query,
        Self::Job,
        Self::ObjectUrls,
        Self::Storage,
    ];

    /// The documented per-minute request limit of the endpoint, if it has one.
    pub fn rate_limit_per_minute(self) -> Option<u32> {
        match self {
            Self::Query | Self::Tables => Some(5),
            Self::Job | Self::Schema => Some(500),
            Self::ObjectUrls => Some(200),
            Self::Login | Self::Storage => None,
        }
    }

    /// The snake_case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Tables => "tables",
            Self::Schema => "schema",
            Self::Query => "query",
            Self::Job => "job",
            Self::ObjectUrls => "object_urls",
            Self::Storage => "storage",
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown endpoint `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use crate::faults::{FaultAction, FaultBody, Faults};

    #[test]
    fn debug_leaves_the_secret_out() {
        let config = super::EmulatorConfig {
            client_secret: "s3cr3t-value".into(),
            ..super::EmulatorConfig::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("s3cr3t-value") && text.contains("[redacted]"),
            "{text}"
        );
    }

    /// The faults example in the README parses.
    #[test]
    fn readme_faults_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```json\n").expect("json block") + 8;
        let end = start + readme[start..].find("```").expect("block end");
        let f: Faults = serde_json::from_str(&readme[start..end]).expect("valid faults");
        assert_eq!(f.rules.len(), 8);
        assert_eq!(
            f.rules[1].action,
            FaultAction::Status {
                status: 502,
                body: FaultBody::Html,
                retry_after: None
            }
        );
        assert_eq!(f.rules[5].action, FaultAction::TruncateGzip);
        assert_eq!(f.token_lifetime_secs, Some(30));
        assert_eq!(f.url_lifetime_secs, Some(60));
        assert!(matches!(
            f.rules[7].action,
            FaultAction::Trickle {
                bytes: 1,
                interval_millis: 1000,
                after_bytes: 0
            }
        ));
    }
}
