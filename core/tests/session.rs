//! Session scenarios on a virtual clock against a scripted peer.

use std::time::Duration;

use dap_proto::testing::*;
use dap_proto::{
    Command, DapErrorKind, DataRange, Error, Format, JobId, JobState, Misuse, ObjectId, Outcome,
    Output, PollPolicy, ProtocolErrorKind, Query, RequestId, TokenStatus,
};

fn tables() -> Command {
    Command::ListTables {
        namespace: "canvas".into(),
    }
}

fn tables_ok() -> Reply {
    json(200, r#"{"tables":["accounts","users"]}"#)
}

/// A peer that logs in with `tok{n}`/`lifetime` and answers table lists.
fn simple_peer(lifetime: u64) -> impl FnMut(&Seen, &http::Request<Vec<u8>>) -> Reply {
    logged_in(lifetime, |_, _| tables_ok())
}

/// The gaps between the query's post and each job-status poll, in milliseconds.
fn poll_intervals(h: &Harness) -> Vec<u128> {
    let polls = h.sent_at(|s| s.path.starts_with("/dap/job/"));
    let post = h.sent_at(|s| s.path.ends_with("/data"))[0];
    let mut intervals = vec![polls[0] - post];
    intervals.extend(polls.windows(2).map(|w| w[1] - w[0]));
    intervals.iter().map(Duration::as_millis).collect()
}

#[test]
fn ten_operations_one_login() {
    let mut h = Harness::new(config().build().unwrap());
    let ops: Vec<_> = (0..10).map(|_| h.start(tables())).collect();
    h.run(100, simple_peer(3600));
    assert_eq!(h.logins(), 1);
    assert_eq!(h.seen.len(), 11);
    for op in ops {
        assert!(matches!(h.result(op), Ok(Outcome::Tables(t)) if t.len() == 2));
    }
    assert!(
        h.seen
            .iter()
            .filter(|s| !s.is_login())
            .all(|s| s.auth.as_deref() == Some("Bearer tok1"))
    );
}

#[test]
fn one_login_in_flight_while_operations_arrive() {
    let mut h = Harness::new(config().build().unwrap());
    h.start(tables());
    let Output::Send { id: login, request } = h.session.poll_output(h.clock.now) else {
        panic!()
    };
    assert!(request.uri().path().ends_with("/ids/auth/login"));
    for _ in 0..5 {
        h.start(tables());
        // Nothing to send: only the operations' deadlines are ahead.
        let deadline = h.clock.now + h.session.config().call_timeout();
        assert!(
            matches!(h.session.poll_output(h.clock.now), Output::Wait(Some(d)) if d == deadline)
        );
    }
    assert_eq!(h.session.token_status(), TokenStatus::LoggingIn);
    h.answer(login, login_ok("tok", 3600));
    h.run(50, simple_peer(3600));
    assert_eq!(h.session.logins(), 1);
    assert_eq!(h.done.len(), 6);
}

#[test]
fn token_refreshed_before_expiry_and_never_used_after() {
    let config = config()
        .refresh_margin(Duration::from_secs(300))
        .build()
        .unwrap();
    let mut h = Harness::new(config);
    // Operations spread over two hours against tokens that live one hour.
    let mut peer = simple_peer(3600);
    let mut issued: Vec<(String, std::time::Instant)> = Vec::new();
    for _ in 0..9 {
        h.start(tables());
        h.run(20, |seen, req| {
            let reply = peer(seen, req);
            if seen.is_login() {
                issued.push((format!("Bearer tok{}", issued.len() + 1), seen.at));
            }
            reply
        });
        h.clock.now += Duration::from_secs(15 * 60);
    }
    assert_eq!(
        h.logins(),
        3,
        "refresh after 55 minutes: tokens at 0, 60 and 120 min"
    );
    for s in h.seen.iter().filter(|s| !s.is_login()) {
        let (_, at) = issued
            .iter()
            .find(|(t, _)| Some(t.as_str()) == s.auth.as_deref())
            .unwrap();
        let age = s.at - *at;
        assert!(
            age < Duration::from_secs(3600 - 300),
            "token used at age {age:?}"
        );
    }
}

#[test]
fn short_lived_token_margin_is_capped_at_half_its_life() {
    let mut h = Harness::new(config().build().unwrap());
    h.start(tables());
    h.run(20, simple_peer(60));
    assert!(
        matches!(h.session.token_status(), TokenStatus::Valid(t) if t == h.clock.now + Duration::from_secs(30))
    );
}

#[test]
fn jwt_exp_shortens_lifetime() {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp": 1795911000}"#); // 2026-11-29T00:00:00Z + 600 s
    let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
    let mut h = Harness::new(config().refresh_margin(Duration::ZERO).build().unwrap());
    h.start(tables());
    h.run(20, |seen, _| {
        if seen.is_login() {
            login_ok(&token, 3600)
        } else {
            tables_ok()
        }
    });
    let wall: jiff::Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
    let expected = Duration::from_secs((1795911000 - wall.as_second()) as u64);
    assert_eq!(expected, Duration::from_secs(600));
    assert!(
        matches!(h.session.token_status(), TokenStatus::Valid(t) if t == h.clock.now + expected)
    );
}

#[test]
fn unauthorized_mid_flow_relogs_once_and_replays() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    let mut calls = 0;
    h.run(
        50,
        logged_in(3600, |_, _| {
            calls += 1;
            if calls == 1 {
                dap_error(401, "AuthenticationError", "expired")
            } else {
                tables_ok()
            }
        }),
    );
    assert_eq!(h.logins(), 2);
    assert!(h.result(op).is_ok());
    assert_eq!(h.seen.last().unwrap().auth.as_deref(), Some("Bearer tok2"));
}

#[test]
fn second_unauthorized_ends_the_operation() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    h.run(
        50,
        logged_in(3600, |_, _| dap_error(401, "AuthenticationError", "no")),
    );
    assert_eq!(h.logins(), 2);
    let err = h.result(op).as_ref().unwrap_err();
    assert_eq!(err.api_error().unwrap().kind, DapErrorKind::Authentication);
}

#[test]
fn concurrent_unauthorized_causes_one_relogin() {
    let mut h = Harness::new(config().build().unwrap());
    for _ in 0..5 {
        h.start(tables());
    }
    // Send all five with tok1 before answering any.
    let mut pending = Vec::new();
    loop {
        match h.session.poll_output(h.clock.now) {
            Output::Send { id, request } if request.uri().path().ends_with("login") => {
                h.answer(id, login_ok("tok1", 3600));
            }
            Output::Send { id, .. } => pending.push(id),
            _ => break,
        }
    }
    assert_eq!(pending.len(), 5);
    for id in pending {
        h.answer(id, dap_error(401, "AuthenticationError", "revoked"));
    }
    h.run(50, |seen, _| {
        if seen.is_login() {
            login_ok("tok2", 3600)
        } else {
            tables_ok()
        }
    });
    assert_eq!(h.session.logins(), 2, "one login, one re-login");
    assert_eq!(h.done.iter().filter(|(_, r)| r.is_ok()).count(), 5);
}

#[test]
fn rate_limited_waits_for_retry_after_seconds_http_date_and_cap() {
    for (retry_after, date, expected) in [
        ("7", None, Duration::from_secs(7)),
        (
            "Sun, 29 Nov 2026 00:00:20 GMT",
            Some("Sun, 29 Nov 2026 00:00:00 GMT"),
            Duration::from_secs(20),
        ),
        (
            "999999999",
            Some("Sun, 29 Nov 2026 00:00:00 GMT"),
            Duration::from_secs(300),
        ),
        (
            "garbage",
            Some("Sun, 29 Nov 2026 00:00:00 GMT"),
            Duration::from_secs(30),
        ),
    ] {
        let mut h = Harness::new(config().build().unwrap());
        let op = h.start(tables());
        let mut first = None;
        h.run(
            50,
            logged_in(3600, |seen, _| {
                if first.is_some() {
                    return tables_ok();
                }
                first = Some(seen.at);
                let r = with_header(
                    dap_error(429, "TooManyRequests", "slow down"),
                    "retry-after",
                    retry_after,
                );
                match date {
                    Some(date) => with_header(r, "date", date),
                    None => r,
                }
            }),
        );
        assert!(h.result(op).is_ok(), "{retry_after}");
        assert_eq!(
            h.seen.last().unwrap().at - first.unwrap(),
            expected,
            "{retry_after}"
        );
    }
}

#[test]
fn server_errors_back_off_then_give_up() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    h.run(
        50,
        logged_in(3600, |_, _| dap_error(503, "ServerError", "down")),
    );
    let api_calls: Vec<_> = h
        .seen
        .iter()
        .filter(|s| !s.is_login())
        .map(|s| s.at)
        .collect();
    assert_eq!(api_calls.len(), 3, "max_attempts = 3");
    let gaps: Vec<_> = api_calls.windows(2).map(|w| w[1] - w[0]).collect();
    // Equal jitter: attempt n waits between base/2 and base, base = 100 ms * 2^(n-1).
    assert!(
        gaps[0] >= Duration::from_millis(50) && gaps[0] <= Duration::from_millis(100),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(100) && gaps[1] <= Duration::from_millis(200),
        "{gaps:?}"
    );
    let err = h.result(op).as_ref().unwrap_err();
    assert_eq!(err.api_error().unwrap().status, 503);
}

#[test]
fn html_gateway_error_is_retried_then_reported() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    h.run(
        50,
        logged_in(3600, |_, _| {
            Reply::Respond(
                http::Response::builder()
                    .status(502)
                    .header("content-type", "text/html")
                    .body(b"<html>502 Bad Gateway</html>".to_vec())
                    .unwrap(),
            )
        }),
    );
    let Err(Error::Protocol(p)) = h.result(op) else {
        panic!()
    };
    assert_eq!(p.status, 502);
    assert!(matches!(p.kind, ProtocolErrorKind::NotJson { .. }));
    assert_eq!(h.seen.len(), 4);
}

#[test]
fn transport_failures_are_bounded() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    h.run(50, logged_in(3600, |_, _| Reply::Fail));
    assert_eq!(
        h.result(op),
        &Err(Error::Transport {
            what: "list tables",
            attempts: 3,
            last: failure(),
        })
    );
}

#[test]
fn login_failures_retry_then_fail_every_waiting_operation() {
    let mut h = Harness::new(config().build().unwrap());
    let a = h.start(tables());
    let b = h.start(Command::Schema {
        namespace: "canvas".into(),
        table: "accounts".into(),
    });
    h.run(50, |_, _| Reply::Fail);
    assert_eq!(h.logins(), 3);
    for op in [a, b] {
        assert_eq!(
            h.result(op),
            &Err(Error::Transport {
                what: "login",
                attempts: 3,
                last: failure(),
            })
        );
    }
}

#[test]
fn bad_credentials_fail_at_once_and_never_leak() {
    let mut h = Harness::new(config().build().unwrap());
    let ops: Vec<_> = (0..3).map(|_| h.start(tables())).collect();
    h.run(50, |_, _| {
        dap_error(401, "AuthenticationError", "Invalid client credentials")
    });
    assert_eq!(h.logins(), 1, "login is not retried on 401");
    for op in ops {
        let err = h.result(op).as_ref().unwrap_err();
        assert!(err.is_fatal());
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET));
    }
    assert!(!format!("{:?}", h.session).contains(SECRET));
}

fn job_body(status: &str, extra: &str) -> String {
    format!(r#"{{"id":"job-1","status":"{status}","expires_at":"2026-11-30T00:00:00Z"{extra}}}"#)
}

const COMPLETE: &str = r#","objects":[{"id":"job-1/a.json.gz"},{"id":"job-1/b.json.gz"},{"id":"job-1/c.json.gz"}],"schema_version":3,"at":"2026-11-29T00:00:05Z""#;

/// A peer for whole queries: the job runs for `polls` status calls.
fn job_peer(polls: usize) -> impl FnMut(&Seen, &http::Request<Vec<u8>>) -> Reply {
    let mut status_calls = 0;
    logged_in(3600, move |seen, _| match seen.path.as_str() {
        p if p.ends_with("/data") => json(202, &job_body("waiting", "")),
        "/dap/job/job-1" => {
            status_calls += 1;
            if status_calls <= polls {
                json(202, &job_body("running", ""))
            } else {
                json(200, &job_body("complete", COMPLETE))
            }
        }
        "/dap/object/url" => {
            let urls = requested_ids(seen.body.as_bytes()).into_iter().map(|id| {
                let url = format!("https://store.example/{id}?X-Amz-Signature=SIG");
                (id, url)
            });
            json(200, &urls_body(urls))
        }
        other => panic!("unexpected {other}"),
    })
}

#[test]
fn snapshot_runs_to_completion_with_backing_off_polls() {
    let config = config().url_batch_size(2).build().unwrap();
    let mut h = Harness::new(config);
    let op = h.start(snapshot(Format::Jsonl));
    h.run(200, job_peer(6));
    let Ok(Outcome::Query(result)) = h.result(op) else {
        panic!("{:?}", h.result(op))
    };
    assert_eq!(result.job, JobId::new("job-1"));
    assert_eq!(result.schema_version, 3);
    assert_eq!(
        result.range,
        DataRange::Snapshot {
            at: "2026-11-29T00:00:05Z".parse().unwrap()
        }
    );
    assert_eq!(result.objects.len(), 3);
    assert_eq!(result.objects[2].id, ObjectId::new("job-1/c.json.gz"));
    assert!(!format!("{result:?}").contains("SIG"));
    let ms = poll_intervals(&h);
    // Fast for the first minute (a short job's data is fetched within 0.75 s).
    assert_eq!(ms, [500, 750, 750, 750, 750, 750, 750]);
    let url_calls = h.count("/dap/object/url");
    assert_eq!(url_calls, 2, "three ids in batches of two");
}

#[test]
fn job_already_complete_on_post() {
    let mut h = Harness::new(config().build().unwrap());
    let since = "2026-11-28T00:00:00Z".parse().unwrap();
    let op = h.start(Command::Query {
        namespace: "canvas".into(),
        table: "accounts".into(),
        query: Query::incremental(Format::Csv, since),
    });
    let mut peer = job_peer(0);
    h.run(50, |seen, req| {
        if seen.path.ends_with("/data") {
            assert_eq!(
                seen.body,
                r#"{"format":"csv","since":"2026-11-28T00:00:00Z"}"#
            );
            return json(
                200,
                &job_body(
                    "complete",
                    &COMPLETE.replace(
                        r#""at":"2026-11-29T00:00:05Z""#,
                        r#""since":"2026-11-28T00:00:00Z","until":"2026-11-29T00:00:00Z""#,
                    ),
                ),
            );
        }
        peer(seen, req)
    });
    let Ok(Outcome::Query(result)) = h.result(op) else {
        panic!()
    };
    assert_eq!(
        result.range.next_since(),
        "2026-11-29T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
    );
    assert!(!h.seen.iter().any(|s| s.path.starts_with("/dap/job/")));
}

#[test]
fn failed_job_ends_with_its_error() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(snapshot(Format::Tsv));
    let mut peer = job_peer(0);
    h.run(50, |seen, req| {
        if seen.path == "/dap/job/job-1" {
            return json(
                200,
                &job_body(
                    "failed",
                    r#","error":{"type":"ProcessingError","uuid":"x","message":"boom"}"#,
                ),
            );
        }
        peer(seen, req)
    });
    let Err(Error::JobFailed { job, error }) = h.result(op) else {
        panic!()
    };
    assert_eq!(job.as_str(), "job-1");
    assert_eq!(error.kind, DapErrorKind::Processing);
    assert_eq!(error.message, "boom");
}

#[test]
fn expiring_cached_job_is_posted_again() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(snapshot(Format::Jsonl));
    let mut posts = 0;
    let mut peer = job_peer(0);
    h.run(100, |seen, req| {
        if seen.path.ends_with("/data") {
            posts += 1;
            if posts == 1 {
                // Deduplicated job that expires 10 s from the server's now.
                let body = job_body("complete", COMPLETE)
                    .replace("2026-11-30T00:00:00Z", "2026-11-29T00:00:10Z");
                return with_header(json(200, &body), "date", "Sun, 29 Nov 2026 00:00:00 GMT");
            }
            return json(202, &job_body("waiting", ""));
        }
        peer(seen, req)
    });
    assert_eq!(posts, 2);
    assert!(matches!(h.result(op), Ok(Outcome::Query(_))));
}

#[test]
fn job_that_never_ends_times_out() {
    let config = config()
        .poll({
            let mut p = PollPolicy::new(Duration::from_millis(500), Duration::from_secs(5));
            p.max_duration = Duration::from_secs(60);
            p
        })
        .build()
        .unwrap();
    let mut h = Harness::new(config);
    let op = h.start(snapshot(Format::Jsonl));
    h.run(200, job_peer(usize::MAX));
    assert!(matches!(h.result(op), Err(Error::JobTimedOut { .. })));
    assert!(h.elapsed() <= Duration::from_secs(61));
    // At most one poll per 0.75 s in the fast phase, which covers the whole minute here.
    let polls = h.count("/dap/job");
    assert!(polls <= 82, "{polls}");
}

#[test]
fn token_expiring_between_polls_is_refreshed() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(snapshot(Format::Jsonl));
    let mut n = 0;
    let mut peer = job_peer(100);
    h.run(600, |seen, req| {
        if seen.is_login() {
            n += 1;
            return login_ok(&format!("t{n}"), 60);
        }
        peer(seen, req)
    });
    assert!(matches!(h.result(op), Ok(Outcome::Query(_))));
    assert!(
        h.logins() >= 4,
        "a 60 s token over a ~160 s job: {}",
        h.logins()
    );
}

#[test]
fn malformed_empty_and_oversized_bodies() {
    let big = format!(r#"{{"tables":["{}"]}}"#, "x".repeat(4096));
    for (body, status, check) in [
        ("{", 200, "malformed"),
        ("", 200, "malformed"),
        (r#"{"tables": 5}"#, 200, "shape"),
        (big.as_str(), 200, "large"),
        (r#"{"message": "no envelope"}"#, 400, "envelope"),
    ] {
        let mut h = Harness::new(config().max_body_bytes(2048).build().unwrap());
        let op = h.start(tables());
        h.run(50, logged_in(3600, |_, _| json(status, body)));
        let Err(Error::Protocol(p)) = h.result(op) else {
            panic!("{check}: {:?}", h.result(op))
        };
        let ok = match check {
            "malformed" => matches!(p.kind, ProtocolErrorKind::MalformedJson { .. }),
            "shape" => matches!(p.kind, ProtocolErrorKind::InvalidShape { .. }),
            "large" => matches!(p.kind, ProtocolErrorKind::BodyTooLarge { limit: 2048 }),
            _ => matches!(p.kind, ProtocolErrorKind::NoErrorEnvelope),
        };
        assert!(ok, "{check}: {p}");
        assert_eq!(h.seen.len(), 2, "{check}: not retried");
    }
}

#[test]
fn bad_arguments_end_without_a_request() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(Command::ListTables {
        namespace: "../etc".into(),
    });
    h.run(20, simple_peer(3600));
    assert!(matches!(h.result(op), Err(Error::Argument(_))));
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut h = Harness::new(config().build().unwrap());
    let r = http::Response::new(Vec::<u8>::new());
    assert_eq!(
        h.session
            .handle_response(RequestId::from_raw(42), r, h.clock.now),
        Err(Misuse::UnknownRequest(42))
    );
    assert_eq!(
        h.session
            .handle_failure(RequestId::from_raw(7), failure(), h.clock.now),
        Err(Misuse::UnknownRequest(7))
    );
    h.start(tables());
    let Output::Send { id, .. } = h.session.poll_output(h.clock.now) else {
        panic!()
    };
    h.session
        .handle_failure(id, failure(), h.clock.now)
        .unwrap();
    assert_eq!(
        h.session.handle_failure(id, failure(), h.clock.now),
        Err(Misuse::UnknownRequest(id.into_raw()))
    );
}

#[test]
fn cancelled_operation_is_dropped() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(tables());
    h.session.cancel(op).unwrap();
    h.run(10, simple_peer(3600));
    assert!(h.done.is_empty());
    assert_eq!(h.logins(), 0);
    assert!(h.session.cancel(op).is_err());
}

#[test]
fn object_urls_command_and_get_job() {
    let mut h = Harness::new(config().url_batch_size(1).build().unwrap());
    let urls = h.start(Command::ObjectUrls {
        objects: vec![
            ObjectId::new("job-1/a.json.gz"),
            ObjectId::new("job-1/b.json.gz"),
        ],
    });
    let job = h.start(Command::GetJob {
        job: JobId::new("job-1"),
    });
    let empty = h.start(Command::ObjectUrls { objects: vec![] });
    h.run(50, job_peer(0));
    let Ok(Outcome::Urls(set)) = h.result(urls) else {
        panic!()
    };
    assert_eq!(set.urls.len(), 2);
    let Ok(Outcome::Job(j)) = h.result(job) else {
        panic!()
    };
    assert!(matches!(j.state, JobState::Complete(_)));
    assert!(matches!(h.result(empty), Ok(Outcome::Urls(s)) if s.urls.is_empty()));
}

#[test]
fn idle_session_waits_forever() {
    let mut h = Harness::new(config().build().unwrap());
    assert!(matches!(
        h.session.poll_output(h.clock.now),
        Output::Wait(None)
    ));
}

#[test]
fn job_polls_stay_under_the_per_minute_cap() {
    let mut poll = PollPolicy::new(Duration::from_millis(500), Duration::from_secs(5));
    poll.max_status_calls_per_minute = 100;
    let mut h = Harness::new(config().poll(poll).build().unwrap());
    let jobs = 40;
    for _ in 0..jobs {
        h.start(snapshot(Format::Jsonl));
    }
    // Every job runs for two minutes of the virtual clock.
    let start = h.clock.now;
    h.run(
        20_000,
        logged_in(3600, |seen, req| {
            let done = seen.at - start >= Duration::from_secs(120);
            match seen.path.as_str() {
                p if p.ends_with("/data") => json(202, &job_body("waiting", "")),
                "/dap/job/job-1" if done => json(200, &job_body("complete", COMPLETE)),
                "/dap/job/job-1" => json(202, &job_body("running", "")),
                _ => job_peer(0)(seen, req),
            }
        }),
    );
    assert_eq!(h.done.iter().filter(|(_, r)| r.is_ok()).count(), jobs);
    let polls = h.sent_at(|s| s.path.starts_with("/dap/job/"));
    for (i, t) in polls.iter().enumerate() {
        let in_window = polls[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(60))
            .count();
        assert!(in_window <= 100, "{in_window} status calls within a minute");
    }
    assert!(
        polls.len() >= 150,
        "the cap slows polling, it does not stop it: {}",
        polls.len()
    );
}

#[test]
fn polls_back_off_after_the_fast_phase() {
    let mut poll = PollPolicy::new(Duration::from_millis(500), Duration::from_secs(5));
    poll.fast_phase = Duration::from_secs(2);
    let mut h = Harness::new(config().poll(poll).build().unwrap());
    h.start(snapshot(Format::Jsonl));
    h.run(200, job_peer(7));
    let ms = poll_intervals(&h);
    assert_eq!(ms, [500, 750, 750, 4000, 5000, 5000, 5000, 5000]);
}

/// [`job_peer`] for a job complete at once that lists `job-1/a.json.gz` twice.
fn twice_listed_peer() -> impl FnMut(&Seen, &http::Request<Vec<u8>>) -> Reply {
    let mut peer = job_peer(0);
    move |seen, req| {
        if seen.path.ends_with("/data") {
            let dup = COMPLETE.replace(
                r#"{"id":"job-1/c.json.gz"}"#,
                r#"{"id":"job-1/c.json.gz"},{"id":"job-1/a.json.gz"}"#,
            );
            return json(200, &job_body("complete", &dup));
        }
        peer(seen, req)
    }
}

#[test]
fn duplicate_objects_in_a_job_are_fetched_once() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(snapshot(Format::Jsonl));
    h.run(50, twice_listed_peer());
    let Ok(Outcome::Query(result)) = h.result(op) else {
        panic!()
    };
    let ids: Vec<_> = result.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        ["job-1/a.json.gz", "job-1/b.json.gz", "job-1/c.json.gz"]
    );
}

#[test]
fn a_call_without_an_answer_ends_at_its_deadline() {
    let mut h = Harness::new(
        config()
            .call_timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let op = h.start(tables());
    let Output::Send { id: login, .. } = h.session.poll_output(h.clock.now) else {
        panic!()
    };
    h.answer(login, login_ok("tok", 3600));
    let Output::Send { id: list, .. } = h.session.poll_output(h.clock.now) else {
        panic!()
    };
    let deadline = h.clock.start() + Duration::from_secs(60);
    assert_eq!(h.session.request_deadline(list), Some(deadline));
    assert!(matches!(h.session.poll_output(h.clock.now), Output::Wait(Some(d)) if d == deadline));
    h.clock.now = deadline;
    let Output::Done { op: done, result } = h.session.poll_output(h.clock.now) else {
        panic!()
    };
    assert_eq!(done, op);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                what: "list tables",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    // The answer that comes too late is accepted and dropped.
    h.answer(list, tables_ok());
    assert!(matches!(
        h.session.poll_output(h.clock.now),
        Output::Wait(None)
    ));
}

#[test]
fn a_503_storm_on_job_status_ends_after_max_attempts_polls() {
    let mut h = Harness::new(config().build().unwrap());
    let op = h.start(snapshot(Format::Jsonl));
    h.run(
        100,
        logged_in(3600, |seen, _| {
            if seen.path.ends_with("/data") {
                json(202, &job_body("waiting", ""))
            } else {
                dap_error(503, "ServiceUnavailable", "try later")
            }
        }),
    );
    let polls = h.count("/dap/job/");
    assert_eq!(
        polls, 3,
        "max_attempts is 3 for every call, job polls included"
    );
    let err = h.result(op).as_ref().unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert!(h.elapsed() < Duration::from_secs(10), "{:?}", h.elapsed());
}

#[test]
fn huge_waits_never_overflow_the_clock() {
    // Config refuses them; the backoff itself saturates.
    let err = config()
        .retry(dap_proto::RetryPolicy::default().with_backoff(Duration::ZERO, Duration::MAX))
        .build()
        .unwrap_err();
    assert!(matches!(err, dap_proto::ConfigError::TooLong(_)), "{err}");
}

#[test]
fn urls_on_demand_end_the_query_without_urls_and_post_the_same_body() {
    let since: jiff::Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
    let until: jiff::Timestamp = "2026-11-29T01:00:00Z".parse().unwrap();
    let queries = [
        Query::snapshot(Format::Jsonl),
        Query::snapshot(Format::Csv)
            .mode(dap_proto::Mode::Condensed)
            .unwrap(),
        Query::incremental(Format::Tsv, since).until(until).unwrap(),
    ];
    for query in queries {
        let lazy = query.urls_on_demand();
        assert!(lazy.has_urls_on_demand() && !query.has_urls_on_demand());
        assert_eq!(
            dap_proto::api::query::body(&lazy),
            dap_proto::api::query::body(&query),
            "{query:?}: the flag never reaches the server"
        );
        let mut bodies = Vec::new();
        for q in [query, lazy] {
            let mut h = Harness::new(config().url_batch_size(2).build().unwrap());
            let op = h.start(Command::Query {
                namespace: "canvas".into(),
                table: "accounts".into(),
                query: q,
            });
            h.run(50, twice_listed_peer());
            let Ok(Outcome::Query(result)) = h.result(op) else {
                panic!("{q:?}: {:?}", h.result(op))
            };
            let ids: Vec<_> = result.object_ids().map(ObjectId::as_str).collect();
            assert_eq!(
                ids,
                ["job-1/a.json.gz", "job-1/b.json.gz", "job-1/c.json.gz"],
                "{q:?}: once each, in the job's order"
            );
            assert_eq!(result.object_count(), 3, "{q:?}");
            let url_calls = h.count("/dap/object/url");
            if q.has_urls_on_demand() {
                assert!(result.objects.is_empty(), "{q:?}");
                assert_eq!(result.pending.len(), 3, "{q:?}");
                assert_eq!(url_calls, 0, "{q:?}: no URL fetched");
                let Command::ObjectUrls { objects } = Command::refresh_urls(result) else {
                    panic!()
                };
                assert_eq!(objects.len(), 3, "{q:?}: a refresh names pending objects");
            } else {
                assert!(result.pending.is_empty(), "{q:?}");
                assert_eq!(result.objects.len(), 3, "{q:?}");
                assert_eq!(url_calls, 2, "{q:?}: three ids in batches of two");
            }
            let posted: Vec<String> = h
                .seen
                .iter()
                .filter(|s| s.path.ends_with("/data"))
                .map(|s| s.body.clone())
                .collect();
            bodies.push(posted);
        }
        assert_eq!(bodies[0], bodies[1], "{query:?}: byte-identical posts");
        assert_eq!(bodies[0].len(), 1, "{query:?}");
    }
}
