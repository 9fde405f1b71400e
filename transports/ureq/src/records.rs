//! Streaming records: objects are fetched lazily, decompressed and verified through
//! their [`Transfer`], and split into records as the iterator is consumed.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::time::Instant;

use dap_proto::records::{RecordKind, RecordSplitter};
use dap_proto::{Format, HeadAction, ObjectUrl, QueryResult, Transfer, TransferStep};

use crate::download::fresh_url;
use crate::{Client, Error, net, sleep_until};

/// How much of a body is read at a time.
const CHUNK: usize = 64 << 10;

/// The records of a query result, one `Vec<u8>` per record (without its line
/// terminator); see [`Client::records`].
///
/// Bodies are pulled from the network only as records are consumed. A dropped
/// connection resumes where it stopped, an expired URL is refreshed, and a server that
/// restarts an object from its first byte yields no record twice. After an error the
/// iterator ends.
pub struct Records {
    client: Client,
    objects: std::vec::IntoIter<ObjectUrl>,
    format: Format,
    kind: RecordKind,
    current: Option<Current>,
    pending: VecDeque<Vec<u8>>,
    error: Option<Error>,
    done: bool,
    buf: Vec<u8>,
}

/// The object being streamed.
struct Current {
    transfer: Transfer,
    splitter: Option<RecordSplitter>,
    body: Option<ureq::BodyReader<'static>>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("format", &self.format)
            .field("objects_left", &self.objects.len())
            .field("pending", &self.pending.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Records {
    pub(crate) fn new(client: Client, result: &QueryResult) -> Self {
        let (kind, error) = match result.format {
            Format::Csv => (RecordKind::Csv, None),
            Format::Jsonl | Format::Tsv => (RecordKind::Lines, None),
            other => (
                RecordKind::Lines,
                Some(Error::Usage(format!(
                    "records of {other} objects cannot be streamed; download them instead"
                ))),
            ),
        };
        Self {
            client,
            objects: result.objects.clone().into_iter(),
            format: result.format,
            kind,
            current: None,
            pending: VecDeque::new(),
            error,
            done: false,
            buf: vec![0; CHUNK],
        }
    }

    /// Moves the stream one step on: opens the next object, reads one chunk, or acts
    /// on the transfer's next step.
    fn advance(&mut self) -> Result<(), Error> {
        let Self {
            client,
            objects,
            format,
            kind,
            current,
            pending,
            done,
            buf,
            ..
        } = self;
        let Some(cur) = current else {
            match objects.next() {
                None => *done = true,
                Some(object) => {
                    // Streaming: after a restart from byte 0 the core skips the output
                    // already split, so no record is yielded twice.
                    let transfer = Transfer::new(client.config(), object, *format, true)
                        .map_err(|e| Error::Transfer(e.into()))?
                        .streaming();
                    *current = Some(Current {
                        transfer,
                        splitter: Some(RecordSplitter::new(*kind)),
                        body: None,
                    });
                }
            }
            return Ok(());
        };
        if let Some(body) = &mut cur.body {
            match body.read(buf) {
                Ok(0) => {
                    cur.body = None;
                    cur.transfer.on_body_end(Instant::now());
                }
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    feed(cur, chunk, pending)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %dap_proto::client::redact_queries(&e.to_string()), "storage body broke off");
                    cur.body = None;
                    cur.transfer.on_failure(Instant::now());
                }
            }
            return Ok(());
        }
        let now = Instant::now();
        match cur.transfer.poll(now) {
            TransferStep::Send(request) => {
                let target = net::target(request.uri());
                match net::send(client.agent(), request) {
                    Ok(response) => {
                        let status = response.status();
                        tracing::debug!(target, status = status.as_u16(), "storage response");
                        if let HeadAction::ReadBody { .. } =
                            cur.transfer
                                .on_head(status, response.headers(), Instant::now())
                        {
                            cur.body = Some(
                                response
                                    .into_body()
                                    .into_with_config()
                                    .limit(u64::MAX)
                                    .reader(),
                            );
                        }
                    }
                    Err(e) => {
                        tracing::debug!(target, error = %e, "storage request failed");
                        cur.transfer.on_failure(Instant::now());
                    }
                }
            }
            TransferStep::Wait(until) => sleep_until(until),
            TransferStep::NeedUrl => {
                let url = fresh_url(client, cur.transfer.object())?;
                cur.transfer.set_url(url);
            }
            TransferStep::InFlight => cur.transfer.on_failure(now),
            TransferStep::Done(_) => {
                if let Some(splitter) = cur.splitter.take() {
                    let _ = splitter
                        .finish(|record| {
                            pending.push_back(record.to_vec());
                            ControlFlow::<()>::Continue(())
                        })
                        .map_err(Error::from)?;
                }
                *current = None;
            }
            TransferStep::Failed(error) => return Err(Error::Transfer(error)),
            other => {
                return Err(Error::Usage(format!(
                    "internal: unknown transfer step {other:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Feeds one body chunk through the transfer (verify, decompress) into the splitter.
fn feed(cur: &mut Current, chunk: &[u8], pending: &mut VecDeque<Vec<u8>>) -> Result<(), Error> {
    let Current {
        transfer, splitter, ..
    } = cur;
    let mut split_error = None;
    transfer.on_body(chunk, |bytes| {
        if split_error.is_some() {
            return;
        }
        let Some(splitter) = splitter.as_mut() else {
            return;
        };
        if let Err(e) = splitter.push(bytes, |record| {
            pending.push_back(record.to_vec());
            ControlFlow::<()>::Continue(())
        }) {
            split_error = Some(e);
        }
    })?;
    match split_error {
        Some(e) => Err(Error::from(e)),
        None => Ok(()),
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
                self.done = true;
                self.current = None;
                return Some(Err(error));
            }
            if self.done {
                return None;
            }
            if let Err(error) = self.advance() {
                self.error = Some(error);
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
        if result.format != Format::Jsonl && records.error.is_none() {
            records.error = Some(Error::Usage(format!(
                "JSON records need a jsonl result, not {}",
                result.format
            )));
        }
        Self { records }
    }
}

impl Iterator for JsonRecords {
    type Item = Result<serde_json::Value, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.records.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(serde_json::from_slice(&line).map_err(|e| {
                self.records.done = true;
                self.records.current = None;
                self.records.pending.clear();
                Error::bad_json_record(&e)
            }));
        }
    }
}

impl std::iter::FusedIterator for JsonRecords {}
