//! Logs through `tracing`, to stderr and optionally a file, with every secret removed.
//!
//! Two formats, as the official CLI has: `plain` lines (`date time - LEVEL - message`)
//! and `json` records with the official client's field names (`level`, `message`,
//! `timestamp`, `logger_name`, `filename`, `module`, `lineno`, `dap_namespace`,
//! `dap_table`). Plain lines are redacted whole; JSON records are redacted value by
//! value *before* they are escaped, so a secret holding `"` or `\` cannot slip through
//! as its escaped form.
//!
//! The namespace and table of a record come from the `dap_namespace` and `dap_table`
//! fields of the spans around the event ([`command_span`], [`table_span`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Span, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::args::{LogFormat, LogLevel};
use crate::progress;
use crate::redact::redact;

/// The span of a whole command: its records carry `dap_namespace`.
pub(crate) fn command_span(namespace: Option<&str>) -> Span {
    tracing::error_span!("dap", dap_namespace = namespace)
}

/// The span of one table of a command: its records carry `dap_table`.
pub(crate) fn table_span(table: &str) -> Span {
    tracing::error_span!("table", dap_table = table)
}

/// Where a log line goes.
#[derive(Clone)]
enum Target {
    Stderr,
    File(Arc<Mutex<File>>),
}

/// Creates one buffered writer per log event.
#[derive(Clone)]
struct Sink {
    target: Target,
    /// Whether the whole line is redacted (plain lines; JSON records redact their
    /// values before escaping instead).
    redact_lines: bool,
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            buf: Vec::with_capacity(256),
            sink: self.clone(),
        }
    }
}

/// Collects one formatted event and writes it when dropped.
struct LineWriter {
    buf: Vec<u8>,
    sink: Sink,
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
        let text = String::from_utf8_lossy(&self.buf);
        let text = if self.sink.redact_lines {
            redact(&text)
        } else {
            text.into_owned()
        };
        match &self.sink.target {
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

/// The level as Python's logging names it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Formats an event as a plain line (`2024-01-01 12:00:00.123Z - INFO - message`, like
/// the official CLI's plain logs, in UTC) or as a JSON record.
struct LineFormat(LogFormat);

impl<S, N> FormatEvent<S, N> for LineFormat
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
        match self.0 {
            LogFormat::Plain => {
                write!(
                    writer,
                    "{} - {} - ",
                    jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S%.3fZ"),
                    level_name(*event.metadata().level())
                )?;
                ctx.field_format().format_fields(writer.by_ref(), event)?;
                writeln!(writer)
            }
            LogFormat::Json => {
                let spans = ctx.event_scope().into_iter().flat_map(|s| s.from_root());
                let context = spans.fold(DapContext::default(), |outer, span| {
                    match span.extensions().get::<DapContext>() {
                        Some(inner) => DapContext {
                            namespace: inner.namespace.clone().or(outer.namespace),
                            table: inner.table.clone().or(outer.table),
                        },
                        None => outer,
                    }
                });
                let line = json_record(event, context).map_err(|_| fmt::Error)?;
                writeln!(writer, "{line}")
            }
        }
    }
}

/// The namespace and table a span stands for, kept in its extensions.
#[derive(Debug, Default, Clone)]
struct DapContext {
    namespace: Option<String>,
    table: Option<String>,
}

impl Visit for DapContext {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "dap_namespace" => self.namespace = Some(value.to_owned()),
            "dap_table" => self.table = Some(value.to_owned()),
            _ => {}
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// Records the `dap_namespace` / `dap_table` of every new span.
struct ContextLayer;

impl<S> Layer<S> for ContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = DapContext::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
}

/// The fields of one event, every text redacted.
#[derive(Default)]
struct EventFields {
    message: String,
    other: BTreeMap<String, serde_json::Value>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, redact(value).into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, redact(&format!("{value:?}")).into());
    }
}

impl EventFields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        match (field.name(), value) {
            ("message", serde_json::Value::String(text)) => self.message = text,
            (name, value) => {
                self.other.insert(name.to_owned(), value);
            }
        }
    }
}

/// One JSON log record, in the official client's field order.
#[derive(Serialize)]
struct JsonRecord<'a> {
    level: &'static str,
    message: String,
    timestamp: String,
    logger_name: String,
    filename: Option<&'a str>,
    module: Option<&'a str>,
    lineno: Option<u32>,
    dap_namespace: Option<String>,
    dap_table: Option<String>,
    #[serde(flatten)]
    fields: BTreeMap<String, serde_json::Value>,
}

/// One JSON object, with the official client's field names, every text redacted.
fn json_record(event: &Event<'_>, context: DapContext) -> serde_json::Result<String> {
    let meta = event.metadata();
    let mut fields = EventFields::default();
    event.record(&mut fields);
    let filename = meta
        .file()
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f));
    serde_json::to_string(&JsonRecord {
        level: level_name(*meta.level()),
        message: fields.message,
        timestamp: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
        logger_name: meta.target().replace("::", "."),
        filename,
        module: filename.map(|f| f.strip_suffix(".rs").unwrap_or(f)),
        lineno: meta.line(),
        dap_namespace: context.namespace.map(|n| redact(&n)),
        dap_table: context.table.map(|t| redact(&t)),
        fields: fields.other,
    })
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

fn layer<S>(format: LogFormat, target: Target, filter: Targets) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    // JSON records redact their values before escaping; plain lines are redacted whole.
    let redact_lines = format == LogFormat::Plain;
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(LineFormat(format))
        .with_writer(Sink {
            target,
            redact_lines,
        })
        .with_filter(filter)
        .boxed()
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
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![
        ContextLayer.boxed(),
        layer(format, Target::Stderr, targets(console_level)),
    ];
    if let Some(path) = logfile {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        layers.push(layer(
            format,
            Target::File(Arc::new(Mutex::new(file))),
            targets(level),
        ));
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats the events `emit` logs as JSON records, into a file.
    fn json_lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = File::create(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(vec![
            ContextLayer.boxed(),
            layer(
                LogFormat::Json,
                Target::File(Arc::new(Mutex::new(file))),
                targets(LevelFilter::DEBUG),
            ),
        ]);
        tracing::subscriber::with_default(subscriber, emit);
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn json_records_use_the_official_field_names_and_span_context() {
        let records = json_lines(|| {
            let _c = command_span(Some("canvas")).entered();
            tracing::info!("before any table");
            let _t = table_span("users").entered();
            tracing::warn!(status = 503_u64, "inside the table");
        });
        assert_eq!(records.len(), 2);
        let r = &records[1];
        assert_eq!(r["level"], "WARNING");
        assert_eq!(r["message"], "inside the table");
        assert_eq!(r["logger_name"], "dap.logging.tests");
        assert_eq!(r["filename"], "logging.rs");
        assert_eq!(r["module"], "logging");
        assert!(r["lineno"].as_u64().unwrap() > 0);
        assert_eq!(r["dap_namespace"], "canvas");
        assert_eq!(r["dap_table"], "users");
        assert_eq!(r["status"], 503);
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(records[0]["dap_table"], serde_json::Value::Null);
    }

    #[test]
    fn json_records_redact_before_escaping() {
        // A secret with a quote and a backslash: escaped, it no longer matches itself.
        let secret = r#"se"cr\et-quote-backslash"#;
        crate::redact::set_secrets(vec![secret.to_owned()]);
        let records = json_lines(|| {
            let _t = table_span(secret).entered();
            tracing::error!(value = secret, "table '{secret}' failed");
        });
        let text = serde_json::to_string(&records).unwrap();
        assert!(!text.contains("cr\\\\et-quote"), "{text}");
        assert!(!text.contains("cr\\et-quote"), "{text}");
        assert_eq!(records[0]["message"], "table '[redacted]' failed");
        assert_eq!(records[0]["dap_table"], "[redacted]");
        assert_eq!(records[0]["value"], "[redacted]");
    }
}
