//! What every command gets: the global options, the hints for error messages, the job
//! directories written so far, and the DAP client built from the options.

use std::time::Duration;

use dap_hyper::{Client, Options};
use dap_proto::{Config, PollPolicy, RetryPolicy};

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
            .build()
            .map_err(|e| CliError::Config(config_message(&e, base_url)))?;
        let mut options = Options::default();
        if let Some(path) = &g.ca_file {
            options = options.extra_ca_file(path);
        }
        Client::with_options(config, options)
            .map_err(|e| CliError::Config(redact(&format!("--ca-file / DAP_CA_FILE: {e}"))))
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
