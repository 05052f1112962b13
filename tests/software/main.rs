//! The software backend against key files made by the openssl CLI (never by certassert),
//! in every format it reads, run through the shared conformance suite; and every bad
//! input a user is likely to hand it, each with the message they should see.
//!
//! The helpers here make keys, certificates and PKCS#12 files with openssl; the tests
//! are in one file per topic.

#[path = "../common/mod.rs"]
mod common;

mod bad_inputs;
mod certificates;
mod formats;
mod pkcs12;
mod suite;

use certassert::keyref::KeyRef;
use certassert::signer::{self, SoftwareSigner};
use certassert::Signer;
use common::{openssl, s};
use std::path::{Path, PathBuf};

/// An RSA key as openssl writes it by default: PKCS#8 PEM.
fn genrsa(dir: &Path, name: &str, bits: u32) -> PathBuf {
    let path = dir.join(name);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        &format!("rsa_keygen_bits:{bits}"),
        "-out",
        s(&path),
    ]);
    path
}

/// A self-signed certificate made by openssl for `key`.
fn openssl_cert(dir: &Path, key: &Path, name: &str, cn: &str) -> PathBuf {
    let path = dir.join(name);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        s(key),
        "-subj",
        &format!("/CN={cn}"),
        "-days",
        "30",
        "-out",
        s(&path),
    ]);
    path
}

fn cert_der(pem: &Path) -> Vec<u8> {
    openssl(&["x509", "-in", s(pem), "-outform", "DER"]).stdout
}

fn load(path: &Path) -> SoftwareSigner {
    SoftwareSigner::from_file(path, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_err(path: &Path) -> signer::Error {
    SoftwareSigner::from_file(path, None).expect_err("the key must be refused")
}

/// Open through a key reference, as `--key` does.
fn open(reference: &str) -> Result<Box<dyn Signer>, signer::Error> {
    let key: KeyRef = reference
        .parse()
        .unwrap_or_else(|e| panic!("{reference}: {e}"));
    signer::open(&key, &certassert::secret::NoCallbacks)
}

/// Set a password variable. Each test uses its own name: tests share one process.
fn set_password(var: &str, value: &str) {
    std::env::set_var(var, value);
}

fn assert_contains(err: &impl std::fmt::Display, needles: &[&str]) -> String {
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "expected {needle:?} in: {text}");
    }
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// The public key openssl derives from a private key file, as SubjectPublicKeyInfo DER.
fn openssl_spki(key: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["pkey", "-in", s(key), "-pubout", "-outform", "DER"];
    args.extend_from_slice(extra);
    openssl(&args).stdout
}

fn encrypt_pkcs8(key: &Path, out: &Path, cipher: &str, password: &str, der: bool) {
    let pass = format!("pass:{password}");
    let mut args = vec![
        "pkcs8",
        "-topk8",
        "-v2",
        cipher,
        "-in",
        s(key),
        "-passout",
        &pass,
        "-out",
        s(out),
    ];
    if der {
        args.extend(["-outform", "DER"]);
    }
    openssl(&args);
}

/// A CA, and a leaf key with a certificate the CA issued.
struct Issued {
    leaf_key: PathBuf,
    leaf_cert: PathBuf,
    ca_cert: PathBuf,
}

fn issued(dir: &Path) -> Issued {
    let ca_key = genrsa(dir, "ca.key", 2048);
    let ca_cert = openssl_cert(dir, &ca_key, "ca.pem", "certassert test CA");
    let leaf_key = genrsa(dir, "leaf.key", 2048);
    let csr = dir.join("leaf.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        s(&leaf_key),
        "-subj",
        "/CN=leaf",
        "-out",
        s(&csr),
    ]);
    let leaf_cert = dir.join("leaf.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(&ca_cert),
        "-CAkey",
        s(&ca_key),
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        s(&leaf_cert),
    ]);
    Issued {
        leaf_key,
        leaf_cert,
        ca_cert,
    }
}

fn pkcs12(dir: &Path, issued: &Issued, name: &str, password: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let pass = format!("pass:{password}");
    let mut args = vec![
        "pkcs12",
        "-export",
        "-inkey",
        s(&issued.leaf_key),
        "-in",
        s(&issued.leaf_cert),
        "-certfile",
        s(&issued.ca_cert),
        "-passout",
        &pass,
        "-out",
        s(&out),
    ];
    args.extend_from_slice(extra);
    openssl(&args);
    out
}
