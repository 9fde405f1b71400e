//! The ureq side: the agent (TLS, proxy, timeouts) and one request.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use dap_client::net::{extra_roots, is_loopback};
use dap_proto::{Config, FailureKind, TransportFailure};
use http::{Request, Response};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::{Error, Options};

/// Builds the agent: rustls with the ring provider pinned, Mozilla's roots plus the
/// extra and system ones, proxy from the environment, explicit timeouts (reads capped by
/// the low-speed window), no redirects, no automatic headers beyond the request's own.
pub(crate) fn agent(config: &Config, options: &Options) -> Result<ureq::Agent, Error> {
    let extra = extra_roots(options)?;
    let roots = if extra.is_empty() {
        RootCerts::WebPki
    } else {
        let builtin = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned());
        let extra = extra
            .iter()
            .map(|der| Certificate::from_der(der).to_owned());
        RootCerts::from(builtin.chain(extra).collect::<Vec<_>>())
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(roots)
        .build();
    let proxy = match &options.proxy {
        Some(url) => {
            Some(ureq::Proxy::new(url).map_err(|e| Error::Usage(format!("bad proxy: {e}")))?)
        }
        None => options
            .proxy_from_env
            .then(ureq::Proxy::try_from_env)
            .flatten(),
    };
    let read = options.read_timeout.min(config.low_speed().window);
    Ok(ureq::config::Config::builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .https_only(false)
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(config.user_agent().to_str().unwrap_or("dap-rs"))
        .accept("")
        .accept_encoding("")
        // No resolve timeout: ureq would spawn a thread per request to enforce it (one
        // per object of a download, each with its own stack and arena). Name lookups
        // are bounded by the per-call deadline instead.
        .timeout_connect(Some(options.connect_timeout))
        .timeout_send_request(Some(read))
        .timeout_send_body(Some(read))
        .timeout_recv_response(Some(read))
        .timeout_per_read(Some(read))
        .timeout_per_write(Some(read))
        // A download keeps a few connections per host busy; more idle ones only hold
        // their buffers.
        .max_idle_connections(16)
        .max_idle_connections_per_host(8)
        .build()
        .new_agent())
}

/// Sends a request with every header and its body, ending it at `deadline`; loopback
/// destinations never go through a proxy.
pub(crate) fn send(
    agent: &ureq::Agent,
    request: Request<Vec<u8>>,
    deadline: Option<Instant>,
) -> Result<Response<ureq::Body>, TransportFailure> {
    let result = if request.body().is_empty() {
        let (parts, _) = request.into_parts();
        agent.run(configured(agent, Request::from_parts(parts, ()), deadline))
    } else {
        agent.run(configured(agent, request, deadline))
    };
    result.map_err(|e| failure(&e))
}

/// `request` with no proxy for a loopback destination and a global timeout at `deadline`.
fn configured<S: ureq::AsSendBody>(
    agent: &ureq::Agent,
    request: Request<S>,
    deadline: Option<Instant>,
) -> Request<S> {
    let unproxy = agent.config().proxy().is_some() && is_loopback(request.uri());
    if !unproxy && deadline.is_none() {
        return request;
    }
    let mut config = agent.configure_request(request);
    if unproxy {
        config = config.proxy(None);
    }
    if let Some(d) = deadline {
        config = config.timeout_global(Some(d.saturating_duration_since(Instant::now())));
    }
    config.build()
}

/// Sends an API request and reads its body up to `limit` bytes (the core's cap plus
/// one), under the low-speed rule.
pub(crate) fn exchange(
    agent: &ureq::Agent,
    config: &Config,
    request: Request<Vec<u8>>,
    deadline: Option<Instant>,
) -> Result<Response<Vec<u8>>, TransportFailure> {
    let limit = config.max_body_bytes().saturating_add(1);
    let (parts, body) = send(agent, request, deadline)?.into_parts();
    let mut reader = body.into_with_config().limit(u64::MAX).reader();
    let mut meter = config.low_speed().meter();
    let mut buf = Vec::with_capacity(dap_client::net::body_capacity(&parts.headers, limit));
    let mut chunk = vec![0u8; 16 << 10];
    while buf.len() < limit {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let take = n.min(limit - buf.len());
                buf.extend_from_slice(chunk.get(..take).unwrap_or_default());
                meter.observe(n as u64, Instant::now())?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(&e)),
        }
    }
    Ok(Response::from_parts(parts, buf))
}

/// The transport failure a ureq error stands for.
fn failure(error: &ureq::Error) -> TransportFailure {
    let kind = match error {
        ureq::Error::Timeout(_) => FailureKind::Timeout,
        ureq::Error::Io(e) => return io_failure(e),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Tls(_) => {
            FailureKind::Connect
        }
        ureq::Error::ConnectProxyFailed(_) => FailureKind::Connect,
        _ => FailureKind::Other,
    };
    TransportFailure::new(kind, error.to_string())
}

/// The transport failure an I/O error while reading stands for.
pub(crate) fn io_failure(error: &std::io::Error) -> TransportFailure {
    dap_client::net::failure_of(error, false)
}
