//! [`Fetch`]: one storage request of a [`super::Download`], lent to the caller for the
//! time it takes to send it and stream its answer, then handed back.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, StatusCode};

use crate::error::TransportFailure;
use crate::model::ObjectId;
use crate::records::{RecordError, RecordSplitter};
use crate::transfer::{HeadAction, Transfer};

/// A storage GET lent out by [`super::Download::poll_output`]: send
/// [`Fetch::take_request`], report the answer through the `handle_*` methods, then give
/// it back with [`super::Download::handle_fetch`]. It is `Send`, so the body may be
/// streamed (and decompressed) on another thread.
///
/// ```text
/// take_request ─► send ─► handle_head ─ReadBody─► handle_body … ─► handle_body_end ─► give back
///                  │ no answer: handle_failure      │ Break: stop reading ────────────► give back
///                  └──────────── Discard ───────────────────────────────────────────► give back
/// ```
#[derive(Debug)]
pub struct Fetch {
    pub(super) index: usize,
    pub(super) transfer: Box<Transfer>,
    pub(super) request: Option<Box<Request<Vec<u8>>>>,
    pub(super) temp: Option<String>,
    pub(super) splitter: Option<RecordSplitter>,
    pub(super) record_error: Option<RecordError>,
    pub(super) cancel: Arc<AtomicBool>,
}

impl Fetch {
    /// The request to send (the first call takes it; later calls get an empty GET).
    pub fn take_request(&mut self) -> Request<Vec<u8>> {
        self.request.take().map(|r| *r).unwrap_or_default()
    }

    /// The object.
    pub fn object(&self) -> &ObjectId {
        self.transfer.object()
    }

    /// The temporary file the body is written to, relative to the download directory
    /// (`None` when streaming records). Create it on the first write (never following a
    /// link, never reusing an existing file) and keep it open until the download
    /// commits or discards it.
    pub fn temp_file(&self) -> Option<&str> {
        self.temp.as_deref()
    }

    /// The longest wait for the next piece of the body (the low-speed window): report a
    /// longer silence with [`Fetch::handle_failure`].
    pub fn read_timeout(&self) -> Duration {
        self.transfer.read_timeout()
    }

    /// Whether the object is complete and verified (after [`Fetch::handle_body_end`]).
    pub fn is_complete(&self) -> bool {
        matches!(self.transfer.outcome(), Some(Ok(_)))
    }

    /// Whether the download was cancelled (another object failed): stop and give back.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Reports the response's status and headers. With [`HeadAction::ReadBody`] and
    /// `truncate`, empty the temporary file first.
    pub fn handle_head(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        now: Instant,
    ) -> HeadAction {
        if self.is_cancelled() {
            self.transfer.handle_failure(cancelled(), now);
            return HeadAction::Discard;
        }
        self.transfer.handle_head(status, headers, now)
    }

    /// Streams a piece of the body, received at `now`, into `sink`: the bytes to write
    /// to the temporary file, or, when streaming records, one record per call (without
    /// its line terminator). `Break`: stop reading, drop the response, give back.
    pub fn handle_body(
        &mut self,
        chunk: &[u8],
        now: Instant,
        mut sink: impl FnMut(&[u8]),
    ) -> ControlFlow<()> {
        if self.is_cancelled() {
            self.transfer.handle_failure(cancelled(), now);
            return ControlFlow::Break(());
        }
        let Self {
            transfer,
            splitter,
            record_error,
            ..
        } = self;
        let flow = match splitter {
            None => transfer.handle_body(chunk, now, sink),
            Some(splitter) => transfer.handle_body(chunk, now, |bytes| {
                if record_error.is_some() {
                    return;
                }
                let split = splitter.push(bytes, |record| {
                    sink(record);
                    ControlFlow::<()>::Continue(())
                });
                if let Err(e) = split {
                    *record_error = Some(e);
                }
            }),
        };
        if self.record_error.is_some() {
            return ControlFlow::Break(());
        }
        flow
    }

    /// Reports that the body ended cleanly. When streaming records and the object is
    /// now complete, its last (unterminated) record goes to `sink`.
    pub fn handle_body_end(&mut self, now: Instant, mut sink: impl FnMut(&[u8])) {
        self.transfer.handle_body_end(now);
        if !self.transfer.is_finished() {
            return;
        }
        if let Some(splitter) = self.splitter.take() {
            let finished = splitter.finish(|record| {
                sink(record);
                ControlFlow::<()>::Continue(())
            });
            if let Err(e) = finished {
                self.record_error = Some(e);
            }
        }
    }

    /// Reports that the request failed: no connection, no data within
    /// [`Fetch::read_timeout`], or the body broke off. The object resumes later.
    pub fn handle_failure(&mut self, failure: TransportFailure, now: Instant) {
        self.transfer.handle_failure(failure, now);
    }
}

fn cancelled() -> TransportFailure {
    TransportFailure::new(
        crate::error::FailureKind::Other,
        "cancelled: another object failed",
    )
}
