//! Download throughput of dap-ureq over loopback: a job of 8 objects x 64 MiB
//! (uncompressed) from the in-process emulator, concurrency 4, verified, with and
//! without decompression, beside a parallel `curl` baseline (no verification) on the
//! same pre-signed URLs when curl is installed.
//!
//! `cargo bench -p dap-ureq --bench download` (set `DAP_BENCH_SCALE=4` for 4x the data,
//! `DAP_BENCH_DIR=/dev/shm` to write to memory instead of the disk).
//! CPU time is the process's, minus the emulator's own threads; peak RSS is the whole
//! process (emulator included).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};
use dap_proto::{Config, Format};
use dap_ureq::{Client, DownloadOptions, Options};

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// (utime + stime, cutime + cstime) of a `/proc/.../stat` file, in seconds.
fn stat_times(path: &str) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the `(comm)`, which may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // rest starts at field 3 (state): utime = field 14 -> index 11.
    let own = (f.get(11)? + f.get(12)?) as f64 / TICKS;
    let children = (f.get(13)? + f.get(14)?) as f64 / TICKS;
    Some((own, children))
}

/// CPU seconds of this process's threads whose name starts with `dap-emulator`.
fn emulator_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("dap-emulator"))
        })
        .filter_map(|t| stat_times(&t.path().join("stat").to_string_lossy()))
        .map(|(own, _)| own)
        .sum()
}

/// (client CPU seconds, children CPU seconds) so far.
fn cpu() -> (f64, f64) {
    let (own, children) = stat_times("/proc/self/stat").unwrap_or((0.0, 0.0));
    (own - emulator_cpu(), children)
}

/// A temporary directory, under `DAP_BENCH_DIR` when set (e.g. `/dev/shm` to leave the
/// disk and its fsync out of the figures).
fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("DAP_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("tempdir")
}

fn report(label: &str, wall: Duration, compressed: u64, written: u64, cpu_s: f64) {
    let secs = wall.as_secs_f64();
    let gb = compressed as f64 / 1e9;
    println!(
        "{label:<28} wall {secs:6.3} s  {:8.1} MB/s compressed  {:6.1} MB written  CPU {cpu_s:6.2} s = {:5.2} s/GB compressed",
        compressed as f64 / 1e6 / secs,
        written as f64 / 1e6,
        if gb > 0.0 { cpu_s / gb } else { 0.0 },
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (like a test filter) is ignored.
    let scale: u64 = std::env::var("DAP_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: 8,
        object_size_bytes: Some((64 << 20) * scale),
        ..EmulatorConfig::default()
    })
    .expect("emulator");
    let config = Config::builder(emu.client_id(), emu.client_secret())
        .base_url(emu.base_url())
        .build()
        .expect("config");
    let client =
        Client::with_options(config, Options::default().proxy_from_env(false)).expect("client");
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    println!(
        "dap-ureq download bench: {} objects x {} MiB uncompressed, concurrency 4, loopback",
        result.objects.len(),
        64 * scale
    );

    // Warm the emulator's cached member (built on first request) off the clock.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut warm = result.clone();
        warm.objects.truncate(1);
        client
            .download(&warm, dir.path(), &DownloadOptions::default())
            .expect("warm-up");
    }

    for decompress in [false, true] {
        let dir = tempdir();
        let options = DownloadOptions::default()
            .concurrency(4)
            .decompress(decompress);
        let (cpu0, _) = cpu();
        let started = Instant::now();
        let files = client
            .download(&result, dir.path(), &options)
            .expect("download");
        let wall = started.elapsed();
        let (cpu1, _) = cpu();
        assert_eq!(files.len(), result.objects.len());
        let compressed: u64 = files.iter().map(|f| f.compressed_bytes).sum();
        let written: u64 = files.iter().map(|f| f.bytes).sum();
        let label = if decompress {
            "ureq verified+decompressed"
        } else {
            "ureq verified (gzip kept)"
        };
        report(label, wall, compressed, written, cpu1 - cpu0);
        let resumes: u32 = files.iter().map(|f| f.resumes).sum();
        if resumes > 0 {
            println!("  ({resumes} resumed connections)");
        }
    }

    // Baseline: parallel curl (4 at a time) on the same URLs, writing to a temp dir,
    // without any verification.
    let curl = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if curl {
        let dir = tempdir();
        let (_, child0) = cpu();
        let started = Instant::now();
        let mut total = 0u64;
        for (batch_no, batch) in result.objects.chunks(4).enumerate() {
            let children: Vec<_> = batch
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    Command::new("curl")
                        .args(["-s", "-f", "-o"])
                        .arg(dir.path().join(format!("o{batch_no}_{i}")))
                        .arg(o.url.secret())
                        .spawn()
                        .expect("curl starts")
                })
                .collect();
            for mut c in children {
                assert!(c.wait().expect("curl").success(), "curl failed");
            }
        }
        let wall = started.elapsed();
        for e in std::fs::read_dir(dir.path()).expect("dir").flatten() {
            total += e.metadata().map_or(0, |m| m.len());
        }
        let (_, child1) = cpu();
        report(
            "curl x4 (no verification)",
            wall,
            total,
            total,
            child1 - child0,
        );
    } else {
        println!("curl not found: no baseline");
    }
    println!(
        "peak RSS (process, emulator included): {:.1} MiB",
        dap_emulator::measure::peak_rss_mib()
    );
    println!("logins: {}", client.logins());
}
