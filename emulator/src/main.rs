//! `dap-emulator`: runs a local DAP emulator until Ctrl-C.
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::Parser;
use dap_emulator::{Emulator, EmulatorConfig, Faults};

/// A local emulator of Instructure's Data Access Platform API.
#[derive(Debug, Parser)]
#[command(name = "dap-emulator", version, about)]
struct Args {
    /// API port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Object storage port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    storage_port: u16,
    /// Accepted client id.
    #[arg(long, default_value = dap_emulator::DEMO_CLIENT_ID)]
    client_id: String,
    /// Accepted client secret.
    #[arg(long, default_value = dap_emulator::DEMO_CLIENT_SECRET, hide_default_value = true)]
    client_secret: String,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// How long a new job stays `waiting`, in milliseconds.
    #[arg(long, default_value_t = 0)]
    job_waiting_ms: u64,
    /// How long a job stays `running`, in milliseconds.
    #[arg(long, default_value_t = 0)]
    job_running_ms: u64,
    /// Objects (files) per completed job.
    #[arg(long, default_value_t = 1)]
    objects_per_job: u32,
    /// Serve synthetic bulk objects of this many uncompressed MiB each (benchmarks).
    #[arg(long)]
    object_size_mib: Option<u64>,
    /// Rows of every table (overrides the per-table defaults).
    #[arg(long)]
    rows_per_table: Option<u64>,
    /// Seconds between two change events of each table.
    #[arg(long, default_value_t = 60.0)]
    change_interval: f64,
    /// Retention window in days (older `since` gets OutOfRange).
    #[arg(long, default_value_t = 30)]
    retention_days: u64,
    /// Enforce the documented per-minute rate limits.
    #[arg(long)]
    rate_limits: bool,
    /// Every new job fails.
    #[arg(long)]
    fail_jobs: bool,
    /// Every incremental query answers SnapshotRequired.
    #[arg(long)]
    snapshot_required: bool,
    /// Lifetime of pre-signed object URLs in seconds (`X-Amz-Expires`).
    #[arg(long, default_value_t = 900)]
    url_lifetime: u64,
    /// Give every query a new job instead of reusing the job of an identical query.
    #[arg(long)]
    no_job_reuse: bool,
    /// Memory budget of the cache of generated objects, in MiB.
    #[arg(long, default_value_t = 256)]
    object_cache_mib: u64,
    /// Initial faults as JSON (the body of `PUT /_emulator/faults`).
    #[arg(long)]
    faults_json: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut faults: Faults = match &args.faults_json {
        Some(j) => serde_json::from_str(j)?,
        None => Faults::default(),
    };
    faults.rate_limits |= args.rate_limits;
    faults.fail_jobs |= args.fail_jobs;
    faults.snapshot_required |= args.snapshot_required;
    if !(args.change_interval.is_finite() && args.change_interval > 0.0) {
        return Err("--change-interval must be positive".into());
    }
    let config = EmulatorConfig {
        port: args.port,
        storage_port: args.storage_port,
        client_id: args.client_id,
        client_secret: args.client_secret,
        token_lifetime: Duration::from_secs(args.token_lifetime),
        job_waiting: Duration::from_millis(args.job_waiting_ms),
        job_running: Duration::from_millis(args.job_running_ms),
        objects_per_job: args.objects_per_job.max(1),
        object_size_bytes: args.object_size_mib.map(|m| m << 20),
        rows_per_table: args.rows_per_table,
        change_interval: Duration::from_secs_f64(args.change_interval),
        retention: Duration::from_secs(args.retention_days * 86_400),
        url_lifetime: Duration::from_secs(args.url_lifetime.max(1)),
        reuse_jobs: !args.no_job_reuse,
        object_cache_bytes: args.object_cache_mib << 20,
        faults,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config)?;
    println!("DAP emulator listening on {}", emu.base_url());
    println!("object storage on {}", emu.storage_url());
    println!("client id:     {}", emu.client_id());
    println!("client secret: {}", emu.client_secret());
    println!();
    println!("export DAP_API_URL={}", emu.base_url());
    println!("export DAP_CLIENT_ID='{}'", emu.client_id());
    println!("export DAP_CLIENT_SECRET='{}'", emu.client_secret());
    println!();
    println!(
        "control: GET {0}/_emulator/stats, PUT {0}/_emulator/faults, POST {0}/_emulator/advance, POST {0}/_emulator/revoke, POST {0}/_emulator/schema/bump, POST {0}/_emulator/snapshot-required",
        emu.base_url()
    );
    println!("press Ctrl-C to stop");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio::signal::ctrl_c())?;
    drop(emu);
    Ok(())
}
