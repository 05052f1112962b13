//! The identity secret and the environment file that hands it to applications: a fresh
//! secret of 32 random bytes, and `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` (plus
//! `AZURE_POD_IDENTITY_AUTHORITY_HOST` for IMDS clients) written to an owner-only (0600)
//! file that an application, a shell (`set -a; . FILE`) or systemd's `EnvironmentFile=`
//! reads. The file is replaced atomically (a new file beside it, renamed over it), never
//! through a symbolic link, and never when it belongs to another user.

use crate::secret::Secret;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// A fresh identity secret: 32 random bytes, base64url (43 characters).
pub fn generate_secret() -> Secret {
    Secret::new(crate::encoding::b64url(&crate::encoding::random::<32>()))
}

/// Why the environment file was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path is a symbolic link: it is not followed.
    #[error("{}: is a symbolic link; the environment file is not written through links: give the real path", path.display())]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// The path exists and is not a regular file.
    #[error("{}: exists and is not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// The file belongs to another user: it is not replaced.
    #[error("{}: belongs to another user (uid {owner}); not replacing it: remove it or choose another path", path.display())]
    OtherOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The lines of the environment file for an agent at `url` (`http://127.0.0.1:PORT`):
/// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, and `AZURE_POD_IDENTITY_AUTHORITY_HOST` when
/// it answers IMDS (`imds`).
pub fn contents(url: &str, secret: &Secret, imds: bool) -> Secret {
    let mut text = format!(
        "IDENTITY_ENDPOINT={url}{}\nIDENTITY_HEADER={}\n",
        super::protocol::APP_SERVICE_PATH,
        secret.expose()
    );
    if imds {
        text.push_str(&format!("AZURE_POD_IDENTITY_AUTHORITY_HOST={url}\n"));
    }
    Secret::new(text)
}

/// Write `contents` (of [`contents`]) to `path` with mode 0600, atomically: a new file in
/// the same directory, synced, then renamed over `path`.
///
/// # Errors
/// `path` is a symbolic link, not a regular file, or another user's ([`Error`]), or the
/// directory cannot be written.
pub fn write(path: &Path, contents: &Secret) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
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
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "env".into());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let temp_name = format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        crate::encoding::hex(&crate::encoding::random::<6>(), false)
    );
    let temp = dir.map_or_else(|| PathBuf::from(&temp_name), |d| d.join(&temp_name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(io)?;
    let result = (|| {
        // Our own uid, without a libc call: the owner of the file just made.
        let me = file.metadata()?.uid();
        if let Some(m) = &existing {
            if m.uid() != me {
                return Ok(Err(Error::OtherOwner {
                    path: path.to_path_buf(),
                    owner: m.uid(),
                }));
            }
        }
        file.write_all(contents.expose().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        Ok(Ok(()))
    })();
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(io(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn written_owner_only_replacing_our_own_and_refusing_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.env");
        let secret = generate_secret();
        assert_eq!(secret.expose().len(), 43);
        assert_ne!(secret.expose(), generate_secret().expose());
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, &contents("http://127.0.0.1:5", &secret, true)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("IDENTITY_ENDPOINT=http://127.0.0.1:5/msi/token\nIDENTITY_HEADER=")
        );
        assert!(text.contains(secret.expose()));
        assert!(text.ends_with("\nAZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:5\n"));
        assert!(!contents("u", &secret, false)
            .expose()
            .contains("AZURE_POD_IDENTITY_AUTHORITY_HOST"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let link = dir.path().join("link.env");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            write(&link, &contents("http://127.0.0.1:5", &secret, true)),
            Err(Error::Symlink { .. })
        ));
        assert!(matches!(
            write(dir.path(), &contents("http://127.0.0.1:5", &secret, true)),
            Err(Error::NotRegular { .. })
        ));
        // Another user's file is not replaced (checkable where we may chown: as root).
        if std::os::unix::fs::chown(&path, Some(65534), Some(65534)).is_ok() {
            assert!(matches!(
                write(&path, &contents("http://127.0.0.1:6", &secret, true)),
                Err(Error::OtherOwner { owner: 65534, .. })
            ));
            assert!(std::fs::read_to_string(&path).unwrap().contains(":5/msi"));
        }
        // Nothing left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
