//! The fake DAP server of the `session` target: it answers any pending request, in any
//! order, with the answer its request calls for or a hostile one, built from the
//! pieces of [`dap_proto::testing`].

use arbitrary::Arbitrary;
use dap_proto::TokenStatus;
use dap_proto::testing::{failure, http_date, jwt, login_body, requested_ids, urls_body};
use http::{Request, Response};
use jiff::Timestamp;

use super::{Pending, SessionHarness};
use crate::{API_HOST, SIG_MARK, TOKEN_MARK};

/// The status of an answer: the one its body calls for, a common one or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum StatusPick {
    Natural,
    Common(u8),
    Any(u16),
}

/// The access token a login issues.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum TokenPick {
    Plain,
    JwtRelative(i32),
    JwtAbsolute(i64),
    JwtGarbageExp,
    JwtNotJson,
    NotAHeaderValue,
    Empty,
}

/// The `expires_in` of a login.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum ExpiresPick {
    Absent,
    Secs(i32),
    Huge,
    Float,
    Text,
}

/// The state of a job-status answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum JobPick {
    Waiting,
    Running,
    Complete {
        objects: u8,
        incremental: bool,
        drop_field: u8,
    },
    Failed,
    Unknown,
    WrongId,
}

/// How an object-URL answer deviates from what was asked.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum UrlsPick {
    All,
    MissingFirst,
    RelativeUrl,
    OtherHost,
    Extra,
    Duplicate,
    Traversal,
}

/// The body of an answer (`Auto`: the one the request calls for).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum BodyPick {
    Auto,
    Login {
        token: TokenPick,
        expires_in: ExpiresPick,
        bad_type: bool,
    },
    Job {
        state: JobPick,
        expires_in_s: Option<i32>,
    },
    Urls(UrlsPick),
    Tables,
    Schema,
    DapError {
        status: u8,
        kind: u8,
    },
    Html,
    Empty,
    Garbage(u32),
}

/// An extra header of an answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum HeaderPick {
    RetryAfterSecs(u32),
    RetryAfterHuge,
    RetryAfterDate(i32),
    RetryAfterGarbage,
    Date(i32),
    DateGarbage,
    NoContentType,
    HtmlContentType,
    Location,
}

impl SessionHarness {
    fn login_body(&mut self, token: TokenPick, expires_in: ExpiresPick, bad_type: bool) -> String {
        self.token_count += 1;
        let n = self.token_count;
        let wall = self.server_wall().as_second();
        let sig = format!("{TOKEN_MARK}{n}");
        let token = match token {
            TokenPick::Plain => format!("plain{TOKEN_MARK}{n}"),
            TokenPick::JwtRelative(rel) => jwt(
                &format!(r#"{{"exp":{}}}"#, wall.saturating_add(i64::from(rel))),
                &sig,
            ),
            TokenPick::JwtAbsolute(exp) => jwt(&format!(r#"{{"exp":{exp}}}"#), &sig),
            TokenPick::JwtGarbageExp => jwt(r#"{"exp":"tomorrow"}"#, &sig),
            TokenPick::JwtNotJson => format!("eyJ.!!!not-base64!!!.{sig}"),
            TokenPick::NotAHeaderValue => format!("bad\\u0000tok{TOKEN_MARK}"),
            TokenPick::Empty => String::new(),
        };
        let expires = match expires_in {
            ExpiresPick::Absent => String::new(),
            ExpiresPick::Secs(s) => format!(r#","expires_in":{s}"#),
            ExpiresPick::Huge => r#","expires_in":99999999999999999999999"#.into(),
            ExpiresPick::Float => r#","expires_in":3599.9"#.into(),
            ExpiresPick::Text => r#","expires_in":"soon""#.into(),
        };
        let token_type = if bad_type { "mac" } else { "bearer" };
        self.offered_token = Some(token.clone());
        login_body(&token, &expires, token_type)
    }

    fn job_body(&self, op: Option<usize>, state: JobPick, expires_in_s: Option<i32>) -> String {
        let k = op.unwrap_or(999);
        let id = match state {
            JobPick::WrongId => format!("op{k}_/../j"),
            _ => format!("op{k}_j"),
        };
        let wall = self.server_wall();
        let ts = |rel: i64| {
            Timestamp::from_second(
                wall.as_second()
                    .saturating_add(rel)
                    .clamp(0, 253_402_207_199),
            )
            .map(|t| t.to_string())
            .unwrap_or_default()
        };
        let expires = expires_in_s
            .map(|s| format!(r#","expires_at":"{}""#, ts(i64::from(s))))
            .unwrap_or_default();
        let rest = match state {
            JobPick::Waiting => r#""status":"waiting""#.to_owned(),
            JobPick::Running | JobPick::WrongId => r#""status":"running""#.to_owned(),
            JobPick::Failed => {
                r#""status":"failed","error":{"type":"ProcessingError","message":"boom"}"#
                    .to_owned()
            }
            JobPick::Unknown => r#""status":"exploded""#.to_owned(),
            JobPick::Complete {
                objects,
                incremental,
                drop_field,
            } => {
                let objs: Vec<String> = (0..objects % 6)
                    .map(|i| format!(r#"{{"id":"op{k}_o{i}"}}"#))
                    .collect();
                let mut fields = vec![
                    r#""status":"complete""#.to_owned(),
                    format!(r#""objects":[{}]"#, objs.join(",")),
                    r#""schema_version":2"#.to_owned(),
                ];
                if incremental {
                    fields.push(format!(r#""since":"{}""#, ts(-7200)));
                    fields.push(format!(r#""until":"{}""#, ts(-60)));
                } else {
                    fields.push(format!(r#""at":"{}""#, ts(-60)));
                }
                let drop = usize::from(drop_field % 8);
                if drop < fields.len() && drop > 0 {
                    fields.remove(drop);
                }
                fields.join(",")
            }
        };
        format!(r#"{{"id":"{id}",{rest}{expires}}}"#)
    }

    fn urls_body(&self, request: &Request<Vec<u8>>, pick: UrlsPick) -> String {
        let ids = requested_ids(request.body());
        let url = |i: usize, id: &str| match pick {
            UrlsPick::RelativeUrl if i == 0 => format!("/relative?X-Amz-Signature={SIG_MARK}"),
            UrlsPick::OtherHost => {
                format!("https://{API_HOST}/{id}/p{i}.gz?X-Amz-Signature={SIG_MARK}")
            }
            UrlsPick::Traversal => {
                format!("https://bucket.example/a/..%2F..%2F.ssh%2F{id}?X-Amz-Signature={SIG_MARK}")
            }
            _ => format!(
                "https://bucket.example/out/{id}/part-{i}.json.gz?X-Amz-Signature={SIG_MARK}{i}"
            ),
        };
        let mut entries: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !(matches!(pick, UrlsPick::MissingFirst) && *i == 0))
            .map(|(i, id)| (id.clone(), url(i, id)))
            .collect();
        match pick {
            UrlsPick::Extra => entries.push((
                "unasked".to_owned(),
                format!("https://bucket.example/x?sig={SIG_MARK}"),
            )),
            UrlsPick::Duplicate => {
                if let Some(first) = ids.first() {
                    entries.push((
                        first.clone(),
                        format!("https://bucket.example/dup/{first}?sig={SIG_MARK}"),
                    ));
                }
            }
            _ => {}
        }
        urls_body(entries)
    }

    /// The answer `pending` calls for when the script says `Auto`.
    fn natural_body(pending: &Pending) -> BodyPick {
        let path = pending.request.uri().path();
        if pending.login {
            BodyPick::Login {
                token: TokenPick::Plain,
                expires_in: ExpiresPick::Secs(3600),
                bad_type: false,
            }
        } else if path.starts_with("/dap/job/") || path.ends_with("/data") {
            BodyPick::Job {
                state: JobPick::Complete {
                    objects: 2,
                    incremental: false,
                    drop_field: 0,
                },
                expires_in_s: Some(86_000),
            }
        } else if path == "/dap/object/url" {
            BodyPick::Urls(UrlsPick::All)
        } else if path.ends_with("/schema") {
            BodyPick::Schema
        } else {
            BodyPick::Tables
        }
    }

    /// The status the body calls for, its text and its content type.
    fn body_text(&mut self, p: &Pending, body: BodyPick) -> (u16, String, Option<&'static str>) {
        let json = Some("application/json");
        match body {
            BodyPick::Auto => {
                let natural = Self::natural_body(p);
                self.body_text(p, natural)
            }
            BodyPick::Login {
                token,
                expires_in,
                bad_type,
            } => (200, self.login_body(token, expires_in, bad_type), json),
            BodyPick::Job {
                state,
                expires_in_s,
            } => {
                let terminal = matches!(state, JobPick::Complete { .. } | JobPick::Failed);
                let status = if terminal { 200 } else { 202 };
                (status, self.job_body(p.op, state, expires_in_s), json)
            }
            BodyPick::Urls(pick) => (200, self.urls_body(&p.request, pick), json),
            BodyPick::Tables => (200, r#"{"tables":["accounts","courses"]}"#.into(), json),
            BodyPick::Schema => (
                200,
                r#"{"schema":{"type":"object"},"version":1}"#.into(),
                json,
            ),
            BodyPick::DapError { status, kind } => {
                let statuses = [400, 401, 403, 404, 410, 422, 429, 500, 502, 503, 504, 408];
                let kinds = [
                    "ValidationError",
                    "AuthenticationError",
                    "OutOfRange",
                    "SnapshotRequired",
                    "AccountDisabled",
                    "ProcessingError",
                    "ObjectNotFound",
                    "TooManyRequests",
                    "ServerError",
                ];
                let body = format!(
                    r#"{{"error":{{"type":"{}","uuid":"u-1","message":"nope","since":"2023-01-01T00:00:00Z"}}}}"#,
                    kinds[usize::from(kind) % kinds.len()]
                );
                (statuses[usize::from(status) % statuses.len()], body, json)
            }
            BodyPick::Html => (
                502,
                "<html><body>502 Bad Gateway</body></html>".into(),
                Some("text/html"),
            ),
            BodyPick::Empty => (204, String::new(), None),
            BodyPick::Garbage(seed) => (200, format!("{{\"tab{seed:x}"), json),
        }
    }

    /// The extra headers of an answer; they may also change its content type.
    fn add_headers(
        &self,
        mut builder: http::response::Builder,
        headers: [Option<HeaderPick>; 2],
        content_type: &mut Option<&'static str>,
    ) -> http::response::Builder {
        let wall = self.server_wall();
        let rel = |s: i32| {
            wall.checked_add(jiff::SignedDuration::from_secs(i64::from(s)))
                .unwrap_or(wall)
        };
        for h in headers.into_iter().flatten() {
            let (name, value) = match h {
                HeaderPick::RetryAfterSecs(s) => ("retry-after", s.to_string()),
                HeaderPick::RetryAfterHuge => ("retry-after", "999999999".to_owned()),
                HeaderPick::RetryAfterDate(s) => ("retry-after", http_date(rel(s))),
                HeaderPick::RetryAfterGarbage => ("retry-after", "soon-ish".to_owned()),
                HeaderPick::Date(s) => ("date", http_date(rel(s))),
                HeaderPick::DateGarbage => ("date", "yesterday".to_owned()),
                HeaderPick::NoContentType => {
                    *content_type = None;
                    continue;
                }
                HeaderPick::HtmlContentType => {
                    *content_type = Some("text/html");
                    continue;
                }
                HeaderPick::Location => {
                    ("location", format!("https://evil.example/steal?{SIG_MARK}"))
                }
            };
            builder = builder.header(name, value);
        }
        builder
    }

    /// Answers the pending request `pick` with `body`, `status` and `headers`.
    pub(super) fn respond(
        &mut self,
        pick: u8,
        status: StatusPick,
        body: BodyPick,
        headers: [Option<HeaderPick>; 2],
    ) {
        if self.pending.is_empty() {
            return;
        }
        let p = self.pending.remove(usize::from(pick) % self.pending.len());
        let path = p.request.uri().path().to_owned();
        let body = match body {
            BodyPick::Auto => Self::natural_body(&p),
            other => other,
        };
        self.offered_token = None;
        let (natural, text, mut content_type) = self.body_text(&p, body);
        // Tokens and signatures are secrets only where they belong; a login or URL
        // body sent to another endpoint is quotable junk and carries no marker.
        let text = if matches!(body, BodyPick::Login { .. }) && !p.login {
            text.replace(TOKEN_MARK, "tokenlike")
        } else if matches!(body, BodyPick::Urls(_)) && path != "/dap/object/url" {
            text.replace(SIG_MARK, "siglike")
        } else {
            text
        };
        let status = match status {
            StatusPick::Natural => natural,
            StatusPick::Common(c) => [
                200, 202, 204, 301, 302, 307, 308, 400, 401, 403, 404, 408, 418, 429, 500, 502, 503,
            ][usize::from(c) % 17],
            StatusPick::Any(c) => 100 + c % 900,
        };
        let builder = Response::builder().status(status);
        let mut builder = self.add_headers(builder, headers, &mut content_type);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let response = builder.body(text.into_bytes()).expect("valid response");
        self.deliver(p, response);
    }

    /// Hands `response` to the session and tracks what it means for the operation.
    fn deliver(&mut self, p: Pending, response: Response<Vec<u8>>) {
        let now = self.clock.now;
        let ok = response.status().is_success();
        let is_job = p.request.uri().path().starts_with("/dap/job/");
        let non_terminal_job = is_job && {
            let b = String::from_utf8_lossy(response.body());
            b.contains("\"waiting\"") || b.contains("\"running\"")
        };
        self.session
            .handle_response(p.id, response, now)
            .expect("a pending request is known");
        self.answered.push(p.id);
        if p.login && matches!(self.session.token_status(), TokenStatus::Valid(_)) {
            let token = self.offered_token.take().expect("a token was accepted");
            self.tokens.push(token);
        }
        if let Some(track) = p.op.filter(|_| ok).and_then(|k| self.ops.get_mut(k)) {
            track.unanswered_sends = 0;
            track.last_job_ok = non_terminal_job.then_some(now);
        }
    }

    /// Fails the pending request `pick`.
    pub(super) fn fail(&mut self, pick: u8) {
        if self.pending.is_empty() {
            return;
        }
        let p = self.pending.remove(usize::from(pick) % self.pending.len());
        self.session
            .handle_failure(p.id, failure(), self.clock.now)
            .expect("a pending request is known");
        self.answered.push(p.id);
    }
}
