//! Key references: the `--key` argument (env `CERTASSERT_KEY`) parsed into what backend
//! holds the key and how to unlock it. This module only parses; opening is the signer's
//! job. The `pkcs11:`, `piv:` and `tpm:` forms are recognised here so that a build
//! without their backend says so plainly instead of treating the URI as a file name.

use crate::secret::SecretSource;
use std::fmt;
use std::path::PathBuf;

/// A parsed `--key` value.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A software key file: PEM/DER PKCS#8, PKCS#1, encrypted PKCS#8, or PKCS#12.
    File {
        /// The key file.
        path: PathBuf,
        /// Where its password comes from, for encrypted PKCS#8 and PKCS#12.
        password: Option<SecretSource>,
    },
    /// An RFC 7512 `pkcs11:` URI (kept whole; the PKCS#11 backend parses it).
    Pkcs11(String),
    /// A YubiKey PIV slot reference `piv:9c…`.
    Piv(String),
    /// A TPM 2.0 reference `tpm:handle=…` or `tpm:key=…`.
    Tpm(String),
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, password } => {
                write!(f, "file:{}", path.display())?;
                if let Some(p) = password {
                    write!(f, "?password-source={p:?}")?;
                }
                Ok(())
            }
            // These may carry pin-value=: print only the part before the query.
            Self::Pkcs11(uri) | Self::Piv(uri) | Self::Tpm(uri) => {
                f.write_str(uri.split('?').next().unwrap_or_default())
            }
        }
    }
}

/// Why a key reference could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefError {
    #[error("the key reference is empty: pass --key PATH or a pkcs11:, piv: or tpm: URI")]
    Empty,
    #[error(
        "key reference \"{0}\" has an unknown scheme: use a file path, file:PATH, pkcs11:…, piv:SLOT or tpm:…"
    )]
    UnknownScheme(String),
    #[error("in key reference file:{path}: unknown query attribute \"{attr}\" (file: keys take password-source= or password-value=)")]
    UnknownAttribute { path: String, attr: String },
    #[error("in key reference file:{path}: {attr} is given twice")]
    Repeated { path: String, attr: String },
    #[error("in key reference file:{path}: password-source: {source}")]
    BadSecretSource {
        path: String,
        source: crate::secret::SecretError,
    },
    #[error("in key reference file:{path}: \"{text}\" is not valid percent-encoding")]
    BadPercent { path: String, text: String },
}

impl std::str::FromStr for KeyRef {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(KeyRefError::Empty);
        }
        if s.starts_with("pkcs11:") {
            return Ok(Self::Pkcs11(s.to_string()));
        }
        if s.starts_with("piv:") {
            return Ok(Self::Piv(s.to_string()));
        }
        if s.starts_with("tpm:") {
            return Ok(Self::Tpm(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("file:") {
            return parse_file_uri(rest);
        }
        if has_scheme(s) && !std::path::Path::new(s).exists() {
            return Err(KeyRefError::UnknownScheme(s.to_string()));
        }
        // A plain path is taken literally: '?' and '%' are legal in file names.
        Ok(Self::File {
            path: PathBuf::from(s),
            password: None,
        })
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

fn parse_file_uri(rest: &str) -> Result<KeyRef, KeyRefError> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    // file:///abs/path and file://localhost/abs/path as well as file:/abs and file:rel
    let path = path
        .strip_prefix("//localhost")
        .or_else(|| path.strip_prefix("//"))
        .unwrap_or(path);
    let decoded = percent_decode(path).ok_or_else(|| KeyRefError::BadPercent {
        path: path.to_string(),
        text: path.to_string(),
    })?;
    let path_text = String::from_utf8_lossy(&decoded).into_owned();
    let mut password = None;
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (attr, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| KeyRefError::BadPercent {
                path: path_text.clone(),
                text: attr.to_string(),
            })?;
        let source =
            match attr {
                "password-source" => value.parse::<SecretSource>().map_err(|source| {
                    KeyRefError::BadSecretSource {
                        path: path_text.clone(),
                        source,
                    }
                })?,
                "password-value" => SecretSource::Value(value),
                other => {
                    return Err(KeyRefError::UnknownAttribute {
                        path: path_text,
                        attr: other.to_string(),
                    });
                }
            };
        if password.replace(source).is_some() {
            return Err(KeyRefError::Repeated {
                path: path_text,
                attr: "the password".into(),
            });
        }
    }
    Ok(KeyRef::File {
        path: PathBuf::from(path_text),
        password,
    })
}

/// RFC 3986 percent-decoding; `None` on a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

impl KeyRef {
    /// Warnings the user should see about how the reference was written (a secret in argv).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let literal = match self {
            Self::File { password, .. } => password.as_ref().is_some_and(SecretSource::is_literal),
            Self::Pkcs11(u) | Self::Piv(u) | Self::Tpm(u) => {
                u.contains("pin-value=")
                    || u.contains("password-value=")
                    || u.contains("auth-value=")
            }
        };
        if literal {
            out.push(
                "the key reference carries its secret as a literal value, which shows in `ps`, shell history and logs; \
                 prefer password-source=env:VAR or file:PATH"
                    .to_string(),
            );
        }
        out
    }

    /// The backend this reference needs, for messages.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::File { .. } => "software",
            Self::Pkcs11(_) | Self::Piv(_) => "pkcs11",
            Self::Tpm(_) => "tpm",
        }
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
        assert!(!format!("{k:?}").contains("s3cret"));
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
    fn hardware_forms_are_recognised_and_secrets_hidden() {
        let k = parse("pkcs11:token=t;object=k?pin-value=1234").unwrap();
        assert_eq!(k.backend(), "pkcs11");
        assert_eq!(format!("{k:?}"), "pkcs11:token=t;object=k");
        assert_eq!(k.warnings().len(), 1);
        assert_eq!(parse("piv:9c").unwrap().backend(), "pkcs11");
        assert_eq!(parse("tpm:handle=0x81000001").unwrap().backend(), "tpm");
    }
}
