//! The `Signer` seam: everything above it (certificates, assertions, token flows) signs
//! through this trait and never sees a private key. Each backend lives in its own file
//! behind it; this module holds the trait, the algorithm names, the shared error type and
//! the dispatch from a [`KeyRef`] to a backend.

#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod software;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use software::{generate_software_key, SoftwareSigner};

use crate::keyref::KeyRef;
use std::fmt;
use std::path::PathBuf;

/// JWS signature algorithms an Entra certificate credential can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7518 §3.5).
    Ps256,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "RS256" => Ok(Self::Rs256),
            "PS256" => Ok(Self::Ps256),
            "ES256" | "ES384" | "ES512" => Err(format!(
                "{s}: Entra ID accepts RSA certificate credentials only; use RS256 or PS256"
            )),
            _ => Err(format!("{s}: unsupported algorithm; use RS256 or PS256")),
        }
    }
}

/// A private key that can sign, wherever it lives.
///
/// Implementations are `Send + Sync` and own their interior mutability (a session pool,
/// a mutex around a TPM context). `message` is the data to be signed (a JWS signing
/// input, a TBSCertificate); the implementation hashes it.
pub trait Signer: fmt::Debug + Send + Sync {
    /// Algorithms this key can produce, most preferred first.
    fn algorithms(&self) -> &[Algorithm];

    /// Sign `message` with `alg`.
    ///
    /// # Errors
    /// The backend refused or failed (device removed, PIN locked, algorithm not offered).
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error>;

    /// The public key as SubjectPublicKeyInfo DER.
    fn public_key_der(&self) -> &[u8];

    /// The certificate stored with the key (PKCS#12 bag, PKCS#11 object with the same
    /// CKA_ID, PIV slot), if any.
    fn certificate_der(&self) -> Option<&[u8]> {
        None
    }

    /// Further certificates stored with the key (a PKCS#12 chain), leaf excluded.
    fn chain_der(&self) -> &[Vec<u8>] {
        &[]
    }

    /// Store `cert_der` beside the key (a PKCS#11 certificate object with the key's
    /// CKA_ID), so later opens find it.
    ///
    /// # Errors
    /// The backend has no place for certificates (key files, TPM), the certificate is for
    /// another key, or a different certificate is stored there already.
    fn store_certificate(&self, cert_der: &[u8]) -> Result<(), Error> {
        let _ = cert_der;
        Err(Error::StoreUnsupported)
    }
}

/// Why a key could not be opened or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error("{path} holds an {kind} key: Entra ID accepts RSA certificate credentials only; create an RSA key (certassert key generate --key new.pem)")]
    NotRsa { path: PathBuf, kind: String },
    #[error("{path}: the RSA key is {bits} bits; Entra ID requires at least 2048 (certassert key generate --key new.pem --bits 2048)")]
    KeyTooSmall { path: PathBuf, bits: usize },
    #[error("{path}: the RSA key is {bits} bits; the largest supported is 8192")]
    KeyTooLarge { path: PathBuf, bits: usize },
    #[error("{path}: wrong password ({detail})")]
    WrongPassword { path: PathBuf, detail: String },
    #[error("{source}")]
    Secret {
        path: PathBuf,
        source: crate::secret::SecretError,
    },
    #[error("{what} key references need the {feature} backend, which this build of certassert does not include; rebuild with --features {feature}")]
    BackendMissing {
        what: &'static str,
        feature: &'static str,
    },
    #[error("this key cannot sign {alg}")]
    AlgorithmUnavailable { alg: Algorithm },
    #[error("signing failed in the {backend} backend: {detail}")]
    Sign {
        backend: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Generate(String),
    #[error("this key's backend has no place to store a certificate (only pkcs11: and piv: tokens do); write it to a file with --out instead")]
    StoreUnsupported,
    #[cfg(feature = "pkcs11")]
    #[error(transparent)]
    Pkcs11(#[from] pkcs11::Pkcs11Error),
    /// A TPM operation failed: `what` names the key or step, `detail` the TPM's answer and
    /// what to do about it.
    #[error("{what}: {detail}")]
    Tpm { what: String, detail: String },
}

/// Open the key a reference names.
///
/// # Errors
/// The key cannot be found, read, unlocked or used for Entra (not RSA, under 2048 bits),
/// or its backend is not part of this build.
pub fn open(key: &KeyRef) -> Result<Box<dyn Signer>, Error> {
    match key {
        KeyRef::File { path, password } => Ok(Box::new(SoftwareSigner::from_file(
            path,
            password.as_ref(),
        )?)),
        KeyRef::Pkcs11(uri) => open_pkcs11(uri),
        KeyRef::Piv(uri) => open_piv(uri),
        KeyRef::Tpm(uri) => open_tpm(uri),
    }
}

/// Generate an RSA key pair inside the token or TPM a reference names, and open it.
/// Key files are written by the caller from [`generate_software_key`].
///
/// # Errors
/// The reference names a key file, the backend is not part of this build, the slot or
/// handle is taken, or the device refused.
pub fn generate(key: &KeyRef, bits: usize, label: Option<&str>) -> Result<Box<dyn Signer>, Error> {
    match key {
        KeyRef::File { .. } => Err(Error::Generate(
            "signer::generate makes keys in hardware; write key files from generate_software_key"
                .into(),
        )),
        KeyRef::Pkcs11(uri) => generate_pkcs11(uri, bits, label),
        KeyRef::Piv(_) => Err(Error::Generate(
            "generate PIV keys with the card's own tool (ykman piv keys generate --algorithm RSA2048 9c …), then use piv:9c".into(),
        )),
        KeyRef::Tpm(uri) => generate_tpm(uri, bits, label),
    }
}

// ---- backend arms: each compiles to "rebuild with --features …" without its backend ----

#[cfg(feature = "pkcs11")]
fn open_pkcs11(uri: &str) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(pkcs11::Pkcs11Signer::open(uri)?))
}

#[cfg(feature = "pkcs11")]
fn open_piv(uri: &str) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(pkcs11::Pkcs11Signer::open_piv(uri)?))
}

#[cfg(feature = "pkcs11")]
fn generate_pkcs11(uri: &str, bits: usize, label: Option<&str>) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(pkcs11::generate(uri, bits, label)?))
}

#[cfg(not(feature = "pkcs11"))]
fn open_pkcs11(_: &str) -> Result<Box<dyn Signer>, Error> {
    Err(Error::BackendMissing {
        what: "pkcs11:",
        feature: "pkcs11",
    })
}

#[cfg(not(feature = "pkcs11"))]
fn open_piv(_: &str) -> Result<Box<dyn Signer>, Error> {
    Err(Error::BackendMissing {
        what: "piv:",
        feature: "pkcs11",
    })
}

#[cfg(not(feature = "pkcs11"))]
fn generate_pkcs11(_: &str, _: usize, _: Option<&str>) -> Result<Box<dyn Signer>, Error> {
    open_pkcs11("")
}

#[cfg(feature = "tpm")]
fn open_tpm(uri: &str) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(tpm::TpmSigner::open(uri)?))
}

#[cfg(feature = "tpm")]
fn generate_tpm(uri: &str, bits: usize, label: Option<&str>) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(tpm::generate(uri, bits, label)?))
}

#[cfg(not(feature = "tpm"))]
fn open_tpm(_: &str) -> Result<Box<dyn Signer>, Error> {
    Err(Error::BackendMissing {
        what: "tpm:",
        feature: "tpm",
    })
}

#[cfg(not(feature = "tpm"))]
fn generate_tpm(_: &str, _: usize, _: Option<&str>) -> Result<Box<dyn Signer>, Error> {
    open_tpm("")
}

/// Verify a signature against a SubjectPublicKeyInfo. Used to check a backend's output
/// before it leaves (a PS256 salt, a key/certificate pairing), and by `inspect --cert`.
///
/// # Errors
/// The signature does not verify, or the key is not an RSA key.
pub fn verify(spki: &[u8], alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), String> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256};
    let (n, e) = crate::der::rsa_public_numbers(spki).ok_or("the public key is not an RSA key")?;
    let components = aws_lc_rs::signature::RsaPublicKeyComponents { n, e };
    let params = match alg {
        Algorithm::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::Ps256 => &RSA_PSS_2048_8192_SHA256,
    };
    components
        .verify(params, message, signature)
        .map_err(|_| format!("the {alg} signature does not verify with this public key"))
}
