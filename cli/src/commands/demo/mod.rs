//! `dap demo`: the whole workflow against a built-in emulator, with no credentials and
//! no network. It runs the same code as the real commands, one step after another as
//! it tells them: start the emulator, list the tables, fetch a schema, take a snapshot,
//! advance the emulator's clock an hour, chain an incremental from the snapshot's `at`,
//! and check every downloaded record against what the emulator says the queries must
//! return.

mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};
use dap_hyper::{Client, DownloadOptions};
use dap_proto::{Format, Query, QueryResult};
use serde_json::{Value, json};
use tempfile::TempDir;
use tracing::warn;

use crate::args::DemoArgs;
use crate::batch::Outcome;
use crate::commands::{data, schema};
use crate::context::Context;
use crate::errors::CliError;
use crate::fetch::{self, Downloaded};
use crate::print_stdout;
use crate::progress::{human_bytes, millis_since};
use crate::report::{TableReport, describe_range, display_path};

const NAMESPACE: &str = "canvas";
const CLOCK_STEP: Duration = Duration::from_secs(3600);

/// `dap demo`.
pub(crate) async fn run(ctx: &Context<'_>, args: &DemoArgs) -> Result<Outcome, CliError> {
    if ctx.global.client_id.is_some() || ctx.global.client_secret.is_some() {
        warn!("dap demo uses its built-in emulator; the configured credentials are not used");
    }
    let mut demo = Demo::start(ctx, args)?;
    demo.list_tables().await?;
    demo.save_schema().await?;
    let snapshot = demo.take_snapshot().await?;
    demo.advance_clock();
    let incremental = demo.chain_incremental(&snapshot).await?;
    demo.verify(&snapshot, &incremental)?;
    demo.replicate().await?;
    Ok(demo.finish(args))
}

/// One query of the demo, downloaded.
struct Fetched {
    result: QueryResult,
    got: Downloaded,
    query_ms: u64,
}

/// The demo in progress: the emulator, the client, where the files go, and the steps
/// told so far.
struct Demo<'a> {
    ctx: &'a Context<'a>,
    quiet: bool,
    started: Instant,
    emu: Emulator,
    client: Client,
    table: String,
    out_dir: PathBuf,
    /// Removed when the demo ends, unless `--output-directory` was given.
    _temp: Option<TempDir>,
    steps: Vec<Value>,
}

impl<'a> Demo<'a> {
    /// Starts the emulator (two objects per job, so downloads run concurrently) and
    /// a client for it.
    fn start(ctx: &'a Context<'a>, args: &DemoArgs) -> Result<Self, CliError> {
        let quiet = ctx.json_output();
        let started = Instant::now();
        if !quiet {
            print_stdout(
                "dap demo: the whole DAP workflow against a built-in emulator (no credentials, \
                 no network)\n\n",
            );
        }
        let emu = Emulator::start(EmulatorConfig {
            objects_per_job: 2,
            ..EmulatorConfig::default()
        })
        .map_err(|e| CliError::Other(format!("the built-in emulator could not start: {e}")))?;
        let client = ctx.client_for(&emu.base_url(), emu.client_id(), emu.client_secret())?;
        let (out_dir, temp) = output_directory(args)?;
        let demo = Self {
            ctx,
            quiet,
            started,
            emu,
            client,
            table: args.table.clone(),
            out_dir,
            _temp: temp,
            steps: Vec::new(),
        };
        let url = demo.emu.base_url();
        demo.tell(
            "emulator",
            &format!("listening on {url}"),
            millis_since(started),
        );
        Ok(demo)
    }

    fn say(&self, text: &str) {
        if !self.quiet {
            print_stdout(&format!("{text}\n"));
        }
    }

    fn tell(&self, step: &str, text: &str, ms: u64) {
        self.say(&format!("  ✓ {step:<12} {text}  ({ms} ms)"));
    }

    /// Step 1: the tables of the namespace, the chosen one among them.
    async fn list_tables(&mut self) -> Result<(), CliError> {
        let started = Instant::now();
        let tables = self
            .client
            .list_tables(NAMESPACE)
            .await
            .map_err(|e| CliError::api("listing the tables of the emulator", e))?;
        let ms = millis_since(started);
        let shown: Vec<&str> = tables.iter().take(4).map(String::as_str).collect();
        let more = if tables.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        let text = format!(
            "{NAMESPACE} has {} tables: {}{more}",
            tables.len(),
            shown.join(", ")
        );
        self.tell("list", &text, ms);
        self.steps
            .push(json!({ "step": "list", "ms": ms, "tables": tables }));
        if !tables.contains(&self.table) {
            return Err(CliError::Usage(format!(
                "the emulator has no table '{}' in {NAMESPACE}; choose one of: {}",
                self.table,
                tables.join(", ")
            )));
        }
        Ok(())
    }

    /// Step 2: the table's schema, saved as the official CLI saves it.
    async fn save_schema(&mut self) -> Result<(), CliError> {
        let started = Instant::now();
        let (schema, path) =
            schema::save_schema(&self.client, NAMESPACE, &self.table, &self.out_dir).await?;
        let ms = millis_since(started);
        let columns = schema.value()["properties"]["value"]["properties"]
            .as_object()
            .map_or(0, serde_json::Map::len);
        let text = format!(
            "{NAMESPACE}.{}: version {}, {columns} value columns -> {}",
            self.table,
            schema.version,
            file_name(&path)
        );
        self.tell("schema", &text, ms);
        self.steps.push(json!({ "step": "schema", "ms": ms, "schema_version": schema.version, "schema_file": display_path(&path) }));
        Ok(())
    }

    /// Step 3: a snapshot of the table.
    async fn take_snapshot(&mut self) -> Result<Fetched, CliError> {
        self.fetch("snapshot", Query::snapshot(Format::Jsonl)).await
    }

    /// Between the steps: an hour passes on the emulator, and its rows change.
    fn advance_clock(&self) {
        self.emu.advance_clock(CLOCK_STEP);
        self.say("  ⏩ emulator clock advanced by 1 hour (rows keep changing every minute)");
    }

    /// Step 4: the changes since the snapshot, chained from its `at`.
    async fn chain_incremental(&mut self, snapshot: &Fetched) -> Result<Fetched, CliError> {
        let since = snapshot.result.range.next_since();
        self.fetch("incremental", Query::incremental(Format::Jsonl, since))
            .await
    }

    /// Runs `query`, checks what the job covers and downloads it.
    async fn fetch(&mut self, step: &str, query: Query) -> Result<Fetched, CliError> {
        let started = Instant::now();
        let mut result = fetch::query(&self.client, NAMESPACE, &self.table, query).await?;
        data::check_range(query, &result.range)?;
        let query_ms = millis_since(started);
        let options = DownloadOptions::default().concurrency(4);
        let got = fetch::download(
            &self.client,
            (NAMESPACE, &self.table),
            &mut result,
            &self.out_dir,
            &options,
            self.ctx.job_dirs,
        )
        .await?;
        let f = Fetched {
            result,
            got,
            query_ms,
        };
        let ms = f.query_ms + f.got.download_ms;
        self.tell(step, &self.summary(&f), ms);
        let report =
            TableReport::ok(&self.table).with_result(&f.result, &f.got.dir, f.got.files.clone());
        self.steps
            .push(json!({ "step": step, "ms": ms, "result": report }));
        Ok(f)
    }

    fn summary(&self, f: &Fetched) -> String {
        let bytes: u64 = f.got.files.iter().map(|x| x.bytes).sum();
        let id = f.result.job.as_str();
        format!(
            "{NAMESPACE}.{} {}: job {}, {} files, {}",
            self.table,
            describe_range(&f.result.range),
            id.get(..8).unwrap_or(id),
            f.got.files.len(),
            human_bytes(bytes)
        )
    }

    /// Step 5: every record of both queries against the emulator's own answer.
    fn verify(&mut self, snapshot: &Fetched, incremental: &Fetched) -> Result<(), CliError> {
        let started = Instant::now();
        let snap_records = verify::verify(&self.emu, &self.table, snapshot)?;
        let inc_records = verify::verify(&self.emu, &self.table, incremental)?;
        let ms = millis_since(started);
        let files = snapshot.got.files.len() + incremental.got.files.len();
        self.tell(
            "verify",
            &format!(
                "{files} files: gzip CRC-32 ok; {snap_records} snapshot + {inc_records} changed \
                 records match the emulator exactly"
            ),
            ms,
        );
        self.steps.push(json!({ "step": "verify", "ms": ms, "files": files, "snapshot_records": snap_records, "incremental_records": inc_records }));
        Ok(())
    }

    /// Step 6: the same table replicated into a SQLite file: initdb, an hour, syncdb.
    async fn replicate(&mut self) -> Result<(), CliError> {
        let started = Instant::now();
        let (line, step) = crate::commands::db::demo_step(
            &self.client,
            &self.emu,
            NAMESPACE,
            &self.table,
            &self.out_dir,
        )
        .await?;
        self.tell("database", &line, millis_since(started));
        self.steps.push(step);
        Ok(())
    }

    /// The totals, where the files are, and what to run next.
    fn finish(self, args: &DemoArgs) -> Outcome {
        let total_ms = millis_since(self.started);
        let stats = self.emu.stats();
        let r = &stats.requests;
        let requests = r.login + r.tables + r.schema + r.query + r.job + r.object_urls + r.storage;
        let logins = match self.client.logins() {
            1 => "1 login".to_owned(),
            n => format!("{n} logins (the clock jump expired the first token)"),
        };
        let leaked = match stats.storage_with_credentials {
            0 => "no".to_owned(),
            n => n.to_string(),
        };
        self.say(&format!(
            "\nDone in {:.2} s: {requests} requests, {logins}, {leaked} credentials sent to \
             object storage.",
            total_ms as f64 / 1000.0,
        ));
        match &args.output_directory {
            Some(d) => self.say(&format!("Files are in {}", d.display())),
            None => self.say(&format!(
                "Files were written to {} and removed again; keep them with --output-directory DIR.",
                self.out_dir.display()
            )),
        }
        self.say(NEXT_STEPS);
        Outcome {
            json: json!({
                "command": "demo",
                "ok": true,
                "emulator": self.emu.base_url(),
                "namespace": NAMESPACE,
                "table": self.table,
                "output_directory": args.output_directory.as_ref().map(|d| display_path(d)),
                "steps": self.steps,
                "elapsed_ms": total_ms,
            }),
            ok: true,
            reports: None,
        }
    }
}

const NEXT_STEPS: &str = "\nNext, with your own credentials from the Identity Service:\n  \
     export DAP_CLIENT_ID=... DAP_CLIENT_SECRET=...\n  \
     dap list --namespace canvas\n  \
     dap snapshot --namespace canvas --table users\n  \
     dap sync --namespace canvas --table all --output-directory canvas-data";

/// `--output-directory`, or a temporary directory removed when the demo ends.
fn output_directory(args: &DemoArgs) -> Result<(PathBuf, Option<TempDir>), CliError> {
    if let Some(d) = &args.output_directory {
        return Ok((d.clone(), None));
    }
    let temp = tempfile::Builder::new()
        .prefix("dap-demo-")
        .tempdir()
        .map_err(|e| {
            CliError::io(
                "cannot create a temporary directory in",
                std::env::temp_dir(),
                e,
            )
        })?;
    Ok((temp.path().to_path_buf(), Some(temp)))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
