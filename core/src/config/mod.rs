//! Session configuration, built with [`ConfigBuilder`], which rejects nonsense up front.

use std::fmt;
use std::time::Duration;

use http::Uri;

use crate::secret::ClientSecret;
pub use crate::speed::{LowSpeed, SpeedMeter};

/// Writes chainable setters, `pub fn name(mut self, …) -> Self`, one line each, for the
/// workspace's builders (here and in `dap-client`); not a stable interface.
///
/// Two forms, which can follow each other in one `impl` block:
/// - `setters!(Owner: name(field: Type), …)`: each setter stores its argument in the
///   public field of the same name, is `#[must_use]` and is documented
///   ``Sets [`Owner::field`].``
/// - `setters! { /// docs
///   fn name(arg: Type, …) { path.to.field = expression, … } … }`: each setter assigns
///   the expressions (of its arguments) to the fields of `self` named, and carries the
///   attributes written before it (its docs, `#[must_use]`) and no others;
///   `fn name(field: Type, …);` stores each argument in the field of the same name.
///
/// ```
/// struct Knobs {
///     /// How many.
///     pub count: u32,
///     name: String,
///     size: (u8, u8),
/// }
///
/// impl Knobs {
///     dap_proto::setters!(Knobs: with_count(count: u32));
///     dap_proto::setters! {
///         /// Sets the name.
///         #[must_use]
///         fn named(name: impl Into<String>) { name = name.into() }
///         /// Sets the size.
///         #[must_use]
///         fn sized(width: u8, height: u8) { size.0 = width, size.1 = height }
///         /// Sets the count and the size.
///         #[must_use]
///         fn with(count: u32, size: (u8, u8));
///     }
/// }
///
/// let knobs = Knobs { count: 0, name: String::new(), size: (0, 0) };
/// let knobs = knobs.with_count(3).named("x").sized(1, 2);
/// assert_eq!((knobs.count, knobs.name.as_str(), knobs.size), (3, "x", (1, 2)));
/// assert_eq!(knobs.with(4, (5, 6)).size, (5, 6));
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! setters {
    () => {};
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),+ $(,)?); $($rest:tt)*) => {
        $crate::setters! {
            $(#[$attr])* fn $name($($arg: $ty),+) { $($arg = $arg),+ }
            $($rest)*
        }
    };
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),+ $(,)?) {
        $($($field:tt).+ = $value:expr),+ $(,)?
    } $($rest:tt)*) => {
        $(#[$attr])*
        pub fn $name(mut self, $($arg: $ty),+) -> Self {
            $(self.$($field).+ = $value;)+
            self
        }
        $crate::setters! { $($rest)* }
    };
    ($owner:ident: $($name:ident($field:ident: $ty:ty)),+ $(,)?) => {$(
        #[doc = concat!("Sets [`", stringify!($owner), "::", stringify!($field), "`].")]
        #[must_use]
        pub fn $name(mut self, $field: $ty) -> Self {
            self.$field = $field;
            self
        }
    )+};
}

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

mod policy;
pub use policy::{PollPolicy, RetryPolicy};

/// A validated configuration. Build one with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    base: String,
    credentials: Credentials,
    user_agent: http::HeaderValue,
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
            draft: Self {
                base: DEFAULT_BASE_URL.to_owned(),
                credentials: Credentials::new(client_id, ClientSecret::new(secret)),
                user_agent: http::HeaderValue::from_static(DEFAULT_USER_AGENT),
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
            },
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            allow_plain_http: false,
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

    /// Refuses durations and counts so large that a wait would overflow the clock or
    /// last for ever.
    fn check_durations(&self) -> Result<(), ConfigError> {
        use ConfigError as E;
        let (r, p) = (&self.retry, &self.poll);
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
        first_refusal([
            (
                r.max_attempts > 100,
                E::Invalid("retry max_attempts must be at most 100"),
            ),
            (
                self.call_timeout.is_zero() || self.low_speed.window.is_zero(),
                E::Invalid("call_timeout and the low-speed window must be non-zero"),
            ),
            (
                self.url_lifetime < Duration::from_secs(1),
                E::Invalid("url_lifetime must be at least a second"),
            ),
        ])
    }

    /// Refuses the settings out of range that [`Config::check_durations`] leaves.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        use ConfigError as E;
        let (r, p) = (&self.retry, &self.poll);
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
        let scope_ok = |s: &String| !s.is_empty() && s.chars().all(unreserved);
        first_refusal([
            (
                !self.token_path.starts_with('/') || self.token_path.parse::<Uri>().is_err(),
                E::InvalidTokenPath,
            ),
            (r.max_attempts == 0, E::ZeroAttempts),
            (
                r.initial_backoff > r.max_backoff,
                E::Invalid("retry initial_backoff exceeds max_backoff"),
            ),
            (
                p.initial_interval.is_zero() || p.initial_interval > p.max_interval,
                E::Invalid("poll initial_interval must be non-zero and at most max_interval"),
            ),
            (
                p.max_status_calls_per_minute == 0,
                E::Invalid("poll max_status_calls_per_minute must be at least 1"),
            ),
            (
                p.max_duration.is_zero(),
                E::Invalid("poll max_duration must be non-zero"),
            ),
            (
                !self.scope.as_ref().is_none_or(scope_ok),
                E::Invalid("scope must be a non-empty unreserved URL word"),
            ),
            (
                self.max_body_bytes < 1024,
                E::Invalid("max_body_bytes must be at least 1024"),
            ),
            (
                self.url_batch_size == 0,
                E::Invalid("url_batch_size must be at least 1"),
            ),
        ])
    }
}

/// The error of the first check that holds, in order: each rule of a configuration is
/// one `(broken, error)` row.
fn first_refusal<const N: usize>(checks: [(bool, ConfigError); N]) -> Result<(), ConfigError> {
    match checks.into_iter().find(|(broken, _)| *broken) {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

/// Builder for [`Config`]; [`ConfigBuilder::build`] validates everything.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    /// The configuration [`ConfigBuilder::build`] returns once checked: its base URL and
    /// credentials as given (checked, trimmed, made canonical by `build`), its
    /// `user_agent` a placeholder for [`ConfigBuilder::user_agent`].
    draft: Config,
    user_agent: String,
    allow_plain_http: bool,
}

impl ConfigBuilder {
    crate::setters! {
        /// The API base URL (default [`DEFAULT_BASE_URL`]). Plain `http://` is accepted only
        /// for loopback hosts unless [`ConfigBuilder::dangerous_allow_plain_http`] is set.
        fn base_url(url: impl Into<String>) { draft.base = url.into() }
        /// Accepts a plain `http://` base URL on a non-loopback host. The client secret and
        /// token then cross the network unencrypted.
        fn dangerous_allow_plain_http(allow_plain_http: bool);
        /// The `User-Agent` header (default [`DEFAULT_USER_AGENT`]); never empty.
        fn user_agent(agent: impl Into<String>) { user_agent = agent.into() }
        /// The token endpoint path (default [`DEFAULT_TOKEN_PATH`]).
        fn token_path(path: impl Into<String>) { draft.token_path = path.into() }
        /// The header that carries the token.
        fn token_header(header: TokenHeader) { draft.token_header = header }
        /// How long before expiry a token is refreshed (default 5 minutes).
        fn refresh_margin(margin: Duration) { draft.refresh_margin = margin }
        /// The retry policy.
        fn retry(retry: RetryPolicy) { draft.retry = retry }
        /// The job-poll policy.
        fn poll(poll: PollPolicy) { draft.poll = poll }
        /// The root-account `scope` query parameter for list, schema and data calls.
        fn scope(scope: impl Into<String>) { draft.scope = Some(scope.into()) }
        /// Cap on any JSON body parsed (default 32 MiB).
        fn max_body_bytes(bytes: usize) { draft.max_body_bytes = bytes }
        /// Object ids per object-URL request (default 100).
        fn url_batch_size(size: usize) { draft.url_batch_size = size }
        /// The per-call deadline (default [`DEFAULT_CALL_TIMEOUT`]); see
        /// [`Config::call_timeout`].
        fn call_timeout(timeout: Duration) { draft.call_timeout = timeout }
        /// The low-speed rule (default 1 KiB in 30 s); see [`LowSpeed`].
        fn low_speed(rule: LowSpeed) { draft.low_speed = rule }
        /// How long a pre-signed URL is trusted when it does not carry `X-Amz-Expires`
        /// (default [`DEFAULT_URL_LIFETIME`]).
        fn url_lifetime(lifetime: Duration) { draft.url_lifetime = lifetime }
    }

    /// Validates and builds the configuration. The client ID and secret are used
    /// without surrounding whitespace.
    pub fn build(self) -> Result<Config, ConfigError> {
        use ConfigError as E;
        let mut config = self.draft;
        let client_id = config.credentials.client_id.trim().to_owned();
        let secret = ClientSecret::new(config.credentials.secret.secret().trim());
        first_refusal([
            (client_id.is_empty(), E::EmptyClientId),
            (
                client_id.contains(':') || client_id.chars().any(char::is_control),
                E::InvalidClientId,
            ),
            (secret.secret().is_empty(), E::EmptySecret),
        ])?;
        config.check_durations()?;
        config.base = validate_base(&config.base, self.allow_plain_http)?;
        if self.user_agent.trim().is_empty() {
            return Err(E::EmptyUserAgent);
        }
        config.user_agent =
            http::HeaderValue::from_str(&self.user_agent).map_err(|_| E::InvalidUserAgent)?;
        config.check_ranges()?;
        config.credentials = Credentials::new(client_id, secret);
        Ok(config)
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
mod tests;
