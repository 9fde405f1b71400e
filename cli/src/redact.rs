//! Secrets removed from every text the CLI prints: logs, errors, `--json` results and
//! argument errors.
//!
//! [`redact`] replaces the registered secrets (the client secret and the password of a
//! base URL, as given and in their escaped forms), anything shaped like a JWT and the
//! values of pre-signed URL credentials by `[redacted]`. The libraries never print these
//! in the first place; this is the second line of defence. The secrets are registered
//! from the raw command line and environment *before* the arguments are parsed, so that
//! even a parser error that echoes an argument is scrubbed.

use std::ffi::OsString;
use std::sync::OnceLock;

/// Strings that must never appear in any output.
static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

/// Secrets shorter than this are not searched for: replacing every `b` of the output
/// would garble it, and real client secrets are far longer.
const MIN_SECRET_LEN: usize = 6;

const REDACTED: &str = "[redacted]";

/// The options whose values are secrets, with the environment variables that set them.
const SECRET_OPTIONS: [(&str, &str); 1] = [("--client-secret", "DAP_CLIENT_SECRET")];

/// The options whose values are URLs that may carry a password.
const URL_OPTIONS: [(&str, &str); 2] = [
    ("--base-url", "DAP_API_URL"),
    ("--connection-string", "DAP_CONNECTION_STRING"),
];

/// Registers the secrets [`redact`] removes. Only the first call has an effect.
pub(crate) fn set_secrets(secrets: Vec<String>) {
    let mut all: Vec<String> = Vec::new();
    for secret in secrets {
        for form in escaped_forms(&secret) {
            if form.len() >= MIN_SECRET_LEN && !all.contains(&form) {
                all.push(form);
            }
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let _ = SECRETS.set(all);
}

/// A secret as given, trimmed, and as Rust's `{:?}` and JSON would escape it.
fn escaped_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned(), secret.trim().to_owned()];
    let debug = format!("{secret:?}");
    forms.push(debug[1..debug.len() - 1].to_owned());
    if let Ok(json) = serde_json::to_string(secret) {
        forms.push(json[1..json.len() - 1].to_owned());
    }
    forms
}

/// The secrets found in the raw arguments and environment: the values of
/// `--client-secret` (as the next argument or after `=`, whatever it looks like) and
/// `DAP_CLIENT_SECRET`, and the user info of `--base-url` / `DAP_API_URL` and of
/// `--connection-string` / `DAP_CONNECTION_STRING`.
pub(crate) fn secrets_in(args: &[OsString], env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let values_of = |flag: &str, var: &str| {
        let mut values: Vec<String> = env(var).into_iter().collect();
        let prefix = format!("{flag}=");
        for (i, arg) in args.iter().enumerate() {
            if arg == flag {
                values.extend(args.get(i + 1).cloned());
            } else if let Some(value) = arg.strip_prefix(&prefix) {
                values.push(value.to_owned());
            }
        }
        values
    };
    let mut secrets = Vec::new();
    for (flag, var) in SECRET_OPTIONS {
        secrets.extend(values_of(flag, var));
    }
    for (flag, var) in URL_OPTIONS {
        for url in values_of(flag, var) {
            if let Some(info) = user_info(&url) {
                secrets.extend(info.split_once(':').map(|(_, pw)| pw.to_owned()));
                secrets.push(info.to_owned());
            }
            // A connection string's password as it is used: percent-decoded.
            if let Ok(conn) = dap_db::conn::ConnectionString::parse(&url) {
                secrets.extend(conn.password().map(str::to_owned));
            }
        }
    }
    secrets
}

/// The `user:password` part of a URL's authority, if it has one.
pub(crate) fn user_info(url: &str) -> Option<&str> {
    let rest = url.trim().split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(info, _)| info)
}

/// `url` without its user info, for messages.
pub(crate) fn without_user_info(url: &str) -> String {
    match user_info(url) {
        Some(info) => url.replacen(&format!("{info}@"), "", 1),
        None => url.to_owned(),
    }
}

/// Removes the registered secrets, JWT-shaped tokens and pre-signed URL credentials
/// (`X-Amz-Signature=...`, `X-Amz-Credential=...`, `X-Amz-Security-Token=...`).
pub(crate) fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    if let Some(secrets) = SECRETS.get() {
        for s in secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
    }
    for key in [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "X-Amz-Security-Token=",
    ] {
        out = redact_values_after(&out, key);
    }
    redact_jwts(&out)
}

fn redact_values_after(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(key) {
        let (head, tail) = rest.split_at(pos + key.len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn redact_jwts(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("eyJ") {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        // header.payload[.signature]
        let mut end = 0;
        let mut dots = 0;
        for (i, c) in tail.char_indices() {
            if is_b64(c) {
                end = i + 1;
            } else if c == '.' && dots < 2 {
                dots += 1;
                end = i + 1;
            } else {
                break;
            }
        }
        if dots >= 1 && end > 20 {
            out.push_str(REDACTED);
            rest = &tail[end..];
        } else {
            out.push_str("eyJ");
            rest = &tail[3..];
        }
    }
    out.push_str(rest);
    out
}

/// A writer that passes text on line by line, each line [`redact`]ed: for long
/// documents in which no secret can span lines, such as pretty-printed JSON (which
/// escapes line breaks inside strings).
pub(crate) struct RedactLines<W: std::io::Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: std::io::Write> RedactLines<W> {
    /// Redacts what is written to `inner`.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            line: Vec::new(),
        }
    }

    fn write_line(&mut self) -> std::io::Result<()> {
        let text = redact(&String::from_utf8_lossy(&self.line));
        self.line.clear();
        self.inner.write_all(text.as_bytes())
    }
}

impl<W: std::io::Write> std::io::Write for RedactLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(end + 1);
            self.line.extend_from_slice(line);
            self.write_line()?;
            rest = tail;
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    /// Writes the unfinished line too.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            self.write_line()?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signatures_and_jwts() {
        let t = "GET http://s/o.gz?X-Amz-Credential=AK%2F1&X-Amz-Signature=abcdef done";
        assert_eq!(
            redact(t),
            "GET http://s/o.gz?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted] done"
        );
        let jwt = "token eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl end";
        assert_eq!(redact(jwt), "token [redacted] end");
        assert_eq!(redact("eyJ short"), "eyJ short");
    }

    #[test]
    fn redacting_lines_sees_each_line_whole_however_it_is_written() {
        use std::io::Write as _;
        let text = "{\n  \"url\": \"http://s/o.gz?X-Amz-Signature=abcdef\",\n  \"n\": 1\n}";
        let mut out = RedactLines::new(Vec::new());
        // Pieces that cut the signature, and the last line without a line break.
        for piece in text.as_bytes().chunks(7) {
            out.write_all(piece).unwrap();
        }
        out.flush().unwrap();
        assert_eq!(
            String::from_utf8(out.inner).unwrap(),
            "{\n  \"url\": \"http://s/o.gz?X-Amz-Signature=[redacted]\",\n  \"n\": 1\n}"
        );
    }

    #[test]
    fn secrets_are_found_in_any_argument_shape_and_the_environment() {
        let args: Vec<OsString> = [
            "dap",
            "--client-secret",
            "--Xsecret-looks-like-a-flag",
            "--client-secret=after-equals",
            "--base-url",
            "https://user:pass-word@host/path@x",
            "list",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let env = |k: &str| (k == "DAP_CLIENT_SECRET").then(|| "from-env".to_owned());
        let found = secrets_in(&args, env);
        for want in [
            "from-env",
            "--Xsecret-looks-like-a-flag",
            "after-equals",
            "pass-word",
            "user:pass-word",
        ] {
            assert!(found.iter().any(|s| s == want), "{want}: {found:?}");
        }
        assert!(!found.iter().any(|s| s.contains("host")), "{found:?}");
    }

    #[test]
    fn user_info_is_found_only_in_the_authority() {
        assert_eq!(user_info("http://u:p@h:1/x"), Some("u:p"));
        assert_eq!(user_info("https://h/path?a=b@c"), None);
        assert_eq!(user_info("https://h"), None);
        assert_eq!(without_user_info("http://u:p@h:1/x"), "http://h:1/x");
        assert_eq!(without_user_info("https://h/a@b"), "https://h/a@b");
    }

    #[test]
    fn escaped_forms_of_a_secret_are_covered() {
        let forms = escaped_forms("a\"b\\c-secret");
        assert!(
            forms.contains(&"a\\\"b\\\\c-secret".to_owned()),
            "{forms:?}"
        );
    }
}
