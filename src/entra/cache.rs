//! The per-user access-token cache. One file per key in a directory only the user can
//! enter: `$CERTASSERT_CACHE_DIR`, else `$XDG_RUNTIME_DIR/certassert` (tmpfs, gone at
//! logout), else `$XDG_CACHE_HOME/certassert` or `~/.cache/certassert`.
//!
//! Trust: an entry is used only when the directory and the file are owned by this
//! process's effective uid and give group and others no access (directory 0700, file
//! 0600), the file is a regular file reached without following a symbolic link
//! (`O_NOFOLLOW`), and its token and expiry are possible ones (a plain b64token, an expiry
//! within [`MAX_LIFETIME`] of now). Anything else is a [`CacheError`] the caller may show
//! once, and the lookup goes on as a miss. [`Cache::open`] creates the directory 0700 and
//! tightens one of ours to 0700, but never changes, reads from or writes into a
//! directory owned by someone else.
//!
//! Writes go to a temporary file (0600) in the same directory, renamed over the old
//! entry, so readers never see half a file. A file that does not parse is ignored (and
//! replaced by the next write). Refresh tokens are never written. [`Cache::lock`] takes
//! an advisory lock per key, held while one process fetches the token so that others
//! wait for it instead of asking the server too.

use super::token::{is_b64token, Token, MAX_LIFETIME};
use crate::encoding::hex;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest cache file read (an entry is a few kilobytes).
const MAX_ENTRY_BYTES: u64 = 64 * 1024;

/// Why the cache directory or an entry was not used. Each says what to fix; none is
/// fatal to getting a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The directory or file belongs to another user.
    #[error("token cache {path} is owned by uid {owner}, not by this user (uid {me}); not used")]
    NotOwned {
        /// The directory or file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The directory or file lets group or others in.
    #[error("token cache {path} has mode {mode:03o}, open to group or others; not used (the cache needs a 0700 directory and 0600 files of this user)")]
    OpenToOthers {
        /// The directory or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The entry is a symbolic link (never followed), or not a regular file.
    #[error("token cache entry {path} is a symbolic link or not a regular file; not used")]
    NotRegular {
        /// The entry.
        path: PathBuf,
    },
    /// The directory or file could not be created, read or written.
    #[error("token cache {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A cache key: SHA-256 of the parts that decide which token fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// Hash `parts` (length-prefixed, so no two part lists collide).
    pub fn new(parts: &[&str]) -> Self {
        let mut data = Vec::new();
        for p in parts {
            data.extend_from_slice(&(p.len() as u64).to_be_bytes());
            data.extend_from_slice(p.as_bytes());
        }
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
        Self(hex(d.as_ref(), false))
    }

    /// The hex digest (the file name stem).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    access_token: String,
    token_type: String,
    expires_on: i64,
    #[serde(default)]
    refresh_on: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    resource: Option<String>,
}

/// An opened cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The lock [`Cache::lock`] took for one key; released on drop.
#[derive(Debug)]
pub struct FetchLock {
    file: fs::File,
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        // Closing the file would release the lock anyway.
        let _ = self.file.unlock();
    }
}

/// Whether `meta` (of `path`) is owned by us and closed to group and others.
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), CacheError> {
    let me = euid();
    if meta.uid() != me {
        return Err(CacheError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CacheError::OpenToOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

impl Cache {
    /// The default directory (see the module docs); `None` without any of the variables.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |n: &str| {
            std::env::var_os(n)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var("CERTASSERT_CACHE_DIR")
            .or_else(|| var("XDG_RUNTIME_DIR").map(|d| d.join("certassert")))
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("certassert")))
            .or_else(|| var("HOME").map(|d| d.join(".cache").join("certassert")))
    }

    /// Open (creating it 0700 if needed) the cache in `dir`. An existing directory of
    /// ours is tightened to 0700; one owned by another user is refused, unchanged.
    ///
    /// # Errors
    /// [`CacheError::NotOwned`], or the directory cannot be created or its mode set.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let meta = fs::metadata(dir).map_err(io(dir))?;
        match check_private(dir, &meta) {
            Err(CacheError::OpenToOthers { .. }) => {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?
            }
            other => other?,
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `key`'s token.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.as_str()))
    }

    /// The directory is still ours and private (checked before each use: it may have
    /// changed since [`open`](Self::open)).
    fn check_dir(&self) -> Result<(), CacheError> {
        let meta = fs::metadata(&self.dir).map_err(io(&self.dir))?;
        check_private(&self.dir, &meta)
    }

    /// The cached token for `key`, if it is still fresh at `now`. A missing, corrupt,
    /// stale or impossible entry (an expiry beyond [`MAX_LIFETIME`], a token that is not
    /// a plain b64token) is `Ok(None)`.
    ///
    /// # Errors
    /// An entry or directory the module docs say is not to be trusted, or one that cannot
    /// be read: the caller goes on without it and may say so.
    pub fn get(&self, key: &CacheKey, now: i64) -> Result<Option<Token>, CacheError> {
        self.check_dir()?;
        let path = self.path(key);
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(CacheError::NotRegular { path })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let meta = file.metadata().map_err(io(&path))?;
        if !meta.is_file() {
            return Err(CacheError::NotRegular { path });
        }
        check_private(&path, &meta)?;
        let mut data = zeroize::Zeroizing::new(Vec::new());
        file.take(MAX_ENTRY_BYTES)
            .read_to_end(&mut data)
            .map_err(io(&path))?;
        let Ok(e) = serde_json::from_slice::<Entry>(&data) else {
            return Ok(None);
        };
        let possible = is_b64token(&e.access_token)
            && e.token_type.eq_ignore_ascii_case("bearer")
            && e.expires_on > 0
            && e.expires_on <= now.saturating_add(MAX_LIFETIME)
            && e.refresh_on.is_none_or(|r| 0 < r && r <= e.expires_on);
        if !possible {
            return Ok(None);
        }
        let token = Token {
            access_token: Secret::new(e.access_token),
            token_type: e.token_type,
            expires_on: e.expires_on,
            refresh_on: e.refresh_on,
            scope: e.scope,
            resource: e.resource,
            refresh_token: None,
        };
        Ok(token.is_fresh(now).then_some(token))
    }

    /// Take the lock for `key`, waiting at most `wait` for another process to release
    /// it: `Ok(None)` when the wait ran out (the caller goes on without it). Hold it
    /// across "look again, fetch, [`put`](Self::put)" so concurrent processes make one
    /// request.
    ///
    /// # Errors
    /// The directory is not to be trusted, or the lock file cannot be opened or locked.
    pub fn lock(&self, key: &CacheKey, wait: Duration) -> Result<Option<FetchLock>, CacheError> {
        self.check_dir()?;
        let path = self.dir.join(format!("{}.lock", key.as_str()));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(io(&path))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(FetchLock { file })),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25))
                }
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
    }

    /// Store `token` under `key` (without its refresh token): a temporary file (0600)
    /// in the cache directory, renamed into place (atomic: a reader sees the old entry
    /// or the new one, and concurrent writers each write their own temporary file).
    ///
    /// # Errors
    /// The directory is not to be trusted (never written into), or the temporary file
    /// or the rename failed.
    pub fn put(&self, key: &CacheKey, token: &Token) -> Result<(), CacheError> {
        self.check_dir()?;
        let entry = Entry {
            access_token: token.access_token.expose().to_string(),
            token_type: token.token_type.clone(),
            expires_on: token.expires_on,
            refresh_on: token.refresh_on,
            scope: token.scope.clone(),
            resource: token.resource.clone(),
        };
        let data = zeroize::Zeroizing::new(
            serde_json::to_vec(&entry)
                .map_err(std::io::Error::other)
                .map_err(io(&self.dir))?,
        );
        // The directory is ours (checked above): whatever is at the entry's path is ours
        // to replace.
        let how = crate::output::Replace {
            mode: Some(0o600),
            guard: false,
        };
        crate::output::replace(&self.path(key), &data, how).map_err(|e| match e {
            crate::output::Error::Io { source, .. } => io(&self.path(key))(source),
            other => io(&self.path(key))(std::io::Error::other(other)),
        })
    }
}

/// The effective uid of this process: who must own the cache directory and its files.
#[allow(unsafe_code)]
fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_on: i64) -> Token {
        Token {
            access_token: Secret::new("at".into()),
            token_type: "Bearer".into(),
            expires_on,
            refresh_on: None,
            scope: None,
            resource: None,
            refresh_token: Some(Secret::new("rt-never-on-disk".into())),
        }
    }

    /// A fresh entry for `key`, written as a planted file would be (not through `put`).
    fn plant(path: &Path, expires_on: i64) {
        let text = format!(
            r#"{{"access_token":"planted","token_type":"Bearer","expires_on":{expires_on}}}"#
        );
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Served, or why not (a miss is `Ok(false)`).
    fn lookup(cache: &Cache, key: &CacheKey) -> Result<bool, CacheError> {
        cache.get(key, 1_000).map(|t| t.is_some())
    }

    fn served(cache: &Cache, key: &CacheKey) -> bool {
        lookup(cache, key).unwrap_or(false)
    }

    #[test]
    fn entries_others_could_write_are_not_served() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let key = CacheKey::new(&["k"]);
        plant(&cache.path(&key), 2_000);
        assert!(served(&cache, &key), "a 0600 file of ours is served");

        // A file group or others may write or read.
        fs::set_permissions(cache.path(&key), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            matches!(
                lookup(&cache, &key),
                Err(CacheError::OpenToOthers { mode: 0o644, .. })
            ),
            "a 0644 file is served"
        );

        // A directory others may enter, after it was opened.
        plant(&cache.path(&key), 2_000);
        fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            matches!(
                lookup(&cache, &key),
                Err(CacheError::OpenToOthers { mode: 0o755, .. })
            ),
            "an entry in a 0755 directory is served"
        );
        fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o700)).unwrap();

        // A symlink in place of the entry, to a file that is otherwise fine.
        let elsewhere = dir.path().join("elsewhere.json");
        plant(&elsewhere, 2_000);
        fs::remove_file(cache.path(&key)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.path(&key)).unwrap();
        assert!(
            matches!(lookup(&cache, &key), Err(CacheError::NotRegular { .. })),
            "a symlinked entry is served"
        );

        // A file owned by another uid (tests run as root: chown works).
        if unsafe_geteuid() == 0 {
            fs::remove_file(cache.path(&key)).unwrap();
            plant(&cache.path(&key), 2_000);
            std::os::unix::fs::chown(cache.path(&key), Some(65534), Some(65534)).unwrap();
            assert_eq!(fs::metadata(cache.path(&key)).unwrap().uid(), 65534);
            assert!(
                matches!(
                    lookup(&cache, &key),
                    Err(CacheError::NotOwned { owner: 65534, .. })
                ),
                "a file of another uid is served"
            );
        }
    }

    #[test]
    fn a_directory_of_another_uid_is_neither_used_nor_chmodded() {
        use std::os::unix::fs::MetadataExt as _;
        if unsafe_geteuid() != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        let key = CacheKey::new(&["k"]);
        plant(&theirs.join(format!("{}.json", key.as_str())), 2_000);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        if let Ok(cache) = Cache::open(&theirs) {
            assert!(
                !served(&cache, &key),
                "a token planted by uid 65534 is served"
            );
            assert!(
                cache.put(&key, &token(10_000)).is_err(),
                "written into their directory"
            );
        }
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&open, Some(65534), Some(65534)).unwrap();
        let _ = Cache::open(&open);
        assert_eq!(
            fs::metadata(&open).unwrap().mode() & 0o777,
            0o755,
            "chmodded a directory of another uid"
        );
    }

    #[test]
    fn impossible_expiries_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let key = CacheKey::new(&["k"]);
        for expires_on in [i64::MAX, i64::MIN, -1, 1_000 + 10 * 365 * 86_400] {
            plant(&cache.path(&key), expires_on);
            assert!(!served(&cache, &key), "expires_on {expires_on} served");
        }
        let text = r#"{"access_token":"bad\ntoken","token_type":"Bearer","expires_on":2000}"#;
        fs::write(cache.path(&key), text).unwrap();
        assert!(!served(&cache, &key), "a token with a newline served");
    }

    fn unsafe_geteuid() -> u32 {
        euid()
    }

    #[test]
    fn round_trip_modes_corruption_and_freshness() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.dir()), 0o700);
        let key = CacheKey::new(&["a", "b"]);
        assert_ne!(key, CacheKey::new(&["ab", ""]));
        assert!(cache.get(&key, 0).unwrap().is_none());
        cache.put(&key, &token(10_000)).unwrap();
        assert_eq!(mode(&cache.path(&key)), 0o600);
        let text = fs::read_to_string(cache.path(&key)).unwrap();
        assert!(!text.contains("rt-never-on-disk"), "{text}");
        assert_eq!(
            cache.get(&key, 0).unwrap().unwrap().access_token.expose(),
            "at"
        );
        assert!(
            cache.get(&key, 10_000 - 300).unwrap().is_none(),
            "5 minutes must remain"
        );
        fs::write(cache.path(&key), b"{not json").unwrap();
        assert!(cache.get(&key, 0).unwrap().is_none());
        cache.put(&key, &token(10_000)).unwrap();
        assert!(cache.get(&key, 0).unwrap().is_some());
        let leftovers: Vec<_> = fs::read_dir(cache.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
    }
}
