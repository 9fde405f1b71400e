//! End-to-end tests of what the CLI must never show, however the secret reaches it,
//! and of the options that refuse bad input before any request.

mod common;

use common::*;
use dap_emulator::EmulatorConfig;

/// A client secret that JSON and Rust's `{:?}` both escape.
const QUOTED_SECRET: &str = r#"q"uo\te-s3cr3t-Value"#;

#[test]
fn json_logs_never_show_a_secret_with_quotes_or_backslashes() {
    let emu = dap_emulator::Emulator::start(EmulatorConfig {
        client_secret: QUOTED_SECRET.to_owned(),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    // The secret pasted where a table name goes ends up in log messages and fields.
    let r = run(dap(&emu)
        .args(["--loglevel", "debug", "--logformat", "json"])
        .args([
            "snapshot",
            "--namespace",
            "canvas",
            "--table",
            QUOTED_SECRET,
        ])
        .arg("--output-directory")
        .arg(out.path()));
    r.assert_code(5);
    let escaped = serde_json::to_string(QUOTED_SECRET).unwrap();
    for form in [
        QUOTED_SECRET,
        &escaped[1..escaped.len() - 1],
        "uo\\te-s3cr3t",
    ] {
        assert!(!r.stderr.contains(form), "{form} in {}", r.stderr);
    }
    let mut with_table = 0;
    for line in r.stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for field in ["level", "message", "timestamp", "logger_name", "filename"] {
            assert!(v[field].is_string(), "{field}: {line}");
        }
        assert!(v["lineno"].is_u64(), "{line}");
        assert_eq!(v["dap_namespace"], "canvas", "{line}");
        if v["dap_table"] == "[redacted]" {
            with_table += 1;
        }
    }
    assert!(with_table > 0, "{}", r.stderr);
}

#[test]
fn argument_errors_never_echo_the_secret() {
    let flag_like = format!("--X{SECRET_MARKER}");
    let after_equals = format!("--client-secret={SECRET_MARKER}");
    let cases: [&[&str]; 4] = [
        &[
            "--client-secret",
            &flag_like,
            "list",
            "--namespace",
            "canvas",
        ],
        &[&after_equals, "lisst"],
        &["list", "--client-secret", SECRET_MARKER, "--bogus"],
        &[
            "--client-secret",
            SECRET_MARKER,
            "sync",
            "--concurrency",
            "0",
        ],
    ];
    for args in cases {
        let r = run(bare_dap().args(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty(), "{args:?}");
        r.assert_no_secret();
    }
    // From the environment as well.
    let r = run(bare_dap()
        .env("DAP_CLIENT_SECRET", &flag_like)
        .args(["list", &flag_like]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_no_secret();
}

#[test]
fn bad_base_urls_are_refused_before_any_request() {
    for (url, words) in [
        ("http://example.com", "https://"),
        ("not a url", "absolute http(s) URL"),
    ] {
        let r = run(bare_dap()
            .args(["--base-url", url, "--client-id", "id"])
            .args([
                "--client-secret",
                SECRET_MARKER,
                "list",
                "--namespace",
                "canvas",
            ]));
        r.assert_code(5).assert_no_secret();
        assert!(r.stderr.contains(words), "{url}: {}", r.stderr);
    }
}

#[test]
fn base_urls_with_user_info_are_refused_without_echoing_them() {
    let password = "pw-Hidden-in-the-URL";
    for url in [
        format!("http://user:{password}@127.0.0.1:1"),
        format!("https://someone:{password}@example.com/dap"),
        format!("https://{password}@example.com"),
    ] {
        for via_env in [false, true] {
            let mut cmd = bare_dap();
            if via_env {
                cmd.env("DAP_API_URL", &url);
            } else {
                cmd.args(["--base-url", &url]);
            }
            let r = run(cmd
                .args(["--client-id", "id", "--client-secret", SECRET_MARKER])
                .args(["--json", "list", "--namespace", "canvas"]));
            r.assert_code(5).assert_no_secret();
            assert!(r.stderr.contains("user info"), "{url}: {}", r.stderr);
            assert!(!r.stderr.contains("not absolute"), "{}", r.stderr);
            for text in [&r.stderr, &r.stdout] {
                assert!(!text.contains(password), "{url}: {text}");
                assert!(!text.contains("someone"), "{url}: {text}");
            }
            assert_eq!(r.json()["error"]["category"], "config");
        }
    }
}

#[test]
fn bad_timestamps_are_refused_before_any_request_with_the_right_reason() {
    let emu = emulator();
    let cases: [(&[&str], &str); 7] = [
        (&["--since", "2024-01-01T00:00:00"], "no time zone offset"),
        (
            &["--since", "2024-01-01T00:00:00"],
            "--since 2024-01-01T00:00:00Z",
        ),
        (&["--since=9999-12-31T23:59:59Z"], "out of range"),
        (&["--since=-009999-01-01T00:00:00Z"], "out of range"),
        (&["--since", "yesterday"], "not an RFC 3339 timestamp"),
        (
            &["--since", "2024-01-01T00:00:00Z", "--until", "2024-02-01"],
            "--until 2024-02-01T00:00:00Z",
        ),
        (
            &[
                "--since",
                "2024-02-01T00:00:00Z",
                "--until",
                "2024-01-01T00:00:00Z",
            ],
            "--until must be later than --since",
        ),
    ];
    for (args, words) in cases {
        let r = run(dap(&emu)
            .args(on("incremental", "accounts", &[]))
            .args(args));
        r.assert_code(5);
        assert!(r.stderr.contains(words), "{args:?}: {}", r.stderr);
    }
    assert_eq!(emu.stats().requests.login, 0, "nothing was sent");
    assert_eq!(emu.stats().requests.query, 0);
}

#[test]
fn ca_file_from_the_option_or_the_environment_reaches_the_transport() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, b"hello").unwrap();
    let missing = dir.path().join("missing.pem");
    let r = run(dap(&emu)
        .arg("--ca-file")
        .arg(&missing)
        .args(["list", "--namespace", "canvas"]));
    r.assert_code(5).assert_no_secret();
    r.assert_stderr_has(&["--ca-file", "missing.pem"]);
    let r = run(dap(&emu)
        .env("DAP_CA_FILE", &not_pem)
        .args(["list", "--namespace", "canvas"]));
    r.assert_code(5).assert_stderr_has(&["no PEM certificate"]);
    assert_eq!(emu.stats().requests.login, 0);
}
