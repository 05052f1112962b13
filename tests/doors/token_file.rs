//! The token file for workload-identity SDKs: `assertion --out FILE [--every SECS]`
//! writes the JWS alone (no newline) to a 0600 file atomically, keeps rewriting it with a
//! new `jti` until SIGTERM/SIGINT and then exits 0 leaving a valid file; it refuses a
//! symbolic link and another user's file. Python azure-identity's and the Rust
//! `azure_identity` crate's `WorkloadIdentityCredential` each get a token from the
//! emulator with it (AZURE_FEDERATED_TOKEN_FILE, the authority host at the emulator).

use crate::common::emulator::certassert;
use crate::common::{self, s};
use crate::{bounded, claims, header, python_json, Setup, CLIENT, GRAPH, TENANT};
use certassert::Algorithm;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Python azure-identity's WorkloadIdentityCredential, configured from the environment
/// alone, as in a pod. argv: scope.
const WORKLOAD_IDENTITY: &str = r#"
import sys, json
from azure.identity import WorkloadIdentityCredential
cred = WorkloadIdentityCredential(disable_instance_discovery=True)
t = cred.get_token(sys.argv[1])
print(json.dumps({"token": t.token, "expires_on": t.expires_on}))
"#;

/// `certassert assertion … --out FILE` with `extra` arguments.
fn assertion_out(setup: &Setup, file: &Path, extra: &[&str]) -> Command {
    let mut cmd = certassert(&setup.dir.path().join("cache"));
    cmd.arg("assertion")
        .args(setup.app.flags(TENANT, &setup.emulator.url))
        .args(["--out", s(file)])
        .args(extra);
    cmd
}

/// One `assertion --out FILE EXTRA` run (at most 20 s).
fn write_once(setup: &Setup, file: &Path, extra: &[&str]) -> std::process::Output {
    bounded(
        &mut assertion_out(setup, file, extra),
        Duration::from_secs(20),
    )
}

/// Wait (at most 10 s) until `file` holds an assertion other than `before`.
fn next_assertion(file: &Path, before: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            if !text.is_empty() && Some(text.as_str()) != before {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} was not (re)written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// SIGTERM (or SIGINT) to `child`, then its exit status, at most 10 s later.
fn stop(child: &mut Child, signal: &str) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the writer did not stop on {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A file that is a valid assertion for the emulator: the JWS alone (no newline, no
/// space), 0600, signed by the app's key (openssl), unexpired, `aud` the token endpoint.
fn check_file(setup: &Setup, file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.ends_with('\n') && !text.contains(char::is_whitespace),
        "{text:?}"
    );
    assert_eq!(text.split('.').count(), 3, "{text}");
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let c = claims(&text);
    assert_eq!(
        c["aud"],
        format!("{}/{TENANT}/oauth2/v2.0/token", setup.emulator.url)
    );
    assert!(c["exp"].as_i64().unwrap() > common::now());
    let dir = setup.dir.path();
    let pubkey = common::openssl_stdout(&["x509", "-in", s(&setup.app.cert), "-noout", "-pubkey"]);
    let pem = common::write(dir, "app.pub.pem", pubkey);
    let (input, sig) = text.rsplit_once('.').unwrap();
    let alg = if header(&text)["alg"] == "PS256" {
        Algorithm::Ps256
    } else {
        Algorithm::Rs256
    };
    assert!(common::openssl_verify(
        dir,
        &pem,
        alg,
        input.as_bytes(),
        &common::b64url_decode(sig)
    ));
    text
}

/// No temporary file left beside `file`.
fn no_leftovers(file: &Path) {
    let dir = file.parent().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

fn token_dir(setup: &Setup) -> PathBuf {
    let dir = setup.dir.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn out_writes_the_jws_alone_0600_and_replaces_it_atomically() {
    let setup = Setup::new(&[]);
    let file = token_dir(&setup).join("token");
    let out = write_once(&setup, &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let first = check_file(&setup, &file);
    assert_eq!(
        claims(&first)["exp"].as_i64().unwrap() - claims(&first)["nbf"].as_i64().unwrap(),
        600
    );
    // A file of ours, even 0644, is replaced by a new 0600 one.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = write_once(&setup, &file, &["--alg", "PS256"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = check_file(&setup, &file);
    assert_ne!(claims(&first)["jti"], claims(&second)["jti"]);
    no_leftovers(&file);
}

#[test]
fn out_refuses_a_symlink_and_another_users_file() {
    let setup = Setup::new(&[]);
    let dir = token_dir(&setup);
    let target = common::write(&dir, "elsewhere", "keep me");
    let link = dir.join("token");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = write_once(&setup, &link, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is a symbolic link; refusing to write through it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    no_leftovers(&link);

    // Another user's file (the tests run as root in CI, so one can be made): refused,
    // left as it was.
    let theirs = common::write(&dir, "theirs", "theirs");
    let chown = Command::new("chown")
        .args(["65534", s(&theirs)])
        .status()
        .unwrap();
    if chown.success() {
        let out = write_once(&setup, &theirs, &[]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is owned by uid 65534, not by this user"),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
        no_leftovers(&theirs);
    } else {
        // Not root: a file another user owns is one we cannot make; say so in the output.
        eprintln!("skipped the other-user case: chown needs root");
    }
}

#[test]
fn every_rewrites_with_new_jtis_until_sigterm_then_exits_0_leaving_a_valid_file() {
    let setup = Setup::new(&[]);
    let file = token_dir(&setup).join("token");
    for signal in ["-TERM", "-INT"] {
        let mut child = assertion_out(&setup, &file, &["--every", "1", "--lifetime", "601"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let first = next_assertion(&file, None);
        let second = next_assertion(&file, Some(&first));
        assert_ne!(claims(&first)["jti"], claims(&second)["jti"]);
        let status = stop(&mut child, signal);
        assert_eq!(status.code(), Some(0), "{signal}: {status:?}");
        let last = check_file(&setup, &file);
        assert_eq!(
            claims(&last)["exp"].as_i64().unwrap() - claims(&last)["nbf"].as_i64().unwrap(),
            601
        );
        no_leftovers(&file);
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn every_defaults_to_300_s_and_a_1200_s_lifetime() {
    let setup = Setup::new(&[]);
    let file = token_dir(&setup).join("token");
    let mut child = assertion_out(&setup, &file, &["--every"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let text = next_assertion(&file, None);
    let c = claims(&text);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["nbf"].as_i64().unwrap(),
        1200
    );
    assert_eq!(stop(&mut child, "-TERM").code(), Some(0));
}

#[test]
fn python_azure_identity_workload_identity_credential_gets_a_token_from_the_file() {
    let setup = Setup::new(&[]);
    let file = token_dir(&setup).join("token");
    let mut child = assertion_out(&setup, &file, &["--every"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let written = next_assertion(&file, None);
    let out = python_json(
        setup
            .python()
            .env("AZURE_FEDERATED_TOKEN_FILE", &file)
            .env("AZURE_AUTHORITY_HOST", &setup.emulator.url)
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT),
        WORKLOAD_IDENTITY,
        &[GRAPH],
    );
    assert_eq!(claims(out["token"].as_str().unwrap())["appid"], CLIENT);
    // What the SDK sent is the file's content, byte for byte.
    let posts = setup.token_requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let sent = posts[0]["form"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "client_assertion")
        .unwrap()[1]
        .clone();
    assert_eq!(sent, written.as_str());
    assert_eq!(stop(&mut child, "-TERM").code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_azure_identity_workload_identity_credential_gets_a_token_from_the_file() {
    use azure_core::credentials::TokenCredential as _;
    use azure_identity::{WorkloadIdentityCredential, WorkloadIdentityCredentialOptions};
    let setup = Setup::new(&[]);
    let file = token_dir(&setup).join("token");
    let mut child = assertion_out(&setup, &file, &["--every"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let written = next_assertion(&file, None);
    let options = WorkloadIdentityCredentialOptions {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        token_file_path: Some(file.clone()),
        credential_options: azure_identity::ClientAssertionCredentialOptions {
            client_options: crate::rust_sdk_options(&setup),
        },
    };
    let credential = WorkloadIdentityCredential::new(Some(options)).unwrap();
    let token = credential.get_token(&[GRAPH], None).await.unwrap();
    assert_eq!(claims(token.token.secret())["appid"], CLIENT);
    assert_eq!(
        claims(token.token.secret())["aud"],
        "https://graph.microsoft.com"
    );
    let posts = setup.token_requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let sent = posts[0]["form"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "client_assertion")
        .unwrap()[1]
        .clone();
    assert_eq!(sent, written.as_str());
    assert_eq!(stop(&mut child, "-TERM").code(), Some(0));
}

/// The token file signed in an HSM: a SoftHSM2 key made by pkcs11-tool, `assertion
/// --every` keeping the file fresh, Python azure-identity's WorkloadIdentityCredential
/// getting a token with it.
#[cfg(feature = "pkcs11")]
#[test]
fn a_softhsm2_key_keeps_the_token_file_for_python_azure_identity() {
    use crate::common::emulator::ChildEmulator;
    use crate::common::softhsm::SoftHsm;
    let hsm = SoftHsm::new(&[]);
    hsm.keypairgen("app", "01", &[]);
    let cert = hsm.dir.join("app.cert.pem");
    let key = hsm.uri("object=app");
    let out = hsm.certassert(&[
        "cert",
        "create",
        "--key",
        &key,
        "--subject",
        "CN=app",
        "--store",
        "--out",
        s(&cert),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca = hsm.dir.join("ca.pem");
    let register = format!("{CLIENT}={}", s(&cert));
    let emulator = ChildEmulator::start(&[
        "--register",
        &register,
        "--tls",
        "--ca-out",
        s(&ca),
        "--tenant",
        TENANT,
    ]);
    let file = hsm.dir.join("token");
    let mut writer = Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args([
            "assertion",
            "--key",
            &key,
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ])
        .args([
            "--authority-host",
            &emulator.url,
            "--alg",
            "PS256",
            "--out",
            s(&file),
            "--every",
        ])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env_remove("CERTASSERT_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let written = next_assertion(&file, None);
    assert_eq!(header(&written)["alg"], "PS256");
    let mut python = Command::new(common::python::python());
    python
        .env("SSL_CERT_FILE", &ca)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("AZURE_FEDERATED_TOKEN_FILE", &file)
        .env("AZURE_AUTHORITY_HOST", &emulator.url)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT);
    common::without_proxies(&mut python);
    let token = python_json(&mut python, WORKLOAD_IDENTITY, &[GRAPH]);
    assert_eq!(claims(token["token"].as_str().unwrap())["appid"], CLIENT);
    assert_eq!(stop(&mut writer, "-TERM").code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}
