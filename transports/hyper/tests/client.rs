//! What only the async client has: its driver task and runtimes, and its streams.
//! Everything both clients do alike is in the conformance suite (tests/).

use std::time::Duration;

use dap_emulator::{Emulator, EmulatorConfig};
use dap_hyper::{Client, Config, Error, PollPolicy, RetryPolicy};

fn start(cfg: EmulatorConfig) -> Emulator {
    Emulator::start(cfg).expect("emulator starts")
}

fn emulator() -> Emulator {
    start(EmulatorConfig::default())
}

fn client(emu: &Emulator) -> Client {
    let config = Config::builder(emu.client_id(), emu.client_secret())
        .base_url(emu.base_url())
        .poll(PollPolicy::new(
            Duration::from_millis(2),
            Duration::from_millis(10),
        ))
        .retry(RetryPolicy::new(
            4,
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .build()
        .expect("config");
    Client::new(config).expect("client")
}

#[test]
fn missing_env_variable_is_named() {
    if std::env::var_os("DAP_CLIENT_ID").is_some() {
        return;
    }
    let err = Client::from_env().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("DAP_CLIENT_ID"), "{err}");
}

#[test]
fn a_client_outlives_its_first_runtime() {
    let emu = emulator();
    let client = client(&emu);
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let tables = runtime.block_on(client.list_tables("canvas")).unwrap();
        assert!(!tables.is_empty());
    }
    // A new runtime means a new driver and session, so a second login.
    assert_eq!(emu.stats().logins, 2);
}

#[test]
fn calls_outside_a_runtime_are_refused_not_panicking() {
    let config = Config::builder("id", "secret").build().unwrap();
    let client = Client::new(config).unwrap();
    // Poll the future by hand with a no-op executor: no tokio runtime is current.
    let err = futures_util::FutureExt::now_or_never(client.list_tables("canvas"))
        .expect("ready at once")
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
}

#[test]
fn streams_are_unpin_and_send() {
    fn check<T: Unpin + Send + futures_util::Stream>() {}
    check::<dap_hyper::Records>();
    check::<dap_hyper::JsonRecords>();
}
