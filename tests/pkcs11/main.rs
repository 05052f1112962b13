//! The PKCS#11 backend against real SoftHSM2 tokens, one token directory per test. Keys
//! are made by pkcs11-tool unless the test is about `key generate`; every signature is
//! verified by openssl and/or the RustCrypto `rsa` crate, never by certassert.
//!
//! The helpers here open keys and run and check the CLI; the tests are split between the
//! library ([`library`]), the command line ([`cli`]) and the library under injected
//! device faults ([`faults`], through the proxy module in [`shim`]).
#![cfg(feature = "pkcs11")]

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod faults;
mod library;
mod list;
mod shim;

use certassert::signer::pkcs11::{Pkcs11Error, Pkcs11Signer};
use certassert::Algorithm;
use common::softhsm::SoftHsm;
use common::{assert_verifies, b64url_decode, openssl, s};
use std::path::Path;

/// Open a `pkcs11:` or `piv:` reference as the library does, with nobody to ask for a PIN.
fn open(reference: &str) -> Result<Pkcs11Signer, Pkcs11Error> {
    let uri = reference
        .parse()
        .unwrap_or_else(|e| panic!("{reference}: {e}"));
    Pkcs11Signer::open(&uri, &certassert::secret::NoCallbacks)
}

const TENANT: &str = "contoso.onmicrosoft.com";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `certassert assertion --key KEY --alg ALG` must succeed, and openssl must verify the
/// JWT against `cert_pem`.
fn assertion_verifies(hsm: &SoftHsm, key: &str, alg: &str, dir: &Path, cert_pem: &Path) {
    let out = hsm.certassert(&[
        "assertion",
        "--key",
        key,
        "--tenant",
        TENANT,
        "--client-id",
        common::CLIENT_ID,
        "--alg",
        alg,
    ]);
    assert!(out.status.success(), "{key}: {}", stderr(&out));
    assert_jwt_verifies(dir, &stdout(&out), cert_pem);
}

/// Run `certassert assertion --key KEY`, which must fail; its stderr.
fn failing_assertion(hsm: &SoftHsm, key: &str) -> String {
    let out = hsm.certassert(&[
        "assertion",
        "--key",
        key,
        "--tenant",
        TENANT,
        "--client-id",
        "a",
    ]);
    assert!(!out.status.success(), "{key} should fail");
    stderr(&out)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Verify a compact JWS against the public key in `cert_pem` with openssl (and check
/// the header names the certificate by x5t).
fn assert_jwt_verifies(dir: &Path, jwt: &str, cert_pem: &Path) {
    let jwt = jwt.trim();
    let (input, sig) = jwt.rsplit_once('.').expect("a compact JWS");
    let header: serde_json::Value =
        serde_json::from_slice(&b64url_decode(input.split('.').next().unwrap())).unwrap();
    let alg = match header["alg"].as_str().unwrap() {
        "RS256" => Algorithm::Rs256,
        "PS256" => Algorithm::Ps256,
        other => panic!("unexpected alg {other}"),
    };
    let pub_pem = dir.join("cert-pub.pem");
    openssl(&[
        "x509",
        "-in",
        s(cert_pem),
        "-noout",
        "-pubkey",
        "-out",
        s(&pub_pem),
    ]);
    let spki_der = dir.join("cert-pub.der");
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        s(&pub_pem),
        "-outform",
        "DER",
        "-out",
        s(&spki_der),
    ]);
    let spki = std::fs::read(&spki_der).unwrap();
    assert_verifies(
        dir,
        &spki,
        &pub_pem,
        alg,
        input.as_bytes(),
        &b64url_decode(sig),
        "assertion",
    );
    let (_, sha1) = common::openssl_fingerprint(cert_pem, "sha1");
    let (_, sha256) = common::openssl_fingerprint(cert_pem, "sha256");
    match alg {
        Algorithm::Rs256 => assert_eq!(header["x5t"], common::b64url(&sha1)),
        Algorithm::Ps256 => assert_eq!(header["x5t#S256"], common::b64url(&sha256)),
    }
}
