//! Reading key files into key material: PEM or DER PKCS#8, PKCS#1, encrypted PKCS#8 and
//! PKCS#12 (.pfx/.p12, whose certificates come along). The file's shape is read with
//! RustCrypto's typed DER (`der`, `pkcs8`, `pkcs1`) and its PEM blocks with
//! [`crate::public_key::pem`]; decryption is picky's PKCS#12 code. Each message names the
//! file and what to do; an EC, Ed25519 or undersized key is refused here, before any
//! crypto library sees it. Every buffer that held private material is zeroized.

use crate::input::Limit;
use crate::public_key::{self, pem, KeyAlgorithm};
use crate::secret::{Callbacks, Secret, SecretKind, SecretRequest, SecretSource};
use crate::signer::Error;
use der::{Decode as _, Reader as _, SliceReader, Tag};
use std::path::Path;
use zeroize::Zeroizing;

/// An unencrypted private key as the file held it, before it is handed to aws-lc-rs.
pub(super) enum Plain {
    /// PrivateKeyInfo (PKCS#8) DER.
    Pkcs8(Zeroizing<Vec<u8>>),
    /// RSAPrivateKey (PKCS#1) DER.
    Pkcs1(Zeroizing<Vec<u8>>),
}

/// What a key file holds: one private key and the certificates stored beside it (a
/// PKCS#12 bag, CERTIFICATE blocks in the same PEM), in file order.
pub(super) struct KeyMaterial {
    pub(super) key: Plain,
    pub(super) certificates: Vec<Vec<u8>>,
}

impl KeyMaterial {
    fn key_only(key: Plain) -> Self {
        Self {
            key,
            certificates: Vec::new(),
        }
    }
}

/// Read a key file. `password` unlocks encrypted PKCS#8 and PKCS#12; when it is absent an
/// empty password is tried and then `callbacks` is asked (once per file).
pub(super) fn read(
    path: &Path,
    password: Option<&SecretSource>,
    callbacks: &dyn Callbacks,
) -> Result<KeyMaterial, Error> {
    let data = crate::input::read_file(path, Limit::KEY_FILE).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    Loader {
        path,
        password,
        callbacks,
        asked: None,
    }
    .load(&data)
}

/// des-ede3-cbc (RFC 8018 B.2.2): the cipher of PBES2 with 3DES, which picky does not decrypt.
const OID_DES_EDE3_CBC: &str = "1.2.840.113549.3.7";

/// The outer shape of a DER key file, from its first fields.
enum Shape {
    /// PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }
    Pkcs12,
    /// PrivateKeyInfo ::= SEQUENCE { version INTEGER (0|1), AlgorithmIdentifier, OCTET STRING }
    Pkcs8,
    /// ECPrivateKey (SEC1) ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING, ... }
    Sec1,
    /// RSAPrivateKey ::= SEQUENCE { version INTEGER (0), modulus INTEGER, ... }
    Pkcs1,
    /// EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }
    EncryptedPkcs8,
    /// A SEQUENCE that is none of these.
    Other,
}

/// The shape of `data`, or `None` when it does not even start with a complete SEQUENCE.
fn shape(data: &[u8]) -> Option<Shape> {
    let mut reader = SliceReader::new(data).ok()?;
    reader
        .sequence(|body| {
            let shape = match Tag::peek(body)? {
                Tag::Integer => {
                    let version = der::asn1::IntRef::decode(body)?;
                    let next = if body.is_finished() {
                        None
                    } else {
                        Some(Tag::peek(body)?)
                    };
                    match (version.as_bytes(), next) {
                        ([3], _) => Shape::Pkcs12,
                        (_, Some(Tag::Sequence)) => Shape::Pkcs8,
                        ([1], Some(Tag::OctetString)) => Shape::Sec1,
                        _ => Shape::Pkcs1,
                    }
                }
                Tag::Sequence => Shape::EncryptedPkcs8,
                _ => Shape::Other,
            };
            body.drain(body.remaining_len())?;
            Ok::<_, der::Error>(shape)
        })
        .ok()
}

struct Loader<'a> {
    path: &'a Path,
    password: Option<&'a SecretSource>,
    callbacks: &'a dyn Callbacks,
    /// A password typed at the prompt, kept for a second encrypted object in the file.
    asked: Option<Secret>,
}

impl Loader<'_> {
    fn format(&self, detail: impl Into<String>) -> Error {
        Error::Format {
            path: self.path.into(),
            detail: detail.into(),
        }
    }

    fn load(mut self, data: &[u8]) -> Result<KeyMaterial, Error> {
        if pem::is_pem(data) {
            return self.load_pem(data);
        }
        let Some(shape) = shape(data) else {
            return Err(self.format(
                "not a key file certassert can read: expected PEM (PRIVATE KEY, RSA PRIVATE KEY, ENCRYPTED PRIVATE KEY) \
                 or DER (PKCS#8, PKCS#1, PKCS#12 .pfx/.p12)",
            ));
        };
        let copy = || Zeroizing::new(data.to_vec());
        match shape {
            Shape::Pkcs12 => self.load_pkcs12(data),
            Shape::Pkcs8 => Ok(KeyMaterial::key_only(Plain::Pkcs8(copy()))),
            Shape::Sec1 => Err(Error::NotRsa {
                path: self.path.into(),
                kind: KeyAlgorithm::Ec.to_string(),
            }),
            Shape::Pkcs1 => Ok(KeyMaterial::key_only(Plain::Pkcs1(copy()))),
            Shape::EncryptedPkcs8 => Ok(KeyMaterial::key_only(Plain::Pkcs8(
                self.decrypt_pkcs8(data)?,
            ))),
            Shape::Other => {
                Err(self.format("DER data is not a private key, PKCS#8 or PKCS#12 structure"))
            }
        }
    }

    fn load_pem(&mut self, data: &[u8]) -> Result<KeyMaterial, Error> {
        let blocks = pem::parse(data).map_err(|e| self.format(e.to_string()))?;
        let mut key = None;
        let mut certs = Vec::new();
        let mut labels = Vec::new();
        for block in blocks {
            labels.push(block.label.clone());
            let found = match block.label.as_str() {
                "PRIVATE KEY" => Plain::Pkcs8(block.der),
                "RSA PRIVATE KEY" if block.is_legacy_encrypted() => {
                    return Err(self.format(
                        "legacy OpenSSL-encrypted PEM (Proc-Type: 4,ENCRYPTED) is not supported; convert it to encrypted PKCS#8: \
                         openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.pem -out key.pem",
                    ));
                }
                "RSA PRIVATE KEY" => Plain::Pkcs1(block.der),
                "ENCRYPTED PRIVATE KEY" => Plain::Pkcs8(self.decrypt_pkcs8(&block.der)?),
                "EC PRIVATE KEY" => {
                    return Err(Error::NotRsa {
                        path: self.path.into(),
                        kind: KeyAlgorithm::Ec.to_string(),
                    })
                }
                "OPENSSH PRIVATE KEY" => {
                    return Err(self.format(
                        "an OpenSSH private key; convert it with ssh-keygen -p -m PKCS8 -f FILE (RSA keys only)",
                    ));
                }
                "CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                    certs.push(block.der.to_vec());
                    continue;
                }
                _ => continue,
            };
            if key.replace(found).is_some() {
                return Err(
                    self.format("the file holds more than one private key; keep one key per file")
                );
            }
        }
        match key {
            Some(key) => Ok(KeyMaterial {
                key,
                certificates: certs,
            }),
            None if !certs.is_empty() => Err(Error::CertificateOnly {
                path: self.path.into(),
            }),
            None => Err(self.format(format!(
                "no private key in this PEM file (blocks found: {})",
                if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels.join(", ")
                }
            ))),
        }
    }

    /// What the callbacks are asked for.
    fn request(&self) -> SecretRequest {
        SecretRequest::new(
            SecretKind::Password,
            format!("password for {}", self.path.display()),
        )
    }

    /// The password to try, in order: the configured source; else "" then a prompt.
    fn passwords(&mut self) -> Result<Vec<Option<Secret>>, Error> {
        match self.password {
            Some(source) => {
                let secret = source
                    .read(&self.request(), self.callbacks)
                    .map_err(|source| Error::Secret {
                        path: self.path.into(),
                        source,
                    })?;
                Ok(vec![Some(secret)])
            }
            None => Ok(vec![Some(Secret::new(String::new())), None]),
        }
    }

    /// Ask for the password (once per file: a second encrypted object reuses the answer).
    /// The one place a key file's password is asked for.
    fn prompt(&mut self) -> Result<Secret, Error> {
        if let Some(s) = &self.asked {
            return Ok(s.clone());
        }
        let request = self.request();
        let secret = self
            .callbacks
            .request_secret(&request)
            .ok_or_else(|| Error::Secret {
                path: self.path.into(),
                source: request.cannot_ask(),
            })?;
        self.asked = Some(secret.clone());
        Ok(secret)
    }

    /// Try each candidate password with `attempt`; `None` in the list means "ask".
    fn with_password<T>(
        &mut self,
        mut attempt: impl FnMut(&str) -> Result<T, picky::pkcs12::Pkcs12Error>,
    ) -> Result<T, Error> {
        let mut last = None;
        for candidate in self.passwords()? {
            let secret = match candidate {
                Some(s) => s,
                None => self.prompt()?,
            };
            match attempt(secret.expose()) {
                Ok(v) => return Ok(v),
                Err(e) if is_password_error(&e) => last = Some(e),
                Err(picky::pkcs12::Pkcs12Error::NotSupportedAlgorithm { algorithm, context }) => {
                    use picky::pkcs12::UnsupportedPkcs12Algorithm as Unsupported;
                    let name = match &algorithm {
                        Unsupported::Oid(oid) if Into::<String>::into(oid) == OID_DES_EDE3_CBC => {
                            "PBES2 with 3DES-CBC".to_string()
                        }
                        _ => algorithm.to_string(),
                    };
                    return Err(self.format(format!(
                        "the key is encrypted with {name} ({context}), which certassert does not decrypt; re-encrypt it: \
                         openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD.pem -out key.pem \
                         (for a .pfx: openssl pkcs12 -export with its default ciphers)"
                    )));
                }
                Err(e) => {
                    return Err(self.format(format!("cannot decode PKCS#12/PKCS#8 structure: {e}")))
                }
            }
        }
        let detail = last.map(|e| e.to_string()).unwrap_or_default();
        Err(Error::WrongPassword {
            path: self.path.into(),
            detail,
        })
    }

    fn load_pkcs12(&mut self, data: &[u8]) -> Result<KeyMaterial, Error> {
        use picky::pkcs12::{Pfx, Pkcs12CryptoContext, Pkcs12ParsingParams};
        // A structure that does not even parse is corrupt, not locked: say so before any
        // password is tried (a wrong password also surfaces as a DER error, after decryption).
        if let Err(e) = picky_asn1_der::from_bytes::<picky_asn1_x509::pkcs12::RawPfx>(data) {
            return Err(self.format(format!("the PKCS#12 file is corrupt or truncated ({e})")));
        }
        let params = Pkcs12ParsingParams::default();
        let pfx = self.with_password(|pw| {
            let ctx = Pkcs12CryptoContext::new_with_password(pw)?;
            Pfx::from_der(data, &ctx, &params)
        })?;
        let mut keys = Vec::new();
        let mut certs = Vec::new();
        collect_bags(
            pfx.safe_contents().iter().flat_map(bags_of),
            &mut keys,
            &mut certs,
        )
        .map_err(|e| self.format(e))?;
        match keys.len() {
            0 => Err(self.format("the PKCS#12 file holds no private key (export it with its key: openssl pkcs12 -export -inkey …)")),
            1 => Ok(KeyMaterial {
                key: Plain::Pkcs8(keys.remove(0)),
                certificates: certs,
            }),
            n => Err(self.format(format!("the PKCS#12 file holds {n} private keys; keep one key per file"))),
        }
    }

    /// Decrypt an EncryptedPrivateKeyInfo. Its structure is exactly a PKCS#12 shrouded key
    /// bag, so it is wrapped in a MAC-less PFX and picky's code decrypts it — PBES2 with
    /// AES-CBC and PBKDF2 (OpenSSL's default) and PKCS#12 PBES1 (3DES, RC2) — with no
    /// cipher code of our own. PBES2 with 3DES is refused with the command that re-encrypts.
    fn decrypt_pkcs8(&mut self, epki: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        use picky::pkcs12::{Pfx, Pkcs12CryptoContext, Pkcs12ParsingParams, SafeBag, SafeContents};
        // picky's DER reader adds lengths unchecked (a nested length near usize::MAX
        // overflowed it: fuzz/regressions/keyfile/); it only sees bytes whose every TLV
        // fits in its parent.
        if !der_well_formed(epki, 0) {
            return Err(self.format(
                "not a valid encrypted PKCS#8 key: its DER lengths run past the data (a corrupt or truncated file)",
            ));
        }
        let raw = picky_asn1_der::Asn1RawDer(epki.to_vec());
        let bag = SafeBag::new_custom(
            picky_asn1_x509::oids::safe_bag_type_shrouded_key(),
            raw,
            vec![],
        );
        let wrapper = Pfx::new_without_mac(vec![SafeContents::new(vec![bag])])
            .to_der()
            .map_err(|e| self.format(format!("not a valid encrypted PKCS#8 key: {e}")))?;
        let params = Pkcs12ParsingParams::default();
        let pfx = self.with_password(|pw| {
            let ctx = Pkcs12CryptoContext::new_with_password(pw)?;
            Pfx::from_der(&wrapper, &ctx, &params).map_err(|e| match e {
                // Without a MAC, a wrong password is caught by the CBC padding check 255
                // times in 256; otherwise it decrypts to bytes that are no PrivateKeyInfo.
                picky::pkcs12::Pkcs12Error::Key(picky::key::KeyError::Asn1Deserialization {
                    ..
                }) => picky::pkcs12::Pkcs12Error::Pbes2 {
                    context: "the decrypted data is not a private key".into(),
                },
                e => e,
            })
        })?;
        let mut keys = Vec::new();
        collect_bags(
            pfx.safe_contents().iter().flat_map(bags_of),
            &mut keys,
            &mut Vec::new(),
        )
        .map_err(|e| self.format(e))?;
        keys.pop()
            .ok_or_else(|| self.format("the encrypted PKCS#8 structure holds no key"))
    }
}

/// Whether `data` is a sequence of DER TLVs whose lengths each fit in what holds them,
/// recursively for constructed ones (at most 32 deep).
fn der_well_formed(data: &[u8], depth: usize) -> bool {
    use der::{Decode as _, Reader as _};
    if depth > 32 {
        return false;
    }
    let Ok(mut reader) = der::SliceReader::new(data) else {
        return false;
    };
    while !reader.is_finished() {
        let Ok(header) = der::Header::decode(&mut reader) else {
            return false;
        };
        let Ok(value) = reader.read_slice(header.length()) else {
            return false;
        };
        if header.tag().is_constructed() && !der_well_formed(value, depth + 1) {
            return false;
        }
    }
    true
}

fn bags_of(contents: &picky::pkcs12::SafeContents) -> &[picky::pkcs12::SafeBag] {
    use picky::pkcs12::SafeContentsKind;
    match contents.kind() {
        SafeContentsKind::SafeBags(bags)
        | SafeContentsKind::EncryptedSafeBags {
            safe_bags: bags, ..
        } => bags,
        _ => &[],
    }
}

fn collect_bags<'a>(
    bags: impl Iterator<Item = &'a picky::pkcs12::SafeBag>,
    keys: &mut Vec<Zeroizing<Vec<u8>>>,
    certs: &mut Vec<Vec<u8>>,
) -> Result<(), String> {
    use picky::pkcs12::SafeBagKind;
    for bag in bags {
        match bag.kind() {
            SafeBagKind::PrivateKey(key) | SafeBagKind::EncryptedPrivateKey { key, .. } => {
                keys.push(Zeroizing::new(key.to_pkcs8().map_err(|e| e.to_string())?));
            }
            SafeBagKind::Certificate(cert) => certs.push(cert.to_der().map_err(|e| e.to_string())?),
            SafeBagKind::Nested(inner) => collect_bags(inner.iter(), keys, certs)?,
            _ => {}
        }
    }
    Ok(())
}

fn is_password_error(e: &picky::pkcs12::Pkcs12Error) -> bool {
    use picky::pkcs12::Pkcs12Error;
    // A wrong password shows as a MAC mismatch or as garbage after decryption (bad padding, bad DER).
    matches!(
        e,
        Pkcs12Error::Mac(_)
            | Pkcs12Error::Pbes1 { .. }
            | Pkcs12Error::Pbes2 { .. }
            | Pkcs12Error::Asn1Der(_)
    )
}

/// Classify the key algorithm and size from the DER alone, so an EC or 1024-bit key gets
/// an error that says so instead of aws-lc-rs's "WrongAlgorithm"/"TooSmall".
pub(super) fn check_key(path: &Path, key: &Plain) -> Result<(), Error> {
    let format = |detail: &str| Error::Format {
        path: path.into(),
        detail: detail.into(),
    };
    let pkcs1_der: &[u8] = match key {
        Plain::Pkcs1(der) => der,
        Plain::Pkcs8(der) => {
            let info = pkcs8::PrivateKeyInfoRef::from_der(der)
                .map_err(|_| format("malformed PKCS#8 private key"))?;
            if info.algorithm.oid != pkcs1::ALGORITHM_OID {
                return Err(Error::NotRsa {
                    path: path.into(),
                    kind: KeyAlgorithm::from_oid(&info.algorithm.oid).to_string(),
                });
            }
            info.private_key.as_bytes()
        }
    };
    let rsa = pkcs1::RsaPrivateKey::from_der(pkcs1_der)
        .map_err(|_| format("malformed RSA private key"))?;
    let bits = public_key::unsigned_bits(rsa.modulus.as_bytes());
    if bits < 2048 {
        return Err(Error::KeyTooSmall {
            path: path.into(),
            bits,
        });
    }
    if bits > 8192 {
        return Err(Error::KeyTooLarge {
            path: path.into(),
            bits,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_der_key_files() {
        let shape_name = |data: &[u8]| match shape(data) {
            None => "none",
            Some(Shape::Pkcs12) => "pkcs12",
            Some(Shape::Pkcs8) => "pkcs8",
            Some(Shape::Sec1) => "sec1",
            Some(Shape::Pkcs1) => "pkcs1",
            Some(Shape::EncryptedPkcs8) => "encrypted",
            Some(Shape::Other) => "other",
        };
        for (data, expected) in [
            (&b""[..], "none"),
            (b"\x04\x02\xaa\xbb", "none"),
            (b"\x30\x05\x02\x01", "none"),
            (b"\x30\x03\x02\x01\x03", "pkcs12"),
            (b"\x30\x05\x02\x01\x00\x30\x00", "pkcs8"),
            (b"\x30\x05\x02\x01\x01\x04\x00", "sec1"),
            (b"\x30\x03\x02\x01\x05", "pkcs1"),
            (b"\x30\x04\x30\x00\x04\x00", "encrypted"),
            (b"\x30\x02\x04\x00", "other"),
        ] {
            assert_eq!(shape_name(data), expected, "{data:02x?}");
        }
    }

    #[test]
    fn malformed_keys_are_format_errors_never_panics() {
        let path = Path::new("k.der");
        for junk in [
            &b""[..],
            b"\x30\x03\x02\x01\x00",
            b"\x30\x05\x02\x01\x00\x30\x00",
            b"\x30\x80\x02\x01\x00",
        ] {
            for key in [
                Plain::Pkcs8(Zeroizing::new(junk.to_vec())),
                Plain::Pkcs1(Zeroizing::new(junk.to_vec())),
            ] {
                let e = check_key(path, &key).unwrap_err();
                assert!(matches!(e, Error::Format { .. }), "{e:?}");
            }
        }
    }
}
