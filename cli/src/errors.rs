//! Failures of the CLI, each with what failed, why, and what to do about it.

use std::path::PathBuf;

use dap_proto::chain::ChainError;
use dap_proto::{DapErrorKind, Error as ProtoError};

/// Exit code of a successful run.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code of any failure (as the official CLI).
pub(crate) const EXIT_ERROR: u8 = 5;
/// Exit code of a run stopped by Ctrl-C or SIGTERM (as the official CLI).
pub(crate) const EXIT_INTERRUPTED: u8 = 125;

/// A failure that ends a command (or one table of it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The client ID or secret is missing.
    #[error("missing credentials: {}", missing_text(.0))]
    MissingCredentials(Vec<(&'static str, &'static str, &'static str)>),
    /// The configuration was refused.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A bad argument value.
    #[error("{0}")]
    Usage(String),
    /// An API call or download failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done (`listing tables of canvas`, ...).
        what: String,
        /// The transport's error.
        #[source]
        source: dap_hyper::Error,
    },
    /// A local file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A job's data does not match its query or would move a table backwards.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Another run kept a table locked for longer than `--lock-timeout`.
    #[error("{0}")]
    Locked(String),
    /// Something else, described in full.
    #[error("{0}")]
    Other(String),
}

fn missing_text(missing: &[(&'static str, &'static str, &'static str)]) -> String {
    missing
        .iter()
        .map(|(what, var, flag)| format!("no {what} (set {var} or pass {flag})"))
        .collect::<Vec<_>>()
        .join(" and ")
}

impl CliError {
    /// An API failure while doing `what`.
    pub(crate) fn api(what: impl Into<String>, source: dap_hyper::Error) -> Self {
        Self::Api {
            what: what.into(),
            source,
        }
    }

    /// An I/O failure.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether no further table can succeed (bad credentials, account disabled).
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            Self::Api { source, .. } => source.is_fatal(),
            Self::MissingCredentials(_) | Self::Config(_) => true,
            _ => false,
        }
    }

    /// Whether the same command may succeed if run again later (a rate limit, a server
    /// error, a network failure, a stall or a timeout).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Api { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// The DAP error kind, if the API said no.
    pub(crate) fn dap_kind(&self) -> Option<&DapErrorKind> {
        match self {
            Self::Api { source, .. } => source.api_kind(),
            _ => None,
        }
    }

    /// A short machine-readable category, for `--json`.
    pub(crate) fn category(&self) -> &'static str {
        match self {
            Self::MissingCredentials(_) => "missing_credentials",
            Self::Config(_) => "config",
            Self::Usage(_) => "usage",
            Self::Io { .. } => "io",
            Self::Chain(ChainError::StaleSnapshot { .. }) => "stale_snapshot",
            Self::Chain(_) => "range_mismatch",
            Self::Locked(_) => "locked",
            Self::Other(_) => "other",
            Self::Api { source, .. } => match source {
                dap_hyper::Error::Dap(e) => match e {
                    ProtoError::JobFailed { .. } => "job_failed",
                    ProtoError::Api(d) => match d.kind {
                        DapErrorKind::Authentication => "authentication",
                        DapErrorKind::AccountNotOnboarded
                        | DapErrorKind::AccountDisabled
                        | DapErrorKind::AccountUnderMaintenance
                        | DapErrorKind::RequestTypeForbidden
                        | DapErrorKind::Forbidden => "forbidden",
                        DapErrorKind::NotFound { .. } => "not_found",
                        DapErrorKind::SnapshotRequired { .. } => "snapshot_required",
                        DapErrorKind::OutOfRange { .. } => "out_of_range",
                        DapErrorKind::Validation { .. } => "validation",
                        DapErrorKind::RateLimited => "rate_limited",
                        DapErrorKind::Server => "server",
                        _ => "api",
                    },
                    ProtoError::Protocol(_) => "protocol",
                    ProtoError::Transport { .. } => "transport",
                    ProtoError::Timeout { .. } => "timeout",
                    ProtoError::JobTimedOut { .. } => "job_timed_out",
                    ProtoError::Argument(_) => "usage",
                    _ => "api",
                },
                dap_hyper::Error::Transfer(_) => "download",
                dap_hyper::Error::Io { .. } => "io",
                dap_hyper::Error::Config(_) => "config",
                dap_hyper::Error::Tls(_) => "tls",
                _ => "other",
            },
        }
    }

    /// What the user can do about it, if there is something specific.
    pub(crate) fn hint(&self, ctx: &HintContext<'_>) -> Option<String> {
        let ns = ctx.namespace.unwrap_or("NAMESPACE");
        match self {
            Self::MissingCredentials(_) => Some(
                "get a client ID and secret from the Identity Service (identity.instructure.com), \
                 or try `dap demo` to run against a local emulator without credentials"
                    .to_owned(),
            ),
            Self::Io { .. } => {
                Some("check that the directory exists or can be created, is writable, and that the disk has space".to_owned())
            }
            Self::Locked(_) => Some(
                "two runs never write one table of a directory at once; give the other run \
                 time (--lock-timeout SECONDS), or use another --output-directory"
                    .to_owned(),
            ),
            Self::Chain(ChainError::StaleSnapshot { .. }) => None,
            Self::Chain(_) => Some(
                "the server answered with data for another window; run the command again, \
                 and report it to Instructure support if it persists"
                    .to_owned(),
            ),
            Self::Api { source, .. } => match source {
                dap_hyper::Error::Dap(ProtoError::Api(d)) => dap_hint(&d.kind, ns),
                dap_hyper::Error::Dap(ProtoError::JobFailed { .. }) => Some(
                    "the query job failed on the server; run again later, and quote the uuid to Instructure support if it persists"
                        .to_owned(),
                ),
                dap_hyper::Error::Dap(ProtoError::JobTimedOut { .. }) => {
                    Some("the job is still running on the server; run the command again later (the server reuses the job)".to_owned())
                }
                dap_hyper::Error::Dap(ProtoError::Protocol(_)) => Some(format!(
                    "check that --base-url ({}) points at the DAP API gateway",
                    ctx.base_url
                )),
                dap_hyper::Error::Dap(ProtoError::Transport { last, .. })
                    if last.kind() == dap_proto::FailureKind::Stalled =>
                {
                    Some(
                        "the server sent data too slowly (the low-speed rule: \
                         --low-speed-limit BYTES in --low-speed-time SECONDS); run the command \
                         again later, or loosen the rule on a very slow link"
                            .to_owned(),
                    )
                }
                dap_hyper::Error::Dap(ProtoError::Transport { .. }) => {
                    Some(format!(
                        "check the network, proxy settings (HTTPS_PROXY) and --base-url ({})",
                        ctx.base_url
                    ))
                }
                dap_hyper::Error::Dap(ProtoError::Timeout { .. }) => Some(
                    "the server answered too slowly to finish within the per-call deadline \
                     (--call-timeout SECONDS); run the command again later"
                        .to_owned(),
                ),
                dap_hyper::Error::Transfer(_) => Some(
                    "run the command again; no incomplete file was kept under a final name".to_owned(),
                ),
                dap_hyper::Error::Io { .. } => Some(
                    "check that the output directory is writable and the disk has space".to_owned(),
                ),
                dap_hyper::Error::Tls(_) => {
                    Some("check the TLS setup (CA certificates, proxy)".to_owned())
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The message with its hint, as shown to the user.
    pub(crate) fn render(&self, ctx: &HintContext<'_>) -> String {
        match self.hint(ctx) {
            Some(hint) => format!("{self}. Hint: {hint}"),
            None => self.to_string(),
        }
    }
}

/// What the user can do about an error the DAP API reported.
fn dap_hint(kind: &DapErrorKind, ns: &str) -> Option<String> {
    match kind {
        DapErrorKind::Authentication => Some(
            "check DAP_CLIENT_ID and DAP_CLIENT_SECRET (or --client-id and --client-secret); \
             client credentials expire: create new ones in the Identity Service if needed"
                .to_owned(),
        ),
        DapErrorKind::AccountNotOnboarded | DapErrorKind::AccountDisabled => Some(
            "the account cannot use DAP; ask your Canvas administrator or Instructure support"
                .to_owned(),
        ),
        DapErrorKind::AccountUnderMaintenance => {
            Some("the account is under maintenance; try again later".to_owned())
        }
        DapErrorKind::Forbidden | DapErrorKind::RequestTypeForbidden => Some(
            "the API refused this kind of request for these credentials".to_owned(),
        ),
        DapErrorKind::NotFound { kind, .. } => match kind.as_deref() {
            Some("namespace") => Some(
                "namespaces are canvas, canvas_logs, catalog and new_quizzes".to_owned(),
            ),
            _ => Some(format!(
                "run `dap list --namespace {ns}` to see the available tables"
            )),
        },
        DapErrorKind::SnapshotRequired { .. } => Some(format!(
            "the table was reloaded by DAP; take a new snapshot \
             (`dap snapshot --namespace {ns} --table ...`), or use `dap sync`, which does it automatically"
        )),
        DapErrorKind::OutOfRange { since, .. } => Some(match since {
            Some(s) => format!("use a --since at or after {s}, or take a new snapshot"),
            None => "use a later --since, or take a new snapshot".to_owned(),
        }),
        DapErrorKind::Validation { .. } => Some(
            "the API refused the request as invalid; check --since/--until (not in the future, since before until) and --format"
                .to_owned(),
        ),
        DapErrorKind::RateLimited => Some(
            "the API kept answering 429 (rate limited); wait a minute and run again".to_owned(),
        ),
        DapErrorKind::Server => Some(
            "the DAP service failed; run the command again later".to_owned(),
        ),
        _ => None,
    }
}

/// What hints may mention.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HintContext<'a> {
    /// The base URL in use, without user info.
    pub(crate) base_url: &'a str,
    /// The namespace, if the command has one.
    pub(crate) namespace: Option<&'a str>,
}
