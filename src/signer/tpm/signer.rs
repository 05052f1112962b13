//! [`TpmSigner`]: the ESYS context and the loaded key behind one mutex. Signatures run
//! on the caller's thread (no hand-off to another thread, which measurably cost ~4% of
//! TPM throughput on a loaded machine); the mutex makes the context's use exclusive, as
//! ESYS requires. Every transient object loaded is flushed when the signer is dropped,
//! when opening fails, and when the process is interrupted (see [`super::interrupt`]).
//! A broken connection (swtpm restarted) is repaired once per signature: reconnect,
//! reload the key, check it is the same key, sign again.

use super::context::{
    connect, describe, flush, is_connection_error, is_key_gone, load_key, tpm_error, LoadedKey,
};
use super::generate;
use super::interrupt;
use super::keyfile::TssKey;
use super::sign::{self, KeyInfo, SignFailure};
use super::uri::{KeyLocation, TpmUri};
use crate::secret::Secret;
use crate::signer::{Algorithm, Error, Signer};
use std::sync::{Arc, Mutex, MutexGuard};
use tss_esapi::Context;

/// What opening does before the signer serves signatures.
pub(crate) enum Setup {
    Open,
    Generate { bits: usize },
}

/// A key in a TPM 2.0: a persistent handle or a TSS2 key file loaded under its parent.
pub struct TpmSigner {
    shared: Arc<Shared>,
    info: KeyInfo,
    name: String,
    id: u64,
}

/// The worker behind its mutex, shared with the interrupt hook.
pub(crate) struct Shared(Mutex<SendWorker>);

/// `Context` is not `Send` only because it holds raw pointers to the ESYS and TCTI
/// contexts. ESYS keeps no thread-local state; what it forbids is concurrent use, and
/// every use goes through the mutex in [`Shared`].
struct SendWorker(Worker);

// SAFETY: see `SendWorker`: the ESYS context is only ever touched with the mutex held,
// so it is used by one thread at a time; nothing in it is tied to the creating thread.
unsafe impl Send for SendWorker {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SendWorker> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flush and disconnect for good (the process is being interrupted): later
    /// signatures fail instead of reconnecting. Waits for a command in flight, at most
    /// until `deadline`.
    pub(crate) fn close_for_interrupt(&self, deadline: std::time::Instant) {
        loop {
            match self.0.try_lock() {
                Ok(mut guard) => return guard.0.close(),
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner().0.close(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }
}

impl std::fmt::Debug for TpmSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TpmSigner({})", self.name)
    }
}

impl TpmSigner {
    /// Open the key a `tpm:` reference names.
    ///
    /// # Errors
    /// The reference is malformed, the TPM cannot be reached through its TCTI, nothing is
    /// persisted at the handle, the key file cannot be read or loaded, a password source
    /// cannot be read, or the key is not an RSA signing key of at least 2048 bits.
    pub fn open(uri: &str) -> Result<Self, Error> {
        Self::start(uri, Setup::Open)
    }

    pub(crate) fn start(uri_text: &str, setup: Setup) -> Result<Self, Error> {
        let uri = TpmUri::parse(uri_text).map_err(|d| tpm_error("in the tpm: key reference", d))?;
        let name = format!(
            "tpm:{}",
            uri_text
                .trim_start_matches("tpm:")
                .split('?')
                .next()
                .unwrap_or("")
        );
        let what = uri.describe_key();
        let read_secret = |source: &crate::secret::SecretSource, label: &str| {
            source.read(label).map_err(|source| Error::Secret {
                path: what.clone().into(),
                source,
            })
        };
        let auth = match &uri.auth {
            Some(s) => Some(read_secret(
                s,
                &format!("password of the TPM key ({what})"),
            )?),
            None => None,
        }
        .filter(|s| !s.expose().is_empty());
        let parent_auth = match &uri.parent_auth {
            Some(s) => Some(read_secret(
                s,
                "password of the TPM owner hierarchy / parent key",
            )?),
            None => None,
        };
        let file = match (&uri.key, &setup) {
            (KeyLocation::File(path), Setup::Open) => {
                let data = std::fs::read(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                let tss = TssKey::from_file_bytes(&data).map_err(|detail| Error::Format {
                    path: path.clone(),
                    detail,
                })?;
                if !tss.empty_auth && auth.is_none() {
                    return Err(tpm_error(
                        format!(
                            "the TSS2 key {} has a password (its emptyAuth flag is not set)",
                            path.display()
                        ),
                        "add ?auth-source=env:VAR, file:PATH or prompt to the key reference",
                    ));
                }
                Some(tss)
            }
            (KeyLocation::File(path), Setup::Generate { .. }) => {
                generate::check_new_file(path)?;
                None
            }
            (KeyLocation::Handle(_), _) => None,
        };

        let loads_transients =
            matches!(uri.key, KeyLocation::File(_)) || matches!(setup, Setup::Generate { .. });
        let shared = Arc::new(Shared(Mutex::new(SendWorker(Worker {
            uri,
            file,
            auth,
            parent_auth,
            what,
            ctx: None,
            key: None,
            info: None,
            tpm_pss_refused: false,
            closed: false,
        }))));
        // Registered before anything is loaded; the hook waits for the lock we hold
        // during setup, then flushes what setup loaded.
        let id = interrupt::register(&shared, loads_transients);
        let result = {
            let mut guard = shared.lock();
            let result = guard.0.setup(setup);
            if result.is_err() {
                guard.0.close();
            }
            result
        };
        match result {
            Ok(info) => Ok(Self {
                shared,
                info,
                name,
                id,
            }),
            Err(e) => {
                interrupt::unregister(id);
                Err(e)
            }
        }
    }

    fn request(
        &self,
        alg: Algorithm,
        message: &[u8],
        force_host_pss: bool,
    ) -> Result<Vec<u8>, Error> {
        self.shared.lock().0.sign(alg, message, force_host_pss)
    }

    /// PS256 through the host-side EMSA-PSS + TPM2_RSA_Decrypt path, skipping TPM2_Sign:
    /// what `sign` falls back to when the TPM's own PSS salt is not 32 bytes. For tests
    /// of that path on TPMs (like swtpm) whose salt is fine.
    ///
    /// # Errors
    /// The key does not allow decryption ("this TPM cannot produce RFC 7518 PS256; use
    /// RS256"), or the TPM failed.
    #[doc(hidden)]
    pub fn sign_ps256_on_host(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.request(Algorithm::Ps256, message, true)
    }
}

impl Signer for TpmSigner {
    fn algorithms(&self) -> &[Algorithm] {
        &self.info.algorithms
    }

    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.request(alg, message, false)
    }

    fn public_key_der(&self) -> &[u8] {
        &self.info.spki
    }
}

impl Drop for TpmSigner {
    fn drop(&mut self) {
        interrupt::unregister(self.id);
        self.shared.lock().0.close();
    }
}

/// The connection, the key and what is needed to load it again.
struct Worker {
    uri: TpmUri,
    file: Option<TssKey>,
    auth: Option<Secret>,
    parent_auth: Option<Secret>,
    what: String,
    ctx: Option<Context>,
    key: Option<LoadedKey>,
    info: Option<KeyInfo>,
    tpm_pss_refused: bool,
    /// Closed for good (dropped or interrupted): no reconnecting.
    closed: bool,
}

impl Worker {
    fn setup(&mut self, setup: Setup) -> Result<KeyInfo, Error> {
        let mut ctx = connect(&self.uri.tcti)?;
        if let Setup::Generate { bits } = setup {
            let made = generate::generate(
                &mut ctx,
                &self.uri,
                bits,
                self.auth.as_ref(),
                self.parent_auth.as_ref(),
            )?;
            self.file = made;
        }
        let key = load_key(
            &mut ctx,
            &self.uri,
            self.file.as_ref(),
            self.auth.as_ref(),
            self.parent_auth.as_ref(),
        )?;
        let public = key.public.clone();
        self.ctx = Some(ctx);
        self.key = Some(key);
        // From here on a failure drops `self`, which flushes the key.
        let info = KeyInfo::from_public(&public, &self.what)?;
        self.info = Some(info.clone());
        Ok(info)
    }

    /// Flush, disconnect and refuse further work.
    fn close(&mut self) {
        self.closed = true;
        self.release();
    }

    /// Flush the transient key (if any) and close the connection.
    fn release(&mut self) {
        if let (Some(ctx), Some(key)) = (self.ctx.as_mut(), self.key.take()) {
            if key.transient {
                flush(ctx, key.handle);
            }
        }
        self.ctx = None;
    }

    fn reconnect(&mut self) -> Result<(), Error> {
        self.release();
        let mut ctx = connect(&self.uri.tcti)?;
        let key = load_key(
            &mut ctx,
            &self.uri,
            self.file.as_ref(),
            self.auth.as_ref(),
            self.parent_auth.as_ref(),
        )?;
        let same = KeyInfo::from_public(&key.public, &self.what)
            .map(|info| Some(&info.spki) == self.info.as_ref().map(|i| &i.spki));
        if !matches!(same, Ok(true)) {
            if key.transient {
                flush(&mut ctx, key.handle);
            }
            return Err(tpm_error(
                format!("the {} now holds a different key", self.what),
                "the TPM was cleared or the handle re-provisioned; open the key again",
            ));
        }
        self.ctx = Some(ctx);
        self.key = Some(key);
        Ok(())
    }

    fn try_sign(
        &mut self,
        alg: Algorithm,
        message: &[u8],
        force_host_pss: bool,
    ) -> Result<Vec<u8>, SignFailure> {
        let (Some(ctx), Some(key), Some(info)) =
            (self.ctx.as_mut(), self.key.as_ref(), self.info.as_ref())
        else {
            // Not connected: a previous reconnect failed. Treat as a broken connection.
            return Err(SignFailure::Tss(tss_esapi::Error::WrapperError(
                tss_esapi::WrapperErrorKind::InternalError,
            )));
        };
        sign::sign(
            ctx,
            key.handle,
            info,
            &mut self.tpm_pss_refused,
            alg,
            message,
            force_host_pss,
        )
    }

    fn sign(
        &mut self,
        alg: Algorithm,
        message: &[u8],
        force_host_pss: bool,
    ) -> Result<Vec<u8>, Error> {
        if self.closed {
            return Err(tpm_error(
                format!("the {} is closed", self.what),
                "the process is being interrupted",
            ));
        }
        let connected = self.ctx.is_some();
        let failure = match self.try_sign(alg, message, force_host_pss) {
            Ok(sig) => return Ok(sig),
            Err(SignFailure::Final(e)) => return Err(e),
            Err(SignFailure::Tss(e)) => e,
        };
        if connected && !is_connection_error(&failure) && !is_key_gone(&failure) {
            return Err(sign::sign_error(
                &self.what,
                alg,
                &failure,
                self.auth.is_some(),
            ));
        }
        let lost = if connected {
            describe(&failure)
        } else {
            "an earlier reconnect failed".to_string()
        };
        self.reconnect().map_err(|e| {
            tpm_error(
                format!("lost the connection to the TPM ({lost}) and could not reconnect through TCTI \"{}\"", self.uri.tcti),
                e.to_string(),
            )
        })?;
        match self.try_sign(alg, message, force_host_pss) {
            Ok(sig) => Ok(sig),
            Err(SignFailure::Final(e)) => Err(e),
            Err(SignFailure::Tss(e)) => {
                Err(sign::sign_error(&self.what, alg, &e, self.auth.is_some()))
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.release();
    }
}
