//! Key discovery: what keys a PKCS#11 module's tokens or a TPM hold, each with the key
//! reference that opens it, its type and size, and the certificate stored with it.

use crate::cert::Certificate;
use crate::keyref::KeyRef;
use crate::secret::Callbacks;
use std::path::PathBuf;

/// Where to look for keys.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Place {
    /// Every token of this PKCS#11 module.
    Module(PathBuf),
    /// Every token of the module a `pkcs11:`/`piv:` reference names (that token logged
    /// in when the reference has a `pin-source=`, so its private keys show), or the
    /// persistent keys of the TPM a `tpm:` reference reaches.
    Reference(Box<KeyRef>),
}

/// A token or TPM and the keys found in it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Device {
    /// What it is, e.g. `token "certassert" (SoftHSM project SoftHSM v2, serial …, slot 0)`.
    pub name: String,
    /// The keys: by CKA_ID, then label, in a token; by handle in a TPM.
    pub keys: Vec<ListedKey>,
    /// Something the listing could not show, and how to see it (e.g. private keys that
    /// appear only after login).
    pub note: Option<String>,
}

/// A key found by [`list`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListedKey {
    /// The reference that opens it, ready to paste (add a `pin-source=` where the token
    /// needs a PIN).
    pub reference: String,
    /// Its label (CKA_LABEL), if it has one.
    pub label: Option<String>,
    /// `RSA`, `EC`, …
    pub algorithm: String,
    /// The modulus size for RSA, when the device shows it.
    pub bits: Option<usize>,
    /// Whether the private key itself was seen (false: only its public key or
    /// certificate is visible, e.g. before login).
    pub private_key: bool,
    /// The certificate stored with it (same CKA_ID), if any parsed.
    pub certificate: Option<Certificate>,
    /// Why it cannot be used for assertions, when it cannot (a storage key, not RSA).
    pub unusable: Option<String>,
}

/// List the keys at `place`. A PIN is asked for (through `callbacks`) only when a
/// `pkcs11:` reference names a `pin-source=`; nothing is ever signed or changed.
///
/// # Errors
/// The module cannot be loaded or the TPM reached (the same errors opening a key gives),
/// a key file reference (nothing to list), or a backend this build lacks.
pub fn list(place: &Place, callbacks: &dyn Callbacks) -> Result<Vec<Device>, super::Error> {
    match place {
        Place::Module(path) => pkcs11_module(path),
        Place::Reference(key) => match key.as_ref() {
            KeyRef::Pkcs11(uri) => pkcs11_uri(uri, callbacks),
            KeyRef::Tpm(uri) => tpm(uri),
            KeyRef::File { .. } => Err(super::Error::NothingToList {
                reference: key.to_string(),
            }),
        },
    }
}

#[cfg(feature = "pkcs11")]
fn pkcs11_module(path: &std::path::Path) -> Result<Vec<Device>, super::Error> {
    Ok(super::pkcs11::list::module(path)?)
}

#[cfg(feature = "pkcs11")]
fn pkcs11_uri(
    uri: &crate::keyref::Pkcs11Uri,
    callbacks: &dyn Callbacks,
) -> Result<Vec<Device>, super::Error> {
    Ok(super::pkcs11::list::reference(uri, callbacks)?)
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11_module(_: &std::path::Path) -> Result<Vec<Device>, super::Error> {
    Err(super::Error::BackendMissing {
        what: "pkcs11:",
        feature: "pkcs11",
    })
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11_uri(
    _: &crate::keyref::Pkcs11Uri,
    _: &dyn Callbacks,
) -> Result<Vec<Device>, super::Error> {
    pkcs11_module(std::path::Path::new(""))
}

#[cfg(feature = "tpm")]
fn tpm(uri: &crate::keyref::TpmUri) -> Result<Vec<Device>, super::Error> {
    super::tpm::list::persistent(uri)
}

#[cfg(not(feature = "tpm"))]
fn tpm(_: &crate::keyref::TpmUri) -> Result<Vec<Device>, super::Error> {
    Err(super::Error::BackendMissing {
        what: "tpm:",
        feature: "tpm",
    })
}
