//! Short-lived media tokens: for clients that can send neither the session cookie nor an
//! `Authorization` header (a `<video src>` on another origin, a player app), the API
//! mints a token bound to one principal and one resource path, valid at most 5 minutes.
//! The long-lived credential never goes into a URL.
//!
//! A token is `hex(claims JSON) "." hex(HMAC-SHA256(claims))`, signed with a key made at
//! start: tokens do not outlive the process, which their lifetime makes harmless.

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use super::Principal;

/// Longest lifetime of a media token.
pub const MAX_TTL_MS: i64 = 5 * 60 * 1000;

/// What a token says.
#[derive(Serialize, Deserialize)]
struct Claims {
    /// The one path it opens.
    path: String,
    /// Until when, UNIX ms.
    exp: i64,
    /// Who it acts as.
    principal: Principal,
}

/// The key media tokens are signed with.
pub struct MediaKeys {
    key: hmac::Key,
}

impl Default for MediaKeys {
    fn default() -> Self {
        let secret: [u8; 32] = rand::random();
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, &secret) }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl MediaKeys {
    /// A token for `principal` to GET `path` until `now_ms + ttl_ms` (at most 5 minutes).
    pub fn mint(&self, principal: &Principal, path: &str, now_ms: i64, ttl_ms: i64) -> (String, i64) {
        let exp = now_ms + ttl_ms.clamp(1, MAX_TTL_MS);
        let mut principal = principal.clone();
        principal.expires_ms = Some(principal.expires_ms.map_or(exp, |e| e.min(exp)));
        let claims = Claims { path: path.to_owned(), exp, principal };
        let body = serde_json::to_vec(&claims).unwrap_or_default();
        let tag = hmac::sign(&self.key, &body);
        (format!("{}.{}", hex(&body), hex(tag.as_ref())), exp)
    }

    /// The principal a token acts as, if it is ours, unexpired and for `path`.
    pub fn verify(&self, token: &str, path: &str, now_ms: i64) -> Option<Principal> {
        let (body, tag) = token.split_once('.')?;
        let (body, tag) = (unhex(body)?, unhex(tag)?);
        hmac::verify(&self.key, &body, &tag).ok()?;
        let claims: Claims = serde_json::from_slice(&body).ok()?;
        (claims.path == path && now_ms < claims.exp).then_some(claims.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Role, Scope, Who};

    fn p() -> Principal {
        Principal {
            who: Who::User { id: 3, name: "li".into() },
            role: Role::Reviewer,
            scope: Scope::All,
            expires_ms: None,
            session: None,
        }
    }

    #[test]
    fn a_token_opens_one_path_for_a_few_minutes() {
        let keys = MediaKeys::default();
        let (t, exp) = keys.mint(&p(), "/api/events/7/clip.mp4", 1_000, 10 * 60 * 1000);
        assert_eq!(exp, 1_000 + MAX_TTL_MS, "capped at 5 minutes");
        let got = keys.verify(&t, "/api/events/7/clip.mp4", 2_000).expect("valid");
        assert_eq!(got.who, p().who);
        assert!(keys.verify(&t, "/api/events/8/clip.mp4", 2_000).is_none(), "another path");
        assert!(keys.verify(&t, "/api/events/7/clip.mp4", exp).is_none(), "expired");
        assert!(MediaKeys::default().verify(&t, "/api/events/7/clip.mp4", 2_000).is_none(), "another key");
        let mut forged = t.clone();
        forged.replace_range(0..2, "00");
        assert!(keys.verify(&forged, "/api/events/7/clip.mp4", 2_000).is_none(), "edited claims");
        for junk in ["", ".", "zz.zz", "abc", "0.0"] {
            assert!(keys.verify(junk, "/x", 0).is_none());
        }
    }
}
