//! `assertion`: the JWT it prints, verified by openssl and PyJWT; the environment
//! fallbacks of azure-identity; PKCS#12 keys and where their password comes from.

use super::*;

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
    snapshot(
        &report,
        "inspect-ps256-ok.stdout",
        &assertion_redactions(&p, jwt, &[("", "c.pem")]),
    );
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
    snapshot(
        &text,
        "inspect-ps256-wrong-cert.stdout",
        &assertion_redactions(&p, jwt, &[("", "c.pem"), ("OTHER_", "c2.pem")]),
    );
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
        "assertion-pfx-no-password",
        &Redactions::new(),
    );
    fails_cmd(
        certassert(&p)
            .args([
                "cert",
                "show",
                "--key",
                "file:app.pfx?password-source=env:PFX_PASS",
            ])
            .env("PFX_PASS", "wrong"),
        "cert-show-pfx-wrong-password",
        &Redactions::new(),
    );
    // Where the password comes from: an unset variable, a missing file, a file others can read.
    std::fs::write(p.join("pass.txt"), "s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p.join("pass.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    for (source, name) in [
        ("env:PFX_PASS", "secret-source-env-unset"),
        ("file:missing.txt", "secret-source-file-missing"),
        ("file:pass.txt", "secret-source-file-mode"),
    ] {
        let key = format!("file:app.pfx?password-source={source}");
        fails(
            &p,
            &["cert", "show", "--key", &key],
            name,
            &Redactions::new(),
        );
    }
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
    snapshot(
        &show,
        "cert-show-pfx-chain.stdout",
        &redactions(&p, &[("", "c.pem")]),
    );
    assert!(
        show.contains("(matches the key)") && show.contains("chain       1 more certificate(s)"),
        "{show}"
    );
}
