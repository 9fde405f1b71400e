//! Command-line arguments, compatible with the official `dap` CLI.
//!
//! Global options go before the command, as in the official CLI (they are also accepted
//! after it). Options of the official CLI that make no sense here (usage tracking,
//! console themes) are accepted and ignored so existing scripts keep working.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fetch Canvas Data 2 tables from Instructure's Data Access Platform (DAP).
///
/// A drop-in for the official `dap` command: same options, same files, same exit codes
/// (0 success, 5 error, 125 interrupted). It sends no usage tracking of any kind.
#[derive(Debug, Parser)]
#[command(
    name = "dap",
    version,
    after_help = "Try `dap demo` to see the whole workflow against a local emulator, \
                  with no credentials and no network."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options that apply to every command, before or after it (`global`). Each option's
/// first `#[arg]` names it (flag, environment variable, value name); a second one, where
/// there is one, says how its value is read, defaulted or shown.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Base URL of the DAP API.
    #[arg(long, env = "DAP_API_URL", value_name = "URL", global = true)]
    #[arg(default_value = dap_proto::config::DEFAULT_BASE_URL)]
    pub(crate) base_url: String,
    /// OAuth client ID obtained from the Identity Service.
    #[arg(long, env = "DAP_CLIENT_ID", value_name = "CLIENTID", global = true)]
    pub(crate) client_id: Option<String>,
    /// OAuth client secret obtained from the Identity Service (never printed).
    #[arg(long, env = "DAP_CLIENT_SECRET", value_name = "CLIENTSECRET")]
    #[arg(hide_env_values = true, global = true)]
    pub(crate) client_secret: Option<String>,
    /// Extra trusted CA certificates (PEM), e.g. for a TLS-inspecting proxy; the built-in
    /// roots stay trusted.
    #[arg(long, env = "DAP_CA_FILE", value_name = "PEMFILE", global = true)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Also trust the operating system's certificate store (where IT departments install
    /// corporate CAs); the built-in roots stay trusted. DAP_USE_SYSTEM_CA takes
    /// true/false, yes/no, on/off or 1/0.
    #[arg(long, env = "DAP_USE_SYSTEM_CA", global = true)]
    #[arg(action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) use_system_ca: bool,
    /// The low-speed rule: a request or download that receives fewer than BYTES in any
    /// --low-speed-time window is abandoned (an API call is retried, a download resumes
    /// where it stopped). 0 keeps only the window as the longest wait for any data.
    #[arg(long, env = "DAP_LOW_SPEED_LIMIT", value_name = "BYTES", global = true)]
    #[arg(default_value_t = dap_proto::LowSpeed::default().min_bytes)]
    pub(crate) low_speed_limit: u64,
    /// The window of the low-speed rule, in seconds (decimals allowed).
    #[arg(
        long,
        env = "DAP_LOW_SPEED_TIME",
        value_name = "SECONDS",
        global = true
    )]
    #[arg(default_value_t = Seconds(dap_proto::LowSpeed::default().window))]
    pub(crate) low_speed_time: Seconds,
    /// The longest one API call may take, in seconds (decimals allowed): a login, a
    /// listing, a schema, or the requests of a query (not the time its job spends
    /// running on the server), retries included; then it fails as a timeout.
    #[arg(long, env = "DAP_CALL_TIMEOUT", value_name = "SECONDS", global = true)]
    #[arg(default_value_t = Seconds(dap_proto::config::DEFAULT_CALL_TIMEOUT))]
    pub(crate) call_timeout: Seconds,
    /// How long to wait, in seconds, for another dap run writing the same table of the
    /// output directory before giving up (0: give up at once).
    #[arg(long, env = "DAP_LOCK_TIMEOUT", value_name = "SECONDS", global = true)]
    #[arg(default_value_t = 600)]
    pub(crate) lock_timeout: u64,
    /// Log verbosity [default: info; warning for `demo`].
    #[arg(long, value_enum, value_name = "LEVEL", global = true)]
    pub(crate) loglevel: Option<LogLevel>,
    /// Also write logs to this file (appended).
    #[arg(long, value_name = "LOGFILE", global = true)]
    pub(crate) logfile: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "plain", global = true)]
    pub(crate) logformat: LogFormat,
    /// Do not log to the console (stderr); errors are still shown.
    #[arg(long, global = true)]
    pub(crate) no_log_to_console: bool,
    /// Run in non-interactive mode for scripts: no progress bars.
    #[arg(long, global = true)]
    pub(crate) non_interactive: bool,
    /// Print a machine-readable JSON result on stdout (same as `--output json`).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Format of the result printed on stdout.
    #[arg(long, value_enum, value_name = "FORMAT", global = true)]
    pub(crate) output: Option<OutputFormat>,
    /// Accepted for compatibility; this CLI never tracks usage.
    #[arg(long, hide = true, global = true)]
    pub(crate) no_tracking: bool,
    /// Accepted for compatibility; ignored.
    #[arg(long, value_name = "THEME", hide = true, global = true)]
    pub(crate) console_theme: Option<String>,
    /// Job poll interval in milliseconds (for tests and emulators).
    #[arg(long, env = "DAP_CLI_POLL_INTERVAL_MS", global = true)]
    #[arg(hide = true, hide_env = true)]
    pub(crate) poll_interval_ms: Option<u64>,
    /// Initial retry backoff in milliseconds (for tests and emulators).
    #[arg(long, env = "DAP_CLI_RETRY_BACKOFF_MS", global = true)]
    #[arg(hide = true, hide_env = true)]
    pub(crate) retry_backoff_ms: Option<u64>,
}

impl GlobalArgs {
    /// Whether the result goes to stdout as JSON.
    pub(crate) fn json_output(&self) -> bool {
        self.json || self.output == Some(OutputFormat::Json)
    }

    /// How long to wait for a table another run is writing.
    pub(crate) fn lock_timeout(&self) -> Duration {
        Duration::from_secs(self.lock_timeout)
    }
}

/// A positive duration given in seconds, decimals allowed (`30`, `0.5`), at most a week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seconds(pub(crate) Duration);

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let max = dap_proto::config::MAX_CONFIG_DURATION;
        let secs: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number of seconds (for example 30 or 0.5)"))?;
        match Duration::try_from_secs_f64(secs) {
            Ok(d) if d.is_zero() => Err("must be more than 0 seconds".to_owned()),
            Ok(d) if d > max => Err(format!(
                "must be at most {} seconds (7 days)",
                max.as_secs()
            )),
            Ok(d) => Ok(Self(d)),
            Err(_) => Err(format!("{s:?} is not a positive number of seconds")),
        }
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whole seconds as integers (the defaults in `--help`), otherwise decimals.
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}", self.0.as_secs())
        } else {
            write!(f, "{}", self.0.as_secs_f64())
        }
    }
}

/// The parser of a `--concurrency`: how many things at once, from 1 to `max`.
fn at_once(max: i64) -> clap::builder::RangedI64ValueParser<u16> {
    clap::value_parser!(u16).range(1..=max)
}

/// Log verbosity, as the official CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    /// Everything, including each request.
    #[value(alias = "trace")]
    Debug,
    /// Progress of each table.
    Info,
    /// Problems that were worked around.
    #[value(alias = "warn")]
    Warning,
    /// Failures only.
    Error,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `date time - LEVEL - message`, as the official CLI.
    Plain,
    /// One JSON object per line.
    Json,
}

/// What goes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document.
    Json,
}

/// Data format of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// Tab-separated values (PostgreSQL COPY escaping), gzip-compressed.
    Tsv,
    /// Comma-separated values, gzip-compressed.
    Csv,
    /// JSON Lines, gzip-compressed.
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

impl From<FormatArg> for dap_proto::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Tsv => Self::Tsv,
            FormatArg::Csv => Self::Csv,
            FormatArg::Jsonl => Self::Jsonl,
            FormatArg::Parquet => Self::Parquet,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Performs a snapshot query.
    Snapshot(QueryArgs),
    /// Performs an incremental query with a given start, and (optionally) end timestamp.
    Incremental(IncrementalArgs),
    /// Lists the name of all tables available for querying in the specified namespace.
    List(ListArgs),
    /// Returns the JSON schema that records in the table conform to.
    Schema(SchemaArgs),
    /// Keeps a directory up to date: a snapshot first, then incrementals chained from it.
    Sync(SyncArgs),
    /// Runs the whole workflow against a built-in emulator: no credentials, no network.
    Demo(DemoArgs),
    /// Performs a snapshot query and persists the result in the database for given table(s).
    Initdb(DbArgs),
    /// Performs an incremental query and persists the result in the database for given
    /// table(s).
    Syncdb(DbArgs),
    /// Drops table(s) from the database.
    Dropdb(DbArgs),
    /// Lists table information stored in the local database.
    Listdb(ListdbArgs),
}

impl Command {
    /// The command's name, as typed.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Snapshot(_) => "snapshot",
            Self::Incremental(_) => "incremental",
            Self::List(_) => "list",
            Self::Schema(_) => "schema",
            Self::Sync(_) => "sync",
            Self::Demo(_) => "demo",
            Self::Initdb(_) => "initdb",
            Self::Syncdb(_) => "syncdb",
            Self::Dropdb(_) => "dropdb",
            Self::Listdb(_) => "listdb",
        }
    }

    /// The namespace the command works on, if it has one.
    pub(crate) fn namespace(&self) -> Option<&str> {
        match self {
            Self::Snapshot(a) => Some(&a.tables.namespace),
            Self::Incremental(a) => Some(&a.query.tables.namespace),
            Self::List(a) => Some(&a.namespace),
            Self::Schema(a) => Some(&a.tables.namespace),
            Self::Sync(a) => Some(&a.query.tables.namespace),
            Self::Initdb(a) | Self::Syncdb(a) | Self::Dropdb(a) => Some(&a.target.namespace),
            Self::Listdb(a) => Some(&a.target.namespace),
            Self::Demo(_) => None,
        }
    }
}

/// `--namespace`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Identifies the data source (canvas, canvas_logs, catalog, new_quizzes).
    #[arg(long, value_name = "NAMESPACE")]
    pub(crate) namespace: String,
}

/// `--namespace --table`: the tables a command works on.
#[derive(Debug, Args)]
pub(crate) struct Tables {
    /// Identifies the data source.
    #[arg(long, value_name = "NAMESPACE")]
    pub(crate) namespace: String,
    /// Table name or comma separated list of table names. Use 'all' for every table in
    /// the namespace.
    #[arg(long, value_name = "TABLE")]
    pub(crate) table: String,
}

/// `--namespace --table --output-directory`.
#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    #[command(flatten)]
    pub(crate) tables: Tables,
    /// Directory where the result is written; absolute or relative.
    #[arg(long, value_name = "DIR", default_value = "downloads")]
    pub(crate) output_directory: PathBuf,
}

/// Options shared by the commands that download data.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) tables: Tables,
    /// Data output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub(crate) format: FormatArg,
    /// Directory where the result is written; absolute or relative.
    #[arg(long, value_name = "DIR", default_value = "downloads")]
    pub(crate) output_directory: PathBuf,
    /// Write plain files instead of the gzip objects (verified either way).
    #[arg(long)]
    pub(crate) decompress: bool,
    /// How many objects download at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = at_once(64))]
    pub(crate) concurrency: u16,
}

/// Incremental query options.
#[derive(Debug, Args)]
pub(crate) struct IncrementalArgs {
    #[command(flatten)]
    pub(crate) query: QueryArgs,
    /// Start (inclusive), with Z or an offset: 2022-06-13T09:30:00Z or
    /// 2022-06-13T09:30:00+02:00.
    #[arg(long, value_name = "DATETIME")]
    pub(crate) since: String,
    /// End (exclusive), with Z or an offset; default: the server's now.
    #[arg(long, value_name = "DATETIME")]
    pub(crate) until: Option<String>,
}

/// `dap sync` options.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    pub(crate) query: QueryArgs,
    /// Take a fresh snapshot even when the directory already holds a sync position.
    #[arg(long)]
    pub(crate) force_snapshot: bool,
}

/// `dap demo` options.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the files in this directory (default: a temporary directory, removed after).
    #[arg(long, value_name = "DIR")]
    pub(crate) output_directory: Option<PathBuf>,
    /// The emulated table to use.
    #[arg(long, value_name = "TABLE", default_value = "users")]
    pub(crate) table: String,
}

/// The namespace and the database of every database command.
#[derive(Debug, Args)]
pub(crate) struct DbTarget {
    /// Identifies the data source.
    #[arg(long, value_name = "NAMESPACE")]
    pub(crate) namespace: String,
    /// The database: postgresql://user:password@host:port/database[?ssl=require],
    /// mysql://user:password@host:port/database[?ssl=require] or sqlite:///path/to/file.db
    /// (never printed).
    #[arg(
        long,
        env = "DAP_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "DBCONNSTR"
    )]
    pub(crate) connection_string: Option<String>,
}

/// `initdb`, `syncdb` and `dropdb` options.
#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    #[command(flatten)]
    pub(crate) target: DbTarget,
    /// Table name or comma separated list of table names. Use 'all' for every table in
    /// the namespace.
    #[arg(long, value_name = "TABLE")]
    pub(crate) table: String,
    /// How many tables are replicated at once (their queries paced to DAP's limit).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = at_once(32))]
    pub(crate) concurrency: u16,
}

/// `listdb` options.
#[derive(Debug, Args)]
pub(crate) struct ListdbArgs {
    #[command(flatten)]
    pub(crate) target: DbTarget,
    /// Omit tables that have not been replicated locally.
    #[arg(long)]
    pub(crate) omit_not_replicated: bool,
    /// Skip querying record counts for each local table.
    #[arg(long)]
    pub(crate) omit_record_count: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_take_decimals_and_refuse_nonsense() {
        assert_eq!("30".parse(), Ok(Seconds(Duration::from_secs(30))));
        assert_eq!(" 0.25 ".parse(), Ok(Seconds(Duration::from_millis(250))));
        assert_eq!(Seconds(Duration::from_secs(600)).to_string(), "600");
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5");
        for (bad, why) in [
            ("0", "more than 0"),
            ("-1", "positive"),
            ("NaN", "positive"),
            ("inf", "positive"),
            ("1e9", "at most 604800"),
            ("ten", "not a number"),
            ("", "not a number"),
        ] {
            let err = bad.parse::<Seconds>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn network_defaults_are_the_cores() {
        let cli = Cli::try_parse_from(["dap", "list", "--namespace", "canvas"]).unwrap();
        let g = &cli.global;
        let rule = dap_proto::LowSpeed::default();
        assert_eq!(g.low_speed_limit, rule.min_bytes);
        assert_eq!(g.low_speed_time.0, rule.window);
        assert_eq!(g.call_timeout.0, dap_proto::config::DEFAULT_CALL_TIMEOUT);
        assert!(!g.use_system_ca);
    }
}
