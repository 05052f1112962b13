//! The `certassert` binary as a user drives it: real files, real openssl, and the whole
//! text of what it says. Signatures are checked by openssl and by PyJWT (Debian's
//! python3-jwt), never by certassert itself.
//!
//! # Snapshots
//!
//! What the binary prints is committed as text under `tests/cmd/` and compared whole:
//! - `tests/cmd/{help,args,pkcs11,no-pkcs11,tpm,no-tpm}/*.toml`: trycmd cases (run by
//!   [`cases::cmd_cases`]) that need no key material: `--help`/`--version` texts, argument,
//!   key-reference and secret-source errors, `inspect` of a JWT given inline. Each `.toml`
//!   says what it shows, the arguments, the exit status and `stdout`/`stderr`; the longer
//!   output is in the `.stdout`/`.stderr` file beside it. The binary runs with an empty
//!   environment (`env.inherit = false`: no CERTASSERT_*, AZURE_*, COLUMNS; clap wraps help
//!   at 100 columns) in `tests/cmd/fixtures/` (files that are not keys). The `pkcs11`/`tpm`
//!   directories run only with that feature, `no-pkcs11`/`no-tpm` only without it.
//! - `tests/cmd/generated/*.{stderr,stdout}`: snapbox snapshots ([`fails`], [`snapshot`]) of
//!   runs that need a key or certificate made at test time (keys are never committed).
//!   Values that differ per run are redacted by [`redactions`] and [`assertion_redactions`]:
//!   `[ROOT]` (the temp dir), `[THUMBPRINT]`, `[XT]` (x5t), `[XT_SHA]` (x5t#S256),
//!   `[SERIAL]`, `[NOT_AFTER]`, `[JTI]`, `[IAT]`, … and `[DAYS]` in "(valid, N days left)".
//!
//! After changing a message, regenerate every snapshot with one command and review the diff:
//!
//! ```text
//! TRYCMD=overwrite SNAPSHOTS=overwrite cargo test --test cli
//! TRYCMD=overwrite cargo test --test cli --no-default-features --features cli cmd_cases   # no-pkcs11, no-tpm
//! git diff tests/cmd
//! ```
//!
//! While files are being rewritten, [`cases::every_case_checks_its_whole_output`] may trip
//! over a half-written one: run `cargo test --test cli` once more to confirm. A new trycmd
//! case is a `.toml` with `stdout = ""` and an empty `.stderr` beside it (or `stderr = ""`
//! and an empty `.stdout`): trycmd checks only an output whose field or file exists, and
//! that test insists on both. A new snapbox snapshot is written by `SNAPSHOTS=overwrite`.

#[path = "../common/mod.rs"]
mod common;

mod assertion;
mod cases;
mod certs;
#[cfg(feature = "emulator")]
mod ecosystem;
mod errors;
mod formats;
mod generate;
mod inputs;
mod inspect;
#[cfg(feature = "emulator")]
mod profiles;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const AUD: &str = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";

/// The binary with a clean environment: none of the variables it reads leak in.
pub fn certassert(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certassert"));
    cmd.current_dir(dir).stdin(Stdio::null());
    common::without_certassert_env(&mut cmd);
    cmd
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    certassert(dir)
        .args(args)
        .output()
        .expect("certassert runs")
}

/// A successful run's stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    ok_said(dir, args).0
}

/// A successful run's stdout and stderr.
pub fn ok_said(dir: &Path, args: &[&str]) -> (String, String) {
    let out = run(dir, args);
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(out.status.success(), "certassert {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).expect("utf-8 stdout"), stderr)
}

/// A failing run: exit 1, nothing on stdout, and a stderr that is exactly the snapshot
/// `tests/cmd/generated/{name}.stderr` (after `redactions`): one `error:` line, the last,
/// no panic.
pub fn fails(dir: &Path, args: &[&str], name: &str, redactions: &Redactions) -> String {
    fails_cmd(certassert(dir).args(args), name, redactions)
}

/// As [`fails`], for a command with more set up (environment variables).
pub fn fails_cmd(cmd: &mut Command, name: &str, redactions: &Redactions) -> String {
    let out = cmd.output().expect("certassert runs");
    let args: Vec<_> = cmd.get_args().collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "certassert {args:?} should fail: {stderr}"
    );
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "{args:?}: one error line: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("error: "),
        "{args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    snapshot(&stderr, &format!("{name}.stderr"), redactions);
    stderr
}

/// Compare `actual` whole with `tests/cmd/generated/{file}`, after replacing the values in
/// `redactions` by their placeholders. `SNAPSHOTS=overwrite` rewrites the file instead.
/// `cert show`'s "(valid, N days left)" becomes "(valid, [DAYS] days left)": a certificate
/// made for 90 days has 89 left one second later.
pub fn snapshot(actual: &str, file: &str, redactions: &Redactions) {
    let actual = redact_days_left(actual);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cmd/generated")
        .join(file);
    snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        .redact_with(redactions.clone())
        .eq(actual, snapbox::Data::read_from(&path, None));
}

fn redact_days_left(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        match line.split_once("(valid, ") {
            Some((head, tail))
                if tail.split_once(' ').is_some_and(|(n, rest)| {
                    n.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with("days left)")
                }) =>
            {
                let rest = tail.split_once(' ').unwrap().1;
                out.push_str(&format!("{head}(valid, [DAYS] {rest}"));
            }
            _ => out.push_str(line),
        }
    }
    out
}

pub use snapbox::Redactions;

/// Placeholders for what differs from run to run in the directory `dir`: the directory
/// itself as `[ROOT]`, and for each `(prefix, cert)` pair the certificate's thumbprints and
/// serial as `[{prefix}THUMBPRINT]` (hex SHA-1), `[{prefix}THUMBPRINT_SHA]` (hex SHA-256),
/// `[{prefix}XT]` (x5t), `[{prefix}XT_SHA]` (x5t#S256) and `[{prefix}SERIAL]` (placeholders allow only A-Z and _). The first
/// certificate's dates are `[NOT_BEFORE]` and `[NOT_AFTER]` (two certificates made in the
/// same second share them).
pub fn redactions(dir: &Path, certs: &[(&'static str, &str)]) -> Redactions {
    let mut r = Redactions::new();
    let root = dir.canonicalize().unwrap();
    r.insert("[ROOT]", root.display().to_string()).unwrap();
    for (i, (prefix, cert)) in certs.iter().enumerate() {
        let show: serde_json::Value =
            serde_json::from_str(&ok(dir, &["cert", "show", "--cert", cert, "--json"])).unwrap();
        let mut fields = vec![
            ("thumbprint_sha1", "THUMBPRINT"),
            ("x5t", "XT"),
            ("x5t#S256", "XT_SHA"),
            ("serial", "SERIAL"),
        ];
        if i == 0 {
            fields.extend([("not_before", "NOT_BEFORE"), ("not_after", "NOT_AFTER")]);
        }
        // x5t#S256 in hex, as inspect also shows it.
        use base64::Engine as _;
        let sha256 = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(show["x5t#S256"].as_str().unwrap())
            .unwrap();
        let hex: String = sha256.iter().map(|b| format!("{b:02X}")).collect();
        let placeholder: &'static str = format!("[{prefix}THUMBPRINT_SHA]").leak();
        r.insert(placeholder, hex).unwrap();
        for (field, name) in fields {
            // Placeholders are &'static str: a handful per test, leaked.
            let placeholder: &'static str = format!("[{prefix}{name}]").leak();
            r.insert(placeholder, show[field].as_str().unwrap().to_string())
                .unwrap();
        }
    }
    r
}

/// [`redactions`] plus what differs in an assertion made at test time: `[JTI]`, `[IAT]`
/// (also nbf), `[EXP]`, their RFC 3339 forms `[IAT_TIME]`, `[EXP_TIME]`, and `[XC]` for
/// the certificate an x5c header carries.
pub fn assertion_redactions(dir: &Path, jwt: &str, certs: &[(&'static str, &str)]) -> Redactions {
    let mut r = redactions(dir, certs);
    let mut parts = jwt.trim().split('.');
    let header = b64url_json(parts.next().unwrap());
    let claims = b64url_json(parts.next().unwrap());
    assert_eq!(claims["nbf"], claims["iat"]);
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    r.insert("[JTI]", claims["jti"].as_str().unwrap().to_string())
        .unwrap();
    r.insert("[IAT]", iat.to_string()).unwrap();
    r.insert("[EXP]", exp.to_string()).unwrap();
    r.insert("[IAT_TIME]", certassert::encoding::rfc3339(iat))
        .unwrap();
    r.insert("[EXP_TIME]", certassert::encoding::rfc3339(exp))
        .unwrap();
    if let Some(x5c) = header["x5c"][0].as_str() {
        r.insert("[XC]", x5c.to_string()).unwrap();
    }
    r
}

pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh directory with a certassert-made key and certificate.
pub fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    ok(&p, &["key", "generate", "--key", "k.pem"]);
    ok(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k.pem",
            "--subject",
            "CN=cli-test,O=certassert",
            "--days",
            "90",
            "--out",
            "c.pem",
        ],
    );
    (dir, p)
}

pub fn b64url_json(part: &str) -> serde_json::Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// Verify a JWS with openssl against the certificate's public key.
pub fn openssl_verifies(dir: &Path, jwt: &str, cert: &str, pss: bool) -> bool {
    use base64::Engine as _;
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    std::fs::write(dir.join("input"), input).unwrap();
    std::fs::write(
        dir.join("sig"),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap(),
    )
    .unwrap();
    let pubkey = openssl(dir, &["x509", "-in", cert, "-noout", "-pubkey"]).stdout;
    std::fs::write(dir.join("pub.pem"), pubkey).unwrap();
    let mut args = vec!["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig"];
    if pss {
        args.extend([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ]);
    }
    args.push("input");
    Command::new("openssl")
        .current_dir(dir)
        .args(&args)
        .output()
        .unwrap()
        .status
        .success()
}

/// Verify with PyJWT, a standard JWT library, as a relying party would (aud, alg list, key).
pub fn pyjwt_verifies(dir: &Path, jwt: &str, cert: &str, aud: &str) -> Result<(), String> {
    let script = r#"
import sys, jwt
from cryptography.x509 import load_pem_x509_certificate
key = load_pem_x509_certificate(open(sys.argv[1], 'rb').read()).public_key()
claims = jwt.decode(sys.stdin.read().strip(), key=key, algorithms=['RS256', 'PS256'], audience=sys.argv[2],
                    options={'require': ['exp', 'nbf', 'iat', 'iss', 'sub', 'jti', 'aud']})
assert claims['iss'] == claims['sub']
"#;
    let mut child = Command::new("/usr/bin/python3")
        .current_dir(dir)
        .args(["-c", script, cert, aud])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("python3 with python3-jwt is needed (ci/install-deps.sh installs it): {e}")
        })?;
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jwt.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
