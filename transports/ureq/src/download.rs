//! Object downloads: one [`Transfer`] per object, streamed to a temporary file that is
//! renamed only once the transfer reports the object complete and verified.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use dap_proto::download::{job_dir, partial_name};
use dap_proto::{
    ArgumentError, HeadAction, ObjectId, PresignedUrl, QueryResult, Transfer, TransferError,
    TransferStep,
};

use crate::{Client, DownloadOptions, DownloadedFile, Error, net, sleep_until};

/// Size of the buffer each download reads the body into.
const READ_BUFFER: usize = 256 << 10;
/// Size of the write buffer in front of each file.
const WRITE_BUFFER: usize = 256 << 10;

pub(crate) fn download(
    client: &Client,
    result: &QueryResult,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<Vec<DownloadedFile>, Error> {
    let transfers = Transfer::for_result(client.config(), result, options.decompress)
        .map_err(|e| Error::Dap(dap_proto::Error::Argument(e)))?;
    let dir = dir.join(job_dir(&result.job));
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let objects: Vec<Mutex<Option<Transfer>>> =
        transfers.into_iter().map(|t| Mutex::new(Some(t))).collect();
    // Each worker takes the transfer at the index it claims.
    let take =
        |slot: &Mutex<Option<Transfer>>| slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let workers = options.concurrency.clamp(1, objects.len().max(1));
    let abort = AtomicBool::new(false);
    let job = Job {
        client,
        dir: &dir,
        abort: &abort,
    };
    let mut slots: Vec<Option<Result<Option<DownloadedFile>, Error>>> =
        (0..objects.len()).map(|_| None).collect();
    if workers == 1 {
        for (object, slot) in objects.iter().zip(&mut slots) {
            let Some(transfer) = take(object) else { break };
            let outcome = job.object(transfer);
            let failed = outcome.is_err();
            *slot = Some(outcome);
            if failed {
                break;
            }
        }
    } else {
        let next = AtomicUsize::new(0);
        let shared = Mutex::new(&mut slots);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !abort.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(transfer) = objects.get(i).and_then(take) else {
                            break;
                        };
                        let outcome = job.object(transfer);
                        if outcome.is_err() {
                            abort.store(true, Ordering::Relaxed);
                        }
                        let mut slots = shared.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(slot) = slots.get_mut(i) {
                            *slot = Some(outcome);
                        }
                    }
                });
            }
        });
    }
    let mut files = Vec::with_capacity(objects.len());
    let mut first_error = None;
    for slot in slots {
        match slot {
            Some(Ok(Some(file))) => files.push(file),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Some(Ok(None)) | None => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if files.len() == objects.len() => Ok(files),
        None => Err(Error::Usage("the download was interrupted".to_owned())),
    }
}

/// What every object of one download shares.
struct Job<'a> {
    client: &'a Client,
    dir: &'a Path,
    abort: &'a AtomicBool,
}

impl Job<'_> {
    /// Downloads one object; `Ok(None)` when cancelled because another object failed.
    fn object(&self, mut transfer: Transfer) -> Result<Option<DownloadedFile>, Error> {
        let final_path = self.dir.join(transfer.file_name());
        let mut out = PartialFile::create(self.dir.join(partial_name(transfer.file_name())))?;
        let mut buf = vec![0u8; READ_BUFFER];
        let started = Instant::now();
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let now = Instant::now();
            match transfer.poll(now) {
                TransferStep::Send(request) => {
                    fetch(
                        self.client,
                        &mut transfer,
                        request,
                        &mut out,
                        &mut buf,
                        self.abort,
                    )?;
                }
                TransferStep::Wait(until) => sleep_until(until),
                TransferStep::NeedUrl => {
                    let url = fresh_url(self.client, transfer.object())?;
                    transfer.set_url(url);
                }
                TransferStep::InFlight => {
                    // Every request is reported before polling again; should the
                    // transfer still think one is out, count it as failed.
                    transfer.on_failure(now);
                }
                TransferStep::Done(summary) => {
                    let bytes = out.persist(&final_path)?;
                    tracing::debug!(
                        object = %summary.object,
                        file = %final_path.display(),
                        bytes,
                        resumes = summary.resumes,
                        url_refreshes = summary.url_refreshes,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "object downloaded"
                    );
                    return Ok(Some(DownloadedFile::new(&summary, final_path, bytes)));
                }
                TransferStep::Failed(error) => return Err(Error::Transfer(error)),
                other => {
                    return Err(Error::Usage(format!(
                        "internal: unknown transfer step {other:?}"
                    )));
                }
            }
        }
    }
}

/// A fresh URL for `object` from the session.
pub(crate) fn fresh_url(client: &Client, object: &ObjectId) -> Result<PresignedUrl, Error> {
    let set = client.object_urls(std::slice::from_ref(object))?;
    set.urls
        .into_iter()
        .find(|u| &u.id == object)
        .map(|u| u.url)
        .ok_or_else(|| {
            Error::Transfer(TransferError::Argument(ArgumentError::new(format!(
                "the object URL refresh returned no URL for {object}"
            ))))
        })
}

/// Sends one GET of a transfer and streams its body into `out`.
fn fetch(
    client: &Client,
    transfer: &mut Transfer,
    request: http::Request<Vec<u8>>,
    out: &mut PartialFile,
    buf: &mut [u8],
    abort: &AtomicBool,
) -> Result<(), Error> {
    let target = net::target(request.uri());
    let started = Instant::now();
    let response = match net::send(client.agent(), request) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(target, error = %e, "storage request failed");
            transfer.on_failure(Instant::now());
            return Ok(());
        }
    };
    let status = response.status();
    tracing::debug!(
        target,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage response"
    );
    let HeadAction::ReadBody { truncate } =
        transfer.on_head(status, response.headers(), Instant::now())
    else {
        return Ok(());
    };
    if truncate {
        out.truncate()?;
    }
    let mut reader = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    loop {
        if abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        match reader.read(buf) {
            Ok(0) => {
                transfer.on_body_end(Instant::now());
                return Ok(());
            }
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                let mut write_error = None;
                let fed = transfer.on_body(chunk, |bytes| {
                    if write_error.is_none() {
                        if let Err(e) = out.write_all(bytes) {
                            write_error = Some(e);
                        }
                    }
                });
                if let Some(e) = write_error {
                    return Err(Error::io(&out.path, e));
                }
                fed?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(target, error = %dap_proto::client::redact_queries(&e.to_string()), "storage body broke off");
                transfer.on_failure(Instant::now());
                return Ok(());
            }
        }
    }
}

/// A file written under a temporary name; removed on drop unless persisted.
struct PartialFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    written: u64,
}

impl PartialFile {
    fn create(path: PathBuf) -> Result<Self, Error> {
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            path,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            written: 0,
        })
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the file is already closed"))
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Discards everything written (the server restarted from byte 0).
    fn truncate(&mut self) -> Result<(), Error> {
        let result = (|| {
            let w = self.writer()?;
            w.flush()?;
            w.get_mut().set_len(0)?;
            w.get_mut().seek(SeekFrom::Start(0))?;
            Ok(())
        })();
        self.written = 0;
        result.map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes, fsyncs and renames the file to `final_path`; returns the bytes written.
    fn persist(mut self, final_path: &Path) -> Result<u64, Error> {
        let result = (|| {
            let mut w = self
                .file
                .take()
                .ok_or_else(|| io::Error::other("the file is already closed"))?;
            w.flush()?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_data()?;
            drop(file);
            Ok(())
        })();
        result.map_err(|e| Error::io(&self.path, e))?;
        fs::rename(&self.path, final_path).map_err(|e| Error::io(final_path, e))?;
        // Renamed: nothing left to remove.
        self.path = PathBuf::new();
        Ok(self.written)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}
