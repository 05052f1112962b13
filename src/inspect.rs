//! Decode any JWT and lint it as an Entra ID client assertion, naming each problem with
//! the AADSTS code Entra would answer. This is the diagnosis people need after building
//! an assertion by hand: the portal's hex thumbprint pasted into `x5t`, a missing `aud`,
//! `iss` ≠ `sub`, millisecond timestamps, HS256. With a certificate it also checks that
//! `x5t` names it and that the signature verifies with its key.

use crate::cert::Certificate;
use crate::encoding::{b64url, b64url_decode, hex, hex_decode, rfc3339};
use crate::jws::{self, kind};
use crate::rules::{self, Thumbprint, X5T, X5T_S256};
use crate::signer::Algorithm;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Entra would refuse the assertion.
    Error,
    /// Accepted today, but fragile or against Entra's guidance.
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Error (Entra refuses) or warning (fragile).
    pub severity: Severity,
    /// The AADSTS code Entra would answer with, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aadsts: Option<u32>,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// The decoded token and what is wrong with it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The decoded JOSE header.
    pub header: Value,
    /// The decoded claims.
    pub claims: Value,
    /// Problems, errors first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding would make Entra refuse the assertion.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// What to check against, beyond the token itself.
#[derive(Debug, Default, Clone)]
pub struct Expect<'a> {
    /// Seconds since the epoch to judge `nbf`/`exp` by.
    pub now: i64,
    /// The certificate registered with the app.
    pub cert: Option<&'a Certificate>,
    /// The client id the token request will carry.
    pub client_id: Option<&'a str>,
    /// The token endpoint the assertion will be posted to.
    pub audience: Option<&'a str>,
}

/// Why a string could not even be decoded as a JWT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a compact JWS: the parts, their base64url or their JSON.
    #[error(transparent)]
    Decode(#[from] jws::Error),
}

/// Decode `jwt` and lint it.
///
/// # Errors
/// Only when the text cannot be decoded as a JWT at all; every other problem is a
/// [`Finding`] in the report.
pub fn inspect(jwt: &str, expect: &Expect<'_>) -> Result<Report, Error> {
    let jws::Jws {
        header,
        claims,
        signing_input,
        signature,
        duplicate_keys,
        ..
    } = jws::decode(jwt.trim())?;
    let mut lint = Lint::default();
    for dup in duplicate_keys {
        lint.error(
            50027,
            format!("{dup}: parsers disagree on which value counts (most keep the last, some the first) and a strict one refuses the token; write each key once"),
        );
    }
    let alg = lint.algorithm(&header);
    lint.thumbprints(&header, expect.cert);
    lint.header_extras(&header);
    lint.audience(&claims, expect.audience);
    lint.issuer(&claims, expect.client_id);
    lint.times(&claims, expect.now);
    lint.jti(&claims);
    if let (Some(cert), Some(alg)) = (expect.cert, alg) {
        if let Err(e) =
            crate::signer::verify(cert.spki_der(), alg, signing_input.as_bytes(), &signature)
        {
            lint.error(700027, format!("{e} (certificate {}): Entra answers \"Client assertion contains an invalid signature\"", cert.thumbprint_hex()));
        }
    }
    lint.findings.sort_by_key(|f| f.severity);
    Ok(Report {
        header: Value::Object(header),
        claims: Value::Object(claims),
        findings: lint.findings,
    })
}

#[derive(Default)]
struct Lint {
    findings: Vec<Finding>,
}

impl Lint {
    fn error(&mut self, code: u32, message: String) {
        self.findings.push(Finding {
            severity: Severity::Error,
            aadsts: Some(code),
            message,
        });
    }

    fn warn(&mut self, message: String) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            aadsts: None,
            message,
        });
    }

    fn algorithm(&mut self, header: &Map<String, Value>) -> Option<Algorithm> {
        let alg = header.get("alg").and_then(Value::as_str);
        if let Some(known) = alg.and_then(rules::algorithm) {
            return Some(known);
        }
        match alg {
            Some(other) => {
                let why = match other {
                    "none" => "an unsigned token is never accepted",
                    a if a.starts_with("HS") => {
                        "an HMAC signature is for client secrets, not certificates"
                    }
                    a if a.starts_with("ES") => "Entra ID accepts RSA certificate credentials only",
                    _ => "unsupported algorithm",
                };
                self.error(
                    5002738,
                    format!("alg \"{other}\": {why}; sign with RS256 (x5t) or PS256 (x5t#S256)"),
                );
                None
            }
            None => {
                self.error(5002738, "the header has no alg; use RS256 or PS256".into());
                None
            }
        }
    }

    fn thumbprints(&mut self, header: &Map<String, Value>, cert: Option<&Certificate>) {
        let x5t = header.get(X5T.header);
        let s256 = header.get(X5T_S256.header);
        if x5t.is_none() && s256.is_none() {
            if header.contains_key("kid") {
                self.warn(
                    "the header has kid but no x5t/x5t#S256: Entra matches kid only against the key credential's \
                     customKeyIdentifier; put the certificate thumbprint in x5t (RS256) or x5t#S256 (PS256)"
                        .into(),
                );
            } else {
                let fix = cert.map_or_else(
                    || "add \"x5t\": base64url of the certificate's SHA-1 (certassert cert show prints it)".to_string(),
                    |c| format!("add \"x5t\": \"{}\" for this certificate", c.x5t()),
                );
                self.error(
                    5002723,
                    format!("no certificate thumbprint nor keyId in the header; {fix}"),
                );
            }
        }
        // In the order people write them: x5t (RS256), then x5t#S256 (PS256).
        for (shape, value) in [(X5T, x5t), (X5T_S256, s256)] {
            if let Some(v) = value {
                self.thumbprint(shape, v, cert.map(|c| (shape.value(c), shape.digest(c))));
            }
        }
    }

    /// Check one thumbprint header: base64url of exactly `shape.len` raw digest bytes.
    fn thumbprint(
        &mut self,
        shape: Thumbprint,
        value: &Value,
        expected: Option<(String, Vec<u8>)>,
    ) {
        let (name, len) = (shape.header, shape.len);
        let Some(text) = value.as_str() else {
            self.error(
                700027,
                format!("{name} must be a string, found {}", kind(value)),
            );
            return;
        };
        let is_hex = |s: &str| s.len() == len * 2 && s.chars().all(|c| c.is_ascii_hexdigit());
        if is_hex(text) {
            let right = b64url(&hex_decode(text).unwrap_or_default());
            let shown = b64url_decode(text)
                .map(|b| hex(&b, false))
                .unwrap_or_else(|| text.to_string());
            self.error(
                700027,
                format!(
                    "{name} holds the hex thumbprint \"{text}\" as the portal shows it; the header needs base64url of \
                     those {len} bytes: \"{right}\". Entra would print \"Thumbprint of key used by client: '{shown}'\""
                ),
            );
            return;
        }
        let Some(raw) = rules::thumbprint_bytes(text) else {
            let hint = if text.contains(['+', '/', '=']) {
                " (it uses standard base64: replace + with -, / with _ and drop the = padding)"
            } else {
                ""
            };
            self.error(700027, format!("{name} \"{text}\" is not base64url{hint}"));
            return;
        };
        if text.ends_with('=') {
            self.warn(format!(
                "{name} ends in = padding: Entra accepts it (MSAL Python sends it so), but base64url in a JOSE header has none (RFC 7515); drop the ="
            ));
        }
        if raw.len() != len {
            let decoded_text = String::from_utf8(raw.clone()).ok().filter(|s| is_hex(s));
            let fix = match decoded_text {
                Some(hex_text) => format!(
                    "; it is base64url of the hex *text* \"{hex_text}\": encode the {len} raw bytes instead: \"{}\"",
                    b64url(&hex_decode(&hex_text).unwrap_or_default())
                ),
                None => format!("; a {name} is base64url of {len} digest bytes"),
            };
            self.error(
                700027,
                format!(
                    "{name} decodes to {} bytes, not {len}: Entra would print \"Thumbprint of key used by client: '{}'\" \
                     and find no key{fix}",
                    raw.len(),
                    hex(&raw, false)
                ),
            );
            return;
        }
        if let Some((want, want_raw)) = expected {
            if raw != want_raw {
                self.error(
                    700027,
                    format!(
                        "{name} \"{text}\" (hex {}) does not name the given certificate, whose {name} is \"{want}\" (hex {}): \
                         \"The key was not found\"",
                        hex(&raw, true),
                        hex(&want_raw, true)
                    ),
                );
            }
        }
    }

    fn header_extras(&mut self, header: &Map<String, Value>) {
        match header.get("typ").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case(rules::TYP) => {}
            Some(t) => self.warn(format!("typ \"{t}\": client assertions use \"JWT\"")),
            None => {
                self.warn("the header has no typ; client assertions carry \"typ\": \"JWT\"".into())
            }
        }
        if header.contains_key(rules::CRIT) {
            self.error(50027, "the header has crit: verifiers that do not know the listed extensions must refuse the token".into());
        }
        for key in rules::IGNORED_KEY_HEADERS {
            if header.contains_key(key) {
                self.warn(format!("{key} in the header is ignored: Entra only uses the certificates registered with the app"));
            }
        }
    }

    fn audience(&mut self, claims: &Map<String, Value>, expected: Option<&str>) {
        let aud = match claims.get("aud") {
            None => {
                self.error(700023, "no aud claim: set it to the token endpoint you post to, e.g. https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token".into());
                return;
            }
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Array(a)) => {
                self.error(
                    700023,
                    format!(
                        "aud is an array of {} values; it must be one string: the token endpoint",
                        a.len()
                    ),
                );
                return;
            }
            Some(other) => {
                self.error(
                    700023,
                    format!("aud must be a string, found {}", kind(other)),
                );
                return;
            }
        };
        if let Some(want) = expected {
            if aud != want {
                self.error(
                    700023,
                    format!(
                        "aud \"{aud}\" is not the endpoint the assertion is posted to (\"{want}\")"
                    ),
                );
            }
            return;
        }
        let lower = aud.to_ascii_lowercase();
        if !lower.starts_with("https://") {
            self.error(
                700023,
                format!("aud \"{aud}\" is not an https token endpoint URL"),
            );
        } else if rules::MULTI_TENANT_ALIASES
            .iter()
            .any(|t| lower.contains(&format!("/{t}/")))
        {
            self.error(700023, format!("aud \"{aud}\" names a multi-tenant alias; use the tenant ID in the token URL and in aud"));
        } else if lower.starts_with("https://sts.windows.net/") {
            self.warn(format!(
                "aud \"{aud}\" is the v1 token issuer, not a token endpoint: the v2 endpoint answers AADSTS700023; \
                 use the token endpoint URL"
            ));
        } else if !(lower.ends_with("/oauth2/v2.0/token") || lower.ends_with("/oauth2/token")) {
            self.error(700023, format!("aud \"{aud}\" does not look like a token endpoint (…/oauth2/v2.0/token or …/oauth2/token)"));
        }
    }

    fn issuer(&mut self, claims: &Map<String, Value>, client_id: Option<&str>) {
        let iss = claims.get("iss").and_then(Value::as_str);
        let sub = claims.get("sub").and_then(Value::as_str);
        match (iss, sub) {
            (None, _) => self.error(
                700021,
                "no iss claim (string): set iss and sub to the application (client) ID".into(),
            ),
            (_, None) => self.error(
                700021,
                "no sub claim (string): set iss and sub to the application (client) ID".into(),
            ),
            (Some(i), Some(s)) if i != s => {
                self.error(700021, format!("iss \"{i}\" differs from sub \"{s}\": both must be the application (client) ID"));
            }
            (Some(i), Some(_)) => {
                if let Some(want) = client_id {
                    if !i.eq_ignore_ascii_case(want) {
                        self.error(700021, format!("iss/sub \"{i}\" is not the client_id \"{want}\" the request will carry"));
                    }
                } else if !is_guid(i) {
                    self.warn(format!("iss/sub \"{i}\" is not a GUID: use the application (client) ID, not its name or URI"));
                }
            }
        }
    }

    fn times(&mut self, claims: &Map<String, Value>, now: i64) {
        let mut time = |name: &str, required: bool| -> Option<i64> {
            match claims.get(name) {
                None if required => {
                    self.error(
                        700024,
                        format!("no {name} claim: set it as integer seconds since 1970"),
                    );
                    None
                }
                None => None,
                Some(v) => match rules::numeric_date(name, v) {
                    Err(rules::TimeProblem::Milliseconds(t)) => {
                        self.error(700024, format!("{name} {t} looks like milliseconds; JWT times are seconds since 1970"));
                        None
                    }
                    Ok(t) => {
                        if rules::is_fractional(v) {
                            self.warn(format!(
                                "{name} {v} has a fraction: Entra reads it as {t} (MSAL Python signs such times), but a strict verifier may refuse it; write integer seconds"
                            ));
                        }
                        Some(t)
                    }
                    Err(_) => {
                        self.error(
                            700024,
                            format!(
                                "{name} must be {} NumericDate (seconds since 1970), found {v}",
                                if name == "nbf" { "an integer" } else { "a" }
                            ),
                        );
                        None
                    }
                },
            }
        };
        let exp = time("exp", true);
        let nbf = time("nbf", false);
        let iat = time("iat", false);
        if let Some(exp) = exp {
            if rules::expired(exp, now) {
                self.error(
                    700024,
                    format!(
                        "exp {} ({}) has passed: make a fresh assertion for every request",
                        exp,
                        rfc3339(exp)
                    ),
                );
            }
        }
        if let Some(nbf) = nbf {
            if rules::not_yet_valid(nbf, now) {
                self.error(
                    700024,
                    format!(
                        "nbf {} ({}) is in the future: check the clock of the signing machine",
                        nbf,
                        rfc3339(nbf)
                    ),
                );
            }
        }
        let start = nbf.or(iat);
        if let (Some(start), Some(exp)) = (start, exp) {
            if rules::never_valid(start, exp) {
                self.error(
                    700024,
                    format!(
                        "exp ({}) is not after nbf/iat ({}): the assertion is never valid",
                        rfc3339(exp),
                        rfc3339(start)
                    ),
                );
            } else if exp - start > rules::ADVISED_LIFETIME as i64 {
                self.warn(format!(
                    "the assertion is valid for {} minutes; Entra advises 5–10 minutes after nbf, since anyone who sees it can replay it until exp",
                    (exp - start) / 60
                ));
            }
        }
    }

    fn jti(&mut self, claims: &Map<String, Value>) {
        match claims.get("jti") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => self.error(50027, "jti must be a non-empty string (a fresh GUID per assertion)".into()),
            None => self.error(50027, "no jti claim: each assertion needs a unique ID (a fresh GUID), which is how replays are refused".into()),
        }
    }
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Human-readable report: header, claims (times annotated), then findings.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let _ = writeln!(out, "header:\n{}", pretty(&report.header));
    let _ = writeln!(out, "claims:\n{}", pretty(&report.claims));
    for name in ["nbf", "iat", "exp"] {
        if let Some(t) = report
            .claims
            .get(name)
            .and_then(Value::as_i64)
            .filter(|t| !rules::is_milliseconds(*t))
        {
            let _ = writeln!(out, "  {name:<4} = {}", rfc3339(t));
        }
    }
    if report.findings.is_empty() {
        let _ = writeln!(
            out,
            "\nok: no problems found for an Entra ID client assertion"
        );
        return out;
    }
    let _ = writeln!(out);
    for f in &report.findings {
        let label = match (f.severity, f.aadsts) {
            (Severity::Error, Some(code)) => format!("error AADSTS{code}"),
            (Severity::Error, None) => "error".to_string(),
            (Severity::Warning, _) => "warning".to_string(),
        };
        let _ = writeln!(out, "{label}: {}", f.message);
    }
    let errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = report.findings.len() - errors;
    let _ = writeln!(out, "\n{errors} error(s), {warnings} warning(s)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";

    fn jwt(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes()),
            b64url(b"not-a-real-signature")
        )
    }

    fn good_claims() -> Value {
        json!({"aud": "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
               "iss": CLIENT, "sub": CLIENT, "jti": "0d1a4a3e-5b8b-4e4f-9c55-6a2c9d0b7f10",
               "nbf": NOW, "iat": NOW, "exp": NOW + 600})
    }

    fn report(h: Value, c: Value) -> Report {
        inspect(
            &jwt(h, c),
            &Expect {
                now: NOW,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn codes(h: Value, c: Value) -> Vec<Option<u32>> {
        report(h, c).findings.iter().map(|f| f.aadsts).collect()
    }

    fn messages(h: Value, c: Value) -> String {
        render(&report(h, c))
    }

    #[test]
    fn a_correct_assertion_has_no_findings() {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VTQ"});
        assert_eq!(codes(h, good_claims()), Vec::<Option<u32>>::new());
    }

    #[test]
    fn the_seed_question_no_thumbprint_gives_5002723() {
        // The header and payload from the AADSTS5002723 question: no x5t, no aud, jti = thumbprint.
        let h = json!({"alg": "RS256", "typ": "JWT"});
        let c = json!({"iss": CLIENT, "sub": CLIENT, "nbf": 1570803651, "exp": 1570807251, "iat": 1570803651,
                       "jti": "3BC87980310C490A62AA5F6343D4C55DF8EBBA85", "typ": "JWT"});
        let r = inspect(
            &jwt(h, c),
            &Expect {
                now: 1570803700,
                ..Default::default()
            },
        )
        .unwrap();
        let codes: Vec<_> = r.findings.iter().filter_map(|f| f.aadsts).collect();
        assert!(codes.contains(&5002723), "{codes:?}");
        assert!(codes.contains(&700023), "missing aud: {codes:?}");
        assert!(r.has_errors());
    }

    #[test]
    fn hex_thumbprint_in_x5t_gives_700027_with_the_fix() {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "84E05C1D98BCE3A5421D225B140B36E86A3D5534"});
        let text = messages(h.clone(), good_claims());
        assert_eq!(codes(h, good_claims()), vec![Some(700027)]);
        assert!(text.contains("hOBcHZi846VCHSJbFAs26Go9VTQ"), "{text}");
        assert!(text.contains("Thumbprint of key used by client"), "{text}");
    }

    #[test]
    fn base64_of_the_hex_text_reproduces_entras_printed_thumbprint() {
        // The seed's second error: Entra printed '6264…3234', the hex of the ASCII text bd1e…d724.
        let hex_text = "bd1ed2c8376108384ee273a1801a07f08b31d724";
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": b64url(hex_text.as_bytes())});
        let text = messages(h, good_claims());
        assert!(text.contains("error AADSTS700027"), "{text}");
        assert!(text.contains("'62643165643263383337363130383338346565323733613138303161303766303862333164373234'"), "{text}");
        assert!(
            text.contains(&b64url(&hex_decode(hex_text).unwrap())),
            "{text}"
        );
    }

    /// Entra (and the emulator, through the same rule) accepts base64url with its `=`
    /// padding, which MSAL Python sends: a warning, not an error. Standard base64 (`+`,
    /// `/`) is still an error.
    #[test]
    fn padded_x5t_is_a_warning_and_standard_base64_an_error() {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VTQ="});
        let r = report(h, good_claims());
        assert!(!r.has_errors(), "{}", render(&r));
        assert!(
            render(&r).contains("= padding: Entra accepts it"),
            "{}",
            render(&r)
        );
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VT+="});
        assert!(messages(h, good_claims()).contains("standard base64"));
    }

    /// A fractional exp/iat (MSAL Python signs time.time() floats) is read as whole
    /// seconds, as Entra reads it: a warning; a fractional nbf is an error (700024).
    #[test]
    fn fractional_times_are_read_as_entra_reads_them() {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VTQ"});
        let mut c = good_claims();
        c["exp"] = json!(NOW as f64 + 600.25);
        c["iat"] = json!(NOW as f64 + 0.5);
        let r = report(h.clone(), c);
        assert!(!r.has_errors(), "{}", render(&r));
        assert!(
            render(&r).contains("has a fraction: Entra reads it as"),
            "{}",
            render(&r)
        );
        let mut c = good_claims();
        c["nbf"] = json!(NOW as f64 + 0.5);
        assert_eq!(codes(h, c), vec![Some(700024)]);
    }

    #[test]
    fn audience_problems_give_700023() {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VTQ"});
        for aud in [
            json!(["a", "b"]),
            json!(42),
            json!("https://graph.microsoft.com"),
            json!("https://login.microsoftonline.com/common/oauth2/v2.0/token"),
            json!("tokenendpoint"),
        ] {
            let mut c = good_claims();
            c["aud"] = aud.clone();
            assert_eq!(codes(h.clone(), c), vec![Some(700023)], "{aud}");
        }
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(codes(h.clone(), c), vec![Some(700023)]);
        let r = inspect(
            &jwt(h, good_claims()),
            &Expect {
                now: NOW,
                audience: Some("https://other/t/oauth2/v2.0/token"),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.findings.len(), 1);
    }

    #[test]
    fn issuer_subject_time_and_jti_problems() {
        let h = json!({"alg": "RS256", "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VTQ"});
        let mut c = good_claims();
        c["sub"] = json!("someone-else");
        assert_eq!(codes(h.clone(), c), vec![Some(700021)]);

        let mut c = good_claims();
        c["exp"] = json!(NOW - 10);
        assert!(codes(h.clone(), c).contains(&Some(700024)), "exp <= nbf");

        let mut c = good_claims();
        c["exp"] = json!((NOW + 600) * 1000);
        assert!(codes(h.clone(), c).contains(&Some(700024)), "milliseconds");

        let mut c = good_claims();
        c["exp"] = json!(NOW + 3600);
        let text = messages(h.clone(), c.clone());
        assert_eq!(
            codes(h.clone(), c),
            vec![None],
            "long lifetime is a warning"
        );
        assert!(text.contains("60 minutes"), "{text}");

        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("jti");
        assert_eq!(codes(h.clone(), c), vec![Some(50027)]);

        let mut c = good_claims();
        c["nbf"] = json!(NOW + 3600);
        c["exp"] = json!(NOW + 3900);
        assert!(codes(h, c).contains(&Some(700024)), "future nbf");
    }

    #[test]
    fn algorithms_outside_rs256_ps256_give_5002738() {
        for alg in ["HS256", "ES256", "none"] {
            let h = json!({"alg": alg, "typ": "JWT", "x5t": "hOBcHZi846VCHSJbFAs26Go9VTQ"});
            assert_eq!(codes(h, good_claims()), vec![Some(5002738)], "{alg}");
        }
    }

    /// A JWT whose header and claims are the JSON texts given, as they are.
    fn raw_jwt(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url(header.as_bytes()),
            b64url(claims.as_bytes()),
            b64url(b"sig")
        )
    }

    #[test]
    fn duplicate_keys_are_errors_naming_the_key() {
        let expect = Expect {
            now: NOW,
            ..Default::default()
        };
        let claims = good_claims().to_string();
        // A last-wins parser sees RS256 and nothing else wrong.
        let h = r#"{"alg":"none","typ":"JWT","x5t":"hOBcHZi846VCHSJbFAs26Go9VTQ","alg":"RS256"}"#;
        let r = inspect(&raw_jwt(h, &claims), &expect).unwrap();
        assert!(r.has_errors(), "{}", render(&r));
        let text = render(&r);
        assert!(
            text.contains("error AADSTS50027: the JWT header repeats the key \"alg\""),
            "{text}"
        );
        // In the claims, and at depth (the object's JSON Pointer is named).
        let c = format!(
            r#"{{"cnf":{{"jwk":{{"kty":"RSA","kty":"oct"}}}},{}"#,
            &claims[1..]
        );
        let c = c.replacen(r#""iss""#, r#""sub":"x","iss""#, 1);
        let h = r#"{"alg":"RS256","typ":"JWT","x5t":"hOBcHZi846VCHSJbFAs26Go9VTQ"}"#;
        let text = render(&inspect(&raw_jwt(h, &c), &expect).unwrap());
        assert!(
            text.contains("the JWT payload repeats the key \"kty\" in /cnf/jwk"),
            "{text}"
        );
        assert!(
            text.contains("the JWT payload repeats the key \"sub\""),
            "{text}"
        );
        // The same keys in different objects are no duplicates.
        let c = format!(r#"{{"a":{{"x":1}},"b":{{"x":1}},{}"#, &claims[1..]);
        let r = inspect(&raw_jwt(h, &c), &expect).unwrap();
        assert!(r.findings.is_empty(), "{}", render(&r));
    }

    #[test]
    fn undecodable_input_is_an_error_not_a_panic() {
        assert!(matches!(
            inspect("abc", &Expect::default()),
            Err(Error::Decode(jws::Error::Parts(1)))
        ));
        assert!(matches!(
            inspect("a.b.c.d", &Expect::default()),
            Err(Error::Decode(jws::Error::Parts(4)))
        ));
        assert!(matches!(
            inspect("@@.e30.", &Expect::default()),
            Err(Error::Decode(jws::Error::Base64(jws::Part::Header)))
        ));
        assert!(matches!(
            inspect("W10.e30.", &Expect::default()),
            Err(Error::Decode(jws::Error::NotObject {
                part: jws::Part::Header,
                ..
            }))
        ));
    }
}
