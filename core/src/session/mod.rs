//! The [`Session`] state machine: one token shared by any number of operations, login
//! on demand, retries, job polling and URL retrieval, all driven by the caller. What each
//! operation does, phase by phase, is in `session/work.rs`.

mod types;
mod work;

pub use types::{Command, OpId, Outcome, Output, QueryResult, RequestId, TokenStatus, UrlSet};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use jiff::Timestamp;

use crate::api;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::{Error, Misuse, ProtocolError, TransportFailure};
use crate::secret::AccessToken;

use work::{Context, Next, Work};

enum Token {
    None,
    LoggingIn {
        request: RequestId,
        attempt: u32,
    },
    Backoff {
        until: Instant,
        attempt: u32,
    },
    Valid {
        token: AccessToken,
        until: Instant,
        generation: u64,
    },
}

/// What the operation is waiting for.
#[derive(Clone, Copy)]
enum Step {
    /// Send the current call as soon as a token exists.
    Ready,
    /// A request is out.
    InFlight,
    /// Sleeping (poll interval or backoff) until then.
    Sleep(Instant),
}

struct Operation {
    command_what: &'static str,
    work: Work,
    step: Step,
    /// Attempts of the current call, the current one included.
    attempt: u32,
    /// Whether the current call already re-logged in after a 401.
    reauthed: bool,
    /// The operation ends with [`Error::Timeout`] at this instant (moved on when a
    /// query starts polling, and again when it fetches URLs).
    deadline: Instant,
    /// What the last transport failure of the current call was.
    last_failure: Option<TransportFailure>,
}

struct InFlight {
    op: Option<OpId>,
    generation: u64,
}

/// The DAP client state machine. It never performs I/O and never reads a clock.
///
/// Contract: call [`Session::start`] to add operations; then repeatedly drain
/// [`Session::poll_output`] until it returns [`Output::Wait`], sending every request it
/// hands out and reporting each with [`Session::handle_response`] or
/// [`Session::handle_failure`]; call again when a response arrives or at the instant
/// `Wait` names ([`Session::handle_timeout`] is optional; `poll_output` checks timers).
/// `now` must never go backwards. Early or repeated calls are harmless.
pub struct Session {
    config: Config,
    token: Token,
    generation: u64,
    ops: BTreeMap<OpId, Operation>,
    requests: HashMap<RequestId, InFlight>,
    done: VecDeque<(OpId, Result<Outcome, Error>)>,
    next_op: u64,
    next_request: u64,
    jitter: Backoff,
    wall: (Instant, Timestamp),
    /// What the last login attempt failed with, when the transport failed it.
    login_failure: Option<TransportFailure>,
    logins: u64,
    /// When the job-status calls of the last minute were sent (the poll rate cap).
    status_calls: VecDeque<Instant>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("base_url", &self.config.base_url())
            .field("token", &self.token_status())
            .field("operations", &self.ops.len())
            .field("requests_in_flight", &self.requests.len())
            .field("logins", &self.logins)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session with no token yet. `now` and `wall` are the same moment on the monotonic
    /// and the wall clock; wall time is used only where the server's `Date` header is
    /// missing (job expiry, JWT `exp`, HTTP-date `Retry-After`).
    pub fn new(config: Config, now: Instant, wall: Timestamp) -> Self {
        let jitter = Backoff::new(config.retry().jitter_seed);
        Self {
            config,
            token: Token::None,
            generation: 0,
            ops: BTreeMap::new(),
            requests: HashMap::new(),
            done: VecDeque::new(),
            next_op: 0,
            next_request: 0,
            jitter,
            wall: (now, wall),
            login_failure: None,
            logins: 0,
            status_calls: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the token stands.
    pub fn token_status(&self) -> TokenStatus {
        match &self.token {
            Token::None => TokenStatus::None,
            Token::LoggingIn { .. } => TokenStatus::LoggingIn,
            Token::Backoff { .. } => TokenStatus::LoginBackoff,
            Token::Valid { until, .. } => TokenStatus::Valid(*until),
        }
    }

    /// How many login requests this session has sent.
    pub fn logins(&self) -> u64 {
        self.logins
    }

    /// Operations not yet reported done.
    pub fn pending_operations(&self) -> usize {
        self.ops.len() + self.done.len()
    }

    /// Requests handed out and not yet answered.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The operation a request in flight serves (`None` for a login, which serves every
    /// waiting operation, and for unknown ids). Transports use it to attribute a transport
    /// failure to the operations it ends.
    pub fn request_operation(&self, id: RequestId) -> Option<OpId> {
        self.requests.get(&id).and_then(|r| r.op)
    }

    /// Starts an operation. Arguments are validated when its first request is built; a
    /// bad one ends the operation with [`Error::Argument`] without sending anything.
    pub fn start(&mut self, command: Command, now: Instant) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        let command_what = command.what();
        let work = match Work::new(command, &self.config, now) {
            Ok(work) => work,
            Err(empty) => {
                self.done.push_back((id, Ok(Outcome::Urls(empty))));
                return id;
            }
        };
        tracing::debug!(%id, what = command_what, "operation started");
        self.ops.insert(
            id,
            Operation {
                command_what,
                work,
                step: Step::Ready,
                attempt: 0,
                reauthed: false,
                deadline: now + self.config.call_timeout(),
                last_failure: None,
            },
        );
        id
    }

    /// Abandons an operation: nothing more is sent for it and no `Done` is reported.
    /// A response that later arrives for one of its requests is accepted and dropped.
    pub fn cancel(&mut self, op: OpId) -> Result<(), Misuse> {
        if self.ops.remove(&op).is_some() {
            for inflight in self.requests.values_mut() {
                if inflight.op == Some(op) {
                    inflight.op = None;
                }
            }
            Ok(())
        } else if let Some(pos) = self.done.iter().position(|(id, _)| *id == op) {
            self.done.remove(pos);
            Ok(())
        } else {
            Err(Misuse::UnknownOperation(op.0))
        }
    }

    /// Reports the response to a request. Its body should be complete; transports stop
    /// reading after [`Config::max_body_bytes`] plus one byte. A runtime that reads raw
    /// bytes with [`crate::wire::ResponseParser`] hands an over-long body in as
    /// [`crate::wire::ResponseParser::into_oversized`] returns it (head plus the first
    /// bytes), and the operation ends with a typed "body too large" error.
    pub fn handle_response<B: AsRef<[u8]>>(
        &mut self,
        id: RequestId,
        response: Response<B>,
        now: Instant,
    ) -> Result<(), Misuse> {
        let inflight = self.answered(id, now)?;
        self.note_server_date(response.headers(), now);
        match inflight.op {
            None if self.is_login(id) => self.on_login_response(&response, now),
            None => {}
            Some(op) => self.on_api_response(op, inflight.generation, &response, now),
        }
        Ok(())
    }

    /// Reports that a request could not be completed (connection refused or reset,
    /// timeout, truncated body), and why. It is retried per the retry policy; a final
    /// [`Error::Transport`] quotes the last `failure`.
    pub fn handle_failure(
        &mut self,
        id: RequestId,
        failure: TransportFailure,
        now: Instant,
    ) -> Result<(), Misuse> {
        let inflight = self.answered(id, now)?;
        match inflight.op {
            None if self.is_login(id) => {
                self.login_failure = Some(failure);
                self.login_failed(None, now);
            }
            None => {}
            Some(op) => {
                if let Some(o) = self.ops.get_mut(&op) {
                    o.last_failure = Some(failure);
                }
                self.retry_or_fail(op, None, now);
            }
        }
        Ok(())
    }

    /// Takes the record of a request being answered, after letting timers fire (an
    /// answer after its operation's deadline finds the operation ended).
    fn answered(&mut self, id: RequestId, now: Instant) -> Result<InFlight, Misuse> {
        self.fire_timers(now);
        self.requests
            .remove(&id)
            .ok_or(Misuse::UnknownRequest(id.0))
    }

    /// The instant by which a request handed out must be answered: its operation's
    /// deadline. A transport should give up on the request then (and may report it as
    /// a failure, which is ignored). `None` for a login or an unknown id.
    pub fn request_deadline(&self, id: RequestId) -> Option<Instant> {
        let op = self.requests.get(&id)?.op?;
        self.ops.get(&op).map(|o| o.deadline)
    }

    /// Lets timers fire. Optional: [`Session::poll_output`] does the same.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_timers(now);
    }

    /// The next thing to do. Drain it until it returns [`Output::Wait`].
    pub fn poll_output(&mut self, now: Instant) -> Output {
        self.fire_timers(now);
        if let Some((op, result)) = self.done.pop_front() {
            return Output::Done { op, result };
        }
        let ready: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, o)| matches!(o.step, Step::Ready))
            .map(|(id, _)| *id)
            .collect();
        if !ready.is_empty() {
            if let Token::Valid { until, .. } = self.token {
                if now >= until {
                    tracing::debug!("access token reached its refresh margin");
                    self.token = Token::None;
                }
            }
            match self.token {
                Token::None => return self.send_login(1),
                Token::Backoff { until, attempt } if now >= until => {
                    return self.send_login(attempt + 1);
                }
                Token::Valid { .. } => {
                    for op in ready {
                        if self.status_call_deferred(op, now) {
                            continue;
                        }
                        if let Some(output) = self.send_call(op) {
                            return output;
                        }
                    }
                    if let Some((op, result)) = self.done.pop_front() {
                        return Output::Done { op, result };
                    }
                }
                Token::LoggingIn { .. } | Token::Backoff { .. } => {}
            }
        }
        Output::Wait(self.next_deadline())
    }

    fn is_login(&self, id: RequestId) -> bool {
        matches!(self.token, Token::LoggingIn { request, .. } if request == id)
    }

    fn wall_at(&self, now: Instant) -> Timestamp {
        let (anchor, wall) = self.wall;
        let elapsed = now.saturating_duration_since(anchor);
        jiff::SignedDuration::try_from(elapsed)
            .ok()
            .and_then(|d| wall.checked_add(d).ok())
            .unwrap_or(wall)
    }

    fn note_server_date(&mut self, headers: &http::HeaderMap, now: Instant) {
        if let Some(date) = headers
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(api::parse_http_date)
        {
            self.wall = (now, date);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        for (id, op) in &mut self.ops {
            if let Step::Sleep(until) = op.step {
                if now >= until {
                    op.step = Step::Ready;
                }
            }
            if now >= op.deadline {
                timed_out.push(*id);
            }
        }
        for id in timed_out {
            let Some(op) = self.ops.remove(&id) else {
                continue;
            };
            let error = match op.work.polled_job().cloned() {
                Some(job) => Error::JobTimedOut {
                    job,
                    waited: self.config.poll().max_duration,
                },
                None => Error::Timeout {
                    what: op.command_what,
                    after: self.config.call_timeout(),
                },
            };
            for inflight in self.requests.values_mut() {
                if inflight.op == Some(id) {
                    inflight.op = None;
                }
            }
            tracing::debug!(op = %id, error = %error, "operation timed out");
            self.done.push_back((id, Err(error)));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadline: Option<Instant> = None;
        let mut consider = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        // The login backoff matters only while an operation waits for a token; once
        // none does, its instant may pass unnoticed and must not be reported.
        let waiting = self.ops.values().any(|o| matches!(o.step, Step::Ready));
        if let Token::Backoff { until, .. } = self.token {
            if waiting {
                consider(until);
            }
        }
        for op in self.ops.values() {
            if let Step::Sleep(until) = op.step {
                consider(until);
            }
            consider(op.deadline);
        }
        deadline
    }

    fn new_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Keeps job polls under [`PollPolicy::max_status_calls_per_minute`]: a poll that
    /// would exceed it sleeps until the oldest call of the window is a minute old.
    /// Returns whether `op` was deferred; records the call otherwise.
    fn status_call_deferred(&mut self, op: OpId, now: Instant) -> bool {
        const WINDOW: Duration = Duration::from_secs(60);
        let Some(o) = self.ops.get_mut(&op) else {
            return false;
        };
        if !o.work.is_status_call() {
            return false;
        }
        while self
            .status_calls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.status_calls.pop_front();
        }
        let cap = self.config.poll().max_status_calls_per_minute as usize;
        if self.status_calls.len() >= cap {
            if let Some(oldest) = self.status_calls.front() {
                o.step = Step::Sleep(*oldest + WINDOW);
                return true;
            }
        }
        self.status_calls.push_back(now);
        false
    }

    fn send_login(&mut self, attempt: u32) -> Output {
        match api::login::request(&self.config) {
            Ok(request) => {
                let id = self.new_request_id();
                self.requests.insert(
                    id,
                    InFlight {
                        op: None,
                        generation: self.generation,
                    },
                );
                self.token = Token::LoggingIn {
                    request: id,
                    attempt,
                };
                self.logins += 1;
                tracing::debug!(%id, attempt, "logging in");
                Output::Send { id, request }
            }
            Err(error) => {
                self.fail_waiting(&error);
                self.done
                    .pop_front()
                    .map_or(Output::Wait(self.next_deadline()), |(op, result)| {
                        Output::Done { op, result }
                    })
            }
        }
    }

    /// Builds and hands out the request of a ready operation; `None` when building
    /// failed and the operation ended instead.
    fn send_call(&mut self, id: OpId) -> Option<Output> {
        let Token::Valid {
            token, generation, ..
        } = &self.token
        else {
            return None;
        };
        let generation = *generation;
        let op = self.ops.get(&id)?;
        let built = op.work.request(&self.config, token);
        match built {
            Ok(request) => {
                let rid = self.new_request_id();
                self.requests.insert(
                    rid,
                    InFlight {
                        op: Some(id),
                        generation,
                    },
                );
                let op = self.ops.get_mut(&id)?;
                op.step = Step::InFlight;
                op.attempt += 1;
                tracing::debug!(op = %id, request = %rid, what = op.work.what(), attempt = op.attempt, "sending");
                Some(Output::Send { id: rid, request })
            }
            Err(error) => {
                self.finish(id, Err(error));
                None
            }
        }
    }

    fn finish(&mut self, id: OpId, result: Result<Outcome, Error>) {
        if let Some(op) = self.ops.remove(&id) {
            match &result {
                Ok(_) => tracing::debug!(op = %id, what = op.command_what, "operation done"),
                Err(e) => {
                    tracing::debug!(op = %id, what = op.command_what, error = %e, "operation failed")
                }
            }
            self.done.push_back((id, result));
        }
    }

    /// Ends every operation that waits for a token with `error`.
    fn fail_waiting(&mut self, error: &Error) {
        let waiting: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, o)| matches!(o.step, Step::Ready))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.finish(id, Err(error.clone()));
        }
    }

    fn on_login_response<B: AsRef<[u8]>>(&mut self, response: &Response<B>, now: Instant) {
        match api::login::parse(&self.config, response) {
            Ok(login) => {
                let lifetime = login.lifetime(Some(self.wall_at(now)));
                if lifetime.is_zero() {
                    // Unusable on arrival (`expires_in` <= 0 or a JWT `exp` in the past):
                    // logging in again would only loop.
                    let error = Error::Protocol(ProtocolError {
                        status: response.status(),
                        kind: crate::ProtocolErrorKind::InvalidShape {
                            detail: "the access token has already expired (expires_in or \
                                     JWT exp; check the clock)"
                                .to_owned(),
                        },
                        body_excerpt: String::new(),
                        what: "login",
                    });
                    self.login_failed(Some(error), now);
                    return;
                }
                let margin = self.config.refresh_margin().min(lifetime / 2);
                self.generation += 1;
                tracing::debug!(lifetime_s = lifetime.as_secs(), "logged in");
                self.token = Token::Valid {
                    token: login.access_token,
                    until: now + (lifetime - margin),
                    generation: self.generation,
                };
            }
            Err(error) => self.login_failed(Some(error), now),
        }
    }

    fn login_failed(&mut self, error: Option<Error>, now: Instant) {
        let Token::LoggingIn { attempt, .. } = self.token else {
            return;
        };
        let delay = match &error {
            None => Some(self.backoff(attempt)),
            Some(e) => self.retry_delay(e, attempt, now),
        };
        match delay {
            Some(delay) if attempt < self.config.retry().max_attempts => {
                tracing::debug!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "login failed; retrying"
                );
                self.token = Token::Backoff {
                    until: now + delay,
                    attempt,
                };
            }
            _ => {
                self.token = Token::None;
                let error = error.unwrap_or_else(|| Error::Transport {
                    what: "login",
                    attempts: attempt,
                    last: self.login_failure.take().unwrap_or_else(no_detail),
                });
                tracing::debug!(error = %error, "login failed");
                self.fail_waiting(&error);
            }
        }
    }

    /// How long to wait before retrying after `error`, or `None` when it is final.
    fn retry_delay(&mut self, error: &Error, attempt: u32, now: Instant) -> Option<Duration> {
        let status = match error {
            Error::Api(e) => e.status,
            Error::Protocol(ProtocolError { status, .. }) => *status,
            _ => return None,
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Some(
                self.server_delay(error)
                    .unwrap_or(self.config.retry().default_retry_after),
            );
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            let backoff = self.backoff(attempt);
            return Some(self.server_delay(error).map_or(backoff, |d| d.max(backoff)));
        }
        let _ = now;
        None
    }

    /// A `Retry-After` the server sent, capped by the policy.
    fn server_delay(&self, error: &Error) -> Option<Duration> {
        let Error::Api(e) = error else { return None };
        e.retry_after
            .map(|d| d.min(self.config.retry().max_retry_after))
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        self.jitter.delay(self.config.retry(), attempt)
    }

    fn on_api_response<B: AsRef<[u8]>>(
        &mut self,
        id: OpId,
        generation: u64,
        response: &Response<B>,
        now: Instant,
    ) {
        let Some(op) = self.ops.get(&id) else { return };
        let result = op.work.parse(&self.config, response, now);
        match result {
            Ok(outcome) => self.advance(id, outcome, now),
            Err(Error::Api(e)) if e.status == StatusCode::UNAUTHORIZED => {
                self.unauthorized(id, generation, Error::Api(e));
            }
            Err(error) => self.retry_or_fail(id, Some(error), now),
        }
    }

    /// A 401: drop the token (once per token), log in again and replay the call; a
    /// second 401 for the same call ends the operation.
    fn unauthorized(&mut self, id: OpId, generation: u64, error: Error) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if op.reauthed {
            self.finish(id, Err(error));
            return;
        }
        op.reauthed = true;
        op.attempt = op.attempt.saturating_sub(1);
        op.step = Step::Ready;
        if matches!(self.token, Token::Valid { generation: g, .. } if g == generation) {
            tracing::debug!("token refused with 401; logging in again");
            self.token = Token::None;
        }
    }

    fn retry_or_fail(&mut self, id: OpId, error: Option<Error>, now: Instant) {
        let Some(op) = self.ops.get(&id) else { return };
        let attempt = op.attempt;
        let what = op.work.what();
        let delay = match &error {
            None => Some(self.backoff(attempt)),
            Some(e) => self.retry_delay(e, attempt, now),
        };
        match delay {
            Some(delay) if attempt < self.config.retry().max_attempts => {
                tracing::debug!(op = %id, what, attempt, delay_ms = delay.as_millis() as u64, "retrying");
                if let Some(op) = self.ops.get_mut(&id) {
                    op.step = Step::Sleep(now + delay);
                }
            }
            _ => {
                let error = match error {
                    Some(e) => with_attempts(e, attempt),
                    None => Error::Transport {
                        what,
                        attempts: attempt,
                        last: self
                            .ops
                            .get_mut(&id)
                            .and_then(|o| o.last_failure.take())
                            .unwrap_or_else(no_detail),
                    },
                };
                self.finish(id, Err(error));
            }
        }
    }

    /// Moves an operation on after a successful call.
    fn advance(&mut self, id: OpId, outcome: Outcome, now: Instant) {
        let wall = self.wall_at(now);
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.attempt = 0;
        op.reauthed = false;
        op.last_failure = None;
        let cx = Context {
            config: &self.config,
            now,
            wall,
        };
        match op.work.advance(outcome, &cx) {
            Next::Done(result) => self.finish(id, result),
            Next::Send => op.step = Step::Ready,
            Next::Sleep(at) => op.step = Step::Sleep(at),
            Next::SendBy(deadline) => {
                op.deadline = deadline;
                op.step = Step::Ready;
            }
            Next::SleepBy(at, deadline) => {
                op.deadline = deadline;
                op.step = Step::Sleep(at);
            }
        }
    }
}

fn no_detail() -> TransportFailure {
    TransportFailure::new(crate::error::FailureKind::Other, "")
}

/// A final API error after retries says how many attempts were made.
fn with_attempts(error: Error, attempts: u32) -> Error {
    match error {
        Error::Api(mut e) if attempts > 1 => {
            e.message.push_str(&format!(" (after {attempts} attempts)"));
            Error::Api(e)
        }
        other => other,
    }
}
