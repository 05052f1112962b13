//! The running emulator's shared state (its configuration, signing key, seen `jti`s,
//! codes, refresh tokens, queued faults and request log), the key it signs with, and
//! Entra's error answer ([`Refusal`]) that every check returns.

use super::config::{Code, Config, Fault, Recorded};
use super::error::Error;
use crate::encoding::{rfc3339, unix_now, uuid_v4};
use crate::signer::{Algorithm, Signer, SoftwareSigner};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// An Entra error answer.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(super) status: u16,
    error: &'static str,
    pub(super) code: u32,
    description: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, error: &'static str, code: u32, description: String) -> Self {
        Self {
            status,
            error,
            code,
            description,
        }
    }

    /// Entra's error JSON.
    pub(super) fn body(&self, base_url: &str, correlation_id: &str) -> serde_json::Value {
        let trace_id = uuid_v4();
        let now = unix_now();
        let timestamp = rfc3339(now).replace('T', " ");
        serde_json::json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("{base_url}/error?code={}", self.code),
        })
    }
}

/// Everything the server's tasks share.
pub(super) struct State {
    pub(super) config: Config,
    pub(super) signer: SoftwareSigner,
    /// The token-signing key's self-signed certificate (published in the JWKS).
    pub(super) signing_cert: crate::cert::Certificate,
    /// `kid` = `x5t` of issued tokens: base64url SHA-1 of [`Self::signing_cert`].
    pub(super) kid: String,
    pub(super) base_url: String,
    /// With `reject_jti_replay`: each client's `jti`s seen, with the `exp` after which
    /// the assertion could not be replayed anyway (then the entry is dropped).
    pub(super) seen_jti: Mutex<HashMap<String, i64>>,
    pub(super) codes: Mutex<HashMap<String, (Code, bool)>>,
    pub(super) refresh: Mutex<HashMap<String, (String, String)>>,
    pub(super) faults: Mutex<VecDeque<Fault>>,
    pub(super) log: Mutex<Vec<Recorded>>,
    /// Connections being served now.
    pub(super) open: std::sync::atomic::AtomicUsize,
    /// Each app's object id and certificate credentials, as Graph changes them.
    pub(super) graph: super::graph::Registry,
}

/// A fresh 2048-bit software key (the token-signing key, the TLS CA's key).
pub(super) fn software_key() -> Result<SoftwareSigner, Error> {
    let der = crate::signer::generate_software_key(2048).map_err(|e| Error::Keys(e.to_string()))?;
    SoftwareSigner::from_pkcs8_der(&der).map_err(|e| Error::Keys(e.to_string()))
}

/// Why a token presented back to the emulator is not one it issued.
pub(super) enum NotOurs {
    /// Not a JWS, or one with repeated JSON keys.
    Malformed,
    /// Not RS256, or not signed with the emulator's key.
    Signature,
}

/// `jwt` decoded, if this emulator signed it (RS256 with its key): a token presented back
/// as an on-behalf-of assertion or as a Graph bearer token. Its claims are the caller's
/// to check.
pub(super) fn own_token<'a>(state: &State, jwt: &'a str) -> Result<crate::jws::Jws<'a>, NotOurs> {
    let jws = crate::jws::decode(jwt)
        .ok()
        .filter(|j| j.duplicate_keys.is_empty())
        .ok_or(NotOurs::Malformed)?;
    let signed = jws.header.get("alg").and_then(serde_json::Value::as_str) == Some("RS256")
        && crate::signer::verify(
            state.signer.public_key_der(),
            Algorithm::Rs256,
            jws.signing_input.as_bytes(),
            &jws.signature,
        )
        .is_ok();
    if signed {
        Ok(jws)
    } else {
        Err(NotOurs::Signature)
    }
}

/// Sign RS256 with the emulator's key.
pub(super) fn sign(state: &State, message: &[u8]) -> Vec<u8> {
    state
        .signer
        .sign(Algorithm::Rs256, message)
        .expect("a software RSA key signs")
}
