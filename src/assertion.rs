//! The client assertion (RFC 7523 `private_key_jwt`) exactly as Entra ID wants it: a
//! compact JWS whose header names the certificate (`x5t` for RS256, `x5t#S256` for
//! PS256, optional `x5c` chain) and whose claims are `aud` (the token endpoint posted
//! to), `iss` = `sub` = client id, a fresh UUID `jti`, and integer `nbf`/`iat`/`exp`.

use crate::cert::Certificate;
use crate::encoding::{b64, b64url, uuid_v4};
use crate::rules::{self, Thumbprint, X5T, X5T_S256};
use crate::signer::{Algorithm, Signer};
use serde::Serialize;

/// Default assertion lifetime in seconds (Entra recommends 5–10 minutes).
pub const DEFAULT_LIFETIME: u64 = rules::ADVISED_LIFETIME;
/// Longest lifetime certassert will sign.
pub const MAX_LIFETIME: u64 = rules::MAX_LIFETIME;

/// Why an assertion could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lifetime is 0 or above [`MAX_LIFETIME`].
    #[error(
        "assertion lifetime {0} s is out of range: choose between 1 and {MAX_LIFETIME} seconds (default {DEFAULT_LIFETIME})"
    )]
    Lifetime(u64),
    /// The client id is empty.
    #[error("the client id is empty: give the application (client) ID of the app registration")]
    ClientId,
    /// The audience is empty.
    #[error(
        "the audience (aud) is empty: give the token endpoint the assertion will be posted to"
    )]
    Audience,
    /// The key cannot sign with the algorithm asked for.
    #[error("this key offers {offered}, not {alg}")]
    Algorithm {
        /// The algorithm asked for.
        alg: Algorithm,
        /// What the key offers, comma-separated.
        offered: String,
    },
    /// No certificate was given to name in the header.
    #[error("no certificate for this key: give the certificate registered with the app")]
    NoCertificate,
    /// The signer failed.
    #[error("signing the assertion failed: {0}")]
    Sign(#[from] crate::signer::Error),
}

/// What to put in an assertion.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    /// The application (client) ID: `iss` and `sub`.
    pub client_id: &'a str,
    /// The exact URL the assertion will be posted to, taken as given: where it may
    /// point is the token layer's URL policy, checked by the caller.
    pub audience: &'a str,
    /// RS256 names the certificate with `x5t`, PS256 with `x5t#S256`.
    pub alg: Algorithm,
    /// Seconds from `nbf` to `exp`.
    pub lifetime: u64,
    /// Include the `x5c` chain (for subject name + issuer authentication).
    pub x5c: bool,
}

#[derive(Serialize)]
struct Header {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5t: Option<String>,
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    x5t_s256: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    x5c: Vec<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl Params<'_> {
    /// Check everything that does not need the key, so bad arguments fail before a key
    /// is opened (and before anyone is asked for a PIN or password).
    ///
    /// # Errors
    /// Lifetime outside 1–3600 s ([`Error::Lifetime`]), an empty client id
    /// ([`Error::ClientId`]) or audience ([`Error::Audience`]).
    pub fn validate(&self) -> Result<(), Error> {
        if self.lifetime == 0 || self.lifetime > MAX_LIFETIME {
            return Err(Error::Lifetime(self.lifetime));
        }
        if self.client_id.trim().is_empty() {
            return Err(Error::ClientId);
        }
        if self.audience.trim().is_empty() {
            return Err(Error::Audience);
        }
        Ok(())
    }
}

/// Build and sign a client assertion. `chain[0]` is the certificate registered with
/// the app (the caller has checked it against the key); the rest go into `x5c` only.
///
/// # Errors
/// Bad lifetime or client id, an algorithm the key does not offer, or a signing failure.
pub fn build(
    signer: &dyn Signer,
    chain: &[Certificate],
    params: &Params<'_>,
    now: i64,
) -> Result<String, Error> {
    params.validate()?;
    if !signer.algorithms().contains(&params.alg) {
        let offered: Vec<&str> = signer.algorithms().iter().map(|a| a.as_str()).collect();
        return Err(Error::Algorithm {
            alg: params.alg,
            offered: offered.join(", "),
        });
    }
    let leaf = chain.first().ok_or(Error::NoCertificate)?;
    let thumbprint = Thumbprint::for_alg(params.alg);
    let header = Header {
        alg: params.alg.as_str(),
        typ: rules::TYP,
        x5t: (thumbprint == X5T).then(|| X5T.value(leaf)),
        x5t_s256: (thumbprint == X5T_S256).then(|| X5T_S256.value(leaf)),
        x5c: if params.x5c {
            chain.iter().map(|c| b64(c.der())).collect()
        } else {
            Vec::new()
        },
    };
    let claims = Claims {
        aud: params.audience,
        iss: params.client_id,
        sub: params.client_id,
        jti: uuid_v4(),
        nbf: now,
        iat: now,
        exp: now + params.lifetime as i64,
    };
    sign_jwt(signer, params.alg, &header, &claims)
}

/// The one compact-JWS encoder: `header` and `claims` as JSON, base64url, signed by
/// `signer` with `alg`. The client assertion ([`build`]) and Graph's proof of possession
/// ([`crate::graph::proof`]) both come from here.
pub(crate) fn sign_jwt(
    signer: &dyn Signer,
    alg: Algorithm,
    header: &impl Serialize,
    claims: &impl Serialize,
) -> Result<String, Error> {
    let header_json = serde_json::to_vec(header).expect("header serializes");
    let claims_json = serde_json::to_vec(claims).expect("claims serialize");
    let signing_input = format!("{}.{}", b64url(&header_json), b64url(&claims_json));
    let signature = signer.sign(alg, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked_before_any_key() {
        let ok = Params {
            client_id: "c",
            audience: "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            alg: Algorithm::Rs256,
            lifetime: DEFAULT_LIFETIME,
            x5c: false,
        };
        assert!(ok.validate().is_ok());
        for lifetime in [0, MAX_LIFETIME + 1] {
            let p = Params {
                lifetime,
                ..ok.clone()
            };
            assert!(matches!(p.validate(), Err(Error::Lifetime(l)) if l == lifetime));
        }
        let p = Params {
            client_id: " ",
            ..ok.clone()
        };
        assert!(matches!(p.validate(), Err(Error::ClientId)));
        let p = Params { audience: "", ..ok };
        assert!(matches!(p.validate(), Err(Error::Audience)));
    }

    #[test]
    fn messages_name_no_cli_flag() {
        for e in [
            Error::Lifetime(0),
            Error::ClientId,
            Error::Audience,
            Error::NoCertificate,
        ] {
            let text = e.to_string();
            assert!(!text.contains("--"), "{text}");
        }
    }
}
