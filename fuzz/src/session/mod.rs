//! The `session` target: a [`Session`] driven by an arbitrary script of commands,
//! answers, failures, time and cancellations, against a fake server that answers any
//! pending request in any order ([`peer`]).
//!
//! The invariants ([`checks`]): the secret, tokens and URL signatures never print and
//! go only where they belong; every API call carries the latest valid token; at most
//! one login is in flight; retries and polls stay within their bounds and deadlines;
//! every operation reports once (never after a cancel); `Wait` never lies in the past;
//! once every request fails, every operation ends.

mod checks;
mod peer;

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use dap_proto::testing::{VirtualClock, failure, wall_origin};
use dap_proto::{
    Command, Config, JobId, ObjectId, OpId, Output, PollPolicy, RequestId, RetryPolicy, Session,
    TokenHeader,
};
use http::{Request, Response};
use jiff::Timestamp;

use self::peer::{BodyPick, HeaderPick, StatusPick};
use crate::input::for_each_step;
use crate::{API_BASE, SECRET, SIG_MARK, TOKEN_MARK};

/// The session's configuration, within bounds that keep a run short.
#[derive(Arbitrary, Debug)]
struct SessionSetup {
    token_header: TokenHeader,
    max_attempts: u8,
    initial_backoff_ms: u16,
    max_backoff_s: u8,
    max_retry_after_s: u16,
    default_retry_after_s: u8,
    poll_initial_ms: u16,
    poll_max_s: u8,
    poll_max_duration_s: u16,
    expiry_margin_s: u8,
    refresh_margin_s: u16,
    batch: u8,
    scope: bool,
    wall_offset_s: u32,
}

impl SessionSetup {
    fn config(&self) -> Config {
        let max_attempts = u32::from(self.max_attempts % 6) + 1;
        let initial = Duration::from_millis(u64::from(self.initial_backoff_ms % 5000));
        let max_backoff = initial.max(Duration::from_secs(u64::from(self.max_backoff_s % 120)));
        let mut retry = RetryPolicy::new(max_attempts, initial, max_backoff);
        retry.max_retry_after = Duration::from_secs(u64::from(self.max_retry_after_s % 3600));
        retry.default_retry_after = Duration::from_secs(u64::from(self.default_retry_after_s));
        let poll_initial = Duration::from_millis(u64::from(self.poll_initial_ms % 10_000) + 1);
        let poll_max = poll_initial.max(Duration::from_secs(u64::from(self.poll_max_s % 60)));
        let mut poll = PollPolicy::new(poll_initial, poll_max);
        poll.max_duration = Duration::from_secs(u64::from(self.poll_max_duration_s % 20_000) + 1);
        poll.expiry_margin = Duration::from_secs(u64::from(self.expiry_margin_s));
        let mut b = Config::builder("us-east-1#fuzz-client", SECRET)
            .base_url(API_BASE)
            .retry(retry)
            .poll(poll)
            .refresh_margin(Duration::from_secs(u64::from(self.refresh_margin_s % 7200)))
            .url_batch_size(usize::from(self.batch % 4) + 1);
        b = b.token_header(self.token_header);
        if self.scope {
            b = b.scope("root-1");
        }
        b.build().expect("valid harness config")
    }
}

/// How far the clock moves.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum AdvancePick {
    Millis(u16),
    Secs(u16),
    Hours(u8),
    ToDeadline,
}

/// One step of the script: a command, an answer, a failure, time or a cancel.
#[derive(Arbitrary, Debug, Clone)]
enum SessionStep {
    Start(Command),
    Respond {
        pick: u8,
        status: StatusPick,
        body: BodyPick,
        h1: Option<HeaderPick>,
        h2: Option<HeaderPick>,
    },
    Fail {
        pick: u8,
    },
    Advance(AdvancePick),
    Cancel {
        pick: u8,
    },
    Stale {
        pick: u8,
    },
}

/// A request the session sent and the peer has not answered yet.
struct Pending {
    id: RequestId,
    request: Request<Vec<u8>>,
    op: Option<usize>,
    login: bool,
}

/// What the harness knows of one operation.
struct OpTrack {
    id: OpId,
    query: bool,
    started: Instant,
    done: bool,
    cancelled: bool,
    /// Requests sent since the last 2xx answer for this operation.
    unanswered_sends: u32,
    /// When the last 2xx job status (not terminal) arrived, for poll spacing.
    last_job_ok: Option<Instant>,
}

/// Statistics of one session run (used to pick seeds).
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct SessionStats {
    /// The kind of each successful result.
    pub ok: Vec<&'static str>,
    /// The start of each error.
    pub errors: Vec<String>,
    /// Logins sent.
    pub logins: u64,
    /// Requests sent.
    pub sends: u64,
}

/// The session under test, its clock and the fake server's state.
struct SessionHarness {
    config: Config,
    session: Session,
    clock: VirtualClock,
    server_wall_offset: i64,
    pending: Vec<Pending>,
    answered: Vec<RequestId>,
    ops: Vec<OpTrack>,
    tokens: Vec<String>,
    token_count: u64,
    offered_token: Option<String>,
    last_deadline: Option<Instant>,
    stats: SessionStats,
}

impl SessionHarness {
    fn new(setup: &SessionSetup) -> Self {
        let config = setup.config();
        let clock = VirtualClock::new();
        let wall = wall_origin()
            .checked_add(jiff::SignedDuration::from_secs(i64::from(
                setup.wall_offset_s % 100_000_000,
            )))
            .unwrap_or(wall_origin());
        let session = Session::new(config.clone(), clock.now, wall);
        Self {
            config,
            session,
            clock,
            server_wall_offset: wall.as_second(),
            pending: Vec::new(),
            answered: Vec::new(),
            ops: Vec::new(),
            tokens: Vec::new(),
            token_count: 0,
            offered_token: None,
            last_deadline: None,
            stats: SessionStats::default(),
        }
    }

    /// The server's wall clock now.
    fn server_wall(&self) -> Timestamp {
        let elapsed = self.clock.elapsed().as_secs() as i64;
        Timestamp::from_second(
            self.server_wall_offset
                .saturating_add(elapsed)
                .clamp(0, 253_402_207_199),
        )
        .unwrap_or(wall_origin())
    }

    /// Moves the clock forward by `by`.
    fn advance(&mut self, by: Duration) {
        // Keep the virtual clock within a few centuries of the origin.
        if self.clock.elapsed() < Duration::from_secs(3_000_000_000) {
            self.clock.advance(by);
        }
    }

    /// Drains the session until it waits; returns the deadline.
    fn drain(&mut self) -> Option<Instant> {
        for _ in 0..10_000 {
            match self.session.poll_output(self.clock.now) {
                Output::Send { id, request } => self.on_send(id, request),
                Output::Done { op, result } => self.on_done(op, result),
                Output::Wait(deadline) => {
                    if let Some(t) = deadline {
                        assert!(
                            t >= self.clock.now,
                            "Wait deadline {:?} in the past ({:?})",
                            self.clock.now - t,
                            self.session
                        );
                    }
                    let logins = self.pending.iter().filter(|p| p.login).count();
                    assert!(logins <= 1);
                    self.last_deadline = deadline;
                    return deadline;
                }
                _ => {}
            }
        }
        panic!("poll_output never returned Wait");
    }

    /// Starts `command`, its names tagged with the operation's index.
    fn start(&mut self, command: Command) {
        let k = self.ops.len();
        let command = tag(command, k);
        let query = matches!(command, Command::Query { .. });
        let id = self.session.start(command, self.clock.now);
        self.ops.push(OpTrack {
            id,
            query,
            started: self.clock.now,
            done: false,
            cancelled: false,
            unanswered_sends: 0,
            last_job_ok: None,
        });
    }

    /// Runs one step of the script, then drains the session.
    fn step(&mut self, step: SessionStep) {
        match step {
            SessionStep::Start(command) => {
                if self.ops.len() < 24 {
                    self.start(command);
                }
            }
            SessionStep::Respond {
                pick,
                status,
                body,
                h1,
                h2,
            } => self.respond(pick, status, body, [h1, h2]),
            SessionStep::Fail { pick } => self.fail(pick),
            SessionStep::Advance(a) => {
                let by = match a {
                    AdvancePick::Millis(ms) => Duration::from_millis(u64::from(ms)),
                    AdvancePick::Secs(s) => Duration::from_secs(u64::from(s)),
                    AdvancePick::Hours(h) => Duration::from_secs(3600 * u64::from(h % 48)),
                    AdvancePick::ToDeadline => self.last_deadline.map_or(Duration::ZERO, |t| {
                        t.saturating_duration_since(self.clock.now)
                    }),
                };
                self.advance(by);
            }
            SessionStep::Cancel { pick } => {
                if !self.ops.is_empty() {
                    let k = usize::from(pick) % self.ops.len();
                    let id = self.ops[k].id;
                    let live = !self.ops[k].done && !self.ops[k].cancelled;
                    let r = self.session.cancel(id);
                    if live {
                        // An op not yet reported is cancellable, even if its Done is queued.
                        r.expect("cancel a live operation");
                        self.ops[k].cancelled = true;
                    } else {
                        assert!(r.is_err(), "cancel of a finished operation accepted");
                    }
                }
            }
            SessionStep::Stale { pick } => {
                if !self.answered.is_empty() {
                    let id = self.answered[usize::from(pick) % self.answered.len()];
                    let r = self.session.handle_response(
                        id,
                        Response::new(Vec::<u8>::new()),
                        self.clock.now,
                    );
                    assert!(r.is_err(), "a second answer to {id} was accepted");
                    assert!(
                        self.session
                            .handle_failure(id, failure(), self.clock.now)
                            .is_err()
                    );
                }
            }
        }
        self.drain();
    }

    /// After the inputs stop, every request fails: every operation must end.
    fn finish_with_failures(&mut self) {
        for _ in 0..2_000 {
            let deadline = self.drain();
            let live = self.ops.iter().filter(|t| !t.done && !t.cancelled).count();
            if live == 0 {
                assert_eq!(self.session.pending_operations(), 0);
                return;
            }
            if !self.pending.is_empty() {
                let all: Vec<Pending> = std::mem::take(&mut self.pending);
                for p in all {
                    self.session
                        .handle_failure(p.id, failure(), self.clock.now)
                        .expect("known request");
                }
                continue;
            }
            match deadline {
                Some(t) => self.clock.now = t.max(self.clock.now),
                None => {
                    panic!("{live} operations pending, nothing in flight and no deadline: stuck")
                }
            }
        }
        panic!("operations did not end while every request failed");
    }
}

/// Runs the session harness and returns statistics about what happened.
pub fn session_run(data: &[u8]) -> Option<SessionStats> {
    let mut u = Unstructured::new(data);
    let setup = SessionSetup::arbitrary(&mut u).ok()?;
    let mut h = SessionHarness::new(&setup);
    h.drain();
    for_each_step(&mut u, 400, |step: SessionStep| h.step(step));
    h.finish_with_failures();
    Some(h.stats)
}

/// The session driven by an arbitrary sequence of commands, answers, failures, time
/// and cancellations; see the module's documentation for the invariants.
///
/// # Panics
/// When the session breaks an invariant.
pub fn run(data: &[u8]) {
    let _ = session_run(data);
}

/// `command` with every name prefixed by `op{k}_`, so that each request can be traced
/// back to operation `k` (the rest of each name is whatever the fuzzer chose).
///
/// The names are the caller's own, not secrets the session learned: the markers the
/// checks look for are taken out of them.
fn tag(command: Command, k: usize) -> Command {
    let t = |s: &str| format!("op{k}_{}", unmarked(s));
    match command {
        Command::ListTables { namespace } => Command::ListTables {
            namespace: t(&namespace),
        },
        Command::Schema { namespace, table } => Command::Schema {
            namespace: t(&namespace),
            table: t(&table),
        },
        Command::Query {
            namespace,
            table,
            query,
        } => Command::Query {
            namespace: t(&namespace),
            table: t(&table),
            query,
        },
        Command::GetJob { job } => Command::GetJob {
            job: JobId::new(t(job.as_str())),
        },
        Command::ObjectUrls { objects } => Command::ObjectUrls {
            objects: objects
                .iter()
                .map(|o| ObjectId::new(t(o.as_str())))
                .collect(),
        },
        other => other,
    }
}

/// `s` without the secret or a token or signature marker, however they were spelled.
fn unmarked(s: &str) -> String {
    let mut out = s.to_owned();
    while let Some(mark) = [SECRET, TOKEN_MARK, SIG_MARK]
        .into_iter()
        .find(|m| out.contains(m))
    {
        out = out.replace(mark, "");
    }
    out
}
