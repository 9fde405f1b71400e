//! Fault injection: rules, switches, and which rules a request consumes.

use serde::{Deserialize, Serialize};

use crate::config::Endpoint;

/// The body a [`FaultAction::Status`] fault answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultBody {
    /// The DAP JSON error envelope.
    #[default]
    Json,
    /// A gateway HTML page (`text/html`).
    Html,
    /// A body labelled `application/json` that is not valid JSON.
    MalformedJson,
}

fn one() -> u64 {
    1
}

fn one_second() -> u64 {
    1000
}

/// What a fault rule does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status instead of the real response (e.g. a 429 storm
    /// with `retry_after`, or a 502/503).
    Status {
        /// HTTP status code.
        status: u16,
        /// Shape of the body.
        #[serde(default)]
        body: FaultBody,
        /// Value of a `Retry-After` header (seconds), if any.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Delay the response by this many milliseconds (real time), then answer normally.
    Delay {
        /// Delay in milliseconds.
        millis: u64,
    },
    /// Any endpoint: send the status line and headers at once, then the body slowly:
    /// after the first `after_bytes` bytes (sent at full speed), `bytes` bytes every
    /// `interval_millis` milliseconds of real time. `{"trickle": {}}` sends one byte a
    /// second from the start: a stalled server, for testing low-speed limits.
    Trickle {
        /// Bytes per interval (at least 1).
        #[serde(default = "one")]
        bytes: u64,
        /// Milliseconds between two pieces (real time).
        #[serde(default = "one_second")]
        interval_millis: u64,
        /// Bytes sent at full speed before the trickle starts.
        #[serde(default)]
        after_bytes: u64,
    },
    /// Storage only: announce the full `Content-Length` but close the connection
    /// after this many body bytes.
    DropAfter {
        /// Number of body bytes sent before the connection is dropped.
        bytes: u64,
    },
    /// Storage only: serve a gzip stream cut inside its last member, with a
    /// `Content-Length` that matches the truncated stream.
    TruncateGzip,
    /// Storage only: serve the object with its last CRC-32 flipped, so decoding fails
    /// the integrity check.
    CorruptGzip,
}

impl FaultAction {
    /// Whether the action only makes sense for object downloads.
    fn storage_only(&self) -> bool {
        matches!(
            self,
            Self::DropAfter { .. } | Self::TruncateGzip | Self::CorruptGzip
        )
    }
}

/// One fault-injection rule: applies `action` to the next `count` requests on `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Which requests the rule applies to.
    pub endpoint: Endpoint,
    /// How many more requests it applies to; the rule is dropped when it reaches 0.
    pub count: u32,
    /// What it does.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule applying `action` to the next `count` requests on `endpoint`.
    pub fn new(endpoint: Endpoint, count: u32, action: FaultAction) -> Self {
        Self {
            endpoint,
            count,
            action,
        }
    }

    /// The next `count` requests on `endpoint` get a 429 with `Retry-After: retry_after`.
    pub fn rate_storm(endpoint: Endpoint, count: u32, retry_after: u64) -> Self {
        Self::new(
            endpoint,
            count,
            FaultAction::Status {
                status: 429,
                body: FaultBody::Json,
                retry_after: Some(retry_after),
            },
        )
    }

    /// The next `count` requests on `endpoint` get `status` with the given body shape.
    pub fn status(endpoint: Endpoint, count: u32, status: u16, body: FaultBody) -> Self {
        Self::new(
            endpoint,
            count,
            FaultAction::Status {
                status,
                body,
                retry_after: None,
            },
        )
    }

    /// The next `count` responses on `endpoint` send their headers, then one byte of
    /// body every `interval`.
    pub fn trickle(endpoint: Endpoint, count: u32, interval: std::time::Duration) -> Self {
        Self::new(
            endpoint,
            count,
            FaultAction::Trickle {
                bytes: 1,
                interval_millis: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                after_bytes: 0,
            },
        )
    }
}

/// Fault injection and behaviour switches; settable at start
/// ([`crate::EmulatorConfig::faults`]) and at run time ([`crate::Emulator::set_faults`]
/// or `PUT /_emulator/faults`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Rules, applied in order: matching `delay` rules add up, the first matching
    /// rule of any other kind decides the response. Each application decrements `count`.
    pub rules: Vec<FaultRule>,
    /// Enforce the documented per-minute rate limits (emulator clock, fixed windows).
    pub rate_limits: bool,
    /// New jobs end `failed` with a `ProcessingError`.
    pub fail_jobs: bool,
    /// Every incremental query is answered with `SnapshotRequired`.
    pub snapshot_required: bool,
    /// Incremental queries on these tables (`table` or `namespace.table`) are answered
    /// with `SnapshotRequired`.
    pub snapshot_required_tables: Vec<String>,
    /// Overrides the token lifetime (seconds) of tokens issued from now on.
    pub token_lifetime_secs: Option<u64>,
    /// Overrides the lifetime (`X-Amz-Expires`, seconds, at least 1) of pre-signed URLs
    /// issued from now on.
    pub url_lifetime_secs: Option<u64>,
}

/// What the fault rules decided for one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FaultOutcome {
    /// Real-time delay before answering.
    pub(crate) delay_ms: u64,
    /// The deciding action, if any.
    pub(crate) action: Option<FaultAction>,
}

impl Faults {
    /// Consumes the rules that apply to one request on `endpoint`: every matching
    /// delay, then the first matching rule of another kind. Storage-only actions never
    /// match an API endpoint (and are not consumed by one).
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> FaultOutcome {
        let mut out = FaultOutcome::default();
        for rule in &mut self.rules {
            if rule.endpoint != endpoint || rule.count == 0 {
                continue;
            }
            if rule.action.storage_only() && endpoint != Endpoint::Storage {
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
        self.rules.retain(|r| r.count > 0);
        out
    }

    /// Whether incremental queries on `namespace.table` must answer SnapshotRequired.
    pub(crate) fn forces_snapshot(&self, namespace: &str, table: &str) -> bool {
        self.snapshot_required
            || self.snapshot_required_tables.iter().any(|n| {
                n == table
                    || n.split_once('.')
                        .is_some_and(|(ns, t)| ns == namespace && t == table)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_add_up_and_the_first_other_rule_decides() {
        let mut f = Faults {
            rules: vec![
                FaultRule::new(Endpoint::Job, 2, FaultAction::Delay { millis: 5 }),
                FaultRule::new(Endpoint::Job, 1, FaultAction::Delay { millis: 7 }),
                FaultRule::status(Endpoint::Job, 1, 503, FaultBody::Json),
                FaultRule::status(Endpoint::Job, 1, 500, FaultBody::Json),
                FaultRule::new(Endpoint::Job, 1, FaultAction::TruncateGzip),
            ],
            ..Faults::default()
        };
        let first = f.take(Endpoint::Job);
        assert_eq!(first.delay_ms, 12);
        assert!(matches!(
            first.action,
            Some(FaultAction::Status { status: 503, .. })
        ));
        let second = f.take(Endpoint::Job);
        assert_eq!(second.delay_ms, 5);
        assert!(matches!(
            second.action,
            Some(FaultAction::Status { status: 500, .. })
        ));
        assert_eq!(f.take(Endpoint::Job), FaultOutcome::default());
        assert_eq!(f.rules.len(), 1, "the storage-only rule stays");
        assert_eq!(f.take(Endpoint::Tables), FaultOutcome::default());
    }

    #[test]
    fn trickle_defaults_to_a_byte_a_second() {
        let a: FaultAction = serde_json::from_str(r#"{"trickle": {}}"#).unwrap();
        assert_eq!(
            a,
            FaultAction::Trickle {
                bytes: 1,
                interval_millis: 1000,
                after_bytes: 0
            }
        );
        let mut f = Faults {
            rules: vec![FaultRule::new(Endpoint::Login, 1, a.clone())],
            ..Faults::default()
        };
        assert_eq!(f.take(Endpoint::Login).action, Some(a));
    }

    #[test]
    fn snapshot_required_by_table_name() {
        let f = Faults {
            snapshot_required_tables: vec!["users".into(), "catalog.enrollments".into()],
            ..Faults::default()
        };
        assert!(f.forces_snapshot("canvas", "users"));
        assert!(f.forces_snapshot("catalog", "enrollments"));
        assert!(!f.forces_snapshot("canvas", "enrollments"));
    }
}
