//! Microsoft Graph's key-rolling subset: an application adds and removes its own
//! certificate credentials with `addKey` / `removeKey`, which need no Graph permission —
//! only an access token for Graph obtained with a current credential and a *proof of
//! possession*: an RS256 JWT signed by that credential's key, naming its certificate by
//! `x5t`, with `aud` = Graph's application id ([`GRAPH_APP_ID`]), `iss` = the
//! application's **object** id (not its client id), and a lifetime (`exp` − `nbf`) of at
//! most ten minutes (learn.microsoft.com, graph/application-rollkey-prooftoken).
//!
//! This module owns what is Graph's: where Graph is for an authority host ([`graph_url`],
//! the public cloud, US Government and China), the proof ([`proof`], signed through any
//! [`Signer`] by the crate's one JWS encoder), the exact request bodies
//! ([`add_key_body`], [`remove_key_body`]), and Graph's error JSON
//! (`{"error":{"code","message","innerError"}}`) parsed into [`GraphError`], whose text is
//! escaped and bounded like any server text and never holds a token or a proof. The
//! requests go through the token flow's HTTP client ([`HttpClient::send_json`]: the same
//! URL policy, proxies, CA file, bounded answers and retries) as [`Graph`].

use crate::cert::Certificate;
use crate::encoding::b64;
use crate::entra::authority::{self, check_url, UrlRole};
use crate::entra::error::{server_text, MAX_DESCRIPTION_CHARS, MAX_FIELD_CHARS};
use crate::entra::{self, HttpClient};
use crate::rules::X5T;
use crate::secret::Secret;
use crate::signer::{Algorithm, Signer};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt;

/// Microsoft Graph's application id: the `aud` of every proof of possession.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Graph in the public cloud (the default).
pub const GRAPH_PUBLIC: &str = "https://graph.microsoft.com";
/// Graph for Azure US Government (authority `login.microsoftonline.us`).
pub const GRAPH_US_GOVERNMENT: &str = "https://graph.microsoft.us";
/// Graph for Azure operated by 21Vianet (authority `login.chinacloudapi.cn`).
pub const GRAPH_CHINA: &str = "https://microsoftgraph.chinacloudapi.cn";
/// The longest proof lifetime Graph accepts (`exp` − `nbf`), in seconds: ten minutes.
pub const MAX_PROOF_LIFETIME: i64 = 600;

/// Why a Graph request could not be made or was refused. Messages name no command-line
/// flag, and never hold a token or a proof.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Graph URL the policy refuses (plain http off loopback, not a URL, a query).
    #[error(transparent)]
    Url(#[from] authority::Error),
    /// The application object id is not a GUID.
    #[error("application object id \"{0}\" is not a GUID: give the app registration's Object ID (Overview page), not its client id or name")]
    ObjectId(String),
    /// A key id is not a GUID.
    #[error("key id \"{0}\" is not a GUID: give the keyId of the credential (as cert rotate prints it, or Graph lists it)")]
    KeyId(String),
    /// The key cannot sign RS256, which the proof must be.
    #[error("the proof of possession must be RS256, and this key offers {offered}")]
    NotRs256 {
        /// What the key offers, comma-separated.
        offered: String,
    },
    /// The proof could not be signed.
    #[error("signing the proof of possession failed: {0}")]
    Proof(#[source] crate::assertion::Error),
    /// The request could not be sent, or the answer read (network, TLS, proxy, size).
    #[error(transparent)]
    Http(#[from] entra::Error),
    /// Graph refused, with its error JSON.
    #[error("{0}")]
    Graph(Box<GraphError>),
    /// An answer that is neither what was asked for nor Graph's error JSON.
    #[error("{method} {url}: HTTP {status}, not the answer Graph gives ({detail}): {body}")]
    BadAnswer {
        /// `POST` or `GET`.
        method: &'static str,
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What is wrong with it.
        detail: &'static str,
        /// What may be shown of the body (tokens redacted, escaped, bounded).
        body: String,
    },
}

impl Error {
    /// Graph's refusal, if Graph answered with one.
    pub fn graph(&self) -> Option<&GraphError> {
        match self {
            Self::Graph(e) => Some(e),
            _ => None,
        }
    }
}

/// A refusal from Graph, as its error JSON says it. The fields hold the server's text as
/// sent; the message escapes and bounds each one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GraphError {
    /// HTTP status.
    pub status: u16,
    /// `error.code` (`Authentication_MissingOrMalformed`, `Authorization_RequestDenied`,
    /// `Request_ResourceNotFound`, `InvalidAuthenticationToken`, …).
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.innerError.request-id`, for support requests.
    pub request_id: Option<String>,
    /// `error.innerError.date`.
    pub date: Option<String>,
}

impl GraphError {
    /// Parse Graph's error body; `None` when it is not `{"error":{"code":…}}`.
    pub fn parse(status: u16, body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let error = v.get("error")?.as_object()?;
        let text = |o: &serde_json::Map<String, Value>, k: &str| {
            o.get(k).and_then(Value::as_str).map(str::to_string)
        };
        let inner = error
            .get("innerError")
            .or_else(|| error.get("innererror"))
            .and_then(Value::as_object);
        Some(Self {
            status,
            code: text(error, "code")?,
            message: text(error, "message").unwrap_or_default(),
            request_id: inner.and_then(|i| text(i, "request-id")),
            date: inner.and_then(|i| text(i, "date")),
        })
    }

    /// What to do about this refusal, by code (no command-line flag named).
    pub fn hint(&self) -> Option<&'static str> {
        Some(match (self.status, self.code.as_str()) {
            (_, "Authentication_MissingOrMalformed") => "Graph refused the proof of possession: it must be signed by a certificate registered on this app and still valid, name it by x5t, carry aud 00000003-0000-0000-c000-000000000000 and iss = the application's Object ID (not its client id), and live at most 10 minutes; check this machine's clock",
            (_, "InvalidAuthenticationToken") => "Graph refused the access token: get it for Graph's /.default scope from the same cloud (the authority host decides which Graph)",
            (_, "Authorization_RequestDenied") | (403, _) => "an application may add and remove only its own credentials: the object id must be the Object ID of the app the client id names",
            (_, "Request_ResourceNotFound") | (404, _) => "nothing in this tenant has this object id, or the app has no credential with this keyId: the object id is the app registration's Object ID (Overview page), not its client id",
            (_, "KeyCredentialNotFound") => "no credential with this keyId is registered on the app; cert rotate prints the keyId it adds",
            _ => return None,
        })
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = server_text(
            self.message.lines().next().unwrap_or_default(),
            MAX_DESCRIPTION_CHARS,
        );
        write!(
            f,
            "Microsoft Graph refused: {}",
            server_text(&self.code, MAX_FIELD_CHARS)
        )?;
        if !message.is_empty() {
            write!(f, ": {message}")?;
        }
        write!(f, " [HTTP {}", self.status)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request id {}", server_text(id, MAX_FIELD_CHARS))?;
        }
        write!(f, "]")?;
        if let Some(h) = self.hint() {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// Graph's base URL for an authority host: `login.microsoftonline.us` →
/// [`GRAPH_US_GOVERNMENT`], `login.chinacloudapi.cn` (or `login.partner.microsoftonline.cn`)
/// → [`GRAPH_CHINA`], a loopback host (the local emulator, which serves Graph's subset
/// itself) → that same host, anything else → [`GRAPH_PUBLIC`].
pub fn graph_url(authority_host: &str) -> String {
    let Ok(url) = url::Url::parse(authority_host.trim()) else {
        return GRAPH_PUBLIC.to_string();
    };
    match url.host() {
        Some(host) if authority::is_loopback(&host) => {
            let mut base = url.clone();
            base.set_path("");
            base.set_query(None);
            base.set_fragment(None);
            base.as_str().trim_end_matches('/').to_string()
        }
        Some(url::Host::Domain(d)) => match d.trim_end_matches('.') {
            "login.microsoftonline.us" | "login.usgovcloudapi.net" => GRAPH_US_GOVERNMENT,
            "login.chinacloudapi.cn" | "login.partner.microsoftonline.cn" => GRAPH_CHINA,
            _ => GRAPH_PUBLIC,
        }
        .to_string(),
        _ => GRAPH_PUBLIC.to_string(),
    }
}

/// The client-credentials scope of a Graph token: `{graph}/.default`.
pub fn scope(graph_url: &str) -> String {
    format!("{}/.default", graph_url.trim_end_matches('/'))
}

/// Whether `text` is a GUID (`8-4-4-4-12` hex digits, any case).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_object_id(object_id: &str) -> Result<(), Error> {
    if is_guid(object_id) {
        Ok(())
    } else {
        Err(Error::ObjectId(server_text(object_id, 80)))
    }
}

#[derive(Serialize)]
struct ProofHeader {
    alg: &'static str,
    typ: &'static str,
    x5t: String,
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    aud: &'static str,
    iss: &'a str,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// The proof of possession for `addKey`/`removeKey` on the application whose object id
/// is `object_id`, signed by `signer` (the key of `cert`, a certificate registered on the
/// app): header `{"alg":"RS256","typ":"JWT","x5t":…}`, claims `aud` = [`GRAPH_APP_ID`],
/// `iss` = `object_id`, `nbf` = `iat` = `now`, `exp` = `now` + [`MAX_PROOF_LIFETIME`].
/// The caller has checked that `cert` belongs to `signer`.
///
/// # Errors
/// An object id that is not a GUID ([`Error::ObjectId`]), a key that cannot sign RS256
/// ([`Error::NotRs256`]), a signing failure ([`Error::Proof`]).
pub fn proof(
    signer: &dyn Signer,
    cert: &Certificate,
    object_id: &str,
    now: i64,
) -> Result<String, Error> {
    check_object_id(object_id)?;
    if !signer.algorithms().contains(&Algorithm::Rs256) {
        let offered: Vec<&str> = signer.algorithms().iter().map(|a| a.as_str()).collect();
        return Err(Error::NotRs256 {
            offered: offered.join(", "),
        });
    }
    let header = ProofHeader {
        alg: "RS256",
        typ: "JWT",
        x5t: X5T.value(cert),
    };
    let claims = ProofClaims {
        aud: GRAPH_APP_ID,
        iss: object_id,
        nbf: now,
        iat: now,
        exp: now + MAX_PROOF_LIFETIME,
    };
    crate::assertion::sign_jwt(signer, Algorithm::Rs256, &header, &claims).map_err(Error::Proof)
}

/// The body of `addKey` for `cert`:
/// `{"keyCredential":{"type":"AsymmetricX509Cert","usage":"Verify","key":BASE64(DER)},
/// "passwordCredential":null,"proof":PROOF}`.
pub fn add_key_body(cert: &Certificate, proof: &str) -> Value {
    json!({
        "keyCredential": {
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": b64(cert.der()),
        },
        "passwordCredential": null,
        "proof": proof,
    })
}

/// The body of `removeKey`: `{"keyId":KEY_ID,"proof":PROOF}`.
pub fn remove_key_body(key_id: &str, proof: &str) -> Value {
    json!({ "keyId": key_id, "proof": proof })
}

/// A certificate credential as Graph describes it (the `keyCredential` resource).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyCredential {
    /// `keyId`: what `removeKey` takes.
    pub key_id: String,
    /// The certificate's SHA-1 thumbprint as the portal shows it (upper-case hex), from
    /// `customKeyIdentifier`, when Graph sends it.
    pub thumbprint: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `endDateTime`, as sent.
    pub end: Option<String>,
}

impl KeyCredential {
    fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let key_id = text("keyId").filter(|k| is_guid(k))?;
        let thumbprint = text("customKeyIdentifier").and_then(|c| {
            // Graph sends the thumbprint's bytes in base64; some tools wrote the hex text.
            crate::encoding::b64_decode(&c)
                .filter(|b| b.len() == 20)
                .map(|b| crate::encoding::hex(&b, true))
                .or_else(|| {
                    (c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
                        .then(|| c.to_ascii_uppercase())
                })
        });
        Some(Self {
            key_id,
            thumbprint,
            display_name: text("displayName"),
            end: text("endDateTime"),
        })
    }
}

/// Graph at one base URL, called with one access token.
pub struct Graph<'a> {
    http: &'a HttpClient,
    base: String,
    token: &'a Secret,
}

impl fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl<'a> Graph<'a> {
    /// Graph at `base_url` (`https://graph.microsoft.com`, or a loopback emulator), called
    /// through `http` with `token` (an access token for Graph).
    ///
    /// # Errors
    /// [`Error::Url`]: the URL policy refuses `base_url`, or it has a query or fragment.
    pub fn new(http: &'a HttpClient, base_url: &str, token: &'a Secret) -> Result<Self, Error> {
        let url = check_url(UrlRole::GraphUrl, base_url)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Url(authority::Error::Url {
                role: UrlRole::GraphUrl,
                url: base_url.to_string(),
                problem: authority::UrlProblem::QueryOrFragment,
            }));
        }
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            token,
        })
    }

    /// `{base}/v1.0/applications/{object_id}{tail}`.
    fn url(&self, object_id: &str, tail: &str) -> Result<String, Error> {
        check_object_id(object_id)?;
        Ok(format!("{}/v1.0/applications/{object_id}{tail}", self.base))
    }

    fn send(&self, url: &str, body: Option<Value>) -> Result<entra::Answer, Error> {
        Ok(self
            .http
            .send_json(UrlRole::GraphUrl, url, self.token.expose(), || {
                Ok(body.clone())
            })?)
    }

    /// What an error may never show: the access token, and the proof sent.
    fn secrets<'s>(&'s self, proof: &'s str) -> [&'s str; 2] {
        [self.token.expose(), proof]
    }

    /// `POST …/addKey` with [`add_key_body`]: register `cert` on the application. Returns
    /// the credential Graph made (its `keyId`).
    ///
    /// # Errors
    /// A bad object id, the request failed ([`Error::Http`]), Graph refused
    /// ([`Error::Graph`]: the proof, the token, the object), or a success answer without
    /// a `keyId` ([`Error::BadAnswer`]).
    pub fn add_key(
        &self,
        object_id: &str,
        cert: &Certificate,
        proof: &str,
    ) -> Result<KeyCredential, Error> {
        let url = self.url(object_id, "/addKey")?;
        let answer = self.send(&url, Some(add_key_body(cert, proof)))?;
        let secrets = self.secrets(proof);
        let json = refusal_or_json("POST", &url, &answer, &secrets)?;
        KeyCredential::from_json(&json)
            .ok_or_else(|| bad("POST", &url, &answer, "no keyId", &secrets))
    }

    /// `POST …/removeKey` with [`remove_key_body`]: remove the credential `key_id`.
    ///
    /// # Errors
    /// A bad object or key id, the request failed, or Graph refused.
    pub fn remove_key(&self, object_id: &str, key_id: &str, proof: &str) -> Result<(), Error> {
        if !is_guid(key_id) {
            return Err(Error::KeyId(server_text(key_id, 80)));
        }
        let url = self.url(object_id, "/removeKey")?;
        let answer = self.send(&url, Some(remove_key_body(key_id, proof)))?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        refusal_or_json("POST", &url, &answer, &self.secrets(proof)).map(|_| ())
    }

    /// `GET …?$select=keyCredentials`: the application's certificate credentials. An app
    /// may read its own object only with a Graph permission (Application.Read.All or
    /// more); without one Graph answers 403.
    ///
    /// # Errors
    /// A bad object id, the request failed, or Graph refused ([`Error::Graph`], 403
    /// without the permission).
    pub fn key_credentials(&self, object_id: &str) -> Result<Vec<KeyCredential>, Error> {
        let url = self.url(object_id, "?$select=keyCredentials")?;
        let answer = self.send(&url, None)?;
        let secrets = self.secrets("");
        let json = refusal_or_json("GET", &url, &answer, &secrets)?;
        let list = json
            .get("keyCredentials")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("GET", &url, &answer, "no keyCredentials array", &secrets))?;
        Ok(list.iter().filter_map(KeyCredential::from_json).collect())
    }
}

/// `text` with every non-empty secret of `secrets` replaced by `[redacted]`.
fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s, "[redacted]"))
}

fn bad(
    method: &'static str,
    url: &str,
    answer: &entra::Answer,
    detail: &'static str,
    secrets: &[&str],
) -> Error {
    // A proof echoed back under its own name is redacted as a token would be.
    let body = match serde_json::from_slice::<Value>(&answer.body) {
        Ok(mut v) => {
            redact_proof(&mut v);
            entra::error::shown_body(v.to_string().as_bytes(), answer.content_type.as_deref())
        }
        Err(_) => entra::error::shown_body(&answer.body, answer.content_type.as_deref()),
    };
    Error::BadAnswer {
        method,
        url: url.to_string(),
        status: answer.status,
        detail,
        body: scrub(&body, secrets),
    }
}

fn redact_proof(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "proof" {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_proof(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_proof),
        _ => {}
    }
}

/// A 2xx answer's JSON, or Graph's refusal; never a token or the proof: each of
/// `secrets` that Graph echoes is redacted.
fn refusal_or_json(
    method: &'static str,
    url: &str,
    answer: &entra::Answer,
    secrets: &[&str],
) -> Result<Value, Error> {
    if !(200..300).contains(&answer.status) {
        return Err(match GraphError::parse(answer.status, &answer.body) {
            Some(mut e) => {
                e.code = scrub(&e.code, secrets);
                e.message = scrub(&e.message, secrets);
                Error::Graph(Box::new(e))
            }
            None => bad(method, url, answer, "no Graph error JSON", secrets),
        });
    }
    serde_json::from_slice(&answer.body).map_err(|_| bad(method, url, answer, "not JSON", secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_follows_the_cloud_of_the_authority_host() {
        for (authority, graph) in [
            ("https://login.microsoftonline.com", GRAPH_PUBLIC),
            ("https://login.microsoftonline.us", GRAPH_US_GOVERNMENT),
            ("https://login.microsoftonline.us/", GRAPH_US_GOVERNMENT),
            ("https://LOGIN.CHINACLOUDAPI.CN", GRAPH_CHINA),
            ("https://login.partner.microsoftonline.cn", GRAPH_CHINA),
            ("https://login.example.com", GRAPH_PUBLIC),
            ("http://127.0.0.1:8400", "http://127.0.0.1:8400"),
            ("http://localhost:8400/", "http://localhost:8400"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("not a url", GRAPH_PUBLIC),
        ] {
            assert_eq!(graph_url(authority), graph, "{authority}");
        }
        assert_eq!(
            scope("https://graph.microsoft.us/"),
            "https://graph.microsoft.us/.default"
        );
    }

    #[test]
    fn guids() {
        assert!(is_guid("2f877daa-b6f5-42a3-8430-acf238b234e1"));
        assert!(is_guid("2F877DAA-B6F5-42A3-8430-ACF238B234E1"));
        for bad in [
            "",
            "2f877daa-b6f5-42a3-8430-acf238b234e",
            "2f877daa-b6f5-42a3-8430-acf238b234e1/addKey",
            "2f877daab6f542a38430acf238b234e1",
            "2f877daa-b6f5-42a3-8430-acf238b234eg",
            "../2f877daa-b6f5-42a3-8430-acf238b234",
        ] {
            assert!(!is_guid(bad), "{bad}");
        }
    }

    #[test]
    fn graph_errors_are_parsed_escaped_and_hinted() {
        let body = br#"{"error":{"code":"Authentication_MissingOrMalformed","message":"Access Token missing or malformed.\u001b[2J\nsecond line","innerError":{"date":"2026-01-01T00:00:00","request-id":"r-1","client-request-id":"c-1"}}}"#;
        let e = GraphError::parse(401, body).unwrap();
        assert_eq!(e.code, "Authentication_MissingOrMalformed");
        assert_eq!(e.request_id.as_deref(), Some("r-1"));
        let text = e.to_string();
        assert!(
            text.starts_with("Microsoft Graph refused: Authentication_MissingOrMalformed: Access Token missing or malformed.\\u{1b}[2J [HTTP 401, request id r-1]\nhint: Graph refused the proof"),
            "{text}"
        );
        assert!(!text.contains("second line"), "{text}");
        assert!(GraphError::parse(400, br#"{"error":"invalid_client"}"#).is_none());
        assert!(GraphError::parse(500, b"<html>").is_none());
        let long = format!(
            r#"{{"error":{{"code":"X","message":"{}"}}}}"#,
            "A".repeat(100_000)
        );
        assert!(
            GraphError::parse(400, long.as_bytes())
                .unwrap()
                .to_string()
                .len()
                < 2000
        );
    }

    #[test]
    fn a_bad_answer_never_echoes_a_token() {
        let answer = entra::Answer {
            status: 200,
            body: br#"{"access_token":"SECRET.at","proof":"x"}"#.to_vec(),
            content_type: None,
            attempts: 1,
        };
        let e = bad(
            "POST",
            "http://127.0.0.1:1/v1.0/applications/x/addKey",
            &answer,
            "no keyId",
            &[],
        );
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let proof = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.PROOFSIG";
        let token = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ4In0.TOKENSIG";
        for body in [
            format!(r#"{{"error":{{"code":"X","message":"bad proof {proof} with {token}"}}}}"#),
            format!(r#"{{"echo":{{"proof":"{proof}"}}}}"#),
            format!(r#"{{"note":"sent {proof}"}}"#),
            format!("plain {proof}"),
        ] {
            let answer = entra::Answer {
                status: 400,
                body: body.into_bytes(),
                content_type: Some("application/json".into()),
                attempts: 1,
            };
            let e = refusal_or_json("POST", "http://127.0.0.1:1/x", &answer, &[token, proof])
                .unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(
                !text.contains("PROOFSIG") && !text.contains("TOKENSIG"),
                "{text}"
            );
        }
    }

    #[test]
    fn key_credentials_read_the_thumbprint_in_base64_or_hex() {
        let k = KeyCredential::from_json(&json!({
            "keyId": "2f877daa-b6f5-42a3-8430-acf238b234e1",
            "customKeyIdentifier": b64(&[0xab; 20]),
        }))
        .unwrap();
        assert_eq!(k.thumbprint.as_deref(), Some(&*"AB".repeat(20)));
        let k = KeyCredential::from_json(&json!({
            "keyId": "2f877daa-b6f5-42a3-8430-acf238b234e1",
            "customKeyIdentifier": "ab".repeat(20),
        }))
        .unwrap();
        assert_eq!(k.thumbprint.as_deref(), Some(&*"AB".repeat(20)));
        assert!(KeyCredential::from_json(&json!({"keyId": "nope"})).is_none());
    }

    #[test]
    fn messages_name_no_cli_flag() {
        for e in [
            Error::ObjectId("x".into()),
            Error::KeyId("x".into()),
            Error::NotRs256 {
                offered: "PS256".into(),
            },
        ] {
            assert!(!e.to_string().contains("--"), "{e}");
        }
        for code in [
            "Authentication_MissingOrMalformed",
            "InvalidAuthenticationToken",
            "Authorization_RequestDenied",
            "Request_ResourceNotFound",
            "KeyCredentialNotFound",
        ] {
            let e = GraphError {
                status: 400,
                code: code.into(),
                ..GraphError::default()
            };
            let hint = e.hint().unwrap();
            assert!(!hint.contains("--"), "{hint}");
        }
    }
}
