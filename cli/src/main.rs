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
mod batch;
mod commands;
mod context;
mod errors;
mod fetch;
mod jsonfile;
mod lock;
mod logging;
mod progress;
mod redact;
mod report;
mod timestamp;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use serde_json::json;
use tracing::{Instrument as _, error};

use crate::args::{Cli, Command, LogLevel};
use crate::batch::Outcome;
use crate::commands::{db, demo, incremental, list, schema, snapshot, sync};
use crate::context::Context;
use crate::errors::{CliError, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, HintContext};
use crate::fetch::JobDirs;
use crate::report::ErrorReport;

fn main() -> ExitCode {
    // Known before parsing, so that even an argument error never shows a secret.
    let argv: Vec<_> = std::env::args_os().collect();
    redact::set_secrets(redact::secrets_in(&argv, |k| std::env::var(k).ok()));
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e),
    };
    let g = &cli.global;
    let default_level = match cli.command {
        Command::Demo(_) => LogLevel::Warning,
        _ => LogLevel::Info,
    };
    let level = g.loglevel.unwrap_or(default_level);
    if let Err(e) = logging::init(
        level,
        g.logformat,
        g.logfile.as_deref(),
        g.no_log_to_console,
    ) {
        let path = g.logfile.as_deref().unwrap_or(std::path::Path::new(""));
        eprintln!(
            "{}",
            redact::redact(&format!(
                "error: cannot open the log file {}: {e}",
                path.display()
            ))
        );
        return ExitCode::from(EXIT_ERROR);
    }
    if std::io::stderr().is_terminal() && !g.non_interactive && !g.no_log_to_console {
        progress::enable();
    }
    ExitCode::from(run(&cli))
}

/// Prints a parser error (or the help or version text) with every secret removed.
fn argument_error(e: &clap::Error) -> ExitCode {
    let rendered = e.render();
    if e.use_stderr() {
        let text = if std::io::stderr().is_terminal() {
            rendered.ansi().to_string()
        } else {
            rendered.to_string()
        };
        eprint!("{}", redact::redact(&text));
    } else {
        print_stdout(&redact::redact(&rendered.to_string()));
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR))
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
    let base_url = redact::without_user_info(&cli.global.base_url);
    let ctx = Context {
        global: &cli.global,
        hints: HintContext {
            base_url: &base_url,
            namespace: cli.command.namespace(),
        },
        job_dirs: &JobDirs::default(),
    };
    let span = logging::command_span(cli.command.namespace());
    let ending = runtime.block_on(async {
        tokio::select! {
            r = dispatch(&ctx, &cli.command).instrument(span) => Ending::Done(r),
            () = interrupted() => Ending::Interrupted,
        }
    });
    // Stop every download task before looking at the files they wrote.
    runtime.shutdown_timeout(Duration::from_secs(5));
    finish(&ctx, cli.command.name(), ending)
}

/// One arm per command; each command module has a `run(&Context, &Args)`.
async fn dispatch(ctx: &Context<'_>, command: &Command) -> Result<Outcome, CliError> {
    if ctx.global.no_tracking || ctx.global.console_theme.is_some() {
        tracing::debug!(
            "--no-tracking and --console-theme are accepted for compatibility; this dap never tracks usage"
        );
    }
    match command {
        Command::List(a) => list::run(ctx, a).await,
        Command::Schema(a) => schema::run(ctx, a).await,
        Command::Snapshot(a) => snapshot::run(ctx, a).await,
        Command::Incremental(a) => incremental::run(ctx, a).await,
        Command::Sync(a) => sync::run(ctx, a).await,
        Command::Demo(a) => demo::run(ctx, a).await,
        Command::Initdb(a) => db::initdb(ctx, a).await,
        Command::Syncdb(a) => db::syncdb(ctx, a).await,
        Command::Dropdb(a) => db::dropdb(ctx, a).await,
        Command::Listdb(a) => db::listdb(ctx, a).await,
    }
}

/// Reports how the run ended; returns the exit code.
fn finish(ctx: &Context<'_>, name: &str, ending: Ending) -> u8 {
    let json_output = ctx.json_output();
    match ending {
        Ending::Interrupted => {
            let removed = ctx.job_dirs.remove_partial_files();
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
                print_outcome(&outcome);
            }
            if outcome.ok { EXIT_OK } else { EXIT_ERROR }
        }
        Ending::Done(Err(e)) => {
            error!("{}", e.render(&ctx.hints));
            if json_output {
                print_json(&json!({
                    "command": name,
                    "ok": false,
                    "error": ErrorReport::new(&e, &ctx.hints),
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

fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    print_stdout(&format!("{}\n", redact::redact(&text)));
}

/// Prints a command's `--json` document, redacted line by line as it is serialized;
/// a closed pipe is ignored.
fn print_outcome(outcome: &Outcome) {
    use std::io::Write as _;
    let stdout = std::io::stdout().lock();
    let mut out = redact::RedactLines::new(std::io::BufWriter::new(stdout));
    let _ = outcome
        .write_json(&mut out)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// Prints to stdout, ignoring a closed pipe (`dap list | head`).
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
