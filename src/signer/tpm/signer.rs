//! [`TpmSigner`]: the ESYS context and the loaded key behind one mutex. Signatures run
//! on the caller's thread (no hand-off to another thread, which measurably cost ~4% of
//! TPM throughput on a loaded machine); the mutex makes the context's use exclusive, as
//! ESYS requires.
//!
//! A key file's object is loaded only around each signature: once opened, its context is
//! saved (TPM2_ContextSave) and the object flushed; each signature loads the saved context
//! (TPM2_ContextLoad, no parent and no primary needed), signs and flushes again. So between
//! signatures — while a token request is on the network, for up to 90 s — no transient
//! object of ours is loaded, and a process killed then (SIGKILL, OOM) leaves nothing
//! behind on a TPM without a resource manager. The cost, two more TPM round trips per
//! signature, measured on swtpm with `examples/tpm_keyfile.rs` (debug build, shared
//! machine): 0.6–0.87× the signatures/s of a key kept loaded (e.g. 159–228 vs 225–267/s),
//! i.e. ~2 ms per signature — nothing next to a token request, and on a hardware TPM,
//! where TPM2_Sign itself takes tens of ms, a few per cent. Whatever is loaded is also flushed when the signer is dropped,
//! when opening fails, and when the process is interrupted (see [`super::interrupt`]).
//! A broken connection (swtpm restarted) is repaired once per signature: reconnect,
//! reload the key, check it is the same key, sign again — with the secrets read when the
//! key was opened, never asking again.

use super::context::{
    connect, describe, flush, is_connection_error, is_key_gone, is_object_memory, load_key,
    set_auth, tss, LoadedKey,
};
use super::generate;
use super::interrupt::{self, FlushOnInterrupt};
use super::keyfile::TssKey;
use super::sign::{self, KeyInfo, SignFailure};
use super::TpmError;
use crate::keyref::{KeyLocation, TpmUri};
use crate::secret::{Callbacks, Secret, SecretKind, SecretRequest, SecretSource};
use crate::signer::{Algorithm, Error, Signer};
use std::sync::{Arc, Mutex, MutexGuard};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::utils::TpmsContext;
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

/// The connection behind its mutex, shared with the interrupt hook.
pub(crate) struct Shared(Mutex<SendConnection>);

/// `Context` is not `Send` only because it holds raw pointers to the ESYS and TCTI
/// contexts. ESYS keeps no thread-local state; what it forbids is concurrent use, and
/// every use goes through the mutex in [`Shared`].
struct SendConnection(Connection);

// SAFETY: see `SendConnection`: the ESYS context is only ever touched with the mutex
// held, so it is used by one thread at a time; nothing in it is tied to the creating thread.
#[allow(unsafe_code)] // the one unsafe item in the crate; the SAFETY note above says why
unsafe impl Send for SendConnection {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SendConnection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FlushOnInterrupt for Shared {
    /// Flush and disconnect for good (the process is being interrupted): later
    /// signatures fail instead of reconnecting. Waits for a command in flight, at most
    /// until `deadline`.
    fn close_for_interrupt(&self, deadline: std::time::Instant) {
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
    /// Open the key a `tpm:` reference names. A TSS2 key file with a password and no
    /// `auth-source=` (or `auth-source=prompt`) asks `callbacks` for it, once.
    ///
    /// # Errors
    /// The TPM cannot be reached through its TCTI, nothing is persisted at the handle,
    /// the key file cannot be read or loaded, a password source cannot be read (or asked
    /// for), or the key is not an RSA signing key of at least 2048 bits.
    pub fn open(uri: &TpmUri, callbacks: &dyn Callbacks) -> Result<Self, Error> {
        Self::start(uri, Setup::Open, callbacks, None)
    }

    /// [`open`](Self::open), waiting at most `timeout` for the TPM to be reached and the
    /// key loaded (secrets are read or asked for first, without a limit). On timeout the
    /// attempt goes on in the background and is cleaned up when it ends.
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`Error::DeviceTimeout`].
    pub fn open_with_timeout(
        uri: &TpmUri,
        callbacks: &dyn Callbacks,
        timeout: std::time::Duration,
    ) -> Result<Self, Error> {
        Self::start(uri, Setup::Open, callbacks, Some(timeout))
    }

    /// Generate an RSA key of `bits` (2048, 3072 or 4096) in the TPM where `uri` says (a
    /// new TSS2 key file, or a free persistent handle) and open it.
    ///
    /// # Errors
    /// The size is not offered, the file exists, the handle is occupied, the TPM cannot
    /// be reached or refuses the key size, or a password is wrong.
    pub fn generate(uri: &TpmUri, bits: usize, callbacks: &dyn Callbacks) -> Result<Self, Error> {
        Self::start(uri, Setup::Generate { bits }, callbacks, None)
    }

    fn start(
        uri: &TpmUri,
        setup: Setup,
        callbacks: &dyn Callbacks,
        timeout: Option<std::time::Duration>,
    ) -> Result<Self, Error> {
        let uri = uri.clone();
        let name = uri.to_string();
        let what = uri.describe_key();
        let read_secret = |source: &SecretSource, kind: SecretKind, description: String| {
            source
                .read(&SecretRequest::new(kind, description), callbacks)
                .map_err(|source| Error::Secret {
                    path: what.clone().into(),
                    source,
                })
        };
        // A key file with a password and no auth-source= is asked for below, once read.
        let mut auth = match &uri.auth {
            Some(s) => Some(read_secret(
                s,
                SecretKind::TpmAuth,
                format!("password of the TPM key ({what})"),
            )?),
            None => None,
        }
        .filter(|s| !s.expose().is_empty());
        let parent_auth = match &uri.parent_auth {
            Some(s) => Some(read_secret(
                s,
                SecretKind::TpmParentAuth,
                "password of the TPM owner hierarchy / parent key".into(),
            )?),
            None => None,
        };
        let file = match (&uri.key, &setup) {
            (KeyLocation::File(path), Setup::Open) => {
                let data = crate::input::read_file(path, crate::input::Limit::KEY_FILE).map_err(
                    |source| Error::Io {
                        path: path.clone(),
                        source,
                    },
                )?;
                let tss = TssKey::from_file_bytes(&data).map_err(|e| Error::Format {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                if !tss.empty_auth && auth.is_none() {
                    let request = SecretRequest::new(
                        SecretKind::TpmAuth,
                        format!("password of the TPM key ({what})"),
                    );
                    auth = Some(
                        callbacks
                            .request_secret(&request)
                            .ok_or_else(|| TpmError::AuthNeeded { path: path.clone() })?,
                    );
                }
                Some(tss)
            }
            (KeyLocation::File(path), Setup::Generate { .. }) => {
                generate::check_new_file(path)?;
                None
            }
            (KeyLocation::Handle(_), _) => None,
        };

        let tcti = if uri.tcti_search {
            crate::keyref::tpm::DEFAULT_SEARCH.join(", then ")
        } else {
            uri.tcti.clone()
        };
        let loads_transients =
            matches!(uri.key, KeyLocation::File(_)) || matches!(setup, Setup::Generate { .. });
        let shared = Arc::new(Shared(Mutex::new(SendConnection(Connection {
            uri,
            file,
            auth,
            parent_auth,
            what,
            ctx: None,
            key: None,
            saved: None,
            info: None,
            tpm_pss_refused: false,
            context_lost: false,
            closed: false,
        }))));
        // Registered before anything is loaded; the hook waits for the lock we hold
        // during setup, then flushes what setup loaded.
        let hook: Arc<dyn FlushOnInterrupt> = shared.clone();
        let id = interrupt::register(Arc::downgrade(&hook), loads_transients);
        let run = |shared: &Shared| {
            let mut guard = shared.lock();
            let result = guard.0.setup(setup);
            if result.is_err() {
                guard.0.close();
            }
            result
        };
        let result = match timeout {
            None => run(&shared),
            Some(timeout) => {
                // Reaching the TPM and loading the key on a thread of its own: a stopped
                // TPM holds that thread, not the caller. A late success is closed (its
                // key flushed) when the thread lets go of `shared`.
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let background = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("certassert-tpm-open".into())
                    .spawn(move || {
                        let result = run(&background);
                        if let Err(std::sync::mpsc::SendError(Ok(_))) = tx.send(result) {
                            background.lock().0.close();
                        }
                    });
                match spawned {
                    Err(source) => Err(Error::DeviceThread { source }),
                    Ok(_) => rx.recv_timeout(timeout).unwrap_or_else(|_| {
                        Err(crate::signer::device::tpm_timeout(&tcti, timeout))
                    }),
                }
            }
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
    /// The key does not allow decryption ([`TpmError::NoRfc7518Ps256`]), or the TPM failed.
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
struct Connection {
    uri: TpmUri,
    file: Option<TssKey>,
    auth: Option<Secret>,
    parent_auth: Option<Secret>,
    what: String,
    ctx: Option<Context>,
    /// The key: a persistent handle, or a transient object while it is loaded (during
    /// setup and inside one signature).
    key: Option<LoadedKey>,
    /// A transient key's saved context, loaded around each signature.
    saved: Option<TpmsContext>,
    info: Option<KeyInfo>,
    tpm_pss_refused: bool,
    /// The saved context no longer loads (the TPM was reset): reload from the file.
    context_lost: bool,
    /// Closed for good (dropped or interrupted): no reconnecting.
    closed: bool,
}

impl Connection {
    fn setup(&mut self, setup: Setup) -> Result<KeyInfo, Error> {
        let searched = self.uri.tcti_search;
        let ctx = super::context::connect_uri(&mut self.uri)?;
        // A TPM the default search chose is named in any error that follows.
        self.setup_on(ctx, setup).map_err(|e| {
            if searched {
                TpmError::FoundBySearch {
                    tcti: self.uri.tcti.clone(),
                    source: Box::new(e),
                }
                .into()
            } else {
                e
            }
        })
    }

    fn setup_on(&mut self, mut ctx: Context, setup: Setup) -> Result<KeyInfo, Error> {
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
        self.park()?;
        Ok(info)
    }

    /// Save a loaded transient key's context and flush the object, so that nothing of
    /// ours stays loaded until the next signature. A persistent key stays as it is.
    fn park(&mut self) -> Result<(), Error> {
        let (Some(ctx), Some(key)) = (self.ctx.as_mut(), self.key.as_ref()) else {
            return Ok(());
        };
        if !key.transient {
            return Ok(());
        }
        let saved = ctx
            .context_save(ObjectHandle::from(key.handle))
            .map_err(|e| tss(format!("cannot save the context of the {}", self.what), e));
        if let Some(key) = self.key.take() {
            flush(ctx, key.handle);
        }
        self.saved = Some(saved?);
        Ok(())
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
        self.saved = None;
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
            return Err(TpmError::KeyChanged {
                what: self.what.clone(),
            }
            .into());
        }
        self.ctx = Some(ctx);
        self.key = Some(key);
        self.park()
    }

    fn try_sign(
        &mut self,
        alg: Algorithm,
        message: &[u8],
        force_host_pss: bool,
    ) -> Result<Vec<u8>, SignFailure> {
        let (Some(ctx), Some(info)) = (self.ctx.as_mut(), self.info.as_ref()) else {
            // Not connected: a previous reconnect failed. Treat as a broken connection.
            return Err(SignFailure::Tss(tss_esapi::Error::WrapperError(
                tss_esapi::WrapperErrorKind::InternalError,
            )));
        };
        let (handle, transient) = match (self.key.as_ref(), self.saved.as_ref()) {
            (Some(key), _) => (key.handle, false),
            (None, Some(saved)) => {
                // Load the key for this one signature; flushed below whatever happens.
                let handle = match ctx.context_load(saved.clone()) {
                    Ok(handle) => KeyHandle::from(handle),
                    Err(e) => {
                        // A TPM reset (behind a resource manager) voids saved contexts:
                        // reload the key from its file.
                        self.context_lost = !is_connection_error(&e) && !is_object_memory(&e);
                        return Err(SignFailure::Tss(e));
                    }
                };
                if let Some(secret) = self.auth.as_ref() {
                    if let Err(e) = set_auth(ctx, handle, secret) {
                        flush(ctx, handle);
                        return Err(SignFailure::Final(e));
                    }
                }
                (handle, true)
            }
            (None, None) => {
                return Err(SignFailure::Tss(tss_esapi::Error::WrapperError(
                    tss_esapi::WrapperErrorKind::InternalError,
                )))
            }
        };
        let result = sign::sign(
            ctx,
            handle,
            info,
            &mut self.tpm_pss_refused,
            alg,
            message,
            force_host_pss,
        );
        if transient {
            flush(ctx, handle);
        }
        result
    }

    fn sign(
        &mut self,
        alg: Algorithm,
        message: &[u8],
        force_host_pss: bool,
    ) -> Result<Vec<u8>, Error> {
        if self.closed {
            return Err(TpmError::Closed {
                what: self.what.clone(),
            }
            .into());
        }
        let connected = self.ctx.is_some();
        let failure = match self.try_sign(alg, message, force_host_pss) {
            Ok(sig) => return Ok(sig),
            Err(SignFailure::Final(e)) => return Err(e),
            Err(SignFailure::Tss(e)) => e,
        };
        let context_lost = std::mem::take(&mut self.context_lost);
        if connected && !is_connection_error(&failure) && !is_key_gone(&failure) && !context_lost {
            return Err(sign::sign_error(
                &self.what,
                alg,
                failure,
                self.auth.is_some(),
            ));
        }
        let lost = if connected {
            describe(&failure)
        } else {
            "an earlier reconnect failed".to_string()
        };
        self.reconnect().map_err(|e| TpmError::Reconnect {
            lost,
            tcti: self.uri.tcti.clone(),
            source: Box::new(e),
        })?;
        match self.try_sign(alg, message, force_host_pss) {
            Ok(sig) => Ok(sig),
            Err(SignFailure::Final(e)) => Err(e),
            Err(SignFailure::Tss(e)) => {
                Err(sign::sign_error(&self.what, alg, e, self.auth.is_some()))
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.release();
    }
}
