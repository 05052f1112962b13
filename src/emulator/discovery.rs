//! What makes the emulator a drop-in authority for MSAL, azure-identity and APIs under
//! test: its token-signing certificate, the OpenID Connect discovery documents (v2
//! `/{tenant}/v2.0/.well-known/openid-configuration`, v1
//! `/{tenant}/.well-known/openid-configuration`), MSAL's instance discovery
//! (`/common/discovery/instance`) and the JWKS (`/{tenant}/discovery/v2.0/keys`,
//! `/{tenant}/discovery/keys`) that the access tokens it issues verify against.
//!
//! As Entra does, the signing key is named by `kid` = `x5t` = base64url of its
//! certificate's SHA-1, and the JWKS entry carries `n`, `e` and the certificate (`x5c`).
//! Issuers match the tokens' `iss`: `{base}/{tid}/v2.0` (v2) and `{base}/{tid}/` (v1);
//! a multi-tenant alias (`common`, `organizations`, `consumers`) gets Entra's literal
//! `{tenantid}` template. A tenant the emulator does not serve gets Entra's AADSTS90002
//! answer with status 400.

use super::state::{Refusal, State};
use crate::cert::issue::create_self_signed;
use crate::cert::Certificate;
use crate::encoding::{b64, b64url};
use crate::public_key::RsaPublicKey;
use crate::signer::{Algorithm, Signer};
use serde_json::{json, Value};

/// The subject of the token-signing certificate.
const SIGNING_SUBJECT: &str = "CN=certassert emulator token signing";

/// A self-signed certificate for the emulator's token-signing key (what the JWKS
/// publishes in `x5c`, and whose SHA-1 names the key as `kid`/`x5t`).
pub(super) fn signing_certificate(signer: &dyn Signer, now: i64) -> Result<Certificate, String> {
    create_self_signed(signer, Algorithm::Rs256, SIGNING_SUBJECT, 30, now)
        .map_err(|e| e.to_string())
}

/// The tenant id a discovery document names: the served tenant, the path's tenant when
/// any is served, or Entra's `{tenantid}` template for a multi-tenant alias. `None`: a
/// tenant this emulator does not serve.
fn tenant_id(state: &State, tenant: &str) -> Option<String> {
    if crate::rules::is_multi_tenant(tenant) {
        return Some("{tenantid}".into());
    }
    match &state.config.tenant {
        Some(t) if t.eq_ignore_ascii_case(tenant) => Some(t.clone()),
        Some(_) => None,
        None => Some(tenant.to_string()),
    }
}

/// Entra's answer for a tenant it does not know.
fn unknown_tenant(tenant: &str) -> Refusal {
    Refusal::new(400, "invalid_tenant", 90002, format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."))
}

/// The OpenID Connect discovery document for `tenant`: v2 (`v1 == false`) or v1.
pub(super) fn openid_configuration(
    state: &State,
    tenant: &str,
    v1: bool,
) -> Result<Value, Refusal> {
    let tid = tenant_id(state, tenant).ok_or_else(|| unknown_tenant(tenant))?;
    let base = &state.base_url;
    let claims = [
        "sub",
        "iss",
        "cloud_instance_name",
        "cloud_instance_host_name",
        "cloud_graph_host_name",
        "msgraph_host",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "acr",
        "nonce",
        "preferred_username",
        "name",
        "tid",
        "ver",
        "at_hash",
        "c_hash",
        "email",
    ];
    let common = json!({
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "request_uri_parameter_supported": false,
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "claims_supported": claims,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
        "tenant_region_scope": "WW",
    });
    let mut doc = if v1 {
        json!({
            "token_endpoint": format!("{base}/{tenant}/oauth2/token"),
            "jwks_uri": format!("{base}/{tenant}/discovery/keys"),
            "issuer": format!("{base}/{tid}/"),
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/authorize"),
            "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/devicecode"),
            "end_session_endpoint": format!("{base}/{tenant}/oauth2/logout"),
            "userinfo_endpoint": format!("{base}/{tenant}/openid/userinfo"),
            "check_session_iframe": format!("{base}/{tenant}/oauth2/checksession"),
            "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
            "microsoft_multi_refresh_token": true,
        })
    } else {
        json!({
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
            "issuer": format!("{base}/{tid}/v2.0"),
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
        })
    };
    if let (Some(doc), Some(common)) = (doc.as_object_mut(), common.as_object()) {
        doc.extend(common.clone());
    }
    Ok(doc)
}

/// The JWKS: the token-signing key as Entra publishes its keys (`kty`, `use`, `kid`,
/// `x5t`, `n`, `e`, `x5c`, `issuer`).
pub(super) fn jwks(state: &State, tenant: &str) -> Result<Value, Refusal> {
    let tid = tenant_id(state, tenant).ok_or_else(|| unknown_tenant(tenant))?;
    let key = RsaPublicKey::from_spki_der(state.signer.public_key_der()).map_err(|e| {
        Refusal::new(
            500,
            "server_error",
            90033,
            format!("The signing key cannot be published: {e}"),
        )
    })?;
    Ok(json!({"keys": [{
        "kty": "RSA",
        "use": "sig",
        "kid": state.kid,
        "x5t": state.kid,
        "n": b64url(key.modulus()),
        "e": b64url(key.exponent()),
        "x5c": [b64(state.signing_cert.der())],
        "issuer": format!("{}/{tid}/v2.0", state.base_url),
    }]}))
}

/// MSAL's instance discovery: `authorization_endpoint` must be on this emulator (its
/// host; MSAL drops the port from it), and the answer points at the tenant's v2
/// discovery document on this emulator, as Entra's points at its own.
pub(super) fn instance(state: &State, query: &[(String, String)]) -> Result<Value, Refusal> {
    let endpoint = query
        .iter()
        .find(|(k, _)| k == "authorization_endpoint")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Refusal::new(400, "invalid_request", 90014, "The required field 'authorization_endpoint' is missing from the credential. Ensure that you have all the necessary parameters for the login request.".into()))?;
    let ours = url::Url::parse(&state.base_url).ok();
    let theirs = url::Url::parse(endpoint).ok();
    let tenant = match (&ours, &theirs) {
        (Some(ours), Some(theirs))
            if theirs.scheme() == ours.scheme()
                && theirs.host_str() == ours.host_str()
                && (theirs.port().is_none() || theirs.port() == ours.port()) =>
        {
            theirs
                .path_segments()
                .and_then(|mut s| s.next())
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        }
        _ => None,
    };
    let Some(tenant) = tenant else {
        return Err(Refusal::new(400, "invalid_instance", 50049, format!("Unknown or invalid instance. The authorization endpoint '{endpoint}' is not on this authority ({}).", state.base_url)));
    };
    let host = ours
        .as_ref()
        .map(|u| match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        })
        .unwrap_or_default();
    Ok(json!({
        "tenant_discovery_endpoint": format!("{}/{tenant}/v2.0/.well-known/openid-configuration", state.base_url),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
}
