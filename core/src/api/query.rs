//! `POST {base}/dap/query/{namespace}/table/{table}/data`: start a snapshot or
//! incremental query job.

use http::{Method, Request, Response};
use serde_json::{Map, Value, json};

use super::job::parse_job;
use super::{api_request, segment, with_scope};
use crate::config::Config;
use crate::error::Error;
use crate::model::{Job, Query, QueryRange};
use crate::secret::AccessToken;

/// The JSON body of a query: `{"format"}` plus `mode`, `since`, `until` when set.
/// Timestamps are written as RFC 3339 in UTC (`...Z`).
pub fn body(query: &Query) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("format".into(), json!(query.format().as_str()));
    if let Some(mode) = query.layout() {
        map.insert("mode".into(), json!(mode.as_str()));
    }
    if let QueryRange::Incremental { since, until } = query.range() {
        map.insert("since".into(), json!(since.to_string()));
        if let Some(until) = until {
            map.insert("until".into(), json!(until.to_string()));
        }
    }
    Value::Object(map).to_string().into_bytes()
}

/// Builds the request.
pub fn request(
    config: &Config,
    token: &AccessToken,
    namespace: &str,
    table: &str,
    query: &Query,
) -> Result<Request<Vec<u8>>, Error> {
    let ns = segment("namespace", namespace)?;
    let table = segment("table", table)?;
    let path = with_scope(config, format!("/dap/query/{ns}/table/{table}/data"));
    Ok(api_request(
        config,
        token,
        Method::POST,
        &path,
        Some(body(query)),
    )?)
}

/// Parses the response: the job, which may already be terminal (200) or not (202).
pub fn parse<B: AsRef<[u8]>>(config: &Config, response: &Response<B>) -> Result<Job, Error> {
    parse_job(config, "start query", response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::*;
    use crate::error::DapErrorKind;
    use crate::model::{Format, JobState, Mode};
    use jiff::Timestamp;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn golden_snapshot() {
        let r = request(
            &config(),
            &token(),
            "canvas",
            "accounts",
            &Query::snapshot(Format::Jsonl),
        )
        .unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri(),
            "https://api-gateway.instructure.com/dap/query/canvas/table/accounts/data"
        );
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.body(), br#"{"format":"jsonl"}"#);
    }

    #[test]
    fn golden_incremental() {
        let q = Query::incremental(Format::Csv, ts("2026-01-01T00:00:00+02:00"))
            .until(ts("2026-01-02T00:00:00Z"))
            .unwrap()
            .mode(Mode::Condensed)
            .unwrap();
        let r = request(&config(), &token(), "canvas", "users", &q).unwrap();
        assert_eq!(
            r.body(),
            br#"{"format":"csv","mode":"condensed","since":"2025-12-31T22:00:00Z","until":"2026-01-02T00:00:00Z"}"#
        );
    }

    #[test]
    fn refuses_bad_queries() {
        assert!(Query::snapshot(Format::Jsonl).mode(Mode::Expanded).is_err());
        assert!(
            Query::snapshot(Format::Parquet)
                .mode(Mode::Expanded)
                .is_err()
        );
        assert!(
            Query::snapshot(Format::Tsv)
                .until(ts("2026-01-01T00:00:00Z"))
                .is_err()
        );
        let since = ts("2026-01-02T00:00:00Z");
        assert!(Query::incremental(Format::Tsv, since).until(since).is_err());
        assert!(
            Query::incremental(Format::Tsv, since)
                .until(ts("2026-01-01T00:00:00Z"))
                .is_err()
        );
        assert!(
            "2026-01-01T00:00:00".parse::<Timestamp>().is_err(),
            "naive times do not parse"
        );
    }

    #[test]
    fn parses_vectors() {
        let j = parse(&config(), &vector("query-snapshot-accepted")).unwrap();
        assert_eq!(j.state, JobState::Waiting);
        let j = parse(&config(), &vector("query-failed-job")).unwrap();
        assert!(matches!(j.state, JobState::Failed(_)));
        let e = parse(&config(), &vector("query-out-of-range")).unwrap_err();
        let dap = e.api_error().unwrap();
        assert_eq!(
            dap.kind,
            DapErrorKind::OutOfRange {
                since: Some(ts("2023-01-01T00:00:00Z")),
                until: Some(ts("2026-11-29T01:53:31Z"))
            }
        );
        assert!(dap.to_string().contains("2023-01-01"));
        let e = parse(&config(), &vector("query-snapshot-required")).unwrap_err();
        assert!(matches!(
            e.api_error().unwrap().kind,
            DapErrorKind::SnapshotRequired { .. }
        ));
        let e = parse(&config(), &vector("query-validation-error")).unwrap_err();
        let DapErrorKind::Validation { location: Some(l) } = e.api_error().unwrap().kind else {
            panic!()
        };
        assert_eq!((l.line, l.column, l.character), (Some(1), Some(1), Some(1)));
    }
}
