//! The emulator as a drop-in authority: MSAL Python's `ConfidentialClientApplication` and
//! azure-identity's `CertificateCredential` get tokens from `certassert emulator --tls`
//! through its discovery documents, reusing one assertion as they do with Entra; the
//! tokens verify against the published JWKS (PyJWT's `PyJWKClient`, and openssl with the
//! JWKS certificate); `--reject-jti-replay` refuses that reuse while our own client,
//! which signs a fresh `jti` per request, still gets every token.

use crate::common::{self, openssl_fingerprint, s};
use crate::{claims, header, key_and_cert, python_json, Setup, CLIENT, GRAPH, TENANT, VAULT};
use certassert::Algorithm;
use serde_json::Value;

/// MSAL Python: two tokens for two resources from one `ConfidentialClientApplication`,
/// then the discovery document, the JWKS, and each token verified by PyJWT against it.
/// argv: authority host, tenant, client id, key PEM, SHA-1 hex thumbprint or "-", cert
/// PEM or "-", instance discovery URL or "-".
const MSAL: &str = r#"
import sys, json, msal, jwt, requests
host, tenant, client, key, thumb, cert, discovery = sys.argv[1:8]
cred = {"private_key": open(key).read()}
if thumb != "-": cred["thumbprint"] = thumb
if cert != "-": cred["public_certificate"] = open(cert).read()
found = None
if discovery != "-":
    # MSAL's authority validation through instance discovery at a URL we give it. (Its
    # token-cache aliasing asks login.microsoftonline.com whatever the URL, so the
    # application itself runs with instance_discovery=False, as it must offline.)
    a = msal.authority.Authority(f"{host}/{tenant}", requests.Session(), instance_discovery=discovery)
    found = {"token_endpoint": a.token_endpoint, "tenant": a.tenant}
app = msal.ConfidentialClientApplication(
    client, authority=f"{host}/{tenant}", client_credential=cred, instance_discovery=False)
results = [app.acquire_token_for_client(scopes=[s]) for s in sys.argv[8:]]
doc = requests.get(f"{host}/{tenant}/v2.0/.well-known/openid-configuration").json()
verified = []
for r in results:
    if "access_token" not in r: continue
    key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(r["access_token"]).key
    c = jwt.decode(r["access_token"], key=key, algorithms=["RS256"], issuer=doc["issuer"],
                   options={"verify_aud": False, "require": ["exp", "iat", "nbf", "iss", "aud"]})
    verified.append(c)
print(json.dumps({"results": results, "doc": doc, "verified": verified, "found": found}))
"#;

/// azure-identity's CertificateCredential: two tokens, each verified by PyJWT against
/// the JWKS. argv: authority host, tenant, client id, key+cert PEM, scopes…
const AZURE_IDENTITY: &str = r#"
import sys, json, jwt, requests
from azure.identity import CertificateCredential
host, tenant, client, pem = sys.argv[1:5]
cred = CertificateCredential(tenant, client, certificate_path=pem, authority=host,
                             disable_instance_discovery=True)
tokens = [cred.get_token(s) for s in sys.argv[5:]]
doc = requests.get(f"{host}/{tenant}/v2.0/.well-known/openid-configuration").json()
verified = []
for t in tokens:
    key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(t.token).key
    verified.append(jwt.decode(t.token, key=key, algorithms=["RS256"], issuer=doc["issuer"],
                               options={"verify_aud": False}))
print(json.dumps({"tokens": [{"token": t.token, "expires_on": t.expires_on} for t in tokens],
                  "verified": verified}))
"#;

/// The JWKS as the emulator publishes it, fetched with ureq trusting its CA.
fn get(setup: &Setup, path: &str) -> (u16, Value) {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let ca = std::fs::read(setup.ca()).unwrap();
    let tls = TlsConfig::builder()
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .root_certs(RootCerts::new_with_certs(&[Certificate::from_pem(&ca)
            .unwrap()
            .to_owned()]))
        .build();
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = agent
        .get(format!("{}{path}", setup.emulator.url))
        .call()
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

/// The access token verifies (openssl, RS256) with the key of the JWKS certificate its
/// `kid` names, and `n`/`e` are that certificate's key.
fn verify_with_jwks(setup: &Setup, token: &str) {
    let (status, jwks) = get(setup, &format!("/{TENANT}/discovery/v2.0/keys"));
    assert_eq!(status, 200, "{jwks}");
    let kid = header(token)["kid"].as_str().unwrap().to_string();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    let dir = setup.dir.path();
    let der = certassert::encoding::b64_decode(key["x5c"][0].as_str().unwrap()).unwrap();
    let cert = common::write(dir, "jwks.cert.der", &der);
    // kid = x5t = base64url SHA-1 of the certificate, as Entra names its keys.
    let sha1 = common::openssl_stdout(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        s(&cert),
        "-noout",
        "-fingerprint",
        "-sha1",
    ]);
    let sha1 = common::hex_decode(sha1.trim().split_once('=').unwrap().1);
    assert_eq!(kid, common::b64url(&sha1));
    let pubkey = common::openssl_stdout(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        s(&cert),
        "-noout",
        "-pubkey",
    ]);
    let pub_pem = common::write(dir, "jwks.pub.pem", pubkey);
    let modulus = common::openssl_stdout(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        s(&cert),
        "-noout",
        "-modulus",
    ]);
    let n = common::hex_decode(modulus.trim().trim_start_matches("Modulus="));
    assert_eq!(key["n"].as_str().unwrap(), common::b64url(&n));
    assert_eq!(key["e"], "AQAB");
    let (input, sig) = token.rsplit_once('.').unwrap();
    assert!(
        common::openssl_verify(
            dir,
            &pub_pem,
            Algorithm::Rs256,
            input.as_bytes(),
            &common::b64url_decode(sig)
        ),
        "openssl rejects the access token with the JWKS key"
    );
}

#[test]
fn msal_python_gets_two_tokens_with_one_assertion_and_they_verify_against_the_jwks() {
    let setup = Setup::new(&[]);
    let (thumb, _) = openssl_fingerprint(&setup.app.cert, "sha1");
    let host = setup.emulator.url.clone();
    let discovery = format!("{host}/common/discovery/instance");
    // RS256 with the SHA-1 thumbprint, found through instance discovery on the emulator.
    let out = python_json(
        &mut setup.python(),
        MSAL,
        &[
            &host,
            TENANT,
            CLIENT,
            s(&setup.app.key),
            &thumb,
            "-",
            &discovery,
            GRAPH,
            VAULT,
        ],
    );
    let results = out["results"].as_array().unwrap();
    for r in results {
        assert!(r["access_token"].is_string(), "MSAL got no token: {r}");
    }
    assert_eq!(
        out["found"]["token_endpoint"],
        format!("{host}/{TENANT}/oauth2/v2.0/token"),
        "{out}"
    );
    let doc = &out["doc"];
    assert_eq!(doc["issuer"], format!("{host}/{TENANT}/v2.0"));
    assert_eq!(
        doc["token_endpoint"],
        format!("{host}/{TENANT}/oauth2/v2.0/token")
    );
    let verified = out["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2, "{out}");
    assert_eq!(verified[0]["aud"], "https://graph.microsoft.com");
    assert_eq!(verified[1]["aud"], "https://vault.azure.net");
    for token in results {
        verify_with_jwks(&setup, token["access_token"].as_str().unwrap());
    }
    let requests = setup.emulator.requests();
    assert!(
        requests.iter().any(|r| r["method"] == "GET"
            && r["path"] == "/common/discovery/instance"
            && r["status"] == 200),
        "MSAL asked the emulator's instance discovery: {requests:?}"
    );
    let posts = setup.token_requests();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let assertion = |r: &Value| -> String {
        r["form"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "client_assertion")
            .map(|p| p[1].as_str().unwrap().to_string())
            .unwrap()
    };
    // MSAL reused one assertion (one jti) for both requests, and Entra-like, it passed.
    assert_eq!(assertion(&posts[0]), assertion(&posts[1]));
    assert!(posts.iter().all(|r| r["status"] == 200), "{posts:?}");
    let a = assertion(&posts[0]);
    assert_eq!(header(&a)["alg"], "RS256");
    assert_eq!(
        claims(&a)["aud"],
        format!("{host}/{TENANT}/oauth2/v2.0/token")
    );

    // PS256 with x5t#S256: MSAL computes the SHA-256 thumbprint from the certificate.
    let out = python_json(
        &mut setup.python(),
        MSAL,
        &[
            &host,
            TENANT,
            CLIENT,
            s(&setup.app.key),
            "-",
            s(&setup.app.cert),
            "-",
            GRAPH,
        ],
    );
    assert!(out["results"][0]["access_token"].is_string(), "{out}");
    let posts = setup.token_requests();
    let last = posts.last().unwrap();
    assert_eq!(header(&assertion(last))["alg"], "PS256");
    assert!(header(&assertion(last))["x5t#S256"].is_string());
}

#[test]
fn azure_identity_certificate_credential_gets_tokens_that_verify_against_the_jwks() {
    let setup = Setup::new(&[]);
    let pem = key_and_cert(setup.dir.path(), &setup.app);
    let host = setup.emulator.url.clone();
    let out = python_json(
        &mut setup.python(),
        AZURE_IDENTITY,
        &[&host, TENANT, CLIENT, s(&pem), GRAPH, VAULT],
    );
    let tokens = out["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{out}");
    assert!(tokens[0]["expires_on"].as_i64().unwrap() > common::now() + 3000);
    assert_eq!(out["verified"][0]["aud"], "https://graph.microsoft.com");
    assert_eq!(out["verified"][1]["aud"], "https://vault.azure.net");
    assert_eq!(out["verified"][0]["appid"], CLIENT);
    for t in tokens {
        verify_with_jwks(&setup, t["token"].as_str().unwrap());
    }
    let posts = setup.token_requests();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts.iter().all(|r| r["status"] == 200), "{posts:?}");
    // MSAL underneath reused one assertion for both.
    let sent: Vec<&Value> = posts
        .iter()
        .map(|r| {
            r["form"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p[0] == "client_assertion")
                .map(|p| &p[1])
                .unwrap()
        })
        .collect();
    assert_eq!(sent[0], sent[1]);
}

#[test]
fn strict_mode_refuses_msals_reused_jti_and_our_fresh_jtis_pass() {
    let setup = Setup::new(&["--reject-jti-replay"]);
    let (thumb, _) = openssl_fingerprint(&setup.app.cert, "sha1");
    let host = setup.emulator.url.clone();
    let out = python_json(
        &mut setup.python(),
        MSAL,
        &[
            &host,
            TENANT,
            CLIENT,
            s(&setup.app.key),
            &thumb,
            "-",
            "-",
            GRAPH,
            VAULT,
        ],
    );
    let results = out["results"].as_array().unwrap();
    assert!(results[0]["access_token"].is_string(), "{out}");
    assert_eq!(results[1]["error"], "invalid_client", "{out}");
    assert_eq!(
        results[1]["error_codes"],
        serde_json::json!([50027]),
        "{out}"
    );

    // certassert signs a fresh jti for each request: three tokens in strict mode.
    let cache = tempfile::tempdir().unwrap();
    for scope in [GRAPH, VAULT, GRAPH] {
        let out = common::emulator::certassert(cache.path())
            .args([
                "token",
                "--key",
                s(&setup.app.key),
                "--cert",
                s(&setup.app.cert),
            ])
            .args([
                "--tenant",
                TENANT,
                "--client-id",
                CLIENT,
                "--scope",
                scope,
                "--no-cache",
            ])
            .args(["--authority-host", &host, "--ca-file", s(&setup.ca())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let posts = setup.token_requests();
    let ours: Vec<&Value> = posts.iter().skip(2).collect();
    assert_eq!(ours.len(), 3);
    assert!(ours.iter().all(|r| r["status"] == 200), "{ours:?}");
}

#[test]
fn discovery_documents_instance_discovery_and_unknown_tenants_answer_as_entra_does() {
    let setup = Setup::new(&[]);
    let host = setup.emulator.url.clone();
    let (status, v2) = get(
        &setup,
        &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        v2["jwks_uri"],
        format!("{host}/{TENANT}/discovery/v2.0/keys")
    );
    assert_eq!(
        v2["token_endpoint_auth_methods_supported"][1],
        "private_key_jwt"
    );
    let (status, v1) = get(
        &setup,
        &format!("/{TENANT}/.well-known/openid-configuration"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        v1["token_endpoint"],
        format!("{host}/{TENANT}/oauth2/token")
    );
    assert_eq!(v1["issuer"], format!("{host}/{TENANT}/"));
    let (status, common_doc) = get(&setup, "/common/v2.0/.well-known/openid-configuration");
    assert_eq!(status, 200);
    assert_eq!(common_doc["issuer"], format!("{host}/{{tenantid}}/v2.0"));
    // A tenant this emulator does not serve: Entra's 400 with AADSTS90002.
    let (status, err) = get(
        &setup,
        "/contoso.example/v2.0/.well-known/openid-configuration",
    );
    assert_eq!(status, 400);
    assert_eq!(err["error_codes"], serde_json::json!([90002]));
    // MSAL's instance discovery: its host (MSAL drops the port) maps to this emulator.
    let authorize = format!("https://127.0.0.1/{TENANT}/oauth2/v2.0/authorize");
    let (status, found) = get(
        &setup,
        &format!("/common/discovery/instance?api-version=1.1&authorization_endpoint={authorize}"),
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["tenant_discovery_endpoint"],
        format!("{host}/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    let (status, foreign) = get(
        &setup,
        "/common/discovery/instance?api-version=1.1&authorization_endpoint=https://login.example/t/oauth2/v2.0/authorize",
    );
    assert_eq!(status, 400);
    assert_eq!(foreign["error"], "invalid_instance");
    let (status, _) = get(&setup, "/common/discovery/instance?api-version=1.1");
    assert_eq!(status, 400);
}

#[test]
fn the_emulator_prints_one_line_per_request_without_secrets() {
    use std::io::BufRead as _;
    let dir = common::tempdir();
    let app = common::emulator::AppFiles::new(dir.path(), "app", CLIENT);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args(["emulator", "--listen", "127.0.0.1:0", "--tenant", TENANT])
        .args(["--register", &format!("{CLIENT}={}", s(&app.cert))])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = stdout.next().unwrap().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let token = |key: &std::path::Path, cert: &std::path::Path| {
        common::emulator::certassert(&dir.path().join("cache"))
            .args(["token", "--key", s(key), "--cert", s(cert), "--no-cache"])
            .args(["--tenant", TENANT, "--client-id", CLIENT, "--scope", GRAPH])
            .args(["--authority-host", &url])
            .output()
            .unwrap()
    };
    assert!(token(&app.key, &app.cert).status.success());
    let stranger = common::emulator::AppFiles::new(dir.path(), "stranger", CLIENT);
    let refused = token(&stranger.key, &stranger.cert);
    assert!(!refused.status.success());
    // Each line is written before the answer goes out, so both are there to read.
    let lines: Vec<String> = (0..2).map(|_| stderr.next().unwrap().unwrap()).collect();
    let _ = child.kill();
    let _ = child.wait();
    let path = format!("POST /{TENANT}/oauth2/v2.0/token");
    assert_eq!(
        lines,
        [
            format!("{path} grant=client_credentials client={CLIENT} -> 200"),
            format!("{path} grant=client_credentials client={CLIENT} -> 401 AADSTS700027"),
        ]
    );
}
