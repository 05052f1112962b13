//! Small encodings shared by every layer: base64url without padding (JOSE), standard
//! base64 (`x5c`, manifests), hex, UUID v4 and UTC timestamps. Strict decoders: a JWT or
//! thumbprint that is only "almost" base64url is an error here, as it is at Entra.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// base64url without padding, as JOSE (RFC 7515 §2) requires.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url decode: no padding, no `+`/`/`, no whitespace.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Standard base64 with padding (used by `x5c` and the app manifest).
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Standard base64 decode (PEM bodies, after whitespace is removed by the caller).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Hex digits, uppercase (as the Azure portal shows thumbprints) or lowercase.
pub fn hex(data: &[u8], upper: bool) -> String {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::with_capacity(data.len() * 2);
    for b in data {
        out.push(digits[usize::from(b >> 4)] as char);
        out.push(digits[usize::from(b & 15)] as char);
    }
    out
}

/// Decode hex (either case, optional `:` or space separators as `openssl -fingerprint` prints).
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b':' && *c != b' ').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// Cryptographically random bytes from the system generator.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("the system random generator failed");
    out
}

/// A random (version 4) UUID in its canonical lowercase form.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    guid_text(&b)
}

/// 16 bytes in the 8-4-4-4-12 hex form of a UUID / GUID.
pub fn guid_text(b: &[u8; 16]) -> String {
    let h = hex(b, false);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Broken-down UTC time: (year, month, day, hour, minute, second).
pub fn utc_parts(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    (
        y,
        m,
        d,
        (s / 3600) as u32,
        (s % 3600 / 60) as u32,
        (s % 60) as u32,
    )
}

/// RFC 3339 / ISO 8601 UTC, e.g. `2026-11-23T13:16:00Z`.
pub fn rfc3339(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x5t_example_from_microsoft_docs() {
        // learn.microsoft.com certificate-credentials: hex 84E0…5534 -> x5t hOBcHZi846VCHSJbFAs26Go9VTQ
        let raw = hex_decode("84E05C1D98BCE3A5421D225B140B36E86A3D5534").unwrap();
        assert_eq!(b64url(&raw), "hOBcHZi846VCHSJbFAs26Go9VTQ");
        assert_eq!(hex(&raw, true), "84E05C1D98BCE3A5421D225B140B36E86A3D5534");
    }

    #[test]
    fn strict_base64url() {
        assert_eq!(
            b64url_decode("hOBcHZi846VCHSJbFAs26Go9VTQ").unwrap().len(),
            20
        );
        assert!(
            b64url_decode("hOBcHZi846VCHSJbFAs26Go9VTQ=").is_none(),
            "padding refused"
        );
        assert!(
            b64url_decode("hOBc+Zi846VCHSJbFAs26Go9VTQ").is_none(),
            "standard alphabet refused"
        );
        assert!(b64url_decode("hOBc HZi846VCHSJbFAs26Go9VTQ").is_none());
    }

    #[test]
    fn hex_round_trip_and_separators() {
        assert_eq!(hex_decode("ab:CD:01").unwrap(), vec![0xab, 0xcd, 0x01]);
        assert!(hex_decode("abc").is_none());
        assert!(hex_decode("zz").is_none());
    }

    #[test]
    fn uuid_v4_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_570_803_651), "2019-10-11T14:20:51Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(days_from_civil(2024, 2, 29) * 86_400, 1_709_164_800);
        for t in [0_i64, 951_782_400, 1_709_164_800, 2_534_022_143] {
            let (y, m, d, ..) = utc_parts(t);
            assert_eq!(days_from_civil(y, m, d), t.div_euclid(86_400));
        }
    }
}
