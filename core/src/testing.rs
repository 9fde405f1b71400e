//! Test support (feature `testing`): a virtual clock and a scripted fake DAP peer.
//!
//! The core takes time as an input, so a test can drive it on a [`VirtualClock`] that
//! only moves when told to, and answer its requests from a script instead of a network.
//! [`Harness`] does both for a [`Session`]: every request goes to a peer closure that
//! returns a [`Reply`], and every `Wait` deadline is jumped to at once. The reply
//! builders ([`json`], [`login_ok`], [`dap_error`], [`jwt`], ...) are the answers a DAP
//! server gives; the fuzz targets build their hostile answers from the same pieces.
//!
//! Everything here is for tests: it panics on what a test should not do (an answer to a
//! request never sent, a clock moved backwards) instead of returning errors.
//!
//! ```
//! use dap_proto::testing::{Harness, config, login_ok, json};
//! use dap_proto::{Command, Outcome};
//!
//! let mut h = Harness::new(config().build()?);
//! let op = h.start(Command::ListTables { namespace: "canvas".into() });
//! h.run(10, |seen, _| {
//!     if seen.is_login() {
//!         login_ok("tok", 3600)
//!     } else {
//!         json(200, r#"{"tables":["accounts"]}"#)
//!     }
//! });
//! assert!(matches!(h.result(op), Ok(Outcome::Tables(t)) if t.len() == 1));
//! assert_eq!(h.logins(), 1);
//! # Ok::<(), dap_proto::ConfigError>(())
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Request, Response};
use jiff::Timestamp;

use crate::{
    Command, Config, ConfigBuilder, Error, FailureKind, Format, OpId, Outcome, Output, Query,
    RequestId, RetryPolicy, Session, TransportFailure,
};

/// The client secret of [`config`]: tests look for it in everything that prints.
pub const SECRET: &str = "TOPSECRET";

/// The wall time at the virtual clock's origin: 2026-11-29T00:00:00Z.
pub const WALL_ORIGIN_SECONDS: i64 = 1_795_910_400;

/// A fixed origin for virtual clocks: the first call reads the system clock once, and
/// every later call returns the same instant, so tests only ever add durations to it.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    // The only clock read of the crate: a test needs some `Instant` to count from.
    #[allow(clippy::disallowed_methods)]
    *ORIGIN.get_or_init(Instant::now)
}

/// The wall time at [`origin`] ([`WALL_ORIGIN_SECONDS`]).
pub fn wall_origin() -> Timestamp {
    Timestamp::from_second(WALL_ORIGIN_SECONDS).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A clock that moves only when a test moves it, starting at [`origin`] and
/// [`wall_origin`]. Its monotonic and wall readings advance together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualClock {
    /// The current instant. Tests may set it directly; it must never go backwards.
    pub now: Instant,
    start: Instant,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualClock {
    /// A clock at [`origin`].
    pub fn new() -> Self {
        Self {
            now: origin(),
            start: origin(),
        }
    }

    /// The instant the clock started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The time since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Moves the clock to `t`, or leaves it where it is when `t` is not later.
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// The wall time now: [`wall_origin`] plus the elapsed time, within the range
    /// [`Timestamp`] holds.
    pub fn wall(&self) -> Timestamp {
        let elapsed = i64::try_from(self.elapsed().as_secs()).unwrap_or(i64::MAX);
        let second = WALL_ORIGIN_SECONDS
            .saturating_add(elapsed)
            .min(Timestamp::MAX.as_second());
        Timestamp::from_second(second).unwrap_or(Timestamp::MAX)
    }
}

/// What the fake peer does with one request.
#[derive(Debug)]
pub enum Reply {
    /// Answer with this response.
    Respond(Response<Vec<u8>>),
    /// Fail the request with [`failure`].
    Fail,
}

/// A response with `status`, `content-type: application/json` and `body`.
///
/// # Panics
/// When `status` is not a valid status code.
pub fn json_response(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .expect("a valid status")
}

/// Answers with [`json_response`].
pub fn json(status: u16, body: &str) -> Reply {
    Reply::Respond(json_response(status, body))
}

/// `reply` with the header `name: value` set, replacing any earlier value (a failure
/// stays a failure).
///
/// # Panics
/// When `name` or `value` is not a valid header.
pub fn with_header(reply: Reply, name: &str, value: &str) -> Reply {
    match reply {
        Reply::Respond(mut r) => {
            r.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
            Reply::Respond(r)
        }
        Reply::Fail => Reply::Fail,
    }
}

/// A login body: `token`, then `extra` fields verbatim (such as `,"expires_in":60`),
/// then the scope and `token_type`.
pub fn login_body(token: &str, extra: &str, token_type: &str) -> String {
    format!(r#"{{"access_token":"{token}"{extra},"scope":"dap","token_type":"{token_type}"}}"#)
}

/// A successful login issuing `token` for `expires_in` seconds.
pub fn login_ok(token: &str, expires_in: u64) -> Reply {
    json(
        200,
        &login_body(token, &format!(r#","expires_in":{expires_in}"#), "bearer"),
    )
}

/// A DAP error body of type `kind`.
pub fn dap_error_body(kind: &str, message: &str) -> String {
    format!(r#"{{"error":{{"type":"{kind}","uuid":"u-1","message":"{message}"}}}}"#)
}

/// A DAP error answer: `status` with an error body of type `kind`.
pub fn dap_error(status: u16, kind: &str, message: &str) -> Reply {
    json(status, &dap_error_body(kind, message))
}

/// An object-URL answer body mapping each object id to its URL.
pub fn urls_body<I, S>(entries: I) -> String
where
    I: IntoIterator<Item = (S, String)>,
    S: AsRef<str>,
{
    let entries: Vec<String> = entries
        .into_iter()
        .map(|(id, url)| format!(r#""{}":{{"url":"{url}"}}"#, id.as_ref()))
        .collect();
    format!(r#"{{"urls":{{{}}}}}"#, entries.join(","))
}

/// The ids an object-URL request asks for, in order (read from its JSON body).
pub fn requested_ids(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\"id\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect()
}

fn base64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A JWT whose payload is `claims` (unsigned: clients never check signatures; `sig`
/// is its third part).
pub fn jwt(claims: &str, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(claims.as_bytes())
    )
}

/// `t` as an HTTP date (`Sun, 29 Nov 2026 00:00:00 GMT`); empty when it has no such form.
pub fn http_date(t: Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .unwrap_or_default()
}

/// The transport failure a [`Reply::Fail`] reports.
pub fn failure() -> TransportFailure {
    TransportFailure::new(FailureKind::Broken, "test")
}

/// A snapshot query of `canvas.accounts` in `format`.
pub fn snapshot(format: Format) -> Command {
    Command::Query {
        namespace: "canvas".into(),
        table: "accounts".into(),
        query: Query::snapshot(format),
    }
}

/// A peer that answers every login with a fresh token (`tok1`, `tok2`, ...) living
/// `lifetime` seconds, and every other request with `api`.
pub fn logged_in(
    lifetime: u64,
    mut api: impl FnMut(&Seen, &Request<Vec<u8>>) -> Reply,
) -> impl FnMut(&Seen, &Request<Vec<u8>>) -> Reply {
    let mut logins = 0;
    move |seen, request| {
        if seen.is_login() {
            logins += 1;
            login_ok(&format!("tok{logins}"), lifetime)
        } else {
            api(seen, request)
        }
    }
}

/// A configuration builder with [`SECRET`], `https://dap.example` and quick retries
/// (3 attempts, 100 ms doubling to 2 s).
pub fn config() -> ConfigBuilder {
    Config::builder("us-east-1#client", SECRET)
        .base_url("https://dap.example")
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
}

/// One request the peer saw, with the instant it was sent.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it was sent.
    pub at: Instant,
    /// The method.
    pub method: String,
    /// The URI's path.
    pub path: String,
    /// The `authorization` header, if any.
    pub auth: Option<String>,
    /// The body, lossily as text.
    pub body: String,
}

impl Seen {
    /// What a peer sees of `request` sent at `at`.
    pub fn of(request: &Request<Vec<u8>>, at: Instant) -> Self {
        Self {
            at,
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            auth: request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            body: String::from_utf8_lossy(request.body()).into_owned(),
        }
    }

    /// Whether this is a login request.
    pub fn is_login(&self) -> bool {
        self.path.ends_with("/ids/auth/login")
    }
}

/// A [`Session`] on a [`VirtualClock`] whose requests a peer answers at once.
#[derive(Debug)]
pub struct Harness {
    /// The session under test.
    pub session: Session,
    /// The clock; [`Harness::run`] jumps it to each deadline.
    pub clock: VirtualClock,
    /// Every request sent, in order.
    pub seen: Vec<Seen>,
    /// Every finished operation, in order.
    pub done: Vec<(OpId, Result<Outcome, Error>)>,
    /// Every `Wait` deadline handed out, with the instant it was handed out.
    pub waits: Vec<(Instant, Option<Instant>)>,
}

impl Harness {
    /// A fresh session with `config` at the clock's origin and [`wall_origin`].
    pub fn new(config: Config) -> Self {
        let clock = VirtualClock::new();
        Self {
            session: Session::new(config, clock.now, wall_origin()),
            clock,
            seen: Vec::new(),
            done: Vec::new(),
            waits: Vec::new(),
        }
    }

    /// The clock's current instant.
    pub fn now(&self) -> Instant {
        self.clock.now
    }

    /// Starts `command` now.
    pub fn start(&mut self, command: Command) -> OpId {
        self.session.start(command, self.clock.now)
    }

    /// The virtual time since the harness started.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Drives until no operation remains, answering every request with `peer` and
    /// jumping the clock to each deadline.
    ///
    /// # Panics
    /// After `max_steps` outputs, on a deadline in the past, or when the session
    /// refuses an answer.
    pub fn run(
        &mut self,
        max_steps: usize,
        mut peer: impl FnMut(&Seen, &Request<Vec<u8>>) -> Reply,
    ) {
        for _ in 0..max_steps {
            match self.session.poll_output(self.clock.now) {
                Output::Send { id, request } => {
                    let seen = Seen::of(&request, self.clock.now);
                    let reply = peer(&seen, &request);
                    self.seen.push(seen);
                    self.answer(id, reply);
                }
                Output::Done { op, result } => self.done.push((op, result)),
                Output::Wait(deadline) => {
                    self.waits.push((self.clock.now, deadline));
                    let Some(t) = deadline else { return };
                    assert!(t > self.clock.now, "a Wait deadline lies in the past");
                    self.clock.now = t;
                }
            }
        }
        panic!("not finished after {max_steps} steps");
    }

    /// Hands `reply` to the session as the answer to `id`, now.
    ///
    /// # Panics
    /// When the session refuses it.
    pub fn answer(&mut self, id: RequestId, reply: Reply) {
        let now = self.clock.now;
        match reply {
            Reply::Respond(r) => self.session.handle_response(id, r, now),
            Reply::Fail => self.session.handle_failure(id, failure(), now),
        }
        .expect("the session knows the request");
    }

    /// When each request the peer saw for which `which` holds was sent.
    pub fn sent_at(&self, which: impl Fn(&Seen) -> bool) -> Vec<Instant> {
        self.seen
            .iter()
            .filter(|s| which(s))
            .map(|s| s.at)
            .collect()
    }

    /// How many requests the peer saw whose path starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.seen
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }

    /// How many logins the peer saw.
    pub fn logins(&self) -> usize {
        self.seen.iter().filter(|s| s.is_login()).count()
    }

    /// The result of `op`.
    ///
    /// # Panics
    /// When `op` has not finished.
    pub fn result(&self, op: OpId) -> &Result<Outcome, Error> {
        &self
            .done
            .iter()
            .find(|(id, _)| *id == op)
            .expect("operation finished")
            .1
    }
}
