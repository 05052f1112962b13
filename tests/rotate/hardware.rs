//! `cert rotate` and `cert retire` with keys in hardware, against the emulator: a new key
//! made on the same SoftHSM2 token (its certificate stored beside it), and a new TPM key
//! (a TSS2 key file, and a persistent handle) on a swtpm. Each: rotate, a token with NEW,
//! retire the old, the old refused with AADSTS700027.

use super::cli::{emulator, line, run, token_with};
use crate::common::emulator::certassert;
use crate::common::emulator::AppFiles;
use crate::common::{openssl_fingerprint, tempdir, CLIENT_ID};
use certassert::emulator::Running;
use std::path::Path;
use std::process::Command;

/// The app with `cert` registered (its key somewhere the fixture does not know).
fn registered(dir: &Path, cert: &Path) -> AppFiles {
    AppFiles {
        key: dir.join("unused"),
        cert: cert.to_path_buf(),
        client_id: CLIENT_ID.into(),
    }
}

fn app_flags(cmd: &mut Command, emu: &Running, object_id: &str) {
    cmd.args([
        "--tenant",
        "contoso",
        "--client-id",
        CLIENT_ID,
        "--authority-host",
        emu.url(),
    ])
    .args(["--object-id", object_id]);
}

fn succeeds(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "failed");
    String::from_utf8(out.stdout).unwrap()
}

/// rotate CURRENT → NEW, a token with NEW, retire the old, the old refused.
#[allow(clippy::too_many_arguments)]
fn rotate_and_retire(
    command: impl Fn() -> Command,
    emu: &Running,
    current: &str,
    current_cert: Option<&Path>,
    new: &str,
    out: Option<&Path>,
) -> serde_json::Value {
    let object = emu.apps().remove(0);
    let mut cmd = command();
    cmd.args(["cert", "rotate", "--key", current, "--new-key", new]);
    if let Some(c) = current_cert {
        cmd.arg("--cert").arg(c);
    }
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    app_flags(&mut cmd, emu, &object.object_id);
    let rotated = line(&succeeds(&mut cmd));
    let key_id = rotated["keyId"].as_str().unwrap().to_string();
    assert_eq!(rotated["added"], true);
    assert_eq!(emu.apps()[0].keys.len(), 2);
    assert_eq!(emu.apps()[0].keys[1].0, key_id);
    assert_eq!(
        emu.apps()[0].keys[1].1,
        rotated["thumbprint"].as_str().unwrap()
    );
    let token = |key: &str, cert: Option<&Path>| token_with(command(), emu, key, cert);
    // A token with NEW (its certificate from --out, or stored beside it on the token).
    assert!(token(new, out).status.success());
    // retire the old with NEW's proof.
    let mut cmd = command();
    cmd.args([
        "cert",
        "retire",
        "--key",
        new,
        "--key-id",
        &object.keys[0].0,
        "--force",
    ]);
    if let Some(o) = out {
        cmd.arg("--cert").arg(o);
    }
    app_flags(&mut cmd, emu, &object.object_id);
    succeeds(&mut cmd);
    assert_eq!(emu.apps()[0].keys.len(), 1);
    let refused = token(current, current_cert);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("AADSTS700027"), "{stderr}");
    rotated
}

#[test]
#[cfg(feature = "pkcs11")]
fn softhsm_a_new_key_on_the_same_token() {
    use crate::common::softhsm::SoftHsm;
    let dir = tempdir();
    let hsm = SoftHsm::new(&["--key", "app"]);
    let current_cert = hsm.read_cert("01", dir.path());
    let emu = emulator(&[&registered(dir.path(), &current_cert)], &[], 0);
    let current = hsm.uri("object=app");
    let new = hsm.uri("object=app-next");
    let command = || {
        let mut cmd = certassert(dir.path());
        cmd.env("SOFTHSM2_CONF", hsm.conf());
        cmd
    };
    let rotated = rotate_and_retire(command, &emu, &current, None, &new, None);
    assert_eq!(
        rotated["oldThumbprint"],
        openssl_fingerprint(&current_cert, "sha1").0
    );
    // NEW is on the token, not extractable, with its certificate stored beside it.
    let objects = String::from_utf8(
        hsm.pkcs11_tool(&["--login", "--pin", "env:TEST_PIN", "--list-objects"])
            .stdout,
    )
    .unwrap();
    assert!(objects.contains("app-next"), "{objects}");
    // pkcs11-tool prints each object as a header line and indented attribute lines.
    let mut blocks: Vec<String> = Vec::new();
    for l in objects.lines() {
        match blocks.last_mut() {
            Some(b) if l.starts_with(' ') => {
                b.push('\n');
                b.push_str(l);
            }
            _ => blocks.push(l.to_string()),
        }
    }
    let private = blocks
        .iter()
        .find(|b| b.starts_with("Private Key Object") && b.contains("label:      app-next"))
        .expect("NEW's private key object");
    assert!(private.contains("never extractable"), "{private}");
}

#[test]
#[cfg(feature = "tpm")]
fn swtpm_a_new_key_file_and_a_new_persistent_handle() {
    use crate::common::swtpm::Swtpm;
    let dir = tempdir();
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let current = format!(
        "tpm:key={}?tcti={tcti}",
        dir.path().join("current.tss2.pem").display()
    );
    let current_cert = dir.path().join("current.cert.pem");
    let command = || {
        let mut cmd = certassert(dir.path());
        cmd.env_remove("TPM2TOOLS_TCTI")
            .env_remove("TCTI")
            .env_remove("TPM2OPENSSL_TCTI");
        cmd
    };
    succeeds(command().args(["key", "generate", "--key", &current]));
    succeeds(
        command()
            .args([
                "cert",
                "create",
                "--key",
                &current,
                "--subject",
                "CN=tpm-app",
                "--out",
            ])
            .arg(&current_cert),
    );
    let emu = emulator(&[&registered(dir.path(), &current_cert)], &[], 0);
    // NEW as a TSS2 key file that does not exist yet.
    let new = format!(
        "tpm:key={}?tcti={tcti}",
        dir.path().join("new.tss2.pem").display()
    );
    let new_cert = dir.path().join("new.cert.pem");
    let rotated = rotate_and_retire(
        command,
        &emu,
        &current,
        Some(&current_cert),
        &new,
        Some(&new_cert),
    );
    assert_eq!(
        rotated["thumbprint"],
        openssl_fingerprint(&new_cert, "sha1").0
    );
    let pem = std::fs::read_to_string(dir.path().join("new.tss2.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"), "{pem}");
    // Then from it to a persistent handle nothing is at yet.
    let next = format!("tpm:handle=0x81000020?tcti={tcti}");
    let next_cert = dir.path().join("next.cert.pem");
    rotate_and_retire(
        command,
        &emu,
        &new,
        Some(&new_cert),
        &next,
        Some(&next_cert),
    );
    let handles = tpm.tool("tpm2_getcap", &["handles-persistent"]);
    assert!(String::from_utf8_lossy(&handles.stdout).contains("0x81000020"));
    assert!(
        tpm.transient_handles().is_empty(),
        "no transient object left loaded"
    );
}
