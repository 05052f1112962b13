//! Bounded reads of what a user hands certassert: key files, certificate files, CA files,
//! TSS2 key files, secret files, `@FILE` values and JWTs on standard input. A file
//! argument must name a regular file — a directory, a device such as `/dev/zero`, a FIFO
//! or a socket is refused, saying which it is, without blocking (a FIFO is opened
//! non-blocking and never read) — and nothing is read beyond a limit: at most
//! [`Limit::bytes`] + 1 bytes are read, and a larger input is refused. Standard input
//! (a pipe) is read with the same limit.
//!
//! | input | limit |
//! |---|---|
//! | key files (PEM/DER PKCS#8, PKCS#1, PKCS#12), TSS2 key files | [`Limit::KEY_FILE`]: 1 MiB |
//! | certificate files and chains (`--cert`, `emulator --register`) | [`Limit::CERTIFICATE`]: 1 MiB |
//! | extra CA certificates (`--ca-file`) | [`Limit::CA_FILE`]: 4 MiB |
//! | JWTs and `@FILE` values (codes, tokens, assertions) | [`Limit::TEXT`]: 64 KiB |
//! | secret files (`pin-source=file:`, `password-source=file:`, `auth-source=file:`, `credential:`) | [`Limit::SECRET`]: 4 KiB |
//! | config files of profiles (`--config`, `config.toml`) | [`Limit::CONFIG`]: 64 KiB |
//!
//! A refusal travels as a [`std::io::Error`] (kind `InvalidInput` for a file of the wrong
//! kind, `FileTooLarge` for one over its limit) carrying a typed [`Refused`], so every
//! error variant that already keeps an I/O error as its `source` keeps this one too, and
//! [`refusal`] finds it. Its text names what the file is or the limit, never its contents.
//! Everything read is held in [`Zeroizing`] buffers, allocated once for a regular file.

use std::fmt;
use std::fs::{FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use zeroize::Zeroizing;

/// How much may be read from one input, and what kind of input the limit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    bytes: u64,
    what: &'static str,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

impl Limit {
    /// Key files (PEM/DER PKCS#8, PKCS#1, encrypted PKCS#8, PKCS#12) and TSS2 key files: 1 MiB.
    pub const KEY_FILE: Self = Self::new(MIB, "key files");
    /// Certificate files and chains: 1 MiB.
    pub const CERTIFICATE: Self = Self::new(MIB, "certificate files");
    /// Files of extra CA certificates to trust (a bundle may hold a few hundred): 4 MiB.
    pub const CA_FILE: Self = Self::new(4 * MIB, "CA certificate files");
    /// JWTs and values read from `@FILE` (authorization codes, tokens, assertions): 64 KiB.
    pub const TEXT: Self = Self::new(64 * KIB, "JWTs and @FILE values");
    /// Secret files (PINs, passwords): 4 KiB.
    pub const SECRET: Self = Self::new(4 * KIB, "secret files");
    /// Config files of profiles (`config.toml`): 64 KiB.
    pub const CONFIG: Self = Self::new(64 * KIB, "config files");

    /// A limit of `bytes` for `what` (plural, as in "the limit for key files").
    pub const fn new(bytes: u64, what: &'static str) -> Self {
        Self { bytes, what }
    }

    /// The most bytes an input may have.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What kind of input the limit is for, e.g. `key files`.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

/// `1 MiB`, `64 KiB`, `1000 bytes`.
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bytes {
            b if b >= MIB && b % MIB == 0 => write!(f, "{} MiB", b / MIB),
            b if b >= KIB && b % KIB == 0 => write!(f, "{} KiB", b / KIB),
            b => write!(f, "{b} bytes"),
        }
    }
}

/// What a path names when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A character device (`/dev/zero`, a terminal).
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// A FIFO (named pipe).
    Fifo,
    /// A unix socket.
    Socket,
    /// Anything else that is not a regular file.
    Other,
}

impl FileKind {
    fn of(t: FileType) -> Self {
        if t.is_dir() {
            Self::Directory
        } else if t.is_char_device() {
            Self::CharDevice
        } else if t.is_block_device() {
            Self::BlockDevice
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else {
            Self::Other
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Directory => "a directory",
            Self::CharDevice => "a character device",
            Self::BlockDevice => "a block device",
            Self::Fifo => "a FIFO (named pipe)",
            Self::Socket => "a socket",
            Self::Other => "not a file",
        })
    }
}

/// Why an input was refused before (or while) it was read. It names the kind of file or
/// the limit; the caller's error names the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The path names something other than a regular file.
    #[error("it is {kind}, not a regular file")]
    NotRegular {
        /// What it is.
        kind: FileKind,
    },
    /// The input holds more than its limit.
    #[error("it is larger than {limit}, the limit for {}", limit.what())]
    TooLarge {
        /// The limit it exceeds.
        limit: Limit,
    },
}

impl From<Refused> for io::Error {
    fn from(refused: Refused) -> Self {
        let kind = match refused {
            Refused::NotRegular { .. } => io::ErrorKind::InvalidInput,
            Refused::TooLarge { .. } => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, refused)
    }
}

/// The [`Refused`] an I/O error from this module carries, if it is a refusal (and not an
/// error of the operating system, such as a missing file).
pub fn refusal(error: &io::Error) -> Option<&Refused> {
    error.get_ref()?.downcast_ref()
}

/// The metadata of `path` (following symbolic links) if it names a regular file.
///
/// # Errors
/// The path cannot be examined, or it names a directory, device, FIFO or socket
/// ([`Refused::NotRegular`]).
pub fn regular_file(path: &Path) -> io::Result<Metadata> {
    let meta = std::fs::metadata(path)?;
    check_regular(&meta)?;
    Ok(meta)
}

fn check_regular(meta: &Metadata) -> io::Result<()> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(Refused::NotRegular {
            kind: FileKind::of(meta.file_type()),
        }
        .into())
    }
}

/// Read the regular file at `path`, at most `limit`.
///
/// The file is examined before it is opened, opened non-blocking (so a FIFO swapped in
/// meanwhile cannot block) and examined again once open.
///
/// # Errors
/// The file cannot be opened or read, it is not a regular file
/// ([`Refused::NotRegular`]), or it holds more than `limit` ([`Refused::TooLarge`]).
pub fn read_file(path: &Path, limit: Limit) -> io::Result<Zeroizing<Vec<u8>>> {
    regular_file(path)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    check_regular(&meta)?;
    read_limited(file, limit, meta.len())
}

/// Read the regular file at `path` as UTF-8 text, at most `limit` (see [`read_file`]).
///
/// # Errors
/// As [`read_file`], and `InvalidData` when the file is not UTF-8 text.
pub fn read_text_file(path: &Path, limit: Limit) -> io::Result<Zeroizing<String>> {
    into_text(read_file(path, limit)?)
}

/// Bytes read by this module as UTF-8 text, without a copy; on an error the bytes are
/// zeroized.
///
/// # Errors
/// `InvalidData` when the bytes are not UTF-8.
pub fn into_text(mut data: Zeroizing<Vec<u8>>) -> io::Result<Zeroizing<String>> {
    match String::from_utf8(std::mem::take(&mut *data)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "it is not UTF-8 text",
            ))
        }
    }
}

/// Read standard input to its end, at most `limit`.
///
/// # Errors
/// Standard input cannot be read, or it holds more than `limit` ([`Refused::TooLarge`]).
pub fn read_stdin(limit: Limit) -> io::Result<Zeroizing<Vec<u8>>> {
    read_limited(io::stdin().lock(), limit, 0)
}

/// Read `reader` to its end, at most `limit`; `expected` is a size hint.
///
/// # Errors
/// Reading fails, or there is more than `limit` ([`Refused::TooLarge`]).
pub fn read_limited(
    reader: impl Read,
    limit: Limit,
    expected: u64,
) -> io::Result<Zeroizing<Vec<u8>>> {
    // One allocation for a regular file: its size (within the limit) and the byte that
    // tells a file over the limit.
    let capacity = expected.min(limit.bytes).saturating_add(1);
    let mut data = Zeroizing::new(Vec::with_capacity(
        usize::try_from(capacity).unwrap_or(usize::MAX),
    ));
    reader
        .take(limit.bytes.saturating_add(1))
        .read_to_end(&mut data)?;
    if data.len() as u64 > limit.bytes {
        return Err(Refused::TooLarge { limit }.into());
    }
    Ok(data)
}

/// A file's identity and age (device, inode, length, modification and change times), to
/// notice that it was replaced or rewritten (`serve` watching a certificate or its config
/// file); equal stamps mean the file was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of the file at `path` (links followed), or `None` when there is none.
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_read_and_one_byte_more_refused() {
        let limit = Limit::new(10, "tests");
        let got = read_limited(&[7u8; 10][..], limit, 0).unwrap();
        assert_eq!(*got, vec![7u8; 10]);
        let e = read_limited(&[7u8; 11][..], limit, 11).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(refusal(&e), Some(&Refused::TooLarge { limit }));
        assert_eq!(
            e.to_string(),
            "it is larger than 10 bytes, the limit for tests"
        );
        // An endless reader stops one byte past the limit.
        let e = read_limited(io::repeat(0), Limit::TEXT, 0).unwrap_err();
        assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
    }

    #[test]
    fn files_at_and_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let limit = Limit::new(4 * KIB, "tests");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        assert_eq!(read_file(&path, limit).unwrap().len(), 4096);
        std::fs::write(&path, vec![b'x'; 4097]).unwrap();
        let e = read_file(&path, limit).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is larger than 4 KiB, the limit for tests"
        );
        std::fs::write(&path, b"").unwrap();
        assert!(read_file(&path, limit).unwrap().is_empty());
    }

    #[test]
    fn what_is_not_a_regular_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_file(dir.path(), Limit::KEY_FILE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
        let e = read_file(Path::new("/dev/zero"), Limit::KEY_FILE).unwrap_err();
        assert_eq!(
            refusal(&e),
            Some(&Refused::NotRegular {
                kind: FileKind::CharDevice
            })
        );
        let e = read_file(&dir.path().join("missing"), Limit::KEY_FILE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(refusal(&e).is_none());
    }

    #[test]
    fn limits_print_in_binary_units() {
        assert_eq!(Limit::KEY_FILE.to_string(), "1 MiB");
        assert_eq!(Limit::CA_FILE.to_string(), "4 MiB");
        assert_eq!(Limit::TEXT.to_string(), "64 KiB");
        assert_eq!(Limit::SECRET.to_string(), "4 KiB");
    }
}
