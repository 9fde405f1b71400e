//! Object downloads: one [`Transfer`] per object, its body handed in chunks over a
//! bounded channel to a blocking worker that verifies (and optionally inflates) it and
//! writes the result, so network reads, gzip work and disk writes overlap and memory
//! stays flat whatever the object size.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dap_proto::records::{RecordError, RecordSplitter};
use dap_proto::{HeadAction, Transfer, TransferStep, TransferSummary};
use tokio::sync::mpsc;

use crate::Client;
use crate::Error;
use crate::net::next_chunk;

/// Body chunks in flight between the network reader and the worker, per object.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Write buffer of a file sink.
const WRITE_BUFFER: usize = 256 * 1024;

/// Why a sink stopped.
pub(crate) enum SinkError {
    /// A real error: report it.
    Error(Error),
    /// The consumer went away: stop quietly.
    Closed,
}

/// Where the bytes a [`Transfer`] yields go. Runs on a blocking thread.
pub(crate) trait Sink: Send + 'static {
    /// Discards everything written so far (the server restarted from byte 0).
    fn restart(&mut self) -> Result<(), SinkError>;
    /// Takes the next bytes.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError>;
    /// The current response's body ended.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// Writes to a (temporary) file.
pub(crate) struct FileSink {
    file: BufWriter<File>,
    path: PathBuf,
}

impl FileSink {
    fn io(&self, e: std::io::Error) -> SinkError {
        SinkError::Error(Error::io(&self.path, e))
    }
}

impl Sink for FileSink {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.file.flush().map_err(|e| self.io(e))?;
        let file = self.file.get_mut();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| SinkError::Error(Error::io(&self.path, e)))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.file.write_all(bytes).map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.file.flush().map_err(|e| self.io(e))
    }
}

/// Splits decompressed bytes into records and sends them to a stream.
pub(crate) struct RecordSink {
    splitter: RecordSplitter,
    tx: mpsc::Sender<Result<Bytes, Error>>,
}

impl RecordSink {
    pub(crate) fn new(splitter: RecordSplitter, tx: mpsc::Sender<Result<Bytes, Error>>) -> Self {
        Self { splitter, tx }
    }

    /// Emits the last, unterminated record, if any.
    pub(crate) async fn finish(self) -> Result<(), SinkError> {
        let mut last = None;
        let _ = self
            .splitter
            .finish(|r| {
                last = Some(Bytes::copy_from_slice(r));
                ControlFlow::<()>::Continue(())
            })
            .map_err(|e| SinkError::Error(record_error(&e)))?;
        if let Some(record) = last {
            self.tx
                .send(Ok(record))
                .await
                .map_err(|_| SinkError::Closed)?;
        }
        Ok(())
    }
}

pub(crate) fn record_error(error: &RecordError) -> Error {
    Error::from(error.clone())
}

impl Sink for RecordSink {
    fn restart(&mut self) -> Result<(), SinkError> {
        // Record transfers are streaming (`Transfer::streaming`): the core skips output
        // already handed out and never asks for a truncation.
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let tx = &self.tx;
        match self.splitter.push(bytes, |record| {
            match tx.blocking_send(Ok(Bytes::copy_from_slice(record))) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        }) {
            Ok(ControlFlow::Continue(())) => Ok(()),
            Ok(ControlFlow::Break(())) => Err(SinkError::Closed),
            Err(e) => Err(SinkError::Error(record_error(&e))),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Feeds the chunks of one response body to the transfer and the sink.
fn worker<S: Sink>(
    mut transfer: Transfer,
    mut sink: S,
    truncate: bool,
    mut chunks: mpsc::Receiver<Bytes>,
) -> (Transfer, S, Result<(), SinkError>) {
    if truncate {
        if let Err(e) = sink.restart() {
            return (transfer, sink, Err(e));
        }
    }
    while let Some(chunk) = chunks.blocking_recv() {
        let mut failed = None;
        let verified = transfer.on_body(&chunk, |bytes| {
            if failed.is_none() {
                if let Err(e) = sink.write(bytes) {
                    failed = Some(e);
                }
            }
        });
        if let Some(e) = failed {
            return (transfer, sink, Err(e));
        }
        if verified.is_err() {
            // The transfer is failed; `poll` reports why.
            break;
        }
    }
    let flushed = sink.flush();
    (transfer, sink, flushed)
}

/// How the network side of one response ended.
enum BodyEnd {
    Complete,
    Failed(String),
    WorkerStopped,
    Cancelled,
}

impl Client {
    /// Drives `transfer` to its end, writing through `sink`. `cancel` aborts early.
    pub(crate) async fn run_transfer<S: Sink>(
        &self,
        mut transfer: Transfer,
        mut sink: S,
        cancel: &AtomicBool,
    ) -> Result<(TransferSummary, S), SinkError> {
        let net = self.net();
        let read_timeout = net.options.read_timeout;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(SinkError::Closed);
            }
            match transfer.poll(Instant::now()) {
                TransferStep::Send(request) => {
                    let started = Instant::now();
                    let object = transfer.object().clone();
                    let response = match net.send(request).await {
                        Ok(r) => r,
                        Err(failure) => {
                            tracing::debug!(%object, error = %failure.0, "download request failed");
                            transfer.on_failure(Instant::now());
                            continue;
                        }
                    };
                    let (parts, mut body) = response.into_parts();
                    tracing::debug!(%object, status = parts.status.as_u16(), offset = transfer.received(), "storage response");
                    let HeadAction::ReadBody { truncate } =
                        transfer.on_head(parts.status, &parts.headers, Instant::now())
                    else {
                        continue;
                    };
                    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
                    let job =
                        tokio::task::spawn_blocking(move || worker(transfer, sink, truncate, rx));
                    let mut end = BodyEnd::Complete;
                    loop {
                        if cancel.load(Ordering::Relaxed) {
                            end = BodyEnd::Cancelled;
                            break;
                        }
                        match next_chunk(&mut body, read_timeout).await {
                            Ok(Some(chunk)) => {
                                if tx.send(chunk).await.is_err() {
                                    end = BodyEnd::WorkerStopped;
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(failure) => {
                                end = BodyEnd::Failed(failure.0);
                                break;
                            }
                        }
                    }
                    drop(tx);
                    drop(body);
                    let (t, s, written) = job.await.map_err(|e| {
                        SinkError::Error(Error::Usage(format!("download worker failed: {e}")))
                    })?;
                    transfer = t;
                    sink = s;
                    written?;
                    let now = Instant::now();
                    match end {
                        BodyEnd::Complete => transfer.on_body_end(now),
                        BodyEnd::Failed(error) => {
                            tracing::debug!(%object, %error, received = transfer.received(), "download broke off");
                            transfer.on_failure(now);
                        }
                        BodyEnd::WorkerStopped => {}
                        BodyEnd::Cancelled => return Err(SinkError::Closed),
                    }
                    tracing::trace!(%object, elapsed_ms = started.elapsed().as_millis() as u64, "response body done");
                }
                TransferStep::Wait(at) => tokio::time::sleep_until(at.into()).await,
                TransferStep::NeedUrl => {
                    let object = transfer.object().clone();
                    tracing::debug!(%object, "storage refused the URL; fetching a fresh one");
                    let set = self
                        .object_urls(std::slice::from_ref(&object))
                        .await
                        .map_err(SinkError::Error)?;
                    let url = set
                        .urls
                        .into_iter()
                        .find(|u| u.id == object)
                        .ok_or_else(|| {
                            SinkError::Error(Error::Usage(format!(
                                "the API returned no URL for object {object}"
                            )))
                        })?;
                    transfer.set_url(url.url);
                }
                TransferStep::Done(summary) => return Ok((summary, sink)),
                TransferStep::Failed(error) => {
                    return Err(SinkError::Error(Error::Transfer(error)));
                }
                // `InFlight` cannot happen: every request is answered before polling.
                _ => {
                    return Err(SinkError::Error(Error::Usage(
                        "internal: transfer polled while a request is in flight".to_owned(),
                    )));
                }
            }
        }
    }

    /// Downloads one object to `dir/<file name>` through a temporary file.
    pub(crate) async fn download_one(
        &self,
        transfer: Transfer,
        dir: &Path,
        cancel: &AtomicBool,
    ) -> Result<crate::DownloadedFile, SinkError> {
        let final_path = dir.join(transfer.file_name());
        let temp_path = dir.join(dap_proto::download::partial_name(transfer.file_name()));
        let opened = {
            let temp_path = temp_path.clone();
            tokio::task::spawn_blocking(move || File::create(&temp_path))
                .await
                .map_err(|e| SinkError::Error(Error::Usage(format!("blocking task failed: {e}"))))?
        };
        let file = opened.map_err(|e| SinkError::Error(Error::io(&temp_path, e)))?;
        let sink = FileSink {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            path: temp_path.clone(),
        };
        let outcome = self.run_transfer(transfer, sink, cancel).await;
        let finished = match outcome {
            Ok((summary, sink)) => {
                let temp = temp_path.clone();
                let target = final_path.clone();
                tokio::task::spawn_blocking(move || finalize(sink, &temp, &target))
                    .await
                    .map_err(|e| {
                        SinkError::Error(Error::Usage(format!("blocking task failed: {e}")))
                    })
                    .and_then(|r| r.map_err(SinkError::Error))
                    .map(|bytes| crate::DownloadedFile::new(&summary, final_path.clone(), bytes))
            }
            Err(e) => Err(e),
        };
        if finished.is_err() {
            let temp = temp_path.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(temp)).await;
        }
        finished
    }
}

/// Flushes, fsyncs and renames a verified download; returns its size.
fn finalize(sink: FileSink, temp: &Path, target: &Path) -> Result<u64, Error> {
    let file = sink
        .file
        .into_inner()
        .map_err(|e| Error::io(temp, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(temp, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(temp, e))?.len();
    drop(file);
    std::fs::rename(temp, target).map_err(|e| Error::io(target, e))?;
    if let Some(parent) = target.parent() {
        // Make the rename durable; not every platform can open a directory.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(bytes)
}
