//! `GET {base}/dap/query/{namespace}/table`: the tables of a namespace.

use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::{Body, api_request, decode, segment, with_scope};
use crate::config::Config;
use crate::error::Error;
use crate::secret::AccessToken;

/// Builds the request.
pub fn request(
    config: &Config,
    token: &AccessToken,
    namespace: &str,
) -> Result<Request<Vec<u8>>, Error> {
    let ns = segment("namespace", namespace)?;
    let path = with_scope(config, format!("/dap/query/{ns}/table"));
    Ok(api_request(config, token, Method::GET, &path, None)?)
}

#[derive(Deserialize)]
struct Raw {
    tables: Vec<String>,
}

/// Parses the response into table names, in the server's order.
pub fn parse<B: AsRef<[u8]>>(
    config: &Config,
    response: &Response<B>,
) -> Result<Vec<String>, Error> {
    let raw: Raw = decode(
        config,
        "list tables",
        response,
        &[StatusCode::OK],
        Body::Quotable,
    )?;
    Ok(raw.tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::*;
    use crate::error::{DapErrorKind, ProtocolErrorKind};

    #[test]
    fn golden_request() {
        let r = request(&config(), &token(), "canvas").unwrap();
        assert_eq!(r.method(), Method::GET);
        assert_eq!(
            r.uri(),
            "https://api-gateway.instructure.com/dap/query/canvas/table"
        );
        assert_eq!(r.headers()["authorization"], "Bearer TOKEN-abc");
        assert!(r.headers()["authorization"].is_sensitive());
        assert_eq!(r.headers()["accept"], "application/json");
        assert!(
            r.headers()["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("dap-rs/")
        );
        assert!(r.body().is_empty());
    }

    #[test]
    fn scope_and_x_instauth() {
        let c = Config::builder("id", "s")
            .scope("root1")
            .token_header(crate::TokenHeader::XInstAuth)
            .build()
            .unwrap();
        let r = request(&c, &token(), "canvas_logs").unwrap();
        assert_eq!(
            r.uri().path_and_query().unwrap(),
            "/dap/query/canvas_logs/table?scope=root1"
        );
        assert_eq!(r.headers()["x-instauth"], "TOKEN-abc");
        assert!(!r.headers().contains_key("authorization"));
    }

    #[test]
    fn refuses_bad_namespace() {
        assert!(matches!(
            request(&config(), &token(), "../x"),
            Err(Error::Argument(_))
        ));
    }

    #[test]
    fn parses_vectors() {
        let tables = parse(&config(), &vector("tables-ok")).unwrap();
        assert_eq!(tables.len(), 8);
        assert_eq!(tables[0], "accounts");
        let e = parse(&config(), &vector("tables-unknown-namespace")).unwrap_err();
        let dap = e.api_error().unwrap();
        assert_eq!(
            dap.kind,
            DapErrorKind::NotFound {
                id: Some("nosuch".into()),
                kind: Some("namespace".into())
            }
        );
        assert_eq!(
            dap.uuid.as_deref(),
            Some("8fae06e8-ce83-4da8-ba6f-98a5afcd8809")
        );
    }

    #[test]
    fn missing_field_and_malformed() {
        let e = parse(&config(), &json(200, r#"{"table": []}"#)).unwrap_err();
        let Error::Protocol(p) = e else { panic!() };
        assert!(matches!(p.kind, ProtocolErrorKind::InvalidShape { .. }));
        assert!(p.body_excerpt.contains("table"));
        let Error::Protocol(p) = parse(&config(), &json(200, "{")).unwrap_err() else {
            panic!()
        };
        assert!(matches!(p.kind, ProtocolErrorKind::MalformedJson { .. }));
        let Error::Protocol(p) = parse(&config(), &json(200, "")).unwrap_err() else {
            panic!()
        };
        assert!(matches!(p.kind, ProtocolErrorKind::MalformedJson { .. }));
    }
}
