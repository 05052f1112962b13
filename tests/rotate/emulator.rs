//! The emulator's Graph subset over real HTTP: addKey and removeKey by object id and by
//! `appId='…'`, taking effect on the token endpoint at once; the bearer token checked;
//! each bad claim of a proof refused by name. The bad proofs are made here with openssl
//! (`dgst -sha256 -sign`), not with certassert's encoder.

use crate::common::emulator::{start, AppFiles};
use crate::common::{b64url, openssl, openssl_fingerprint, s, tempdir, write, CLIENT_ID};
use certassert::emulator::Running;
use certassert::entra::{Client, Credential, Grant, HttpOptions, Target, TokenRequest};
use certassert::graph::GRAPH_APP_ID;
use certassert::{signer, Algorithm};
use serde_json::{json, Value};
use std::path::Path;

/// A token for `scope` signed by `app`'s key, or the AADSTS code refusing it.
pub fn token(emu: &Running, app: &AppFiles, scope: &str) -> Result<String, u32> {
    let key = signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap();
    let chain = vec![app.certificate()];
    let credential = Credential {
        signer: key.as_ref(),
        chain: &chain,
        alg: Algorithm::Rs256,
        x5c: false,
        lifetime: 600,
    };
    let request = TokenRequest {
        endpoint: emu.token_endpoint("contoso", false).unwrap(),
        client_id: app.client_id.clone(),
        target: Target::Scopes(vec![scope.to_string()]),
        grant: Grant::ClientCredentials,
        claims: None,
    };
    match Client::new(HttpOptions::default(), None).acquire(&credential, &request) {
        Ok(o) => Ok(o.token.access_token.expose().to_string()),
        Err(e) => Err(e.entra().and_then(|e| e.code()).unwrap_or(0)),
    }
}

/// POST (or GET without `body`) straight to the emulator; the status and JSON answer.
pub fn call(url: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .new_agent();
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let response = match body {
        Some(body) => {
            let mut r = agent.post(url).content_type("application/json");
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send(body.to_string().as_bytes())
        }
        None => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A JWT with `header` and `claims`, signed RS256 by openssl with the key file `key`.
fn openssl_jwt(dir: &Path, key: &Path, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let data = write(dir, "input", &input);
    let sig = openssl(&["dgst", "-sha256", "-sign", s(key), s(&data)]).stdout;
    format!("{input}.{}", b64url(&sig))
}

fn x5t(cert: &Path) -> String {
    b64url(&openssl_fingerprint(cert, "sha1").1)
}

fn new_body(new: &AppFiles, proof: &str) -> Value {
    use base64::Engine as _;
    let der = openssl(&["x509", "-in", s(&new.cert), "-outform", "DER"]).stdout;
    json!({
        "keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify",
                          "key": base64::engine::general_purpose::STANDARD.encode(der)},
        "passwordCredential": null,
        "proof": proof,
    })
}

#[test]
fn add_and_remove_key_take_effect_on_the_token_endpoint_at_once() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let new = AppFiles::new(dir.path(), "new", CLIENT_ID);
    let emu = start(&[&current], Some("contoso"), false);
    let object = emu.apps().remove(0);
    assert_eq!(object.client_id, CLIENT_ID);
    assert!(certassert::graph::is_guid(&object.object_id));
    assert_ne!(object.object_id, CLIENT_ID);
    let old_key_id = object.keys[0].0.clone();
    let graph = emu.url().to_string();
    let bearer = token(&emu, &current, &format!("{graph}/.default")).unwrap();
    assert_eq!(token(&emu, &new, "api://x/.default"), Err(700027));

    let now = crate::common::now();
    let proof = |key: &AppFiles| {
        openssl_jwt(
            dir.path(),
            &key.key,
            &json!({"alg": "RS256", "typ": "JWT", "x5t": x5t(&key.cert)}),
            &json!({"aud": GRAPH_APP_ID, "iss": object.object_id, "nbf": now, "exp": now + 600}),
        )
    };
    let (status, added) = call(
        &format!("{graph}/v1.0/applications/{}/addKey", object.object_id),
        Some(&bearer),
        Some(new_body(&new, &proof(&current))),
    );
    assert_eq!(status, 200, "{added}");
    let new_key_id = added["keyId"].as_str().unwrap().to_string();
    assert!(certassert::graph::is_guid(&new_key_id));
    assert_eq!(added["type"], "AsymmetricX509Cert");
    assert_eq!(added["usage"], "Verify");
    assert_eq!(added["key"], Value::Null, "the key is never sent back");
    assert_eq!(
        added["customKeyIdentifier"],
        certassert::encoding::b64(&openssl_fingerprint(&new.cert, "sha1").1)
    );
    // At once: NEW signs a token.
    assert!(token(&emu, &new, "api://x/.default").is_ok());
    // Added twice: refused, and still one credential for it.
    let (status, again) = call(
        &format!("{graph}/v1.0/applications/{}/addKey", object.object_id),
        Some(&bearer),
        Some(new_body(&new, &proof(&current))),
    );
    assert_eq!(status, 400, "{again}");
    assert_eq!(emu.apps()[0].keys.len(), 2);

    // removeKey by appId='…', with a proof signed by NEW: CURRENT is refused at once.
    let bearer_new = token(&emu, &new, &format!("{graph}/.default")).unwrap();
    let (status, answer) = call(
        &format!("{graph}/v1.0/applications(appId='{CLIENT_ID}')/removeKey"),
        Some(&bearer_new),
        Some(json!({"keyId": old_key_id, "proof": proof(&new)})),
    );
    assert_eq!(status, 204, "{answer}");
    assert_eq!(token(&emu, &current, "api://x/.default"), Err(700027));
    assert!(token(&emu, &new, "api://x/.default").is_ok());
    assert_eq!(
        emu.apps()[0].keys,
        vec![(new_key_id.clone(), openssl_fingerprint(&new.cert, "sha1").0)]
    );
    // Removing it again: Graph's not-found error JSON.
    let (status, answer) = call(
        &format!("{graph}/v1.0/applications/{}/removeKey", object.object_id),
        Some(&bearer_new),
        Some(json!({"keyId": old_key_id, "proof": proof(&new)})),
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "Request_ResourceNotFound");
    assert!(answer["error"]["innerError"]["request-id"].is_string());

    // keyCredentials: only with Application.Read.All (the fixture grants Things.Read).
    let (status, answer) = call(
        &format!("{graph}/v1.0/applications/{}", object.object_id),
        Some(&bearer_new),
        None,
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "Authorization_RequestDenied");
}

#[test]
fn the_bearer_token_must_be_the_apps_own_for_graph() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let other = AppFiles::new(dir.path(), "other", "0b6e3b47-69f4-4f7c-8a6f-5b3ea1b2c3d4");
    let new = AppFiles::new(dir.path(), "new", CLIENT_ID);
    let emu = start(&[&current, &other], Some("contoso"), false);
    let object_id = emu.apps()[0].object_id.clone();
    let graph = emu.url().to_string();
    let url = format!("{graph}/v1.0/applications/{object_id}/addKey");
    let now = crate::common::now();
    let proof = openssl_jwt(
        dir.path(),
        &current.key,
        &json!({"alg": "RS256", "typ": "JWT", "x5t": x5t(&current.cert)}),
        &json!({"aud": GRAPH_APP_ID, "iss": object_id, "nbf": now, "exp": now + 600}),
    );
    let body = new_body(&new, &proof);
    let refused = |bearer: Option<&str>| call(&url, bearer, Some(body.clone()));
    let (status, a) = refused(None);
    assert_eq!(
        (status, a["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken")),
        "{a}"
    );
    let not_graph = token(&emu, &current, "api://some-api/.default").unwrap();
    let (status, a) = refused(Some(&not_graph));
    assert_eq!(status, 401, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid audience"),
        "{a}"
    );
    let forged = format!("{}x", &not_graph[..not_graph.len() - 1]);
    assert_eq!(refused(Some(&forged)).0, 401);
    let others = token(&emu, &other, &format!("{graph}/.default")).unwrap();
    let (status, a) = refused(Some(&others));
    assert_eq!(
        (status, a["error"]["code"].as_str()),
        (403, Some("Authorization_RequestDenied")),
        "{a}"
    );
    let mine = token(&emu, &current, "https://graph.microsoft.com/.default").unwrap();
    let (status, a) = call(
        &format!("{graph}/v1.0/applications/00000000-0000-0000-0000-000000000001/addKey"),
        Some(&mine),
        Some(body.clone()),
    );
    assert_eq!(
        (status, a["error"]["code"].as_str()),
        (404, Some("Request_ResourceNotFound")),
        "{a}"
    );
    assert_eq!(
        refused(Some(&mine)).0,
        200,
        "a token for https://graph.microsoft.com is Graph's"
    );
}

#[test]
fn each_bad_claim_of_the_proof_is_refused_by_name() {
    let dir = tempdir();
    let current = AppFiles::new(dir.path(), "current", CLIENT_ID);
    let stranger = AppFiles::new(dir.path(), "stranger", CLIENT_ID);
    let new = AppFiles::new(dir.path(), "new", CLIENT_ID);
    let emu = start(&[&current], Some("contoso"), false);
    let object_id = emu.apps()[0].object_id.clone();
    let graph = emu.url().to_string();
    let bearer = token(&emu, &current, &format!("{graph}/.default")).unwrap();
    let url = format!("{graph}/v1.0/applications/{object_id}/addKey");
    let now = crate::common::now();
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": x5t(&current.cert)});
    let claims = json!({"aud": GRAPH_APP_ID, "iss": object_id, "nbf": now, "exp": now + 600});
    let with = |base: &Value, k: &str, v: Value| {
        let mut out = base.clone();
        match v {
            Value::Null => {
                out.as_object_mut().unwrap().remove(k);
            }
            v => out[k] = v,
        }
        out
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "aud is the client id",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "aud", json!(CLIENT_ID)),
            ),
            "aud is",
        ),
        (
            "aud missing",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "aud", Value::Null),
            ),
            "aud is missing",
        ),
        (
            "iss is the client id",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "iss", json!(CLIENT_ID)),
            ),
            "(that is the client id)",
        ),
        (
            "lifetime 11 minutes",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "exp", json!(now + 660)),
            ),
            "lifetime",
        ),
        (
            "exp before nbf",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "exp", json!(now - 1)),
            ),
            "lifetime",
        ),
        (
            "expired",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(
                    &with(&claims, "nbf", json!(now - 1200)),
                    "exp",
                    json!(now - 900),
                ),
            ),
            "valid from",
        ),
        (
            "nbf a string",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "nbf", json!(now.to_string())),
            ),
            "nbf must be an integer",
        ),
        (
            "exp in milliseconds",
            openssl_jwt(
                dir.path(),
                &current.key,
                &header,
                &with(&claims, "exp", json!((now + 600) * 1000)),
            ),
            "exp must be an integer",
        ),
        (
            "no x5t",
            openssl_jwt(
                dir.path(),
                &current.key,
                &with(&header, "x5t", Value::Null),
                &claims,
            ),
            "names no certificate",
        ),
        (
            "unregistered certificate",
            openssl_jwt(
                dir.path(),
                &stranger.key,
                &with(&header, "x5t", json!(x5t(&stranger.cert))),
                &claims,
            ),
            "not registered",
        ),
        (
            "registered x5t, another key",
            openssl_jwt(dir.path(), &stranger.key, &header, &claims),
            "signature does not verify",
        ),
        (
            "PS256",
            openssl_jwt(
                dir.path(),
                &current.key,
                &with(&header, "alg", json!("PS256")),
                &claims,
            ),
            "RS256 only",
        ),
        (
            "crit",
            openssl_jwt(
                dir.path(),
                &current.key,
                &with(&header, "crit", json!(["exp"])),
                &claims,
            ),
            "crit",
        ),
        ("not a JWT", "not.a-jwt".to_string(), "not a compact JWT"),
    ];
    for (what, proof, says) in &cases {
        let (status, answer) = call(&url, Some(&bearer), Some(new_body(&new, proof)));
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(
            answer["error"]["code"], "Authentication_MissingOrMalformed",
            "{what}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{what}: {message}");
    }
    assert_eq!(emu.apps()[0].keys.len(), 1, "no bad proof added a key");
    // The certificate named by kid (its hex thumbprint, as .NET's X509SigningCredentials
    // writes it) is found too.
    let kid =
        json!({"alg": "RS256", "typ": "JWT", "kid": openssl_fingerprint(&current.cert, "sha1").0});
    let (status, answer) = call(
        &url,
        Some(&bearer),
        Some(new_body(
            &new,
            &openssl_jwt(dir.path(), &current.key, &kid, &claims),
        )),
    );
    assert_eq!(status, 200, "{answer}");
}
