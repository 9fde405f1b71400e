//! `POST {base}/ids/auth/login`: trade the client ID and secret for an access token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use jiff::Timestamp;
use serde::Deserialize;

use super::{Body, decode};
use crate::config::Config;
use crate::error::{DapErrorKind, Error, ProtocolError, ProtocolErrorKind};
use crate::secret::AccessToken;

/// Assumed lifetime when the server sends neither `expires_in` nor a JWT `exp`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest lifetime believed, whatever the server says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A token as the login endpoint returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Login {
    /// The token.
    pub access_token: AccessToken,
    /// `expires_in`, clamped to `0..=MAX_LIFETIME`; `None` when absent.
    pub expires_in: Option<Duration>,
    /// The JWT's `exp` claim, when the token is a JWT with a sane one.
    pub jwt_expiry: Option<Timestamp>,
    /// `scope` (`SERVICE principal:P partner:Q region:R`).
    pub scope: Option<String>,
    /// `token_type` (`bearer`).
    pub token_type: Option<String>,
}

impl Login {
    /// How long the token may be used from `received` (wall time): the shorter of
    /// `expires_in` and the JWT's `exp`, defaulting to an hour when neither is known.
    pub fn lifetime(&self, received: Option<Timestamp>) -> Duration {
        let from_jwt = match (self.jwt_expiry, received) {
            (Some(exp), Some(now)) => {
                Some(Duration::try_from(exp.duration_since(now)).unwrap_or(Duration::ZERO))
            }
            _ => None,
        };
        match (self.expires_in, from_jwt) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b.min(MAX_LIFETIME),
            (None, None) => DEFAULT_LIFETIME,
        }
    }
}

/// Builds the login request: raw `id:secret` in a Basic header (client IDs contain `#`,
/// which form-encoding would mangle), `grant_type=client_credentials` as a form body.
pub fn request(config: &Config) -> Result<Request<Vec<u8>>, Error> {
    let credentials = config.credentials();
    let raw = format!(
        "{}:{}",
        credentials.client_id(),
        credentials.secret().secret()
    );
    let mut basic = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(raw)))
        .map_err(|_| crate::ArgumentError::new("credentials are not encodable"))?;
    basic.set_sensitive(true);
    Request::builder()
        .method(Method::POST)
        .uri(config.token_url())
        .header(header::USER_AGENT, config.user_agent().clone())
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic)
        .body(b"grant_type=client_credentials".to_vec())
        .map_err(|e| crate::ArgumentError::new(format!("cannot build login request: {e}")).into())
}

#[derive(Deserialize)]
struct Raw {
    access_token: String,
    expires_in: Option<serde_json::Number>,
    scope: Option<String>,
    token_type: Option<String>,
}

/// Parses the login response. 401 and 403 become [`DapErrorKind::Authentication`]; the
/// body of a login response is never quoted in an error, since it may hold a token.
pub fn parse<B: AsRef<[u8]>>(config: &Config, response: &Response<B>) -> Result<Login, Error> {
    const WHAT: &str = "login";
    let raw: Raw =
        decode(config, WHAT, response, &[StatusCode::OK], Body::Sensitive).map_err(|mut e| {
            if let Error::Api(api) = &mut e {
                if matches!(api.status.as_u16(), 401 | 403) {
                    api.kind = DapErrorKind::Authentication;
                    api.message.push_str(
                        " (check the client ID and secret: surrounding whitespace is \
                         trimmed, but a line break or space inside a pasted value is kept)",
                    );
                }
            }
            e
        })?;
    let invalid = |detail: &str| {
        Error::Protocol(ProtocolError {
            status: response.status(),
            kind: ProtocolErrorKind::InvalidShape {
                detail: detail.to_owned(),
            },
            body_excerpt: String::new(),
            what: WHAT,
        })
    };
    if raw.access_token.is_empty()
        || HeaderValue::try_from(format!("Bearer {}", raw.access_token)).is_err()
    {
        return Err(invalid("access_token is empty or not a valid header value"));
    }
    if let Some(kind) = &raw.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(invalid("token_type is not bearer"));
        }
    }
    let expires_in = raw.expires_in.map(|n| {
        let secs = n
            .as_i64()
            .map(|s| s.max(0) as u64)
            .or_else(|| n.as_u64())
            .or_else(|| {
                n.as_f64().map(|f| {
                    if f.is_finite() && f > 0.0 {
                        f as u64
                    } else {
                        0
                    }
                })
            })
            .unwrap_or(0);
        Duration::from_secs(secs).min(MAX_LIFETIME)
    });
    let jwt_expiry = jwt_exp(&raw.access_token);
    Ok(Login {
        access_token: AccessToken::new(raw.access_token),
        expires_in,
        jwt_expiry,
        scope: raw.scope,
        token_type: raw.token_type,
    })
}

/// The `exp` claim of a JWT, if the token is one and the claim is a sane timestamp.
/// The signature is not checked: the client cannot, and need not.
pub fn jwt_exp(token: &str) -> Option<Timestamp> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    let secs = exp
        .as_i64()
        .or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
    Timestamp::from_second(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::*;

    #[test]
    fn golden_request() {
        let r = request(&config()).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri(),
            "https://api-gateway.instructure.com/ids/auth/login"
        );
        let auth = r.headers()[header::AUTHORIZATION].clone();
        assert!(auth.is_sensitive());
        // base64("us-east-1#client:TOPSECRET"), the '#' left raw.
        assert_eq!(auth, "Basic dXMtZWFzdC0xI2NsaWVudDpUT1BTRUNSRVQ=");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert!(r.headers().contains_key(header::USER_AGENT));
        assert_eq!(r.body(), b"grant_type=client_credentials");
    }

    #[test]
    fn parses_vector() {
        let login = parse(&config(), &vector("login-ok")).unwrap();
        assert_eq!(login.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(login.token_type.as_deref(), Some("bearer"));
        let exp = login.jwt_expiry.unwrap();
        assert_eq!(exp.as_second(), 1795920811);
        let issued = Timestamp::from_second(1795917211).unwrap();
        assert_eq!(login.lifetime(Some(issued)), Duration::from_secs(3600));
        // A JWT that expires sooner than expires_in wins.
        let later = Timestamp::from_second(1795917211 + 3000).unwrap();
        assert_eq!(login.lifetime(Some(later)), Duration::from_secs(600));
    }

    #[test]
    fn bad_credentials_are_authentication_errors() {
        for status in [401, 403] {
            let mut r = vector("login-bad-credentials");
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            let e = parse(&config(), &r).unwrap_err();
            assert_eq!(
                e.api_error().unwrap().kind,
                DapErrorKind::Authentication,
                "{status}"
            );
            assert!(e.is_fatal());
        }
    }

    #[test]
    fn odd_lifetimes_are_clamped() {
        let body = |e: &str| format!(r#"{{"access_token":"abc","expires_in":{e}}}"#);
        let get = |e: &str| parse(&config(), &json(200, &body(e))).unwrap().expires_in;
        assert_eq!(get("-5"), Some(Duration::ZERO));
        assert_eq!(get("99999999999999"), Some(MAX_LIFETIME));
        assert_eq!(get("1e300"), Some(MAX_LIFETIME));
        assert_eq!(get("3599.5"), Some(Duration::from_secs(3599)));
        let none = parse(&config(), &json(200, r#"{"access_token":"abc"}"#)).unwrap();
        assert_eq!(none.lifetime(None), DEFAULT_LIFETIME);
    }

    #[test]
    fn garbage_jwt_exp_is_ignored() {
        assert_eq!(jwt_exp("abc"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
        assert_eq!(
            jwt_exp(&format!("a.{}.c", URL_SAFE_NO_PAD.encode(r#"{"exp":"x"}"#))),
            None
        );
        let far = format!(
            "a.{}.c",
            URL_SAFE_NO_PAD.encode(r#"{"exp":99999999999999999}"#)
        );
        assert_eq!(jwt_exp(&far), None);
    }

    #[test]
    fn malformed_login_body_never_quoted() {
        let r = json(
            200,
            r#"{"access_token": "SECRET-TOKEN", "expires_in": "soon"#,
        );
        let e = parse(&config(), &r).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("SECRET-TOKEN"));
        let r = json(
            200,
            r#"{"access_token": "SECRET TOKEN\n", "expires_in": 3}"#,
        );
        let e = parse(&config(), &r).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("SECRET"));
    }
}
