//! The ureq side: building the agent (TLS, proxy, timeouts) and sending one request.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use crate::Error;
use crate::Options;
use dap_proto::client::redact_queries as redact;

/// Builds the agent: rustls with the ring provider pinned, webpki roots (plus the
/// optional extra CA file), proxy from the environment, explicit timeouts, no redirects,
/// no automatic headers beyond the request's own.
pub(crate) fn agent(config: &dap_proto::Config, options: &Options) -> Result<ureq::Agent, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &options.extra_ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            let mut added = 0usize;
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(PemItem::Certificate(cert)) => {
                        certs.push(cert);
                        added += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Error::Tls(format!(
                            "cannot parse the CA file {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            if added == 0 {
                return Err(Error::Tls(format!(
                    "the CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            RootCerts::from(certs)
        }
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .root_certs(roots)
        .build();
    let proxy = if options.proxy_from_env {
        ureq::Proxy::try_from_env()
    } else {
        None
    };
    // Requests carry their own User-Agent (ureq keeps a request's header); the agent's
    // value is the same, for proxy CONNECT requests.
    let user_agent = config.user_agent().to_str().unwrap_or("dap-rs");
    let agent = ureq::config::Config::builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .https_only(false)
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(user_agent)
        .accept("")
        .accept_encoding("")
        .timeout_resolve(Some(options.connect_timeout))
        .timeout_connect(Some(options.connect_timeout))
        .timeout_send_request(Some(options.read_timeout))
        .timeout_send_body(Some(options.read_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .timeout_per_write(Some(options.read_timeout))
        .max_idle_connections(64)
        .max_idle_connections_per_host(32)
        .build()
        .new_agent();
    Ok(agent)
}

/// The request's target for logs: scheme, host and path, never the query string.
pub(crate) fn target(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

/// Sends a request with every header and its body (none when empty).
pub(crate) fn send(
    agent: &ureq::Agent,
    request: Request<Vec<u8>>,
) -> Result<Response<ureq::Body>, String> {
    let result = if request.body().is_empty() {
        let (parts, _) = request.into_parts();
        agent.run(Request::from_parts(parts, ()))
    } else {
        agent.run(request)
    };
    result.map_err(|e| redact(&e.to_string()))
}

/// Sends an API request and reads its body up to `limit` bytes (the core's cap plus one).
pub(crate) fn send_api(
    agent: &ureq::Agent,
    request: Request<Vec<u8>>,
    limit: u64,
) -> Result<Response<Vec<u8>>, String> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match send(agent, request) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, path, error = %e, "request failed");
            return Err(e);
        }
    };
    let (parts, body) = response.into_parts();
    let mut buf = Vec::new();
    let read = body
        .into_with_config()
        .limit(u64::MAX)
        .reader()
        .take(limit)
        .read_to_end(&mut buf);
    if let Err(e) = read {
        let e = redact(&e.to_string());
        tracing::debug!(%method, path, status = parts.status.as_u16(), error = %e, "reading the body failed");
        return Err(e);
    }
    tracing::debug!(
        %method,
        path,
        status = parts.status.as_u16(),
        bytes = buf.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "API response"
    );
    Ok(Response::from_parts(parts, buf))
}
