//! Property tests where they fit better than fuzzing: round trips of the timestamp,
//! HTTP-date and Retry-After parsing, content ranges, JWT `exp`, and file-name
//! sanitising.

use std::time::Duration;

use base64::Engine as _;
use dap_proto::download::{file_name, parse_content_range};
use dap_proto::{Config, PresignedUrl, api};
use http::{HeaderMap, HeaderValue, Response, header};
use jiff::Timestamp;
use proptest::prelude::*;

/// Whole seconds from 1970 to the last second a `Timestamp` holds (9999-12-30, a day
/// short of 9999-12-31: jiff keeps room for any offset).
fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..=Timestamp::MAX.as_second()).prop_map(|s| Timestamp::from_second(s).unwrap())
}

fn http_date(t: Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .unwrap()
}

fn config() -> Config {
    Config::builder("id", "secret").build().unwrap()
}

fn json(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn assert_safe(name: &str) {
    assert!(!name.is_empty());
    assert!(!name.contains(['/', '\\']), "{name:?}");
    assert!(name != "." && name != "..", "{name:?}");
    assert!(!name.starts_with('.'), "{name:?}");
    assert!(name.len() <= 200, "{name:?}");
    assert!(!name.chars().any(char::is_control), "{name:?}");
}

/// A path segment built from pieces a hostile URL would use.
fn hostile_segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just("%2F".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2E".to_owned()),
        Just("%00".to_owned()),
        Just("%".to_owned()),
        Just("%zz".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("%FF".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("C:".to_owned()),
        Just(" ".to_owned()),
        "[a-zA-Z0-9_=-]{1,8}",
        "\\PC{1,4}",
        "[.]{1,250}",
        "[a.]{150,260}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// A fixed seed, so that a run is repeatable (set `PROPTEST_RNG_SEED` to explore).
fn repeatable(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0xDA9_5EED);
    }
    config
}

proptest! {
    #![proptest_config(repeatable(2000))]

    #[test]
    fn retry_after_seconds_round_trip(n in any::<u64>()) {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from(n));
        prop_assert_eq!(api::retry_after(&h, None), Some(Duration::from_secs(n)));
    }

    #[test]
    fn http_date_round_trip(t in timestamp()) {
        let text = http_date(t);
        prop_assert_eq!(api::parse_http_date(&text), Some(t), "{}", text);
    }

    #[test]
    fn retry_after_http_date_is_measured_from_the_date_header(
        date in timestamp(),
        delta in -10_000_000i64..10_000_000,
        local in timestamp(),
    ) {
        let Ok(at) = date.checked_add(jiff::SignedDuration::from_secs(delta)) else {
            return Ok(());
        };
        prop_assume!(at.as_second() < 253_402_300_799);
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&http_date(at)).unwrap());
        h.insert(header::DATE, HeaderValue::from_str(&http_date(date)).unwrap());
        let expected = Duration::from_secs(delta.max(0) as u64);
        // The server's Date wins over the caller's wall clock.
        prop_assert_eq!(api::retry_after(&h, Some(local)), Some(expected));
        h.remove(header::DATE);
        prop_assert_eq!(api::retry_after(&h, Some(date)), Some(expected));
        prop_assert_eq!(api::retry_after(&h, None), None);
    }

    #[test]
    fn retry_after_garbage_is_ignored(s in "\\PC{0,40}") {
        prop_assume!(s.trim().parse::<u64>().is_err());
        if let Ok(v) = HeaderValue::from_str(&s) {
            let mut h = HeaderMap::new();
            h.insert(header::RETRY_AFTER, v);
            // Whatever it is, it is either a date or nothing: never a panic.
            let r = api::retry_after(&h, Some(Timestamp::UNIX_EPOCH));
            prop_assert!(r.is_none() || api::parse_http_date(s.trim()).is_some());
        }
    }

    #[test]
    fn job_timestamps_round_trip(expires in timestamp(), at in timestamp()) {
        let body = format!(
            r#"{{"id":"j","status":"complete","objects":[],"schema_version":1,"at":"{at}","expires_at":"{expires}"}}"#
        );
        let job = api::job::parse(&config(), &json(200, &body)).unwrap();
        prop_assert_eq!(job.expires_at, Some(expires));
        let dap_proto::JobState::Complete(c) = job.state else { panic!() };
        prop_assert_eq!(c.range, dap_proto::DataRange::Snapshot { at });
    }

    #[test]
    fn query_since_until_written_as_utc_rfc3339(since in timestamp(), gap in 1i64..1_000_000) {
        let Ok(until) = since.checked_add(jiff::SignedDuration::from_secs(gap)) else {
            return Ok(());
        };
        let q = dap_proto::Query::incremental(dap_proto::Format::Jsonl, since)
            .until(until)
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&api::query::body(&q)).unwrap();
        let s = body["since"].as_str().unwrap();
        let u = body["until"].as_str().unwrap();
        prop_assert!(s.ends_with('Z') && u.ends_with('Z'));
        prop_assert_eq!(s.parse::<Timestamp>().unwrap(), since);
        prop_assert_eq!(u.parse::<Timestamp>().unwrap(), until);
    }

    #[test]
    fn content_range_round_trip(s in any::<u64>(), len in any::<u64>(), extra in any::<u64>()) {
        let e = s.saturating_add(len);
        let t = e.checked_add(1).map(|t| t.saturating_add(extra));
        let total = t.map_or("*".to_owned(), |t| t.to_string());
        let parsed = parse_content_range(&format!("bytes {s}-{e}/{total}"));
        prop_assert_eq!(parsed, Some((s, e, t)));
        if e > s {
            prop_assert_eq!(parse_content_range(&format!("bytes {e}-{s}/{total}")), None);
        }
    }

    #[test]
    fn jwt_exp_round_trip(exp in -377_705_116_800i64..253_402_207_200) {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.sig", b64("{}"), b64(&format!(r#"{{"exp":{exp}}}"#)));
        prop_assert_eq!(api::login::jwt_exp(&token), Timestamp::from_second(exp).ok());
    }

    #[test]
    fn login_expires_in_is_clamped(n in any::<i64>()) {
        let body = format!(r#"{{"access_token":"t","expires_in":{n}}}"#);
        let login = api::login::parse(&config(), &json(200, &body)).unwrap();
        let e = login.expires_in.unwrap();
        prop_assert!(e <= api::login::MAX_LIFETIME);
        if n <= 0 {
            prop_assert_eq!(e, Duration::ZERO);
        }
    }

    #[test]
    fn file_names_are_always_safe(
        dirs in proptest::collection::vec(hostile_segment(), 0..3),
        last in hostile_segment(),
        query in "[a-zA-Z0-9=&%-]{0,20}",
    ) {
        let url = format!("https://b.example/{}/{last}?{query}", dirs.join("/"));
        if let Ok(name) = file_name(&PresignedUrl::new(url.clone())) {
            assert_safe(&name);
            // Deterministic, and no trace of the query string.
            prop_assert_eq!(file_name(&PresignedUrl::new(url)).unwrap(), name.clone());
        }
    }

    #[test]
    fn plain_file_names_survive_unchanged(name in "[a-zA-Z0-9_-][a-zA-Z0-9_.=-]{0,120}") {
        let url = format!("https://b.example/out/{name}?X-Amz-Signature=s");
        prop_assert_eq!(file_name(&PresignedUrl::new(url)).ok(), (!name.chars().all(|c| c == '_')).then_some(name));
    }

    #[test]
    fn job_dirs_are_single_safe_segments(id in "\\PC{0,60}") {
        let dir = dap_proto::download::job_dir(&dap_proto::JobId::new(id));
        prop_assert!(dir.starts_with("job_"));
        prop_assert!(dir.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    }
}
