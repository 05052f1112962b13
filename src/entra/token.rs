//! The access token that comes back from a token endpoint, parsed from either endpoint
//! version's JSON (v1 sends numbers as strings), and when a cached one may still be
//! handed out. The cache ([`super::cache`]) and the request ([`super::request`]) both
//! use it; it uses neither.

use crate::secret::Secret;
use serde_json::Value;

/// The longest lifetime believed, in seconds: 48 hours. Entra's access tokens live 60–90
/// minutes, 24–28 hours with continuous access evaluation; a longer `expires_in` or a
/// later `expires_on` is clamped to this, not refused: the token itself may be fine, and
/// clamping can only make certassert renew it sooner, never serve it longer.
pub const MAX_LIFETIME: i64 = 48 * 3600;

/// Why a success answer does not hold a usable token. Each variant names the field,
/// never its value (it may be a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field the answer must carry is absent (or `null`).
    #[error("the answer has no {field}")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A field that must be a JSON string is something else.
    #[error("{field} in the answer is not a JSON string")]
    NotString {
        /// The field.
        field: &'static str,
    },
    /// A token that is empty or holds characters other than RFC 6750's b64token
    /// (`A-Za-z0-9-._~+/`, then `=` padding): it could not be sent as
    /// `Authorization: Bearer …` as it is.
    #[error("{field} in the answer is not a plain token string (RFC 6750 b64token characters)")]
    NotPlainToken {
        /// The field.
        field: &'static str,
    },
    /// A `token_type` other than `Bearer`.
    #[error("token_type in the answer is not Bearer; certassert handles bearer tokens only")]
    NotBearer,
    /// A lifetime field that is not a whole, non-negative number of seconds (a JSON
    /// integer or a decimal string).
    #[error("{field} in the answer is not a whole, non-negative number of seconds")]
    BadSeconds {
        /// The field.
        field: &'static str,
    },
}

/// An access token and what came with it.
#[derive(Debug, Clone)]
pub struct Token {
    /// The access token (a secret: never logged). Always a non-empty RFC 6750 b64token.
    pub access_token: Secret,
    /// `Bearer` (any case; anything else is refused).
    pub token_type: String,
    /// Expiry, seconds since 1970; at most [`MAX_LIFETIME`] after receipt.
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

/// Whether `token` is a non-empty RFC 6750 b64token: `A-Za-z0-9-._~+/` then `=` padding.
/// Nothing else can follow `Bearer ` in a header as it is (no space, no line break).
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A count of seconds: a JSON integer or a string of ASCII digits (v1 sends strings).
/// `Ok(None)` when absent or `null`; a value too large for `i64` saturates (it is clamped
/// afterwards).
fn seconds(body: &Value, field: &'static str) -> Result<Option<i64>, Error> {
    let bad = Error::BadSeconds { field };
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(s), _) if s >= 0 => Ok(Some(s)),
            (_, Some(_)) => Ok(Some(i64::MAX)),
            _ => Err(bad),
        },
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(s.parse::<i64>().unwrap_or(i64::MAX)))
        }
        Some(_) => Err(bad),
    }
}

/// A string field: `Ok(None)` when absent or `null`, an error when not a string.
fn string(body: &Value, field: &'static str) -> Result<Option<String>, Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::NotString { field }),
    }
}

/// A text field that may come as a string or (v1) a number.
fn text(body: &Value, field: &'static str) -> Option<String> {
    match body.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl Token {
    /// Parse a success answer from either endpoint version, received at `now`.
    ///
    /// `access_token` must be a non-empty string of RFC 6750 b64token characters,
    /// `token_type` (if present) `Bearer` in any case, `refresh_token` and `id_token` (if
    /// present) strings. The expiry comes from `expires_on` (seconds since 1970), else
    /// `expires_in` (seconds from `now`), each a JSON integer or a decimal string; a
    /// lifetime beyond [`MAX_LIFETIME`] is clamped to it, with checked arithmetic
    /// throughout. `refresh_in` is read the same way.
    ///
    /// # Errors
    /// [`Error`], naming the field that is missing or malformed (never its value).
    pub fn from_json(body: &Value, now: i64) -> Result<Self, Error> {
        let access_token = match body.get("access_token") {
            None | Some(Value::Null) => {
                return Err(Error::Missing {
                    field: "access_token",
                })
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(Error::NotString {
                    field: "access_token",
                })
            }
        };
        if !is_b64token(&access_token) {
            return Err(Error::NotPlainToken {
                field: "access_token",
            });
        }
        let token_type = string(body, "token_type")?.unwrap_or_else(|| "Bearer".into());
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(Error::NotBearer);
        }
        let refresh_token = string(body, "refresh_token")?;
        string(body, "id_token")?;
        let latest = now.saturating_add(MAX_LIFETIME);
        let expires_on = match (seconds(body, "expires_on")?, seconds(body, "expires_in")?) {
            (Some(on), _) => on.min(latest),
            (None, Some(secs)) => now.saturating_add(secs.min(MAX_LIFETIME)),
            (None, None) => {
                return Err(Error::Missing {
                    field: "expires_in",
                })
            }
        };
        let refresh_on = seconds(body, "refresh_in")?
            .map(|secs| now.saturating_add(secs.min(MAX_LIFETIME)).min(expires_on));
        Ok(Self {
            access_token: Secret::new(access_token),
            token_type,
            expires_on,
            refresh_on,
            scope: text(body, "scope"),
            resource: text(body, "resource"),
            refresh_token: refresh_token.map(Secret::new),
        })
    }

    /// Whether a cached token may still be handed out at `now`: more than five minutes
    /// left, and not past the server's `refresh_in`.
    pub fn is_fresh(&self, now: i64) -> bool {
        self.expires_on.saturating_sub(now) > 300 && self.refresh_on.is_none_or(|r| now < r)
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
        assert_eq!(
            Token::from_json(&serde_json::json!({"expires_in":1}), 0).unwrap_err(),
            Error::Missing {
                field: "access_token"
            }
        );
        assert_eq!(
            Token::from_json(
                &serde_json::json!({"access_token":"a\nb","expires_in":1}),
                0
            )
            .unwrap_err()
            .to_string(),
            "access_token in the answer is not a plain token string (RFC 6750 b64token characters)"
        );
        assert!(is_b64token("a.b-c_d~e+f/g==") && !is_b64token("==") && !is_b64token("a=b"));
    }
}
