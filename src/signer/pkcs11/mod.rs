//! The PKCS#11 backend: HSMs, smartcards and YubiKey PIV (through ykcs11), addressed by
//! RFC 7512 `pkcs11:` URIs or `piv:SLOT`. It owns the module context (one per module per
//! process), picks the token and the key, keeps one logged-in keeper session and a pool
//! of signing sessions (cryptoki's `Session` is `Send` but not `Sync`), and signs RS256
//! and PS256 with the token's own mechanisms, falling back to raw RSA over a digest the
//! host computes when the token lacks the hashing ones.
//!
//! PIN safety is the first rule here: a PIN is presented once; a wrong PIN is reported
//! with what the token says about its retry counter and never tried again.
//!
//! Files: [`uri`] parses references, `module` loads libraries, `token` selects the
//! token and owns login and sessions, `objects` finds keys and certificates, `sign`
//! implements [`Signer`], `manage` generates keys and stores certificates.

mod manage;
mod module;
mod objects;
mod sign;
mod token;
pub mod uri;

pub use manage::{generate, init_token};
pub use sign::Pkcs11Signer;

use std::path::PathBuf;

/// What went wrong in the PKCS#11 backend. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The URI itself is malformed.
    #[error("in key reference {uri}: {detail}")]
    Uri { uri: String, detail: String },
    /// The module cannot be found, loaded or initialised.
    #[error("PKCS#11 module {path}: {detail}", path = .path.display())]
    Module { path: PathBuf, detail: String },
    /// A PKCS#11 call failed; `what` says what certassert was doing.
    #[error("{what}: {source}")]
    Call {
        what: String,
        source: cryptoki::error::Error,
    },
    /// No token, or more than one, matches the URI.
    #[error("{0}")]
    Token(String),
    /// No key, or more than one, matches the URI; or the key cannot be used.
    #[error("{0}")]
    Key(String),
    /// The token needs a PIN and none was given (and there is no terminal to ask on).
    #[error("token \"{token}\" needs its user PIN and none was given: add ?pin-source=env:VAR or ?pin-source=file:PATH (mode 0600) to the key reference, or run on a terminal to be asked")]
    PinNeeded { token: String },
    /// The PIN could not be read from its source.
    #[error("the PIN for token \"{token}\": {source}")]
    PinSource {
        token: String,
        source: crate::secret::SecretError,
    },
    /// The token rejected the PIN. Not retried.
    #[error("token \"{token}\" rejected the PIN (not retried){state}; check the PIN source, then run again")]
    WrongPin { token: String, state: String },
    /// The user PIN is locked; nothing was tried.
    #[error("token \"{token}\": the user PIN is locked; unblock it with the SO PIN / PUK first (YubiKey: ykman piv access unblock-pin), no PIN was tried")]
    PinLocked { token: String },
}

impl Pkcs11Error {
    pub(crate) fn call(what: impl Into<String>) -> impl FnOnce(cryptoki::error::Error) -> Self {
        let what = what.into();
        move |source| Self::Call { what, source }
    }
}

/// `%01%ff` as RFC 7512 writes bytes.
pub(crate) fn id_text(id: &[u8]) -> String {
    id.iter().map(|b| format!("%{b:02x}")).collect()
}

/// Percent-encode a value for an RFC 7512 path attribute.
pub(crate) fn uri_escape(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
