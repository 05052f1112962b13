//! Named profiles: a TOML file of `[profile.NAME]` tables, each naming one app
//! registration's credential — the key, its certificate, the tenant and client id, the
//! authority host, the signing algorithm, whether to send `x5c`, and extra CAs to trust —
//! so a command can say `--profile prod` instead of repeating them.
//!
//! ```toml
//! [profile.prod]
//! key = "pkcs11:token=app;object=app?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin"
//! cert = "app.cert.pem"          # relative to this file's directory
//! tenant = "contoso.onmicrosoft.com"
//! client_id = "2f877daa-b6f5-42a3-8430-acf238b234e1"
//! authority_host = "login.microsoftonline.us"   # a bare host means https://
//! alg = "PS256"
//! x5c = true
//! ca_file = "/etc/ssl/corp-ca.pem"
//! key_id = "0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f"   # written by cert rotate
//! ```
//!
//! The model is deliberately flat: a [`Config`] is the file's path and its profiles; a
//! [`Profile`] is the eight optional fields, already typed (the key parsed as a
//! [`KeyRef`], the algorithm as an [`Algorithm`]) and with every relative path made
//! relative to the file's directory — in `key` too (a key file, `tpm:key=`, a
//! `…-source=file:` secret, `module-path=`). Each field remembers where it was written
//! ([`Profile::location`]) so a caller can name the line a value came from. A tool that
//! rewrites a profile (rotating its key and certificate) edits the file itself, keeping
//! its comments, and loads it again: [`rewrite_profile`] replaces one profile's `key`,
//! `cert` and `key_id` (the Graph keyId of the credential `key` is, which `cert rotate`
//! records so that `cert retire` can tell which credential is the profile's own) in
//! place, checks that the new text reads back as intended, and renames it over the old
//! file atomically (same directory, same mode), so a reader never sees half a file.
//!
//! Which file: the one named explicitly, else `$XDG_CONFIG_HOME/certassert/config.toml`
//! (`~/.config/…` when that variable is unset), else `/etc/certassert/config.toml`
//! ([`search_paths`], [`Config::find`]). The file is read with the
//! [`Limit::CONFIG`](crate::input::Limit::CONFIG) bound (64 KiB) and must be a regular
//! file. Every error names the file and, for what is in it, the line and column: a TOML
//! syntax error, an unknown key (a typo is not ignored), a value of the wrong type, a key
//! reference that does not parse, an algorithm certassert does not sign, an empty value.
//! The messages name no command-line flag; the CLI adds those.

use crate::keyref::{KeyLocation, KeyRef, KeyRefError};
use crate::secret::SecretSource;
use crate::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The file name looked for in each configuration directory.
pub const FILE_NAME: &str = "config.toml";

/// The system-wide config file, looked at last.
pub const SYSTEM_PATH: &str = "/etc/certassert/config.toml";

/// A place in a config file: `path:line:column` (both 1-based, columns in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file.
    pub path: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`, the contents of `path`.
    fn at(path: &Path, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            path: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why a config file or a profile could not be used. Each message names the file (and
/// the line and column for what is in it) and what to change; none names a flag.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read: missing, not a regular file, over 64 KiB, or not UTF-8.
    #[error("cannot read config file {path}: {source}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, has a key certassert does not know, or a value of the wrong
    /// type; `message` is the TOML parser's, which never quotes the line.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// A profile's `key` is not a key reference certassert understands.
    #[error("{at}: profile \"{profile}\": key: {source}")]
    Key {
        /// Where the value is.
        at: Location,
        /// The profile.
        profile: String,
        /// Why it does not parse (the reference is shown without its query).
        source: Box<KeyRefError>,
    },
    /// A field has a value of the right type that is still wrong (an empty string, an
    /// algorithm certassert cannot sign with); `detail` says what to write instead.
    #[error("{at}: profile \"{profile}\": {field}: {detail}")]
    Value {
        /// Where the value is.
        at: Location,
        /// The profile.
        profile: String,
        /// The field, as written in the file.
        field: &'static str,
        /// What is wrong and what is expected.
        detail: String,
    },
    /// A profile could not be rewritten: the new text would not read back as intended
    /// (an inline table, a relative path that would mean another file from the config
    /// file's directory), or the file could not be replaced.
    #[error("cannot rewrite profile \"{profile}\" in {path}: {detail}", path = .path.display())]
    Rewrite {
        /// The config file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// What went wrong, and what to write by hand.
        detail: String,
    },
    /// The profile asked for is not in the file; `known` lists the ones that are.
    #[error("no profile \"{name}\" in {path}: {}", known_profiles(.known), path = .path.display())]
    NoProfile {
        /// The name asked for.
        name: String,
        /// The config file.
        path: PathBuf,
        /// The profiles it has, sorted.
        known: Vec<String>,
    },
    /// A profile was asked for and there is no config file where one is looked for.
    #[error("no profile \"{name}\": there is no config file ({}); create one with a [profile.{name}] table", searched_paths(.searched))]
    NoConfig {
        /// The name asked for.
        name: String,
        /// Where a file was looked for.
        searched: Vec<PathBuf>,
    },
}

fn known_profiles(known: &[String]) -> String {
    if known.is_empty() {
        "it has no [profile.NAME] table".to_string()
    } else {
        format!("it has {}", known.join(", "))
    }
}

fn searched_paths(searched: &[PathBuf]) -> String {
    let shown: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    format!("looked for {}", shown.join(", then "))
}

/// One `[profile.NAME]` table: any of its fields may be absent. Relative paths are
/// already made relative to the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// The profile's name (the `NAME` of `[profile.NAME]`).
    pub name: String,
    /// `key`: the key reference, parsed.
    pub key: Option<KeyRef>,
    /// `cert`: the certificate (chain) file.
    pub cert: Option<PathBuf>,
    /// `tenant`: the directory (tenant) id or a verified domain.
    pub tenant: Option<String>,
    /// `client_id`: the application (client) id.
    pub client_id: Option<String>,
    /// `authority_host`: as written (the CLI reads a bare host such as
    /// `login.microsoftonline.us` as `https://login.microsoftonline.us`, as azure-identity
    /// reads `AZURE_AUTHORITY_HOST`).
    pub authority_host: Option<String>,
    /// `alg`: `RS256` or `PS256`.
    pub alg: Option<Algorithm>,
    /// `x5c`: send the certificate chain in the assertion header.
    pub x5c: Option<bool>,
    /// `ca_file`: extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// `key_id`: the Graph `keyId` of the credential `key` is (a GUID), as `cert rotate`
    /// recorded it.
    pub key_id: Option<String>,
    /// Where each field was written, by its name in the file.
    locations: BTreeMap<&'static str, Location>,
    /// The config file the profile is in.
    file: PathBuf,
}

impl Profile {
    /// Where `field` (`key`, `cert`, `tenant`, `client_id`, `authority_host`, `alg`,
    /// `x5c`, `ca_file`, `key_id`) was written, if the profile has it.
    pub fn location(&self, field: &str) -> Option<&Location> {
        self.locations.get(field)
    }

    /// The config file the profile is in (absolute).
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// A loaded config file: its path and its profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    path: PathBuf,
    profiles: BTreeMap<String, Profile>,
}

/// The file as TOML, before checking: unknown keys are refused by serde.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    profile: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    key: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    tenant: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    authority_host: Option<Spanned<String>>,
    alg: Option<Spanned<String>>,
    x5c: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    key_id: Option<Spanned<String>>,
}

/// Where a config file is looked for when none is named, in order:
/// `$XDG_CONFIG_HOME/certassert/config.toml` (else `$HOME/.config/certassert/config.toml`),
/// then [`SYSTEM_PATH`].
pub fn search_paths() -> Vec<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let user_dir = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".config")));
    user_dir
        .map(|dir| dir.join("certassert").join(FILE_NAME))
        .into_iter()
        .chain(std::iter::once(PathBuf::from(SYSTEM_PATH)))
        .collect()
}

impl Config {
    /// Load and check the config file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read (missing, not a regular file, over
    /// 64 KiB, not UTF-8); [`Error::Syntax`], [`Error::Key`] or [`Error::Value`], with the
    /// line and column, for what is wrong in it.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            crate::input::read_text_file(path, crate::input::Limit::CONFIG).map_err(|source| {
                Error::Read {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Self::parse(&text, path)
    }

    /// The file named by `explicit`, which must exist, else the first of
    /// [`search_paths`] that exists; `None` when none is named and none exists.
    ///
    /// # Errors
    /// As [`Config::load`]; a named file that does not exist is [`Error::Read`].
    pub fn find(explicit: Option<&Path>) -> Result<Option<Self>, Error> {
        if let Some(path) = explicit {
            return Self::load(path).map(Some);
        }
        match search_paths().into_iter().find(|p| p.exists()) {
            Some(path) => Self::load(&path).map(Some),
            None => Ok(None),
        }
    }

    /// Parse `text` as the contents of the config file `path` (relative paths in it are
    /// taken from `path`'s directory).
    ///
    /// # Errors
    /// As [`Config::load`], except reading.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::Syntax {
            at: Location::at(&path, text, e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        let mut profiles = BTreeMap::new();
        for (name, raw) in raw.profile {
            let profile = check(&path, &base, text, &name, raw)?;
            profiles.insert(name, profile);
        }
        Ok(Self { path, profiles })
    }

    /// The profile called `name`.
    ///
    /// # Errors
    /// [`Error::NoProfile`], listing the profiles the file has.
    pub fn profile(&self, name: &str) -> Result<&Profile, Error> {
        self.profiles.get(name).ok_or_else(|| Error::NoProfile {
            name: name.to_string(),
            path: self.path.clone(),
            known: self.profiles.keys().cloned().collect(),
        })
    }

    /// Every profile, by name.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The file this was loaded from (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Type and rebase one raw profile.
fn check(
    path: &Path,
    base: &Path,
    text: &str,
    name: &str,
    raw: RawProfile,
) -> Result<Profile, Error> {
    let mut locations = BTreeMap::new();
    let mut at = |field: &'static str, span: std::ops::Range<usize>| {
        let location = Location::at(path, text, span.start);
        locations.insert(field, location.clone());
        location
    };
    let mut string = |field: &'static str, value: Option<Spanned<String>>| {
        let Some(value) = value else {
            return Ok(None);
        };
        let location = at(field, value.span());
        let value = value.into_inner();
        if value.trim().is_empty() {
            return Err(Error::Value {
                at: location,
                profile: name.to_string(),
                field,
                detail: "is empty; give a value or leave the line out".into(),
            });
        }
        Ok(Some((value, location)))
    };
    let key = match string("key", raw.key)? {
        Some((text, location)) => {
            let keyref: KeyRef = text.parse().map_err(|source| Error::Key {
                at: location,
                profile: name.to_string(),
                source: Box::new(source),
            })?;
            Some(rebase_key(keyref, base))
        }
        None => None,
    };
    let cert = string("cert", raw.cert)?.map(|(p, _)| base.join(p));
    let tenant = string("tenant", raw.tenant)?.map(|(v, _)| v);
    let client_id = string("client_id", raw.client_id)?.map(|(v, _)| v);
    let authority_host = string("authority_host", raw.authority_host)?.map(|(v, _)| v);
    let alg = match string("alg", raw.alg)? {
        Some((text, location)) => {
            Some(text.parse::<Algorithm>().map_err(|detail| Error::Value {
                at: location,
                profile: name.to_string(),
                field: "alg",
                detail,
            })?)
        }
        None => None,
    };
    let ca_file = string("ca_file", raw.ca_file)?.map(|(p, _)| base.join(p));
    let key_id = match string("key_id", raw.key_id)? {
        Some((id, location)) if !crate::graph::is_guid(&id) => {
            return Err(Error::Value {
                at: location,
                profile: name.to_string(),
                field: "key_id",
                detail: "is not a GUID (the keyId Graph gave the credential)".into(),
            })
        }
        other => other.map(|(v, _)| v),
    };
    let x5c = raw.x5c.map(|v| {
        at("x5c", v.span());
        v.into_inner()
    });
    Ok(Profile {
        name: name.to_string(),
        key,
        cert,
        tenant,
        client_id,
        authority_host,
        alg,
        x5c,
        ca_file,
        key_id,
        locations,
        file: path.to_path_buf(),
    })
}

/// What [`rewrite_profile`] sets in a profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ProfileUpdate {
    /// The new `key`, as a key reference's text; relative paths in it are taken from the
    /// current directory (and must mean the same file from the config file's).
    pub key: Option<String>,
    /// The new `cert` (written as an absolute path).
    pub cert: Option<PathBuf>,
    /// The new `key_id` (a GUID).
    pub key_id: Option<String>,
}

impl ProfileUpdate {
    /// An update of `key`, `cert` and `key_id`, each optional.
    pub fn new(key: Option<String>, cert: Option<PathBuf>, key_id: Option<String>) -> Self {
        Self { key, cert, key_id }
    }
}

/// A field to set: its name, where its value is now (if it is there), the new value.
type FieldEdit<'a> = (
    &'static str,
    Option<&'a Spanned<String>>,
    Option<&'a String>,
);

/// A TOML basic string holding `value`.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Rewrite profile `name` of the config file at `path` with `update`, keeping the rest
/// of the file (comments, other profiles, order) as it is: a field that is there gets
/// its value replaced, a missing one a new line after the profile's last field. The new
/// text is parsed again and must give the profile exactly the new values before it
/// replaces the file — written beside it with the same mode, synced, then renamed over
/// it, so a process reading the file (a `serve` reloading it) sees the old or the new
/// file, never a part. Returns the file as loaded from the new text.
///
/// # Errors
/// [`Error::Read`], [`Error::Syntax`] and the rest as [`Config::load`] for the file as
/// it is; [`Error::NoProfile`]; [`Error::Rewrite`] when the new text would not say what
/// was asked (then nothing is written) or the file cannot be replaced.
pub fn rewrite_profile(path: &Path, name: &str, update: &ProfileUpdate) -> Result<Config, Error> {
    let text =
        crate::input::read_text_file(path, crate::input::Limit::CONFIG).map_err(|source| {
            Error::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let old = Config::parse(&text, path)?;
    old.profile(name)?;
    let fail = |detail: String| Error::Rewrite {
        path: old.path.clone(),
        profile: name.to_string(),
        detail,
    };
    let raw: RawFile = toml::from_str(&text).map_err(|e| Error::Syntax {
        at: Location::at(&old.path, &text, e.span().map_or(0, |s| s.start)),
        message: e.message().trim_end().to_string(),
    })?;
    let raw = raw.profile.get(name).expect("the profile parsed above");
    let cert_text = update.cert.as_ref().map(|c| {
        std::path::absolute(c)
            .unwrap_or_else(|_| c.clone())
            .display()
            .to_string()
    });
    let fields: [FieldEdit<'_>; 3] = [
        ("key", raw.key.as_ref(), update.key.as_ref()),
        ("cert", raw.cert.as_ref(), cert_text.as_ref()),
        ("key_id", raw.key_id.as_ref(), update.key_id.as_ref()),
    ];
    // Where a new line goes: after the line holding the end of the profile's last value.
    let spans = [
        raw.key.as_ref().map(|v| v.span()),
        raw.cert.as_ref().map(|v| v.span()),
        raw.tenant.as_ref().map(|v| v.span()),
        raw.client_id.as_ref().map(|v| v.span()),
        raw.authority_host.as_ref().map(|v| v.span()),
        raw.alg.as_ref().map(|v| v.span()),
        raw.x5c.as_ref().map(|v| v.span()),
        raw.ca_file.as_ref().map(|v| v.span()),
        raw.key_id.as_ref().map(|v| v.span()),
    ];
    let last_end = spans.iter().flatten().map(|s| s.end).max();
    let insert_at = match last_end {
        Some(end) => text[end..].find('\n').map_or(text.len(), |i| end + i + 1),
        None => {
            return Err(fail(
                "the profile has no field to put the new ones beside; add key = \"…\" under its table first".into(),
            ))
        }
    };
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut added = String::new();
    for (field, span, value) in fields {
        let Some(value) = value else { continue };
        match span {
            Some(s) => edits.push((s.span(), toml_string(value))),
            None => added.push_str(&format!("{field} = {}\n", toml_string(value))),
        }
    }
    if !added.is_empty() {
        let prefix = if insert_at == text.len() && !text.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        edits.push((insert_at..insert_at, format!("{prefix}{added}")));
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut new_text = text.clone();
    for (range, replacement) in edits {
        new_text.replace_range(range, &replacement);
    }
    // The new text must say exactly what was asked, and nothing else may change.
    let by_hand = || {
        let mut lines = Vec::new();
        for (field, _, value) in fields {
            if let Some(v) = value {
                lines.push(format!("{field} = {}", toml_string(v)));
            }
        }
        lines.join(", ")
    };
    let new = Config::parse(&new_text, path).map_err(|e| {
        fail(format!(
            "the edited file would not load ({e}); write by hand: {}",
            by_hand()
        ))
    })?;
    let mut expected = old.profile(name)?.clone();
    if let Some(key) = &update.key {
        let keyref: KeyRef = key
            .parse()
            .map_err(|e| fail(format!("the new key reference does not parse: {e}")))?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        expected.key = Some(rebase_key(keyref, &cwd));
    }
    if let Some(c) = &cert_text {
        expected.cert = Some(PathBuf::from(c));
    }
    if let Some(k) = &update.key_id {
        expected.key_id = Some(k.clone());
    }
    let got = new.profile(name)?;
    let same = got.key == expected.key
        && got.cert == expected.cert
        && got.key_id == expected.key_id
        && got.tenant == expected.tenant
        && got.client_id == expected.client_id
        && new.profiles.len() == old.profiles.len();
    if !same {
        return Err(fail(format!(
            "the edited file would not say what was asked (an inline table, or a relative path that means another file from the config file's directory); write by hand: {}",
            by_hand()
        )));
    }
    // The same mode as before; a config file that is a link is replaced as it always was.
    let how = crate::output::Replace {
        mode: None,
        guard: false,
    };
    crate::output::replace(&new.path, new_text.as_bytes(), how).map_err(|e| fail(e.to_string()))?;
    Ok(new)
}

/// Make every relative path in a key reference relative to `base`: the key file, a TPM
/// key file, `module-path=`, and `…-source=file:` secrets.
fn rebase_key(keyref: KeyRef, base: &Path) -> KeyRef {
    let path = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    let source = |s: &mut Option<SecretSource>| {
        if let Some(SecretSource::File(p)) = s {
            path(p);
        }
    };
    let mut keyref = keyref;
    match &mut keyref {
        KeyRef::File { path: p, password } => {
            path(p);
            source(password);
        }
        KeyRef::Pkcs11(uri) => {
            if let Some(module) = &mut uri.module_path {
                if Path::new(module.as_str()).is_relative() {
                    *module = base.join(module.as_str()).display().to_string();
                }
            }
            source(&mut uri.pin);
        }
        KeyRef::Tpm(uri) => {
            if let KeyLocation::File(p) = &mut uri.key {
                path(p);
            }
            source(&mut uri.auth);
            source(&mut uri.parent_auth);
        }
    }
    keyref
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/certassert/config.toml"))
    }

    #[test]
    fn a_profile_is_typed_and_its_relative_paths_follow_the_file() {
        let c = parse(
            "# comment\n[profile.prod]\nkey = \"app.key.pem\"\ncert = \"certs/app.pem\"\n\
             tenant = \"contoso.com\"\nclient_id = \"c\"\nalg = \"ps256\"\nx5c = true\n\
             ca_file = \"/abs/ca.pem\"\nauthority_host = \"login.microsoftonline.us\"\n\
             [profile.tpm]\nkey = \"tpm:key=k.tss2.pem?auth-source=file:auth&tcti=swtpm:port=1\"\n",
        )
        .unwrap();
        let p = c.profile("prod").unwrap();
        assert_eq!(
            p.key,
            Some(KeyRef::File {
                path: "/etc/certassert/app.key.pem".into(),
                password: None
            })
        );
        assert_eq!(
            p.cert.as_deref(),
            Some(Path::new("/etc/certassert/certs/app.pem"))
        );
        assert_eq!(p.ca_file.as_deref(), Some(Path::new("/abs/ca.pem")));
        assert_eq!(p.alg, Some(Algorithm::Ps256));
        assert_eq!(p.x5c, Some(true));
        assert_eq!(p.tenant.as_deref(), Some("contoso.com"));
        assert_eq!(
            p.location("alg").unwrap().to_string(),
            "/etc/certassert/config.toml:7:7"
        );
        let Some(KeyRef::Tpm(t)) = &c.profile("tpm").unwrap().key else {
            panic!("a tpm key")
        };
        assert_eq!(
            t.key,
            KeyLocation::File("/etc/certassert/k.tss2.pem".into())
        );
        assert_eq!(
            t.auth,
            Some(SecretSource::File("/etc/certassert/auth".into()))
        );
        assert_eq!(p.file(), Path::new("/etc/certassert/config.toml"));
        let names: Vec<_> = c.profiles().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["prod", "tpm"]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse("[profile.a]\ntenant = \"t\"\nkee = \"k.pem\"\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("/etc/certassert/config.toml:3:1: unknown field `kee`"),
            "{text}"
        );
        let e = parse("[profile.a]\nx5c = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/certassert/config.toml:2:7: "), "{e}");
        let e = parse("[profile.a]\nalg = \"ES256\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/certassert/config.toml:2:7: profile \"a\": alg: ES256: Entra ID accepts RSA certificate credentials only; use RS256 or PS256"
        );
        let e = parse("[profile.a]\n\n  key = \"pkcs11:tokn=x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/certassert/config.toml:3:9: profile \"a\": key: "),
            "{e}"
        );
        let e = parse("[profile.a]\ntenant = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:10: profile \"a\": tenant: is empty"), "{e}");
        let e = parse("[profiles.a]\n").unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/certassert/config.toml:1:2: unknown field `profiles`"),
            "{e}"
        );
        let e = parse("[profile.a\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/certassert/config.toml:1:"), "{e}");
    }

    #[test]
    fn a_missing_profile_lists_the_others() {
        let c = parse("[profile.b]\n[profile.a]\n").unwrap();
        assert_eq!(
            c.profile("prod").unwrap_err().to_string(),
            "no profile \"prod\" in /etc/certassert/config.toml: it has a, b"
        );
        let c = parse("").unwrap();
        assert!(c
            .profile("prod")
            .unwrap_err()
            .to_string()
            .ends_with("it has no [profile.NAME] table"));
    }

    #[test]
    fn a_secret_in_a_bad_key_is_not_repeated() {
        let e = parse("[profile.a]\nkey = \"pkcs11:object=x;pin-value=Zq7canary\"\n").unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("Zq7canary"), "{shown}");
    }

    #[test]
    fn locations_count_characters() {
        let l = Location::at(Path::new("f"), "ab\ncé d", 7);
        assert_eq!((l.line, l.column), (2, 4));
        assert_eq!(Location::at(Path::new("f"), "", 5).to_string(), "f:1:1");
    }

    #[test]
    fn a_profile_is_rewritten_in_place_keeping_the_rest() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = "# my profiles\n[profile.prod]\nkey = \"old.key.pem\"   # the old key\ntenant = \"t\"\n\n[profile.other]\nkey = \"other.pem\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let new_key = dir.path().join("new \"key\".pem");
        let update = ProfileUpdate::new(
            Some(new_key.display().to_string()),
            Some(dir.path().join("new.cert.pem")),
            Some("0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f".into()),
        );
        let config = rewrite_profile(&path, "prod", &update).unwrap();
        let p = config.profile("prod").unwrap();
        assert_eq!(
            p.key,
            Some(KeyRef::File {
                path: new_key.clone(),
                password: None
            })
        );
        assert_eq!(
            p.cert.as_deref(),
            Some(dir.path().join("new.cert.pem").as_path())
        );
        assert_eq!(
            p.key_id.as_deref(),
            Some("0c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f")
        );
        assert_eq!(p.tenant.as_deref(), Some("t"));
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            written.starts_with("# my profiles\n[profile.prod]\nkey = \""),
            "{written}"
        );
        assert!(
            written.contains("   # the old key\ntenant = \"t\"\ncert = "),
            "{written}"
        );
        assert!(
            written.ends_with("[profile.other]\nkey = \"other.pem\"\n"),
            "{written}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        // Again, now replacing every field in place.
        let update = ProfileUpdate::new(
            None,
            None,
            Some("1c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f".into()),
        );
        let config = rewrite_profile(&path, "prod", &update).unwrap();
        assert_eq!(
            config.profile("prod").unwrap().key_id.as_deref(),
            Some("1c5f7b8e-2d3a-4b1c-9e8f-7a6b5c4d3e2f")
        );
        assert_eq!(
            std::fs::read_to_string(&path)
                .unwrap()
                .matches("key_id")
                .count(),
            1
        );

        // A relative key path would mean another file from the config's directory: refused,
        // and the file is left as it was.
        let before = std::fs::read_to_string(&path).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_ne!(cwd, dir.path());
        let e = rewrite_profile(
            &path,
            "prod",
            &ProfileUpdate::new(Some("relative.pem".into()), None, None),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Rewrite { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("write by hand: key = \"relative.pem\""),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        // An inline table cannot take a new line: refused.
        std::fs::write(&path, "[profile]\nprod = { key = \"a.pem\" }\n").unwrap();
        let e = rewrite_profile(
            &path,
            "prod",
            &ProfileUpdate::new(None, Some("/x.pem".into()), None),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Rewrite { .. }), "{e}");
        assert!(matches!(
            rewrite_profile(&path, "nope", &update),
            Err(Error::NoProfile { .. })
        ));
    }

    #[test]
    fn key_id_is_a_guid() {
        let e = parse("[profile.p]\nkey_id = \"my-key\"\n").unwrap_err();
        assert!(e.to_string().contains("key_id: is not a GUID"), "{e}");
    }
}
