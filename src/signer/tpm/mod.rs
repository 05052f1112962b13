//! TPM 2.0 backend: RSA keys kept in a TPM, named by `tpm:handle=0x81…` (a persistent
//! object) or `tpm:key=PATH` (a `TSS2 PRIVATE KEY` file as tpm2-openssl and
//! openssl_tpm2_engine write them, loaded under the standard storage primary).
//!
//! - [`uri`] parses the reference (`tcti=`, `auth-source=`, `parent-auth-source=`);
//! - [`keyfile`] reads and writes TSS2 key files;
//! - `context` connects, builds the standard primary and loads keys;
//! - `sign` does RS256 / PS256 (with the strict-salt check and host-side fallback);
//! - `generate` makes keys; `worker` keeps the ESYS context and key behind a mutex;
//! - [`interrupt`] flushes transient objects on Ctrl-C / SIGTERM.

mod context;
mod generate;
pub mod interrupt;
pub mod keyfile;
mod sign;
pub mod uri;
mod worker;

pub use interrupt::set_interrupt_cleanup;
pub use sign::NO_RFC7518_PS256;
pub use worker::TpmSigner;

/// Generate an RSA key of `bits` in the TPM where `uri` says (a new TSS2 key file, or a
/// free persistent handle) and open it. `label` has no meaning in a TPM and is ignored.
///
/// # Errors
/// The file exists, the handle is occupied, the TPM cannot be reached or refuses the key
/// size, or a password is wrong.
pub fn generate(
    uri: &str,
    bits: usize,
    _label: Option<&str>,
) -> Result<TpmSigner, crate::signer::Error> {
    TpmSigner::start(uri, worker::Setup::Generate { bits })
}
