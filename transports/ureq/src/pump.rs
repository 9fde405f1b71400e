//! The download pump: [`dap_proto::Download`] machines driven over ureq, into files
//! (a small thread pool) or into a lazy record iterator.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Instant;

use dap_client::IntoDownload;
use dap_client::pump::{self, Job, Lease, Sink, Step};
use dap_proto::Fetch;

use crate::{Client, DownloadOptions, DownloadedFile, Error, net};

/// How much of a body is read at a time.
const READ_BUFFER: usize = 256 << 10;

/// A fetch handed to a worker, and handed back with what writing it gave.
type Lent = (Fetch, Lease);
type Returned = (Fetch, Lease, Result<(), Error>);

/// The calling thread pumps the job (every decision and all bookkeeping); workers only
/// send fetches and stream their bodies into files, `concurrency` at a time.
pub(crate) fn download(
    client: &Client,
    result: impl IntoDownload,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<Vec<DownloadedFile>, Error> {
    let mut job = Job::files(client.config(), result, dir, options)?;
    let workers = options.concurrency.clamp(1, job.objects().max(1));
    let (lend, lent) = mpsc::channel::<Lent>();
    let (give_back, returned) = mpsc::channel::<Returned>();
    let lent = Mutex::new(lent);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (lent, give_back) = (&lent, give_back.clone());
            scope.spawn(move || work(client, lent, &give_back));
        }
        let mut out = 0usize;
        let end = loop {
            match job.next(Instant::now()) {
                Step::Fetch(fetch, Some(lease)) => {
                    out += 1;
                    if lend.send((fetch, lease)).is_err() {
                        break Err(Error::internal("the download workers stopped"));
                    }
                }
                Step::Session(command) => {
                    let result = client.run(command).map_err(Error::from);
                    job.session_done(result, Instant::now());
                }
                Step::Done(result) => break result,
                Step::Wait(deadline) => {
                    let back = match (out, deadline) {
                        (0, None) => break Err(Error::internal("a download is stuck")),
                        (0, Some(at)) => {
                            std::thread::sleep(at.saturating_duration_since(Instant::now()));
                            continue;
                        }
                        (_, Some(at)) => returned
                            .recv_timeout(at.saturating_duration_since(Instant::now()))
                            .ok(),
                        (_, None) => returned.recv().ok(),
                    };
                    if let Some((fetch, lease, written)) = back {
                        out -= 1;
                        job.fetch_done(fetch, Some(lease), written, Instant::now());
                    }
                }
                _ => break Err(Error::internal("unknown download step")),
            }
        };
        drop(lend);
        end
    })
}

/// One worker: serves lent fetches until the job ends.
fn work(client: &Client, lent: &Mutex<mpsc::Receiver<Lent>>, give_back: &mpsc::Sender<Returned>) {
    // One read buffer per worker for the whole job, not one per object.
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let next = lent.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((mut fetch, mut lease)) = next else {
            return;
        };
        let written = fetch_into(client, &mut fetch, &mut lease, &mut buf);
        if give_back.send((fetch, lease, written)).is_err() {
            return;
        }
    }
}

/// Sends a fetch and streams its answer into `sink`; only a local write error is
/// returned (everything else the fetch records).
fn fetch_into(
    client: &Client,
    fetch: &mut Fetch,
    sink: &mut dyn Sink,
    buf: &mut [u8],
) -> Result<(), Error> {
    let Some(mut body) = open(client, fetch, sink)? else {
        return Ok(());
    };
    while read_step(fetch, &mut body, buf, sink)?.is_continue() {}
    Ok(())
}

/// Sends the fetch's request and reports its head; the body to read, if any.
fn open(
    client: &Client,
    fetch: &mut Fetch,
    sink: &mut dyn Sink,
) -> Result<Option<ureq::BodyReader<'static>>, Error> {
    let response = match net::send(&client.inner.agent, fetch.take_request(), None) {
        Ok(r) => r,
        Err(failure) => {
            pump::failed(fetch, failure);
            return Ok(None);
        }
    };
    if !pump::head(fetch, response.status(), response.headers(), sink)? {
        return Ok(None);
    }
    let body = response.into_body().into_with_config().limit(u64::MAX);
    Ok(Some(body.reader()))
}

/// Reads one piece of the body into the fetch; `Break` once the response is over.
fn read_step(
    fetch: &mut Fetch,
    body: &mut ureq::BodyReader<'static>,
    buf: &mut [u8],
    out: &mut dyn Sink,
) -> Result<ControlFlow<()>, Error> {
    let piece = loop {
        match body.read(buf) {
            Ok(n) => break Ok((n > 0).then(|| buf.get(..n).unwrap_or_default())),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(net::io_failure(&e)),
        }
    };
    pump::feed(fetch, piece, out)
}

/// The records of a query result, one `Vec<u8>` per record (without its line
/// terminator); see [`Client::records`]. Bodies are pulled from the network only as
/// records are consumed. After an error the iterator ends.
pub struct Records {
    client: Client,
    download: Option<Job>,
    current: Option<(Fetch, ureq::BodyReader<'static>)>,
    pending: VecDeque<Vec<u8>>,
    error: Option<Error>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("pending", &self.pending.len())
            .field("done", &self.download.is_none())
            .finish_non_exhaustive()
    }
}

impl Records {
    pub(crate) fn new(client: Client, result: impl IntoDownload) -> Self {
        let (download, error) = match Job::records(client.config(), result) {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            client,
            download,
            current: None,
            pending: VecDeque::new(),
            error,
            buf: vec![0; 64 << 10],
        }
    }

    /// Moves the stream one step on: reads one piece of the current body, or acts on
    /// the machine's next output. `Ok(false)` once the stream is over.
    fn advance(&mut self) -> Result<bool, Error> {
        let Some(download) = &mut self.download else {
            return Ok(false);
        };
        if let Some((fetch, body)) = &mut self.current {
            let written = read_step(fetch, body, &mut self.buf, &mut self.pending);
            if !matches!(written, Ok(ControlFlow::Continue(()))) {
                if let Some((fetch, _)) = self.current.take() {
                    download.fetch_done(fetch, None, written.map(drop), Instant::now());
                }
            }
            return Ok(true);
        }
        match download.next(Instant::now()) {
            Step::Fetch(mut fetch, _) => match open(&self.client, &mut fetch, &mut self.pending) {
                Ok(Some(body)) => self.current = Some((fetch, body)),
                other => download.fetch_done(fetch, None, other.map(drop), Instant::now()),
            },
            Step::Session(command) => {
                let result = self.client.run(command).map_err(Error::from);
                download.session_done(result, Instant::now());
            }
            Step::Done(result) => {
                self.download = None;
                result?;
                return Ok(false);
            }
            Step::Wait(Some(at)) => {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
            }
            _ => return Err(Error::internal("a record stream is stuck")),
        }
        Ok(true)
    }
}

impl Iterator for Records {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            if let Some(error) = self.error.take() {
                self.download = None;
                self.current = None;
                return Some(Err(error));
            }
            match self.advance() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => self.error = Some(e),
            }
        }
    }
}

impl std::iter::FusedIterator for Records {}

/// The records of a `jsonl` query result, parsed; see [`Client::json_records`].
#[derive(Debug)]
pub struct JsonRecords {
    records: Records,
}

impl JsonRecords {
    pub(crate) fn new(client: Client, result: impl IntoDownload) -> Self {
        let format = result.format();
        let mut records = Records::new(client, result);
        if let Err(e) = dap_client::json_format(format) {
            records.error.get_or_insert(e);
        }
        Self { records }
    }
}

impl Iterator for JsonRecords {
    type Item = Result<serde_json::Value, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let parsed = match self.records.next()? {
                Ok(line) => dap_client::json_record(&line),
                Err(e) => Some(Err(e)),
            };
            match parsed {
                None => {}
                Some(Err(e)) => {
                    self.records.download = None;
                    self.records.pending.clear();
                    return Some(Err(e));
                }
                Some(ok) => return Some(ok),
            }
        }
    }
}

impl std::iter::FusedIterator for JsonRecords {}
