//! Ctrl-C and SIGTERM while a TPM key is open: a raw TPM (swtpm, `/dev/tpm0`) has no
//! resource manager, so a transient object left loaded by a killed process stays there
//! and takes one of its few slots. When the first [`super::TpmSigner`] that loads a
//! transient object opens (a `tpm:key=` file, or a key generation), a hook for SIGINT and
//! SIGTERM is installed: it flushes every such signer's objects (waiting at most
//! 10 s for a command in flight, e.g. a key generation), then lets the signal do what it
//! does by default (terminate). Programs with their own signal handling call
//! [`set_interrupt_cleanup`]`(false)` before opening a TPM key and drop their signers
//! themselves.
//!
//! This module knows signers only as `FlushOnInterrupt` trait objects: the signer
//! module registers itself here, and nothing here imports it.

use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once, Weak};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(true);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LIVE: Mutex<Vec<(u64, Weak<dyn FlushOnInterrupt>)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// How long the hook waits for signers to flush before the process ends anyway.
const GRACE: Duration = Duration::from_secs(10);

/// What the hook needs of an open signer.
pub(crate) trait FlushOnInterrupt: Send + Sync {
    /// Flush every transient object and disconnect for good, waiting for a command in
    /// flight at most until `deadline`.
    fn close_for_interrupt(&self, deadline: Instant);
}

/// Whether opening a TPM key installs the SIGINT/SIGTERM flush hook (default: yes).
/// Takes effect for signers opened afterwards; a hook already installed stays.
pub fn set_interrupt_cleanup(enabled: bool) {
    ENABLED.store(enabled, Ordering::SeqCst);
}

/// Register a signer; returns the id to unregister it with. `loads_transients`
/// says whether it will load transient objects (a key file, a key generation); only
/// then is the hook installed, so opening a persistent handle changes no signal handling.
pub(crate) fn register(signer: Weak<dyn FlushOnInterrupt>, loads_transients: bool) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if loads_transients && ENABLED.load(Ordering::SeqCst) {
        install();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, signer));
    }
    id
}

/// Forget a signer that has closed.
pub(crate) fn unregister(id: u64) {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(i, _)| *i != id);
}

fn install() {
    INSTALL.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("certassert-tpm-signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    flush_all();
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    std::process::exit(128 + signal);
                }
            });
    });
}

fn flush_all() {
    let live: Vec<Weak<dyn FlushOnInterrupt>> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, s)| s.clone())
        .collect();
    let deadline = Instant::now() + GRACE;
    for signer in live.iter().filter_map(Weak::upgrade) {
        signer.close_for_interrupt(deadline);
    }
}
