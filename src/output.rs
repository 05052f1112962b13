//! Replacing a file so that a reader sees the old contents or the new, never a part (the
//! rule for every file certassert rewrites — the token file of `assertion --out`, `serve`'s
//! environment file, the token cache, a profile rewritten by `cert rotate`; its reading
//! counterpart is [`crate::input`]): a new file beside it, made with `O_EXCL` and
//! `O_NOFOLLOW`, written, synced, renamed over the path, then the directory synced. On
//! any failure the new file is removed and the old one is left as it was.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// How a file is replaced.
#[derive(Debug, Clone, Copy)]
pub struct Replace {
    /// The new file's mode; `None`: the mode of the file replaced (0600 when there is
    /// none).
    pub mode: Option<u32>,
    /// Refuse to replace a symbolic link, something that is not a regular file, or a file
    /// another user owns ([`Error::Symlink`], [`Error::NotRegular`], [`Error::OtherOwner`]);
    /// without it, whatever is at the path is replaced (a directory entry the caller
    /// already trusts).
    pub guard: bool,
}

impl Replace {
    /// An owner-only (0600) file, guarded: for secrets handed to other programs.
    pub const PRIVATE: Self = Self {
        mode: Some(0o600),
        guard: true,
    };
}

/// Why a file was not replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path is a symbolic link: it is not followed.
    #[error("{}: is a symbolic link; refusing to write through it (give the real path)", path.display())]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// The path exists and is not a regular file.
    #[error("{}: exists and is not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// The file belongs to another user: it is not replaced.
    #[error("{}: is owned by uid {owner}, not by this user (uid {me}); refusing to replace it: remove it or choose another path", path.display())]
    OtherOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's user.
        me: u32,
    },
    /// A step failed.
    #[error("{}: cannot {step}: {source}", path.display())]
    Io {
        /// The file (or, for the first step, the directory).
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Replace `path` with `data` as `how` says (the module's description).
///
/// # Errors
/// [`Error`]: what refused it, or the step that failed.
pub fn replace(path: &Path, data: &[u8], how: Replace) -> Result<(), Error> {
    let io = |step: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let Some(name) = path.file_name() else {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
        });
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("inspect it")(e)),
    };
    if how.guard {
        if let Some(m) = &existing {
            if m.file_type().is_symlink() {
                return Err(Error::Symlink {
                    path: path.to_path_buf(),
                });
            }
            if !m.file_type().is_file() {
                return Err(Error::NotRegular {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    let mode = how.mode.unwrap_or_else(|| {
        std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777)
    });
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        crate::encoding::hex(&crate::encoding::random::<8>(), false)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            step: "create a file in it",
            source,
        })?;
    let result = (|| {
        if how.guard {
            // Our own new file tells whose files are ours (no geteuid needed).
            let me = file.metadata().map_err(io("read the new file"))?.uid();
            if let Some(owner) = existing.as_ref().map(|m| m.uid()) {
                if owner != me {
                    return Err(Error::OtherOwner {
                        path: path.to_path_buf(),
                        owner,
                        me,
                    });
                }
            }
        }
        // The mode given, whatever the umask took away of it.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("set its mode"))?;
        file.write_all(data).map_err(io("write"))?;
        file.sync_all().map_err(io("write"))?;
        std::fs::rename(&temp, path).map_err(io("replace it"))?;
        // The rename itself outlives a crash once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_and_replace_only_our_own_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        replace(&path, b"one", Replace::PRIVATE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"two", Replace::PRIVATE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600, "the mode asked for, not the old file's");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = replace(&link, b"x", Replace::PRIVATE).unwrap_err();
        assert!(matches!(e, Error::Symlink { .. }), "{e}");
        assert!(
            e.to_string().contains("refusing to write through it"),
            "{e}"
        );
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let e = replace(&sub, b"x", Replace::PRIVATE).unwrap_err();
        assert!(matches!(e, Error::NotRegular { .. }), "{e}");
        // Another user's file is not replaced (checkable where we may chown: as root).
        if std::os::unix::fs::chown(&path, Some(65534), Some(65534)).is_ok() {
            let e = replace(&path, b"three", Replace::PRIVATE).unwrap_err();
            assert!(matches!(e, Error::OtherOwner { owner: 65534, .. }), "{e}");
            assert!(e.to_string().contains("is owned by uid 65534"), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), b"two");
        }
        assert_eq!(
            names(dir.path()),
            ["link", "out", "sub"],
            "no file left behind"
        );
    }

    #[test]
    fn unguarded_keeps_the_old_mode_and_a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let keep = Replace {
            mode: None,
            guard: false,
        };
        replace(&path, b"new", keep).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o640);
        let e = replace(&dir.path().join("gone/file"), b"x", keep).unwrap_err();
        assert!(
            e.to_string().contains("gone: cannot create a file in it"),
            "{e}"
        );
        assert_eq!(names(dir.path()), ["config.toml"]);
    }
}
