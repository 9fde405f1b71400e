//! What an operation is doing, as an enum of phases, with every transition in one place.
//!
//! ```text
//!  ListTables, Schema, GetJob ─► Single(call) ──────────────────────────────► Done
//!  ObjectUrls ────────────────► Urls(batches) ─ batch … ─────────────────────► Done(UrlSet)
//!  Query ─► Posting ─ job ─┬─ waiting/running ─► Polling ─ sleep, poll … ─┐
//!              ▲           ├─ failed ───────────────────────────────────► Done(JobFailed)
//!              │           └─ complete ─┬─ expires soon (≤ 3 times) ────┘ (post again)
//!              └───────────────────────┘├─ no objects, or URLs on demand ► Done(QueryResult)
//!                                        └─► FetchingUrls ─ batch … ──────► Done(QueryResult)
//! ```

use std::collections::HashSet;
use std::time::Instant;

use http::{Request, Response};
use jiff::Timestamp;

use crate::api;
use crate::config::Config;
use crate::error::Error;
use crate::model::{DataRange, Job, JobId, JobState, ObjectId, ObjectUrl, Query};
use crate::secret::AccessToken;

use super::{Command, Outcome, QueryResult, UrlSet};

/// How many times a query whose complete job is about to expire is posted again.
const MAX_REPOSTS: u32 = 3;

/// What an operation is doing.
pub(super) enum Work {
    /// One call whose answer ends the operation.
    Single(Single),
    /// Object URLs, in batches.
    Urls(Batches),
    /// A query run to completion.
    Query(Box<QueryWork>),
}

/// The one-call commands.
pub(super) enum Single {
    Tables { namespace: String },
    Schema { namespace: String, table: String },
    Job { job: JobId },
}

/// URL batches: the one being fetched, the rest, what arrived.
pub(super) struct Batches {
    batch: Vec<ObjectId>,
    pending: Vec<ObjectId>,
    done: Vec<ObjectUrl>,
    first_issued: Option<Instant>,
}

pub(super) struct QueryWork {
    namespace: String,
    table: String,
    query: Query,
    started: Instant,
    reposts: u32,
    phase: QueryPhase,
}

enum QueryPhase {
    /// `POST .../data`.
    Posting,
    /// `GET /dap/job/{id}` until the job ends.
    Polling { job: JobId, polls: u32 },
    /// The job is complete: its objects' URLs, in batches.
    FetchingUrls { job: Finished, urls: Batches },
}

/// A complete job, as a query result needs it.
struct Finished {
    id: JobId,
    expires_at: Option<Timestamp>,
    schema_version: u64,
    range: DataRange,
}

/// What the session does after a successful call.
pub(super) enum Next {
    /// The operation ended.
    Done(Result<Outcome, Error>),
    /// Send the next call now.
    Send,
    /// Send the next call at this instant.
    Sleep(Instant),
    /// Send the next call now; the operation's deadline moves to this instant.
    SendBy(Instant),
    /// Send the next call at the first instant; the deadline moves to the second.
    SleepBy(Instant, Instant),
}

/// What the transitions need from the session.
pub(super) struct Context<'a> {
    pub(super) config: &'a Config,
    pub(super) now: Instant,
    pub(super) wall: Timestamp,
}

impl Batches {
    fn new(mut pending: Vec<ObjectId>, size: usize) -> Self {
        let n = size.min(pending.len());
        let batch = pending.drain(..n).collect();
        Self {
            batch,
            pending,
            done: Vec::new(),
            first_issued: None,
        }
    }

    /// Takes one batch of URLs; the URLs once every batch arrived.
    fn take(&mut self, urls: Vec<ObjectUrl>, size: usize, now: Instant) -> Option<UrlSet> {
        self.done.extend(urls);
        let first = *self.first_issued.get_or_insert(now);
        if self.pending.is_empty() {
            return Some(UrlSet {
                urls: std::mem::take(&mut self.done),
                issued_at: first,
            });
        }
        let n = size.min(self.pending.len());
        self.batch = self.pending.drain(..n).collect();
        None
    }
}

impl Work {
    /// The work of `command`, or its (empty) URL set when it needs no request.
    pub(super) fn new(command: Command, config: &Config, now: Instant) -> Result<Self, UrlSet> {
        Ok(match command {
            Command::ListTables { namespace } => Self::Single(Single::Tables { namespace }),
            Command::Schema { namespace, table } => {
                Self::Single(Single::Schema { namespace, table })
            }
            Command::GetJob { job } => Self::Single(Single::Job { job }),
            Command::ObjectUrls { objects } if objects.is_empty() => {
                return Err(UrlSet {
                    urls: Vec::new(),
                    issued_at: now,
                });
            }
            Command::ObjectUrls { objects } => {
                Self::Urls(Batches::new(objects, config.url_batch_size()))
            }
            Command::Query {
                namespace,
                table,
                query,
            } => Self::Query(Box::new(QueryWork {
                namespace,
                table,
                query,
                started: now,
                reposts: 0,
                phase: QueryPhase::Posting,
            })),
        })
    }

    /// The name of the current call, for logs and errors.
    pub(super) fn what(&self) -> &'static str {
        match self {
            Self::Single(Single::Tables { .. }) => "list tables",
            Self::Single(Single::Schema { .. }) => "table schema",
            Self::Single(Single::Job { .. }) => "job status",
            Self::Urls(_) => "object URLs",
            Self::Query(q) => match q.phase {
                QueryPhase::Posting => "start query",
                QueryPhase::Polling { .. } => "job status",
                QueryPhase::FetchingUrls { .. } => "object URLs",
            },
        }
    }

    /// Whether the current call is a job-status call (counted against the poll cap).
    pub(super) fn is_status_call(&self) -> bool {
        matches!(self.what(), "job status")
    }

    /// The job being polled, when a query waits for one.
    pub(super) fn polled_job(&self) -> Option<&JobId> {
        match self {
            Self::Query(q) => match &q.phase {
                QueryPhase::Polling { job, .. } => Some(job),
                _ => None,
            },
            _ => None,
        }
    }

    /// Builds the request of the current call.
    pub(super) fn request(
        &self,
        config: &Config,
        token: &AccessToken,
    ) -> Result<Request<Vec<u8>>, Error> {
        match self {
            Self::Single(Single::Tables { namespace }) => {
                api::tables::request(config, token, namespace)
            }
            Self::Single(Single::Schema { namespace, table }) => {
                api::schema::request(config, token, namespace, table)
            }
            Self::Single(Single::Job { job }) => api::job::request(config, token, job),
            Self::Urls(b) => api::objects::request(config, token, &b.batch),
            Self::Query(q) => match &q.phase {
                QueryPhase::Posting => {
                    api::query::request(config, token, &q.namespace, &q.table, &q.query)
                }
                QueryPhase::Polling { job, .. } => api::job::request(config, token, job),
                QueryPhase::FetchingUrls { urls, .. } => {
                    api::objects::request(config, token, &urls.batch)
                }
            },
        }
    }

    /// Parses the response to the current call.
    pub(super) fn parse<B: AsRef<[u8]>>(
        &self,
        config: &Config,
        response: &Response<B>,
        now: Instant,
    ) -> Result<Outcome, Error> {
        let urls = |batch: &[ObjectId]| {
            api::objects::parse(config, batch, response).map(|urls| {
                Outcome::Urls(UrlSet {
                    urls,
                    issued_at: now,
                })
            })
        };
        match self {
            Self::Single(Single::Tables { .. }) => {
                api::tables::parse(config, response).map(Outcome::Tables)
            }
            Self::Single(Single::Schema { .. }) => {
                api::schema::parse(config, response).map(Outcome::Schema)
            }
            Self::Single(Single::Job { .. }) => api::job::parse(config, response).map(Outcome::Job),
            Self::Urls(b) => urls(&b.batch),
            Self::Query(q) => match &q.phase {
                QueryPhase::Posting => api::query::parse(config, response).map(Outcome::Job),
                QueryPhase::Polling { .. } => api::job::parse(config, response).map(Outcome::Job),
                QueryPhase::FetchingUrls { urls: b, .. } => urls(&b.batch),
            },
        }
    }

    /// Moves on after a successful call that produced `outcome`.
    pub(super) fn advance(&mut self, outcome: Outcome, cx: &Context<'_>) -> Next {
        match (self, outcome) {
            (Self::Urls(b), Outcome::Urls(set)) => {
                match b.take(set.urls, cx.config.url_batch_size(), cx.now) {
                    Some(all) => Next::Done(Ok(Outcome::Urls(all))),
                    None => Next::Send,
                }
            }
            (Self::Query(q), outcome) => q.advance(outcome, cx),
            (_, outcome) => Next::Done(Ok(outcome)),
        }
    }
}

impl QueryWork {
    fn advance(&mut self, outcome: Outcome, cx: &Context<'_>) -> Next {
        match (
            std::mem::replace(&mut self.phase, QueryPhase::Posting),
            outcome,
        ) {
            (QueryPhase::FetchingUrls { job, mut urls }, Outcome::Urls(set)) => {
                match urls.take(set.urls, cx.config.url_batch_size(), cx.now) {
                    Some(all) => Next::Done(self.result(job, all.urls, Vec::new(), all.issued_at)),
                    None => {
                        self.phase = QueryPhase::FetchingUrls { job, urls };
                        Next::Send
                    }
                }
            }
            (phase, Outcome::Job(job)) => {
                let polls = match phase {
                    QueryPhase::Polling { polls, .. } => polls,
                    _ => 0,
                };
                self.job(job, polls, cx)
            }
            (_, other) => Next::Done(Err(Error::Internal(format!(
                "a query got an unexpected answer ({:?})",
                std::mem::discriminant(&other)
            )))),
        }
    }

    /// A job status arrived (from posting or polling).
    fn job(&mut self, job: Job, polls: u32, cx: &Context<'_>) -> Next {
        match &job.state {
            JobState::Failed(error) => Next::Done(Err(Error::JobFailed {
                job: job.id.clone(),
                error: Box::new(error.clone()),
            })),
            JobState::Complete(complete) => {
                let margin = jiff::SignedDuration::try_from(cx.config.poll().expiry_margin)
                    .unwrap_or_default();
                let expiring = job
                    .expires_at
                    .is_some_and(|at| at.duration_since(cx.wall) < margin);
                if expiring && self.reposts < MAX_REPOSTS {
                    tracing::debug!(job = %job.id, "complete job expires soon; posting the query again");
                    self.reposts += 1;
                    return Next::Send;
                }
                // A job that lists an object twice still yields one URL (and one file)
                // per object.
                let mut seen = HashSet::new();
                let objects: Vec<ObjectId> = complete
                    .objects
                    .iter()
                    .filter(|o| seen.insert(o.as_str()))
                    .cloned()
                    .collect();
                let job = Finished {
                    id: job.id.clone(),
                    expires_at: job.expires_at,
                    schema_version: complete.schema_version,
                    range: complete.range,
                };
                if objects.is_empty() || self.query.has_urls_on_demand() {
                    return Next::Done(self.result(job, Vec::new(), objects, cx.now));
                }
                let urls = Batches::new(objects, cx.config.url_batch_size());
                self.phase = QueryPhase::FetchingUrls { job, urls };
                Next::SendBy(cx.now + cx.config.call_timeout())
            }
            JobState::Waiting | JobState::Running => {
                let poll = cx.config.poll();
                let factor = 1u32.checked_shl(polls.min(31)).unwrap_or(u32::MAX);
                let mut interval = poll
                    .initial_interval
                    .checked_mul(factor)
                    .unwrap_or(poll.max_interval)
                    .min(poll.max_interval);
                if cx.now.saturating_duration_since(self.started) < poll.fast_phase {
                    interval = interval.min(poll.fast_interval.max(poll.initial_interval));
                }
                self.phase = QueryPhase::Polling {
                    job: job.id,
                    polls: polls.saturating_add(1),
                };
                let until = cx.now + interval;
                if polls == 0 {
                    // The job runs on the server now: its own bound applies.
                    Next::SleepBy(until, self.started + poll.max_duration)
                } else {
                    Next::Sleep(until)
                }
            }
        }
    }

    fn result(
        &self,
        job: Finished,
        objects: Vec<ObjectUrl>,
        pending: Vec<ObjectId>,
        issued: Instant,
    ) -> Result<Outcome, Error> {
        Ok(Outcome::Query(QueryResult {
            namespace: self.namespace.clone(),
            table: self.table.clone(),
            job: job.id,
            format: self.query.format(),
            expires_at: job.expires_at,
            schema_version: job.schema_version,
            range: job.range,
            objects,
            pending,
            urls_issued_at: issued,
        }))
    }
}
