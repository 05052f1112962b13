//! Key files that load: PKCS#8 and PKCS#1, PEM and DER, 2048 to 4096 bits, encrypted
//! PKCS#8, a PEM bundle with its certificate, and a key certassert generates; each one
//! passes the conformance suite.

use crate::common::conformance::check;
use crate::common::{openssl, openssl_stdout, s, tempdir, write};
use crate::{
    assert_contains, cert_der, encrypt_pkcs8, genrsa, load, open, openssl_cert, openssl_spki,
    set_password,
};
use certassert::signer::{self, generate_software_key, SoftwareSigner};
use certassert::{Algorithm, Signer};
use std::path::Path;

#[test]
fn pkcs8_pem_2048() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let signer = load(&key);
    assert_eq!(signer.public_key_der(), openssl_spki(&key, &[]));
    assert!(signer.certificate_der().is_none());
    assert!(signer.chain_der().is_empty());
    check(&signer);
}

#[test]
fn pkcs1_pem() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let pkcs1 = dir.path().join("pkcs1.pem");
    openssl(&["rsa", "-in", s(&key), "-traditional", "-out", s(&pkcs1)]);
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let signer = load(&pkcs1);
    assert_eq!(signer.public_key_der(), openssl_spki(&key, &[]));
    check(&signer);
}

#[test]
fn der_pkcs8_and_der_pkcs1() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let p8 = dir.path().join("k8.der");
    let p1 = dir.path().join("k1.der");
    // (`openssl pkey -outform DER` writes the traditional form; pkcs8 -nocrypt is PKCS#8.)
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        s(&key),
        "-outform",
        "DER",
        "-out",
        s(&p8),
    ]);
    openssl(&[
        "rsa",
        "-in",
        s(&key),
        "-traditional",
        "-outform",
        "DER",
        "-out",
        s(&p1),
    ]);
    // SEQUENCE { INTEGER 0, then AlgorithmIdentifier (PKCS#8) or the modulus (PKCS#1) }
    let second = |path: &Path| {
        let der = std::fs::read(path).unwrap();
        assert_eq!(&der[..2], [0x30, 0x82]);
        assert_eq!(&der[4..7], [0x02, 0x01, 0x00]);
        der[7]
    };
    assert_eq!(second(&p8), 0x30, "PKCS#8");
    assert_eq!(second(&p1), 0x02, "PKCS#1");
    let spki = openssl_spki(&key, &[]);
    for path in [&p8, &p1] {
        let signer = load(path);
        assert_eq!(signer.public_key_der(), spki, "{}", path.display());
        check(&signer);
    }
}

#[test]
fn rsa_3072() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 3072);
    let signer = load(&key);
    assert_eq!(signer.sign(Algorithm::Rs256, b"x").unwrap().len(), 384);
    check(&signer);
}

#[test]
fn rsa_4096() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 4096);
    let signer = load(&key);
    assert_eq!(signer.sign(Algorithm::Ps256, b"x").unwrap().len(), 512);
    check(&signer);
}

#[test]
fn encrypted_pkcs8_aes256_pem_and_der() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let spki = openssl_spki(&key, &[]);
    let pem = dir.path().join("enc.pem");
    let der = dir.path().join("enc.der");
    encrypt_pkcs8(&key, &pem, "aes-256-cbc", "correct horse", false);
    encrypt_pkcs8(&key, &der, "aes-256-cbc", "correct horse", true);
    assert!(std::fs::read_to_string(&pem)
        .unwrap()
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    set_password("CERTASSERT_TEST_SW_P8_AES", "correct horse");
    for path in [&pem, &der] {
        let signer = open(&format!(
            "file:{}?password-source=env:CERTASSERT_TEST_SW_P8_AES",
            s(path)
        ))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(signer.public_key_der(), spki, "{}", path.display());
        check(&*signer);
    }
}

/// PBES2 with 3DES (`-v2 des3`, old OpenSSL 1.0 advice) is refused by design: a format
/// error naming the file and the command that re-encrypts it, never "wrong password".
#[test]
fn encrypted_pkcs8_pbes2_des3_is_refused_with_the_fix() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let enc = dir.path().join("enc.pem");
    encrypt_pkcs8(&key, &enc, "des3", "3des-pw", false);
    set_password("CERTASSERT_TEST_SW_P8_DES3_TODAY", "3des-pw");
    match open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P8_DES3_TODAY",
        s(&enc)
    )) {
        Ok(_) => panic!("PBES2-3DES is refused by design (picky decrypts AES-CBC PBES2 only)"),
        Err(e) => {
            assert!(matches!(e, signer::Error::Format { .. }), "{e:?}");
            assert_contains(
                &e,
                &[
                    s(&enc),
                    "PBES2 with 3DES-CBC",
                    "openssl pkcs8 -topk8 -v2 aes-256-cbc",
                ],
            );
        }
    }
}

/// PKCS#12-style PBE with 3DES (`-v1 PBE-SHA1-3DES`), as older tools write.
#[test]
fn encrypted_pkcs8_pkcs12_pbe_3des() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let enc = dir.path().join("enc.pem");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v1",
        "PBE-SHA1-3DES",
        "-in",
        s(&key),
        "-passout",
        "pass:v1-pw",
        "-out",
        s(&enc),
    ]);
    set_password("CERTASSERT_TEST_SW_P8_V1", "v1-pw");
    let signer = open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P8_V1",
        s(&enc)
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signer.public_key_der(), openssl_spki(&key, &[]));
    check(&*signer);
}

#[test]
fn pem_with_key_and_certificate_keeps_the_certificate() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let cert = openssl_cert(dir.path(), &key, "c.pem", "bundle");
    let bundle = write(
        dir.path(),
        "bundle.pem",
        std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap(),
    );
    let signer = load(&bundle);
    assert_eq!(signer.certificate_der(), Some(cert_der(&cert).as_slice()));
}

#[test]
fn generated_key_reloads_passes_and_openssl_accepts_it() {
    let dir = tempdir();
    let pkcs8 = generate_software_key(2048).expect("generate");
    let signer = SoftwareSigner::from_pkcs8_der(&pkcs8).expect("reload");
    let der = write(dir.path(), "gen.der", &pkcs8[..]);
    let out = openssl(&["pkey", "-inform", "DER", "-in", s(&der), "-check", "-noout"]);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Key is valid"), "openssl pkey -check: {said}");
    let text = openssl_stdout(&["pkey", "-inform", "DER", "-in", s(&der), "-noout", "-text"]);
    assert!(text.contains("(2048 bit"), "{text}");
    assert_eq!(
        signer.public_key_der(),
        openssl_spki(&der, &["-inform", "DER"])
    );
    check(&signer);

    let e = generate_software_key(1024).unwrap_err();
    assert_contains(&e, &["1024", "2048"]);
}
