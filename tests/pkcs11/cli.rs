//! PKCS#11 keys through the CLI, as users run it: assertions by label, id and PIV slot,
//! a wrong PIN tried once (counted by pkcs11-spy), no PIN and no terminal, lookup errors
//! that list what exists, and `key generate` / `cert create --store` on the token.

use crate::common::softhsm::{SoftHsm, MODULE, SPY, TOKEN};
use crate::common::{self, s, tempdir, write};
use crate::{assertion_verifies, failing_assertion, stderr, stdout, TENANT};

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

/// A token that does not return from C_Sign: after a second the command says it is
/// waiting for the token (a touch may be needed), and after CERTASSERT_DEVICE_TIMEOUT it
/// ends with an error naming the module — never a hang, whether or not stderr is a
/// terminal (here it is a pipe).
#[test]
fn a_token_that_does_not_answer_is_waited_for_aloud_then_timed_out() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    let dir = tempdir();
    let shim = crate::shim::build(dir.path());
    let flag = dir.path().join("hang");
    std::fs::write(&flag, "").unwrap();
    let key = format!(
        "pkcs11:token=certassert;object=app?module-path={}&pin-source=file:{}",
        shim.display(),
        s(&hsm.pin_file())
    );
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args([
            "assertion",
            "--key",
            &key,
            "--tenant",
            "t",
            "--client-id",
            "c",
        ])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("CERTASSERT_SHIM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
        .env("CERTASSERT_SHIM_HANG_FILE", &flag)
        .env("CERTASSERT_DEVICE_TIMEOUT", "3")
        .env_remove("CERTASSERT_LOG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run certassert");
    let _ = std::fs::remove_file(&flag);
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("waiting for the token — touch it if it asks"),
        "{said}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("error:") && l.contains(s(&shim))),
        "{said}"
    );
}
