//! The emulator's responses have the shapes (status, content type, field names, JSON
//! types) of the recorded vectors (kept in the repository at `core/tests/vectors`, a
//! copy of the project's shared set), which the official client accepts.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Client, Resp, UA, login_raw, request};
use dap_emulator::{Emulator, EmulatorConfig, Endpoint, FaultBody, FaultRule, Faults};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/vectors")
}

fn vector(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A structural fingerprint: object keys (recursively), array element shape, JSON types.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    // Maps keyed by object id.
                    if k.contains('/') {
                        ("<object id>".to_owned(), shape(v))
                    } else {
                        (k.clone(), shape(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(n) if n.is_f64() => json!("number"),
        Value::Number(_) => json!("integer"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

fn assert_like(dir: &Path, name: &str, got: &Resp) {
    let v = vector(dir, name);
    assert_eq!(
        u64::from(got.status),
        v["status"].as_u64().unwrap(),
        "{name}: {}",
        got.text()
    );
    let headers: BTreeMap<String, String> = serde_json::from_value(v["headers"].clone()).unwrap();
    for (k, want) in &headers {
        let have = got
            .header(k)
            .unwrap_or_else(|| panic!("{name}: no {k} header"));
        if k.eq_ignore_ascii_case("retry-after") {
            have.parse::<u64>().expect("Retry-After seconds");
        } else {
            assert_eq!(have, want, "{name}: header {k}");
        }
    }
    let body = v["body"].as_str().unwrap();
    if headers.get("Content-Type").map(String::as_str) == Some("application/json") {
        let want: Value = serde_json::from_str(body).unwrap();
        let mut want_shape = shape(&want);
        let mut got_shape = shape(&got.json());
        if name == "schema-ok" {
            // Table-specific column lists; compare the envelope and the key/meta parts.
            for s in [&mut want_shape, &mut got_shape] {
                s["schema"]["properties"]["value"] = json!("<columns>");
            }
        }
        assert_eq!(got_shape, want_shape, "{name}");
    } else {
        assert!(got.text().contains("502 Bad Gateway"), "{name}");
    }
}

#[test]
fn responses_match_the_recorded_vectors() {
    let dir = vectors_dir();
    assert!(
        dir.is_dir(),
        "the recorded vectors are missing: {}",
        dir.display()
    );
    let emu = Emulator::start(EmulatorConfig {
        job_waiting: Duration::from_secs(5),
        job_running: Duration::from_secs(5),
        ..EmulatorConfig::default()
    })
    .unwrap();
    assert_like(
        &dir,
        "login-ok",
        &login_raw(&emu, emu.client_id(), emu.client_secret()),
    );
    assert_like(
        &dir,
        "login-bad-credentials",
        &login_raw(&emu, emu.client_id(), "nope"),
    );
    let c = Client::login(&emu);
    assert_like(&dir, "tables-ok", &c.get("/dap/query/canvas/table"));
    assert_like(
        &dir,
        "tables-unknown-namespace",
        &c.get("/dap/query/nosuch/table"),
    );
    assert_like(
        &dir,
        "schema-ok",
        &c.get("/dap/query/canvas/table/accounts/schema"),
    );
    assert_like(
        &dir,
        "schema-unknown-table",
        &c.get("/dap/query/canvas/table/nosuch/schema"),
    );
    let unauth = request(
        "GET",
        &format!("{}/dap/query/canvas/table", emu.base_url()),
        &[UA],
        b"",
    );
    assert_like(&dir, "unauthorized-no-token", &unauth);

    let snap = c.query("canvas", "accounts", r#"{"format":"jsonl"}"#);
    assert_like(&dir, "query-snapshot-accepted", &snap);
    let snap_id = snap.json()["id"].as_str().unwrap().to_owned();
    let since = (emu.now() - jiff::SignedDuration::from_hours(2)).to_string();
    let inc = c.query(
        "canvas",
        "accounts",
        &json!({"format": "csv", "since": since}).to_string(),
    );
    assert_like(&dir, "query-incremental-accepted", &inc);
    let inc_id = inc.json()["id"].as_str().unwrap().to_owned();
    emu.advance_clock(Duration::from_secs(5));
    assert_like(&dir, "job-running", &c.get(&format!("/dap/job/{snap_id}")));
    assert_like(
        &dir,
        "job-running-incremental",
        &c.get(&format!("/dap/job/{inc_id}")),
    );
    emu.advance_clock(Duration::from_secs(5));
    let done = c.get(&format!("/dap/job/{snap_id}"));
    assert_like(&dir, "job-complete-snapshot", &done);
    assert_like(
        &dir,
        "job-complete-incremental",
        &c.get(&format!("/dap/job/{inc_id}")),
    );
    let oid = done.json()["objects"][0]["id"].clone();
    assert_like(
        &dir,
        "object-urls-ok",
        &c.post("/dap/object/url", &json!([{"id": oid}]).to_string()),
    );
    assert_like(
        &dir,
        "job-unknown",
        &c.get("/dap/job/00000000-0000-0000-0000-000000000000"),
    );

    assert_like(
        &dir,
        "query-out-of-range",
        &c.query(
            "canvas",
            "accounts",
            r#"{"format":"jsonl","since":"2020-01-01T00:00:00Z"}"#,
        ),
    );
    assert_like(
        &dir,
        "query-validation-error",
        &c.query("canvas", "accounts", r#"{"format":"xml"}"#),
    );
    emu.set_faults(Faults {
        snapshot_required: true,
        fail_jobs: true,
        ..Faults::default()
    });
    let since = (emu.now() - jiff::SignedDuration::from_hours(1)).to_string();
    assert_like(
        &dir,
        "query-snapshot-required",
        &c.query(
            "canvas",
            "accounts",
            &json!({"format": "jsonl", "since": since}).to_string(),
        ),
    );
    let failed = c.query("canvas", "users", r#"{"format":"jsonl"}"#);
    emu.advance_clock(Duration::from_secs(10));
    let failed_id = failed.json()["id"].as_str().unwrap().to_owned();
    let again = c.query("canvas", "users", r#"{"format":"jsonl"}"#);
    assert_eq!(again.json()["id"], failed_id.as_str());
    assert_like(&dir, "query-failed-job", &again);

    emu.set_faults(Faults {
        rules: vec![
            FaultRule::rate_storm(Endpoint::Tables, 1, 7),
            FaultRule::status(Endpoint::Tables, 1, 503, FaultBody::Json),
            FaultRule::status(Endpoint::Tables, 1, 502, FaultBody::Html),
        ],
        ..Faults::default()
    });
    assert_like(&dir, "rate-limited", &c.get("/dap/query/canvas/table"));
    assert_like(
        &dir,
        "service-unavailable",
        &c.get("/dap/query/canvas/table"),
    );
    assert_like(&dir, "gateway-html-502", &c.get("/dap/query/canvas/table"));
}
