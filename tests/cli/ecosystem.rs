//! The names other tools already use, read the way they read them: azure-identity's
//! `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` and bare-host `AZURE_AUTHORITY_HOST`, libp11's
//! `PKCS11_MODULE_PATH`, tpm2-openssl's `TPM2OPENSSL_TCTI` and tpm2-tss's default TCTI
//! search, systemd's `$CREDENTIALS_DIRECTORY` (`…-source=credential:NAME`); and the
//! messages that once named the wrong thing.

use super::{b64url_json, certassert, fails_cmd, openssl, openssl_verifies, redactions, setup};
use super::{CLIENT, TENANT};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

fn stdout_ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn assertion(dir: &Path) -> Command {
    let mut c = certassert(dir);
    c.args(["assertion", "--key", "k.pem", "--cert", "c.pem"])
        .args(["--tenant", TENANT, "--client-id", CLIENT]);
    c
}

fn header(jwt: &str) -> serde_json::Value {
    b64url_json(jwt.trim().split('.').next().unwrap())
}

#[test]
fn azure_client_send_certificate_chain_sends_x5c() {
    let (_dir, p) = setup();
    let der = openssl(&p, &["x509", "-in", "c.pem", "-outform", "DER"]).stdout;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    for value in ["true", "TRUE", "1"] {
        let jwt = stdout_ok(
            assertion(&p)
                .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", value)
                .output()
                .unwrap(),
        );
        assert_eq!(header(&jwt)["x5c"], serde_json::json!([b64]), "{value}");
        assert!(openssl_verifies(&p, jwt.trim(), "c.pem", false));
    }
    for value in ["false", "0"] {
        let jwt = stdout_ok(
            assertion(&p)
                .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", value)
                .output()
                .unwrap(),
        );
        assert!(header(&jwt).get("x5c").is_none(), "{value}");
    }
    // --x5c wins over a false in the environment.
    let jwt = stdout_ok(
        assertion(&p)
            .arg("--x5c")
            .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "false")
            .output()
            .unwrap(),
    );
    assert!(header(&jwt)["x5c"].is_array());
    fails_cmd(
        assertion(&p).env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "yes please"),
        "ecosystem-send-chain-bad",
        &redactions(&p, &[]),
    );
}

#[test]
fn a_bare_authority_host_means_https() {
    let (_dir, p) = setup();
    for host in ["login.microsoftonline.us", "login.microsoftonline.us/"] {
        let jwt = stdout_ok(
            assertion(&p)
                .env("AZURE_AUTHORITY_HOST", host)
                .output()
                .unwrap(),
        );
        let claims = b64url_json(jwt.trim().split('.').nth(1).unwrap());
        assert_eq!(
            claims["aud"],
            format!("https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token"),
            "{host}"
        );
    }
    // A URL with a scheme is left to the URL policy: plain http to a remote host is refused.
    let out = assertion(&p)
        .env("AZURE_AUTHORITY_HOST", "http://login.example.com")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AZURE_AUTHORITY_HOST"));
}

/// An encrypted PKCS#8 key whose password is in `dir/creds/pass` (mode 0400, as systemd
/// writes credentials).
fn encrypted_key(p: &Path) {
    let creds = p.join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("pass"), "s3cret-Zq7canary\n").unwrap();
    std::fs::set_permissions(creds.join("pass"), std::fs::Permissions::from_mode(0o400)).unwrap();
    openssl(
        p,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "k.pem",
            "-out",
            "k.enc.pem",
            "-passout",
            "file:creds/pass",
        ],
    );
}

#[test]
fn credential_source_reads_systemds_credentials_directory() {
    let (_dir, p) = setup();
    encrypted_key(&p);
    let key = "file:k.enc.pem?password-source=credential:pass";
    let jwt = stdout_ok(
        certassert(&p)
            .args(["assertion", "--key", key, "--cert", "c.pem"])
            .args(["--tenant", TENANT, "--client-id", CLIENT])
            .env("CREDENTIALS_DIRECTORY", p.join("creds"))
            .output()
            .unwrap(),
    );
    assert!(openssl_verifies(&p, jwt.trim(), "c.pem", false));

    let r = redactions(&p, &[]);
    let said = fails_cmd(
        certassert(&p)
            .args(["assertion", "--key", key, "--cert", "c.pem"])
            .args(["--tenant", TENANT, "--client-id", CLIENT])
            .env_remove("CREDENTIALS_DIRECTORY"),
        "ecosystem-credential-no-directory",
        &r,
    );
    assert!(!said.contains("Zq7canary"));
    fails_cmd(
        certassert(&p)
            .args([
                "assertion",
                "--key",
                "file:k.enc.pem?password-source=credential:other",
            ])
            .args(["--cert", "c.pem", "--tenant", TENANT, "--client-id", CLIENT])
            .env("CREDENTIALS_DIRECTORY", p.join("creds")),
        "ecosystem-credential-missing",
        &r,
    );
    fails_cmd(
        certassert(&p)
            .args([
                "assertion",
                "--key",
                "file:k.enc.pem?password-source=credential:../pass",
            ])
            .args(["--cert", "c.pem", "--tenant", TENANT, "--client-id", CLIENT])
            .env("CREDENTIALS_DIRECTORY", p.join("creds")),
        "ecosystem-credential-bad-name",
        &r,
    );
}

#[cfg(feature = "pkcs11")]
#[test]
fn libp11s_pkcs11_module_path_names_the_module_and_credential_gives_the_pin() {
    use super::common::softhsm::{SoftHsm, MODULE, SPY, TOKEN};
    let hsm = SoftHsm::new(&["--key", "app"]);
    let dir = tempfile::tempdir().unwrap();
    let spy_log = dir.path().join("spy.log");
    // No module in the URI and no PKCS11_MODULE: libp11's variable names pkcs11-spy,
    // which forwards to SoftHSM2 and logs every call, so the log proves it was loaded.
    let key = format!("pkcs11:token={TOKEN};object=app?pin-source=credential:pin");
    let out = certassert(dir.path())
        .args(["cert", "show", "--key", &key])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env_remove("PKCS11_MODULE")
        .env("PKCS11_MODULE_PATH", SPY)
        .env("PKCS11SPY", MODULE)
        .env("PKCS11SPY_OUTPUT", &spy_log)
        .env("CREDENTIALS_DIRECTORY", &hsm.dir)
        .output()
        .unwrap();
    let shown = stdout_ok(out);
    assert!(shown.contains("(matches the key)"), "{shown}");
    let log = std::fs::read_to_string(&spy_log).unwrap();
    assert!(
        log.contains("C_Initialize") && log.contains("C_Login"),
        "{log}"
    );
}

#[cfg(feature = "tpm")]
#[test]
fn tpm2openssl_tcti_names_the_tpm() {
    let tpm = super::common::swtpm::Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let public = tpm.tpm2_tools_persistent_key(p, "0x81000007", "rsa2048", None);
    stdout_ok(
        certassert(p)
            .args(["cert", "create", "--key", "tpm:handle=0x81000007"])
            .args(["--subject", "CN=tpm2-openssl", "--out", "c.pem"])
            .env_remove("TPM2TOOLS_TCTI")
            .env_remove("TCTI")
            .env("TPM2OPENSSL_TCTI", tpm.tcti())
            .output()
            .unwrap(),
    );
    // The certificate holds the key tpm2-tools made in that swtpm.
    let from_cert = openssl(p, &["x509", "-in", "c.pem", "-noout", "-pubkey"]).stdout;
    let made = openssl(p, &["pkey", "-pubin", "-in", public.to_str().unwrap()]).stdout;
    assert_eq!(from_cert, made);
}

#[cfg(feature = "tpm")]
#[test]
fn with_no_tcti_the_default_search_says_what_it_tried() {
    if ["/dev/tpmrm0", "/dev/tpm0"]
        .iter()
        .any(|d| Path::new(d).exists())
    {
        eprintln!("this machine has a TPM device: the all-fail message cannot be shown here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = certassert(dir.path())
        .args(["cert", "show", "--key", "tpm:handle=0x81000001"])
        .env_remove("TPM2TOOLS_TCTI")
        .env_remove("TCTI")
        .env_remove("TPM2OPENSSL_TCTI")
        .env("CERTASSERT_DEVICE_TIMEOUT", "10")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // Each candidate, in tpm2-tss's order, with why it was passed over.
    let at = |what: &str| said.find(what).unwrap_or_else(|| panic!("{what}: {said}"));
    assert!(said.contains("tpm2-tss's default search"), "{said}");
    assert!(
        at("tabrmd") < at("device:/dev/tpmrm0")
            && at("device:/dev/tpmrm0") < at("device:/dev/tpm0")
    );
    assert!(said.contains("TPM2TOOLS_TCTI"), "what to set: {said}");
}

// Messages that once named the wrong thing (issue 13 item 8).

#[cfg(feature = "tpm")]
#[test]
fn a_tpm_key_password_off_a_terminal_names_auth_source() {
    let tpm = super::common::swtpm::Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let made = format!(
        "tpm:key=app.tss2.pem?tcti={}&auth-source=env:KEY_PASS",
        tpm.tcti()
    );
    stdout_ok(
        certassert(p)
            .args(["key", "generate", "--key", &made])
            .env("KEY_PASS", "Zq7canary-pass")
            .output()
            .unwrap(),
    );
    // The same key without auth-source=, and no terminal to ask on.
    let key = format!("tpm:key=app.tss2.pem?tcti={}", tpm.tcti());
    let said = fails_cmd(
        certassert(p).args(["cert", "create", "--key", &key, "--subject", "CN=x"]),
        "message-tpm-auth-no-terminal",
        &redactions(p, &[]),
    );
    assert!(
        said.contains("auth-source=") && !said.contains("password-source"),
        "{said}"
    );
}

#[test]
fn a_pfx_from_azure_client_certificate_path_points_to_its_password_variable() {
    let (_dir, p) = setup();
    openssl(
        &p,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "k.pem",
            "-in",
            "c.pem",
            "-out",
            "app.pfx",
            "-passout",
            "pass:Zq7canary-pfx",
        ],
    );
    let r = redactions(&p, &[]);
    let run = |password: Option<&str>, name: &str| {
        let mut c = certassert(&p);
        c.args(["assertion", "--tenant", TENANT, "--client-id", CLIENT])
            .env("AZURE_CLIENT_CERTIFICATE_PATH", "app.pfx");
        if let Some(pw) = password {
            c.env("AZURE_CLIENT_CERTIFICATE_PASSWORD", pw);
        }
        let said = fails_cmd(&mut c, name, &r);
        assert!(said.contains("AZURE_CLIENT_CERTIFICATE_PASSWORD"), "{said}");
        assert!(
            !said.contains("?password-source"),
            "no key reference was written: {said}"
        );
        assert!(!said.contains("Zq7canary"), "{said}");
    };
    run(None, "message-pfx-env-no-password");
    run(Some("wrong"), "message-pfx-env-wrong-password");
    // With the password it works.
    let jwt = stdout_ok(
        certassert(&p)
            .args(["assertion", "--tenant", TENANT, "--client-id", CLIENT])
            .env("AZURE_CLIENT_CERTIFICATE_PATH", "app.pfx")
            .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", "Zq7canary-pfx")
            .output()
            .unwrap(),
    );
    assert!(openssl_verifies(&p, jwt.trim(), "c.pem", false));
}

#[test]
fn an_empty_at_file_value_is_refused_before_anything_is_sent() {
    use super::common::emulator::ChildEmulator;
    let (_dir, p) = setup();
    let reg = format!("{CLIENT}={}", p.join("c.pem").display());
    let emu = ChildEmulator::start(&["--register", &reg]);
    std::fs::write(p.join("empty.jwt"), " \n").unwrap();
    let r = redactions(&p, &[]);
    for (grant, flag) in [
        ("on-behalf-of", "--user-assertion"),
        ("refresh-token", "--refresh-token"),
        ("authorization-code", "--code"),
    ] {
        let mut c = certassert(&p);
        c.args(["token", "--key", "k.pem", "--cert", "c.pem"])
            .args(["--tenant", TENANT, "--client-id", CLIENT])
            .args([
                "--authority-host",
                &emu.url,
                "--no-cache",
                "--scope",
                "api://x/.default",
            ])
            .args([
                "--grant",
                grant,
                flag,
                "@empty.jwt",
                "--redirect-uri",
                "http://localhost/cb",
            ])
            .env("CERTASSERT_CACHE_DIR", p.join("cache"));
        fails_cmd(&mut c, &format!("message-empty-at-file-{grant}"), &r);
    }
    assert_eq!(emu.requests().len(), 0, "nothing was sent");
}

#[test]
fn cert_manifest_graph_prints_graphs_key_credential() {
    let (_dir, p) = setup();
    let out = stdout_ok(
        certassert(&p)
            .args(["cert", "manifest", "--cert", "c.pem", "--graph"])
            .output()
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "customKeyIdentifier",
            "displayName",
            "endDateTime",
            "key",
            "keyId",
            "startDateTime",
            "type",
            "usage"
        ]
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let der = openssl(&p, &["x509", "-in", "c.pem", "-outform", "DER"]).stdout;
    assert_eq!(v["key"], b64.encode(&der));
    assert_eq!(v["type"], "AsymmetricX509Cert");
    assert_eq!(v["usage"], "Verify");
    // customKeyIdentifier: the SHA-1 thumbprint's bytes, as the portal's upload sets it.
    let fp = String::from_utf8(
        openssl(
            &p,
            &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha1"],
        )
        .stdout,
    )
    .unwrap();
    let hex: String = fp.trim().rsplit('=').next().unwrap().replace(':', "");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(v["customKeyIdentifier"], b64.encode(bytes));
    // The dates as openssl reads them, in Graph's ISO 8601 UTC form.
    let dates = |flag: &str| {
        let text = String::from_utf8(
            openssl(
                &p,
                &[
                    "x509", "-in", "c.pem", "-noout", flag, "-dateopt", "iso_8601",
                ],
            )
            .stdout,
        )
        .unwrap();
        let value = text.trim().split_once('=').unwrap().1.to_string();
        value.replace(' ', "T")
    };
    assert_eq!(v["startDateTime"], dates("-startdate"));
    assert_eq!(v["endDateTime"], dates("-enddate"));
    assert_eq!(
        v["displayName"], "CN=cli-test,O=certassert",
        "the subject, as cert create was given it"
    );
    assert_eq!(v["keyId"].as_str().unwrap().len(), 36);
}
