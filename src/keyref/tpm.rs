//! The `tpm:` key reference: `tpm:handle=0x81000001` (a persistent key) or
//! `tpm:key=PATH` (a `TSS2 PRIVATE KEY` file), with an optional query
//! `?tcti=…&auth-source=…&parent-auth-source=…`. Parsing only; nothing here talks to a TPM.
//! Without `tcti=`, the TCTI comes from `TPM2TOOLS_TCTI`, `TCTI` or `TPM2OPENSSL_TCTI`,
//! else opening the key runs tpm2-tss's default search (tabrmd, `/dev/tpmrm0`, `/dev/tpm0`).

use super::{
    decode_text, escape, parse_source, query_pairs, set_once, shown_name, split_query,
    without_query, KeyRefError,
};
use crate::secret::SecretSource;
use std::fmt;
use std::path::PathBuf;

/// The TCTI shown when neither the reference nor the environment names one: the kernel's
/// resource manager, which also flushes whatever a crashed process left loaded. Opening
/// the key then runs tpm2-tss's default search ([`DEFAULT_SEARCH`]), as tpm2-tools and
/// tpm2-openssl do, and uses the first that answers.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// tpm2-tss's default TCTI search, in its order: the access broker (tabrmd), the kernel's
/// resource manager, the raw device.
pub const DEFAULT_SEARCH: [&str; 3] = ["tabrmd", "device:/dev/tpmrm0", "device:/dev/tpm0"];

/// The environment variables that name the TCTI when the reference does not, in the order
/// they are read: tpm2-tools', tpm2-tss's, tpm2-openssl's.
pub const TCTI_ENV: [&str; 3] = ["TPM2TOOLS_TCTI", "TCTI", "TPM2OPENSSL_TCTI"];

/// Where the key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A persistent object (`0x81000000..=0x81FFFFFF`).
    Handle(u32),
    /// A TSS2 PEM key file, loaded under the standard storage primary (or its persistent parent).
    File(PathBuf),
}

/// A parsed `tpm:` reference. Its `Display` prints the key part only
/// (`tpm:handle=0x81000001`, `tpm:key=/etc/app.tss2.pem`), never the query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TpmUri {
    /// The key.
    pub key: KeyLocation,
    /// The TCTI configuration string (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`, `tabrmd`).
    pub tcti: String,
    /// Whether `tcti` came from the reference itself (rather than env or the default).
    pub tcti_explicit: bool,
    /// Whether nothing named the TCTI: opening the key runs [`DEFAULT_SEARCH`] and `tcti`
    /// ([`DEFAULT_TCTI`] until then) becomes the one that answered.
    pub tcti_search: bool,
    /// Where the key's password (authValue) comes from (`auth-source=` or `auth-value=`).
    pub auth: Option<SecretSource>,
    /// Where the owner hierarchy's (or a persistent parent's) password comes from.
    pub parent_auth: Option<SecretSource>,
}

impl std::str::FromStr for TpmUri {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TpmUri {
    /// Parse a whole `tpm:…` reference. Without `tcti=`, the TCTI is read from the
    /// environment now (see [`default_tcti`]).
    ///
    /// # Errors
    /// An attribute that is missing, unknown, repeated or malformed; the error names it.
    pub fn parse(uri: &str) -> Result<Self, KeyRefError> {
        let rest = uri
            .strip_prefix("tpm:")
            .ok_or_else(|| KeyRefError::BadValue {
                reference: without_query(uri),
                detail: "a TPM key reference starts with tpm:".into(),
            })?;
        let (path, query) = split_query(rest);
        let mut key = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            let value = decode_text(uri, name, value)?;
            let location = match name {
                "handle" => KeyLocation::Handle(parse_handle(uri, &value)?),
                "key" if value.is_empty() => {
                    return Err(bad(
                        uri,
                        "tpm:key= needs the path of a TSS2 PRIVATE KEY file",
                    ))
                }
                "key" => KeyLocation::File(PathBuf::from(value)),
                other => {
                    return Err(KeyRefError::UnknownAttribute {
                        reference: without_query(uri),
                        part: "path",
                        attr: shown_name(other),
                        known: "use tpm:handle=0x81… or tpm:key=PATH",
                    })
                }
            };
            if key.replace(location).is_some() {
                return Err(KeyRefError::TpmKey {
                    reference: without_query(uri),
                });
            }
        }
        let key = key.ok_or_else(|| KeyRefError::TpmKey {
            reference: without_query(uri),
        })?;

        let mut tcti = None;
        let mut auth = None;
        let mut parent_auth = None;
        for (name, raw) in query_pairs(query) {
            let value = decode_text(uri, name, raw)?;
            match name {
                "tcti" if value.is_empty() => return Err(bad(uri, "tcti= is empty")),
                "tcti" => set_once(uri, name, &mut tcti, value)?,
                "auth-source" => {
                    let source = parse_source(uri, "auth-source", &value)?;
                    set_once(uri, "the key password", &mut auth, source)?;
                }
                "auth-value" => set_once(
                    uri,
                    "the key password",
                    &mut auth,
                    SecretSource::Value(value),
                )?,
                "parent-auth-source" => {
                    let source = parse_source(uri, "parent-auth-source", &value)?;
                    set_once(uri, name, &mut parent_auth, source)?;
                }
                other => {
                    return Err(KeyRefError::UnknownAttribute {
                        reference: without_query(uri),
                        part: "query",
                        attr: shown_name(other),
                        known: "known: tcti=, auth-source=, parent-auth-source=",
                    })
                }
            }
        }
        let tcti_explicit = tcti.is_some();
        let from_env = if tcti_explicit { None } else { env_tcti() };
        let tcti_search = !tcti_explicit && from_env.is_none();
        let tcti = tcti
            .or(from_env)
            .unwrap_or_else(|| DEFAULT_TCTI.to_string());
        Ok(Self {
            key,
            tcti,
            tcti_explicit,
            tcti_search,
            auth,
            parent_auth,
        })
    }

    /// The key part for messages: `persistent handle 0x81000001` or
    /// `TSS2 key file /etc/app.tss2.pem`.
    pub fn describe_key(&self) -> String {
        match &self.key {
            KeyLocation::Handle(h) => format!("persistent handle {h:#010x}"),
            KeyLocation::File(p) => format!("TSS2 key file {}", p.display()),
        }
    }
}

impl fmt::Display for TpmUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            KeyLocation::Handle(h) => write!(f, "tpm:handle={h:#010x}"),
            KeyLocation::File(p) => {
                f.write_str("tpm:key=")?;
                // Keep '/' readable; escape what would end the attribute or start a query.
                for part in p.to_string_lossy().split('/').enumerate() {
                    if part.0 > 0 {
                        f.write_str("/")?;
                    }
                    write!(f, "{}", escape(part.1))?;
                }
                Ok(())
            }
        }
    }
}

/// The TCTI the environment names ([`TCTI_ENV`], in order), else [`DEFAULT_TCTI`].
pub fn default_tcti() -> String {
    env_tcti().unwrap_or_else(|| DEFAULT_TCTI.to_string())
}

/// The first of [`TCTI_ENV`] that is set and not blank.
fn env_tcti() -> Option<String> {
    TCTI_ENV
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

fn bad(uri: &str, detail: &str) -> KeyRefError {
    KeyRefError::BadValue {
        reference: without_query(uri),
        detail: detail.to_string(),
    }
}

/// A persistent handle: hex `0x81…` (or decimal), inside the persistent range.
fn parse_handle(uri: &str, text: &str) -> Result<u32, KeyRefError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    let handle = parsed.map_err(|_| {
        bad(
            uri,
            &format!(
                "handle=\"{text}\" is not a number; write a persistent handle such as 0x81000001"
            ),
        )
    })?;
    if handle >> 24 != 0x81 {
        return Err(bad(
            uri,
            &format!("handle={text} is not a persistent object handle (0x81000000-0x81FFFFFF); list them with tpm2_getcap handles-persistent"),
        ));
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_files_and_query() {
        let u = TpmUri::parse(
            "tpm:handle=0x81000001?tcti=swtpm:host=127.0.0.1,port=2321&auth-source=env:KEY_PASS",
        )
        .unwrap();
        assert_eq!(u.key, KeyLocation::Handle(0x8100_0001));
        assert_eq!(u.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert!(u.tcti_explicit);
        assert_eq!(u.auth, Some(SecretSource::Env("KEY_PASS".into())));
        let u =
            TpmUri::parse("tpm:key=/etc/my%20app.tss2.pem?parent-auth-source=file:/run/o").unwrap();
        assert_eq!(u.key, KeyLocation::File("/etc/my app.tss2.pem".into()));
        assert_eq!(u.parent_auth, Some(SecretSource::File("/run/o".into())));
        assert_eq!(u.describe_key(), "TSS2 key file /etc/my app.tss2.pem");
        assert_eq!(u.to_string(), "tpm:key=/etc/my%20app.tss2.pem");
        let u = TpmUri::parse("tpm:handle=0x81000001?auth-value=secret").unwrap();
        assert_eq!(u.to_string(), "tpm:handle=0x81000001");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        for (uri, needle) in [
            ("tpm:", "handle=0x81"),
            ("tpm:handle=0x40000001", "not a persistent object handle"),
            ("tpm:handle=zz", "not a number"),
            ("tpm:key=", "needs the path"),
            ("tpm:handle=0x81000001;key=a", "names one key"),
            ("tpm:slot=1", "unknown path attribute \"slot\""),
            (
                "tpm:handle=0x81000001?pin-source=env:X",
                "unknown query attribute",
            ),
            ("tpm:handle=0x81000001?auth-source=hunter2", "env:VAR"),
            ("tpm:handle=0x81000001?tcti=a&tcti=b", "twice"),
        ] {
            let e = TpmUri::parse(uri).unwrap_err().to_string();
            assert!(e.contains(needle), "{uri}: {e}");
        }
    }
}
