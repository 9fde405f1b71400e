//! The HTTP machinery: rustls (ring provider, webpki roots plus the extra and system
//! ones), a connector that honours proxies (CONNECT tunnels for https, absolute-form
//! requests for plain http) and never proxies a loopback destination, and request
//! helpers with connect, read and low-speed limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::{Error, Options};
use dap_client::net::{extra_roots, failure_of, is_loopback};
use dap_proto::{Config, FailureKind, TransportFailure};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pooled HTTP/1.1 client every request goes through.
pub(crate) type HttpClient =
    LegacyClient<hyper_rustls::HttpsConnector<RouteConnector>, Full<Bytes>>;

/// Builds the client: one rustls provider (ring), connection pooling, no redirects
/// (hyper never follows any), the configured connect timeout.
fn build_client(options: &Options, route: RouteConnector) -> Result<HttpClient, Error> {
    let tls = tls_config(options)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(route);
    Ok(LegacyClient::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        // hyper grows each connection's read buffer to ~400 KiB by default; with several
        // downloads in flight that alone breaks the flat-memory target. 64 KiB reads
        // cost no throughput on loopback and keep peak RSS at a few MiB per download.
        .http1_max_buf_size(64 * 1024)
        .build(https))
}

fn tls_config(options: &Options) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots(options)? {
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("unusable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects directly, or through a CONNECT tunnel when a proxy applies (never for a
/// loopback destination).
#[derive(Clone)]
pub(crate) struct RouteConnector {
    http: HttpConnector,
    matcher: Option<Arc<Matcher>>,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for RouteConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let intercept = self
            .matcher
            .as_ref()
            .filter(|_| !is_loopback(&dst))
            .and_then(|m| m.intercept(&dst));
        let connect_timeout = self.connect_timeout;
        Box::pin(async move {
            let Some(proxy) = intercept else {
                return Ok(tower_service::Service::call(&mut http, dst).await?);
            };
            tracing::debug!("connecting through a proxy's CONNECT tunnel");
            let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let connect = tower_service::Service::call(&mut tunnel, dst);
            Ok(tokio::time::timeout(connect_timeout, connect)
                .await
                .map_err(|_| "proxy tunnel timed out")??)
        })
    }
}

/// Reads the next body frame's data within `read_timeout`: `Ok(None)` at the end of
/// the body.
pub(crate) async fn next_chunk(
    body: &mut Incoming,
    read_timeout: Duration,
) -> Result<Option<Bytes>, TransportFailure> {
    loop {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => {
                let detail = format!("no data for {read_timeout:?} while reading the body");
                return Err(TransportFailure::new(FailureKind::Stalled, detail));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(failure_of(&e, false)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// Sends an API request and reads its whole body, stopping after the core's cap plus
/// one byte (the core rejects the oversize), under the low-speed rule.
pub(crate) async fn exchange(
    net: &Net,
    config: &Config,
    request: Request<Vec<u8>>,
) -> Result<Response<Bytes>, TransportFailure> {
    let (method, target) = (
        request.method().clone(),
        dap_client::net::target(request.uri()),
    );
    let response = net.send(request).await;
    tracing::debug!(%method, target, status = ?response.as_ref().map(|r| r.status().as_u16()), "API response");
    let (parts, mut body) = response?.into_parts();
    let cap = config.max_body_bytes().saturating_add(1);
    let mut meter = config.low_speed().meter();
    let wait = meter.read_timeout().min(net.options.read_timeout);
    let mut buf = BytesMut::with_capacity(dap_client::net::body_capacity(&parts.headers, cap));
    while buf.len() < cap {
        match next_chunk(&mut body, wait).await? {
            Some(chunk) => {
                let room = cap - buf.len();
                buf.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
                meter.observe(chunk.len() as u64, Instant::now())?;
            }
            None => break,
        }
    }
    Ok(Response::from_parts(parts, buf.freeze()))
}

/// The HTTP client with its options and proxy routing.
#[derive(Clone)]
pub(crate) struct Net {
    pub(crate) client: HttpClient,
    pub(crate) options: Arc<Options>,
}

impl Net {
    pub(crate) fn new(options: Options) -> Result<Self, Error> {
        let matcher = match &options.proxy {
            Some(url) => Some(
                Matcher::builder()
                    .http(url.clone())
                    .https(url.clone())
                    .build(),
            ),
            None => options.proxy_from_env.then(Matcher::from_env),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let route = RouteConnector {
            http,
            matcher: matcher.map(Arc::new),
            connect_timeout: options.connect_timeout,
        };
        let client = build_client(&options, route)?;
        Ok(Self {
            client,
            options: Arc::new(options),
        })
    }

    /// Sends `request` (every header and the body copied) and returns the response
    /// head, within connect plus read timeout.
    pub(crate) async fn send(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Incoming>, TransportFailure> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(Bytes::from(body)));
        let limit = self.options.connect_timeout + self.options.read_timeout;
        match tokio::time::timeout(limit, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(failure_of(&e, e.is_connect())),
            Err(_) => Err(TransportFailure::new(
                FailureKind::Timeout,
                format!("no response within {limit:?}"),
            )),
        }
    }
}
