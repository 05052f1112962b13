//! PEM reading: every `-----BEGIN X-----` block in a file, with its RFC 1421 headers
//! (so a legacy `Proc-Type: 4,ENCRYPTED` key can be recognised and refused with advice).
//! Decoded bodies are zeroized on drop because key files pass through here.

use zeroize::Zeroizing;

/// One PEM block.
#[derive(Debug)]
pub struct Block {
    /// The word(s) between `BEGIN ` and `-----`, e.g. `PRIVATE KEY`.
    pub label: String,
    /// Header lines such as `Proc-Type: 4,ENCRYPTED`.
    pub headers: Vec<String>,
    /// The decoded body.
    pub der: Zeroizing<Vec<u8>>,
}

/// Whether `data` looks like PEM text rather than DER.
pub fn is_pem(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(data.len());
    data[start..].starts_with(b"-----BEGIN ") || contains(data, b"\n-----BEGIN ")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// All blocks in a PEM file, in order.
///
/// # Errors
/// A message naming the block that is not valid: no matching END line, or a body that is
/// not base64.
pub fn parse(data: &[u8]) -> Result<Vec<Block>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "PEM text is not valid UTF-8".to_string())?;
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                headers.push(line.to_string());
            } else {
                body.push_str(line);
            }
        }
        if !closed {
            return Err(format!("PEM block \"{label}\" has no \"{end}\" line"));
        }
        let der = crate::encoding::b64_decode(&body)
            .ok_or_else(|| format!("PEM block \"{label}\" is not valid base64"))?;
        blocks.push(Block {
            label: label.to_string(),
            headers,
            der: Zeroizing::new(der),
        });
    }
    Ok(blocks)
}

/// Encode DER as PEM with 64-column lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = crate::encoding::b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_blocks_with_headers_and_text_around() {
        let text = format!(
            "Bag Attributes\n    localKeyID: 01\n{}junk\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAEC\n-----END RSA PRIVATE KEY-----\n",
            encode("CERTIFICATE", &[1, 2, 3])
        );
        assert!(is_pem(text.as_bytes()));
        let blocks = parse(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(&blocks[0].der[..], &[1, 2, 3]);
        assert_eq!(
            blocks[1].headers,
            vec!["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,00"]
        );
    }

    #[test]
    fn unterminated_and_bad_base64() {
        assert!(parse(b"-----BEGIN X-----\nAAAA\n")
            .unwrap_err()
            .contains("no \"-----END X-----\""));
        assert!(parse(b"-----BEGIN X-----\n!!!!\n-----END X-----\n")
            .unwrap_err()
            .contains("base64"));
        assert!(!is_pem(&[0x30, 0x82]));
    }
}
