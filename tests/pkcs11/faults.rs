//! The PKCS#11 signer under injected device faults (issue 14): a signing loop with the
//! signer opened once, as a long-running agent holds it, over the fault-injecting proxy
//! module (`shim/faults.c`) in front of SoftHSM2. The proxy fails calls as a removed,
//! reset or failing token would, and counts what the library does, so each test asserts:
//! the signer recovers when the device is back; it never uses a session handle after it
//! was told the session is gone (`stale`); one failure costs at most one PIN
//! presentation (`C_Login`), and a PIN the token rejected is never presented again;
//! while the device is away the error is typed and says so; and every signature that
//! succeeds verifies with the RustCrypto `rsa` crate. Each test runs in its own process
//! (`isolated`) with its own token, proxy and schedule.

use crate::common::softhsm::{isolated, SoftHsm, MODULE, TOKEN};
use crate::common::{rsa_crate_verify, tempdir};
use crate::shim::{Shim, Stats};
use certassert::signer::pkcs11::Pkcs11Error;
use certassert::signer::{self, Error, OpenOptions};
use certassert::{Algorithm, Signer};
use std::time::{Duration, Instant};

/// Open the key through the proxy as an agent does (bounded device calls), once.
fn agent(hsm: &SoftHsm, shim: &Shim) -> Box<dyn Signer> {
    let reference = format!(
        "pkcs11:token={TOKEN};object=app?module-path={}&pin-source=file:{}",
        shim.module.display(),
        hsm.pin_file().display()
    );
    signer::open_with(
        &reference.parse().expect("a pkcs11: reference"),
        &certassert::secret::NoCallbacks,
        &OpenOptions::new().device_timeout(Duration::from_secs(10)),
    )
    .expect("opens through the proxy")
}

/// Sign `message` with `alg`; a signature that comes back must verify (independently).
fn sign(signer: &dyn Signer, alg: Algorithm, message: &[u8]) -> Result<(), Error> {
    let signature = signer.sign(alg, message)?;
    rsa_crate_verify(signer.public_key_der(), alg, message, &signature)
        .unwrap_or_else(|e| panic!("a signature that does not verify: {e}"));
    Ok(())
}

fn sign_ok(signer: &dyn Signer, message: &[u8]) {
    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        sign(signer, alg, message).unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
}

/// The agent's signer after one good signature of each algorithm, and the shim's
/// counters then: what a fault test measures from.
fn warmed(hsm: &SoftHsm, shim: &Shim) -> (Box<dyn Signer>, Stats) {
    let signer = agent(hsm, shim);
    sign_ok(&*signer, b"before");
    (signer, shim.stats())
}

fn delta(shim: &Shim, before: &Stats, name: &str) -> u64 {
    shim.stats().get(name) - before.get(name)
}

/// Run `body` in its own process with token "certassert", key "app" and a proxy built in
/// a temporary directory.
fn with_proxy(test: &str, body: impl FnOnce(&SoftHsm, &Shim)) {
    isolated(
        test,
        |hsm| hsm.keypairgen("app", "01", &[]),
        |hsm| {
            let dir = tempdir();
            let shim = Shim::new(dir.path(), MODULE);
            body(hsm, &shim);
        },
    );
}

fn is_absent(e: &Error) -> bool {
    matches!(e, Error::Pkcs11(Pkcs11Error::TokenAbsent { .. }))
}

/// The token is pulled while the agent signs and put back later: while it is away every
/// signature fails with the typed "token absent" error and no PIN is presented; once it
/// is back the next signature works, after exactly one login, and no dead session handle
/// is ever used again.
#[test]
fn token_pulled_and_put_back_recovers_with_one_login_and_no_stale_handle() {
    with_proxy(
        "faults::token_pulled_and_put_back_recovers_with_one_login_and_no_stale_handle",
        |hsm, shim| {
            let signer = agent(hsm, shim);
            // Two sessions in the pool and a keeper: more dead handles to tempt reuse.
            std::thread::scope(|s| {
                for t in 0..2 {
                    let signer = &*signer;
                    s.spawn(move || sign_ok(signer, format!("warm {t}").as_bytes()));
                }
            });
            sign_ok(&*signer, b"before");
            let before = shim.stats();
            assert_eq!(before.get("stale"), 0);

            shim.schedule("absent\n");
            for i in 0..3 {
                let e = signer
                    .sign(Algorithm::Rs256, format!("away {i}").as_bytes())
                    .expect_err("no token, no signature");
                assert!(is_absent(&e), "{e:?}");
                let text = e.to_string();
                assert!(
                    text.contains(&format!("token \"{TOKEN}\" is not present"))
                        && text.contains("reinsert it"),
                    "{text}"
                );
            }
            assert_eq!(delta(shim, &before, "C_Login"), 0, "a PIN while absent");
            assert_eq!(shim.stats().get("stale"), 0, "{:?}", shim.stats());

            shim.schedule("");
            sign_ok(&*signer, b"after");
            for i in 0..20 {
                sign_ok(&*signer, format!("after {i}").as_bytes());
            }
            let after = shim.stats();
            assert_eq!(after.get("stale"), 0, "{after:?}");
            assert_eq!(
                delta(shim, &before, "C_Login"),
                1,
                "one login after the token came back: {:?}",
                after.since(&before)
            );
        },
    );
}

/// A token that is removed and reinserted between two calls (a reset, a loose reader):
/// C_Sign reports CKR_DEVICE_REMOVED (or CKR_TOKEN_NOT_PRESENT) and every session is gone.
/// The signer opens the token again within the same signature, logs in once, and never
/// touches a dead handle.
#[test]
fn removal_between_calls_is_recovered_within_the_signature() {
    with_proxy(
        "faults::removal_between_calls_is_recovered_within_the_signature",
        |hsm, shim| {
            let (signer, _) = warmed(hsm, shim);
            for rv in ["DEVICE_REMOVED", "TOKEN_NOT_PRESENT"] {
                let before = shim.stats();
                shim.schedule(&format!("fail C_Sign 1 {rv}\n"));
                sign(&*signer, Algorithm::Rs256, rv.as_bytes())
                    .unwrap_or_else(|e| panic!("{rv}: {e}"));
                let grew = shim.stats().since(&before);
                assert_eq!(grew.get("injected"), Some(&1), "{rv}: {grew:?}");
                assert_eq!(grew.get("C_Login"), Some(&1), "{rv}: {grew:?}");
                assert_eq!(shim.stats().get("stale"), 0, "{rv}: {grew:?}");
                sign_ok(&*signer, b"next");
            }
        },
    );
}

/// CKR_SESSION_HANDLE_INVALID: that session is gone; the signature goes on on a new one,
/// with no login (the login is the token's, not the session's).
#[test]
fn an_invalid_session_is_replaced_without_a_login() {
    with_proxy(
        "faults::an_invalid_session_is_replaced_without_a_login",
        |hsm, shim| {
            let (signer, before) = warmed(hsm, shim);
            shim.schedule("fail C_Sign 1 SESSION_HANDLE_INVALID\n");
            sign(&*signer, Algorithm::Ps256, b"m").expect("a new session");
            let grew = shim.stats().since(&before);
            assert_eq!(grew.get("injected"), Some(&1), "{grew:?}");
            assert_eq!(grew.get("C_Login"), None, "{grew:?}");
            assert_eq!(shim.stats().get("stale"), 0, "{grew:?}");
            sign_ok(&*signer, b"after");
            assert_eq!(shim.stats().get("stale"), 0);
        },
    );
}

/// The token forgot the login (CKR_USER_NOT_LOGGED_IN) while eight threads sign: one
/// C_Login, not one per thread — with a wrong PIN, eight would lock a YubiKey twice over.
#[test]
fn a_forgotten_login_under_eight_threads_costs_one_pin() {
    with_proxy(
        "faults::a_forgotten_login_under_eight_threads_costs_one_pin",
        |hsm, shim| {
            let signer = agent(hsm, shim);
            // Eight sessions in the pool.
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (signer, barrier) = (&*signer, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        sign_ok(signer, format!("warm {t}").as_bytes());
                    });
                }
            });
            let before = shim.stats();
            // The first C_Sign logs the token out; the seven others already in flight or
            // still to come meet a token that is not logged in.
            shim.schedule("fail C_Sign 1 USER_NOT_LOGGED_IN\n");
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (signer, barrier) = (&*signer, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for i in 0..5 {
                            let msg = format!("thread {t} signature {i}");
                            sign(signer, Algorithm::Rs256, msg.as_bytes())
                                .unwrap_or_else(|e| panic!("{msg}: {e}"));
                        }
                    });
                }
            });
            let grew = shim.stats().since(&before);
            assert_eq!(grew.get("injected"), Some(&1), "{grew:?}");
            assert_eq!(grew.get("C_Login"), Some(&1), "{grew:?}");
            assert_eq!(shim.stats().get("stale"), 0, "{grew:?}");
        },
    );
}

/// The token forgot the login and then refuses the PIN that worked (changed meanwhile):
/// the error says so, and no later signature presents that PIN again — not one more
/// C_Login, whatever the caller does.
#[test]
fn a_pin_refused_at_login_again_is_never_presented_again() {
    with_proxy(
        "faults::a_pin_refused_at_login_again_is_never_presented_again",
        |hsm, shim| {
            let (signer, before) = warmed(hsm, shim);
            shim.schedule("fail C_Sign 1 USER_NOT_LOGGED_IN\nfail C_Login 1 PIN_INCORRECT\n");
            let e = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
            assert!(
                matches!(e, Error::Pkcs11(Pkcs11Error::WrongPin { .. })),
                "{e:?}"
            );
            assert_eq!(delta(shim, &before, "C_Login"), 1);
            for _ in 0..3 {
                let e = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
                assert!(
                    matches!(e, Error::Pkcs11(Pkcs11Error::WrongPin { .. })),
                    "{e:?}"
                );
                assert!(e.to_string().contains("not presented again"), "{e}");
            }
            assert_eq!(
                delta(shim, &before, "C_Login"),
                1,
                "the refused PIN was presented again: {:?}",
                shim.stats().since(&before)
            );
        },
    );
}

/// CKR_DEVICE_ERROR fails that signature with a typed error that names it; the next
/// signature works, on a fresh session, without a login.
#[test]
fn a_device_error_fails_one_signature_and_the_next_works() {
    with_proxy(
        "faults::a_device_error_fails_one_signature_and_the_next_works",
        |hsm, shim| {
            let (signer, before) = warmed(hsm, shim);
            shim.schedule("fail C_Sign 1 DEVICE_ERROR\n");
            let e = signer.sign(Algorithm::Rs256, b"m").unwrap_err();
            assert!(
                matches!(e, Error::Pkcs11(Pkcs11Error::Sign { .. })),
                "{e:?}"
            );
            let Error::Pkcs11(p) = &e else { unreachable!() };
            assert!(
                matches!(
                    p.cryptoki(),
                    Some(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::DeviceError,
                        _
                    ))
                ),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(text.contains("the device reported an error"), "{text}");
            sign_ok(&*signer, b"after");
            let grew = shim.stats().since(&before);
            assert_eq!(grew.get("C_Login"), None, "{grew:?}");
            assert_eq!(shim.stats().get("stale"), 0, "{grew:?}");
        },
    );
}

/// Slow calls (every call 150 ms late) are waited for, well inside the device timeout.
#[test]
fn slow_calls_are_waited_for() {
    with_proxy("faults::slow_calls_are_waited_for", |hsm, shim| {
        let (signer, _) = warmed(hsm, shim);
        shim.schedule("slow 150\n");
        let start = Instant::now();
        sign(&*signer, Algorithm::Rs256, b"slow").expect("slow, not failed");
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "the proxy did not slow the call: {:?}",
            start.elapsed()
        );
    });
}

/// A signing loop with a fault every seventh C_Sign, cycling through every kind: each
/// signature either verifies or fails with the typed device error; no wrong signature,
/// no stale handle, one login per fault that lost the login, and no session leaks.
#[test]
fn a_signing_loop_under_a_fault_every_seventh_signature() {
    with_proxy(
        "faults::a_signing_loop_under_a_fault_every_seventh_signature",
        |hsm, shim| {
            let (signer, before) = warmed(hsm, shim);
            let live = before.get("live_sessions");
            shim.schedule(
                "every 7 C_Sign DEVICE_REMOVED,SESSION_HANDLE_INVALID,USER_NOT_LOGGED_IN,DEVICE_ERROR,TOKEN_NOT_PRESENT\n",
            );
            let (mut ok, mut failed) = (0, 0);
            for i in 0..140 {
                let alg = if i % 2 == 0 {
                    Algorithm::Rs256
                } else {
                    Algorithm::Ps256
                };
                match sign(&*signer, alg, format!("loop {i}").as_bytes()) {
                    Ok(()) => ok += 1,
                    Err(Error::Pkcs11(e @ Pkcs11Error::Sign { .. }))
                        if matches!(
                            e.cryptoki(),
                            Some(cryptoki::error::Error::Pkcs11(
                                cryptoki::error::RvError::DeviceError,
                                _
                            ))
                        ) =>
                    {
                        failed += 1
                    }
                    Err(e) => panic!("signature {i}: {e:?}"),
                }
            }
            shim.schedule("");
            let grew = shim.stats().since(&before);
            let kind = |rv: &str| grew.get(&format!("injected_{rv}")).copied().unwrap_or(0);
            assert!(grew["injected"] >= 20, "{grew:?}");
            assert_eq!(ok + failed, 140);
            // Only CKR_DEVICE_ERROR reaches the caller (C_Sign is called twice a
            // signature, for the length and the signature, and both can fail).
            assert_eq!(failed as u64, kind("DEVICE_ERROR"), "{grew:?}");
            // Each removal and each lost login costs one login, no more.
            assert_eq!(
                grew.get("C_Login").copied().unwrap_or(0),
                kind("DEVICE_REMOVED") + kind("TOKEN_NOT_PRESENT") + kind("USER_NOT_LOGGED_IN"),
                "{grew:?}"
            );
            assert_eq!(shim.stats().get("stale"), 0, "{grew:?}");
            assert!(
                shim.stats().get("live_sessions") <= live + 1,
                "sessions leak: {live} before, {:?} after",
                shim.stats()
            );
        },
    );
}

/// The proxy's own check, so the `stale` assertions above can fail: a raw cryptoki
/// caller that keeps using a session after a removal was reported is counted, and the
/// first use after the removal is answered CKR_DEVICE_REMOVED.
#[test]
fn the_proxy_counts_a_session_used_after_its_removal_was_reported() {
    with_proxy(
        "faults::the_proxy_counts_a_session_used_after_its_removal_was_reported",
        |_hsm, shim| {
            use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
            use cryptoki::error::{Error as CkError, RvError};
            let ctx = Pkcs11::new(&shim.module).unwrap();
            ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                .unwrap();
            let slot = ctx.get_slots_with_token().unwrap()[0];
            let session = ctx.open_ro_session(slot).unwrap();
            session.get_session_info().unwrap();
            shim.schedule("absent\n");
            assert!(matches!(
                session.get_session_info(),
                Err(CkError::Pkcs11(RvError::DeviceRemoved, _))
            ));
            assert_eq!(shim.stats().get("stale"), 0);
            shim.schedule("");
            assert!(matches!(
                session.get_session_info(),
                Err(CkError::Pkcs11(RvError::SessionHandleInvalid, _))
            ));
            assert_eq!(shim.stats().get("stale"), 1);
            // Handles are never reused: a new session gets a new one.
            let again = ctx.open_ro_session(slot).unwrap();
            again.get_session_info().unwrap();
            assert_eq!(shim.stats().get("live_sessions"), 1);
        },
    );
}

/// Eight threads sign when the token is removed and reinserted under them: every
/// signature still succeeds (each thread's retry finds the token opened again), and the
/// token is opened again with one login, not one per thread.
#[test]
fn a_removal_under_eight_threads_costs_one_login() {
    with_proxy(
        "faults::a_removal_under_eight_threads_costs_one_login",
        |hsm, shim| {
            let signer = agent(hsm, shim);
            let barrier = std::sync::Barrier::new(8);
            let run = |phase: &str| {
                std::thread::scope(|s| {
                    for t in 0..8 {
                        let (signer, barrier) = (&*signer, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            for i in 0..5 {
                                let msg = format!("{phase} thread {t} signature {i}");
                                sign(signer, Algorithm::Ps256, msg.as_bytes())
                                    .unwrap_or_else(|e| panic!("{msg}: {e}"));
                            }
                        });
                    }
                });
            };
            run("warm");
            let before = shim.stats();
            shim.schedule("fail C_Sign 1 DEVICE_REMOVED\n");
            run("removed");
            let grew = shim.stats().since(&before);
            assert_eq!(grew.get("injected"), Some(&1), "{grew:?}");
            assert_eq!(grew.get("removals"), Some(&1), "{grew:?}");
            assert_eq!(grew.get("C_Login"), Some(&1), "{grew:?}");
        },
    );
}

/// The token comes back and refuses the PIN that worked before it was pulled (another
/// card with the same serial, a PIN changed meanwhile): the error says so once, and no
/// later signature presents that PIN again.
#[test]
fn a_pin_refused_after_the_token_came_back_is_never_presented_again() {
    with_proxy(
        "faults::a_pin_refused_after_the_token_came_back_is_never_presented_again",
        |hsm, shim| {
            let signer = agent(hsm, shim);
            sign_ok(&*signer, b"before");
            shim.schedule("absent\n");
            let e = signer.sign(Algorithm::Rs256, b"away").unwrap_err();
            assert!(is_absent(&e), "{e:?}");
            let before = shim.stats();
            shim.schedule("fail C_Login 1 PIN_INCORRECT\n");
            let e = signer.sign(Algorithm::Rs256, b"back").unwrap_err();
            assert!(
                matches!(e, Error::Pkcs11(Pkcs11Error::WrongPin { .. })),
                "{e:?}"
            );
            for _ in 0..3 {
                let e = signer.sign(Algorithm::Rs256, b"again").unwrap_err();
                assert!(e.to_string().contains("not presented again"), "{e}");
            }
            assert_eq!(
                delta(shim, &before, "C_Login"),
                1,
                "{:?}",
                shim.stats().since(&before)
            );
            assert_eq!(shim.stats().get("stale"), 0);
        },
    );
}

/// The token is removed just as the signer looks its key up again after logging in
/// again (the keeper session meets CKR_DEVICE_REMOVED): the keeper is not used again,
/// the token is opened again within the signature, one login for each of the two losses.
#[test]
fn a_removal_met_by_the_keeper_is_recovered_without_a_stale_handle() {
    with_proxy(
        "faults::a_removal_met_by_the_keeper_is_recovered_without_a_stale_handle",
        |hsm, shim| {
            let (signer, before) = warmed(hsm, shim);
            shim.schedule(
                "fail C_Sign 1 USER_NOT_LOGGED_IN\nfail C_FindObjectsInit 1 DEVICE_REMOVED\n",
            );
            sign(&*signer, Algorithm::Rs256, b"m").expect("recovered within the signature");
            sign_ok(&*signer, b"after");
            let grew = shim.stats().since(&before);
            assert_eq!(grew.get("injected"), Some(&2), "{grew:?}");
            assert_eq!(grew.get("C_Login"), Some(&2), "{grew:?}");
            assert_eq!(shim.stats().get("stale"), 0, "{grew:?}");
        },
    );
}
