//! Helpers shared by the integration test targets: running the openssl CLI, temporary
//! files, encodings, and the two signature verifiers that share no code with certassert
//! (the RustCrypto `rsa` crate with the PSS salt held at exactly 32, and `openssl dgst`).
//! The backend conformance suite built on them is [`conformance`]; the SoftHSM2, swtpm
//! and emulator fixtures are in [`softhsm`], [`swtpm`] and `emulator`.
#![allow(dead_code)]
pub mod conformance;
pub mod python;
pub mod swtpm;

#[cfg(feature = "emulator")]
pub mod emulator;
pub mod softhsm;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certassert::Algorithm;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const CLIENT_ID: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";

/// Every proxy variable an HTTP client reads (ours, Python's, the Rust SDK's).
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `cmd` without any of [`PROXY_VARIABLES`]: its requests go straight to the test's
/// servers.
pub fn without_proxies(cmd: &mut Command) -> &mut Command {
    for var in PROXY_VARIABLES {
        cmd.env_remove(var);
    }
    cmd
}

/// The environment variables certassert reads for a key, an app, a token request and its
/// log: none may leak from the shell running the tests into a run of the binary (nor may
/// a proxy: [`without_certassert_env`] removes [`PROXY_VARIABLES`] too).
pub const CERTASSERT_ENV: &[&str] = &[
    "CERTASSERT_KEY",
    "CERTASSERT_CERT",
    "CERTASSERT_PROFILE",
    "CERTASSERT_CODE",
    "CERTASSERT_USER_ASSERTION",
    "CERTASSERT_REFRESH_TOKEN",
    "CERTASSERT_LOG",
    "RUST_LOG",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
];

/// `cmd` without any of [`CERTASSERT_ENV`] and [`PROXY_VARIABLES`].
pub fn without_certassert_env(cmd: &mut Command) -> &mut Command {
    for var in CERTASSERT_ENV {
        cmd.env_remove(var);
    }
    without_proxies(cmd)
}

/// Run openssl; panic with its stderr when it fails.
pub fn openssl(args: &[&str]) -> Output {
    let out = openssl_output(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run openssl and return whatever happened (for runs that are expected to fail).
pub fn openssl_output(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI is installed (ci/install-deps.sh)")
}

/// openssl's stdout as text.
pub fn openssl_stdout(args: &[&str]) -> String {
    String::from_utf8(openssl(args).stdout).expect("openssl prints UTF-8")
}

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// A path as the `&str` openssl's argv needs (temporary paths are ASCII).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Write `data` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write test file");
    path
}

/// `n` bytes from the system generator (not from certassert).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .expect("read /dev/urandom");
    out
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Decode hex as openssl prints it (`AB:CD:…`).
pub fn hex_decode(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b':').collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {text}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex digit"))
        .collect()
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url (no padding, URL alphabet), as JOSE requires.
pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("not strict base64url ({e}): {text}"))
}

/// An openssl-computed certificate fingerprint: `digest` is `sha1` or `sha256`.
/// Returns the uppercase hex without colons and the raw bytes.
pub fn openssl_fingerprint(cert_pem: &Path, digest: &str) -> (String, Vec<u8>) {
    let out = openssl_stdout(&[
        "x509",
        "-noout",
        "-fingerprint",
        &format!("-{digest}"),
        "-in",
        s(cert_pem),
    ]);
    let (_, value) = out
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("fingerprint output: {out}"));
    let bytes = hex_decode(value);
    (value.replace(':', "").to_ascii_uppercase(), bytes)
}

/// Verify with the RustCrypto `rsa` crate: PKCS#1 v1.5 + SHA-256 for RS256; PSS with
/// SHA-256, MGF1-SHA-256 and a salt of exactly 32 bytes for PS256.
pub fn rsa_crate_verify(
    spki_der: &[u8],
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::sha2::Sha256;
    use rsa::signature::Verifier as _;
    let key = rsa::RsaPublicKey::from_public_key_der(spki_der)
        .map_err(|e| format!("the rsa crate cannot read the SubjectPublicKeyInfo: {e}"))?;
    match alg {
        Algorithm::Rs256 => {
            let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| e.to_string())?;
            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                .verify(message, &sig)
                .map_err(|e| format!("RS256: {e}"))
        }
        Algorithm::Ps256 => {
            let sig = rsa::pss::Signature::try_from(signature).map_err(|e| e.to_string())?;
            // Some(32): the salt must be exactly 32 bytes, not auto-detected.
            rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key, 32)
                .verify(message, &sig)
                .map_err(|e| format!("PS256 (salt 32): {e}"))
        }
    }
}

/// Verify with `openssl dgst` against a PEM public key; PS256 demands a 32-byte salt.
pub fn openssl_verify(
    dir: &Path,
    pub_pem: &Path,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let msg = write(dir, "verify.msg", message);
    let sig = write(dir, "verify.sig", signature);
    let mut args = vec![
        "dgst",
        "-sha256",
        "-verify",
        s(pub_pem),
        "-signature",
        s(&sig),
    ];
    if alg == Algorithm::Ps256 {
        args.extend([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ]);
    }
    args.push(s(&msg));
    let out = openssl_output(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.success(),
        stdout.contains("Verified OK"),
        "openssl dgst exit status and output disagree: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

/// Both independent verifiers must accept.
pub fn assert_verifies(
    dir: &Path,
    spki_der: &[u8],
    pub_pem: &Path,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
    what: &str,
) {
    if let Err(e) = rsa_crate_verify(spki_der, alg, message, signature) {
        panic!("{what}: the rsa crate rejects the {alg} signature: {e}");
    }
    assert!(
        openssl_verify(dir, pub_pem, alg, message, signature),
        "{what}: openssl rejects the {alg} signature"
    );
}

/// Both independent verifiers must reject.
pub fn assert_rejected(
    dir: &Path,
    spki_der: &[u8],
    pub_pem: &Path,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
    what: &str,
) {
    assert!(
        rsa_crate_verify(spki_der, alg, message, signature).is_err(),
        "{what}: the rsa crate accepts a bad {alg} signature"
    );
    assert!(
        !openssl_verify(dir, pub_pem, alg, message, signature),
        "{what}: openssl accepts a bad {alg} signature"
    );
}

/// Write the signer's SubjectPublicKeyInfo as PEM, converted by openssl (which also
/// proves the DER is a well-formed RSA public key).
pub fn public_key_pem(dir: &Path, spki_der: &[u8]) -> PathBuf {
    let der = write(dir, "pub.der", spki_der);
    let pem = dir.join("pub.pem");
    openssl(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        s(&der),
        "-out",
        s(&pem),
    ]);
    pem
}
