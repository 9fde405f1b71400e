//! What the `session` target checks of every request the session sends and every
//! result it reports: credentials only where they belong, the latest token, bounded
//! retries and polls, and one result per operation.

use dap_proto::testing::requested_ids;
use dap_proto::{Error, OpId, Outcome, RequestId, TokenHeader, TokenStatus};
use http::Request;

use super::{Pending, SessionHarness};
use crate::oracles::assert_no_marks;
use crate::{API_HOST, SECRET, SIG_MARK, TOKEN_MARK};

/// The operation a name was tagged for (`op{k}_...`), if any.
fn op_index(text: &str) -> Option<usize> {
    let at = text.find("op")?;
    let digits: String = text[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if text[at + 2 + digits.len()..].starts_with('_') {
        digits.parse().ok()
    } else {
        None
    }
}

impl SessionHarness {
    /// Checks a request the session sent and keeps it pending.
    pub(super) fn on_send(&mut self, id: RequestId, request: Request<Vec<u8>>) {
        self.stats.sends += 1;
        let login = request.uri().path() == dap_proto::config::DEFAULT_TOKEN_PATH;
        self.check_credentials(&request, login);
        if login {
            self.check_login(&request);
            self.pending.push(Pending {
                id,
                request,
                op: None,
                login: true,
            });
            return;
        }
        self.check_token(&request);
        let op = op_index(request.uri().path()).or_else(|| {
            requested_ids(request.body())
                .first()
                .and_then(|id| op_index(id))
        });
        if let Some(k) = op {
            self.check_operation(k, request.uri().path());
        }
        self.pending.push(Pending {
            id,
            request,
            op,
            login: false,
        });
    }

    /// Tokens: only in the configured header, only to the API, never in the URI or
    /// body; the secret never raw anywhere.
    fn check_credentials(&self, request: &Request<Vec<u8>>, login: bool) {
        let uri = request.uri();
        assert_eq!(uri.scheme_str(), Some("https"), "{uri}");
        let host_is_api = uri.authority().map(|a| a.as_str()) == Some(API_HOST);
        let token_header = self.config.token_header().name();
        let uri_text = uri.to_string();
        let body_text = String::from_utf8_lossy(request.body()).into_owned();
        assert!(!uri_text.contains(TOKEN_MARK) && !body_text.contains(TOKEN_MARK));
        assert!(!uri_text.contains(SECRET) && !body_text.contains(SECRET));
        for (name, value) in request.headers() {
            let v = String::from_utf8_lossy(value.as_bytes());
            assert!(!v.contains(SECRET), "raw secret in header {name}");
            if v.contains(TOKEN_MARK) {
                assert!(host_is_api, "token sent to {uri}");
                assert_eq!(name, token_header, "token in the wrong header");
                assert!(!login, "token sent to the login endpoint");
                assert!(value.is_sensitive(), "auth header not marked sensitive");
            }
        }
        if !login {
            assert!(host_is_api, "API request to another host: {uri}");
        }
    }

    /// A login: to the API, sensitive, and never a second one in flight.
    fn check_login(&mut self, request: &Request<Vec<u8>>) {
        let uri = request.uri();
        assert_eq!(
            uri.authority().map(|a| a.as_str()),
            Some(API_HOST),
            "login sent to {uri}"
        );
        assert!(request.headers()[http::header::AUTHORIZATION].is_sensitive());
        let logins_in_flight = self.pending.iter().filter(|p| p.login).count();
        assert_eq!(logins_in_flight, 0, "a second login while one is in flight");
        assert_eq!(self.session.token_status(), TokenStatus::LoggingIn);
        self.stats.logins += 1;
    }

    /// An API call: a usable token, the latest one, in the configured header.
    fn check_token(&self, request: &Request<Vec<u8>>) {
        match self.session.token_status() {
            TokenStatus::Valid(until) => assert!(
                self.clock.now < until,
                "request sent with a token past its use-by time"
            ),
            other => panic!("API request sent without a valid token: {other:?}"),
        }
        let latest = self.tokens.last().expect("a token was issued");
        let value = request
            .headers()
            .get(self.config.token_header().name())
            .expect("token header present");
        let expected = match self.config.token_header() {
            TokenHeader::Bearer => format!("Bearer {latest}"),
            _ => latest.clone(),
        };
        assert_eq!(
            value.as_bytes(),
            expected.as_bytes(),
            "stale or wrong token"
        );
        if self.config.token_header() != TokenHeader::Bearer {
            assert!(!request.headers().contains_key(http::header::AUTHORIZATION));
        }
    }

    /// A request for operation `k`: still live, within its retry bound, and a poll
    /// within the job's bound and the poll interval.
    fn check_operation(&mut self, k: usize, path: &str) {
        let max = self.config.retry().max_attempts;
        let poll = self.config.poll().clone();
        let now = self.clock.now;
        let Some(track) = self.ops.get_mut(k) else {
            return;
        };
        assert!(!track.done, "request for a finished operation");
        assert!(!track.cancelled, "request for a cancelled operation");
        track.unanswered_sends += 1;
        let is_poll = track.query && path.starts_with("/dap/job/");
        let bound = if is_poll { 2 * max + 1 } else { max + 1 };
        assert!(
            track.unanswered_sends <= bound,
            "{} sends without success (bound {bound})",
            track.unanswered_sends
        );
        // `max_duration` bounds a job, so the polls; posting the query is a call like
        // any other, bounded by the call timeout (its retries may outlast a short job
        // bound).
        if is_poll {
            assert!(
                now < track.started + poll.max_duration,
                "job polled after max_duration"
            );
            if let Some(t) = track.last_job_ok {
                assert!(
                    now.saturating_duration_since(t) >= poll.initial_interval,
                    "job polled faster than the poll interval"
                );
            }
        }
    }

    /// Checks a result: no secret printed, one result per live operation.
    pub(super) fn on_done(&mut self, op: OpId, result: Result<Outcome, Error>) {
        assert_no_marks("result", &format!("{result:?}"));
        match &result {
            Err(e) => {
                assert_no_marks("error", &e.to_string());
                if let Error::JobTimedOut { waited, .. } = e {
                    assert_eq!(*waited, self.config.poll().max_duration);
                }
                self.stats
                    .errors
                    .push(format!("{e}").chars().take(40).collect());
            }
            Ok(outcome) => self.stats.ok.push(match outcome {
                Outcome::Tables(_) => "tables",
                Outcome::Schema(_) => "schema",
                Outcome::Job(_) => "job",
                Outcome::Urls(_) => "urls",
                Outcome::Query(_) => "query",
                _ => "other",
            }),
        }
        if let Ok(Outcome::Query(q)) = &result {
            for o in &q.objects {
                assert!(o.url.secret().contains(SIG_MARK));
            }
        }
        let track = self
            .ops
            .iter_mut()
            .find(|t| t.id == op)
            .expect("Done for an operation never started");
        assert!(!track.done, "Done twice for {op}");
        assert!(!track.cancelled, "Done for a cancelled operation");
        track.done = true;
    }
}
