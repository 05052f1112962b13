//! The TPM 2.0 backend against a real swtpm (one per test), with keys made by the tools
//! people actually use — tpm2-tools (`tpm2_evictcontrol`) and tpm2-openssl (`openssl
//! genpkey -provider tpm2`) — and keys certassert makes, read back by those tools. Every
//! signature is checked by the shared conformance suite (RustCrypto `rsa` with a strict
//! 32-byte PSS salt, and openssl); every public key is compared with what an independent
//! tool reads from the TPM or the key file.
//!
//! The helpers here open keys, run the CLI against a swtpm and read keys back with
//! tpm2-openssl; the tests are in one file per topic.
#![cfg(feature = "tpm")]

#[path = "../common/mod.rs"]
mod common;

mod algorithms;
mod errors;
mod keys;
mod lifecycle;
mod list;

use certassert::keyref::KeyRef;
use certassert::secret::NoCallbacks;
use certassert::signer::{self, tpm::TpmSigner};
use certassert::{Algorithm, Signer};
use common::swtpm::Swtpm;
use common::{openssl, rsa_crate_verify, s, write};
use std::path::Path;
use std::process::{Command, Output};

fn key_ref(tpm: &Swtpm, attr: &str) -> String {
    format!("tpm:{attr}?tcti={}", tpm.tcti())
}

/// DER SubjectPublicKeyInfo of a PEM public key, as openssl reads it.
fn spki_of_pem(pem: &Path) -> Vec<u8> {
    openssl(&["pkey", "-pubin", "-in", s(pem), "-outform", "DER"]).stdout
}

/// The public key tpm2-openssl reads from a TSS2 key file.
fn provider_public_key(tpm: &Swtpm, key: &Path) -> Vec<u8> {
    let out = tpm
        .command("openssl")
        .args([
            "pkey",
            "-provider",
            "tpm2",
            "-provider",
            "default",
            "-in",
            s(key),
        ])
        .args(["-pubout", "-outform", "DER"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl pkey -provider tpm2 cannot read {}: {}",
        key.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Parse and open a `tpm:` reference as the library does, with nobody to ask for a password.
fn try_open(uri: &str) -> Result<TpmSigner, String> {
    let parsed = uri.parse().map_err(|e| format!("{e}"))?;
    TpmSigner::open(&parsed, &NoCallbacks).map_err(|e| e.to_string())
}

fn open(uri: &str) -> TpmSigner {
    try_open(uri).unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

fn open_err(uri: &str) -> String {
    match try_open(uri) {
        Ok(s) => panic!("{uri} opened as {s:?}; expected an error"),
        Err(e) => e,
    }
}

/// `signer::generate` with nobody to ask for a password.
fn generate(
    keyref: &KeyRef,
    bits: usize,
    label: Option<&str>,
) -> Result<Box<dyn Signer>, signer::Error> {
    signer::generate(keyref, bits, label, &NoCallbacks)
}

/// Sign with both algorithms and check with the rsa crate (strict salt 32).
fn signs_both(signer: &dyn Signer, what: &str) {
    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        let sig = signer
            .sign(alg, b"header.claims")
            .unwrap_or_else(|e| panic!("{what}: {alg}: {e}"));
        rsa_crate_verify(signer.public_key_der(), alg, b"header.claims", &sig)
            .unwrap_or_else(|e| panic!("{what}: {alg}: {e}"));
    }
}

fn certassert_cli(tpm: &Swtpm, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args(args)
        .current_dir(dir)
        .env_remove("TSS2_LOG")
        .env_remove("CERTASSERT_KEY")
        .env_remove("CERTASSERT_CERT")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .expect("run certassert")
}

fn cli_ok(tpm: &Swtpm, dir: &Path, args: &[&str]) -> String {
    let out = certassert_cli(tpm, dir, args);
    assert!(
        out.status.success(),
        "certassert {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A failing CLI run: its stderr, which must hold `needle` and no libtss2 log noise.
fn cli_fails(tpm: &Swtpm, dir: &Path, args: &[&str], needle: &str) -> String {
    let out = certassert_cli(tpm, dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "certassert {args:?} succeeded");
    assert!(
        err.contains(needle),
        "certassert {args:?}: no \"{needle}\" in: {err}"
    );
    assert!(
        !err.contains("esys:") && !err.contains("tcti:"),
        "libtss2 log noise on stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Write a 0600 secret file.
fn secret_file(dir: &Path, name: &str, value: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = write(dir, name, value);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
