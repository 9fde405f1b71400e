//! What only the blocking client has: its configuration from the process environment,
//! checked in child processes. Everything both clients do alike is in the conformance
//! suite (tests/).

use dap_emulator::{Emulator, EmulatorConfig};
use dap_ureq::{Client, Error};

fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        rows_per_table: Some(10),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts")
}

/// Runs this test binary again with a controlled environment (changing the
/// environment of a running multi-threaded test process is not sound).
fn child(test: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for var in [
        "DAP_API_URL",
        "DAP_CLIENT_ID",
        "DAP_CLIENT_SECRET",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DAP_UREQ_CHILD", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("child runs")
}

#[test]
fn from_env_names_the_missing_variable() {
    if std::env::var_os("DAP_UREQ_CHILD").is_some() {
        let err = Client::from_env().unwrap_err();
        let expected = if std::env::var_os("DAP_CLIENT_ID").is_some() {
            "DAP_CLIENT_SECRET"
        } else {
            "DAP_CLIENT_ID"
        };
        assert!(
            matches!(err, Error::Config(dap_proto::ConfigError::MissingVariable(v)) if v == expected),
            "{err:?}"
        );
        assert!(err.to_string().contains(expected), "{err}");
        return;
    }
    for vars in [&[][..], &[("DAP_CLIENT_ID", "us-east-1#x")][..]] {
        let out = child("from_env_names_the_missing_variable", vars);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn from_env_talks_to_the_emulator() {
    if std::env::var_os("DAP_UREQ_CHILD").is_some() {
        let client = Client::from_env().expect("client from env");
        assert!(client.config().base_url().starts_with("http://127.0.0.1:"));
        let tables = client.list_tables("canvas").expect("tables");
        assert!(!tables.is_empty());
        return;
    }
    let emu = emulator();
    // A proxy in the environment, and no NO_PROXY: loopback must still go direct, so
    // the Basic credentials never reach it. It only counts what connects.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    proxy.set_nonblocking(true).unwrap();
    let out = child(
        "from_env_talks_to_the_emulator",
        &[
            ("DAP_API_URL", &emu.base_url()),
            ("DAP_CLIENT_ID", emu.client_id()),
            ("DAP_CLIENT_SECRET", emu.client_secret()),
            ("HTTP_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(emu.stats().logins, 1);
    assert!(proxy.accept().is_err(), "the proxy was contacted");
}
