//! Certificates with a software key: typed errors that name no flag, a key that does not
//! match, the validity window, and thumbprints as openssl computes them.

use crate::common::{self, now, openssl_fingerprint, s, tempdir, write};
use crate::{assert_contains, cert_der, genrsa, load, openssl_cert};
use certassert::cert::{self, Certificate};
use certassert::Algorithm;

/// What a certificate file holds instead, and a bad subject or day count, are variants a
/// front end can word its own hint from; the library's text names no flag.
#[test]
fn certificate_errors_are_typed_and_name_no_flag() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let e = Certificate::load_chain(&key).unwrap_err();
    assert!(
        matches!(
            e,
            cert::Error::NoCertificate {
                instead: cert::Instead::PrivateKey,
                ..
            }
        ),
        "{e:?}"
    );
    let text = assert_contains(
        &e,
        &["no CERTIFICATE block", "PRIVATE KEY", "this is a key"],
    );
    assert!(!text.contains("--"), "{text}");

    let signer = load(&key);
    let e = cert::create_self_signed(&signer, Algorithm::Rs256, "my-app", 30, now()).unwrap_err();
    assert!(
        matches!(
            &e,
            cert::Error::Subject {
                reason: cert::SubjectError::NotKeyValue(part),
                ..
            } if part == "my-app"
        ),
        "{e:?}"
    );
    let text = assert_contains(&e, &["KEY=VALUE"]);
    assert!(!text.contains("--"), "{text}");
    let e = cert::create_self_signed(&signer, Algorithm::Rs256, "CN=x", 0, now()).unwrap_err();
    assert!(matches!(e, cert::Error::Days(0)), "{e:?}");
    assert!(!e.to_string().contains("--"), "{e}");
}

#[test]
fn key_certificate_mismatch_names_aadsts700027() {
    let dir = tempdir();
    let key_a = genrsa(dir.path(), "a.pem", 2048);
    let key_b = genrsa(dir.path(), "b.pem", 2048);
    let cert_b = openssl_cert(dir.path(), &key_b, "b-cert.pem", "b");
    let chain = Certificate::load_chain(&cert_b).unwrap();
    let signer_a = load(&key_a);
    let signer_b = load(&key_b);
    chain[0]
        .check_key(&signer_b)
        .expect("b's certificate fits b");
    let e = chain[0].check_key(&signer_a).unwrap_err();
    assert!(matches!(e, cert::Error::KeyMismatch { .. }), "{e:?}");
    let (sha1_hex, _) = openssl_fingerprint(&cert_b, "sha1");
    assert_contains(&e, &["AADSTS700027", &sha1_hex]);
    let e = chain[0].check_usable(&signer_a, now()).unwrap_err();
    assert!(matches!(e, cert::Error::KeyMismatch { .. }), "{e:?}");
}

#[test]
fn certificate_validity_window() {
    let dir = tempdir();
    let signer = load(&genrsa(dir.path(), "k.pem", 2048));
    let now = now();
    let expired =
        cert::create_self_signed(&signer, Algorithm::Rs256, "CN=old", 1, now - 10 * 86_400)
            .unwrap();
    let e = expired.check_validity(now).unwrap_err();
    assert!(matches!(e, cert::Error::Expired { .. }), "{e:?}");
    assert_contains(&e, &["expired", &expired.thumbprint_hex()]);
    assert!(matches!(
        expired.check_usable(&signer, now),
        Err(cert::Error::Expired { .. })
    ));
    // openssl agrees that it is expired.
    let pem = write(dir.path(), "old.pem", expired.to_pem());
    let out = common::openssl_output(&["verify", "-CAfile", s(&pem), s(&pem)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("expired")
            || String::from_utf8_lossy(&out.stderr).contains("expired")
    );

    let future =
        cert::create_self_signed(&signer, Algorithm::Rs256, "CN=new", 30, now + 10 * 86_400)
            .unwrap();
    let e = future.check_validity(now).unwrap_err();
    assert!(matches!(e, cert::Error::NotYetValid { .. }), "{e:?}");
    assert_contains(&e, &["not valid until", "clock"]);

    let soon = cert::create_self_signed(&signer, Algorithm::Ps256, "CN=soon", 10, now).unwrap();
    let warnings = soon.check_usable(&signer, now).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("expires in"), "{warnings:?}");
    let fine = cert::create_self_signed(&signer, Algorithm::Ps256, "CN=fine", 365, now).unwrap();
    assert!(fine.check_usable(&signer, now).unwrap().is_empty());
}

#[test]
fn thumbprints_of_an_openssl_certificate_match_openssl() {
    let dir = tempdir();
    let d = dir.path();
    let key = genrsa(d, "k.pem", 2048);
    let cert = openssl_cert(d, &key, "c.pem", "thumbprint");
    let der_path = write(d, "c.der", cert_der(&cert));
    let (sha1_hex, sha1) = openssl_fingerprint(&cert, "sha1");
    let (sha256_hex, sha256) = openssl_fingerprint(&cert, "sha256");
    assert_eq!(sha1_hex.len(), 40);
    assert_eq!(sha256_hex.len(), 64);
    for path in [&cert, &der_path] {
        let chain = Certificate::load_chain(path).unwrap();
        assert_eq!(chain.len(), 1);
        let c = &chain[0];
        assert_eq!(c.thumbprint_hex(), sha1_hex, "{}", path.display());
        assert_eq!(c.x5t(), common::b64url(&sha1), "{}", path.display());
        assert_eq!(c.x5t_s256(), common::b64url(&sha256), "{}", path.display());
        assert_eq!(c.der(), cert_der(&cert));
    }
    // An independent SHA-256 of the DER agrees too.
    use sha2::Digest as _;
    assert_eq!(sha2::Sha256::digest(cert_der(&cert)).as_slice(), sha256);

    // A chain file keeps its order, leaf first.
    let ca_key = genrsa(d, "ca.key", 2048);
    let ca = openssl_cert(d, &ca_key, "ca.pem", "ca");
    let bundle = write(
        d,
        "chain.pem",
        std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&ca).unwrap(),
    );
    let chain = Certificate::load_chain(&bundle).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].thumbprint_hex(), sha1_hex);
    assert_eq!(
        chain[1].thumbprint_hex(),
        openssl_fingerprint(&ca, "sha1").0
    );
}

/// A serial whose DER INTEGER is negative (the high bit set with no leading zero, as some
/// CAs issue) prints as openssl prints it: a minus sign and the magnitude in hex. Positive
/// serials with the high bit set (a leading zero byte in DER) and small ones print as
/// openssl prints them too.
#[test]
fn serials_print_as_openssl_prints_them() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    for (i, serial) in [
        "-0x8a0102",
        "-0x80",
        "-0x01",
        "-0x7f00ff",
        "-0x100",
        "0x80ff",
        "0x01",
        "0x7fff",
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("c{i}.pem"));
        common::openssl(&[
            "req",
            "-x509",
            "-key",
            s(&key),
            "-out",
            s(&path),
            "-subj",
            "/CN=serial",
            "-days",
            "1",
            "-set_serial",
            serial,
        ]);
        let printed = common::openssl_stdout(&["x509", "-in", s(&path), "-noout", "-serial"]);
        let expected = printed.trim().strip_prefix("serial=").expect("serial=…");
        let cert = &Certificate::load_chain(&path).unwrap()[0];
        assert_eq!(cert.serial_hex(), expected, "serial {serial}");
    }
}

/// keyUsage is read as openssl reads it, and a keyUsage value that is not a DER BIT
/// STRING (openssl shows it as dots and refuses to load the fuzzer's input) is refused
/// when the certificate is parsed, with the extension named — never a panic in
/// `key_usage` (the fuzzer found one: fuzz/regressions/certificate/).
#[test]
fn key_usage_is_read_as_openssl_reads_it_and_a_malformed_one_is_refused() {
    let dir = tempdir();
    let key = genrsa(dir.path(), "k.pem", 2048);
    let make = |i: usize, der_hex: &str| {
        let path = dir.path().join(format!("ku{i}.pem"));
        common::openssl(&[
            "req",
            "-x509",
            "-key",
            s(&key),
            "-out",
            s(&path),
            "-subj",
            "/CN=ku",
            "-days",
            "1",
            "-addext",
            &format!("2.5.29.15=critical,DER:{der_hex}"),
        ]);
        path
    };
    // Well-formed values: the names openssl prints, in its order.
    for (i, (der_hex, names)) in [
        ("03020780", vec!["digitalSignature"]),
        ("030205a0", vec!["digitalSignature", "keyEncipherment"]),
        ("03020106", vec!["keyCertSign", "cRLSign"]),
        ("030100", vec![]),
        ("0303070080", vec!["decipherOnly"]),
    ]
    .into_iter()
    .enumerate()
    {
        let path = make(i, der_hex);
        let cert = &Certificate::load_chain(&path).unwrap_or_else(|e| panic!("{der_hex}: {e}"))[0];
        assert_eq!(cert.key_usage(), Some(names), "keyUsage {der_hex}");
    }
    // Not a DER BIT STRING: no unused-bits byte, more than 7 unused bits, unused bits with
    // no content, a padding bit set, another tag.
    for (i, der_hex) in ["0300", "030108", "030107", "03020201", "0402ffff"]
        .into_iter()
        .enumerate()
    {
        let path = make(100 + i, der_hex);
        let e = Certificate::load_chain(&path).expect_err(der_hex);
        assert!(
            matches!(
                e,
                cert::Error::Extension {
                    name: "keyUsage",
                    ..
                }
            ),
            "{der_hex}: {e:?}"
        );
        assert_contains(&e, &["keyUsage", "BIT STRING"]);
    }
    // The fuzzer's input: an OCTET STRING where the BIT STRING belongs.
    let der = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions/certificate/keyusage-bit-string-underflow.der"),
    )
    .unwrap();
    let e = Certificate::from_der(der).expect_err("the fuzzer's keyUsage");
    assert!(
        matches!(
            e,
            cert::Error::Extension {
                name: "keyUsage",
                ..
            }
        ),
        "{e:?}"
    );
}
