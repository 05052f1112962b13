//! The two managed-identity protocols as the Azure SDKs speak them, with no I/O: which
//! endpoint a request is for, whether it may have a token at all (the identity header,
//! `Metadata: true`, no proxy headers, a loopback `Host`), what it asks for (`resource`
//! with or without `/.default`, `client_id`), and the JSON each protocol answers with
//! (numbers as strings). Every refusal is a [`Refusal`]: a status and an OAuth-style
//! `{error, error_description}` body that never holds a token or the secret.

use crate::secret::Secret;
use std::net::IpAddr;

/// The App Service protocol's path (`IDENTITY_ENDPOINT`).
pub const APP_SERVICE_PATH: &str = "/msi/token";
/// The IMDS protocol's path (under `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The App Service `api-version` served.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// The IMDS `api-version`s served.
pub const IMDS_API_VERSIONS: [&str; 2] = ["2018-02-01", "2019-08-01"];
/// The longest `resource` or `client_id` taken.
const MAX_PARAM_CHARS: usize = 512;

/// Which protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// App Service / Azure Functions: `GET /msi/token` with `X-IDENTITY-HEADER`.
    AppService,
    /// The Azure Instance Metadata Service: `GET /metadata/identity/oauth2/token` with
    /// `Metadata: true`.
    Imds,
}

impl Protocol {
    /// The path this protocol is served at.
    pub fn path(self) -> &'static str {
        match self {
            Self::AppService => APP_SERVICE_PATH,
            Self::Imds => IMDS_PATH,
        }
    }
}

/// A request that may have a token: what for, and for which identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The protocol it spoke (decides the answer's shape).
    pub protocol: Protocol,
    /// The resource, without a trailing `/.default` (the v2 scope is `{resource}/.default`).
    pub resource: String,
    /// The identity asked for, if the request names one.
    pub client_id: Option<String>,
}

/// Why a request gets no token: the HTTP status and the `{error, error_description}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// OAuth-style `error`.
    pub error: &'static str,
    /// What was wrong and what to do.
    pub description: String,
}

impl Refusal {
    /// A refusal with `status`, `error` and `description`.
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    /// The JSON body: OAuth's `{error, error_description}` (what IMDS answers) and App
    /// Service's `{statusCode, message}` with the same text, which MSAL shows for an App
    /// Service endpoint (it reads nothing else of a refusal there).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.error,
            "error_description": self.description,
            "statusCode": self.status,
            "message": self.description,
        })
    }
}

/// What [`check`] needs of a request's head.
pub trait Head {
    /// The value of header `name` (lowercase), if present and text; a header present
    /// but not text is `Some("")`.
    fn header(&self, name: &str) -> Option<&str>;
}

/// Check a request head and read what it asks for: `method`, `path`, the raw `query`,
/// and its headers; `secret` is the identity header's value, as a digest.
///
/// Checked in this order: proxy headers (`X-Forwarded-For`, `Forwarded`: 400), a
/// non-loopback or missing `Host` (400), the path (404), the method (405), the
/// protocol's own header (App Service: `X-IDENTITY-HEADER`, 401 when missing or wrong;
/// IMDS: `Metadata: true`, 400, and a wrong `X-IDENTITY-HEADER` if one is sent: 401),
/// then the query (`api-version`, `resource`, `client_id`; 400).
///
/// # Errors
/// The [`Refusal`] to answer with.
pub fn check(
    method: &str,
    path: &str,
    query: Option<&str>,
    head: &dyn Head,
    secret: &SecretDigest,
) -> Result<Ask, Refusal> {
    for proxy in ["x-forwarded-for", "forwarded"] {
        if head.header(proxy).is_some() {
            return Err(Refusal::new(
                400,
                "invalid_request",
                format!("the request came through a proxy ({proxy} header): tokens are handed out to local clients only, never through a proxy"),
            ));
        }
    }
    match head.header("host") {
        Some(host) if is_loopback_host(host) => {}
        Some(_) => {
            return Err(Refusal::new(
                400,
                "invalid_request",
                "the Host header is not a loopback address (127.0.0.1, [::1] or localhost): tokens are handed out to local clients only",
            ))
        }
        None => {
            return Err(Refusal::new(
                400,
                "invalid_request",
                "the request has no Host header",
            ))
        }
    }
    let protocol = match path {
        APP_SERVICE_PATH => Protocol::AppService,
        IMDS_PATH => Protocol::Imds,
        _ => {
            return Err(Refusal::new(
                404,
                "not_found",
                format!("no such endpoint; tokens are at {APP_SERVICE_PATH} (App Service: IDENTITY_ENDPOINT) and {IMDS_PATH} (IMDS)"),
            ))
        }
    };
    if method != "GET" {
        return Err(Refusal::new(
            405,
            "invalid_request",
            "use GET for a managed-identity token",
        ));
    }
    let given = head.header("x-identity-header");
    match (protocol, given) {
        (Protocol::AppService, None) => {
            return Err(Refusal::new(
                401,
                "unauthorized",
                "the X-IDENTITY-HEADER header is missing: send the IDENTITY_HEADER value",
            ))
        }
        (_, Some(value)) if !same_secret(value, secret) => {
            return Err(Refusal::new(
                401,
                "unauthorized",
                "the X-IDENTITY-HEADER header does not match this agent's IDENTITY_HEADER",
            ))
        }
        _ => {}
    }
    if protocol == Protocol::Imds
        && !head
            .header("metadata")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Err(Refusal::new(
            400,
            "invalid_request",
            "Required metadata header not specified: send Metadata: true",
        ));
    }
    let query = parse_query(query.unwrap_or(""))?;
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match (protocol, get("api-version")) {
        (_, None) => {
            return Err(Refusal::new(
                400,
                "invalid_request",
                "api-version is missing from the query",
            ))
        }
        (Protocol::AppService, Some(APP_SERVICE_API_VERSION)) => {}
        (Protocol::Imds, Some(v)) if IMDS_API_VERSIONS.contains(&v) => {}
        (Protocol::AppService, Some(_)) => {
            return Err(Refusal::new(
                400,
                "invalid_request",
                format!("api-version is not supported here: use {APP_SERVICE_API_VERSION}"),
            ))
        }
        (Protocol::Imds, Some(_)) => {
            return Err(Refusal::new(
                400,
                "invalid_request",
                format!(
                    "api-version is not supported here: use {}",
                    IMDS_API_VERSIONS.join(" or ")
                ),
            ))
        }
    }
    for other in [
        "object_id",
        "principal_id",
        "mi_res_id",
        "msi_res_id",
        "msi_resid",
    ] {
        if get(other).is_some() {
            return Err(Refusal::new(
                400,
                "invalid_request",
                format!("{other} is not supported: name the identity by client_id (the app registration's Application (client) ID)"),
            ));
        }
    }
    let resource = get("resource").unwrap_or("");
    let resource = resource.strip_suffix("/.default").unwrap_or(resource);
    if resource.is_empty() {
        return Err(Refusal::new(
            400,
            "invalid_request",
            "resource is missing from the query (e.g. resource=https://vault.azure.net)",
        ));
    }
    if !plain_text(resource) {
        return Err(Refusal::new(
            400,
            "invalid_request",
            format!("resource is not a plain URI or ID (no spaces or control characters, at most {MAX_PARAM_CHARS} characters)"),
        ));
    }
    let client_id = match get("client_id") {
        None | Some("") => None,
        Some(c) if plain_text(c) => Some(c.to_string()),
        Some(_) => {
            return Err(Refusal::new(
                400,
                "invalid_request",
                format!("client_id is not a plain ID (at most {MAX_PARAM_CHARS} characters)"),
            ))
        }
    };
    Ok(Ask {
        protocol,
        resource: resource.to_string(),
        client_id,
    })
}

fn plain_text(text: &str) -> bool {
    text.chars().count() <= MAX_PARAM_CHARS
        && text.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

/// The query's parameters, percent-decoded; a parameter given twice is refused (which
/// of the two would be meant is not for the agent to guess).
fn parse_query(query: &str) -> Result<Vec<(String, String)>, Refusal> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Refusal::new(
                400,
                "invalid_request",
                format!(
                    "{} is given twice in the query",
                    crate::entra::error::server_text(&k, 40)
                ),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The identity secret as [`check`] compares it: its SHA-256, computed once.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn new(secret: &Secret) -> Self {
        Self(sha256(secret.expose()))
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest([redacted])")
    }
}

fn sha256(text: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `given` is the identity secret, compared in constant time: `given` is hashed
/// with SHA-256 and compared with the secret's digest, so neither the content nor the
/// length of the secret leaks through timing.
pub fn same_secret(given: &str, secret: &SecretDigest) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(given), &secret.0).is_ok()
}

/// Whether a `Host` header names a loopback address: `localhost`, `127.0.0.0/8` or
/// `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() && (ip.is_ipv4() || host.starts_with('[')))
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .unwrap_or(text)
        .parse::<u16>()
        .is_ok()
}

/// What the answer says about a token.
#[derive(Debug, Clone, Copy)]
pub struct Issued<'a> {
    /// The access token.
    pub access_token: &'a str,
    /// Expiry, seconds since 1970.
    pub expires_on: i64,
    /// When the agent obtained it, seconds since 1970.
    pub obtained_at: i64,
    /// The resource as asked (without `/.default`).
    pub resource: &'a str,
    /// The identity's client id.
    pub client_id: &'a str,
}

/// The success answer's JSON, in the field order the services send.
#[derive(serde::Serialize)]
struct Answer<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ext_expires_in: Option<String>,
    expires_on: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<String>,
    resource: &'a str,
    token_type: &'static str,
    client_id: &'a str,
}

/// The success answer (JSON) for `protocol` at `now`: App Service `{access_token,
/// expires_on, resource, token_type, client_id}`, IMDS adds `expires_in`,
/// `ext_expires_in` and `not_before`; every number is a string, as both services send
/// them.
pub fn answer(protocol: Protocol, issued: &Issued<'_>, now: i64) -> Vec<u8> {
    let imds = protocol == Protocol::Imds;
    let expires_in = issued.expires_on.saturating_sub(now).max(0).to_string();
    let answer = Answer {
        access_token: issued.access_token,
        expires_in: imds.then(|| expires_in.clone()),
        ext_expires_in: imds.then_some(expires_in),
        expires_on: issued.expires_on.to_string(),
        not_before: imds.then(|| issued.obtained_at.to_string()),
        resource: issued.resource,
        token_type: "Bearer",
        client_id: issued.client_id,
    };
    // Serializing strings into a Vec cannot fail.
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct H(HashMap<&'static str, &'static str>);
    impl Head for H {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.get(name).copied()
        }
    }

    fn head(pairs: &[(&'static str, &'static str)]) -> H {
        H(pairs.iter().copied().collect())
    }

    fn secret() -> SecretDigest {
        SecretDigest::new(&Secret::new("s3cret-s3cret-s3cret".into()))
    }

    #[test]
    fn app_service_asks_and_refusals() {
        let ok = head(&[
            ("host", "127.0.0.1:5000"),
            ("x-identity-header", "s3cret-s3cret-s3cret"),
        ]);
        let q = Some(
            "api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net%2F.default&client_id=c1",
        );
        let ask = check("GET", APP_SERVICE_PATH, q, &ok, &secret()).unwrap();
        assert_eq!(ask.resource, "https://vault.azure.net");
        assert_eq!(ask.client_id.as_deref(), Some("c1"));
        assert_eq!(ask.protocol, Protocol::AppService);
        let status = |m: &str, p: &str, q: &str, h: &H| {
            check(m, p, Some(q), h, &secret()).unwrap_err().status
        };
        let q = "api-version=2019-08-01&resource=r";
        assert_eq!(status("GET", "/other", q, &ok), 404);
        assert_eq!(status("POST", APP_SERVICE_PATH, q, &ok), 405);
        let missing = head(&[("host", "localhost")]);
        assert_eq!(status("GET", APP_SERVICE_PATH, q, &missing), 401);
        let wrong = head(&[("host", "localhost"), ("x-identity-header", "s3cret")]);
        assert_eq!(status("GET", APP_SERVICE_PATH, q, &wrong), 401);
        let forwarded = head(&[
            ("host", "127.0.0.1"),
            ("x-identity-header", "s3cret-s3cret-s3cret"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        assert_eq!(status("GET", APP_SERVICE_PATH, q, &forwarded), 400);
        let remote = head(&[
            ("host", "example.com"),
            ("x-identity-header", "s3cret-s3cret-s3cret"),
        ]);
        assert_eq!(status("GET", APP_SERVICE_PATH, q, &remote), 400);
        for q in [
            "resource=r",
            "api-version=2017-09-01&resource=r",
            "api-version=2019-08-01",
            "api-version=2019-08-01&resource=/.default",
            "api-version=2019-08-01&resource=r&resource=s",
            "api-version=2019-08-01&resource=a%20b",
            "api-version=2019-08-01&resource=r&mi_res_id=x",
        ] {
            assert_eq!(status("GET", APP_SERVICE_PATH, q, &ok), 400, "{q}");
        }
    }

    #[test]
    fn imds_needs_metadata_true_and_takes_no_wrong_secret() {
        let q = Some("api-version=2018-02-01&resource=https://management.azure.com/");
        let ok = head(&[("host", "[::1]:80"), ("metadata", "true")]);
        let ask = check("GET", IMDS_PATH, q, &ok, &secret()).unwrap();
        assert_eq!(ask.resource, "https://management.azure.com/");
        assert_eq!(ask.protocol, Protocol::Imds);
        let no_metadata = head(&[("host", "127.0.0.1")]);
        assert_eq!(
            check("GET", IMDS_PATH, q, &no_metadata, &secret())
                .unwrap_err()
                .status,
            400
        );
        let wrong = head(&[
            ("host", "127.0.0.1"),
            ("metadata", "true"),
            ("x-identity-header", "no"),
        ]);
        assert_eq!(
            check("GET", IMDS_PATH, q, &wrong, &secret())
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn loopback_hosts() {
        for yes in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "localhost",
            "LOCALHOST:99",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "",
            "example.com",
            "10.0.0.1:80",
            "::1",
            "127.0.0.1.nip.io",
            "localhost.evil",
            "[::2]:80",
            "127.0.0.1:x",
            "[::1]x",
            "169.254.169.254",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn answers_carry_numbers_as_strings() {
        let issued = Issued {
            access_token: "t",
            expires_on: 5000,
            obtained_at: 1000,
            resource: "r",
            client_id: "c",
        };
        let json =
            |p| serde_json::from_slice::<serde_json::Value>(&answer(p, &issued, 2000)).unwrap();
        let a = json(Protocol::AppService);
        assert_eq!(a["expires_on"], "5000");
        assert!(a.get("expires_in").is_none());
        let i = json(Protocol::Imds);
        assert_eq!(i["expires_in"], "3000");
        assert_eq!(i["not_before"], "1000");
        assert_eq!(i["token_type"], "Bearer");
    }

    #[test]
    fn refusals_speak_oauth_and_app_service() {
        let body = Refusal::new(400, "invalid_request", "why").body();
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["error_description"], "why");
        assert_eq!(body["statusCode"], 400);
        assert_eq!(body["message"], "why");
    }

    #[test]
    fn secrets_compare_whole() {
        let s = secret();
        assert!(same_secret("s3cret-s3cret-s3cret", &s));
        assert!(!same_secret("s3cret-s3cret-s3cre", &s));
        assert!(!same_secret("", &s));
    }
}
