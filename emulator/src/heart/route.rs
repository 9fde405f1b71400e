//! Which endpoint a request is for, and the small parsers every handler shares.

use http::Method;
use serde_json::Value;

use super::reply::{Location, START};
use crate::config::Endpoint;

/// The endpoint a request on the API listener is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Login,
    Tables(String),
    Schema(String, String),
    Query(String, String),
    Job(String),
    ObjectUrls,
    Control,
    /// Known path, wrong method.
    Method(Endpoint),
    NotFound,
}

impl Route {
    /// The endpoint counted and faulted for the request.
    pub(crate) fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Self::Login => Some(Endpoint::Login),
            Self::Tables(_) => Some(Endpoint::Tables),
            Self::Schema(..) => Some(Endpoint::Schema),
            Self::Query(..) => Some(Endpoint::Query),
            Self::Job(_) => Some(Endpoint::Job),
            Self::ObjectUrls => Some(Endpoint::ObjectUrls),
            Self::Method(e) => Some(*e),
            Self::Control | Self::NotFound => None,
        }
    }
}

/// Routes a request on the API listener.
pub(crate) fn route(method: &Method, path: &str) -> Route {
    if path.starts_with("/_emulator/") {
        return Route::Control;
    }
    let want = |m: Method, ok: Route, e: Endpoint| if *method == m { ok } else { Route::Method(e) };
    if path == "/ids/auth/login" {
        return want(Method::POST, Route::Login, Endpoint::Login);
    }
    let Some(rest) = path.strip_prefix("/dap/") else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let nonempty = |s: &str| !s.is_empty();
    match parts.as_slice() {
        ["query", ns, "table"] if nonempty(ns) => want(
            Method::GET,
            Route::Tables((*ns).to_owned()),
            Endpoint::Tables,
        ),
        ["query", ns, "table", t, "schema"] if nonempty(ns) && nonempty(t) => want(
            Method::GET,
            Route::Schema((*ns).to_owned(), (*t).to_owned()),
            Endpoint::Schema,
        ),
        ["query", ns, "table", t, "data"] if nonempty(ns) && nonempty(t) => want(
            Method::POST,
            Route::Query((*ns).to_owned(), (*t).to_owned()),
            Endpoint::Query,
        ),
        ["job", id] if nonempty(id) => {
            want(Method::GET, Route::Job((*id).to_owned()), Endpoint::Job)
        }
        ["object", "url"] => want(Method::POST, Route::ObjectUrls, Endpoint::ObjectUrls),
        _ => Route::NotFound,
    }
}

/// The decoded value of query parameter `name`.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (form encoding).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Location of the first occurrence of `"key"` in the body, else the start.
pub(crate) fn location_of(body: &str, key: &str) -> Location {
    let needle = format!("\"{key}\"");
    let Some(pos) = body.find(&needle) else {
        return START;
    };
    let before = &body[..pos];
    let line = before.matches('\n').count() + 1;
    let col_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line,
        column: before[col_start..].chars().count() + 1,
        character: before.chars().count() + 1,
    }
}

fn location_from_line_col(body: &str, line: usize, column: usize) -> Location {
    let mut character = 0;
    for (i, l) in body.split('\n').enumerate() {
        if i + 1 == line {
            character += column;
            break;
        }
        character += l.chars().count() + 1;
    }
    Location {
        line: line.max(1),
        column: column.max(1),
        character: character.max(1),
    }
}

/// Why a JSON request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyError {
    pub(crate) message: String,
    pub(crate) location: Location,
}

/// Parses a request body as JSON; returns the text too, to locate later errors.
pub(crate) fn json_body(body: Option<&bytes::Bytes>) -> Result<(String, Value), BodyError> {
    let Some(body) = body else {
        return Err(BodyError {
            message: "request body too large or unreadable".to_owned(),
            location: START,
        });
    };
    let text = String::from_utf8_lossy(body).into_owned();
    match serde_json::from_str(&text) {
        Ok(v) => Ok((text, v)),
        Err(e) => Err(BodyError {
            message: format!("malformed JSON: {e}"),
            location: location_from_line_col(&text, e.line(), e.column()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::POST, "/ids/auth/login"), Route::Login);
        assert_eq!(
            route(&Method::GET, "/ids/auth/login"),
            Route::Method(Endpoint::Login)
        );
        assert_eq!(
            route(&Method::GET, "/dap/query/canvas/table/users/schema"),
            Route::Schema("canvas".into(), "users".into())
        );
        assert_eq!(route(&Method::GET, "/dap/query//table"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/_emulator/stats"), Route::Control);
        assert_eq!(
            route(&Method::POST, "/dap/query/canvas/table"),
            Route::Method(Endpoint::Tables)
        );
    }

    #[test]
    fn decoding_and_locations() {
        assert_eq!(percent_decode("a%23b+c%zz"), "a#b c%zz");
        assert_eq!(
            query_param(Some("x=1&scope=a%2Fb"), "scope").as_deref(),
            Some("a/b")
        );
        let body = "{\n  \"format\": 1}";
        assert_eq!(
            location_of(body, "format"),
            Location {
                line: 2,
                column: 3,
                character: 5
            }
        );
        let err = json_body(Some(&bytes::Bytes::from("{\n  x"))).unwrap_err();
        assert_eq!(err.location.line, 2);
        assert!(json_body(None).is_err());
    }
}
