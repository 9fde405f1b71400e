//! A hostile or broken server: the core may fail, but never hangs, loops, panics or
//! leaks a credential (issue 6, checks beyond fuzzing).

use std::time::Duration;

use dap_proto::download::{self, file_name};
use dap_proto::testing::*;
use dap_proto::{
    Command, Error, Format, ObjectId, ObjectUrl, Outcome, Output, PollPolicy, PresignedUrl,
    ProtocolErrorKind, Query, TokenHeader, TokenStatus, Transfer, api,
};

fn tables() -> Command {
    Command::ListTables {
        namespace: "canvas".into(),
    }
}

fn tables_ok() -> Reply {
    json(200, r#"{"tables":["accounts"]}"#)
}

fn login_body(token: &str, expires_in: &str) -> Reply {
    json(
        200,
        &format!(r#"{{"access_token":"{token}","expires_in":{expires_in},"token_type":"bearer"}}"#),
    )
}

/// An unsigned JWT with the given `exp` claim (as JSON text).
fn exp_jwt(exp: &str) -> String {
    jwt(&format!(r#"{{"exp":{exp}}}"#), "signature")
}

#[test]
fn retry_after_999999999_is_capped_by_the_policy() {
    let mut retry =
        dap_proto::RetryPolicy::new(3, Duration::from_millis(100), Duration::from_secs(2));
    retry.max_retry_after = Duration::from_secs(90);
    let mut h = Harness::new(config().retry(retry).build().unwrap());
    let op = h.start(tables());
    let mut limited = 0;
    h.run(
        50,
        logged_in(3600, |_, _| {
            limited += 1;
            if limited == 1 {
                with_header(
                    dap_error(429, "TooManyRequests", "x"),
                    "retry-after",
                    "999999999",
                )
            } else {
                tables_ok()
            }
        }),
    );
    assert!(h.result(op).is_ok());
    let api: Vec<_> = h.seen.iter().filter(|s| !s.is_login()).collect();
    assert_eq!(api[1].at - api[0].at, Duration::from_secs(90));
    assert!(h.elapsed() < Duration::from_secs(91));
}

/// A login whose token is already unusable (negative or zero `expires_in`, or a JWT
/// `exp` in the past) must end the waiting operations with an error after one login,
/// not log in again forever. (Before the fix, the session looped: token valid until
/// `now`, dropped at once, logged in again, indefinitely.)
#[test]
fn expired_on_arrival_token_ends_with_an_error_not_a_login_loop() {
    let cases = [
        ("plain", "-5"),
        ("plain", "0"),
        (exp_jwt("1").leak() as &str, "3600"),
        (exp_jwt("1795000000").leak() as &str, "3600"), // before the harness's wall clock
    ];
    for (token, expires_in) in cases {
        let mut h = Harness::new(config().build().unwrap());
        let op = h.start(tables());
        h.run(50, |seen, _| {
            if seen.is_login() {
                login_body(token, expires_in)
            } else {
                tables_ok()
            }
        });
        assert_eq!(h.logins(), 1, "{token} {expires_in}");
        assert!(
            h.seen.iter().all(|s| s.is_login()),
            "a call with a dead token"
        );
        let Err(Error::Protocol(p)) = h.result(op) else {
            panic!("{token} {expires_in}: {:?}", h.result(op));
        };
        assert!(matches!(p.kind, ProtocolErrorKind::InvalidShape { .. }));
        assert!(p.to_string().contains("expired"), "{p}");
        assert!(!p.to_string().contains(token) || token == "plain");
        assert_eq!(h.session.token_status(), TokenStatus::None);
    }
}

#[test]
fn huge_expires_in_is_capped_at_a_day() {
    let mut h = Harness::new(config().refresh_margin(Duration::ZERO).build().unwrap());
    h.start(tables());
    let mut peer = |seen: &Seen, _: &http::Request<Vec<u8>>| {
        if seen.is_login() {
            login_body("tok", "99999999999999999999")
        } else {
            tables_ok()
        }
    };
    h.run(20, &mut peer);
    let TokenStatus::Valid(until) = h.session.token_status() else {
        panic!("{:?}", h.session.token_status())
    };
    assert_eq!(until - h.clock.now, api::login::MAX_LIFETIME);
    h.clock.now += api::login::MAX_LIFETIME;
    h.start(tables());
    h.run(20, &mut peer);
    assert_eq!(h.logins(), 2, "the day-old token was used again");
}

#[test]
fn garbage_jwt_exp_falls_back_to_expires_in() {
    for token in [
        exp_jwt(r#""tomorrow""#),
        exp_jwt("99999999999999999999"),
        "eyJ.!!!.x".to_owned(),
        "a.b.c.d".to_owned(),
    ] {
        let mut h = Harness::new(config().build().unwrap());
        let op = h.start(tables());
        h.run(20, |seen, _| {
            if seen.is_login() {
                login_body(&token, "3600")
            } else {
                tables_ok()
            }
        });
        assert!(h.result(op).is_ok(), "{token}");
        assert_eq!(h.logins(), 1);
    }
}

#[test]
fn object_url_paths_never_escape_the_directory() {
    let config = config().build().unwrap();
    for url in [
        "https://b.example/out/../../etc/passwd?X-Amz-Signature=s",
        "https://b.example/out/..%2F..%2Fetc%2Fpasswd?X-Amz-Signature=s",
        "https://b.example/%2Fetc%2Fshadow",
        "https://b.example/C:%5CWindows%5Csystem32%5Cx.gz",
        "https://b.example/a/%2e%2e",
        "https://b.example/a/..",
        "https://b.example/a/.",
        "https://b.example/a/...",
        "https://b.example/a/.bashrc",
        "https://b.example/a/%2E%2E%5C..%5Cx",
        "https://b.example/a/%00%0a.gz",
        "https://b.example/a/..%252F..%252Fx",
        "https://b.example//",
        "https://b.example/a/part-0.json.gz",
    ] {
        let u = PresignedUrl::new(url);
        match file_name(&u) {
            Ok(name) => {
                assert!(
                    !name.is_empty() && name != "." && name != "..",
                    "{url}: {name}"
                );
                assert!(
                    !name.contains(['/', '\\']) && !name.starts_with('.'),
                    "{url}: {name}"
                );
            }
            Err(e) => assert!(!e.to_string().contains("X-Amz"), "{e}"),
        }
        let object = ObjectUrl {
            id: ObjectId::new("o"),
            url: u,
        };
        if let Ok(t) = Transfer::new(&config, object, Format::Jsonl, true) {
            assert!(!t.file_name().contains(['/', '\\']) && !t.file_name().starts_with('.'));
        }
    }
}

/// Regression (found by the `parsers` fuzz target): cutting a long name to its last
/// 200 characters could leave a leading dot, i.e. a hidden file.
#[test]
fn long_file_name_cut_never_starts_with_a_dot() {
    let name = format!("{}.{}", "a".repeat(50), "b".repeat(199));
    let name = file_name(&PresignedUrl::new(format!("https://b.example/{name}"))).unwrap();
    assert_eq!(name, "b".repeat(199));
}

#[test]
fn download_requests_never_carry_api_credentials_whatever_the_host() {
    for header in [TokenHeader::Bearer, TokenHeader::XInstAuth] {
        let config = config().token_header(header).build().unwrap();
        // Even a URL on the API's own host, as a hostile server could hand out.
        for url in [
            "https://dap.example/dap/object/url?sig=1",
            "https://evil.example/steal?sig=1",
            "http://127.0.0.1:1/x?sig=1",
        ] {
            let r = download::request(&config, &PresignedUrl::new(url), 10).unwrap();
            let names: Vec<_> = r.headers().keys().map(|k| k.as_str().to_owned()).collect();
            assert_eq!(names, ["user-agent", "accept-encoding", "range"], "{url}");
        }
    }
}

#[test]
fn session_sends_the_token_only_to_the_api() {
    // The object URLs point at the API's host and at another host: the session hands
    // them out as data, but never sends anything (let alone the token) to them.
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(Command::ObjectUrls {
        objects: vec![ObjectId::new("a"), ObjectId::new("b")],
    });
    let urls = r#"{"urls":{"a":{"url":"https://dap.example/x?sig=1"},"b":{"url":"https://evil.example/y?sig=2"}}}"#;
    h.run(20, logged_in(3600, |_, _| json(200, urls)));
    let Ok(Outcome::Urls(set)) = h.result(op) else {
        panic!("{:?}", h.result(op))
    };
    assert_eq!(set.urls.len(), 2);
    assert_eq!(h.seen.len(), 2);
    assert!(
        h.seen
            .iter()
            .all(|s| !s.path.contains("/x") && !s.path.contains("/y"))
    );
}

#[test]
fn duplicate_and_missing_object_ids() {
    // The same id twice in one batch gets its URL twice, whatever the batch size;
    // duplicate keys in the server's map are harmless; a missing id is an error that
    // does not quote the body.
    for batch in [1, 2, 3, 100] {
        let mut h = Harness::new(config().url_batch_size(batch).build().unwrap());
        let op = h.start(Command::ObjectUrls {
            objects: vec![ObjectId::new("a"), ObjectId::new("a"), ObjectId::new("b")],
        });
        let urls = r#"{"urls":{"a":{"url":"https://b.example/1?sig=A1"},"a":{"url":"https://b.example/2?sig=A2"},"b":{"url":"https://b.example/3?sig=B"},"zzz":{"url":"https://b.example/4?sig=Z"}}}"#;
        h.run(20, logged_in(3600, |_, _| json(200, urls)));
        let Ok(Outcome::Urls(set)) = h.result(op) else {
            panic!("batch {batch}: {:?}", h.result(op))
        };
        let ids: Vec<_> = set.urls.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["a", "a", "b"], "batch {batch}");
        assert!(
            set.urls
                .iter()
                .all(|u| u.url.secret().starts_with("https://b.example/"))
        );
    }
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(Command::ObjectUrls {
        objects: vec![ObjectId::new("a"), ObjectId::new("missing")],
    });
    let urls = r#"{"urls":{"a":{"url":"https://b.example/1?sig=SIGNATURE"}}}"#;
    h.run(20, logged_in(3600, |_, _| json(200, urls)));
    let Err(e) = h.result(op) else { panic!() };
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("missing") && !text.contains("SIGNATURE"),
        "{text}"
    );
}

#[test]
fn job_that_never_completes_ends_within_max_duration() {
    for (max, answer) in [
        (60u64, "running"),
        (600, "waiting"),
        (30, "5xx"),
        (45, "fail"),
    ] {
        let mut poll = PollPolicy::new(Duration::from_millis(250), Duration::from_secs(4));
        poll.max_duration = Duration::from_secs(max);
        let mut h = Harness::new(config().poll(poll).build().unwrap());
        let op = h.start(Command::Query {
            namespace: "canvas".into(),
            table: "accounts".into(),
            query: Query::snapshot(Format::Jsonl),
        });
        let mut polls = 0;
        h.run(5_000, |seen, _| {
            if seen.is_login() {
                return login_ok("tok", 3600);
            }
            if seen.path.ends_with("/data") {
                return json(202, r#"{"id":"j1","status":"waiting"}"#);
            }
            polls += 1;
            // Every fourth poll misbehaves, the rest say the job goes on.
            match (answer, polls % 4) {
                ("5xx", 0) => dap_error(503, "ServerError", "busy"),
                ("fail", 0) => Reply::Fail,
                ("5xx" | "fail", _) => json(202, r#"{"id":"j1","status":"running"}"#),
                (state, _) => json(202, &format!(r#"{{"id":"j1","status":"{state}"}}"#)),
            }
        });
        let Err(Error::JobTimedOut { job, waited }) = h.result(op) else {
            panic!("{answer}: {:?}", h.result(op))
        };
        assert_eq!(job.as_str(), "j1");
        assert_eq!(*waited, Duration::from_secs(max));
        assert!(
            h.elapsed() <= Duration::from_secs(max),
            "{answer}: {:?}",
            h.elapsed()
        );
        assert!(
            h.seen
                .iter()
                .all(|s| s.at < h.clock.start() + Duration::from_secs(max))
        );
    }
}

#[test]
fn redirect_from_the_api_is_refused_without_resending_credentials() {
    for status in [301, 302, 303, 307, 308] {
        for on_login in [false, true] {
            let mut h = Harness::new(config().build().unwrap());
            let op = h.start(tables());
            h.run(20, |seen, _| {
                if seen.is_login() && !on_login {
                    return login_ok("tok", 3600);
                }
                let r = json(status, "");
                with_header(r, "location", "https://evil.example/collect?stolen=SIG")
            });
            let Err(Error::Protocol(p)) = h.result(op) else {
                panic!("{status} {on_login}: {:?}", h.result(op))
            };
            assert_eq!(
                p.kind,
                ProtocolErrorKind::Redirect {
                    location: Some("https://evil.example/collect".into())
                }
            );
            // One attempt, no replay of the secret or the token anywhere.
            assert_eq!(
                h.seen.len(),
                if on_login { 1 } else { 2 },
                "{status} {on_login}"
            );
            assert_eq!(h.logins(), 1);
            assert!(!format!("{p} {p:?}").contains("SIG"));
        }
    }
}

#[test]
fn oversized_bodies_are_refused_without_quoting() {
    let mut h = Harness::new(config().max_body_bytes(2048).build().unwrap());
    let op = h.start(tables());
    let big = format!(r#"{{"tables":["{}"]}}"#, "x".repeat(5000));
    h.run(20, logged_in(3600, |_, _| json(200, &big)));
    let Err(Error::Protocol(p)) = h.result(op) else {
        panic!()
    };
    assert_eq!(p.kind, ProtocolErrorKind::BodyTooLarge { limit: 2048 });
    assert!(p.body_excerpt.is_empty());
}

/// Regression (found by the `session` fuzz target): once every operation waiting for
/// a login had gone (cancelled), the login backoff instant was still reported by
/// `Wait` after it had passed, so a driver would spin on a deadline in the past.
#[test]
fn wait_never_reports_a_past_login_backoff() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    let Output::Send { id, .. } = h.session.poll_output(h.clock.now) else {
        panic!()
    };
    h.session
        .handle_failure(id, failure(), h.clock.now)
        .unwrap();
    assert_eq!(h.session.token_status(), TokenStatus::LoginBackoff);
    h.session.cancel(op).unwrap();
    h.clock.now += Duration::from_secs(3600);
    match h.session.poll_output(h.clock.now) {
        Output::Wait(deadline) => {
            assert!(deadline.is_none_or(|t| t >= h.clock.now), "{deadline:?}")
        }
        other => panic!("{other:?}"),
    }
    // A new operation still gets its login.
    h.start(tables());
    h.run(20, logged_in(3600, |_, _| tables_ok()));
    assert_eq!(h.done.len(), 1);
    assert!(h.done[0].1.is_ok());
}

/// A `tracing` subscriber that writes every span and event field, at every level,
/// into one shared string.
mod capture {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub(crate) struct Capture(pub(crate) Arc<Mutex<String>>);

    /// The process-wide default subscriber of this test binary: it records nothing, but
    /// answers "ask me each time" for every callsite and allows every level.
    ///
    /// Without it, a callsite first reached by another test thread (which has no
    /// subscriber) can have its interest cached as "never", or the global maximum level
    /// left below TRACE, and a capture installed with `with_default` on this thread then
    /// misses those events: the capture was short one run in four under parallel tests.
    struct AskEachTime;

    impl Subscriber for AskEachTime {
        fn register_callsite(
            &self,
            _: &'static Metadata<'static>,
        ) -> tracing::subscriber::Interest {
            tracing::subscriber::Interest::sometimes()
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    impl Capture {
        /// A new capture, after making sure no callsite's cached interest can hide an
        /// event from it (see [`AskEachTime`]).
        pub(crate) fn new() -> Self {
            static GLOBAL: std::sync::Once = std::sync::Once::new();
            GLOBAL.call_once(|| {
                tracing::subscriber::set_global_default(AskEachTime)
                    .expect("no other global subscriber in this test binary");
            });
            tracing::callsite::rebuild_interest_cache();
            Self::default()
        }
    }

    struct Writer<'a>(&'a mut String);

    impl Visit for Writer<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut out = self.0.lock().unwrap();
            let _ = write!(out, "\nspan {}", span.metadata().name());
            span.record(&mut Writer(&mut out));
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            values.record(&mut Writer(&mut self.0.lock().unwrap()));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut out = self.0.lock().unwrap();
            let _ = write!(
                out,
                "\n{} {}",
                event.metadata().level(),
                event.metadata().target()
            );
            event.record(&mut Writer(&mut out));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[test]
fn trace_logs_of_a_whole_snapshot_never_show_secret_token_or_signature() {
    use std::io::Write as _;

    const TOKEN: &str = "eyJTOKENVALUEq8";
    const SIG: &str = "SIGNATUREVALUEz4";
    let capture = capture::Capture::new();
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("us-east-1#client:{SECRET}"))
    };
    let mut plain = Vec::new();
    tracing::subscriber::with_default(capture.clone(), || {
        let mut h = Harness::new(config().url_batch_size(1).build().unwrap());
        let op = h.start(Command::Query {
            namespace: "canvas".into(),
            table: "accounts".into(),
            query: Query::snapshot(Format::Jsonl),
        });
        let mut polls = 0;
        let mut unauthorized = false;
        h.run(200, |seen, _| {
            if seen.is_login() {
                return login_ok(TOKEN, 3600);
            }
            match seen.path.as_str() {
                p if p.ends_with("/data") => json(202, r#"{"id":"job-1","status":"waiting"}"#),
                "/dap/job/job-1" => {
                    polls += 1;
                    if polls == 2 && !unauthorized {
                        // A 401 mid-flow: the token is dropped and fetched again.
                        unauthorized = true;
                        return dap_error(401, "AuthenticationError", "expired");
                    }
                    if polls < 4 {
                        json(202, r#"{"id":"job-1","status":"running"}"#)
                    } else {
                        json(
                            200,
                            r#"{"id":"job-1","status":"complete","objects":[{"id":"o/a.json.gz"},{"id":"o/b.json.gz"}],"schema_version":1,"at":"2026-11-29T00:00:00Z"}"#,
                        )
                    }
                }
                _ => {
                    let id = if seen.body.contains("o/a") { "o/a.json.gz" } else { "o/b.json.gz" };
                    json(
                        200,
                        &format!(
                            r#"{{"urls":{{"{id}":{{"url":"https://store.example/{id}?X-Amz-Signature={SIG}"}}}}}}"#
                        ),
                    )
                }
            }
        });
        let Ok(Outcome::Query(result)) = h.result(op).clone() else {
            panic!("{:?}", h.result(op))
        };
        // Download the objects through Transfer, with a refused URL on the way.
        let config = config().build().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"key\":1}\n").unwrap();
        let object = gz.finish().unwrap();
        for url in result.objects {
            let fresh = url.url.clone();
            let mut t = Transfer::new(&config, url, Format::Jsonl, true).unwrap();
            let mut refused = false;
            for _ in 0..20 {
                match t.poll_output(h.clock.now) {
                    dap_proto::TransferStep::Send(_) if !refused => {
                        refused = true;
                        t.handle_head(
                            http::StatusCode::FORBIDDEN,
                            &http::HeaderMap::new(),
                            h.clock.now,
                        );
                    }
                    dap_proto::TransferStep::Send(_) => {
                        let mut headers = http::HeaderMap::new();
                        headers.insert(http::header::CONTENT_LENGTH, object.len().into());
                        t.handle_head(http::StatusCode::OK, &headers, h.clock.now);
                        assert!(
                            t.handle_body(&object, h.clock.now, |b| plain.extend_from_slice(b))
                                .is_continue()
                        );
                        t.handle_body_end(h.clock.now);
                    }
                    dap_proto::TransferStep::NeedUrl => t.handle_url(fresh.clone()),
                    dap_proto::TransferStep::Done(summary) => {
                        tracing::info!(?summary, "transfer done");
                        break;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        tracing::trace!(session = ?h.session, "final state");
    });
    assert_eq!(plain, b"{\"key\":1}\n{\"key\":1}\n");
    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.lines().count() > 10,
        "too few log lines to mean anything:\n{logs}"
    );
    for needle in [SECRET, basic.as_str(), TOKEN, SIG] {
        assert!(!logs.contains(needle), "{needle} in the logs:\n{logs}");
    }
}

/// Regression: after a range mismatch resets a transfer to byte 0, a `206` that starts
/// at 0 is the whole object again. It used to be appended to the bytes already
/// written (no truncation), so an unverified format (parquet) finished "Done" with the
/// old prefix in front of the object.
#[test]
fn range_mismatch_then_partial_from_zero_truncates() {
    let config = config().build().unwrap();
    let object: Vec<u8> = (0..100u8).collect();
    for format in [Format::Parquet, Format::Jsonl] {
        let object = if format.is_gzip() {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&object).unwrap();
            gz.finish().unwrap()
        } else {
            object.clone()
        };
        let url = ObjectUrl {
            id: ObjectId::new("o"),
            url: PresignedUrl::new("https://b.example/o/part-0.parquet?sig=1"),
        };
        let mut t = Transfer::new(&config, url, format, false).unwrap();
        let mut now = origin();
        let mut file: Vec<u8> = Vec::new();
        let length = |n: usize| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CONTENT_LENGTH, n.into());
            h
        };
        let send = |t: &mut Transfer, now: &mut std::time::Instant| loop {
            match t.poll_output(*now) {
                dap_proto::TransferStep::Send(r) => return r,
                dap_proto::TransferStep::Wait(at) => *now = at,
                other => panic!("{other:?}"),
            }
        };
        // 1. A full body breaks off after 10 bytes.
        send(&mut t, &mut now);
        assert_eq!(
            t.handle_head(http::StatusCode::OK, &length(object.len()), now),
            dap_proto::HeadAction::ReadBody { truncate: false }
        );
        assert!(
            t.handle_body(&object[..10], now, |b| file.extend_from_slice(b))
                .is_continue()
        );
        t.handle_failure(failure(), now);
        // 2. The resume is refused with 416: start over from 0.
        let r = send(&mut t, &mut now);
        assert_eq!(r.headers()["range"], "bytes=10-");
        t.handle_head(
            http::StatusCode::RANGE_NOT_SATISFIABLE,
            &http::HeaderMap::new(),
            now,
        );
        // 3. The server answers the plain GET with a 206 covering the whole object.
        let r = send(&mut t, &mut now);
        assert!(!r.headers().contains_key("range"));
        let mut h = length(object.len());
        h.insert(
            http::header::CONTENT_RANGE,
            format!("bytes 0-{}/{}", object.len() - 1, object.len())
                .parse()
                .unwrap(),
        );
        match t.handle_head(http::StatusCode::PARTIAL_CONTENT, &h, now) {
            dap_proto::HeadAction::ReadBody { truncate } => {
                if truncate {
                    file.clear();
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(
            t.handle_body(&object, now, |b| file.extend_from_slice(b))
                .is_continue()
        );
        t.handle_body_end(now);
        let dap_proto::TransferStep::Done(summary) = t.poll_output(now) else {
            panic!("{format:?}: {:?}", t.poll_output(now))
        };
        assert_eq!(file, object, "{format:?}");
        assert_eq!(summary.bytes, object.len() as u64);
    }
}
