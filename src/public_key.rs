//! Public keys and the encodings around them, as typed structures: an RSA public key read
//! from or written as SubjectPublicKeyInfo DER (RustCrypto `spki` and `pkcs1`), the key
//! algorithm an SPKI names (for "holds an EC key" messages), the SPKI exactly as encoded
//! in a certificate, and PEM text ([`pem`], on `pem-rfc7468`). Every backend, the
//! certificate code and the key-file loader read keys through here, so malformed input is
//! one typed [`Error`] and never a panic. Nothing here holds private key material except
//! the PEM bodies [`pem::parse`] decodes, which are zeroized on drop.

use der::asn1::{BitStringRef, ObjectIdentifier, UintRef};
use der::{Decode as _, Encode as _, Reader as _, SliceReader, Tag, TagNumber};
use spki::SubjectPublicKeyInfoRef;
use std::fmt;

/// Why a public key or certificate could not be read or encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not the DER structure expected (`what` names it).
    #[error("malformed {what}: {source}")]
    Malformed {
        /// The structure being read, e.g. "SubjectPublicKeyInfo".
        what: &'static str,
        /// The DER decoder's account of what was wrong.
        source: der::Error,
    },
    /// The SPKI holds a key of another algorithm.
    #[error("the public key is an {0} key, not RSA")]
    NotRsa(KeyAlgorithm),
    /// A modulus or exponent that is zero or empty.
    #[error("the RSA {0} is zero")]
    ZeroInteger(&'static str),
}

impl Error {
    fn malformed(what: &'static str) -> impl FnOnce(der::Error) -> Self {
        move |source| Self::Malformed { what, source }
    }
}

/// The algorithm of a public or private key, as its AlgorithmIdentifier OID names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// rsaEncryption (1.2.840.113549.1.1.1).
    Rsa,
    /// id-RSASSA-PSS (1.2.840.113549.1.1.10): an RSA key restricted to PSS.
    RsaPss,
    /// id-ecPublicKey (1.2.840.10045.2.1).
    Ec,
    /// Ed25519 (1.3.101.112).
    Ed25519,
    /// Ed448 (1.3.101.113).
    Ed448,
    /// Any other algorithm, by its dotted OID.
    Other(String),
}

const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

impl KeyAlgorithm {
    /// The algorithm an AlgorithmIdentifier OID names.
    pub(crate) fn from_oid(oid: &ObjectIdentifier) -> Self {
        match *oid {
            pkcs1::ALGORITHM_OID => Self::Rsa,
            OID_RSA_PSS => Self::RsaPss,
            OID_EC => Self::Ec,
            OID_ED25519 => Self::Ed25519,
            OID_ED448 => Self::Ed448,
            ref other => Self::Other(other.to_string()),
        }
    }

    /// The algorithm of a SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// The bytes are not a SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Result<Self, Error> {
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
            .map_err(Error::malformed("SubjectPublicKeyInfo"))?;
        Ok(Self::from_oid(&spki.algorithm.oid))
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa => f.write_str("RSA"),
            Self::RsaPss => f.write_str("RSASSA-PSS-only RSA"),
            Self::Ec => f.write_str("EC"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Ed448 => f.write_str("Ed448"),
            Self::Other(oid) => write!(f, "unknown (OID {oid})"),
        }
    }
}

/// An RSA public key: modulus and public exponent as unsigned big-endian bytes without
/// leading zeros (the form aws-lc-rs, PKCS#11 `CKA_MODULUS` and the TPM use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl RsaPublicKey {
    /// A key from its modulus and exponent (leading zero bytes are ignored).
    ///
    /// # Errors
    /// [`Error::ZeroInteger`] when either number is zero or empty.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Result<Self, Error> {
        let unsigned = |what, bytes: &[u8]| {
            let trimmed = strip_leading_zeros(bytes);
            if trimmed.is_empty() {
                Err(Error::ZeroInteger(what))
            } else {
                Ok(trimmed.to_vec())
            }
        };
        Ok(Self {
            modulus: unsigned("modulus", modulus)?,
            exponent: unsigned("exponent", exponent)?,
        })
    }

    /// The RSA key inside a SubjectPublicKeyInfo (rsaEncryption).
    ///
    /// # Errors
    /// [`Error::Malformed`] for bytes that are not an SPKI or an RSAPublicKey inside one,
    /// [`Error::NotRsa`] for a key of another algorithm.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, Error> {
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
            .map_err(Error::malformed("SubjectPublicKeyInfo"))?;
        if spki.algorithm.oid != pkcs1::ALGORITHM_OID {
            return Err(Error::NotRsa(KeyAlgorithm::from_oid(&spki.algorithm.oid)));
        }
        let bits = spki.subject_public_key.as_bytes().ok_or(Error::Malformed {
            what: "RSA public key",
            source: der::Tag::BitString.value_error().into(),
        })?;
        let key =
            pkcs1::RsaPublicKey::from_der(bits).map_err(Error::malformed("RSA public key"))?;
        Self::new(key.modulus.as_bytes(), key.public_exponent.as_bytes())
    }

    /// The modulus, unsigned big-endian without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// The public exponent, unsigned big-endian without leading zeros.
    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// The modulus size in bits (2048 for an RSA-2048 key).
    pub fn bits(&self) -> usize {
        unsigned_bits(&self.modulus)
    }

    /// The SubjectPublicKeyInfo DER (rsaEncryption with NULL parameters, as RFC 3279 and
    /// every certificate authority write it).
    ///
    /// # Errors
    /// Only if the numbers are too long for DER lengths (beyond any real key).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Error> {
        let key = pkcs1::RsaPublicKey {
            modulus: UintRef::new(&self.modulus).map_err(Error::malformed("RSA public key"))?,
            public_exponent: UintRef::new(&self.exponent)
                .map_err(Error::malformed("RSA public key"))?,
        }
        .to_der()
        .map_err(Error::malformed("RSA public key"))?;
        SubjectPublicKeyInfoRef {
            algorithm: pkcs1::ALGORITHM_ID,
            subject_public_key: BitStringRef::from_bytes(&key)
                .map_err(Error::malformed("SubjectPublicKeyInfo"))?,
        }
        .to_der()
        .map_err(Error::malformed("SubjectPublicKeyInfo"))
    }
}

/// Whether two SubjectPublicKeyInfos carry the same RSA key (same modulus and exponent,
/// however the parameters were encoded). `false` when either is not an RSA SPKI.
pub fn same_rsa_key(a_spki_der: &[u8], b_spki_der: &[u8]) -> bool {
    match (
        RsaPublicKey::from_spki_der(a_spki_der),
        RsaPublicKey::from_spki_der(b_spki_der),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The SubjectPublicKeyInfo of a DER certificate, exactly as encoded there (the bytes a
/// key identifier or a pin is computed over).
///
/// # Errors
/// [`Error::Malformed`] when the bytes are not a certificate whose TBSCertificate holds a
/// SubjectPublicKeyInfo in its place.
pub fn certificate_spki(cert_der: &[u8]) -> Result<&[u8], Error> {
    let malformed = Error::malformed("certificate");
    let read = |cert_der| -> der::Result<&[u8]> {
        let mut reader = SliceReader::new(cert_der)?;
        let spki = reader.sequence(|certificate| {
            let spki = certificate.sequence(|tbs| {
                // version [0] EXPLICIT is optional (absent means v1)
                if Tag::peek(tbs)?
                    == (Tag::ContextSpecific {
                        constructed: true,
                        number: TagNumber(0),
                    })
                {
                    tbs.tlv_bytes()?;
                }
                // serialNumber, signature, issuer, validity, subject
                for _ in 0..5 {
                    tbs.tlv_bytes()?;
                }
                let spki = tbs.tlv_bytes()?;
                tbs.drain(tbs.remaining_len())?;
                Ok::<_, der::Error>(spki)
            })?;
            certificate.drain(certificate.remaining_len())?;
            Ok::<_, der::Error>(spki)
        })?;
        reader.finish()?;
        SubjectPublicKeyInfoRef::from_der(spki)?;
        Ok(spki)
    };
    read(cert_der).map_err(malformed)
}

/// The fields of a DER certificate that a PKCS#11 certificate object repeats as
/// attributes (`CKA_SERIAL_NUMBER`, `CKA_ISSUER`, `CKA_SUBJECT`), each the whole DER
/// element exactly as encoded in the certificate (tag and length included), plus its
/// SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateFields<'a> {
    /// serialNumber: the INTEGER element.
    pub serial: &'a [u8],
    /// issuer: the Name (a SEQUENCE) element.
    pub issuer: &'a [u8],
    /// subject: the Name (a SEQUENCE) element.
    pub subject: &'a [u8],
    /// subjectPublicKeyInfo: the SEQUENCE element.
    pub spki: &'a [u8],
}

/// The serial number, issuer, subject and SubjectPublicKeyInfo of a DER certificate,
/// exactly as encoded there.
///
/// # Errors
/// [`Error::Malformed`] when the bytes are not a certificate whose TBSCertificate holds
/// those fields in their places with their types (INTEGER, Name, Name,
/// SubjectPublicKeyInfo).
pub fn certificate_fields(cert_der: &[u8]) -> Result<CertificateFields<'_>, Error> {
    // The element at the reader's position, checked to carry `tag`, as raw bytes.
    fn element<'a>(reader: &mut SliceReader<'a>, tag: Tag) -> der::Result<&'a [u8]> {
        Tag::peek(reader)?.assert_eq(tag)?;
        reader.tlv_bytes()
    }
    let read = |cert_der| -> der::Result<CertificateFields<'_>> {
        let mut reader = SliceReader::new(cert_der)?;
        let fields = reader.sequence(|certificate| {
            let fields = certificate.sequence(|tbs| {
                // version [0] EXPLICIT is optional (absent means v1)
                if Tag::peek(tbs)?
                    == (Tag::ContextSpecific {
                        constructed: true,
                        number: TagNumber(0),
                    })
                {
                    tbs.tlv_bytes()?;
                }
                let serial = element(tbs, Tag::Integer)?;
                let _signature = element(tbs, Tag::Sequence)?;
                let issuer = element(tbs, Tag::Sequence)?;
                let _validity = element(tbs, Tag::Sequence)?;
                let subject = element(tbs, Tag::Sequence)?;
                let spki = element(tbs, Tag::Sequence)?;
                tbs.drain(tbs.remaining_len())?;
                Ok::<_, der::Error>(CertificateFields {
                    serial,
                    issuer,
                    subject,
                    spki,
                })
            })?;
            certificate.drain(certificate.remaining_len())?;
            Ok::<_, der::Error>(fields)
        })?;
        reader.finish()?;
        SubjectPublicKeyInfoRef::from_der(fields.spki)?;
        Ok(fields)
    };
    read(cert_der).map_err(Error::malformed("certificate"))
}

/// The significant bits of an unsigned big-endian integer (leading zero bytes ignored).
pub fn unsigned_bits(value: &[u8]) -> usize {
    let trimmed = strip_leading_zeros(value);
    match trimmed.first() {
        None => 0,
        Some(b) => (trimmed.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

fn strip_leading_zeros(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    &value[start..]
}

/// PEM text (RFC 7468): reading every block of a file — certificates and keys side by side,
/// text between them, as OpenSSL writes them — and writing one. Each block is decoded by
/// `pem-rfc7468`; this module only finds where blocks begin and end and sets aside
/// RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`), so that a legacy encrypted key can be
/// recognised and refused with advice.
pub mod pem {
    use std::fmt;
    use zeroize::Zeroizing;

    /// One PEM block.
    #[derive(Debug)]
    pub struct Block {
        /// The label between `BEGIN ` and `-----`, e.g. `PRIVATE KEY`.
        pub label: String,
        /// RFC 1421 header lines such as `Proc-Type: 4,ENCRYPTED` (RFC 7468 has none).
        pub headers: Vec<String>,
        /// The decoded body (zeroized on drop: key files pass through here).
        pub der: Zeroizing<Vec<u8>>,
    }

    impl Block {
        /// Whether an RFC 1421 header marks the body as encrypted (legacy OpenSSL keys).
        pub fn is_legacy_encrypted(&self) -> bool {
            // RFC 1421 §4.6.1.1: "Proc-Type: 4,ENCRYPTED".
            self.headers.iter().any(|h| {
                h.split_once(':').is_some_and(|(name, value)| {
                    name.trim() == "Proc-Type"
                        && value.split(',').nth(1).map(str::trim) == Some("ENCRYPTED")
                })
            })
        }
    }

    /// Why PEM text could not be read.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[non_exhaustive]
    pub enum Error {
        /// The text is not UTF-8.
        #[error("PEM text is not valid UTF-8")]
        NotUtf8,
        /// A block has no matching END line.
        #[error("PEM block \"{label}\" has no \"-----END {label}-----\" line")]
        Unterminated {
            /// The block's label.
            label: String,
        },
        /// A block's body is not base64 (or its boundaries are malformed).
        #[error("PEM block \"{label}\" {}", describe(cause))]
        Body {
            /// The block's label.
            label: String,
            /// What `pem-rfc7468` found wrong (kept out of the message: its text reads
            /// "PEM … error: …", and a CLI prints one `error:` line).
            cause: pem_rfc7468::Error,
        },
    }

    fn describe(cause: &pem_rfc7468::Error) -> &'static str {
        use pem_rfc7468::Error as E;
        match cause {
            E::Label => "has an invalid label",
            E::PreEncapsulationBoundary | E::PostEncapsulationBoundary => {
                "has a malformed BEGIN or END line"
            }
            _ => "is not valid base64",
        }
    }

    /// Whether `data` looks like PEM text rather than DER.
    pub fn is_pem(data: &[u8]) -> bool {
        let start = data
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(data.len());
        data[start..].starts_with(b"-----BEGIN ") || data.windows(12).any(|w| w == b"\n-----BEGIN ")
    }

    /// All blocks in PEM text, in order; text outside blocks is ignored.
    ///
    /// # Errors
    /// [`Error`] naming the first block that cannot be read.
    pub fn parse(data: &[u8]) -> Result<Vec<Block>, Error> {
        let text = std::str::from_utf8(data).map_err(|_| Error::NotUtf8)?;
        let mut blocks = Vec::new();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            let Some(label) = line
                .strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
            else {
                continue;
            };
            let end = format!("-----END {label}-----");
            let mut headers = Vec::new();
            // The block again, headers and blank lines left out, for pem-rfc7468.
            let mut block = Zeroizing::new(format!("{line}\n"));
            let mut closed = false;
            for line in lines.by_ref() {
                if line == end {
                    closed = true;
                    break;
                }
                if line.contains(':') {
                    headers.push(line.to_string());
                } else if !line.is_empty() {
                    block.push_str(line);
                    block.push('\n');
                }
            }
            if !closed {
                return Err(Error::Unterminated {
                    label: label.to_string(),
                });
            }
            block.push_str(&end);
            block.push('\n');
            let body = |cause| Error::Body {
                label: label.to_string(),
                cause,
            };
            let mut decoder =
                pem_rfc7468::Decoder::new_detect_wrap(block.as_bytes()).map_err(body)?;
            let mut der = Zeroizing::new(Vec::new());
            decoder.decode_to_end(&mut der).map_err(body)?;
            blocks.push(Block {
                label: label.to_string(),
                headers,
                der,
            });
        }
        Ok(blocks)
    }

    /// DER as PEM text: 64-column base64 lines, `\n` line endings.
    pub fn encode(label: &str, der: &[u8]) -> String {
        pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
            .unwrap_or_else(|_| fallback(label, der))
    }

    /// Only reached for a label RFC 7468 does not allow (never one certassert writes):
    /// the same layout, written by hand.
    fn fallback(label: &str, der: &[u8]) -> String {
        struct Lines<'a>(&'a str);
        impl fmt::Display for Lines<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for chunk in self.0.as_bytes().chunks(64) {
                    writeln!(f, "{}", String::from_utf8_lossy(chunk))?;
                }
                Ok(())
            }
        }
        let body = crate::encoding::b64(der);
        format!(
            "-----BEGIN {label}-----\n{}-----END {label}-----\n",
            Lines(&body)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit RSA SPKI made by aws-lc-rs (not by this module).
    fn rsa_spki() -> (Vec<u8>, Vec<u8>) {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let spki = key.public_key().as_der().unwrap().as_ref().to_vec();
        let pkcs8 = key.as_der().unwrap().as_ref().to_vec();
        (spki, pkcs8)
    }

    #[test]
    fn rsa_spki_round_trips() {
        let (spki, _) = rsa_spki();
        let key = RsaPublicKey::from_spki_der(&spki).unwrap();
        assert_eq!(key.bits(), 2048);
        assert_eq!(key.exponent(), [1, 0, 1]);
        assert_eq!(key.modulus().len(), 256);
        assert_eq!(key.to_spki_der().unwrap(), spki);
        let again = RsaPublicKey::new(&[&[0, 0][..], key.modulus()].concat(), &[0, 1, 0, 1]);
        assert_eq!(again.unwrap(), key);
        assert_eq!(KeyAlgorithm::of_spki(&spki).unwrap(), KeyAlgorithm::Rsa);
    }

    #[test]
    fn same_key_ignores_parameter_encoding() {
        let (spki, _) = rsa_spki();
        let key = RsaPublicKey::from_spki_der(&spki).unwrap();
        // The same key with the AlgorithmIdentifier's NULL left out (some tokens write that).
        let pk = pkcs1::RsaPublicKey {
            modulus: UintRef::new(key.modulus()).unwrap(),
            public_exponent: UintRef::new(key.exponent()).unwrap(),
        }
        .to_der()
        .unwrap();
        let no_null = SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: pkcs1::ALGORITHM_OID,
                parameters: None,
            },
            subject_public_key: BitStringRef::from_bytes(&pk).unwrap(),
        }
        .to_der()
        .unwrap();
        assert_ne!(no_null, spki);
        assert!(same_rsa_key(&spki, &no_null));
        let (other, _) = rsa_spki();
        assert!(!same_rsa_key(&spki, &other));
        assert!(!same_rsa_key(&spki, b"\x30\x00"));
    }

    #[test]
    fn other_algorithms_are_named() {
        // Ed25519 SPKI (RFC 8410 §10.1) and a P-256 SPKI header with a dummy point.
        let ed25519 = [
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ][..],
            &[7u8; 32],
        ]
        .concat();
        assert_eq!(
            KeyAlgorithm::of_spki(&ed25519).unwrap(),
            KeyAlgorithm::Ed25519
        );
        let e = RsaPublicKey::from_spki_der(&ed25519).unwrap_err();
        assert!(matches!(e, Error::NotRsa(KeyAlgorithm::Ed25519)), "{e:?}");
        assert_eq!(e.to_string(), "the public key is an Ed25519 key, not RSA");
        let odd = SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: ObjectIdentifier::new_unwrap("1.2.3.4"),
                parameters: None,
            },
            subject_public_key: BitStringRef::from_bytes(&[1, 2]).unwrap(),
        }
        .to_der()
        .unwrap();
        assert_eq!(
            KeyAlgorithm::of_spki(&odd).unwrap().to_string(),
            "unknown (OID 1.2.3.4)"
        );
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let (spki, pkcs8) = rsa_spki();
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x30],
            vec![0x30, 0x80],
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            vec![0x30, 0x03, 0x02, 0x01, 0x00],
            vec![0x04, 0x02, 0xaa],
            vec![0xff; 40],
            pkcs8,
        ];
        // Every truncation and a flipped byte at every offset of a real SPKI.
        inputs.extend((0..spki.len()).map(|n| spki[..n].to_vec()));
        inputs.extend((0..spki.len()).map(|i| {
            let mut v = spki.clone();
            v[i] ^= 0x80;
            v
        }));
        for input in &inputs {
            let _ = RsaPublicKey::from_spki_der(input);
            let _ = KeyAlgorithm::of_spki(input);
            let _ = certificate_spki(input);
            let _ = certificate_fields(input);
            let _ = same_rsa_key(input, &spki);
            let _ = pem::parse(input);
        }
        assert!(RsaPublicKey::from_spki_der(&spki[..spki.len() - 1]).is_err());
        assert!(matches!(
            RsaPublicKey::new(&[0, 0], &[1]),
            Err(Error::ZeroInteger("modulus"))
        ));
        assert!(
            certificate_spki(&spki).is_err(),
            "an SPKI is not a certificate"
        );
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bits(&[0x01, 0x00]), 9);
        assert_eq!(unsigned_bits(&[]), 0);
    }

    #[test]
    fn certificate_fields_are_the_encoded_elements() {
        let (spki, pkcs8) = rsa_spki();
        let signer = crate::signer::SoftwareSigner::from_pkcs8_der(&pkcs8).unwrap();
        let cert = crate::cert::create_self_signed(
            &signer,
            crate::signer::Algorithm::Rs256,
            "CN=fields test",
            1,
            1_700_000_000,
        )
        .unwrap();
        let der = cert.der();
        let fields = certificate_fields(der).unwrap();
        assert_eq!(fields.spki, &spki[..]);
        assert_eq!(fields.spki, certificate_spki(der).unwrap());
        assert_eq!(fields.issuer, fields.subject, "self-signed");
        assert_eq!(fields.serial[0], 0x02, "an INTEGER element");
        assert_eq!(fields.subject[0], 0x30, "a Name SEQUENCE");
        assert!(fields.subject.windows(11).any(|w| w == b"fields test"));
        // Each field is a slice of the certificate, in order.
        let offset = |field: &[u8]| field.as_ptr() as usize - der.as_ptr() as usize;
        assert!(offset(fields.serial) < offset(fields.issuer));
        assert!(offset(fields.issuer) < offset(fields.subject));
        assert!(offset(fields.subject) < offset(fields.spki));
        // Truncated or with trailing bytes: malformed.
        assert!(certificate_fields(&der[..der.len() - 1]).is_err());
        assert!(certificate_fields(&[der, &[0][..]].concat()).is_err());
        for i in 0..40 {
            let mut v = der.to_vec();
            v[i] ^= 0x80;
            let _ = certificate_fields(&v);
        }
    }

    #[test]
    fn pem_blocks_with_headers_and_text_around() {
        let text = format!(
            "Bag Attributes\n    localKeyID: 01\n{}junk\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAEC\n-----END RSA PRIVATE KEY-----\n",
            pem::encode("CERTIFICATE", &[1, 2, 3])
        );
        assert!(pem::is_pem(text.as_bytes()));
        let blocks = pem::parse(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(&blocks[0].der[..], &[1, 2, 3]);
        assert!(!blocks[0].is_legacy_encrypted());
        assert_eq!(
            blocks[1].headers,
            vec!["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,00"]
        );
        assert!(blocks[1].is_legacy_encrypted());
        assert_eq!(&blocks[1].der[..], &[0, 1, 2]);
    }

    #[test]
    fn pem_widths_line_endings_and_errors() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem::encode("CERTIFICATE", &der);
        assert!(pem.lines().nth(1).unwrap().len() == 64);
        // 76 columns (MIME) and CRLF line endings read the same.
        let b64 = crate::encoding::b64(&der);
        let wide: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let crlf = format!(
            "-----BEGIN CERTIFICATE-----\r\n{}\r\n-----END CERTIFICATE-----\r\n",
            wide.join("\r\n")
        );
        assert_eq!(&pem::parse(crlf.as_bytes()).unwrap()[0].der[..], &der[..]);
        assert_eq!(
            pem::parse(b"-----BEGIN X-----\nAAAA\n").unwrap_err(),
            pem::Error::Unterminated { label: "X".into() }
        );
        let e = pem::parse(b"-----BEGIN X-----\n!!!!\n-----END X-----\n").unwrap_err();
        assert!(matches!(e, pem::Error::Body { .. }), "{e:?}");
        assert!(e.to_string().contains("not valid base64"), "{e}");
        assert!(!pem::is_pem(&[0x30, 0x82]));
        assert!(pem::parse(b"no blocks here").unwrap().is_empty());
    }
}
