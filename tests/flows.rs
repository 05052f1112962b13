//! Token flows over real HTTP and HTTPS against the emulator, started in-process or as a
//! `certassert emulator` child: the exact form body of every grant, the assertion as an
//! independent verifier (PyJWT, the `rsa` crate) sees it, Entra's errors with their
//! hints, retries counted at the emulator, the cache (no request, no signature; 0600;
//! concurrent writers), and the CLI's exit codes and output formats.

mod common;

use certassert::emulator::{Code, Fault, Running};
use certassert::entra::{
    Cache, Client, Credential, EntraError, Error, Grant, HttpOptions, Target, TokenRequest,
    CLIENT_ASSERTION_TYPE,
};
use certassert::secret::Secret;
use certassert::{signer, Algorithm, Signer};
use common::emulator::{certassert, start, AppFiles, ChildEmulator, Counting};
use common::{b64url, b64url_decode, openssl_fingerprint, rsa_crate_verify, s, tempdir};
use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

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

#[test]
fn client_credentials_v2_sends_the_exact_form_and_a_valid_assertion() {
    let f = Fixture::new();
    let running = start(&[&f.app], Some(TENANT), false);
    let client = Client::new(quick(), None);
    let req = request(&running, graph(), Grant::ClientCredentials);
    let out = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    assert!(!out.cached);
    assert_eq!(out.attempts, 1);
    let log = running.requests();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(r.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        fields(r),
        [
            "client_id",
            "client_assertion_type",
            "client_assertion",
            "grant_type",
            "scope"
        ]
    );
    assert_eq!(r.field("client_id"), Some(CLIENT));
    assert_eq!(
        r.field("client_assertion_type"),
        Some(CLIENT_ASSERTION_TYPE)
    );
    assert_eq!(r.field("grant_type"), Some("client_credentials"));
    assert_eq!(r.field("scope"), Some(GRAPH));
    let jwt = r.field("client_assertion").unwrap();
    pyjwt_verify(f.dir.path(), jwt, &f.app.cert, &req.endpoint);
    let header = decode(jwt.split('.').next().unwrap());
    let (_, sha1) = openssl_fingerprint(&f.app.cert, "sha1");
    assert_eq!(header["x5t"], b64url(&sha1));
    assert_eq!(header["alg"], "RS256");
    let claims = issued_claims(&running, out.token.access_token.expose());
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["appid"], CLIENT);
    assert_eq!(claims["azp"], CLIENT);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["roles"], serde_json::json!(["Things.Read"]));
    assert!(out.token.expires_on > common::now() + 3000);
    assert!(out.token.refresh_token.is_none());
}

#[test]
fn every_request_carries_a_fresh_assertion() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let req = request(&running, graph(), Grant::ClientCredentials);
    for _ in 0..3 {
        client
            .acquire(&f.credential(Algorithm::Rs256), &req)
            .unwrap();
    }
    let jtis: std::collections::HashSet<String> = running
        .requests()
        .iter()
        .map(|r| {
            decode(
                r.field("client_assertion")
                    .unwrap()
                    .split('.')
                    .nth(1)
                    .unwrap(),
            )["jti"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(jtis.len(), 3);
}

#[test]
fn ps256_names_the_certificate_by_x5t_s256_and_keeps_a_32_byte_salt() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let req = request(&running, graph(), Grant::ClientCredentials);
    client
        .acquire(&f.credential(Algorithm::Ps256), &req)
        .unwrap();
    let jwt = running.requests()[0]
        .field("client_assertion")
        .unwrap()
        .to_string();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header = decode(parts[0]);
    let (_, sha256) = openssl_fingerprint(&f.app.cert, "sha256");
    assert_eq!(header["x5t#S256"], b64url(&sha256));
    assert!(header.get("x5t").is_none());
    rsa_crate_verify(
        f.chain[0].spki_der(),
        Algorithm::Ps256,
        &jwt.as_bytes()[..parts[0].len() + 1 + parts[1].len()],
        &b64url_decode(parts[2]),
    )
    .unwrap();
    pyjwt_verify(f.dir.path(), &jwt, &f.app.cert, &req.endpoint);
}

#[test]
fn v1_resource_uses_the_v1_endpoint_and_string_numbers() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let req = request(
        &running,
        Target::Resource("https://vault.azure.net".into()),
        Grant::ClientCredentials,
    );
    let out = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    let r = &running.requests()[0];
    assert_eq!(r.path, format!("/{TENANT}/oauth2/token"));
    assert_eq!(
        fields(r),
        [
            "client_id",
            "client_assertion_type",
            "client_assertion",
            "grant_type",
            "resource"
        ]
    );
    assert_eq!(r.field("resource"), Some("https://vault.azure.net"));
    assert_eq!(
        out.token.resource.as_deref(),
        Some("https://vault.azure.net")
    );
    let claims = issued_claims(&running, out.token.access_token.expose());
    assert_eq!(claims["aud"], "https://vault.azure.net");
    assert_eq!(claims["ver"], "1.0");
}

#[test]
fn authorization_code_with_pkce_is_single_use_and_its_refresh_token_redeems() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let verifier = "a-pkce-verifier-that-is-long-enough-0123456789-abcdefgh";
    let challenge = {
        use sha2::Digest as _;
        b64url(&sha2::Sha256::digest(verifier.as_bytes()))
    };
    running.seed_code(Code {
        code: "code-1".into(),
        client_id: Some(CLIENT.into()),
        redirect_uri: Some("https://app.example/cb".into()),
        code_challenge: Some(challenge),
        user: Some("alice".into()),
    });
    let client = Client::new(quick(), None);
    let scopes = Target::Scopes(vec![
        "api://orders/Orders.Read".into(),
        "offline_access".into(),
    ]);
    let grant = Grant::AuthorizationCode {
        code: Secret::new("code-1".into()),
        redirect_uri: "https://app.example/cb".into(),
        code_verifier: Some(Secret::new(verifier.into())),
    };
    let req = request(&running, scopes.clone(), grant);
    let out = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    let r = &running.requests()[0];
    assert_eq!(
        fields(r),
        [
            "client_id",
            "client_assertion_type",
            "client_assertion",
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "scope"
        ]
    );
    assert_eq!(r.field("grant_type"), Some("authorization_code"));
    assert_eq!(r.field("code"), Some("code-1"));
    assert_eq!(r.field("redirect_uri"), Some("https://app.example/cb"));
    assert_eq!(r.field("code_verifier"), Some(verifier));
    assert_eq!(
        r.field("scope"),
        Some("api://orders/Orders.Read offline_access")
    );
    let claims = issued_claims(&running, out.token.access_token.expose());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scp"], "Orders.Read");
    let refresh = out.token.refresh_token.clone().expect("a refresh token");

    let again = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    let e = again.entra().expect("an Entra error");
    assert_eq!(e.codes, vec![54005]);
    assert!(
        again
            .to_string()
            .contains("hint: this authorization code was already redeemed"),
        "{again}"
    );

    let req = request(
        &running,
        scopes,
        Grant::RefreshToken {
            refresh_token: refresh.clone(),
        },
    );
    let out = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    let r = running.requests().pop().unwrap();
    assert_eq!(
        fields(&r),
        [
            "client_id",
            "client_assertion_type",
            "client_assertion",
            "grant_type",
            "refresh_token",
            "scope"
        ]
    );
    assert_eq!(r.field("grant_type"), Some("refresh_token"));
    assert_eq!(r.field("refresh_token"), Some(refresh.expose()));
    assert_eq!(
        issued_claims(&running, out.token.access_token.expose())["sub"],
        "alice"
    );
}

#[test]
fn on_behalf_of_exchanges_the_callers_token() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let user_token = running.issue_user_token(CLIENT, "bob", 600);
    let target = Target::Scopes(vec!["https://graph.microsoft.com/User.Read".into()]);
    let grant = Grant::OnBehalfOf {
        user_assertion: Secret::new(user_token.clone()),
    };
    let out = client
        .acquire(
            &f.credential(Algorithm::Rs256),
            &request(&running, target.clone(), grant),
        )
        .unwrap();
    let r = &running.requests()[0];
    assert_eq!(
        fields(r),
        [
            "client_id",
            "client_assertion_type",
            "client_assertion",
            "grant_type",
            "assertion",
            "requested_token_use",
            "scope"
        ]
    );
    assert_eq!(
        r.field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(r.field("requested_token_use"), Some("on_behalf_of"));
    assert_eq!(r.field("assertion"), Some(user_token.as_str()));
    let claims = issued_claims(&running, out.token.access_token.expose());
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    // A token for another API, or an expired one, is refused.
    for (bad, code) in [
        (running.issue_user_token("someone-else", "bob", 600), 50013),
        (running.issue_user_token(CLIENT, "bob", -1000), 500133),
    ] {
        let grant = Grant::OnBehalfOf {
            user_assertion: Secret::new(bad),
        };
        let e = client
            .acquire(
                &f.credential(Algorithm::Rs256),
                &request(&running, target.clone(), grant),
            )
            .unwrap_err();
        assert_eq!(e.entra().unwrap().codes, vec![code], "{e}");
        assert!(
            e.to_string()
                .contains("hint: the on-behalf-of user assertion"),
            "{e}"
        );
    }
}

#[test]
fn claims_challenge_is_sent_merged_with_cp1() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let mut req = request(&running, graph(), Grant::ClientCredentials);
    req.claims = Some(
        certassert::entra::request::merge_claims(Some(
            r#"{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}"#,
        ))
        .unwrap(),
    );
    let out = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    let r = &running.requests()[0];
    assert_eq!(fields(r).last(), Some(&"claims"));
    let sent: Value = serde_json::from_str(r.field("claims").unwrap()).unwrap();
    assert_eq!(sent["access_token"]["nbf"]["value"], "1700000000");
    assert_eq!(
        sent["access_token"]["xms_cc"]["values"],
        serde_json::json!(["cp1"])
    );
    assert_eq!(
        issued_claims(&running, out.token.access_token.expose())["xms_cc"],
        serde_json::json!(["cp1"])
    );
}

/// Sign `header.claims` with `signer` (RS256) — for hand-made, wrong assertions.
fn hand_made(signer: &dyn Signer, header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer.sign(Algorithm::Rs256, input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(&sig))
}

/// Post a hand-made form through the library's HTTP client and return its error.
fn post_error(endpoint: &str, form: Vec<(&'static str, String)>) -> Error {
    let http = certassert::entra::HttpClient::new(&quick()).unwrap();
    http.post_token(endpoint, || Ok(form.clone()), common::now)
        .unwrap_err()
}

fn form(assertion: &str, scope: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", CLIENT.to_string()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
        ("client_assertion", assertion.to_string()),
        ("grant_type", "client_credentials".to_string()),
        ("scope", scope.to_string()),
    ]
}

fn assert_entra(e: &Error, code: u32, hint: &str) -> EntraError {
    let entra = e
        .entra()
        .unwrap_or_else(|| panic!("not an Entra error: {e}"))
        .clone();
    assert_eq!(entra.codes, vec![code], "{e}");
    let text = e.to_string();
    assert!(text.starts_with(&format!("AADSTS{code}: ")), "{text}");
    assert!(text.contains("correlation id "), "{text}");
    assert!(
        text.contains(&format!("\nhint: {hint}")),
        "AADSTS{code}: {text}"
    );
    entra
}

#[test]
fn entra_errors_are_parsed_and_explained() {
    let f = Fixture::new();
    let stranger = AppFiles::new(f.dir.path(), "stranger", CLIENT);
    let running = start(&[&f.app], Some(TENANT), false);
    let endpoint = running.token_endpoint(TENANT, false).unwrap();
    let now = common::now();
    let claims = |aud: &str, iss: &str, sub: &str, nbf: i64, exp: i64| serde_json::json!({"aud": aud, "iss": iss, "sub": sub, "jti": certassert::encoding::uuid_v4(), "nbf": nbf, "iat": nbf, "exp": exp});
    let x5t = f.chain[0].x5t();
    let good_header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t});
    let s = f.signer.as_ref();

    // 700027: a certificate the app does not have; Entra prints its hex thumbprint.
    let other = signer::open(&stranger.keyref(), &certassert::secret::NoCallbacks).unwrap();
    let other_chain = vec![stranger.certificate()];
    let cred = Credential {
        signer: other.as_ref(),
        chain: &other_chain,
        alg: Algorithm::Rs256,
        x5c: false,
        lifetime: 600,
    };
    let e = Client::new(quick(), None)
        .acquire(&cred, &request(&running, graph(), Grant::ClientCredentials))
        .unwrap_err();
    let entra = assert_entra(
        &e,
        700027,
        "the certificate that signed the assertion is not registered",
    );
    let (hex, _) = openssl_fingerprint(&stranger.cert, "sha1");
    assert!(
        entra
            .description
            .contains(&format!("Thumbprint of key used by client: '{hex}'")),
        "{}",
        entra.description
    );
    assert_eq!(entra.status, 401);
    assert_eq!(entra.error, "invalid_client");
    // 700027 too: the right x5t, the wrong key's signature.
    let forged = hand_made(
        other.as_ref(),
        good_header.clone(),
        claims(&endpoint, CLIENT, CLIENT, now, now + 600),
    );
    assert_entra(
        &post_error(&endpoint, form(&forged, GRAPH)),
        700027,
        "the certificate that signed",
    );

    let cases: Vec<(Value, Value, &str, u32, &str)> = vec![
        (
            serde_json::json!({"alg": "RS256", "typ": "JWT"}),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
            GRAPH,
            5002723,
            "the assertion header names no certificate",
        ),
        (
            serde_json::json!({"alg": "HS256", "typ": "JWT", "x5t": x5t}),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
            GRAPH,
            5002738,
            "the assertion's signature algorithm",
        ),
        (
            serde_json::json!({"alg": "none", "x5t": x5t}),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
            GRAPH,
            5002738,
            "the assertion's signature algorithm",
        ),
        (
            serde_json::json!({"alg": "RS256", "x5t": x5t, "crit": ["exp"]}),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
            GRAPH,
            50027,
            "the assertion is not an acceptable JWT",
        ),
        (
            good_header.clone(),
            claims(
                "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                CLIENT,
                CLIENT,
                now,
                now + 600,
            ),
            GRAPH,
            700023,
            "aud of the assertion must be exactly",
        ),
        (
            good_header.clone(),
            claims(&endpoint, CLIENT, "someone", now, now + 600),
            GRAPH,
            700021,
            "iss and sub of the assertion",
        ),
        (
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now - 3600, now - 1200),
            GRAPH,
            700024,
            "the assertion is outside its validity window",
        ),
        (
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now + 1200, now + 1800),
            GRAPH,
            700024,
            "the assertion is outside its validity window",
        ),
        (
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
            "https://graph.microsoft.com/User.Read",
            1002012,
            "the client credentials grant takes one scope",
        ),
        (
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
            "https://graph.microsoft.com/.default https://vault.azure.net/.default",
            70011,
            "the client credentials grant takes one scope",
        ),
    ];
    for (header, claims, scope, code, hint) in cases {
        let jwt = hand_made(s, header, claims);
        assert_entra(&post_error(&endpoint, form(&jwt, scope)), code, hint);
    }
    // The jwk/jku/x5c headers never choose the key: an unknown x5t with our own key in x5c.
    let sneaky = hand_made(
        other.as_ref(),
        serde_json::json!({"alg": "RS256", "x5t": other_chain[0].x5t(), "x5c": [certassert::encoding::b64(other_chain[0].der())], "jku": "https://evil.example/keys"}),
        claims(&endpoint, CLIENT, CLIENT, now, now + 600),
    );
    assert_entra(
        &post_error(&endpoint, form(&sneaky, GRAPH)),
        700027,
        "the certificate that signed",
    );
    // A replayed jti.
    let once = hand_made(
        s,
        good_header.clone(),
        claims(&endpoint, CLIENT, CLIENT, now, now + 600),
    );
    let http = certassert::entra::HttpClient::new(&quick()).unwrap();
    http.post_token(&endpoint, || Ok(form(&once, GRAPH)), common::now)
        .unwrap();
    assert_entra(
        &post_error(&endpoint, form(&once, GRAPH)),
        50027,
        "the assertion is not an acceptable JWT",
    );
    // Not base64url.
    let padded = format!(
        "{}=",
        hand_made(
            s,
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600)
        )
    );
    assert_entra(
        &post_error(&endpoint, form(&padded, GRAPH)),
        50027,
        "the assertion is not an acceptable JWT",
    );
    // A client secret.
    let mut secret_form = form(
        &hand_made(
            s,
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
        ),
        GRAPH,
    );
    secret_form.push(("client_secret", "s3cret".into()));
    assert_entra(
        &post_error(&endpoint, secret_form),
        7000215,
        "a client secret was sent",
    );
    // resource on the v2 endpoint.
    let mut v2_resource = form(
        &hand_made(
            s,
            good_header.clone(),
            claims(&endpoint, CLIENT, CLIENT, now, now + 600),
        ),
        GRAPH,
    );
    v2_resource.pop();
    v2_resource.push(("resource", "https://vault.azure.net".into()));
    assert_entra(
        &post_error(&endpoint, v2_resource),
        901002,
        "the v2 endpoint does not take resource",
    );
    // An unknown client id, an unknown tenant.
    let client = Client::new(quick(), None);
    let mut req = request(&running, graph(), Grant::ClientCredentials);
    req.client_id = "00000000-0000-0000-0000-000000000001".into();
    let e = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    assert_entra(&e, 700016, "no application with this client id");
    let mut req = request(&running, graph(), Grant::ClientCredentials);
    req.endpoint = running.token_endpoint("fabrikam.example", false).unwrap();
    let e = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    assert_entra(&e, 90002, "the tenant was not found");
}

#[test]
fn every_listed_aadsts_code_has_a_hint() {
    for code in [
        700027, 700024, 5002723, 5002738, 700021, 700023, 50012, 50027, 700016, 90002, 7000215,
        1002012, 70011, 901002, 54005,
    ] {
        assert!(certassert::entra::hint(code).is_some(), "AADSTS{code}");
    }
    assert!(certassert::entra::hint(1).is_none());
}

#[test]
fn throttling_and_unavailability_are_retried_a_bad_request_is_not() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let cred = f.credential(Algorithm::Rs256);
    let req = request(&running, graph(), Grant::ClientCredentials);

    running.push_fault(Fault::TooManyRequests { retry_after: 1 });
    let t = Instant::now();
    let out = client.acquire(&cred, &req).unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(out.attempts, 2);
    let log = running.requests();
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert_ne!(
        log[0].field("client_assertion"),
        log[1].field("client_assertion")
    );

    running.push_fault(Fault::Unavailable);
    assert_eq!(client.acquire(&cred, &req).unwrap().attempts, 2);
    assert_eq!(running.requests().len(), 4);

    // Three failures: give up after the third attempt, showing the last answer.
    for _ in 0..3 {
        running.push_fault(Fault::Unavailable);
    }
    let e = client.acquire(&cred, &req).unwrap_err();
    assert!(matches!(e, Error::NotOAuth { status: 503, .. }), "{e}");
    assert!(
        e.to_string().contains("HTTP 503") && e.to_string().contains("Service Unavailable"),
        "{e}"
    );
    assert_eq!(running.requests().len(), 7);

    // A 400 is final.
    let bad = request(
        &running,
        Target::Scopes(vec!["https://graph.microsoft.com/User.Read".into()]),
        Grant::ClientCredentials,
    );
    let e = client.acquire(&cred, &bad).unwrap_err();
    assert_eq!(e.entra().unwrap().status, 400);
    assert_eq!(running.requests().len(), 8);
    // So is a 401 invalid_client.
    let mut unknown = req.clone();
    unknown.client_id = "00000000-0000-0000-0000-000000000009".into();
    assert!(client.acquire(&cred, &unknown).is_err());
    assert_eq!(running.requests().len(), 9);
}

#[test]
fn a_slow_answer_times_out_and_is_retried_a_malformed_one_is_reported() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(
        HttpOptions {
            timeout: Duration::from_millis(700),
            ..quick()
        },
        None,
    );
    let cred = f.credential(Algorithm::Rs256);
    let req = request(&running, graph(), Grant::ClientCredentials);
    running.push_fault(Fault::Slow(Duration::from_millis(2000)));
    let out = client.acquire(&cred, &req).unwrap();
    assert_eq!(out.attempts, 2);

    running.push_fault(Fault::Malformed);
    let before = running.requests().len();
    let e = client.acquire(&cred, &req).unwrap_err();
    assert!(matches!(e, Error::NotOAuth { status: 200, .. }), "{e}");
    assert!(e.to_string().contains("{\"access_token\": \"trunc"), "{e}");
    assert_eq!(running.requests().len(), before + 1);
}

#[test]
fn connection_errors_are_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new();
    let client = Client::new(quick(), None);
    let req = TokenRequest {
        endpoint: format!("http://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token"),
        client_id: CLIENT.into(),
        target: graph(),
        grant: Grant::ClientCredentials,
        claims: None,
    };
    let e = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    assert!(matches!(e, Error::Network { attempts: 3, .. }), "{e}");
}

#[test]
fn cache_hit_sends_nothing_and_signs_nothing() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let counting =
        Counting::new(signer::open(&f.app.keyref(), &certassert::secret::NoCallbacks).unwrap());
    let cache_dir = f.dir.path().join("cache");
    let client = Client::new(quick(), Some(Cache::open(&cache_dir).unwrap()));
    let cred = Credential {
        signer: &counting,
        chain: &f.chain,
        alg: Algorithm::Rs256,
        x5c: false,
        lifetime: 600,
    };
    let req = request(&running, graph(), Grant::ClientCredentials);
    let first = client.acquire(&cred, &req).unwrap();
    assert!(!first.cached);
    assert_eq!((counting.signatures(), running.requests().len()), (1, 1));
    let second = client.acquire(&cred, &req).unwrap();
    assert!(second.cached);
    assert_eq!(second.attempts, 0);
    assert_eq!(
        second.token.access_token.expose(),
        first.token.access_token.expose()
    );
    assert_eq!((counting.signatures(), running.requests().len()), (1, 1));

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);

    // Another scope, or another certificate thumbprint, is another entry.
    let vault = request(
        &running,
        Target::Scopes(vec!["https://vault.azure.net/.default".into()]),
        Grant::ClientCredentials,
    );
    assert!(!client.acquire(&cred, &vault).unwrap().cached);
    assert_eq!(running.requests().len(), 2);

    // A corrupt file is ignored and replaced.
    std::fs::write(&files[0], b"\x00garbage").unwrap();
    let third = client.acquire(&cred, &req).unwrap();
    assert!(!third.cached);
    assert_eq!(running.requests().len(), 3);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["access_token"], third.token.access_token.expose());
    assert!(client.acquire(&cred, &req).unwrap().cached);

    // User-flow tokens and refresh tokens are not cached.
    running.seed_code(Code {
        code: "c".into(),
        ..Code::default()
    });
    let grant = Grant::AuthorizationCode {
        code: Secret::new("c".into()),
        redirect_uri: "https://a/cb".into(),
        code_verifier: None,
    };
    let out = client
        .acquire(
            &cred,
            &request(&running, Target::Scopes(vec!["api://x/y".into()]), grant),
        )
        .unwrap();
    let rt = out.token.refresh_token.unwrap();
    for entry in std::fs::read_dir(&cache_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(rt.expose()));
        assert!(!text.contains(out.token.access_token.expose()));
    }
}

#[test]
fn https_with_the_generated_ca() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, true);
    assert!(running.url().starts_with("https://127.0.0.1:"));
    let ca = common::write(f.dir.path(), "ca.pem", running.ca_pem().unwrap());
    // openssl agrees the server certificate chains to the CA, for 127.0.0.1.
    let client = Client::new(
        HttpOptions {
            ca_file: Some(ca.clone()),
            ..quick()
        },
        None,
    );
    let req = request(&running, graph(), Grant::ClientCredentials);
    client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    assert_eq!(running.requests()[0].status, 200);
    // Without the CA, the server is not trusted and nothing is answered.
    let e = Client::new(quick(), None)
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    assert!(matches!(e, Error::Network { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // An untrusted server certificate is final: asking again would get the same answer.
    assert!(
        matches!(e, Error::Network { attempts: 1, .. }),
        "TLS refusal must not be retried: {e:?}"
    );
    assert_eq!(running.requests().len(), 1);
    // A --ca-file that holds no certificate is an error before anything is sent.
    let empty = common::write(f.dir.path(), "empty.pem", "nothing");
    let e = Client::new(
        HttpOptions {
            ca_file: Some(empty),
            ..quick()
        },
        None,
    )
    .acquire(&f.credential(Algorithm::Rs256), &req)
    .unwrap_err();
    assert!(matches!(e, Error::CaFile { .. }), "{e}");
    assert!(e.to_string().contains("CA file"), "{e}");
}

#[test]
fn the_library_refuses_plain_http_to_other_hosts_before_sending() {
    use certassert::entra::authority::{Error as EndpointError, UrlProblem, UrlRole};
    let f = Fixture::new();
    let client = Client::new(quick(), None);
    for endpoint in [
        "http://10.1.2.3/t/oauth2/v2.0/token",
        "http://127.0.0.1.evil.example/t/oauth2/v2.0/token",
        "http://localhost@evil.example/t/oauth2/v2.0/token",
    ] {
        let req = TokenRequest {
            endpoint: endpoint.into(),
            client_id: CLIENT.into(),
            target: graph(),
            grant: Grant::ClientCredentials,
            claims: None,
        };
        let e = client
            .acquire(&f.credential(Algorithm::Rs256), &req)
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Endpoint(EndpointError::Url {
                    role: UrlRole::TokenUrl,
                    problem: UrlProblem::PlainHttp,
                    ..
                })
            ),
            "{endpoint}: {e}"
        );
    }
}

// ---- the CLI against a `certassert emulator` child ----

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("certassert runs")
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn token_args<'a>(app: &'a AppFiles, authority: &'a str) -> Vec<&'a str> {
    vec![
        "token",
        "--key",
        s(&app.key),
        "--cert",
        s(&app.cert),
        "--tenant",
        TENANT,
        "--client-id",
        &app.client_id,
        "--authority-host",
        authority,
    ]
}

#[test]
fn cli_token_formats_and_the_cache() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--role", "Things.Read"]);
    let cache = dir.path().join("cache");
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let raw = stdout_ok(&run(certassert(&cache).args(&args)));
    assert_eq!(raw.lines().count(), 1);
    let raw = raw.trim();
    assert_eq!(raw.split('.').count(), 3);
    assert_eq!(emu.requests().len(), 1);

    let json: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache)
        .args(&args)
        .args(["--format", "json"]))))
    .unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "expires_on",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(json["access_token"], raw, "served from the cache");
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], GRAPH);
    assert!(json["expires_in"].as_i64().unwrap() > 3000);

    let az: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache)
        .args(&args)
        .args(["--format", "az"]))))
    .unwrap();
    let keys: Vec<&str> = az.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "accessToken",
            "expiresOn",
            "expires_on",
            "tenant",
            "tokenType"
        ]
    );
    assert_eq!(az["accessToken"], raw);
    assert_eq!(az["tenant"], TENANT);
    assert_eq!(az["expires_on"], json["expires_on"]);
    assert_eq!(emu.requests().len(), 1, "both answered from the cache");

    let fresh = stdout_ok(&run(certassert(&cache).args(&args).arg("--no-cache")));
    assert_ne!(fresh.trim(), raw);
    assert_eq!(emu.requests().len(), 2);

    // v1 via --resource.
    let mut v1 = token_args(&app, &emu.url);
    v1.extend(["--resource", "https://vault.azure.net", "--format", "json"]);
    let json: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache).args(&v1)))).unwrap();
    assert_eq!(json["resource"], "https://vault.azure.net");
    let last = emu.requests().pop().unwrap();
    assert_eq!(last["path"], format!("/{TENANT}/oauth2/token"));
}

#[test]
fn cli_adds_the_flags_an_aadsts_hint_is_about() {
    // The library's hint says "check the tenant … and the authority host"; the CLI adds
    // the flags that set them, matched on the AADSTS code.
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--tenant", "fabrikam.example"]);
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let out = run(certassert(&dir.path().join("c")).args(&args));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: AADSTS90002: "), "{stderr}");
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("no hint line: {stderr}"));
    assert!(hint.starts_with("hint: the tenant was not found"), "{hint}");
    assert!(
        hint.ends_with("; set with --tenant and --authority-host"),
        "{hint}"
    );
}

#[test]
fn cli_unknown_certificate_exits_nonzero_with_aadsts700027() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let other = AppFiles::new(dir.path(), "other", CLIENT);
    let reg = format!("{CLIENT}={}", s(&other.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let out = run(certassert(&dir.path().join("c")).args(&args));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (hex, _) = openssl_fingerprint(&app.cert, "sha1");
    assert!(stderr.starts_with("error: AADSTS700027: "), "{stderr}");
    assert!(
        stderr.contains(&format!("Thumbprint of key used by client: '{hex}'")),
        "{stderr}"
    );
    assert!(stderr.contains("correlation id "), "{stderr}");
    assert!(
        stderr.contains("\nhint: the certificate that signed the assertion is not registered"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(emu.requests().len(), 1, "a 401 is not retried");
}

#[test]
fn cli_refuses_plain_http_to_other_hosts_before_sending() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    for extra in [
        vec!["--authority-host", "http://login.example.com"],
        vec!["--token-url", "http://10.1.2.3/oauth2/token"],
    ] {
        let mut args = vec![
            "token",
            "--key",
            s(&app.key),
            "--cert",
            s(&app.cert),
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
            "--scope",
            GRAPH,
        ];
        args.extend(extra);
        let out = run(certassert(&dir.path().join("c")).args(&args));
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("plain http is allowed only to loopback"),
            "{stderr}"
        );
    }
}

#[test]
fn cli_over_https_and_through_faults() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let ca = dir.path().join("ca.pem");
    let emu = ChildEmulator::start(&[
        "--register",
        &reg,
        "--tls",
        "--ca-out",
        s(&ca),
        "--fault",
        "503",
        "--fault",
        "429",
    ]);
    assert!(emu.url.starts_with("https://"));
    assert_eq!(emu.ca_file.as_deref(), Some(ca.as_path()));
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH, "--ca-file", s(&ca), "--no-cache"]);
    stdout_ok(&run(certassert(&dir.path().join("c")).args(&args)));
    let statuses: Vec<u64> = emu
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 429, 200]);
}

#[test]
fn cli_grants_code_refresh_and_single_use() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--code", "abc=https://app.example/cb"]);
    let cache = dir.path().join("c");
    let mut args = token_args(&app, &emu.url);
    args.extend([
        "--grant",
        "authorization-code",
        "--code",
        "abc",
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        "api://orders/read",
        "offline_access",
        "--format",
        "json",
    ]);
    let json: Value =
        serde_json::from_str(&stdout_ok(&run(certassert(&cache).args(&args)))).unwrap();
    let rt = json["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let out = run(certassert(&cache).args(&args));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AADSTS54005"));
    let rt_file = common::write(dir.path(), "rt", &rt);
    let rt_arg = format!("@{}", s(&rt_file));
    let mut args = token_args(&app, &emu.url);
    args.extend([
        "--grant",
        "refresh-token",
        "--refresh-token",
        &rt_arg,
        "--scope",
        "api://orders/read",
    ]);
    stdout_ok(&run(certassert(&cache).args(&args)));
    let last = emu.requests().pop().unwrap();
    assert_eq!(last["form"][4], serde_json::json!(["refresh_token", rt]));
    // Nothing of this went to the cache.
    assert!(std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn cli_two_processes_filling_the_cache_leave_it_valid() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let cache = dir.path().join("cache");
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let children: Vec<_> = (0..6)
        .map(|_| {
            certassert(&cache)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| stdout_ok(&c.wait_with_output().unwrap()).trim().to_string())
        .collect();
    let mut entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let json: Vec<_> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(json.len(), 1, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{entries:?}"
    );
    assert_eq!(
        std::fs::metadata(json[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(json[0]).unwrap()).unwrap();
    assert!(tokens.iter().any(|t| cached["access_token"] == t.as_str()));
    // And the next run is served from it.
    let next = stdout_ok(&run(certassert(&cache).args(&args)));
    assert_eq!(cached["access_token"], next.trim());
    let sent = emu.requests().len();
    assert!((1..=6).contains(&sent), "{sent}");
}

#[test]
fn cli_doctor_checks_pairing_and_explains_a_token_error() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let other = AppFiles::new(dir.path(), "other", CLIENT);
    let c = dir.path().join("c");
    let out = stdout_ok(&run(certassert(&c).args([
        "doctor",
        "--key",
        s(&app.key),
        "--cert",
        s(&app.cert),
    ])));
    let (hex, sha1) = openssl_fingerprint(&app.cert, "sha1");
    let (_, sha256) = openssl_fingerprint(&app.cert, "sha256");
    assert!(
        out.contains(&format!("thumbprint (portal, hex SHA-1) {hex}")),
        "{out}"
    );
    assert!(
        out.contains(&b64url(&sha1)) && out.contains(&b64url(&sha256)),
        "{out}"
    );
    assert!(out.contains("ok    pairing"), "{out}");
    assert!(
        out.contains("RS256: signed through the backend")
            && out.contains("PS256: signed through the backend"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");

    // Under 30 days left: a warning, not a failure.
    let short = dir.path().join("short.cert.pem");
    common::openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        s(&app.key),
        "-subj",
        "/CN=short",
        "-days",
        "10",
        "-out",
        s(&short),
    ]);
    let out = stdout_ok(&run(certassert(&c).args([
        "doctor",
        "--key",
        s(&app.key),
        "--cert",
        s(&short),
    ])));
    assert!(
        out.contains("warn  validity") && out.contains("days left"),
        "{out}"
    );

    let out = run(certassert(&c).args(["doctor", "--key", s(&app.key), "--cert", s(&other.cert)]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  pairing") && text.contains("AADSTS700027"),
        "{text}"
    );

    let reg = format!("{CLIENT}={}", s(&other.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let out = run(certassert(&c).args([
        "doctor",
        "--key",
        s(&app.key),
        "--cert",
        s(&app.cert),
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT,
        "--authority-host",
        &emu.url,
    ]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  token")
            && text.contains("AADSTS700027")
            && text.contains("hint: the certificate"),
        "{text}"
    );
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let out = stdout_ok(&run(certassert(&c).args([
        "doctor",
        "--key",
        s(&app.key),
        "--cert",
        s(&app.cert),
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT,
        "--authority-host",
        &emu.url,
    ])));
    assert!(out.contains("ok    token"), "{out}");
}

#[test]
fn cli_demo_ends_with_a_token() {
    let dir = tempdir();
    let out = stdout_ok(&run(certassert(&dir.path().join("c")).arg("demo")));
    assert!(
        out.contains("access token (signature verifies with the emulator's key)"),
        "{out}"
    );
    assert!(
        out.contains("same token again from the cache: yes"),
        "{out}"
    );
    assert!(out.contains("\"roles\""), "{out}");
}

#[test]
fn cli_honours_https_proxy_and_no_proxy() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let ca = dir.path().join("ca.pem");
    let emu = ChildEmulator::start(&["--register", &reg, "--tls", "--ca-out", s(&ca)]);
    // A proxy that is not there: every attempt goes to it and fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = format!("http://{dead}");
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH, "--ca-file", s(&ca), "--no-cache"]);
    let out = run(certassert(&dir.path().join("c"))
        .args(&args)
        .env("HTTPS_PROXY", &proxy));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed after 3 attempt(s)"), "{stderr}");
    assert!(emu.requests().is_empty(), "nothing reached the emulator");
    // NO_PROXY exempts the host.
    let out = run(certassert(&dir.path().join("c"))
        .args(&args)
        .env("HTTPS_PROXY", &proxy)
        .env("NO_PROXY", "127.0.0.1"));
    stdout_ok(&out);
    assert_eq!(emu.requests().len(), 1);
}

#[test]
fn a_client_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Client>();
    shareable::<Running>();
}
