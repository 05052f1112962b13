//! Microsoft Graph's key-rolling subset, as strictly as the token endpoint: the
//! registry of each app's object id and certificate credentials (with their `keyId`s),
//! which the token endpoint reads on every request — so a certificate added through
//! `addKey` signs assertions at once and a removed one is refused at once (AADSTS700027)
//! — and the Graph requests:
//!
//! - `POST /v1.0/applications/{object-id}/addKey` and `…/removeKey`, also addressed as
//!   `/v1.0/applications(appId='{client-id}')/…`;
//! - `GET /v1.0/applications/{object-id}` (`keyCredentials`), for a token whose roles hold
//!   `Application.Read.All` or `Application.ReadWrite.All`, as Graph asks.
//!
//! Each request needs a bearer token this emulator issued for Graph (`aud` its own URL,
//! `https://graph.microsoft.com` or Graph's app id) to the app it addresses. The proof of
//! possession is checked claim by claim, each refusal naming the claim: strict compact
//! JWS with no repeated key, `alg` RS256, no `crit`, the certificate named by `x5t` (or
//! `kid`: its hex thumbprint or x5t) among the app's registered ones, the signature,
//! that certificate still valid, `aud` = Graph's app id, `iss` = the app's object id,
//! integer `nbf` and `exp` with `exp` − `nbf` ≤ 10 minutes, and now within them (five
//! minutes' skew). Refusals are Graph's `{"error":{"code","message","innerError"}}`.
//!
//! Entra takes a while before a new credential works; [`Config::graph_propagation`]
//! refuses each added certificate's first N token requests (AADSTS700027), counted, not
//! timed, so tests of a client's wait are not timing-dependent.

use super::config::{App, Config};
use super::state::{NotOurs, State};
use crate::cert::Certificate;
use crate::encoding::{b64, b64_decode, b64url_decode, rfc3339, unix_now, uuid_v4};
use crate::graph::GRAPH_APP_ID;
use crate::rules::{self, X5T};
use serde_json::{json, Map, Value};
use std::sync::Mutex;

/// One certificate credential of an app.
#[derive(Debug, Clone)]
struct Key {
    key_id: String,
    cert: Certificate,
    /// Token requests still to refuse while the credential "propagates".
    refusals_left: u32,
}

/// One registered app: client id, object id, credentials.
#[derive(Debug, Clone)]
struct Registered {
    client_id: String,
    object_id: String,
    keys: Vec<Key>,
}

/// Every app's object id and certificate credentials, as Graph changes them.
#[derive(Debug)]
pub(super) struct Registry {
    apps: Mutex<Vec<Registered>>,
    propagation: u32,
}

/// A registered app as the emulator reports it: client id, object id, and each
/// credential's `keyId` with the certificate's thumbprint (hex SHA-1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppObject {
    /// The application (client) id.
    pub client_id: String,
    /// The application object id (what Graph's `/applications/{id}` takes).
    pub object_id: String,
    /// `(keyId, thumbprint)` of each certificate credential, in registration order.
    pub keys: Vec<(String, String)>,
}

/// A GUID-shaped application object id derived from a client id, so the same app gets
/// the same object id on every start (and never its client id).
pub(super) fn default_object_id(client_id: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("application object\n{}", client_id.to_ascii_lowercase()).as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    crate::encoding::guid_text(&b)
}

impl Registry {
    /// The registry of `config`'s apps, each with its given or derived object id.
    pub(super) fn new(config: &Config) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|app| Registered {
                client_id: app.client_id.clone(),
                object_id: config
                    .object_ids
                    .iter()
                    .find(|(c, _)| c.eq_ignore_ascii_case(&app.client_id))
                    .map_or_else(|| default_object_id(&app.client_id), |(_, o)| o.clone()),
                keys: app
                    .certificates
                    .iter()
                    .map(|cert| Key {
                        key_id: uuid_v4(),
                        cert: cert.clone(),
                        refusals_left: 0,
                    })
                    .collect(),
            })
            .collect();
        Self {
            apps: Mutex::new(apps),
            propagation: config.graph_propagation,
        }
    }

    /// Every app, as [`AppObject`]s.
    pub(super) fn objects(&self) -> Vec<AppObject> {
        self.apps
            .lock()
            .expect("registry")
            .iter()
            .map(|r| AppObject {
                client_id: r.client_id.clone(),
                object_id: r.object_id.clone(),
                keys: r
                    .keys
                    .iter()
                    .map(|k| (k.key_id.clone(), k.cert.thumbprint_hex()))
                    .collect(),
            })
            .collect()
    }

    /// The app `client_id` with the certificates that may sign `assertion` now: a
    /// credential still propagating is left out, and its count goes down when the
    /// assertion names it.
    pub(super) fn app_for_token(&self, client_id: &str, assertion: &str) -> Option<App> {
        let mut apps = self.apps.lock().expect("registry");
        let app = apps
            .iter_mut()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))?;
        let named = crate::jws::decode(assertion).ok().and_then(|j| {
            rules::THUMBPRINTS.into_iter().find_map(|shape| {
                let raw = j
                    .header
                    .get(shape.header)?
                    .as_str()
                    .and_then(b64url_decode)?;
                Some((shape, raw))
            })
        });
        let mut certificates = Vec::new();
        for key in &mut app.keys {
            if key.refusals_left > 0 {
                if named
                    .as_ref()
                    .is_some_and(|(shape, raw)| shape.digest(&key.cert) == *raw)
                {
                    key.refusals_left -= 1;
                }
                continue;
            }
            certificates.push(key.cert.clone());
        }
        Some(App {
            client_id: app.client_id.clone(),
            certificates,
        })
    }
}

/// A Graph error answer.
struct Refused {
    status: u16,
    code: &'static str,
    message: String,
}

fn refused(status: u16, code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        status,
        code,
        message: message.into(),
    }
}

/// A refused proof of possession: Graph's 401 `Authentication_MissingOrMalformed`,
/// with the claim at fault.
fn bad_proof(reason: impl std::fmt::Display) -> Refused {
    refused(
        401,
        "Authentication_MissingOrMalformed",
        format!("Access Token missing or malformed. [Reason - the proof of possession: {reason}]"),
    )
}

/// The answer to a Graph request: status and JSON body (`None`: no content).
pub(super) type GraphAnswer = (u16, Option<Value>);

/// Answer `method path` if it is a Graph request (`None`: not Graph's, for the token
/// endpoint's router).
pub(super) fn route(
    state: &State,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
    client_request_id: &str,
) -> Option<GraphAnswer> {
    let rest = path.strip_prefix("/v1.0/applications")?;
    let now = unix_now();
    let result = handle(state, method, rest, authorization, body, now);
    Some(match result {
        Ok(answer) => answer,
        Err(r) => (
            r.status,
            Some(json!({"error": {
                "code": r.code,
                "message": r.message,
                "innerError": {
                    "date": rfc3339(now).trim_end_matches('Z'),
                    "request-id": uuid_v4(),
                    "client-request-id": client_request_id,
                },
            }})),
        ),
    })
}

/// Which application a path names, and the action.
enum Address<'a> {
    ObjectId(&'a str),
    AppId(&'a str),
}

fn handle(
    state: &State,
    method: &str,
    rest: &str,
    authorization: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<GraphAnswer, Refused> {
    // "/{id}/addKey", "(appId='{id}')/addKey", "/{id}".
    let (address, action) = if let Some(r) = rest.strip_prefix("(appId='") {
        let (id, tail) = r
            .split_once("')")
            .ok_or_else(|| refused(400, "BadRequest", "Bad Request - Error in query syntax."))?;
        (Address::AppId(id), tail)
    } else if let Some(r) = rest.strip_prefix('/') {
        match r.split_once('/') {
            Some((id, tail)) => (Address::ObjectId(id), tail),
            None => (Address::ObjectId(r), ""),
        }
    } else {
        return Err(refused(
            400,
            "BadRequest",
            "Resource not found for the segment 'applications'.",
        ));
    };
    let action = action.trim_start_matches('/');
    let action = action.strip_prefix("microsoft.graph.").unwrap_or(action);
    match (method, action) {
        ("POST", "addKey" | "removeKey") | ("GET", "") => {}
        (_, "addKey" | "removeKey") | (_, "") => {
            return Err(refused(
                405,
                "Request_BadRequest",
                format!("The HTTP method '{method}' is not allowed for this request."),
            ))
        }
        _ => {
            return Err(refused(
                400,
                "BadRequest",
                format!(
                    "Resource not found for the segment '{}'.",
                    action.chars().take(80).collect::<String>()
                ),
            ))
        }
    }
    let caller = bearer(state, authorization, now)?;
    let mut apps = state.graph.apps.lock().expect("registry");
    let app = apps
        .iter_mut()
        .find(|a| match address {
            Address::ObjectId(id) => a.object_id.eq_ignore_ascii_case(id),
            Address::AppId(id) => a.client_id.eq_ignore_ascii_case(id),
        })
        .ok_or_else(|| {
            let id = match address {
                Address::ObjectId(id) | Address::AppId(id) => id,
            };
            refused(
                404,
                "Request_ResourceNotFound",
                format!(
                    "Resource '{}' does not exist or one of its queried reference-property objects are not present.",
                    id.chars().take(80).collect::<String>()
                ),
            )
        })?;
    if !caller.app_id.eq_ignore_ascii_case(&app.client_id) {
        return Err(refused(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    if method == "GET" {
        if !caller
            .roles
            .iter()
            .any(|r| r == "Application.Read.All" || r == "Application.ReadWrite.All")
        {
            return Err(refused(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ));
        }
        let keys: Vec<Value> = app.keys.iter().map(key_credential).collect();
        return Ok((
            200,
            Some(json!({"id": app.object_id, "appId": app.client_id, "keyCredentials": keys})),
        ));
    }
    let request: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(refused(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            ))
        }
    };
    let proof = match request.get("proof") {
        Some(Value::String(p)) if !p.is_empty() => p.as_str(),
        _ => {
            return Err(refused(
                400,
                "Request_BadRequest",
                "The 'proof' parameter is required: a JWT signed by a current certificate of the application.",
            ))
        }
    };
    check_proof(app, proof, now)?;
    if action == "addKey" {
        let credential = request
            .get("keyCredential")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                refused(
                    400,
                    "Request_BadRequest",
                    "The 'keyCredential' parameter is required.",
                )
            })?;
        let field = |k: &str| credential.get(k).and_then(Value::as_str);
        if field("type") != Some("AsymmetricX509Cert") || field("usage") != Some("Verify") {
            return Err(refused(400, "Request_BadRequest", "keyCredential: type must be 'AsymmetricX509Cert' and usage 'Verify' for a certificate credential."));
        }
        let cert = field("key")
            .and_then(b64_decode)
            .and_then(|der| Certificate::from_der(der).ok())
            .ok_or_else(|| {
                refused(
                    400,
                    "Request_BadRequest",
                    "keyCredential.key is not a base64-encoded X.509 certificate (DER).",
                )
            })?;
        if cert.rsa_bits().is_none() {
            return Err(refused(
                400,
                "Request_BadRequest",
                "keyCredential.key: only RSA certificates are supported.",
            ));
        }
        if now > cert.not_after() {
            return Err(refused(
                400,
                "Request_BadRequest",
                format!(
                    "keyCredential.key: the certificate expired at {}.",
                    rfc3339(cert.not_after())
                ),
            ));
        }
        if app.keys.iter().any(|k| k.cert.der() == cert.der()) {
            return Err(refused(400, "Request_BadRequest", format!("Updates to key credentials are not valid: a key credential with thumbprint {} is already on the application.", cert.thumbprint_hex())));
        }
        let key = Key {
            key_id: uuid_v4(),
            cert,
            refusals_left: state.graph.propagation,
        };
        let answer = key_credential(&key);
        app.keys.push(key);
        let mut answer = answer;
        answer["@odata.context"] = json!(format!(
            "{}/v1.0/$metadata#microsoft.graph.keyCredential",
            state.base_url
        ));
        return Ok((200, Some(answer)));
    }
    let key_id = match request.get("keyId") {
        Some(Value::String(k)) if crate::graph::is_guid(k) => k.clone(),
        _ => {
            return Err(refused(
                400,
                "Request_BadRequest",
                "The 'keyId' parameter is required and must be a GUID.",
            ))
        }
    };
    let before = app.keys.len();
    app.keys.retain(|k| !k.key_id.eq_ignore_ascii_case(&key_id));
    if app.keys.len() == before {
        return Err(refused(
            404,
            "Request_ResourceNotFound",
            format!("No key credential with keyId '{key_id}' is on the application."),
        ));
    }
    Ok((204, None))
}

/// A credential as Graph's keyCredential resource (the key itself is never returned).
fn key_credential(k: &Key) -> Value {
    json!({
        "customKeyIdentifier": b64(&k.cert.sha1()),
        "displayName": k.cert.subject(),
        "endDateTime": rfc3339(k.cert.not_after()),
        "key": null,
        "keyId": k.key_id,
        "startDateTime": rfc3339(k.cert.not_before()),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })
}

/// Who is calling: the app id and roles of a bearer token this emulator issued for Graph.
struct Caller {
    app_id: String,
    roles: Vec<String>,
}

fn bearer(state: &State, authorization: Option<&str>, now: i64) -> Result<Caller, Refused> {
    let invalid = |m: &str| refused(401, "InvalidAuthenticationToken", m.to_string());
    let token = authorization
        .and_then(|a| {
            a.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("Access token is empty."))?;
    let jws = super::state::own_token(state, token).map_err(|e| match e {
        NotOurs::Malformed => invalid("IDX14100: JWT is not well formed."),
        NotOurs::Signature => invalid("Access token validation failure: the signature is invalid."),
    })?;
    let aud = jws
        .claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let graph_audiences = [
        state.base_url.as_str(),
        GRAPH_APP_ID,
        crate::graph::GRAPH_PUBLIC,
    ];
    if !graph_audiences
        .iter()
        .any(|a| aud.trim_end_matches('/').eq_ignore_ascii_case(a))
    {
        return Err(invalid(
            "Access token validation failure. Invalid audience.",
        ));
    }
    let exp = jws.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if now >= exp {
        return Err(invalid("Lifetime validation failed, the token is expired."));
    }
    let app_id = jws
        .claims
        .get("appid")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Access token validation failure: no appid."))?;
    if jws.claims.contains_key("scp") {
        // A user's delegated token: addKey and removeKey are the application's own.
        return Err(refused(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    let roles = jws
        .claims
        .get("roles")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Caller {
        app_id: app_id.to_string(),
        roles,
    })
}

/// The proof of possession, claim by claim.
fn check_proof(app: &Registered, proof: &str, now: i64) -> Result<(), Refused> {
    let jws =
        crate::jws::decode(proof).map_err(|e| bad_proof(format!("not a compact JWT ({e})")))?;
    if let Some(dup) = jws.duplicate_keys.first() {
        return Err(bad_proof(dup));
    }
    let alg = jws.header.get("alg").and_then(Value::as_str);
    if alg != Some("RS256") {
        return Err(bad_proof(format!(
            "alg is {}, and Graph takes RS256 only",
            alg.map_or("missing".into(), |a| format!(
                "'{}'",
                a.chars().take(20).collect::<String>()
            ))
        )));
    }
    if jws.header.contains_key(rules::CRIT) {
        return Err(bad_proof(
            "the header carries crit, which Graph does not understand",
        ));
    }
    // The certificate: by x5t, else by kid (its hex thumbprint, or its x5t).
    let named = match (jws.header.get("x5t"), jws.header.get("kid")) {
        (Some(Value::String(x5t)), _) => {
            let raw = b64url_decode(x5t).filter(|r| r.len() == X5T.len);
            raw.and_then(|r| app.keys.iter().find(|k| X5T.digest(&k.cert) == r))
        }
        (None, Some(Value::String(kid))) => app.keys.iter().find(|k| {
            k.cert.thumbprint_hex().eq_ignore_ascii_case(kid) || X5T.value(&k.cert) == *kid
        }),
        (None, None) => return Err(bad_proof("the header names no certificate: give x5t")),
        _ => return Err(bad_proof("x5t (or kid) is not a string")),
    };
    let key = named.ok_or_else(|| {
        bad_proof("the certificate x5t names is not registered on the application")
    })?;
    if crate::signer::verify(
        key.cert.spki_der(),
        crate::Algorithm::Rs256,
        jws.signing_input.as_bytes(),
        &jws.signature,
    )
    .is_err()
    {
        return Err(bad_proof(format!(
            "the signature does not verify with the certificate {}",
            key.cert.thumbprint_hex()
        )));
    }
    if now > key.cert.not_after() || now < key.cert.not_before() {
        return Err(bad_proof(format!(
            "the signing certificate {} is not valid now (valid {} to {}); an expired credential cannot add or remove keys",
            key.cert.thumbprint_hex(),
            rfc3339(key.cert.not_before()),
            rfc3339(key.cert.not_after())
        )));
    }
    match jws.claims.get("aud") {
        Some(Value::String(aud)) if aud == GRAPH_APP_ID => {}
        other => {
            return Err(bad_proof(format!(
                "aud is {}, expected '{GRAPH_APP_ID}' (Microsoft Graph)",
                shown(other)
            )))
        }
    }
    match jws.claims.get("iss") {
        Some(Value::String(iss)) if iss.eq_ignore_ascii_case(&app.object_id) => {}
        other => {
            return Err(bad_proof(format!(
                "iss is {}, expected the application's object id '{}'{}",
                shown(other),
                app.object_id,
                if other
                    .and_then(Value::as_str)
                    .is_some_and(|i| i.eq_ignore_ascii_case(&app.client_id))
                {
                    " (that is the client id)"
                } else {
                    ""
                }
            )))
        }
    }
    let time = |name: &str| match jws.claims.get(name) {
        Some(v) => v
            .as_i64()
            .filter(|t| !rules::is_milliseconds(*t))
            .ok_or_else(|| {
                bad_proof(format!(
                    "{name} must be an integer NumericDate (seconds since 1970)"
                ))
            }),
        None => Err(bad_proof(format!("it has no {name} claim"))),
    };
    let (nbf, exp) = (time("nbf")?, time("exp")?);
    if exp <= nbf || exp - nbf > crate::graph::MAX_PROOF_LIFETIME {
        return Err(bad_proof(format!(
            "its lifetime exp - nbf is {} s; it must be more than 0 and at most {} s (10 minutes)",
            exp - nbf,
            crate::graph::MAX_PROOF_LIFETIME
        )));
    }
    if rules::expired(exp, now) || rules::not_yet_valid(nbf, now) {
        return Err(bad_proof(format!(
            "it is valid from {} to {}, and it is {} now",
            rfc3339(nbf),
            rfc3339(exp),
            rfc3339(now)
        )));
    }
    Ok(())
}

/// A claim's value for a message: JSON, cut to 80 characters.
fn shown(v: Option<&Value>) -> String {
    match v {
        None => "missing".into(),
        Some(v) => {
            let text = v.to_string();
            let cut: String = text.chars().take(80).collect();
            let cut = crate::entra::error::server_text(&cut, 80);
            if text.chars().count() > 80 {
                format!("{cut}…")
            } else {
                cut
            }
        }
    }
}
