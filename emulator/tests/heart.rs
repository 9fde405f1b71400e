//! Decisions of the sans-IO heart, driven without sockets on a frozen clock: job reuse,
//! schema bumps, reloads, URL lifetimes, pacing faults and jobs of many objects.

mod common;

use std::time::Duration;

use common::driver::{Driver, as_json, jsonl};
use common::{job_snapshot, ts_ms};
use dap_emulator::heart::{Listener, Pacing};
use dap_emulator::{EmulatedRange, EmulatorConfig, Endpoint, FaultAction, FaultRule, Faults};
use serde_json::{Value, json};

fn small() -> EmulatorConfig {
    EmulatorConfig {
        rows_per_table: Some(300),
        ..EmulatorConfig::default()
    }
}

#[test]
fn identical_queries_reuse_their_job_unless_turned_off() {
    let d = Driver::new(EmulatorConfig::default());
    let first = d.job("canvas", "users", r#"{"format":"csv"}"#);
    d.heart.set_faults(Faults {
        fail_jobs: true,
        ..Faults::default()
    });
    d.advance_secs(600);
    let again = d.job("canvas", "users", r#"{"format":"csv"}"#);
    assert_eq!(again["id"], first["id"], "reused for 24 h");
    assert_eq!(
        again["status"], "complete",
        "a fault set later never reaches it"
    );
    assert_eq!(again["at"], first["at"]);
    assert_eq!(
        d.job("canvas", "users", r#"{"format":"tsv"}"#)["status"],
        "failed"
    );
    d.advance_secs(24 * 3600);
    assert_ne!(
        d.job("canvas", "users", r#"{"format":"csv"}"#)["id"],
        first["id"]
    );

    let d = Driver::new(EmulatorConfig {
        reuse_jobs: false,
        ..EmulatorConfig::default()
    });
    let a = d.job("canvas", "users", r#"{"format":"csv"}"#);
    d.heart.set_faults(Faults {
        fail_jobs: true,
        ..Faults::default()
    });
    let b = d.job("canvas", "users", r#"{"format":"csv"}"#);
    assert_ne!(a["id"], b["id"]);
    assert_eq!(b["status"], "failed");
    assert_eq!(d.heart.stats().jobs_created, 2);
}

#[test]
fn a_schema_bump_changes_the_schema_and_the_data_from_its_instant() {
    let d = Driver::new(small());
    let schema = |d: &Driver| d.get("/dap/query/new_quizzes/table/items/schema").json();
    let before = d.job(
        "new_quizzes",
        "items",
        r#"{"format":"tsv","mode":"condensed"}"#,
    );
    let r = d.control(
        "POST",
        "/_emulator/schema/bump",
        r#"{"namespace":"new_quizzes","table":"items"}"#,
    );
    assert_eq!(r.status(), 200, "{}", r.json());
    assert_eq!(r.json()["version"], 2);
    let effective = ts_ms(&r.json()["effective_at"]);
    assert_eq!(
        effective,
        d.now_ms() / 1000 * 1000 + 1000,
        "the next second"
    );
    assert_eq!(schema(&d)["version"], 1, "not yet");
    d.advance_secs(1);
    let s = schema(&d);
    assert_eq!(s["version"], 2);
    let props = &s["schema"]["properties"]["value"]["properties"];
    assert_eq!(props["external_reference"]["maxLength"], 64);
    assert!(
        props["item_type"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("archived"))
    );
    let status = d.control(
        "GET",
        "/_emulator/schema?namespace=new_quizzes&table=items",
        "",
    );
    assert_eq!(status.json()["bumps"], json!([r.json()["effective_at"]]));

    d.advance_secs(3600);
    let inc = d.job(
        "new_quizzes",
        "items",
        &json!({"format": "tsv", "mode": "condensed", "since": before["at"]}).to_string(),
    );
    assert_eq!(
        (
            before["schema_version"].clone(),
            inc["schema_version"].clone()
        ),
        (json!(1), json!(2))
    );
    let text = &d.contents(&inc)[0];
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("\tvalue.external_reference")
    );
    assert!(
        text.contains("\tarchived\t"),
        "records after the bump use the new value"
    );
    let snap = d.job("new_quizzes", "items", r#"{"format":"jsonl"}"#);
    let want = d
        .heart
        .expected_records(
            "new_quizzes",
            "items",
            EmulatedRange::Snapshot {
                at_ms: ts_ms(&snap["at"]),
            },
        )
        .unwrap();
    assert_eq!(jsonl(&d.contents(&snap)), as_json(&want));
    assert!(want.iter().any(|r| r.value.as_ref().unwrap().len() == 13));
}

#[test]
fn schema_bumps_are_refused_when_they_cannot_happen() {
    let d = Driver::new(small());
    let bump = |body: &str| d.control("POST", "/_emulator/schema/bump", body);
    assert_eq!(
        bump(r#"{"namespace":"canvas","table":"nosuch"}"#).status(),
        400
    );
    assert_eq!(bump(r#"{"namespace":"canvas"}"#).status(), 400);
    let past = jiff::Timestamp::from_millisecond(d.now_ms() - 1000).unwrap();
    let r = bump(&json!({"namespace": "canvas", "table": "users", "at": past}).to_string());
    assert_eq!(r.status(), 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("after"),
        "{}",
        r.json()
    );
    for version in 3..=5 {
        let r = d.heart.bump_schema("canvas", "users", None, d.now_ms());
        assert_eq!(r.unwrap().version, version);
        d.advance_secs(2);
    }
    let r = bump(r#"{"namespace":"canvas","table":"users"}"#);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no further schema version")
    );
    assert_eq!(
        d.get("/dap/query/canvas/table/users/schema").json()["version"],
        5
    );
}

#[test]
fn a_reload_requires_a_snapshot_of_that_table_only() {
    let d = Driver::new(small());
    let users = d.job("canvas", "users", r#"{"format":"jsonl"}"#);
    let courses = d.job("canvas", "courses", r#"{"format":"jsonl"}"#);
    d.advance_secs(600);
    let inc = |t: &str, since: &Value| {
        d.query(
            "canvas",
            t,
            &json!({"format": "jsonl", "since": since}).to_string(),
        )
    };
    let reused = inc("users", &users["at"]);
    assert_eq!(reused.status(), 200);
    let r = d.control(
        "POST",
        "/_emulator/snapshot-required",
        r#"{"namespace":"canvas","table":"users"}"#,
    );
    assert_eq!(r.status(), 200);
    let refused = inc("users", &users["at"]);
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.json()["error"]["type"], "SnapshotRequired");
    assert_eq!(inc("courses", &courses["at"]).status(), 200);
    let fresh = d.job("canvas", "users", r#"{"format":"jsonl"}"#);
    assert_ne!(
        fresh["id"], users["id"],
        "the reload ends the snapshot's reuse"
    );
    d.advance_secs(600);
    assert_eq!(inc("users", &fresh["at"]).status(), 200);
    assert!(
        d.heart
            .require_snapshot("canvas", "nosuch", d.now_ms())
            .is_err()
    );
}

#[test]
fn urls_carry_their_expiry_and_honour_it() {
    let d = Driver::new(EmulatorConfig {
        url_lifetime: Duration::from_secs(60),
        ..small()
    });
    let job = d.job("canvas", "accounts", r#"{"format":"csv"}"#);
    assert!(d.urls(&job)[0].contains("&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&"));
    d.heart.set_faults(Faults {
        url_lifetime_secs: Some(2),
        ..Faults::default()
    });
    let url = d.urls(&job).remove(0);
    assert!(url.contains("&X-Amz-Expires=2&"), "{url}");
    d.advance_secs(2);
    assert_eq!(d.download(&url, &[]).status(), 200);
    d.heart.advance(1);
    let r = d.download(&url, &[]);
    assert_eq!(r.status(), 403);
    assert!(String::from_utf8_lossy(&r.body()).contains("Request has expired"));
}

#[test]
fn trickle_and_drop_are_pacing_decisions() {
    let d = Driver::new(small());
    let job = d.job("canvas", "users", r#"{"format":"jsonl"}"#);
    let url = d.urls(&job).remove(0);
    d.heart.set_faults(Faults {
        rules: vec![
            FaultRule::trickle(Endpoint::Storage, 1, Duration::from_millis(250)),
            FaultRule::new(Endpoint::Storage, 1, FaultAction::DropAfter { bytes: 10 }),
            FaultRule::new(
                Endpoint::Tables,
                1,
                serde_json::from_value(json!({"trickle": {"bytes": 3, "after_bytes": 5}})).unwrap(),
            ),
            FaultRule::new(Endpoint::Job, 1, FaultAction::DropAfter { bytes: 10 }),
        ],
        ..Faults::default()
    });
    let full = d.download(&url, &[]);
    assert_eq!(
        full.pacing,
        Pacing::Trickle {
            bytes: 1,
            interval: Duration::from_millis(250),
            after_bytes: 0
        }
    );
    assert_eq!(full.status(), 200, "headers first, then the slow body");
    let dropped = d.download(&url, &[("Range", "bytes=4-")]);
    assert_eq!(dropped.pacing, Pacing::DropAfter { bytes: 10 });
    assert_eq!(&dropped.body()[..], &full.body()[4..]);
    let tables = d.get("/dap/query/canvas/table");
    assert_eq!(tables.status(), 200);
    assert_eq!(
        tables.pacing,
        Pacing::Trickle {
            bytes: 3,
            interval: Duration::from_secs(1),
            after_bytes: 5
        }
    );
    let status = d.get(&format!("/dap/job/{}", job["id"].as_str().unwrap()));
    assert_eq!(status.pacing, Pacing::Full, "drops are for storage only");
    assert_eq!(d.heart.faults().rules.len(), 1);
    assert_eq!(d.heart.stats().faults_injected, 3);
}

#[test]
fn a_job_of_twenty_thousand_objects_keeps_memory_bounded() {
    let d = Driver::new(EmulatorConfig {
        objects_per_job: 20_000,
        object_cache_bytes: 256 << 10,
        ..EmulatorConfig::default()
    });
    let job = d.job("canvas", "users", r#"{"format":"jsonl"}"#);
    let objects = job["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 20_000);
    let urls = d.urls(&job);
    assert_eq!(urls.len(), 20_000);
    let mut got = Vec::new();
    for u in &urls {
        let r = d.download(u, &[]);
        assert_eq!(r.status(), 200);
        got.extend(jsonl(&[String::from_utf8(
            common::gunzip(&r.body()).unwrap(),
        )
        .unwrap()]));
    }
    assert!(d.heart.cached_object_bytes() <= 256 << 10);
    let want = d
        .heart
        .expected_records("canvas", "users", job_snapshot(&job))
        .unwrap();
    assert_eq!(got, as_json(&want));
    // Object names are derived, not stored: an unknown index is refused.
    let bad = urls[0].replace("part-00000-", "part-20000-");
    assert_eq!(
        d.download(&bad, &[]).status(),
        403,
        "the signature covers the name"
    );
    let id = objects[0]["id"]
        .as_str()
        .unwrap()
        .replace("part-00000-", "part-20000-");
    let r = d.post("/dap/object/url", &json!([{"id": id}]).to_string());
    assert_eq!(r.status(), 404);
}

#[test]
fn control_and_storage_need_no_token_but_dap_does() {
    let d = Driver::new(small());
    let r = d.send(
        Listener::Api,
        "GET",
        "/dap/query/canvas/table",
        &[common::UA],
        b"",
    );
    assert_eq!(r.status(), 401);
    assert_eq!(d.control("GET", "/_emulator/stats", "").status(), 200);
    let r = d.control("POST", "/_emulator/advance", r#"{"seconds": 1.5}"#);
    assert_eq!(r.json()["now"], "2026-01-01T00:00:01.500Z");
    let body = d.heart.handle(
        Listener::Api,
        http::Request::post("/_emulator/faults/rules")
            .body(None)
            .unwrap(),
        0,
    );
    assert_eq!(body.status(), 400, "an unreadable body is refused");
}
