//! The identity secret and the environment file that hands it to applications: a fresh
//! secret of 32 random bytes, and `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` (plus
//! `AZURE_POD_IDENTITY_AUTHORITY_HOST` for IMDS clients) written to an owner-only (0600)
//! file that an application, a shell (`set -a; . FILE`) or systemd's `EnvironmentFile=`
//! reads. The file is replaced atomically (a new file beside it, renamed over it), never
//! through a symbolic link, and never when it belongs to another user.

use crate::secret::Secret;
use std::path::Path;

/// A fresh identity secret: 32 random bytes, base64url (43 characters).
pub fn generate_secret() -> Secret {
    Secret::new(crate::encoding::b64url(&crate::encoding::random::<32>()))
}

/// Why the environment file was not written: a symbolic link, not a regular file, another
/// user's file, or a step that failed ([`crate::output`]).
pub use crate::output::Error;

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

/// Write `contents` (of [`contents`]) to `path` with mode 0600, atomically
/// ([`crate::output::replace`]).
///
/// # Errors
/// `path` is a symbolic link, not a regular file, or another user's ([`Error`]), or the
/// directory cannot be written.
pub fn write(path: &Path, contents: &Secret) -> Result<(), Error> {
    crate::output::replace(
        path,
        contents.expose().as_bytes(),
        crate::output::Replace::PRIVATE,
    )
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
