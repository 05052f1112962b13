//! Secrets (PINs, key passwords) and where they come from. A [`Secret`] never prints
//! (its `Debug` is `[redacted]`) and is zeroized on drop. A [`SecretSource`] names where
//! to read one: an environment variable, a file only its owner can read, an interactive
//! no-echo prompt, or — discouraged, because argv is visible in `ps` and shell history —
//! a literal value.

use std::fmt;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A secret string; `Debug` prints `[redacted]`, memory is zeroized on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a value (taking ownership, so no copy is left behind).
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret's text, for handing to the backend that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `env:VAR`
    Env(String),
    /// `file:PATH` (the first line, without its line ending)
    File(PathBuf),
    /// `prompt`: ask on the terminal without echo
    Prompt,
    /// A literal from a `pin-value=`/`password-value=` query attribute.
    Value(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "env:{var}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Prompt => f.write_str("prompt"),
            Self::Value(_) => f.write_str("value:[redacted]"),
        }
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret source \"{0}\" is not understood: use env:VAR, file:PATH or prompt")]
    BadSource(String),
    #[error("environment variable {0} is not set (named by the secret source env:{0})")]
    EnvMissing(String),
    #[error("cannot read secret file {path}: {source}")]
    FileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {path} can be read or written by others (mode {mode:o}); run: chmod 600 {path}")]
    FileTooOpen { path: PathBuf, mode: u32 },
    #[error("no {what} was given and standard input is not a terminal to ask on; add {hint}")]
    NoTerminal { what: String, hint: String },
    #[error("reading the {what} from the terminal failed: {source}")]
    Prompt {
        what: String,
        source: std::io::Error,
    },
}

impl std::str::FromStr for SecretSource {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(var) = s.strip_prefix("env:") {
            if var.is_empty() || var.contains('=') {
                return Err(SecretError::BadSource(s.to_string()));
            }
            return Ok(Self::Env(var.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::BadSource(s.to_string()));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if s == "prompt" {
            return Ok(Self::Prompt);
        }
        // RFC 7512 allows a bare absolute path as pin-source.
        if s.starts_with('/') {
            return Ok(Self::File(PathBuf::from(s)));
        }
        Err(SecretError::BadSource(s.to_string()))
    }
}

impl SecretSource {
    /// Read the secret. `what` names it in prompts and errors ("password for app.pfx").
    ///
    /// # Errors
    /// The variable is unset, the file is unreadable or readable by others, or a prompt
    /// is needed while standard input is not a terminal.
    pub fn read(&self, what: &str) -> Result<Secret, SecretError> {
        match self {
            Self::Env(var) => std::env::var(var)
                .map(Secret::new)
                .map_err(|_| SecretError::EnvMissing(var.clone())),
            Self::File(path) => read_file(path),
            Self::Value(v) => Ok(Secret::new(v.clone())),
            Self::Prompt => prompt(
                what,
                "?password-source=env:VAR or file:PATH to the key reference",
            ),
        }
    }

    /// Whether this source puts the secret itself on the command line.
    pub fn is_literal(&self) -> bool {
        matches!(self, Self::Value(_))
    }
}

/// Ask on the terminal, without echo. Refused when standard input is not a terminal, so a
/// service never hangs waiting for input nobody will type.
///
/// # Errors
/// [`SecretError::NoTerminal`] when there is no terminal; the hint says what to add instead.
pub fn prompt(what: &str, hint: &str) -> Result<Secret, SecretError> {
    if !std::io::stdin().is_terminal() {
        return Err(SecretError::NoTerminal {
            what: what.to_string(),
            hint: hint.to_string(),
        });
    }
    rpassword::prompt_password(format!("Enter {what}: "))
        .map(Secret::new)
        .map_err(|source| SecretError::Prompt {
            what: what.to_string(),
            source,
        })
}

fn read_file(path: &Path) -> Result<Secret, SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| SecretError::FileRead {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(err)?.permissions().mode();
    // Owner-only, or group-readable for a service group; never other-readable or group-writable.
    if mode & 0o027 != 0 {
        return Err(SecretError::FileTooOpen {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let mut text = Zeroizing::new(std::fs::read_to_string(path).map_err(err)?);
    let first_line_len = text.find(['\r', '\n']).unwrap_or(text.len());
    text.truncate(first_line_len);
    Ok(Secret::new(std::mem::take(&mut *text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn parse_sources() {
        assert_eq!(
            "env:PIN".parse::<SecretSource>().unwrap(),
            SecretSource::Env("PIN".into())
        );
        assert_eq!(
            "file:/run/pin".parse::<SecretSource>().unwrap(),
            SecretSource::File("/run/pin".into())
        );
        assert_eq!(
            "/run/pin".parse::<SecretSource>().unwrap(),
            SecretSource::File("/run/pin".into())
        );
        assert_eq!(
            "prompt".parse::<SecretSource>().unwrap(),
            SecretSource::Prompt
        );
        for bad in ["env:", "hunter2", "file:", "pass:x"] {
            let err = bad.parse::<SecretSource>().unwrap_err().to_string();
            assert!(err.contains("env:VAR"), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "[redacted]");
        assert!(!format!("{:?}", SecretSource::Value("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn file_source_reads_first_line_and_refuses_open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "12345678\r\nsecond line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            SecretSource::File(path.clone())
                .read("PIN")
                .unwrap()
                .expose(),
            "12345678"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(
            SecretSource::File(path.clone()).read("PIN").is_ok(),
            "group-readable is a service pattern"
        );
        for mode in [0o644, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SecretSource::File(path.clone())
                .read("PIN")
                .unwrap_err()
                .to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
    }

    #[test]
    fn env_source_names_the_variable() {
        let err = SecretSource::Env("CERTASSERT_TEST_UNSET_VAR".into())
            .read("PIN")
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("CERTASSERT_TEST_UNSET_VAR is not set"));
    }
}
