//! Key references: the `--key` argument (env `CERTASSERT_KEY`) parsed, once, into what
//! backend holds the key, which key it is and how to unlock it. This module only parses;
//! opening is the signer's job. Every form is parsed here in every build — a malformed
//! `pkcs11:` or `tpm:` reference is a [`KeyRefError`] even where that backend is not
//! compiled in (opening it then says which feature to rebuild with).
//!
//! - [`pkcs11`]: RFC 7512 `pkcs11:` URIs and YubiKey `piv:SLOT` references ([`Pkcs11Uri`]);
//! - [`tpm`]: `tpm:handle=…` / `tpm:key=…` ([`TpmUri`]);
//! - `file`: plain paths and `file:PATH?password-source=…`.
//!
//! Every type here has a redacted `Display`: a secret given as a literal (`pin-value=`,
//! `auth-value=`, `password-value=`) is never printed.

mod file;
pub mod pkcs11;
pub mod tpm;

pub use pkcs11::{ObjectType, Pkcs11Uri};
pub use tpm::{KeyLocation, TpmUri};

use crate::secret::SecretSource;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::fmt;
use std::path::PathBuf;

/// A parsed `--key` value.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRef {
    /// A software key file: PEM/DER PKCS#8, PKCS#1, encrypted PKCS#8, or PKCS#12.
    File {
        /// The key file.
        path: PathBuf,
        /// Where its password comes from, for encrypted PKCS#8 and PKCS#12.
        password: Option<SecretSource>,
    },
    /// An RFC 7512 `pkcs11:` URI, or a YubiKey PIV slot `piv:9c…` (a [`Pkcs11Uri`] whose
    /// [`piv_slot`](Pkcs11Uri::piv_slot) is set).
    Pkcs11(Pkcs11Uri),
    /// A TPM 2.0 reference `tpm:handle=…` or `tpm:key=…`.
    Tpm(TpmUri),
}

/// Why a key reference could not be parsed. `reference` is the reference as written,
/// without its query (which may carry a secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRefError {
    /// Nothing was given.
    #[error("the key reference is empty: give a key file path or a pkcs11:, piv: or tpm: URI")]
    Empty,
    /// `scheme:…` with a scheme certassert does not know (and no such file); the
    /// reference is shown without its query.
    #[error(
        "key reference \"{0}\" has an unknown scheme: use a file path, file:PATH, pkcs11:…, piv:SLOT or tpm:…"
    )]
    UnknownScheme(String),
    /// An attribute this form does not have.
    #[error("in key reference {reference}: unknown {part} attribute \"{attr}\" ({known})")]
    UnknownAttribute {
        /// The reference, without its query.
        reference: String,
        /// `path` or `query`.
        part: &'static str,
        /// The attribute as written.
        attr: String,
        /// What the form takes instead.
        known: &'static str,
    },
    /// The same attribute (or two spellings of one secret) given twice.
    #[error("in key reference {reference}: {attr} is given twice")]
    Repeated {
        /// The reference, without its query.
        reference: String,
        /// The attribute, or "the PIN" / "the password" for a secret's two spellings.
        attr: String,
    },
    /// `attr`'s value is not valid percent-encoding. The value is not kept: it may be a
    /// secret (a `…-value=`, or a PIN pasted into a `…-source=`).
    #[error("in key reference {reference}: {attr}: not valid percent-encoded UTF-8 (write a % as %25 and any other byte as %XX)")]
    BadPercent {
        /// The reference, without its query.
        reference: String,
        /// The attribute (as much of its name as looks like one).
        attr: String,
    },
    /// A `…-source=` attribute names no source certassert knows.
    #[error("in key reference {reference}: {attr}: {source}")]
    BadSecretSource {
        /// The reference, without its query.
        reference: String,
        /// `pin-source`, `password-source`, `auth-source` or `parent-auth-source`.
        attr: &'static str,
        /// What is wrong with it.
        source: crate::secret::SecretError,
    },
    /// A value of the wrong form (a slot id that is not a number, an unknown PIV slot,
    /// a handle outside the persistent range, …); `detail` says what is expected.
    #[error("in key reference {reference}: {detail}")]
    BadValue {
        /// The reference, without its query.
        reference: String,
        /// What is wrong and what to write instead.
        detail: String,
    },
    /// A `tpm:` reference that names no key, or two.
    #[error("in key reference {reference}: a tpm: reference names one key: give handle=0x81… (a persistent key) or key=PATH (a TSS2 PRIVATE KEY file), once")]
    TpmKey {
        /// The reference, without its query.
        reference: String,
    },
}

impl std::str::FromStr for KeyRef {
    type Err = KeyRefError;

    /// Parse `--key`: `pkcs11:…`, `piv:…`, `tpm:…`, `file:…`, else a path taken literally.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(KeyRefError::Empty);
        }
        if s.starts_with("pkcs11:") || s.starts_with("piv:") {
            return s.parse().map(Self::Pkcs11);
        }
        if s.starts_with("tpm:") {
            return s.parse().map(Self::Tpm);
        }
        if let Some(rest) = s.strip_prefix("file:") {
            return file::parse(rest);
        }
        if has_scheme(s) && !std::path::Path::new(s).exists() {
            return Err(KeyRefError::UnknownScheme(without_query(s)));
        }
        // A plain path is taken literally: '?' and '%' are legal in file names.
        Ok(Self::File {
            path: PathBuf::from(s),
            password: None,
        })
    }
}

/// Redacted: a literal secret shows as `…-value=[redacted]`; the PKCS#11 and TPM forms
/// print their selecting attributes only (as messages have always shown them).
impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, password } => {
                write!(f, "file:{}", path.display())?;
                if let Some(source) = password {
                    f.write_str("?")?;
                    write_source(f, "password", source)?;
                }
                Ok(())
            }
            Self::Pkcs11(uri) => uri.fmt(f),
            Self::Tpm(uri) => uri.fmt(f),
        }
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl KeyRef {
    /// Warnings the user should see about how the reference was written: a secret given
    /// as a literal value (it shows in `ps`, shell history and logs), naming the
    /// `…-source=` attribute to use instead.
    pub fn warnings(&self) -> Vec<String> {
        let attr = match self {
            Self::File {
                password: Some(SecretSource::Value(_)),
                ..
            } => "password-source",
            Self::Pkcs11(uri) if matches!(uri.pin, Some(SecretSource::Value(_))) => "pin-source",
            Self::Tpm(uri) if matches!(uri.auth, Some(SecretSource::Value(_))) => "auth-source",
            _ => return Vec::new(),
        };
        vec![format!(
            "the key reference carries its secret as a literal value, which shows in `ps`, shell history and logs; \
             prefer {attr}=env:VAR or {attr}=file:PATH"
        )]
    }

    /// The backend this reference needs, for messages: `software`, `pkcs11` or `tpm`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::File { .. } => "software",
            Self::Pkcs11(_) => "pkcs11",
            Self::Tpm(_) => "tpm",
        }
    }
}

/// `scheme:` as RFC 3986 spells it, at the start.
fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            scheme.len() > 1
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// The reference without its query, for messages (the query may carry a secret); a
/// `…-value=` or `…-source=` written in the path shows as `name=[redacted]`, and a part
/// that is not `attribute=value` only as far as it looks like an attribute name.
fn without_query(reference: &str) -> String {
    let path = reference.split('?').next().unwrap_or_default();
    // Only the RFC 7512 and tpm: forms have attributes in their path.
    let Some((scheme, attributes)) = ["pkcs11:", "tpm:"]
        .iter()
        .find_map(|scheme| Some((*scheme, path.strip_prefix(scheme)?)))
    else {
        return path.to_string();
    };
    let shown: Vec<String> = attributes
        .split(';')
        .map(|part| match part.split_once('=') {
            Some((name, _)) if is_secret_attribute(name) => {
                format!("{}=[redacted]", shown_name(name))
            }
            Some(_) => part.to_string(),
            None => shown_name(part),
        })
        .collect();
    format!("{scheme}{}", shown.join(";"))
}

/// Whether an attribute carries a secret or names where one comes from (whose value may
/// be the secret itself, pasted in the wrong place).
fn is_secret_attribute(name: &str) -> bool {
    name.ends_with("-value") || name.ends_with("-source")
}

/// An attribute name as written, up to the first character no attribute name has
/// (`pin-value:1234` shows as `pin-value…`): what follows may be a secret.
fn shown_name(name: &str) -> String {
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(name.len());
    if end == name.len() {
        name.to_string()
    } else {
        format!("{}…", &name[..end])
    }
}

/// `path` and the optional query after `?`.
fn split_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    }
}

/// `attr=value` pairs of a query, empty ones skipped.
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// RFC 3986 percent-decoding; `None` on a malformed escape (`%` not followed by two hex
/// digits), which the `percent-encoding` crate would pass through unchanged.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_encoding::percent_decode(bytes).collect())
}

/// Percent-decode a value that must be UTF-8 text.
fn decode_text(reference: &str, attr: &str, raw: &str) -> Result<String, KeyRefError> {
    percent_decode(raw)
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| KeyRefError::BadPercent {
            reference: without_query(reference),
            attr: if attr == "the path" {
                attr.to_string()
            } else {
                shown_name(attr)
            },
        })
}

/// Parse a `…-source=` value.
fn parse_source(
    reference: &str,
    attr: &'static str,
    value: &str,
) -> Result<SecretSource, KeyRefError> {
    value
        .parse()
        .map_err(|source| KeyRefError::BadSecretSource {
            reference: without_query(reference),
            attr,
            source,
        })
}

/// Store `value` in `slot`, refusing a second one.
fn set_once<T>(
    reference: &str,
    attr: &str,
    slot: &mut Option<T>,
    value: T,
) -> Result<(), KeyRefError> {
    if slot.replace(value).is_some() {
        return Err(KeyRefError::Repeated {
            reference: without_query(reference),
            attr: attr.to_string(),
        });
    }
    Ok(())
}

/// What RFC 3986 lets stand unescaped in a value: unreserved characters.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a value for a URI attribute (RFC 7512 path attributes, TPM key paths).
pub(crate) fn escape(value: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(value, VALUE)
}

/// `name-source=…` for a source, `name-value=[redacted]` for a literal.
fn write_source(f: &mut fmt::Formatter<'_>, name: &str, source: &SecretSource) -> fmt::Result {
    match source {
        SecretSource::Value(_) => write!(f, "{name}-value=[redacted]"),
        other => write!(f, "{name}-source={other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<KeyRef, KeyRefError> {
        s.parse()
    }

    #[test]
    fn plain_paths_are_literal() {
        assert_eq!(
            parse("/etc/app/key.pem").unwrap(),
            KeyRef::File {
                path: "/etc/app/key.pem".into(),
                password: None
            }
        );
        assert_eq!(
            parse("weird?name%41.pem").unwrap(),
            KeyRef::File {
                path: "weird?name%41.pem".into(),
                password: None
            }
        );
    }

    #[test]
    fn file_uris_with_password_sources() {
        assert_eq!(
            parse("file:/etc/app.pfx?password-source=env:PFX_PASS").unwrap(),
            KeyRef::File {
                path: "/etc/app.pfx".into(),
                password: Some(SecretSource::Env("PFX_PASS".into()))
            }
        );
        assert_eq!(
            parse("file:///etc/my%20app.pfx").unwrap(),
            KeyRef::File {
                path: "/etc/my app.pfx".into(),
                password: None
            }
        );
        let k = parse("file:a.p12?password-value=s3cret").unwrap();
        assert_eq!(
            k,
            KeyRef::File {
                path: "a.p12".into(),
                password: Some(SecretSource::Value("s3cret".into()))
            }
        );
        assert_eq!(k.warnings().len(), 1);
        assert!(k.warnings()[0].contains("password-source=env:VAR"));
        assert!(!format!("{k:?}").contains("s3cret"));
        assert_eq!(k.to_string(), "file:a.p12?password-value=[redacted]");
    }

    #[test]
    fn errors_name_the_part_that_is_wrong() {
        let e = parse("file:a.pfx?pin-source=env:X")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown query attribute \"pin-source\""), "{e}");
        let e = parse("file:a.pfx?password-source=hunter2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("password-source") && e.contains("env:VAR"),
            "{e}"
        );
        let e = parse("file:a.pfx?password-source=env:A&password-value=b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let e = parse("pkcs12:foo").unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
        assert!(matches!(parse("  "), Err(KeyRefError::Empty)));
    }

    #[test]
    fn hardware_forms_are_parsed_and_secrets_hidden() {
        let k = parse("pkcs11:token=t;object=k?pin-value=1234").unwrap();
        assert_eq!(k.backend(), "pkcs11");
        assert_eq!(format!("{k:?}"), "pkcs11:token=t;object=k");
        assert_eq!(k.warnings().len(), 1);
        assert!(k.warnings()[0].contains("pin-source=env:VAR"));
        let piv = parse("piv:9c").unwrap();
        assert_eq!(piv.backend(), "pkcs11");
        assert_eq!(piv.to_string(), "piv:9c");
        let tpm = parse("tpm:handle=0x81000001?auth-value=pw").unwrap();
        assert_eq!(tpm.backend(), "tpm");
        assert_eq!(tpm.to_string(), "tpm:handle=0x81000001");
        assert!(tpm.warnings()[0].contains("auth-source=env:VAR"));
        // Malformed hardware references are parse errors in every build.
        assert!(matches!(
            parse("pkcs11:tokn=x"),
            Err(KeyRefError::UnknownAttribute { .. })
        ));
        assert!(parse("tpm:").is_err());
        assert!(parse("piv:9b").is_err());
    }

    /// A secret-bearing attribute's value (any `…-value=`, a `…-source=` that does not
    /// parse as a source: it may be the secret itself pasted in) never appears in an
    /// error's Display, its causes or its Debug, wherever in the reference it is written.
    #[test]
    fn no_error_echoes_a_secret() {
        const C: &str = "Zq7canary";
        let cases = [
            format!("pkcs11:object=a?pin-value=12%3{C}%3"),
            format!("pkcs11:object=a?pin-source={C}"),
            format!("pkcs11:object=a?pin-source=12{C}%3"),
            format!("pkcs11:object=a?pin-source=env:A&pin-value={C}"),
            format!("pkcs11:object=a;pin-value={C}"),
            format!("pkcs11:object=a;pin-source={C}"),
            format!("pkcs11:object=a?pin-value:{C}"),
            format!("pkcs11:object=a?pin_value={C}%zz"),
            format!("pkcs11:object=a;pin-value:{C}"),
            format!("piv:9c?pin-source={C}"),
            format!("file:a.pfx?password-source={C}"),
            format!("file:a.pfx?password-value={C}%zz"),
            format!("file:a.pfx?password-source={C}%"),
            format!("tpm:handle=0x81000001?auth-source={C}"),
            format!("tpm:handle=0x81000001?auth-value={C}%x"),
            format!("tpm:handle=0x81000001?parent-auth-source={C}"),
            format!("tpm:handle=0x81000001;auth-value={C}"),
            format!("tpm:handle=0x81000001?bogus=1&auth-value={C}"),
            format!("pkcs12:x.p12?password-value={C}"),
        ];
        for reference in cases {
            let e = parse(&reference).unwrap_err();
            let mut shown = format!("{e}\n{e:?}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                shown.push_str(&format!("\n{c}\n{c:?}"));
                cause = c.source();
            }
            assert!(!shown.contains(C), "{reference}: {shown}");
        }
        // The message still names the attribute and what a valid value looks like.
        let e = parse(&format!("pkcs11:object=a?pin-source={C}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pin-source") && e.contains("env:VAR"), "{e}");
        let e = parse(&format!("pkcs11:object=a?pin-value=1{C}%3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pin-value") && e.contains("%XX"), "{e}");
    }

    #[test]
    fn percent_decoding_refuses_malformed_escapes() {
        assert_eq!(percent_decode("a%20b").unwrap(), b"a b");
        assert!(percent_decode("%zz").is_none());
        assert!(percent_decode("%2").is_none());
        assert_eq!(escape("My HSM;x").to_string(), "My%20HSM%3Bx");
    }
}
