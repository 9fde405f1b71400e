//! End-to-end tests of the `dap` binary against servers that misbehave and
//! environments that could leak: stalled API responses and downloads, proxies in the
//! environment with a loopback API, the system trust store, and a job of 20,000 objects.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use dap_emulator::{EmulatorConfig, Endpoint, FaultAction, FaultRule};

/// A low-speed window short enough for a test, far longer than a loopback answer takes.
const WINDOW: &str = "0.3";

/// Headers at once, then one byte every `interval_ms`, after `after_bytes` at full speed,
/// for the next `count` requests on `endpoint`.
fn trickle(endpoint: Endpoint, count: u32, interval_ms: u64, after_bytes: u64) -> FaultRule {
    FaultRule::new(
        endpoint,
        count,
        FaultAction::Trickle {
            bytes: 1,
            interval_millis: interval_ms,
            after_bytes,
        },
    )
}

/// Runs `cmd`, returning what it printed and how long it took.
fn timed(cmd: &mut std::process::Command) -> (Run, Duration) {
    let started = Instant::now();
    let r = run(cmd);
    (r, started.elapsed())
}

/// `dap --json OPTIONS list` against an emulator whose listings send a byte every
/// `interval_ms`: the emulator, the run's error report, and how long the run took.
fn stalled_listing(
    interval_ms: u64,
    options: &[&str],
    env: &[(&str, &str)],
) -> (dap_emulator::Emulator, serde_json::Value, Duration) {
    let emu = emulator();
    emu.add_fault(trickle(Endpoint::Tables, 1000, interval_ms, 0));
    let mut cmd = dap(&emu);
    cmd.envs(env.iter().copied())
        .arg("--json")
        .args(options)
        .args(["list", "--namespace", "canvas"]);
    let (r, took) = timed(&mut cmd);
    r.assert_code(5).assert_no_secret();
    let error = r.json()["error"].clone();
    (emu, error, took)
}

/// A transient error of `category` whose message and hint say `message` and `hint`.
fn assert_transient(error: &serde_json::Value, category: &str, message: &str, hint: &str) {
    assert_eq!(error["category"], category, "{error}");
    assert_eq!(error["transient"], true, "{error}");
    let text = |key: &str| error[key].as_str().unwrap_or_default().to_owned();
    assert!(text("message").contains(message), "{error}");
    assert!(text("hint").contains(hint), "{error}");
}

#[test]
fn a_stalled_api_response_fails_each_attempt_by_the_low_speed_rule_then_ends_transient() {
    // A byte each 20 ms: data keeps coming, too slowly.
    let (emu, error, took) = stalled_listing(20, &["--low-speed-time", WINDOW], &[]);
    assert_transient(
        &error,
        "transport",
        "stalled: fewer than 1024 bytes in 300ms",
        "--low-speed-time",
    );
    // Every attempt the retry policy allows (5), each abandoned after one window.
    assert_eq!(emu.stats().requests.tables, 5);
    assert!(took >= Duration::from_millis(5 * 300), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_stalled_api_call_ends_at_the_call_timeout() {
    // A window longer than the deadline: only the deadline can end this call.
    let options = ["--low-speed-time", "20", "--call-timeout", "1"];
    let (emu, error, took) = stalled_listing(50, &options, &[]);
    assert_transient(
        &error,
        "timeout",
        "no result within 1s (the per-call deadline)",
        "--call-timeout",
    );
    assert_eq!(emu.stats().requests.tables, 1);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn the_network_options_also_come_from_the_environment_and_refuse_nonsense() {
    let env = [("DAP_LOW_SPEED_TIME", "20"), ("DAP_CALL_TIMEOUT", "0.5")];
    let (emu, error, took) = stalled_listing(50, &[], &env);
    assert_transient(&error, "timeout", "within 500ms", "--call-timeout");
    assert!(took < Duration::from_secs(15), "{took:?}");
    for (flag, value, why) in [
        ("--low-speed-time", "0", "more than 0"),
        ("--call-timeout", "forever", "not a number"),
        ("--call-timeout", "999999999", "at most 604800"),
        ("--low-speed-limit", "lots", "invalid value 'lots'"),
    ] {
        let r = run(dap(&emu).args([flag, value, "list", "--namespace", "canvas"]));
        assert_ne!(r.code, 0, "{flag} {value}");
        r.assert_stderr_has(&[flag, why]);
    }
    let help = run(bare_dap().arg("--help"));
    help.assert_code(0).assert_stdout_has(&[
        "--low-speed-limit <BYTES>",
        "DAP_LOW_SPEED_LIMIT",
        "[default: 1024]",
        "--low-speed-time <SECONDS>",
        "DAP_LOW_SPEED_TIME",
        "[default: 30]",
        "--call-timeout <SECONDS>",
        "DAP_CALL_TIMEOUT",
        "[default: 600]",
        "--use-system-ca",
        "DAP_USE_SYSTEM_CA",
    ]);
}

#[test]
fn a_stalled_download_resumes_with_range_and_completes() {
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: 2,
        rows_per_table: Some(400),
        ..EmulatorConfig::default()
    });
    // The first object download sends 1,000 bytes, then trickles.
    emu.add_fault(trickle(Endpoint::Storage, 1, 20, 1000));
    let out = tempfile::tempdir().unwrap();
    let (r, took) = timed(
        dap(&emu)
            .args(["--low-speed-time", WINDOW])
            .args(on("snapshot", "accounts", &["--json"]))
            .arg("--output-directory")
            .arg(out.path()),
    );
    r.assert_code(0).assert_no_secret();
    let table = &r.json()["tables"][0];
    // Exactly the snapshot's records (deleted rows are not in it).
    assert!(assert_exact(&emu, table) > 300, "{table}");
    assert_only_complete_files(out.path());
    let files = table["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let resumed: Vec<_> = files.iter().filter(|f| f["resumes"] == 1).collect();
    assert_eq!(resumed.len(), 1, "{table}");
    assert!(
        resumed[0]["compressed_bytes"].as_u64().unwrap() > 1000,
        "the stall came mid-object: {table}"
    );
    let stats = emu.stats();
    assert_eq!(stats.storage_requests, 3, "two objects and one resume");
    assert_eq!(
        stats.storage_range_requests, 1,
        "the resume asked for a range"
    );
    assert!(
        r.stderr
            .contains("resumed 1 time(s) after a dropped or stalled connection"),
        "{}",
        r.stderr
    );
    // One window, a backoff and the rest of the object.
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// A proxy on 127.0.0.1 that records every byte it receives and answers 502.
struct RecordingProxy {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<u32>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, connections, stop) = (seen.clone(), connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            *connections.lock().unwrap() += 1;
                            record(stream, &seen);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            port,
            seen,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://user:password@127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("http://proxy-user:proxy-pass@127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn connections(&self) -> u32 {
        *self.connections.lock().unwrap()
    }

    /// Points every proxy variable (both spellings) of `cmd` at this proxy.
    fn configure(&self, cmd: &mut std::process::Command) {
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            cmd.env(var, self.url()).env(var.to_lowercase(), self.url());
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    }
}

/// Reads what a client sends until it pauses, then answers 502.
fn record(mut stream: TcpStream, seen: &Mutex<Vec<u8>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if seen.lock().unwrap().windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Neither the client's Basic credentials, nor its secret, nor a URL signature.
fn assert_no_credentials(what: &str, text: &str, basic: &str) {
    assert!(!text.contains(SECRET_MARKER), "secret in {what}:\n{text}");
    assert!(
        !text.contains(basic),
        "Basic credentials in {what}:\n{text}"
    );
    for (i, _) in text.match_indices("X-Amz-Signature=") {
        let next = text[i + "X-Amz-Signature=".len()..].chars().next();
        assert!(
            !next.is_some_and(|c| c.is_ascii_hexdigit()),
            "signature in {what}:\n{text}"
        );
    }
}

#[test]
fn proxies_in_the_environment_never_see_loopback_traffic() {
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: 3,
        ..EmulatorConfig::default()
    });
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        emu.client_id(),
        emu.client_secret()
    ));
    let proxy = RecordingProxy::start();
    let out = tempfile::tempdir().unwrap();

    let mut list = dap(&emu);
    proxy.configure(&mut list);
    let list = run(list.args(["--loglevel", "debug", "list", "--namespace", "canvas"]));
    list.assert_code(0);
    assert!(
        list.stdout.lines().any(|l| l == "accounts"),
        "{}",
        list.stdout
    );

    let mut snapshot = dap(&emu);
    proxy.configure(&mut snapshot);
    let snapshot = run(snapshot
        .args(["--loglevel", "debug"])
        .args(on("snapshot", "accounts", &["--json"]))
        .arg("--output-directory")
        .arg(out.path()));
    snapshot.assert_code(0);
    assert_exact(&emu, &snapshot.json()["tables"][0]);
    assert_eq!(emu.stats().storage_requests, 3);

    assert_eq!(proxy.connections(), 0, "the proxy was contacted");
    assert_eq!(proxy.seen(), "", "the proxy received bytes");
    for (what, r) in [("list", &list), ("snapshot", &snapshot)] {
        assert_no_credentials(&format!("{what} stdout"), &r.stdout, &basic);
        assert_no_credentials(&format!("{what} stderr"), &r.stderr, &basic);
    }

    // The same variables do reach the binary: a host that is not loopback goes through
    // the proxy (a CONNECT the stub refuses), and only the proxy's own credentials go
    // with it. `.invalid` never resolves, so nothing leaves the machine.
    let mut remote = dap(&emu);
    proxy.configure(&mut remote);
    let remote = run(remote.args(["--base-url", "https://dap.invalid"]).args([
        "list",
        "--namespace",
        "canvas",
    ]));
    remote.assert_code(5).assert_no_secret();
    assert!(proxy.connections() > 0);
    let seen = proxy.seen();
    assert!(seen.starts_with("CONNECT dap.invalid:443 "), "{seen}");
    assert_no_credentials("the proxy's input", &seen, &basic);
}

#[test]
fn the_system_trust_store_is_used_when_asked() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/isrg-root-x2.pem");
    // rustls-native-certs reads SSL_CERT_FILE and SSL_CERT_DIR before the OS store.
    let store = |cmd: &mut std::process::Command, file: &Path| {
        cmd.env("SSL_CERT_FILE", file).env("SSL_CERT_DIR", &empty);
    };
    let missing = dir.path().join("missing.pem");
    let list = ["list", "--namespace", "canvas"];

    let mut by_flag = dap(&emu);
    store(&mut by_flag, &missing);
    let r = run(by_flag.arg("--use-system-ca").args(list));
    r.assert_code(5).assert_no_secret();
    r.assert_stderr_has(&[
        "--use-system-ca / DAP_USE_SYSTEM_CA",
        "cannot load the system's certificates",
    ]);
    let mut by_env = dap(&emu);
    store(&mut by_env, &missing);
    run(by_env.env("DAP_USE_SYSTEM_CA", "yes").args(list)).assert_code(5);
    assert_eq!(emu.stats().requests.login, 0, "nothing was sent");

    // Off by default and with a false value: the store is not read at all.
    for value in [None, Some("false"), Some("0")] {
        let mut cmd = dap(&emu);
        store(&mut cmd, &missing);
        if let Some(v) = value {
            cmd.env("DAP_USE_SYSTEM_CA", v);
        }
        run(cmd.args(list)).assert_code(0);
    }
    // A store holding a certificate is accepted.
    let mut cmd = dap(&emu);
    store(&mut cmd, &fixture);
    run(cmd.arg("--use-system-ca").args(list)).assert_code(0);
}

/// A scratch directory for many small files: memory-backed where the system has one
/// (`/dev/shm`), so that the test measures this program and not the disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match shm.is_dir().then(|| tempfile::tempdir_in(shm)) {
        Some(Ok(dir)) => dir,
        _ => tempfile::tempdir().unwrap(),
    }
}

#[test]
fn a_job_of_20000_objects_is_downloaded_and_verified() {
    const OBJECTS: usize = 20_000;
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: OBJECTS as u32,
        rows_per_table: Some(OBJECTS as u64),
        ..EmulatorConfig::default()
    });
    let out = scratch_dir();
    let r = run(dap(&emu)
        .args(on("snapshot", "accounts", &["--json"]))
        .arg("--output-directory")
        .arg(out.path()));
    r.assert_code(0);
    let table = &r.json()["tables"][0];
    assert_eq!(table["files"].as_array().unwrap().len(), OBJECTS);
    assert_eq!(emu.stats().storage_requests, OBJECTS as u64);
    let files = tree(out.path());
    assert_eq!(files.len(), OBJECTS, "one file per object, nothing else");
    assert_only_complete_files(out.path());
    // Exactly the snapshot's records, most objects holding one (deleted rows are not in
    // a snapshot).
    assert!(assert_exact(&emu, table) > OBJECTS / 2);
}

#[test]
fn a_pasted_secret_is_trimmed_and_a_refused_one_hints_at_whitespace() {
    let emu = emulator();
    // `DAP_CLIENT_SECRET="$(cat secret.txt)"` style: a trailing line break and spaces.
    let padded = format!("  {SECRET_MARKER}\n");
    let r =
        run(dap(&emu)
            .env("DAP_CLIENT_SECRET", &padded)
            .args(["list", "--namespace", "canvas"]));
    r.assert_code(0).assert_no_secret();
    // A line break inside the value is kept, and refused.
    let (head, tail) = SECRET_MARKER.split_at(8);
    let broken = format!("{head}\n{tail}");
    let r = run(dap(&emu).env("DAP_CLIENT_SECRET", &broken).args([
        "--json",
        "list",
        "--namespace",
        "canvas",
    ]));
    r.assert_code(5).assert_no_secret();
    assert!(!r.stderr.contains(tail) && !r.stdout.contains(tail));
    let error = &r.json()["error"];
    assert_eq!(error["category"], "authentication", "{error}");
    assert_eq!(error["transient"], false, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("surrounding whitespace is trimmed"),
        "{error}"
    );
}
