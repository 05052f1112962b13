//! A local managed-identity endpoint (feature `serve`), so that applications using the
//! Azure SDKs unchanged get tokens from a certificate credential whose key stays in its
//! HSM, TPM or key file. It answers the App Service protocol at `/msi/token`
//! (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) and the IMDS protocol at
//! `/metadata/identity/oauth2/token` (`AZURE_POD_IDENTITY_AUTHORITY_HOST`), on loopback
//! only ([`protocol`]: what a request may ask and what it is answered).
//!
//! Behind the endpoints is one agent ([`start`]): a list of [`Identity`]s, each a key
//! opened once by the caller (one PIN login, one TPM load for the life of the process)
//! with its certificate chain, tenant and client id; a request picks one by its
//! `client_id` (none picks the first). Tokens are kept in memory per (identity,
//! resource), refreshed in the background before they expire (at Entra's `refresh_in`,
//! else [`Config::refresh_before`] ahead), and fetched once for any number of concurrent
//! requests. A refused credential is answered from memory during a back-off instead of
//! being sent to Entra again. The certificate file is re-read when it changes
//! ([`Config::reload_interval`]) or on [`Running::reload`] (the CLI's SIGHUP).
//! [`Running::shutdown`] stops accepting, finishes the requests in flight and drops the
//! keys (flushing TPM objects).
//!
//! The identity secret ([`Config::secret`]) is compared in constant time; [`env_file`]
//! writes it with the endpoint to an owner-only file applications can read. Each request
//! is reported as one [`Event::Request`] to [`Config::log`] — never the token or the
//! secret.

pub mod env_file;
pub mod protocol;

mod agent;
mod server;

pub use agent::CacheUse;

use crate::cert::Certificate;
use crate::entra::HttpOptions;
use crate::secret::Secret;
use crate::signer::{Algorithm, Signer};
use agent::{Agent, Served};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One app registration the agent gets tokens for.
#[derive(Clone)]
#[non_exhaustive]
pub struct Identity {
    /// The key, opened once for the life of the agent.
    pub signer: Arc<dyn Signer>,
    /// The registered certificate first, then its issuers.
    pub chain: Vec<Certificate>,
    /// The file the chain was read from, re-read when it changes; `None` when the
    /// certificate is the one stored with the key.
    pub cert_path: Option<PathBuf>,
    /// The tenant (ID or verified domain); may be `None` with [`token_url`](Self::token_url).
    pub tenant: Option<String>,
    /// The application (client) ID; also what a request's `client_id` names.
    pub client_id: String,
    /// The authority host (default: the public cloud).
    pub authority_host: String,
    /// A token endpoint of any RFC 7523 server instead of the authority's.
    pub token_url: Option<String>,
    /// RS256 (`x5t`) or PS256 (`x5t#S256`).
    pub alg: Algorithm,
    /// Send the chain as `x5c`.
    pub x5c: bool,
    /// Seconds each assertion stays valid.
    pub lifetime: u64,
    /// Extra CA certificates (PEM) for the token endpoint.
    pub ca_file: Option<PathBuf>,
}

impl Identity {
    /// An identity for `client_id` in `tenant` with this key and chain, on the public
    /// cloud, RS256, no `x5c`, the default assertion lifetime.
    pub fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        tenant: Option<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            signer,
            chain,
            cert_path: None,
            tenant,
            client_id: client_id.into(),
            authority_host: crate::entra::AUTHORITY_PUBLIC.into(),
            token_url: None,
            alg: Algorithm::Rs256,
            x5c: false,
            lifetime: crate::assertion::DEFAULT_LIFETIME,
            ca_file: None,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("client_id", &self.client_id)
            .field("tenant", &self.tenant)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// Receives the agent's [`Event`]s (the CLI prints each as a line on stderr).
pub type LogFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// What the agent reports: one event per request, and what happens in the background.
/// None of them holds a token or the identity secret; text that came from a request is
/// escaped and bounded when shown.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A request was answered.
    Request {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The resource asked for, if the request got that far.
        resource: Option<String>,
        /// The identity's client id, if one was picked.
        client_id: Option<String>,
        /// How the cache was used.
        cache: CacheUse,
        /// The status answered.
        status: u16,
        /// From the request head to the answer.
        latency: Duration,
    },
    /// A background refresh ran.
    Refreshed {
        /// The identity.
        client_id: String,
        /// The resource.
        resource: String,
        /// Why it failed, if it did (the cached token is served until it expires).
        error: Option<String>,
    },
    /// A certificate file was (re-)read and is in use.
    CertificateLoaded {
        /// The identity.
        client_id: String,
        /// The file.
        path: PathBuf,
        /// The leaf's SHA-1 thumbprint (hex).
        thumbprint: String,
        /// Whether it differs from the one in use before.
        changed: bool,
    },
    /// A changed certificate file could not be used; the one loaded before stays.
    CertificateRefused {
        /// The identity.
        client_id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// An identity's key was replaced ([`Running::replace_key`]: a profile rewritten by
    /// `cert rotate`).
    KeyReplaced {
        /// The identity.
        client_id: String,
        /// The new certificate's SHA-1 thumbprint (hex).
        thumbprint: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::entra::error::ServerText;
        fn shown(v: &Option<String>) -> ServerText<'_> {
            ServerText(v.as_deref().unwrap_or("-"), 200)
        }
        match self {
            Self::Request {
                method,
                path,
                resource,
                client_id,
                cache,
                status,
                latency,
            } => {
                // Tenths of a millisecond, rounded, in integers (no float formatting for a
                // line per request).
                let tenths = (latency.as_micros() + 50) / 100;
                write!(
                    f,
                    "{} {} resource={} client={} cache={} status={status} {}.{}ms",
                    ServerText(method, 16),
                    ServerText(path, 200),
                    shown(resource),
                    shown(client_id),
                    cache.as_str(),
                    tenths / 10,
                    tenths % 10
                )
            }
            Self::Refreshed {
                client_id,
                resource,
                error: None,
            } => write!(f, "refreshed resource={resource} client={client_id}"),
            Self::Refreshed {
                client_id,
                resource,
                error: Some(e),
            } => write!(
                f,
                "refresh failed resource={resource} client={client_id}: {e}"
            ),
            Self::CertificateLoaded {
                client_id,
                path,
                thumbprint,
                changed,
            } => write!(
                f,
                "certificate {} for client={client_id}: {thumbprint}{}",
                path.display(),
                if *changed { " (new)" } else { " (unchanged)" }
            ),
            Self::CertificateRefused {
                client_id,
                path,
                error,
            } => write!(
                f,
                "certificate {} for client={client_id} not used, keeping the one loaded: {error}",
                path.display()
            ),
            Self::KeyReplaced {
                client_id,
                thumbprint,
            } => write!(
                f,
                "key for client={client_id} replaced: certificate {thumbprint} now signs"
            ),
        }
    }
}

/// The agent's settings besides its identities.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen: a loopback address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The identities served; a request without `client_id` gets the first.
    pub identities: Vec<Identity>,
    /// The identity secret App Service clients send as `X-IDENTITY-HEADER`.
    pub secret: Secret,
    /// Whether the IMDS endpoint answers. IMDS clients send no secret (only `Metadata:
    /// true`), so any local process that reaches the port gets tokens; turn it off where
    /// other users share the machine and the apps speak App Service.
    pub imds: bool,
    /// The longest wait for a request head (also the idle timeout of a kept-alive
    /// connection); a slower client is cut off.
    pub header_timeout: Duration,
    /// The longest a request waits for its token (its own fetch, or another's it waits
    /// for); then it is answered 504. A fetch that goes on finishes in the background.
    pub request_timeout: Duration,
    /// How many connections are served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The back-off after a failed fetch: doubling with each upstream failure in a row
    /// (a refusal, no answer); a local one (the key) waits this long each time.
    pub backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
    /// How long before expiry a token is renewed when Entra sent no `refresh_in`.
    pub refresh_before: Duration,
    /// How often certificate files are checked for a change.
    pub reload_interval: Duration,
    /// How long [`Running::shutdown`] waits for requests in flight.
    pub grace: Duration,
    /// The most (identity, resource) pairs held in memory.
    pub max_resources: usize,
    /// HTTP options for the token endpoint (timeouts, retries); an identity's
    /// [`ca_file`](Identity::ca_file) is added to them.
    pub http: HttpOptions,
    /// Where events go (none: nowhere).
    pub log: Option<LogFn>,
}

impl Config {
    /// Listen on `listen` for `identities` with `secret`, and the defaults: both
    /// protocols, header timeout 5 s, 120 s for a token, 256 connections, back-off 5 s
    /// doubling to 5 min, renewal 5 min before expiry, certificate check every 5 s, 10 s
    /// shutdown grace, 1024 resources.
    pub fn new(listen: SocketAddr, identities: Vec<Identity>, secret: Secret) -> Self {
        Self {
            listen,
            identities,
            secret,
            imds: true,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            max_connections: 256,
            backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            refresh_before: Duration::from_secs(300),
            reload_interval: Duration::from_secs(5),
            grace: Duration::from_secs(10),
            max_resources: 1024,
            http: HttpOptions::default(),
            log: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

/// What the agent needs of [`Config`] after start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub refresh_before: Duration,
    pub max_resources: usize,
}

/// The event sink.
#[derive(Clone, Default)]
pub(crate) struct Log(Option<LogFn>);

impl Log {
    pub(crate) fn emit(&self, event: &Event) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }
}

/// The shortest identity secret taken (an `X-IDENTITY-HEADER` value).
pub const MIN_SECRET_CHARS: usize = 16;

/// Check that `secret` can serve as the identity secret: at least [`MIN_SECRET_CHARS`]
/// characters of visible ASCII (an HTTP header value, compared as sent).
///
/// # Errors
/// [`Error::BadSecret`].
pub fn check_secret(secret: &Secret) -> Result<(), Error> {
    let text = secret.expose();
    if text.len() < MIN_SECRET_CHARS || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadSecret);
    }
    Ok(())
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address is not a loopback address.
    #[error("{addr} is not a loopback address: the agent hands out tokens, so it listens on 127.0.0.1 or [::1] only, where no other machine can reach it")]
    NotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No identity was given.
    #[error("no identity to serve: give at least one key, certificate, tenant and client id")]
    NoIdentity,
    /// Two identities have the same client id, so a request could not pick one.
    #[error("client id {client_id} is given twice: each identity needs its own app registration")]
    DuplicateClientId {
        /// The client id.
        client_id: String,
    },
    /// An identity has no certificate.
    #[error("identity {client_id} has no certificate")]
    NoCertificate {
        /// The client id.
        client_id: String,
    },
    /// An identity's token endpoint cannot be formed (tenant, authority host, token URL).
    #[error("identity {client_id}: {source}")]
    Endpoint {
        /// The client id.
        client_id: String,
        /// Why.
        source: crate::entra::authority::Error,
    },
    /// The identity secret is too short or holds characters a header cannot carry.
    #[error("the identity secret must be at least {MIN_SECRET_CHARS} characters of visible ASCII (no spaces), as an HTTP header carries it")]
    BadSecret,
    /// The runtime or a thread could not start.
    #[error("cannot start the agent: {0}")]
    Runtime(std::io::Error),
    /// [`Running::replace_key`] named a client id the agent does not serve.
    #[error("this agent serves no identity with client id {client_id}")]
    UnknownClientId {
        /// The client id.
        client_id: String,
    },
    /// [`Running::replace_key`] was given a certificate that is not the new key's, or not
    /// valid now; the old key stays in use.
    #[error("the new key for client {client_id} was not put in use: {source}")]
    KeyRefused {
        /// The client id.
        client_id: String,
        /// Why.
        source: Box<crate::cert::Error>,
    },
}

/// A running agent; [`shutdown`](Self::shutdown) (or dropping it) stops it.
pub struct Running {
    addr: SocketAddr,
    agent: Option<Arc<Agent>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    reload: tokio::sync::mpsc::UnboundedSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Start the agent on its own thread and runtime.
///
/// # Errors
/// A non-loopback address ([`Error::NotLoopback`]), no identity, a duplicate client id,
/// an identity whose token endpoint cannot be formed, a weak secret, or the address
/// cannot be bound.
pub fn start(config: Config) -> Result<Running, Error> {
    if !config.listen.ip().is_loopback() {
        return Err(Error::NotLoopback {
            addr: config.listen,
        });
    }
    check_secret(&config.secret)?;
    if config.identities.is_empty() {
        return Err(Error::NoIdentity);
    }
    let mut served = Vec::new();
    for identity in config.identities.iter().cloned() {
        if served
            .iter()
            .any(|s: &Served| s.client_id.eq_ignore_ascii_case(&identity.client_id))
        {
            return Err(Error::DuplicateClientId {
                client_id: identity.client_id,
            });
        }
        if identity.chain.is_empty() {
            return Err(Error::NoCertificate {
                client_id: identity.client_id,
            });
        }
        served.push(Served::new(identity, &config.http)?);
    }
    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(Error::Runtime)?;
    listener.set_nonblocking(true).map_err(Error::Runtime)?;
    let settings = Settings {
        backoff: config.backoff,
        max_backoff: config.max_backoff,
        refresh_before: config.refresh_before,
        max_resources: config.max_resources.max(1),
    };
    let agent = Arc::new(Agent::new(served, settings, Log(config.log.clone())));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("certassert-serve")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(Error::Runtime)?
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let server = server::Server {
        agent: agent.clone(),
        secret: protocol::SecretDigest::new(&config.secret),
        imds: config.imds,
        header_timeout: config.header_timeout,
        request_timeout: config.request_timeout,
        max_connections: config.max_connections.max(1),
        grace: config.grace,
    };
    let reload_interval = config.reload_interval;
    let watched = agent.clone();
    let thread = std::thread::Builder::new()
        .name("certassert-serve".into())
        .spawn(move || {
            runtime.spawn(server::watch_certificates(
                watched,
                reload_interval,
                reloads,
                stopped.clone(),
            ));
            runtime.block_on(server.serve(listener, stopped));
            // Background refreshes and fetches still waiting are dropped with the runtime;
            // a fetch running on a blocking thread finishes there first.
            runtime.shutdown_timeout(config.grace);
        })
        .map_err(Error::Runtime)?;
    Ok(Running {
        addr,
        agent: Some(agent),
        stop: Some(stop),
        reload,
        thread: Some(thread),
    })
}

impl Running {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:40123` (`AZURE_POD_IDENTITY_AUTHORITY_HOST`
    /// for IMDS clients).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The App Service endpoint (`IDENTITY_ENDPOINT`), e.g. `http://127.0.0.1:40123/msi/token`.
    pub fn identity_endpoint(&self) -> String {
        format!("{}{}", self.url(), protocol::APP_SERVICE_PATH)
    }

    /// How many token requests the agent has sent upstream (fetches started).
    pub fn fetches(&self) -> u64 {
        self.agent
            .as_ref()
            .map_or(0, |a| a.fetches.load(Ordering::SeqCst))
    }

    /// Re-read every identity's certificate file now (the CLI's SIGHUP), whether or not
    /// it changed; the outcome is reported as an [`Event`].
    pub fn reload(&self) {
        let _ = self.reload.send(());
    }

    /// Put a new key in place for identity `client_id` (a profile that `cert rotate`
    /// rewrote): `chain` must be the key's and valid now, else the old key stays. Requests
    /// keep being answered throughout; tokens already held stay valid. `cert_path` is the
    /// file watched for the chain from now on.
    ///
    /// # Errors
    /// [`Error::UnknownClientId`], [`Error::NoCertificate`] or [`Error::KeyRefused`].
    pub fn replace_key(
        &self,
        client_id: &str,
        signer: Arc<dyn crate::signer::Signer>,
        chain: Vec<Certificate>,
        cert_path: Option<PathBuf>,
    ) -> Result<(), Error> {
        match &self.agent {
            Some(agent) => agent.replace_key(client_id, signer, chain, cert_path),
            None => Err(Error::UnknownClientId {
                client_id: client_id.to_string(),
            }),
        }
    }

    /// Stop accepting, let the requests in flight finish (at most [`Config::grace`]),
    /// stop the background work, and drop the identities: keys are closed (TPM objects
    /// flushed, PKCS#11 sessions closed) before this returns, unless a device call that
    /// timed out is still stuck on its own thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.agent = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
