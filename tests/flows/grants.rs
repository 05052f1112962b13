//! Each grant as the library sends it to the in-process emulator: client credentials
//! (v2 scopes and v1 resource, RS256 and PS256), authorization code with PKCE, refresh
//! token, on-behalf-of, and a claims challenge: the exact form fields in order, a fresh
//! assertion per request, and the issued token verified with the emulator's key.

use crate::common::emulator::start;
use crate::common::{self, b64url, b64url_decode, openssl_fingerprint, rsa_crate_verify};
use crate::{
    decode, fields, graph, issued_claims, pyjwt_verify, quick, request, Fixture, CLIENT, GRAPH,
    TENANT,
};
use certassert::emulator::Code;
use certassert::entra::{Client, Grant, Target, CLIENT_ASSERTION_TYPE};
use certassert::secret::Secret;
use certassert::Algorithm;
use serde_json::Value;

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
