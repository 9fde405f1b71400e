//! A virtual clock and a scripted fake DAP peer for session scenarios.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use dap_proto::{Command, Config, OpId, Outcome, Output, Session};
use http::{Request, Response};

/// What the fake peer does with one request.
pub enum Reply {
    Respond(Response<Vec<u8>>),
    Fail,
}

pub fn json(status: u16, body: &str) -> Reply {
    Reply::Respond(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap(),
    )
}

pub fn with_header(reply: Reply, name: &str, value: &str) -> Reply {
    match reply {
        Reply::Respond(mut r) => {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            Reply::Respond(r)
        }
        Reply::Fail => Reply::Fail,
    }
}

pub fn login_ok(token: &str, expires_in: u64) -> Reply {
    json(
        200,
        &format!(
            r#"{{"access_token":"{token}","expires_in":{expires_in},"scope":"dap","token_type":"bearer"}}"#
        ),
    )
}

pub fn dap_error(status: u16, kind: &str, message: &str) -> Reply {
    json(
        status,
        &format!(r#"{{"error":{{"type":"{kind}","uuid":"u-1","message":"{message}"}}}}"#),
    )
}

/// One request the fake saw, with the instant it was sent.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub auth: Option<String>,
    pub body: String,
}

impl Seen {
    pub fn is_login(&self) -> bool {
        self.path.ends_with("/ids/auth/login")
    }
}

pub const SECRET: &str = "TOPSECRET";

pub fn config() -> dap_proto::ConfigBuilder {
    Config::builder("us-east-1#client", SECRET)
        .base_url("https://dap.example")
        .retry(dap_proto::RetryPolicy::new(
            3,
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
}

/// A session on a virtual clock with a peer that answers at once.
pub struct Harness {
    pub session: Session,
    pub now: Instant,
    pub start: Instant,
    pub seen: Vec<Seen>,
    pub done: Vec<(OpId, Result<Outcome, dap_proto::Error>)>,
    /// Every Wait deadline handed out, with the instant it was handed out.
    pub waits: Vec<(Instant, Option<Instant>)>,
}

impl Harness {
    pub fn new(config: Config) -> Self {
        #[allow(clippy::disallowed_methods)] // an arbitrary origin for the virtual clock
        let now = Instant::now();
        let wall: jiff::Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
        Self {
            session: Session::new(config, now, wall),
            now,
            start: now,
            seen: Vec::new(),
            done: Vec::new(),
            waits: Vec::new(),
        }
    }

    pub fn start(&mut self, command: Command) -> OpId {
        self.session.start(command, self.now)
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Drives until no operation remains, answering every request with `peer` and
    /// jumping the clock to each deadline. Panics after `max_steps`.
    pub fn run(
        &mut self,
        max_steps: usize,
        mut peer: impl FnMut(&Seen, &Request<Vec<u8>>) -> Reply,
    ) {
        for _ in 0..max_steps {
            match self.session.poll_output(self.now) {
                Output::Send { id, request } => {
                    let seen = Seen {
                        at: self.now,
                        method: request.method().to_string(),
                        path: request.uri().path().to_owned(),
                        auth: request
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned()),
                        body: String::from_utf8_lossy(request.body()).into_owned(),
                    };
                    let reply = peer(&seen, &request);
                    self.seen.push(seen);
                    match reply {
                        Reply::Respond(r) => self.session.handle_response(id, r, self.now).unwrap(),
                        Reply::Fail => self
                            .session
                            .handle_failure(id, common_failure(), self.now)
                            .unwrap(),
                    }
                }
                Output::Done { op, result } => self.done.push((op, result)),
                Output::Wait(deadline) => {
                    self.waits.push((self.now, deadline));
                    match deadline {
                        Some(t) => {
                            assert!(t > self.now, "a Wait deadline lies in the past");
                            self.now = t;
                        }
                        None => return,
                    }
                }
                _ => unreachable!(),
            }
        }
        panic!("not finished after {max_steps} steps");
    }

    pub fn logins(&self) -> usize {
        self.seen.iter().filter(|s| s.is_login()).count()
    }

    pub fn result(&self, op: OpId) -> &Result<Outcome, dap_proto::Error> {
        &self
            .done
            .iter()
            .find(|(id, _)| *id == op)
            .expect("operation finished")
            .1
    }
}

/// The transport failure the tests report.
#[allow(dead_code)]
pub fn common_failure() -> dap_proto::TransportFailure {
    dap_proto::TransportFailure::new(dap_proto::FailureKind::Broken, "test")
}
