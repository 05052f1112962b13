//! X.509 for certificate credentials: load certificates and chains (PEM or DER), the three
//! thumbprints people mix up (the portal's hex SHA-1, the JWT's base64url `x5t` and
//! `x5t#S256`), validity and key-usage checks, the key/certificate pairing check, and
//! building a self-signed certificate or a PKCS#10 CSR *through any [`Signer`]*: the
//! TBS structure is encoded here and only its bytes go to the backend to be signed.

use crate::encoding::{b64, b64url, days_from_civil, hex, random, rfc3339, uuid_v4};
use crate::signer::{Algorithm, Signer};
use crate::{der, pem};
use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use picky_asn1::wrapper::{
    BitStringAsn1, ExplicitContextTag0, ExplicitContextTag3, IntegerAsn1, PrintableStringAsn1,
};
use picky_asn1_x509::{
    AlgorithmIdentifier, AttributeTypeAndValue, AttributeTypeAndValueParameters, DirectoryString,
    Extension, Extensions, HashAlgorithm, KeyIdentifier, KeyUsage, Name, RsassaPssParams,
    SubjectPublicKeyInfo, TbsCertificate, Validity, Version,
};
use std::path::{Path, PathBuf};

/// Why a certificate could not be loaded, checked or built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read certificate file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Parse { path: String, detail: String },
    #[error(
        "the certificate (thumbprint {thumbprint}) does not belong to this key: their public keys differ. \
         Entra would answer AADSTS700027. Pass the certificate made from this key (certassert cert show --key …), \
         or the key that matches this certificate"
    )]
    KeyMismatch { thumbprint: String },
    #[error("the certificate (thumbprint {thumbprint}) expired on {not_after}; Entra ID refuses expired credentials: create a new certificate (certassert cert create) and upload it")]
    Expired {
        thumbprint: String,
        not_after: String,
    },
    #[error("the certificate (thumbprint {thumbprint}) is not valid until {not_before}; check the system clock")]
    NotYetValid {
        thumbprint: String,
        not_before: String,
    },
    #[error(
        "the certificate holds a {kind} key: Entra ID accepts RSA certificate credentials only"
    )]
    NotRsa { kind: String },
    #[error("--subject \"{subject}\": {detail}")]
    Subject { subject: String, detail: String },
    #[error("--days {0}: choose between 1 and 36500")]
    Days(u32),
    #[error("cannot encode the {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("signing the {what} failed: {source}")]
    Sign {
        what: &'static str,
        source: crate::signer::Error,
    },
}

/// A parsed X.509 certificate and its DER bytes.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    parsed: picky::x509::Cert,
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
        let parsed = picky::x509::Cert::from_der(&der).map_err(|e| Error::Parse {
            path: "certificate".into(),
            detail: format!("not a valid X.509 certificate: {e}"),
        })?;
        Ok(Self { der, parsed })
    }

    /// Load a certificate file: PEM (one or more CERTIFICATE blocks, leaf first; other
    /// blocks such as a private key are ignored) or one DER certificate.
    ///
    /// # Errors
    /// Unreadable file, no certificate in it, or a block that is not a certificate.
    pub fn load_chain(path: &Path) -> Result<Vec<Self>, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        let at = |detail: String| Error::Parse {
            path: path.display().to_string(),
            detail,
        };
        let ders = if pem::is_pem(&data) {
            let blocks = pem::parse(&data).map_err(at)?;
            let certs: Vec<Vec<u8>> = blocks
                .iter()
                .filter(|b| b.label == "CERTIFICATE" || b.label == "TRUSTED CERTIFICATE")
                .map(|b| b.der.to_vec())
                .collect();
            if certs.is_empty() {
                let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
                let hint = if labels.iter().any(|l| l.contains("PRIVATE KEY")) {
                    " — this is a key; pass it with --key"
                } else if labels.contains(&"CERTIFICATE REQUEST") {
                    " — this is a CSR; have it signed, or make a self-signed certificate with certassert cert create"
                } else {
                    ""
                };
                return Err(at(format!(
                    "no CERTIFICATE block in this PEM file (found: {}){hint}",
                    if labels.is_empty() {
                        "nothing".to_string()
                    } else {
                        labels.join(", ")
                    }
                )));
            }
            certs
        } else {
            vec![data]
        };
        ders.into_iter()
            .map(|d| {
                Self::from_der(d).map_err(|e| at(e.to_string().replacen("certificate: ", "", 1)))
            })
            .collect()
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
        der::certificate_spki(&self.der).unwrap_or_default()
    }

    /// RSA modulus size in bits, if the key is RSA.
    pub fn rsa_bits(&self) -> Option<usize> {
        der::rsa_public_numbers(self.spki_der()).map(|(n, _)| der::integer_bits(n))
    }

    /// Subject in RFC 4514 order (most specific first), e.g. `CN=my-app,O=Contoso`.
    pub fn subject(&self) -> String {
        format_name(&self.parsed.subject_name().into())
    }

    /// Issuer in RFC 4514 order.
    pub fn issuer(&self) -> String {
        format_name(&self.parsed.issuer_name().into())
    }

    /// Serial number, uppercase hex.
    pub fn serial_hex(&self) -> String {
        hex(self.parsed.serial_number().as_unsigned_bytes_be(), true)
    }

    /// notBefore, seconds since the epoch.
    pub fn not_before(&self) -> i64 {
        unix_of(&self.parsed.valid_not_before())
    }

    /// notAfter, seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        unix_of(&self.parsed.valid_not_after())
    }

    /// Key usage bits by name, or `None` when the extension is absent (any use allowed).
    pub fn key_usage(&self) -> Option<Vec<&'static str>> {
        self.parsed
            .extensions()
            .iter()
            .find_map(|ext| match ext.extn_value() {
                picky_asn1_x509::extension::ExtensionView::KeyUsage(ku) => {
                    let names = [
                        (ku.digital_signature(), "digitalSignature"),
                        (ku.content_commitment(), "nonRepudiation"),
                        (ku.key_encipherment(), "keyEncipherment"),
                        (ku.data_encipherment(), "dataEncipherment"),
                        (ku.key_agreement(), "keyAgreement"),
                        (ku.key_cert_sign(), "keyCertSign"),
                        (ku.crl_sign(), "cRLSign"),
                    ];
                    Some(
                        names
                            .iter()
                            .filter(|(on, _)| *on)
                            .map(|(_, n)| *n)
                            .collect(),
                    )
                }
                _ => None,
            })
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
        let ours = der::rsa_public_numbers(self.spki_der());
        if ours.is_none() {
            let kind = der::expect(self.spki_der(), der::SEQUENCE)
                .and_then(|(s, _)| der::expect(s.value, der::SEQUENCE))
                .and_then(|(a, _)| der::expect(a.value, der::OID))
                .map(|(oid, _)| der::key_algorithm_name(oid.value))
                .unwrap_or_else(|| "non-RSA".into());
            return Err(Error::NotRsa { kind });
        }
        if ours != der::rsa_public_numbers(signer.public_key_der()) {
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

/// RFC 4514 string of a Name: RDNs most specific first.
fn format_name(name: &Name) -> String {
    let mut parts = Vec::new();
    for rdn in name.0 .0.iter().rev() {
        for atv in &rdn.0 {
            use AttributeTypeAndValueParameters as P;
            let (key, value) = match &atv.value {
                P::CommonName(v) => ("CN", v.to_string()),
                P::Surname(v) => ("SN", v.to_string()),
                P::SerialNumber(v) => ("serialNumber", v.to_string()),
                P::CountryName(v) => ("C", v.to_string()),
                P::LocalityName(v) => ("L", v.to_string()),
                P::StateOrProvinceName(v) => ("ST", v.to_string()),
                P::StreetName(v) => ("STREET", v.to_string()),
                P::OrganizationName(v) => ("O", v.to_string()),
                P::OrganizationalUnitName(v) => ("OU", v.to_string()),
                P::EmailAddress(v) => ("E", String::from_utf8_lossy(v.as_bytes()).into_owned()),
                P::GivenName(v) => ("GN", v.to_string()),
                P::Phone(v) => ("telephoneNumber", v.to_string()),
                P::Custom(_) => {
                    let oid: String = atv.ty.0.clone().into();
                    parts.push(format!("{oid}=#…"));
                    continue;
                }
            };
            let escaped = value
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('+', "\\+");
            parts.push(format!("{key}={escaped}"));
        }
    }
    parts.join(",")
}

/// Parse a subject: RFC 4514 (`CN=my-app,O=Contoso`, most specific first, `\,` escapes)
/// or OpenSSL's slash form (`/O=Contoso/CN=my-app`, in encoding order).
///
/// # Errors
/// Empty subject, a part without `=`, an unknown attribute, or a country that is not two
/// letters.
pub fn parse_subject(subject: &str) -> Result<Name, Error> {
    let fail = |detail: String| Error::Subject {
        subject: subject.to_string(),
        detail,
    };
    let trimmed = subject.trim();
    let mut parts: Vec<String> = if let Some(rest) = trimmed.strip_prefix('/') {
        rest.split('/').map(str::to_string).collect()
    } else {
        let mut parts = split_unescaped(trimmed);
        parts.reverse(); // RFC 4514 lists the last RDN first
        parts
    };
    parts.retain(|p| !p.trim().is_empty());
    if parts.is_empty() {
        return Err(fail(
            "the subject is empty; use e.g. --subject \"CN=my-app\"".into(),
        ));
    }
    let mut name = Name::new();
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| fail(format!("\"{part}\" is not KEY=VALUE (e.g. CN=my-app)")))?;
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(fail(format!("\"{}\" has an empty value", key.trim())));
        }
        use picky_asn1_x509::NameAttr as A;
        let attr = match key.trim().to_ascii_uppercase().as_str() {
            "CN" => A::CommonName,
            "O" => A::OrganizationName,
            "OU" => A::OrganizationalUnitName,
            "L" => A::LocalityName,
            "ST" | "S" => A::StateOrProvinceName,
            "STREET" => A::StreetName,
            "SN" | "SURNAME" => A::Surname,
            "GN" | "G" | "GIVENNAME" => A::GivenName,
            "SERIALNUMBER" => A::SerialNumber,
            "E" | "EMAIL" | "EMAILADDRESS" => {
                name.add_email(
                    picky_asn1::restricted_string::IA5String::from_string(value.clone())
                        .map_err(|_| fail(format!("e-mail address \"{value}\" must be ASCII")))?,
                );
                continue;
            }
            "C" => {
                let printable =
                    picky_asn1::restricted_string::PrintableString::from_string(value.clone())
                        .ok()
                        .filter(|_| {
                            value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic())
                        })
                        .ok_or_else(|| {
                            fail(format!(
                                "country \"{value}\" must be a two-letter code such as US"
                            ))
                        })?;
                let atv = AttributeTypeAndValue::new_country_name(
                    DirectoryString::PrintableString(PrintableStringAsn1::from(printable)),
                );
                name.0 .0.push(picky_asn1::wrapper::Asn1SetOf(vec![atv]));
                continue;
            }
            other => {
                return Err(fail(format!(
                    "unknown attribute \"{other}\"; use CN, O, OU, L, ST, C, STREET, SN, GN, serialNumber or E"
                )));
            }
        };
        name.add_attr(attr, value);
    }
    Ok(name)
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    parts.last_mut().expect("non-empty").push(next);
                }
            }
            ',' | ';' => parts.push(String::new()),
            c => parts.last_mut().expect("non-empty").push(c),
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

fn signature_algorithm(alg: Algorithm) -> AlgorithmIdentifier {
    match alg {
        Algorithm::Rs256 => AlgorithmIdentifier::new_sha256_with_rsa_encryption(),
        Algorithm::Ps256 => {
            AlgorithmIdentifier::new_rsassa_pss(RsassaPssParams::new(HashAlgorithm::SHA256))
        }
    }
}

fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, Error> {
    picky_asn1_der::to_vec(value).map_err(|e| Error::Encode {
        what,
        detail: e.to_string(),
    })
}

fn signer_spki(signer: &dyn Signer) -> Result<SubjectPublicKeyInfo, Error> {
    picky_asn1_der::from_bytes(signer.public_key_der()).map_err(|e| Error::Encode {
        what: "public key",
        detail: e.to_string(),
    })
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents.
fn key_identifier(spki_der: &[u8]) -> Vec<u8> {
    let bits = der::expect(spki_der, der::SEQUENCE)
        .and_then(|(seq, _)| der::read(seq.value))
        .and_then(|(_, rest)| der::expect(rest, der::BIT_STRING))
        .map(|(bits, _)| bits.value.get(1..).unwrap_or_default())
        .unwrap_or(spki_der);
    digest(&SHA1_FOR_LEGACY_USE_ONLY, bits).as_ref().to_vec()
}

fn asn1_time(unix: i64) -> Result<picky_asn1_x509::validity::Time, Error> {
    let (y, mo, d, h, mi, s) = crate::encoding::utc_parts(unix);
    let bad = || Error::Encode {
        what: "validity",
        detail: format!("date {} is out of range", rfc3339(unix)),
    };
    let y16 = u16::try_from(y).map_err(|_| bad())?;
    let (mo, d, h, mi, s) = (mo as u8, d as u8, h as u8, mi as u8, s as u8);
    // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    if y < 2050 {
        Ok(picky_asn1::date::UTCTime::new(y16, mo, d, h, mi, s)
            .ok_or_else(bad)?
            .into())
    } else {
        Ok(picky_asn1::date::GeneralizedTime::new(y16, mo, d, h, mi, s)
            .ok_or_else(bad)?
            .into())
    }
}

/// Create a self-signed end-entity certificate for `signer`'s key: random positive
/// 128-bit serial, valid from one minute ago for `days` days, CA:false, keyUsage
/// digitalSignature, SKI and AKI. The TBSCertificate is signed through the Signer.
///
/// # Errors
/// A bad subject or day count, or the backend failing to sign.
pub fn create_self_signed(
    signer: &dyn Signer,
    alg: Algorithm,
    subject: &str,
    days: u32,
    now: i64,
) -> Result<Certificate, Error> {
    if !(1..=36_500).contains(&days) {
        return Err(Error::Days(days));
    }
    let name = parse_subject(subject)?;
    let spki = signer_spki(signer)?;
    let ski = key_identifier(signer.public_key_der());
    let mut serial: [u8; 16] = random();
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and 16 significant bytes
    let mut key_usage = KeyUsage::new(1);
    key_usage.set_digital_signature(true);
    let extensions = Extensions(vec![
        Extension::new_basic_constraints(false, None),
        Extension::new_key_usage(key_usage),
        Extension::new_subject_key_identifier(ski.clone()),
        Extension::new_authority_key_identifier(KeyIdentifier::from(ski), None, None),
    ]);
    let not_before = now - 60;
    let not_after = now + i64::from(days) * 86_400;
    let tbs = TbsCertificate {
        version: ExplicitContextTag0(Version::V3),
        serial_number: IntegerAsn1::from_bytes_be_unsigned(serial.to_vec()),
        signature: signature_algorithm(alg),
        issuer: name.clone(),
        validity: Validity {
            not_before: asn1_time(not_before)?,
            not_after: asn1_time(not_after)?,
        },
        subject: name,
        subject_public_key_info: spki,
        extensions: ExplicitContextTag3(extensions),
    };
    let tbs_der = encode("certificate", &tbs)?;
    let signature = signer.sign(alg, &tbs_der).map_err(|source| Error::Sign {
        what: "certificate",
        source,
    })?;
    let cert = picky_asn1_x509::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signature_algorithm(alg),
        signature_value: BitStringAsn1::from(picky_asn1::bit_string::BitString::with_bytes(
            signature,
        )),
    };
    Certificate::from_der(encode("certificate", &cert)?)
}

/// Create a PKCS#10 certificate signing request for `signer`'s key, signed through it.
///
/// # Errors
/// A bad subject, or the backend failing to sign.
pub fn create_csr(signer: &dyn Signer, alg: Algorithm, subject: &str) -> Result<Vec<u8>, Error> {
    use picky_asn1_x509::{CertificationRequest, CertificationRequestInfo};
    let info = CertificationRequestInfo {
        version: 0,
        subject: parse_subject(subject)?,
        subject_public_key_info: signer_spki(signer)?,
        attributes: picky_asn1_x509::certification_request::OpenSslAttributes(Default::default()),
    };
    let info_der = encode("certificate request", &info)?;
    let signature = signer.sign(alg, &info_der).map_err(|source| Error::Sign {
        what: "certificate request",
        source,
    })?;
    let csr = CertificationRequest {
        certification_request_info: info,
        signature_algorithm: signature_algorithm(alg),
        signature: BitStringAsn1::from(picky_asn1::bit_string::BitString::with_bytes(signature)),
    };
    encode("certificate request", &csr)
}

/// A throwaway TLS authority for a loopback server (the emulator's `--tls`): a CA
/// certificate self-signed by `ca_signer` (CA:true, keyCertSign) and a server certificate
/// for `server_signer`'s key, issued by that CA, valid for `localhost`, `127.0.0.1` and
/// `::1` (serverAuth). Both are valid from one minute ago for `days` days; the clients
/// trust the CA (`--ca-file`), never the server certificate itself.
///
/// # Errors
/// A bad day count, or a backend failing to sign.
pub fn create_loopback_tls(
    ca_signer: &dyn Signer,
    server_signer: &dyn Signer,
    days: u32,
    now: i64,
) -> Result<(Certificate, Certificate), Error> {
    use picky_asn1::restricted_string::IA5String;
    use picky_asn1::wrapper::{Asn1SequenceOf, Ia5StringAsn1, OctetStringAsn1};
    use picky_asn1_x509::name::GeneralName;
    if !(1..=36_500).contains(&days) {
        return Err(Error::Days(days));
    }
    let ca_name = parse_subject("CN=certassert emulator CA")?;
    let ca_ski = key_identifier(ca_signer.public_key_der());
    let mut ca_usage = KeyUsage::new(7);
    ca_usage.set_key_cert_sign(true);
    ca_usage.set_crl_sign(true);
    let ca_extensions = vec![
        Extension::new_basic_constraints(true, 0),
        Extension::new_key_usage(ca_usage),
        Extension::new_subject_key_identifier(ca_ski.clone()),
    ];
    let ca = issue(
        ca_signer,
        &ca_name,
        ca_name.clone(),
        signer_spki(ca_signer)?,
        ca_extensions,
        days,
        now,
    )?;
    let mut usage = KeyUsage::new(3);
    usage.set_digital_signature(true);
    usage.set_key_encipherment(true);
    let dns = IA5String::from_string("localhost".into()).map_err(|e| Error::Encode {
        what: "subjectAltName",
        detail: e.to_string(),
    })?;
    let names = Asn1SequenceOf(vec![
        GeneralName::DnsName(Ia5StringAsn1::from(dns)),
        GeneralName::IpAddress(OctetStringAsn1::from(vec![127, 0, 0, 1])),
        GeneralName::IpAddress(OctetStringAsn1::from({
            let mut v6 = vec![0u8; 16];
            v6[15] = 1;
            v6
        })),
    ]);
    let server_extensions = vec![
        Extension::new_basic_constraints(false, None),
        Extension::new_key_usage(usage),
        Extension::new_extended_key_usage(vec![picky_asn1_x509::oids::kp_server_auth()]),
        Extension::new_subject_alt_name(names).into_non_critical(),
        Extension::new_subject_key_identifier(key_identifier(server_signer.public_key_der())),
        Extension::new_authority_key_identifier(KeyIdentifier::from(ca_ski), None, None),
    ];
    let server = issue(
        ca_signer,
        &ca_name,
        parse_subject("CN=localhost")?,
        signer_spki(server_signer)?,
        server_extensions,
        days,
        now,
    )?;
    Ok((ca, server))
}

/// Sign a certificate for `spki` with `issuer_signer` (RS256), random serial.
fn issue(
    issuer_signer: &dyn Signer,
    issuer: &Name,
    subject: Name,
    spki: SubjectPublicKeyInfo,
    extensions: Vec<Extension>,
    days: u32,
    now: i64,
) -> Result<Certificate, Error> {
    let mut serial: [u8; 16] = random();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let tbs = TbsCertificate {
        version: ExplicitContextTag0(Version::V3),
        serial_number: IntegerAsn1::from_bytes_be_unsigned(serial.to_vec()),
        signature: signature_algorithm(Algorithm::Rs256),
        issuer: issuer.clone(),
        validity: Validity {
            not_before: asn1_time(now - 60)?,
            not_after: asn1_time(now + i64::from(days) * 86_400)?,
        },
        subject,
        subject_public_key_info: spki,
        extensions: ExplicitContextTag3(Extensions(extensions)),
    };
    let tbs_der = encode("certificate", &tbs)?;
    let signature = issuer_signer
        .sign(Algorithm::Rs256, &tbs_der)
        .map_err(|source| Error::Sign {
            what: "certificate",
            source,
        })?;
    let cert = picky_asn1_x509::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signature_algorithm(Algorithm::Rs256),
        signature_value: BitStringAsn1::from(picky_asn1::bit_string::BitString::with_bytes(
            signature,
        )),
    };
    Certificate::from_der(encode("certificate", &cert)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_in_both_notations_encode_the_same() {
        let a = parse_subject("CN=my-app, O=Contoso\\, Ltd, C=US").unwrap();
        let b = parse_subject("/C=US/O=Contoso, Ltd/CN=my-app").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_name(&a), "CN=my-app,O=Contoso\\, Ltd,C=US");
    }

    #[test]
    fn subject_errors_say_what_is_wrong() {
        for (bad, needle) in [
            ("", "empty"),
            ("my-app", "KEY=VALUE"),
            ("CN=", "empty value"),
            ("XX=1", "unknown attribute \"XX\""),
            ("CN=a,C=USA", "two-letter"),
        ] {
            let e = parse_subject(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
