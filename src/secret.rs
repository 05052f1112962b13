//! Secrets (PINs, key passwords) and where they come from. A [`Secret`] never prints
//! (its `Debug` is `[redacted]`) and is zeroized on drop. A [`SecretSource`] names where
//! to read one: an environment variable, a file only its owner can read, a systemd
//! credential (`credential:NAME`: `$CREDENTIALS_DIRECTORY/NAME`, which `LoadCredential=`
//! provides to a service), the caller's
//! [`Callbacks`] (`prompt`), or — discouraged, because argv is visible in `ps` and shell
//! history — a literal value.
//!
//! The library never touches a terminal: when a secret has to be asked for, it asks the
//! [`Callbacks`] its caller passed (the CLI's prompt reads without echo; a service passes
//! [`NoCallbacks`], and the error then says which `…-source=` to add). The model is the
//! `age` crate's `Callbacks`.

use std::fmt;
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
    /// `file:PATH` (the first line, without its line ending; a regular file of at most 4 KiB)
    File(PathBuf),
    /// `credential:NAME`: systemd's `$CREDENTIALS_DIRECTORY/NAME` (read as `file:` is),
    /// the credential a unit's `LoadCredential=NAME:PATH` or `SetCredential=` provides.
    Credential(String),
    /// `prompt`: ask through the caller's [`Callbacks`] (the CLI: on the terminal, without echo)
    Prompt,
    /// A literal from a `pin-value=`/`password-value=` query attribute.
    Value(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "env:{var}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Credential(name) => write!(f, "credential:{name}"),
            Self::Prompt => f.write_str("prompt"),
            Self::Value(_) => f.write_str("value:[redacted]"),
        }
    }
}

/// What kind of secret is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretKind {
    /// A PKCS#11 token's user PIN (`pin-source=`).
    Pin,
    /// A key file's password (`password-source=`).
    Password,
    /// A TPM key's authorization value (`auth-source=`).
    TpmAuth,
    /// The TPM owner hierarchy's or a parent key's password (`parent-auth-source=`).
    TpmParentAuth,
}

impl SecretKind {
    /// The key-reference attribute that supplies this secret without asking.
    pub fn source_attribute(self) -> &'static str {
        match self {
            Self::Pin => "pin-source",
            Self::Password => "password-source",
            Self::TpmAuth => "auth-source",
            Self::TpmParentAuth => "parent-auth-source",
        }
    }
}

/// A request for a secret, handed to [`Callbacks::request_secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretRequest {
    /// What kind of secret it is.
    pub kind: SecretKind,
    /// What it unlocks, for the prompt: `user PIN for token "hsm"`, `password for app.pfx`.
    pub description: String,
}

impl SecretRequest {
    /// A request for a `kind` secret described by `description`.
    pub fn new(kind: SecretKind, description: impl Into<String>) -> Self {
        Self {
            kind,
            description: description.into(),
        }
    }

    /// The error for a request nobody could answer: it names the attribute to add.
    pub fn cannot_ask(&self) -> SecretError {
        SecretError::CannotAsk {
            what: self.description.clone(),
            attribute: self.kind.source_attribute(),
        }
    }
}

/// How the library asks its caller for a secret no source supplies. Object-safe,
/// `Send + Sync`; modelled on the `age` crate's `Callbacks`.
///
/// The library calls it at most once per secret while opening a key, never to retry a
/// rejected secret (a YubiKey locks after three wrong PINs).
pub trait Callbacks: Send + Sync {
    /// Ask for the secret `request` describes. `None` means it cannot be asked for here
    /// (no terminal, a service, the user gave up); the caller then reports which
    /// `…-source=` attribute to add.
    fn request_secret(&self, request: &SecretRequest) -> Option<Secret>;
}

/// Callbacks that never ask: for services, tests and anything without a user.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallbacks;

impl Callbacks for NoCallbacks {
    fn request_secret(&self, _: &SecretRequest) -> Option<Secret> {
        None
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The source is not `env:VAR`, `file:PATH`, `/abs/path` or `prompt`; the message says
    /// what is wrong. The text is never kept: a value that is not a source may be the
    /// secret itself, pasted in.
    #[error("{0}")]
    BadSource(&'static str),
    /// `credential:NAME` outside a systemd service: `$CREDENTIALS_DIRECTORY` is not set.
    #[error("credential:{name} reads $CREDENTIALS_DIRECTORY/{name}, but CREDENTIALS_DIRECTORY is not set: systemd sets it for a service with LoadCredential={name}:/path/to/secret (or SetCredential=); elsewhere use file:PATH or env:VAR")]
    NoCredentialsDirectory {
        /// The credential's name.
        name: String,
    },
    /// `env:VAR` names an unset variable.
    #[error("environment variable {0} is not set (named by the secret source env:{0})")]
    EnvMissing(String),
    /// `file:PATH` cannot be read: missing, not a regular file, over
    /// [`Limit::SECRET`](crate::input::Limit::SECRET) (4 KiB), or not UTF-8.
    #[error("cannot read secret file {path}: {source}")]
    FileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `file:PATH` can be read or written by others.
    #[error("secret file {path} can be read or written by others (mode {mode:o}); run: chmod 600 {path}")]
    FileTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret had to be asked for and the caller's [`Callbacks`] could not ask.
    #[error("no {what} was given and none can be asked for (standard input is not a terminal, or the program cannot prompt); add ?{attribute}=env:VAR or ?{attribute}=file:PATH to the key reference")]
    CannotAsk {
        /// What the secret unlocks.
        what: String,
        /// The key-reference attribute that would supply it.
        attribute: &'static str,
    },
}

impl std::str::FromStr for SecretSource {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(var) = s.strip_prefix("env:") {
            if var.is_empty() || var.contains('=') {
                return Err(SecretError::BadSource(
                    "the secret source env: needs a variable name (without '='): use env:VAR, file:PATH, credential:NAME or prompt",
                ));
            }
            return Ok(Self::Env(var.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::BadSource(
                    "the secret source file: needs a path: use env:VAR, file:PATH, credential:NAME or prompt",
                ));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(name) = s.strip_prefix("credential:") {
            // systemd's credential names: a file name in $CREDENTIALS_DIRECTORY.
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                return Err(SecretError::BadSource(
                    "the secret source credential: needs a systemd credential name (a file name in $CREDENTIALS_DIRECTORY, without '/'): use credential:NAME",
                ));
            }
            return Ok(Self::Credential(name.to_string()));
        }
        if s == "prompt" {
            return Ok(Self::Prompt);
        }
        // RFC 7512 allows a bare absolute path as pin-source.
        if s.starts_with('/') {
            return Ok(Self::File(PathBuf::from(s)));
        }
        Err(SecretError::BadSource(
            "the secret source is not env:VAR, file:PATH, an absolute path, credential:NAME or prompt (the value is not shown: it may be the secret itself)",
        ))
    }
}

impl SecretSource {
    /// Read the secret; `prompt` asks `callbacks` with `request`.
    ///
    /// # Errors
    /// The variable is unset, the file is unreadable or readable by others, or the
    /// source is `prompt` and the callbacks cannot ask ([`SecretError::CannotAsk`]).
    pub fn read(
        &self,
        request: &SecretRequest,
        callbacks: &dyn Callbacks,
    ) -> Result<Secret, SecretError> {
        match self {
            Self::Env(var) => std::env::var(var)
                .map(Secret::new)
                .map_err(|_| SecretError::EnvMissing(var.clone())),
            Self::File(path) => read_file(path),
            Self::Credential(name) => read_credential(
                std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()),
                name,
            ),
            Self::Value(v) => Ok(Secret::new(v.clone())),
            Self::Prompt => callbacks
                .request_secret(request)
                .ok_or_else(|| request.cannot_ask()),
        }
    }

    /// Whether this source puts the secret itself on the command line.
    pub fn is_literal(&self) -> bool {
        matches!(self, Self::Value(_))
    }
}

/// `credential:NAME`: the file NAME in systemd's credentials directory `dir`.
fn read_credential(dir: Option<std::ffi::OsString>, name: &str) -> Result<Secret, SecretError> {
    let dir = dir.ok_or_else(|| SecretError::NoCredentialsDirectory {
        name: name.to_string(),
    })?;
    read_file(&Path::new(&dir).join(name))
}

fn read_file(path: &Path) -> Result<Secret, SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| SecretError::FileRead {
        path: path.to_path_buf(),
        source,
    };
    // A directory, device or FIFO is refused before its mode is looked at.
    let mode = crate::input::regular_file(path)
        .map_err(err)?
        .permissions()
        .mode();
    // Owner-only, or group-readable for a service group; never other-readable or group-writable.
    if mode & 0o027 != 0 {
        return Err(SecretError::FileTooOpen {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let mut text = crate::input::read_text_file(path, crate::input::Limit::SECRET).map_err(err)?;
    let first_line_len = text.find(['\r', '\n']).unwrap_or(text.len());
    text.truncate(first_line_len);
    Ok(Secret::new(std::mem::take(&mut *text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn pin() -> SecretRequest {
        SecretRequest::new(SecretKind::Pin, "PIN")
    }

    #[test]
    fn prompt_asks_the_callbacks_and_names_the_attribute_when_it_cannot() {
        struct Answer;
        impl Callbacks for Answer {
            fn request_secret(&self, request: &SecretRequest) -> Option<Secret> {
                assert_eq!(request.kind, SecretKind::TpmAuth);
                Some(Secret::new("typed".into()))
            }
        }
        let request = SecretRequest::new(SecretKind::TpmAuth, "password of the TPM key");
        let got = SecretSource::Prompt.read(&request, &Answer).unwrap();
        assert_eq!(got.expose(), "typed");
        let err = SecretSource::Prompt
            .read(&request, &NoCallbacks)
            .unwrap_err()
            .to_string();
        assert!(err.contains("?auth-source=env:VAR"), "{err}");
        assert!(!err.contains("password-source"), "{err}");
    }

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
    fn a_source_that_does_not_parse_is_never_echoed() {
        // A PIN pasted where a source belongs is the secret itself.
        for bad in ["Zq7canary", "env:Zq7canary=1", "pass:Zq7canary", "file"] {
            let e = bad.parse::<SecretSource>().unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("Zq7canary"), "{bad}: {shown}");
            assert!(shown.contains("env:VAR"), "{bad}: {shown}");
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
                .read(&pin(), &NoCallbacks)
                .unwrap()
                .expose(),
            "12345678"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(
            SecretSource::File(path.clone())
                .read(&pin(), &NoCallbacks)
                .is_ok(),
            "group-readable is a service pattern"
        );
        for mode in [0o644, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SecretSource::File(path.clone())
                .read(&pin(), &NoCallbacks)
                .unwrap_err()
                .to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
    }

    #[test]
    fn file_source_refuses_special_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'1'; 4097]).unwrap();
        std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
        for (path, says) in [
            (
                PathBuf::from("/dev/zero"),
                "a character device, not a regular file",
            ),
            (dir.path().to_path_buf(), "a directory, not a regular file"),
            (fifo, "a FIFO (named pipe), not a regular file"),
            (big.clone(), "larger than 4 KiB"),
        ] {
            let err = SecretSource::File(path.clone())
                .read(&pin(), &NoCallbacks)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{path:?}: {err}");
        }
        std::fs::write(&big, vec![b'1'; 4096]).unwrap();
        let got = SecretSource::File(big).read(&pin(), &NoCallbacks).unwrap();
        assert_eq!(got.expose().len(), 4096);
    }

    #[test]
    fn credential_sources_read_the_credentials_directory() {
        assert_eq!(
            "credential:pin".parse::<SecretSource>().unwrap(),
            SecretSource::Credential("pin".into())
        );
        assert_eq!(
            format!("{:?}", SecretSource::Credential("pin".into())),
            "credential:pin"
        );
        for bad in [
            "credential:",
            "credential:../pin",
            "credential:a/b",
            "credential:..",
        ] {
            let err = bad.parse::<SecretSource>().unwrap_err().to_string();
            assert!(err.contains("credential:NAME"), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pin"), "4321\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("pin"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        let got = read_credential(Some(dir.path().into()), "pin").unwrap();
        assert_eq!(got.expose(), "4321");
        let err = read_credential(None, "pin").unwrap_err().to_string();
        assert!(err.contains("CREDENTIALS_DIRECTORY is not set"), "{err}");
        assert!(err.contains("LoadCredential=pin:"), "{err}");
        let err = read_credential(Some(dir.path().into()), "other")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/other"), "{err}");
    }

    #[test]
    fn env_source_names_the_variable() {
        let err = SecretSource::Env("CERTASSERT_TEST_UNSET_VAR".into())
            .read(&pin(), &NoCallbacks)
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("CERTASSERT_TEST_UNSET_VAR is not set"));
    }
}
