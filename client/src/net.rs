//! What both transports decide alike about the network: trust roots and proxies,
//! failures, and how much room a response body gets.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Error, Options};

/// The certificates to trust besides the transport's built-in Mozilla roots: those of
/// [`Options::extra_ca_file`] and, with [`Options::system_roots`], the operating
/// system's store.
pub fn extra_roots(options: &Options) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut roots = Vec::new();
    if let Some(path) = &options.extra_ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                Error::Tls(format!("cannot parse the CA file {}: {e}", path.display()))
            })?;
            roots.push(cert);
        }
        if roots.is_empty() {
            return Err(Error::Tls(format!(
                "the CA file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    if options.system_roots {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(Error::Tls(format!(
                "cannot load the system's certificates: {why}"
            )));
        }
        roots.extend(found.certs);
    }
    Ok(roots)
}

/// Whether `uri` names a loopback host (`localhost`, `127.0.0.0/8`, `::1`). Such
/// requests never go through a proxy: plain http is allowed to loopback only because
/// that traffic never leaves the machine.
pub fn is_loopback(uri: &http::Uri) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The transport failure an error stands for, the texts of its sources included (and
/// any URL query string cut): `connect` when the transport knows no connection was made,
/// otherwise judged from the I/O errors in the chain.
pub fn failure_of(
    error: &(dyn std::error::Error + 'static),
    connect: bool,
) -> dap_proto::TransportFailure {
    use dap_proto::FailureKind;
    use std::io::ErrorKind as K;
    let mut kind = if connect {
        FailureKind::Connect
    } else {
        FailureKind::Broken
    };
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::ConnectionRefused | K::NotFound | K::AddrNotAvailable => {
                    kind = FailureKind::Connect
                }
                K::TimedOut | K::WouldBlock => kind = FailureKind::Timeout,
                _ => {}
            }
        }
        let piece = e.to_string();
        if !text.contains(&piece) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&piece);
        }
        next = e.source();
    }
    dap_proto::TransportFailure::new(kind, text)
}

/// Host and path of a request, for logs: never the query string.
pub fn target(uri: &http::Uri) -> String {
    format!(
        "{}{}",
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

/// How many bytes to reserve for an API response body read up to `cap` bytes: its
/// `Content-Length` when it says (no more than `cap`, which bounds the body anyway), so
/// a large body (a job of 20,000 objects is megabytes) is not grown by doubling into a
/// buffer nearly twice its size; otherwise nothing.
pub fn body_capacity(headers: &http::HeaderMap, cap: usize) -> usize {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |len| len.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_capacities() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(body_capacity(&headers, 100), 0);
        headers.insert(http::header::CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(body_capacity(&headers, 100), 42);
        assert_eq!(body_capacity(&headers, 10), 10, "never beyond the cap");
        headers.insert(http::header::CONTENT_LENGTH, "lots".parse().unwrap());
        assert_eq!(body_capacity(&headers, 100), 0);
    }

    #[test]
    fn loopback_hosts() {
        for u in [
            "http://localhost:1/x",
            "http://127.0.0.9/",
            "http://[::1]:8/",
        ] {
            assert!(is_loopback(&u.parse().unwrap()), "{u}");
        }
        for u in ["http://example.com/", "http://10.0.0.1/", "https://[::2]/"] {
            assert!(!is_loopback(&u.parse().unwrap()), "{u}");
        }
    }

    #[test]
    fn failures_name_their_kind_without_queries() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "GET h/p?sig=1");
        let f = failure_of(&refused, false);
        assert_eq!(f.kind(), dap_proto::FailureKind::Connect);
        assert!(!f.to_string().contains("sig=1"), "{f}");
    }

    #[test]
    fn extra_ca_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Options::default().extra_ca_file(dir.path().join("none.pem"));
        assert!(matches!(extra_roots(&missing), Err(Error::Io { .. })));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here").unwrap();
        let options = Options::default().extra_ca_file(&empty);
        assert!(matches!(extra_roots(&options), Err(Error::Tls(_))));
    }
}
