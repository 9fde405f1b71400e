//! The I/O around the heart: a tokio runtime on its own thread, two listeners, hyper
//! connections, and response bodies paced as the heart says.

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::StartError;
use crate::config::EmulatorConfig;
use crate::heart::{Heart, Listener, Pacing, Payload};

/// Largest request body read (an object URL request for 20,000 objects is about
/// 2.2 MB); a larger one reaches the heart as `None`.
const BODY_LIMIT: usize = 16 << 20;

/// Real time in milliseconds since the Unix epoch.
pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the emulator until `stop` changes: builds a runtime, binds both listeners,
/// sends the heart (or the failure) through `started`, and serves.
pub(crate) fn run(
    config: EmulatorConfig,
    started: std::sync::mpsc::Sender<Result<Arc<Heart>, StartError>>,
    stop: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dap-emulator-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = started.send(Err(StartError::Runtime(e)));
            return;
        }
    };
    rt.block_on(async move {
        let bound = bind(config.port, config.storage_port).await;
        let (api, storage, api_addr, storage_addr) = match bound {
            Ok(b) => b,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let heart = Arc::new(Heart::new(config, api_addr, storage_addr));
        if started.send(Ok(heart.clone())).is_err() {
            return;
        }
        let a = tokio::spawn(serve(api, heart.clone(), Listener::Api, stop.clone()));
        let s = tokio::spawn(serve(storage, heart, Listener::Storage, stop));
        let _ = a.await;
        let _ = s.await;
    });
    rt.shutdown_timeout(Duration::from_millis(100));
}

type Bound = (
    tokio::net::TcpListener,
    tokio::net::TcpListener,
    std::net::SocketAddr,
    std::net::SocketAddr,
);

async fn bind(api_port: u16, storage_port: u16) -> Result<Bound, StartError> {
    let one = |port: u16| async move {
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| StartError::Bind { port, source })
    };
    let api = one(api_port).await?;
    let storage = one(storage_port).await?;
    let addr = |l: &tokio::net::TcpListener, port| {
        l.local_addr()
            .map_err(|source| StartError::Bind { port, source })
    };
    let (a, s) = (addr(&api, api_port)?, addr(&storage, storage_port)?);
    Ok((api, storage, a, s))
}

async fn serve(
    listener: tokio::net::TcpListener,
    heart: Arc<Heart>,
    which: Listener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let heart = heart.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| answer(heart.clone(), which, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// Reads the request body, asks the heart (off the async workers: building a large
/// object takes a while), waits out a delay fault, and hands back the paced body.
async fn answer(
    heart: Arc<Heart>,
    which: Listener,
    req: Request<Incoming>,
) -> Result<Response<PacedBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes());
    let req = Request::from_parts(parts, body);
    let reply = tokio::task::spawn_blocking(move || heart.handle(which, req, wall_ms())).await;
    let Ok(reply) = reply else {
        let mut r = Response::new(PacedBody::new(Payload::empty(), Pacing::Full));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(r);
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let (parts, payload) = reply.response.into_parts();
    Ok(Response::from_parts(
        parts,
        PacedBody::new(payload, reply.pacing),
    ))
}

/// How long the bytes before an injected drop get to leave before the error.
const DROP_GRACE: Duration = Duration::from_millis(30);

/// A response body delivered at the pace the heart asked for.
#[derive(Debug)]
pub(crate) struct PacedBody {
    payload: Payload,
    pos: u64,
    pacing: Pacing,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PacedBody {
    fn new(payload: Payload, pacing: Pacing) -> Self {
        Self {
            payload,
            pos: 0,
            pacing,
            timer: None,
        }
    }

    /// Polls the pending timer (starting one of `d` if none runs): ready once it fired.
    fn wait(&mut self, cx: &mut Context<'_>, d: Duration) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timer = None;
        Poll::Ready(())
    }

    /// The next piece to send, or `Pending`/an error as the pacing says.
    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let limit = match self.pacing {
            Pacing::Full => u64::MAX,
            Pacing::DropAfter { bytes } if self.pos >= bytes => {
                if self.wait(cx, DROP_GRACE).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "injected connection drop",
                ))));
            }
            Pacing::DropAfter { bytes } => bytes - self.pos,
            Pacing::Trickle { after_bytes, .. } if self.pos < after_bytes => after_bytes - self.pos,
            Pacing::Trickle {
                bytes, interval, ..
            } => {
                if self.wait(cx, interval).is_pending() {
                    return Poll::Pending;
                }
                bytes
            }
        };
        Poll::Ready(self.payload.chunk_at(self.pos, limit).map(Ok))
    }
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.pos >= this.payload.len() {
            return Poll::Ready(None);
        }
        match this.next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.pos += chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                this.pos = this.payload.len();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.payload.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.payload.len().saturating_sub(self.pos))
    }
}
