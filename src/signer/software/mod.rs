//! The software fallback: an RSA key held in this process and signed with aws-lc-rs, and
//! RSA key generation for key files. Reading the file (PEM or DER PKCS#8, PKCS#1,
//! encrypted PKCS#8, PKCS#12 with its certificate and chain) is [`keyfile`]'s; this module
//! checks the key, picks the key's own certificate among those stored with it and signs.
//! The key is parsed once; every buffer that held private material is zeroized, and
//! aws-lc clears its own copy when freed.

mod keyfile;

use super::{Algorithm, Error, Signer};
use crate::public_key;
use crate::secret::{Callbacks, NoCallbacks, SecretSource};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use keyfile::{KeyMaterial, Plain};
use std::path::Path;
use zeroize::Zeroizing;

/// An RSA key held in this process.
pub struct SoftwareSigner {
    key: KeyPair,
    spki: Vec<u8>,
    certificate: Option<Vec<u8>>,
    chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("bits", &(self.key.public_modulus_len() * 8))
            .field("certificate", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

const ALGORITHMS: &[Algorithm] = &[Algorithm::Rs256, Algorithm::Ps256];

impl Signer for SoftwareSigner {
    fn algorithms(&self) -> &[Algorithm] {
        ALGORITHMS
    }

    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        let encoding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
            Algorithm::Rs256 => &RSA_PKCS1_SHA256,
            Algorithm::Ps256 => &RSA_PSS_SHA256,
        };
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                encoding,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| Error::Sign {
                backend: "software",
                detail: "aws-lc-rs RSA signing failed".into(),
            })?;
        Ok(signature)
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

impl SoftwareSigner {
    /// Load a key file. `password` unlocks encrypted PKCS#8 and PKCS#12; when it is absent
    /// an empty password is tried (as `openssl pkcs12 -passout pass:` writes), and nobody
    /// is asked: see [`SoftwareSigner::from_file_with`].
    ///
    /// # Errors
    /// Unreadable file, unknown format, wrong password, a non-RSA key, or an RSA key
    /// outside 2048–8192 bits. Each message names the file and what to do.
    pub fn from_file(path: &Path, password: Option<&SecretSource>) -> Result<Self, Error> {
        Self::from_file_with(path, password, &NoCallbacks)
    }

    /// As [`SoftwareSigner::from_file`], asking `callbacks` for the password when the
    /// file is encrypted, no `password` source is given and the empty password fails
    /// (and for a `prompt` source).
    ///
    /// # Errors
    /// As [`SoftwareSigner::from_file`]; [`Error::Secret`] when the password is needed
    /// and `callbacks` cannot ask.
    pub fn from_file_with(
        path: &Path,
        password: Option<&SecretSource>,
        callbacks: &dyn Callbacks,
    ) -> Result<Self, Error> {
        finish(path, keyfile::read(path, password, callbacks)?)
    }

    /// Build a signer from unencrypted PKCS#8 DER (used by key generation and tests).
    ///
    /// # Errors
    /// As [`SoftwareSigner::from_file`], for the in-memory key.
    pub fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self, Error> {
        let path = Path::new("<memory>");
        finish(
            path,
            KeyMaterial {
                key: Plain::Pkcs8(Zeroizing::new(pkcs8.to_vec())),
                certificates: Vec::new(),
            },
        )
    }
}

/// Check the key, hand it to aws-lc-rs and sort its certificates into leaf and chain.
fn finish(path: &Path, material: KeyMaterial) -> Result<SoftwareSigner, Error> {
    let KeyMaterial {
        key,
        certificates: mut certs,
    } = material;
    keyfile::check_key(path, &key)?;
    let parsed = match &key {
        Plain::Pkcs8(der) => KeyPair::from_pkcs8(der),
        Plain::Pkcs1(der) => KeyPair::from_der(der),
    }
    .map_err(|e| Error::Format {
        path: path.into(),
        detail: format!("the RSA key is not valid ({})", e.description_()),
    })?;
    let spki = parsed
        .public_key()
        .as_der()
        .map_err(|_| Error::Format {
            path: path.into(),
            detail: "cannot encode the public key".into(),
        })?
        .as_ref()
        .to_vec();
    // The key's own certificate is the one with its public key; the rest are its chain.
    // When none matches, the first is kept anyway so that the pairing check reports the
    // mismatch instead of "no certificate".
    let ours = |c: &Vec<u8>| {
        public_key::certificate_spki(c).is_ok_and(|s| public_key::same_rsa_key(s, &spki))
    };
    let leaf = certs.iter().position(ours).unwrap_or(0);
    let certificate = (!certs.is_empty()).then(|| certs.remove(leaf));
    let chain = certs;
    Ok(SoftwareSigner {
        key: parsed,
        spki,
        certificate,
        chain,
    })
}

/// Generate an RSA key and return it as unencrypted PKCS#8 DER.
///
/// # Errors
/// `bits` is not 2048, 3072 or 4096, or the generator failed.
pub fn generate_software_key(bits: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        bits => return Err(Error::UnsupportedKeySize { bits }),
    };
    let key =
        KeyPair::generate(size).map_err(|_| Error::Generate("RSA key generation failed".into()))?;
    let der = key
        .as_der()
        .map_err(|_| Error::Generate("cannot encode the generated key".into()))?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}
