//! Login (`POST /ids/auth/login`), and the checks every `/dap` request passes:
//! User-Agent, bearer token, rate limit.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use serde_json::json;

use super::Heart;
use super::reply::{Resp, START, set_header, to_json};
use super::route::percent_decode;
use crate::config::Endpoint;
use crate::jwt::{self, Claims};
use crate::state::TokenProblem;

fn header_text(req: &Request<Option<Bytes>>, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether the Basic credentials are the configured ones.
fn credentials_ok(heart: &Heart, authorization: Option<&str>) -> bool {
    authorization
        .and_then(|a| {
            let (scheme, rest) = a.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|s| {
            s.split_once(':').is_some_and(|(id, secret)| {
                id == heart.config.client_id && secret == heart.config.client_secret
            })
        })
}

/// Whether the request is a form with `grant_type=client_credentials`.
fn grant_ok(req: &Request<Option<Bytes>>) -> bool {
    let form = header_text(req, header::CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    let grant = req.body().as_ref().is_some_and(|b| {
        String::from_utf8_lossy(b).split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            percent_decode(k) == "grant_type" && percent_decode(v) == "client_credentials"
        })
    });
    form && grant
}

/// `POST /ids/auth/login`.
pub(super) fn login(heart: &Heart, req: &Request<Option<Bytes>>, now: i64) -> Resp {
    if !credentials_ok(heart, header_text(req, header::AUTHORIZATION)) {
        heart.lock().stats.login_failures += 1;
        return heart.error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Invalid client credentials",
        );
    }
    if !grant_ok(req) {
        heart.lock().stats.login_failures += 1;
        return heart.validation(
            "expected Content-Type application/x-www-form-urlencoded and body grant_type=client_credentials",
            START,
        );
    }
    let now_s = now.div_euclid(1000);
    let jti = heart.ids.uuid();
    let lifetime = {
        let mut st = heart.lock();
        let lifetime = st
            .faults
            .token_lifetime_secs
            .unwrap_or(heart.config.token_lifetime.as_secs())
            .max(1);
        st.issue_token(jti.clone());
        lifetime
    };
    let client_id = &heart.config.client_id;
    let (region, principal) = client_id
        .split_once('#')
        .unwrap_or(("us-east-1", client_id.as_str()));
    let token = jwt::sign(
        &heart.jwt_key,
        &Claims {
            sub: client_id.clone(),
            iss: "dap-emulator".to_owned(),
            iat: now_s,
            exp: now_s.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
            jti,
            region: region.to_owned(),
        },
    );
    to_json(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "expires_in": lifetime,
            "scope": format!("dap principal:{principal} partner:instructure region:{region}"),
            "token_type": "bearer",
        }),
    )
}

/// The bearer token of a request (`Authorization: Bearer` or `x-instauth`).
fn bearer(req: &Request<Option<Bytes>>) -> Result<String, &'static str> {
    match req.headers().get(header::AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().map_err(|_| "malformed Authorization header")?;
            let (scheme, rest) = v.split_once(' ').ok_or("malformed Authorization header")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("missing bearer token");
            }
            Ok(rest.trim().to_owned())
        }
        None => match req.headers().get("x-instauth") {
            Some(v) => Ok(v
                .to_str()
                .map_err(|_| "malformed x-instauth header")?
                .trim()
                .to_owned()),
            None => Err("missing bearer token"),
        },
    }
}

fn check_token(heart: &Heart, req: &Request<Option<Bytes>>, now: i64) -> Result<(), &'static str> {
    let token = bearer(req)?;
    let claims = jwt::verify(&heart.jwt_key, &token).ok_or("invalid token")?;
    if now >= claims.exp.saturating_mul(1000) {
        return Err("token expired");
    }
    heart.lock().check_token(&claims.jti).map_err(|p| match p {
        TokenProblem::Revoked => "token revoked",
        TokenProblem::Unknown => "unknown token",
    })
}

/// User-Agent, token and rate-limit checks of `/dap` requests: the refusal, if any.
pub(super) fn gate(
    heart: &Heart,
    req: &Request<Option<Bytes>>,
    endpoint: Option<Endpoint>,
    now: i64,
) -> Option<Resp> {
    let ua_ok = req
        .headers()
        .get(header::USER_AGENT)
        .is_some_and(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace));
    if !ua_ok {
        heart.lock().stats.missing_user_agent += 1;
        return Some(heart.error(
            StatusCode::FORBIDDEN,
            "RequestTypeForbidden",
            "Forbidden: requests must carry a User-Agent header",
        ));
    }
    if let Err(msg) = check_token(heart, req, now) {
        heart.lock().stats.unauthorized += 1;
        let mut r = heart.error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            format!("Unauthorized: {msg}"),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return Some(r);
    }
    let retry = endpoint.and_then(|e| heart.lock().rate_limit(e, now))?;
    let mut r = heart.error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Rate limit exceeded, retry later",
    );
    set_header(&mut r, header::RETRY_AFTER, &retry.to_string());
    Some(r)
}
