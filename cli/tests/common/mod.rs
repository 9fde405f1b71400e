//! Helpers shared by the end-to-end tests: an emulator, the built `dap` binary, and
//! readers for what it writes.
#![allow(dead_code, unreachable_pub)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dap_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

pub const SECRET_MARKER: &str = "s3cr3t-Value-that-must-never-leak";

/// An emulator with a secret that is easy to search for in output.
pub fn emulator() -> Emulator {
    emulator_with(EmulatorConfig::default())
}

/// An emulator with `config`, its secret replaced by [`SECRET_MARKER`].
pub fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(EmulatorConfig {
        client_secret: SECRET_MARKER.to_owned(),
        ..config
    })
    .expect("emulator starts")
}

/// The `dap` binary with no DAP_* variables inherited and fast poll/retry timings.
pub fn bare_dap() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dap"));
    for var in [
        "DAP_API_URL",
        "DAP_CLIENT_ID",
        "DAP_CLIENT_SECRET",
        "DAP_CLI_POLL_INTERVAL_MS",
        "DAP_CLI_RETRY_BACKOFF_MS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DAP_CLI_POLL_INTERVAL_MS", "10")
        .env("DAP_CLI_RETRY_BACKOFF_MS", "5");
    cmd
}

/// The `dap` binary pointed at `emu` through the environment, non-interactive.
pub fn dap(emu: &Emulator) -> Command {
    let mut cmd = bare_dap();
    cmd.env("DAP_API_URL", emu.base_url())
        .env("DAP_CLIENT_ID", emu.client_id())
        .env("DAP_CLIENT_SECRET", emu.client_secret())
        .arg("--non-interactive");
    cmd
}

/// What a run printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Neither stream contains the client secret.
    pub fn assert_no_secret(&self) -> &Self {
        assert!(!self.stdout.contains(SECRET_MARKER), "secret in stdout");
        assert!(!self.stderr.contains(SECRET_MARKER), "secret in stderr");
        self
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("dap runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Every file under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
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
pub fn read_records(paths: &[PathBuf]) -> Vec<Value> {
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

pub fn sort_records(mut records: Vec<Value>) -> Vec<Value> {
    records.sort_by_key(|v| v["key"]["id"].as_i64());
    records
}

/// What the emulator says `range` returns, sorted by key.
pub fn expected(
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

/// Milliseconds of an RFC 3339 timestamp.
pub fn ms(ts: &Value) -> i64 {
    ts.as_str()
        .expect("timestamp string")
        .parse::<jiff::Timestamp>()
        .expect("RFC 3339")
        .as_millisecond()
}

/// The file paths of one table of a `--json` result.
pub fn files_of(table: &Value) -> Vec<PathBuf> {
    table["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect()
}
