//! Minimal HS256 JSON Web Tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Claims of the tokens the emulator issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) iss: String,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) jti: String,
    pub(crate) region: String,
}

fn mac(key: &[u8]) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(key).ok()
}

/// Signs `claims` into a compact JWT.
pub(crate) fn sign(key: &[u8], claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = mac(key)
        .map(|mut m| {
            m.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        })
        .unwrap_or_default();
    format!("{signing_input}.{sig}")
}

/// Verifies the signature of `token` and returns its claims.
pub(crate) fn verify(key: &[u8], token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let mut m = mac(key)?;
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&sig).ok()?;
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = Claims {
            sub: "a#b".into(),
            iss: "x".into(),
            iat: 1,
            exp: 2,
            jti: "j".into(),
            region: "r".into(),
        };
        let t = sign(b"k", &c);
        assert_eq!(verify(b"k", &t), Some(c));
        assert_eq!(verify(b"other", &t), None);
        let mut bad = t.clone();
        bad.push('A');
        assert_eq!(verify(b"k", &bad), None);
        assert_eq!(verify(b"k", "a.b"), None);
    }
}
