//! The one strict decoder of a compact JWS (RFC 7515 §7.1), shared by the linter
//! ([`crate::inspect`]) and the emulator's verifier: exactly three dot-separated parts,
//! each strict base64url (URL-safe alphabet, no padding, no whitespace), the header and
//! the payload JSON objects. It checks structure only: what the header and claims say,
//! and the signature, are for the caller to judge (against [`crate::rules`]).

use crate::encoding::b64url_decode;
use serde_json::{Map, Value};
use std::fmt;

/// A part of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The JOSE header.
    Header,
    /// The payload (a JWT's claims).
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Signature => "signature",
        })
    }
}

/// Why a string is not a compact JWS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not three dot-separated parts.
    #[error(
        "not a compact JWT: expected three base64url parts separated by dots, found {0} part(s)"
    )]
    Parts(usize),
    /// A part that is not strict base64url.
    #[error("the JWT {0} is not valid base64url (RFC 7515 requires the URL-safe alphabet without padding)")]
    Base64(Part),
    /// The header or payload is JSON, but not an object.
    #[error("the JWT {part} is not a JSON object: found {found}")]
    NotObject {
        /// Which part.
        part: Part,
        /// What it is instead ("an array", "a string", …).
        found: &'static str,
    },
    /// The header or payload is not JSON at all.
    #[error("the JWT {part} is not a JSON object: {source}")]
    Json {
        /// Which part.
        part: Part,
        /// The parser's complaint.
        source: serde_json::Error,
    },
}

/// A compact JWS whose structure is valid (its signature is not checked here).
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// The decoded JOSE header.
    pub header: Map<String, Value>,
    /// The decoded payload (a JWT's claims).
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) "." BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Decode `jws` strictly: three parts, strict base64url, header and payload JSON objects.
/// The text is taken as is (a caller reading user input trims it first).
///
/// # Errors
/// The first thing wrong, in the order header, payload, signature.
pub fn decode(jws: &str) -> Result<Jws<'_>, Error> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(Error::Parts(parts.len()));
    };
    Ok(Jws {
        header: object(header, Part::Header)?,
        claims: object(payload, Part::Payload)?,
        signing_input: &jws[..header.len() + 1 + payload.len()],
        signature: b64url_decode(signature).ok_or(Error::Base64(Part::Signature))?,
    })
}

fn object(text: &str, part: Part) -> Result<Map<String, Value>, Error> {
    let bytes = b64url_decode(text).ok_or(Error::Base64(part))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::NotObject {
            part,
            found: kind(&other),
        }),
        Err(source) => Err(Error::Json { part, source }),
    }
}

/// "a string", "an array", …: how a JSON value's type reads in a message.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_structure() {
        let jws = decode("e30.eyJhIjoxfQ.c2ln").unwrap();
        assert!(jws.header.is_empty());
        assert_eq!(jws.claims["a"], 1);
        assert_eq!(jws.signing_input, "e30.eyJhIjoxfQ");
        assert_eq!(jws.signature, b"sig");
        assert!(decode("e30.e30.").unwrap().signature.is_empty());
        assert!(matches!(decode("abc"), Err(Error::Parts(1))));
        assert!(matches!(decode("a.b.c.d"), Err(Error::Parts(4))));
        assert!(matches!(
            decode("@@.e30."),
            Err(Error::Base64(Part::Header))
        ));
        // Padding and the standard alphabet are refused.
        assert!(matches!(
            decode("e30=.e30."),
            Err(Error::Base64(Part::Header))
        ));
        assert!(matches!(
            decode("e30.e30.a+/"),
            Err(Error::Base64(Part::Signature))
        ));
        assert!(matches!(
            decode("W10.e30."),
            Err(Error::NotObject {
                part: Part::Header,
                found: "an array"
            })
        ));
        assert!(matches!(
            decode("e30.bm90IGpzb24."),
            Err(Error::Json {
                part: Part::Payload,
                ..
            })
        ));
    }
}
