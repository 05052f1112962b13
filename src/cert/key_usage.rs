//! The keyUsage extension (RFC 5280 §4.2.1.3), decoded here rather than through picky's
//! accessors: picky keeps the BIT STRING's bytes as it found them, and its bit readers
//! index past the data, or underflow, when the unused-bits count is out of range (the
//! certificate fuzz target found it; fuzz/regressions/certificate/). A value that is not
//! a DER BIT STRING is refused when the certificate is parsed, as openssl refuses it.

use picky_asn1_x509::extension::KeyUsage;

/// Bit names in RFC 5280 order, as openssl's `-ext keyUsage` lists them.
const NAMES: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

/// The names of the bits set in `ku`, or what makes it something other than a DER BIT
/// STRING.
pub(super) fn names(ku: &KeyUsage) -> Result<Vec<&'static str>, &'static str> {
    // picky serialises the value as a BIT STRING of the bytes it read, whatever their tag
    // was: the unused-bits count, then the bits.
    let tlv = picky_asn1_der::to_vec(ku).map_err(|_| "it cannot be re-encoded")?;
    let content = content_of(&tlv).ok_or("its length is not DER")?;
    let (&unused, bits) = content.split_first().ok_or("it has no unused-bits count")?;
    if unused > 7 {
        return Err("its unused-bits count is more than 7");
    }
    match bits.last() {
        None if unused != 0 => return Err("it counts unused bits but holds none"),
        Some(last) if last & ((1u8 << unused) - 1) != 0 => {
            return Err("a padding bit is set");
        }
        _ => {}
    }
    Ok(NAMES
        .iter()
        .enumerate()
        .filter(|&(i, _)| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0))
        .map(|(_, name)| *name)
        .collect())
}

/// The content octets of exactly one DER TLV (the `der` crate reads its header).
fn content_of(tlv: &[u8]) -> Option<&[u8]> {
    use der::{Decode as _, Reader as _};
    let mut reader = der::SliceReader::new(tlv).ok()?;
    let header = der::Header::decode(&mut reader).ok()?;
    let content = reader.read_slice(header.length()).ok()?;
    reader.is_finished().then_some(content)
}
