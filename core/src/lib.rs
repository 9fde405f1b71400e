//! # dap-proto: a sans-IO client core for Instructure's Data Access Platform
//!
//! DAP (Canvas Data 2) serves bulk Canvas tables through a query API: log in with a
//! client ID and secret, start a snapshot or incremental query job, poll it until it
//! completes, trade its object ids for pre-signed URLs, download the gzip objects. This
//! crate is the protocol in the middle of that, as plain values: it builds
//! [`http::Request`]s, reads [`http::Response`]s, and decides what happens next. It
//! never opens a socket, never reads a clock, never spawns or sleeps.
//!
//! **In scope:** login and token lifetime (proactive refresh, one login for any number of
//! waiting operations, a new login after a 401), every Query API endpoint, retries with
//! backoff and `Retry-After`, job polling, URL batching, typed errors, the download
//! request, streaming gzip verification and record splitting, raw HTTP/1.1 bytes.
//!
//! **Out of scope:** sockets, TLS, timers, files. The transports `dap-hyper` (async)
//! and `dap-ureq` (blocking) drive this crate over real networks; anything else that can
//! move bytes can too (see [`wire`] and the `raw_tcp` example).
//!
//! ## Two layers, two machines
//! 1. [`api`]: per endpoint, a pure `request` builder and a `parse` function. Use them
//!    without a session when you manage tokens yourself.
//! 2. Two state machines that compose them, with one grammar: `handle_*` in, `poll_*`
//!    out, `now` passed in.
//!    - [`Session`]: API calls. One token for any number of operations, retries, job
//!      polling, URL batches, per-call deadlines.
//!    - [`Download`]: one job's objects. The concurrency window, the order of results,
//!      cancel-on-first-error, URL refreshes (before expiry and after a 403), one
//!      [`Transfer`] per started object (resume, retries, the low-speed rule,
//!      verification), and the names of the temporary and final files. It lends each
//!      storage request out as a [`Fetch`] and asks the session for fresh URLs with a
//!      [`Command`], so the two compose with no glue of their own.
//!
//! ## The run loop
//! ```
//! use std::time::Instant;
//! use dap_proto::{Command, Config, Output, Session, TransportFailure, FailureKind};
//!
//! // The clocks belong to the caller (here the system's); the core never reads one.
//! let (now, wall) = (Instant::now, jiff::Timestamp::now);
//! let config = Config::builder("us-east-1#my-client-id", "my-secret").build()?;
//! let mut session = Session::new(config, now(), wall());
//! let op = session.start(Command::ListTables { namespace: "canvas".into() }, now());
//! # let mut rounds = 0;
//! loop {
//!     match session.poll_output(now()) {
//!         Output::Send { id, request } => {
//!             // Send `request` with any HTTP client, then report what happened:
//!             // session.handle_response(id, response, now())?;
//!             // or, if it could not be completed, why:
//!             let failure = TransportFailure::new(FailureKind::Connect, "refused");
//!             session.handle_failure(id, failure, now())?;
//!         }
//!         Output::Done { op, result } => {
//!             println!("{op}: {result:?}");
//!             break;
//!         }
//!         Output::Wait(deadline) => {
//!             // Sleep until `deadline` or until a response arrives, then poll again.
//! #           let _ = deadline; rounds += 1; if rounds > 3 { break; }
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The download run loop
//! A [`Download`] of a [`QueryResult`] is pumped the same way; the [`Session`] serves its
//! URL requests. Files are the caller's: the machine names them and says when to
//! create, commit or discard one.
//! ```no_run
//! use std::time::Instant;
//! use dap_proto::{Download, DownloadOutput, DownloadSpec, QueryResult, Session};
//!
//! // `now` is the runtime's clock: the core never reads one.
//! fn download(
//!     session: &mut Session,
//!     result: &QueryResult,
//!     now: impl Fn() -> Instant,
//! ) -> Result<(), Box<dyn std::error::Error>> {
//!     let spec = DownloadSpec::files(4, false, /* a random nonce */ 0x5eed);
//!     let mut download = Download::new(session.config(), result, spec)?;
//!     loop {
//!         match download.poll_output(now()) {
//!             DownloadOutput::Fetch(mut fetch) => {
//!                 // Send fetch.take_request(); report the head with fetch.handle_head,
//!                 // stream the body through fetch.handle_body into the file named by
//!                 // fetch.temp_file() (created with create_new), end with
//!                 // fetch.handle_body_end or fetch.handle_failure. Then give it back
//!                 // (several fetches may be out at once):
//!                 download.handle_fetch(fetch, now());
//!             }
//!             DownloadOutput::Session(command) => {
//!                 // Fresh URLs: run the command on the session (its own run loop) and
//!                 // hand the result back.
//!                 let op = session.start(command, now());
//!                 # let result = Err(dap_proto::Error::Internal(format!("{op}")));
//!                 download.handle_session_result(result, now());
//!             }
//!             DownloadOutput::Commit(commit) => {
//!                 // Check the length, fsync, rename commit.temp to commit.target,
//!                 // fsync the directory; on failure: download.abort().
//!                 let _ = commit;
//!             }
//!             DownloadOutput::Discard(temp) => { let _ = temp; /* remove the file */ }
//!             DownloadOutput::Done(result) => {
//!                 println!("{} objects", result?.len());
//!                 return Ok(());
//!             }
//!             DownloadOutput::Wait(deadline) => {
//!                 // Sleep until `deadline` or until a fetch or session result is back.
//!                 let _ = deadline;
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//! ```
//! The transports do exactly this; `dap-client` holds the file policy they share.
//!
//! ## A query, step by step
//! ```text
//!  start(Query) ─► [token?] ─no─► POST /ids/auth/login ─► token (shared by every op)
//!                     │yes
//!                     ▼
//!        POST /dap/query/{ns}/table/{t}/data ─► job (waiting | running | complete | failed)
//!                     │ not terminal: Wait(0.5 s, doubling to 5 s)
//!                     ▼
//!              GET /dap/job/{id} … ─► complete (expiring in < 30 s? post again)
//!                     ▼
//!        POST /dap/object/url (batches) ─► Done(QueryResult { objects + URLs })
//!        (with Query::urls_on_demand: no URLs here, Done(QueryResult { pending });
//!         a Download fetches them a batch at a time as it reaches the objects)
//!
//!  any call: 401 ─► drop token, log in once, replay (a second 401 ends the op)
//!            429 ─► wait Retry-After (capped)   5xx / failure ─► backoff with jitter
//!            at most RetryPolicy::max_attempts attempts; at most Config::call_timeout
//! ```
//!
//! ## Time
//! Every input takes `now: Instant`, which must not go backwards. Wall time is needed
//! only to judge a job's `expires_at`, a JWT's `exp` and an HTTP-date `Retry-After`; the
//! session takes it from the server's `Date` header, falling back to the wall time passed
//! to [`Session::new`]. Early or spurious calls are harmless. Token expiry is receipt
//! time plus `expires_in` (or the JWT `exp` when sooner), minus the refresh margin (at
//! most half the lifetime).
//!
//! ## Errors and panics
//! Operation failures arrive in [`Output::Done`] as an [`Error`] that says whose fault it
//! is: the API ([`DapError`]), the server breaking the protocol ([`ProtocolError`]), the
//! transport (with the cause it reported, [`TransportFailure`]), the clock
//! ([`Error::Timeout`]), the caller ([`Error::Argument`]) or this crate
//! ([`Error::Internal`]). [`Error::is_transient`] says whether trying later may help. `handle_*` return `Err` only for misuse ([`Misuse`]). No
//! input from the network makes this crate panic; fuzz targets check it.
//!
//! ## Secrets
//! [`ClientSecret`], [`AccessToken`] and [`PresignedUrl`] redact themselves in `Debug`
//! and `Display`; auth headers are marked sensitive; login and object-URL bodies are never
//! quoted in errors.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
mod backoff;
pub mod chain;
pub mod config;
pub mod download;
pub mod error;
pub mod gzip;
mod ids;
pub mod model;
pub mod records;
pub mod secret;
pub mod session;
mod speed;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transfer;
pub mod wire;

pub use config::{
    Config, ConfigBuilder, ConfigError, Credentials, LowSpeed, PollPolicy, RetryPolicy, SpeedMeter,
    TokenHeader,
};
pub use download::{Commit, Download, DownloadError, DownloadOutput, DownloadSpec, Fetch};
pub use error::{
    ArgumentError, DapError, DapErrorKind, Error, FailureKind, Misuse, ProtocolError,
    ProtocolErrorKind, TransportFailure,
};
pub use model::{
    CompleteJob, DataRange, Format, Job, JobId, JobState, Mode, ObjectId, ObjectUrl, Query,
    QueryRange, TableSchema,
};
pub use secret::{AccessToken, ClientSecret, PresignedUrl};
pub use session::{
    Command, OpId, Outcome, Output, QueryResult, RequestId, Session, TokenStatus, UrlSet,
};
pub use transfer::{HeadAction, Transfer, TransferError, TransferStep, TransferSummary};

/// The HTTP types of the seam (`Request`, `Response`, `StatusCode`, ...), re-exported so
/// a custom runtime needs no `http` dependency of its own.
pub use http;
/// The timestamp type of the API (`since`, `until`, `expires_at`), re-exported.
pub use jiff;

/// The configuration of the crate's own property tests: a fixed seed, so that a run is
/// repeatable (set `PROPTEST_RNG_SEED` to explore other inputs), and `cases` cases.
#[cfg(test)]
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let mut config = proptest::test_runner::Config::with_cases(cases);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0xDA9_5EED);
    }
    config
}
