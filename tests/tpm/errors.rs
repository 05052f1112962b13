//! Key passwords (right, wrong, missing, asked through the callbacks, dictionary-attack
//! lockout), missing handles, foreign and non-TSS2 key files, and unreachable TPMs: each
//! fails with a message that says what to do, in the library and through the CLI.

use crate::common::swtpm::Swtpm;
use crate::common::{self, openssl, tempdir, write};
use crate::{cli_fails, cli_ok, generate, key_ref, open, open_err, secret_file, signs_both};
use certassert::secret::NoCallbacks;
use certassert::signer::{self, tpm::TpmError, tpm::TpmSigner};
use certassert::{Algorithm, Signer};
use std::path::Path;

/// Callbacks that answer every request with one secret and record what was asked.
struct Answer {
    secret: String,
    asked: std::sync::Mutex<Vec<certassert::secret::SecretKind>>,
}

impl Answer {
    fn new(secret: &str) -> Self {
        Self {
            secret: secret.into(),
            asked: Default::default(),
        }
    }

    fn requests(&self) -> Vec<certassert::secret::SecretKind> {
        self.asked.lock().unwrap().clone()
    }
}

impl certassert::secret::Callbacks for Answer {
    fn request_secret(
        &self,
        request: &certassert::secret::SecretRequest,
    ) -> Option<certassert::secret::Secret> {
        self.asked.lock().unwrap().push(request.kind);
        Some(certassert::secret::Secret::new(self.secret.clone()))
    }
}

#[test]
fn passwords_missing_handles_and_unreachable_tpms_fail_clearly() {
    let mut tpm = Swtpm::start();
    // This test makes several wrong-password attempts on purpose; swtpm's default of 3
    // tries would lock the TPM before the end (that lockout is checked last).
    tpm.tool(
        "tpm2_dictionarylockout",
        &["-s", "-n", "32", "-t", "600", "-l", "600"],
    );
    let dir = tempdir();
    let d = dir.path();
    let good = secret_file(d, "good", "correct horse");
    let bad = secret_file(d, "bad", "wrong horse");
    let key = d.join("locked.tss2.pem");
    let with = |pass: &Path| {
        format!(
            "tpm:key={}?tcti={}&auth-source=file:{}",
            key.display(),
            tpm.tcti(),
            pass.display()
        )
    };
    let signer = generate(&with(&good).parse().unwrap(), 2048, None).unwrap();
    signs_both(signer.as_ref(), "password key, right password");
    drop(signer);

    // Wrong password: the TPM refuses at the first signature.
    let signer = open(&with(&bad));
    let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err().to_string();
    assert!(
        err.contains("wrong password for the TSS2 key file") && err.contains("auth-source"),
        "{err}"
    );
    drop(signer);
    // No password given for a key that has one: refused before the TPM is asked.
    let err = open_err(&key_ref(&tpm, &format!("key={}", key.display())));
    assert!(
        err.contains("has a password") && err.contains("auth-source="),
        "{err}"
    );
    // ... unless the caller's callbacks can ask: then they are asked, once, for the
    // key's authorization (auth-source=, not password-source=).
    let no_source: certassert::keyref::TpmUri = key_ref(&tpm, &format!("key={}", key.display()))
        .parse()
        .unwrap();
    let asked = Answer::new("correct horse");
    let signer = TpmSigner::open(&no_source, &asked).expect("opens with the answered password");
    signs_both(&signer, "password asked through the callbacks");
    assert_eq!(
        asked.requests(),
        vec![certassert::secret::SecretKind::TpmAuth]
    );
    drop(signer);
    // The same through the CLI, with no libtss2 log lines.
    tpm.tpm2_tools_persistent_key(d, "0x81000010", "rsa2048", None);
    cli_ok(
        &tpm,
        d,
        &[
            "cert",
            "create",
            "--key",
            &with(&good),
            "--subject",
            "CN=x",
            "--out",
            "c.pem",
        ],
    );
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &with(&bad),
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "wrong password",
    );

    // A persistent key with a password (tpm2_create -p): right, wrong and missing.
    tpm.tpm2_tools_persistent_key_with_password(
        d,
        "0x81000011",
        "rsa2048",
        None,
        Some("correct horse"),
    );
    let handle_with = |pass: &Path| {
        format!(
            "tpm:handle=0x81000011?tcti={}&auth-source=file:{}",
            tpm.tcti(),
            pass.display()
        )
    };
    signs_both(
        &open(&handle_with(&good)),
        "persistent key with its password",
    );
    let err = open(&handle_with(&bad))
        .sign(Algorithm::Ps256, b"m")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong password for the persistent handle 0x81000011")
            && err.contains("check the secret named by ?auth-source="),
        "{err}"
    );
    let err = open(&key_ref(&tpm, "handle=0x81000011"))
        .sign(Algorithm::Rs256, b"m")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong password") && err.contains("add ?auth-source="),
        "{err}"
    );

    // Missing handle; the TSS error is kept as the source.
    let missing: certassert::keyref::TpmUri = key_ref(&tpm, "handle=0x81000099").parse().unwrap();
    match TpmSigner::open(&missing, &NoCallbacks) {
        Err(signer::Error::Tpm(e @ TpmError::NoPersistentKey { .. })) => {
            assert!(e.tss().is_some(), "{e:?}");
        }
        other => panic!("expected NoPersistentKey, got {other:?}"),
    }
    let err = open_err(&key_ref(&tpm, "handle=0x81000099"));
    assert!(
        err.contains("no key is persisted at handle 0x81000099")
            && err.contains("tpm2_getcap handles-persistent"),
        "{err}"
    );
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &key_ref(&tpm, "handle=0x81000099"),
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "no key is persisted at handle 0x81000099",
    );

    // A key file from another TPM.
    let other = Swtpm::start();
    let foreign = d.join("foreign.tss2.pem");
    drop(
        generate(
            &key_ref(&other, &format!("key={}", foreign.display()))
                .parse()
                .unwrap(),
            2048,
            None,
        )
        .unwrap(),
    );
    let err = open_err(&key_ref(&tpm, &format!("key={}", foreign.display())));
    assert!(err.contains("another TPM"), "{err}");

    // Not a key file / not a TSS2 key.
    let not_tss = write(
        d,
        "plain.pem",
        openssl(&["genpkey", "-algorithm", "RSA"]).stdout,
    );
    let err = open_err(&key_ref(&tpm, &format!("key={}", not_tss.display())));
    assert!(
        err.contains("TSS2 PRIVATE KEY") && err.contains("found: PRIVATE KEY"),
        "{err}"
    );

    assert_eq!(
        tpm.transient_handles(),
        Vec::<String>::new(),
        "error paths flush"
    );

    // Dictionary-attack lockout: even the right password is refused, and the message says
    // so instead of "wrong password".
    tpm.tool(
        "tpm2_dictionarylockout",
        &["-s", "-n", "1", "-t", "600", "-l", "600"],
    );
    let _ = open(&handle_with(&bad)).sign(Algorithm::Rs256, b"m");
    let err = open(&handle_with(&good))
        .sign(Algorithm::Rs256, b"m")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dictionary-attack lockout") && err.contains("--clear-lockout"),
        "{err}"
    );

    // Bad TCTI text, then an unreachable TPM.
    let err = open_err("tpm:handle=0x81000010?tcti=bogus:thing");
    assert!(err.contains("not understood"), "{err}");
    let tcti = tpm.tcti();
    tpm.stop();
    let err = open_err(&format!("tpm:handle=0x81000010?tcti={tcti}"));
    assert!(
        err.contains(&format!(
            "cannot connect to the TPM through TCTI \"{tcti}\""
        )) && err.contains("is the TPM (or swtpm) running"),
        "{err}"
    );
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &format!("tpm:handle=0x81000010?tcti={tcti}"),
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "cannot connect to the TPM",
    );
}

/// Out of object slots (TPM_RC_OBJECT_MEMORY): the message says that other processes (or
/// a killed one, on a TPM without a resource manager) may hold the slots and how to clear
/// them — not that certassert leaks. swtpm without a resource manager has 3 slots.
#[test]
fn full_object_slots_say_who_may_hold_them() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("k.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    drop(generate(&uri.parse().unwrap(), 2048, None).unwrap());
    // Other processes fill the slots: tpm2-tools leaves each primary loaded on a raw TPM.
    let ctx = dir.path().join("p.ctx");
    let mut full = false;
    for _ in 0..8 {
        let out = tpm
            .command("tpm2_createprimary")
            .args(["-C", "o", "-G", "ecc", "-Q", "-c"])
            .arg(&ctx)
            .output()
            .unwrap();
        if !out.status.success() {
            full = true;
            break;
        }
    }
    assert!(full, "tpm2_createprimary never ran out of slots");
    let err = open_err(&uri);
    assert!(
        err.contains("TPM_RC_OBJECT_MEMORY")
            && err.contains("other processes may be holding")
            && err.contains("tpm2_flushcontext -t"),
        "{err}"
    );
    assert!(!err.contains("leaves transient objects"), "{err}");
    tpm.flush_transients();
    signs_both(&open(&uri), "after the slots were cleared");
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}
