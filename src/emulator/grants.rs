//! The token endpoint's logic: tenant, parameters, client authentication (through
//! [`verify`](super::verify)), then the grant, and the access token it signs.

use super::state::{self, Refusal, State};
use super::verify;
use crate::encoding::{b64url, random, rfc3339, unix_now};
use crate::entra::request::{CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT};
use serde_json::{json, Value};

fn bad_request(code: u32, description: impl Into<String>) -> Refusal {
    Refusal::new(400, "invalid_request", code, description.into())
}

fn invalid_grant(code: u32, description: impl Into<String>) -> Refusal {
    Refusal::new(400, "invalid_grant", code, description.into())
}

fn missing(name: &str) -> Refusal {
    bad_request(
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Sign `claims` as an RS256 JWT with the emulator's key.
pub(super) fn sign_token(state: &State, claims: Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": state.kid, "x5t": state.kid});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = state::sign(state, input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// A GUID-shaped object id derived from a name, so the same app gets the same `oid`.
fn object_id(name: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    crate::encoding::guid_text(&b)
}

/// Handle one token request; `Ok` is the success JSON.
pub(super) fn token(
    state: &State,
    tenant: &str,
    v1: bool,
    audience: &str,
    form: &[(String, String)],
) -> Result<Value, Refusal> {
    let get = |k: &str| -> Option<&str> {
        form.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let known_tenant = match &state.config.tenant {
        Some(t) => t.eq_ignore_ascii_case(tenant),
        None => !crate::rules::is_multi_tenant(tenant),
    };
    if !known_tenant {
        return Err(bad_request(90002, format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.")));
    }
    let mut seen_names = std::collections::HashSet::new();
    if let Some((dup, _)) = form.iter().find(|(k, _)| !seen_names.insert(k.as_str())) {
        return Err(bad_request(
            90015,
            format!("Requested query string is too long or parameter '{dup}' is duplicated."),
        ));
    }
    let grant_type = get("grant_type").ok_or_else(|| missing("grant_type"))?;
    let client_id = get("client_id").ok_or_else(|| missing("client_id"))?;
    if get("client_secret").is_some() {
        return Err(Refusal::new(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'.".replace("{client_id}", client_id)));
    }
    let assertion = match (get("client_assertion_type"), get("client_assertion")) {
        (Some(CLIENT_ASSERTION_TYPE), Some(a)) => a,
        (Some(other), Some(_)) => return Err(Refusal::new(401, "invalid_client", 7000218, format!("The request body must contain the following parameter: 'client_assertion' or 'client_secret'. client_assertion_type '{other}' is not supported; use '{CLIENT_ASSERTION_TYPE}'."))),
        _ => return Err(Refusal::new(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into())),
    };
    // The certificates registered now (Graph's addKey/removeKey change them).
    let app = state
        .graph
        .app_for_token(client_id, assertion)
        .ok_or_else(|| Refusal::new(400, "unauthorized_client", 700016, format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.")))?;
    let now = unix_now();
    verify::client_assertion(
        &app,
        &app.client_id,
        assertion,
        audience,
        now,
        state.config.reject_jti_replay.then_some(&state.seen_jti),
    )?;
    // The target: v2 takes scope (never resource), v1 takes resource.
    if !v1 && get("resource").is_some() {
        return Err(bad_request(
            901002,
            "The 'resource' request parameter is not supported.",
        ));
    }
    let scope = get("scope").unwrap_or_default();
    let resource = if v1 {
        get("resource")
            .ok_or_else(|| missing("resource"))?
            .to_string()
    } else {
        String::new()
    };
    let xms_cc = get("claims")
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|c| c["access_token"]["xms_cc"]["values"].as_array().cloned());
    let (sub, user_scopes, refresh) = match grant_type {
        "client_credentials" => {
            if !v1 {
                let scopes: Vec<&str> = scope.split_whitespace().collect();
                match scopes.as_slice() {
                    [] => return Err(missing("scope")),
                    [one] if one.ends_with("/.default") => {}
                    [one] => return Err(Refusal::new(400, "invalid_scope", 1002012, format!("The provided value for scope {one} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."))),
                    _ => return Err(Refusal::new(400, "invalid_scope", 70011, format!("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. Client credential flows take a single RESOURCE/.default scope."))),
                }
            }
            (None, None, false)
        }
        "authorization_code" => {
            let code = get("code").ok_or_else(|| missing("code"))?;
            let redirect_uri = get("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
            let mut codes = state.codes.lock().expect("codes");
            let Some((seeded, redeemed)) = codes.get_mut(code) else {
                return Err(invalid_grant(
                    70000,
                    "The provided value for the 'code' parameter is not valid.",
                ));
            };
            if *redeemed {
                return Err(invalid_grant(54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."));
            }
            if seeded
                .client_id
                .as_deref()
                .is_some_and(|c| !c.eq_ignore_ascii_case(client_id))
            {
                return Err(invalid_grant(70000, "The provided value for the 'code' parameter is not valid: it was issued to another client."));
            }
            if seeded
                .redirect_uri
                .as_deref()
                .is_some_and(|r| r != redirect_uri)
            {
                return Err(invalid_grant(50011, format!("The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI the code was issued for.")));
            }
            if let Some(challenge) = &seeded.code_challenge {
                let verifier = get("code_verifier").unwrap_or_default();
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
                if b64url(d.as_ref()) != *challenge {
                    return Err(invalid_grant(501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request."));
                }
            }
            *redeemed = true;
            let user = seeded
                .user
                .clone()
                .unwrap_or_else(|| "emulator-user".into());
            (Some(user), Some(scope.to_string()), true)
        }
        JWT_BEARER_GRANT => {
            if get("requested_token_use") != Some("on_behalf_of") {
                return Err(missing("requested_token_use"));
            }
            let user_assertion = get("assertion").ok_or_else(|| missing("assertion"))?;
            let user = verify_user_assertion(state, user_assertion, &app.client_id, now)?;
            (Some(user), Some(scope.to_string()), true)
        }
        "refresh_token" => {
            let rt = get("refresh_token").ok_or_else(|| missing("refresh_token"))?;
            let found = state.refresh.lock().expect("refresh").get(rt).cloned();
            match found {
                Some((owner, user)) if owner.eq_ignore_ascii_case(client_id) => (Some(user), Some(scope.to_string()), true),
                Some(_) => return Err(invalid_grant(70000, "The refresh token was issued to a different client.")),
                None => return Err(invalid_grant(9002313, "Invalid request. Request is malformed or invalid: the refresh token is not valid.")),
            }
        }
        other => {
            return Err(Refusal::new(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            ))
        }
    };
    let tid = state
        .config
        .tenant
        .clone()
        .unwrap_or_else(|| tenant.to_string());
    let aud = if v1 {
        resource.clone()
    } else {
        scope
            .split_whitespace()
            .find(|s| !["openid", "profile", "offline_access", "email"].contains(s))
            .map(|s| s.rsplit_once('/').map_or(s, |(r, _)| r).to_string())
            .unwrap_or_else(|| "00000003-0000-0000-c000-000000000000".into())
    };
    let lifetime = state.config.token_lifetime;
    let mut claims = json!({
        "aud": aud,
        "iss": if v1 { format!("{}/{tid}/", state.base_url) } else { format!("{}/{tid}/v2.0", state.base_url) },
        "iat": now, "nbf": now, "exp": now + lifetime,
        "appid": app.client_id, "azp": app.client_id, "appidacr": "2", "azpacr": "2",
        "tid": tid,
        "oid": object_id(sub.as_deref().unwrap_or(&app.client_id)),
        "sub": sub.clone().unwrap_or_else(|| object_id(&app.client_id)),
        "uti": b64url(&random::<16>()),
        "ver": if v1 { "1.0" } else { "2.0" },
    });
    if sub.is_none() && !state.config.roles.is_empty() {
        claims["roles"] = json!(state.config.roles);
    }
    if let Some(s) = &user_scopes {
        let scp: Vec<&str> = s
            .split_whitespace()
            .filter(|x| !["openid", "profile", "offline_access", "email"].contains(x))
            .map(|x| x.rsplit_once('/').map_or(x, |(_, p)| p))
            .collect();
        claims["scp"] = json!(scp.join(" "));
    }
    if let Some(cc) = xms_cc {
        claims["xms_cc"] = json!(cc);
    }
    let access_token = sign_token(state, claims);
    let mut body = if v1 {
        json!({
            "token_type": "Bearer", "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(), "expires_on": (now + lifetime).to_string(),
            "not_before": now.to_string(), "resource": resource, "access_token": access_token,
        })
    } else {
        json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token})
    };
    if lifetime >= 7200 {
        body["refresh_in"] = json!(lifetime / 2);
    }
    if let Some(s) = user_scopes.filter(|_| !v1) {
        body["scope"] = json!(s);
    }
    if refresh {
        let rt = format!("emu.{}", b64url(&random::<32>()));
        state
            .refresh
            .lock()
            .expect("refresh")
            .insert(rt.clone(), (app.client_id.clone(), sub.unwrap_or_default()));
        body["refresh_token"] = json!(rt);
    }
    Ok(body)
}

/// The user behind an on-behalf-of `assertion`: a token this emulator signed, for this
/// API (`aud` = its client id or `api://` + client id), within its validity.
fn verify_user_assertion(
    state: &State,
    jwt: &str,
    client_id: &str,
    now: i64,
) -> Result<String, Refusal> {
    let bad = |code, d: &str| invalid_grant(code, d.to_string());
    let jws = state::own_token(state, jwt).map_err(|e| match e {
        state::NotOurs::Malformed => {
            bad(50027, "Invalid JWT token. The user assertion is not a JWS.")
        }
        state::NotOurs::Signature => bad(
            50013,
            "Assertion failed signature validation. [Reason - The key was not found.]",
        ),
    })?;
    let aud = jws
        .claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !(aud.eq_ignore_ascii_case(client_id)
        || aud.eq_ignore_ascii_case(&format!("api://{client_id}")))
    {
        return Err(bad(50013, &format!("Assertion failed signature validation. [Reason - The provided audience '{aud}' is not this application's ({client_id}).]")));
    }
    let exp = jws.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if crate::rules::expired(exp, now) {
        return Err(bad(500133, &format!("Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token. Current time: {}, expiry time of assertion {}.", rfc3339(now), rfc3339(exp))));
    }
    Ok(jws
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("user")
        .to_string())
}
