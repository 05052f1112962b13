//! The proof of possession, verified by PyJWT (Debian's python3-jwt) with the public key
//! that `cryptography` reads from the certificate, and its x5t checked against openssl's
//! SHA-1 fingerprint.

use crate::common::emulator::AppFiles;
use crate::common::{openssl_stdout, s, tempdir};
use certassert::encoding::unix_now;
use certassert::graph::{self, GRAPH_APP_ID};
use certassert::signer;
use std::process::Command;

const OBJECT_ID: &str = "6a1c1bd4-1d5c-4a8e-9d1e-0c3f1b2a4e77";

/// Verify `jwt` with PyJWT against the certificate at `cert`: RS256 only, `aud` and
/// `iss` required and equal to what Graph expects, `nbf`/`exp` checked. Prints the
/// header and the claims as JSON.
fn pyjwt(jwt: &str, cert: &std::path::Path, iss: &str) -> std::process::Output {
    let script = r#"
import json, sys, jwt
from cryptography import x509
token, cert, aud, iss = sys.stdin.read().strip(), sys.argv[1], sys.argv[2], sys.argv[3]
key = x509.load_pem_x509_certificate(open(cert, 'rb').read()).public_key()
claims = jwt.decode(token, key, algorithms=['RS256'], audience=aud, issuer=iss,
                    options={'require': ['aud', 'iss', 'nbf', 'exp']})
print(json.dumps({'header': jwt.get_unverified_header(token), 'claims': claims}))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script, s(cert), GRAPH_APP_ID, iss])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with python3-jwt (ci/install-deps.sh)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jwt.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn pyjwt_verifies_the_proof_of_possession() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "current", "c");
    let key = signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap();
    let cert = app.certificate();
    let now = unix_now();
    let proof = graph::proof(key.as_ref(), &cert, OBJECT_ID, now).unwrap();
    let out = pyjwt(&proof, &app.cert, OBJECT_ID);
    assert!(
        out.status.success(),
        "PyJWT refused the proof: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let header = &seen["header"];
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    // x5t: base64url of the SHA-1 openssl computes over the DER.
    let fingerprint = openssl_stdout(&[
        "x509",
        "-in",
        s(&app.cert),
        "-noout",
        "-fingerprint",
        "-sha1",
    ]);
    let hex: String = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(header["x5t"], crate::common::b64url(&bytes));
    let claims = &seen["claims"];
    assert_eq!(claims["aud"], GRAPH_APP_ID);
    assert_eq!(
        claims["iss"], OBJECT_ID,
        "iss is the object id, not the client id"
    );
    let (nbf, exp) = (
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((now - 5..=now + 5).contains(&nbf), "nbf {nbf}, now {now}");
    assert!(exp > nbf && exp - nbf <= 600, "lifetime {}", exp - nbf);

    // The same proof against another certificate, or for another iss, is refused.
    let other = AppFiles::new(dir.path(), "other", "c");
    assert!(!pyjwt(&proof, &other.cert, OBJECT_ID).status.success());
    assert!(!pyjwt(&proof, &app.cert, "c").status.success());

    // The addKey and removeKey bodies, exactly.
    let new = other.certificate();
    let body = graph::add_key_body(&new, &proof);
    let der = crate::common::openssl(&["x509", "-in", s(&other.cert), "-outform", "DER"]).stdout;
    use base64::Engine as _;
    assert_eq!(
        body,
        serde_json::json!({
            "keyCredential": {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": base64::engine::general_purpose::STANDARD.encode(der),
            },
            "passwordCredential": null,
            "proof": proof,
        })
    );
    assert_eq!(
        graph::remove_key_body("0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f", &proof),
        serde_json::json!({"keyId": "0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f", "proof": proof})
    );
    // A client id where the object id belongs is refused before anything is signed.
    assert!(matches!(
        graph::proof(key.as_ref(), &cert, "my-app", now),
        Err(graph::Error::ObjectId(_))
    ));
}
