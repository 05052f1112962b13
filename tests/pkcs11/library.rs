//! The PKCS#11 signer as a library caller uses it: PINs asked through the callbacks,
//! the conformance suite (also on a token without hashing mechanisms and in the PIV
//! layout), always-authenticate keys, a login the token forgot, eight threads at once.
//! Each test runs in its own process (`isolated`): one SoftHSM2 configuration per
//! process.

use crate::common::softhsm::{isolated, MODULE, TOKEN};
use crate::common::{self, assert_verifies, conformance, public_key_pem, tempdir};
use crate::{open, stdout};
use certassert::signer::pkcs11::{Pkcs11Error, Pkcs11Signer};
use certassert::{Algorithm, Signer};

#[test]
fn a_pin_without_pin_source_is_asked_through_the_callbacks_once() {
    isolated(
        "library::a_pin_without_pin_source_is_asked_through_the_callbacks_once",
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
        "library::conformance_suite_on_a_pkcs11_tool_key",
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
        "library::always_authenticate_key_logs_in_for_every_signature",
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
        "library::token_without_hashing_mechanisms_gets_host_computed_digests",
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
        "library::signer_logs_in_again_after_the_token_forgot_the_login",
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
        "library::eight_threads_two_hundred_signatures_each_all_valid",
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
        "library::piv_layout_token_signs_through_slot_9c",
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

/// A module whose C_Sign never returns does not block the caller: the signature fails
/// with the device timeout naming the module, later calls fail at once instead of
/// queueing, and once the module returns the signer works again.
#[test]
fn a_module_that_hangs_in_c_sign_times_out_and_recovers() {
    isolated(
        "library::a_module_that_hangs_in_c_sign_times_out_and_recovers",
        |hsm| hsm.keypairgen("app", "01", &[]),
        |hsm| {
            use std::time::{Duration, Instant};
            let dir = tempdir();
            let shim = crate::shim::build(dir.path());
            let flag = dir.path().join("hang");
            // This process runs this one test only (see `isolated`), on one thread.
            std::env::set_var("CERTASSERT_SHIM_MODULE", MODULE);
            std::env::set_var("CERTASSERT_SHIM_HANG_FILE", &flag);
            let reference = format!(
                "pkcs11:token={TOKEN};object=app?module-path={}&pin-source=file:{}",
                shim.display(),
                hsm.pin_file().display()
            );

            // Control: the backend alone, unbounded, hangs while the module does.
            let raw = std::sync::Arc::new(open(&reference).expect("opens through the shim"));
            raw.sign(Algorithm::Rs256, b"m").unwrap();
            std::fs::write(&flag, b"").unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let hung = std::sync::Arc::clone(&raw);
            std::thread::spawn(move || tx.send(hung.sign(Algorithm::Rs256, b"m").is_ok()));
            assert!(
                rx.recv_timeout(Duration::from_secs(2)).is_err(),
                "the shim did not hang: the control is meaningless"
            );
            std::fs::remove_file(&flag).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
            drop(raw);

            let options =
                certassert::signer::OpenOptions::new().device_timeout(Duration::from_secs(1));
            let signer = certassert::signer::open_with(
                &reference.parse().unwrap(),
                &certassert::secret::NoCallbacks,
                &options,
            )
            .unwrap();
            let sig = signer.sign(Algorithm::Ps256, b"before").unwrap();
            common::rsa_crate_verify(signer.public_key_der(), Algorithm::Ps256, b"before", &sig)
                .unwrap();
            std::fs::write(&flag, b"").unwrap();
            let start = Instant::now();
            let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
            let waited = start.elapsed();
            assert!(
                matches!(err, certassert::signer::Error::DeviceTimeout { .. }),
                "{err:?}"
            );
            assert!(
                waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
                "{waited:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "the PKCS#11 module {} did not return from C_Sign within 1 s",
                    shim.display()
                )) && text.contains("touch the token if it asks, or check the device"),
                "{text}"
            );
            let start = Instant::now();
            let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
            assert!(
                matches!(err, certassert::signer::Error::DeviceStuck { .. }),
                "{err:?}"
            );
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "did not fail fast"
            );

            std::fs::remove_file(&flag).unwrap();
            // Each try is bounded by the 1 s timeout, which a loaded machine may exceed.
            let deadline = Instant::now() + Duration::from_secs(15);
            let sig = loop {
                match signer.sign(Algorithm::Rs256, b"after") {
                    Ok(sig) => break sig,
                    Err(
                        certassert::signer::Error::DeviceStuck { .. }
                        | certassert::signer::Error::DeviceTimeout { .. },
                    ) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => panic!("after the module returned: {e}"),
                }
            };
            common::rsa_crate_verify(signer.public_key_der(), Algorithm::Rs256, b"after", &sig)
                .unwrap();
        },
    );
}
