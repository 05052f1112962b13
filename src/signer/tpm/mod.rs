//! TPM 2.0 backend: RSA keys kept in a TPM, named by a parsed [`TpmUri`]
//! (`tpm:handle=0x81…`, a persistent object, or `tpm:key=PATH`, a `TSS2 PRIVATE KEY`
//! file as tpm2-openssl and openssl_tpm2_engine write them, loaded under the standard
//! storage primary; see [`crate::keyref::tpm`]).
//!
//! [`TpmError`] compiles in every build (the `tss_esapi::Error` it keeps is boxed), so
//! [`crate::signer::Error`] has the same variants with or without the `tpm` feature.
//! With the feature:
//! - `keyfile` reads and writes TSS2 key files;
//! - `context` connects, builds the standard primary and loads keys;
//! - `sign` does RS256 / PS256 (with the strict-salt check and host-side fallback);
//! - `generate` makes keys; `signer` holds `TpmSigner`: the ESYS context and the key
//!   behind one mutex;
//! - `interrupt` flushes transient objects on Ctrl-C / SIGTERM.

#[cfg(feature = "tpm")]
mod context;
#[cfg(feature = "tpm")]
mod generate;
#[cfg(feature = "tpm")]
pub mod interrupt;
#[cfg(feature = "tpm")]
pub mod keyfile;
#[cfg(feature = "tpm")]
pub(crate) mod list;
#[cfg(feature = "tpm")]
mod sign;
#[cfg(feature = "tpm")]
mod signer;

#[cfg(feature = "tpm")]
pub use context::TssError;
#[cfg(feature = "tpm")]
pub use interrupt::set_interrupt_cleanup;
#[cfg(feature = "tpm")]
pub use signer::TpmSigner;

pub use crate::keyref::TpmUri;

use std::path::PathBuf;

/// A backend error kept as the source: a `TssError` wrapping the `tss_esapi::Error`
/// (see `TpmError::tss`), or for [`TpmError::Reconnect`] the error reconnecting gave.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in the TPM backend. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// A TPM command failed: `what` names the key or step; the source is the TSS error
    /// (its `Display` is the TPM response code, as tpm2-tools prints it).
    #[error("{what}: {source}{advice}")]
    Tss {
        /// What certassert was doing, or the key.
        what: String,
        /// The TSS error (`TssError`).
        source: BoxError,
        /// What to do about it (`; the key was made on another TPM …`), or empty.
        advice: String,
    },
    /// A TPM problem that is not a TSS error (a refused key, a password too long, …).
    #[error("{what}: {detail}")]
    Failed {
        /// The key or step.
        what: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The TCTI configuration string is not understood.
    #[error("TCTI \"{tcti}\": not understood; use device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321, mssim:… or tabrmd")]
    BadTcti {
        /// The TCTI string.
        tcti: String,
    },
    /// The TPM cannot be reached through the TCTI.
    #[error("cannot connect to the TPM through TCTI \"{tcti}\": {source}; is the TPM (or swtpm) running and reachable? Set the TCTI with ?tcti=… in the key reference or TPM2TOOLS_TCTI")]
    Connect {
        /// The TCTI string.
        tcti: String,
        /// The TSS error (`TssError`).
        source: BoxError,
    },
    /// Nothing named the TCTI and tpm2-tss's default search reached no TPM.
    #[error("no TPM found: nothing names the TCTI (tcti= in the key reference, TPM2TOOLS_TCTI, TCTI or TPM2OPENSSL_TCTI) and tpm2-tss's default search reached none of {}; name the TPM's TCTI there (swtpm: swtpm:host=127.0.0.1,port=2321)", tried_list(.tried))]
    NoTpmFound {
        /// Each TCTI tried, in order, and why it was passed over.
        tried: Vec<(String, String)>,
    },
    /// Something failed on the TPM that tpm2-tss's default search chose (nothing named a
    /// TCTI); `source` is what failed, `tcti` the TPM it happened on.
    #[error("{source} (on the TPM at \"{tcti}\", chosen by tpm2-tss's default search because nothing names the TCTI)")]
    FoundBySearch {
        /// The TCTI the search chose.
        tcti: String,
        /// What failed there.
        source: Box<crate::signer::Error>,
    },
    /// The connection broke while signing and reconnecting failed.
    #[error("lost the connection to the TPM ({lost}) and could not reconnect through TCTI \"{tcti}\": {source}")]
    Reconnect {
        /// What broke the connection.
        lost: String,
        /// The TCTI string.
        tcti: String,
        /// Why reconnecting failed.
        source: Box<crate::signer::Error>,
    },
    /// The TPM refused the key's password.
    #[error("wrong password for the {what}: the TPM refused the key's authorization ({source}); {} — each failure counts toward the TPM's dictionary-attack lockout", auth_advice(*.auth_given))]
    WrongAuth {
        /// The key.
        what: String,
        /// Whether the reference had an `auth-source=`.
        auth_given: bool,
        /// The TSS error (`TssError`).
        source: BoxError,
    },
    /// The TPM is in dictionary-attack lockout.
    #[error("the TPM refuses the {what}: {source}; wait for the lockout to expire or reset it with tpm2_dictionarylockout --clear-lockout")]
    Lockout {
        /// The key.
        what: String,
        /// The TSS error (`TssError`).
        source: BoxError,
    },
    /// Nothing is persisted at the handle.
    #[error("no key is persisted at handle {handle:#010x}: {source}; list persistent handles with `tpm2_getcap handles-persistent`")]
    NoPersistentKey {
        /// The handle.
        handle: u32,
        /// The TSS error (`TssError`).
        source: BoxError,
    },
    /// A TSS2 key file has a password, none was given and the callbacks cannot ask.
    #[error("the TSS2 key {} has a password (its emptyAuth flag is not set): add ?auth-source=env:VAR, file:PATH or prompt to the key reference", .path.display())]
    AuthNeeded {
        /// The key file.
        path: PathBuf,
    },
    /// The key is not RSA.
    #[error("{what} is not an RSA key: Entra ID accepts RSA certificate credentials only; make an RSA key in the TPM")]
    NotRsa {
        /// The key.
        what: String,
    },
    /// The RSA key is under 2048 bits.
    #[error("{what}: the RSA key is {bits} bits; Entra ID requires at least 2048")]
    KeyTooSmall {
        /// The key.
        what: String,
        /// Its modulus size.
        bits: usize,
    },
    /// Neither the TPM's PSS nor the host-side fallback gives an RFC 7518 PS256
    /// signature (a 32-byte salt); RS256 still works.
    #[error("PS256: this TPM cannot produce RFC 7518 PS256; use RS256 ({reason})")]
    NoRfc7518Ps256 {
        /// Why the fallback did not help.
        reason: &'static str,
    },
    /// After a reconnect the handle or file holds another key.
    #[error("the {what} now holds a different key: the TPM was cleared or the handle re-provisioned; open the key again")]
    KeyChanged {
        /// The key.
        what: String,
    },
    /// The signer was closed (the process is being interrupted).
    #[error("the {what} is closed: the process is being interrupted")]
    Closed {
        /// The key.
        what: String,
    },
    /// A key file to create exists already (keys are never overwritten).
    #[error("{} exists; certassert never overwrites a key file: choose a new path", .path.display())]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// The directory of a key file to create does not exist.
    #[error("cannot write {}: the directory {} does not exist", .path.display(), .dir.display())]
    NoDirectory {
        /// The file.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The persistent handle for a new key is taken.
    #[error("persistent handle {handle:#010x} is occupied; choose a free one (tpm2_getcap handles-persistent lists the used ones) or remove the old key first (tpm2_evictcontrol -C o -c {handle:#010x})")]
    HandleOccupied {
        /// The handle.
        handle: u32,
    },
    /// The TPM refused to create a key of this size.
    #[error("the TPM could not create a {bits}-bit RSA key: {source}; this TPM may not make {bits}-bit RSA keys: try 2048")]
    KeySizeRefused {
        /// The size asked for.
        bits: usize,
        /// The TSS error (`TssError`).
        source: BoxError,
    },
}

fn auth_advice(given: bool) -> &'static str {
    if given {
        "check the secret named by ?auth-source="
    } else {
        "the key has a password: add ?auth-source=env:VAR, file:PATH or prompt to the key reference"
    }
}

impl TpmError {
    /// The `tss_esapi::Error` behind this error, if a TSS call failed.
    #[cfg(feature = "tpm")]
    pub fn tss(&self) -> Option<&tss_esapi::Error> {
        use std::error::Error as _;
        self.source()?.downcast_ref::<TssError>().map(TssError::tss)
    }
}

/// `tabrmd (why), device:/dev/tpmrm0 (why), …`
fn tried_list(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(tcti, why)| format!("{tcti} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}
