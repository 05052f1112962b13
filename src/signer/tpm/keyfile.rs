//! `-----BEGIN TSS2 PRIVATE KEY-----` files, the format of tpm2-openssl and
//! openssl_tpm2_engine (and of `tpm2tss-genkey`):
//!
//! ```text
//! TPMKey ::= SEQUENCE {
//!     type        OBJECT IDENTIFIER,      -- 2.23.133.10.1.3 (loadable key)
//!     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
//!     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
//!     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
//!     authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
//!     parent      INTEGER,                -- 0x40000001: the standard storage primary
//!     pubkey      OCTET STRING,           -- TPM2B_PUBLIC
//!     privkey     OCTET STRING }          -- TPM2B_PRIVATE
//! ```
//!
//! The private blob is wrapped by the TPM's parent key, so the file is not secret in the
//! way a software key is, but it is still written 0600.
//!
//! The structure is read and written with the `der` crate's typed API (a `Sequence` with
//! hand-written `DecodeValue`/`EncodeValue`), its PEM through [`crate::public_key::pem`];
//! a file that is not a loadable key is a [`KeyFileError`] saying what it is instead.
//! What this module writes is DER; what it reads may be BER where writers are (tpm2-openssl
//! writes `emptyAuth` TRUE as 0x01).

use crate::public_key::pem;
use der::asn1::{AnyRef, ContextSpecific, IntRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{
    Decode as _, DecodeValue, Encode, EncodeValue, Header, Length, Reader, Sequence, Tag, TagMode,
    TagNumber, Tagged as _, Writer,
};

/// `2.23.133.10.1.3`: a loadable key.
pub const OID_LOADABLE_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.10.1.3");
/// `2.23.133.10.1.4` (importable key): not loadable without TPM2_Import.
const OID_IMPORTABLE_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.10.1.4");
/// `2.23.133.10.1.5` (sealed data).
const OID_SEALED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.10.1.5");
/// The PEM label.
pub const PEM_LABEL: &str = "TSS2 PRIVATE KEY";
/// TPM_RH_OWNER: "the standard storage primary under the owner hierarchy".
pub const RH_OWNER: u32 = 0x4000_0001;

/// Why a file is not a TSS2 key certassert can load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The PEM text cannot be read.
    #[error(transparent)]
    Pem(#[from] pem::Error),
    /// The PEM text has no `TSS2 PRIVATE KEY` block.
    #[error(
        "no \"-----BEGIN {PEM_LABEL}-----\" block (found: {found}); make one with \
         certassert key generate --key tpm:key=PATH or openssl genpkey -provider tpm2 -algorithm RSA"
    )]
    NoBlock {
        /// The labels of the blocks found, comma-separated, or "nothing".
        found: String,
    },
    /// The bytes are not the DER `TPMKey` structure.
    #[error("not a TSS2 private key: {0}")]
    Malformed(#[from] der::Error),
    /// The type OID is one this module does not know.
    #[error("not a TSS2 private key: the type OID {0} is not 2.23.133.10.1.3 (loadable key)")]
    OtherType(ObjectIdentifier),
    /// An importable key (2.23.133.10.1.4): it needs TPM2_Import first.
    #[error("this TSS2 key is an importable key (OID 2.23.133.10.1.4); load it once with its tool to make a loadable key")]
    Importable,
    /// Sealed data (2.23.133.10.1.5), not a key.
    #[error("this TSS2 file holds sealed data, not a key")]
    SealedData,
    /// The key carries a policy (`[1] policy` or `[3] authPolicy`).
    #[error("this TSS2 key is bound to a TPM policy, which certassert does not satisfy; use a key with a password (auth-source=) or none")]
    Policy,
    /// The key carries an encrypted secret (`[2] secret`).
    #[error("this TSS2 key carries an encrypted secret (its [2] secret field), which certassert does not support")]
    Secret,
    /// A context-specific field the format does not define.
    #[error("not a TSS2 private key: unknown tagged field [{0}]")]
    UnknownField(u32),
    /// The parent INTEGER does not fit a 32-bit TPM handle.
    #[error("not a TSS2 private key: parent out of range")]
    ParentOutOfRange,
    /// `pubkey` or `privkey` is not a TPM2B (a 2-byte size, then that many bytes).
    #[error("not a TSS2 private key: {0} is not a sized TPM2B structure")]
    NotTpm2b(&'static str),
}

/// The fields of a loadable TSS2 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TssKey {
    /// The key has no password (authValue is empty).
    pub empty_auth: bool,
    /// `0x40000001` (standard primary) or a persistent parent handle.
    pub parent: u32,
    /// Marshalled TPM2B_PUBLIC (with its 2-byte size).
    pub public: Vec<u8>,
    /// Marshalled TPM2B_PRIVATE (with its 2-byte size).
    pub private: Vec<u8>,
}

impl TssKey {
    /// Read a PEM file's text (or DER).
    ///
    /// # Errors
    /// [`KeyFileError`]: what the file holds instead, or which field is malformed or
    /// unsupported.
    pub fn from_file_bytes(data: &[u8]) -> Result<Self, KeyFileError> {
        if !pem::is_pem(data) {
            return Self::from_der(data);
        }
        let blocks = pem::parse(data)?;
        let block = blocks
            .iter()
            .find(|b| b.label == PEM_LABEL)
            .ok_or_else(|| {
                let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
                KeyFileError::NoBlock {
                    found: if labels.is_empty() {
                        "nothing".to_string()
                    } else {
                        labels.join(", ")
                    },
                }
            })?;
        Self::from_der(&block.der)
    }

    /// Decode the DER `TPMKey` structure.
    ///
    /// # Errors
    /// [`KeyFileError`] naming the malformed or unsupported field.
    pub fn from_der(data: &[u8]) -> Result<Self, KeyFileError> {
        let key = TpmKeyDer::from_der(data)?;
        for (what, blob) in [("pubkey", key.public), ("privkey", key.private)] {
            let declared = blob
                .get(..2)
                .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])));
            if declared != Some(blob.len().saturating_sub(2)) || blob.len() <= 2 {
                return Err(KeyFileError::NotTpm2b(what));
            }
        }
        Ok(Self {
            empty_auth: key.empty_auth,
            parent: key.parent,
            public: key.public.to_vec(),
            private: key.private.to_vec(),
        })
    }

    /// Encode as DER.
    pub fn to_der(&self) -> Vec<u8> {
        TpmKeyDer {
            empty_auth: self.empty_auth,
            parent: self.parent,
            public: &self.public,
            private: &self.private,
        }
        .to_der()
        // Only lengths beyond 256 MiB fail to encode; TPM2B blobs are under 64 KiB.
        .expect("a TSS2 key always encodes")
    }

    /// Encode as a `TSS2 PRIVATE KEY` PEM block.
    pub fn to_pem(&self) -> String {
        pem::encode(PEM_LABEL, &self.to_der())
    }

    /// The TPM2B_PUBLIC contents (TPMT_PUBLIC), without the size.
    pub fn public_area(&self) -> &[u8] {
        &self.public[2..]
    }

    /// The TPM2B_PRIVATE contents, without the size.
    pub fn private_area(&self) -> &[u8] {
        &self.private[2..]
    }
}

/// The `TPMKey` SEQUENCE of a loadable key, borrowing its byte strings: the type OID is
/// always 2.23.133.10.1.3 (decoding refuses the others), `emptyAuth` is written only when
/// true, and policies and secrets are refused.
struct TpmKeyDer<'a> {
    empty_auth: bool,
    parent: u32,
    public: &'a [u8],
    private: &'a [u8],
}

const EMPTY_AUTH: TagNumber = TagNumber(0);

impl<'a> DecodeValue<'a> for TpmKeyDer<'a> {
    type Error = KeyFileError;

    fn decode_value<R: Reader<'a>>(reader: &mut R, _: Header) -> Result<Self, KeyFileError> {
        match ObjectIdentifier::decode(reader)? {
            OID_LOADABLE_KEY => {}
            OID_IMPORTABLE_KEY => return Err(KeyFileError::Importable),
            OID_SEALED_DATA => return Err(KeyFileError::SealedData),
            other => return Err(KeyFileError::OtherType(other)),
        }
        // BER's BOOLEAN, not DER's: tpm2-openssl writes TRUE as 0x01, not 0xFF.
        let empty_auth = match ContextSpecific::<AnyRef<'a>>::decode_explicit(reader, EMPTY_AUTH)? {
            None => false,
            Some(field) => {
                field.value.tag().assert_eq(Tag::Boolean)?;
                match field.value.value() {
                    [byte] => *byte != 0,
                    _ => return Err(der::Error::from(Tag::Boolean.length_error()).into()),
                }
            }
        };
        // [1] policy, [2] secret, [3] authPolicy: present means refused.
        if let Tag::ContextSpecific { number, .. } = Tag::peek(reader)? {
            return Err(match number.0 {
                1 | 3 => KeyFileError::Policy,
                2 => KeyFileError::Secret,
                n => KeyFileError::UnknownField(n),
            });
        }
        let parent = IntRef::decode(reader)?;
        let parent = parent_handle(parent.as_bytes()).ok_or(KeyFileError::ParentOutOfRange)?;
        let public = <&OctetStringRef>::decode(reader)?.as_bytes();
        let private = <&OctetStringRef>::decode(reader)?.as_bytes();
        Ok(Self {
            empty_auth,
            parent,
            public,
            private,
        })
    }
}

impl EncodeValue for TpmKeyDer<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let parent = self.parent.to_be_bytes();
        [
            OID_LOADABLE_KEY.encoded_len()?,
            self.empty_auth_field().encoded_len()?,
            UintRef::new(&parent)?.encoded_len()?,
            OctetStringRef::new(self.public)?.encoded_len()?,
            OctetStringRef::new(self.private)?.encoded_len()?,
        ]
        .into_iter()
        .try_fold(Length::ZERO, |total, len| total + len)
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        let parent = self.parent.to_be_bytes();
        OID_LOADABLE_KEY.encode(writer)?;
        self.empty_auth_field().encode(writer)?;
        UintRef::new(&parent)?.encode(writer)?;
        OctetStringRef::new(self.public)?.encode(writer)?;
        OctetStringRef::new(self.private)?.encode(writer)
    }
}

impl TpmKeyDer<'_> {
    /// `emptyAuth [0] EXPLICIT BOOLEAN`, written only when true.
    fn empty_auth_field(&self) -> Option<ContextSpecific<bool>> {
        self.empty_auth.then_some(ContextSpecific {
            tag_number: EMPTY_AUTH,
            tag_mode: TagMode::Explicit,
            value: true,
        })
    }
}

impl<'a> Sequence<'a> for TpmKeyDer<'a> {}

/// A parent handle from its INTEGER bytes. Some writers encode 0x81000001 as a negative
/// 4-byte INTEGER (two's complement); take those as the unsigned 32-bit value too.
fn parent_handle(value: &[u8]) -> Option<u32> {
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let trimmed = &value[start..];
    if trimmed.len() > 4 {
        return None;
    }
    let v = trimmed
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    Some(if v == 0 { RH_OWNER } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TssKey {
        TssKey {
            empty_auth: true,
            parent: RH_OWNER,
            public: vec![0, 3, 1, 2, 3],
            private: vec![0, 2, 9, 9],
        }
    }

    /// `sample()` as tpm2-openssl writes it, byte for byte.
    const SAMPLE_DER: &[u8] = &[
        0x30, 0x20, // TPMKey SEQUENCE
        0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03, // type 2.23.133.10.1.3
        0xa0, 0x03, 0x01, 0x01, 0xff, // emptyAuth [0] TRUE
        0x02, 0x04, 0x40, 0x00, 0x00, 0x01, // parent 0x40000001
        0x04, 0x05, 0x00, 0x03, 0x01, 0x02, 0x03, // pubkey
        0x04, 0x04, 0x00, 0x02, 0x09, 0x09, // privkey
    ];

    /// A TPMKey SEQUENCE around `fields` (all short lengths).
    fn tpm_key(fields: &[&[u8]]) -> Vec<u8> {
        let body = fields.concat();
        [&[0x30, body.len() as u8][..], &body].concat()
    }

    const LOADABLE: &[u8] = &[0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03];
    const PARENT: &[u8] = &[0x02, 0x04, 0x40, 0x00, 0x00, 0x01];
    const PUBKEY: &[u8] = &[0x04, 0x05, 0x00, 0x03, 0x01, 0x02, 0x03];
    const PRIVKEY: &[u8] = &[0x04, 0x04, 0x00, 0x02, 0x09, 0x09];

    #[test]
    fn decode_then_encode_gives_the_same_bytes() {
        assert_eq!(sample().to_der(), SAMPLE_DER);
        assert_eq!(TssKey::from_der(SAMPLE_DER).unwrap(), sample());
        let persistent_parent = [0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01];
        for der in [
            SAMPLE_DER.to_vec(),
            // no emptyAuth: the key has a password
            tpm_key(&[LOADABLE, PARENT, PUBKEY, PRIVKEY]),
            // a persistent parent: 0x81000001 needs a sign-padding zero
            tpm_key(&[LOADABLE, &persistent_parent, PUBKEY, PRIVKEY]),
        ] {
            let key = TssKey::from_der(&der).unwrap();
            assert_eq!(key.to_der(), der, "{key:?}");
            assert_eq!(
                TssKey::from_file_bytes(key.to_pem().as_bytes()).unwrap(),
                key
            );
        }
        // tpm2-openssl writes emptyAuth TRUE as 0x01 (BER); read as true, written as DER.
        let ber_true = tpm_key(&[
            LOADABLE,
            &[0xa0, 0x03, 0x01, 0x01, 0x01],
            PARENT,
            PUBKEY,
            PRIVKEY,
        ]);
        assert_eq!(TssKey::from_der(&ber_true).unwrap(), sample());
        let explicit_false = tpm_key(&[
            LOADABLE,
            &[0xa0, 0x03, 0x01, 0x01, 0x00],
            PARENT,
            PUBKEY,
            PRIVKEY,
        ]);
        assert!(!TssKey::from_der(&explicit_false).unwrap().empty_auth);
        let long_bool = tpm_key(&[
            LOADABLE,
            &[0xa0, 0x04, 0x01, 0x02, 0x00, 0x01],
            PARENT,
            PUBKEY,
            PRIVKEY,
        ]);
        assert!(matches!(
            TssKey::from_der(&long_bool),
            Err(KeyFileError::Malformed(_))
        ));
        let not_bool = tpm_key(&[
            LOADABLE,
            &[0xa0, 0x03, 0x02, 0x01, 0x01],
            PARENT,
            PUBKEY,
            PRIVKEY,
        ]);
        assert!(matches!(
            TssKey::from_der(&not_bool),
            Err(KeyFileError::Malformed(_))
        ));
        let persistent =
            TssKey::from_der(&tpm_key(&[LOADABLE, &persistent_parent, PUBKEY, PRIVKEY])).unwrap();
        assert_eq!(
            (persistent.parent, persistent.empty_auth),
            (0x8100_0001, false)
        );
    }

    #[test]
    fn parent_forms() {
        // Some writers encode 0x81000001 as a negative INTEGER.
        let negative = tpm_key(&[LOADABLE, &[0x02, 0x04, 0x81, 0, 0, 1], PUBKEY, PRIVKEY]);
        assert_eq!(TssKey::from_der(&negative).unwrap().parent, 0x8100_0001);
        assert_eq!(parent_handle(&[0x81, 0, 0, 1]), Some(0x8100_0001));
        assert_eq!(parent_handle(&[0]), Some(RH_OWNER));
        assert_eq!(parent_handle(&[1, 0, 0, 0, 0]), None);
        let zero = tpm_key(&[LOADABLE, &[0x02, 0x01, 0x00], PUBKEY, PRIVKEY]);
        assert_eq!(TssKey::from_der(&zero).unwrap().parent, RH_OWNER);
        let wide = tpm_key(&[LOADABLE, &[0x02, 0x05, 0x01, 0, 0, 0, 0], PUBKEY, PRIVKEY]);
        assert!(matches!(
            TssKey::from_der(&wide),
            Err(KeyFileError::ParentOutOfRange)
        ));
    }

    #[test]
    fn refusals_say_why() {
        let e = TssKey::from_file_bytes(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(
            matches!(&e, KeyFileError::NoBlock { found } if found == "PRIVATE KEY"),
            "{e:?}"
        );
        assert!(e.to_string().contains("found: PRIVATE KEY"), "{e}");
        let oid = |last: u8| [0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, last];
        let typed = |last: u8| TssKey::from_der(&tpm_key(&[&oid(last), PARENT, PUBKEY, PRIVKEY]));
        assert!(matches!(typed(5), Err(KeyFileError::SealedData)));
        assert!(matches!(typed(4), Err(KeyFileError::Importable)));
        assert!(matches!(typed(9), Err(KeyFileError::OtherType(_))));
        let tagged =
            |field: &[u8]| TssKey::from_der(&tpm_key(&[LOADABLE, field, PARENT, PUBKEY, PRIVKEY]));
        assert!(matches!(
            tagged(&[0xa1, 0x02, 0x30, 0x00]),
            Err(KeyFileError::Policy)
        ));
        assert!(matches!(
            tagged(&[0xa2, 0x02, 0x04, 0x00]),
            Err(KeyFileError::Secret)
        ));
        assert!(matches!(
            tagged(&[0xa3, 0x02, 0x30, 0x00]),
            Err(KeyFileError::Policy)
        ));
        assert!(matches!(
            tagged(&[0xa5, 0x02, 0x05, 0x00]),
            Err(KeyFileError::UnknownField(5))
        ));
        // emptyAuth, then a policy
        let both = tpm_key(&[
            LOADABLE,
            &[0xa0, 0x03, 0x01, 0x01, 0xff],
            &[0xa1, 0x02, 0x30, 0x00],
            PARENT,
            PUBKEY,
            PRIVKEY,
        ]);
        assert!(matches!(TssKey::from_der(&both), Err(KeyFileError::Policy)));
        let broken = TssKey {
            private: vec![0, 9, 1],
            ..sample()
        };
        assert!(matches!(
            TssKey::from_der(&broken.to_der()),
            Err(KeyFileError::NotTpm2b("privkey"))
        ));
        let mut trailing = SAMPLE_DER.to_vec();
        trailing.push(0);
        assert!(matches!(
            TssKey::from_der(&trailing),
            Err(KeyFileError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x30],
            vec![0x30, 0x80],
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            vec![0xff; 40],
            b"-----BEGIN TSS2 PRIVATE KEY-----\n!!\n-----END TSS2 PRIVATE KEY-----\n".to_vec(),
            b"-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n".to_vec(),
        ];
        // Every truncation of the sample and a flipped bit at every offset.
        inputs.extend((0..SAMPLE_DER.len()).map(|n| SAMPLE_DER[..n].to_vec()));
        for bit in [0x01, 0x80] {
            inputs.extend((0..SAMPLE_DER.len()).map(|i| {
                let mut v = SAMPLE_DER.to_vec();
                v[i] ^= bit;
                v
            }));
        }
        for input in &inputs {
            if let Ok(key) = TssKey::from_file_bytes(input) {
                // What decodes encodes again, and decodes to the same key.
                assert_eq!(TssKey::from_der(&key.to_der()).unwrap(), key);
            }
        }
        for n in 0..SAMPLE_DER.len() {
            assert!(
                TssKey::from_der(&SAMPLE_DER[..n]).is_err(),
                "truncated at {n}"
            );
        }
    }
}
