//! The HTTP machinery: rustls (ring provider, webpki roots plus an optional extra CA
//! file), a connector that honours proxy variables (CONNECT tunnels for https,
//! absolute-form requests for plain http), and request helpers with connect and idle
//! read timeouts.

use std::future::Future;
use std::io::BufReader;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::Options;
use crate::error::{Error, error_text, redact};

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
        .build(https))
}

fn tls_config(options: &Options) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.extra_ca_file {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut added = 0usize;
        for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
            let cert = cert.map_err(|e| Error::io(path, e))?;
            roots.add(cert).map_err(|e| {
                Error::Tls(format!("{}: unusable CA certificate: {e}", path.display()))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::Tls(format!(
                "{}: no PEM certificate found",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects directly, through a CONNECT tunnel (https via a proxy) or to the proxy
/// itself (plain http via a proxy, marked proxied so requests use the absolute form).
#[derive(Clone)]
pub(crate) struct RouteConnector {
    http: HttpConnector,
    matcher: Option<Arc<Matcher>>,
    connect_timeout: Duration,
}

impl RouteConnector {
    /// The `Proxy-Authorization` a plain-http request to `uri` needs, if any.
    pub(crate) fn proxy_auth(&self, uri: &Uri) -> Option<HeaderValue> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let intercept = self.matcher.as_ref()?.intercept(uri)?;
        intercept.basic_auth().cloned()
    }
}

/// A TCP connection, possibly to a proxy.
pub(crate) struct Conn {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl tower_service::Service<Uri> for RouteConnector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let intercept = self.matcher.as_ref().and_then(|m| m.intercept(&dst));
        let connect_timeout = self.connect_timeout;
        Box::pin(async move {
            match intercept {
                None => {
                    let io = tower_service::Service::call(&mut http, dst).await?;
                    Ok(Conn { io, proxied: false })
                }
                Some(proxy) if dst.scheme_str() == Some("https") => {
                    tracing::debug!(proxy = %redact(&proxy.uri().to_string()), "connecting through a CONNECT tunnel");
                    let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                    if let Some(auth) = proxy.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    let io = tokio::time::timeout(
                        connect_timeout,
                        tower_service::Service::call(&mut tunnel, dst),
                    )
                    .await
                    .map_err(|_| "proxy tunnel timed out")??;
                    Ok(Conn { io, proxied: false })
                }
                Some(proxy) => {
                    tracing::debug!(proxy = %redact(&proxy.uri().to_string()), "connecting to an HTTP proxy");
                    let io = tower_service::Service::call(&mut http, proxy.uri().clone()).await?;
                    Ok(Conn { io, proxied: true })
                }
            }
        })
    }
}

/// Why a request did not produce a complete response.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

/// Sends `request` (every header and the body copied) and returns the response head,
/// within connect plus read timeout.
async fn send(
    client: &HttpClient,
    options: &Options,
    request: Request<Vec<u8>>,
) -> Result<Response<Incoming>, Failure> {
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Full::new(Bytes::from(body)));
    let limit = options.connect_timeout + options.read_timeout;
    match tokio::time::timeout(limit, client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(Failure(error_text(&e))),
        Err(_) => Err(Failure(format!(
            "no response within {} ms",
            limit.as_millis()
        ))),
    }
}

/// Reads the next body frame's data within the idle read timeout: `Ok(None)` at the
/// end of the body.
pub(crate) async fn next_chunk(
    body: &mut Incoming,
    read_timeout: Duration,
) -> Result<Option<Bytes>, Failure> {
    loop {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => {
                return Err(Failure(format!(
                    "no data for {} ms while reading the body",
                    read_timeout.as_millis()
                )));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(Failure(error_text(&e))),
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

/// Sends an API request and reads its whole body, stopping after `max_body + 1`
/// bytes (the core rejects the oversize).
pub(crate) async fn exchange(
    net: &Net,
    request: Request<Vec<u8>>,
    max_body: usize,
) -> Result<Response<Bytes>, Failure> {
    let response = net.send(request).await?;
    let (parts, mut body) = response.into_parts();
    let cap = max_body.saturating_add(1);
    let mut buf = BytesMut::new();
    while buf.len() < cap {
        match next_chunk(&mut body, net.options.read_timeout).await? {
            Some(chunk) => {
                let room = cap - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
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
    route: RouteConnector,
}

impl Net {
    pub(crate) fn new(options: Options) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let route = RouteConnector {
            http,
            matcher: options
                .proxy_from_env
                .then(|| Arc::new(Matcher::from_env())),
            connect_timeout: options.connect_timeout,
        };
        let client = build_client(&options, route.clone())?;
        Ok(Self {
            client,
            options: Arc::new(options),
            route,
        })
    }

    /// Sends a request; see [`send`].
    pub(crate) async fn send(
        &self,
        mut request: Request<Vec<u8>>,
    ) -> Result<Response<Incoming>, Failure> {
        if let Some(auth) = self.route.proxy_auth(request.uri()) {
            request
                .headers_mut()
                .entry(http::header::PROXY_AUTHORIZATION)
                .or_insert(auth);
        }
        send(&self.client, &self.options, request).await
    }
}
