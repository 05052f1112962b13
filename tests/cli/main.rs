//! The `certassert` binary as a user drives it: real files, real openssl, the exact text
//! of errors. Signatures are checked by openssl and by PyJWT (Debian's python3-jwt), never
//! by certassert itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
const TENANT: &str = "contoso.onmicrosoft.com";
const AUD: &str = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";

/// The binary with a clean environment: none of the variables it reads leak in.
fn certassert(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certassert"));
    cmd.current_dir(dir).stdin(Stdio::null());
    for var in [
        "CERTASSERT_KEY",
        "CERTASSERT_CERT",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_AUTHORITY_HOST",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    certassert(dir)
        .args(args)
        .output()
        .expect("certassert runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "certassert {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A failing run: exit 1, one `error:` line naming the problem, no panic.
fn fails(dir: &Path, args: &[&str], needle: &str) -> String {
    let out = run(dir, args);
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
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    stderr
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
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
fn setup() -> (tempfile::TempDir, PathBuf) {
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

fn b64url_json(part: &str) -> serde_json::Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// Verify a JWS with openssl against the certificate's public key.
fn openssl_verifies(dir: &Path, jwt: &str, cert: &str, pss: bool) -> bool {
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
fn pyjwt_verifies(dir: &Path, jwt: &str, cert: &str, aud: &str) -> Result<(), String> {
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

#[test]
fn key_generate_writes_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    ok(p, &["key", "generate", "--key", "k.pem", "--bits", "3072"]);
    let mode = std::fs::metadata(p.join("k.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text =
        String::from_utf8(openssl(p, &["pkey", "-in", "k.pem", "-noout", "-text"]).stdout).unwrap();
    assert!(text.contains("3072 bit"), "{text}");
    openssl(p, &["pkey", "-in", "k.pem", "-check", "-noout"]);
    let before = std::fs::read(p.join("k.pem")).unwrap();
    fails(
        p,
        &["key", "generate", "--key", "k.pem"],
        "already exists; nothing was written (choose another path)",
    );
    assert_eq!(
        std::fs::read(p.join("k.pem")).unwrap(),
        before,
        "the existing key is untouched"
    );
    let out = run(
        p,
        &["key", "generate", "--key", "small.pem", "--bits", "1024"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2048"));
    assert!(!p.join("small.pem").exists());
}

#[test]
fn cert_create_and_csr_verify_with_openssl() {
    let (_d, p) = setup();
    openssl(&p, &["verify", "-CAfile", "c.pem", "c.pem"]);
    let text = String::from_utf8(openssl(&p, &["x509", "-in", "c.pem", "-noout", "-text"]).stdout)
        .unwrap();
    for needle in [
        "CA:FALSE",
        "Digital Signature",
        "Subject Key Identifier",
        "Authority Key Identifier",
        "Subject: O = certassert, CN = cli-test",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    ok(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k.pem",
            "--subject",
            "CN=pss",
            "--alg",
            "PS256",
            "--out",
            "pss.pem",
        ],
    );
    openssl(&p, &["verify", "-CAfile", "pss.pem", "pss.pem"]);
    ok(
        &p,
        &[
            "cert",
            "csr",
            "--key",
            "k.pem",
            "--subject",
            "CN=cli-test",
            "--out",
            "app.csr",
        ],
    );
    // OpenSSL 3.0's `req -verify` exits 0 even when the signature is bad: read what it says.
    let said = |out: Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let text = said(openssl(
        &p,
        &["req", "-in", "app.csr", "-verify", "-noout", "-subject"],
    ));
    assert!(
        text.contains("verify OK") && text.contains("CN = cli-test"),
        "{text}"
    );
    // The same check on a CSR with one signature bit flipped does not say OK.
    let mut der = openssl(&p, &["req", "-in", "app.csr", "-outform", "DER"]).stdout;
    *der.last_mut().unwrap() ^= 1;
    std::fs::write(p.join("bad.csr"), der).unwrap();
    let out = Command::new("openssl")
        .current_dir(&p)
        .args([
            "req", "-inform", "DER", "-in", "bad.csr", "-verify", "-noout",
        ])
        .output()
        .unwrap();
    assert!(!said(out).contains("verify OK"));
    // --out never replaces silently; --force does.
    fails(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k.pem",
            "--subject",
            "CN=x",
            "--out",
            "c.pem",
        ],
        "--force",
    );
    ok(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k.pem",
            "--subject",
            "CN=x",
            "--out",
            "c.pem",
            "--force",
        ],
    );
}

#[test]
fn cert_show_matches_openssl_fingerprints() {
    let (_d, p) = setup();
    let show = ok(&p, &["cert", "show", "--cert", "c.pem"]);
    let fp = String::from_utf8(
        openssl(
            &p,
            &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha1"],
        )
        .stdout,
    )
    .unwrap();
    let hex = fp.trim().split('=').nth(1).unwrap().replace(':', "");
    assert!(show.contains(&format!("thumbprint  {hex}")), "{show}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&p, &["cert", "show", "--cert", "c.pem", "--json"])).unwrap();
    assert_eq!(json["thumbprint_sha1"], hex);
    let raw: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    use base64::Engine as _;
    assert_eq!(
        json["x5t"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let fp256 = String::from_utf8(
        openssl(
            &p,
            &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha256"],
        )
        .stdout,
    )
    .unwrap();
    let hex256 = fp256.trim().split('=').nth(1).unwrap().replace(':', "");
    let raw256: Vec<u8> = (0..hex256.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex256[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        json["x5t#S256"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw256)
    );
    assert_eq!(json["key"], "RSA 2048");
    assert_eq!(json["key_usage"], serde_json::json!(["digitalSignature"]));
    // With the key too, the pairing is checked.
    assert!(
        ok(&p, &["cert", "show", "--key", "k.pem", "--cert", "c.pem"])
            .contains("(matches the key)")
    );
    ok(&p, &["key", "generate", "--key", "other.pem"]);
    fails(
        &p,
        &["cert", "show", "--key", "other.pem", "--cert", "c.pem"],
        "does not belong to this key",
    );
}

#[test]
fn manifest_entry_registers_the_certificate() {
    use base64::Engine as _;
    let (_d, p) = setup();
    let entry: serde_json::Value =
        serde_json::from_str(&ok(&p, &["cert", "manifest", "--cert", "c.pem"])).unwrap();
    let der = openssl(&p, &["x509", "-in", "c.pem", "-outform", "DER"]).stdout;
    let std_b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        std_b64.decode(entry["value"].as_str().unwrap()).unwrap(),
        der,
        "value is base64 DER, not base64 of PEM text"
    );
    assert_eq!(
        std_b64
            .decode(entry["customKeyIdentifier"].as_str().unwrap())
            .unwrap()
            .len(),
        20
    );
    assert_eq!(entry["type"], "AsymmetricX509Cert");
    assert_eq!(entry["usage"], "Verify");
    assert_eq!(entry["displayName"], "CN=cli-test,O=certassert");
    assert_eq!(entry["keyId"].as_str().unwrap().len(), 36);
    for field in ["startDate", "endDate"] {
        let s = entry[field].as_str().unwrap();
        assert!(
            s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T',
            "{field}: {s}"
        );
    }
}

#[test]
fn assertion_rs256_is_one_line_verified_by_openssl_and_pyjwt() {
    let (_d, p) = setup();
    let out = ok(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ],
    );
    assert_eq!(out.lines().count(), 1, "exactly one line: {out}");
    let jwt = out.trim();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header = b64url_json(parts[0]);
    let claims = b64url_json(parts[1]);
    let show: serde_json::Value =
        serde_json::from_str(&ok(&p, &["cert", "show", "--cert", "c.pem", "--json"])).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": show["x5t"]})
    );
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["iss"], CLIENT);
    assert_eq!(claims["sub"], CLIENT);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        600
    );
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.len() == 36 && jti.as_bytes()[14] == b'4', "{jti}");
    assert!(openssl_verifies(&p, jwt, "c.pem", false));
    pyjwt_verifies(&p, jwt, "c.pem", AUD).unwrap();
    // A tampered token fails both verifiers: the checks can fail.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1].replacen('e', "f", 1),
        parts[2]
    );
    assert!(!openssl_verifies(&p, &tampered, "c.pem", false));
    assert!(pyjwt_verifies(&p, &tampered, "c.pem", AUD).is_err());
    // Each run has a fresh jti.
    let again = ok(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ],
    );
    assert_ne!(
        b64url_json(again.trim().split('.').nth(1).unwrap())["jti"],
        claims["jti"]
    );
}

#[test]
fn assertion_ps256_x5c_token_url_and_lifetime() {
    let (_d, p) = setup();
    let url = "https://idp.example.net/oauth2/token";
    let jwt = ok(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--client-id",
            CLIENT,
            "--alg",
            "PS256",
            "--x5c",
            "--token-url",
            url,
            "--lifetime",
            "120",
        ],
    );
    let jwt = jwt.trim();
    let header = b64url_json(jwt.split('.').next().unwrap());
    let claims = b64url_json(jwt.split('.').nth(1).unwrap());
    assert_eq!(header["alg"], "PS256");
    assert!(header.get("x5t").is_none());
    assert_eq!(header["x5t#S256"].as_str().unwrap().len(), 43);
    use base64::Engine as _;
    let der = openssl(&p, &["x509", "-in", "c.pem", "-outform", "DER"]).stdout;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(header["x5c"][0].as_str().unwrap())
            .unwrap(),
        der
    );
    assert_eq!(claims["aud"], url);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        120
    );
    assert!(openssl_verifies(&p, jwt, "c.pem", true), "strict salt 32");
    pyjwt_verifies(&p, jwt, "c.pem", url).unwrap();
    // inspect matches x5t#S256 to the certificate and verifies the PSS signature with it.
    let report = ok(&p, &["inspect", "--cert", "c.pem", "--aud", url, jwt]);
    assert!(report.contains("ok: no problems found"), "{report}");
    ok(&p, &["key", "generate", "--key", "k2.pem"]);
    ok(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k2.pem",
            "--subject",
            "CN=other",
            "--out",
            "c2.pem",
        ],
    );
    let out = run(&p, &["inspect", "--cert", "c2.pem", jwt]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("x5t#S256") && text.contains("does not name the given certificate"),
        "{text}"
    );
    assert!(text.contains("PS256 signature does not verify"), "{text}");
}

#[test]
fn environment_fallbacks_follow_azure_identity() {
    let (_d, p) = setup();
    // A PEM bundle of key + certificate, as AZURE_CLIENT_CERTIFICATE_PATH usually names.
    let bundle = [
        std::fs::read(p.join("k.pem")).unwrap(),
        std::fs::read(p.join("c.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(p.join("bundle.pem"), bundle).unwrap();
    let out = certassert(&p)
        .args(["assertion"])
        .env("AZURE_CLIENT_CERTIFICATE_PATH", "bundle.pem")
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8(out.stdout).unwrap();
    pyjwt_verifies(&p, jwt.trim(), "c.pem", AUD).unwrap();
    let out = certassert(&p)
        .args(["assertion", "--tenant", "t", "--client-id", CLIENT])
        .env("CERTASSERT_KEY", "k.pem")
        .env("CERTASSERT_CERT", "c.pem")
        .env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims = b64url_json(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert_eq!(
        claims["aud"],
        "https://login.microsoftonline.us/t/oauth2/v2.0/token"
    );
}

#[test]
fn pkcs12_with_password_from_env_and_stored_certificate() {
    let (_d, p) = setup();
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
            "pass:s3cret",
        ],
    );
    let out = certassert(&p)
        .args([
            "assertion",
            "--key",
            "file:app.pfx?password-source=env:PFX_PASS",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ])
        .env("PFX_PASS", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pyjwt_verifies(
        &p,
        String::from_utf8(out.stdout).unwrap().trim(),
        "c.pem",
        AUD,
    )
    .unwrap();
    fails(
        &p,
        &[
            "assertion",
            "--key",
            "app.pfx",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ],
        "standard input is not a terminal",
    );
    let out = certassert(&p)
        .args([
            "cert",
            "show",
            "--key",
            "file:app.pfx?password-source=env:PFX_PASS",
        ])
        .env("PFX_PASS", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    // A PKCS#12 with a CA in it: `cert show --key` lists the stored chain too.
    openssl(
        &p,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-subj", "/CN=ca", "-days", "90",
        ],
    );
    openssl(
        &p,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "k.pem",
            "-in",
            "c.pem",
            "-certfile",
            "ca.pem",
            "-out",
            "chain.pfx",
            "-passout",
            "pass:",
        ],
    );
    let show = ok(&p, &["cert", "show", "--key", "chain.pfx"]);
    assert!(
        show.contains("(matches the key)") && show.contains("chain       1 more certificate(s)"),
        "{show}"
    );
}

#[test]
fn bad_inputs_fail_clearly() {
    let (_d, p) = setup();
    let base = ["assertion", "--tenant", TENANT, "--client-id", CLIENT];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    std::fs::write(
        p.join("garbage.pem"),
        "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(p.join("garbage.bin"), [0u8, 1, 2, 3]).unwrap();
    openssl(
        &p,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.pem",
        ],
    );
    openssl(
        &p,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "small.pem",
        ],
    );
    ok(&p, &["key", "generate", "--key", "other.pem"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &with(&["--key", "missing.pem", "--cert", "c.pem"]),
            "cannot read key file missing.pem",
        ),
        (
            &with(&["--key", "garbage.pem", "--cert", "c.pem"]),
            "not valid base64",
        ),
        (
            &with(&["--key", "garbage.bin", "--cert", "c.pem"]),
            "not a key file certassert can read",
        ),
        (
            &with(&["--key", "ec.pem", "--cert", "c.pem"]),
            "Entra ID accepts RSA certificate credentials only",
        ),
        (
            &with(&["--key", "small.pem", "--cert", "c.pem"]),
            "1024 bits; Entra ID requires at least 2048",
        ),
        (
            &with(&["--key", "other.pem", "--cert", "c.pem"]),
            "AADSTS700027",
        ),
        (
            &with(&["--key", "c.pem", "--cert", "c.pem"]),
            "pass the key with --key",
        ),
        (
            &with(&["--key", "k.pem", "--cert", "k.pem"]),
            "this is a key; pass it with --key",
        ),
        (
            &with(&["--key", "k.pem", "--cert", "missing.pem"]),
            "cannot read certificate file missing.pem",
        ),
        (&with(&["--key", "k.pem"]), "pass --cert PATH"),
        (
            &with(&["--key", "k.pem", "--cert", "c.pem", "--lifetime", "7200"]),
            "between 1 and 3600",
        ),
        // Arguments are checked before the key is opened (no password prompt for a doomed run).
        (
            &with(&["--key", "missing.pem", "--lifetime", "0"]),
            "--lifetime 0",
        ),
        (
            &with(&[
                "--key",
                "pkcs11:token=x?module-path=/nonexistent/p11.so",
                "--cert",
                "c.pem",
            ]),
            if cfg!(feature = "pkcs11") {
                "PKCS#11 module /nonexistent/p11.so: no such file"
            } else {
                "rebuild with --features pkcs11"
            },
        ),
        (
            &with(&[
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--authority-host",
                "http://login.example.com",
            ]),
            "only to loopback",
        ),
        (
            &[
                "assertion",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--client-id",
                CLIENT,
            ],
            "no tenant",
        ),
        (
            &[
                "assertion",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--tenant",
                "common",
                "--client-id",
                CLIENT,
            ],
            "AADSTS700023",
        ),
        (
            &[
                "assertion",
                "--key",
                "k.pem",
                "--cert",
                "c.pem",
                "--tenant",
                TENANT,
            ],
            "no client id",
        ),
        (
            &["assertion", "--tenant", TENANT, "--client-id", CLIENT],
            "no key given",
        ),
        (
            &["cert", "create", "--key", "k.pem", "--subject", "my-app"],
            "KEY=VALUE",
        ),
        (
            &[
                "cert",
                "create",
                "--key",
                "k.pem",
                "--subject",
                "CN=x",
                "--store",
            ],
            "--store",
        ),
    ];
    for (args, needle) in cases {
        fails(&p, args, needle);
    }
}

#[test]
fn expired_certificate_is_refused_before_signing() {
    let (_d, p) = setup();
    let pkcs8 = std::fs::read_to_string(p.join("k.pem")).unwrap();
    let signer = certassert::signer::SoftwareSigner::from_file(&p.join("k.pem"), None).unwrap();
    let old = certassert::encoding::unix_now() - 10 * 86_400;
    let cert = certassert::cert::create_self_signed(
        &signer,
        certassert::Algorithm::Rs256,
        "CN=old",
        1,
        old,
    )
    .unwrap();
    std::fs::write(p.join("old.pem"), cert.to_pem()).unwrap();
    assert!(!pkcs8.is_empty());
    fails(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "old.pem",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ],
        "expired on",
    );
    assert!(
        ok(&p, &["cert", "show", "--cert", "old.pem"]).contains("expired on"),
        "show still works"
    );
}

#[test]
fn inspect_flags_hand_made_mistakes_and_passes_ours() {
    let (_d, p) = setup();
    let jwt = ok(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
        ],
    );
    let mut child = certassert(&p)
        .args([
            "inspect",
            "--cert",
            "c.pem",
            "--client-id",
            CLIENT,
            "--aud",
            AUD,
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jwt.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: no problems found"));

    // The seed question's hand-built assertion: no x5t, no aud.
    let seed = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiIyZjg3N2RhYS1iNmY1LTQyYTMtODQzMC1hY2YyMzhiMjM0ZTEiLCJzdWIiOiIyZjg3N2RhYS1iNmY1LTQyYTMtODQzMC1hY2YyMzhiMjM0ZTEiLCJuYmYiOjE1NzA4MDM2NTEsImV4cCI6MTU3MDgwNzI1MSwiaWF0IjoxNTcwODAzNjUxLCJqdGkiOiIzQkM4Nzk4MDMxMEM0OTBBNjJBQTVGNjM0M0Q0QzU1REY4RUJCQTg1IiwidHlwIjoiSldUIn0.t8lArFodXkHO9Ps9O3q7VH55pRl6NtcIkEbSz-hDL0V6I7iWi4N-1VBNM_nFUHkNhBoGaskV0eQtqMXYildb7oEr75KgbcjacZy2OI319uPwztHp9jVxjsBhB_rKXND4M6URr23IWkLwFb2008vq_fY4trLUZR9ILZOE0Dr_MdaQmrt8fU9mYNkSEnRsiXKuqcS97oBfo6-9MuDbkcNuAOxZnsmbYvutk1LeabFywbc4qO3dgb8PtfqMAiYxgYTzg72tAw-ncq6uRXgG5XoxJVOExCyn5CXV9lSsE33_oekOEfRU5CyC0IvtSLhSoZ7LKtSMJ22ZXiyFqvddenJC8w";
    let out = run(&p, &["inspect", seed]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for code in ["AADSTS5002723", "AADSTS700023", "AADSTS700024"] {
        assert!(text.contains(code), "{code} missing:\n{text}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&run(&p, &["inspect", "--json", seed]).stdout).unwrap();
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["aadsts"] == 5002723));

    // Our own assertion checked against the wrong certificate: x5t and signature both flagged.
    ok(&p, &["key", "generate", "--key", "k2.pem"]);
    ok(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k2.pem",
            "--subject",
            "CN=other",
            "--out",
            "c2.pem",
        ],
    );
    let out = run(&p, &["inspect", "--cert", "c2.pem", jwt.trim()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("does not name the given certificate"),
        "{text}"
    );
    assert!(text.contains("signature does not verify"), "{text}");
    fails(&p, &["inspect", "not-a-jwt"], "not a compact JWT");
}

#[test]
fn help_teaches_and_version_prints() {
    let dir = tempfile::tempdir().unwrap();
    let help = ok(dir.path(), &["--help"]);
    assert!(
        help.contains("x5t is base64url of the certificate's SHA-1"),
        "{help}"
    );
    assert!(
        help.lines().all(|l| l.len() <= 100),
        "help fits 100 columns:\n{help}"
    );
    let help = ok(dir.path(), &["assertion", "--help"]);
    assert!(
        help.contains("Examples:") && help.contains("AZURE_TENANT_ID"),
        "{help}"
    );
    assert!(ok(dir.path(), &["--version"]).starts_with("certassert "));
}
