//! The backend conformance suite: [`check`] runs the same checks against any [`Signer`]
//! — software key files (tests/software), SoftHSM2 (tests/pkcs11) and swtpm
//! (tests/tpm). Signatures over empty, short and 10 KB messages, a self-signed
//! certificate, a CSR and client assertions, every one verified by the two independent
//! verifiers in the parent module (the `rsa` crate with a PSS salt of exactly 32, and the
//! openssl CLI) and shown to be refused once tampered with. certassert is used only to
//! *produce* things.

use super::{
    assert_rejected, assert_verifies, b64url, b64url_decode, now, openssl, openssl_fingerprint,
    openssl_output, openssl_stdout, public_key_pem, random_bytes, rsa_crate_verify, s, tempdir,
    write, CLIENT_ID,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use certassert::assertion::{self, Params};
use certassert::cert::{self, Certificate};
use certassert::{Algorithm, Signer};
use std::path::{Path, PathBuf};

pub const AUDIENCE: &str =
    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
pub const SUBJECT: &str = "CN=conformance,O=certassert";

/// The whole conformance suite for one signer.
pub fn check(signer: &dyn Signer) {
    let dir = tempdir();
    let dir = dir.path();
    let spki = signer.public_key_der().to_vec();
    let pub_pem = public_key_pem(dir, &spki);
    let modulus_len = {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        rsa::RsaPublicKey::from_public_key_der(&spki)
            .expect("the signer's public key is an RSA SubjectPublicKeyInfo")
            .size()
    };
    assert!(
        modulus_len >= 256,
        "Entra needs RSA ≥ 2048 bits, got {}",
        modulus_len * 8
    );

    let algs = signer.algorithms().to_vec();
    assert!(!algs.is_empty(), "the signer offers no algorithm");
    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        if !algs.contains(&alg) {
            eprintln!("note: {signer:?} does not offer {alg}");
        }
    }

    check_signatures(dir, signer, &algs, &spki, &pub_pem, modulus_len);
    let mut certs = Vec::new();
    for &alg in &algs {
        certs.push(check_certificate(dir, signer, alg, &pub_pem));
        check_csr(dir, signer, alg, &pub_pem);
    }
    for &alg in &algs {
        check_assertion(dir, signer, alg, &certs[0].0, &certs[0].1);
    }
}

fn check_signatures(
    dir: &Path,
    signer: &dyn Signer,
    algs: &[Algorithm],
    spki: &[u8],
    pub_pem: &Path,
    modulus_len: usize,
) {
    let messages: [(&str, Vec<u8>); 3] = [
        ("empty message", Vec::new()),
        (
            "short message",
            b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0".to_vec(),
        ),
        ("10 KB random message", random_bytes(10 * 1024)),
    ];
    for &alg in algs {
        for (what, message) in &messages {
            let what = format!("{alg} over the {what}");
            let sig = signer
                .sign(alg, message)
                .unwrap_or_else(|e| panic!("{what}: sign failed: {e}"));
            assert_eq!(
                sig.len(),
                modulus_len,
                "{what}: signature length is the modulus length"
            );
            assert_verifies(dir, spki, pub_pem, alg, message, &sig, &what);

            // The check can fail: a changed message is refused by both verifiers.
            let mut tampered = message.clone();
            match tampered.first_mut() {
                Some(b) => *b ^= 0x01,
                None => tampered.push(0),
            }
            assert_rejected(
                dir,
                spki,
                pub_pem,
                alg,
                &tampered,
                &sig,
                &format!("{what}, tampered message"),
            );
            let mut bad_sig = sig.clone();
            let last = bad_sig.len() - 1;
            bad_sig[last] ^= 0x80;
            assert_rejected(
                dir,
                spki,
                pub_pem,
                alg,
                message,
                &bad_sig,
                &format!("{what}, tampered signature"),
            );

            let again = signer.sign(alg, message).expect("second signature");
            match alg {
                // PKCS#1 v1.5 is deterministic; PSS draws a fresh random salt each time.
                Algorithm::Rs256 => assert_eq!(sig, again, "{what}: RS256 is deterministic"),
                Algorithm::Ps256 => assert_ne!(sig, again, "{what}: PS256 salt is random"),
            }
            let other = match alg {
                Algorithm::Rs256 => Algorithm::Ps256,
                Algorithm::Ps256 => Algorithm::Rs256,
            };
            assert!(
                rsa_crate_verify(spki, other, message, &sig).is_err(),
                "{what}: the signature also verifies as {other}: wrong padding"
            );
        }
    }
}

/// Self-signed certificate through the signer; returns it and its PEM path.
fn check_certificate(
    dir: &Path,
    signer: &dyn Signer,
    alg: Algorithm,
    pub_pem: &Path,
) -> (Certificate, PathBuf) {
    let now = now();
    let cert = cert::create_self_signed(signer, alg, SUBJECT, 30, now)
        .unwrap_or_else(|e| panic!("{alg}: create_self_signed: {e}"));
    let pem = write(dir, &format!("cert-{alg}.pem"), cert.to_pem());

    // openssl checks the signature (self-signed: the certificate is its own anchor).
    let out = openssl_stdout(&["verify", "-CAfile", s(&pem), s(&pem)]);
    assert!(out.trim_end().ends_with(": OK"), "{alg}: verify said {out}");

    // The DER openssl reads back is the DER certassert holds.
    let der = openssl(&["x509", "-in", s(&pem), "-outform", "DER"]).stdout;
    assert_eq!(der, cert.der(), "{alg}: PEM round trip");

    // Thumbprints, computed by openssl.
    let (sha1_hex, sha1) = openssl_fingerprint(&pem, "sha1");
    assert_eq!(cert.thumbprint_hex(), sha1_hex, "{alg}: hex thumbprint");
    assert_eq!(sha1.len(), 20);
    assert_eq!(cert.x5t(), b64url(&sha1), "{alg}: x5t");
    let (_, sha256) = openssl_fingerprint(&pem, "sha256");
    assert_eq!(cert.x5t_s256(), b64url(&sha256), "{alg}: x5t#S256");

    // The certificate carries the signer's key.
    let cert_pub = openssl_stdout(&["x509", "-in", s(&pem), "-noout", "-pubkey"]);
    let signer_pub = std::fs::read_to_string(pub_pem).unwrap();
    assert_eq!(cert_pub, signer_pub, "{alg}: certificate public key");
    cert.check_key(signer)
        .unwrap_or_else(|e| panic!("{alg}: check_key: {e}"));
    cert.check_validity(now)
        .unwrap_or_else(|e| panic!("{alg}: check_validity: {e}"));

    // Contents, as openssl reads them.
    let subject = openssl_stdout(&[
        "x509",
        "-in",
        s(&pem),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert_eq!(subject.trim(), format!("subject={SUBJECT}"), "{alg}");
    let text = openssl_stdout(&["x509", "-in", s(&pem), "-noout", "-text"]);
    for needle in ["CA:FALSE", "Digital Signature", "Version: 3 (0x2)"] {
        assert!(text.contains(needle), "{alg}: no {needle} in:\n{text}");
    }
    match alg {
        Algorithm::Rs256 => assert!(text.contains("sha256WithRSAEncryption"), "{text}"),
        Algorithm::Ps256 => {
            for needle in [
                "rsassaPss",
                "Hash Algorithm: sha256",
                "Mask Algorithm: mgf1 with sha256",
                "Salt Length: 0x20",
            ] {
                assert!(text.contains(needle), "{alg}: no {needle} in:\n{text}");
            }
        }
    }
    let dates = openssl_stdout(&["x509", "-in", s(&pem), "-noout", "-dates"]);
    assert!(dates.contains("notBefore=") && dates.contains("notAfter="));
    assert_eq!(cert.not_after() - cert.not_before(), 30 * 86_400 + 60);
    (cert, pem)
}

fn check_csr(dir: &Path, signer: &dyn Signer, alg: Algorithm, pub_pem: &Path) {
    let csr =
        cert::create_csr(signer, alg, SUBJECT).unwrap_or_else(|e| panic!("{alg}: create_csr: {e}"));
    let pem = write(
        dir,
        &format!("csr-{alg}.pem"),
        certassert::public_key::pem::encode("CERTIFICATE REQUEST", &csr),
    );
    let out = openssl(&["req", "-verify", "-noout", "-in", s(&pem)]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("verify OK"), "{alg}: req -verify said {said}");
    let csr_pub = openssl_stdout(&["req", "-in", s(&pem), "-noout", "-pubkey"]);
    assert_eq!(
        csr_pub,
        std::fs::read_to_string(pub_pem).unwrap(),
        "{alg}: CSR key"
    );
    let subject = openssl_stdout(&[
        "req",
        "-in",
        s(&pem),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert_eq!(subject.trim(), format!("subject={SUBJECT}"), "{alg}");

    // A CSR whose signature is broken is refused, so the check above can fail.
    let mut broken = csr.clone();
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    let bad = write(
        dir,
        "csr-broken.pem",
        certassert::public_key::pem::encode("CERTIFICATE REQUEST", &broken),
    );
    // (OpenSSL 3.0's `req -verify` exits 0 even on failure, so read what it says.)
    let out = openssl_output(&["req", "-verify", "-noout", "-in", s(&bad)]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("verify OK") && said.contains("verify failure"),
        "{alg}: openssl accepts a CSR with a broken signature: {said}"
    );
}

/// Whether `s` is a lowercase canonical version-4 UUID.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

fn check_assertion(
    dir: &Path,
    signer: &dyn Signer,
    alg: Algorithm,
    leaf: &Certificate,
    leaf_pem: &Path,
) {
    let now = now();
    let lifetime = 600;
    let cert_pub = write(
        dir,
        "cert-pub.pem",
        openssl(&["x509", "-in", s(leaf_pem), "-noout", "-pubkey"]).stdout,
    );
    // The key the relying party uses: the certificate's, as openssl extracts it.
    let cert_spki = openssl(&["pkey", "-pubin", "-in", s(&cert_pub), "-outform", "DER"]).stdout;
    let (_, sha1) = openssl_fingerprint(leaf_pem, "sha1");
    let (_, sha256) = openssl_fingerprint(leaf_pem, "sha256");

    let mut jtis = Vec::new();
    for x5c in [false, true] {
        let params = Params {
            client_id: CLIENT_ID,
            audience: AUDIENCE,
            alg,
            lifetime,
            x5c,
        };
        let jwt = assertion::build(signer, std::slice::from_ref(leaf), &params, now)
            .unwrap_or_else(|e| panic!("{alg}: assertion::build: {e}"));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS has three parts: {jwt}");
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        let signature = b64url_decode(parts[2]);
        let what = format!("{alg} client assertion (x5c {x5c})");
        assert_verifies(
            dir,
            &cert_spki,
            &cert_pub,
            alg,
            signing_input.as_bytes(),
            &signature,
            &what,
        );
        let mut tampered = signing_input.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert_rejected(
            dir,
            &cert_spki,
            &cert_pub,
            alg,
            &tampered,
            &signature,
            &format!("{what}, tampered"),
        );

        let header: serde_json::Value =
            serde_json::from_slice(&b64url_decode(parts[0])).expect("header is JSON");
        let header = header.as_object().expect("header is an object");
        assert_eq!(header["alg"], alg.as_str(), "{what}: {header:?}");
        assert_eq!(header["typ"], "JWT", "{what}: {header:?}");
        let mut expected_keys = vec!["alg", "typ"];
        match alg {
            Algorithm::Rs256 => {
                assert_eq!(header["x5t"], b64url(&sha1), "{what}: x5t");
                expected_keys.push("x5t");
            }
            Algorithm::Ps256 => {
                assert_eq!(header["x5t#S256"], b64url(&sha256), "{what}: x5t#S256");
                expected_keys.push("x5t#S256");
            }
        }
        if x5c {
            let chain = header["x5c"].as_array().expect("x5c is an array");
            assert_eq!(chain.len(), 1, "{what}: x5c");
            let der = STANDARD
                .decode(chain[0].as_str().expect("x5c entry is a string"))
                .expect("x5c is standard base64");
            assert_eq!(der, leaf.der(), "{what}: x5c[0] is the certificate");
            expected_keys.push("x5c");
        }
        let mut keys: Vec<&str> = header.keys().map(String::as_str).collect();
        keys.sort_unstable();
        expected_keys.sort_unstable();
        assert_eq!(keys, expected_keys, "{what}: header members");

        let claims: serde_json::Value =
            serde_json::from_slice(&b64url_decode(parts[1])).expect("claims are JSON");
        let claims = claims.as_object().expect("claims are an object");
        let mut keys: Vec<&str> = claims.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"],
            "{what}: claim names"
        );
        assert_eq!(claims["aud"], AUDIENCE, "{what}");
        assert_eq!(claims["iss"], CLIENT_ID, "{what}");
        assert_eq!(claims["sub"], CLIENT_ID, "{what}");
        let jti = claims["jti"].as_str().expect("jti is a string");
        assert!(is_uuid_v4(jti), "{what}: jti {jti} is not a UUID v4");
        jtis.push(jti.to_string());
        let int = |name: &str| {
            claims[name]
                .as_i64()
                .unwrap_or_else(|| panic!("{what}: {name} is not an integer: {}", claims[name]))
        };
        assert_eq!(int("nbf"), now, "{what}: nbf");
        assert_eq!(int("iat"), now, "{what}: iat");
        assert_eq!(int("exp"), int("nbf") + lifetime as i64, "{what}: exp");
    }
    assert_ne!(jtis[0], jtis[1], "{alg}: each assertion gets a fresh jti");
}
