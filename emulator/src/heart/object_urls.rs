//! Object URLs: `POST /dap/object/url` with `[{"id": "<job>/<file>"}, ...]`.

use std::collections::HashSet;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::Heart;
use super::jobs::find_job;
use super::reply::{Resp, START, json_response};
use super::route::json_body;
use crate::data::write_json_str;
use crate::job::JobStatus;
use crate::signing::presign;

/// The object ids of a request body, or why it is malformed.
fn object_ids(value: &Value) -> Result<Vec<&str>, &'static str> {
    let items = value
        .as_array()
        .ok_or("expected a JSON array of {\"id\": ...} objects")?;
    items
        .iter()
        .map(|item| {
            item.as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .ok_or("every item must be an object with exactly one string field `id`")
        })
        .collect()
}

/// `POST /dap/object/url`: one pre-signed URL per object of a complete live job,
/// signed now and valid for the URL lifetime (the switch, else the configuration).
pub(super) fn object_urls(heart: &Heart, body: Option<&Bytes>, now: i64) -> Resp {
    let value = match json_body(body) {
        Ok((_, v)) => v,
        Err(e) => return heart.validation(e.message, e.location),
    };
    let ids = match object_ids(&value) {
        Ok(ids) => ids,
        Err(msg) => return heart.validation(msg, START),
    };
    let lifetime = heart
        .lock()
        .faults
        .url_lifetime_secs
        .unwrap_or(heart.config.url_lifetime.as_secs());
    let storage = heart.storage_url();
    // Written directly: a job may have tens of thousands of objects.
    let mut out = String::with_capacity(ids.len() * 420 + 16);
    out.push_str("{\"urls\":{");
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        let found = id.split_once('/').and_then(|(job_id, file)| {
            let job = find_job(heart, job_id, now)?;
            let complete = job.status(&heart.config, now) == JobStatus::Complete;
            (complete && job.object_index(file).is_some()).then_some((job_id, file))
        });
        let Some((job_id, file)) = found else {
            return heart.not_found("object", id);
        };
        if seen.len() > 1 {
            out.push(',');
        }
        write_json_str(&mut out, id);
        out.push_str(":{\"url\":");
        let url = presign(&heart.url_key, &storage, job_id, file, now, lifetime);
        write_json_str(&mut out, &url);
        out.push('}');
    }
    out.push_str("}}");
    json_response(StatusCode::OK, out)
}
