//! The session driver: one task owns the [`Session`], starts operations sent by
//! [`crate::Client`] calls, performs the requests it hands out concurrently (each until
//! its operation's deadline), feeds the results back and sleeps until its deadlines.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dap_proto::TransportFailure;
use dap_proto::{Command, Config, Error, OpId, Outcome, Output, RequestId, Session};
use http::Response;
use tokio::sync::{mpsc, oneshot};

use crate::net::{self, Net};

/// A command for the driver, with where its result goes.
pub(crate) type Start = (Command, oneshot::Sender<Result<Outcome, Error>>);

type Exchanged = (RequestId, Result<Response<Bytes>, TransportFailure>);

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
    let mut waiting: HashMap<OpId, oneshot::Sender<Result<Outcome, Error>>> = HashMap::new();
    let mut open = true;
    loop {
        let deadline = loop {
            match session.poll_output(Instant::now()) {
                Output::Send { id, request } => {
                    // The session ends the operation at its deadline by itself; a late
                    // answer is then ignored.
                    let (net, config, done) = (net.clone(), config.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let _ = done.send((id, net::exchange(&net, &config, request).await));
                    });
                }
                Output::Done { op, result } => {
                    if let Some(reply) = waiting.remove(&op) {
                        let _ = reply.send(result);
                    }
                }
                Output::Wait(deadline) => break deadline,
                _ => break None,
            }
        };
        logins.store(base_logins + session.logins(), Ordering::Relaxed);
        // Abandon operations whose caller went away.
        waiting.retain(|op, reply| {
            let gone = reply.is_closed();
            if gone {
                let _ = session.cancel(*op);
            }
            !gone
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
                Some((command, reply)) => {
                    waiting.insert(session.start(command, Instant::now()), reply);
                }
                None => open = false,
            },
            Some((id, result)) = done_rx.recv() => {
                let now = Instant::now();
                let fed = match result {
                    Ok(response) => session.handle_response(id, response, now),
                    Err(failure) => session.handle_failure(id, failure, now),
                };
                if let Err(e) = fed {
                    tracing::debug!(error = %e, "session refused a report");
                }
            }
            () = sleep => {}
        }
    }
}
