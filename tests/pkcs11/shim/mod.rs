//! The test-only fault-injecting PKCS#11 proxy (`faults.c` beside this file): how to build
//! it, point it at SoftHSM2, give it a schedule and read its counters. Shared by the
//! PKCS#11 tests and `examples/soak.rs` (which includes this file by path), so it uses
//! std only. See the comment at the top of `faults.c` for the schedule's directives and
//! what each injected failure does.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shim's C source.
pub const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pkcs11/shim/faults.c");

/// Build the shim into `dir/faults.so` with gcc and return its path.
///
/// # Panics
/// When gcc is missing or the build fails (its output is in the message).
pub fn build(dir: &Path) -> PathBuf {
    let so = dir.join("faults.so");
    let out = std::process::Command::new("gcc")
        .args([
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I/usr/include/p11-kit-1",
            "-o",
        ])
        .arg(&so)
        .arg(SOURCE)
        .args(["-ldl", "-lpthread"])
        .output()
        .expect("gcc is installed (and libp11-kit-dev for pkcs11.h)");
    assert!(
        out.status.success(),
        "building the PKCS#11 shim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// A built shim with its control and counter files in one directory.
pub struct Shim {
    /// The shim module to give as `module-path=`.
    pub module: PathBuf,
    control: PathBuf,
    stats: PathBuf,
}

impl Shim {
    /// Build the shim in `dir` and point this process's environment at it: the shim
    /// forwards to `real_module` and reads its schedule and writes its counters in `dir`.
    /// Call before the module is first loaded (the shim reads the environment on each
    /// call, but the module path only once).
    pub fn new(dir: &Path, real_module: &str) -> Self {
        let shim = Self {
            module: build(dir),
            control: dir.join("control"),
            stats: dir.join("stats"),
        };
        std::env::set_var("CERTASSERT_SHIM_MODULE", real_module);
        std::env::set_var("CERTASSERT_SHIM_CONTROL", &shim.control);
        std::env::set_var("CERTASSERT_SHIM_STATS", &shim.stats);
        shim.schedule("");
        shim
    }

    /// Replace the schedule (one directive a line: `fail C_Sign 1 DEVICE_REMOVED`,
    /// `every 50 C_Sign DEVICE_ERROR,SESSION_HANDLE_INVALID`, `slow 100`, `absent`).
    /// Written beside and renamed into place, so the shim never reads half a schedule
    /// and always sees a new file.
    pub fn schedule(&self, directives: &str) {
        let tmp = self.control.with_extension("new");
        std::fs::write(&tmp, directives).expect("write the shim's schedule");
        std::fs::rename(&tmp, &self.control).expect("rename the shim's schedule into place");
    }

    /// The counters the shim wrote as the last call returned (empty before any call).
    pub fn stats(&self) -> Stats {
        let text = std::fs::read_to_string(&self.stats).unwrap_or_default();
        Stats(
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
                .collect(),
        )
    }
}

/// The shim's counters: calls by function name (`C_Login`, `C_OpenSession`, `C_Sign`,
/// `C_CloseSession`, …), `live_sessions`, `stale` (calls on a session handle after the
/// caller was told it was gone), `close_dead`, `injected`, `removals`, `pins_presented`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(pub BTreeMap<String, u64>);

impl Stats {
    /// One counter (0 when the shim has not written it).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// How much each counter grew since `before`, for the counters that did.
    pub fn since(&self, before: &Stats) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.get(k));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}
