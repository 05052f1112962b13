//! The one strict decoder of a compact JWS (RFC 7515 §7.1), shared by the linter
//! ([`crate::inspect`]) and the emulator's verifier: exactly three dot-separated parts,
//! each strict base64url (URL-safe alphabet, no padding, no whitespace), the header and
//! the payload JSON objects. It checks structure only: what the header and claims say,
//! and the signature, are for the caller to judge (against [`crate::rules`]).
//!
//! A key that one JSON object repeats (`{"alg":"none","alg":"RS256"}`) is where parsers
//! disagree (most keep the last value, some the first), so the decoder records every
//! repeat, at any depth, in [`Jws::duplicate_keys`]: the linter reports them and the
//! emulator refuses the token, as a strict parser would. The decoded maps keep the last
//! value, as serde_json does.

use crate::encoding::b64url_decode;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// A key repeated within one JSON object of the header or the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The part whose JSON repeats it.
    pub part: Part,
    /// The JSON Pointer (RFC 6901) of the object that repeats it: empty for the top
    /// level, `/cnf/jwk` for a nested object.
    pub pointer: String,
    /// The repeated key.
    pub key: String,
}

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // JSON-quoted: a key is untrusted text and may hold control characters.
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        write!(
            f,
            "the JWT {} repeats the key {}",
            self.part,
            quote(&self.key)
        )?;
        if !self.pointer.is_empty() {
            write!(f, " in {}", quote(&self.pointer).trim_matches('"'))?;
        }
        Ok(())
    }
}

/// A compact JWS whose structure is valid (its signature is not checked here).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Jws<'a> {
    /// The decoded JOSE header.
    pub header: Map<String, Value>,
    /// The decoded payload (a JWT's claims).
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) "." BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// Keys that an object in the header or payload repeats (header first); the maps
    /// above hold the last value of each.
    pub duplicate_keys: Vec<DuplicateKey>,
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
    let mut duplicate_keys = Vec::new();
    Ok(Jws {
        header: object(header, Part::Header, &mut duplicate_keys)?,
        claims: object(payload, Part::Payload, &mut duplicate_keys)?,
        signing_input: &jws[..header.len() + 1 + payload.len()],
        signature: b64url_decode(signature).ok_or(Error::Base64(Part::Signature))?,
        duplicate_keys,
    })
}

fn object(
    text: &str,
    part: Part,
    duplicates: &mut Vec<DuplicateKey>,
) -> Result<Map<String, Value>, Error> {
    let bytes = b64url_decode(text).ok_or(Error::Base64(part))?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let mut seen = Vec::new();
    let parsed = Walk {
        duplicates: &mut seen,
        pointer: String::new(),
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    if matches!(parsed, Ok(Value::Object(_))) {
        duplicates.extend(seen.into_iter().map(|(pointer, key)| DuplicateKey {
            part,
            pointer,
            key,
        }));
    }
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::NotObject {
            part,
            found: kind(&other),
        }),
        Err(source) => Err(Error::Json { part, source }),
    }
}

/// Builds a [`Value`] as serde_json's own visitor does, recording each key an object
/// repeats as (JSON Pointer of the object, key). serde_json's recursion limit (128)
/// still bounds the depth.
struct Walk<'a> {
    duplicates: &'a mut Vec<(String, String)>,
    pointer: String,
}

impl Walk<'_> {
    fn child(&mut self, token: &str) -> Walk<'_> {
        // RFC 6901: "~" is written "~0" and "/" is written "~1".
        let token = token.replace('~', "~0").replace('/', "~1");
        Walk {
            duplicates: self.duplicates,
            pointer: format!("{}/{token}", self.pointer),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(&items.len().to_string()))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(self.child(&key))?;
            if map.insert(key.clone(), value).is_some() {
                self.duplicates.push((self.pointer.clone(), key));
            }
        }
        Ok(Value::Object(map))
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
        assert!(decode("e30.eyJhIjoxfQ.c2ln")
            .unwrap()
            .duplicate_keys
            .is_empty());
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

    #[test]
    fn duplicate_keys_are_recorded_at_any_depth() {
        let enc = |t: &str| crate::encoding::b64url(t.as_bytes());
        let jws = format!(
            "{}.{}.",
            enc(r#"{"alg":"none","alg":"RS256","x":[{"k":1,"k":2}]}"#),
            enc(r#"{"a":{"b/c":{"d":1,"d":2}},"a2":{"d":1},"e":1,"e":"x"}"#)
        );
        let jws = decode(&jws).unwrap();
        assert_eq!(jws.header["alg"], "RS256", "the last value is kept");
        let found: Vec<String> = jws.duplicate_keys.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            found,
            [
                r#"the JWT header repeats the key "alg""#,
                r#"the JWT header repeats the key "k" in /x/0"#,
                r#"the JWT payload repeats the key "d" in /a/b~1c"#,
                r#"the JWT payload repeats the key "e""#,
            ]
        );
        // Numbers decode as serde_json decodes them.
        let text = format!(
            "e30.{}.",
            enc(r#"{"i":-1,"u":18446744073709551615,"f":1.5,"n":null}"#)
        );
        let jws = decode(&text).unwrap();
        assert_eq!(
            Value::Object(jws.claims),
            serde_json::json!({"i": -1, "u": u64::MAX, "f": 1.5, "n": null})
        );
    }
}
