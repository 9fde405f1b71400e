//! [`Download`]: the machine that owns a job's downloads.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{ArgumentError, Error};
use crate::model::{Format, ObjectId, ObjectUrl};
use crate::records::{RecordError, RecordKind, RecordSplitter};
use crate::secret::PresignedUrl;
use crate::session::{Command, Outcome, QueryResult};
use crate::transfer::{Transfer, TransferError, TransferStep, TransferSummary};

use super::Fetch;
use super::names::Names;

/// How a job is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadSpec {
    /// Hand out gzip objects decompressed (file names lose `.gz`). Parquet never is.
    pub decompress: bool,
    /// How many objects download at once (0 counts as 1). Streamed records always go
    /// one object at a time, in order.
    pub concurrency: usize,
    /// Stream records of this kind instead of writing files: objects in order, each
    /// decompressed and split, every record handed out exactly once.
    pub records: Option<RecordKind>,
    /// Makes this download's temporary file names unique (see
    /// [`super::temp_name`]); pass a random number.
    pub nonce: u64,
}

impl DownloadSpec {
    /// Files, `concurrency` at once, compressed objects kept as they are.
    pub fn files(concurrency: usize, decompress: bool, nonce: u64) -> Self {
        Self {
            decompress,
            concurrency,
            records: None,
            nonce,
        }
    }

    /// Records of a result in `format` (csv: RFC 4180 records; jsonl and tsv: lines).
    pub fn records(format: Format) -> Result<Self, ArgumentError> {
        let kind = match format {
            Format::Csv => RecordKind::Csv,
            Format::Jsonl | Format::Tsv => RecordKind::Lines,
            other => {
                return Err(ArgumentError::new(format!(
                    "records of {other} objects cannot be streamed; download them instead"
                )));
            }
        };
        Ok(Self {
            decompress: true,
            concurrency: 1,
            records: Some(kind),
            nonce: 0,
        })
    }
}

/// A verified object whose temporary file must now get its final name: check that the
/// file holds `len` bytes, fsync it, rename `temp` to `target`, fsync the directory.
/// On any failure, call [`Download::abort`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// The object.
    pub object: ObjectId,
    /// The temporary file, relative to the download directory.
    pub temp: String,
    /// The final file, relative to the download directory (`job_<id>/<name>`).
    pub target: String,
    /// Bytes the file must hold.
    pub len: u64,
}

impl Commit {
    /// A commit of `temp` to `target` holding `len` bytes (for tests of file layers).
    pub fn new(
        object: ObjectId,
        temp: impl Into<String>,
        target: impl Into<String>,
        len: u64,
    ) -> Self {
        Self {
            object,
            temp: temp.into(),
            target: target.into(),
            len,
        }
    }
}

/// Why a download failed. The first failure cancels the other objects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// An object failed: refused, corrupt, or the connection kept failing.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// Fresh URLs could not be had.
    #[error("refreshing object URLs failed: {0}")]
    Urls(Error),
    /// The job cannot be downloaded as asked: two of its objects would be saved under
    /// one name, or one has no usable name. [`Download::new`] refuses this up front for
    /// the URLs a result carries; for URLs fetched on demand it is found as they
    /// arrive, before any object of theirs starts.
    #[error(transparent)]
    Argument(ArgumentError),
    /// An object's records could not be split.
    #[error("{object}: {error}")]
    Records {
        /// The object.
        object: ObjectId,
        /// What was wrong.
        error: RecordError,
    },
    /// The caller aborted the download ([`Download::abort`]).
    #[error("the download was aborted")]
    Aborted,
    /// A state this crate believes impossible was reached (a bug here).
    #[error("internal error (please report it): {0}")]
    Internal(String),
}

/// What [`Download::poll_output`] asks of the caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum DownloadOutput {
    /// Send this storage request and stream its answer; give it back with
    /// [`Download::handle_fetch`]. Several may be out at once.
    Fetch(Fetch),
    /// Run this command (fresh object URLs) on the [`crate::Session`] and give its
    /// result to [`Download::handle_session_result`].
    Session(Command),
    /// Give a verified object its final name; see [`Commit`].
    Commit(Commit),
    /// Remove this temporary file (relative to the download directory) if it exists;
    /// its object was cancelled or failed.
    Discard(String),
    /// The download ended: every object, in the order of the query result (saved as
    /// `<job_dir>/<file_name>`), or the first failure. Polling after it yields
    /// `Wait(None)`.
    Done(Result<Vec<TransferSummary>, DownloadError>),
    /// Nothing to do now: call again at this instant, or when a fetch or a session
    /// result comes back (`None`: only then).
    Wait(Option<Instant>),
}

/// Where one object stands.
#[derive(Debug)]
enum Slot {
    /// Not started: no transfer, no decoder, no buffer; and no URL yet when the result
    /// left it to be fetched on demand.
    Pending {
        id: ObjectId,
        url: Option<PresignedUrl>,
    },
    /// Started and with the machine (ready to send, or sleeping before a retry).
    Active(Box<Parked>),
    /// Waiting for a fresh URL (expiring, or refused with a 403).
    NeedsUrl(Box<Parked>),
    /// Lent out as a [`Fetch`].
    Lent,
    /// Verified and committed; its summary waits in [`Download`]'s `summaries`.
    Done,
    /// Cancelled or failed; nothing more happens to it.
    Dropped,
}

/// A started object between two fetches.
#[derive(Debug)]
struct Parked {
    transfer: Transfer,
    splitter: Option<RecordSplitter>,
}

/// The URL request in flight, if any.
#[derive(Debug)]
enum Urls {
    Idle,
    Out(Vec<usize>),
}

/// The downloads of one job as a sans-IO state machine: it owns the concurrency window,
/// the order of results, cancel-on-first-error, URL refreshes (before a URL expires and
/// after storage refuses one), one [`Transfer`] per started object (resume, retries,
/// verification) and the names of the temporary and final files. The caller only moves
/// bytes and files.
///
/// The URLs of a result's [`pending`](QueryResult::pending) objects (a query run with
/// [`crate::Query::urls_on_demand`]) are fetched just in time, one batch of
/// [`Config::url_batch_size`] at a time: the next batch is asked for when fewer than a
/// window's worth of fetched URLs are left unstarted, so at most a batch plus a window
/// of URLs wait unused, whatever the job's size. Their file names are checked as they
/// arrive ([`DownloadError::Argument`] on a second object of one name).
///
/// ```text
///              ┌──── URL expires within the margin ───► NeedsUrl ◄── 403 ──┐
///              │                                          │ Session(ObjectUrls) batch
///  Pending ──(window has room)──► Active ──Fetch──► Lent ─┴─ given back ───┤
///                                   ▲  │ Wait(backoff)                      │
///                                   └──┴────────── retry / resume ──────────┤
///                                     Done ◄── Commit ◄── verified ─────────┘
///  any object failed ─► cancel the others (Discard their files) ─► Done(Err(first failure))
/// ```
///
/// Contract: drain [`Download::poll_output`] until `Wait`; act on each output; call
/// again when a fetch or a session result comes back, or at the instant `Wait` names.
/// `now` never goes backwards.
#[derive(Debug)]
pub struct Download {
    config: Config,
    job_dir: String,
    format: Format,
    spec: DownloadSpec,
    slots: Vec<Slot>,
    /// What each object that is done came to, in the order of the objects.
    summaries: Vec<Option<TransferSummary>>,
    /// When each object's URL was issued.
    issued: Vec<Instant>,
    /// The next object never started.
    next: usize,
    /// Objects started and not finished (active, waiting for a URL, or lent).
    active: BTreeSet<usize>,
    /// Objects waiting for a fresh URL.
    wants_url: BTreeSet<usize>,
    /// The first object whose URL was never asked for (the number of objects when
    /// every URL was); every object from it on is pending without a URL.
    unsigned_from: usize,
    /// The file names given out so far.
    names: Names,
    urls: Urls,
    outputs: VecDeque<DownloadOutput>,
    cancel: Arc<AtomicBool>,
    failure: Option<DownloadError>,
    finished: bool,
}

impl Download {
    /// The download of every object of `result`. Refuses a result in which two objects
    /// would be saved under one name, and records of a parquet result. The URLs stay
    /// shared with `result` for as long as the caller keeps it; see
    /// [`Download::from_result`] to let each go once its object is done.
    pub fn new(config: &Config, result: &QueryResult, spec: DownloadSpec) -> Result<Self, Error> {
        Self::from_result(config, result.clone(), spec)
    }

    /// Like [`Download::new`], taking the result: each object's pre-signed URL is freed
    /// as soon as the object is done, so memory does not grow with the job's objects
    /// (a job of 20,000 objects holds several megabytes of URLs).
    pub fn from_result(
        config: &Config,
        mut result: QueryResult,
        spec: DownloadSpec,
    ) -> Result<Self, Error> {
        let objects = std::mem::take(&mut result.objects);
        let pending = std::mem::take(&mut result.pending);
        let strip_gz = spec.decompress && result.format.is_gzip();
        let mut names = Names::new(result.job.clone(), spec.records.is_none(), strip_gz);
        for object in &objects {
            names.admit(&object.url)?;
        }
        let unsigned_from = objects.len();
        let slots: Vec<Slot> = objects
            .into_iter()
            .map(|o| Slot::Pending {
                id: o.id,
                url: Some(o.url),
            })
            .chain(
                pending
                    .into_iter()
                    .map(|id| Slot::Pending { id, url: None }),
            )
            .collect();
        let issued = vec![result.urls_issued_at; slots.len()];
        let summaries = std::iter::repeat_with(|| None).take(slots.len()).collect();
        Ok(Self {
            config: config.clone(),
            job_dir: super::job_dir(&result.job),
            format: result.format,
            spec,
            slots,
            summaries,
            issued,
            next: 0,
            active: BTreeSet::new(),
            wants_url: BTreeSet::new(),
            unsigned_from,
            names,
            urls: Urls::Idle,
            outputs: VecDeque::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            failure: None,
            finished: false,
        })
    }

    /// The directory of the job's files, relative to the download directory; create it
    /// before the first write.
    pub fn job_dir(&self) -> &str {
        &self.job_dir
    }

    /// How many objects the job has.
    pub fn objects(&self) -> usize {
        self.slots.len()
    }

    /// The next thing to do. Drain it until it returns [`DownloadOutput::Wait`].
    pub fn poll_output(&mut self, now: Instant) -> DownloadOutput {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        if self.finished {
            return DownloadOutput::Wait(None);
        }
        if self.failure.is_some() {
            return self.wind_down();
        }
        let mut deadline: Option<Instant> = None;
        let started: Vec<usize> = self.active.iter().copied().collect();
        for i in started {
            if let Some(output) = self.step_active(i, now, &mut deadline) {
                return output;
            }
            if self.failure.is_some() {
                return self.wind_down();
            }
        }
        if let Some(output) = self.start_next(now) {
            return output;
        }
        self.want_unsigned();
        if let Some(output) = self.request_urls() {
            return output;
        }
        if self.next >= self.slots.len() && self.active.is_empty() {
            return self.finish();
        }
        DownloadOutput::Wait(deadline)
    }

    /// Takes back a [`Fetch`] after its request ended (answered, failed or abandoned).
    pub fn handle_fetch(&mut self, fetch: Fetch, _now: Instant) {
        let Fetch {
            index,
            transfer,
            temp,
            splitter,
            record_error,
            ..
        } = fetch;
        if !matches!(self.slots.get(index), Some(Slot::Lent)) {
            return;
        }
        if let Some(error) = record_error {
            let object = transfer.object().clone();
            self.fail_object(index, temp, DownloadError::Records { object, error });
            return;
        }
        if self.failure.is_some() {
            self.drop_object(index, temp);
            return;
        }
        let parked = Box::new(Parked {
            transfer: *transfer,
            splitter,
        });
        match parked.transfer.outcome() {
            Some(Ok(summary)) => {
                let summary = summary.clone();
                self.active.remove(&index);
                if let Some(temp) = temp {
                    self.outputs.push_back(DownloadOutput::Commit(Commit {
                        object: summary.object.clone(),
                        temp,
                        target: format!("{}/{}", self.job_dir, summary.file_name),
                        len: summary.output_bytes,
                    }));
                }
                self.summaries[index] = Some(summary);
                self.slots[index] = Slot::Done;
            }
            Some(Err(error)) => {
                let error = DownloadError::Transfer(error.clone());
                self.fail_object(index, temp, error);
            }
            None if parked.transfer.needs_url() => {
                self.slots[index] = Slot::NeedsUrl(parked);
                self.refused(index);
            }
            None => self.slots[index] = Slot::Active(parked),
        }
    }

    /// Storage refused object `index`'s URL: it and the objects not yet started whose
    /// URLs are no younger (issued in the same batch or before) get fresh ones, in one
    /// request.
    fn refused(&mut self, index: usize) {
        self.wants_url.insert(index);
        let issued = self.issued[index];
        let batch = self.config.url_batch_size();
        let older: Vec<usize> = (self.next..self.unsigned_from)
            .filter(|&j| matches!(self.slots[j], Slot::Pending { url: Some(_), .. }))
            .filter(|&j| self.issued[j] <= issued)
            .take(batch.saturating_sub(self.wants_url.len()))
            .collect();
        self.wants_url.extend(older);
    }

    /// Takes the result of a [`DownloadOutput::Session`] command.
    pub fn handle_session_result(&mut self, result: Result<Outcome, Error>, now: Instant) {
        let Urls::Out(asked) = std::mem::replace(&mut self.urls, Urls::Idle) else {
            return;
        };
        let set = match result {
            Ok(Outcome::Urls(set)) => set,
            Ok(_) => {
                let e = Error::Internal("object URLs answered with another outcome".to_owned());
                return self.fail(DownloadError::Urls(e));
            }
            Err(e) => return self.fail(DownloadError::Urls(e)),
        };
        for index in asked {
            let Some(fresh) = set.urls.iter().find(|u| Some(&u.id) == self.id_of(index)) else {
                let object = self
                    .id_of(index)
                    .cloned()
                    .unwrap_or_else(|| ObjectId::new(""));
                let e = Error::Internal(format!("the API returned no URL for object {object}"));
                return self.fail(DownloadError::Urls(e));
            };
            self.issued[index] = now;
            let url = fresh.url.clone();
            if matches!(self.slots[index], Slot::Pending { url: None, .. }) {
                if let Err(e) = self.names.admit(&url) {
                    return self.fail(DownloadError::Argument(e));
                }
            }
            self.slots[index] = match std::mem::replace(&mut self.slots[index], Slot::Dropped) {
                Slot::Pending { id, .. } => Slot::Pending { id, url: Some(url) },
                Slot::NeedsUrl(mut parked) => {
                    parked.transfer.handle_url(url);
                    Slot::Active(parked)
                }
                other => other,
            };
        }
    }

    /// Abandons the download (for example after a local file error): nothing more is
    /// started, lent fetches stop at their next chunk, every temporary file is discarded,
    /// and the download ends with [`DownloadError::Aborted`] unless it already failed.
    pub fn abort(&mut self) {
        if !self.finished {
            self.fail(DownloadError::Aborted);
        }
    }

    fn id_of(&self, index: usize) -> Option<&ObjectId> {
        match self.slots.get(index)? {
            Slot::Pending { id, .. } => Some(id),
            Slot::Active(p) | Slot::NeedsUrl(p) => Some(p.transfer.object()),
            _ => None,
        }
    }

    fn temp_of(&self, index: usize) -> Option<String> {
        if self.spec.records.is_some() {
            return None;
        }
        let name = match self.slots.get(index)? {
            Slot::Active(p) | Slot::NeedsUrl(p) => p.transfer.file_name(),
            _ => return None,
        };
        Some(format!(
            "{}/{}",
            self.job_dir,
            super::temp_name(name, self.spec.nonce)
        ))
    }

    /// Whether the URL issued at `issued` for `url` must be refreshed before use.
    fn is_stale(&self, index: usize, url: &PresignedUrl, now: Instant) -> bool {
        let lifetime = super::url_lifetime(url, self.config.url_lifetime());
        let margin = Duration::from_secs(30).min(lifetime / 2);
        now.saturating_duration_since(self.issued[index]) + margin >= lifetime
    }

    /// Acts on one started object, if it has something to do.
    fn step_active(
        &mut self,
        i: usize,
        now: Instant,
        deadline: &mut Option<Instant>,
    ) -> Option<DownloadOutput> {
        let Slot::Active(parked) = &self.slots[i] else {
            return None;
        };
        if parked.transfer.is_due(now) && self.is_stale(i, parked.transfer.url(), now) {
            self.wait_for_url(i);
            return None;
        }
        let Slot::Active(parked) = &mut self.slots[i] else {
            return None;
        };
        match parked.transfer.poll_output(now) {
            TransferStep::Send(request) => Some(self.lend(i, request)),
            TransferStep::Wait(at) => {
                *deadline = Some(deadline.map_or(at, |d| d.min(at)));
                None
            }
            TransferStep::Failed(error) => {
                let temp = self.temp_of(i);
                self.fail_object(i, temp, DownloadError::Transfer(error));
                None
            }
            TransferStep::NeedUrl => {
                self.wait_for_url(i);
                self.refused(i);
                None
            }
            _ => None,
        }
    }

    /// Parks an active object until a fresh URL arrives.
    fn wait_for_url(&mut self, i: usize) {
        self.wants_url.insert(i);
        if let Slot::Active(p) = std::mem::replace(&mut self.slots[i], Slot::Dropped) {
            self.slots[i] = Slot::NeedsUrl(p);
        }
    }

    /// How many objects may be started and unfinished at once.
    fn window(&self) -> usize {
        match self.spec.records {
            Some(_) => 1,
            None => self.spec.concurrency.max(1),
        }
    }

    /// Starts the next object when the window has room and its URL is fresh.
    fn start_next(&mut self, now: Instant) -> Option<DownloadOutput> {
        if self.active.len() >= self.window() || self.next >= self.slots.len() {
            return None;
        }
        let i = self.next;
        let Slot::Pending { url, .. } = &self.slots[i] else {
            return None;
        };
        let refreshing = matches!(&self.urls, Urls::Out(asked) if asked.contains(&i));
        if refreshing || self.wants_url.contains(&i) {
            return None;
        }
        let Some(url) = url else {
            // Its URL is yet to be asked for ([`Download::want_unsigned`] does).
            return None;
        };
        if self.is_stale(i, url, now) {
            // Refresh this URL and the next ones in one batch, before any is used.
            let batch = self.config.url_batch_size();
            let stale: Vec<usize> = (i..self.unsigned_from)
                .filter(|&j| matches!(&self.slots[j], Slot::Pending { url: Some(u), .. } if self.is_stale(j, u, now)))
                .take(batch)
                .collect();
            self.wants_url.extend(stale);
            return None;
        }
        let Slot::Pending { id, url: Some(url) } =
            std::mem::replace(&mut self.slots[i], Slot::Lent)
        else {
            return None;
        };
        let url = ObjectUrl { id, url };
        let decompress = self.spec.decompress || self.spec.records.is_some();
        let transfer = match Transfer::new(&self.config, url, self.format, decompress) {
            Ok(t) if self.spec.records.is_some() => t.streaming(),
            Ok(t) => t,
            Err(e) => {
                self.slots[i] = Slot::Dropped;
                self.fail(DownloadError::Transfer(e.into()));
                return None;
            }
        };
        self.next += 1;
        self.active.insert(i);
        self.slots[i] = Slot::Active(Box::new(Parked {
            transfer,
            splitter: self.spec.records.map(RecordSplitter::new),
        }));
        let mut ignored = None;
        self.step_active(i, now, &mut ignored)
    }

    /// Wants the URLs of the next batch of objects that never had one once fewer than a
    /// window's worth of URLs are left (fetched or being fetched) for the objects not yet
    /// started: the next batch arrives before the window runs dry, and at most a batch
    /// and a window of URLs ever wait unused.
    fn want_unsigned(&mut self) {
        let left = self.unsigned_from.saturating_sub(self.next);
        if self.unsigned_from >= self.slots.len() || left >= self.window() {
            return;
        }
        let batch = self.config.url_batch_size().max(1);
        let end = self.slots.len().min(self.unsigned_from + batch);
        self.wants_url.extend(self.unsigned_from..end);
        self.unsigned_from = end;
    }

    /// Asks for fresh URLs when some are wanted and none are being fetched.
    fn request_urls(&mut self) -> Option<DownloadOutput> {
        if !matches!(self.urls, Urls::Idle) || self.wants_url.is_empty() {
            return None;
        }
        let batch: Vec<usize> = self
            .wants_url
            .iter()
            .copied()
            .take(self.config.url_batch_size())
            .collect();
        let objects: Vec<ObjectId> = batch
            .iter()
            .filter_map(|&i| self.id_of(i).cloned())
            .collect();
        for i in &batch {
            self.wants_url.remove(i);
        }
        self.urls = Urls::Out(batch);
        Some(DownloadOutput::Session(Command::ObjectUrls { objects }))
    }

    fn lend(&mut self, i: usize, request: http::Request<Vec<u8>>) -> DownloadOutput {
        let temp = self.temp_of(i);
        let Slot::Active(parked) = std::mem::replace(&mut self.slots[i], Slot::Lent) else {
            return DownloadOutput::Wait(None);
        };
        let Parked { transfer, splitter } = *parked;
        DownloadOutput::Fetch(Fetch {
            index: i,
            transfer: Box::new(transfer),
            request: Some(Box::new(request)),
            temp,
            splitter,
            record_error: None,
            cancel: Arc::clone(&self.cancel),
        })
    }

    /// An object failed: the download fails, the others are cancelled.
    fn fail_object(&mut self, index: usize, temp: Option<String>, error: DownloadError) {
        self.drop_object(index, temp);
        self.fail(error);
    }

    fn drop_object(&mut self, index: usize, temp: Option<String>) {
        self.active.remove(&index);
        self.wants_url.remove(&index);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Slot::Dropped;
        }
        if let Some(temp) = temp {
            self.outputs.push_back(DownloadOutput::Discard(temp));
        }
    }

    fn fail(&mut self, error: DownloadError) {
        self.cancel.store(true, Ordering::Relaxed);
        if self.failure.is_none() {
            tracing::debug!(%error, "download failed; cancelling the other objects");
            self.failure = Some(error);
        }
    }

    /// After a failure: discard what is with the machine, wait for what is lent, then
    /// report the failure.
    fn wind_down(&mut self) -> DownloadOutput {
        let started: Vec<usize> = self.active.iter().copied().collect();
        for i in started {
            if matches!(self.slots[i], Slot::Active(_) | Slot::NeedsUrl(_)) {
                let temp = self.temp_of(i);
                self.drop_object(i, temp);
            }
        }
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        let lent = self.slots.iter().any(|s| matches!(s, Slot::Lent));
        if lent || matches!(self.urls, Urls::Out(_)) {
            return DownloadOutput::Wait(None);
        }
        self.finished = true;
        let error = self.failure.clone().unwrap_or(DownloadError::Aborted);
        DownloadOutput::Done(Err(error))
    }

    fn finish(&mut self) -> DownloadOutput {
        self.finished = true;
        let all_done = std::mem::take(&mut self.slots)
            .iter()
            .all(|s| matches!(s, Slot::Done));
        // Collected in place: the summaries are not copied into a second list.
        let done: Option<Vec<TransferSummary>> =
            std::mem::take(&mut self.summaries).into_iter().collect();
        match done {
            Some(done) if all_done => DownloadOutput::Done(Ok(done)),
            _ => {
                let e = "a download ended with an unfinished object".to_owned();
                DownloadOutput::Done(Err(DownloadError::Internal(e)))
            }
        }
    }
}
