//! The token request: grant, target (v2 scopes or v1 resource), claims challenge, and the
//! exact form body each grant posts. The token that comes back is [`super::token`]'s.

use super::authority::EndpointVersion;
use super::cache::CacheKey;
use super::error::Error;
use crate::secret::Secret;
use serde_json::Value;

/// `client_assertion_type` for a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of the on-behalf-of flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What the token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// v2 endpoint: space-separated `scope` (client credentials: `RESOURCE/.default`).
    Scopes(Vec<String>),
    /// v1 endpoint: `resource` (an App ID URI or application ID).
    Resource(String),
}

impl Target {
    /// v2 for scopes, v1 for a resource.
    pub fn version(&self) -> EndpointVersion {
        match self {
            Self::Scopes(_) => EndpointVersion::V2,
            Self::Resource(_) => EndpointVersion::V1,
        }
    }
}

/// The OAuth 2.0 grant.
#[derive(Debug, Clone)]
pub enum Grant {
    /// The app's own token (`grant_type=client_credentials`).
    ClientCredentials,
    /// Redeem an authorization code (PKCE verifier optional).
    AuthorizationCode {
        /// The code from the redirect.
        code: Secret,
        /// The redirect URI the code was issued to.
        redirect_uri: String,
        /// The PKCE `code_verifier`, if the authorization request had a challenge.
        code_verifier: Option<Secret>,
    },
    /// On-behalf-of: exchange the user's token sent to this API for a downstream one.
    OnBehalfOf {
        /// The incoming access token (`assertion`).
        user_assertion: Secret,
    },
    /// Redeem a refresh token (never written to disk by certassert).
    RefreshToken {
        /// The refresh token.
        refresh_token: Secret,
    },
}

impl Grant {
    /// The CLI name of this grant.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClientCredentials => "client-credentials",
            Self::AuthorizationCode { .. } => "authorization-code",
            Self::OnBehalfOf { .. } => "on-behalf-of",
            Self::RefreshToken { .. } => "refresh-token",
        }
    }
}

/// One token request.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The token endpoint posted to; also the assertion's `aud`.
    pub endpoint: String,
    /// The application (client) ID.
    pub client_id: String,
    /// Scopes (v2) or resource (v1).
    pub target: Target,
    /// The grant.
    pub grant: Grant,
    /// A claims challenge (JSON), already merged with the `cp1` capability.
    pub claims: Option<String>,
}

impl TokenRequest {
    /// The form body, in a fixed order: `client_id`, `client_assertion_type`,
    /// `client_assertion`, `grant_type`, the grant's fields, `scope` or `resource`,
    /// `claims`.
    pub fn form(&self, assertion: &str) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("client_id", self.client_id.clone()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
            ("client_assertion", assertion.to_string()),
        ];
        match &self.grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials".into())),
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                form.push(("grant_type", "authorization_code".into()));
                form.push(("code", code.expose().to_string()));
                form.push(("redirect_uri", redirect_uri.clone()));
                if let Some(v) = code_verifier {
                    form.push(("code_verifier", v.expose().to_string()));
                }
            }
            Grant::OnBehalfOf { user_assertion } => {
                form.push(("grant_type", JWT_BEARER_GRANT.into()));
                form.push(("assertion", user_assertion.expose().to_string()));
                form.push(("requested_token_use", "on_behalf_of".into()));
            }
            Grant::RefreshToken { refresh_token } => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", refresh_token.expose().to_string()));
            }
        }
        match &self.target {
            Target::Scopes(s) => form.push(("scope", s.join(" "))),
            Target::Resource(r) => form.push(("resource", r.clone())),
        }
        if let Some(c) = &self.claims {
            form.push(("claims", c.clone()));
        }
        form
    }

    /// Whether the answer may be cached: the app's own tokens only (user tokens are
    /// tied to a code, an incoming token or a refresh token).
    pub fn cacheable(&self) -> bool {
        matches!(self.grant, Grant::ClientCredentials)
    }

    /// The cache key: endpoint (authority + tenant), client id, certificate
    /// thumbprint, scopes or resource, claims.
    pub fn cache_key(&self, thumbprint: &str) -> CacheKey {
        let mut scopes = match &self.target {
            Target::Scopes(s) => s.clone(),
            Target::Resource(r) => vec![format!("resource:{r}")],
        };
        scopes.sort();
        CacheKey::new(&[
            &self.endpoint.to_ascii_lowercase(),
            &self.client_id.to_ascii_lowercase(),
            &thumbprint.to_ascii_uppercase(),
            &scopes.join(" "),
            self.claims.as_deref().unwrap_or(""),
        ])
    }
}

/// Merge a claims challenge with the `cp1` client capability (CAE-ready client). The
/// challenge may be JSON or base64 (as `WWW-Authenticate: … claims="…"` carries it).
///
/// # Errors
/// [`Error::ClaimsEncoding`] when the challenge is neither JSON nor base64, and
/// [`Error::ClaimsNotObject`] when it is not a JSON object.
pub fn merge_claims(challenge: Option<&str>) -> Result<String, Error> {
    let mut claims = match challenge.map(str::trim) {
        None | Some("") => serde_json::Map::new(),
        Some(text) => {
            let json = if text.starts_with('{') {
                text.as_bytes().to_vec()
            } else {
                crate::encoding::b64_decode(text)
                    .or_else(|| crate::encoding::b64url_decode(text.trim_end_matches('=')))
                    .ok_or(Error::ClaimsEncoding)?
            };
            match serde_json::from_slice::<Value>(&json) {
                Ok(Value::Object(map)) => map,
                _ => return Err(Error::ClaimsNotObject),
            }
        }
    };
    let access = claims
        .entry("access_token")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(access) = access {
        access.insert("xms_cc".into(), serde_json::json!({ "values": ["cp1"] }));
    }
    Ok(Value::Object(claims).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_merge_keeps_the_challenge_and_adds_cp1() {
        let merged: Value = serde_json::from_str(
            &merge_claims(Some(
                r#"{"access_token":{"nbf":{"essential":true,"value":"1"}}}"#,
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(merged["access_token"]["nbf"]["value"], "1");
        assert_eq!(merged["access_token"]["xms_cc"]["values"][0], "cp1");
        let b64 = crate::encoding::b64(br#"{"id_token":{}}"#);
        let merged: Value = serde_json::from_str(&merge_claims(Some(&b64)).unwrap()).unwrap();
        assert!(merged["id_token"].is_object());
        assert!(matches!(
            merge_claims(Some("[1]")),
            Err(Error::ClaimsEncoding)
        ));
        for not_an_object in ["{1}".to_string(), crate::encoding::b64(b"[1]")] {
            assert!(matches!(
                merge_claims(Some(&not_an_object)),
                Err(Error::ClaimsNotObject)
            ));
        }
    }
}
