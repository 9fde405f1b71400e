//! What a transport does with a [`Fetch`] once its response arrives, written once: the
//! head decides whether the body is read (and whether the sink starts over), each piece
//! of the body goes through the fetch into a [`Sink`].

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::Instant;

use dap_proto::{Fetch, HeadAction, TransportFailure};
use http::{HeaderMap, StatusCode};

use crate::Error;
use crate::files::PartialFile;

/// Where a fetch's output goes: a temporary file, or records for a consumer.
pub trait Sink {
    /// Takes the next bytes (or the next record).
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// Forgets everything written: the object restarted from byte 0.
    fn restart(&mut self) -> Result<(), Error>;
    /// The object is complete and verified: make what was written durable (run where
    /// the bytes were written, so several files sync at once).
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

impl Sink for PartialFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        Self::write(self, bytes)
    }

    fn restart(&mut self) -> Result<(), Error> {
        self.truncate()
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.sync()
    }
}

impl Sink for VecDeque<Vec<u8>> {
    fn write(&mut self, record: &[u8]) -> Result<(), Error> {
        self.push_back(record.to_vec());
        Ok(())
    }

    fn restart(&mut self) -> Result<(), Error> {
        // Records stream: the core never asks to take one back.
        Ok(())
    }
}

/// Reports a request that got no response to the fetch.
pub fn failed(fetch: &mut Fetch, failure: TransportFailure) {
    tracing::debug!(object = %fetch.object(), error = %failure, "storage request failed");
    fetch.handle_failure(failure, Instant::now());
}

/// Reports a response head to the fetch; whether to read the body. Empties the sink
/// first when the object restarts from byte 0.
pub fn head(
    fetch: &mut Fetch,
    status: StatusCode,
    headers: &HeaderMap,
    sink: &mut dyn Sink,
) -> Result<bool, Error> {
    tracing::debug!(object = %fetch.object(), status = status.as_u16(), "storage response");
    match fetch.handle_head(status, headers, Instant::now()) {
        HeadAction::ReadBody { truncate } => {
            if truncate {
                sink.restart()?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Feeds one piece of a body (`Ok(Some(chunk))`, `Ok(None)` at its clean end, or the
/// failure that broke it) through the fetch into `sink`. `Break` once the response is
/// over; `Err` only for a local write error.
pub fn feed(
    fetch: &mut Fetch,
    piece: Result<Option<&[u8]>, TransportFailure>,
    sink: &mut dyn Sink,
) -> Result<ControlFlow<()>, Error> {
    let mut failed = None;
    let mut out = |bytes: &[u8]| {
        if failed.is_none() {
            failed = sink.write(bytes).err();
        }
    };
    let now = Instant::now();
    let flow = match piece {
        Ok(Some(chunk)) => fetch.handle_body(chunk, now, &mut out),
        Ok(None) => {
            fetch.handle_body_end(now, &mut out);
            if failed.is_none() && fetch.is_complete() {
                failed = sink.finish().err();
            }
            ControlFlow::Break(())
        }
        Err(failure) => {
            tracing::debug!(object = %fetch.object(), error = %failure, "storage body broke off");
            fetch.handle_failure(failure, now);
            ControlFlow::Break(())
        }
    };
    failed.map_or(Ok(flow), Err)
}

/// A temporary file lent with a fetch; give it back with [`Job::fetch_done`].
#[derive(Debug)]
pub struct Lease {
    temp: String,
    file: PartialFile,
}

impl Sink for Lease {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file.write(bytes)
    }

    fn restart(&mut self) -> Result<(), Error> {
        self.file.truncate()
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.file.sync()
    }
}

/// What [`Job::next`] asks of the transport.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Send the fetch and stream its answer into the lease (a file download) or the
    /// transport's record sink; then [`Job::fetch_done`].
    Fetch(Fetch, Option<Lease>),
    /// Run this command on the session; then [`Job::session_done`].
    Session(dap_proto::Command),
    /// The download ended: its files (none when streaming records), or the error.
    Done(Result<Vec<crate::DownloadedFile>, Error>),
    /// Call again at this instant, or when something comes back.
    Wait(Option<Instant>),
}

/// A [`dap_proto::Download`] with its files: the core decides, this applies the file
/// policy (open, commit, discard) and keeps the first local error; the transport only
/// moves fetches and session commands. Its steps do blocking file I/O.
#[derive(Debug)]
pub struct Job {
    download: dap_proto::Download,
    files: Option<crate::files::Files>,
    local: Option<Error>,
}

impl Job {
    /// The download of `result`'s objects into files under `dir`.
    pub fn files(
        config: &dap_proto::Config,
        result: impl crate::IntoDownload,
        dir: &std::path::Path,
        options: &crate::DownloadOptions,
    ) -> Result<Self, Error> {
        let download = result.into_download(config, options.spec())?;
        let files = crate::files::Files::new(dir, download.job_dir())?;
        Ok(Self {
            download,
            files: Some(files),
            local: None,
        })
    }

    /// The records of `result`, streamed.
    pub fn records(
        config: &dap_proto::Config,
        result: impl crate::IntoDownload,
    ) -> Result<Self, Error> {
        let spec = dap_proto::DownloadSpec::records(result.format())?;
        Ok(Self {
            download: result.into_download(config, spec)?,
            files: None,
            local: None,
        })
    }

    /// How many objects download at once, at most.
    pub fn objects(&self) -> usize {
        self.download.objects()
    }

    /// The next step.
    pub fn next(&mut self, now: Instant) -> Step {
        use dap_proto::DownloadOutput as O;
        loop {
            let failed = match self.download.poll_output(now) {
                O::Fetch(fetch) => match (&mut self.files, fetch.temp_file()) {
                    (None, _) => return Step::Fetch(fetch, None),
                    (Some(files), Some(temp)) => match files.take(temp) {
                        Ok(file) => {
                            let temp = temp.to_owned();
                            return Step::Fetch(fetch, Some(Lease { temp, file }));
                        }
                        Err(e) => {
                            self.download.handle_fetch(fetch, now);
                            e
                        }
                    },
                    (Some(_), None) => Error::internal("a file download without a file"),
                },
                O::Session(command) => return Step::Session(command),
                O::Commit(commit) => match self.files.as_mut().map(|f| f.commit(&commit)) {
                    Some(Err(e)) => e,
                    _ => continue,
                },
                O::Discard(temp) => {
                    if let Some(files) = &mut self.files {
                        files.discard(&temp);
                    }
                    continue;
                }
                O::Done(result) => return Step::Done(self.done(result)),
                O::Wait(at) => return Step::Wait(at),
                _ => Error::internal("unknown download output"),
            };
            self.abort(failed);
        }
    }

    /// Takes back a fetch and its lease; `written` is the local write error, if any.
    pub fn fetch_done(
        &mut self,
        fetch: Fetch,
        lease: Option<Lease>,
        written: Result<(), Error>,
        now: Instant,
    ) {
        if let (Some(files), Some(lease)) = (&mut self.files, lease) {
            files.put(&lease.temp, lease.file);
        }
        self.download.handle_fetch(fetch, now);
        if let Err(e) = written {
            self.abort(e);
        }
    }

    /// Takes the result of a [`Step::Session`] command.
    pub fn session_done(&mut self, result: Result<dap_proto::Outcome, Error>, now: Instant) {
        let result = result.map_err(|e| match e {
            Error::Dap(core) => core,
            other => dap_proto::Error::Internal(other.to_string()),
        });
        self.download.handle_session_result(result, now);
    }

    fn abort(&mut self, error: Error) {
        self.local.get_or_insert(error);
        self.download.abort();
    }

    fn done(
        &mut self,
        result: Result<Vec<dap_proto::TransferSummary>, dap_proto::DownloadError>,
    ) -> Result<Vec<crate::DownloadedFile>, Error> {
        let done = result.map_err(|e| Error::from_download(e, self.local.take()))?;
        let Some(files) = &self.files else {
            return Ok(Vec::new());
        };
        let job_dir = files.dir().join(self.download.job_dir());
        // One object at a time, so the summaries go as the records come.
        Ok(done
            .into_iter()
            .map(|summary| crate::DownloadedFile::new(&job_dir, &summary))
            .collect())
    }
}
