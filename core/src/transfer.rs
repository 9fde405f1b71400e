//! [`Transfer`]: the download of one object as a sans-IO state machine, so every
//! transport resumes, refreshes URLs, retries and verifies exactly alike.
//!
//! The transport sends the requests it hands out, streams each response body through
//! [`Transfer::on_body`] into a temporary file (or anywhere), and renames the file only
//! once [`Transfer::poll`] says [`TransferStep::Done`]: by then `Content-Length` has
//! matched and, for gzip objects, every member decoded with a valid CRC32 and length.
//!
//! ```text
//! poll ─► Send(GET url [Range: bytes=N-]) ─► on_head ─► on_body … ─► on_body_end ─► poll ─► Done
//!            ▲            │ 403: NeedUrl ─► set_url           │ dropped: on_failure
//!            └── Wait(backoff) ◄── 5xx / dropped (resume from the last byte received)
//! ```

use std::time::Instant;

use http::{HeaderMap, Request, StatusCode};

use crate::backoff::Backoff;
use crate::config::{Config, RetryPolicy};
use crate::download::{self, BodyStart, StorageError};
use crate::error::ArgumentError;
use crate::gzip::{GzipDecoder, GzipError};
use crate::model::{Format, ObjectId, ObjectUrl};
use crate::secret::PresignedUrl;

/// What the transport should do next for a transfer.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransferStep {
    /// Send this GET; report its head with [`Transfer::on_head`].
    Send(Request<Vec<u8>>),
    /// Call [`Transfer::poll`] again at this instant.
    Wait(Instant),
    /// The URL was refused (expired): fetch a fresh one (for example with
    /// [`crate::Command::ObjectUrls`]) and pass it to [`Transfer::set_url`].
    NeedUrl,
    /// A request is out; report its fate before polling again.
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
    /// Stream the body through [`Transfer::on_body`]. When `truncate` is set, everything
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
    #[error("{object}: the download failed {attempts} times in a row")]
    Transport {
        /// The object.
        object: ObjectId,
        /// Consecutive failed attempts.
        attempts: u32,
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
            decoder: gzip.then(GzipDecoder::new),
            received: 0,
            expected: None,
            dirty: false,
            decompressed: 0,
            streaming: false,
            out_pos: 0,
            replay_skip: 0,
            failures: 0,
            received_at_last_failure: 0,
            resumes: 0,
            url_refreshes: 0,
            retry: config.retry().clone(),
            jitter: Backoff::new(seed),
            phase: Phase::Ready,
        })
    }

    /// One transfer per object of a finished query, in order. Refuses a result in which
    /// two objects would be saved under the same file name, so no download can overwrite
    /// another.
    pub fn for_result(
        config: &Config,
        result: &crate::QueryResult,
        decompress: bool,
    ) -> Result<Vec<Self>, ArgumentError> {
        let mut names = std::collections::HashSet::new();
        result
            .objects
            .iter()
            .map(|object| {
                let transfer = Self::new(config, object.clone(), result.format, decompress)?;
                if !names.insert(transfer.file_name().to_owned()) {
                    return Err(ArgumentError::new(format!(
                        "two objects of job {} share the file name {}",
                        result.job,
                        transfer.file_name()
                    )));
                }
                Ok(transfer)
            })
            .collect()
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
    pub fn poll(&mut self, now: Instant) -> TransferStep {
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

    /// Supplies a fresh URL after [`TransferStep::NeedUrl`].
    pub fn set_url(&mut self, url: PresignedUrl) {
        self.url = url;
        if matches!(self.phase, Phase::NeedUrl) {
            self.phase = Phase::Ready;
        }
    }

    /// Reports the status and headers of the response to the last request.
    pub fn on_head(&mut self, status: StatusCode, headers: &HeaderMap, now: Instant) -> HeadAction {
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
                        false
                    }
                };
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
                self.fail_attempt(now, None);
                HeadAction::Discard
            }
            Err(error) if error.is_retryable() => {
                self.fail_attempt(now, Some(error));
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

    /// Streams a piece of the body: verifies it and hands the bytes to write to `sink`
    /// (the raw bytes, or the decompressed ones with `decompress`). An error ends the
    /// transfer; the caller should stop reading.
    pub fn on_body(
        &mut self,
        chunk: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), TransferError> {
        if !matches!(self.phase, Phase::Body) {
            return Ok(());
        }
        let len = chunk.len() as u64;
        if let Some(expected) = self.expected {
            if self.received.saturating_add(len) > expected {
                return Err(self.fail(TransferError::TooLong {
                    object: self.object.clone(),
                    expected,
                }));
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
                return Err(self.fail(TransferError::Corrupt {
                    object: self.object.clone(),
                    error,
                }));
            }
        } else {
            emit(chunk);
        }
        if !chunk.is_empty() {
            self.dirty = true;
        }
        self.received += len;
        Ok(())
    }

    /// Reports that the body ended cleanly (the connection did not fail).
    pub fn on_body_end(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Body) {
            return;
        }
        if self.expected.is_some_and(|e| self.received < e) {
            // Fewer bytes than announced: resume from where it stopped.
            self.fail_attempt(now, None);
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
            decompressed_bytes,
            resumes: self.resumes,
            url_refreshes: self.url_refreshes,
        });
    }

    /// Reports that the request failed: no connection, or the body broke off. The
    /// transfer resumes from the last byte received after a backoff, within the retry
    /// policy (attempts count anew whenever bytes arrived since the last failure).
    pub fn on_failure(&mut self, now: Instant) {
        if matches!(self.phase, Phase::AwaitingHead | Phase::Body) {
            self.fail_attempt(now, None);
        }
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
        self.phase = Phase::Failed(error.clone());
        error
    }

    fn fail_attempt(&mut self, now: Instant, error: Option<StorageError>) {
        if self.received > self.received_at_last_failure {
            self.failures = 0;
        }
        self.received_at_last_failure = self.received;
        self.failures += 1;
        if self.failures >= self.retry.max_attempts {
            let object = self.object.clone();
            self.fail(match error {
                Some(error) => TransferError::Storage { object, error },
                None => TransferError::Transport {
                    object,
                    attempts: self.failures,
                },
            });
            return;
        }
        let delay = self.jitter.delay(&self.retry, self.failures);
        self.phase = Phase::Sleep(now + delay);
    }
}
