//! Every public value that holds a secret, formatted every way, shows none of it.

use dap_proto::api;
use dap_proto::testing::*;
use dap_proto::{
    AccessToken, ClientSecret, Command, Config, Credentials, Format, ObjectId, ObjectUrl,
    PresignedUrl, Transfer,
};

const TOKEN: &str = "eyJTOKEN-VALUE-123";
const SIGNATURE: &str = "X-Amz-Signature=deadbeefcafe";

fn assert_clean(what: &str, text: &str) {
    for secret in [SECRET, TOKEN, "deadbeefcafe", "VE9QU0VDUkVU"] {
        assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
    }
}

fn all_forms(what: &str, debug: String, display: Option<String>) {
    assert_clean(what, &debug);
    if let Some(d) = display {
        assert_clean(what, &d);
    }
}

#[test]
fn secret_types() {
    let s = ClientSecret::new(SECRET);
    let t = AccessToken::new(TOKEN);
    let u = PresignedUrl::new(format!("https://b.s3.example/out/p.json.gz?{SIGNATURE}"));
    all_forms("ClientSecret", format!("{s:?} {s:#?}"), Some(s.to_string()));
    all_forms("AccessToken", format!("{t:?} {t:#?}"), Some(t.to_string()));
    all_forms("PresignedUrl", format!("{u:?} {u:#?}"), Some(u.to_string()));
    let c = Credentials::new("us-east-1#id", s);
    all_forms("Credentials", format!("{c:?} {c:#?}"), None);
}

#[test]
fn config_and_builder() {
    let b = Config::builder("us-east-1#id", SECRET);
    all_forms("ConfigBuilder", format!("{b:?} {b:#?}"), None);
    let c = b.build().unwrap();
    all_forms("Config", format!("{c:?} {c:#?}"), None);
    // The empty-secret error names the problem, not a value.
    let e = Config::builder("id", "").build().unwrap_err();
    all_forms("ConfigError", format!("{e:?}"), Some(e.to_string()));
}

#[test]
fn requests_mark_auth_headers_sensitive() {
    let c = config().build().unwrap();
    let login = api::login::request(&c).unwrap();
    assert!(login.headers()["authorization"].is_sensitive());
    all_forms("login request", format!("{login:?}"), None);
    let t = AccessToken::new(TOKEN);
    let r = api::tables::request(&c, &t, "canvas").unwrap();
    assert!(r.headers()["authorization"].is_sensitive());
    all_forms("api request", format!("{r:?}"), None);
    let x = Config::builder("id", SECRET)
        .token_header(dap_proto::TokenHeader::XInstAuth)
        .build()
        .unwrap();
    let r = api::tables::request(&x, &t, "canvas").unwrap();
    assert!(r.headers()["x-instauth"].is_sensitive());
    all_forms("api request", format!("{r:?}"), None);
}

#[test]
fn session_outputs_results_and_errors() {
    let mut h = Harness::new(config().build().unwrap());
    let q = h.start(snapshot(Format::Jsonl));
    let bad = h.start(Command::Schema {
        namespace: "canvas".into(),
        table: "accounts".into(),
    });
    let mut outputs = Vec::new();
    h.run(100, |seen, req| {
        outputs.push(format!("{req:?}"));
        match seen.path.as_str() {
            p if p.ends_with("login") => login_ok(TOKEN, 3600),
            p if p.ends_with("/data") => json(200, r#"{"id":"j","status":"complete","objects":[{"id":"j/p.json.gz"}],"schema_version":1,"at":"2026-11-29T00:00:00Z"}"#),
            p if p.ends_with("/schema") => json(200, &format!(r#"{{"schema": "{TOKEN}"#)),
            _ => json(200, &format!(r#"{{"urls":{{"j/p.json.gz":{{"url":"https://s3.example/p.json.gz?{SIGNATURE}"}}}}}}"#)),
        }
    });
    for o in &outputs {
        assert_clean("Output::Send", o);
    }
    let text = format!("{:?} {:#?}", h.result(q), h.session);
    assert_clean("query result and session", &text);
    assert!(h.result(bad).is_err());
    assert_eq!(h.logins(), 1);
}

#[test]
fn transfer_debug_and_errors() {
    let c = config().build().unwrap();
    let o = ObjectUrl {
        id: ObjectId::new("j/p.json.gz"),
        url: PresignedUrl::new(format!("https://s3.example/p.json.gz?{SIGNATURE}")),
    };
    let t = Transfer::new(&c, o, Format::Jsonl, false).unwrap();
    all_forms("Transfer", format!("{t:?} {t:#?}"), None);
    let bad = ObjectUrl {
        id: ObjectId::new("j/x"),
        url: PresignedUrl::new(format!("https://s3.example/..?{SIGNATURE}")),
    };
    let e = Transfer::new(&c, bad, Format::Jsonl, false).unwrap_err();
    all_forms("ArgumentError", format!("{e:?}"), Some(e.to_string()));
}

#[test]
fn login_and_url_errors_never_quote_bodies() {
    let c = config().build().unwrap();
    let r = json_response(
        200,
        &format!(r#"{{"access_token":"{TOKEN}","expires_in":"x"}}"#),
    );
    let e = api::login::parse(&c, &r).unwrap_err();
    all_forms("login error", format!("{e:?}"), Some(e.to_string()));
    let r = json_response(
        200,
        &format!(r#"{{"urls":{{"a":{{"url":"/rel?{SIGNATURE}"}}}}}}"#),
    );
    let e = api::objects::parse(&c, &[ObjectId::new("a")], &r).unwrap_err();
    all_forms("object URL error", format!("{e:?}"), Some(e.to_string()));
}
