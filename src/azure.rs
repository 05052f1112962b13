//! The Rust Azure SDK's door (feature `azure`): [`SignerCredential`] implements
//! `azure_core::credentials::TokenCredential` over any [`Signer`] and its certificate, so
//! every SDK client (Key Vault, Storage, …) authenticates with a key that stays in its
//! HSM, smartcard, TPM or file; [`SignerAssertion`] implements
//! `azure_identity::ClientAssertion` for those who prefer the SDK's own
//! `ClientAssertionCredential`.
//!
//! [`SignerCredential`] keeps everything the blocking client ([`entra::Client`]) does:
//! the exact token endpoint as `aud`, RS256 + `x5t` or PS256 + `x5t#S256`, `x5c` on
//! request, a fresh `jti` per attempt, bounded Retry-After-aware retries, Entra's errors
//! with their AADSTS code and hint. On top of it an in-memory cache per scope set, used
//! while more than [`CredentialOptions::refresh_ahead`] remain (or until Entra's
//! `refresh_in`), and single flight: concurrent `get_token` calls for the same scopes on
//! a cold or stale cache make one request, the others wait for it and share its token.
//!
//! Signing and the blocking HTTP request cross into async in one place (`blocking`): a
//! worker thread that answers through a oneshot channel. That ties the credential to no
//! async runtime (azure_core lets applications choose theirs), and a fetch happens once
//! per token lifetime, so a thread per fetch costs nothing next to the RSA signature and
//! the round trip.
//!
//! An error reaches the SDK as an `azure_core::Error` of kind `Credential` whose message
//! is the whole [`entra::Error`] text (AADSTS code, description, correlation id, hint)
//! and whose inner error is the [`entra::Error`] itself:
//! `err.into_inner()?.downcast::<entra::Error>()` gives back its [`entra::EntraError`]
//! with the codes.

use crate::assertion::{self, Params};
use crate::cert::Certificate;
use crate::encoding::unix_now;
use crate::entra::{
    self, authority, Cache, Client, EndpointVersion, Grant, HttpOptions, Target, TokenRequest,
};
use crate::signer::{Algorithm, Signer};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::OffsetDateTime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a credential could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No certificate was given.
    #[error(
        "no certificate: give the chain whose first certificate is the one registered with the app"
    )]
    NoCertificate,
    /// The certificate does not belong to the key, or is not valid now.
    #[error(transparent)]
    Certificate(#[from] crate::cert::Error),
    /// The authority host or tenant cannot make a token endpoint.
    #[error(transparent)]
    Endpoint(#[from] authority::Error),
    /// The client id is empty, or the lifetime out of range.
    #[error(transparent)]
    Assertion(#[from] assertion::Error),
}

/// How a [`SignerCredential`] or [`SignerAssertion`] signs and fetches.
#[derive(Debug, Clone)]
pub struct CredentialOptions {
    /// The authority host (default [`entra::AUTHORITY_PUBLIC`]); the token endpoint is
    /// `{authority_host}/{tenant}/oauth2/v2.0/token`, which is also the assertion's `aud`.
    pub authority_host: String,
    /// RS256 (`x5t`) or PS256 (`x5t#S256`).
    pub alg: Algorithm,
    /// Send the certificate chain as `x5c` (subject name + issuer authentication).
    pub x5c: bool,
    /// Seconds each assertion stays valid (default 600).
    pub lifetime: u64,
    /// Timeouts, retries and extra CA certificates of the token request.
    pub http: HttpOptions,
    /// Fetch a new token when less than this remains of the cached one (default 5 minutes,
    /// as the blocking client's cache).
    pub refresh_ahead: Duration,
    /// Also keep tokens in certassert's per-user disk cache (shared with the CLI and
    /// other processes, which then make one request between them).
    pub disk_cache: Option<Cache>,
}

impl Default for CredentialOptions {
    fn default() -> Self {
        Self {
            authority_host: entra::AUTHORITY_PUBLIC.into(),
            alg: Algorithm::Rs256,
            x5c: false,
            lifetime: assertion::DEFAULT_LIFETIME,
            http: HttpOptions::default(),
            refresh_ahead: Duration::from_secs(300),
            disk_cache: None,
        }
    }
}

/// What both doors share: the key, its certificate chain, the app and the endpoint.
struct Key {
    signer: Arc<dyn Signer>,
    chain: Vec<Certificate>,
    client_id: String,
    endpoint: String,
    alg: Algorithm,
    x5c: bool,
    lifetime: u64,
}

impl Key {
    fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        tenant: &str,
        client_id: &str,
        options: &CredentialOptions,
    ) -> Result<Self, Error> {
        let leaf = chain.first().ok_or(Error::NoCertificate)?;
        leaf.check_usable(signer.as_ref(), unix_now())?;
        let endpoint = entra::endpoint(
            &options.authority_host,
            Some(tenant),
            None,
            EndpointVersion::V2,
        )?;
        let key = Self {
            signer,
            chain,
            client_id: client_id.to_string(),
            endpoint,
            alg: options.alg,
            x5c: options.x5c,
            lifetime: options.lifetime,
        };
        key.params().validate()?;
        Ok(key)
    }

    fn params(&self) -> Params<'_> {
        Params {
            client_id: &self.client_id,
            audience: &self.endpoint,
            alg: self.alg,
            lifetime: self.lifetime,
            x5c: self.x5c,
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("client_id", &self.client_id)
            .field("endpoint", &self.endpoint)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Run `work` on a worker thread and await its result: the one place signing and
/// blocking I/O cross into async.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> azure_core::Result<T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name("certassert-azure".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| {
            azure_core::Error::with_error(ErrorKind::Io, e, "cannot start a thread to sign")
        })?;
    rx.await.map_err(|e| {
        azure_core::Error::with_error(
            ErrorKind::Other,
            e,
            "the signing thread ended without an answer",
        )
    })
}

/// An `entra::Error` as the SDK's error: kind `Credential`, the whole text (AADSTS code,
/// description, correlation id, hint) as its message, the error itself inside.
fn sdk_error(e: entra::Error) -> azure_core::Error {
    let message = e.to_string();
    azure_core::Error::with_error(ErrorKind::Credential, e, message)
}

/// A cached token and when to fetch the next.
#[derive(Clone)]
struct Cached {
    token: AccessToken,
    renew_at: i64,
}

/// `azure_core::credentials::TokenCredential` over a [`Signer`] and its certificate:
/// client credentials against Entra's v2 endpoint, with the in-memory cache and single
/// flight the module docs describe.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use certassert::azure::{CredentialOptions, SignerCredential};
/// use certassert::{cert::Certificate, signer};
/// use azure_core::credentials::TokenCredential as _;
///
/// let signer = signer::open(&"pkcs11:token=app;object=app?pin-source=env:PIN".parse()?,
///                           &certassert::secret::NoCallbacks)?;
/// let chain = Certificate::load_chain("app.cert.pem".as_ref())?;
/// let credential = SignerCredential::new(signer.into(), chain, "contoso.onmicrosoft.com",
///                                        "2f877daa-b6f5-42a3-8430-acf238b234e1",
///                                        CredentialOptions::default())?;
/// let token = credential.get_token(&["https://vault.azure.net/.default"], None).await?;
/// # let _ = token;
/// # Ok(()) }
/// ```
pub struct SignerCredential {
    key: Arc<Key>,
    client: Arc<Client>,
    refresh_ahead: i64,
    tokens: Mutex<HashMap<String, Cached>>,
    flights: Mutex<HashMap<String, Arc<async_lock::Mutex<()>>>>,
}

impl std::fmt::Debug for SignerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerCredential")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SignerCredential {
    /// A credential for app `client_id` in `tenant`, signing with `signer`, whose
    /// certificate (registered with the app) is `chain[0]`.
    ///
    /// # Errors
    /// No certificate, a certificate that does not belong to the key or is not valid now
    /// ([`Error::Certificate`]), an authority host or tenant the URL policy refuses
    /// ([`Error::Endpoint`]), an empty client id or a lifetime out of range
    /// ([`Error::Assertion`]). Nothing is sent.
    pub fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        tenant: &str,
        client_id: &str,
        options: CredentialOptions,
    ) -> Result<Arc<Self>, Error> {
        let key = Key::new(signer, chain, tenant, client_id, &options)?;
        Ok(Arc::new(Self {
            key: Arc::new(key),
            client: Arc::new(Client::new(options.http, options.disk_cache)),
            refresh_ahead: i64::try_from(options.refresh_ahead.as_secs()).unwrap_or(i64::MAX),
            tokens: Mutex::default(),
            flights: Mutex::default(),
        }))
    }

    /// The token endpoint requests go to (and every assertion's `aud`).
    pub fn endpoint(&self) -> &str {
        &self.key.endpoint
    }

    fn cached(&self, scopes: &str, now: i64) -> Option<AccessToken> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scopes)
            .filter(|c| now < c.renew_at)
            .map(|c| c.token.clone())
    }

    /// Fetch a token for `scopes` (blocking client, on a worker thread) and cache it.
    async fn fetch(&self, scopes: &[&str], key: &str) -> azure_core::Result<AccessToken> {
        let request = TokenRequest {
            endpoint: self.key.endpoint.clone(),
            client_id: self.key.client_id.clone(),
            target: Target::Scopes(scopes.iter().map(|s| s.to_string()).collect()),
            grant: Grant::ClientCredentials,
            claims: None,
        };
        let (signing, client) = (self.key.clone(), self.client.clone());
        let outcome = blocking(move || {
            let credential = entra::Credential {
                signer: signing.signer.as_ref(),
                chain: &signing.chain,
                alg: signing.alg,
                x5c: signing.x5c,
                lifetime: signing.lifetime,
            };
            client.acquire(&credential, &request)
        })
        .await?
        .map_err(sdk_error)?;
        let token = outcome.token;
        let expires_on = OffsetDateTime::from_unix_timestamp(token.expires_on).map_err(|e| {
            azure_core::Error::with_error(
                ErrorKind::DataConversion,
                e,
                "the token's expiry is not a time",
            )
        })?;
        let renew_at = token
            .refresh_on
            .unwrap_or(i64::MAX)
            .min(token.expires_on.saturating_sub(self.refresh_ahead));
        let access = AccessToken::new(token.access_token.expose().to_string(), expires_on);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key.to_string(),
                Cached {
                    token: access.clone(),
                    renew_at,
                },
            );
        Ok(access)
    }
}

#[async_trait::async_trait]
impl TokenCredential for SignerCredential {
    /// A token for `scopes` (one `RESOURCE/.default` for client credentials): from the
    /// cache while it has more than `refresh_ahead` left, else fetched once for all
    /// concurrent callers.
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if scopes.is_empty() {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "no scopes: ask for RESOURCE/.default, e.g. https://vault.azure.net/.default",
            ));
        }
        let key = scopes.join(" ");
        if let Some(token) = self.cached(&key, unix_now()) {
            return Ok(token);
        }
        // Single flight: one fetch per scope set; the others wait here, then find its token.
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _turn = flight.lock().await;
        if let Some(token) = self.cached(&key, unix_now()) {
            return Ok(token);
        }
        self.fetch(scopes, &key).await
    }
}

/// `azure_identity::ClientAssertion` over a [`Signer`]: each call signs a fresh client
/// assertion (new `jti`) for `azure_identity::ClientAssertionCredential`. Build it with
/// the same tenant and authority host as the credential (its `aud` is
/// `{authority_host}/{tenant}/oauth2/v2.0/token`, where that credential posts).
pub struct SignerAssertion {
    key: Arc<Key>,
}

impl std::fmt::Debug for SignerAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerAssertion")
            .field("key", &self.key)
            .finish()
    }
}

impl SignerAssertion {
    /// Assertions for app `client_id` in `tenant` signed by `signer`, naming `chain[0]`.
    /// Of `options`, `authority_host`, `alg`, `x5c` and `lifetime` apply.
    ///
    /// # Errors
    /// As [`SignerCredential::new`].
    pub fn new(
        signer: Arc<dyn Signer>,
        chain: Vec<Certificate>,
        tenant: &str,
        client_id: &str,
        options: &CredentialOptions,
    ) -> Result<Self, Error> {
        Ok(Self {
            key: Arc::new(Key::new(signer, chain, tenant, client_id, options)?),
        })
    }
}

#[async_trait::async_trait]
impl azure_identity::ClientAssertion for SignerAssertion {
    async fn secret(
        &self,
        _options: Option<azure_core::http::ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        let key = self.key.clone();
        blocking(move || {
            assertion::build(key.signer.as_ref(), &key.chain, &key.params(), unix_now())
        })
        .await?
        .map_err(|e| sdk_error(entra::Error::Assertion(e)))
    }
}
