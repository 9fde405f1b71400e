//! Logs through `tracing`, to stderr and optionally a file, with every secret removed.
//!
//! Each formatted log line passes through [`redact`] before it is written: the client
//! secret, anything shaped like a JWT and the values of pre-signed URL signatures are
//! replaced by `[redacted]`. The libraries never log them in the first place; this is
//! the second line of defence.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::args::{LogFormat, LogLevel};
use crate::progress;

/// Strings that must never appear in any output (the client secret).
static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

/// Secrets shorter than this are not searched for: replacing every `b` of the output
/// would garble it, and real client secrets are far longer.
const MIN_SECRET_LEN: usize = 6;

/// Registers the secrets [`redact`] removes. Only the first call has an effect.
pub(crate) fn set_secrets(secrets: Vec<String>) {
    let secrets = secrets
        .into_iter()
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .collect();
    let _ = SECRETS.set(secrets);
}

const REDACTED: &str = "[redacted]";

/// Removes the registered secrets, JWT-shaped tokens and pre-signed URL credentials
/// (`X-Amz-Signature=...`, `X-Amz-Credential=...`, `X-Amz-Security-Token=...`).
pub(crate) fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    if let Some(secrets) = SECRETS.get() {
        for s in secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
    }
    for key in [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "X-Amz-Security-Token=",
    ] {
        out = redact_values_after(&out, key);
    }
    redact_jwts(&out)
}

fn redact_values_after(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(key) {
        let (head, tail) = rest.split_at(pos + key.len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn redact_jwts(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("eyJ") {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        // header.payload[.signature]
        let mut end = 0;
        let mut dots = 0;
        for (i, c) in tail.char_indices() {
            if is_b64(c) {
                end = i + 1;
            } else if c == '.' && dots < 2 {
                dots += 1;
                end = i + 1;
            } else {
                break;
            }
        }
        if dots >= 1 && end > 20 {
            out.push_str(REDACTED);
            rest = &tail[end..];
        } else {
            out.push_str("eyJ");
            rest = &tail[3..];
        }
    }
    out.push_str(rest);
    out
}

/// Where a log line goes.
#[derive(Clone)]
enum Target {
    Stderr,
    File(Arc<Mutex<File>>),
}

/// Creates one buffered, redacting writer per log event.
#[derive(Clone)]
struct Sink(Target);

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            buf: Vec::with_capacity(256),
            target: self.0.clone(),
        }
    }
}

/// Collects one formatted event and writes it, redacted, when dropped.
struct LineWriter {
    buf: Vec<u8>,
    target: Target,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = redact(&String::from_utf8_lossy(&self.buf));
        match &self.target {
            Target::Stderr => progress::suspend(|| {
                let _ = io::stderr().lock().write_all(text.as_bytes());
            }),
            Target::File(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(text.as_bytes());
                }
            }
        }
    }
}

/// `2024-01-01 12:00:00.123Z - INFO - message`, like the official CLI's plain logs (in
/// UTC).
struct PlainFormat;

impl<S, N> FormatEvent<S, N> for PlainFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = jiff::Timestamp::now();
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        write!(
            writer,
            "{} - {level} - ",
            now.strftime("%Y-%m-%d %H:%M:%S%.3fZ")
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Which crates log at the chosen level; everything else logs warnings and errors only.
fn targets(level: LevelFilter) -> Targets {
    Targets::new()
        .with_target("dap", level)
        .with_target("dap_hyper", level)
        .with_target("dap_proto", level)
        .with_default(LevelFilter::WARN.min(level))
}

fn layer<S>(format: LogFormat, sink: Sink, filter: Targets) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    match format {
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .event_format(PlainFormat)
            .with_writer(sink)
            .with_ansi(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(sink)
            .with_filter(filter)
            .boxed(),
    }
}

/// Installs the global subscriber: the console (stderr) at `level` (errors only with
/// `quiet_console`) and, if given, `logfile` (appended) at `level`.
pub(crate) fn init(
    level: LogLevel,
    format: LogFormat,
    logfile: Option<&Path>,
    quiet_console: bool,
) -> io::Result<()> {
    let level = level_filter(level);
    let console_level = if quiet_console {
        LevelFilter::ERROR
    } else {
        level
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![layer(format, Sink(Target::Stderr), targets(console_level))];
    if let Some(path) = logfile {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        layers.push(layer(
            format,
            Sink(Target::File(Arc::new(Mutex::new(file)))),
            targets(level),
        ));
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signatures_and_jwts() {
        let t = "GET http://s/o.gz?X-Amz-Credential=AK%2F1&X-Amz-Signature=abcdef done";
        assert_eq!(
            redact(t),
            "GET http://s/o.gz?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted] done"
        );
        let jwt = "token eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl end";
        assert_eq!(redact(jwt), "token [redacted] end");
        assert_eq!(redact("eyJ short"), "eyJ short");
    }
}
