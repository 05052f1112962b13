//! Entra's errors as the library reports them: hand-made wrong assertions (no x5t, wrong
//! algorithm, audience, issuer, validity window, replayed jti, …) each get their AADSTS
//! code, correlation id and hint.

use crate::common::emulator::{start, AppFiles};
use crate::common::{self, b64url, openssl_fingerprint};
use crate::{graph, quick, request, Fixture, CLIENT, GRAPH, TENANT};
use certassert::entra::{Client, Credential, EntraError, Error, Grant, CLIENT_ASSERTION_TYPE};
use certassert::{signer, Algorithm, Signer};
use serde_json::Value;

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
    // A replayed jti: accepted within its validity, as Entra accepts it, and refused by
    // an emulator with reject_jti_replay (RFC 7523 §3).
    let strict = certassert::emulator::start(certassert::emulator::Config {
        apps: vec![f.app.registration()],
        tenant: Some(TENANT.into()),
        reject_jti_replay: true,
        ..certassert::emulator::Config::default()
    })
    .unwrap();
    let strict_endpoint = strict.token_endpoint(TENANT, false).unwrap();
    let http = certassert::entra::HttpClient::new(&quick()).unwrap();
    for (endpoint, replay_refused) in [(&endpoint, false), (&strict_endpoint, true)] {
        let once = hand_made(
            s,
            good_header.clone(),
            claims(endpoint, CLIENT, CLIENT, now, now + 600),
        );
        http.post_token(endpoint, || Ok(form(&once, GRAPH)), common::now)
            .unwrap();
        if replay_refused {
            assert_entra(
                &post_error(endpoint, form(&once, GRAPH)),
                50027,
                "the assertion is not an acceptable JWT",
            );
        } else {
            http.post_token(endpoint, || Ok(form(&once, GRAPH)), common::now)
                .unwrap();
        }
    }
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
