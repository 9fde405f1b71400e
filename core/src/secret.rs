//! Values that must never reach a log line, an error message or a panic.
//!
//! [`ClientSecret`] and [`AccessToken`] print `[redacted]` through both `Debug` and
//! `Display`; the only way to the raw value is an explicit `secret()` call.
//! [`PresignedUrl`] prints its scheme, host and path but never its query string, which
//! carries the storage signature and credential.

use std::fmt;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The raw value. Every call site is a place where the secret leaves its box:
            /// keep them few and never format the result.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
}

secret_type!(
    /// The client secret issued with a DAP client ID.
    ClientSecret
);
/// A bearer token returned by the login endpoint. The header values that carry it are
/// built (and marked sensitive) once, not on every request.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    raw: String,
    bearer: Option<http::HeaderValue>,
    bare: Option<http::HeaderValue>,
}

impl AccessToken {
    /// Wraps a raw token.
    pub fn new(value: impl Into<String>) -> Self {
        let raw = value.into();
        let sensitive = |v: http::HeaderValue| {
            let mut v = v;
            v.set_sensitive(true);
            v
        };
        let bearer = http::HeaderValue::try_from(format!("Bearer {raw}"))
            .ok()
            .map(sensitive);
        let bare = http::HeaderValue::try_from(raw.as_str())
            .ok()
            .map(sensitive);
        Self { raw, bearer, bare }
    }

    /// The raw value. Every call site is a place where the secret leaves its box:
    /// keep them few and never format the result.
    pub fn secret(&self) -> &str {
        &self.raw
    }

    /// The sensitive header value carrying the token (`Bearer <token>` or the bare
    /// token), or `None` if the token cannot be a header value.
    pub(crate) fn header_value(&self, bearer: bool) -> Option<&http::HeaderValue> {
        if bearer {
            self.bearer.as_ref()
        } else {
            self.bare.as_ref()
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A pre-signed object-storage URL. Its query string is a credential: `Debug` and
/// `Display` show only `scheme://host/path?[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedUrl(std::sync::Arc<str>);

impl PresignedUrl {
    /// Wraps a raw URL. Clones share one allocation.
    pub fn new(url: impl Into<String>) -> Self {
        Self(std::sync::Arc::from(url.into()))
    }

    /// The full URL including its signature. Never log it.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The URL without its query string and fragment: safe to log.
    pub fn redacted(&self) -> &str {
        let end = self.0.find(['?', '#']).unwrap_or(self.0.len());
        &self.0[..end]
    }

    /// The last segment of the URL path, percent-decoded, unsanitised. Use
    /// [`crate::download::file_name`] for a name that is safe to create on disk.
    pub fn last_path_segment(&self) -> &str {
        let path = self.redacted();
        let after_scheme = path.find("://").map_or(0, |i| i + 3);
        let path = &path[after_scheme..];
        match path.find('/') {
            Some(slash) => path[slash..].rsplit('/').next().unwrap_or(""),
            None => "",
        }
    }
}

impl fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresignedUrl({self})")
    }
}

impl fmt::Display for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.redacted();
        if base.len() == self.0.len() {
            f.write_str(base)
        } else {
            write!(f, "{base}?[redacted]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = ClientSecret::new("hunter2");
        let t = AccessToken::new("eyJ.token");
        for text in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{t:?}"),
            format!("{t}"),
            format!("{s:#?}"),
        ] {
            assert!(!text.contains("hunter2") && !text.contains("eyJ"), "{text}");
        }
        assert_eq!(s.secret(), "hunter2");
    }

    #[test]
    fn presigned_url_hides_query() {
        let u = PresignedUrl::new(
            "https://b.s3.amazonaws.com/out/part-0.json.gz?X-Amz-Signature=abc123",
        );
        assert_eq!(
            format!("{u}"),
            "https://b.s3.amazonaws.com/out/part-0.json.gz?[redacted]"
        );
        assert!(!format!("{u:?}").contains("abc123"));
        assert_eq!(u.last_path_segment(), "part-0.json.gz");
        assert_eq!(PresignedUrl::new("https://host").last_path_segment(), "");
    }
}
