//! Queries and jobs: `POST /dap/query/{ns}/table/{t}/data` and `GET /dap/job/{id}`.
//!
//! An identical query (same table, scope, format, mode, `since` and `until`) reuses
//! its job for as long as the job lives, as DAP does, unless
//! [`crate::EmulatorConfig::reuse_jobs`] is off.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::Heart;
use super::reply::{ErrorExtra, Location, Resp, START, to_json};
use super::route::{json_body, location_of};
use crate::data::{EmulatedRange, TableDef, format_ts, format_ts_millis};
use crate::encode::{Format, Mode};
use crate::job::{Job, JobStatus};

/// A validated query body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryBody {
    format: Format,
    mode: Option<Mode>,
    since: Option<i64>,
    until: Option<i64>,
    /// `since` as the client wrote it.
    since_text: String,
}

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Validation(String, Location),
    OutOfRange {
        since_text: String,
        earliest: i64,
        now_s: i64,
    },
    SnapshotRequired {
        since: i64,
        until: i64,
    },
}

fn invalid(message: impl Into<String>, location: Location) -> Refusal {
    Refusal::Validation(message.into(), location)
}

fn parse_format(v: Option<&Value>, text: &str) -> Result<Format, Refusal> {
    match v.map(Value::as_str) {
        None => Err(invalid("missing field `format`", START)),
        Some(Some("parquet")) => Err(invalid(
            "`format` parquet is not supported by the emulator; use jsonl, csv or tsv",
            location_of(text, "format"),
        )),
        Some(s) => s.and_then(Format::from_name).ok_or_else(|| {
            invalid(
                "`format` must be one of: jsonl, csv, tsv, parquet",
                location_of(text, "format"),
            )
        }),
    }
}

fn parse_mode(v: Option<&Value>, format: Format, text: &str) -> Result<Option<Mode>, Refusal> {
    let mode = match v.map(Value::as_str) {
        None => None,
        Some(Some("expanded")) => Some(Mode::Expanded),
        Some(Some("condensed")) => Some(Mode::Condensed),
        Some(_) => {
            return Err(invalid(
                "`mode` must be one of: expanded, condensed",
                location_of(text, "mode"),
            ));
        }
    };
    if mode.is_some() && format == Format::Jsonl {
        return Err(invalid(
            "`mode` is only supported for csv and tsv formats",
            location_of(text, "mode"),
        ));
    }
    Ok(mode)
}

fn parse_time(v: Option<&Value>, key: &str, text: &str) -> Result<Option<i64>, Refusal> {
    let Some(v) = v else { return Ok(None) };
    v.as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| Some(t.as_millisecond()))
        .ok_or_else(|| {
            invalid(
                format!("`{key}` must be an RFC 3339 timestamp with a time zone offset"),
                location_of(text, key),
            )
        })
}

/// Validates the fields of a query body.
fn parse_query(text: &str, value: &Value) -> Result<QueryBody, Refusal> {
    let Some(obj) = value.as_object() else {
        return Err(invalid("query must be a JSON object", START));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["format", "mode", "since", "until"].contains(&k.as_str()))
    {
        return Err(invalid(
            format!("unknown field `{k}`; expected one of: format, mode, since, until"),
            location_of(text, k),
        ));
    }
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let format = parse_format(field("format"), text)?;
    Ok(QueryBody {
        format,
        mode: parse_mode(field("mode"), format, text)?,
        since: parse_time(field("since"), "since", text)?,
        until: parse_time(field("until"), "until", text)?,
        since_text: field("since")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The range a query asks for at `now`, given the retention window.
fn resolve_range(
    q: &QueryBody,
    text: &str,
    now: i64,
    retention_ms: i64,
) -> Result<EmulatedRange, Refusal> {
    let now_s = now.div_euclid(1000) * 1000;
    let Some(since) = q.since else {
        return match q.until {
            None => Ok(EmulatedRange::Snapshot { at_ms: now_s }),
            Some(_) => Err(invalid(
                "`until` requires `since`",
                location_of(text, "until"),
            )),
        };
    };
    if since > now {
        return Err(invalid(
            "`since` is in the future",
            location_of(text, "since"),
        ));
    }
    if let Some(u) = q.until {
        if u > now {
            return Err(invalid(
                "`until` is in the future",
                location_of(text, "until"),
            ));
        }
        if u <= since {
            return Err(invalid(
                "`until` must be later than `since`",
                location_of(text, "until"),
            ));
        }
    }
    let earliest = now.saturating_sub(retention_ms).div_euclid(1000) * 1000;
    if since < earliest {
        return Err(Refusal::OutOfRange {
            since_text: q.since_text.clone(),
            earliest,
            now_s,
        });
    }
    Ok(EmulatedRange::Incremental {
        since_ms: since,
        until_ms: q.until.unwrap_or(now_s.max(since)),
    })
}

fn refuse(heart: &Heart, r: Refusal) -> Resp {
    match r {
        Refusal::Validation(message, location) => heart.validation(message, location),
        Refusal::OutOfRange {
            since_text,
            earliest,
            now_s,
        } => heart.error_with(
            StatusCode::BAD_REQUEST,
            "OutOfRange",
            format!(
                "The 'since' parameter in the request ({since_text}) precedes the earliest data available ({}).",
                format_ts(earliest)
            ),
            ErrorExtra {
                since: Some(format_ts(earliest)),
                until: Some(format_ts(now_s)),
                ..ErrorExtra::default()
            },
        ),
        Refusal::SnapshotRequired { since, until } => heart.error_with(
            StatusCode::BAD_REQUEST,
            "SnapshotRequired",
            "The table was reloaded after the requested 'since' timestamp; a new snapshot is required to keep the data consistent.",
            ErrorExtra {
                since: Some(format_ts(since)),
                until: Some(format_ts(until)),
                ..ErrorExtra::default()
            },
        ),
    }
}

/// `POST /dap/query/{ns}/table/{t}/data`.
pub(super) fn start_query(
    heart: &Heart,
    (ns, t): (&str, &str),
    scope: Option<&str>,
    body: Option<&Bytes>,
    now: i64,
) -> Resp {
    let def = match super::catalog::lookup(heart, ns, t) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let (text, value) = match json_body(body) {
        Ok(x) => x,
        Err(e) => return heart.validation(e.message, e.location),
    };
    let retention = i64::try_from(heart.config.retention.as_millis()).unwrap_or(i64::MAX);
    let checked = parse_query(&text, &value)
        .and_then(|q| Ok((resolve_range(&q, &text, now, retention)?, q)))
        .and_then(|(range, q)| {
            snapshot_check(heart, def, range)?;
            Ok((range, q))
        });
    let (range, q) = match checked {
        Ok(x) => x,
        Err(r) => return refuse(heart, r),
    };
    let fingerprint = format!(
        "{ns}/{t}?scope={}|{:?}|{:?}|{:?}|{:?}",
        scope.unwrap_or(""),
        q.format,
        q.mode,
        q.since,
        q.until
    );
    let job = find_or_create(heart, def, &q, range, fingerprint, now);
    job_response(heart, &job, now)
}

/// SnapshotRequired: by the switches, or because the table was reloaded after `since`.
fn snapshot_check(heart: &Heart, def: &TableDef, range: EmulatedRange) -> Result<(), Refusal> {
    let EmulatedRange::Incremental { since_ms, until_ms } = range else {
        return Ok(());
    };
    let st = heart.lock();
    let reloaded = st
        .reloads
        .get(&(def.namespace, def.name))
        .is_some_and(|at| since_ms < *at);
    if reloaded || st.faults.forces_snapshot(def.namespace, def.name) {
        return Err(Refusal::SnapshotRequired {
            since: since_ms,
            until: until_ms,
        });
    }
    Ok(())
}

fn find_or_create(
    heart: &Heart,
    def: &'static TableDef,
    q: &QueryBody,
    range: EmulatedRange,
    fingerprint: String,
    now: i64,
) -> Arc<Job> {
    let mut st = heart.lock();
    let reused = st
        .reuse
        .get(&fingerprint)
        .and_then(|id| st.jobs.get(id))
        .filter(|j| heart.config.reuse_jobs && j.expires_ms > now)
        .cloned();
    if let Some(job) = reused {
        return job;
    }
    st.expire_jobs(now);
    let lifetime = i64::try_from(heart.config.job_lifetime.as_millis()).unwrap_or(i64::MAX);
    let job = Arc::new(Job {
        id: heart.ids.uuid().into(),
        table: def,
        history: st.schema((def.namespace, def.name)),
        format: q.format,
        mode: q.mode.unwrap_or_default(),
        range,
        created_ms: now,
        expires_ms: now.saturating_add(lifetime),
        failed: st.faults.fail_jobs.then(|| heart.ids.uuid()),
        objects: heart.config.objects_per_job.max(1),
    });
    st.jobs.insert(job.id.clone(), job.clone());
    if heart.config.reuse_jobs {
        st.reuse.insert(fingerprint, job.id.clone());
    }
    st.stats.jobs_created += 1;
    job
}

#[derive(Serialize)]
struct JobJson<'a> {
    id: &'a str,
    status: &'static str,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// A job as `POST .../data` and `GET /dap/job/{id}` show it.
fn job_response(heart: &Heart, job: &Job, now: i64) -> Resp {
    let status = job.status(&heart.config, now);
    let mut j = JobJson {
        id: &job.id,
        status: status.name(),
        expires_at: format_ts_millis(job.expires_ms),
        objects: None,
        schema_version: None,
        at: None,
        since: None,
        until: None,
        error: None,
    };
    match status {
        JobStatus::Complete => {
            j.objects = Some(
                (0..job.objects)
                    .map(|i| json!({ "id": format!("{}/{}", job.id, job.file_name(i)) }))
                    .collect(),
            );
            j.schema_version = Some(job.shape().version());
            match job.range {
                EmulatedRange::Snapshot { at_ms } => j.at = Some(format_ts(at_ms)),
                EmulatedRange::Incremental { since_ms, until_ms } => {
                    j.since = Some(format_ts(since_ms));
                    j.until = Some(format_ts(until_ms));
                }
            }
        }
        JobStatus::Failed => {
            j.error = Some(json!({
                "type": "ProcessingError",
                "uuid": job.failed.clone().unwrap_or_default(),
                "message": "query job failed (injected fault)",
            }));
        }
        JobStatus::Waiting | JobStatus::Running => {}
    }
    let code = if status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    to_json(code, &j)
}

/// The live job `id`.
pub(super) fn find_job(heart: &Heart, id: &str, now: i64) -> Option<Arc<Job>> {
    heart
        .lock()
        .jobs
        .get(id)
        .filter(|j| j.expires_ms > now)
        .cloned()
}

/// `GET /dap/job/{id}`.
pub(super) fn job_status(heart: &Heart, id: &str, now: i64) -> Resp {
    match find_job(heart, id, now) {
        Some(job) => job_response(heart, &job, now),
        None => heart.not_found("job", id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<QueryBody, Refusal> {
        parse_query(text, &serde_json::from_str(text).unwrap())
    }

    #[test]
    fn query_bodies_are_validated() {
        assert_eq!(
            parse(r#"{"format":"tsv","mode":"condensed"}"#),
            Ok(QueryBody {
                format: Format::Tsv,
                mode: Some(Mode::Condensed),
                since: None,
                until: None,
                since_text: String::new(),
            })
        );
        for bad in [
            r#"{"format":"xml"}"#,
            r#"{}"#,
            r#"{"format":"jsonl","mode":"condensed"}"#,
            r#"{"format":"csv","filter":1}"#,
            r#"{"format":"csv","since":"yesterday"}"#,
            r#"[1]"#,
        ] {
            assert!(matches!(parse(bad), Err(Refusal::Validation(..))), "{bad}");
        }
    }

    #[test]
    fn ranges_follow_the_clock_and_retention() {
        let now = 1_700_000_000_500;
        let q = |since, until| QueryBody {
            format: Format::Csv,
            mode: None,
            since,
            until,
            since_text: String::new(),
        };
        let day = 86_400_000;
        assert_eq!(
            resolve_range(&q(None, None), "", now, day),
            Ok(EmulatedRange::Snapshot {
                at_ms: 1_700_000_000_000
            })
        );
        assert_eq!(
            resolve_range(&q(Some(now - 1000), None), "", now, day),
            Ok(EmulatedRange::Incremental {
                since_ms: now - 1000,
                until_ms: 1_700_000_000_000
            })
        );
        assert!(matches!(
            resolve_range(&q(Some(now - 2 * day), None), "", now, day),
            Err(Refusal::OutOfRange { .. })
        ));
        for (since, until) in [
            (Some(now + 1), None),
            (None, Some(now)),
            (Some(now), Some(now)),
        ] {
            assert!(matches!(
                resolve_range(&q(since, until), "", now, day),
                Err(Refusal::Validation(..))
            ));
        }
    }
}
