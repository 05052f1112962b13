//! The access token that comes back from a token endpoint, parsed from either endpoint
//! version's JSON (v1 sends numbers as strings), and when a cached one may still be
//! handed out. The cache ([`super::cache`]) and the request ([`super::request`]) both
//! use it; it uses neither.

use crate::secret::Secret;
use serde_json::Value;

/// An access token and what came with it.
#[derive(Debug, Clone)]
pub struct Token {
    /// The access token (a secret: never logged).
    pub access_token: Secret,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Expiry, seconds since 1970.
    pub expires_on: i64,
    /// When to renew early (Entra's `refresh_in` for long-lived tokens), seconds since 1970.
    pub refresh_on: Option<i64>,
    /// Granted scopes (v2).
    pub scope: Option<String>,
    /// The resource (v1).
    pub resource: Option<String>,
    /// A refresh token, when the grant returns one; kept in memory only.
    pub refresh_token: Option<Secret>,
}

impl Token {
    /// Parse a success answer from either endpoint version, received at `now`.
    ///
    /// # Errors
    /// No `access_token`, or no usable `expires_in`/`expires_on`.
    pub fn from_json(body: &Value, now: i64) -> Result<Self, String> {
        let text = |k: &str| match body.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let int = |k: &str| text(k).and_then(|s| s.parse::<i64>().ok());
        let access_token = text("access_token")
            .filter(|t| !t.is_empty())
            .ok_or("the answer has no access_token")?;
        let expires_on = int("expires_on")
            .or_else(|| int("expires_in").map(|s| now + s))
            .ok_or("the answer has neither expires_in nor expires_on")?;
        Ok(Self {
            access_token: Secret::new(access_token),
            token_type: text("token_type").unwrap_or_else(|| "Bearer".into()),
            expires_on,
            refresh_on: int("refresh_in").map(|s| now + s),
            scope: text("scope"),
            resource: text("resource"),
            refresh_token: text("refresh_token").map(Secret::new),
        })
    }

    /// Whether a cached token may still be handed out at `now`: more than five minutes
    /// left, and not past the server's `refresh_in`.
    pub fn is_fresh(&self, now: i64) -> bool {
        self.expires_on - now > 300 && self.refresh_on.is_none_or(|r| now < r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_strings_and_refresh_in() {
        let t = Token::from_json(
            &serde_json::json!({"access_token":"a","expires_in":"3599","expires_on":"5000","resource":"r"}),
            1000,
        )
        .unwrap();
        assert_eq!(t.expires_on, 5000);
        assert!(t.is_fresh(1000) && !t.is_fresh(4701));
        let t = Token::from_json(
            &serde_json::json!({"access_token":"a","expires_in":7200,"refresh_in":3600}),
            0,
        )
        .unwrap();
        assert!(t.is_fresh(3599) && !t.is_fresh(3600));
        assert!(Token::from_json(&serde_json::json!({"expires_in":1}), 0).is_err());
    }
}
