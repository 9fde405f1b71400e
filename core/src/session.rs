//! The [`Session`] state machine: one token shared by any number of operations, login
//! on demand, retries, job polling and URL retrieval, all driven by the caller.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use jiff::Timestamp;

use crate::api;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::{Error, Misuse, ProtocolError, TransportFailure};
use crate::model::{
    DataRange, Format, Job, JobId, JobState, ObjectId, ObjectUrl, Query, TableSchema,
};
use crate::secret::AccessToken;

/// Identifies an operation started with [`Session::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(u64);

/// Identifies a request handed out by [`Session::poll_output`]; answer it with
/// [`Session::handle_response`] or [`Session::handle_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

macro_rules! raw_id {
    ($name:ident) => {
        impl $name {
            /// The raw number, for use as a map key or in logs.
            pub fn into_raw(self) -> u64 {
                self.0
            }
            /// Rebuilds an id from [`Self::into_raw`]; an id the session never issued is
            /// refused by it as misuse.
            pub fn from_raw(raw: u64) -> Self {
                Self(raw)
            }
        }
    };
}
raw_id!(OpId);
raw_id!(RequestId);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

/// What an operation should do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// List the tables of a namespace.
    ListTables {
        /// `canvas`, `canvas_logs`, `catalog`, ...
        namespace: String,
    },
    /// Fetch a table's schema.
    Schema {
        /// The namespace.
        namespace: String,
        /// The table.
        table: String,
    },
    /// Run a snapshot or incremental query to completion: start it, poll the job until it
    /// ends, then fetch the URLs of its objects.
    Query {
        /// The namespace.
        namespace: String,
        /// The table.
        table: String,
        /// What to ask for.
        query: Query,
    },
    /// Fetch a job's status once.
    GetJob {
        /// The job.
        job: JobId,
    },
    /// Fetch (or refresh) pre-signed URLs for objects, in batches.
    ObjectUrls {
        /// The objects.
        objects: Vec<ObjectId>,
    },
}

impl Command {
    /// A command that fetches fresh URLs for every object of a query result.
    pub fn refresh_urls(result: &QueryResult) -> Self {
        Self::ObjectUrls {
            objects: result.objects.iter().map(|o| o.id.clone()).collect(),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::ListTables { .. } => "list tables",
            Self::Schema { .. } => "table schema",
            Self::Query { .. } => "query",
            Self::GetJob { .. } => "job status",
            Self::ObjectUrls { .. } => "object URLs",
        }
    }
}

/// Pre-signed URLs and the instant they were received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSet {
    /// One URL per requested object, in request order.
    pub urls: Vec<ObjectUrl>,
    /// When the (last batch of) URLs arrived; they last about 15 minutes from there.
    pub issued_at: Instant,
}

/// The result of a query run to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// The namespace queried.
    pub namespace: String,
    /// The table queried.
    pub table: String,
    /// The job.
    pub job: JobId,
    /// The format the objects are in.
    pub format: Format,
    /// When the job and its objects are deleted.
    pub expires_at: Option<Timestamp>,
    /// The schema version of the data.
    pub schema_version: u64,
    /// What the data covers: `at` for a snapshot, `since`/`until` for an incremental.
    pub range: DataRange,
    /// The objects with their pre-signed URLs.
    pub objects: Vec<ObjectUrl>,
    /// When the first batch of URLs was received (the oldest URL's issue): a
    /// [`crate::Download`] refreshes them before they expire.
    pub urls_issued_at: Instant,
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// From [`Command::ListTables`].
    Tables(Vec<String>),
    /// From [`Command::Schema`].
    Schema(TableSchema),
    /// From [`Command::GetJob`].
    Job(Job),
    /// From [`Command::ObjectUrls`].
    Urls(UrlSet),
    /// From [`Command::Query`].
    Query(QueryResult),
}

/// What [`Session::poll_output`] asks of the caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Send this request and report its fate with the given id.
    Send {
        /// Correlates the answer.
        id: RequestId,
        /// The request. Its auth header, if any, is marked sensitive.
        request: Request<Vec<u8>>,
    },
    /// An operation ended.
    Done {
        /// The operation.
        op: OpId,
        /// Its result.
        result: Result<Outcome, Error>,
    },
    /// Nothing more to do now: call again at this instant (or when a response arrives).
    /// `None` means no operation is waiting on time.
    Wait(Option<Instant>),
}

/// The session's view of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenStatus {
    /// No token.
    None,
    /// A login request is in flight.
    LoggingIn,
    /// Waiting to retry a failed login.
    LoginBackoff,
    /// A usable token, until the instant given (expiry minus the refresh margin).
    Valid(Instant),
}

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

/// One API call an operation needs, replayable.
#[derive(Clone)]
enum Call {
    Tables {
        namespace: String,
    },
    Schema {
        namespace: String,
        table: String,
    },
    StartQuery {
        namespace: String,
        table: String,
        query: Query,
    },
    Job {
        job: JobId,
    },
    Urls {
        batch: Vec<ObjectId>,
    },
}

impl Call {
    fn what(&self) -> &'static str {
        match self {
            Self::Tables { .. } => "list tables",
            Self::Schema { .. } => "table schema",
            Self::StartQuery { .. } => "start query",
            Self::Job { .. } => "job status",
            Self::Urls { .. } => "object URLs",
        }
    }
}

/// What the operation is waiting for.
#[derive(Clone, Copy)]
enum Step {
    /// Send `call` as soon as a token exists.
    Ready,
    /// A request is out.
    InFlight,
    /// Sleeping (poll interval or backoff) until then.
    Sleep(Instant),
}

/// Query progress, for [`Command::Query`].
struct QueryProgress {
    namespace: String,
    table: String,
    query: Query,
    started: Instant,
    polls: u32,
    reposts: u32,
    job: Option<Job>,
}

/// URL progress, shared by [`Command::ObjectUrls`] and the end of a query.
struct UrlProgress {
    pending: Vec<ObjectId>,
    done: Vec<ObjectUrl>,
    /// When the first batch arrived.
    first_issued: Option<Instant>,
}

struct Operation {
    command_what: &'static str,
    call: Call,
    step: Step,
    /// Attempts of the current call, the current one included.
    attempt: u32,
    /// Whether the current call already re-logged in after a 401.
    reauthed: bool,
    query: Option<QueryProgress>,
    urls: Option<UrlProgress>,
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

/// How many times a query whose complete job is about to expire is posted again.
const MAX_REPOSTS: u32 = 3;

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
        let (call, query, urls) = match command {
            Command::ListTables { namespace } => (Call::Tables { namespace }, None, None),
            Command::Schema { namespace, table } => (Call::Schema { namespace, table }, None, None),
            Command::GetJob { job } => (Call::Job { job }, None, None),
            Command::Query {
                namespace,
                table,
                query,
            } => (
                Call::StartQuery {
                    namespace: namespace.clone(),
                    table: table.clone(),
                    query,
                },
                Some(QueryProgress {
                    namespace,
                    table,
                    query,
                    started: now,
                    polls: 0,
                    reposts: 0,
                    job: None,
                }),
                None,
            ),
            Command::ObjectUrls { objects } => {
                if objects.is_empty() {
                    self.done.push_back((
                        id,
                        Ok(Outcome::Urls(UrlSet {
                            urls: Vec::new(),
                            issued_at: now,
                        })),
                    ));
                    return id;
                }
                let mut progress = UrlProgress {
                    pending: objects,
                    done: Vec::new(),
                    first_issued: None,
                };
                let batch = next_batch(self.config.url_batch_size(), &mut progress);
                (Call::Urls { batch }, None, Some(progress))
            }
        };
        tracing::debug!(%id, what = command_what, "operation started");
        self.ops.insert(
            id,
            Operation {
                command_what,
                call,
                step: Step::Ready,
                attempt: 0,
                reauthed: false,
                query,
                urls,
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
        self.fire_timers(now);
        let inflight = self
            .requests
            .remove(&id)
            .ok_or(Misuse::UnknownRequest(id.0))?;
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
        self.fire_timers(now);
        let inflight = self
            .requests
            .remove(&id)
            .ok_or(Misuse::UnknownRequest(id.0))?;
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
            let polling = op.query.as_ref().and_then(|q| {
                let job = q
                    .job
                    .as_ref()
                    .filter(|_| matches!(op.call, Call::Job { .. }))?;
                Some(job.id.clone())
            });
            let error = match polling {
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
        if !matches!(o.call, Call::Job { .. }) {
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
        let built = match &op.call {
            Call::Tables { namespace } => api::tables::request(&self.config, token, namespace),
            Call::Schema { namespace, table } => {
                api::schema::request(&self.config, token, namespace, table)
            }
            Call::StartQuery {
                namespace,
                table,
                query,
            } => api::query::request(&self.config, token, namespace, table, query),
            Call::Job { job } => api::job::request(&self.config, token, job),
            Call::Urls { batch } => api::objects::request(&self.config, token, batch),
        };
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
                tracing::debug!(op = %id, request = %rid, what = op.call.what(), attempt = op.attempt, "sending");
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
        let result = match &op.call {
            Call::Tables { .. } => api::tables::parse(&self.config, response).map(Outcome::Tables),
            Call::Schema { .. } => api::schema::parse(&self.config, response).map(Outcome::Schema),
            Call::StartQuery { .. } => api::query::parse(&self.config, response).map(Outcome::Job),
            Call::Job { .. } => api::job::parse(&self.config, response).map(Outcome::Job),
            Call::Urls { batch } => {
                api::objects::parse(&self.config, batch, response).map(|urls| {
                    Outcome::Urls(UrlSet {
                        urls,
                        issued_at: now,
                    })
                })
            }
        };
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
        let what = op.call.what();
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
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.attempt = 0;
        op.reauthed = false;
        op.last_failure = None;
        let in_query = op.query.is_some();
        match outcome {
            Outcome::Job(job) if in_query => self.advance_query(id, job, now),
            Outcome::Urls(set) => {
                let Some(op) = self.ops.get_mut(&id) else {
                    return;
                };
                let Some(mut progress) = op.urls.take() else {
                    self.finish(id, Ok(Outcome::Urls(set)));
                    return;
                };
                progress.done.extend(set.urls);
                let first_issued = *progress.first_issued.get_or_insert(now);
                if progress.pending.is_empty() {
                    let urls = progress.done;
                    let result = match op.query.take() {
                        Some(q) => match q.job {
                            Some(Job {
                                id: job,
                                expires_at,
                                state: JobState::Complete(c),
                            }) => Ok(Outcome::Query(QueryResult {
                                namespace: q.namespace,
                                table: q.table,
                                job,
                                format: q.query.format(),
                                expires_at,
                                schema_version: c.schema_version,
                                range: c.range,
                                objects: urls,
                                urls_issued_at: first_issued,
                            })),
                            _ => unreachable_state(),
                        },
                        None => Ok(Outcome::Urls(UrlSet {
                            urls,
                            issued_at: first_issued,
                        })),
                    };
                    self.finish(id, result);
                } else {
                    let batch = next_batch(self.config.url_batch_size(), &mut progress);
                    if let Some(op) = self.ops.get_mut(&id) {
                        op.urls = Some(progress);
                        op.call = Call::Urls { batch };
                        op.step = Step::Ready;
                    }
                }
            }
            other => self.finish(id, Ok(other)),
        }
    }

    fn advance_query(&mut self, id: OpId, job: Job, now: Instant) {
        let expiry_margin = self.config.poll().expiry_margin;
        let wall = self.wall_at(now);
        let poll = self.config.poll().clone();
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Some(q) = op.query.as_mut() else { return };
        match &job.state {
            JobState::Failed(error) => {
                let error = Error::JobFailed {
                    job: job.id.clone(),
                    error: Box::new(error.clone()),
                };
                self.finish(id, Err(error));
            }
            JobState::Complete(complete) => {
                let expiring = job.expires_at.is_some_and(|at| {
                    at.duration_since(wall)
                        < jiff::SignedDuration::try_from(expiry_margin).unwrap_or_default()
                });
                if expiring && q.reposts < MAX_REPOSTS {
                    tracing::debug!(job = %job.id, "complete job expires soon; posting the query again");
                    q.reposts += 1;
                    q.job = None;
                    op.call = Call::StartQuery {
                        namespace: q.namespace.clone(),
                        table: q.table.clone(),
                        query: q.query,
                    };
                    op.step = Step::Ready;
                    return;
                }
                if complete.objects.is_empty() {
                    let result = QueryResult {
                        namespace: q.namespace.clone(),
                        table: q.table.clone(),
                        job: job.id.clone(),
                        format: q.query.format(),
                        expires_at: job.expires_at,
                        schema_version: complete.schema_version,
                        range: complete.range,
                        objects: Vec::new(),
                        urls_issued_at: now,
                    };
                    self.finish(id, Ok(Outcome::Query(result)));
                    return;
                }
                let mut progress = UrlProgress {
                    // A job that lists an object twice still yields one URL (and one
                    // file) per object.
                    pending: {
                        let mut seen = std::collections::HashSet::new();
                        complete
                            .objects
                            .iter()
                            .filter(|o| seen.insert(o.as_str()))
                            .cloned()
                            .collect()
                    },
                    done: Vec::new(),
                    first_issued: None,
                };
                q.job = Some(job);
                let batch = next_batch(self.config.url_batch_size(), &mut progress);
                op.deadline = now + self.config.call_timeout();
                op.urls = Some(progress);
                op.call = Call::Urls { batch };
                op.step = Step::Ready;
            }
            JobState::Waiting | JobState::Running => {
                let factor = 1u32.checked_shl(q.polls.min(31)).unwrap_or(u32::MAX);
                let mut interval = poll
                    .initial_interval
                    .checked_mul(factor)
                    .unwrap_or(poll.max_interval)
                    .min(poll.max_interval);
                if now.saturating_duration_since(q.started) < poll.fast_phase {
                    interval = interval.min(poll.fast_interval.max(poll.initial_interval));
                }
                if q.polls == 0 {
                    // The job runs on the server now: its own bound applies.
                    op.deadline = q.started + poll.max_duration;
                }
                q.polls = q.polls.saturating_add(1);
                op.call = Call::Job {
                    job: job.id.clone(),
                };
                q.job = Some(job);
                op.step = Step::Sleep(now + interval);
            }
        }
    }
}

fn next_batch(size: usize, progress: &mut UrlProgress) -> Vec<ObjectId> {
    let n = size.min(progress.pending.len());
    progress.pending.drain(..n).collect()
}

#[cold]
fn unreachable_state() -> Result<Outcome, Error> {
    // A query reaches the URL phase only with a complete job recorded; should that ever
    // not hold, report it as an error rather than panic.
    Err(Error::Internal(
        "a query finished without a complete job".to_owned(),
    ))
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
