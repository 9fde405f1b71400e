//! `dap`: the command line of the dap-rs toolkit for Instructure's Data Access Platform
//! (DAP, Canvas Data 2).
//!
//! A drop-in for the official `dap` CLI (same global options, commands, output layout
//! and exit codes: 0 success, 5 error, 125 interrupted) that is faster, refuses
//! ambiguous timestamps, never leaves a partial file under a final name, never logs a
//! secret and sends no usage tracking. Beyond it: `--decompress`, `--concurrency`,
//! `--json` results, `dap sync` and `dap demo`.
#![forbid(unsafe_code)]

mod args;
mod commands;
mod db;
mod demo;
mod errors;
mod jsonfile;
mod logging;
mod progress;
mod report;
mod sync;
mod timestamp;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use dap_hyper::{Client, Options};
use dap_proto::{Config, PollPolicy, RetryPolicy};
use serde_json::json;
use tracing::{error, warn};

use crate::args::{Cli, Command, GlobalArgs, LogLevel};
use crate::commands::{Outcome, print_stdout};
use crate::errors::{CliError, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, HintContext};
use crate::report::ErrorReport;

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!(
    "dap-cli/",
    env!("CARGO_PKG_VERSION"),
    " (dap-rs; +https://example.invalid/dap-rs)"
);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR));
        }
    };
    let g = &cli.global;
    logging::set_secrets(
        g.client_secret
            .iter()
            .cloned()
            .chain(db::secret(&cli.command))
            .collect(),
    );
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        LogLevel::Warning
    } else {
        LogLevel::Info
    };
    if let Err(e) = logging::init(
        g.loglevel.unwrap_or(default_level),
        g.logformat,
        g.logfile.as_deref(),
        g.no_log_to_console,
    ) {
        eprintln!(
            "error: cannot open the log file {}: {e}",
            g.logfile
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        return ExitCode::from(EXIT_ERROR);
    }
    if std::io::stderr().is_terminal() && !g.non_interactive && !g.no_log_to_console {
        progress::enable();
    }
    ExitCode::from(run(&cli))
}

/// What happened to the whole run.
enum Ending {
    Done(Result<Outcome, CliError>),
    Interrupted,
}

fn run(cli: &Cli) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dap")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let ending = runtime.block_on(async {
        tokio::select! {
            r = dispatch(cli) => Ending::Done(r),
            () = interrupted() => Ending::Interrupted,
        }
    });
    // Stop every download task before looking at the files they wrote.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let g = &cli.global;
    let json_output = g.json_output();
    let name = command_name(&cli.command);
    match ending {
        Ending::Interrupted => {
            let removed = commands::remove_partial_files();
            error!(
                "Interrupted: stopped {name}; {removed} incomplete file(s) removed, completed files kept. \
                 Run the command again to finish."
            );
            if json_output {
                print_json(&json!({ "command": name, "ok": false, "interrupted": true }));
            }
            EXIT_INTERRUPTED
        }
        Ending::Done(Ok(outcome)) => {
            if json_output {
                print_json(&outcome.json);
            }
            if outcome.ok { EXIT_OK } else { EXIT_ERROR }
        }
        Ending::Done(Err(e)) => {
            let hints = HintContext {
                base_url: &g.base_url,
                namespace: command_namespace(&cli.command),
            };
            error!("{}", e.render(&hints));
            if json_output {
                print_json(&json!({
                    "command": name,
                    "ok": false,
                    "error": ErrorReport::new(&e, &hints),
                }));
            }
            EXIT_ERROR
        }
    }
}

/// Resolves on Ctrl-C (or SIGTERM on Unix).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn dispatch(cli: &Cli) -> Result<Outcome, CliError> {
    let g = &cli.global;
    let json_output = g.json_output();
    if g.no_tracking || g.console_theme.is_some() {
        tracing::debug!(
            "--no-tracking and --console-theme are accepted for compatibility; this dap never tracks usage"
        );
    }
    let hints = HintContext {
        base_url: &g.base_url,
        namespace: command_namespace(&cli.command),
    };
    match &cli.command {
        Command::List(a) => commands::list(&make_client(g)?, a, json_output).await,
        Command::Schema(a) => commands::schema(&make_client(g)?, a, hints).await,
        Command::Snapshot(a) => commands::data(&make_client(g)?, a, None, hints).await,
        Command::Incremental(a) => {
            // Refuse a bad timestamp before asking for credentials or the network.
            timestamp::parse_instant("--since", &a.since).map_err(CliError::Usage)?;
            if let Some(u) = &a.until {
                timestamp::parse_instant("--until", u).map_err(CliError::Usage)?;
            }
            commands::data(&make_client(g)?, &a.query, Some(a), hints).await
        }
        Command::Sync(a) => sync::sync(&make_client(g)?, a, hints).await,
        Command::Demo(a) => {
            if g.client_id.is_some() || g.client_secret.is_some() {
                warn!(
                    "dap demo uses its built-in emulator; the configured credentials are not used"
                );
            }
            demo::demo(a, json_output, |emu| {
                build_client(g, emu.base_url(), emu.client_id(), emu.client_secret())
            })
            .await
        }
        Command::Initdb(a) => db::replicate(&make_client(g)?, a, dap_db::plan::Command::Init).await,
        Command::Syncdb(a) => db::replicate(&make_client(g)?, a, dap_db::plan::Command::Sync).await,
        Command::Dropdb(a) => db::dropdb(a).await,
        Command::Listdb(a) => {
            db::listdb(&make_client(g)?, a, !g.non_interactive, json_output).await
        }
    }
}

/// A client for the configured API, refusing missing credentials by name.
fn make_client(g: &GlobalArgs) -> Result<Client, CliError> {
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    let mut missing = Vec::new();
    if !present(&g.client_id) {
        missing.push(("client ID", "DAP_CLIENT_ID", "--client-id"));
    }
    if !present(&g.client_secret) {
        missing.push(("client secret", "DAP_CLIENT_SECRET", "--client-secret"));
    }
    if !missing.is_empty() {
        return Err(CliError::MissingCredentials(missing));
    }
    build_client(
        g,
        g.base_url.trim().to_owned(),
        g.client_id.as_deref().unwrap_or_default().trim(),
        g.client_secret.as_deref().unwrap_or_default(),
    )
}

fn build_client(
    g: &GlobalArgs,
    base_url: String,
    client_id: &str,
    secret: &str,
) -> Result<Client, CliError> {
    let mut poll = PollPolicy::default();
    if let Some(ms) = g.poll_interval_ms.filter(|ms| *ms > 0) {
        poll.initial_interval = Duration::from_millis(ms);
        poll.max_interval = poll.initial_interval.max(Duration::from_millis(ms * 4));
    }
    let mut retry = RetryPolicy::default();
    if let Some(ms) = g.retry_backoff_ms {
        retry.initial_backoff = Duration::from_millis(ms);
        retry.max_backoff = Duration::from_millis(ms.saturating_mul(8));
        retry.default_retry_after = Duration::from_millis(ms);
        retry.max_retry_after = Duration::from_millis(ms.saturating_mul(8));
    }
    let config = Config::builder(client_id, secret)
        .base_url(base_url.trim_end_matches('/'))
        .user_agent(USER_AGENT)
        .poll(poll)
        .retry(retry)
        .build()
        .map_err(|e| CliError::Config(config_message(&e, &base_url)))?;
    Client::with_options(config, Options::default())
        .map_err(|e| CliError::Config(logging::redact(&e.to_string())))
}

fn config_message(e: &dap_proto::ConfigError, base_url: &str) -> String {
    use dap_proto::ConfigError as E;
    match e {
        E::PlainHttp(_) => format!(
            "--base-url / DAP_API_URL {base_url:?} uses plain http to a host other than this \
             machine, which would send the client secret unencrypted; use an https:// URL"
        ),
        E::InvalidBaseUrl(_) => format!(
            "--base-url / DAP_API_URL {base_url:?} is not an absolute http(s) URL \
             (for example https://api-gateway.instructure.com)"
        ),
        E::InvalidClientId => {
            "the client ID (DAP_CLIENT_ID / --client-id) contains ':' or control characters"
                .to_owned()
        }
        other => other.to_string(),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Snapshot(_) => "snapshot",
        Command::Incremental(_) => "incremental",
        Command::List(_) => "list",
        Command::Schema(_) => "schema",
        Command::Sync(_) => "sync",
        Command::Demo(_) => "demo",
        Command::Initdb(_) => "initdb",
        Command::Syncdb(_) => "syncdb",
        Command::Dropdb(_) => "dropdb",
        Command::Listdb(_) => "listdb",
    }
}

fn command_namespace(c: &Command) -> Option<&str> {
    match c {
        Command::Snapshot(a) => Some(&a.namespace),
        Command::Incremental(a) => Some(&a.query.namespace),
        Command::List(a) => Some(&a.namespace),
        Command::Schema(a) => Some(&a.namespace),
        Command::Sync(a) => Some(&a.query.namespace),
        Command::Initdb(a) | Command::Syncdb(a) | Command::Dropdb(a) => Some(&a.namespace),
        Command::Listdb(a) => Some(&a.namespace),
        _ => None,
    }
}

fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    print_stdout(&format!("{}\n", logging::redact(&text)));
}
