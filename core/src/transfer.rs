//! [`Transfer`]: the download of one object as a sans-IO state machine, so every
//! transport resumes, refreshes URLs, retries and verifies exactly alike.
//!
//! Most callers never touch it: [`crate::Download`] runs one per object of a job. Used
//! alone, the caller sends the requests it hands out, streams each response body through
//! [`Transfer::handle_body`] into a temporary file (or anywhere), and renames the file
//! only once [`Transfer::poll_output`] says [`TransferStep::Done`]: by then
//! `Content-Length` has matched and, for gzip objects, every member decoded with a valid
//! CRC32 and length.
//!
//! ```text
//! poll_output ─► Send(GET url [Range: bytes=N-]) ─► handle_head ─► handle_body … ─► handle_body_end ─► Done
//!      ▲              │ 403: NeedUrl ─► handle_url       │ dropped: handle_failure │ too slow: Break
//!      └── Wait(backoff) ◄── 5xx / dropped / stalled (resume from the last byte received)
//! ```
//!
//! The gzip decoder and its buffers are allocated when a body starts and freed when the
//! transfer ends, so a transfer that waits costs a few hundred bytes.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, StatusCode};

use crate::backoff::Backoff;
use crate::config::{Config, LowSpeed, RetryPolicy, SpeedMeter};
use crate::download::{self, BodyStart, StorageError};
use crate::error::{ArgumentError, FailureKind, TransportFailure};
use crate::gzip::{GzipDecoder, GzipError};
use crate::model::{Format, ObjectId, ObjectUrl};
use crate::secret::PresignedUrl;

/// What the transport should do next for a transfer.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransferStep {
    /// Send this GET; report its head with [`Transfer::handle_head`].
    Send(Request<Vec<u8>>),
    /// Call [`Transfer::poll_output`] again at this instant.
    Wait(Instant),
    /// The URL was refused (expired): fetch a fresh one (for example with
    /// [`crate::Command::ObjectUrls`]) and pass it to [`Transfer::handle_url`].
    NeedUrl,
    /// A request is out: report its fate before polling again (nothing to do now).
    InFlight,
    /// The object is complete and verified.
    Done(TransferSummary),
    /// The transfer failed for good; discard whatever was written.
    Failed(TransferError),
}

/// What to do with the body of the response just reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadAction {
    /// Stream the body through [`Transfer::handle_body`]. When `truncate` is set, everything
    /// written so far must be discarded first (the server restarted from byte 0).
    ReadBody {
        /// Discard what was written before.
        truncate: bool,
    },
    /// Ignore the body and poll again.
    Discard,
}

/// A finished, verified object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSummary {
    /// The object.
    pub object: ObjectId,
    /// The safe file name it should be saved under.
    pub file_name: String,
    /// Bytes of the object as stored (compressed).
    pub bytes: u64,
    /// Bytes handed to the sink since the object last started from byte 0: what a file
    /// written from this transfer holds.
    pub output_bytes: u64,
    /// Decompressed bytes, for gzip objects.
    pub decompressed_bytes: Option<u64>,
    /// How many times the download resumed after a dropped connection.
    pub resumes: u32,
    /// How many fresh URLs were needed.
    pub url_refreshes: u32,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Storage refused the object.
    #[error("{object}: {error}")]
    Storage {
        /// The object.
        object: ObjectId,
        /// What storage said.
        error: StorageError,
    },
    /// The object is not a valid gzip stream (corrupt or truncated).
    #[error("{object}: the object failed gzip verification: {error}")]
    Corrupt {
        /// The object.
        object: ObjectId,
        /// What was wrong.
        error: GzipError,
    },
    /// The body was longer than announced.
    #[error("{object}: the body is longer than the {expected} bytes announced")]
    TooLong {
        /// The object.
        object: ObjectId,
        /// The announced length.
        expected: u64,
    },
    /// The connection kept failing.
    #[error("{object}: the download failed {attempts} times in a row (last error: {last})")]
    Transport {
        /// The object.
        object: ObjectId,
        /// Consecutive failed attempts.
        attempts: u32,
        /// What the last attempt failed with.
        last: TransportFailure,
    },
    /// The URL cannot be requested.
    #[error(transparent)]
    Argument(#[from] ArgumentError),
}

enum Phase {
    Ready,
    Sleep(Instant),
    AwaitingHead,
    Body,
    NeedUrl,
    Done(TransferSummary),
    Failed(TransferError),
}

/// The download of one object. See the [module docs](self).
pub struct Transfer {
    object: ObjectId,
    url: PresignedUrl,
    file_name: String,
    /// The only part of the configuration a download needs (no credentials here).
    user_agent: http::HeaderValue,
    gzip: bool,
    decompress: bool,
    decoder: Option<GzipDecoder>,
    received: u64,
    expected: Option<u64>,
    dirty: bool,
    decompressed: u64,
    /// Streaming mode: output, once handed out, is never handed out again.
    streaming: bool,
    /// Output bytes handed to the sink since the body last started from byte 0.
    out_pos: u64,
    /// In streaming mode, output before this position was already handed out.
    replay_skip: u64,
    failures: u32,
    received_at_last_failure: u64,
    last_failure: Option<TransportFailure>,
    low_speed: LowSpeed,
    /// The low-speed rule applied to the current body.
    meter: SpeedMeter,
    resumes: u32,
    url_refreshes: u32,
    retry: RetryPolicy,
    jitter: Backoff,
    phase: Phase,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("object", &self.object)
            .field("url", &self.url)
            .field("received", &self.received)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Transfer {
    /// A transfer of `object` in `format`. With `decompress`, gzip objects are handed to
    /// the sink decompressed and their file name loses its `.gz`; parquet is never
    /// decompressed. Fails when the URL has no usable file name.
    pub fn new(
        config: &Config,
        object: ObjectUrl,
        format: Format,
        decompress: bool,
    ) -> Result<Self, ArgumentError> {
        let gzip = format.is_gzip();
        let decompress = decompress && gzip;
        let mut file_name = download::file_name(&object.url)?;
        if decompress {
            if let Some(stem) = file_name.strip_suffix(".gz").filter(|s| !s.is_empty()) {
                file_name = stem.to_owned();
            }
        }
        let seed = object
            .id
            .as_str()
            .bytes()
            .fold(config.retry().jitter_seed, |h, b| {
                h.rotate_left(5) ^ u64::from(b)
            });
        Ok(Self {
            object: object.id,
            url: object.url,
            file_name,
            user_agent: config.user_agent().clone(),
            gzip,
            decompress,
            decoder: None,
            received: 0,
            expected: None,
            dirty: false,
            decompressed: 0,
            streaming: false,
            out_pos: 0,
            replay_skip: 0,
            failures: 0,
            received_at_last_failure: 0,
            last_failure: None,
            low_speed: config.low_speed(),
            meter: config.low_speed().meter(),
            resumes: 0,
            url_refreshes: 0,
            retry: config.retry().clone(),
            jitter: Backoff::new(seed),
            phase: Phase::Ready,
        })
    }

    /// Streaming mode, for consumers that cannot take back what they were given (a
    /// record stream, a pipe): when storage restarts the object from byte 0, the output
    /// already handed out is skipped instead of asking the caller to truncate, so every
    /// byte reaches the sink exactly once. [`HeadAction::ReadBody`] then never asks to
    /// truncate.
    #[must_use]
    pub fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    /// The object.
    pub fn object(&self) -> &ObjectId {
        &self.object
    }

    /// The safe file name the object is saved under.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Bytes of the object received so far (the resume offset).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The object's size, once the server has said.
    pub fn expected_size(&self) -> Option<u64> {
        self.expected
    }

    /// The next step.
    pub fn poll_output(&mut self, now: Instant) -> TransferStep {
        match &self.phase {
            Phase::Sleep(until) if now < *until => TransferStep::Wait(*until),
            Phase::Ready | Phase::Sleep(_) => {
                match download::request_with_agent(&self.user_agent, &self.url, self.received) {
                    Ok(request) => {
                        self.phase = Phase::AwaitingHead;
                        TransferStep::Send(request)
                    }
                    Err(e) => {
                        self.phase = Phase::Failed(e.clone().into());
                        TransferStep::Failed(e.into())
                    }
                }
            }
            Phase::AwaitingHead | Phase::Body => TransferStep::InFlight,
            Phase::NeedUrl => TransferStep::NeedUrl,
            Phase::Done(summary) => TransferStep::Done(summary.clone()),
            Phase::Failed(error) => TransferStep::Failed(error.clone()),
        }
    }

    /// Supplies a fresh URL after [`TransferStep::NeedUrl`], or before any request
    /// (a URL refreshed before it expired).
    pub fn handle_url(&mut self, url: PresignedUrl) {
        self.url = url;
        if matches!(self.phase, Phase::NeedUrl) {
            self.phase = Phase::Ready;
        }
    }

    /// Reports the status and headers of the response to the last request.
    pub fn handle_head(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        now: Instant,
    ) -> HeadAction {
        if !matches!(self.phase, Phase::AwaitingHead) {
            return HeadAction::Discard;
        }
        match download::check_response(status, headers, self.received) {
            Ok(start) => {
                let truncate = match start {
                    // A range from byte 0 (after a range mismatch reset the offset) is
                    // the whole object again: whatever was written must go.
                    BodyStart::Full { .. } | BodyStart::Resumed { start: 0, .. } => {
                        let truncate = self.dirty && !self.streaming;
                        self.restart();
                        truncate
                    }
                    BodyStart::Resumed { .. } => {
                        self.resumes += 1;
                        if self.gzip && self.decoder.is_none() {
                            self.decoder = Some(GzipDecoder::new());
                        }
                        false
                    }
                };
                self.meter = self.low_speed.meter();
                let _ = self.meter.observe(0, now);
                if let Some(total) = start.total() {
                    let total = match start {
                        BodyStart::Full { length: Some(len) } => len,
                        _ => total,
                    };
                    self.expected = Some(total);
                }
                self.phase = Phase::Body;
                HeadAction::ReadBody { truncate }
            }
            Err(error) if error.needs_new_url() => {
                self.url_refreshes += 1;
                self.phase = if self.url_refreshes > self.retry.max_attempts {
                    Phase::Failed(TransferError::Storage {
                        object: self.object.clone(),
                        error,
                    })
                } else {
                    Phase::NeedUrl
                };
                HeadAction::Discard
            }
            Err(StorageError::RangeMismatch) => {
                // Start over from byte 0; the next full body truncates the file.
                self.received = 0;
                self.expected = None;
                self.fail_attempt(now, Ok(StorageError::RangeMismatch));
                HeadAction::Discard
            }
            Err(error) if error.is_retryable() => {
                self.fail_attempt(now, Ok(error));
                HeadAction::Discard
            }
            Err(error) => {
                self.phase = Phase::Failed(TransferError::Storage {
                    object: self.object.clone(),
                    error,
                });
                HeadAction::Discard
            }
        }
    }

    /// Streams a piece of the body, received at `now`: verifies it and hands the bytes
    /// to write to `sink` (the raw bytes, or the decompressed ones with `decompress`).
    ///
    /// [`ControlFlow::Break`] means: stop reading and drop the response; report nothing
    /// more for it and poll again. The transfer either failed for good (corrupt or
    /// over-long) or the body came too slowly for [`Config::low_speed`] and the next
    /// request resumes where it stopped.
    pub fn handle_body(
        &mut self,
        chunk: &[u8],
        now: Instant,
        mut sink: impl FnMut(&[u8]),
    ) -> ControlFlow<()> {
        if !matches!(self.phase, Phase::Body) {
            return ControlFlow::Break(());
        }
        let len = chunk.len() as u64;
        if let Some(expected) = self.expected {
            if self.received.saturating_add(len) > expected {
                self.fail(TransferError::TooLong {
                    object: self.object.clone(),
                    expected,
                });
                return ControlFlow::Break(());
            }
        }
        let (skip, pos) = (self.replay_skip, &mut self.out_pos);
        // Hands out output, minus what a streaming consumer already received.
        let mut emit = |bytes: &[u8]| {
            let start = *pos;
            *pos += bytes.len() as u64;
            let already = usize::try_from(skip.saturating_sub(start)).unwrap_or(usize::MAX);
            if let Some(fresh) = bytes.get(already..).filter(|b| !b.is_empty()) {
                sink(fresh);
            }
        };
        if let Some(decoder) = &mut self.decoder {
            let result = if self.decompress {
                let decompressed = &mut self.decompressed;
                decoder.feed(chunk, |bytes| {
                    *decompressed += bytes.len() as u64;
                    emit(bytes);
                })
            } else {
                decoder.verify(chunk).map(|()| emit(chunk))
            };
            if let Err(error) = result {
                self.fail(TransferError::Corrupt {
                    object: self.object.clone(),
                    error,
                });
                return ControlFlow::Break(());
            }
        } else {
            emit(chunk);
        }
        if !chunk.is_empty() {
            self.dirty = true;
        }
        self.received += len;
        if let Err(failure) = self.meter.observe(len, now) {
            self.fail_attempt(now, Err(failure));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// The longest a caller should wait for the next piece of body before reporting
    /// [`Transfer::handle_failure`] with [`FailureKind::Stalled`]: the low-speed window.
    pub fn read_timeout(&self) -> Duration {
        self.low_speed.window
    }

    /// Reports that the body ended cleanly (the connection did not fail).
    pub fn handle_body_end(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Body) {
            return;
        }
        if let Some(expected) = self.expected.filter(|e| self.received < *e) {
            // Fewer bytes than announced: resume from where it stopped.
            let failure = TransportFailure::new(
                FailureKind::Broken,
                format!("the body ended after {} of {expected} bytes", self.received),
            );
            self.fail_attempt(now, Err(failure));
            return;
        }
        let decompressed_bytes = match self.decoder.take() {
            Some(decoder) => match decoder.finish() {
                Ok(summary) => Some(summary.decompressed_bytes),
                Err(error) => {
                    self.fail(TransferError::Corrupt {
                        object: self.object.clone(),
                        error,
                    });
                    return;
                }
            },
            None => None,
        };
        self.phase = Phase::Done(TransferSummary {
            object: self.object.clone(),
            file_name: self.file_name.clone(),
            bytes: self.received,
            output_bytes: self.out_pos,
            decompressed_bytes,
            resumes: self.resumes,
            url_refreshes: self.url_refreshes,
        });
    }

    /// Reports that the request failed: no connection, no data in time, or the body
    /// broke off. The transfer resumes from the last byte received after a backoff,
    /// within the retry policy (attempts count anew whenever bytes arrived since the
    /// last failure).
    pub fn handle_failure(&mut self, failure: TransportFailure, now: Instant) {
        if matches!(self.phase, Phase::AwaitingHead | Phase::Body) {
            self.fail_attempt(now, Err(failure));
        }
    }

    /// Whether the next [`Transfer::poll_output`] at `now` sends a request.
    pub fn is_due(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Ready => true,
            Phase::Sleep(until) => now >= until,
            _ => false,
        }
    }

    /// The URL the next request goes to.
    pub fn url(&self) -> &PresignedUrl {
        &self.url
    }

    /// How the transfer ended, once it has: the summary or the error.
    pub fn outcome(&self) -> Option<Result<&TransferSummary, &TransferError>> {
        match &self.phase {
            Phase::Done(summary) => Some(Ok(summary)),
            Phase::Failed(error) => Some(Err(error)),
            _ => None,
        }
    }

    /// Whether the transfer waits for a fresh URL ([`Transfer::handle_url`]).
    pub fn needs_url(&self) -> bool {
        matches!(self.phase, Phase::NeedUrl)
    }

    /// Whether the transfer ended (done or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done(_) | Phase::Failed(_))
    }

    /// Whether a request is out (between [`TransferStep::Send`] and the end of its
    /// response).
    pub fn is_in_flight(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHead | Phase::Body)
    }

    fn restart(&mut self) {
        if self.streaming {
            self.replay_skip = self.replay_skip.max(self.out_pos);
        }
        self.out_pos = 0;
        self.received = 0;
        self.expected = None;
        self.decompressed = 0;
        self.dirty = false;
        self.decoder = self.gzip.then(GzipDecoder::new);
    }

    fn fail(&mut self, error: TransferError) -> TransferError {
        self.decoder = None;
        self.phase = Phase::Failed(error.clone());
        error
    }

    /// One failed attempt: a storage status (`Ok`) or a transport failure (`Err`).
    fn fail_attempt(&mut self, now: Instant, error: Result<StorageError, TransportFailure>) {
        if self.received > self.received_at_last_failure {
            self.failures = 0;
        }
        self.received_at_last_failure = self.received;
        self.failures += 1;
        if let Err(failure) = &error {
            self.last_failure = Some(failure.clone());
        }
        if self.failures >= self.retry.max_attempts {
            let object = self.object.clone();
            self.fail(match error {
                Ok(error) => TransferError::Storage { object, error },
                Err(last) => TransferError::Transport {
                    object,
                    attempts: self.failures,
                    last,
                },
            });
            return;
        }
        let delay = self.jitter.delay(&self.retry, self.failures);
        self.phase = Phase::Sleep(now + delay);
    }
}
