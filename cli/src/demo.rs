//! `dap demo`: the whole workflow against a built-in emulator, with no credentials and
//! no network. It runs the same code as the real commands: list the tables, fetch a
//! schema, take a snapshot, advance the emulator's clock an hour, chain an incremental
//! from the snapshot's `at`, and check every downloaded record against what the
//! emulator says the queries must return.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};
use dap_hyper::{Client, DownloadOptions, DownloadedFile};
use dap_proto::gzip::GzipDecoder;
use dap_proto::{DataRange, Format, Query};
use serde_json::{Value, json};

use crate::args::DemoArgs;
use crate::commands::{self, Fetched, Outcome, print_stdout};
use crate::errors::CliError;
use crate::progress::{human_bytes, millis_since};
use crate::report::{TableReport, display_path};

const NAMESPACE: &str = "canvas";
const CLOCK_STEP: Duration = Duration::from_secs(3600);

/// Prints one step line (text mode only).
struct Narrator {
    quiet: bool,
}

impl Narrator {
    fn say(&self, text: impl AsRef<str>) {
        if !self.quiet {
            print_stdout(&format!("{}\n", text.as_ref()));
        }
    }

    fn step(&self, name: &str, text: impl AsRef<str>, ms: u64) {
        self.say(format!("  ✓ {name:<12} {}  ({ms} ms)", text.as_ref()));
    }
}

/// `dap demo`.
pub(crate) async fn demo(
    args: &DemoArgs,
    json_output: bool,
    build_client: impl FnOnce(&Emulator) -> Result<Client, CliError>,
) -> Result<Outcome, CliError> {
    let total = Instant::now();
    let say = Narrator { quiet: json_output };
    say.say(
        "dap demo: the whole DAP workflow against a built-in emulator (no credentials, no network)\n",
    );

    // The emulator: two objects per job, so downloads run concurrently.
    let started = Instant::now();
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: 2,
        ..EmulatorConfig::default()
    })
    .map_err(|e| CliError::Other(format!("the built-in emulator could not start: {e}")))?;
    let client = build_client(&emu)?;
    say.step(
        "emulator",
        format!("listening on {}", emu.base_url()),
        millis_since(started),
    );

    let temp;
    let out_dir: PathBuf = match &args.output_directory {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("dap-demo-")
                .tempdir()
                .map_err(|e| {
                    CliError::io(
                        "cannot create a temporary directory in",
                        std::env::temp_dir(),
                        e,
                    )
                })?;
            temp.path().to_path_buf()
        }
    };
    let mut steps = Vec::new();

    // 1. list
    let started = Instant::now();
    let tables = client
        .list_tables(NAMESPACE)
        .await
        .map_err(|e| CliError::api("listing the tables of the emulator", e))?;
    let ms = millis_since(started);
    let shown: Vec<&str> = tables.iter().take(4).map(String::as_str).collect();
    say.step(
        "list",
        format!(
            "{NAMESPACE} has {} tables: {}{}",
            tables.len(),
            shown.join(", "),
            if tables.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ),
        ms,
    );
    steps.push(json!({ "step": "list", "ms": ms, "tables": tables }));
    let table = args.table.as_str();
    if !tables.iter().any(|t| t == table) {
        return Err(CliError::Usage(format!(
            "the emulator has no table '{table}' in {NAMESPACE}; choose one of: {}",
            tables.join(", ")
        )));
    }

    // 2. schema
    let started = Instant::now();
    let schema = client
        .table_schema(NAMESPACE, table)
        .await
        .map_err(|e| CliError::api(format!("fetching the schema of '{table}'"), e))?;
    let schema_file = commands::write_schema(&out_dir, table, &schema)?;
    let ms = millis_since(started);
    let columns = schema.value()["properties"]["value"]["properties"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    say.step(
        "schema",
        format!(
            "{NAMESPACE}.{table}: version {}, {columns} value columns -> {}",
            schema.version,
            file_name(&schema_file)
        ),
        ms,
    );
    steps.push(json!({ "step": "schema", "ms": ms, "schema_version": schema.version, "schema_file": display_path(&schema_file) }));

    // 3. snapshot
    let options = DownloadOptions::default().concurrency(4);
    let snap = commands::fetch(
        &client,
        NAMESPACE,
        table,
        Query::snapshot(Format::Jsonl),
        &out_dir,
        &options,
    )
    .await?;
    say.step("snapshot", summary(&snap), snap.query_ms + snap.download_ms);
    steps.push(step_json("snapshot", &snap, table));

    // 4. advance the clock and chain an incremental from the snapshot's `at`.
    emu.advance_clock(CLOCK_STEP);
    say.say("  ⏩ emulator clock advanced by 1 hour (rows keep changing every minute)");
    let since = snap.result.range.next_since();
    let inc = commands::fetch(
        &client,
        NAMESPACE,
        table,
        Query::incremental(Format::Jsonl, since),
        &out_dir,
        &options,
    )
    .await?;
    say.step("incremental", summary(&inc), inc.query_ms + inc.download_ms);
    steps.push(step_json("incremental", &inc, table));

    // 5. verify every record against the emulator's own answer.
    let started = Instant::now();
    let snap_records = verify(&emu, table, &snap)?;
    let inc_records = verify(&emu, table, &inc)?;
    let ms = millis_since(started);
    let files = snap.files.len() + inc.files.len();
    say.step(
        "verify",
        format!(
            "{files} files: gzip CRC-32 ok; {snap_records} snapshot + {inc_records} changed records match the emulator exactly"
        ),
        ms,
    );
    steps.push(json!({ "step": "verify", "ms": ms, "files": files, "snapshot_records": snap_records, "incremental_records": inc_records }));

    let total_ms = millis_since(total);
    let stats = emu.stats();
    say.say(format!(
        "\nDone in {:.2} s: {} requests, {}, {} credentials sent to object storage.",
        total_ms as f64 / 1000.0,
        stats_requests(&stats),
        match client.logins() {
            1 => "1 login".to_owned(),
            n => format!("{n} logins (the clock jump expired the first token)"),
        },
        if stats.storage_with_credentials == 0 {
            "no".to_owned()
        } else {
            stats.storage_with_credentials.to_string()
        }
    ));
    match &args.output_directory {
        Some(d) => say.say(format!("Files are in {}", d.display())),
        None => say.say(format!(
            "Files were written to {} and removed again; keep them with --output-directory DIR.",
            out_dir.display()
        )),
    }
    say.say(
        "\nNext, with your own credentials from the Identity Service:\n  \
         export DAP_CLIENT_ID=... DAP_CLIENT_SECRET=...\n  \
         dap list --namespace canvas\n  \
         dap snapshot --namespace canvas --table users\n  \
         dap sync --namespace canvas --table all --output-directory canvas-data",
    );
    Ok(Outcome {
        json: json!({
            "command": "demo",
            "ok": true,
            "emulator": emu.base_url(),
            "namespace": NAMESPACE,
            "table": table,
            "output_directory": args.output_directory.as_ref().map(|d| display_path(d)),
            "steps": steps,
            "elapsed_ms": total_ms,
        }),
        ok: true,
    })
}

fn stats_requests(stats: &dap_emulator::Stats) -> u64 {
    let r = &stats.requests;
    r.login + r.tables + r.schema + r.query + r.job + r.object_urls + r.storage
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn summary(f: &Fetched) -> String {
    let bytes: u64 = f.files.iter().map(|x| x.bytes).sum();
    let range = match f.result.range {
        DataRange::Snapshot { at } => format!("at {at}"),
        DataRange::Incremental { since, until } => format!("since {since} until {until}"),
        _ => String::new(),
    };
    format!(
        "{NAMESPACE}.{} {range}: job {}, {} files, {}",
        f.table,
        short_id(f.result.job.as_str()),
        f.files.len(),
        human_bytes(bytes)
    )
}

fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn step_json(step: &str, f: &Fetched, table: &str) -> Value {
    let report = TableReport::ok(table).with_result(&f.result, &f.dir, &f.files);
    json!({ "step": step, "ms": f.query_ms + f.download_ms, "result": report })
}

/// Decodes every file of `f` (checking each gzip member's CRC-32 and length) and
/// compares the records with what the emulator says the query returns; returns the
/// record count.
fn verify(emu: &Emulator, table: &str, f: &Fetched) -> Result<usize, CliError> {
    let range = match f.result.range {
        DataRange::Snapshot { at } => dap_emulator::EmulatedRange::Snapshot {
            at_ms: at.as_millisecond(),
        },
        DataRange::Incremental { since, until } => dap_emulator::EmulatedRange::Incremental {
            since_ms: since.as_millisecond(),
            until_ms: until.as_millisecond(),
        },
        _ => return Err(CliError::Other("unknown query range".to_owned())),
    };
    let mut expected: Vec<Value> = emu
        .expected_records(NAMESPACE, table, range)
        .ok_or_else(|| CliError::Other(format!("the emulator does not know '{table}'")))?
        .iter()
        .map(dap_emulator::Record::to_json)
        .collect();
    let mut got = Vec::new();
    for file in &f.files {
        got.extend(read_jsonl_gz(file)?);
    }
    let key = |v: &Value| v["key"]["id"].as_i64().unwrap_or(i64::MIN);
    expected.sort_by_key(key);
    got.sort_by_key(key);
    if got != expected {
        return Err(CliError::Other(format!(
            "verification failed for job {}: the files hold {} records, the emulator expected {}",
            f.result.job,
            got.len(),
            expected.len()
        )));
    }
    Ok(got.len())
}

fn read_jsonl_gz(file: &DownloadedFile) -> Result<Vec<Value>, CliError> {
    let bytes = std::fs::read(&file.path)
        .map_err(|e| CliError::io("cannot read the downloaded file", &file.path, e))?;
    let mut plain = Vec::new();
    let mut decoder = GzipDecoder::new();
    let bad = |e: dap_proto::gzip::GzipError| {
        CliError::Other(format!(
            "{} is not a valid gzip file: {e}",
            file.path.display()
        ))
    };
    decoder.decode(&bytes, &mut plain).map_err(bad)?;
    decoder.finish().map_err(bad)?;
    plain
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| {
                CliError::Other(format!(
                    "{} holds a malformed record: {e}",
                    file.path.display()
                ))
            })
        })
        .collect()
}
