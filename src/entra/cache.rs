//! The per-user access-token cache. One file per key in a directory only the user can
//! enter: `$CERTASSERT_CACHE_DIR`, else `$XDG_RUNTIME_DIR/certassert` (tmpfs, gone at
//! logout), else `$XDG_CACHE_HOME/certassert` or `~/.cache/certassert`. The directory is
//! 0700 and files 0600; a write goes to a temporary file in the same directory and is
//! renamed over the old one while holding an advisory lock, so readers never see half a
//! file and concurrent writers do not interleave. A file that does not parse is ignored
//! (and replaced by the next write). Refresh tokens are never written.

use super::token::Token;
use crate::encoding::{hex, random};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

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

    /// Open (creating it 0700 if needed) the cache in `dir`. An existing directory is
    /// tightened to 0700.
    ///
    /// # Errors
    /// The directory cannot be created or its mode set.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
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

    /// The cached token for `key`, if it is still fresh at `now`. Missing, unreadable,
    /// corrupt or stale entries give `None`.
    pub fn get(&self, key: &CacheKey, now: i64) -> Option<Token> {
        let data = fs::read(self.path(key)).ok()?;
        let e: Entry = serde_json::from_slice(&data).ok()?;
        let token = Token {
            access_token: Secret::new(e.access_token),
            token_type: e.token_type,
            expires_on: e.expires_on,
            refresh_on: e.refresh_on,
            scope: e.scope,
            resource: e.resource,
            refresh_token: None,
        };
        token.is_fresh(now).then_some(token)
    }

    /// Store `token` under `key` (without its refresh token): temporary file (0600) in
    /// the cache directory, renamed into place under an exclusive advisory lock.
    ///
    /// # Errors
    /// The lock, the temporary file or the rename failed.
    pub fn put(&self, key: &CacheKey, token: &Token) -> std::io::Result<()> {
        let entry = Entry {
            access_token: token.access_token.expose().to_string(),
            token_type: token.token_type.clone(),
            expires_on: token.expires_on,
            refresh_on: token.refresh_on,
            scope: token.scope.clone(),
            resource: token.resource.clone(),
        };
        let data =
            zeroize::Zeroizing::new(serde_json::to_vec(&entry).map_err(std::io::Error::other)?);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.join(format!("{}.lock", key.as_str())))?;
        let _held = Flock::exclusive(&lock)?;
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            key.as_str(),
            hex(&random::<8>(), false)
        ));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path(key))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// The effective uid of this process: who must own the cache directory and its files.
#[allow(unsafe_code)]
fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// An exclusive lock on a file (`File::lock`, `flock(2)` on Unix), released on drop.
struct Flock<'a>(&'a fs::File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a fs::File) -> std::io::Result<Self> {
        file.lock()?;
        Ok(Self(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // Closing the file would release the lock anyway.
        let _ = self.0.unlock();
    }
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

    fn served(cache: &Cache, key: &CacheKey) -> bool {
        cache.get(key, 1_000).is_some()
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
        assert!(!served(&cache, &key), "a 0644 file is served");

        // A directory others may enter, after it was opened.
        plant(&cache.path(&key), 2_000);
        fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!served(&cache, &key), "an entry in a 0755 directory is served");
        fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o700)).unwrap();

        // A symlink in place of the entry, to a file that is otherwise fine.
        let elsewhere = dir.path().join("elsewhere.json");
        plant(&elsewhere, 2_000);
        fs::remove_file(cache.path(&key)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.path(&key)).unwrap();
        assert!(!served(&cache, &key), "a symlinked entry is served");

        // A file owned by another uid (tests run as root: chown works).
        if unsafe_geteuid() == 0 {
            fs::remove_file(cache.path(&key)).unwrap();
            plant(&cache.path(&key), 2_000);
            std::os::unix::fs::chown(cache.path(&key), Some(65534), Some(65534)).unwrap();
            assert_eq!(fs::metadata(cache.path(&key)).unwrap().uid(), 65534);
            assert!(!served(&cache, &key), "a file of another uid is served");
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
            assert!(!served(&cache, &key), "a token planted by uid 65534 is served");
            assert!(cache.put(&key, &token(10_000)).is_err(), "written into their directory");
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
        assert!(cache.get(&key, 0).is_none());
        cache.put(&key, &token(10_000)).unwrap();
        assert_eq!(mode(&cache.path(&key)), 0o600);
        let text = fs::read_to_string(cache.path(&key)).unwrap();
        assert!(!text.contains("rt-never-on-disk"), "{text}");
        assert_eq!(cache.get(&key, 0).unwrap().access_token.expose(), "at");
        assert!(
            cache.get(&key, 10_000 - 300).is_none(),
            "5 minutes must remain"
        );
        fs::write(cache.path(&key), b"{not json").unwrap();
        assert!(cache.get(&key, 0).is_none());
        cache.put(&key, &token(10_000)).unwrap();
        assert!(cache.get(&key, 0).is_some());
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
