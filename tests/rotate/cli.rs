//! `certassert cert rotate` / `cert retire` end to end with software keys against the
//! in-process emulator: rotate with a profile, a token with NEW, retire the old, the old
//! refused with AADSTS700027; the `--if-expires-within` no-op; a re-run after a failure
//! between addKey and the proof of NEW; retire's refusal to lock the app out; CURRENT
//! expired. Thumbprints are openssl's.

use crate::common::emulator::{certassert, AppFiles};
use crate::common::{openssl_fingerprint, tempdir, CLIENT_ID};
use certassert::emulator::{self, Config, Running};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub fn emulator(apps: &[&AppFiles], roles: &[&str], propagation: u32) -> Running {
    emulator::start(Config {
        apps: apps.iter().map(|a| a.registration()).collect(),
        tenant: Some("contoso".into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        graph_propagation: propagation,
        ..Config::default()
    })
    .expect("the emulator starts")
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("certassert runs");
    eprintln!(
        "{cmd:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ok(cmd: &mut Command) -> (String, String) {
    let out = run(cmd);
    assert!(out.status.success(), "failed");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "expected a failure");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    String::from_utf8(out.stderr).unwrap()
}

/// The one JSON line rotate prints.
pub fn line(stdout: &str) -> Value {
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    serde_json::from_str(stdout).unwrap()
}

pub fn write_profile(dir: &Path, emu: &Running, key: &str, cert: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "# rotated by a timer\n[profile.prod]\nkey = \"{key}\"\ncert = \"{}\"\ntenant = \"contoso\"\nclient_id = \"{CLIENT_ID}\"\nauthority_host = \"{}\"\n",
            cert.display(),
            emu.url()
        ),
    )
    .unwrap();
    path
}

/// A token for a test API with the key and certificate given, as a user would ask.
pub fn token(dir: &Path, emu: &Running, key: &str, cert: Option<&Path>) -> Output {
    token_with(certassert(dir), emu, key, cert)
}

/// [`token`], run as `cmd` (the binary with the environment a backend needs).
pub fn token_with(mut cmd: Command, emu: &Running, key: &str, cert: Option<&Path>) -> Output {
    cmd.args([
        "token",
        "--key",
        key,
        "--tenant",
        "contoso",
        "--client-id",
        CLIENT_ID,
    ])
    .args([
        "--authority-host",
        emu.url(),
        "--scope",
        "api://test/.default",
        "--no-cache",
    ]);
    if let Some(c) = cert {
        cmd.arg("--cert").arg(c);
    }
    run(&mut cmd)
}

/// `cert rotate` from `key` with `cert` to new.key.pem and new.cert.pem in `dir`, for the
/// app whose object id is `object_id` in `emu`.
fn rotate_cmd(dir: &Path, emu: &Running, key: &Path, cert: &Path, object_id: &str) -> Command {
    let mut cmd = certassert(dir);
    cmd.args(["cert", "rotate", "--key"])
        .arg(key)
        .arg("--cert")
        .arg(cert)
        .arg("--new-key")
        .arg(dir.join("new.key.pem"))
        .arg("--out")
        .arg(dir.join("new.cert.pem"))
        .args(["--object-id", object_id])
        .args(["--tenant", "contoso", "--client-id", CLIENT_ID])
        .args(["--authority-host", emu.url()]);
    cmd
}

fn addkey_requests(emu: &Running) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.path.ends_with("/addKey"))
        .count()
}

#[test]
fn rotate_with_a_profile_then_retire_the_old() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let emu = emulator(&[&current], &[], 0);
    let object = emu.apps().remove(0);
    let old_key_id = object.keys[0].0.clone();
    let config = write_profile(
        dir.path(),
        &emu,
        &current.key.display().to_string(),
        &current.cert,
    );
    let new_key = dir.path().join("new.key.pem");
    let new_cert = dir.path().join("new.cert.pem");
    let (stdout, stderr) = ok(certassert(dir.path())
        .args(["cert", "rotate", "--config"])
        .arg(&config)
        .args(["--profile", "prod", "--new-key"])
        .arg(&new_key)
        .arg("--out")
        .arg(&new_cert)
        .args(["--object-id", &object.object_id]));
    let out = line(&stdout);
    let (new_thumb, new_sha1) = openssl_fingerprint(&new_cert, "sha1");
    let key_id = out["keyId"].as_str().unwrap().to_string();
    assert!(certassert::graph::is_guid(&key_id), "{out}");
    assert_eq!(out["thumbprint"], new_thumb);
    assert_eq!(out["x5t"], crate::common::b64url(&new_sha1));
    assert_eq!(
        out["oldThumbprint"],
        openssl_fingerprint(&current.cert, "sha1").0
    );
    assert_eq!(out["added"], true);
    assert_eq!(out["profile"], "prod");
    let not_after = crate::common::openssl_stdout(&[
        "x509",
        "-in",
        crate::common::s(&new_cert),
        "-noout",
        "-enddate",
    ]);
    assert!(not_after.starts_with("notAfter="), "{not_after}");
    assert!(out["notAfter"].as_str().unwrap().ends_with('Z'));
    assert!(stderr.contains(&format!("as keyId {key_id}")), "{stderr}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&new_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The emulator holds both; the profile names NEW and its keyId, comments kept.
    let keys = emu.apps()[0].keys.clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], (key_id.clone(), new_thumb.clone()));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# rotated by a timer\n"), "{text}");
    assert!(
        text.contains(&format!("key = \"{}\"", new_key.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("cert = \"{}\"", new_cert.display())),
        "{text}"
    );
    assert!(text.contains(&format!("key_id = \"{key_id}\"")), "{text}");
    // A token with NEW, through the profile.
    let (issued, _) = ok(certassert(dir.path())
        .args(["token", "--config"])
        .arg(&config)
        .args([
            "--profile",
            "prod",
            "--scope",
            "api://test/.default",
            "--no-cache",
        ]));
    assert!(issued.trim().split('.').count() == 3, "{issued}");

    // retire refuses KEY's own credential (the profile's key_id)...
    let stderr = fails(
        certassert(dir.path())
            .args(["cert", "retire", "--config"])
            .arg(&config)
            .args([
                "--profile",
                "prod",
                "--key-id",
                &key_id,
                "--object-id",
                &object.object_id,
            ]),
    );
    assert!(
        stderr.contains("is KEY's own credential (key_id of profile \"prod\")"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(emu.apps()[0].keys.len(), 2);
    // ...and removes the old one.
    let (stdout, _) = ok(certassert(dir.path())
        .args(["cert", "retire", "--config"])
        .arg(&config)
        .args([
            "--profile",
            "prod",
            "--key-id",
            &old_key_id,
            "--object-id",
            &object.object_id,
        ]));
    assert_eq!(
        line(&stdout),
        serde_json::json!({"removedKeyId": old_key_id})
    );
    assert_eq!(emu.apps()[0].keys, vec![(key_id, new_thumb)]);
    // The old credential is refused at once.
    let out = token(
        dir.path(),
        &emu,
        &current.key.display().to_string(),
        Some(&current.cert),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AADSTS700027"), "{stderr}");
    // NEW still works.
    assert!(token(
        dir.path(),
        &emu,
        &new_key.display().to_string(),
        Some(&new_cert)
    )
    .status
    .success());
}

#[test]
fn if_expires_within_does_nothing_while_current_has_longer() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let emu = emulator(&[&current], &[], 0);
    let object_id = emu.apps()[0].object_id.clone();
    let config = write_profile(
        dir.path(),
        &emu,
        &current.key.display().to_string(),
        &current.cert,
    );
    let before = std::fs::read_to_string(&config).unwrap();
    let new_key = dir.path().join("new.key.pem");
    let rotate = |days: &str| {
        let mut cmd = certassert(dir.path());
        cmd.args(["cert", "rotate", "--config"])
            .arg(&config)
            .args(["--profile", "prod", "--new-key"])
            .arg(&new_key)
            .arg("--out")
            .arg(dir.path().join("new.cert.pem"))
            .args(["--object-id", &object_id, "--if-expires-within", days]);
        cmd
    };
    // openssl's certificate is valid 365 days: 30 days ahead there is nothing to do.
    let (stdout, stderr) = ok(&mut rotate("30"));
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("nothing to do: CURRENT's certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("more than 30"), "{stderr}");
    assert!(emu.requests().is_empty(), "nothing was sent");
    assert!(!new_key.exists(), "no key was made");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    // 400 days ahead it rotates.
    let (stdout, _) = ok(&mut rotate("400"));
    assert_eq!(line(&stdout)["added"], true);
}

#[test]
fn a_rerun_after_a_failure_between_addkey_and_the_proof_of_new_is_safe() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    // NEW's first token request after addKey is refused (propagation), and this app may
    // read its own keyCredentials.
    let emu = emulator(&[&current], &["Application.Read.All"], 1);
    let object_id = emu.apps()[0].object_id.clone();
    let config = write_profile(
        dir.path(),
        &emu,
        &current.key.display().to_string(),
        &current.cert,
    );
    let before = std::fs::read_to_string(&config).unwrap();
    let new_key = dir.path().join("new.key.pem");
    let new_cert = dir.path().join("new.cert.pem");
    let rotate = || {
        let mut cmd = certassert(dir.path());
        cmd.args(["cert", "rotate", "--config"])
            .arg(&config)
            .args(["--profile", "prod", "--new-key"])
            .arg(&new_key)
            .arg("--out")
            .arg(&new_cert)
            .args(["--object-id", &object_id, "--propagation-wait", "0"]);
        cmd
    };
    let stderr = fails(&mut rotate());
    let key_id = emu.apps()[0].keys[1].0.clone();
    assert!(
        stderr.contains("a token signed by NEW is still refused after 0 s (AADSTS700027)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("NEW as keyId {key_id}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("run the same command again later"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        before,
        "the profile is untouched"
    );
    assert_eq!(addkey_requests(&emu), 1);
    let pem = std::fs::read(&new_cert).unwrap();
    // Again: NEW and its certificate are reused, and it is not added twice.
    let (stdout, stderr) = ok(&mut rotate());
    assert!(stderr.contains("reusing NEW's certificate"), "{stderr}");
    assert!(
        stderr.contains("already registered on the app: not adding it again"),
        "{stderr}"
    );
    let out = line(&stdout);
    assert_eq!(out["added"], false);
    assert_eq!(
        out["keyId"],
        key_id.as_str(),
        "read back from Graph's keyCredentials"
    );
    assert_eq!(addkey_requests(&emu), 1);
    assert_eq!(emu.apps()[0].keys.len(), 2);
    assert_eq!(std::fs::read(&new_cert).unwrap(), pem);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("key_id = \"{key_id}\"")), "{text}");
    // A third run: the profile already names NEW, so there is nothing to do.
    let (stdout, stderr) = ok(&mut rotate());
    assert_eq!(stdout, "");
    assert!(stderr.contains("already uses NEW"), "{stderr}");
    assert_eq!(addkey_requests(&emu), 1);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
}

#[test]
fn retire_without_a_recorded_key_id_needs_force() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let emu = emulator(&[&current], &[], 0);
    let object = emu.apps().remove(0);
    let new_key = dir.path().join("new.key.pem");
    let new_cert = dir.path().join("new.cert.pem");
    let common = |cmd: &mut Command| {
        cmd.args([
            "--tenant",
            "contoso",
            "--client-id",
            CLIENT_ID,
            "--authority-host",
            emu.url(),
        ])
        .args(["--object-id", &object.object_id]);
    };
    let mut cmd = certassert(dir.path());
    cmd.args(["cert", "rotate", "--key"])
        .arg(&current.key)
        .arg("--cert")
        .arg(&current.cert)
        .arg("--new-key")
        .arg(&new_key)
        .arg("--out")
        .arg(&new_cert);
    common(&mut cmd);
    let (stdout, _) = ok(&mut cmd);
    assert_eq!(line(&stdout)["oldKeyId"], Value::Null);
    let retire = |force: bool| {
        let mut cmd = certassert(dir.path());
        cmd.args(["cert", "retire", "--key"])
            .arg(&new_key)
            .arg("--cert")
            .arg(&new_cert)
            .args(["--key-id", &object.keys[0].0]);
        common(&mut cmd);
        if force {
            cmd.arg("--force");
        }
        cmd
    };
    let stderr = fails(&mut retire(false));
    assert!(
        stderr.contains("cannot tell whether keyId")
            && stderr.contains("403 Authorization_RequestDenied"),
        "{stderr}"
    );
    assert_eq!(emu.apps()[0].keys.len(), 2);
    let (stdout, stderr) = ok(&mut retire(true));
    assert!(stderr.contains("removing it anyway (--force)"), "{stderr}");
    assert_eq!(line(&stdout)["removedKeyId"], object.keys[0].0.as_str());
    assert_eq!(emu.apps()[0].keys.len(), 1);
}

#[test]
fn an_expired_current_says_to_upload_new_by_hand_and_sends_nothing() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "current", CLIENT_ID);
    // CURRENT's key with a certificate that ended yesterday (made by certassert's issuer:
    // openssl 3.0's req cannot backdate).
    let key = certassert::signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap();
    let expired = certassert::cert::create_self_signed(
        key.as_ref(),
        certassert::Algorithm::Rs256,
        "CN=current",
        1,
        crate::common::now() - 2 * 86_400,
    )
    .unwrap();
    let expired_path = crate::common::write(dir.path(), "expired.cert.pem", expired.to_pem());
    let emu = emulator(&[&app], &[], 0);
    let object_id = emu.apps()[0].object_id.clone();
    let new_cert = dir.path().join("new.cert.pem");
    let stderr = fails(&mut rotate_cmd(
        dir.path(),
        &emu,
        &app.key,
        &expired_path,
        &object_id,
    ));
    let (new_thumb, _) = openssl_fingerprint(&new_cert, "sha1");
    assert!(stderr.contains("cannot sign a proof"), "{stderr}");
    assert!(stderr.contains("upload NEW's certificate"), "{stderr}");
    assert!(
        stderr.contains(&format!("thumbprint {new_thumb}")),
        "{stderr}"
    );
    assert!(emu.requests().is_empty(), "nothing was sent");
}

#[test]
fn no_token_or_proof_on_stderr_even_at_the_most_verbose() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let emu = emulator(&[&current], &[], 0);
    let object_id = emu.apps()[0].object_id.clone();
    let config = write_profile(
        dir.path(),
        &emu,
        &current.key.display().to_string(),
        &current.cert,
    );
    let (stdout, stderr) = ok(certassert(dir.path())
        .args(["-vvv", "cert", "rotate", "--config"])
        .arg(&config)
        .args(["--profile", "prod", "--new-key"])
        .arg(dir.path().join("new.key.pem"))
        .arg("--out")
        .arg(dir.path().join("new.cert.pem"))
        .args(["--object-id", &object_id]));
    assert!(
        stderr.contains("POST request"),
        "-vvv shows the Graph request:\n{stderr}"
    );
    // Every JWT (assertion, access token, proof) starts with eyJ; none is shown.
    assert!(
        !stderr.contains("eyJ") && !stdout.contains("eyJ"),
        "{stderr}"
    );
    // Graph refuses a removeKey (no such keyId): its error, and still no token or proof.
    let out = run(certassert(dir.path())
        .args(["-vvv", "cert", "retire", "--config"])
        .arg(&config)
        .args([
            "--profile",
            "prod",
            "--key-id",
            "00000000-0000-0000-0000-00000000000f",
        ])
        .args(["--object-id", &object_id]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Microsoft Graph refused: Request_ResourceNotFound")
            && stderr.contains("[HTTP 404"),
        "{stderr}"
    );
    assert!(!stderr.contains("eyJ"), "{stderr}");
}

#[test]
fn the_emulator_command_prints_each_apps_object_id_and_key_ids() {
    use std::io::BufRead as _;
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT_ID);
    let object_id = "6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77";
    let mut child = Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args(["emulator", "--listen", "127.0.0.1:0", "--register"])
        .arg(format!("{CLIENT_ID}={}", app.cert.display()))
        .args(["--object-id", &format!("{CLIENT_ID}={object_id}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(4)
        .map(Result::unwrap)
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines[0].starts_with("http://127.0.0.1:"), "{lines:?}");
    assert_eq!(lines[2], format!("app {CLIENT_ID}: object id {object_id}"));
    let thumbprint = openssl_fingerprint(&app.cert, "sha1").0;
    let key = lines[3]
        .trim_start()
        .strip_prefix("keyId ")
        .expect("a keyId line");
    let (key_id, rest) = key.split_once("  thumbprint ").unwrap();
    assert!(certassert::graph::is_guid(key_id), "{key_id}");
    assert_eq!(rest, thumbprint);
}

#[test]
fn no_graph_reachable_names_the_graph_url() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let emu = emulator(&[&current], &[], 0);
    let object_id = emu.apps()[0].object_id.clone();
    // Port 9 (discard) on loopback: nothing listens there.
    let stderr = fails(
        rotate_cmd(dir.path(), &emu, &current.key, &current.cert, &object_id)
            .args(["--graph-url", "http://127.0.0.1:9"]),
    );
    assert!(
        stderr.contains(
            "\nerror: cannot reach Microsoft Graph at http://127.0.0.1:9 (--graph-url): POST http://127.0.0.1:9/v1.0/applications/"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("failed after 3 attempt(s)"), "{stderr}");
    assert!(
        stderr.contains("run the same command again when Graph is reachable"),
        "{stderr}"
    );
    assert_eq!(emu.apps()[0].keys.len(), 1);
}

#[test]
fn graph_refusals_are_shown_with_their_code_and_hint() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let emu = emulator(&[&current], &[], 0);
    // Someone's object id that is no application here (the client id's shape, another value).
    let stderr = fails(&mut rotate_cmd(
        dir.path(),
        &emu,
        &current.key,
        &current.cert,
        "00000000-0000-0000-0000-000000000001",
    ));
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        error.starts_with("error: Microsoft Graph refused: Request_ResourceNotFound: Resource '00000000-0000-0000-0000-000000000001' does not exist")
            && error.contains("[HTTP 404, request id "),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nhint: nothing in this tenant has this object id"),
        "{stderr}"
    );
    assert_eq!(emu.apps()[0].keys.len(), 1);
}

#[test]
fn rotate_waits_while_the_new_credential_propagates() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    // NEW's first token request after addKey is refused; the second, 2 s later, works.
    let emu = emulator(&[&current], &[], 1);
    let object_id = emu.apps()[0].object_id.clone();
    let (stdout, stderr) = ok(rotate_cmd(
        dir.path(),
        &emu,
        &current.key,
        &current.cert,
        &object_id,
    )
    .args(["-v", "--propagation-wait", "30"]));
    assert_eq!(line(&stdout)["added"], true);
    assert!(
        stderr.contains("refused (AADSTS700027) while it propagates; asking again in 2 s"),
        "{stderr}"
    );
    let refusals = emu
        .requests()
        .iter()
        .filter(|r| r.error_code == Some(700027))
        .count();
    // The check before addKey (NEW not yet registered) and the one while it propagated.
    assert_eq!(refusals, 2);
}
