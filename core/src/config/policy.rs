//! How requests are retried and jobs polled: [`RetryPolicy`] and [`PollPolicy`].

use std::time::Duration;

/// How failed requests are retried: 429 waits for `Retry-After`; 5xx and transport
/// failures back off exponentially with jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total per request, the first included (1 to 100): a login, a
    /// listing, each job-status poll and each object-URL batch alike. A call that keeps
    /// failing ends after this many attempts, or at [`Config::call_timeout`](super::Config::call_timeout) if sooner.
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

    crate::setters! {
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
        fn with_max_attempts(max_attempts: u32);
        /// Sets [`RetryPolicy::initial_backoff`] and [`RetryPolicy::max_backoff`].
        #[must_use]
        fn with_backoff(initial_backoff: Duration, max_backoff: Duration);
    }
    crate::setters!(RetryPolicy:
        with_max_retry_after(max_retry_after: Duration),
        with_default_retry_after(default_retry_after: Duration),
        with_jitter_seed(jitter_seed: u64),
    );
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

    crate::setters!(PollPolicy:
        with_max_status_calls_per_minute(max_status_calls_per_minute: u32),
        with_max_duration(max_duration: Duration),
        with_expiry_margin(expiry_margin: Duration),
    );
    crate::setters! {
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
        fn with_intervals(initial_interval: Duration, max_interval: Duration);
        /// Sets [`PollPolicy::fast_phase`] and [`PollPolicy::fast_interval`].
        #[must_use]
        fn with_fast_phase(fast_phase: Duration, fast_interval: Duration);
    }
}
