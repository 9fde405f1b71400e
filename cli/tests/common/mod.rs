//! Helpers shared by the end-to-end tests: an emulator, the built `dap` binary, and
//! readers for what it writes.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig, FaultRule, Faults};
use serde_json::Value;

pub(crate) const SECRET_MARKER: &str = "s3cr3t-Value-that-must-never-leak";

/// An emulator with a secret that is easy to search for in output.
pub(crate) fn emulator() -> Emulator {
    emulator_with(EmulatorConfig::default())
}

/// An emulator with `config`, its secret replaced by [`SECRET_MARKER`].
pub(crate) fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(EmulatorConfig {
        client_secret: SECRET_MARKER.to_owned(),
        ..config
    })
    .expect("emulator starts")
}

/// Makes `rules` the only faults of `emu`.
pub(crate) fn set_rules(emu: &Emulator, rules: Vec<FaultRule>) {
    emu.set_faults(Faults {
        rules,
        ..Faults::default()
    });
}

/// The `dap` binary with no DAP_* variables inherited and fast poll/retry timings.
pub(crate) fn bare_dap() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dap"));
    for var in [
        "DAP_API_URL",
        "DAP_CLIENT_ID",
        "DAP_CLIENT_SECRET",
        "DAP_CLI_POLL_INTERVAL_MS",
        "DAP_CLI_RETRY_BACKOFF_MS",
        "DAP_LOW_SPEED_LIMIT",
        "DAP_LOW_SPEED_TIME",
        "DAP_CALL_TIMEOUT",
        "DAP_USE_SYSTEM_CA",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DAP_CLI_POLL_INTERVAL_MS", "10")
        .env("DAP_CLI_RETRY_BACKOFF_MS", "5");
    cmd
}

/// The `dap` binary pointed at `emu` through the environment, non-interactive.
pub(crate) fn dap(emu: &Emulator) -> Command {
    let mut cmd = bare_dap();
    cmd.env("DAP_API_URL", emu.base_url())
        .env("DAP_CLIENT_ID", emu.client_id())
        .env("DAP_CLIENT_SECRET", emu.client_secret())
        .arg("--non-interactive");
    cmd
}

/// What a run printed.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub(crate) fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stderr contains each of `texts`.
    pub(crate) fn assert_stderr_has(&self, texts: &[&str]) -> &Self {
        assert_has("stderr", &self.stderr, texts);
        self
    }

    /// Stdout contains each of `texts`.
    pub(crate) fn assert_stdout_has(&self, texts: &[&str]) -> &Self {
        assert_has("stdout", &self.stdout, texts);
        self
    }

    /// Neither stream contains the client secret.
    pub(crate) fn assert_no_secret(&self) -> &Self {
        assert!(!self.stdout.contains(SECRET_MARKER), "secret in stdout");
        assert!(!self.stderr.contains(SECRET_MARKER), "secret in stderr");
        self
    }
}

/// `stream`, named `name`, contains each of `texts`.
fn assert_has(name: &str, stream: &str, texts: &[&str]) {
    for text in texts {
        assert!(stream.contains(text), "{text:?} not in {name}:\n{stream}");
    }
}

pub(crate) fn run(cmd: &mut Command) -> Run {
    finished(cmd.output().expect("dap runs"))
}

fn finished(output: Output) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = output;
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `dap ARGS --output-directory DIR` against `emu`.
pub(crate) fn run_in<S: AsRef<std::ffi::OsStr>>(
    emu: &Emulator,
    dir: &Path,
    args: impl IntoIterator<Item = S>,
) -> Run {
    run(dap(emu).args(args).arg("--output-directory").arg(dir))
}

/// [`run_in`] a new temporary directory, returned with the run so that it lives as long
/// as the test looks at it.
pub(crate) fn run_in_temp<S: AsRef<std::ffi::OsStr>>(
    emu: &Emulator,
    args: impl IntoIterator<Item = S>,
) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (run_in(emu, dir.path(), args), dir)
}

/// `COMMAND --namespace canvas --table TABLES MORE...`.
pub(crate) fn on(command: &str, tables: &str, more: &[&str]) -> Vec<String> {
    [command, "--namespace", "canvas", "--table", tables]
        .iter()
        .chain(more)
        .map(|s| (*s).to_owned())
        .collect()
}

/// The sync state file of `dir`.
pub(crate) fn sync_state(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("dap-sync-state.json")).unwrap()).unwrap()
}

/// Starts `cmd` in the background, its output captured.
pub(crate) fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dap starts")
}

/// Waits for a background run to end.
pub(crate) fn wait(child: Child) -> Run {
    finished(child.wait_with_output().expect("dap ends"))
}

/// Sends SIGINT to a background run.
pub(crate) fn interrupt(child: &Child) {
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// Polls `done` until it holds, failing after `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every file under `dir`, relative, sorted.
pub(crate) fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The JSON records of the (gzip or plain) JSON Lines files of `paths`, sorted by key.
pub(crate) fn read_records(paths: &[PathBuf]) -> Vec<Value> {
    let mut records = Vec::new();
    for path in paths {
        let raw = std::fs::read(path).unwrap();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .unwrap();
            s
        } else {
            String::from_utf8(raw).unwrap()
        };
        for line in text.lines().filter(|l| !l.is_empty()) {
            records.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    sort_records(records)
}

pub(crate) fn sort_records(mut records: Vec<Value>) -> Vec<Value> {
    records.sort_by_key(|v| v["key"]["id"].as_i64());
    records
}

/// What the emulator says `range` returns, sorted by key.
pub(crate) fn expected(
    emu: &Emulator,
    ns: &str,
    table: &str,
    range: dap_emulator::EmulatedRange,
) -> Vec<Value> {
    sort_records(
        emu.expected_records(ns, table, range)
            .expect("known table")
            .iter()
            .map(dap_emulator::Record::to_json)
            .collect(),
    )
}

/// What the emulator says the query of one `--json` table report returns: its
/// snapshot `at`, or its incremental `since` and `until`.
pub(crate) fn expected_for(emu: &Emulator, ns: &str, report: &Value) -> Vec<Value> {
    let range = if report["at"].is_string() {
        dap_emulator::EmulatedRange::Snapshot {
            at_ms: ms(&report["at"]),
        }
    } else {
        dap_emulator::EmulatedRange::Incremental {
            since_ms: ms(&report["since"]),
            until_ms: ms(&report["until"]),
        }
    };
    expected(emu, ns, report["table"].as_str().expect("table"), range)
}

/// Checks that the files of a `--json` table report hold exactly what the emulator
/// says its query returns; returns the record count.
pub(crate) fn assert_exact(emu: &Emulator, report: &Value) -> usize {
    let got = read_records(&files_of(report));
    assert_eq!(got, expected_for(emu, "canvas", report), "{report}");
    got.len()
}

/// Milliseconds of an RFC 3339 timestamp.
pub(crate) fn ms(ts: &Value) -> i64 {
    ts.as_str()
        .expect("timestamp string")
        .parse::<jiff::Timestamp>()
        .expect("RFC 3339")
        .as_millisecond()
}

/// The file paths of one table of a `--json` result.
pub(crate) fn files_of(table: &Value) -> Vec<PathBuf> {
    table["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect()
}

/// Every file under `dir` is finished (no temporary or lock file) and, if gzip,
/// complete.
pub(crate) fn assert_only_complete_files(dir: &Path) {
    for f in tree(dir) {
        let name = f.rsplit('/').next().unwrap();
        assert!(!name.starts_with('.'), "temporary or lock file left: {f}");
        if f.ends_with(".gz") {
            let raw = std::fs::read(dir.join(&f)).unwrap();
            let mut decoder = dap_proto::gzip::GzipDecoder::new();
            decoder.verify(&raw).unwrap();
            decoder
                .finish()
                .unwrap_or_else(|e| panic!("{f} is incomplete: {e}"));
        }
    }
}
