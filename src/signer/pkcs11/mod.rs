//! The PKCS#11 backend: HSMs, smartcards and YubiKey PIV (through ykcs11), addressed by
//! a parsed [`Pkcs11Uri`] (RFC 7512 `pkcs11:` or `piv:SLOT`, see [`crate::keyref`]). It
//! owns the module context (one per module per process), picks the token and the key,
//! keeps one logged-in keeper session and a pool of signing sessions (cryptoki's
//! `Session` is `Send` but not `Sync`), and signs RS256 and PS256 with the token's own
//! mechanisms, falling back to raw RSA over a digest the host computes when the token
//! lacks the hashing ones.
//!
//! PIN safety is the first rule here: the token's PIN flags are read before logging in;
//! a PIN is presented once; a wrong PIN is reported with what the token says about its
//! retry counter and never tried again. A PIN no `pin-source=` supplies is asked for
//! through the caller's [`Callbacks`](crate::secret::Callbacks), once.
//!
//! [`Pkcs11Error`] compiles in every build (the cryptoki error it keeps is boxed), so
//! [`crate::signer::Error`] has the same variants with or without the `pkcs11` feature.
//! With the feature: `module` loads libraries, `token` selects the token and owns login
//! and sessions, `objects` finds keys and certificates, `sign` implements
//! [`Signer`](crate::signer::Signer), `manage` generates keys and stores certificates.

#[cfg(feature = "pkcs11")]
pub(crate) mod list;
#[cfg(feature = "pkcs11")]
mod manage;
#[cfg(feature = "pkcs11")]
mod module;
#[cfg(feature = "pkcs11")]
mod objects;
#[cfg(feature = "pkcs11")]
mod sign;
#[cfg(feature = "pkcs11")]
mod token;

#[cfg(feature = "pkcs11")]
pub use manage::{generate, init_token};
#[cfg(feature = "pkcs11")]
pub use sign::Pkcs11Signer;

pub use crate::keyref::Pkcs11Uri;

use std::path::PathBuf;

/// The module a reference names, as opening it would resolve it (for messages), if it
/// can be found.
#[cfg(feature = "pkcs11")]
pub(crate) fn module_path(uri: &Pkcs11Uri) -> Option<PathBuf> {
    module::resolve(uri).ok()
}

/// A backend error kept as the source (a `cryptoki::error::Error`, which records the C
/// function that failed); reach it with `downcast_ref`.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in the PKCS#11 backend. Every message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The module cannot be found, loaded or initialised.
    #[error("PKCS#11 module {path}: {detail}", path = .path.display())]
    Module {
        /// The module (or the name that was looked for).
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
        /// The loader's or `C_Initialize`'s error, if there was one.
        #[source]
        source: Option<BoxError>,
    },
    /// A PKCS#11 call failed; `what` says what certassert was doing. The source is the
    /// `cryptoki::error::Error` (with the C function that failed).
    #[error("{what}: {source}")]
    Call {
        /// What certassert was doing.
        what: String,
        /// The cryptoki error.
        source: BoxError,
    },
    /// The token refused or failed a signature. The source is the `cryptoki::error::Error`.
    #[error("signing failed in the pkcs11 backend: {alg} with {reference} on token \"{token}\": {source}{hint}")]
    Sign {
        /// The algorithm.
        alg: crate::signer::Algorithm,
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// The token label.
        token: String,
        /// What the failure usually means (` (the token was removed: …)`), or empty.
        hint: &'static str,
        /// The cryptoki error.
        source: BoxError,
    },
    /// The token is not present (pulled out, reader unplugged, the device reset) while a
    /// signer that was open on it signs. The signer opens the token again at its next
    /// signature once it is back, logging in with the PIN that worked.
    #[error("token \"{token}\" is not present (removed?): reinsert it; the next signature opens it again")]
    TokenAbsent {
        /// The token label.
        token: String,
        /// The cryptoki error that reported it, if a call did.
        #[source]
        source: Option<BoxError>,
    },
    /// No token matches the URI.
    #[error("no token matches {reference}; {listing}")]
    NoToken {
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// The tokens present (or how to make one).
        listing: String,
    },
    /// More than one token matches the URI.
    #[error("{count} tokens match {reference}; add token=, serial= or slot-id= to choose one; {listing}")]
    ManyTokens {
        /// How many match.
        count: usize,
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// The tokens present.
        listing: String,
    },
    /// `init_token` found no uninitialised token.
    #[error("{} has no uninitialised token to set up (SoftHSM2 always offers one: check SOFTHSM2_CONF)", .module.display())]
    NoFreeToken {
        /// The module.
        module: PathBuf,
    },
    /// A token just initialised by `init_token` is not found again.
    #[error("token \"{token}\" vanished after initialisation")]
    TokenVanished {
        /// Its label.
        token: String,
    },
    /// No private key on the token matches the URI.
    #[error("no private key on token \"{token}\" matches {reference}{hint}; {listing}")]
    NoKey {
        /// The token label.
        token: String,
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// A hint about the URI (`; did you mean id=%02?`), or empty.
        hint: String,
        /// The keys the token does hold.
        listing: String,
    },
    /// A PIV slot holds no key.
    #[error("PIV slot {slot} holds no key ({label}); put an RSA key there: ykman piv keys generate --algorithm RSA2048 {slot} pub.pem (Entra rejects the EC P-256 default)")]
    EmptyPivSlot {
        /// The slot (9a, 9c, …).
        slot: String,
        /// ykcs11's label for the slot's key.
        label: String,
    },
    /// The key is not RSA.
    #[error("{reference} is a {kind} key; Entra ID accepts RSA certificate credentials only: make an RSA key")]
    NotRsa {
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// The key type the token reports.
        kind: String,
    },
    /// The RSA key is under 2048 bits.
    #[error("{reference}: the RSA key is {bits} bits; Entra ID requires at least 2048")]
    KeyTooSmall {
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// Its modulus size.
        bits: usize,
    },
    /// The certificate stored under the key's CKA_ID is for another key.
    #[error("{reference}: the certificate stored with id={id} does not belong to this key (Entra would answer AADSTS700027); replace the stored certificate or use another one")]
    CertificateMismatch {
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// The CKA_ID, as RFC 7512 writes it.
        id: String,
    },
    /// A key to generate has no label: neither `object=` nor a label was given.
    #[error("{reference}: name the new key with object=NAME in the URI, or give a label, so it can be found again")]
    LabelMissing {
        /// The reference, as its redacted `Display` prints it.
        reference: String,
    },
    /// A key to generate has two different labels.
    #[error(
        "{reference} says object={in_uri} but the label given is {given}; give the label once"
    )]
    LabelConflict {
        /// The reference, as its redacted `Display` prints it.
        reference: String,
        /// The URI's `object=`.
        in_uri: String,
        /// The label passed besides.
        given: String,
    },
    /// Another problem with the key or the token's objects; the message says what to do.
    #[error("{0}")]
    Key(String),
    /// The token needs a PIN, none was given, and the caller's callbacks cannot ask.
    #[error("token \"{token}\" needs its user PIN and none was given: add ?pin-source=env:VAR or ?pin-source=file:PATH (mode 0600) to the key reference, or run on a terminal to be asked")]
    PinNeeded {
        /// The token label.
        token: String,
    },
    /// The PIN could not be read from its source.
    #[error("the PIN for token \"{token}\": {source}")]
    PinSource {
        /// The token label.
        token: String,
        /// Why.
        source: crate::secret::SecretError,
    },
    /// The token rejected the PIN. Not retried.
    #[error("token \"{token}\" rejected the PIN (not retried){state}; check the PIN source, then run again")]
    WrongPin {
        /// The token label.
        token: String,
        /// What the token now reports about its retry counter (`; … FINAL TRY …`), or empty.
        state: String,
    },
    /// The user PIN is locked; nothing was tried.
    #[error("token \"{token}\": the user PIN is locked; unblock it with the SO PIN / PUK first (YubiKey: ykman piv access unblock-pin), no PIN was tried")]
    PinLocked {
        /// The token label.
        token: String,
    },
}

impl Pkcs11Error {
    /// The cryptoki error behind a failed call, if this is one.
    #[cfg(feature = "pkcs11")]
    pub fn cryptoki(&self) -> Option<&cryptoki::error::Error> {
        match self {
            Self::Call { source, .. } | Self::Sign { source, .. } => source.downcast_ref(),
            Self::Module {
                source: Some(source),
                ..
            } => source.downcast_ref(),
            _ => None,
        }
    }

    #[cfg(feature = "pkcs11")]
    pub(crate) fn call(what: impl Into<String>) -> impl FnOnce(cryptoki::error::Error) -> Self {
        let what = what.into();
        move |source| Self::Call {
            what,
            source: Box::new(source),
        }
    }
}

/// `%01%ff` as RFC 7512 writes bytes.
#[cfg(feature = "pkcs11")]
pub(crate) use crate::keyref::pkcs11::id_text;

/// Percent-encode a value for an RFC 7512 path attribute.
#[cfg(feature = "pkcs11")]
pub(crate) fn uri_escape(value: &str) -> String {
    crate::keyref::escape(value).to_string()
}
