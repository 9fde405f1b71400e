//! The raw driver: the core's machines pumped over bare `TcpStream`s, one request per
//! connection. API calls go through [`dap_proto::wire`]; storage responses are read head
//! first (`httparse`) and their bodies streamed into the [`dap_proto::Fetch`] as they
//! arrive; files go through the shared file policy.

use std::collections::{HashMap, VecDeque};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use dap_client::pump::{self, Job, Sink, Step};
use dap_proto::{
    Command, Config, FailureKind, Fetch, Outcome, Output, QueryResult, Session, TransportFailure,
};

use crate::{Answer, Call, DownloadSpec, Downloaded, Driver, Failure, Transport, with_logs};

/// A [`Session`] and its downloads pumped over fresh `TcpStream`s.
pub(crate) struct RawDriver {
    session: Mutex<Session>,
    config: Config,
    dispatch: Option<tracing::Dispatch>,
}

impl RawDriver {
    pub(crate) fn new(config: Config, dispatch: Option<tracing::Dispatch>) -> Self {
        Self {
            session: Mutex::new(Session::new(
                config.clone(),
                Instant::now(),
                jiff::Timestamp::now(),
            )),
            config,
            dispatch,
        }
    }

    /// Starts every command and pumps the session until all are done.
    fn run(&self, commands: Vec<Command>) -> Vec<Result<Outcome, dap_proto::Error>> {
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let ops: HashMap<_, _> = commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| (session.start(c, Instant::now()), i))
            .collect();
        let mut results: Vec<Option<Result<Outcome, dap_proto::Error>>> =
            (0..ops.len()).map(|_| None).collect();
        let mut pending = ops.len();
        while pending > 0 {
            match session.poll_output(Instant::now()) {
                Output::Send { id, request } => {
                    let until = session.request_deadline(id);
                    let fed = match exchange(&request, &self.config, until) {
                        Ok(response) => session.handle_response(id, response, Instant::now()),
                        Err(f) => session.handle_failure(id, f, Instant::now()),
                    };
                    fed.expect("the session accepts the answer to its own request");
                }
                Output::Done { op, result } => {
                    if let Some(&i) = ops.get(&op) {
                        results[i] = Some(result);
                        pending -= 1;
                    }
                }
                Output::Wait(Some(deadline)) => {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                }
                Output::Wait(None) => panic!("the session went idle with {pending} operations"),
                other => panic!("unknown session output {other:?}"),
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every operation ended"))
            .collect()
    }

    fn calls(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>> {
        let commands: Vec<_> = calls.into_iter().map(Call::into_command).collect();
        let valid: Vec<Command> = commands.iter().filter_map(|c| c.clone().ok()).collect();
        let mut answers = with_logs(self.dispatch.as_ref(), || self.run(valid)).into_iter();
        commands
            .into_iter()
            .map(|c| match c {
                Err(e) => Err(Failure::from_core(e)),
                Ok(_) => match answers.next().expect("an answer per command") {
                    Ok(outcome) => Ok(Answer::from(outcome)),
                    Err(e) => Err(Failure::from_core(e)),
                },
            })
            .collect()
    }

    /// Pumps a download job to its end; records go to `records`. Like the concurrent
    /// transports, every fetch the window allows is out before the first comes back,
    /// and the job is polled again as each one comes back; they are served in turn.
    fn pump(
        &self,
        mut job: Job,
        records: &mut VecDeque<Vec<u8>>,
    ) -> Result<Vec<dap_client::DownloadedFile>, dap_client::Error> {
        let mut out = VecDeque::new();
        loop {
            loop {
                match job.next(Instant::now()) {
                    Step::Fetch(fetch, lease) => out.push_back((fetch, lease)),
                    Step::Session(command) => {
                        let result = self.run(vec![command]).pop().expect("one result");
                        job.session_done(result.map_err(dap_client::Error::from), Instant::now());
                    }
                    Step::Done(result) => return result,
                    Step::Wait(at) if out.is_empty() => {
                        let at = at.expect("a download waits for time when nothing is out");
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    Step::Wait(_) => break,
                    other => panic!("unknown download step {other:?}"),
                }
            }
            if let Some((mut fetch, mut lease)) = out.pop_front() {
                let sink: &mut dyn Sink = match &mut lease {
                    Some(lease) => lease,
                    None => records,
                };
                let written = fetch_into(&mut fetch, sink);
                job.fetch_done(fetch, lease, written, Instant::now());
            }
        }
    }
}

/// Sends one request on a fresh connection and reads one response with the core's
/// [`dap_proto::wire::ResponseParser`].
fn exchange(
    request: &http::Request<Vec<u8>>,
    config: &Config,
    deadline: Option<Instant>,
) -> Result<http::Response<Vec<u8>>, TransportFailure> {
    use dap_proto::wire::{Progress, ResponseParser, WireError};
    let left = deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    });
    let wait = left.min(config.low_speed().window);
    let mut stream = connect(
        request,
        wait.clamp(Duration::from_millis(1), Duration::from_secs(5)),
    )?;
    let head = request.method() == http::Method::HEAD;
    let mut parser = ResponseParser::new(head, config.max_body_bytes());
    let mut meter = config.low_speed().meter();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).map_err(|e| broken(&e))?;
        meter.observe(n as u64, Instant::now())?;
        if n == 0 {
            return parser.finish_eof().map_err(|e| broken(&e));
        }
        // A split read is fine: the parser keeps what it has and asks for more.
        match parser.feed(&buf[..n]) {
            Ok(Progress::Complete(response, _)) => return Ok(response),
            Ok(_) => {}
            // Over the cap: hand the head and the first bytes to the session, which
            // answers with a typed "body too large" error rather than a retry.
            Err(WireError::BodyTooLarge { .. }) => {
                return parser
                    .into_oversized()
                    .ok_or_else(|| TransportFailure::new(FailureKind::Other, "body too large"));
            }
            Err(e) => return Err(broken(&e)),
        }
    }
}

fn broken(e: &dyn std::fmt::Display) -> TransportFailure {
    TransportFailure::new(FailureKind::Broken, e.to_string())
}

/// Connects to the request's authority and writes the request.
fn connect(
    request: &http::Request<Vec<u8>>,
    read_timeout: Duration,
) -> Result<TcpStream, TransportFailure> {
    let authority = request.uri().authority().map_or("", |a| a.as_str());
    let mut stream = TcpStream::connect(authority)
        .map_err(|e| TransportFailure::new(FailureKind::Connect, e.to_string()))?;
    stream
        .set_read_timeout(Some(read_timeout))
        .map_err(|e| broken(&e))?;
    let mut bytes = Vec::new();
    dap_proto::wire::write_request(request, &mut bytes).map_err(|e| broken(&e))?;
    stream.write_all(&bytes).map_err(|e| broken(&e))?;
    Ok(stream)
}

/// Sends a fetch and streams its answer into `sink`: the head parsed with `httparse`,
/// then `Content-Length` bytes of body as they arrive.
fn fetch_into(fetch: &mut Fetch, sink: &mut dyn Sink) -> Result<(), dap_client::Error> {
    let request = fetch.take_request();
    let mut stream = match connect(&request, fetch.read_timeout()) {
        Ok(s) => s,
        Err(f) => {
            pump::failed(fetch, f);
            return Ok(());
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    let (head, parts) = loop {
        let n = match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => {
                pump::failed(fetch, broken(&"the connection closed before a head"));
                return Ok(());
            }
            Ok(n) => n,
        };
        have += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = response.parse(&buf[..have]) {
            let mut builder = http::Response::builder().status(response.code.unwrap_or(500));
            for h in response.headers.iter() {
                builder = builder.header(h.name, h.value);
            }
            break (len, builder.body(()).expect("a valid head").into_parts().0);
        }
    };
    if !pump::head(fetch, parts.status, &parts.headers, sink)? {
        return Ok(());
    }
    let mut left: u64 = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(u64::MAX);
    let mut piece = &buf[head..have];
    loop {
        let take = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        left -= take as u64;
        if take > 0 && pump::feed(fetch, Ok(Some(&piece[..take])), sink)?.is_break() {
            return Ok(());
        }
        if left == 0 {
            return pump::feed(fetch, Ok(None), sink).map(drop);
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                return pump::feed(fetch, Err(broken(&"the body ended early")), sink).map(drop);
            }
            Ok(n) => n,
            Err(e) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        FailureKind::Stalled
                    }
                    _ => FailureKind::Broken,
                };
                let failure = TransportFailure::new(kind, e.to_string());
                return pump::feed(fetch, Err(failure), sink).map(drop);
            }
        };
        piece = &buf[..n];
    }
}

impl Driver for RawDriver {
    fn transport(&self) -> Transport {
        Transport::Raw
    }

    fn logins(&self) -> u64 {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .logins()
    }

    fn call(&self, call: Call) -> Result<Answer, Failure> {
        self.calls(vec![call])
            .pop()
            .expect("one result for one call")
    }

    fn concurrently(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>> {
        self.calls(calls)
    }

    fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        spec: DownloadSpec,
    ) -> Result<Vec<Downloaded>, Failure> {
        let options = spec.options();
        with_logs(self.dispatch.as_ref(), || {
            let job = Job::files(&self.config, result, dir, &options)?;
            let files = self.pump(job, &mut VecDeque::new())?;
            Ok(files.into_iter().map(Downloaded::from).collect())
        })
    }

    fn records(&self, result: &QueryResult) -> Result<Vec<Vec<u8>>, Failure> {
        with_logs(self.dispatch.as_ref(), || {
            let mut records = VecDeque::new();
            let job = Job::records(&self.config, result)?;
            self.pump(job, &mut records)?;
            Ok(records.into())
        })
    }

    fn json_records(&self, result: &QueryResult) -> Result<Vec<serde_json::Value>, Failure> {
        dap_client::json_format(result.format)?;
        let lines = self.records(result)?;
        lines
            .iter()
            .filter_map(|line| dap_client::json_record(line))
            .collect::<Result<_, _>>()
            .map_err(Failure::from)
    }
}
