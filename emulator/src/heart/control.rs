//! Control endpoints (`/_emulator/...`, no authentication): statistics, faults, the
//! clock, tokens, schema bumps, table reloads and the expected records.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Heart;
use super::reply::{Resp, to_json, with_type};
use super::route::query_param;
use crate::data::{EmulatedRange, format_ts, format_ts_millis};
use crate::faults::{FaultRule, Faults};

fn bad(msg: impl std::fmt::Display) -> Resp {
    to_json(
        StatusCode::BAD_REQUEST,
        &json!({ "error": msg.to_string() }),
    )
}

fn ok(v: &Value) -> Resp {
    to_json(StatusCode::OK, v)
}

/// Parses a JSON body.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid {what}: {e}"))
}

/// 200 with the value, or 400 with the message.
fn answer(r: Result<Value, String>) -> Resp {
    match r {
        Ok(v) => ok(&v),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    seconds: f64,
    #[serde(default)]
    millis: i64,
}

/// A table, and for bumps an optional instant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableRef {
    namespace: String,
    table: String,
    #[serde(default)]
    at: Option<jiff::Timestamp>,
}

/// Entry point of `/_emulator/...`.
pub(super) fn handle(heart: &Heart, req: &Request<Option<Bytes>>, now: i64) -> Resp {
    let body: &[u8] = req.body().as_deref().unwrap_or_default();
    let query = req.uri().query();
    let path = req.uri().path().trim_end_matches('/');
    match (req.method().clone(), path) {
        (Method::GET, "/_emulator/stats") => to_json(StatusCode::OK, &heart.stats()),
        (Method::POST, "/_emulator/stats/reset") => {
            heart.reset_stats();
            ok(&json!({}))
        }
        (Method::GET, "/_emulator/faults") => to_json(StatusCode::OK, &heart.faults()),
        (Method::PUT, "/_emulator/faults") => answer(parse::<Faults>(body, "faults").map(|f| {
            heart.set_faults(f.clone());
            json!(f)
        })),
        (Method::POST, "/_emulator/faults/rules") => {
            answer(parse::<FaultRule>(body, "fault rule").map(|rule| {
                heart.add_fault(rule);
                json!(heart.faults())
            }))
        }
        (Method::POST, "/_emulator/advance") => advance(heart, body, query, now),
        (Method::POST, "/_emulator/revoke") => ok(&json!({ "revoked": heart.revoke_tokens() })),
        (Method::GET, "/_emulator/now") => ok(&json!({ "now": format_ts_millis(now) })),
        (Method::GET, "/_emulator/info") => ok(&json!({
            "base_url": heart.api_url(),
            "storage_url": heart.storage_url(),
            "client_id": heart.config.client_id,
            "client_secret": heart.config.client_secret,
            "now": format_ts_millis(now),
        })),
        (Method::GET, "/_emulator/expected") => expected(heart, query),
        (Method::GET, "/_emulator/schema") => schema(heart, query, now),
        (Method::POST, "/_emulator/schema/bump") => answer(bump(heart, body, now)),
        (Method::POST, "/_emulator/snapshot-required") => answer(reload(heart, body, now)),
        _ => to_json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("unknown control endpoint {path}") }),
        ),
    }
}

/// `POST /_emulator/advance`: `{"seconds": N}`, `{"millis": N}` or `?seconds=N`.
fn advance(heart: &Heart, body: &[u8], query: Option<&str>, now: i64) -> Resp {
    let adv = if body.iter().all(u8::is_ascii_whitespace) {
        let seconds = query_param(query, "seconds")
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        Advance { seconds, millis: 0 }
    } else {
        match parse::<Advance>(body, "advance") {
            Ok(a) => a,
            Err(e) => return bad(e),
        }
    };
    if !(adv.seconds.is_finite() && adv.seconds >= 0.0 && adv.millis >= 0) {
        return bad("advance must be finite and non-negative");
    }
    let ms = (adv.seconds * 1000.0).min(i64::MAX as f64 / 4.0) as i64;
    let by = ms.saturating_add(adv.millis);
    heart.advance(by);
    ok(&json!({ "now": format_ts_millis(now.saturating_add(by)) }))
}

/// `POST /_emulator/schema/bump`: `{"namespace", "table", "at"?}`.
fn bump(heart: &Heart, body: &[u8], now: i64) -> Result<Value, String> {
    let t: TableRef = parse(body, "schema bump")?;
    let at = t.at.map(|a| a.as_millisecond());
    let b = heart
        .bump_schema(&t.namespace, &t.table, at, now)
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "namespace": t.namespace,
        "table": t.table,
        "version": b.version,
        "effective_at": format_ts(b.effective_ms),
    }))
}

/// `POST /_emulator/snapshot-required`: `{"namespace", "table"}`.
fn reload(heart: &Heart, body: &[u8], now: i64) -> Result<Value, String> {
    let t: TableRef = parse(body, "table")?;
    let at = heart
        .require_snapshot(&t.namespace, &t.table, now)
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "namespace": t.namespace,
        "table": t.table,
        "reloaded_at": format_ts(at),
    }))
}

/// `GET /_emulator/schema?namespace=&table=`: the version now and the bump instants.
fn schema(heart: &Heart, query: Option<&str>, now: i64) -> Resp {
    let p = |k| query_param(query, k).unwrap_or_default();
    let (ns, t) = (p("namespace"), p("table"));
    answer(
        heart
            .schema_history(&ns, &t)
            .and_then(|h| {
                let version = heart.schema_version(&ns, &t, now)?;
                Ok(json!({
                    "version": version,
                    "bumps": h.bumps().iter().map(|b| format_ts(*b)).collect::<Vec<_>>(),
                }))
            })
            .map_err(|e| e.to_string()),
    )
}

/// `GET /_emulator/expected?namespace=&table=&at=` or `&since=&until=`: the expected
/// records as JSON Lines.
fn expected(heart: &Heart, query: Option<&str>) -> Resp {
    let p = |k| query_param(query, k);
    let ts = |k| {
        p(k).and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond())
    };
    let (Some(ns), Some(t)) = (p("namespace"), p("table")) else {
        return bad("namespace and table are required");
    };
    let range = match (ts("at"), ts("since"), ts("until")) {
        (Some(at_ms), None, None) => EmulatedRange::Snapshot { at_ms },
        (None, Some(since_ms), Some(until_ms)) => EmulatedRange::Incremental { since_ms, until_ms },
        _ => return bad("give either `at` or both `since` and `until` (RFC 3339)"),
    };
    match heart.expected_records(&ns, &t, range) {
        Some(records) => {
            let mut out = String::new();
            for r in records {
                r.write_jsonl(&mut out);
                out.push('\n');
            }
            with_type(StatusCode::OK, "application/x-ndjson", out)
        }
        None => to_json(StatusCode::NOT_FOUND, &json!({"error": "no such table"})),
    }
}
