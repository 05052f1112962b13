//! Token flows against Microsoft Entra ID (or any RFC 7523 server): where the token
//! endpoint is and where requests may go ([`authority`]), what the form body of each
//! grant holds ([`request`]), the token that comes back ([`token`]), how
//! it is posted — rustls with the aws-lc-rs provider, bounded Retry-After-aware retries
//! ([`http`]) —, what Entra's error JSON means ([`error`], with a one-line hint per AADSTS
//! code people meet), and the per-user access-token cache ([`cache`]). [`Client::acquire`]
//! ties them together: cache lookup, the per-key cache lock (one fetch for concurrent
//! processes), a fresh signed assertion per attempt, the request, the cache write.

pub mod authority;
pub mod cache;
pub mod error;
pub mod http;
pub mod request;
pub mod token;

pub use authority::{
    endpoint, EndpointVersion, AUTHORITY_CHINA, AUTHORITY_PUBLIC, AUTHORITY_US_GOVERNMENT,
};
pub use cache::{Cache, CacheError, CacheKey};
pub use error::{hint, EntraError, Error};
pub use http::{Answer, HttpClient, HttpOptions};
pub use request::{Grant, Target, TokenRequest, CLIENT_ASSERTION_TYPE};
pub use token::Token;

use crate::assertion::{self, Params};
use crate::cert::Certificate;
use crate::encoding::unix_now;
use crate::signer::{Algorithm, Signer};
use std::sync::OnceLock;

/// How much longer than one request's timeout a process waits for another that is
/// fetching the same token ([`Cache::lock`]).
const LOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The certificate credential: a key behind a [`Signer`] and its certificate chain.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    /// Signs each client assertion.
    pub signer: &'a dyn Signer,
    /// The registered certificate first, then its issuers (sent as the `x5c` header
    /// when [`x5c`](Self::x5c) is set).
    pub chain: &'a [Certificate],
    /// RS256 (`x5t`) or PS256 (`x5t#S256`).
    pub alg: Algorithm,
    /// Send the chain as `x5c` (subject name + issuer authentication).
    pub x5c: bool,
    /// Seconds each assertion stays valid.
    pub lifetime: u64,
}

/// What [`Client::acquire`] got and how.
#[derive(Debug)]
pub struct Outcome {
    /// The token.
    pub token: Token,
    /// Served from the cache: nothing was signed or sent.
    pub cached: bool,
    /// HTTP requests sent (0 on a cache hit).
    pub attempts: u32,
    /// What the caller may want to show, once each: a cache entry or directory that was
    /// not trusted, a cache that could not be written. Never fatal.
    pub warnings: Vec<String>,
}

/// Gets tokens: one HTTP client (built on first use, so a cache hit never loads TLS
/// roots) and an optional cache.
pub struct Client {
    options: HttpOptions,
    http: OnceLock<HttpClient>,
    cache: Option<Cache>,
}

impl Client {
    /// A client with these HTTP options and, if given, a cache.
    pub fn new(options: HttpOptions, cache: Option<Cache>) -> Self {
        Self {
            options,
            http: OnceLock::new(),
            cache,
        }
    }

    /// The HTTP client, built on first use.
    ///
    /// # Errors
    /// An unreadable CA file ([`Error::CaFile`]) or a TLS setup failure.
    pub fn http(&self) -> Result<&HttpClient, Error> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let http = HttpClient::new(&self.options)?;
        Ok(self.http.get_or_init(|| http))
    }

    /// Get a token for `request` with `credential`: from the cache when it holds one with
    /// more than five minutes left (client credentials only), else by posting the grant
    /// with a freshly signed assertion per attempt; a new token is cached. After a miss
    /// the fetch runs under the key's cache lock ([`Cache::lock`]): concurrent processes
    /// wanting the same token make one request, the others wait (at most the request
    /// timeout and 5 s, then fetch themselves) and read its entry. A cache entry or
    /// directory that is not to be trusted, or a cache that cannot be read or written, is
    /// skipped with a line in [`Outcome::warnings`], never fatal.
    ///
    /// # Errors
    /// An endpoint the URL policy refuses ([`Error::Endpoint`]), a bad lifetime or client
    /// id or a signing failure ([`Error::Assertion`]), a network failure after the
    /// retries, Entra's refusal ([`Error::Entra`] with its AADSTS code), or an answer
    /// without a usable token ([`Error::BadToken`], [`Error::NotOAuth`]).
    pub fn acquire(
        &self,
        credential: &Credential<'_>,
        request: &TokenRequest,
    ) -> Result<Outcome, Error> {
        let leaf = credential
            .chain
            .first()
            .ok_or(Error::Assertion(assertion::Error::NoCertificate))?;
        let key = (request.cacheable()).then(|| request.cache_key(&leaf.thumbprint_hex()));
        let mut warnings = Vec::new();
        let cached = |token| Outcome {
            token,
            cached: true,
            attempts: 0,
            warnings: Vec::new(),
        };
        let mut _lock = None;
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            match cache.get(key, unix_now()) {
                Ok(Some(token)) => {
                    tracing::debug!(expires_on = token.expires_on, "token cache hit");
                    return Ok(cached(token));
                }
                Ok(None) => tracing::debug!("token cache miss"),
                Err(e) => warnings.push(e.to_string()),
            }
            // One process fetches, the others wait for its entry: at most one request
            // timeout and a margin, after which they fetch themselves.
            match cache.lock(key, self.options.timeout + LOCK_MARGIN) {
                Ok(Some(lock)) => {
                    _lock = Some(lock);
                    if let Ok(Some(token)) = cache.get(key, unix_now()) {
                        tracing::debug!("token cached by another process while this one waited");
                        let mut outcome = cached(token);
                        outcome.warnings = warnings;
                        return Ok(outcome);
                    }
                }
                Ok(None) => {}
                Err(e) if warnings.is_empty() => warnings.push(e.to_string()),
                Err(_) => {}
            }
        }
        let params = Params {
            client_id: &request.client_id,
            audience: &request.endpoint,
            alg: credential.alg,
            lifetime: credential.lifetime,
            x5c: credential.x5c,
        };
        params.validate()?;
        authority::check_url(authority::UrlRole::TokenUrl, &request.endpoint)?;
        let (token, attempts) = self.http()?.post_token(
            &request.endpoint,
            || {
                let started = std::time::Instant::now();
                let jwt =
                    assertion::build(credential.signer, credential.chain, &params, unix_now())?;
                tracing::debug!(
                    alg = ?credential.alg,
                    ms = started.elapsed().as_millis() as u64,
                    "signed a client assertion"
                );
                Ok(request.form(&jwt))
            },
            unix_now,
        )?;
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            // A read-only or full disk must not cost the caller its token.
            if let Err(e) = cache.put(key, &token) {
                if warnings.is_empty() {
                    warnings.push(format!("token not cached: {e}"));
                }
            }
        }
        Ok(Outcome {
            token,
            cached: false,
            attempts,
            warnings,
        })
    }
}
