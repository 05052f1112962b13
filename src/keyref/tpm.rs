//! The `tpm:` key reference: `tpm:handle=0x81000001` (a persistent key) or
//! `tpm:key=PATH` (a `TSS2 PRIVATE KEY` file), with an optional query
//! `?tcti=…&auth-source=…&parent-auth-source=…`. Parsing only; nothing here talks to a TPM.

use crate::keyref::percent_decode;
use crate::secret::SecretSource;
use std::path::PathBuf;

/// The TCTI used when neither the reference nor the environment names one: the kernel's
/// resource manager, which also flushes whatever a crashed process left loaded.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// Where the key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A persistent object (`0x81000000..=0x81FFFFFF`).
    Handle(u32),
    /// A TSS2 PEM key file, loaded under the standard storage primary (or its persistent parent).
    File(PathBuf),
}

/// A parsed `tpm:` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmUri {
    /// The key.
    pub key: KeyLocation,
    /// The TCTI configuration string (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`, `tabrmd`).
    pub tcti: String,
    /// Whether `tcti` came from the reference itself (rather than env or the default).
    pub tcti_explicit: bool,
    /// Where the key's password (authValue) comes from.
    pub auth: Option<SecretSource>,
    /// Where the owner hierarchy's (or a persistent parent's) password comes from.
    pub parent_auth: Option<SecretSource>,
}

impl TpmUri {
    /// Parse a whole `tpm:…` reference.
    ///
    /// # Errors
    /// A message naming the attribute that is missing, unknown, repeated or malformed.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("tpm:")
            .ok_or_else(|| format!("\"{uri}\" is not a tpm: reference"))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut key = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            let value = decode(name, value)?;
            let location = match name {
                "handle" => KeyLocation::Handle(parse_handle(&value)?),
                "key" if value.is_empty() => {
                    return Err("tpm:key= needs the path of a TSS2 PRIVATE KEY file".into())
                }
                "key" => KeyLocation::File(PathBuf::from(value)),
                other => {
                    return Err(format!(
                        "unknown attribute \"{other}\" in a tpm: reference; use tpm:handle=0x81… or tpm:key=PATH"
                    ))
                }
            };
            if key.replace(location).is_some() {
                return Err(
                    "a tpm: reference names one key: give handle= or key=, once".to_string()
                );
            }
        }
        let key = key.ok_or(
            "a tpm: reference needs handle=0x81… (a persistent key) or key=PATH (a TSS2 PRIVATE KEY file)",
        )?;

        let mut tcti = None;
        let mut auth = None;
        let mut parent_auth = None;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(name, value)?;
            let repeated = match name {
                "tcti" if value.is_empty() => return Err("tcti= is empty".into()),
                "tcti" => tcti.replace(value).is_some(),
                "auth-source" => auth.replace(source(name, &value)?).is_some(),
                "auth-value" => auth.replace(SecretSource::Value(value)).is_some(),
                "parent-auth-source" => parent_auth.replace(source(name, &value)?).is_some(),
                other => {
                    return Err(format!(
                        "unknown query attribute \"{other}\" in a tpm: reference (known: tcti=, auth-source=, parent-auth-source=)"
                    ))
                }
            };
            if repeated {
                return Err(format!("{name} is given twice in the tpm: reference"));
            }
        }
        let tcti_explicit = tcti.is_some();
        let tcti = tcti.unwrap_or_else(default_tcti);
        Ok(Self {
            key,
            tcti,
            tcti_explicit,
            auth,
            parent_auth,
        })
    }

    /// The key part for messages: `handle 0x81000001` or `key file /etc/app.tss2.pem`.
    pub fn describe_key(&self) -> String {
        match &self.key {
            KeyLocation::Handle(h) => format!("persistent handle {h:#010x}"),
            KeyLocation::File(p) => format!("TSS2 key file {}", p.display()),
        }
    }
}

/// `TPM2TOOLS_TCTI`, then `TCTI`, else [`DEFAULT_TCTI`].
pub fn default_tcti() -> String {
    ["TPM2TOOLS_TCTI", "TCTI"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_TCTI.to_string())
}

fn decode(name: &str, value: &str) -> Result<String, String> {
    percent_decode(value)
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| format!("{name}= in the tpm: reference is not valid percent-encoded UTF-8"))
}

fn source(name: &str, value: &str) -> Result<SecretSource, String> {
    value
        .parse()
        .map_err(|e| format!("{name}= in the tpm: reference: {e}"))
}

/// A persistent handle: hex `0x81…` (or decimal), inside the persistent range.
fn parse_handle(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    let handle = parsed.map_err(|_| {
        format!("handle=\"{text}\" is not a number; write a persistent handle such as 0x81000001")
    })?;
    if handle >> 24 != 0x81 {
        return Err(format!(
            "handle={text} is not a persistent object handle (0x81000000-0x81FFFFFF); list them with tpm2_getcap handles-persistent"
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
    }

    #[test]
    fn errors_name_what_is_wrong() {
        for (uri, needle) in [
            ("tpm:", "handle=0x81"),
            ("tpm:handle=0x40000001", "not a persistent object handle"),
            ("tpm:handle=zz", "not a number"),
            ("tpm:key=", "needs the path"),
            ("tpm:handle=0x81000001;key=a", "names one key"),
            ("tpm:slot=1", "unknown attribute \"slot\""),
            (
                "tpm:handle=0x81000001?pin-source=env:X",
                "unknown query attribute",
            ),
            ("tpm:handle=0x81000001?auth-source=hunter2", "env:VAR"),
            ("tpm:handle=0x81000001?tcti=a&tcti=b", "twice"),
        ] {
            let e = TpmUri::parse(uri).unwrap_err();
            assert!(e.contains(needle), "{uri}: {e}");
        }
    }
}
