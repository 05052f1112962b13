//! The software backend against key files made by the openssl CLI (never by certassert),
//! in every format it reads, run through the shared conformance suite; and every bad
//! input a user is likely to hand it, each with the message they should see.

mod common;

use certassert::cert::{self, Certificate};
use certassert::keyref::KeyRef;
use certassert::signer::{self, generate_software_key, SoftwareSigner};
use certassert::{Algorithm, Signer};
use common::conformance::check;
use common::{now, openssl, openssl_fingerprint, openssl_stdout, s, tempdir, write};
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

// ---------------------------------------------------------------- formats that load

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

/// The suite's verifiers are strict: a PSS signature with any salt length other than 32
/// is refused by both, one with 32 is accepted, and openssl's own RS256 is accepted.
#[test]
fn conformance_verifiers_are_strict_about_the_pss_salt() {
    let dir = tempdir();
    let d = dir.path();
    let key = genrsa(d, "k.pem", 2048);
    let spki = openssl_spki(&key, &[]);
    let pub_pem = common::public_key_pem(d, &spki);
    let msg = write(d, "m", b"header.payload");
    let sign = |name: &str, opts: &[&str]| {
        let sig = d.join(name);
        let mut args = vec!["dgst", "-sha256", "-sign", s(&key), "-out", s(&sig)];
        args.extend_from_slice(opts);
        args.push(s(&msg));
        openssl(&args);
        std::fs::read(&sig).unwrap()
    };
    let rs = sign("rs.sig", &[]);
    common::assert_verifies(
        d,
        &spki,
        &pub_pem,
        Algorithm::Rs256,
        b"header.payload",
        &rs,
        "RS256",
    );
    let pss = |len: &str| {
        let saltlen = format!("rsa_pss_saltlen:{len}");
        sign(
            &format!("ps-{len}.sig"),
            &["-sigopt", "rsa_padding_mode:pss", "-sigopt", &saltlen],
        )
    };
    let ok = pss("32");
    common::assert_verifies(
        d,
        &spki,
        &pub_pem,
        Algorithm::Ps256,
        b"header.payload",
        &ok,
        "salt 32",
    );
    for len in ["20", "0", "max", "33"] {
        let sig = pss(len);
        common::assert_rejected(
            d,
            &spki,
            &pub_pem,
            Algorithm::Ps256,
            b"header.payload",
            &sig,
            &format!("salt {len}"),
        );
    }
}

/// A broken backend: signs every PS256 request as RS256 and vice versa.
#[derive(Debug)]
struct Swapped(SoftwareSigner);

impl Signer for Swapped {
    fn algorithms(&self) -> &[Algorithm] {
        self.0.algorithms()
    }
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, signer::Error> {
        let other = match alg {
            Algorithm::Rs256 => Algorithm::Ps256,
            Algorithm::Ps256 => Algorithm::Rs256,
        };
        self.0.sign(other, message)
    }
    fn public_key_der(&self) -> &[u8] {
        self.0.public_key_der()
    }
}

/// The suite fails a backend that gets the padding wrong.
#[test]
#[should_panic(expected = "rejects the RS256 signature")]
fn conformance_suite_fails_a_broken_backend() {
    let pkcs8 = generate_software_key(2048).expect("generate");
    check(&Swapped(SoftwareSigner::from_pkcs8_der(&pkcs8).unwrap()));
}

// ---------------------------------------------------------------- bad inputs

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

// ---------------------------------------------------------------- certificates

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
