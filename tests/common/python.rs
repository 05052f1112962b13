//! Third-party Python clients from PyPI (azure-identity, MSAL Python) for tests that
//! check a shared protocol against a client we did not write. One virtual environment
//! per target directory (`CARGO_TARGET_TMPDIR/pyenv`), made on first use under a file
//! lock, so test binaries running at once share it; the packages are pinned and the
//! environment is remade when the pins change. Needs `python3` with `venv` (Debian:
//! python3-venv, in ci/install-deps.sh's base group) and PyPI.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;

/// The pinned packages; change a pin here and every test run remakes the environment.
pub const PACKAGES: &[&str] = &[
    "azure-identity==1.27.0",
    "msal==1.39.0",
    // kubectl's exec-credential protocol as the Kubernetes Python client speaks it.
    "kubernetes==37.0.2",
];

/// The environment's `python`, with [`PACKAGES`] installed. Panics with pip's output
/// when the environment cannot be made (no venv module, PyPI unreachable).
pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pyenv");
    fs::create_dir_all(&root).expect("create the pyenv directory");
    let lock = File::create(root.join(".lock")).expect("create the pyenv lock");
    lock.lock().expect("lock the pyenv directory");
    let venv = root.join("venv");
    let python = venv.join("bin/python");
    let stamp = root.join("installed");
    let wanted = PACKAGES.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let _ = fs::remove_dir_all(&venv);
    let _ = fs::remove_file(&stamp);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(PACKAGES));
    fs::write(&stamp, wanted).expect("write the pyenv stamp");
    python
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
