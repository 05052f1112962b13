//! The agent behind the endpoints: the identities it serves (each with its key, opened
//! once, and its certificate chain, re-read when the file changes), the in-memory cache
//! of one token per (identity, resource), single flight (concurrent requests for a
//! token not cached wait for one fetch), the background refresh before expiry, and the
//! back-off that keeps a refused credential from hammering Entra.
//!
//! A fetch is the library's token flow ([`Client::acquire`]) with no disk cache, run
//! under `spawn_blocking`: the signature and the blocking HTTP exchange never hold up the
//! server's threads.

use super::protocol::{Ask, Refusal};
use super::{Event, Identity, Log, Settings};
use crate::cert::Certificate;
use crate::encoding::unix_now;
use crate::entra::{self, Client, Credential, Grant, HttpOptions, Target, TokenRequest};
use crate::input::Stamp;
use crate::secret::Secret;
use crate::signer::{Algorithm, Signer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A token is handed out only while it has more than this left.
const MIN_LEFT: i64 = 60;

/// The status of a failure that happened here, not upstream ([`refusal`]).
const LOCAL: u16 = 500;

/// How a request was answered, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheUse {
    /// From memory.
    Hit,
    /// Waited for another request's fetch, then from memory.
    Waited,
    /// Fetched from the token endpoint.
    Miss,
    /// A recent failure answered again, within its back-off: nothing was sent.
    BackedOff,
    /// Refused before the cache was looked at.
    None,
}

impl CacheUse {
    /// The word in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Waited => "wait",
            Self::Miss => "miss",
            Self::BackedOff => "backoff",
            Self::None => "-",
        }
    }
}

/// A token held in memory.
#[derive(Debug)]
pub(crate) struct Held {
    pub access_token: Secret,
    pub expires_on: i64,
    pub obtained_at: i64,
    /// When the background refresh fetches its successor.
    pub refresh_at: i64,
    /// The App Service answer, which does not change while the token does not (IMDS's
    /// has `expires_in`): made on the first request, then the same bytes each time.
    pub app_service_answer: std::sync::OnceLock<bytes::Bytes>,
}

impl Held {
    /// This token's App Service answer for `resource` and `client_id` (the slot's).
    pub fn app_service_answer(&self, resource: &str, client_id: &str) -> bytes::Bytes {
        self.app_service_answer
            .get_or_init(|| {
                let body = super::protocol::answer(
                    super::protocol::Protocol::AppService,
                    &super::protocol::Issued {
                        access_token: self.access_token.expose(),
                        expires_on: self.expires_on,
                        obtained_at: self.obtained_at,
                        resource,
                        client_id,
                    },
                    unix_now(),
                );
                // It holds the token: wiped when the last answer that uses it is sent.
                bytes::Bytes::from_owner(zeroize::Zeroizing::new(body))
            })
            .clone()
    }
}

/// One identity, as the agent keeps it.
pub(crate) struct Served {
    pub client_id: String,
    /// The key and its chain, replaced together ([`Served::replace`]).
    signer: RwLock<Arc<dyn Signer>>,
    chain: RwLock<Arc<Vec<Certificate>>>,
    cert_path: RwLock<Option<PathBuf>>,
    stamp: Mutex<Option<Stamp>>,
    endpoint: String,
    alg: Algorithm,
    x5c: bool,
    lifetime: u64,
    client: Client,
}

impl Served {
    pub(crate) fn new(identity: Identity, http: &HttpOptions) -> Result<Self, super::Error> {
        let endpoint = entra::endpoint(
            &identity.authority_host,
            identity.tenant.as_deref(),
            identity.token_url.as_deref(),
            entra::EndpointVersion::V2,
        )
        .map_err(|source| super::Error::Endpoint {
            client_id: identity.client_id.clone(),
            source,
        })?;
        let options = HttpOptions {
            ca_file: identity.ca_file.clone().or_else(|| http.ca_file.clone()),
            ..http.clone()
        };
        let stamp = identity.cert_path.as_deref().and_then(Stamp::of);
        Ok(Self {
            client_id: identity.client_id,
            signer: RwLock::new(identity.signer),
            chain: RwLock::new(Arc::new(identity.chain)),
            cert_path: RwLock::new(identity.cert_path),
            stamp: Mutex::new(stamp),
            endpoint,
            alg: identity.alg,
            x5c: identity.x5c,
            lifetime: identity.lifetime,
            client: Client::new(options, None),
        })
    }

    fn chain(&self) -> Arc<Vec<Certificate>> {
        self.chain.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn signer(&self) -> Arc<dyn Signer> {
        self.signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Put a new key, its chain (checked against it: same key, valid now) and the file to
    /// watch for it in place of the old ones; the old key is closed when the last
    /// signature in flight with it ends. Tokens already held stay (they are the app's,
    /// not the key's).
    pub(crate) fn replace(
        &self,
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        cert_path: Option<PathBuf>,
    ) -> Result<(), super::Error> {
        let Some(leaf) = chain.first() else {
            return Err(super::Error::NoCertificate {
                client_id: self.client_id.clone(),
            });
        };
        leaf.check_usable(signer.as_ref(), unix_now())
            .map_err(|source| super::Error::KeyRefused {
                client_id: self.client_id.clone(),
                source: Box::new(source),
            })?;
        let new_stamp = cert_path.as_deref().and_then(Stamp::of);
        // Key first, then chain: a signature taken between the two writes pairs the new key
        // with the old chain and is refused as a mismatch at worst, never signed wrongly.
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = signer;
        *self.chain.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(chain);
        *self.cert_path.write().unwrap_or_else(|p| p.into_inner()) = cert_path;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = new_stamp;
        Ok(())
    }

    /// Re-read the certificate file if it changed (or always, with `force`); a chain that
    /// does not load or does not match the key is reported and the old one kept.
    fn reload(&self, force: bool, log: &Log) {
        let Some(path) = self
            .cert_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let path = &path;
        let now_stamp = Stamp::of(path);
        {
            let mut seen = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *seen == now_stamp {
                return;
            }
            *seen = now_stamp;
        }
        let loaded = Certificate::load_chain(path).and_then(|chain| {
            chain
                .first()
                .map(|leaf| leaf.check_usable(self.signer().as_ref(), unix_now()))
                .transpose()
                .map(|_| chain)
        });
        match loaded {
            Ok(chain) if !chain.is_empty() => {
                let thumbprint = chain[0].thumbprint_hex();
                let changed = self.chain()[0].thumbprint_hex() != thumbprint;
                *self.chain.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(chain);
                log.emit(&Event::CertificateLoaded {
                    client_id: self.client_id.clone(),
                    path: path.clone(),
                    thumbprint,
                    changed,
                });
            }
            Ok(_) => {}
            Err(error) => log.emit(&Event::CertificateRefused {
                client_id: self.client_id.clone(),
                path: path.clone(),
                error: error.to_string(),
            }),
        }
    }
}

/// A failure remembered for its back-off.
#[derive(Debug, Clone)]
struct Failure {
    refusal: Refusal,
    until: Instant,
    count: u32,
}

#[derive(Default)]
struct SlotState {
    token: Option<Arc<Held>>,
    failure: Option<Failure>,
}

/// The cache entry of one (identity, resource).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held while fetching: the single flight.
    fetch: tokio::sync::Mutex<()>,
    /// Whether a background refresh task runs for this slot.
    refreshing: AtomicBool,
}

impl Slot {
    fn servable(&self, now: i64) -> Option<Arc<Held>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .token
            .clone()
            .filter(|t| t.expires_on.saturating_sub(now) > MIN_LEFT)
    }

    fn failure(&self) -> Option<Refusal> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .failure
            .as_ref()
            .filter(|f| Instant::now() < f.until)
            .map(|f| f.refusal.clone())
    }
}

type Key = (usize, String);

/// The agent: identities, cache slots, counters.
pub(crate) struct Agent {
    pub identities: Vec<Served>,
    /// The cache slots: one map per identity, looked up by resource with no key made.
    slots: Mutex<Vec<HashMap<String, Arc<Slot>>>>,
    settings: Settings,
    pub log: Log,
    /// Token requests sent upstream (fetches started).
    pub fetches: AtomicU64,
}

impl Agent {
    pub(crate) fn new(identities: Vec<Served>, settings: Settings, log: Log) -> Self {
        let slots = identities.iter().map(|_| HashMap::new()).collect();
        Self {
            identities,
            slots: Mutex::new(slots),
            settings,
            log,
            fetches: AtomicU64::new(0),
        }
    }

    /// Which identity `client_id` names: none → the first; unknown → 400.
    pub(crate) fn identity(&self, client_id: Option<&str>) -> Result<usize, Refusal> {
        match client_id {
            None => Ok(0),
            Some(c) => self
                .identities
                .iter()
                .position(|i| i.client_id.eq_ignore_ascii_case(c))
                .ok_or_else(|| {
                    Refusal::new(
                        400,
                        "invalid_request",
                        format!(
                            "client_id {} is not an identity this agent serves",
                            entra::error::server_text(c, 100)
                        ),
                    )
                }),
        }
    }

    fn slot(&self, key: &Key) -> Result<Arc<Slot>, Refusal> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots[key.0].get(&key.1) {
            return Ok(slot.clone());
        }
        if slots.iter().map(HashMap::len).sum::<usize>() >= self.settings.max_resources {
            return Err(Refusal::new(
                503,
                "temporarily_unavailable",
                format!(
                    "this agent already holds tokens for {} resources, the most it keeps",
                    self.settings.max_resources
                ),
            ));
        }
        let slot = Arc::new(Slot::default());
        slots[key.0].insert(key.1.clone(), slot.clone());
        Ok(slot)
    }

    /// The token `ask` wants when memory holds a servable one: the warm path, with no
    /// timer, task or new slot (a request that gets `None` goes through [`Self::token`]).
    pub(crate) fn cached(&self, ask: &Ask) -> Option<(Arc<Held>, usize)> {
        let index = self.identity(ask.client_id.as_deref()).ok()?;
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots[index].get(&ask.resource)?.clone()
        };
        slot.servable(unix_now()).map(|held| (held, index))
    }

    /// The token `ask` wants, from memory or fetched (one fetch for concurrent askers),
    /// with the identity it is for and how it was had.
    pub(crate) async fn token(
        self: &Arc<Self>,
        ask: &Ask,
    ) -> (Result<(Arc<Held>, usize), Refusal>, CacheUse) {
        let index = match self.identity(ask.client_id.as_deref()) {
            Ok(i) => i,
            Err(r) => return (Err(r), CacheUse::None),
        };
        let key = (index, ask.resource.clone());
        let slot = match self.slot(&key) {
            Ok(s) => s,
            Err(r) => return (Err(r), CacheUse::None),
        };
        if let Some(held) = slot.servable(unix_now()) {
            return (Ok((held, index)), CacheUse::Hit);
        }
        if let Some(refusal) = slot.failure() {
            return (Err(refusal), CacheUse::BackedOff);
        }
        // The flight runs in a task of its own, so that it finishes (and keeps its token,
        // or its failure for the back-off) even when the request that started it stops
        // waiting (its request timeout, a client gone).
        let agent = self.clone();
        let flight = tokio::spawn(async move { agent.fly(slot, key).await });
        match flight.await {
            Ok((result, used)) => (result.map(|h| (h, index)), used),
            Err(e) => (
                Err(Refusal::new(
                    500,
                    "internal_error",
                    format!("the token request did not finish: {e}"),
                )),
                CacheUse::Miss,
            ),
        }
    }

    /// Take the slot's flight: after another's fetch, its outcome; else fetch, and start
    /// the slot's background refresh after its first token.
    async fn fly(
        self: Arc<Self>,
        slot: Arc<Slot>,
        key: Key,
    ) -> (Result<Arc<Held>, Refusal>, CacheUse) {
        let _flight = slot.fetch.lock().await;
        // Whoever held the flight before us may have fetched (or failed) already.
        if let Some(held) = slot.servable(unix_now()) {
            return (Ok(held), CacheUse::Waited);
        }
        if let Some(refusal) = slot.failure() {
            return (Err(refusal), CacheUse::BackedOff);
        }
        let result = self.fetch(&slot, &key).await;
        if result.is_ok() && !slot.refreshing.swap(true, Ordering::SeqCst) {
            tokio::spawn(refresh(self.clone(), slot.clone(), key));
        }
        (result, CacheUse::Miss)
    }

    /// Fetch the token for `key` (the caller holds the slot's flight) and store the
    /// outcome: the token, or the failure with its back-off.
    async fn fetch(self: &Arc<Self>, slot: &Arc<Slot>, key: &Key) -> Result<Arc<Held>, Refusal> {
        let result = self.fetch_upstream(key).await;
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(held) => {
                let held = Arc::new(held);
                state.token = Some(held.clone());
                state.failure = None;
                Ok(held)
            }
            Err(refusal) => {
                // Only what was sent and refused (or not answered) upstream doubles the
                // back-off; a local failure (the key, the CA file) asked nothing of Entra,
                // so its wait stays the first one and a device that comes back is used
                // again within it. It does not count toward a later upstream failure's.
                let count = if refusal.status == LOCAL {
                    0
                } else {
                    state.failure.as_ref().map_or(0, |f| f.count) + 1
                };
                let wait = self
                    .settings
                    .backoff
                    .saturating_mul(2u32.saturating_pow(count.clamp(1, 16) - 1))
                    .min(self.settings.max_backoff);
                state.failure = Some(Failure {
                    refusal: refusal.clone(),
                    until: Instant::now() + wait,
                    count,
                });
                Err(refusal)
            }
        }
    }

    /// One token request through the library's flow, on a blocking thread.
    async fn fetch_upstream(self: &Arc<Self>, key: &Key) -> Result<Held, Refusal> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let identity = &self.identities[key.0];
        let (signer, chain) = (identity.signer(), identity.chain());
        let request = TokenRequest {
            endpoint: identity.endpoint.clone(),
            client_id: identity.client_id.clone(),
            target: Target::Scopes(vec![format!("{}/.default", key.1)]),
            grant: Grant::ClientCredentials,
            claims: None,
        };
        let (alg, x5c, lifetime) = (identity.alg, identity.x5c, identity.lifetime);
        let obtained_at = unix_now();
        let agent = self.clone();
        let index = key.0;
        let outcome = tokio::task::spawn_blocking(move || {
            let identity = &agent.identities[index];
            let credential = Credential {
                signer: signer.as_ref(),
                chain: &chain,
                alg,
                x5c,
                lifetime,
            };
            identity.client.acquire(&credential, &request)
        })
        .await
        .map_err(|e| {
            Refusal::new(
                500,
                "internal_error",
                format!("the token request did not finish: {e}"),
            )
        })?;
        match outcome {
            Ok(outcome) => {
                let token = outcome.token;
                Ok(Held {
                    refresh_at: refresh_at(
                        token.refresh_on,
                        token.expires_on,
                        obtained_at,
                        self.settings.refresh_before,
                    ),
                    access_token: token.access_token,
                    expires_on: token.expires_on,
                    obtained_at,
                    app_service_answer: std::sync::OnceLock::new(),
                })
            }
            Err(e) => Err(refusal(&e)),
        }
    }

    /// Give identity `client_id` a new key and chain ([`Served::replace`]).
    pub(crate) fn replace_key(
        &self,
        client_id: &str,
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        cert_path: Option<PathBuf>,
    ) -> Result<(), super::Error> {
        let identity = self
            .identities
            .iter()
            .find(|i| i.client_id == client_id)
            .ok_or_else(|| super::Error::UnknownClientId {
                client_id: client_id.to_string(),
            })?;
        let thumbprint = chain.first().map(Certificate::thumbprint_hex);
        identity.replace(signer, chain, cert_path)?;
        self.log.emit(&Event::KeyReplaced {
            client_id: client_id.to_string(),
            thumbprint: thumbprint.unwrap_or_default(),
        });
        Ok(())
    }

    /// Re-read every identity's certificate file that changed (or all, with `force`).
    pub(crate) fn reload(&self, force: bool) {
        for identity in &self.identities {
            identity.reload(force, &self.log);
        }
    }
}

/// When to fetch a token's successor: Entra's `refresh_in` if it sent one, else
/// `refresh_before` ahead of expiry, but never sooner than half the lifetime (a short-lived
/// token must not be fetched again and again).
fn refresh_at(refresh_on: Option<i64>, expires_on: i64, obtained_at: i64, before: Duration) -> i64 {
    let before = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
    let at = refresh_on.unwrap_or_else(|| expires_on.saturating_sub(before));
    let half = obtained_at.saturating_add(expires_on.saturating_sub(obtained_at) / 2);
    if at <= obtained_at {
        half
    } else {
        at
    }
}

/// The answer for a failed fetch: Entra's refusal as `{error, error_description}` with its
/// AADSTS code and hint (400), anything upstream (network, a malformed answer) as 502, and
/// a local failure (the key, the endpoint, the CA file) as 500.
fn refusal(e: &entra::Error) -> Refusal {
    use entra::Error as E;
    match e {
        E::Entra(entra) => Refusal {
            status: if (400..500).contains(&entra.status) {
                400
            } else {
                502
            },
            error: match entra.error.as_str() {
                "invalid_client" => "invalid_client",
                "invalid_request" => "invalid_request",
                "invalid_scope" => "invalid_scope",
                "unauthorized_client" => "unauthorized_client",
                "invalid_grant" => "invalid_grant",
                "temporarily_unavailable" => "temporarily_unavailable",
                _ => "upstream_error",
            },
            description: entra.to_string(),
        },
        E::Network { .. }
        | E::NotOAuth { .. }
        | E::BadToken { .. }
        | E::AnswerTooLong { .. }
        | E::RetryAfterTooLong { .. } => Refusal::new(502, "upstream_error", e.to_string()),
        _ => Refusal::new(LOCAL, "internal_error", e.to_string()),
    }
}

/// The background refresh of one slot: fetch the successor at its `refresh_at`, and
/// after a failure again after the back-off, for as long as the agent runs.
async fn refresh(agent: Arc<Agent>, slot: Arc<Slot>, key: Key) {
    loop {
        let due = {
            let state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            match (&state.token, &state.failure) {
                (_, Some(f)) if Instant::now() < f.until => Due::At(f.until),
                (Some(t), _) => Due::Unix(t.refresh_at),
                (None, _) => Due::Unix(0),
            }
        };
        match due {
            Due::At(when) => tokio::time::sleep_until(when.into()).await,
            Due::Unix(at) => {
                let wait = at.saturating_sub(unix_now());
                if wait > 0 {
                    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
                }
            }
        }
        let _flight = slot.fetch.lock().await;
        let now = unix_now();
        let due_now = {
            let state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            let backed_off = state
                .failure
                .as_ref()
                .is_some_and(|f| Instant::now() < f.until);
            !backed_off && state.token.as_ref().is_none_or(|t| now >= t.refresh_at)
        };
        if !due_now {
            continue;
        }
        let result = agent.fetch(&slot, &key).await;
        agent.log.emit(&Event::Refreshed {
            client_id: agent.identities[key.0].client_id.clone(),
            resource: key.1.clone(),
            error: result.err().map(|r| r.description),
        });
    }
}

enum Due {
    At(Instant),
    Unix(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_times() {
        let before = Duration::from_secs(300);
        assert_eq!(refresh_at(None, 4600, 1000, before), 4300);
        assert_eq!(refresh_at(Some(2000), 4600, 1000, before), 2000);
        // A token shorter-lived than the margin is renewed at half its life.
        assert_eq!(refresh_at(None, 1200, 1000, before), 1100);
    }
}
