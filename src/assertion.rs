//! The client assertion (RFC 7523 `private_key_jwt`) exactly as Entra ID wants it: a
//! compact JWS whose header names the certificate (`x5t` for RS256, `x5t#S256` for
//! PS256, optional `x5c` chain) and whose claims are `aud` (the token endpoint posted
//! to), `iss` = `sub` = client id, a fresh UUID `jti`, and integer `nbf`/`iat`/`exp`.

use crate::cert::Certificate;
use crate::encoding::{b64, b64url, uuid_v4};
use crate::signer::{Algorithm, Signer};
use serde::Serialize;

/// Default assertion lifetime in seconds (Entra recommends 5–10 minutes).
pub const DEFAULT_LIFETIME: u64 = 600;
/// Longest lifetime certassert will sign.
pub const MAX_LIFETIME: u64 = 3600;
/// The public-cloud authority host.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// Why an assertion could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--lifetime {0}: choose between 1 and {MAX_LIFETIME} seconds (default {DEFAULT_LIFETIME})"
    )]
    Lifetime(u64),
    #[error("--client-id is empty: give the application (client) ID of the app registration")]
    ClientId,
    #[error("--tenant is empty: give the directory (tenant) ID or a verified domain")]
    Tenant,
    #[error("--tenant {0}: a client assertion must name one tenant; \"common\", \"organizations\" and \"consumers\" give AADSTS700023 (audience does not match the realm)")]
    MultiTenant(String),
    #[error("{what} \"{url}\": {detail}")]
    Url {
        what: &'static str,
        url: String,
        detail: String,
    },
    #[error("this key offers {offered}, not {alg}")]
    Algorithm { alg: Algorithm, offered: String },
    #[error(
        "no certificate for this key: pass --cert PATH (the certificate registered with the app)"
    )]
    NoCertificate,
    #[error("signing the assertion failed: {0}")]
    Sign(#[from] crate::signer::Error),
}

/// Which token endpoint version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointVersion {
    /// `/{tenant}/oauth2/v2.0/token` (takes `scope`)
    V2,
    /// `/{tenant}/oauth2/token` (takes `resource`)
    V1,
}

/// Validate an authority host or token URL: https, or http only to loopback.
///
/// # Errors
/// [`Error::Url`] naming what is wrong.
pub fn check_url(what: &'static str, url: &str) -> Result<(), Error> {
    let fail = |detail: &str| Error::Url {
        what,
        url: url.to_string(),
        detail: detail.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| fail("not an absolute URL (expected https://host/…)"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_only = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let hostname = if host_only.starts_with('[') {
        host_only
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host_only.split(':').next().unwrap_or_default().to_string()
    };
    if hostname.is_empty() {
        return Err(fail("the URL has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(&hostname) => Ok(()),
        "http" => Err(fail(
            "plain http is allowed only to loopback (127.0.0.1, ::1, localhost); use https",
        )),
        _ => Err(fail("the scheme must be https")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token endpoint for `tenant` at `authority_host`.
///
/// # Errors
/// A bad host URL, an empty tenant, or a multi-tenant alias.
pub fn token_endpoint(
    authority_host: &str,
    tenant: &str,
    version: EndpointVersion,
) -> Result<String, Error> {
    check_url("--authority-host", authority_host)?;
    let tenant = tenant.trim();
    if tenant.is_empty() {
        return Err(Error::Tenant);
    }
    if ["common", "organizations", "consumers"].contains(&tenant.to_ascii_lowercase().as_str()) {
        return Err(Error::MultiTenant(tenant.to_string()));
    }
    if tenant.contains(['/', '?', '#', ' ']) {
        return Err(Error::Url {
            what: "--tenant",
            url: tenant.to_string(),
            detail: "a tenant is an ID or domain, not a URL or path".into(),
        });
    }
    let host = authority_host.trim_end_matches('/');
    Ok(match version {
        EndpointVersion::V2 => format!("{host}/{tenant}/oauth2/v2.0/token"),
        EndpointVersion::V1 => format!("{host}/{tenant}/oauth2/token"),
    })
}

/// What to put in an assertion.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    /// The application (client) ID: `iss` and `sub`.
    pub client_id: &'a str,
    /// The exact URL the assertion will be posted to.
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
    /// Lifetime outside 1–3600 s, empty client id, or an audience that is not https
    /// (or http to loopback).
    pub fn validate(&self) -> Result<(), Error> {
        if self.lifetime == 0 || self.lifetime > MAX_LIFETIME {
            return Err(Error::Lifetime(self.lifetime));
        }
        if self.client_id.trim().is_empty() {
            return Err(Error::ClientId);
        }
        check_url("the audience", self.audience)
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
    let header = Header {
        alg: params.alg.as_str(),
        typ: "JWT",
        x5t: (params.alg == Algorithm::Rs256).then(|| leaf.x5t()),
        x5t_s256: (params.alg == Algorithm::Ps256).then(|| leaf.x5t_s256()),
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
    let header_json = serde_json::to_vec(&header).expect("header serializes");
    let claims_json = serde_json::to_vec(&claims).expect("claims serialize");
    let signing_input = format!("{}.{}", b64url(&header_json), b64url(&claims_json));
    let signature = signer.sign(params.alg, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let v2 = token_endpoint(
            "https://login.microsoftonline.com/",
            "contoso.onmicrosoft.com",
            EndpointVersion::V2,
        );
        assert_eq!(
            v2.unwrap(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let v1 =
            token_endpoint("https://login.microsoftonline.us", "t", EndpointVersion::V1).unwrap();
        assert_eq!(v1, "https://login.microsoftonline.us/t/oauth2/token");
        assert!(token_endpoint("http://127.0.0.1:8080", "t", EndpointVersion::V2).is_ok());
        assert!(token_endpoint("http://[::1]:8080", "t", EndpointVersion::V2).is_ok());
    }

    #[test]
    fn endpoint_errors() {
        let e = token_endpoint("http://login.example.com", "t", EndpointVersion::V2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = token_endpoint("login.microsoftonline.com", "t", EndpointVersion::V2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute URL"), "{e}");
        let e = token_endpoint(
            "https://login.microsoftonline.com",
            "common",
            EndpointVersion::V2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("AADSTS700023"), "{e}");
        assert!(matches!(
            token_endpoint("https://h", " ", EndpointVersion::V2),
            Err(Error::Tenant)
        ));
        let e = token_endpoint("http://127.0.0.1.evil.com", "t", EndpointVersion::V2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
    }
}
