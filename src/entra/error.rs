//! Why a token request failed, and what to do about it. Entra's error JSON (`error`,
//! `error_description` starting `AADSTS…:`, `error_codes`, `correlation_id`, `trace_id`)
//! is kept whole in [`EntraError`], whose message adds a one-line hint for the codes
//! people meet with certificate credentials. A non-JSON answer keeps its status, length
//! and content type.
//!
//! Server text is hostile until shown otherwise: every piece of it that reaches a message
//! goes through [`server_text`] (control characters escaped, bounded), and a body shown
//! in an error goes through [`shown_body`] (tokens and assertions redacted).

use serde_json::Value;
use std::fmt;

/// The most characters of one server-sent field a message shows (an `error_description`
/// gets [`MAX_DESCRIPTION_CHARS`]).
pub const MAX_FIELD_CHARS: usize = 200;

/// The most characters of an `error_description` a message shows.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// JSON members whose values are never shown: tokens, and an assertion echoed back.
pub const REDACTED_FIELDS: [&str; 5] = [
    "access_token",
    "refresh_token",
    "id_token",
    "client_assertion",
    "assertion",
];

/// Server-sent `text` made safe to print: control characters (C0 including ESC, CR and
/// LF, DEL, C1) and bidirectional overrides escaped visibly as `\u{1b}`, and at most
/// `max_chars` characters kept, with a note of the full length when cut.
pub fn server_text(text: &str, max_chars: usize) -> String {
    ServerText(text, max_chars).to_string()
}

/// [`server_text`] as a `Display`, which writes the safe form of the text straight into
/// the formatter (no string of its own: a log line per request formats several).
#[derive(Debug, Clone, Copy)]
pub struct ServerText<'a>(pub &'a str, pub usize);

impl fmt::Display for ServerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        let Self(text, max_chars) = *self;
        // The common case: short printable ASCII, shown as it is.
        if text.len() <= max_chars && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return f.write_str(text);
        }
        for (count, c) in text.chars().enumerate() {
            if count == max_chars {
                return write!(f, "… (cut; {} characters in all)", text.chars().count());
            }
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                for e in c.escape_unicode() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// What an error may show of a server's `body`: JSON with the values of
/// [`REDACTED_FIELDS`] (at any depth) replaced by `[redacted]`, then passed through
/// [`server_text`]; anything else — which could be a token in another encoding — only as
/// its length and content type.
pub fn shown_body(body: &[u8], content_type: Option<&str>) -> String {
    fn redact(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if REDACTED_FIELDS.contains(&k.as_str()) {
                        *v = Value::String("[redacted]".into());
                    } else {
                        redact(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redact(&mut v);
            server_text(&v.to_string(), MAX_FIELD_CHARS)
        }
        Err(_) => format!(
            "{} bytes of {}, not shown",
            body.len(),
            content_type.map_or_else(|| "unstated content type".into(), |t| server_text(t, 100))
        ),
    }
}

/// A refusal from the token endpoint, as Entra's JSON describes it. The fields hold the
/// server's text as sent; the message ([`Display`](fmt::Display)) escapes and bounds
/// each with [`server_text`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntraError {
    /// HTTP status.
    pub status: u16,
    /// OAuth `error` (`invalid_client`, `invalid_request`, …).
    pub error: String,
    /// `error_description` (first line only is shown).
    pub description: String,
    /// `error_codes` (the AADSTS numbers).
    pub codes: Vec<u32>,
    /// `correlation_id`, for support requests.
    pub correlation_id: Option<String>,
    /// `trace_id`.
    pub trace_id: Option<String>,
    /// `timestamp`.
    pub timestamp: Option<String>,
}

impl EntraError {
    /// Parse an error body; `None` when it is not an OAuth error JSON object.
    pub fn parse(status: u16, body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let error = text("error")?;
        let description = text("error_description").unwrap_or_default();
        let mut codes: Vec<u32> = v
            .get("error_codes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_u64())
                    .filter_map(|c| u32::try_from(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        if codes.is_empty() {
            codes.extend(aadsts_in(&description));
        }
        Some(Self {
            status,
            error,
            description,
            codes,
            correlation_id: text("correlation_id"),
            trace_id: text("trace_id"),
            timestamp: text("timestamp"),
        })
    }

    /// The first AADSTS code.
    pub fn code(&self) -> Option<u32> {
        self.codes.first().copied()
    }

    /// The AADSTS code whose [`hint`] the message shows, if any.
    pub fn hint_code(&self) -> Option<u32> {
        self.codes.iter().copied().find(|c| hint(*c).is_some())
    }
}

fn aadsts_in(description: &str) -> Option<u32> {
    let rest = &description[description.find("AADSTS")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl fmt::Display for EntraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first_line = server_text(
            self.description.lines().next().unwrap_or_default(),
            MAX_DESCRIPTION_CHARS,
        );
        let error = server_text(&self.error, MAX_FIELD_CHARS);
        let code = self.code();
        match code {
            Some(c) if !first_line.starts_with(&format!("AADSTS{c}")) => {
                write!(f, "AADSTS{c}: {first_line}")?
            }
            _ if first_line.is_empty() => write!(f, "{error}")?,
            _ => write!(f, "{first_line}")?,
        }
        write!(f, " [{} {error}", self.status)?;
        if let Some(c) = &self.correlation_id {
            write!(f, ", correlation id {}", server_text(c, MAX_FIELD_CHARS))?;
        }
        if let Some(t) = &self.trace_id {
            write!(f, ", trace id {}", server_text(t, MAX_FIELD_CHARS))?;
        }
        write!(f, "]")?;
        if let Some(h) = self.hint_code().and_then(hint) {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// A one-line hint for an AADSTS code certificate-credential users meet. Hints name
/// what to check ("the tenant", "the client id"), never a CLI flag: a front end adds its
/// own spelling of those.
pub fn hint(code: u32) -> Option<&'static str> {
    Some(match code {
        700027 => "the certificate that signed the assertion is not registered on the app, or x5t/x5t#S256 does not name it: upload this certificate (certassert cert show prints the portal's thumbprint) or use the key whose certificate is registered; x5t is base64url of the SHA-1, not the hex thumbprint",
        700024 => "the assertion is outside its validity window: check this machine's clock (nbf/exp are seconds since 1970; Entra allows 5 minutes of skew) and sign a fresh assertion per request",
        5002723 => "the assertion header names no certificate: it needs x5t (RS256) or x5t#S256 (PS256); certassert sets them — lint a hand-made assertion with: certassert inspect",
        5002738 => "the assertion's signature algorithm is not accepted: sign with RS256 or PS256 and an RSA key",
        700021 => "iss and sub of the assertion must both equal the client_id sent: the Application (client) ID",
        700023 => "aud of the assertion must be exactly the token endpoint posted to, for one tenant (not common/organizations): name the tenant by its ID, or give the token URL",
        50012 => "the assertion failed validation: run certassert inspect on it, and certassert doctor for the key/certificate pairing",
        50027 => "the assertion is not an acceptable JWT (format, a replayed jti, a crit header): certassert inspect shows what is wrong",
        700016 => "no application with this client id in this tenant: check the client id (Application (client) ID) and the tenant, and that the app exists (or is consented) there",
        90002 => "the tenant was not found: check the tenant (Directory (tenant) ID or a verified domain) and the authority host (US Government: https://login.microsoftonline.us, China: https://login.chinacloudapi.cn)",
        7000215 => "a client secret was sent: certificate credentials send client_assertion, never client_secret",
        1002012 | 70011 => "the client credentials grant takes one scope, RESOURCE/.default (e.g. https://graph.microsoft.com/.default); permissions come from the app's granted roles",
        901002 => "the v2 endpoint does not take resource: ask for the scope RESOURCE/.default, or for the resource alone (on the v1 endpoint)",
        54005 => "this authorization code was already redeemed: codes are single use; get a new one, or use the refresh token",
        70000 | 70008 | 9002313 => "the code, refresh token or user assertion is invalid or expired: get a new one",
        50013 | 500133 => "the on-behalf-of user assertion is invalid or expired: pass the access token the caller sent to this API (its aud must be this app)",
        7000218 => "the request carries no client_assertion: certificate credentials send client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer and client_assertion",
        _ => return None,
    })
}

/// Why no token was obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The assertion could not be formed (lifetime, client id) or signed.
    #[error(transparent)]
    Assertion(#[from] crate::assertion::Error),
    /// No token endpoint could be formed (a URL the policy refuses, the tenant).
    #[error(transparent)]
    Endpoint(#[from] super::authority::Error),
    /// A claims challenge that is neither JSON nor base64 of JSON.
    #[error("the claims challenge is neither JSON nor base64 of JSON")]
    ClaimsEncoding,
    /// A claims challenge that is not a JSON object.
    #[error("the claims challenge must be a JSON object such as {{\"access_token\":{{\"nbf\":{{\"essential\":true,\"value\":\"1700000000\"}}}}}}")]
    ClaimsNotObject,
    /// The extra CA file could not be used.
    #[error("CA file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// HTTPS cannot be set up: there is no trusted root certificate at all.
    #[error("cannot set up HTTPS: {0}")]
    Setup(String),
    /// No answer (connection refused, TLS failure, timeout), after the retries.
    #[error("POST {url} failed after {attempts} attempt(s): {detail}")]
    Network {
        /// The endpoint.
        url: String,
        /// Requests sent.
        attempts: u32,
        /// The cause chain.
        detail: String,
    },
    /// A proxy setting of the environment that cannot be used (its value is not shown:
    /// it may hold a password).
    #[error("the proxy in {variable} cannot be used: {detail}")]
    Proxy {
        /// The environment variable (`HTTPS_PROXY`, `ALL_PROXY`, …).
        variable: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An answer longer than certassert reads ([`MAX_ANSWER_BYTES`](super::http::MAX_ANSWER_BYTES));
    /// a token answer is a few kilobytes.
    #[error("POST {url}: HTTP {status} with an answer longer than {limit} bytes, the most certassert reads; not a token answer")]
    AnswerTooLong {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Entra (or the server) refused, with an OAuth error body.
    #[error("{0}")]
    Entra(Box<EntraError>),
    /// An answer that is not OAuth JSON (a proxy's HTML page, a truncated body).
    #[error(
        "POST {url}: HTTP {status} with a body that is not an OAuth answer ({detail}): {body}"
    )]
    NotOAuth {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// Why it is not an answer.
        detail: String,
        /// What may be shown of the body ([`shown_body`]: tokens redacted, escaped,
        /// bounded; not JSON: its length and content type only).
        body: String,
    },
    /// A success answer without a usable token (a malformed or missing field).
    #[error("POST {url}: HTTP {status}, but the answer holds no usable token: {source}")]
    BadToken {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// Which field is wrong.
        source: super::token::Error,
    },
    /// Throttled for longer than we are willing to wait.
    #[error("POST {url}: HTTP {status}; the server asks to retry after {seconds} s, longer than the {max} s certassert waits; try again later")]
    RetryAfterTooLong {
        /// The endpoint.
        url: String,
        /// 429 or 503.
        status: u16,
        /// Retry-After.
        seconds: u64,
        /// Our limit.
        max: u64,
    },
}

impl Error {
    /// The Entra error, if the server answered with one.
    pub fn entra(&self) -> Option<&EntraError> {
        match self {
            Self::Entra(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entra_json_and_adds_the_hint() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS700027: Client assertion contains an invalid signature.\r\nTrace ID: t\r\nCorrelation ID: c","error_codes":[700027],"timestamp":"2024-01-01 00:00:00Z","trace_id":"t","correlation_id":"c","error_uri":"https://login.microsoftonline.com/error?code=700027"}"#;
        let e = EntraError::parse(401, body).unwrap();
        assert_eq!(e.codes, vec![700027]);
        let text = e.to_string();
        assert!(text.starts_with("AADSTS700027: Client assertion contains an invalid signature. [401 invalid_client, correlation id c, trace id t]\nhint: the certificate"), "{text}");
        assert!(EntraError::parse(500, b"<html>").is_none());
        let e = EntraError::parse(
            400,
            br#"{"error":"invalid_scope","error_description":"AADSTS70011: bad"}"#,
        )
        .unwrap();
        assert_eq!(e.code(), Some(70011));
        assert_eq!(e.hint_code(), Some(70011));
    }

    #[test]
    fn server_text_escapes_and_cuts() {
        assert_eq!(
            server_text("a\u{1b}[2Jb\r\n\u{7f}\u{9b}", 50),
            "a\\u{1b}[2Jb\\u{d}\\u{a}\\u{7f}\\u{9b}"
        );
        assert_eq!(server_text("x\u{202e}y", 50), "x\\u{202e}y");
        assert_eq!(server_text("abcdef", 3), "abc… (cut; 6 characters in all)");
        assert_eq!(server_text("abc", 3), "abc");
        let shown = shown_body(
            br#"{"access_token":"SECRET","nested":[{"id_token":"SECRET"}],"error":"e"}"#,
            None,
        );
        assert!(
            !shown.contains("SECRET")
                && shown.contains("[redacted]")
                && shown.contains("\"error\":\"e\""),
            "{shown}"
        );
        assert_eq!(
            shown_body(b"SECRET.token", Some("text/plain")),
            "12 bytes of text/plain, not shown"
        );
    }

    #[test]
    fn hints_name_no_cli_flag() {
        for code in [
            700027, 700024, 5002723, 5002738, 700021, 700023, 50012, 50027, 700016, 90002, 7000215,
            1002012, 70011, 901002, 54005, 70000, 70008, 9002313, 50013, 500133, 7000218,
        ] {
            let h = hint(code).unwrap_or_else(|| panic!("AADSTS{code} has a hint"));
            assert!(!h.contains("--"), "AADSTS{code}: {h}");
        }
    }
}
