//! X.509 for certificate credentials. This module owns the [`Certificate`] model: loading
//! a certificate or chain (PEM or DER), the three thumbprints people mix up (the portal's
//! hex SHA-1, the JWT's base64url `x5t` and `x5t#S256`), validity and key-usage checks,
//! the key/certificate pairing check and the app-manifest entry. RFC 4514 names live in
//! `name`, issuing (self-signed, CSR, the emulator's loopback TLS certificates) in
//! `issue`: everything is signed *through a [`Signer`]*, whose backend only ever sees the
//! bytes to be signed.

pub(crate) mod issue;
mod key_usage;
mod name;

pub use issue::{create_csr, create_self_signed};
pub use name::{format_name, SubjectError};

use crate::encoding::{b64, b64url, days_from_civil, hex, rfc3339, uuid_v4};
use crate::public_key::{self, pem, KeyAlgorithm, RsaPublicKey};
use crate::signer::Signer;
use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use std::path::{Path, PathBuf};

/// Why a certificate could not be loaded, checked or built. Messages say what to do but
/// name no command-line flag: a front end adds its own hint by matching the variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The certificate file cannot be read.
    #[error("cannot read certificate file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// Bytes that are not an X.509 certificate.
    #[error("{path}: not a valid X.509 certificate: {source}")]
    Parse {
        /// The file, or `certificate` for bytes from memory.
        path: String,
        /// picky's account of what is wrong.
        source: picky::x509::certificate::CertError,
    },
    /// An extension whose value is malformed: the certificate is refused, as openssl
    /// refuses it.
    #[error("{path}: not a valid X.509 certificate: its {name} extension is not a DER BIT STRING ({reason}); the certificate is malformed: have it issued again")]
    Extension {
        /// The file, or `certificate` for bytes from memory.
        path: String,
        /// The extension, e.g. `keyUsage`.
        name: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// A PEM file whose text cannot be read.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with the PEM text.
        source: pem::Error,
    },
    /// A PEM file without any CERTIFICATE block.
    #[error("{}: no CERTIFICATE block in this PEM file (found: {}){}", path.display(),
        if labels.is_empty() { "nothing".to_string() } else { labels.join(", ") }, instead.explain())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// The labels of the blocks it holds.
        labels: Vec<String>,
        /// What the file seems to hold instead.
        instead: Instead,
    },
    /// The certificate's public key is not the signer's.
    #[error(
        "the certificate (thumbprint {thumbprint}) does not belong to this key: their public keys differ. \
         Entra would answer AADSTS700027. Use the certificate made from this key, \
         or the key that matches this certificate"
    )]
    KeyMismatch {
        /// Hex SHA-1 of the certificate.
        thumbprint: String,
    },
    /// notAfter is in the past.
    #[error("the certificate (thumbprint {thumbprint}) expired on {not_after}; Entra ID refuses expired credentials: create a new certificate (certassert cert create) and upload it")]
    Expired {
        /// Hex SHA-1 of the certificate.
        thumbprint: String,
        /// notAfter, RFC 3339.
        not_after: String,
    },
    /// notBefore is in the future.
    #[error("the certificate (thumbprint {thumbprint}) is not valid until {not_before}; check the system clock")]
    NotYetValid {
        /// Hex SHA-1 of the certificate.
        thumbprint: String,
        /// notBefore, RFC 3339.
        not_before: String,
    },
    /// The certificate's key is not RSA.
    #[error(
        "the certificate holds an {kind} key: Entra ID accepts RSA certificate credentials only"
    )]
    NotRsa {
        /// The key's algorithm.
        kind: KeyAlgorithm,
    },
    /// The subject string cannot be encoded as a Name.
    #[error("subject \"{subject}\": {reason}")]
    Subject {
        /// The subject as given.
        subject: String,
        /// What is wrong with it.
        reason: SubjectError,
    },
    /// A validity period outside 1–36500 days.
    #[error("a validity of {0} days is out of range: choose between 1 and 36500 days")]
    Days(u32),
    /// A structure could not be DER-encoded.
    #[error("cannot encode the {what}: {detail}")]
    Encode {
        /// The structure.
        what: &'static str,
        /// The encoder's message.
        detail: String,
    },
    /// The signer failed to sign the certificate or request.
    #[error("signing the {what} failed: {source}")]
    Sign {
        /// "certificate" or "certificate request".
        what: &'static str,
        /// The backend's error.
        source: crate::signer::Error,
    },
}

/// What a PEM file without a certificate holds instead ([`Error::NoCertificate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instead {
    /// A private key: the file is a key, given where a certificate belongs.
    PrivateKey,
    /// A PKCS#10 request, not yet signed by a CA.
    CertificateRequest,
    /// Nothing certassert recognises.
    Other,
}

impl Instead {
    fn of(labels: &[String]) -> Self {
        if labels.iter().any(|l| l.ends_with("PRIVATE KEY")) {
            Self::PrivateKey
        } else if labels.iter().any(|l| l == "CERTIFICATE REQUEST") {
            Self::CertificateRequest
        } else {
            Self::Other
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Self::PrivateKey => " — this is a key",
            Self::CertificateRequest => {
                " — this is a CSR; have it signed, or make a self-signed certificate with certassert cert create"
            }
            Self::Other => "",
        }
    }
}

/// A parsed X.509 certificate and its DER bytes.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    parsed: picky::x509::Cert,
    /// keyUsage's bit names, decoded and checked when parsed.
    key_usage: Option<Vec<&'static str>>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("sha1", &self.thumbprint_hex())
            .finish()
    }
}

impl Certificate {
    /// Parse a DER certificate.
    ///
    /// # Errors
    /// The bytes are not an X.509 certificate.
    pub fn from_der(der: Vec<u8>) -> Result<Self, Error> {
        Self::parse(der, "certificate")
    }

    fn parse(der: Vec<u8>, path: &str) -> Result<Self, Error> {
        let parsed = picky::x509::Cert::from_der(&der).map_err(|source| Error::Parse {
            path: path.to_string(),
            source,
        })?;
        let key_usage = parsed
            .extensions()
            .iter()
            .find_map(|ext| match ext.extn_value() {
                picky_asn1_x509::extension::ExtensionView::KeyUsage(ku) => Some(ku),
                _ => None,
            })
            .map(key_usage::names)
            .transpose()
            .map_err(|reason| Error::Extension {
                path: path.to_string(),
                name: "keyUsage",
                reason,
            })?;
        Ok(Self {
            der,
            parsed,
            key_usage,
        })
    }

    /// Load a certificate file: PEM (one or more CERTIFICATE blocks, leaf first; other
    /// blocks such as a private key are ignored) or one DER certificate.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file, [`Error::Pem`] for unreadable PEM text,
    /// [`Error::NoCertificate`] when no block is a certificate, [`Error::Parse`] for a
    /// certificate that does not parse.
    pub fn load_chain(path: &Path) -> Result<Vec<Self>, Error> {
        let data = crate::input::read_file(path, crate::input::Limit::CERTIFICATE)
            .map(|mut data| std::mem::take(&mut *data))
            .map_err(|source| Error::Io {
                path: path.into(),
                source,
            })?;
        let ders = if pem::is_pem(&data) {
            let blocks = pem::parse(&data).map_err(|source| Error::Pem {
                path: path.into(),
                source,
            })?;
            let certs: Vec<Vec<u8>> = blocks
                .iter()
                .filter(|b| b.label == "CERTIFICATE" || b.label == "TRUSTED CERTIFICATE")
                .map(|b| b.der.to_vec())
                .collect();
            if certs.is_empty() {
                let labels: Vec<String> = blocks.into_iter().map(|b| b.label).collect();
                return Err(Error::NoCertificate {
                    path: path.into(),
                    instead: Instead::of(&labels),
                    labels,
                });
            }
            certs
        } else {
            vec![data]
        };
        let shown = path.display().to_string();
        ders.into_iter().map(|d| Self::parse(d, &shown)).collect()
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM text.
    pub fn to_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// SHA-1 of the DER: the "thumbprint" Entra and Windows use.
    pub fn sha1(&self) -> Vec<u8> {
        digest(&SHA1_FOR_LEGACY_USE_ONLY, &self.der)
            .as_ref()
            .to_vec()
    }

    /// The thumbprint as the Azure portal shows it: uppercase hex SHA-1.
    pub fn thumbprint_hex(&self) -> String {
        hex(&self.sha1(), true)
    }

    /// The JWT header `x5t`: base64url of the 20 SHA-1 bytes (not of the hex text).
    pub fn x5t(&self) -> String {
        b64url(&self.sha1())
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> Vec<u8> {
        digest(&SHA256, &self.der).as_ref().to_vec()
    }

    /// The JWT header `x5t#S256`: base64url of the SHA-256 of the DER.
    pub fn x5t_s256(&self) -> String {
        b64url(&self.sha256())
    }

    /// The SubjectPublicKeyInfo exactly as encoded in the certificate.
    pub fn spki_der(&self) -> &[u8] {
        // picky parsed the whole certificate already, so its SPKI is there.
        public_key::certificate_spki(&self.der).unwrap_or_default()
    }

    /// RSA modulus size in bits, if the key is RSA.
    pub fn rsa_bits(&self) -> Option<usize> {
        RsaPublicKey::from_spki_der(self.spki_der())
            .ok()
            .map(|k| k.bits())
    }

    /// Subject in RFC 4514 order (most specific first), e.g. `CN=my-app,O=Contoso`.
    pub fn subject(&self) -> String {
        format_name(&self.parsed.subject_name().into())
    }

    /// Issuer in RFC 4514 order.
    pub fn issuer(&self) -> String {
        format_name(&self.parsed.issuer_name().into())
    }

    /// Serial number as openssl and the portal print it: uppercase hex of the DER
    /// INTEGER's value, two digits a byte. A negative serial (the high bit set with no
    /// leading zero byte, which some CAs issue) is a minus sign and its magnitude.
    pub fn serial_hex(&self) -> String {
        serial_text(self.parsed.serial_number().as_signed_bytes_be())
    }

    /// notBefore, seconds since the epoch.
    pub fn not_before(&self) -> i64 {
        unix_of(&self.parsed.valid_not_before())
    }

    /// notAfter, seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        unix_of(&self.parsed.valid_not_after())
    }

    /// Key usage bits by name in RFC 5280 order (`digitalSignature` … `decipherOnly`), or
    /// `None` when the extension is absent (any use allowed).
    pub fn key_usage(&self) -> Option<Vec<&'static str>> {
        self.key_usage.clone()
    }

    /// Whether basicConstraints says this is a CA certificate.
    pub fn is_ca(&self) -> bool {
        self.parsed
            .basic_constraints()
            .ok()
            .and_then(|bc| bc.ca())
            .unwrap_or(false)
    }

    /// Whether issuer equals subject (self-issued).
    pub fn is_self_issued(&self) -> bool {
        self.parsed.subject_name() == self.parsed.issuer_name()
    }

    /// Fail if the certificate is not valid at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// [`Error::Expired`] or [`Error::NotYetValid`].
    pub fn check_validity(&self, now: i64) -> Result<(), Error> {
        if now > self.not_after() {
            return Err(Error::Expired {
                thumbprint: self.thumbprint_hex(),
                not_after: rfc3339(self.not_after()),
            });
        }
        if now < self.not_before() {
            return Err(Error::NotYetValid {
                thumbprint: self.thumbprint_hex(),
                not_before: rfc3339(self.not_before()),
            });
        }
        Ok(())
    }

    /// Fail unless this certificate carries exactly the signer's public key.
    ///
    /// # Errors
    /// [`Error::NotRsa`] or [`Error::KeyMismatch`].
    pub fn check_key(&self, signer: &dyn Signer) -> Result<(), Error> {
        if let Err(e) = RsaPublicKey::from_spki_der(self.spki_der()) {
            let kind = match e {
                public_key::Error::NotRsa(kind) => kind,
                _ => KeyAlgorithm::of_spki(self.spki_der())
                    .unwrap_or_else(|_| KeyAlgorithm::Other("unreadable".into())),
            };
            return Err(Error::NotRsa { kind });
        }
        if !public_key::same_rsa_key(self.spki_der(), signer.public_key_der()) {
            return Err(Error::KeyMismatch {
                thumbprint: self.thumbprint_hex(),
            });
        }
        Ok(())
    }

    /// Everything that must hold before this certificate is used with `signer` at `now`:
    /// same key, currently valid. Returns warnings that do not block use (key usage
    /// without digitalSignature, expiry within 30 days).
    ///
    /// # Errors
    /// As [`Certificate::check_key`] and [`Certificate::check_validity`].
    pub fn check_usable(&self, signer: &dyn Signer, now: i64) -> Result<Vec<String>, Error> {
        self.check_key(signer)?;
        self.check_validity(now)?;
        let mut warnings = Vec::new();
        if let Some(ku) = self.key_usage() {
            if !ku.contains(&"digitalSignature") {
                warnings.push(format!(
                    "certificate {} has keyUsage {} without digitalSignature; strict verifiers will refuse its signatures",
                    self.thumbprint_hex(),
                    ku.join(",")
                ));
            }
        }
        let days_left = (self.not_after() - now) / 86_400;
        if days_left < 30 {
            warnings.push(format!(
                "certificate {} expires in {days_left} days ({}); create and upload its successor now",
                self.thumbprint_hex(),
                rfc3339(self.not_after())
            ));
        }
        Ok(warnings)
    }

    /// The app-manifest `keyCredentials` entry for this certificate (also the shape of
    /// Microsoft Graph's keyCredential): upload it to register the certificate.
    pub fn manifest_entry(&self, display_name: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "customKeyIdentifier": b64(&self.sha1()),
            "keyId": uuid_v4(),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "value": b64(&self.der),
            "startDate": rfc3339(self.not_before()),
            "endDate": rfc3339(self.not_after()),
            "displayName": display_name.map_or_else(|| self.subject(), str::to_string),
        })
    }

    /// The certificate as Microsoft Graph's `keyCredential` resource (what
    /// `PATCH /applications/{id}` takes in `keyCredentials`): `customKeyIdentifier`
    /// (base64 of the SHA-1 thumbprint), `displayName`, `endDateTime`, `key` (base64 DER),
    /// `keyId` (a fresh UUID), `startDateTime`, `type` `AsymmetricX509Cert`, `usage`
    /// `Verify`. The app manifest's own entry ([`Certificate::manifest_entry`]) names the
    /// same things `startDate`, `endDate` and `value`.
    pub fn graph_key_credential(&self, display_name: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "customKeyIdentifier": b64(&self.sha1()),
            "displayName": display_name.map_or_else(|| self.subject(), str::to_string),
            "endDateTime": rfc3339(self.not_after()),
            "key": b64(&self.der),
            "keyId": uuid_v4(),
            "startDateTime": rfc3339(self.not_before()),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
        })
    }
}

/// Parse a subject: RFC 4514 (`CN=my-app,O=Contoso`, most specific first, `\,` escapes)
/// or OpenSSL's slash form (`/O=Contoso/CN=my-app`, in encoding order).
///
/// # Errors
/// [`Error::Subject`] with the [`SubjectError`] that says what is wrong.
pub fn parse_subject(subject: &str) -> Result<picky_asn1_x509::Name, Error> {
    name::parse_name(subject).map_err(|reason| Error::Subject {
        subject: subject.to_string(),
        reason,
    })
}

fn unix_of(d: &picky::x509::date::UtcDate) -> i64 {
    days_from_civil(
        i64::from(d.year()),
        u32::from(d.month()),
        u32::from(d.day()),
    ) * 86_400
        + i64::from(d.hour()) * 3600
        + i64::from(d.minute()) * 60
        + i64::from(d.second())
}

/// The value of a DER INTEGER's two's-complement content octets as signed hex.
fn serial_text(signed: &[u8]) -> String {
    let negative = signed.first().is_some_and(|b| b & 0x80 != 0);
    if !negative {
        let start = signed
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(signed.len().saturating_sub(1));
        return hex(signed.get(start..).unwrap_or_default(), true);
    }
    // The magnitude is the two's complement: invert, then add one.
    let mut magnitude: Vec<u8> = signed.iter().map(|b| !b).collect();
    for byte in magnitude.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    let start = magnitude.iter().position(|&b| b != 0).unwrap_or(0);
    format!("-{}", hex(&magnitude[start..], true))
}
