//! `POST {base}/dap/object/url`: pre-signed download URLs for a job's objects.

use std::collections::HashMap;

use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{Body, api_request, decode, object_id};
use crate::config::Config;
use crate::error::{Error, ProtocolError, ProtocolErrorKind};
use crate::model::{ObjectId, ObjectUrl};
use crate::secret::{AccessToken, PresignedUrl};

/// Splits ids into batches of the configured size, one request each.
pub fn batches<'a>(config: &Config, ids: &'a [ObjectId]) -> impl Iterator<Item = &'a [ObjectId]> {
    ids.chunks(config.url_batch_size())
}

/// Builds the request for one batch (see [`batches`]).
pub fn request(
    config: &Config,
    token: &AccessToken,
    ids: &[ObjectId],
) -> Result<Request<Vec<u8>>, Error> {
    if ids.is_empty() {
        return Err(crate::ArgumentError::new("no object ids given").into());
    }
    let list = ids
        .iter()
        .map(|id| object_id(id.as_str()).map(|id| json!({ "id": id })))
        .collect::<Result<Vec<_>, _>>()?;
    let body = serde_json::Value::Array(list).to_string().into_bytes();
    Ok(api_request(
        config,
        token,
        Method::POST,
        "/dap/object/url",
        Some(body),
    )?)
}

#[derive(Deserialize)]
struct RawUrl {
    url: String,
}

#[derive(Deserialize)]
struct Raw {
    urls: HashMap<String, RawUrl>,
}

/// Parses the response and pairs every requested id with its URL, in the order of
/// `requested`. A requested id without a URL, or a URL that is not absolute `http(s)`, is
/// a protocol error; ids the server adds unasked are ignored. The body is never quoted
/// in errors: it holds signatures.
pub fn parse<B: AsRef<[u8]>>(
    config: &Config,
    requested: &[ObjectId],
    response: &Response<B>,
) -> Result<Vec<ObjectUrl>, Error> {
    const WHAT: &str = "object URLs";
    let raw: Raw = decode(config, WHAT, response, &[StatusCode::OK], Body::Sensitive)?;
    let invalid = |detail: String| {
        Error::Protocol(ProtocolError {
            status: response.status(),
            kind: ProtocolErrorKind::InvalidShape { detail },
            body_excerpt: String::new(),
            what: WHAT,
        })
    };
    requested
        .iter()
        .map(|id| {
            // `get`, not `remove`: an id requested twice gets its URL twice, as it
            // would if the two fell into different batches.
            let url = raw
                .urls
                .get(id.as_str())
                .ok_or_else(|| invalid(format!("no URL for object {id}")))?
                .url
                .clone();
            let uri = url.parse::<http::Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("https" | "http")) && u.authority().is_some()
            });
            if uri.is_none() {
                return Err(invalid(format!(
                    "the URL for object {id} is not an absolute http(s) URL"
                )));
            }
            Ok(ObjectUrl {
                id: id.clone(),
                url: PresignedUrl::new(url),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::*;

    const ID: &str = "28313161-4ff8-4e58-a52f-5f4c5265257d/part-00000-f14dd88f-5a7c-4d66-8c8c-e78ef0497813-c000.json.gz";

    #[test]
    fn golden_request_and_batches() {
        let ids = vec![ObjectId::new("a/1"), ObjectId::new("a/2")];
        let r = request(&config(), &token(), &ids).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri(),
            "https://api-gateway.instructure.com/dap/object/url"
        );
        assert_eq!(r.body(), br#"[{"id":"a/1"},{"id":"a/2"}]"#);
        let c = Config::builder("id", "s")
            .url_batch_size(2)
            .build()
            .unwrap();
        let many: Vec<_> = (0..5).map(|i| ObjectId::new(format!("o{i}"))).collect();
        let sizes: Vec<_> = batches(&c, &many).map(<[_]>::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(request(&config(), &token(), &[]).is_err());
    }

    #[test]
    fn parses_vector_without_leaking() {
        let urls = parse(&config(), &[ObjectId::new(ID)], &vector("object-urls-ok")).unwrap();
        assert_eq!(urls.len(), 1);
        assert!(urls[0].url.secret().contains("X-Amz-Signature="));
        assert!(!format!("{urls:?}").contains("X-Amz-Signature"));
        assert_eq!(
            urls[0].url.last_path_segment(),
            "part-00000-f14dd88f-5a7c-4d66-8c8c-e78ef0497813-c000.json.gz"
        );
    }

    #[test]
    fn missing_or_bad_urls() {
        let e = parse(
            &config(),
            &[ObjectId::new("other")],
            &vector("object-urls-ok"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no URL for object other"));
        assert!(!e.to_string().contains("X-Amz"));
        let r = json(
            200,
            r#"{"urls":{"a":{"url":"/relative?X-Amz-Signature=s"}}}"#,
        );
        let e = parse(&config(), &[ObjectId::new("a")], &r).unwrap_err();
        assert!(!format!("{e:?}").contains("X-Amz-Signature"));
    }
}
