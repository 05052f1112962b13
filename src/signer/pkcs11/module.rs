//! Finding and loading PKCS#11 modules: one initialised [`Pkcs11`] context per module
//! per process (a module's `C_Initialize` may run only once), with OS locking so the
//! module serialises what it must and our session pool can sign from many threads.

use super::Pkcs11Error;
use crate::keyref::Pkcs11Uri;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Where p11-kit's proxy module is installed on the common distributions.
const P11KIT_PROXY: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/p11-kit-proxy.so",
    "/usr/local/lib/p11-kit-proxy.so",
    "/opt/homebrew/lib/p11-kit-proxy.dylib",
];

/// Where Yubico's ykcs11 is installed (Debian's ykcs11 package, yubico-piv-tool builds,
/// Homebrew).
const YKCS11: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libykcs11.so.2",
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
    "/usr/lib/aarch64-linux-gnu/libykcs11.so.2",
    "/usr/lib/aarch64-linux-gnu/libykcs11.so",
    "/usr/lib64/libykcs11.so.2",
    "/usr/lib64/libykcs11.so",
    "/usr/lib/libykcs11.so",
    "/usr/local/lib/libykcs11.so",
    "/opt/homebrew/lib/libykcs11.dylib",
    "/usr/local/lib/libykcs11.dylib",
];

/// Directories searched for `module-name=NAME` (as `NAME.so` / `libNAME.so`).
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64/pkcs11",
    "/usr/lib64",
    "/usr/lib/pkcs11",
    "/usr/lib/softhsm",
    "/usr/lib",
    "/usr/local/lib",
];

/// The environment variables that name the module when the reference does not, in the
/// order they are read: certassert's own, then libp11's (the OpenSSL engine's).
pub(crate) const MODULE_ENV: [&str; 2] = ["PKCS11_MODULE", "PKCS11_MODULE_PATH"];

/// The module a reference names: `module-path`, else `module-name`, else (for `piv:`)
/// ykcs11, else env `PKCS11_MODULE`, else env `PKCS11_MODULE_PATH` (libp11's name), else
/// p11-kit's proxy.
///
/// # Errors
/// The named module does not exist, or no default module is installed.
pub fn resolve(uri: &Pkcs11Uri) -> Result<PathBuf, Pkcs11Error> {
    if let Some(path) = &uri.module_path {
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(Pkcs11Error::Module {
                path,
                detail: "no such file; check module-path= (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so, OpenSC: /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)".into(),
                source: None,
            });
        }
        return Ok(path);
    }
    if let Some(name) = &uri.module_name {
        let candidates = [format!("{name}.so"), format!("lib{name}.so"), name.clone()];
        for dir in MODULE_DIRS {
            for file in &candidates {
                let p = Path::new(dir).join(file);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        return Err(Pkcs11Error::Module {
            path: PathBuf::from(name),
            detail: format!(
                "module-name={name} matches no {name}.so or lib{name}.so in {}; give module-path= instead",
                MODULE_DIRS.join(", ")
            ),
            source: None,
        });
    }
    if uri.piv_slot.is_some() {
        return first_existing(YKCS11).ok_or_else(|| Pkcs11Error::Module {
            path: PathBuf::from("libykcs11.so"),
            detail: "Yubico's PKCS#11 module is not installed (Debian/Ubuntu: apt install ykcs11; macOS: brew install yubico-piv-tool); or add ?module-path=/path/to/libykcs11.so".into(),
            source: None,
        });
    }
    // PKCS11_MODULE, then libp11's (the OpenSSL engine's) PKCS11_MODULE_PATH.
    for var in MODULE_ENV {
        if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            if !path.exists() {
                return Err(Pkcs11Error::Module {
                    path,
                    detail: format!("named by {var}, but no such file; fix the variable or add ?module-path=/path/to/module.so to the URI"),
                    source: None,
                });
            }
            return Ok(path);
        }
    }
    first_existing(P11KIT_PROXY).ok_or_else(|| Pkcs11Error::Module {
        path: PathBuf::from("p11-kit-proxy.so"),
        detail: "no module was named and p11-kit's proxy is not installed: add ?module-path=/path/to/module.so to the URI or set PKCS11_MODULE (or libp11's PKCS11_MODULE_PATH)".into(),
        source: None,
    })
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The process-wide context for `path`, loaded and initialised on first use.
///
/// # Errors
/// The library cannot be loaded (not a PKCS#11 module, missing dependency) or its
/// `C_Initialize` fails.
pub fn load(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(ctx) = modules.get(&key) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&key).map_err(|e| Pkcs11Error::Module {
        path: key.clone(),
        detail: format!("cannot load it as a PKCS#11 module: {e}"),
        source: Some(Box::new(e)),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Pkcs11Error::Module {
                path: key,
                detail: format!("C_Initialize failed: {e}{}", init_hint(path)),
                source: Some(Box::new(e)),
            })
        }
    }
    modules.insert(key, ctx.clone());
    Ok(ctx)
}

/// SoftHSM2 fails C_Initialize when its configuration is missing: say which.
fn init_hint(path: &Path) -> String {
    let is_softhsm = path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("libsofthsm"));
    if is_softhsm {
        let conf =
            std::env::var("SOFTHSM2_CONF").unwrap_or_else(|_| "/etc/softhsm/softhsm2.conf".into());
        format!(" (SoftHSM2 reads {conf}: check that it exists and that its directories.tokendir is readable; softhsm/provision.sh makes a throwaway one)")
    } else {
        String::new()
    }
}
