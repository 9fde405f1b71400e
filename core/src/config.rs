//! Session configuration, built with [`ConfigBuilder`], which rejects nonsense up front.

use std::fmt;
use std::time::Duration;

use http::Uri;

use crate::secret::ClientSecret;
pub use crate::speed::{LowSpeed, SpeedMeter};

/// The gateway every DAP customer uses unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api-gateway.instructure.com";
/// Path of the login (token) endpoint, relative to the base URL.
pub const DEFAULT_TOKEN_PATH: &str = "/ids/auth/login";
/// The default `User-Agent`: this library and its version.
pub const DEFAULT_USER_AGENT: &str = concat!("dap-rs/", env!("CARGO_PKG_VERSION"));
/// Default cap on any JSON body the core parses.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A client ID and its secret.
#[derive(Clone)]
pub struct Credentials {
    client_id: String,
    secret: ClientSecret,
}

impl Credentials {
    /// Pairs a client ID (possibly `region#uuid`) with its secret.
    pub fn new(client_id: impl Into<String>, secret: ClientSecret) -> Self {
        Self {
            client_id: client_id.into(),
            secret,
        }
    }

    /// The client ID exactly as issued, region prefix included.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret.
    pub fn secret(&self) -> &ClientSecret {
        &self.secret
    }

    /// The region of a `region#id` client ID (`us-east-1` in `us-east-1#abc`), if present.
    /// Informational only: one host serves every region.
    pub fn region(&self) -> Option<&str> {
        let (region, id) = self.client_id.split_once('#')?;
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        };
        (word(region) && word(id)).then_some(region)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Which header carries the access token on API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum TokenHeader {
    /// `Authorization: Bearer <token>` (the documented form).
    #[default]
    Bearer,
    /// `x-instauth: <token>` (older docs and many community scripts).
    XInstAuth,
}

impl TokenHeader {
    /// The header name this variant writes.
    pub fn name(self) -> http::HeaderName {
        match self {
            Self::Bearer => http::header::AUTHORIZATION,
            Self::XInstAuth => http::HeaderName::from_static("x-instauth"),
        }
    }
}

/// How failed requests are retried: 429 waits for `Retry-After`; 5xx and transport
/// failures back off exponentially with jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total per request, the first included (1 to 100): a login, a
    /// listing, each job-status poll and each object-URL batch alike. A call that keeps
    /// failing ends after this many attempts, or at [`Config::call_timeout`] if sooner.
    pub max_attempts: u32,
    /// Delay before the first retry of a 5xx or transport failure.
    pub initial_backoff: Duration,
    /// Ceiling of the exponential backoff.
    pub max_backoff: Duration,
    /// Ceiling applied to any `Retry-After` the server sends.
    pub max_retry_after: Duration,
    /// Wait used for a 429 that carries no usable `Retry-After`.
    pub default_retry_after: Duration,
    /// Seed of the jitter generator, so runs are reproducible.
    pub jitter_seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            default_retry_after: Duration::from_secs(30),
            jitter_seed: 0x05ee_dda9,
        }
    }
}

impl RetryPolicy {
    /// Builds a policy from its main knobs, keeping defaults for the rest.
    pub fn new(max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            max_attempts,
            initial_backoff,
            max_backoff,
            ..Self::default()
        }
    }

    /// Sets [`RetryPolicy::max_attempts`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use dap_proto::{Config, RetryPolicy};
    ///
    /// let retry = RetryPolicy::default()
    ///     .with_max_attempts(3)
    ///     .with_backoff(Duration::from_millis(200), Duration::from_secs(10))
    ///     .with_max_retry_after(Duration::from_secs(60));
    /// let config = Config::builder("id", "secret").retry(retry).build()?;
    /// assert_eq!(config.retry().max_attempts, 3);
    /// # Ok::<(), dap_proto::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`RetryPolicy::initial_backoff`] and [`RetryPolicy::max_backoff`].
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets [`RetryPolicy::max_retry_after`].
    #[must_use]
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets [`RetryPolicy::default_retry_after`].
    #[must_use]
    pub fn with_default_retry_after(mut self, wait: Duration) -> Self {
        self.default_retry_after = wait;
        self
    }

    /// Sets [`RetryPolicy::jitter_seed`].
    #[must_use]
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = seed;
        self
    }
}

/// How jobs are polled until they end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollPolicy {
    /// Delay before the first status request.
    pub initial_interval: Duration,
    /// Ceiling of the doubling interval.
    pub max_interval: Duration,
    /// For this long after a query starts, polls come at least every
    /// [`PollPolicy::fast_interval`], so a short job's data is fetched within a second of
    /// completing; after it, the interval keeps doubling up to `max_interval`.
    pub fast_phase: Duration,
    /// The poll interval ceiling during [`PollPolicy::fast_phase`].
    pub fast_interval: Duration,
    /// Job-status calls allowed per sliding minute across every job of the session
    /// (the API documents 500; default 450 leaves room for other clients). Polls beyond
    /// it wait for the window to move.
    pub max_status_calls_per_minute: u32,
    /// Give up on a job that has not ended after this long.
    pub max_duration: Duration,
    /// A complete job whose `expires_at` is closer than this is queried again.
    pub expiry_margin: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(5),
            fast_phase: Duration::from_secs(60),
            fast_interval: Duration::from_millis(750),
            max_status_calls_per_minute: 450,
            max_duration: Duration::from_secs(6 * 3600),
            expiry_margin: Duration::from_secs(30),
        }
    }
}

impl PollPolicy {
    /// Builds a policy from its intervals, keeping defaults for the rest.
    pub fn new(initial_interval: Duration, max_interval: Duration) -> Self {
        Self {
            initial_interval,
            max_interval,
            ..Self::default()
        }
    }

    /// Sets [`PollPolicy::initial_interval`] and [`PollPolicy::max_interval`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use dap_proto::{Config, PollPolicy};
    ///
    /// let poll = PollPolicy::default()
    ///     .with_intervals(Duration::from_secs(1), Duration::from_secs(10))
    ///     .with_max_duration(Duration::from_secs(2 * 3600));
    /// let config = Config::builder("id", "secret").poll(poll).build()?;
    /// assert_eq!(config.poll().max_interval, Duration::from_secs(10));
    /// # Ok::<(), dap_proto::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_intervals(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_interval = initial;
        self.max_interval = max;
        self
    }

    /// Sets [`PollPolicy::fast_phase`] and [`PollPolicy::fast_interval`].
    #[must_use]
    pub fn with_fast_phase(mut self, phase: Duration, interval: Duration) -> Self {
        self.fast_phase = phase;
        self.fast_interval = interval;
        self
    }

    /// Sets [`PollPolicy::max_status_calls_per_minute`].
    #[must_use]
    pub fn with_max_status_calls_per_minute(mut self, calls: u32) -> Self {
        self.max_status_calls_per_minute = calls;
        self
    }

    /// Sets [`PollPolicy::max_duration`].
    #[must_use]
    pub fn with_max_duration(mut self, duration: Duration) -> Self {
        self.max_duration = duration;
        self
    }

    /// Sets [`PollPolicy::expiry_margin`].
    #[must_use]
    pub fn with_expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = margin;
        self
    }
}

/// A validated configuration. Build one with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) base: String,
    pub(crate) credentials: Credentials,
    pub(crate) user_agent: http::HeaderValue,
    pub(crate) token_path: String,
    pub(crate) token_header: TokenHeader,
    pub(crate) refresh_margin: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) poll: PollPolicy,
    pub(crate) scope: Option<String>,
    pub(crate) max_body_bytes: usize,
    pub(crate) url_batch_size: usize,
    pub(crate) call_timeout: Duration,
    pub(crate) low_speed: LowSpeed,
    pub(crate) url_lifetime: Duration,
}

/// How long a pre-signed URL is trusted when it does not say (`X-Amz-Expires`): DAP
/// documents 15 minutes.
pub const DEFAULT_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The default [`Config::call_timeout`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The longest backoff, `Retry-After`, poll interval or deadline a configuration may
/// name: longer ones are refused rather than sleeping for ever.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Config {
    /// Starts a builder with the two things no default can supply.
    pub fn builder(client_id: impl Into<String>, secret: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder {
            client_id: client_id.into(),
            secret: ClientSecret::new(secret),
            base_url: DEFAULT_BASE_URL.to_owned(),
            allow_plain_http: false,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            token_path: DEFAULT_TOKEN_PATH.to_owned(),
            token_header: TokenHeader::Bearer,
            refresh_margin: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            poll: PollPolicy::default(),
            scope: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            url_batch_size: 100,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            low_speed: LowSpeed::default(),
            url_lifetime: DEFAULT_URL_LIFETIME,
        }
    }

    /// Builds a configuration from `DAP_API_URL`, `DAP_CLIENT_ID` and `DAP_CLIENT_SECRET`
    /// as read by `lookup` (pass `|k| std::env::var(k).ok()` for the process
    /// environment). A missing ID or secret is an error naming the variable.
    pub fn builder_from_vars(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ConfigBuilder, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::MissingVariable(name))
        };
        let mut builder = Self::builder(get("DAP_CLIENT_ID")?, get("DAP_CLIENT_SECRET")?);
        if let Ok(url) = get("DAP_API_URL") {
            builder = builder.base_url(url);
        }
        Ok(builder)
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The `User-Agent` sent on every request.
    pub fn user_agent(&self) -> &http::HeaderValue {
        &self.user_agent
    }

    /// The header that carries the token.
    pub fn token_header(&self) -> TokenHeader {
        self.token_header
    }

    /// How long before its expiry a token stops being used.
    pub fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The job-poll policy.
    pub fn poll(&self) -> &PollPolicy {
        &self.poll
    }

    /// The optional `scope` query parameter.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The largest response body the core parses; transports should stop reading a
    /// body after this many bytes plus one.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How many object ids go into one object-URL request.
    pub fn url_batch_size(&self) -> usize {
        self.url_batch_size
    }

    /// The per-call deadline: the longest an operation may take from its start to its
    /// result, not counting the time a query's job spends waiting and running on the
    /// server (bounded by [`PollPolicy::max_duration`]). After it the operation ends
    /// with [`crate::Error::Timeout`]. Default 10 minutes.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The low-speed rule for response bodies.
    pub fn low_speed(&self) -> LowSpeed {
        self.low_speed
    }

    /// How long a pre-signed URL is trusted when the URL itself does not say.
    pub fn url_lifetime(&self) -> Duration {
        self.url_lifetime
    }

    /// The host (and port) of the API, used to make sure the token goes nowhere else.
    pub fn api_authority(&self) -> Option<http::uri::Authority> {
        self.base.parse::<Uri>().ok()?.authority().cloned()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn token_url(&self) -> String {
        self.url(&self.token_path)
    }
}

/// Builder for [`Config`]; [`ConfigBuilder::build`] validates everything.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    client_id: String,
    secret: ClientSecret,
    base_url: String,
    allow_plain_http: bool,
    user_agent: String,
    token_path: String,
    token_header: TokenHeader,
    refresh_margin: Duration,
    retry: RetryPolicy,
    poll: PollPolicy,
    scope: Option<String>,
    max_body_bytes: usize,
    url_batch_size: usize,
    call_timeout: Duration,
    low_speed: LowSpeed,
    url_lifetime: Duration,
}

impl ConfigBuilder {
    /// The API base URL (default [`DEFAULT_BASE_URL`]). Plain `http://` is accepted only
    /// for loopback hosts unless [`ConfigBuilder::dangerous_allow_plain_http`] is set.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Accepts a plain `http://` base URL on a non-loopback host. The client secret and
    /// token then cross the network unencrypted.
    pub fn dangerous_allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// The `User-Agent` header (default [`DEFAULT_USER_AGENT`]); never empty.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// The token endpoint path (default [`DEFAULT_TOKEN_PATH`]).
    pub fn token_path(mut self, path: impl Into<String>) -> Self {
        self.token_path = path.into();
        self
    }

    /// The header that carries the token.
    pub fn token_header(mut self, header: TokenHeader) -> Self {
        self.token_header = header;
        self
    }

    /// How long before expiry a token is refreshed (default 5 minutes).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The job-poll policy.
    pub fn poll(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// The root-account `scope` query parameter for list, schema and data calls.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Cap on any JSON body parsed (default 32 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Object ids per object-URL request (default 100).
    pub fn url_batch_size(mut self, size: usize) -> Self {
        self.url_batch_size = size;
        self
    }

    /// The per-call deadline (default [`DEFAULT_CALL_TIMEOUT`]); see
    /// [`Config::call_timeout`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The low-speed rule (default 1 KiB in 30 s); see [`LowSpeed`].
    pub fn low_speed(mut self, rule: LowSpeed) -> Self {
        self.low_speed = rule;
        self
    }

    /// How long a pre-signed URL is trusted when it does not carry `X-Amz-Expires`
    /// (default [`DEFAULT_URL_LIFETIME`]).
    pub fn url_lifetime(mut self, lifetime: Duration) -> Self {
        self.url_lifetime = lifetime;
        self
    }

    /// Validates and builds the configuration. The client ID and secret are used
    /// without surrounding whitespace.
    pub fn build(self) -> Result<Config, ConfigError> {
        use ConfigError as E;
        let client_id = self.client_id.trim().to_owned();
        if client_id.is_empty() {
            return Err(E::EmptyClientId);
        }
        if client_id.contains(':') || client_id.chars().any(char::is_control) {
            return Err(E::InvalidClientId);
        }
        let secret = ClientSecret::new(self.secret.secret().trim());
        if secret.secret().is_empty() {
            return Err(E::EmptySecret);
        }
        self.validate_durations()?;
        let base = validate_base(&self.base_url, self.allow_plain_http)?;
        if self.user_agent.trim().is_empty() {
            return Err(E::EmptyUserAgent);
        }
        let user_agent =
            http::HeaderValue::from_str(&self.user_agent).map_err(|_| E::InvalidUserAgent)?;
        if !self.token_path.starts_with('/') || self.token_path.parse::<Uri>().is_err() {
            return Err(E::InvalidTokenPath);
        }
        if self.retry.max_attempts == 0 {
            return Err(E::ZeroAttempts);
        }
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err(E::Invalid("retry initial_backoff exceeds max_backoff"));
        }
        if self.poll.initial_interval.is_zero()
            || self.poll.initial_interval > self.poll.max_interval
        {
            return Err(E::Invalid(
                "poll initial_interval must be non-zero and at most max_interval",
            ));
        }
        if self.poll.max_status_calls_per_minute == 0 {
            return Err(E::Invalid(
                "poll max_status_calls_per_minute must be at least 1",
            ));
        }
        if self.poll.max_duration.is_zero() {
            return Err(E::Invalid("poll max_duration must be non-zero"));
        }
        if let Some(scope) = &self.scope {
            if scope.is_empty()
                || !scope
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
            {
                return Err(E::Invalid("scope must be a non-empty unreserved URL word"));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(E::Invalid("max_body_bytes must be at least 1024"));
        }
        if self.url_batch_size == 0 {
            return Err(E::Invalid("url_batch_size must be at least 1"));
        }
        Ok(Config {
            base,
            credentials: Credentials::new(client_id, secret),
            user_agent,
            token_path: self.token_path,
            token_header: self.token_header,
            refresh_margin: self.refresh_margin,
            retry: self.retry,
            poll: self.poll,
            scope: self.scope,
            max_body_bytes: self.max_body_bytes,
            url_batch_size: self.url_batch_size,
            call_timeout: self.call_timeout,
            low_speed: self.low_speed,
            url_lifetime: self.url_lifetime,
        })
    }

    /// Refuses durations and counts so large that a wait would overflow the clock or
    /// last for ever.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        use ConfigError as E;
        let r = &self.retry;
        let p = &self.poll;
        let long = [
            ("retry max_backoff", r.max_backoff),
            ("retry max_retry_after", r.max_retry_after),
            ("retry default_retry_after", r.default_retry_after),
            ("poll max_interval", p.max_interval),
            ("poll fast_phase", p.fast_phase),
            ("poll fast_interval", p.fast_interval),
            ("poll max_duration", p.max_duration),
            ("poll expiry_margin", p.expiry_margin),
            ("refresh_margin", self.refresh_margin),
            ("call_timeout", self.call_timeout),
            ("low_speed window", self.low_speed.window),
            ("url_lifetime", self.url_lifetime),
        ];
        if let Some((name, _)) = long.iter().find(|(_, d)| *d > MAX_CONFIG_DURATION) {
            return Err(E::TooLong(name));
        }
        if r.max_attempts > 100 {
            return Err(E::Invalid("retry max_attempts must be at most 100"));
        }
        if self.call_timeout.is_zero() || self.low_speed.window.is_zero() {
            return Err(E::Invalid(
                "call_timeout and the low-speed window must be non-zero",
            ));
        }
        if self.url_lifetime < Duration::from_secs(1) {
            return Err(E::Invalid("url_lifetime must be at least a second"));
        }
        Ok(())
    }
}

fn validate_base(url: &str, allow_plain_http: bool) -> Result<String, ConfigError> {
    // User info is refused first, and the URL is never echoed then: it may hold a
    // password.
    let authority_part = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    if authority_part.contains('@') {
        return Err(ConfigError::BaseUrlUserInfo);
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| ConfigError::InvalidBaseUrl(url.to_owned()))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(ConfigError::InvalidBaseUrl(url.to_owned()));
    };
    if uri.query().is_some() {
        return Err(ConfigError::InvalidBaseUrl(url.to_owned()));
    }
    match scheme {
        "https" => {}
        "http" if allow_plain_http || is_loopback(authority.host()) => {}
        "http" => return Err(ConfigError::PlainHttp(url.to_owned())),
        _ => return Err(ConfigError::InvalidBaseUrl(url.to_owned())),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The client ID is empty.
    #[error("the client ID is empty")]
    EmptyClientId,
    /// The client ID contains `:` or control characters and cannot go into Basic auth.
    #[error("the client ID contains ':' or control characters")]
    InvalidClientId,
    /// The client secret is empty.
    #[error("the client secret is empty")]
    EmptySecret,
    /// The base URL is not an absolute `http(s)://host` URL.
    #[error("the base URL {0:?} is not an absolute http(s) URL without a query")]
    InvalidBaseUrl(String),
    /// The base URL carries user information (`user:password@`); credentials go in
    /// the client ID and secret. The URL is not repeated, since it may hold a password.
    #[error(
        "the base URL contains user information (user:password@host), which is not \
         allowed; pass credentials as the client ID and secret"
    )]
    BaseUrlUserInfo,
    /// Plain HTTP to a non-loopback host without the explicit opt-in.
    #[error(
        "the base URL {0:?} is plain http on a non-loopback host; use https or opt in with dangerous_allow_plain_http"
    )]
    PlainHttp(String),
    /// The User-Agent is empty.
    #[error("the User-Agent is empty; the API refuses requests without one")]
    EmptyUserAgent,
    /// The User-Agent is not a valid header value.
    #[error("the User-Agent is not a valid header value")]
    InvalidUserAgent,
    /// The token path does not start with `/` or is not a valid path.
    #[error("the token path must be an absolute path such as /ids/auth/login")]
    InvalidTokenPath,
    /// The retry policy allows zero attempts.
    #[error("the retry policy must allow at least one attempt")]
    ZeroAttempts,
    /// A required environment variable is missing or empty.
    #[error("the environment variable {0} is not set")]
    MissingVariable(&'static str),
    /// A duration is longer than [`MAX_CONFIG_DURATION`].
    #[error("invalid configuration: {0} is longer than 7 days")]
    TooLong(&'static str),
    /// Another setting is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ConfigBuilder {
        Config::builder("us-east-1#abc", "s3cr3t")
    }

    #[test]
    fn defaults_build() {
        let c = ok().build().unwrap();
        assert_eq!(c.base_url(), DEFAULT_BASE_URL);
        assert_eq!(c.credentials().region(), Some("us-east-1"));
        assert_eq!(c.refresh_margin(), Duration::from_secs(300));
        assert!(c.user_agent().to_str().unwrap().starts_with("dap-rs/"));
    }

    #[test]
    fn region_absent() {
        let c = Config::builder("plain-id", "s").build().unwrap();
        assert_eq!(c.credentials().region(), None);
    }

    #[test]
    fn rejects_nonsense() {
        use ConfigError as E;
        let cases: Vec<(ConfigBuilder, ConfigError)> = vec![
            (Config::builder("", "s"), E::EmptyClientId),
            (Config::builder("a:b", "s"), E::InvalidClientId),
            (Config::builder("id", ""), E::EmptySecret),
            (
                ok().base_url("api.example.com"),
                E::InvalidBaseUrl("api.example.com".into()),
            ),
            (
                ok().base_url("ftp://x"),
                E::InvalidBaseUrl("ftp://x".into()),
            ),
            (
                ok().base_url("http://example.com"),
                E::PlainHttp("http://example.com".into()),
            ),
            (ok().user_agent(""), E::EmptyUserAgent),
            (ok().user_agent("a\nb"), E::InvalidUserAgent),
            (ok().token_path("login"), E::InvalidTokenPath),
            (
                ok().retry(RetryPolicy {
                    max_attempts: 0,
                    ..RetryPolicy::default()
                }),
                E::ZeroAttempts,
            ),
        ];
        for (builder, expected) in cases {
            assert_eq!(builder.build().unwrap_err(), expected);
        }
    }

    #[test]
    fn huge_waits_are_refused() {
        let huge = Duration::MAX;
        for builder in [
            ok().retry(RetryPolicy::default().with_backoff(Duration::ZERO, huge)),
            ok().retry(RetryPolicy::default().with_max_retry_after(huge)),
            ok().poll(PollPolicy::default().with_max_duration(huge)),
            ok().call_timeout(huge),
        ] {
            assert!(matches!(builder.build(), Err(ConfigError::TooLong(_))));
        }
        assert!(
            ok().retry(RetryPolicy::default().with_max_attempts(u32::MAX))
                .build()
                .is_err()
        );
    }

    #[test]
    fn user_info_is_refused_without_echo() {
        for url in [
            "http://user:pw@127.0.0.1:8080",
            "https://user:pw@host/x",
            "user:pw@host",
        ] {
            let err = ok().base_url(url).build().unwrap_err();
            assert_eq!(err, ConfigError::BaseUrlUserInfo, "{url}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn credentials_are_trimmed() {
        let c = Config::builder(" id\n", "\tsecret \r\n").build().unwrap();
        assert_eq!(c.credentials().client_id(), "id");
        assert_eq!(c.credentials().secret().secret(), "secret");
        assert_eq!(
            Config::builder("id", "  ").build().unwrap_err(),
            ConfigError::EmptySecret
        );
    }

    #[test]
    fn plain_http_loopback_and_opt_in() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:1/",
            "http://[::1]:9",
        ] {
            ok().base_url(url).build().unwrap();
        }
        let c = ok()
            .base_url("http://dap.internal/")
            .dangerous_allow_plain_http(true)
            .build()
            .unwrap();
        assert_eq!(c.base_url(), "http://dap.internal");
    }

    #[test]
    fn from_vars_names_missing_variable() {
        let err =
            Config::builder_from_vars(|k| (k == "DAP_CLIENT_ID").then(|| "id".into())).unwrap_err();
        assert_eq!(err, ConfigError::MissingVariable("DAP_CLIENT_SECRET"));
        let c = Config::builder_from_vars(|k| match k {
            "DAP_CLIENT_ID" => Some("id".into()),
            "DAP_CLIENT_SECRET" => Some("sec".into()),
            "DAP_API_URL" => Some("http://127.0.0.1:9".into()),
            _ => None,
        })
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn debug_hides_secret() {
        let c = ok().build().unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
