//! Bad key files and passwords: missing files, garbage, certificates instead of keys,
//! wrong or missing passwords, keys that are not RSA or too small, legacy encryption —
//! each a typed error whose message names the file and says what to do.

use crate::common::{self, openssl, s, tempdir, write};
use crate::{
    assert_contains, encrypt_pkcs8, genrsa, issued, load_err, open, openssl_cert, openssl_spki,
    pkcs12, set_password,
};
use certassert::signer;

#[test]
fn missing_file_names_the_path() {
    let dir = tempdir();
    let path = dir.path().join("no-such-key.pem");
    let e = load_err(&path);
    assert!(matches!(e, signer::Error::Io { .. }), "{e:?}");
    assert_contains(&e, &[s(&path)]);
    let e = open(s(&path)).unwrap_err();
    assert_contains(&e, &[s(&path)]);
}

#[test]
fn garbage_is_refused_with_a_format_error() {
    let dir = tempdir();
    let d = dir.path();
    let key = genrsa(d, "k.pem", 2048);
    let good_der = openssl(&["pkey", "-in", s(&key), "-outform", "DER"]).stdout;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not a key file"),
        (
            "text",
            b"this is not a key at all\n".to_vec(),
            "not a key file",
        ),
        (
            "random",
            [&[0x04u8, 0x20][..], &common::random_bytes(32)].concat(),
            "not a key file",
        ),
        (
            "bad-base64",
            b"-----BEGIN PRIVATE KEY-----\n!!!not base64!!!\n-----END PRIVATE KEY-----\n".to_vec(),
            "not valid base64",
        ),
        (
            "unterminated",
            b"-----BEGIN PRIVATE KEY-----\nMIIB\n".to_vec(),
            "no \"-----END PRIVATE KEY-----\"",
        ),
        (
            "junk-der-in-pem",
            certassert::public_key::pem::encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00")
                .into_bytes(),
            "malformed PKCS#8",
        ),
        (
            "other-pem",
            certassert::public_key::pem::encode("PUBLIC KEY", &openssl_spki(&key, &[]))
                .into_bytes(),
            "no private key in this PEM file (blocks found: PUBLIC KEY)",
        ),
        ("truncated-der", good_der[..good_der.len() / 2].to_vec(), ""),
        (
            "der-integer-only",
            b"\x30\x03\x02\x01\x05".to_vec(),
            "malformed RSA private key",
        ),
    ];
    for (name, data, needle) in cases {
        let path = write(d, name, &data);
        let e = load_err(&path);
        assert!(matches!(e, signer::Error::Format { .. }), "{name}: {e:?}");
        assert_contains(&e, &[s(&path), needle]);
    }
}

#[test]
fn certificate_only_pem_says_use_cert() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let cert = openssl_cert(dir.path(), &key, "c.pem", "only-a-cert");
    let e = load_err(&cert);
    assert!(matches!(e, signer::Error::CertificateOnly { .. }), "{e:?}");
    let text = assert_contains(&e, &["certificate but no private key", "not a key file"]);
    // The library names no flag: the CLI adds "pass the key with --key …" (tests/cli.rs).
    assert!(!text.contains("--"), "{text}");
}

#[test]
fn wrong_pkcs12_password() {
    let dir = tempdir();
    let issued = issued(dir.path());
    let p12 = pkcs12(dir.path(), &issued, "app.pfx", "right", &[]);
    set_password("CERTASSERT_TEST_SW_P12_WRONG", "wrong");
    let e = open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P12_WRONG",
        s(&p12)
    ))
    .unwrap_err();
    assert!(matches!(e, signer::Error::WrongPassword { .. }), "{e:?}");
    assert_contains(&e, &["wrong password", s(&p12)]);
}

#[test]
fn wrong_encrypted_pkcs8_password() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    for (cipher, var) in [
        ("aes-256-cbc", "CERTASSERT_TEST_SW_P8_WRONG_AES"),
        ("aes-128-cbc", "CERTASSERT_TEST_SW_P8_WRONG_AES128"),
    ] {
        let enc = dir.path().join(format!("{cipher}.pem"));
        encrypt_pkcs8(&key, &enc, cipher, "right", false);
        set_password(var, "wrong");
        let e = open(&format!("file:{}?password-source=env:{var}", s(&enc))).unwrap_err();
        assert!(
            matches!(e, signer::Error::WrongPassword { .. }),
            "{cipher}: {e:?}"
        );
        assert_contains(&e, &["wrong password", s(&enc)]);
    }
}

#[test]
fn missing_password_variable_is_named() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let enc = dir.path().join("enc.pem");
    encrypt_pkcs8(&key, &enc, "aes-256-cbc", "pw", false);
    let var = "CERTASSERT_TEST_SW_NEVER_SET_VARIABLE";
    assert!(std::env::var_os(var).is_none());
    let e = open(&format!("file:{}?password-source=env:{var}", s(&enc))).unwrap_err();
    assert!(matches!(e, signer::Error::Secret { .. }), "{e:?}");
    assert_contains(&e, &[var, "not set"]);
}

/// With no password source and no terminal, an encrypted key is an error, not a prompt.
#[test]
fn encrypted_key_without_password_source_does_not_prompt() {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprintln!("skipped: standard input is a terminal, the loader would prompt");
        return;
    }
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let enc = dir.path().join("enc.pem");
    encrypt_pkcs8(&key, &enc, "aes-256-cbc", "pw", false);
    let e = load_err(&enc);
    assert!(matches!(e, signer::Error::Secret { .. }), "{e:?}");
    assert_contains(&e, &["not a terminal", "password-source=env:VAR"]);

    // The same for a PKCS#12 file whose password is not empty.
    let cert = openssl_cert(dir.path(), &key, "c.pem", "prompt");
    let p12 = dir.path().join("app.pfx");
    openssl(&[
        "pkcs12",
        "-export",
        "-inkey",
        s(&key),
        "-in",
        s(&cert),
        "-passout",
        "pass:pw",
        "-out",
        s(&p12),
    ]);
    let e = open(s(&p12)).expect_err("no password, no terminal");
    assert!(matches!(e, signer::Error::Secret { .. }), "{e:?}");
    assert_contains(&e, &["not a terminal", s(&p12)]);
}

#[test]
fn ec_keys_are_refused_as_not_rsa() {
    let dir = tempdir();
    let d = dir.path();
    let p8 = d.join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        s(&p8),
    ]);
    let sec1 = d.join("ec-sec1.pem");
    openssl(&["ec", "-in", s(&p8), "-out", s(&sec1)]);
    assert!(std::fs::read_to_string(&sec1)
        .unwrap()
        .starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let der = d.join("ec.der");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        s(&p8),
        "-outform",
        "DER",
        "-out",
        s(&der),
    ]);
    // SEC1 DER (`openssl pkey -outform DER` of an EC key) as well.
    let sec1_der = d.join("ec-sec1.der");
    openssl(&[
        "pkey",
        "-in",
        s(&p8),
        "-outform",
        "DER",
        "-out",
        s(&sec1_der),
    ]);
    for path in [&p8, &sec1, &der, &sec1_der] {
        let e = load_err(path);
        assert!(matches!(e, signer::Error::NotRsa { .. }), "{e:?}");
        assert_contains(&e, &["EC", "RSA certificate credentials only", s(path)]);
    }
}

#[test]
fn ed25519_key_is_refused_as_not_rsa() {
    let dir = tempdir();
    let path = dir.path().join("ed.pem");
    openssl(&["genpkey", "-algorithm", "ED25519", "-out", s(&path)]);
    let e = load_err(&path);
    assert!(matches!(e, signer::Error::NotRsa { .. }), "{e:?}");
    assert_contains(&e, &["Ed25519", "RSA certificate credentials only"]);
}

/// An RSASSA-PSS-restricted key (OID 1.2.840.113549.1.1.10) cannot make RS256 signatures
/// or a normal rsaEncryption certificate: refused with advice.
#[test]
fn rsa_pss_only_key_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("pss.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA-PSS",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        s(&path),
    ]);
    let e = load_err(&path);
    assert!(matches!(e, signer::Error::NotRsa { .. }), "{e:?}");
    assert_contains(&e, &["RSASSA-PSS", "create an RSA key"]);
}

#[test]
fn rsa_1024_is_too_small() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 1024);
    let pkcs1 = dir.path().join("k1.pem");
    openssl(&["rsa", "-in", s(&key), "-traditional", "-out", s(&pkcs1)]);
    for path in [&key, &pkcs1] {
        let e = load_err(path);
        assert!(
            matches!(e, signer::Error::KeyTooSmall { bits: 1024, .. }),
            "{e:?}"
        );
        assert_contains(&e, &["1024 bits", "2048"]);
    }
}

#[test]
fn legacy_encrypted_pem_suggests_pkcs8() {
    let dir = tempdir();
    let path = dir.path().join("legacy.pem");
    openssl(&[
        "genrsa",
        "-aes128",
        "-passout",
        "pass:legacy",
        "-traditional",
        "-out",
        s(&path),
        "2048",
    ]);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("Proc-Type: 4,ENCRYPTED"));
    set_password("CERTASSERT_TEST_SW_LEGACY", "legacy");
    for e in [
        load_err(&path),
        open(&format!(
            "file:{}?password-source=env:CERTASSERT_TEST_SW_LEGACY",
            s(&path)
        ))
        .unwrap_err(),
    ] {
        assert!(matches!(e, signer::Error::Format { .. }), "{e:?}");
        assert_contains(&e, &["legacy", "openssl pkcs8 -topk8"]);
    }
}

/// A key or certificate "file" that is a device, a directory or a FIFO is refused without
/// reading (or blocking), and one over 1 MiB without reading past the limit; the refusal
/// is typed (`certassert::input::refusal`) inside the usual `Io` variants.
#[test]
fn special_and_oversized_files_are_refused_typed() {
    use certassert::cert::{self, Certificate};
    use certassert::input::{refusal, FileKind, Limit, Refused};
    let dir = tempdir();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = write(dir.path(), "big.pem", vec![b'a'; 1024 * 1024 + 1]);
    let cases = [
        (
            std::path::Path::new("/dev/zero"),
            Refused::NotRegular {
                kind: FileKind::CharDevice,
            },
        ),
        (
            dir.path(),
            Refused::NotRegular {
                kind: FileKind::Directory,
            },
        ),
        (
            fifo.as_path(),
            Refused::NotRegular {
                kind: FileKind::Fifo,
            },
        ),
    ];
    for (path, expected) in cases {
        let e = load_err(path);
        match &e {
            signer::Error::Io { source, .. } => assert_eq!(refusal(source), Some(&expected)),
            other => panic!("{path:?}: {other:?}"),
        }
        match Certificate::load_chain(path).unwrap_err() {
            cert::Error::Io { source, .. } => assert_eq!(refusal(&source), Some(&expected)),
            other => panic!("{path:?}: {other:?}"),
        }
    }
    let e = load_err(&big);
    assert_contains(&e, &[s(&big), "larger than 1 MiB"]);
    match &e {
        signer::Error::Io { source, .. } => assert_eq!(
            refusal(source),
            Some(&Refused::TooLarge {
                limit: Limit::KEY_FILE
            })
        ),
        other => panic!("{other:?}"),
    }
    let e = Certificate::load_chain(&big).unwrap_err();
    assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
}

/// A wrong password whose decryption happens to end in valid CBC padding (about one in
/// 256) yields garbage that is not a PrivateKeyInfo: that is still a wrong password, not
/// a corrupt file. openssl finds such a password (it then fails in ASN.1, not in "bad
/// decrypt"), so the case is not left to chance.
#[test]
fn wrong_pkcs8_password_that_decrypts_to_garbage_is_a_wrong_password() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let enc = dir.path().join("e.pem");
    encrypt_pkcs8(&key, &enc, "aes-128-cbc", "right", false);
    let garbage = (0..5000)
        .map(|i| format!("wrong{i}"))
        .find(|candidate| {
            let out = crate::common::openssl_output(&[
                "pkcs8",
                "-in",
                s(&enc),
                "-passin",
                &format!("pass:{candidate}"),
            ]);
            let said = String::from_utf8_lossy(&out.stderr);
            !out.status.success() && !said.contains("bad decrypt")
        })
        .expect("a wrong password that decrypts with valid padding");
    set_password("CERTASSERT_TEST_SW_P8_GARBAGE", &garbage);
    let e = open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P8_GARBAGE",
        s(&enc)
    ))
    .unwrap_err();
    assert!(matches!(e, signer::Error::WrongPassword { .. }), "{e:?}");
    assert_contains(&e, &["wrong password", s(&enc)]);
}

/// An encrypted PKCS#8 file whose nested DER lengths run past the data (found by the
/// keyfile fuzz target: picky-asn1-der added a header length to a huge content length
/// and overflowed) is refused as a malformed key file, never a panic.
#[test]
fn encrypted_pkcs8_with_impossible_nested_lengths_is_refused() {
    let dir = tempdir();
    let data = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions/keyfile/epki-nested-length-overflow.der"),
    )
    .unwrap();
    let path = write(dir.path(), "k.der", &data);
    set_password("CERTASSERT_TEST_SW_P8_OVERFLOW", "pw");
    let e = open(&format!(
        "file:{}?password-source=env:CERTASSERT_TEST_SW_P8_OVERFLOW",
        s(&path)
    ))
    .unwrap_err();
    assert!(matches!(e, signer::Error::Format { .. }), "{e:?}");
}
