//! The `transfer` target: one object download driven by arbitrary heads, bodies,
//! failures and time. What it passes on is what it counted, a finished gzip object is
//! valid, and an honest server's object arrives byte for byte.

use std::ops::ControlFlow;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use dap_proto::gzip::GzipDecoder;
use dap_proto::testing::{VirtualClock, failure};
use dap_proto::{
    Config, Format, HeadAction, ObjectId, ObjectUrl, PresignedUrl, RetryPolicy, Transfer,
    TransferStep,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::input::{for_each_step, gz_encode};
use crate::oracles::assert_safe_file_name;
use crate::{API_BASE, API_HOST, SECRET, SIG_MARK};

/// The object and the transfer's configuration.
#[derive(Arbitrary, Debug)]
struct TransferSetup {
    format: Format,
    decompress: bool,
    max_attempts: u8,
    backoff_ms: u16,
    url: u8,
    members: u8,
    payload: Vec<u8>,
}

/// The status of a storage answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum TStatus {
    Full,
    Partial,
    Forbidden,
    NotFound,
    RangeNotSatisfiable,
    Server,
    Any(u16),
}

/// The `Content-Length` of a storage answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum LenPick {
    Absent,
    Correct,
    Off(i8),
    Any(u32),
}

/// The `Content-Range` of a 206 answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum RangePick {
    Absent,
    Correct,
    ZeroStart,
    StartAt(u16),
    Garbage,
}

/// One step of the storage server or the clock.
#[derive(Arbitrary, Debug, Clone)]
enum TStep {
    Poll,
    Head {
        status: TStatus,
        length: LenPick,
        range: RangePick,
    },
    Body(u16),
    Garbage(Vec<u8>),
    BodyEnd,
    Failure,
    SetUrl,
    Advance(u16),
}

struct TransferHarness {
    transfer: Transfer,
    object: Vec<u8>,
    gzip: bool,
    decompress: bool,
    clock: VirtualClock,
    in_body: bool,
    sent: bool,
    range_requested: u64,
    server_cursor: usize,
    server_end: usize,
    written: Vec<u8>,
    raw: Vec<u8>,
    /// Every byte served so far came from the true object at the announced offset,
    /// with the announced length.
    honest: bool,
    done: bool,
    failed: bool,
}

impl TransferHarness {
    fn sink_into(written: &mut Vec<u8>) -> impl FnMut(&[u8]) + '_ {
        move |b| written.extend_from_slice(b)
    }

    fn poll(&mut self) -> TransferStep {
        let step = self.transfer.poll_output(self.clock.now);
        match &step {
            TransferStep::Send(req) => {
                assert!(!self.done && !self.failed);
                for name in ["authorization", "x-instauth", "cookie"] {
                    assert!(!req.headers().contains_key(name), "{name} sent to storage");
                }
                self.range_requested = req
                    .headers()
                    .get(http::header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes="))
                    .and_then(|v| v.strip_suffix('-'))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                assert_eq!(self.range_requested, self.transfer.received());
                self.sent = true;
                self.in_body = false;
            }
            TransferStep::Wait(t) => assert!(*t > self.clock.now, "Wait in the past"),
            TransferStep::Done(summary) => {
                assert!(!self.failed, "Done after Failed");
                if !self.done {
                    self.check_done(summary);
                }
                self.done = true;
            }
            TransferStep::Failed(e) => {
                assert!(!self.done, "Failed after Done");
                let text = format!("{e} {e:?}");
                assert!(!text.contains(SIG_MARK), "signature in error: {text}");
                self.failed = true;
            }
            TransferStep::NeedUrl | TransferStep::InFlight => {}
            _ => {}
        }
        step
    }

    fn check_done(&self, summary: &dap_proto::TransferSummary) {
        assert_eq!(
            summary.bytes,
            self.raw.len() as u64,
            "bytes passed on != bytes counted"
        );
        assert_safe_file_name(&summary.file_name);
        if self.gzip {
            let mut d = GzipDecoder::new();
            let mut plain = Vec::new();
            d.decode(&self.raw, &mut plain)
                .expect("Done, but the bytes are not valid gzip");
            let s = d.finish().expect("Done, but the gzip stream is incomplete");
            if self.decompress {
                assert_eq!(self.written, plain, "decompressed output differs");
                assert_eq!(summary.decompressed_bytes, Some(s.decompressed_bytes));
            } else {
                assert_eq!(self.written, self.raw);
            }
        } else {
            assert_eq!(self.written, self.raw);
        }
        if self.honest {
            assert_eq!(
                self.raw, self.object,
                "Done with data other than the object"
            );
        }
    }

    fn head(&mut self, status: TStatus, length: LenPick, range: RangePick) {
        let was_sent = self.sent;
        self.sent = false;
        let len = self.object.len();
        let (code, start) = match status {
            TStatus::Full => (200, 0usize),
            TStatus::Partial => (
                206,
                match range {
                    RangePick::Correct | RangePick::Absent | RangePick::Garbage => {
                        self.range_requested as usize
                    }
                    RangePick::ZeroStart => 0,
                    RangePick::StartAt(s) => usize::from(s),
                },
            ),
            TStatus::Forbidden => (403, 0),
            TStatus::NotFound => (404, 0),
            TStatus::RangeNotSatisfiable => (416, 0),
            TStatus::Server => (503, 0),
            TStatus::Any(c) => (100 + c % 900, 0),
        };
        let mut headers = HeaderMap::new();
        let remaining = len.saturating_sub(start);
        let length_value = match length {
            LenPick::Absent => None,
            LenPick::Correct => Some(remaining as u64),
            LenPick::Off(d) => Some((remaining as i64 + i64::from(d)).max(0) as u64),
            LenPick::Any(n) => Some(u64::from(n)),
        };
        if let Some(l) = length_value {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(l));
        }
        if code == 206 {
            let value = match range {
                RangePick::Absent => None,
                RangePick::Garbage => Some("bytes */*".to_owned()),
                _ if start >= len => Some(format!("bytes */{len}")),
                _ => Some(format!("bytes {start}-{}/{len}", len - 1)),
            };
            if let Some(v) = value {
                headers.insert(
                    http::header::CONTENT_RANGE,
                    HeaderValue::from_str(&v).expect("ascii"),
                );
            }
        }
        let action = self.transfer.handle_head(
            StatusCode::from_u16(code).expect("100..=999"),
            &headers,
            self.clock.now,
        );
        match action {
            HeadAction::ReadBody { truncate } => {
                assert!(was_sent, "a body accepted without a request");
                assert!(code == 200 || code == 206);
                if truncate {
                    self.written.clear();
                    self.raw.clear();
                }
                if code == 200 && !truncate {
                    assert!(self.raw.is_empty(), "full body appended to earlier bytes");
                }
                // An honest resume continues exactly where the file ends.
                let length_honest = match length {
                    LenPick::Correct => true,
                    LenPick::Off(0) => true,
                    LenPick::Any(n) => u64::from(n) == remaining as u64,
                    _ => false,
                };
                let consistent = start == self.raw.len() && length_honest;
                self.honest &= consistent;
                self.in_body = true;
                self.server_cursor = start.min(len);
                self.server_end = match length_value {
                    Some(l) => start.saturating_add(l as usize).min(len),
                    None => len,
                };
            }
            // A head nobody asked for is ignored, whatever state the body is in.
            HeadAction::Discard if was_sent => self.in_body = false,
            _ => {}
        }
    }

    fn body(&mut self, chunk: Vec<u8>, honest: bool) {
        if !self.in_body {
            let mut called = false;
            let r = self
                .transfer
                .handle_body(&chunk, self.clock.now, |_| called = true);
            assert!(!called || chunk.is_empty(), "sink called outside a body");
            let _ = r;
            return;
        }
        self.honest &= honest;
        let decompress = self.decompress;
        let mut written = std::mem::take(&mut self.written);
        let before = self.transfer.received();
        let r = self
            .transfer
            .handle_body(&chunk, self.clock.now, Self::sink_into(&mut written));
        self.written = written;
        // What the transfer counted is what it took: all of the chunk when it goes on,
        // and all or part of it when it stops (a stall keeps what came, and the next
        // request resumes after it).
        let taken = usize::try_from(self.transfer.received() - before).expect("small");
        match r {
            ControlFlow::Continue(()) => assert_eq!(taken, chunk.len(), "part of a chunk kept"),
            ControlFlow::Break(()) => assert!(taken <= chunk.len(), "more than the chunk kept"),
        }
        self.raw.extend_from_slice(&chunk[..taken]);
        if !decompress {
            assert_eq!(self.written.len(), self.raw.len());
        }
        match r {
            ControlFlow::Continue(()) => {}
            ControlFlow::Break(()) => {
                // Failed for good (poll reports why) or stalled (it resumes later).
                if self.transfer.is_finished() {
                    let _ = self.poll();
                }
                self.in_body = false;
                self.sent = false;
            }
        }
    }

    fn step(&mut self, step: TStep) {
        match step {
            TStep::Poll => {
                let _ = self.poll();
            }
            TStep::Head {
                status,
                length,
                range,
            } => self.head(status, length, range),
            TStep::Body(n) => {
                let end = self
                    .server_cursor
                    .saturating_add(usize::from(n))
                    .min(self.server_end);
                let chunk = self.object[self.server_cursor.min(end)..end].to_vec();
                self.server_cursor = end;
                self.body(chunk, true);
            }
            TStep::Garbage(bytes) => self.body(bytes, false),
            TStep::BodyEnd => {
                if self.in_body && self.server_cursor < self.object.len() {
                    // The body ended early: only a short Content-Length makes that
                    // look complete, and then the check is the length's job.
                    if !matches!(self.transfer.expected_size(), Some(e) if e as usize <= self.raw.len())
                    {
                        // Unannounced truncation cannot be told from a short object.
                        self.honest = false;
                    }
                }
                self.transfer.handle_body_end(self.clock.now);
                self.in_body = false;
            }
            TStep::Failure => {
                self.transfer.handle_failure(failure(), self.clock.now);
                self.in_body = false;
                self.sent = false;
            }
            TStep::SetUrl => {
                self.transfer.handle_url(PresignedUrl::new(format!(
                    "https://bucket.example/out/obj.json.gz?X-Amz-Signature={SIG_MARK}2"
                )));
            }
            TStep::Advance(ms) => self.clock.now += Duration::from_millis(u64::from(ms) * 10),
        }
    }

    fn finish_with_failures(&mut self) {
        self.in_body = false;
        for _ in 0..1_000 {
            match self.poll() {
                TransferStep::Send(_) => {
                    self.transfer.handle_failure(failure(), self.clock.now);
                    self.sent = false;
                }
                TransferStep::Wait(t) => self.clock.now = t,
                TransferStep::NeedUrl => self.step(TStep::SetUrl),
                TransferStep::InFlight => self.transfer.handle_failure(failure(), self.clock.now),
                TransferStep::Done(_) | TransferStep::Failed(_) => return,
                _ => {}
            }
        }
        panic!("the transfer did not end while every request failed");
    }
}

/// One object download driven by arbitrary heads, bodies, failures and time.
///
/// # Panics
/// When the transfer breaks an invariant.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = TransferSetup::arbitrary(&mut u) else {
        return;
    };
    let format = setup.format;
    let gzip = format.is_gzip();
    let object = if gzip {
        let members = usize::from(setup.members % 3) + 1;
        let per = setup.payload.len() / members + 1;
        let mut v = Vec::new();
        for part in setup.payload.chunks(per) {
            v.extend_from_slice(&gz_encode(part, 1));
        }
        if v.is_empty() {
            v = gz_encode(b"", 1);
        }
        v
    } else {
        setup.payload.clone()
    };
    let url = match setup.url % 4 {
        0 => format!("https://bucket.example/out/part-0.json.gz?X-Amz-Signature={SIG_MARK}"),
        1 => format!("https://bucket.example/a/..%2F..%2F.bashrc?X-Amz-Signature={SIG_MARK}"),
        2 => format!("https://bucket.example/?X-Amz-Signature={SIG_MARK}"),
        _ => format!("https://{API_HOST}/x/.%2e/p.gz?sig={SIG_MARK}"),
    };
    let mut retry = RetryPolicy::new(
        u32::from(setup.max_attempts % 6) + 1,
        Duration::from_millis(u64::from(setup.backoff_ms % 2000)),
        Duration::from_secs(5),
    );
    retry.jitter_seed = 7;
    let config = Config::builder("id", SECRET)
        .base_url(API_BASE)
        .retry(retry)
        .build()
        .expect("valid harness config");
    let object_url = ObjectUrl {
        id: ObjectId::new("job/part-0"),
        url: PresignedUrl::new(url),
    };
    let transfer = match Transfer::new(&config, object_url, format, setup.decompress) {
        Ok(t) => t,
        Err(e) => {
            assert!(!format!("{e} {e:?}").contains(SIG_MARK));
            return;
        }
    };
    assert_safe_file_name(transfer.file_name());
    let mut h = TransferHarness {
        transfer,
        object,
        gzip,
        decompress: setup.decompress && gzip,
        clock: VirtualClock::new(),
        in_body: false,
        sent: false,
        range_requested: 0,
        server_cursor: 0,
        server_end: 0,
        written: Vec::new(),
        raw: Vec::new(),
        honest: true,
        done: false,
        failed: false,
    };
    for_each_step(&mut u, 300, |step: TStep| h.step(step));
    h.finish_with_failures();
}
