//! Issuing through any [`Signer`]: one path builds the to-be-signed structure (a
//! TBSCertificate or a CertificationRequestInfo), encodes it, has the backend sign those
//! bytes and wraps the signature — for the self-signed certificate, the PKCS#10 request
//! and the emulator's loopback TLS authority (`emulator::tls`) alike. No private key is ever seen here.

use super::{parse_subject, Certificate, Error};
use crate::encoding::{random, rfc3339};
use crate::signer::{Algorithm, Signer};
use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use der::Decode as _;
use picky_asn1::bit_string::BitString;
use picky_asn1::wrapper::{BitStringAsn1, ExplicitContextTag0, ExplicitContextTag3, IntegerAsn1};
use picky_asn1_x509::{
    AlgorithmIdentifier, Extension, Extensions, HashAlgorithm, KeyIdentifier, KeyUsage, Name,
    RsassaPssParams, SubjectPublicKeyInfo, TbsCertificate, Validity, Version,
};

/// The longest validity certassert issues, in days (100 years).
const MAX_DAYS: u32 = 36_500;

/// Create a self-signed end-entity certificate for `signer`'s key: random positive
/// 128-bit serial, valid from one minute before `now` for `days` days, CA:false, keyUsage
/// digitalSignature, SKI and AKI. The TBSCertificate is signed through the Signer.
///
/// # Errors
/// [`Error::Subject`], [`Error::Days`] (outside 1–36500), or the backend failing to sign
/// ([`Error::Sign`]).
pub fn create_self_signed(
    signer: &dyn Signer,
    alg: Algorithm,
    subject: &str,
    days: u32,
    now: i64,
) -> Result<Certificate, Error> {
    check_days(days)?;
    let name = parse_subject(subject)?;
    let ski = key_identifier(signer.public_key_der());
    let mut key_usage = KeyUsage::new(1);
    key_usage.set_digital_signature(true);
    issue(&Issue {
        signer,
        alg,
        issuer: name.clone(),
        subject: name,
        spki: signer_spki(signer)?,
        extensions: vec![
            Extension::new_basic_constraints(false, None),
            Extension::new_key_usage(key_usage),
            Extension::new_subject_key_identifier(ski.clone()),
            Extension::new_authority_key_identifier(KeyIdentifier::from(ski), None, None),
        ],
        days,
        now,
    })
}

/// Create a PKCS#10 certificate signing request (DER) for `signer`'s key, signed through it.
///
/// # Errors
/// [`Error::Subject`], or the backend failing to sign ([`Error::Sign`]).
pub fn create_csr(signer: &dyn Signer, alg: Algorithm, subject: &str) -> Result<Vec<u8>, Error> {
    use picky_asn1_x509::{CertificationRequest, CertificationRequestInfo};
    let info = CertificationRequestInfo {
        version: 0,
        subject: parse_subject(subject)?,
        subject_public_key_info: signer_spki(signer)?,
        attributes: picky_asn1_x509::certification_request::OpenSslAttributes(Default::default()),
    };
    let signed = sign(signer, alg, "certificate request", &info)?;
    encode(
        "certificate request",
        &CertificationRequest {
            certification_request_info: info,
            signature_algorithm: signed.algorithm,
            signature: signed.signature,
        },
    )
}

/// Everything that varies between the certificates certassert issues (also the
/// emulator's loopback TLS certificates, `emulator::tls`).
pub(crate) struct Issue<'a> {
    /// The issuer's key (the subject's own for a self-signed certificate).
    pub(crate) signer: &'a dyn Signer,
    /// The signature algorithm.
    pub(crate) alg: Algorithm,
    /// The issuer's name (the subject's for a self-signed certificate).
    pub(crate) issuer: Name,
    /// The subject's name.
    pub(crate) subject: Name,
    /// The subject's public key.
    pub(crate) spki: SubjectPublicKeyInfo,
    /// The v3 extensions.
    pub(crate) extensions: Vec<Extension>,
    /// Days of validity after `now`.
    pub(crate) days: u32,
    /// The issuing time (Unix seconds).
    pub(crate) now: i64,
}

/// Issue a v3 certificate: random positive 128-bit serial, valid from one minute before
/// `now` (clock skew) for `days` days, signed through the issuer's Signer.
pub(crate) fn issue(what: &Issue<'_>) -> Result<Certificate, Error> {
    let mut serial: [u8; 16] = random();
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and 16 significant bytes
    let tbs = TbsCertificate {
        version: ExplicitContextTag0(Version::V3),
        serial_number: IntegerAsn1::from_bytes_be_unsigned(serial.to_vec()),
        signature: signature_algorithm(what.alg),
        issuer: what.issuer.clone(),
        validity: Validity {
            not_before: asn1_time(what.now - 60)?,
            not_after: asn1_time(what.now + i64::from(what.days) * 86_400)?,
        },
        subject: what.subject.clone(),
        subject_public_key_info: what.spki.clone(),
        extensions: ExplicitContextTag3(Extensions(what.extensions.clone())),
    };
    let signed = sign(what.signer, what.alg, "certificate", &tbs)?;
    let cert = picky_asn1_x509::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signed.algorithm,
        signature_value: signed.signature,
    };
    Certificate::from_der(encode("certificate", &cert)?)
}

/// A signature over an encoded to-be-signed structure, with the algorithm that made it.
struct Signed {
    algorithm: AlgorithmIdentifier,
    signature: BitStringAsn1,
}

/// The one signing step: DER-encode `body` and have `signer` sign exactly those bytes.
fn sign<T: serde::Serialize>(
    signer: &dyn Signer,
    alg: Algorithm,
    what: &'static str,
    body: &T,
) -> Result<Signed, Error> {
    let tbs_der = encode(what, body)?;
    let signature = signer
        .sign(alg, &tbs_der)
        .map_err(|source| Error::Sign { what, source })?;
    Ok(Signed {
        algorithm: signature_algorithm(alg),
        signature: BitStringAsn1::from(BitString::with_bytes(signature)),
    })
}

pub(crate) fn check_days(days: u32) -> Result<(), Error> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(Error::Days(days))
    }
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

pub(crate) fn signer_spki(signer: &dyn Signer) -> Result<SubjectPublicKeyInfo, Error> {
    picky_asn1_der::from_bytes(signer.public_key_der()).map_err(|e| Error::Encode {
        what: "public key",
        detail: e.to_string(),
    })
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents (the
/// whole SPKI if it cannot be read, which a working Signer never returns).
pub(crate) fn key_identifier(spki_der: &[u8]) -> Vec<u8> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der);
    let bits = spki
        .as_ref()
        .map_or(spki_der, |s| s.subject_public_key.raw_bytes());
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
