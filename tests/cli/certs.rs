//! Keys and certificates: `key generate`, `cert create|csr|show|manifest`, checked with
//! openssl; what they print is compared whole with `tests/cmd/generated/`.

use super::*;

#[test]
fn key_generate_writes_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (_, said) = ok_said(p, &["key", "generate", "--key", "k.pem", "--bits", "3072"]);
    snapshot(&said, "key-generate.stderr", &Redactions::new());
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
        "key-generate-exists",
        &Redactions::new(),
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
    // Its text is the trycmd case tests/cmd/args/key-generate-bits-1024.
    assert_eq!(out.status.code(), Some(2));
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
    let (_, said) = ok_said(
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
    snapshot(
        &said,
        "cert-create.stderr",
        &redactions(&p, &[("", "pss.pem")]),
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
        "cert-create-exists",
        &Redactions::new(),
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
    let r = redactions(&p, &[("", "c.pem")]);
    snapshot(&show, "cert-show.stdout", &r);
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
    let show = ok(&p, &["cert", "show", "--key", "k.pem", "--cert", "c.pem"]);
    assert!(show.contains("(matches the key)"));
    snapshot(&show, "cert-show-with-key.stdout", &r);
    ok(&p, &["key", "generate", "--key", "other.pem"]);
    fails(
        &p,
        &["cert", "show", "--key", "other.pem", "--cert", "c.pem"],
        "cert-show-other-key",
        &r,
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
