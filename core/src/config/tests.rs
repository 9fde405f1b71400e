use super::*;

fn ok() -> ConfigBuilder {
    Config::builder("us-east-1#abc", "s3cr3t")
}

#[test]
fn defaults_build() {
    let c = ok().build().unwrap();
    assert_eq!(c.base_url(), DEFAULT_BASE_URL);
    assert_eq!(c.credentials().region(), Some("us-east-1"));
    assert_eq!(c.refresh_margin(), Duration::from_secs(300));
    assert!(c.user_agent().to_str().unwrap().starts_with("dap-rs/"));
}

#[test]
fn region_absent() {
    let c = Config::builder("plain-id", "s").build().unwrap();
    assert_eq!(c.credentials().region(), None);
}

#[test]
fn rejects_nonsense() {
    use ConfigError as E;
    let cases: Vec<(ConfigBuilder, ConfigError)> = vec![
        (Config::builder("", "s"), E::EmptyClientId),
        (Config::builder("a:b", "s"), E::InvalidClientId),
        (Config::builder("id", ""), E::EmptySecret),
        (
            ok().base_url("api.example.com"),
            E::InvalidBaseUrl("api.example.com".into()),
        ),
        (
            ok().base_url("ftp://x"),
            E::InvalidBaseUrl("ftp://x".into()),
        ),
        (
            ok().base_url("http://example.com"),
            E::PlainHttp("http://example.com".into()),
        ),
        (ok().user_agent(""), E::EmptyUserAgent),
        (ok().user_agent("a\nb"), E::InvalidUserAgent),
        (ok().token_path("login"), E::InvalidTokenPath),
        (
            ok().retry(RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            }),
            E::ZeroAttempts,
        ),
        (
            ok().retry(RetryPolicy::default().with_backoff(Duration::from_secs(2), Duration::ZERO)),
            E::Invalid("retry initial_backoff exceeds max_backoff"),
        ),
        (
            ok().poll(PollPolicy::default().with_intervals(Duration::ZERO, Duration::ZERO)),
            E::Invalid("poll initial_interval must be non-zero and at most max_interval"),
        ),
        (
            ok().poll(PollPolicy::default().with_max_status_calls_per_minute(0)),
            E::Invalid("poll max_status_calls_per_minute must be at least 1"),
        ),
        (
            ok().scope("a b"),
            E::Invalid("scope must be a non-empty unreserved URL word"),
        ),
        (
            ok().max_body_bytes(1023),
            E::Invalid("max_body_bytes must be at least 1024"),
        ),
        (
            ok().url_batch_size(0),
            E::Invalid("url_batch_size must be at least 1"),
        ),
        (
            ok().url_lifetime(Duration::ZERO),
            E::Invalid("url_lifetime must be at least a second"),
        ),
    ];
    for (builder, expected) in cases {
        assert_eq!(builder.build().unwrap_err(), expected);
    }
}

#[test]
fn huge_waits_are_refused() {
    let huge = Duration::MAX;
    for builder in [
        ok().retry(RetryPolicy::default().with_backoff(Duration::ZERO, huge)),
        ok().retry(RetryPolicy::default().with_max_retry_after(huge)),
        ok().poll(PollPolicy::default().with_max_duration(huge)),
        ok().call_timeout(huge),
    ] {
        assert!(matches!(builder.build(), Err(ConfigError::TooLong(_))));
    }
    assert!(
        ok().retry(RetryPolicy::default().with_max_attempts(u32::MAX))
            .build()
            .is_err()
    );
}

#[test]
fn user_info_is_refused_without_echo() {
    for url in [
        "http://user:pw@127.0.0.1:8080",
        "https://user:pw@host/x",
        "user:pw@host",
    ] {
        let err = ok().base_url(url).build().unwrap_err();
        assert_eq!(err, ConfigError::BaseUrlUserInfo, "{url}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

#[test]
fn credentials_are_trimmed() {
    let c = Config::builder(" id\n", "\tsecret \r\n").build().unwrap();
    assert_eq!(c.credentials().client_id(), "id");
    assert_eq!(c.credentials().secret().secret(), "secret");
    assert_eq!(
        Config::builder("id", "  ").build().unwrap_err(),
        ConfigError::EmptySecret
    );
}

#[test]
fn plain_http_loopback_and_opt_in() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:1/",
        "http://[::1]:9",
    ] {
        ok().base_url(url).build().unwrap();
    }
    let c = ok()
        .base_url("http://dap.internal/")
        .dangerous_allow_plain_http(true)
        .build()
        .unwrap();
    assert_eq!(c.base_url(), "http://dap.internal");
}

#[test]
fn from_vars_names_missing_variable() {
    let err =
        Config::builder_from_vars(|k| (k == "DAP_CLIENT_ID").then(|| "id".into())).unwrap_err();
    assert_eq!(err, ConfigError::MissingVariable("DAP_CLIENT_SECRET"));
    let c = Config::builder_from_vars(|k| match k {
        "DAP_CLIENT_ID" => Some("id".into()),
        "DAP_CLIENT_SECRET" => Some("sec".into()),
        "DAP_API_URL" => Some("http://127.0.0.1:9".into()),
        _ => None,
    })
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(c.base_url(), "http://127.0.0.1:9");
}

#[test]
fn debug_hides_secret() {
    let c = ok().build().unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t"));
}
