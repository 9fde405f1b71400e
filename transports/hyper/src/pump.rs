//! The download pump: a [`Download`] driven in the caller's task; each lent [`Fetch`]
//! runs on its own task, its body streamed to a blocking worker that verifies, inflates
//! and writes (a file, or records into a stream).

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use dap_client::IntoDownload;
use dap_client::pump::{self, Job, Lease, Sink, Step};
use dap_proto::{Fetch, Format, TransportFailure};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::mpsc;

use crate::net::next_chunk;
use crate::{Client, DownloadOptions, DownloadedFile, Error};

/// Body chunks in flight between the network reader and the worker, per object.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Records buffered between the download and the stream's consumer.
const RECORDS_IN_FLIGHT: usize = 1024;

/// Where a fetch's output goes.
enum Out {
    File(Lease),
    Records(mpsc::Sender<Result<Bytes, Error>>),
}

impl Sink for Out {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match self {
            Self::File(lease) => lease.write(bytes),
            Self::Records(tx) => tx
                .blocking_send(Ok(Bytes::copy_from_slice(bytes)))
                .map_err(|_| Error::Usage("the record stream was dropped".to_owned())),
        }
    }

    fn restart(&mut self) -> Result<(), Error> {
        self.lease().map_or(Ok(()), Sink::restart)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.lease().map_or(Ok(()), Sink::finish)
    }
}

impl Out {
    fn lease(&mut self) -> Option<&mut Lease> {
        match self {
            Self::File(lease) => Some(lease),
            Self::Records(_) => None,
        }
    }
}

/// What comes back to the pump.
enum Back {
    Fetch(Fetch, Out, Result<(), Error>),
    Session(Result<dap_proto::Outcome, Error>),
}

pub(crate) async fn download(
    client: &Client,
    result: impl IntoDownload,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<Vec<DownloadedFile>, Error> {
    let job = Job::files(client.config(), result, dir, options)?;
    run(client, job, None).await
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Drives `job` to its end; records go to `records`. Its steps (file I/O) run on the
/// blocking pool, each fetch on its own task.
async fn run(
    client: &Client,
    mut job: Job,
    records: Option<mpsc::Sender<Result<Bytes, Error>>>,
) -> Result<Vec<DownloadedFile>, Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Back>();
    loop {
        let step;
        (job, step) = blocking(move || {
            let step = job.next(Instant::now());
            (job, step)
        })
        .await;
        let deadline = match step {
            Step::Fetch(fetch, lease) => {
                let out = match (lease, &records) {
                    (Some(lease), _) => Out::File(lease),
                    (None, Some(records)) => Out::Records(records.clone()),
                    (None, None) => return Err(Error::internal("a download without a sink")),
                };
                tokio::spawn(run_fetch(client.clone(), fetch, out, tx.clone()));
                continue;
            }
            Step::Session(command) => {
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(Back::Session(client.run(command).await));
                });
                continue;
            }
            Step::Done(result) => return result,
            Step::Wait(deadline) => deadline,
            _ => return Err(Error::internal("unknown download step")),
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(back) = rx.recv() => match back {
                Back::Fetch(fetch, out, written) => {
                    let lease = match out { Out::File(lease) => Some(lease), Out::Records(_) => None };
                    job.fetch_done(fetch, lease, written, Instant::now());
                }
                Back::Session(result) => job.session_done(result, Instant::now()),
            },
            () = sleep => {}
        }
    }
}

/// Sends one fetch and streams its answer into `out`, then hands both back.
async fn run_fetch(client: Client, fetch: Fetch, out: Out, back: mpsc::UnboundedSender<Back>) {
    let (fetch, out, written) = exchange(&client, fetch, out).await;
    let _ = back.send(Back::Fetch(fetch, out, written));
}

/// The body goes in chunks over a bounded channel to a blocking worker that verifies,
/// inflates and writes, so reading, inflating and writing overlap.
async fn exchange(
    client: &Client,
    mut fetch: Fetch,
    mut out: Out,
) -> (Fetch, Out, Result<(), Error>) {
    let (parts, mut body) = match client.inner.net.send(fetch.take_request()).await {
        Ok(response) => response.into_parts(),
        Err(failure) => {
            pump::failed(&mut fetch, failure);
            return (fetch, out, Ok(()));
        }
    };
    match pump::head(&mut fetch, parts.status, &parts.headers, &mut out) {
        Ok(true) => {}
        other => return (fetch, out, other.map(drop)),
    }
    let (tx, mut rx) = mpsc::channel::<Result<Option<Bytes>, TransportFailure>>(CHUNKS_IN_FLIGHT);
    let wait = fetch
        .read_timeout()
        .min(client.inner.net.options.read_timeout);
    let worker = tokio::task::spawn_blocking(move || {
        let mut written = Ok(());
        while let Some(piece) = rx.blocking_recv() {
            let piece = piece.as_ref().map(Option::as_deref).map_err(Clone::clone);
            match pump::feed(&mut fetch, piece, &mut out) {
                Ok(flow) if flow.is_continue() => {}
                other => {
                    written = other.map(drop);
                    break;
                }
            }
        }
        (fetch, out, written)
    });
    loop {
        let piece = next_chunk(&mut body, wait).await;
        let last = !matches!(piece, Ok(Some(_)));
        if tx.send(piece).await.is_err() || last {
            break;
        }
    }
    drop((tx, body));
    match worker.await {
        Ok(parts) => parts,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Error>> + Send>>;

/// A stream of records (see [`Client::records`] and [`Client::json_records`]); `Unpin`,
/// so `.next()` works without pinning. It ends after its first error.
pub struct RecordStream<T>(Boxed<T>);

/// The records of a query result, raw.
pub type Records = RecordStream<Bytes>;
/// The records of a `jsonl` query result, parsed.
pub type JsonRecords = RecordStream<serde_json::Value>;

impl<T: Send + 'static> RecordStream<T> {
    /// `items`, ending after the first error.
    fn until_error(items: impl Stream<Item = Result<T, Error>> + Send + 'static) -> Self {
        Self(Box::pin(items.scan(false, |failed, item| {
            let stop = *failed;
            *failed = item.is_err();
            std::future::ready((!stop).then_some(item))
        })))
    }
}

impl Records {
    pub(crate) fn new(client: Client, result: impl IntoDownload) -> Self {
        let download = Job::records(client.config(), result);
        let started = stream::once(async move {
            let download = match download {
                Ok(download) => download,
                Err(e) => return stream::iter([Err(e)]).boxed(),
            };
            let (tx, rx) = mpsc::channel(RECORDS_IN_FLIGHT);
            tokio::spawn(async move {
                if let Err(e) = run(&client, download, Some(tx.clone())).await {
                    let _ = tx.send(Err(e)).await;
                }
            });
            stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed()
        });
        Self::until_error(started.flatten())
    }
}

impl JsonRecords {
    pub(crate) fn new(records: Records, format: Format) -> Self {
        if let Err(e) = dap_client::json_format(format) {
            return Self::until_error(stream::iter([Err(e)]));
        }
        Self::until_error(records.filter_map(|record| {
            std::future::ready(match record {
                Ok(line) => dap_client::json_record(&line),
                Err(e) => Some(Err(e)),
            })
        }))
    }
}

impl<T> Stream for RecordStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl<T> std::fmt::Debug for RecordStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream").finish_non_exhaustive()
    }
}
