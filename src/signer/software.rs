//! The software fallback: an RSA key in a file, signed with aws-lc-rs. Reads PEM or DER
//! PKCS#8, PKCS#1, encrypted PKCS#8 and PKCS#12 (.pfx/.p12, whose certificate and chain
//! are kept as the key's stored certificate). The key is parsed once; every buffer that
//! held private material is zeroized, and aws-lc clears its own copy when freed.

use super::{Algorithm, Error, Signer};
use crate::der;
use crate::secret::{Callbacks, NoCallbacks, Secret, SecretKind, SecretRequest, SecretSource};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use std::path::Path;
use zeroize::Zeroizing;

/// An RSA key held in this process.
pub struct SoftwareSigner {
    key: KeyPair,
    spki: Vec<u8>,
    certificate: Option<Vec<u8>>,
    chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("bits", &(self.key.public_modulus_len() * 8))
            .field("certificate", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

const ALGORITHMS: &[Algorithm] = &[Algorithm::Rs256, Algorithm::Ps256];

impl Signer for SoftwareSigner {
    fn algorithms(&self) -> &[Algorithm] {
        ALGORITHMS
    }

    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        let encoding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
            Algorithm::Rs256 => &RSA_PKCS1_SHA256,
            Algorithm::Ps256 => &RSA_PSS_SHA256,
        };
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                encoding,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| Error::Sign {
                backend: "software",
                detail: "aws-lc-rs RSA signing failed".into(),
            })?;
        Ok(signature)
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

/// What a key file turned out to hold, before the RSA key is handed to aws-lc-rs.
enum Plain {
    Pkcs8(Zeroizing<Vec<u8>>),
    Pkcs1(Zeroizing<Vec<u8>>),
}

impl SoftwareSigner {
    /// Load a key file. `password` unlocks encrypted PKCS#8 and PKCS#12; when it is absent
    /// an empty password is tried (as `openssl pkcs12 -passout pass:` writes), and nobody
    /// is asked: see [`SoftwareSigner::from_file_with`].
    ///
    /// # Errors
    /// Unreadable file, unknown format, wrong password, a non-RSA key, or an RSA key
    /// outside 2048–8192 bits. Each message names the file and what to do.
    pub fn from_file(path: &Path, password: Option<&SecretSource>) -> Result<Self, Error> {
        Self::from_file_with(path, password, &NoCallbacks)
    }

    /// As [`SoftwareSigner::from_file`], asking `callbacks` for the password when the
    /// file is encrypted, no `password` source is given and the empty password fails
    /// (and for a `prompt` source).
    ///
    /// # Errors
    /// As [`SoftwareSigner::from_file`]; [`Error::Secret`] when the password is needed
    /// and `callbacks` cannot ask.
    pub fn from_file_with(
        path: &Path,
        password: Option<&SecretSource>,
        callbacks: &dyn Callbacks,
    ) -> Result<Self, Error> {
        let data = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?);
        Loader {
            path,
            password,
            callbacks,
            asked: None,
        }
        .load(&data)
    }

    /// Build a signer from unencrypted PKCS#8 DER (used by key generation and tests).
    ///
    /// # Errors
    /// As [`SoftwareSigner::from_file`], for the in-memory key.
    pub fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self, Error> {
        let path = Path::new("<memory>");
        finish(
            path,
            Plain::Pkcs8(Zeroizing::new(pkcs8.to_vec())),
            Vec::new(),
        )
    }
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

    fn load(mut self, data: &[u8]) -> Result<SoftwareSigner, Error> {
        if crate::pem::is_pem(data) {
            return self.load_pem(data);
        }
        let Some((outer, _)) = der::expect(data, der::SEQUENCE) else {
            return Err(self.format(
                "not a key file certassert can read: expected PEM (PRIVATE KEY, RSA PRIVATE KEY, ENCRYPTED PRIVATE KEY) \
                 or DER (PKCS#8, PKCS#1, PKCS#12 .pfx/.p12)",
            ));
        };
        let first = der::read(outer.value).map(|(t, _)| t);
        match first {
            // PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }
            Some(t) if t.tag == der::INTEGER && t.value == [3] => self.load_pkcs12(data),
            // PrivateKeyInfo ::= SEQUENCE { version INTEGER (0|1), AlgorithmIdentifier, OCTET STRING }
            Some(t) if t.tag == der::INTEGER && is_pkcs8(outer.value) => finish(
                self.path,
                Plain::Pkcs8(Zeroizing::new(data.to_vec())),
                Vec::new(),
            ),
            // ECPrivateKey (SEC1) ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING, ... }
            Some(t) if t.tag == der::INTEGER && t.value == [1] && is_sec1(outer.value) => {
                Err(Error::NotRsa {
                    path: self.path.into(),
                    kind: "EC".into(),
                })
            }
            // RSAPrivateKey ::= SEQUENCE { version INTEGER (0), modulus INTEGER, ... }
            Some(t) if t.tag == der::INTEGER => finish(
                self.path,
                Plain::Pkcs1(Zeroizing::new(data.to_vec())),
                Vec::new(),
            ),
            // EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }
            Some(t) if t.tag == der::SEQUENCE => {
                let pkcs8 = self.decrypt_pkcs8(data)?;
                finish(self.path, Plain::Pkcs8(pkcs8), Vec::new())
            }
            _ => Err(self.format("DER data is not a private key, PKCS#8 or PKCS#12 structure")),
        }
    }

    fn load_pem(&mut self, data: &[u8]) -> Result<SoftwareSigner, Error> {
        let blocks = crate::pem::parse(data).map_err(|e| self.format(e))?;
        let mut key = None;
        let mut certs = Vec::new();
        let mut labels = Vec::new();
        for block in blocks {
            labels.push(block.label.clone());
            let found = match block.label.as_str() {
                "PRIVATE KEY" => Plain::Pkcs8(block.der),
                "RSA PRIVATE KEY" if block.headers.iter().any(|h| h.contains("ENCRYPTED")) => {
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
                        kind: "EC".into(),
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
            Some(key) => finish(self.path, key, certs),
            None if !certs.is_empty() => Err(self.format(
                "the file holds a certificate but no private key: pass the key with --key and the certificate with --cert",
            )),
            None => Err(self.format(format!(
                "no private key in this PEM file (blocks found: {})",
                if labels.is_empty() { "none".to_string() } else { labels.join(", ") }
            ))),
        }
    }

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
                    let name = algorithm.to_string();
                    let name = if name.contains("1.2.840.113549.3.7") {
                        "PBES2 with 3DES-CBC".to_string()
                    } else {
                        name
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

    fn load_pkcs12(&mut self, data: &[u8]) -> Result<SoftwareSigner, Error> {
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
            1 => finish(self.path, Plain::Pkcs8(keys.remove(0)), certs),
            n => Err(self.format(format!("the PKCS#12 file holds {n} private keys; keep one key per file"))),
        }
    }

    /// Decrypt an EncryptedPrivateKeyInfo. Its structure is exactly a PKCS#12 shrouded key
    /// bag, so it is wrapped in a MAC-less PFX and picky's code decrypts it — PBES2 with
    /// AES-CBC and PBKDF2 (OpenSSL's default) and PKCS#12 PBES1 (3DES, RC2) — with no
    /// cipher code of our own. PBES2 with 3DES is refused with the command that re-encrypts.
    fn decrypt_pkcs8(&mut self, epki: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        use picky::pkcs12::{Pfx, Pkcs12CryptoContext, Pkcs12ParsingParams, SafeBag, SafeContents};
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
            Pfx::from_der(&wrapper, &ctx, &params)
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

fn is_sec1(seq_body: &[u8]) -> bool {
    der::expect(seq_body, der::INTEGER)
        .and_then(|(_, rest)| der::expect(rest, der::OCTET_STRING))
        .is_some()
}

fn is_pkcs8(seq_body: &[u8]) -> bool {
    der::expect(seq_body, der::INTEGER)
        .and_then(|(_, rest)| der::expect(rest, der::SEQUENCE))
        .is_some()
}

/// Classify the key algorithm and size from the DER alone, so an EC or 1024-bit key gets
/// an error that says so instead of aws-lc-rs's "WrongAlgorithm"/"TooSmall".
fn check_key(path: &Path, key: &Plain) -> Result<(), Error> {
    let pkcs1 = match key {
        Plain::Pkcs1(der) => der.as_slice(),
        Plain::Pkcs8(der) => {
            let parsed = der::expect(der, der::SEQUENCE)
                .and_then(|(seq, _)| der::expect(seq.value, der::INTEGER))
                .and_then(|(_, rest)| der::expect(rest, der::SEQUENCE))
                .and_then(|(alg, rest)| {
                    Some((
                        der::expect(alg.value, der::OID)?.0,
                        der::expect(rest, der::OCTET_STRING)?.0,
                    ))
                });
            let Some((oid, octets)) = parsed else {
                return Err(Error::Format {
                    path: path.into(),
                    detail: "malformed PKCS#8 private key".into(),
                });
            };
            if oid.value != der::OID_RSA_ENCRYPTION {
                return Err(Error::NotRsa {
                    path: path.into(),
                    kind: der::key_algorithm_name(oid.value),
                });
            }
            octets.value
        }
    };
    let modulus = der::expect(pkcs1, der::SEQUENCE)
        .and_then(|(seq, _)| der::expect(seq.value, der::INTEGER))
        .and_then(|(_, rest)| der::expect(rest, der::INTEGER));
    let Some((n, _)) = modulus else {
        return Err(Error::Format {
            path: path.into(),
            detail: "malformed RSA private key".into(),
        });
    };
    let bits = der::integer_bits(n.value);
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

fn finish(path: &Path, key: Plain, certs: Vec<Vec<u8>>) -> Result<SoftwareSigner, Error> {
    check_key(path, &key)?;
    let parsed = match &key {
        Plain::Pkcs8(der) => KeyPair::from_pkcs8(der),
        Plain::Pkcs1(der) => KeyPair::from_der(der),
    }
    .map_err(|e| Error::Format {
        path: path.into(),
        detail: format!("the RSA key is not valid ({})", e.description_()),
    })?;
    let spki = parsed
        .public_key()
        .as_der()
        .map_err(|_| Error::Format {
            path: path.into(),
            detail: "cannot encode the public key".into(),
        })?
        .as_ref()
        .to_vec();
    // The key's own certificate is the one with its public key; the rest are its chain.
    // When none matches, the first is kept anyway so that the pairing check reports the
    // mismatch instead of "no certificate".
    let ours = |c: &Vec<u8>| {
        der::certificate_spki(c).and_then(der::rsa_public_numbers) == der::rsa_public_numbers(&spki)
    };
    let mut certs = certs;
    let leaf = certs.iter().position(ours).unwrap_or(0);
    let certificate = (!certs.is_empty()).then(|| certs.remove(leaf));
    let chain = certs;
    Ok(SoftwareSigner {
        key: parsed,
        spki,
        certificate,
        chain,
    })
}

/// Generate an RSA key and return it as unencrypted PKCS#8 DER.
///
/// # Errors
/// `bits` is not 2048, 3072 or 4096, or the generator failed.
pub fn generate_software_key(bits: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        bits => return Err(Error::UnsupportedKeySize { bits }),
    };
    let key =
        KeyPair::generate(size).map_err(|_| Error::Generate("RSA key generation failed".into()))?;
    let der = key
        .as_der()
        .map_err(|_| Error::Generate("cannot encode the generated key".into()))?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}
