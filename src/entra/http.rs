//! Posting the token request. reqwest's blocking client over rustls with the aws-lc-rs
//! provider (the crypto library the rest of certassert uses; no `ring`), trusting the
//! platform's roots plus an extra CA file; reqwest honours `HTTPS_PROXY`/`NO_PROXY`.
//! Plain http is refused before this point except to loopback. Retries follow DESIGN.md:
//! 429 (never before `Retry-After`), 5xx and connection errors, at most three attempts;
//! a 4xx answer such as `invalid_client` is final, and so is a TLS refusal (an untrusted
//! server certificate answers the same every time).
//!
//! Blocking, not async: the [`Signer`](crate::Signer) is synchronous (a PKCS#11 or TPM
//! call blocks anyway), a CLI sends one request, and a library caller gets a plain
//! function without having to bring a runtime.

use super::error::{EntraError, Error};
use super::token::Token;
use std::path::PathBuf;
use std::time::Duration;

/// How requests are sent.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Extra trusted CA certificates (PEM), on top of the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (covers a server that stops answering mid-read).
    pub timeout: Duration,
    /// Attempts in all, including the first (DESIGN.md: 3).
    pub max_attempts: u32,
    /// The longest `Retry-After` honoured; a longer one ends the attempts.
    pub max_retry_after: Duration,
    /// The first back-off between attempts without `Retry-After` (doubles each time).
    pub backoff: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_attempts: 3,
            max_retry_after: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
        }
    }
}

/// A configured HTTPS client.
#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::blocking::Client,
    options: HttpOptions,
}

impl HttpClient {
    /// Build the client: platform roots + `ca_file`, timeouts, proxies from the
    /// environment.
    ///
    /// # Errors
    /// `ca_file` is unreadable or holds no certificate; TLS cannot be set up.
    pub fn new(options: &HttpOptions) -> Result<Self, Error> {
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("certassert/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &options.ca_file {
            let fail = |detail: String| Error::CaFile {
                path: path.display().to_string(),
                detail,
            };
            let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail("no PEM CERTIFICATE block in it".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| Error::Setup(chain(&e)))?;
        Ok(Self {
            client,
            options: options.clone(),
        })
    }

    /// POST a token request, building the form afresh for each attempt (a new
    /// assertion, a new `jti`), and parse the token. Returns the token and the number
    /// of requests sent.
    ///
    /// # Errors
    /// See [`Error`]: the form could not be built, the network failed after the retries,
    /// the server refused (4xx, or 429/5xx on the last attempt), or answered nonsense.
    pub fn post_token(
        &self,
        url: &str,
        mut form: impl FnMut() -> Result<Vec<(&'static str, String)>, Error>,
        now: impl Fn() -> i64,
    ) -> Result<(Token, u32), Error> {
        let max = self.options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = form()?;
            let last = attempt >= max;
            let backoff = self.options.backoff * 2u32.pow(attempt - 1);
            let response = match self.client.post(url).form(&body).send() {
                Ok(r) => r,
                Err(e)
                    if !last
                        && (e.is_connect() || e.is_timeout() || e.is_request())
                        && !is_tls_refusal(&e) =>
                {
                    std::thread::sleep(backoff);
                    continue;
                }
                Err(e) => {
                    return Err(Error::Network {
                        url: url.into(),
                        attempts: attempt,
                        detail: chain(&e),
                    })
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let bytes = match response.bytes() {
                Ok(b) => b,
                Err(_) if !last => {
                    std::thread::sleep(backoff);
                    continue;
                }
                Err(e) => {
                    return Err(Error::Network {
                        url: url.into(),
                        attempts: attempt,
                        detail: chain(&e),
                    })
                }
            };
            let retryable = status == 429 || (500..600).contains(&status);
            if retryable && !last {
                let wait = match retry_after {
                    Some(s) if s > self.options.max_retry_after.as_secs() => {
                        return Err(Error::RetryAfterTooLong {
                            url: url.into(),
                            status,
                            seconds: s,
                            max: self.options.max_retry_after.as_secs(),
                        })
                    }
                    Some(s) => Duration::from_secs(s).max(backoff),
                    None => backoff,
                };
                std::thread::sleep(wait);
                continue;
            }
            return parse_answer(url, status, &bytes, now()).map(|t| (t, attempt));
        }
    }
}

fn parse_answer(url: &str, status: u16, body: &[u8], now: i64) -> Result<Token, Error> {
    let not_oauth = |detail: &str| Error::NotOAuth {
        url: url.into(),
        status,
        detail: detail.into(),
        body_start: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    if !(200..300).contains(&status) {
        return Err(EntraError::parse(status, body)
            .map(|e| Error::Entra(Box::new(e)))
            .unwrap_or_else(|| not_oauth("no OAuth error JSON")));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| not_oauth("not JSON"))?;
    Token::from_json(&json, now).map_err(|e| not_oauth(&e))
}

/// Whether TLS refused the server (an untrusted or mismatched certificate): asking again
/// gets the same answer, so it is reported at once instead of retried.
fn is_tls_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error hides a custom inner error from source() (and nests): look inside.
        source = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    false
}

/// `Retry-After` as seconds: delta-seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(s) = value.parse::<u64>() {
        return Some(s);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .map_or(0, |d| d.as_secs() + 1),
    )
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(super::parse_retry_after("7"), Some(7));
        assert_eq!(
            super::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0)
        );
        assert_eq!(super::parse_retry_after("soon"), None);
    }
}
