//! The API over real TCP: login, catalog, queries in every format, jobs, chaining.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{
    Client, UA, check_export, check_tabular, download_all, job_snapshot, login_raw, request, ts_ms,
};
use dap_emulator::data::Action;
use dap_emulator::{EmulatedRange, Emulator, EmulatorConfig, Faults, Record};
use serde_json::{Value, json};

fn start() -> Emulator {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

#[test]
fn login_issues_a_signed_jwt() {
    let emu = start();
    let r = login_raw(
        &emu,
        dap_emulator::DEMO_CLIENT_ID,
        dap_emulator::DEMO_CLIENT_SECRET,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "expires_in", "scope", "token_type"]);
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(
        v["scope"],
        "dap principal:demo-client partner:instructure region:us-east-1"
    );
    let parts: Vec<&str> = v["access_token"].as_str().unwrap().split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["sub"], "us-east-1#demo-client");
    let iat = payload["iat"].as_i64().unwrap();
    assert_eq!(payload["exp"].as_i64().unwrap() - iat, 3600);
    assert!((iat - emu.now_ms() / 1000).abs() <= 2);
    let stats = emu.stats();
    assert_eq!((stats.logins, stats.tokens_issued), (1, 1));
}

#[test]
fn login_rejects_bad_requests() {
    let emu = start();
    let bad = login_raw(&emu, emu.client_id(), "wrong");
    assert_eq!(bad.status, 401);
    let e = bad.error();
    assert_eq!(e["type"], "AuthenticationError");
    assert_eq!(
        e.as_object().unwrap().len(),
        3,
        "type, uuid, message only: {e}"
    );
    // The id must be checked raw: a form-encoded `#` is a different id.
    let encoded = login_raw(&emu, "us-east-1%23demo-client", emu.client_secret());
    assert_eq!(encoded.status, 401);
    let url = format!("{}/ids/auth/login", emu.base_url());
    let auth = common::basic(emu.client_id(), emu.client_secret());
    let no_ct = request(
        "POST",
        &url,
        &[UA, ("Authorization", &auth)],
        b"grant_type=client_credentials",
    );
    assert_eq!(no_ct.status, 400);
    assert_eq!(no_ct.error()["type"], "ValidationError");
    let wrong_grant = request(
        "POST",
        &url,
        &[
            UA,
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"grant_type=password",
    );
    assert_eq!(wrong_grant.status, 400);
    let no_auth = request("POST", &url, &[UA], b"");
    assert_eq!(no_auth.status, 401);
    let get = request("GET", &url, &[UA], b"");
    assert_eq!(get.status, 405);
    assert_eq!(emu.stats().login_failures, 5);
}

#[test]
fn dap_requires_user_agent_and_valid_token() {
    let emu = start();
    let c = Client::login(&emu);
    let url = format!("{}/dap/query/canvas/table", emu.base_url());
    let bearer = format!("Bearer {}", c.token);
    let no_ua = request("GET", &url, &[("Authorization", &bearer)], b"");
    assert_eq!(no_ua.status, 403);
    assert!(
        no_ua.error()["message"]
            .as_str()
            .unwrap()
            .contains("User-Agent")
    );
    let no_token = request("GET", &url, &[UA], b"");
    assert_eq!(no_token.status, 401);
    assert_eq!(
        no_token.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(no_token.error()["type"], "AuthenticationError");
    let forged = request("GET", &url, &[UA, ("Authorization", "Bearer a.b.c")], b"");
    assert_eq!(forged.status, 401);
    let instauth = request("GET", &url, &[UA, ("x-instauth", &c.token)], b"");
    assert_eq!(instauth.status, 200);
    let scoped = c.get("/dap/query/canvas/table?scope=root");
    assert_eq!(scoped.status, 200);
    let s = emu.stats();
    assert_eq!((s.missing_user_agent, s.unauthorized), (1, 2));
    assert_eq!(s.requests.tables, 5);
}

#[test]
fn tokens_expire_and_can_be_revoked() {
    let emu = Emulator::start(EmulatorConfig {
        token_lifetime: Duration::from_secs(60),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let c = Client::login(&emu);
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    emu.advance_clock(Duration::from_secs(61));
    let r = c.get("/dap/query/canvas/table");
    assert_eq!(r.status, 401);
    assert!(r.error()["message"].as_str().unwrap().contains("expired"));

    let c = Client::login(&emu);
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    assert_eq!(emu.revoke_tokens(), 2);
    let r = c.get("/dap/query/canvas/table");
    assert_eq!(r.status, 401);
    assert!(r.error()["message"].as_str().unwrap().contains("revoked"));
    let c = Client::login(&emu);
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);

    // A runtime short lifetime.
    emu.set_faults(Faults {
        token_lifetime_secs: Some(5),
        ..Faults::default()
    });
    let r = login_raw(&emu, emu.client_id(), emu.client_secret());
    assert_eq!(r.json()["expires_in"], 5);
}

#[test]
fn catalog_and_schemas() {
    let emu = start();
    let c = Client::login(&emu);
    for ns in dap_emulator::data::NAMESPACES {
        let r = c.get(&format!("/dap/query/{ns}/table"));
        assert_eq!(r.status, 200);
        let tables: Vec<String> = serde_json::from_value(r.json()["tables"].clone()).unwrap();
        assert_eq!(tables, dap_emulator::data::tables(ns).unwrap());
        for t in &tables {
            let r = c.get(&format!("/dap/query/{ns}/table/{t}/schema"));
            assert_eq!(r.status, 200);
            let v = r.json();
            assert_eq!(v.as_object().unwrap().len(), 2);
            assert!(v["version"].as_u64().unwrap() >= 1);
            let props = &v["schema"]["properties"];
            assert_eq!(props["key"]["required"], json!(["id"]));
            assert_eq!(
                props["meta"]["properties"]["action"]["enum"],
                json!(["U", "D"])
            );
        }
    }
    assert!(
        c.get("/dap/query/canvas/table").json()["tables"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    );
    let r = c.get("/dap/query/nosuch/table");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.error(),
        json!({"type": "ObjectNotFound", "uuid": r.error()["uuid"], "message": "namespace not found: nosuch", "id": "nosuch", "kind": "namespace"})
    );
    let r = c.get("/dap/query/canvas/table/nosuch/schema");
    assert_eq!(r.status, 404);
    assert_eq!(r.error()["kind"], "table");
    let r = c.get("/dap/query/canvas/table/accounts/schema");
    assert_eq!(
        r.json()["schema"]["properties"]["value"]["properties"]["name"]["maxLength"],
        255
    );
}

#[test]
fn snapshot_then_incremental_in_every_format() {
    let emu = start();
    let mut c = Client::login(&emu);
    let mut awkward_seen = false;
    for (ns, table) in [
        ("canvas", "courses"),
        ("canvas", "submissions"),
        ("canvas_logs", "web_logs"),
        ("catalog", "products"),
    ] {
        let mut ats = Vec::new();
        for format in ["jsonl", "csv", "tsv"] {
            let job = c.complete_job(ns, table, &json!({"format": format}).to_string());
            assert_eq!(job["status"], "complete");
            let keys: Vec<&String> = job.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                [
                    "at",
                    "expires_at",
                    "id",
                    "objects",
                    "schema_version",
                    "status"
                ]
            );
            let oid = job["objects"][0]["id"].as_str().unwrap();
            let ext = if format == "jsonl" { "json" } else { format };
            assert!(
                oid.starts_with(job["id"].as_str().unwrap())
                    && oid.ends_with(&format!("-c000.{ext}.gz")),
                "{oid}"
            );
            let at = ts_ms(&job["at"]);
            assert_eq!(at % 1000, 0);
            let expected = emu
                .expected_records(ns, table, EmulatedRange::Snapshot { at_ms: at })
                .unwrap();
            assert!(!expected.is_empty());
            let files = download_all(&c, &job);
            awkward_seen |= files[0].contains("日本語");
            check_export(format, &files, &expected);
            ats.push((format, job["at"].clone()));
        }
        emu.advance_clock(Duration::from_secs(3600));
        // The one-hour token expired with the jump.
        c = Client::login(&emu);
        for (format, at) in ats {
            let body = json!({"format": format, "since": at}).to_string();
            let job = c.complete_job(ns, table, &body);
            assert_eq!(job["since"], at);
            let keys: Vec<&String> = job.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                [
                    "expires_at",
                    "id",
                    "objects",
                    "schema_version",
                    "since",
                    "status",
                    "until"
                ]
            );
            let range = EmulatedRange::Incremental {
                since_ms: ts_ms(&at),
                until_ms: ts_ms(&job["until"]),
            };
            let expected = emu.expected_records(ns, table, range).unwrap();
            // One hour at one change per minute touches up to 60 keys.
            assert!(expected.len() >= 30, "{} changes", expected.len());
            assert!(expected.iter().any(|r| r.action == Some(Action::Delete)));
            let files = download_all(&c, &job);
            check_export(format, &files, &expected);
        }
    }
    assert!(awkward_seen);
}

#[test]
fn chained_incrementals_rebuild_the_snapshot() {
    let emu = start();
    let c = Client::login(&emu);
    let snap = c.complete_job("canvas", "users", r#"{"format":"jsonl"}"#);
    let mut state: std::collections::BTreeMap<i64, Value> = download_all(&c, &snap)[0]
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["key"]["id"].as_i64().unwrap(), v)
        })
        .collect();
    let mut since = snap["at"].clone();
    for _ in 0..3 {
        emu.advance_clock(Duration::from_secs(1800));
        let c = Client::login(&emu);
        let job = c.complete_job(
            "canvas",
            "users",
            &json!({"format": "jsonl", "since": since}).to_string(),
        );
        for l in download_all(&c, &job)[0].lines() {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let id = v["key"]["id"].as_i64().unwrap();
            if v["meta"]["action"] == "D" {
                assert!(v.get("value").is_none());
                state.remove(&id);
            } else {
                v["meta"].as_object_mut().unwrap().remove("action");
                state.insert(id, v);
            }
        }
        since = job["until"].clone();
    }
    let expected: Vec<Value> = emu
        .expected_records(
            "canvas",
            "users",
            EmulatedRange::Snapshot {
                at_ms: ts_ms(&since),
            },
        )
        .unwrap()
        .iter()
        .map(Record::to_json)
        .collect();
    assert_eq!(state.into_values().collect::<Vec<_>>(), expected);
}

#[test]
fn condensed_mode_keeps_nested_fields_together() {
    let emu = start();
    let c = Client::login(&emu);
    let job = c.complete_job(
        "canvas",
        "courses",
        r#"{"format":"tsv","mode":"condensed"}"#,
    );
    let text = &download_all(&c, &job)[0];
    let header = text.lines().next().unwrap();
    assert!(header.contains("\tvalue.settings\t"), "{header}");
    assert!(!header.contains("value.settings."));
    let expected = emu
        .expected_records("canvas", "courses", job_snapshot(&job))
        .unwrap();
    check_tabular("tsv", text, &expected);
    let expanded = c.complete_job("canvas", "courses", r#"{"format":"csv","mode":"expanded"}"#);
    assert!(download_all(&c, &expanded)[0].contains(",value.settings.hide_final_grades,"));
}

#[test]
fn several_objects_per_job_split_the_records() {
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: 3,
        ..EmulatorConfig::default()
    })
    .unwrap();
    let c = Client::login(&emu);
    let job = c.complete_job("canvas", "users", r#"{"format":"jsonl"}"#);
    assert_eq!(job["objects"].as_array().unwrap().len(), 3);
    let files = download_all(&c, &job);
    let expected = emu
        .expected_records("canvas", "users", job_snapshot(&job))
        .unwrap();
    check_export("jsonl", &files, &expected);
    assert!(files.iter().all(|f| !f.is_empty()));
}

#[test]
fn weird_requests_get_http_errors() {
    let emu = start();
    let c = Client::login(&emu);
    for path in [
        "/",
        "/dap",
        "/dap/",
        "/dap/job/",
        "/dap/query//table",
        "/dap/query/canvas/table/accounts",
        "/dap/%ff/x",
        "/ids/auth/login/x",
    ] {
        let r = c.get(path);
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
    }
    assert_eq!(c.post("/dap/query/canvas/table", "{}").status, 405);
    let big = "x".repeat(2 << 20);
    let r = c.query("canvas", "accounts", &big);
    assert_eq!(r.status, 400);
    let r = c.query("canvas", "accounts", "\u{0}\u{1}binary");
    assert_eq!(r.status, 400);
    // A garbage request line is refused by the HTTP layer; the server keeps working.
    let mut s = std::net::TcpStream::connect(emu.addr()).unwrap();
    std::io::Write::write_all(&mut s, b"NOT HTTP\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
}

#[test]
fn control_endpoints_over_http() {
    let emu = start();
    let base = emu.base_url();
    // A request to the control endpoint `path`, without headers.
    let control = |method: &str, path: &str, body: &[u8]| {
        request(method, &format!("{base}/_emulator/{path}"), &[], body)
    };
    let c = Client::login(&emu);
    let faults = json!({"rules": [{"endpoint": "tables", "count": 1, "action": {"status": {"status": 503}}}]});
    let r = request(
        "PUT",
        &format!("{base}/_emulator/faults"),
        &[("Content-Type", "application/json")],
        faults.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(emu.faults().rules.len(), 1);
    assert_eq!(c.get("/dap/query/canvas/table").status, 503);
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    let rule = json!({"endpoint": "tables", "count": 1, "action": {"status": {"status": 502, "body": "html"}}});
    let r = control("POST", "faults/rules", rule.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("/dap/query/canvas/table").status, 502);
    let bad = control("PUT", "faults", br#"{"nope": 1}"#);
    assert_eq!(bad.status, 400);
    let before = emu.now_ms();
    let r = control("POST", "advance", br#"{"seconds": 7200}"#);
    assert_eq!(r.status, 200);
    assert!(emu.now_ms() - before >= 7_200_000);
    let r = control("POST", "advance?seconds=60", b"");
    assert_eq!(r.status, 200);
    assert!(emu.now_ms() - before >= 7_260_000);
    let r = control("POST", "revoke", b"");
    assert_eq!(r.json()["revoked"], 1);
    assert_eq!(c.get("/dap/query/canvas/table").status, 401);
    let stats = control("GET", "stats", b"").json();
    assert_eq!(stats["requests"]["tables"], 4, "{stats}");
    assert_eq!(stats["logins"], 1);
    let info = control("GET", "info", b"").json();
    assert_eq!(info["client_id"], emu.client_id());
    assert_eq!(info["storage_url"], emu.storage_url());
    let at = emu.now().to_string();
    let exp = control(
        "GET",
        &format!("expected?namespace=canvas&table=accounts&at={at}"),
        b"",
    );
    assert_eq!(exp.status, 200);
    assert!(exp.text().lines().count() > 5);
    let r = control("POST", "stats/reset", b"");
    assert_eq!(r.status, 200);
    assert_eq!(emu.stats(), dap_emulator::Stats::default());
}

#[tokio::test]
async fn starts_and_stops_inside_an_async_runtime() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let url = format!("{}/_emulator/now", emu.base_url());
    let r = tokio::task::spawn_blocking(move || request("GET", &url, &[], b""))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    drop(emu);
}

#[test]
fn drop_shuts_down_the_listeners() {
    let emu = start();
    let addr = emu.addr();
    drop(emu);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_frozen_clock_moves_only_when_advanced() {
    let t0 = 1_790_000_000_000; // 2026-09-21T14:13:20Z
    let emu = Emulator::start(EmulatorConfig {
        frozen_clock_ms: Some(t0),
        ..EmulatorConfig::default()
    })
    .unwrap();
    assert_eq!(emu.now_ms(), t0);
    let c = Client::login(&emu);
    let job = c.complete_job("canvas", "accounts", r#"{"format":"jsonl"}"#);
    assert_eq!(ts_ms(&job["at"]), t0);
    emu.advance_clock(Duration::from_millis(1500));
    assert_eq!(emu.now_ms(), t0 + 1500);
}

#[test]
fn the_binary_prints_its_url_and_credentials() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dap-emulator"))
        .args(["--port", "0", "--token-lifetime", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first.rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    let rest: Vec<String> = lines.by_ref().take(8).map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l == "export DAP_CLIENT_ID='us-east-1#demo-client'"),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l == &format!("export DAP_API_URL={base}"))
    );
    let url = format!("{base}/ids/auth/login");
    let auth = common::basic(
        dap_emulator::DEMO_CLIENT_ID,
        dap_emulator::DEMO_CLIENT_SECRET,
    );
    let r = request(
        "POST",
        &url,
        &[
            UA,
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"grant_type=client_credentials",
    );
    assert_eq!(r.json()["expires_in"], 120);
    let _ = child.kill();
    let _ = child.wait();
}
