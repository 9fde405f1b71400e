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

use crate::{Error, Options};
use dap_proto::client::error_text;

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
                    tracing::debug!(proxy = %proxy_host(proxy.uri()), "connecting through a CONNECT tunnel");
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
                    tracing::debug!(proxy = %proxy_host(proxy.uri()), "connecting to an HTTP proxy");
                    let io = tower_service::Service::call(&mut http, proxy.uri().clone()).await?;
                    Ok(Conn { io, proxied: true })
                }
            }
        })
    }
}

/// Host and port of a proxy, for logs (never its credentials).
fn proxy_host(uri: &Uri) -> String {
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "(unknown)".to_owned(),
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
        let matcher = options.proxy_from_env.then(Matcher::from_env);
        Self::with_matcher(options, matcher)
    }

    /// A client routed by `matcher` (`None`: always direct).
    pub(crate) fn with_matcher(options: Options, matcher: Option<Matcher>) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let route = RouteConnector {
            http,
            matcher: matcher.map(Arc::new),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot proxy: answers the first request with `reply` and returns its head.
    async fn proxy(reply: impl Into<String>) -> (Uri, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = reply.into();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (format!("http://user:pw@{addr}").parse().unwrap(), task)
    }

    fn net(matcher: Matcher) -> Net {
        let options = Options::default()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(2));
        Net::with_matcher(options, Some(matcher)).unwrap()
    }

    #[tokio::test]
    async fn plain_http_goes_to_the_proxy_in_absolute_form() {
        let (uri, seen) = proxy("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await;
        let net = net(Matcher::builder().http(uri.to_string()).build());
        let request = Request::get("http://dap.example.invalid/x?sig=1")
            .body(Vec::new())
            .unwrap();
        let response = exchange(&net, request, 1024).await.unwrap();
        assert_eq!(response.status(), 204);
        let head = seen.await.unwrap();
        assert!(
            head.starts_with("GET http://dap.example.invalid/x?sig=1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn https_goes_through_a_connect_tunnel() {
        let (uri, seen) = proxy("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
        let net = net(Matcher::builder().https(uri.to_string()).build());
        let request = Request::get("https://dap.example.invalid/x")
            .body(Vec::new())
            .unwrap();
        let failure = exchange(&net, request, 1024).await.unwrap_err();
        assert!(!failure.0.contains("pw"), "{}", failure.0);
        let head = seen.await.unwrap();
        assert!(
            head.starts_with("CONNECT dap.example.invalid:443 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn no_proxy_connects_directly() {
        let (direct, seen) = proxy("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let authority = direct
            .authority()
            .unwrap()
            .as_str()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let net = net(Matcher::builder()
            .http("http://127.0.0.1:9")
            .no("127.0.0.1")
            .build());
        let request = Request::get(format!("http://{authority}/direct"))
            .body(Vec::new())
            .unwrap();
        let response = exchange(&net, request, 1024).await.unwrap();
        assert_eq!(response.body().as_ref(), b"ok");
        assert!(seen.await.unwrap().starts_with("GET /direct HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn api_bodies_stop_after_the_cap() {
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 4000\r\n\r\n{}",
            "a".repeat(4000)
        );
        let (direct, _seen) = proxy(reply).await;
        let authority = direct
            .authority()
            .unwrap()
            .as_str()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let net = Net::with_matcher(Options::default(), None).unwrap();
        let request = Request::get(format!("http://{authority}/big"))
            .body(Vec::new())
            .unwrap();
        let response = exchange(&net, request, 1024).await.unwrap();
        assert_eq!(response.body().len(), 1025);
    }

    #[tokio::test]
    async fn truncated_bodies_are_failures() {
        let (direct, _seen) = proxy("HTTP/1.1 200 OK\r\ncontent-length: 4000\r\n\r\nabc").await;
        let authority = direct
            .authority()
            .unwrap()
            .as_str()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let net = Net::with_matcher(Options::default(), None).unwrap();
        let request = Request::get(format!("http://{authority}/cut"))
            .body(Vec::new())
            .unwrap();
        let failure = exchange(&net, request, 1024).await.unwrap_err();
        assert!(!failure.0.is_empty());
    }
}
