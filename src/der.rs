//! A minimal DER walker: enough to classify a key file, read an RSA modulus length and
//! pull the raw SubjectPublicKeyInfo out of a certificate, without copying (and so
//! without having to zeroize) any private material. Full ASN.1 work lives in picky.

/// One tag-length-value element.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The identifier octet.
    pub tag: u8,
    /// The value bytes.
    pub value: &'a [u8],
    /// The whole element: tag, length and value.
    pub raw: &'a [u8],
}

/// Universal tag of a constructed SEQUENCE.
pub const SEQUENCE: u8 = 0x30;
/// Universal tag of an INTEGER.
pub const INTEGER: u8 = 0x02;
/// Universal tag of an OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// Universal tag of a BIT STRING.
pub const BIT_STRING: u8 = 0x03;
/// Universal tag of an OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;

/// Read one element from the front of `input`; returns it and what follows.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur in what we read
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        value: &rest[..len],
        raw: &input[..header + len],
    };
    Some((tlv, &rest[len..]))
}

/// Read one element of the expected tag.
pub fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    read(input).filter(|(tlv, _)| tlv.tag == tag)
}

/// The significant bits of an unsigned big-endian INTEGER value.
pub fn integer_bits(value: &[u8]) -> usize {
    let trimmed = strip_leading_zeros(value);
    match trimmed.first() {
        None => 0,
        Some(b) => (trimmed.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

/// An INTEGER value without its sign-padding zeros.
pub fn strip_leading_zeros(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    &value[start..]
}

/// The RSA modulus and public exponent inside a SubjectPublicKeyInfo, if it is an RSA key.
pub fn rsa_public_numbers(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, _) = expect(spki, SEQUENCE)?;
    let (alg, rest) = expect(seq.value, SEQUENCE)?;
    let (oid, _) = expect(alg.value, OID)?;
    if oid.value != OID_RSA_ENCRYPTION {
        return None;
    }
    let (bits, _) = expect(rest, BIT_STRING)?;
    let (&unused, key) = bits.value.split_first()?;
    if unused != 0 {
        return None;
    }
    let (rsa, _) = expect(key, SEQUENCE)?;
    let (n, rest) = expect(rsa.value, INTEGER)?;
    let (e, _) = expect(rest, INTEGER)?;
    Some((strip_leading_zeros(n.value), strip_leading_zeros(e.value)))
}

/// The raw SubjectPublicKeyInfo element of a DER certificate, exactly as encoded there.
pub fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(certificate.value, SEQUENCE)?;
    let mut rest = tbs.value;
    // [0] EXPLICIT version is optional
    if rest.first() == Some(&0xa0) {
        rest = read(rest)?.1;
    }
    for _ in 0..5 {
        // serialNumber, signature, issuer, validity, subject
        rest = read(rest)?.1;
    }
    Some(expect(rest, SEQUENCE)?.0.raw)
}

/// DER body of OID 1.2.840.113549.1.1.1 (rsaEncryption).
pub const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// DER body of OID 1.2.840.113549.1.1.10 (RSASSA-PSS keys).
pub const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// DER body of OID 1.2.840.10045.2.1 (id-ecPublicKey).
pub const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER body of OID 1.3.101.112 (Ed25519).
pub const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// DER body of OID 1.3.101.113 (Ed448).
pub const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// A readable name for a key algorithm OID.
pub fn key_algorithm_name(oid: &[u8]) -> String {
    match oid {
        OID_RSA_ENCRYPTION => "RSA".into(),
        OID_RSASSA_PSS => "RSASSA-PSS-only RSA".into(),
        OID_EC_PUBLIC_KEY => "EC".into(),
        OID_ED25519 => "Ed25519".into(),
        OID_ED448 => "Ed448".into(),
        other => format!("unknown (OID bytes {})", crate::encoding::hex(other, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_lengths() {
        let short = [0x04, 0x02, 0xaa, 0xbb, 0xff];
        let (tlv, rest) = read(&short).unwrap();
        assert_eq!(
            (tlv.tag, tlv.value, rest),
            (OCTET_STRING, &[0xaa, 0xbb][..], &[0xff][..])
        );
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let (tlv, rest) = read(&long).unwrap();
        assert_eq!(tlv.value.len(), 256);
        assert!(rest.is_empty());
        assert!(read(&[0x04, 0x05, 1, 2]).is_none(), "truncated value");
        assert!(
            read(&[0x04, 0x80]).is_none(),
            "indefinite length is not DER"
        );
    }

    #[test]
    fn integer_bit_lengths() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x01, 0x00]), 9);
        assert_eq!(integer_bits(&[0x00]), 0);
    }
}
