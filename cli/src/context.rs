//! What every command gets: the global options, the hints for error messages, the job
//! directories written so far, and the DAP client built from the options.

use std::time::Duration;

use dap_hyper::{Client, Options};
use dap_proto::{Config, LowSpeed, PollPolicy, RetryPolicy};

use crate::args::GlobalArgs;
use crate::errors::{CliError, HintContext};
use crate::fetch::JobDirs;
use crate::redact::{self, redact};

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("dap-cli/", env!("CARGO_PKG_VERSION"), " (dap-rs)");

/// The run-wide context of a command.
pub(crate) struct Context<'a> {
    /// The global options.
    pub(crate) global: &'a GlobalArgs,
    /// What error hints may mention.
    pub(crate) hints: HintContext<'a>,
    /// The job directories this run writes to, for the clean-up after an interrupt.
    pub(crate) job_dirs: &'a JobDirs,
}

impl Context<'_> {
    /// Whether the result goes to stdout as JSON.
    pub(crate) fn json_output(&self) -> bool {
        self.global.json_output()
    }

    /// How long to wait for a table another run is writing.
    pub(crate) fn lock_timeout(&self) -> Duration {
        self.global.lock_timeout()
    }

    /// A client for the configured API, refusing missing credentials by name.
    pub(crate) fn client(&self) -> Result<Client, CliError> {
        let g = self.global;
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
        self.client_for(
            g.base_url.trim(),
            g.client_id.as_deref().unwrap_or_default().trim(),
            g.client_secret.as_deref().unwrap_or_default(),
        )
    }

    /// A client for `base_url` with these credentials and the global options.
    pub(crate) fn client_for(
        &self,
        base_url: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<Client, CliError> {
        check_base_url(base_url)?;
        let g = self.global;
        let config = Config::builder(client_id, secret)
            .base_url(base_url.trim_end_matches('/'))
            .user_agent(USER_AGENT)
            .poll(poll_policy(g.poll_interval_ms))
            .retry(retry_policy(g.retry_backoff_ms))
            .low_speed(LowSpeed {
                min_bytes: g.low_speed_limit,
                window: g.low_speed_time.0,
            })
            .call_timeout(g.call_timeout.0)
            .build()
            .map_err(|e| CliError::Config(config_message(&e, base_url)))?;
        Client::with_options(config, network_options(g)).map_err(|e| {
            let source = match (&g.ca_file, g.use_system_ca) {
                (Some(_), true) => "--ca-file / DAP_CA_FILE, --use-system-ca / DAP_USE_SYSTEM_CA",
                (None, true) => "--use-system-ca / DAP_USE_SYSTEM_CA",
                _ => "--ca-file / DAP_CA_FILE",
            };
            CliError::Config(redact(&format!("{source}: {e}")))
        })
    }
}

/// The transport's options: the trust roots asked for, and an idle read timeout at
/// least as long as the low-speed window, so that loosening the rule for a slow link is
/// not undone by the transport's default.
fn network_options(g: &GlobalArgs) -> Options {
    let defaults = Options::default();
    let read_timeout = defaults.read_timeout.max(g.low_speed_time.0);
    let options = defaults
        .read_timeout(read_timeout)
        .system_roots(g.use_system_ca);
    match &g.ca_file {
        Some(path) => options.extra_ca_file(path),
        None => options,
    }
}

/// Refuses a base URL with user info, without showing it: it may hold a password.
pub(crate) fn check_base_url(base_url: &str) -> Result<(), CliError> {
    if redact::user_info(base_url).is_some() {
        return Err(CliError::Config(
            "--base-url / DAP_API_URL carries user info (user:password@ before the host); \
             the DAP API takes no credentials in the URL, so it is refused and not shown. \
             Give the host alone, e.g. https://api-gateway.instructure.com, and the \
             credentials as DAP_CLIENT_ID and DAP_CLIENT_SECRET"
                .to_owned(),
        ));
    }
    Ok(())
}

fn poll_policy(interval_ms: Option<u64>) -> PollPolicy {
    let mut poll = PollPolicy::default();
    if let Some(ms) = interval_ms.filter(|ms| *ms > 0) {
        poll.initial_interval = Duration::from_millis(ms);
        poll.max_interval = poll
            .initial_interval
            .max(Duration::from_millis(ms.saturating_mul(4)));
    }
    poll
}

fn retry_policy(backoff_ms: Option<u64>) -> RetryPolicy {
    let mut retry = RetryPolicy::default();
    if let Some(ms) = backoff_ms {
        retry.initial_backoff = Duration::from_millis(ms);
        retry.max_backoff = Duration::from_millis(ms.saturating_mul(8));
        retry.default_retry_after = Duration::from_millis(ms);
        retry.max_retry_after = Duration::from_millis(ms.saturating_mul(8));
    }
    retry
}

/// The message of a refused configuration, naming the option to fix. URLs are shown
/// without user info whatever the core's message says.
fn config_message(e: &dap_proto::ConfigError, base_url: &str) -> String {
    use dap_proto::ConfigError as E;
    let shown = redact::without_user_info(base_url);
    match e {
        E::PlainHttp(_) => format!(
            "--base-url / DAP_API_URL {shown:?} uses plain http to a host other than this \
             machine, which would send the client secret unencrypted; use an https:// URL"
        ),
        E::InvalidBaseUrl(_) => format!(
            "--base-url / DAP_API_URL {shown:?} is not an absolute http(s) URL \
             (for example https://api-gateway.instructure.com)"
        ),
        E::InvalidClientId => {
            "the client ID (DAP_CLIENT_ID / --client-id) contains ':' or control characters"
                .to_owned()
        }
        // `check_base_url` refused user info before the core saw the URL.
        other => redact(&other.to_string()),
    }
}
