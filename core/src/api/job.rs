//! `GET {base}/dap/job/{id}`: a query job's status (202 while waiting or running, 200
//! once terminal).

use http::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use serde::Deserialize;

use super::{Body, ErrorBody, api_request, decode, segment};
use crate::config::Config;
use crate::error::{Error, ProtocolError, ProtocolErrorKind, excerpt};
use crate::model::{CompleteJob, DataRange, Job, JobId, JobState, ObjectId};
use crate::secret::AccessToken;

/// Builds the request.
pub fn request(
    config: &Config,
    token: &AccessToken,
    job: &JobId,
) -> Result<Request<Vec<u8>>, Error> {
    let id = segment("job id", job.as_str())?;
    Ok(api_request(
        config,
        token,
        Method::GET,
        &format!("/dap/job/{id}"),
        None,
    )?)
}

/// Parses a job status response. The body decides the state: 200 and 202 are both
/// accepted whatever the status word.
pub fn parse<B: AsRef<[u8]>>(config: &Config, response: &Response<B>) -> Result<Job, Error> {
    parse_job(config, "job status", response)
}

#[derive(Deserialize)]
struct RawObject {
    id: String,
}

#[derive(Deserialize)]
struct Raw {
    id: String,
    status: String,
    expires_at: Option<String>,
    objects: Option<Vec<RawObject>>,
    schema_version: Option<u64>,
    at: Option<String>,
    since: Option<String>,
    until: Option<String>,
    error: Option<ErrorBody>,
}

/// Parses a job body (shared by the query and job-status endpoints).
pub(crate) fn parse_job<B: AsRef<[u8]>>(
    config: &Config,
    what: &'static str,
    response: &Response<B>,
) -> Result<Job, Error> {
    let raw: Raw = decode(
        config,
        what,
        response,
        &[StatusCode::OK, StatusCode::ACCEPTED],
        Body::Quotable,
    )?;
    let invalid = |detail: String| {
        Error::Protocol(ProtocolError {
            status: response.status(),
            kind: ProtocolErrorKind::InvalidShape { detail },
            body_excerpt: excerpt(response.body().as_ref()),
            what,
        })
    };
    let ts = |name: &str, value: &Option<String>| -> Result<Option<Timestamp>, Error> {
        value
            .as_deref()
            .map(|v| {
                v.parse::<Timestamp>()
                    .map_err(|_| invalid(format!("`{name}` is not an RFC 3339 timestamp: {v:?}")))
            })
            .transpose()
    };
    let required = |name: &str, value: &Option<String>| {
        ts(name, value)?.ok_or_else(|| invalid(format!("complete job without `{name}`")))
    };
    if raw.id.is_empty() {
        return Err(invalid("job without an id".into()));
    }
    let state = match raw.status.as_str() {
        "waiting" => JobState::Waiting,
        "running" => JobState::Running,
        "complete" => {
            let range = match (&raw.at, &raw.since) {
                (Some(_), _) => DataRange::Snapshot {
                    at: required("at", &raw.at)?,
                },
                (None, Some(_)) => DataRange::Incremental {
                    since: required("since", &raw.since)?,
                    until: required("until", &raw.until)?,
                },
                (None, None) => return Err(invalid("complete job without `at` or `since`".into())),
            };
            let objects = raw
                .objects
                .ok_or_else(|| invalid("complete job without `objects`".into()))?
                .into_iter()
                .map(|o| ObjectId::new(o.id))
                .collect();
            CompleteJob {
                objects,
                schema_version: raw
                    .schema_version
                    .ok_or_else(|| invalid("complete job without `schema_version`".into()))?,
                range,
            }
            .into()
        }
        "failed" => JobState::Failed(
            raw.error
                .unwrap_or_default()
                .into_error(response.status(), None)
                .into_job_failure(),
        ),
        other => return Err(invalid(format!("unknown job status {other:?}"))),
    };
    Ok(Job {
        id: JobId::new(raw.id),
        expires_at: ts("expires_at", &raw.expires_at)?,
        state,
    })
}

impl From<CompleteJob> for JobState {
    fn from(c: CompleteJob) -> Self {
        Self::Complete(c)
    }
}

impl crate::error::DapError {
    /// A failed job's error always reads as a processing error, whatever status carried it.
    fn into_job_failure(mut self) -> Self {
        self.kind = crate::error::DapErrorKind::Processing;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::*;
    use crate::error::DapErrorKind;

    #[test]
    fn golden_request() {
        let r = request(&config(), &token(), &JobId::new("28313161-4ff8")).unwrap();
        assert_eq!(
            r.uri(),
            "https://api-gateway.instructure.com/dap/job/28313161-4ff8"
        );
        assert_eq!(r.method(), Method::GET);
        assert!(request(&config(), &token(), &JobId::new("../x")).is_err());
    }

    #[test]
    fn running_and_complete() {
        let j = parse(&config(), &vector("job-running")).unwrap();
        assert_eq!(j.state, JobState::Running);
        assert!(j.expires_at.is_some());
        let j = parse(&config(), &vector("job-complete-snapshot")).unwrap();
        let JobState::Complete(c) = j.state else {
            panic!()
        };
        assert_eq!(c.schema_version, 2);
        assert_eq!(c.objects.len(), 1);
        assert_eq!(
            c.range,
            DataRange::Snapshot {
                at: "2026-11-29T01:53:31Z".parse().unwrap()
            }
        );
        let j = parse(&config(), &vector("job-complete-incremental")).unwrap();
        let JobState::Complete(c) = j.state else {
            panic!()
        };
        assert!(matches!(c.range, DataRange::Incremental { .. }));
        assert_eq!(
            c.range.next_since(),
            "2026-11-29T01:53:31Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn failed_and_unknown() {
        let mut r = vector("query-failed-job");
        *r.status_mut() = StatusCode::OK;
        let j = parse(&config(), &r).unwrap();
        let JobState::Failed(e) = j.state else {
            panic!()
        };
        assert_eq!(e.kind, DapErrorKind::Processing);
        assert!(e.message.contains("injected"));
        let e = parse(&config(), &vector("job-unknown")).unwrap_err();
        assert!(matches!(
            e.api_error().unwrap().kind,
            DapErrorKind::NotFound { .. }
        ));
    }

    #[test]
    fn shape_errors() {
        for body in [
            r#"{"id":"j","status":"exploded"}"#,
            r#"{"id":"j","status":"complete","objects":[],"schema_version":1}"#,
            r#"{"id":"j","status":"complete","at":"2026-01-01T00:00:00Z","schema_version":1}"#,
            r#"{"id":"j","status":"complete","objects":[],"at":"yesterday","schema_version":1}"#,
            r#"{"id":"j","status":"complete","objects":[],"since":"2026-01-01T00:00:00Z","schema_version":1}"#,
            r#"{"id":"j","status":"complete","objects":[],"at":"2026-01-01T00:00:00","schema_version":1}"#,
            r#"{"id":"","status":"waiting"}"#,
            r#"{"status":"waiting"}"#,
        ] {
            let e = parse(&config(), &json(200, body)).unwrap_err();
            assert!(matches!(e, Error::Protocol(_)), "{body}: {e}");
        }
        // The body decides, not 200 versus 202.
        let j = parse(
            &config(),
            &json(202, r#"{"id":"j","status":"complete","objects":[],"at":"2026-01-01T00:00:00Z","schema_version":1}"#),
        )
        .unwrap();
        assert!(j.state.is_terminal());
    }

    #[test]
    fn unknown_fields_ignored() {
        let j = parse(
            &config(),
            &json(202, r#"{"id":"j","status":"waiting","extra":{"x":1}}"#),
        )
        .unwrap();
        assert_eq!(j.state, JobState::Waiting);
    }
}
