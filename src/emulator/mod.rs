//! A local Microsoft Entra ID token endpoint, as strict as the real one, for tests, the
//! demo and offline development. Apps and their certificates are registered at start;
//! client assertions are verified the way Entra does (RFC 8725 rules,
//! Entra's AADSTS codes and error JSON); the grants are client credentials (v2 `scope`
//! with `/.default`, or v1 `resource`), authorization codes seeded up front (single use,
//! optional PKCE), on-behalf-of (user tokens this emulator issued) and refresh tokens.
//! Access tokens are JWTs it signs with a key it generates. `tls` serves HTTPS with a
//! throwaway CA. Fault switches (a 429 with `Retry-After`, a 503, a slow answer, a
//! malformed body) exercise client retries. Every request is recorded for tests, and
//! served as JSON at `GET /_emulator/requests`.

mod grants;
mod server;
mod verify;

use crate::cert::Certificate;
use crate::encoding::{b64url, rfc3339, unix_now, uuid_v4};
use crate::signer::{Algorithm, Signer, SoftwareSigner};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A registered application.
#[derive(Debug, Clone)]
pub struct App {
    /// Its application (client) ID.
    pub client_id: String,
    /// Certificates registered for it (any of them may sign).
    pub certificates: Vec<Certificate>,
}

/// An authorization code seeded at start (what the authorize endpoint would have issued).
#[derive(Debug, Clone, Default)]
pub struct Code {
    /// The code.
    pub code: String,
    /// The client it was issued to (`None`: any registered client).
    pub client_id: Option<String>,
    /// The redirect URI it was issued for (`None`: any).
    pub redirect_uri: Option<String>,
    /// A PKCE S256 `code_challenge` the verifier must match.
    pub code_challenge: Option<String>,
    /// The user the code stands for (`sub`); default a fixed test user.
    pub user: Option<String>,
}

/// A one-shot misbehaviour, consumed by the next token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After` seconds.
    TooManyRequests {
        /// Seconds in `Retry-After`.
        retry_after: u64,
    },
    /// 503 Service Unavailable.
    Unavailable,
    /// Answer normally, after this delay.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "429" => Self::TooManyRequests { retry_after: 1 },
            "503" => Self::Unavailable,
            "malformed" => Self::Malformed,
            "slow" => Self::Slow(Duration::from_secs(3)),
            other => match other.strip_prefix("slow=") {
                Some(ms) => Self::Slow(Duration::from_millis(
                    ms.trim_end_matches("ms")
                        .parse()
                        .map_err(|_| format!("{other}: slow=MILLISECONDS"))?,
                )),
                None => {
                    return Err(format!(
                        "{other}: choose 429, 503, slow, slow=MS or malformed"
                    ))
                }
            },
        })
    }
}

/// What the emulator serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (loopback; port 0 picks one).
    pub listen: SocketAddr,
    /// Registered apps.
    pub apps: Vec<App>,
    /// The only tenant served (`None`: any tenant but the multi-tenant aliases).
    pub tenant: Option<String>,
    /// App roles put in client-credentials tokens.
    pub roles: Vec<String>,
    /// Seeded authorization codes.
    pub codes: Vec<Code>,
    /// Faults, in the order requests meet them.
    pub faults: Vec<Fault>,
    /// Serve HTTPS with a generated CA.
    pub tls: bool,
    /// Access-token lifetime in seconds (Entra: about an hour). At two hours or more the
    /// answer carries `refresh_in` (half the lifetime), as Entra's does.
    pub token_lifetime: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            apps: Vec::new(),
            tenant: None,
            roles: Vec::new(),
            codes: Vec::new(),
            faults: Vec::new(),
            tls: false,
            token_lifetime: 3599,
        }
    }
}

/// One request the emulator received.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The form fields in the order sent.
    pub form: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
    /// The AADSTS code of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

impl Recorded {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An Entra error answer.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, error: &'static str, code: u32, description: String) -> Self {
        Self {
            status,
            error,
            code,
            description,
        }
    }

    /// Entra's error JSON.
    fn body(&self, base_url: &str, correlation_id: &str) -> serde_json::Value {
        let trace_id = uuid_v4();
        let now = unix_now();
        let timestamp = rfc3339(now).replace('T', " ");
        serde_json::json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("{base_url}/error?code={}", self.code),
        })
    }
}

struct State {
    config: Config,
    signer: SoftwareSigner,
    kid: String,
    base_url: String,
    seen_jti: Mutex<HashSet<String>>,
    codes: Mutex<HashMap<String, (Code, bool)>>,
    refresh: Mutex<HashMap<String, (String, String)>>,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Vec<Recorded>>,
}

/// A running emulator; stops when dropped.
pub struct Running {
    state: Arc<State>,
    url: String,
    ca_pem: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Key or certificate generation failed.
    #[error("cannot create the emulator's keys: {0}")]
    Keys(String),
    /// The TLS configuration was refused.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The runtime could not start.
    #[error("cannot start the emulator: {0}")]
    Runtime(std::io::Error),
}

fn software_key() -> Result<SoftwareSigner, Error> {
    let der = crate::signer::generate_software_key(2048).map_err(|e| Error::Keys(e.to_string()))?;
    SoftwareSigner::from_pkcs8_der(&der).map_err(|e| Error::Keys(e.to_string()))
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
    let kid = b64url(
        &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signer.public_key_der()).as_ref()
            [..20],
    );
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
    let state = Arc::new(State {
        config,
        signer,
        kid,
        base_url: url.clone(),
        seen_jti: Mutex::default(),
        codes: Mutex::new(codes),
        refresh: Mutex::default(),
        faults: Mutex::new(faults),
        log: Mutex::default(),
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

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().expect("log").clone()
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

/// Sign RS256 with the emulator's key.
fn sign(state: &State, message: &[u8]) -> Vec<u8> {
    state
        .signer
        .sign(Algorithm::Rs256, message)
        .expect("a software RSA key signs")
}
