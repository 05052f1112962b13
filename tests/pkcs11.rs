//! The PKCS#11 backend against real SoftHSM2 tokens, one token directory per test. Keys
//! are made by pkcs11-tool unless the test is about `key generate`; every signature is
//! verified by openssl and/or the RustCrypto `rsa` crate, never by certassert.
#![cfg(feature = "pkcs11")]

mod common;

use certassert::signer::pkcs11::{Pkcs11Error, Pkcs11Signer};

/// Open a `pkcs11:` or `piv:` reference as the library does, with nobody to ask for a PIN.
fn open(reference: &str) -> Result<Pkcs11Signer, Pkcs11Error> {
    let uri = reference
        .parse()
        .unwrap_or_else(|e| panic!("{reference}: {e}"));
    Pkcs11Signer::open(&uri, &certassert::secret::NoCallbacks)
}
use certassert::{Algorithm, Signer};
use common::conformance;
use common::softhsm::{isolated, SoftHsm, MODULE, SPY, TOKEN};
use common::{assert_verifies, b64url_decode, openssl, public_key_pem, s, tempdir, write};
use std::path::Path;

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

// ---- library level (each in its own process: one SoftHSM2 configuration per process) ----

#[test]
fn a_pin_without_pin_source_is_asked_through_the_callbacks_once() {
    isolated(
        "a_pin_without_pin_source_is_asked_through_the_callbacks_once",
        |hsm| hsm.keypairgen("app", "01", &[]),
        |hsm| {
            use std::sync::atomic::Ordering::SeqCst;
            let uri = format!("pkcs11:token={TOKEN};object=app?module-path={MODULE}")
                .parse()
                .unwrap();
            let right = Answer(hsm.pin(), Default::default());
            let signer = Pkcs11Signer::open(&uri, &right).expect("opens with the answered PIN");
            signer.sign(Algorithm::Rs256, b"m").unwrap();
            assert_eq!(right.1.load(SeqCst), 1);
            // Closing the last session logs the token out, so the next open logs in again.
            drop(signer);
            // A wrong answer is presented once and never asked for again.
            let wrong = Answer("00000000".into(), Default::default());
            let e = Pkcs11Signer::open(&uri, &wrong).unwrap_err();
            assert!(matches!(e, Pkcs11Error::WrongPin { .. }), "{e}");
            assert_eq!(wrong.1.load(SeqCst), 1);
            // Nobody to ask: the error names the attribute to add.
            let e = Pkcs11Signer::open(&uri, &certassert::secret::NoCallbacks).unwrap_err();
            assert!(matches!(e, Pkcs11Error::PinNeeded { .. }), "{e}");
        },
    );
}

/// Callbacks that answer every request with one PIN and count the requests.
struct Answer(String, std::sync::atomic::AtomicUsize);

impl certassert::secret::Callbacks for Answer {
    fn request_secret(
        &self,
        request: &certassert::secret::SecretRequest,
    ) -> Option<certassert::secret::Secret> {
        assert_eq!(request.kind, certassert::secret::SecretKind::Pin);
        assert!(request.description.contains(TOKEN), "{request:?}");
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(certassert::secret::Secret::new(self.0.clone()))
    }
}

#[test]
fn conformance_suite_on_a_pkcs11_tool_key() {
    isolated(
        "conformance_suite_on_a_pkcs11_tool_key",
        |hsm| hsm.keypairgen("app", "01", &[]),
        |hsm| {
            let signer = open(&hsm.uri("object=app")).expect("open by label");
            assert_eq!(signer.algorithms(), &[Algorithm::Rs256, Algorithm::Ps256]);
            assert_eq!(signer.id(), &[1]);
            assert!(!signer.always_authenticate());
            assert!(signer.certificate_der().is_none());
            conformance::check(&signer);
        },
    );
}

#[test]
fn always_authenticate_key_logs_in_for_every_signature() {
    isolated(
        "always_authenticate_key_logs_in_for_every_signature",
        |hsm| hsm.keypairgen("aa", "0a", &["--always-auth"]),
        |hsm| {
            let signer = open(&hsm.uri("id=%0a")).expect("open by id");
            assert!(signer.always_authenticate());
            let dir = tempdir();
            let spki = signer.public_key_der().to_vec();
            let pem = public_key_pem(dir.path(), &spki);
            for alg in [Algorithm::Rs256, Algorithm::Ps256] {
                for i in 0..3 {
                    let msg = format!("message {i} for {alg}");
                    let sig = signer.sign(alg, msg.as_bytes()).expect("sign");
                    assert_verifies(
                        dir.path(),
                        &spki,
                        &pem,
                        alg,
                        msg.as_bytes(),
                        &sig,
                        "always-auth",
                    );
                }
            }
        },
    );
}

#[test]
fn token_without_hashing_mechanisms_gets_host_computed_digests() {
    isolated(
        "token_without_hashing_mechanisms_gets_host_computed_digests",
        |hsm| {
            hsm.keypairgen("app", "01", &[]);
            // SoftHSM2 offers only the mechanisms slots.mechanisms lists: raw RSA, no hashing.
            let conf = std::fs::read_to_string(hsm.conf()).unwrap().replace(
                "slots.mechanisms = ALL",
                "slots.mechanisms = CKM_RSA_PKCS,CKM_RSA_PKCS_PSS,CKM_RSA_PKCS_KEY_PAIR_GEN",
            );
            std::fs::write(hsm.conf(), conf).unwrap();
            let listing = stdout(&hsm.pkcs11_tool(&["--list-mechanisms"]));
            assert!(
                !listing.contains("SHA256-RSA-PKCS") && listing.contains("RSA-PKCS-PSS"),
                "{listing}"
            );
        },
        |hsm| {
            let signer = open(&hsm.uri("object=app")).expect("open");
            assert_eq!(signer.algorithms(), &[Algorithm::Rs256, Algorithm::Ps256]);
            // CKM_RSA_PKCS over a DigestInfo and CKM_RSA_PKCS_PSS over a digest must give
            // signatures indistinguishable from the hashing mechanisms'.
            conformance::check(&signer);
        },
    );
}

#[test]
fn signer_logs_in_again_after_the_token_forgot_the_login() {
    isolated(
        "signer_logs_in_again_after_the_token_forgot_the_login",
        |hsm| hsm.keypairgen("app", "01", &[]),
        |hsm| {
            use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
            use cryptoki::object::{Attribute, ObjectClass};
            let signer = open(&hsm.uri("object=app")).expect("open");
            let spki = signer.public_key_der().to_vec();
            signer
                .sign(Algorithm::Rs256, b"before")
                .expect("sign while logged in");
            // Another part of the process logs the application out (C_Logout is per
            // application, not per session), as a card reset or another library would;
            // the handles of private objects die with the login.
            let ctx = Pkcs11::new(MODULE).unwrap();
            let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
            let slot = ctx.get_slots_with_token().unwrap()[0];
            let other = ctx.open_ro_session(slot).unwrap();
            other.logout().expect("log out");
            let private = [Attribute::Class(ObjectClass::PRIVATE_KEY)];
            assert!(
                other.find_objects(&private).unwrap().is_empty(),
                "the logout took effect"
            );
            let sig = signer
                .sign(Algorithm::Rs256, b"after")
                .expect("sign after logout");
            common::rsa_crate_verify(&spki, Algorithm::Rs256, b"after", &sig).unwrap();
            assert_eq!(
                other.find_objects(&private).unwrap().len(),
                1,
                "logged in again"
            );
        },
    );
}

#[test]
fn eight_threads_two_hundred_signatures_each_all_valid() {
    isolated(
        "eight_threads_two_hundred_signatures_each_all_valid",
        |hsm| hsm.keypairgen("app", "01", &[]),
        |hsm| {
            let signer = open(&hsm.uri("object=app")).expect("open");
            let spki = signer.public_key_der().to_vec();
            std::thread::scope(|scope| {
                for t in 0..8 {
                    let (signer, spki) = (&signer, &spki);
                    scope.spawn(move || {
                        for i in 0..200 {
                            let alg = if i % 2 == 0 {
                                Algorithm::Rs256
                            } else {
                                Algorithm::Ps256
                            };
                            let msg = format!("thread {t} signature {i}");
                            let sig = signer.sign(alg, msg.as_bytes()).expect("sign");
                            common::rsa_crate_verify(spki, alg, msg.as_bytes(), &sig)
                                .unwrap_or_else(|e| panic!("thread {t} sig {i}: {e}"));
                        }
                    });
                }
            });
        },
    );
}

#[test]
fn piv_layout_token_signs_through_slot_9c() {
    isolated(
        "piv_layout_token_signs_through_slot_9c",
        |hsm| {
            hsm.keypairgen(
                "Private key for Digital Signature",
                "02",
                &["--always-auth"],
            );
        },
        |hsm| {
            let uri = format!("piv:9c?{}", hsm.query());
            let signer = open(&uri).expect("open piv:9c");
            assert_eq!(signer.id(), &[2]);
            assert_eq!(signer.label(), "Private key for Digital Signature");
            assert!(signer.always_authenticate());
            conformance::check(&signer);
            let e = open(&format!("piv:9a?{}", hsm.query()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("PIV slot 9a holds no key")
                    && e.contains("ykman piv keys generate --algorithm RSA2048 9a"),
                "{e}"
            );
        },
    );
}

// ---- through the CLI, as users run it ----

#[test]
fn pkcs11_tool_key_signs_assertions_by_label_and_by_id() {
    let hsm = SoftHsm::new(&[]);
    hsm.keypairgen("ops-key", "a1b2", &[]);
    let dir = tempdir();
    let by_label = hsm.uri("object=ops-key");
    let out = hsm.certassert(&[
        "cert",
        "create",
        "--key",
        &by_label,
        "--subject",
        "CN=ops",
        "--store",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "--store without --out prints no PEM"
    );
    let cert = hsm.read_cert("a1b2", dir.path());
    // The stored object carries the key's id and label, and the subject.
    let listing = stdout(&hsm.pkcs11_tool(&["--list-objects", "--type", "cert"]));
    assert!(
        listing.contains("label:      ops-key")
            && listing.contains("ID:         a1b2")
            && listing.contains("CN=ops"),
        "{listing}"
    );
    for (key, alg) in [
        (by_label.clone(), "RS256"),
        (hsm.uri("id=%a1%b2"), "RS256"),
        (hsm.uri("id=%a1%b2;type=private"), "PS256"),
    ] {
        assertion_verifies(&hsm, &key, alg, dir.path(), &cert);
    }
    // The smallstep spelling of the id gets the RFC 7512 form suggested.
    let e = failing_assertion(&hsm, &hsm.uri("id=a1b2"));
    assert!(
        e.contains("did you mean id=%a1%b2?") && e.contains("object=ops-key;id=%a1%b2 (RSA 2048)"),
        "{e}"
    );
}

#[test]
fn piv_slot_through_the_cli_with_provisioned_layout() {
    let hsm = SoftHsm::new(&["--piv"]);
    let dir = tempdir();
    let cert = hsm.read_cert("02", dir.path());
    let listing = stdout(&hsm.pkcs11_tool(&["--list-objects", "--type", "cert"]));
    assert!(
        listing.contains("X.509 Certificate for Digital Signature"),
        "{listing}"
    );
    let key = format!("piv:9c?{}", hsm.query());
    for alg in ["RS256", "PS256"] {
        assertion_verifies(&hsm, &key, alg, dir.path(), &cert);
    }
}

#[test]
fn wrong_pin_is_reported_once_and_never_retried() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    let dir = tempdir();
    let wrong = write(dir.path(), "wrong-pin", "00000000");
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let spy_log = dir.path().join("spy.log");
    let key = format!(
        "pkcs11:token={TOKEN};object=app?module-path={SPY}&pin-source=file:{}",
        s(&wrong)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args([
            "assertion",
            "--key",
            &key,
            "--tenant",
            TENANT,
            "--client-id",
            "a",
        ])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("PKCS11SPY", MODULE)
        .env("PKCS11SPY_OUTPUT", &spy_log)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("token \"certassert\" rejected the PIN (not retried)"),
        "{e}"
    );
    assert!(!e.contains("00000000"), "the PIN must not be echoed: {e}");
    // The spy (OpenSC's pkcs11-spy, between certassert and SoftHSM2) saw exactly one login.
    let log = std::fs::read_to_string(&spy_log).expect("pkcs11-spy wrote its log");
    let logins = log.lines().filter(|l| l.contains(": C_Login")).count();
    assert_eq!(logins, 1, "{log}");
    assert!(log.contains("CKR_PIN_INCORRECT"), "{log}");
    assert_eq!(log.matches("C_Sign").count(), 0, "nothing was signed");
    // The right PIN still works afterwards: the token was not locked by guessing.
    let out = hsm.certassert(&[
        "assertion",
        "--key",
        &hsm.uri("object=app"),
        "--tenant",
        TENANT,
        "--client-id",
        "a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn missing_pin_without_a_terminal_is_an_error_not_a_hang() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    let key = format!("pkcs11:token={TOKEN};object=app?module-path={MODULE}");
    let e = failing_assertion(&hsm, &key);
    assert!(
        e.contains("needs its user PIN") && e.contains("pin-source=env:VAR"),
        "{e}"
    );
}

#[test]
fn lookup_errors_list_what_exists() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    let run = |key: &str| failing_assertion(&hsm, key);
    let e = run(&format!(
        "pkcs11:object=app?module-path=/nonexistent/libfoo.so&pin-source=file:{}",
        s(&hsm.pin_file())
    ));
    assert!(
        e.contains("PKCS#11 module /nonexistent/libfoo.so") && e.contains("no such file"),
        "{e}"
    );
    let e = run(&format!("pkcs11:token=nope;object=app?{}", hsm.query()));
    assert!(
        e.contains("no token matches pkcs11:token=nope;object=app")
            && e.contains("token=certassert;manufacturer=SoftHSM%20project"),
        "{e}"
    );
    let e = run(&hsm.uri("object=nope"));
    assert!(
        e.contains("no private key on token \"certassert\" matches")
            && e.contains("object=app;id=%01 (RSA 2048)"),
        "{e}"
    );
    let e = run(&hsm.uri("object=app;type=cert"));
    assert!(
        e.contains("type=cert") && e.contains("needs the private key"),
        "{e}"
    );
    let e = run(&format!("pkcs11:token={TOKEN};objekt=app?{}", hsm.query()));
    assert!(e.contains("unknown path attribute \"objekt\""), "{e}");
    // A PIN given as a literal is used but warned about; it never shows in errors.
    let out = hsm.certassert(&[
        "assertion",
        "--key",
        &format!(
            "pkcs11:token={TOKEN};object=nope?module-path={MODULE}&pin-value={}",
            hsm.pin()
        ),
        "--tenant",
        TENANT,
        "--client-id",
        "a",
    ]);
    let e = stderr(&out);
    assert!(
        e.contains("literal value") && !e.contains(&hsm.pin()),
        "{e}"
    );
}

#[test]
fn generated_keys_are_sensitive_non_extractable_and_never_overwritten() {
    let hsm = SoftHsm::new(&[]);
    let key = hsm.uri("object=made-here");
    let out = hsm.certassert(&["key", "generate", "--key", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        "env:TEST_PIN",
        "--list-objects",
        "--type",
        "privkey",
    ]));
    assert!(listing.contains("label:      made-here"), "{listing}");
    assert!(
        listing.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{listing}"
    );
    assert!(
        listing.contains("Usage:      sign") && !listing.contains("decrypt"),
        "{listing}"
    );
    // The same label again is refused; the first key stays.
    let out = hsm.certassert(&["key", "generate", "--key", &key]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds a private key labelled made-here"),
        "{}",
        stderr(&out)
    );
    // Certificate and CSR through the token, verified by openssl.
    let dir = tempdir();
    let cert = dir.path().join("c.pem");
    let out = hsm.certassert(&[
        "cert",
        "create",
        "--key",
        &key,
        "--subject",
        "CN=made",
        "--store",
        "--out",
        s(&cert),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = common::openssl_stdout(&["verify", "-CAfile", s(&cert), s(&cert)]);
    assert!(v.contains(": OK"), "{v}");
    let csr = dir.path().join("c.csr");
    let out = hsm.certassert(&[
        "cert",
        "csr",
        "--key",
        &key,
        "--subject",
        "CN=made",
        "--alg",
        "PS256",
        "--out",
        s(&csr),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = common::openssl_output(&["req", "-in", s(&csr), "-verify", "-noout"]);
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("verify OK")
            || String::from_utf8_lossy(&v.stdout).contains("verify OK")
    );
    // A second, different certificate is not stored over the first.
    let out = hsm.certassert(&[
        "cert",
        "create",
        "--key",
        &key,
        "--subject",
        "CN=other",
        "--store",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds a different certificate"),
        "{}",
        stderr(&out)
    );
    // And the stored one is what `cert show --key` finds.
    let out = hsm.certassert(&["cert", "show", "--key", &key]);
    assert!(
        stdout(&out).contains("CN=made") && stdout(&out).contains("(matches the key)"),
        "{}",
        stdout(&out)
    );
}
