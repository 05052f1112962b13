//! The `Signer` seam: everything above it (certificates, assertions, token flows) signs
//! through this trait and never sees a private key. Each backend lives in its own module
//! behind it; this module holds the trait, the algorithm names, the shared error type and
//! the dispatch from a parsed [`KeyRef`] to a backend. The backend modules' error types
//! ([`pkcs11::Pkcs11Error`], [`tpm::TpmError`]) compile in every build, so [`Error`] has
//! the same variants whatever the features; a reference whose backend is not built in is
//! [`Error::BackendMissing`].

pub(crate) mod device;
pub mod list;
pub mod pkcs11;
mod software;
pub mod tpm;

pub use device::{OpenOptions, DEFAULT_DEVICE_TIMEOUT};
pub use software::{generate_software_key, SoftwareSigner};

use crate::keyref::KeyRef;
use crate::secret::Callbacks;
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

/// Why a key could not be opened, made, or could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key file cannot be read (or written, when a TPM key file is made).
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds certificates and no private key: it is a certificate file.
    #[error("{}: the file holds a certificate but no private key: it is a certificate file, not a key file", path.display())]
    CertificateOnly {
        /// The file.
        path: PathBuf,
    },
    /// A key file is not in a form certassert reads; `detail` says what it holds instead.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The key is not RSA (Entra ID accepts RSA certificate credentials only).
    #[error("{path} holds an {kind} key: Entra ID accepts RSA certificate credentials only; create an RSA key")]
    NotRsa {
        /// The file.
        path: PathBuf,
        /// What it holds: EC, Ed25519, RSASSA-PSS, …
        kind: String,
    },
    /// The RSA key is under 2048 bits.
    #[error("{path}: the RSA key is {bits} bits; Entra ID requires at least 2048")]
    KeyTooSmall {
        /// The file.
        path: PathBuf,
        /// Its modulus size.
        bits: usize,
    },
    /// The RSA key is over 8192 bits.
    #[error("{path}: the RSA key is {bits} bits; the largest supported is 8192")]
    KeyTooLarge {
        /// The file.
        path: PathBuf,
        /// Its modulus size.
        bits: usize,
    },
    /// The password did not decrypt the key file.
    #[error("{path}: wrong password ({detail})")]
    WrongPassword {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// The key file's password could not be read from its source or asked for.
    #[error("{source}")]
    Secret {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: crate::secret::SecretError,
    },
    /// The reference needs a backend this build does not include.
    #[error("{what} key references need the {feature} backend, which this build of certassert does not include; rebuild with --features {feature}")]
    BackendMissing {
        /// The scheme: `pkcs11:`, `piv:` or `tpm:`.
        what: &'static str,
        /// The cargo feature that adds the backend.
        feature: &'static str,
    },
    /// The key cannot produce this algorithm.
    #[error("this key cannot sign {alg}")]
    AlgorithmUnavailable {
        /// The algorithm asked for.
        alg: Algorithm,
    },
    /// Signing failed in the software backend.
    #[error("signing failed in the {backend} backend: {detail}")]
    Sign {
        /// The backend.
        backend: &'static str,
        /// What failed.
        detail: String,
    },
    /// An RSA key size certassert does not make.
    #[error("{bits}-bit RSA: choose 2048, 3072 or 4096")]
    UnsupportedKeySize {
        /// The size asked for.
        bits: usize,
    },
    /// [`generate`] was given a reference it cannot make a key for.
    #[error("{reference}: {advice}")]
    GenerateUnsupported {
        /// The reference.
        reference: String,
        /// How to make such a key instead.
        advice: &'static str,
    },
    /// [`list::list`] was given a key file: it holds one key, there is nothing to list.
    #[error("{reference} is a key file, which holds one key: list the keys of a PKCS#11 module or token (pkcs11:…) or a TPM (tpm:…)")]
    NothingToList {
        /// The reference.
        reference: String,
    },
    /// Software key generation or encoding failed.
    #[error("{0}")]
    Generate(String),
    /// The backend has no place to store a certificate.
    #[error("this key's backend has no place to store a certificate (only pkcs11: and piv: tokens do); keep the certificate in a file instead")]
    StoreUnsupported,
    /// A PKCS#11 token or a TPM did not answer within the device timeout
    /// ([`OpenOptions::device_timeout`]); the call is left to finish on its own thread.
    #[error("{device} did not {call} within {}: {advice}", device::seconds(after))]
    DeviceTimeout {
        /// The device: `the TPM at "TCTI"`, `the PKCS#11 module PATH`.
        device: String,
        /// What it did not do: `answer`, `return from C_Sign`.
        call: &'static str,
        /// The timeout.
        after: std::time::Duration,
        /// What to check.
        advice: &'static str,
    },
    /// An earlier call to the device timed out and has not returned yet: this call was
    /// not sent, so that it does not queue behind the stuck one.
    #[error("{device} has still not returned from an earlier call that timed out; not waiting behind it: {advice}")]
    DeviceStuck {
        /// The device, as in [`Error::DeviceTimeout`].
        device: String,
        /// What to check.
        advice: &'static str,
    },
    /// A device timeout given as text is not a number of seconds in range.
    #[error("\"{value}\" is not a device timeout: give seconds, more than 0 and at most 86400 (e.g. 30 or 1.5)")]
    BadDeviceTimeout {
        /// The text given (its first 40 characters).
        value: String,
    },
    /// No thread could be started for a bounded device call.
    #[error("cannot start a thread for the device call: {source}")]
    DeviceThread {
        /// Why.
        source: std::io::Error,
    },
    /// The PKCS#11 backend failed; the cryptoki error, if any, is the source.
    #[error(transparent)]
    Pkcs11(#[from] pkcs11::Pkcs11Error),
    /// The TPM backend failed; the TSS error, if any, is the source.
    #[error(transparent)]
    Tpm(#[from] tpm::TpmError),
}

/// Open the key a reference names. A secret no source supplies (a `prompt` source, a
/// token PIN without `pin-source=`, an encrypted key file without `password-source=`, a
/// TPM key file with a password and no `auth-source=`) is asked for through `callbacks`;
/// pass [`NoCallbacks`](crate::secret::NoCallbacks) where nobody can answer.
///
/// # Errors
/// The key cannot be found, read, unlocked or used for Entra (not RSA, under 2048 bits),
/// or its backend is not part of this build ([`Error::BackendMissing`]).
pub fn open(key: &KeyRef, callbacks: &dyn Callbacks) -> Result<Box<dyn Signer>, Error> {
    open_with(key, callbacks, &OpenOptions::default())
}

/// [`open`] with options: the device timeout that bounds each signature in a token or
/// TPM (default [`DEFAULT_DEVICE_TIMEOUT`], 30 s). A PKCS#11 or TPM signer returned
/// here fails with [`Error::DeviceTimeout`] when the device does not answer in time,
/// and with [`Error::DeviceStuck`] while that call has not returned; key files sign in
/// process and are not bounded. Opening a TPM key (connecting, loading it) is bounded
/// too; opening a PKCS#11 key (loading the module, logging in, which may ask for a PIN
/// through `callbacks`) is not.
///
/// # Errors
/// As [`open`].
pub fn open_with(
    key: &KeyRef,
    callbacks: &dyn Callbacks,
    options: &OpenOptions,
) -> Result<Box<dyn Signer>, Error> {
    let started = std::time::Instant::now();
    let signer: Box<dyn Signer> = match key {
        KeyRef::File { path, password } => Box::new(SoftwareSigner::from_file_with(
            path,
            password.as_ref(),
            callbacks,
        )?),
        KeyRef::Pkcs11(_) | KeyRef::Tpm(_) => {
            let signer = match key {
                KeyRef::Pkcs11(uri) => open_pkcs11(uri, callbacks)?,
                KeyRef::Tpm(uri) => open_tpm(uri, callbacks, options)?,
                KeyRef::File { .. } => unreachable!("matched above"),
            };
            bounded(key, signer, options)
        }
    };
    // The reference's Display leaves out secret-bearing attribute values.
    tracing::debug!(
        key = %key,
        ms = started.elapsed().as_millis() as u64,
        "opened the key"
    );
    Ok(signer)
}

/// Wrap a hardware signer so that each of its device calls is bounded.
fn bounded(key: &KeyRef, signer: Box<dyn Signer>, options: &OpenOptions) -> Box<dyn Signer> {
    let device = match key {
        KeyRef::Tpm(uri) => device::Device::Tpm {
            tcti: if uri.tcti_search {
                crate::keyref::tpm::DEFAULT_SEARCH.join(", then ")
            } else {
                uri.tcti.clone()
            },
        },
        KeyRef::Pkcs11(uri) => device::Device::Pkcs11 {
            module: pkcs11_module_name(uri),
        },
        KeyRef::File { .. } => return signer,
    };
    tracing::debug!(device = ?device, "device calls bounded by {:?}", options.timeout());
    Box::new(device::BoundedSigner::new(signer, device, options))
}

#[cfg(feature = "pkcs11")]
fn pkcs11_module_name(uri: &crate::keyref::Pkcs11Uri) -> String {
    pkcs11::module_path(uri).map_or_else(|| "(default)".into(), |p| p.display().to_string())
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11_module_name(uri: &crate::keyref::Pkcs11Uri) -> String {
    uri.module_path.clone().unwrap_or_default()
}

/// Generate an RSA key pair of `bits` (2048, 3072 or 4096) inside the token or TPM a
/// reference names, and open it. `label` names a PKCS#11 object when the URI has no
/// `object=`. Key files are written by the caller from [`generate_software_key`].
///
/// # Errors
/// The reference names a key file or a PIV slot ([`Error::GenerateUnsupported`]), the
/// size is not offered ([`Error::UnsupportedKeySize`]), the backend is not part of this
/// build, the slot or handle is taken, or the device refused.
pub fn generate(
    key: &KeyRef,
    bits: usize,
    label: Option<&str>,
    callbacks: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    match key {
        KeyRef::File { .. } => Err(Error::GenerateUnsupported {
            reference: key.to_string(),
            advice: "signer::generate makes keys in hardware; write key files from generate_software_key",
        }),
        KeyRef::Pkcs11(uri) if uri.piv_slot.is_some() => Err(Error::GenerateUnsupported {
            reference: key.to_string(),
            advice: "generate PIV keys with the card's own tool (ykman piv keys generate --algorithm RSA2048 9c …), then use piv:9c",
        }),
        _ if !matches!(bits, 2048 | 3072 | 4096) => Err(Error::UnsupportedKeySize { bits }),
        KeyRef::Pkcs11(uri) => {
            tracing::info!("generating RSA-{bits} in the token…");
            Ok(bounded(
                key,
                generate_pkcs11(uri, bits, label, callbacks)?,
                &OpenOptions::default(),
            ))
        }
        KeyRef::Tpm(uri) => {
            tracing::info!("generating RSA-{bits} in the TPM…");
            Ok(bounded(
                key,
                generate_tpm(uri, bits, callbacks)?,
                &OpenOptions::default(),
            ))
        }
    }
}

// ---- backend arms: each compiles to BackendMissing without its backend ----

#[cfg(feature = "pkcs11")]
fn open_pkcs11(
    uri: &crate::keyref::Pkcs11Uri,
    callbacks: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(pkcs11::Pkcs11Signer::open(uri, callbacks)?))
}

#[cfg(feature = "pkcs11")]
fn generate_pkcs11(
    uri: &crate::keyref::Pkcs11Uri,
    bits: usize,
    label: Option<&str>,
    callbacks: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(pkcs11::generate(uri, bits, label, callbacks)?))
}

#[cfg(not(feature = "pkcs11"))]
fn open_pkcs11(
    uri: &crate::keyref::Pkcs11Uri,
    _: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    Err(Error::BackendMissing {
        what: if uri.piv_slot.is_some() {
            "piv:"
        } else {
            "pkcs11:"
        },
        feature: "pkcs11",
    })
}

#[cfg(not(feature = "pkcs11"))]
fn generate_pkcs11(
    uri: &crate::keyref::Pkcs11Uri,
    _: usize,
    _: Option<&str>,
    callbacks: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    open_pkcs11(uri, callbacks)
}

#[cfg(feature = "tpm")]
fn open_tpm(
    uri: &crate::keyref::TpmUri,
    callbacks: &dyn Callbacks,
    options: &OpenOptions,
) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(tpm::TpmSigner::open_with_timeout(
        uri,
        callbacks,
        options.timeout(),
    )?))
}

#[cfg(feature = "tpm")]
fn generate_tpm(
    uri: &crate::keyref::TpmUri,
    bits: usize,
    callbacks: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    Ok(Box::new(tpm::TpmSigner::generate(uri, bits, callbacks)?))
}

#[cfg(not(feature = "tpm"))]
fn open_tpm(
    _: &crate::keyref::TpmUri,
    _: &dyn Callbacks,
    _: &OpenOptions,
) -> Result<Box<dyn Signer>, Error> {
    Err(Error::BackendMissing {
        what: "tpm:",
        feature: "tpm",
    })
}

#[cfg(not(feature = "tpm"))]
fn generate_tpm(
    uri: &crate::keyref::TpmUri,
    _: usize,
    callbacks: &dyn Callbacks,
) -> Result<Box<dyn Signer>, Error> {
    open_tpm(uri, callbacks, &OpenOptions::default())
}

/// Verify a signature against a SubjectPublicKeyInfo. Used to check a backend's output
/// before it leaves (a PS256 salt, a key/certificate pairing), and by `inspect --cert`.
///
/// # Errors
/// The signature does not verify, or the key is not an RSA key.
pub fn verify(spki: &[u8], alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), String> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256};
    let key = crate::public_key::RsaPublicKey::from_spki_der(spki)
        .map_err(|_| "the public key is not an RSA key")?;
    let components = aws_lc_rs::signature::RsaPublicKeyComponents {
        n: key.modulus(),
        e: key.exponent(),
    };
    let params = match alg {
        Algorithm::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::Ps256 => &RSA_PSS_2048_8192_SHA256,
    };
    components
        .verify(params, message, signature)
        .map_err(|_| format!("the {alg} signature does not verify with this public key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::NoCallbacks;

    #[test]
    fn hardware_references_without_their_backend_say_which_feature() {
        for (reference, feature, built) in [
            (
                "pkcs11:token=t;object=k",
                "pkcs11",
                cfg!(feature = "pkcs11"),
            ),
            ("piv:9c", "pkcs11", cfg!(feature = "pkcs11")),
            ("tpm:handle=0x81000001", "tpm", cfg!(feature = "tpm")),
        ] {
            if built {
                continue;
            }
            let key: KeyRef = reference.parse().unwrap();
            match open(&key, &NoCallbacks) {
                Err(e @ Error::BackendMissing { .. }) => {
                    assert!(
                        e.to_string()
                            .contains(&format!("rebuild with --features {feature}")),
                        "{e}"
                    );
                }
                other => panic!("{reference}: {other:?}"),
            }
        }
    }

    #[test]
    fn generate_refuses_files_piv_slots_and_odd_sizes_before_any_backend() {
        let file: KeyRef = "k.pem".parse().unwrap();
        assert!(matches!(
            generate(&file, 2048, None, &NoCallbacks),
            Err(Error::GenerateUnsupported { .. })
        ));
        let piv: KeyRef = "piv:9c".parse().unwrap();
        assert!(matches!(
            generate(&piv, 2048, None, &NoCallbacks),
            Err(Error::GenerateUnsupported { .. })
        ));
        let tpm: KeyRef = "tpm:key=/nonexistent/dir/k.tss2.pem".parse().unwrap();
        assert!(matches!(
            generate(&tpm, 1024, None, &NoCallbacks),
            Err(Error::UnsupportedKeySize { bits: 1024 })
        ));
    }
}
