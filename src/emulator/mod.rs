//! A local Microsoft Entra ID token endpoint, as strict as the real one, for tests, the
//! demo and offline development. Apps and their certificates are registered at start
//! (`config`); client assertions are verified the way Entra does (RFC 8725 rules,
//! Entra's AADSTS codes and error JSON: `verify`); the grants (`grants`) are client
//! credentials (v2 `scope` with `/.default`, or v1 `resource`), authorization codes
//! seeded up front (single use, optional PKCE), on-behalf-of (user tokens this emulator
//! issued) and refresh tokens. Access tokens are JWTs it signs with a key it generates,
//! published as Entra publishes its keys: OpenID Connect discovery (v2 and v1), MSAL's
//! instance discovery and a JWKS (`discovery`), so MSAL, azure-identity and an API under
//! test can use the emulator as their authority. A reused `jti` is accepted within the
//! assertion's validity, as Entra does; [`Config::reject_jti_replay`] refuses it.
//! `tls` serves HTTPS with a throwaway CA. Fault switches (a 429 with `Retry-After`, a
//! 503, a slow answer, a malformed body) exercise client retries. Every request is
//! recorded for tests, and served as JSON at `GET /_emulator/requests` (`server`).
//! This module starts and stops it; the shared state is `state`'s.

mod config;
mod discovery;
mod error;
mod grants;
mod graph;
mod server;
mod state;
pub mod tls;
mod verify;

pub use config::{App, Code, Config, Fault, Observer, Recorded};
pub use error::Error;
pub use graph::AppObject;

use crate::encoding::unix_now;
use crate::signer::Signer;
use state::{software_key, State};
use std::sync::{Arc, Mutex};

/// A running emulator; stops when dropped.
pub struct Running {
    state: Arc<State>,
    url: String,
    ca_pem: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Start the emulator on its own thread and runtime.
///
/// # Errors
/// The address cannot be bound, or keys, TLS or the runtime cannot be set up.
pub fn start(config: Config) -> Result<Running, Error> {
    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(Error::Runtime)?;
    listener.set_nonblocking(true).map_err(Error::Runtime)?;
    let signer = software_key()?;
    let signing_cert = discovery::signing_certificate(&signer, unix_now()).map_err(Error::Keys)?;
    let kid = signing_cert.x5t();
    let (tls, ca_pem) = if config.tls {
        let (acceptor, ca) = server::tls_acceptor()?;
        (Some(acceptor), Some(ca))
    } else {
        (None, None)
    };
    let host = if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let url = format!(
        "{}://{host}:{}",
        if config.tls { "https" } else { "http" },
        addr.port()
    );
    let codes = config
        .codes
        .iter()
        .map(|c| (c.code.clone(), (c.clone(), false)))
        .collect();
    let faults = config.faults.iter().cloned().collect();
    let registry = graph::Registry::new(&config);
    let state = Arc::new(State {
        config,
        signer,
        signing_cert,
        kid,
        base_url: url.clone(),
        seen_jti: Mutex::default(),
        codes: Mutex::new(codes),
        refresh: Mutex::default(),
        faults: Mutex::new(faults),
        log: Mutex::default(),
        open: std::sync::atomic::AtomicUsize::new(0),
        graph: registry,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(Error::Runtime)?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let served = state.clone();
    let thread = std::thread::Builder::new()
        .name("emulator".into())
        .spawn(move || {
            runtime.block_on(server::serve(listener, tls, served, stopped));
            runtime.shutdown_background();
        })
        .map_err(Error::Runtime)?;
    Ok(Running {
        state,
        url,
        ca_pem,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl Running {
    /// The base URL, e.g. `http://127.0.0.1:40123` (the authority host to use).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The v2 (`v1 == false`) or v1 token endpoint for `tenant`, built the one way
    /// every token endpoint is ([`entra::endpoint`](crate::entra::endpoint)).
    ///
    /// # Errors
    /// `tenant` is empty, a multi-tenant alias, or not an ID or domain.
    pub fn token_endpoint(
        &self,
        tenant: &str,
        v1: bool,
    ) -> Result<String, crate::entra::authority::Error> {
        let version = if v1 {
            crate::entra::EndpointVersion::V1
        } else {
            crate::entra::EndpointVersion::V2
        };
        crate::entra::endpoint(&self.url, Some(tenant), None, version)
    }

    /// The CA certificate (PEM) that issued the HTTPS server certificate, with `tls`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The public key (SubjectPublicKeyInfo DER) that signs issued tokens.
    pub fn signing_key_spki(&self) -> &[u8] {
        self.state.signer.public_key_der()
    }

    /// The self-signed certificate of the token-signing key, as the JWKS publishes it
    /// (its `x5t` is the `kid` of issued tokens).
    pub fn signing_certificate(&self) -> &crate::cert::Certificate {
        &self.state.signing_cert
    }

    /// The authority for `tenant` as MSAL and azure-identity take it: `{url}/{tenant}`.
    pub fn authority(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.url)
    }

    /// The JWKS URL for `tenant` (v2), as its discovery document names it.
    pub fn jwks_uri(&self, tenant: &str) -> String {
        format!("{}/{tenant}/discovery/v2.0/keys", self.url)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().expect("log").clone()
    }

    /// How many connections it is serving now (at most
    /// [`Config::max_connections`]).
    pub fn open_connections(&self) -> usize {
        self.state.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every registered app with its object id and current certificate credentials
    /// (`keyId`, thumbprint), as Graph's `addKey`/`removeKey` left them.
    pub fn apps(&self) -> Vec<AppObject> {
        self.state.graph.objects()
    }

    /// Queue a fault for the next token request(s).
    pub fn push_fault(&self, fault: Fault) {
        self.state.faults.lock().expect("faults").push_back(fault);
    }

    /// Seed another authorization code.
    pub fn seed_code(&self, code: Code) {
        self.state
            .codes
            .lock()
            .expect("codes")
            .insert(code.code.clone(), (code, false));
    }

    /// A user access token for an API whose client id is `api_client_id`, as a caller
    /// of that API would send it (the on-behalf-of `assertion`), valid `lifetime` seconds.
    pub fn issue_user_token(&self, api_client_id: &str, user: &str, lifetime: i64) -> String {
        let now = unix_now();
        let tenant = self
            .state
            .config
            .tenant
            .clone()
            .unwrap_or_else(|| "emulator".into());
        grants::sign_token(
            &self.state,
            serde_json::json!({
                "aud": api_client_id, "iss": format!("{}/{tenant}/v2.0", self.url),
                "iat": now, "nbf": now, "exp": now + lifetime, "sub": user, "oid": user,
                "tid": tenant, "scp": "access_as_user", "azp": "emulator-spa", "ver": "2.0",
            }),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
