//! HTTP handlers of the API, control and storage listeners.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Endpoint, FaultAction, FaultBody, Faults};
use crate::data::{self, QueryRange, format_ts, format_ts_millis};
use crate::encode::{Format, Mode};
use crate::state::{Job, JobStatus, Shared};
use crate::storage::{self, Body, ObjectBody, STORAGE_PREFIX, SignatureError};

type Resp = Response<Body>;

/// Largest request body accepted.
const BODY_LIMIT: usize = 1 << 20;

// ---------------------------------------------------------------- responses

fn json_response(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn to_json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    json_response(status, serde_json::to_string(v).unwrap_or_default())
}

/// Extra fields of an error envelope.
#[derive(Default, Serialize)]
struct ErrorExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location>,
}

#[derive(Serialize, Clone, Copy)]
struct Location {
    line: usize,
    column: usize,
    character: usize,
}

const START: Location = Location {
    line: 1,
    column: 1,
    character: 1,
};

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    uuid: String,
    message: String,
    #[serde(flatten)]
    extra: ErrorExtra,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorBody<'a>,
}

fn error_with(
    shared: &Shared,
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
    extra: ErrorExtra,
) -> Resp {
    to_json(
        status,
        &Envelope {
            error: ErrorBody {
                kind,
                uuid: shared.uuid(),
                message: message.into(),
                extra,
            },
        },
    )
}

fn error(shared: &Shared, status: StatusCode, kind: &str, message: impl Into<String>) -> Resp {
    error_with(shared, status, kind, message, ErrorExtra::default())
}

fn validation(shared: &Shared, message: impl Into<String>, location: Location) -> Resp {
    error_with(
        shared,
        StatusCode::BAD_REQUEST,
        "ValidationError",
        message,
        ErrorExtra {
            location: Some(location),
            ..ErrorExtra::default()
        },
    )
}

fn not_found(shared: &Shared, kind: &'static str, id: &str) -> Resp {
    error_with(
        shared,
        StatusCode::NOT_FOUND,
        "ObjectNotFound",
        format!("{kind} not found: {id}"),
        ErrorExtra {
            id: Some(id.to_owned()),
            kind: Some(kind),
            ..ErrorExtra::default()
        },
    )
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Resp {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>EMULATOR</RequestId></Error>"
    );
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

fn fault_response(
    shared: &Shared,
    status: u16,
    body: FaultBody,
    retry_after: Option<u64>,
    storage: bool,
) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut r = match body {
        FaultBody::Json if storage => s3_error(
            status,
            "SlowDown",
            &format!("injected HTTP {}", status.as_u16()),
        ),
        FaultBody::Json => {
            let kind = match status.as_u16() {
                429 => "TooManyRequests",
                401 => "AuthenticationError",
                s if s >= 500 => "ServerError",
                _ => "Error",
            };
            error(
                shared,
                status,
                kind,
                format!("injected HTTP {}", status.as_u16()),
            )
        }
        FaultBody::Html => {
            let code = status.as_u16();
            let mut r = Response::new(Body::full(format!(
                "<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1></body></html>"
            )));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        FaultBody::MalformedJson => json_response(
            status,
            "{\"error\": {\"type\": \"ServerError\", \"uuid\": \"trunc".to_owned(),
        ),
    };
    if let Some(s) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

// ---------------------------------------------------------------- routing

enum Route {
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
    fn endpoint(&self) -> Option<Endpoint> {
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

fn route(method: &Method, path: &str) -> Route {
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

async fn read_body(body: Incoming) -> Option<Bytes> {
    http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// Entry point of the API listener.
pub(crate) async fn handle_api(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let route = route(req.method(), req.uri().path());
    if let Route::Control = route {
        return Ok(control(&shared, req).await);
    }
    let endpoint = route.endpoint();
    let fault = shared.begin_request(endpoint);
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if let Some(FaultAction::Status {
        status,
        body,
        retry_after,
    }) = fault.action
    {
        return Ok(fault_response(&shared, status, body, retry_after, false));
    }
    let resp = match route {
        Route::Login => login(&shared, req).await,
        Route::NotFound => error(
            &shared,
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no such resource: {}", req.uri().path()),
        ),
        Route::Method(_) => {
            let mut r = error(
                &shared,
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("method {} not allowed here", req.method()),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            r
        }
        Route::Control => unreachable_control(&shared),
        dap_route => {
            if let Some(r) = gate(&shared, &req, endpoint) {
                return Ok(r);
            }
            let scope = query_param(req.uri().query(), "scope");
            match dap_route {
                Route::Tables(ns) => list_tables(&shared, &ns),
                Route::Schema(ns, t) => schema(&shared, &ns, &t),
                Route::Query(ns, t) => {
                    let body = read_body(req.into_body()).await;
                    start_query(&shared, &ns, &t, scope.as_deref(), body)
                }
                Route::Job(id) => job_status(&shared, &id),
                Route::ObjectUrls => {
                    let body = read_body(req.into_body()).await;
                    object_urls(&shared, body)
                }
                _ => unreachable_control(&shared),
            }
        }
    };
    Ok(resp)
}

fn unreachable_control(shared: &Shared) -> Resp {
    error(
        shared,
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such resource",
    )
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// User-Agent, token and rate-limit checks of `/dap` requests.
fn gate(shared: &Shared, req: &Request<Incoming>, endpoint: Option<Endpoint>) -> Option<Resp> {
    let ua_ok = req
        .headers()
        .get(header::USER_AGENT)
        .is_some_and(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace));
    if !ua_ok {
        shared.lock().stats.missing_user_agent += 1;
        return Some(error(
            shared,
            StatusCode::FORBIDDEN,
            "RequestTypeForbidden",
            "Forbidden: requests must carry a User-Agent header",
        ));
    }
    if let Err(msg) = check_token(shared, req) {
        shared.lock().stats.unauthorized += 1;
        let mut r = error(
            shared,
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
    if let Some(retry) = endpoint.and_then(|e| shared.rate_limit(e)) {
        let mut r = error(
            shared,
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Rate limit exceeded, retry later",
        );
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Some(r);
    }
    None
}

fn check_token(shared: &Shared, req: &Request<Incoming>) -> Result<(), &'static str> {
    let token = match req.headers().get(header::AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().map_err(|_| "malformed Authorization header")?;
            let (scheme, rest) = v.split_once(' ').ok_or("malformed Authorization header")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("missing bearer token");
            }
            rest.trim().to_owned()
        }
        None => match req.headers().get("x-instauth") {
            Some(v) => v
                .to_str()
                .map_err(|_| "malformed x-instauth header")?
                .trim()
                .to_owned(),
            None => return Err("missing bearer token"),
        },
    };
    let claims = crate::jwt::verify(&shared.jwt_key, &token).ok_or("invalid token")?;
    if shared.now_ms() >= claims.exp.saturating_mul(1000) {
        return Err("token expired");
    }
    let st = shared.lock();
    match st.tokens.get(&claims.jti) {
        Some(serial) if *serial >= st.revoked_below => Ok(()),
        Some(_) => Err("token revoked"),
        None => Err("unknown token"),
    }
}

// ---------------------------------------------------------------- login

async fn login(shared: &Shared, req: Request<Incoming>) -> Resp {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    let body = read_body(req.into_body()).await;
    let creds_ok = auth
        .as_deref()
        .and_then(|a| {
            let (scheme, rest) = a.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|s| {
            s.split_once(':').is_some_and(|(id, secret)| {
                id == shared.config.client_id && secret == shared.config.client_secret
            })
        });
    if !creds_ok {
        shared.lock().stats.login_failures += 1;
        return error(
            shared,
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Invalid client credentials",
        );
    }
    let grant_ok = body.as_ref().is_some_and(|b| {
        String::from_utf8_lossy(b).split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            percent_decode(k) == "grant_type" && percent_decode(v) == "client_credentials"
        })
    });
    if !form || !grant_ok {
        shared.lock().stats.login_failures += 1;
        return validation(
            shared,
            "expected Content-Type application/x-www-form-urlencoded and body grant_type=client_credentials",
            START,
        );
    }
    let now_s = shared.now_ms().div_euclid(1000);
    let jti = shared.uuid();
    let lifetime = {
        let mut st = shared.lock();
        let lifetime = st
            .faults
            .token_lifetime_secs
            .unwrap_or(shared.config.token_lifetime.as_secs())
            .max(1);
        let serial = st.next_token_serial;
        st.next_token_serial += 1;
        st.tokens.insert(jti.clone(), serial);
        st.stats.logins += 1;
        st.stats.tokens_issued += 1;
        lifetime
    };
    let client_id = &shared.config.client_id;
    let (region, principal) = client_id
        .split_once('#')
        .unwrap_or(("us-east-1", client_id.as_str()));
    let token = crate::jwt::sign(
        &shared.jwt_key,
        &crate::jwt::Claims {
            sub: client_id.clone(),
            iss: "dap-emulator".to_owned(),
            iat: now_s,
            exp: now_s + lifetime as i64,
            jti,
            region: region.to_owned(),
        },
    );
    let body = json!({
        "access_token": token,
        "expires_in": lifetime,
        "scope": format!("dap principal:{principal} partner:instructure region:{region}"),
        "token_type": "bearer",
    });
    to_json(StatusCode::OK, &body)
}

// ---------------------------------------------------------------- catalog

fn list_tables(shared: &Shared, ns: &str) -> Resp {
    match data::tables(ns) {
        Some(tables) => to_json(StatusCode::OK, &json!({ "tables": tables })),
        None => not_found(shared, "namespace", ns),
    }
}

fn lookup(shared: &Shared, ns: &str, t: &str) -> Result<&'static data::TableDef, Box<Resp>> {
    if data::tables(ns).is_none() {
        return Err(Box::new(not_found(shared, "namespace", ns)));
    }
    data::table(ns, t).ok_or_else(|| Box::new(not_found(shared, "table", t)))
}

fn schema(shared: &Shared, ns: &str, t: &str) -> Resp {
    match lookup(shared, ns, t) {
        Ok(def) => json_response(StatusCode::OK, crate::schema::versioned_schema_json(def)),
        Err(r) => *r,
    }
}

// ---------------------------------------------------------------- queries

/// Location of the first occurrence of `"key"` in the body, else the start.
fn location_of(body: &str, key: &str) -> Location {
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

fn parse_ts(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(ts.as_millisecond())
}

fn start_query(
    shared: &Shared,
    ns: &str,
    t: &str,
    scope: Option<&str>,
    body: Option<Bytes>,
) -> Resp {
    let def = match lookup(shared, ns, t) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let Some(body) = body else {
        return validation(shared, "request body too large or unreadable", START);
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return validation(
                shared,
                format!("malformed JSON: {e}"),
                location_from_line_col(&text, e.line(), e.column()),
            );
        }
    };
    let Some(obj) = value.as_object() else {
        return validation(shared, "query must be a JSON object", START);
    };
    for k in obj.keys() {
        if !["format", "mode", "since", "until"].contains(&k.as_str()) {
            return validation(
                shared,
                format!("unknown field `{k}`; expected one of: format, mode, since, until"),
                location_of(&text, k),
            );
        }
    }
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let format = match field("format").map(|v| v.as_str()) {
        None => return validation(shared, "missing field `format`", START),
        Some(Some("parquet")) => {
            return validation(
                shared,
                "`format` parquet is not supported by the emulator; use jsonl, csv or tsv",
                location_of(&text, "format"),
            );
        }
        Some(s) => match s.and_then(Format::from_name) {
            Some(f) => f,
            None => {
                return validation(
                    shared,
                    "`format` must be one of: jsonl, csv, tsv, parquet",
                    location_of(&text, "format"),
                );
            }
        },
    };
    let mode = match field("mode").map(|v| v.as_str()) {
        None => None,
        Some(Some("expanded")) => Some(Mode::Expanded),
        Some(Some("condensed")) => Some(Mode::Condensed),
        Some(_) => {
            return validation(
                shared,
                "`mode` must be one of: expanded, condensed",
                location_of(&text, "mode"),
            );
        }
    };
    if mode.is_some() && format == Format::Jsonl {
        return validation(
            shared,
            "`mode` is only supported for csv and tsv formats",
            location_of(&text, "mode"),
        );
    }
    let mut times = [None, None];
    for (i, k) in ["since", "until"].into_iter().enumerate() {
        if let Some(v) = field(k) {
            match parse_ts(v) {
                Some(ms) => times[i] = Some(ms),
                None => {
                    return validation(
                        shared,
                        format!("`{k}` must be an RFC 3339 timestamp with a time zone offset"),
                        location_of(&text, k),
                    );
                }
            }
        }
    }
    let now = shared.now_ms();
    let now_s = now.div_euclid(1000) * 1000;
    let range = match times {
        [None, None] => QueryRange::Snapshot { at_ms: now_s },
        [None, Some(_)] => {
            return validation(
                shared,
                "`until` requires `since`",
                location_of(&text, "until"),
            );
        }
        [Some(since), until] => {
            if since > now {
                return validation(
                    shared,
                    "`since` is in the future",
                    location_of(&text, "since"),
                );
            }
            if let Some(u) = until {
                if u > now {
                    return validation(
                        shared,
                        "`until` is in the future",
                        location_of(&text, "until"),
                    );
                }
                if u <= since {
                    return validation(
                        shared,
                        "`until` must be later than `since`",
                        location_of(&text, "until"),
                    );
                }
            }
            let until_ms = until.unwrap_or(now_s.max(since));
            let earliest = now
                .saturating_sub(
                    i64::try_from(shared.config.retention.as_millis()).unwrap_or(i64::MAX),
                )
                .div_euclid(1000)
                * 1000;
            if since < earliest {
                let since_text = field("since").and_then(Value::as_str).unwrap_or_default();
                return error_with(
                    shared,
                    StatusCode::BAD_REQUEST,
                    "OutOfRange",
                    format!(
                        "The 'since' parameter in the request ({since_text}) precedes the earliest data available ({}).",
                        format_ts(earliest)
                    ),
                    ErrorExtra {
                        since: Some(format_ts(earliest)),
                        until: Some(format_ts(now_s)),
                        ..ErrorExtra::default()
                    },
                );
            }
            let reload =
                {
                    let st = shared.lock();
                    st.faults.snapshot_required
                        || st.faults.snapshot_required_tables.iter().any(|n| {
                            n == def.name || *n == format!("{}.{}", def.namespace, def.name)
                        })
                };
            if reload {
                return error_with(
                    shared,
                    StatusCode::BAD_REQUEST,
                    "SnapshotRequired",
                    "The table was reloaded after the requested 'since' timestamp; a new snapshot is required to keep the data consistent.",
                    ErrorExtra {
                        since: Some(format_ts(since)),
                        until: Some(format_ts(until_ms)),
                        ..ErrorExtra::default()
                    },
                );
            }
            QueryRange::Incremental {
                since_ms: since,
                until_ms,
            }
        }
    };
    let fingerprint = format!(
        "{ns}/{t}?scope={}|{format:?}|{mode:?}|{:?}|{:?}",
        scope.unwrap_or(""),
        times[0],
        times[1]
    );
    let mut st = shared.lock();
    let existing = st
        .dedup
        .get(&fingerprint)
        .and_then(|id| st.jobs.get(id))
        .filter(|j| j.expires_ms > now)
        .cloned();
    let job = match existing {
        Some(j) => j,
        None => {
            let crate::state::State { jobs, dedup, .. } = &mut *st;
            jobs.retain(|_, j| j.expires_ms > now);
            dedup.retain(|_, id| jobs.contains_key(id));
            let id = shared.uuid();
            let ext = format.extension();
            let files = (0..shared.config.objects_per_job.max(1))
                .map(|i| format!("part-{i:05}-{}-c000.{ext}", shared.uuid()))
                .collect();
            let job = Arc::new(Job {
                id: id.clone(),
                table: def,
                format,
                mode: mode.unwrap_or_default(),
                range,
                created_ms: now,
                expires_ms: now.saturating_add(
                    i64::try_from(shared.config.job_lifetime.as_millis()).unwrap_or(i64::MAX),
                ),
                failed: st.faults.fail_jobs.then(|| shared.uuid()),
                files,
                content: std::sync::OnceLock::new(),
            });
            st.jobs.insert(id.clone(), job.clone());
            st.dedup.insert(fingerprint, id);
            st.stats.jobs_created += 1;
            job
        }
    };
    drop(st);
    job_response(shared, &job, now)
}

#[derive(Serialize)]
struct ObjectRef {
    id: String,
}

#[derive(Serialize)]
struct JobJson<'a> {
    id: &'a str,
    status: &'static str,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<Vec<ObjectRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

fn job_response(shared: &Shared, job: &Job, now: i64) -> Resp {
    let status = job.status(&shared.config, now);
    let mut j = JobJson {
        id: &job.id,
        status: status.name(),
        expires_at: format_ts_millis(job.expires_ms),
        objects: None,
        schema_version: None,
        at: None,
        since: None,
        until: None,
        error: None,
    };
    match status {
        JobStatus::Complete => {
            j.objects = Some(
                job.files
                    .iter()
                    .map(|f| ObjectRef {
                        id: format!("{}/{f}", job.id),
                    })
                    .collect(),
            );
            j.schema_version = Some(job.table.schema_version);
            match job.range {
                QueryRange::Snapshot { at_ms } => j.at = Some(format_ts(at_ms)),
                QueryRange::Incremental { since_ms, until_ms } => {
                    j.since = Some(format_ts(since_ms));
                    j.until = Some(format_ts(until_ms));
                }
            }
        }
        JobStatus::Failed => {
            j.error = Some(json!({
                "type": "ProcessingError",
                "uuid": job.failed.clone().unwrap_or_default(),
                "message": "query job failed (injected fault)",
            }));
        }
        JobStatus::Waiting | JobStatus::Running => {}
    }
    let code = if status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    to_json(code, &j)
}

fn find_job(shared: &Shared, id: &str, now: i64) -> Option<Arc<Job>> {
    shared
        .lock()
        .jobs
        .get(id)
        .filter(|j| j.expires_ms > now)
        .cloned()
}

fn job_status(shared: &Shared, id: &str) -> Resp {
    let now = shared.now_ms();
    match find_job(shared, id, now) {
        Some(job) => job_response(shared, &job, now),
        None => not_found(shared, "job", id),
    }
}

fn object_urls(shared: &Shared, body: Option<Bytes>) -> Resp {
    let Some(body) = body else {
        return validation(shared, "request body too large or unreadable", START);
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return validation(
                shared,
                format!("malformed JSON: {e}"),
                location_from_line_col(&text, e.line(), e.column()),
            );
        }
    };
    let Some(items) = value.as_array() else {
        return validation(
            shared,
            "expected a JSON array of {\"id\": ...} objects",
            START,
        );
    };
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str);
        match id {
            Some(id) => ids.push(id.to_owned()),
            None => {
                return validation(
                    shared,
                    "every item must be an object with exactly one string field `id`",
                    START,
                );
            }
        }
    }
    let now = shared.now_ms();
    let mut urls = serde_json::Map::new();
    for id in ids {
        let found = id.split_once('/').and_then(|(job_id, file)| {
            let job = find_job(shared, job_id, now)?;
            let complete = job.status(&shared.config, now) == JobStatus::Complete;
            (complete && job.files.iter().any(|f| f == file))
                .then(|| (job_id.to_owned(), file.to_owned()))
        });
        let Some((job_id, file)) = found else {
            return not_found(shared, "object", &id);
        };
        let url = storage::presign(shared, &job_id, &file, now);
        urls.insert(id, json!({ "url": url }));
    }
    to_json(StatusCode::OK, &json!({ "urls": urls }))
}

// ---------------------------------------------------------------- control

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    seconds: f64,
    #[serde(default)]
    millis: i64,
}

async fn control(shared: &Shared, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = read_body(req.into_body()).await.unwrap_or_default();
    let bad = |msg: String| to_json(StatusCode::BAD_REQUEST, &json!({ "error": msg }));
    match (method, path.trim_end_matches('/')) {
        (Method::GET, "/_emulator/stats") => to_json(StatusCode::OK, &shared.lock().stats),
        (Method::POST, "/_emulator/stats/reset") => {
            shared.lock().stats = crate::Stats::default();
            to_json(StatusCode::OK, &json!({}))
        }
        (Method::GET, "/_emulator/faults") => to_json(StatusCode::OK, &shared.lock().faults),
        (Method::PUT, "/_emulator/faults") => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => {
                shared.lock().faults = f.clone();
                to_json(StatusCode::OK, &f)
            }
            Err(e) => bad(format!("invalid faults: {e}")),
        },
        (Method::POST, "/_emulator/faults/rules") => {
            match serde_json::from_slice::<crate::FaultRule>(&body) {
                Ok(rule) => {
                    let mut st = shared.lock();
                    st.faults.rules.push(rule);
                    to_json(StatusCode::OK, &st.faults)
                }
                Err(e) => bad(format!("invalid fault rule: {e}")),
            }
        }
        (Method::POST, "/_emulator/advance") => {
            let adv = if body.iter().all(u8::is_ascii_whitespace) {
                let secs = query_param(query.as_deref(), "seconds")
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0);
                Ok(Advance {
                    seconds: secs,
                    millis: 0,
                })
            } else {
                serde_json::from_slice::<Advance>(&body)
            };
            match adv {
                Ok(a) if a.seconds.is_finite() && a.seconds >= 0.0 && a.millis >= 0 => {
                    shared.advance((a.seconds * 1000.0) as i64 + a.millis);
                    to_json(
                        StatusCode::OK,
                        &json!({ "now": format_ts_millis(shared.now_ms()) }),
                    )
                }
                Ok(_) => bad("advance must be finite and non-negative".to_owned()),
                Err(e) => bad(format!("invalid advance: {e}")),
            }
        }
        (Method::POST, "/_emulator/revoke") => {
            let n = crate::revoke(shared);
            to_json(StatusCode::OK, &json!({ "revoked": n }))
        }
        (Method::GET, "/_emulator/now") => to_json(
            StatusCode::OK,
            &json!({ "now": format_ts_millis(shared.now_ms()) }),
        ),
        (Method::GET, "/_emulator/info") => to_json(
            StatusCode::OK,
            &json!({
                "base_url": format!("http://{}", shared.api_addr),
                "storage_url": format!("http://{}", shared.storage_addr),
                "client_id": shared.config.client_id,
                "client_secret": shared.config.client_secret,
                "now": format_ts_millis(shared.now_ms()),
            }),
        ),
        (Method::GET, "/_emulator/expected") => expected(shared, query.as_deref()),
        _ => to_json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("unknown control endpoint {path}") }),
        ),
    }
}

/// `GET /_emulator/expected?namespace=&table=&at=` or `&since=&until=`: the expected
/// records as JSON Lines.
fn expected(shared: &Shared, query: Option<&str>) -> Resp {
    let p = |k| query_param(query, k);
    let ts = |k| {
        p(k).and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond())
    };
    let (Some(ns), Some(t)) = (p("namespace"), p("table")) else {
        return to_json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "namespace and table are required"}),
        );
    };
    let range = match (ts("at"), ts("since"), ts("until")) {
        (Some(at_ms), None, None) => QueryRange::Snapshot { at_ms },
        (None, Some(since_ms), Some(until_ms)) => QueryRange::Incremental { since_ms, until_ms },
        _ => {
            return to_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "give either `at` or both `since` and `until` (RFC 3339)"}),
            );
        }
    };
    match data::expected_records(&shared.params, &ns, &t, range) {
        Some(records) => {
            let mut out = String::new();
            for r in records {
                r.write_jsonl(&mut out);
                out.push('\n');
            }
            let mut r = Response::new(Body::full(out));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            r
        }
        None => to_json(StatusCode::NOT_FOUND, &json!({"error": "no such table"})),
    }
}

// ---------------------------------------------------------------- storage

/// Entry point of the storage listener.
pub(crate) async fn handle_storage(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let has_auth = req.headers().contains_key(header::AUTHORIZATION);
    let has_instauth = req.headers().contains_key("x-instauth");
    {
        let mut st = shared.lock();
        st.stats.storage_requests += 1;
        st.stats.storage_with_authorization += u64::from(has_auth);
        st.stats.storage_with_instauth += u64::from(has_instauth);
        st.stats.storage_with_credentials += u64::from(has_auth || has_instauth);
    }
    let fault = shared.begin_request(Some(Endpoint::Storage));
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if let Some(FaultAction::Status {
        status,
        body,
        retry_after,
    }) = fault.action
    {
        return Ok(fault_response(&shared, status, body, retry_after, true));
    }
    if has_auth {
        return Ok(s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        ));
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return Ok(s3_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        ));
    }
    let path = req.uri().path();
    let now = shared.now_ms();
    let Some((job_id, file)) = path
        .strip_prefix(STORAGE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
    else {
        return Ok(s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ));
    };
    match storage::verify(&shared, path, req.uri().query().unwrap_or(""), now) {
        Ok(()) => {}
        Err(SignatureError::Expired) => {
            return Ok(s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request has expired",
            ));
        }
        Err(SignatureError::Missing) => {
            return Ok(s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
            ));
        }
        Err(SignatureError::Mismatch) => {
            return Ok(s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ));
        }
    }
    let found = find_job(&shared, job_id, now).and_then(|job| {
        let index = job.files.iter().position(|f| f == file)?;
        Some((job, index))
    });
    let Some((job, index)) = found else {
        return Ok(s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ));
    };
    let object_id = format!("{job_id}/{file}");
    let Some(layout) = storage::layout(&shared, &job, index) else {
        return Ok(s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ));
    };
    let variant = match &fault.action {
        Some(FaultAction::TruncateGzip) => "truncated",
        Some(FaultAction::CorruptGzip) => "corrupt",
        _ => "",
    };
    let layout = storage::apply_fault(layout, fault.action.as_ref());
    let etag = storage::etag(&object_id, &layout, variant);
    let total = layout.len;
    let range_header = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, end) = match storage::parse_range(range_header, total) {
        Ok(None) => (StatusCode::OK, 0, total),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = s3_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let drop_at = match fault.action {
        Some(FaultAction::DropAfter { bytes }) => Some(start.saturating_add(bytes)),
        _ => None,
    };
    let body = if head {
        Body::empty()
    } else {
        Body::Object(ObjectBody {
            layout,
            pos: start,
            end,
            drop_at,
            drop_timer: None,
        })
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}
