//! Client assertion checks, in the order Entra applies them and with its codes. As a
//! verifier this follows RFC 8725: the key is chosen only by `x5t`/`x5t#S256` among the
//! certificates registered for the app (never from `jwk`, `jku` or `x5c`), only RS256
//! and PS256 (salt 32) are accepted, `crit` is refused, base64url is strict, `aud` is one
//! string equal to the URL posted to, `iss` = `sub` = `client_id`, `nbf`/`exp` integer
//! seconds (not milliseconds) within five minutes of skew with `exp` after `nbf`, no
//! JSON key repeated, and a `jti` present. A reused `jti` is accepted within the
//! assertion's validity, as Entra accepts it; with `reject_jti_replay` each `jti` is
//! accepted once (RFC 7523 §3).

use super::config::App;
use super::state::Refusal;
use crate::cert::Certificate;
use crate::encoding::{hex, rfc3339};
use crate::jws;
use crate::rules::{self, THUMBPRINTS};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

const DOCS: &str = "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .";

fn invalid_client(code: u32, description: String) -> Refusal {
    Refusal::new(401, "invalid_client", code, description)
}

/// Verify `jwt` as `client_id`'s assertion posted to `audience` at `now`. `seen` is
/// `Some` in strict mode (`reject_jti_replay`): the `jti`s already used, with their `exp`.
pub(crate) fn client_assertion(
    app: &App,
    client_id: &str,
    jwt: &str,
    audience: &str,
    now: i64,
    seen: Option<&Mutex<HashMap<String, i64>>>,
) -> Result<(), Refusal> {
    let jws = jws::decode(jwt).map_err(|_| {
        invalid_client(
            50027,
            "Invalid JWT token. The token is not in JWS compact serialization format (three strict base64url parts of JSON objects).".into(),
        )
    })?;
    // A repeated key is read differently by different parsers: a strict one refuses it.
    if let Some(dup) = jws.duplicate_keys.first() {
        let within = if dup.pointer.is_empty() {
            String::new()
        } else {
            format!(" in '{}'", dup.pointer)
        };
        return Err(invalid_client(
            50027,
            format!(
                "Invalid JWT token. The token {} repeats the key '{}'{within}; each key may appear once.",
                dup.part, dup.key
            ),
        ));
    }
    let named = jws.header.get("alg").and_then(Value::as_str);
    let Some(alg) = named.and_then(rules::algorithm) else {
        let supported: Vec<&str> = rules::ALGORITHMS.iter().map(|a| a.as_str()).collect();
        return Err(invalid_client(
            5002738,
            format!(
                "Invalid JWT token. '{}' is not a supported signature algorithm. Supported algorithms are: '{}'",
                named.unwrap_or("(none)"),
                supported.join(", ")
            ),
        ));
    };
    if jws.header.contains_key(rules::CRIT) {
        return Err(invalid_client(
            50027,
            "Invalid JWT token. The header parameter 'crit' names extensions this service does not understand.".into(),
        ));
    }
    let cert = find_certificate(app, client_id, &jws.header)?;
    let thumb = cert.thumbprint_hex();
    if crate::signer::verify(
        cert.spki_der(),
        alg,
        jws.signing_input.as_bytes(),
        &jws.signature,
    )
    .is_err()
    {
        return Err(invalid_client(
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{thumb}', Found key 'Start={}, End={}']",
                rfc3339(cert.not_before()),
                rfc3339(cert.not_after())
            ),
        ));
    }
    if now > cert.not_after() || now < cert.not_before() {
        return Err(invalid_client(
            700027,
            format!("Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{thumb}', Found key 'Start={}, End={}']", rfc3339(cert.not_before()), rfc3339(cert.not_after())),
        ));
    }
    match jws.claims.get("aud") {
        Some(Value::String(aud)) if aud == audience => {}
        other => {
            return Err(invalid_client(
                700023,
                format!(
                    "Client assertion audience claim does not match Realm issuer. Expected '{audience}', found {}. {DOCS}",
                    other.map_or("no aud".to_string(), Value::to_string)
                ),
            ))
        }
    }
    let iss = jws.claims.get("iss").and_then(Value::as_str);
    let sub = jws.claims.get("sub").and_then(Value::as_str);
    if iss != Some(client_id) || sub != Some(client_id) {
        return Err(invalid_client(
            700021,
            format!("Client assertion application identifier doesn't match 'client_id' parameter. {DOCS}"),
        ));
    }
    let (nbf, exp) = times(&jws.claims)?;
    if rules::expired(exp, now) || nbf.is_some_and(|n| rules::not_yet_valid(n, now)) {
        return Err(out_of_range(format!(
            "Current time: {}, assertion valid from {}, expiry time of assertion {}.",
            rfc3339(now),
            nbf.map_or("(no nbf)".into(), rfc3339),
            rfc3339(exp)
        )));
    }
    let jti = match jws.claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() => j,
        _ => {
            return Err(invalid_client(
                50027,
                "Invalid JWT token. The client assertion has no jti claim.".into(),
            ))
        }
    };
    let Some(seen) = seen else {
        return Ok(());
    };
    let mut seen = seen.lock().expect("jti set");
    // An entry past its exp (and the skew) could not be replayed anyway: forget it.
    seen.retain(|_, exp| !rules::expired(*exp, now));
    let key = format!("{client_id}\n{jti}");
    if seen.contains_key(&key) {
        return Err(invalid_client(
            50027,
            format!("Invalid JWT token. The client assertion with jti '{jti}' was already used; sign a new assertion for each request."),
        ));
    }
    seen.insert(key, exp);
    Ok(())
}

/// AADSTS700024 with Entra's text, then what is wrong.
fn out_of_range(detail: String) -> Refusal {
    invalid_client(
        700024,
        format!("Client assertion is not within its valid time range. {detail} {DOCS}"),
    )
}

/// `nbf` (if any) and `exp` as seconds, or AADSTS700024 when a time is missing, not an
/// integer, in milliseconds, or when `exp` is not after `nbf` (a window that never opens).
///
/// Each time is read by [`rules::numeric_date`], as Entra reads it.
fn times(claims: &Map<String, Value>) -> Result<(Option<i64>, i64), Refusal> {
    let time = |name: &str| -> Result<Option<i64>, Refusal> {
        let Some(v) = claims.get(name) else {
            return Ok(None);
        };
        match rules::numeric_date(name, v) {
            Ok(t) => Ok(Some(t)),
            Err(rules::TimeProblem::Milliseconds(t)) => Err(out_of_range(format!(
                "{name} {t} is in milliseconds; JWT times are seconds since 1970."
            ))),
            Err(_) => Err(out_of_range(format!(
                "{name} must be {} NumericDate (seconds since 1970), found {}.",
                if name == "nbf" { "an integer" } else { "a" },
                jws::kind(v)
            ))),
        }
    };
    let exp = time("exp")?.ok_or_else(|| out_of_range("It has no exp claim.".into()))?;
    let nbf = time("nbf")?;
    time("iat")?;
    if let Some(nbf) = nbf.filter(|n| rules::never_valid(*n, exp)) {
        return Err(out_of_range(format!(
            "Its expiry time {} is not after its start {}: the assertion is never valid.",
            rfc3339(exp),
            rfc3339(nbf)
        )));
    }
    Ok((nbf, exp))
}

/// The registered certificate the header names by `x5t#S256` (preferred) or `x5t`.
fn find_certificate<'a>(
    app: &'a App,
    client_id: &str,
    header: &Map<String, Value>,
) -> Result<&'a Certificate, Refusal> {
    let named = THUMBPRINTS
        .into_iter()
        .find_map(|shape| header.get(shape.header).map(|v| (shape, v)));
    let Some((shape, value)) = named else {
        return Err(invalid_client(
            5002723,
            "Invalid JWT token. No certificate thumbprint specified in token header.".into(),
        ));
    };
    let raw = value.as_str().and_then(rules::thumbprint_bytes);
    let shown = match &raw {
        Some(r) => hex(r, true),
        None => value.as_str().unwrap_or_default().to_string(),
    };
    let found = raw
        .filter(|r| r.len() == shape.len)
        .and_then(|r| app.certificates.iter().find(|c| shape.digest(c) == r));
    found.ok_or_else(|| {
        invalid_client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{shown}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::rules::thumbprint_bytes;

    #[test]
    fn thumbprints_take_canonical_padding_only() {
        let sha1 = [0xAB; 20];
        let bare = crate::encoding::b64url(&sha1);
        assert_eq!(bare.len(), 27);
        assert_eq!(thumbprint_bytes(&bare).as_deref(), Some(&sha1[..]));
        assert_eq!(
            thumbprint_bytes(&format!("{bare}=")).as_deref(),
            Some(&sha1[..])
        );
        assert_eq!(thumbprint_bytes(&format!("{bare}==")), None);
        assert_eq!(
            thumbprint_bytes(&format!("{}={}", &bare[..4], &bare[4..])),
            None
        );
        let sha256 = [0xCD; 32];
        let bare = crate::encoding::b64url(&sha256);
        assert_eq!(
            thumbprint_bytes(&format!("{bare}=")).as_deref(),
            Some(&sha256[..])
        );
    }
}
