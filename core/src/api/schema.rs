//! `GET {base}/dap/query/{namespace}/table/{table}/schema`: a table's JSON Schema.

use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::{Body, api_request, decode, segment, with_scope};
use crate::config::Config;
use crate::error::Error;
use crate::model::TableSchema;
use crate::secret::AccessToken;

/// Builds the request.
pub fn request(
    config: &Config,
    token: &AccessToken,
    namespace: &str,
    table: &str,
) -> Result<Request<Vec<u8>>, Error> {
    let ns = segment("namespace", namespace)?;
    let table = segment("table", table)?;
    let path = with_scope(config, format!("/dap/query/{ns}/table/{table}/schema"));
    Ok(api_request(config, token, Method::GET, &path, None)?)
}

#[derive(Deserialize)]
struct Raw {
    schema: Box<serde_json::value::RawValue>,
    version: u64,
}

/// Parses the response; the schema is validated and kept as the server sent it.
pub fn parse<B: AsRef<[u8]>>(
    config: &Config,
    response: &Response<B>,
) -> Result<TableSchema, Error> {
    let raw: Raw = decode(
        config,
        "table schema",
        response,
        &[StatusCode::OK],
        Body::Quotable,
    )?;
    Ok(TableSchema {
        schema: raw.schema,
        version: raw.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::*;
    use crate::error::{DapErrorKind, ProtocolErrorKind};

    #[test]
    fn golden_request() {
        let r = request(&config(), &token(), "canvas", "accounts").unwrap();
        assert_eq!(r.method(), Method::GET);
        assert_eq!(
            r.uri(),
            "https://api-gateway.instructure.com/dap/query/canvas/table/accounts/schema"
        );
        assert_eq!(r.headers()["authorization"], "Bearer TOKEN-abc");
        assert!(request(&config(), &token(), "canvas", "a/b").is_err());
    }

    #[test]
    fn parses_vectors() {
        let s = parse(&config(), &vector("schema-ok")).unwrap();
        assert_eq!(s.version, 2);
        assert!(s.value()["properties"]["key"].is_object());
        // Kept verbatim: the server's key order survives.
        assert!(s.raw().starts_with(
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object""#
        ));
        let e = parse(&config(), &vector("schema-unknown-table")).unwrap_err();
        assert!(matches!(
            e.api_error().unwrap().kind,
            DapErrorKind::NotFound { .. }
        ));
    }

    #[test]
    fn oversized_body_refused() {
        let c = Config::builder("id", "s")
            .max_body_bytes(2048)
            .build()
            .unwrap();
        let big = format!(r#"{{"schema": "{}", "version": 1}}"#, "x".repeat(4096));
        let Error::Protocol(p) = parse(&c, &json(200, &big)).unwrap_err() else {
            panic!()
        };
        assert_eq!(p.kind, ProtocolErrorKind::BodyTooLarge { limit: 2048 });
        assert!(p.body_excerpt.is_empty());
    }

    #[test]
    fn negative_version_is_shape_error() {
        let Error::Protocol(p) =
            parse(&config(), &json(200, r#"{"schema": {}, "version": -1}"#)).unwrap_err()
        else {
            panic!()
        };
        assert!(matches!(p.kind, ProtocolErrorKind::InvalidShape { .. }));
    }
}
