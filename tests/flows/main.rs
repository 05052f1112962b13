//! Token flows over real HTTP and HTTPS against the emulator, started in-process or as a
//! `certassert emulator` child: the exact form body of every grant, the assertion as an
//! independent verifier (PyJWT, the `rsa` crate) sees it, Entra's errors with their
//! hints, retries counted at the emulator, the cache (no request, no signature; 0600;
//! concurrent writers), and the CLI's exit codes and output formats.
//!
//! The fixture and the independent verifiers are here; the tests are in one file per
//! topic.

#[path = "../common/mod.rs"]
mod common;

mod cache;
mod cli;
mod errors;
mod grants;
mod hostile;
mod http;
mod verbose;

use certassert::emulator::Running;
use certassert::entra::{Credential, Grant, HttpOptions, Target, TokenRequest};
use certassert::{signer, Algorithm, Signer};
use common::emulator::AppFiles;
use common::{b64url_decode, rsa_crate_verify, s, tempdir};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const GRAPH: &str = "https://graph.microsoft.com/.default";

fn quick() -> HttpOptions {
    HttpOptions {
        backoff: Duration::from_millis(20),
        ..HttpOptions::default()
    }
}

fn request(running: &Running, target: Target, grant: Grant) -> TokenRequest {
    let v1 = matches!(target, Target::Resource(_));
    TokenRequest {
        endpoint: running.token_endpoint(TENANT, v1).unwrap(),
        client_id: CLIENT.into(),
        target,
        grant,
        claims: None,
    }
}

fn graph() -> Target {
    Target::Scopes(vec![GRAPH.into()])
}

struct Fixture {
    dir: tempfile::TempDir,
    app: AppFiles,
    signer: Box<dyn Signer>,
    chain: Vec<certassert::cert::Certificate>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempdir();
        let app = AppFiles::new(dir.path(), "app", CLIENT);
        let signer = signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap();
        let chain = vec![app.certificate()];
        Self {
            dir,
            app,
            signer,
            chain,
        }
    }

    fn credential(&self, alg: Algorithm) -> Credential<'_> {
        Credential {
            signer: self.signer.as_ref(),
            chain: &self.chain,
            alg,
            x5c: false,
            lifetime: 600,
        }
    }
}

fn fields(r: &certassert::emulator::Recorded) -> Vec<&str> {
    r.form.iter().map(|(k, _)| k.as_str()).collect()
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&b64url_decode(part)).unwrap()
}

/// Verify a client assertion with PyJWT (Debian's python3-jwt) against the certificate.
fn pyjwt_verify(dir: &Path, jwt: &str, cert: &Path, aud: &str) {
    let script = r#"
import sys, jwt
from cryptography.x509 import load_pem_x509_certificate
key = load_pem_x509_certificate(open(sys.argv[1], 'rb').read()).public_key()
c = jwt.decode(sys.stdin.read().strip(), key=key, algorithms=['RS256', 'PS256'], audience=sys.argv[2],
               options={'require': ['exp', 'nbf', 'iat', 'iss', 'sub', 'jti', 'aud']})
assert c['iss'] == c['sub'], c
print(c['jti'])
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .current_dir(dir)
        .args(["-c", script, s(cert), aud])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-jwt (ci/install-deps.sh)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jwt.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyJWT refuses the assertion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The issued access token verifies (RustCrypto rsa) with the emulator's key.
fn issued_claims(running: &Running, token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    rsa_crate_verify(
        running.signing_key_spki(),
        Algorithm::Rs256,
        &token.as_bytes()[..parts[0].len() + 1 + parts[1].len()],
        &b64url_decode(parts[2]),
    )
    .expect("the access token verifies with the emulator's key");
    decode(parts[1])
}
