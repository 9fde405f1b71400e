//! The session driver: one task owns the [`Session`], starts operations sent by
//! [`crate::Client`] calls, performs the requests it hands out concurrently, feeds the
//! results back and sleeps until its deadlines.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dap_proto::{Command, Config, OpId, Outcome, Output, RequestId, Session};
use http::Response;
use tokio::sync::{mpsc, oneshot};

use crate::net::{self, Failure, Net};

/// The answer to one operation: the core's result plus the text of the last transport
/// failure seen, for `Error::Transport::last`.
pub(crate) type Reply = (Result<Outcome, dap_proto::Error>, Option<String>);

/// A command for the driver.
pub(crate) struct Start {
    pub(crate) command: Command,
    pub(crate) reply: oneshot::Sender<Reply>,
}

type Exchanged = (RequestId, Result<Response<Bytes>, Failure>);

/// Runs until every [`crate::Client`] clone is gone.
pub(crate) async fn run(
    config: Config,
    net: Net,
    mut commands: mpsc::UnboundedReceiver<Start>,
    logins: Arc<AtomicU64>,
) {
    let mut session = Session::new(config.clone(), Instant::now(), jiff::Timestamp::now());
    let base_logins = logins.load(Ordering::Relaxed);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Exchanged>();
    let mut waiting: HashMap<OpId, oneshot::Sender<Reply>> = HashMap::new();
    // The text of each operation's last transport failure (`None`: the login), for
    // `Error::Transport`.
    let mut failures: HashMap<Option<OpId>, String> = HashMap::new();
    let max_body = config.max_body_bytes();
    let mut open = true;
    loop {
        // Drain the session.
        let deadline = loop {
            match session.poll_output(Instant::now()) {
                Output::Send { id, request } => {
                    let net = net.clone();
                    let done = done_tx.clone();
                    let method = request.method().clone();
                    let path = request.uri().path().to_owned();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let result = net::exchange(&net, request, max_body).await;
                        match &result {
                            Ok(r) => {
                                tracing::debug!(%method, %path, status = r.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "response")
                            }
                            Err(f) => {
                                tracing::debug!(%method, %path, error = %f.0, elapsed_ms = started.elapsed().as_millis() as u64, "request failed")
                            }
                        }
                        let _ = done.send((id, result));
                    });
                }
                Output::Done { op, result } => {
                    let own = failures.remove(&Some(op));
                    if let Some(reply) = waiting.remove(&op) {
                        let last = match &result {
                            Err(dap_proto::Error::Transport { what: "login", .. }) => {
                                failures.get(&None).cloned()
                            }
                            Err(dap_proto::Error::Transport { .. }) => own,
                            _ => None,
                        };
                        let _ = reply.send((result, last));
                    }
                }
                Output::Wait(deadline) => break deadline,
                _ => break None,
            }
        };
        logins.store(base_logins + session.logins(), Ordering::Relaxed);
        // Abandon operations whose caller went away.
        waiting.retain(|op, reply| {
            if reply.is_closed() {
                let _ = session.cancel(*op);
                false
            } else {
                true
            }
        });
        if !open && waiting.is_empty() {
            break;
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(Start { command, reply }) => {
                    let op = session.start(command, Instant::now());
                    waiting.insert(op, reply);
                }
                None => open = false,
            },
            Some((id, result)) = done_rx.recv() => {
                let now = Instant::now();
                let misuse = match result {
                    Ok(response) => session.handle_response(id, response, now),
                    Err(failure) => {
                        failures.insert(session.request_operation(id), failure.0);
                        session.handle_failure(id, now)
                    }
                };
                if let Err(e) = misuse {
                    tracing::debug!(error = %e, "session refused a report");
                }
            }
            () = sleep => {}
        }
    }
}
