//! Demo sign-in: `POST /auth/demo {"name"}` answers a token signed by the server, which requests
//! carry as `Authorization: Bearer TOKEN` (and live JOINs as their `token`).
//!
//! It proves only that the server issued the token: anyone may sign in as any name. A real app
//! puts its own check here (a session cookie, an OAuth provider's JWT), the rest stays the same:
//! an [`Authenticator`] that turns the request into a [`User`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sync_runtime::{AuthError, Authenticator, Credentials, ScopeRules, Unclaimed};

use crate::Member;

/// Who a request comes from: a name from the demo sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// 1–32 of `[a-z0-9_-]`.
    pub name: String,
}

/// Whether `name` is a user name: 1–32 of `[a-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The environment variable that holds the signing key; without it, a key is drawn at start
/// (and tokens do not survive a restart).
pub const KEY_VARIABLE: &str = "TODO_AUTH_KEY";

/// Issues and checks the demo's tokens: `BASE64URL(claims).BASE64URL(HMAC-SHA256(key, claims))`.
#[derive(Clone)]
pub struct DemoAuth {
    key: Arc<[u8; 32]>,
    lifetime: Duration,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The user's name.
    sub: String,
    /// Expiry, in seconds since the Unix epoch.
    exp: u64,
}

impl DemoAuth {
    /// Signs with `secret` (any length; hashed to the key).
    pub fn with_secret(secret: &[u8]) -> Self {
        DemoAuth {
            key: Arc::new(Sha256::digest(secret).into()),
            lifetime: Duration::from_secs(12 * 3600),
        }
    }

    /// The key from [`KEY_VARIABLE`], else a random one.
    pub fn from_env() -> std::io::Result<Self> {
        match std::env::var_os(KEY_VARIABLE) {
            Some(secret) => Ok(Self::with_secret(secret.as_encoded_bytes())),
            None => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|error| {
                    std::io::Error::other(format!("cannot draw a signing key: {error}"))
                })?;
                Ok(Self::with_secret(&secret))
            }
        }
    }

    /// Tokens expire this long after they are issued (default 12 h).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// A token for `name`, or `None` where it is not a user name.
    pub fn issue(&self, name: &str) -> Option<String> {
        if !valid_name(name) {
            return None;
        }
        let exp = (SystemTime::now() + self.lifetime)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let claims = serde_json::to_vec(&Claims {
            sub: name.to_owned(),
            exp,
        })
        .ok()?;
        let claims = URL_SAFE_NO_PAD.encode(claims);
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&claims).finalize().into_bytes());
        Some(format!("{claims}.{signature}"))
    }

    /// The user a token was issued to, if this server signed it and it has not expired.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let invalid = || AuthError::unauthorized("the token is not valid: sign in again");
        let (claims, signature) = token.split_once('.').ok_or_else(invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        self.mac(claims)
            .verify_slice(&signature)
            .map_err(|_| invalid())?;
        let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| invalid())?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| invalid())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if claims.exp <= now {
            return Err(AuthError::unauthorized(
                "the token has expired: sign in again",
            ));
        }
        if !valid_name(&claims.sub) {
            return Err(invalid());
        }
        Ok(User { name: claims.sub })
    }

    fn mac(&self, claims: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(claims.as_bytes());
        mac
    }
}

impl Authenticator for DemoAuth {
    type Identity = User;

    async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<User, AuthError> {
        match credentials.bearer() {
            Some(token) => self.verify(token),
            None => Err(AuthError::unauthorized(
                "sign in first: POST /auth/demo {\"name\": ...}, then send `Authorization: Bearer <token>`",
            )),
        }
    }
}

/// The demo's rules: `user:NAME` is NAME's; `list:ID` is its members' (the first to push to a
/// fresh one owns it); every other scope is refused.
pub fn rules() -> ScopeRules<User> {
    ScopeRules::new()
        .personal("user:", |user: &User| &user.name)
        .members::<Member>("list:", |user: &User| &user.name, Unclaimed::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_only_unaltered_unexpired_and_from_this_key() {
        let auth = DemoAuth::with_secret(b"k1");
        let token = auth.issue("ada").unwrap();
        assert_eq!(auth.verify(&token).unwrap().name, "ada");

        let other_key = DemoAuth::with_secret(b"k2");
        assert!(other_key.verify(&token).is_err(), "another server's token");

        let (claims, signature) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"root","exp":99999999999}"#);
        assert!(auth.verify(&format!("{forged}.{signature}")).is_err());
        assert!(auth.verify(&format!("{claims}.{forged}")).is_err());
        assert!(auth.verify(claims).is_err());
        assert!(auth.verify("").is_err());

        let expired = DemoAuth::with_secret(b"k1").lifetime(Duration::ZERO);
        let token = expired.issue("ada").unwrap();
        assert!(auth.verify(&token).is_err(), "expired");
    }

    #[test]
    fn names_are_1_to_32_of_lowercase_digits_underscore_dash() {
        for good in ["a", "ada_lovelace-2", &"x".repeat(32)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Ada", "a b", "é", "a.b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
            assert!(DemoAuth::with_secret(b"k").issue(bad).is_none());
        }
    }
}
