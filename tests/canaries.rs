//! Canaries (issue 14, "Also deliver"): every command's failure paths run with secrets
//! that are unmistakable marker strings — PINs, key-file and TPM passwords, assertions,
//! authorization codes, access and refresh tokens — given every way the command takes
//! them (a literal `…-value=`, a `…-source=` file or variable, a secret pasted where a
//! source belongs, a flag, `@FILE`, an environment variable, a token endpoint's answer),
//! and no marker may appear in stdout or stderr. certassert starts no child process on
//! these paths, so there is no child argv to check; its own argv is the caller's. Every
//! case runs with `CERTASSERT_LOG=trace`, so the verbose logs are checked too.
//!
//! Each case is its own `#[test]`; a leak names the case, the marker and the line it
//! appeared on. Eight of them leaked before issue 14's item-2 fixes (an echoed pasted
//! PIN or password, an access token printed with a malformed `expires_in`).

use certassert::cert::Certificate;
use certassert::emulator::{self, App, Config, Running};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
const SCOPE: &str = "api://canary/.default";

// The markers: long, distinct, and not text any message would contain by chance.
const PIN: &str = "CanaryPin7q3Zx";
const PASSWORD: &str = "CanaryPassword9kW2";
const TPM_AUTH: &str = "CanaryTpmAuth4mR8";
const ACCESS_TOKEN: &str = "CanaryAccessToken5tY1";
const REFRESH_TOKEN: &str = "CanaryRefreshToken2uP6";
const ID_TOKEN: &str = "CanaryIdToken8sD3";
const CODE: &str = "CanaryAuthCode3jH7";
/// Base64url text, so it passes for a JWT part.
const ASSERTION_PART: &str = "Q2FuYXJ5QXNzZXJ0aW9uNnZCMA";

/// A temp dir with an app's key (also encrypted with the right password, which is never
/// a marker) and certificate, made by openssl.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Self { dir };
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            files.s("app.key.pem"),
        ]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            files.s("app.key.pem"),
            "-subj",
            "/CN=canary",
            "-days",
            "30",
            "-out",
            files.s("app.cert.pem"),
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-in",
            files.s("app.key.pem"),
            "-passout",
            "pass:the-right-password",
            "-out",
            files.s("app.enc.pem"),
        ]);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> &str {
        // Leaked once per call: a test process, a few dozen short strings.
        Box::leak(
            self.path(name)
                .to_str()
                .expect("utf-8")
                .to_string()
                .into_boxed_str(),
        )
    }

    /// A 0600 file holding `content`.
    fn secret_file(&self, name: &str, content: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.path(name);
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path.to_str().expect("utf-8").to_string()
    }

    fn certassert(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certassert"));
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CERTASSERT_CACHE_DIR", self.path("cache"))
            // Every event of certassert and of the crates it uses (ureq, cryptoki,
            // tss-esapi) is shown: no secret may be in any of them either.
            .env("CERTASSERT_LOG", "trace");
        cmd
    }

    /// `certassert assertion` with `key` and the app's certificate.
    fn assertion(&self, key: &str) -> Command {
        let mut cmd = self.certassert();
        cmd.args([
            "assertion",
            "--key",
            key,
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ]);
        cmd
    }

    /// `certassert token` against `token_url` with the app's key and certificate.
    fn token(&self, token_url: &str) -> Command {
        let mut cmd = self.certassert();
        cmd.args([
            "token",
            "--key",
            self.s("app.key.pem"),
            "--cert",
            self.s("app.cert.pem"),
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
            "--token-url",
            token_url,
            "--no-cache",
        ]);
        cmd
    }

    fn emulator(&self) -> Running {
        let cert = Certificate::load_chain(&self.path("app.cert.pem"))
            .expect("certificate")
            .remove(0);
        emulator::start(Config {
            apps: vec![App {
                client_id: CLIENT.into(),
                certificates: vec![cert],
            }],
            ..Config::default()
        })
        .expect("emulator")
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `cmd` (which must fail: these are failure paths) and assert no marker in
/// `canaries` appears in what it printed.
#[track_caller]
fn assert_no_canary(case: &str, mut cmd: Command, canaries: &[&str]) -> Output {
    let out = cmd.output().expect("run certassert");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{case}: expected a failure, got success\nstdout: {stdout}\nstderr: {stderr}"
    );
    let mut leaks = Vec::new();
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for canary in canaries {
            for line in text.lines().filter(|l| l.contains(canary)) {
                leaks.push(format!("  {stream} shows {canary}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{case}: a secret reached the output\n{}\n(whole stderr: {stderr})",
        leaks.join("\n")
    );
    assert!(
        !(stdout.trim().is_empty() && stderr.trim().is_empty()),
        "{case}: failed without a message"
    );
    out
}

const PKCS11: &str = "pkcs11:token=canary;object=app?module-path=/nonexistent/libcanary.so";

// ---- PINs -----------------------------------------------------------------------------

#[test]
fn pin_value_literal_is_not_echoed() {
    let f = Files::new();
    let key = format!("{PKCS11}&pin-value={PIN}");
    assert_no_canary("pin-value=", f.assertion(&key), &[PIN]);
}

#[test]
fn pin_value_with_a_bad_percent_escape_is_not_echoed() {
    let f = Files::new();
    let key = format!("{PKCS11}&pin-value={PIN}%ZZ");
    assert_no_canary("pin-value=…%ZZ", f.assertion(&key), &[PIN]);
}

#[test]
fn pin_source_file_contents_are_not_echoed() {
    let f = Files::new();
    let pin = f.secret_file("pin", PIN);
    let key = format!("{PKCS11}&pin-source=file:{pin}");
    assert_no_canary("pin-source=file:", f.assertion(&key), &[PIN]);
}

#[test]
fn pin_source_env_contents_are_not_echoed() {
    let f = Files::new();
    let key = format!("{PKCS11}&pin-source=env:CANARY_PIN");
    let mut cmd = f.assertion(&key);
    cmd.env("CANARY_PIN", PIN);
    assert_no_canary("pin-source=env:", cmd, &[PIN]);
}

#[test]
fn pin_pasted_as_pin_source_is_not_echoed() {
    let f = Files::new();
    let key = format!("{PKCS11}&pin-source={PIN}");
    assert_no_canary("pin-source=PIN", f.assertion(&key), &[PIN]);
}

#[test]
fn pin_pasted_as_piv_pin_source_is_not_echoed() {
    let f = Files::new();
    let key = format!("piv:9a?module-path=/nonexistent/libykcs11.so&pin-source={PIN}");
    assert_no_canary("piv pin-source=PIN", f.assertion(&key), &[PIN]);
}

/// A SoftHSM2 token with key "app", provisioned by softhsm/provision.sh in the temp
/// dir; the PIN it was given is never a marker, so every marker PIN is a wrong one and
/// the login really fails (`CKR_PIN_INCORRECT`).
#[cfg(feature = "pkcs11")]
fn softhsm(f: &Files) -> (String, PathBuf) {
    let dir = f.path("hsm");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm/provision.sh"))
        .arg(&dir)
        .args([
            "--key",
            "app",
            "--certassert",
            env!("CARGO_BIN_EXE_certassert"),
        ])
        .output()
        .expect("run softhsm/provision.sh");
    assert!(
        out.status.success(),
        "provision.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        "pkcs11:token=certassert;object=app?module-path=/usr/lib/softhsm/libsofthsm2.so".into(),
        dir.join("softhsm2.conf"),
    )
}

#[cfg(feature = "pkcs11")]
#[test]
fn wrong_pin_at_login_is_not_echoed() {
    let f = Files::new();
    let (uri, conf) = softhsm(&f);
    let file = f.secret_file("wrong-pin", PIN);
    for (case, key, env) in [
        ("wrong pin-value=", format!("{uri}&pin-value={PIN}"), None),
        (
            "wrong pin-source=file:",
            format!("{uri}&pin-source=file:{file}"),
            None,
        ),
        (
            "wrong pin-source=env:",
            format!("{uri}&pin-source=env:CANARY_PIN"),
            Some(PIN),
        ),
    ] {
        let mut cmd = f.assertion(&key);
        cmd.env("SOFTHSM2_CONF", &conf);
        if let Some(pin) = env {
            cmd.env("CANARY_PIN", pin);
        }
        let out = assert_no_canary(case, cmd, &[PIN]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("rejected the PIN"),
            "{case}: not the login failure: {stderr}"
        );
    }
}

// ---- Passwords ------------------------------------------------------------------------

#[test]
fn wrong_key_file_password_from_env_is_not_echoed() {
    let f = Files::new();
    let key = format!("file:{}?password-source=env:CANARY_PW", f.s("app.enc.pem"));
    let mut cmd = f.assertion(&key);
    cmd.args(["--cert", f.s("app.cert.pem")])
        .env("CANARY_PW", PASSWORD);
    assert_no_canary("wrong password, env:", cmd, &[PASSWORD]);
}

#[test]
fn wrong_key_file_password_from_file_is_not_echoed() {
    let f = Files::new();
    let pw = f.secret_file("pw", PASSWORD);
    let key = format!("file:{}?password-source=file:{pw}", f.s("app.enc.pem"));
    let mut cmd = f.assertion(&key);
    cmd.args(["--cert", f.s("app.cert.pem")]);
    assert_no_canary("wrong password, file:", cmd, &[PASSWORD]);
}

#[test]
fn wrong_key_file_password_literal_is_not_echoed() {
    let f = Files::new();
    let key = format!("file:{}?password-value={PASSWORD}", f.s("app.enc.pem"));
    let mut cmd = f.assertion(&key);
    cmd.args(["--cert", f.s("app.cert.pem")]);
    assert_no_canary("wrong password-value=", cmd, &[PASSWORD]);
}

#[test]
fn password_value_with_a_bad_percent_escape_is_not_echoed() {
    let f = Files::new();
    let key = format!("file:{}?password-value={PASSWORD}%ZZ", f.s("app.enc.pem"));
    assert_no_canary("password-value=…%ZZ", f.assertion(&key), &[PASSWORD]);
}

/// Every command that opens a key, with a wrong password from the environment.
#[test]
fn wrong_key_file_password_is_not_echoed_by_any_command() {
    let f = Files::new();
    let key = format!("file:{}?password-source=env:CANARY_PW", f.s("app.enc.pem"));
    let common = ["--key", key.as_str(), "--cert", f.s("app.cert.pem")];
    let ids = ["--tenant", TENANT, "--client-id", CLIENT];
    let url = "http://127.0.0.1:9/t/oauth2/v2.0/token";
    let runs: [(&str, Vec<&str>); 5] = [
        ("assertion", [&["assertion"][..], &common, &ids].concat()),
        (
            "token",
            [
                &["token"][..],
                &common,
                &ids,
                &["--scope", SCOPE, "--token-url", url, "--no-cache"],
            ]
            .concat(),
        ),
        (
            "doctor",
            [&["doctor"][..], &common, &ids, &["--token-url", url]].concat(),
        ),
        (
            "cert create",
            [
                &["cert", "create"][..],
                &[
                    "--key",
                    key.as_str(),
                    "--subject",
                    "CN=x",
                    "--out",
                    f.s("new.cert.pem"),
                ],
            ]
            .concat(),
        ),
        ("cert show", [&["cert", "show"][..], &common].concat()),
    ];
    for (case, args) in runs {
        let mut cmd = f.certassert();
        cmd.args(args).env("CANARY_PW", PASSWORD);
        assert_no_canary(case, cmd, &[PASSWORD]);
    }
}

#[test]
fn azure_client_certificate_password_is_not_echoed() {
    let f = Files::new();
    let mut cmd = f.certassert();
    cmd.args(["assertion", "--tenant", TENANT, "--client-id", CLIENT])
        .env("AZURE_CLIENT_CERTIFICATE_PATH", f.s("app.enc.pem"))
        .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", PASSWORD);
    assert_no_canary("AZURE_CLIENT_CERTIFICATE_PASSWORD", cmd, &[PASSWORD]);
}

#[test]
fn password_pasted_as_password_source_is_not_echoed() {
    let f = Files::new();
    let key = format!("file:{}?password-source={PASSWORD}", f.s("app.enc.pem"));
    assert_no_canary("password-source=PASSWORD", f.assertion(&key), &[PASSWORD]);
}

#[test]
fn tpm_auth_value_is_not_echoed() {
    let f = Files::new();
    let key = format!("tpm:key={}?auth-value={TPM_AUTH}", f.s("missing.tss2.pem"));
    assert_no_canary("auth-value=", f.assertion(&key), &[TPM_AUTH]);
}

#[test]
fn tpm_auth_value_with_a_bad_percent_escape_is_not_echoed() {
    let f = Files::new();
    let key = format!(
        "tpm:key={}?auth-value={TPM_AUTH}%Z",
        f.s("missing.tss2.pem")
    );
    assert_no_canary("auth-value=…%Z", f.assertion(&key), &[TPM_AUTH]);
}

#[test]
fn tpm_auth_source_env_is_not_echoed() {
    let f = Files::new();
    let key = format!(
        "tpm:handle=0x81000001?tcti=swtpm:path={}&auth-source=env:CANARY_AUTH",
        f.s("no-swtpm.sock")
    );
    let mut cmd = f.assertion(&key);
    cmd.env("CANARY_AUTH", TPM_AUTH);
    assert_no_canary("auth-source=env:", cmd, &[TPM_AUTH]);
}

#[test]
fn tpm_auth_pasted_as_auth_source_is_not_echoed() {
    let f = Files::new();
    let key = format!("tpm:key={}?auth-source={TPM_AUTH}", f.s("missing.tss2.pem"));
    assert_no_canary("auth-source=PASSWORD", f.assertion(&key), &[TPM_AUTH]);
}

#[test]
fn tpm_parent_auth_pasted_as_source_is_not_echoed() {
    let f = Files::new();
    let key = format!(
        "tpm:key={}?parent-auth-source={TPM_AUTH}",
        f.s("missing.tss2.pem")
    );
    assert_no_canary(
        "parent-auth-source=PASSWORD",
        f.assertion(&key),
        &[TPM_AUTH],
    );
}

/// swtpm, as the TPM tests start it (one per test, killed on drop).
#[cfg(feature = "tpm")]
#[allow(dead_code)]
#[path = "common/swtpm.rs"]
mod swtpm;

/// A persistent TPM key whose password is never a marker: every marker password is a
/// wrong one, and the TPM refuses the signature (`TPM_RC_AUTH_FAIL`).
#[cfg(feature = "tpm")]
#[test]
fn wrong_tpm_password_at_signing_is_not_echoed() {
    let f = Files::new();
    let tpm = swtpm::Swtpm::start();
    tpm.tpm2_tools_persistent_key_with_password(
        f.dir.path(),
        "0x81000001",
        "rsa2048",
        None,
        Some("the-right-password"),
    );
    let base = format!("tpm:handle=0x81000001?tcti={}", tpm.tcti());
    // Its certificate, made with the right password, so the runs below reach the signature.
    let mut create = f.certassert();
    create
        .args([
            "cert",
            "create",
            "--key",
            &format!("{base}&auth-source=env:RIGHT"),
        ])
        .args(["--subject", "CN=canary-tpm", "--out", f.s("tpm.cert.pem")])
        .env("RIGHT", "the-right-password");
    let out = create.output().expect("cert create");
    assert!(
        out.status.success(),
        "cert create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = f.secret_file("wrong-auth", TPM_AUTH);
    for (case, key, env) in [
        (
            "wrong auth-value=",
            format!("{base}&auth-value={TPM_AUTH}"),
            None,
        ),
        (
            "wrong auth-source=file:",
            format!("{base}&auth-source=file:{file}"),
            None,
        ),
        (
            "wrong auth-source=env:",
            format!("{base}&auth-source=env:CANARY_AUTH"),
            Some(TPM_AUTH),
        ),
    ] {
        let mut cmd = f.assertion(&key);
        cmd.args(["--cert", f.s("tpm.cert.pem")]);
        if let Some(auth) = env {
            cmd.env("CANARY_AUTH", auth);
        }
        let out = assert_no_canary(case, cmd, &[TPM_AUTH]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("TPM_RC_AUTH_FAIL"),
            "{case}: not the authorization failure: {stderr}"
        );
    }
}

// ---- Assertions -----------------------------------------------------------------------

/// A JWT that fails the lint (alg none, no claims Entra needs) whose signature is the
/// marker: inspect shows header and claims, never the signature or the whole token.
#[test]
fn inspect_does_not_echo_a_failing_assertion() {
    let f = Files::new();
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.{ASSERTION_PART}");
    let mut cmd = f.certassert();
    cmd.args(["inspect", &jwt]);
    assert_no_canary("inspect (lint fails)", cmd, &[ASSERTION_PART]);
}

#[test]
fn inspect_does_not_echo_an_undecodable_assertion() {
    let f = Files::new();
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{ASSERTION_PART}.{ASSERTION_PART}.x");
    let mut cmd = f.certassert();
    cmd.args(["inspect", &jwt]);
    assert_no_canary("inspect (not a JWT)", cmd, &[ASSERTION_PART]);
}

#[test]
fn inspect_from_stdin_does_not_echo_a_bad_signature() {
    let f = Files::new();
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.{ASSERTION_PART}!");
    let mut cmd = f.certassert();
    cmd.args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(jwt.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "inspect - accepted a broken signature: {all}"
    );
    assert!(
        !all.contains(ASSERTION_PART),
        "inspect - echoed the signature: {all}"
    );
}

/// A user assertion the emulator did not issue (three base64url parts, the marker as
/// the signature): refused, and not echoed whether given as a flag, @FILE or variable.
fn user_assertion() -> String {
    format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJhcGk6Ly9jYW5hcnkifQ.{ASSERTION_PART}")
}

fn obo(f: &Files, url: &str) -> Command {
    let mut cmd = f.token(url);
    cmd.args(["--grant", "on-behalf-of", "--scope", SCOPE]);
    cmd
}

#[test]
fn user_assertion_refused_is_not_echoed() {
    let f = Files::new();
    let em = f.emulator();
    let url = em.token_endpoint(TENANT, false).expect("endpoint");
    let mut by_flag = obo(&f, &url);
    by_flag.args(["--user-assertion", &user_assertion()]);
    assert_no_canary("--user-assertion JWT", by_flag, &[ASSERTION_PART]);

    let file = f.secret_file("incoming.jwt", &user_assertion());
    let mut by_file = obo(&f, &url);
    by_file.args(["--user-assertion", &format!("@{file}")]);
    assert_no_canary("--user-assertion @FILE", by_file, &[ASSERTION_PART]);

    let mut by_env = obo(&f, &url);
    by_env.env("CERTASSERT_USER_ASSERTION", user_assertion());
    assert_no_canary("CERTASSERT_USER_ASSERTION", by_env, &[ASSERTION_PART]);
}

#[test]
fn refresh_token_and_code_refused_are_not_echoed() {
    let f = Files::new();
    let em = f.emulator();
    let url = em.token_endpoint(TENANT, false).expect("endpoint");
    let mut refresh = f.token(&url);
    refresh.args([
        "--grant",
        "refresh-token",
        "--scope",
        SCOPE,
        "--refresh-token",
        REFRESH_TOKEN,
    ]);
    assert_no_canary("--refresh-token", refresh, &[REFRESH_TOKEN]);

    let mut code = f.token(&url);
    code.args([
        "--grant",
        "authorization-code",
        "--scope",
        SCOPE,
        "--redirect-uri",
        "http://localhost/cb",
        "--code",
        CODE,
    ]);
    assert_no_canary("--code", code, &[CODE]);
}

// ---- Tokens from the server -------------------------------------------------------------

/// A loopback server that answers every request with `status` and `body`, after reading
/// the whole request; stops when the test process ends.
fn answering(status: &str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/{TENANT}/oauth2/v2.0/token",
        listener.local_addr().expect("addr")
    );
    let status = status.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                line.clear();
            }
            let mut request_body = vec![0; length];
            let _ = reader.read_exact(&mut request_body);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

const MALFORMED_EXPIRY: &str = concat!(
    r#"{"token_type":"Bearer","expires_in":"soon","#,
    r#""access_token":"CanaryAccessToken5tY1","refresh_token":"CanaryRefreshToken2uP6","#,
    r#""id_token":"CanaryIdToken8sD3"}"#
);

#[test]
fn token_answer_with_bad_expiry_is_not_echoed_by_token() {
    let f = Files::new();
    let url = answering("200 OK", MALFORMED_EXPIRY);
    let mut cmd = f.token(&url);
    cmd.args(["--scope", SCOPE]);
    assert_no_canary(
        "token: 200 with bad expires_in",
        cmd,
        &[ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN],
    );
}

#[test]
fn token_answer_with_bad_expiry_is_not_echoed_by_doctor() {
    let f = Files::new();
    let url = answering("200 OK", MALFORMED_EXPIRY);
    let mut cmd = f.certassert();
    cmd.args([
        "doctor",
        "--key",
        f.s("app.key.pem"),
        "--cert",
        f.s("app.cert.pem"),
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT,
        "--token-url",
        &url,
    ]);
    assert_no_canary(
        "doctor: 200 with bad expires_in",
        cmd,
        &[ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN],
    );
}

/// A success answer that is not JSON at all, starting with the token: the start of the
/// body shown in the error must not carry it.
#[test]
fn token_answer_that_is_not_json_is_not_echoed() {
    let f = Files::new();
    let url = answering("200 OK", r#"{"access_token":"CanaryAccessToken5tY1","#);
    let mut cmd = f.token(&url);
    cmd.args(["--scope", SCOPE]);
    assert_no_canary("token: truncated 200", cmd, &[ACCESS_TOKEN]);
}

/// An error answer that (wrongly) carries tokens: whatever of it is shown is redacted.
#[test]
fn error_answer_carrying_tokens_is_not_echoed() {
    let f = Files::new();
    let url = answering(
        "400 Bad Request",
        r#"{"error":"invalid_grant","error_description":"AADSTS70000: refused.","error_codes":[70000],"access_token":"CanaryAccessToken5tY1","refresh_token":"CanaryRefreshToken2uP6"}"#,
    );
    let mut cmd = f.token(&url);
    cmd.args(["--scope", SCOPE]);
    assert_no_canary(
        "token: 400 carrying tokens",
        cmd,
        &[ACCESS_TOKEN, REFRESH_TOKEN],
    );
}

/// No marker contains another, so a leak is reported as the secret it is.
#[test]
fn markers_are_distinct() {
    let all = [
        PIN,
        PASSWORD,
        TPM_AUTH,
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        ID_TOKEN,
        CODE,
        ASSERTION_PART,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(!a.contains(b) && !b.contains(a), "{a} / {b}");
        }
    }
    assert!(MALFORMED_EXPIRY.contains(ACCESS_TOKEN) && MALFORMED_EXPIRY.contains(REFRESH_TOKEN));
}
