//! The download pump: [`dap_proto::Download`] machines driven over ureq, into files
//! (a small thread pool) or into a lazy record iterator.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dap_client::pump::{self, Job, Sink, Step};
use dap_proto::{Fetch, QueryResult};

use crate::{Client, DownloadOptions, DownloadedFile, Error, net};

/// How much of a body is read at a time.
const READ_BUFFER: usize = 256 << 10;

/// A download shared by its worker threads, and its end.
type Shared = (Job, Option<Result<Vec<DownloadedFile>, Error>>);

pub(crate) fn download(
    client: &Client,
    result: &QueryResult,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<Vec<DownloadedFile>, Error> {
    let job = Job::files(client.config(), result, dir, options)?;
    let workers = options.concurrency.clamp(1, job.objects().max(1));
    let shared = Mutex::new((job, None));
    let wake = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(|| work(client, &shared, &wake));
        }
        work(client, &shared, &wake);
    });
    let (_, end) = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    end.unwrap_or_else(|| Err(Error::internal("a download never ended")))
}

/// One worker: pumps the shared download until it is done.
fn work(client: &Client, shared: &Mutex<Shared>, wake: &Condvar) {
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut st = lock();
    while st.1.is_none() {
        match st.0.next(Instant::now()) {
            Step::Fetch(mut fetch, mut lease) => {
                drop(st);
                let written = match &mut lease {
                    Some(lease) => fetch_into(client, &mut fetch, lease),
                    None => Err(Error::internal("a file download without a file")),
                };
                st = lock();
                st.0.fetch_done(fetch, lease, written, Instant::now());
            }
            Step::Session(command) => {
                drop(st);
                let result = client.run(command).map_err(Error::from);
                st = lock();
                st.0.session_done(result, Instant::now());
            }
            Step::Done(result) => st.1 = Some(result),
            Step::Wait(deadline) => st = sleep(wake, st, deadline),
            _ => st.1 = Some(Err(Error::internal("unknown download step"))),
        }
        wake.notify_all();
    }
}

/// Waits on `wake` until `deadline` (at most a second).
fn sleep<'a, T>(
    wake: &Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> std::sync::MutexGuard<'a, T> {
    let wait = deadline
        .map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now())
        })
        .min(Duration::from_secs(1));
    wake.wait_timeout(guard, wait)
        .unwrap_or_else(PoisonError::into_inner)
        .0
}

/// Sends a fetch and streams its answer into `sink`; only a local write error is
/// returned (everything else the fetch records).
fn fetch_into(client: &Client, fetch: &mut Fetch, sink: &mut dyn Sink) -> Result<(), Error> {
    let Some(mut body) = open(client, fetch, sink)? else {
        return Ok(());
    };
    let mut buf = vec![0u8; READ_BUFFER];
    while read_step(fetch, &mut body, &mut buf, sink)?.is_continue() {}
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
    pub(crate) fn new(client: Client, result: &QueryResult) -> Self {
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
    pub(crate) fn new(client: Client, result: &QueryResult) -> Self {
        let mut records = Records::new(client, result);
        if let Err(e) = dap_client::json_format(result.format) {
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
