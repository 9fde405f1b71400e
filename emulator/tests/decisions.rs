//! Decisions about queries, jobs and object URLs, made by the sans-IO heart without
//! sockets on a frozen clock.

mod common;

use std::time::Duration;

use common::driver::Driver;
use common::ts_ms;
use dap_emulator::{EmulatorConfig, Faults};
use serde_json::json;

fn now(d: &Driver) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(d.now_ms()).unwrap()
}

#[test]
fn jobs_progress_deduplicate_and_expire() {
    let c = Driver::new(EmulatorConfig {
        job_waiting: Duration::from_secs(10),
        job_running: Duration::from_secs(10),
        ..EmulatorConfig::default()
    });
    let r = c.query("canvas", "accounts", r#"{"format":"jsonl"}"#);
    assert_eq!(r.status(), 202);
    let job = r.json();
    assert_eq!(job["status"], "waiting");
    assert_eq!(job.as_object().unwrap().len(), 3, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let expires = ts_ms(&job["expires_at"]);
    assert!(job["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!((expires - c.now_ms() - 24 * 3600 * 1000).abs() < 5000);
    let again = c.query("canvas", "accounts", r#"{ "format": "jsonl" }"#);
    assert_eq!(again.json()["id"], id.as_str());
    let other = c.query("canvas", "accounts", r#"{"format":"csv"}"#);
    assert_ne!(other.json()["id"], id.as_str());
    c.advance_secs(10);
    let r = c.get(&format!("/dap/job/{id}"));
    assert_eq!(
        (r.status().as_u16(), r.json()["status"].as_str().unwrap()),
        (202, "running")
    );
    c.advance_secs(10);
    let r = c.get(&format!("/dap/job/{id}"));
    assert_eq!(
        (r.status().as_u16(), r.json()["status"].as_str().unwrap()),
        (200, "complete")
    );
    let r = c.query("canvas", "accounts", r#"{"format":"jsonl"}"#);
    assert_eq!(
        (r.status().as_u16(), r.json()["id"].as_str().unwrap()),
        (200, id.as_str())
    );
    assert_eq!(r.json()["expires_at"], job["expires_at"]);
    c.advance_secs(24 * 3600);
    let r = c.get(&format!("/dap/job/{id}"));
    assert_eq!(r.status(), 404);
    let e = r.json()["error"].clone();
    assert_eq!(
        (e["type"].as_str(), e["kind"].as_str(), e["id"].as_str()),
        (Some("ObjectNotFound"), Some("job"), Some(id.as_str()))
    );
    // After expiry the same query makes a new job.
    let r = c.query("canvas", "accounts", r#"{"format":"jsonl"}"#);
    assert_ne!(r.json()["id"], id.as_str());
    assert_eq!(c.heart.stats().jobs_created, 3);
}

#[test]
fn query_validation_errors() {
    let c = Driver::new(EmulatorConfig::default());
    let q = |body: &str| {
        let r = c.query("canvas", "accounts", body);
        assert_eq!(r.status(), 400, "{body}: {}", r.json());
        r.json()["error"].clone()
    };
    let e = q("{\"format\":\"jsonl\",\n  \"filter\": {}}");
    assert_eq!(e["type"], "ValidationError");
    assert_eq!(
        e["location"],
        json!({"line": 2, "column": 3, "character": 22})
    );
    assert_eq!(e.as_object().unwrap().len(), 4);
    assert!(
        q(r#"{"format":"xml"}"#)["message"]
            .as_str()
            .unwrap()
            .contains("must be one of")
    );
    assert!(
        q(r#"{"format":"parquet"}"#)["message"]
            .as_str()
            .unwrap()
            .contains("not supported by the emulator")
    );
    assert_eq!(
        q(r#"{"format":"jsonl","mode":"expanded"}"#)["type"],
        "ValidationError"
    );
    assert_eq!(
        q(r#"{"format":"csv","mode":"wide"}"#)["type"],
        "ValidationError"
    );
    assert_eq!(q(r#"{}"#)["type"], "ValidationError");
    assert_eq!(q(r#"[1]"#)["type"], "ValidationError");
    let e = q("{\"format\": ");
    assert_eq!(e["type"], "ValidationError");
    assert_eq!(e["location"]["line"], 1);
    q(r#"{"format":"csv","since":"yesterday"}"#);
    q(r#"{"format":"csv","since":"2026-01-01T00:00:00"}"#);
    q(r#"{"format":"csv","until":"2026-01-01T00:00:00Z"}"#);
    let now = now(&c);
    let recent = (now - jiff::SignedDuration::from_hours(1)).to_string();
    let later = (now - jiff::SignedDuration::from_hours(2)).to_string();
    q(&json!({"format": "csv", "since": recent, "until": later}).to_string());
    q(&json!({"format": "csv", "since": recent, "until": recent}).to_string());
    let future = (now + jiff::SignedDuration::from_hours(1)).to_string();
    q(&json!({"format": "csv", "since": future}).to_string());
    let e = q(r#"{"format":"csv","since":"2020-01-01T00:00:00Z"}"#);
    assert_eq!(e["type"], "OutOfRange");
    assert_eq!(
        e["message"].as_str().unwrap(),
        format!(
            "The 'since' parameter in the request (2020-01-01T00:00:00Z) precedes the earliest data available ({}).",
            e["since"].as_str().unwrap()
        )
    );
    assert_eq!(e.as_object().unwrap().len(), 5);
    let earliest = ts_ms(&e["since"]);
    assert!((c.now_ms() - earliest - 30 * 86_400_000).abs() < 5000);
    // An unknown table is a 404 for queries too; an offset other than Z is accepted.
    assert_eq!(
        c.query("canvas", "nosuch", r#"{"format":"csv"}"#).status(),
        404
    );
    let offset = (now - jiff::SignedDuration::from_hours(1))
        .display_with_offset(jiff::tz::offset(2))
        .to_string();
    assert!(offset.contains("+02:00"), "{offset}");
    assert_eq!(
        c.query(
            "canvas",
            "accounts",
            &json!({"format": "csv", "since": offset}).to_string()
        )
        .status(),
        200
    );
}

#[test]
fn snapshot_required_switch_and_failed_jobs() {
    let c = Driver::new(EmulatorConfig::default());
    let since = (now(&c) - jiff::SignedDuration::from_hours(1)).to_string();
    let body = json!({"format": "jsonl", "since": since}).to_string();
    c.heart.set_faults(Faults {
        snapshot_required_tables: vec!["canvas.users".into()],
        ..Faults::default()
    });
    let r = c.query("canvas", "users", &body);
    assert_eq!(r.status(), 400);
    let e = r.json()["error"].clone();
    assert_eq!(e["type"], "SnapshotRequired");
    assert!(e["since"].is_string() && e["until"].is_string());
    assert_eq!(c.query("canvas", "accounts", &body).status(), 200);
    c.heart.set_faults(Faults {
        snapshot_required: true,
        ..Faults::default()
    });
    assert_eq!(
        c.query(
            "canvas",
            "accounts",
            &json!({"format": "csv", "since": since}).to_string()
        )
        .status(),
        400
    );
    // Snapshots are unaffected.
    assert_eq!(
        c.query("canvas", "accounts", r#"{"format":"csv"}"#)
            .status(),
        200
    );

    c.heart.set_faults(Faults {
        fail_jobs: true,
        ..Faults::default()
    });
    let r = c.query("canvas", "quizzes", r#"{"format":"jsonl"}"#);
    assert_eq!(r.status(), 200);
    let job = r.json();
    assert_eq!(job["status"], "failed");
    let keys: Vec<&String> = job.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "expires_at", "id", "status"]);
    assert_eq!(job["error"]["type"], "ProcessingError");
    assert_eq!(job["error"].as_object().unwrap().len(), 3);
    let r = c.post(
        "/dap/object/url",
        &json!([{"id": format!("{}/x", job["id"].as_str().unwrap())}]).to_string(),
    );
    assert_eq!(r.status(), 404);
}

#[test]
fn object_url_errors() {
    let c = Driver::new(EmulatorConfig::default());
    let r = c.post("/dap/object/url", r#"[{"id":"nope/part-00000.json.gz"}]"#);
    assert_eq!(r.status(), 404);
    assert_eq!(r.json()["error"].clone()["kind"], "object");
    assert_eq!(c.post("/dap/object/url", "{").status(), 400);
    assert_eq!(c.post("/dap/object/url", r#"{"id":"x"}"#).status(), 400);
    assert_eq!(
        c.post("/dap/object/url", r#"[{"id":"x","y":1}]"#).status(),
        400
    );
    assert_eq!(c.post("/dap/object/url", "[]").json(), json!({"urls": {}}));
    let job = c.job("canvas", "accounts", r#"{"format":"csv"}"#);
    let urls = c.urls(&job);
    assert!(urls[0].starts_with(&c.heart.storage_url()), "{}", urls[0]);
    assert_ne!(c.heart.storage_url(), c.heart.api_url());
    assert!(urls[0].contains("X-Amz-Expires=900") && urls[0].contains("X-Amz-Signature="));
}
