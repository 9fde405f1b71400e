//! Fuzz harnesses for `dap-proto`: one module per cargo-fuzz target, each with a `run`
//! function that the target in `fuzz_targets/` calls and that `tests/corpus.rs` replays
//! every checked-in corpus file through on stable Rust.
//!
//! Every `run` takes raw fuzzer bytes, builds structured input from them with
//! [`arbitrary`] (the core's commands and values derive it behind dap-proto's
//! `arbitrary` feature), drives one part of the core and panics when an invariant
//! breaks; the invariants shared by several targets live in [`oracles`]. Time comes
//! from [`dap_proto::testing::VirtualClock`], which only ever adds durations to a
//! fixed origin.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

pub mod gzip;
mod input;
pub mod oracles;
pub mod parsers;
pub mod records;
pub mod session;
pub mod transfer;
pub mod wire;

/// The client secret of every harness configuration.
pub const SECRET: &str = "s3cr3t-Qv9xZk";
/// A marker placed in bodies that must never be quoted (login, object URLs).
pub const BODY_MARK: &str = "BODYxMARKq7";
/// Part of every URL signature the harness hands out.
pub const SIG_MARK: &str = "SIGxMARKz3";
/// Part of every access token the harness hands out.
pub const TOKEN_MARK: &str = "TOKxMARKw5";
/// The API base URL of every harness configuration.
pub const API_BASE: &str = "https://api.dap.example";
/// The host of [`API_BASE`].
pub const API_HOST: &str = "api.dap.example";

/// Names of the targets, for the corpus replay.
pub const TARGETS: [&str; 6] = ["parsers", "wire", "session", "gzip", "records", "transfer"];

/// Runs the named target on `data`.
///
/// # Panics
/// When an invariant breaks, or `target` is not one of [`TARGETS`].
pub fn run(target: &str, data: &[u8]) {
    match target {
        "parsers" => parsers::run(data),
        "wire" => wire::run(data),
        "session" => session::run(data),
        "gzip" => gzip::run(data),
        "records" => records::run(data),
        "transfer" => transfer::run(data),
        other => panic!("unknown target {other}"),
    }
}

/// The first 64 bytes of `data` in hex, for the corpus tests' messages.
pub fn describe(data: &[u8]) -> String {
    let mut out = String::new();
    for b in data.iter().take(64) {
        let _ = write!(out, "{b:02x}");
    }
    out
}
