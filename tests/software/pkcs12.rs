//! PKCS#12 files as openssl writes them (modern AES, legacy RC2/3DES, empty password):
//! the key, its certificate and the chain come out as stored; a damaged file is named
//! corrupt before any password is tried.

use crate::common::conformance::check;
use crate::common::{self, s, tempdir, write};
use crate::{
    assert_contains, cert_der, issued, load_err, open, openssl_spki, pkcs12, set_password, Issued,
};
use certassert::cert::Certificate;
use certassert::signer;
use certassert::Signer;

fn assert_pkcs12_contents(signer: &dyn Signer, issued: &Issued) {
    assert_eq!(
        signer.certificate_der(),
        Some(cert_der(&issued.leaf_cert).as_slice()),
        "the leaf certificate is the one stored with the key"
    );
    let ca = cert_der(&issued.ca_cert);
    assert!(
        signer.chain_der().contains(&ca),
        "the -certfile CA is in the chain"
    );
    assert!(
        !signer.chain_der().contains(&cert_der(&issued.leaf_cert)),
        "the leaf is not repeated in the chain"
    );
    assert_eq!(signer.public_key_der(), openssl_spki(&issued.leaf_key, &[]));
    let leaf = Certificate::from_der(signer.certificate_der().unwrap().to_vec()).unwrap();
    leaf.check_key(signer)
        .expect("the stored certificate matches");
}

#[test]
fn pkcs12_modern_default_with_chain() {
    let dir = tempdir();
    let issued = issued(dir.path());
    let p12 = pkcs12(dir.path(), &issued, "app.pfx", "pfx-pw", &[]);
    let info = common::openssl_output(&[
        "pkcs12",
        "-in",
        s(&p12),
        "-info",
        "-noout",
        "-passin",
        "pass:pfx-pw",
    ]);
    let info =
        String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("AES-256-CBC"), "modern PKCS#12: {info}");
    set_password("CERTASSERT_TEST_SW_P12_MODERN", "pfx-pw");
    let signer = open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P12_MODERN",
        s(&p12)
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_pkcs12_contents(&*signer, &issued);
    check(&*signer);
}

#[test]
fn pkcs12_legacy_rc2_3des() {
    let help = common::openssl_output(&["pkcs12", "-help"]);
    let help =
        String::from_utf8_lossy(&help.stderr).into_owned() + &String::from_utf8_lossy(&help.stdout);
    if !help.contains("-legacy") {
        eprintln!("skipped: this openssl pkcs12 has no -legacy");
        return;
    }
    let dir = tempdir();
    let issued = issued(dir.path());
    let p12 = pkcs12(dir.path(), &issued, "legacy.p12", "legacy-pw", &["-legacy"]);
    let info = common::openssl_output(&[
        "pkcs12",
        "-legacy",
        "-in",
        s(&p12),
        "-info",
        "-noout",
        "-passin",
        "pass:legacy-pw",
    ]);
    let info =
        String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("RC2") && info.contains("3-KeyTripleDES"),
        "legacy PKCS#12: {info}"
    );
    set_password("CERTASSERT_TEST_SW_P12_LEGACY", "legacy-pw");
    let signer = open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P12_LEGACY",
        s(&p12)
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_pkcs12_contents(&*signer, &issued);
    check(&*signer);
}

#[test]
fn pkcs12_empty_password_needs_no_password_source() {
    let dir = tempdir();
    let issued = issued(dir.path());
    let p12 = pkcs12(dir.path(), &issued, "nopw.p12", "", &[]);
    // A plain path: no password source at all; the empty password is tried first.
    let signer = open(s(&p12)).unwrap_or_else(|e| panic!("{e}"));
    assert_pkcs12_contents(&*signer, &issued);
    check(&*signer);
}

/// A PKCS#12 whose outer structure is damaged is reported as corrupt, before any
/// password is tried (not as "wrong password", not as a prompt).
#[test]
fn corrupt_pkcs12_structure_is_named_as_such() {
    let dir = tempdir();
    let issued = issued(dir.path());
    let p12 = pkcs12(dir.path(), &issued, "ok.p12", "", &[]);
    let mut der = std::fs::read(&p12).unwrap();
    // The byte after the authSafe's id-data OID: the [0] tag of its content.
    let oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
    ];
    let at = der.windows(oid.len()).position(|w| w == oid).unwrap() + oid.len();
    der[at] ^= 0x55;
    let bad = write(dir.path(), "bad.p12", &der[..]);
    let e = load_err(&bad);
    assert!(matches!(e, signer::Error::Format { .. }), "{e:?}");
    assert_contains(&e, &["corrupt or truncated", s(&bad)]);
}
