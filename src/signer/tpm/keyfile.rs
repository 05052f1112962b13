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

use crate::der;

/// `2.23.133.10.1.3`, DER body.
pub const OID_LOADABLE_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0a, 0x01, 0x03];
/// `2.23.133.10.1.4` (importable key): not loadable without TPM2_Import.
const OID_IMPORTABLE_KEY: &[u8] = &[0x67, 0x81, 0x05, 0x0a, 0x01, 0x04];
/// `2.23.133.10.1.5` (sealed data).
const OID_SEALED_DATA: &[u8] = &[0x67, 0x81, 0x05, 0x0a, 0x01, 0x05];
/// The PEM label.
pub const PEM_LABEL: &str = "TSS2 PRIVATE KEY";
/// TPM_RH_OWNER: "the standard storage primary under the owner hierarchy".
pub const RH_OWNER: u32 = 0x4000_0001;

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
    /// A message saying what the file holds instead, or which field is malformed.
    pub fn from_file_bytes(data: &[u8]) -> Result<Self, String> {
        if !crate::pem::is_pem(data) {
            return Self::from_der(data);
        }
        let blocks = crate::pem::parse(data)?;
        let block = blocks
            .iter()
            .find(|b| b.label == PEM_LABEL)
            .ok_or_else(|| {
                let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
                format!(
                    "no \"-----BEGIN {PEM_LABEL}-----\" block (found: {}); make one with \
                     certassert key generate --key tpm:key=PATH or openssl genpkey -provider tpm2 -algorithm RSA",
                    if labels.is_empty() { "nothing".to_string() } else { labels.join(", ") }
                )
            })?;
        Self::from_der(&block.der)
    }

    /// Decode the DER `TPMKey` structure.
    ///
    /// # Errors
    /// A message naming the malformed or unsupported field.
    pub fn from_der(data: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| format!("not a TSS2 private key: {what}");
        let (seq, _) = der::expect(data, der::SEQUENCE).ok_or_else(|| bad("no outer SEQUENCE"))?;
        let (oid, mut rest) = der::expect(seq.value, der::OID).ok_or_else(|| bad("no type OID"))?;
        match oid.value {
            OID_LOADABLE_KEY => {}
            OID_IMPORTABLE_KEY => {
                return Err("this TSS2 key is an importable key (OID 2.23.133.10.1.4); load it once with its tool to make a loadable key".into())
            }
            OID_SEALED_DATA => return Err("this TSS2 file holds sealed data, not a key".into()),
            _ => return Err(bad("the type OID is not 2.23.133.10.1.3 (loadable key)")),
        }
        let mut empty_auth = false;
        while let Some(&tag) = rest.first() {
            if tag & 0xe0 != 0xa0 {
                break;
            }
            let (tlv, after) = der::read(rest).ok_or_else(|| bad("a truncated tagged field"))?;
            match tag {
                0xa0 => {
                    let (b, _) = der::expect(tlv.value, 0x01)
                        .ok_or_else(|| bad("emptyAuth is not a BOOLEAN"))?;
                    empty_auth = b.value.first().is_some_and(|v| *v != 0);
                }
                0xa1 | 0xa3 => {
                    return Err("this TSS2 key is bound to a TPM policy, which certassert does not satisfy; use a key with a password (auth-source=) or none".into())
                }
                0xa2 => return Err("this TSS2 key carries an encrypted secret (its [2] secret field), which certassert does not support".into()),
                _ => return Err(bad("unknown tagged field")),
            }
            rest = after;
        }
        let (parent, rest) =
            der::expect(rest, der::INTEGER).ok_or_else(|| bad("no parent INTEGER"))?;
        let parent = parent_handle(parent.value).ok_or_else(|| bad("parent out of range"))?;
        let (public, rest) =
            der::expect(rest, der::OCTET_STRING).ok_or_else(|| bad("no pubkey OCTET STRING"))?;
        let (private, _) =
            der::expect(rest, der::OCTET_STRING).ok_or_else(|| bad("no privkey OCTET STRING"))?;
        for (what, blob) in [("pubkey", public.value), ("privkey", private.value)] {
            let declared = blob
                .get(..2)
                .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])));
            if declared != Some(blob.len().saturating_sub(2)) || blob.len() <= 2 {
                return Err(bad(&format!("{what} is not a sized TPM2B structure")));
            }
        }
        Ok(Self {
            empty_auth,
            parent,
            public: public.value.to_vec(),
            private: private.value.to_vec(),
        })
    }

    /// Encode as DER.
    pub fn to_der(&self) -> Vec<u8> {
        let mut body = tlv(der::OID, OID_LOADABLE_KEY);
        if self.empty_auth {
            body.extend(tlv(0xa0, &tlv(0x01, &[0xff])));
        }
        body.extend(tlv(der::INTEGER, &unsigned_integer(self.parent)));
        body.extend(tlv(der::OCTET_STRING, &self.public));
        body.extend(tlv(der::OCTET_STRING, &self.private));
        tlv(der::SEQUENCE, &body)
    }

    /// Encode as a `TSS2 PRIVATE KEY` PEM block.
    pub fn to_pem(&self) -> String {
        crate::pem::encode(PEM_LABEL, &self.to_der())
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

/// A parent handle from its INTEGER bytes. Some writers encode 0x81000001 as a negative
/// 4-byte INTEGER (two's complement); take those as the unsigned 32-bit value too.
fn parent_handle(value: &[u8]) -> Option<u32> {
    let trimmed = der::strip_leading_zeros(value);
    if trimmed.len() > 4 {
        return None;
    }
    let v = trimmed
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    Some(if v == 0 { RH_OWNER } else { v })
}

fn unsigned_integer(v: u32) -> Vec<u8> {
    let mut bytes = v.to_be_bytes().to_vec();
    while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
        bytes.remove(0);
    }
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    bytes
}

/// One DER element.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
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

    #[test]
    fn round_trip_and_parent_forms() {
        let key = sample();
        assert_eq!(
            TssKey::from_file_bytes(key.to_pem().as_bytes()).unwrap(),
            key
        );
        let persistent = TssKey {
            empty_auth: false,
            parent: 0x8100_0001,
            ..sample()
        };
        let der = persistent.to_der();
        // 0x81000001 needs a sign-padding zero.
        assert!(der
            .windows(7)
            .any(|w| w == [0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01]));
        assert_eq!(TssKey::from_der(&der).unwrap(), persistent);
        assert_eq!(parent_handle(&[0x81, 0, 0, 1]), Some(0x8100_0001));
        assert_eq!(parent_handle(&[0]), Some(RH_OWNER));
        assert_eq!(unsigned_integer(RH_OWNER), vec![0x40, 0, 0, 1]);
    }

    #[test]
    fn refusals_say_why() {
        let e = TssKey::from_file_bytes(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("found: PRIVATE KEY"), "{e}");
        let mut der = sample().to_der();
        let at = der
            .windows(OID_LOADABLE_KEY.len())
            .position(|w| w == OID_LOADABLE_KEY)
            .unwrap();
        der[at + 5] = 0x05;
        assert!(TssKey::from_der(&der).unwrap_err().contains("sealed data"));
        let broken = TssKey {
            private: vec![0, 9, 1],
            ..sample()
        };
        assert!(TssKey::from_der(&broken.to_der())
            .unwrap_err()
            .contains("privkey"));
    }
}
