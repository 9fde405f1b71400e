//! Download and API throughput of dap-hyper against the in-process emulator.
//!
//! ```text
//! cargo bench -p dap-hyper --bench download              # both modes
//! cargo bench -p dap-hyper --bench download -- download  # 8 x 64 MiB job, verified
//! cargo bench -p dap-hyper --bench download -- schema    # 200 concurrent schema calls
//! cargo bench -p dap-hyper --bench download -- download --scale 4   # 32 objects
//! ```
//!
//! CPU time is read from `/proc/self/task/*/stat` and split between the emulator's
//! threads (named `dap-emulator*`) and the rest (the client); threads that exit during
//! a run are not counted.

use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};
use dap_hyper::{Client, DownloadOptions};
use dap_proto::{Config, Format, PollPolicy};

/// Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// (client, emulator) CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    let (mut client, mut emulator) = (0u64, 0u64);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state is field 3; utime and stime are 14 and 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        if comm.starts_with("dap-emulator") {
            emulator += ticks;
        } else {
            client += ticks;
        }
    }
    (client as f64 / TICKS, emulator as f64 / TICKS)
}

fn client_for(emu: &Emulator) -> Client {
    let config = Config::builder(emu.client_id(), emu.client_secret())
        .base_url(emu.base_url())
        .poll(PollPolicy::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ))
        .build()
        .expect("config");
    Client::new(config).expect("client")
}

async fn bench_download(scale: u32) {
    let objects = 8 * scale;
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: objects,
        object_size_bytes: Some(64 << 20),
        ..EmulatorConfig::default()
    })
    .expect("emulator");
    let client = client_for(&emu);
    let result = client
        .snapshot("canvas", "users", Format::Jsonl)
        .await
        .expect("snapshot");
    println!(
        "download: {} objects x 64 MiB uncompressed, concurrency 4, gzip verified",
        result.objects.len()
    );
    for decompress in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (c0, e0) = cpu_seconds();
        let started = Instant::now();
        let files = client
            .download(
                &result,
                tmp.path(),
                &DownloadOptions::default()
                    .decompress(decompress)
                    .concurrency(4),
            )
            .await
            .expect("download");
        let wall = started.elapsed().as_secs_f64();
        let (c1, e1) = cpu_seconds();
        let compressed: u64 = files.iter().map(|f| f.compressed_bytes).sum();
        let inflated: u64 = files.iter().filter_map(|f| f.decompressed_bytes).sum();
        let written: u64 = files.iter().map(|f| f.bytes).sum();
        let gb = compressed as f64 / 1e9;
        println!(
            "  decompress={decompress:<5} wall {wall:.3} s | {:.0} MB compressed ({:.0} MB inflated, {:.0} MB written) | {:.0} MB/s compressed, {:.0} MB/s inflated | client CPU {:.2} s = {:.2} s/GB compressed, {:.2} s/GB inflated | emulator CPU {:.2} s | peak RSS {:.1} MiB (process, emulator included)",
            compressed as f64 / 1e6,
            inflated as f64 / 1e6,
            written as f64 / 1e6,
            compressed as f64 / 1e6 / wall,
            inflated as f64 / 1e6 / wall,
            c1 - c0,
            (c1 - c0) / gb,
            (c1 - c0) / (inflated as f64 / 1e9),
            e1 - e0,
            dap_emulator::measure::peak_rss_mib(),
        );
    }
}

async fn bench_schema() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator");
    let client = client_for(&emu);
    println!("schema: 200 concurrent table_schema calls per round");
    for round in 1..=5 {
        let started = Instant::now();
        let calls = (0..200).map(|_| client.table_schema("canvas", "users"));
        let results = futures_util::future::join_all(calls).await;
        let wall = started.elapsed().as_secs_f64();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        println!(
            "  round {round}: {ok}/200 ok in {:.1} ms = {:.0} requests/s | logins so far: client {} / emulator {}",
            wall * 1e3,
            200.0 / wall,
            client.logins(),
            emu.stats().logins
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scale = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let modes: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "download" | "schema"))
        .collect();
    let all = modes.is_empty();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if all || modes.contains(&"download") {
            bench_download(scale).await;
        }
        if all || modes.contains(&"schema") {
            bench_schema().await;
        }
    });
}
