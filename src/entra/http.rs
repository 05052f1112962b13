//! Posting the token request. ureq's blocking HTTP/1.1 client (no async runtime) over
//! rustls with the aws-lc-rs provider (the crypto library the rest of certassert uses; no
//! `ring`), trusting the platform's roots plus an extra CA file. Proxies come from the
//! environment as curl and reqwest read them (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, upper or lower case), except that a loopback host — decided on the parsed
//! URL, see [`is_loopback`] — is always reached directly: a proxy cannot reach this
//! machine's loopback. Plain http is refused except to loopback (the policy of
//! [`check_url`], applied again here). Retries follow DESIGN.md: 429 (never before
//! `Retry-After`), 5xx and connection errors, at most three attempts; a 4xx answer such as
//! `invalid_client` is final, and so is a TLS refusal (an untrusted server certificate
//! answers the same every time). An answer is read up to [`MAX_ANSWER_BYTES`], never
//! whole.
//!
//! Blocking, not async: the [`Signer`](crate::Signer) is synchronous (a PKCS#11 or TPM
//! call blocks anyway), a CLI sends one request, and a library caller gets a plain
//! function without having to bring a runtime.

use super::authority::{check_url, is_loopback, UrlRole};
use super::error::{server_text, shown_body, EntraError, Error};
use super::token::Token;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Proxy};
use url::{Host, Url};

/// The longest answer read from a token endpoint (1 MiB; a token answer is a few
/// kilobytes). A longer one is [`Error::AnswerTooLong`].
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

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

/// An answer as [`HttpClient::send_json`] read it: status, body (at most
/// [`MAX_ANSWER_BYTES`]), content type, and how many requests it took.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Requests sent, the last one answered with this.
    pub attempts: u32,
}

/// A configured HTTPS client. The platform's roots are loaded on the first https request
/// (a plain-http request to a loopback emulator never loads them); the proxy settings are
/// read from the environment when the client is built.
pub struct HttpClient {
    options: HttpOptions,
    extra_roots: Vec<Certificate<'static>>,
    proxies: ProxyEnv,
    /// http:// (loopback only, so never proxied): no roots.
    plain: OnceLock<Agent>,
    /// https:// straight to the server.
    direct: OnceLock<Agent>,
    /// https:// through the proxy the environment names.
    proxied: OnceLock<Agent>,
    roots: OnceLock<RootCerts>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.options)
            .field("extra_roots", &self.extra_roots.len())
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Build the client: read `ca_file` and the proxy settings of the environment; the
    /// platform's roots follow on the first https request.
    ///
    /// # Errors
    /// [`Error::CaFile`]: `ca_file` is unreadable or holds no certificate.
    pub fn new(options: &HttpOptions) -> Result<Self, Error> {
        let mut extra_roots = Vec::new();
        if let Some(path) = &options.ca_file {
            let fail = |detail: String| Error::CaFile {
                path: path.display().to_string(),
                detail,
            };
            let pem = crate::input::read_file(path, crate::input::Limit::CA_FILE)
                .map_err(|e| fail(e.to_string()))?;
            for item in ureq::tls::parse_pem(&pem) {
                if let PemItem::Certificate(cert) = item.map_err(|e| fail(e.to_string()))? {
                    extra_roots.push(cert);
                }
            }
            if extra_roots.is_empty() {
                return Err(fail("no PEM CERTIFICATE block in it".into()));
            }
        }
        Ok(Self {
            options: options.clone(),
            extra_roots,
            proxies: ProxyEnv::read(|name| std::env::var(name).ok()),
            plain: OnceLock::new(),
            direct: OnceLock::new(),
            proxied: OnceLock::new(),
            roots: OnceLock::new(),
        })
    }

    /// POST a token request, building the form afresh for each attempt (a new
    /// assertion, a new `jti`), and parse the token. Returns the token and the number
    /// of requests sent.
    ///
    /// # Errors
    /// See [`Error`]: a URL the policy refuses ([`Error::Endpoint`]), an unusable proxy
    /// setting ([`Error::Proxy`]), the form could not be built, the network failed after
    /// the retries ([`Error::Network`]), the server refused (4xx, or 429/5xx on the last
    /// attempt), or answered nonsense ([`Error::NotOAuth`], [`Error::AnswerTooLong`]).
    pub fn post_token(
        &self,
        url: &str,
        mut form: impl FnMut() -> Result<Vec<(&'static str, String)>, Error>,
        now: impl Fn() -> i64,
    ) -> Result<(Token, u32), Error> {
        let answer = self.exchange(UrlRole::TokenUrl, url, None, || {
            Ok(Some((
                "application/x-www-form-urlencoded",
                encode_form(&form()?).into_bytes(),
            )))
        })?;
        parse_answer(
            url,
            answer.status,
            &answer.body,
            answer.content_type.as_deref(),
            now(),
        )
        .map(|t| (t, answer.attempts))
    }

    /// Send one JSON request to an API (Microsoft Graph) with `bearer` as its access
    /// token: a POST of `body` (built afresh for each attempt), or a GET when `body`
    /// gives `None`. The same URL policy (checked as `role`), proxies, CA file, bounded
    /// answer and retries as [`HttpClient::post_token`]; the answer comes back whatever
    /// its status, for the caller to read.
    ///
    /// # Errors
    /// A URL the policy refuses ([`Error::Endpoint`]), an unusable proxy setting, the
    /// body could not be built, the network failed after the retries
    /// ([`Error::Network`]), an answer over [`MAX_ANSWER_BYTES`], a `Retry-After` longer
    /// than certassert waits.
    pub fn send_json(
        &self,
        role: UrlRole,
        url: &str,
        bearer: &str,
        mut body: impl FnMut() -> Result<Option<serde_json::Value>, Error>,
    ) -> Result<Answer, Error> {
        self.exchange(role, url, Some(bearer), || {
            Ok(body()?.map(|v| ("application/json", v.to_string().into_bytes())))
        })
    }

    /// The request loop: at most [`HttpOptions::max_attempts`] requests, retrying
    /// connection failures, broken answers, 429 (after `Retry-After`) and 5xx; `body`
    /// gives each attempt's content type and bytes (a POST), or `None` (a GET).
    fn exchange(
        &self,
        role: UrlRole,
        url: &str,
        bearer: Option<&str>,
        mut body: impl FnMut() -> Result<Option<(&'static str, Vec<u8>)>, Error>,
    ) -> Result<Answer, Error> {
        let target = check_url(role, url)?;
        let agent = self.agent(&target)?;
        let max = self.options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let payload = body()?;
            let last = attempt >= max;
            let backoff = self.options.backoff * 2u32.pow(attempt - 1);
            let started = std::time::Instant::now();
            let what = match (&payload, role) {
                (_, UrlRole::TokenUrl) => "POST token request",
                (Some(_), _) => "POST request",
                (None, _) => "GET request",
            };
            tracing::debug!(url, attempt, max, "{what}");
            let network = |e: &ureq::Error| Error::Network {
                url: url.into(),
                attempts: attempt,
                detail: server_text(&detail(e, &self.options), 500),
            };
            let authorization = bearer.map(|b| format!("Bearer {b}"));
            let sent = match payload {
                Some((content_type, bytes)) => {
                    let mut request = agent.post(url).content_type(content_type);
                    if let Some(a) = &authorization {
                        request = request.header("authorization", a);
                    }
                    request.send(&bytes[..])
                }
                None => {
                    let mut request = agent.get(url);
                    if let Some(a) = &authorization {
                        request = request.header("authorization", a);
                    }
                    request.call()
                }
            };
            let response = match sent {
                Ok(r) => r,
                Err(e) if !last && is_transient(&e) => {
                    let what = server_text(&detail(&e, &self.options), 200);
                    retrying(&format!("{what} ({url})"), backoff, attempt, max);
                    continue;
                }
                Err(e) => return Err(network(&e)),
            };
            let status = response.status().as_u16();
            tracing::debug!(
                status,
                ms = started.elapsed().as_millis() as u64,
                "answer from the server"
            );
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let read = response
                .into_body()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_vec();
            let bytes = match read {
                Ok(b) => b,
                Err(ureq::Error::BodyExceedsLimit(limit)) => {
                    return Err(Error::AnswerTooLong {
                        url: url.into(),
                        status,
                        limit,
                    })
                }
                Err(_) if !last => {
                    retrying(
                        &format!("the answer from {url} broke off"),
                        backoff,
                        attempt,
                        max,
                    );
                    continue;
                }
                Err(e) => return Err(network(&e)),
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
                retrying(&format!("HTTP {status} from {url}"), wait, attempt, max);
                continue;
            }
            return Ok(Answer {
                status,
                body: bytes,
                content_type,
                attempts: attempt,
            });
        }
    }

    /// The agent for `target`: plain (http, loopback), direct, or through the proxy.
    fn agent(&self, target: &Url) -> Result<&Agent, Error> {
        if target.scheme() == "http" {
            // check_url let plain http through to a loopback host only: never proxied,
            // and no roots to load.
            let no_roots = RootCerts::Specific(Arc::new(Vec::new()));
            return Ok(self.agent_in(&self.plain, no_roots, None));
        }
        let proxy = match self.proxies.for_url(target) {
            Some((variable, value)) => Some(parse_proxy(variable, value)?),
            None => None,
        };
        let roots = self.roots()?;
        Ok(match proxy {
            Some(proxy) => self.agent_in(&self.proxied, roots, Some(proxy)),
            None => self.agent_in(&self.direct, roots, None),
        })
    }

    fn agent_in<'a>(
        &self,
        cell: &'a OnceLock<Agent>,
        roots: RootCerts,
        proxy: Option<Proxy>,
    ) -> &'a Agent {
        cell.get_or_init(|| {
            let tls = TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .root_certs(roots)
                .build();
            Agent::config_builder()
                .timeout_resolve(Some(self.options.connect_timeout))
                .timeout_connect(Some(self.options.connect_timeout))
                .timeout_global(Some(self.options.timeout))
                .max_redirects(0)
                .http_status_as_error(false)
                .user_agent(concat!("certassert/", env!("CARGO_PKG_VERSION")))
                .proxy(proxy)
                .tls_config(tls)
                .build()
                .new_agent()
        })
    }

    /// The platform's roots plus `ca_file`'s, loaded once.
    ///
    /// # Errors
    /// [`Error::Setup`] when there is no root at all to trust.
    fn roots(&self) -> Result<RootCerts, Error> {
        if let Some(roots) = self.roots.get() {
            return Ok(roots.clone());
        }
        let native = rustls_native_certs::load_native_certs();
        let mut roots: Vec<Certificate<'static>> = native
            .certs
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        if roots.is_empty() && self.extra_roots.is_empty() {
            let why = native.errors.first().map_or_else(
                || "the system store is empty".to_string(),
                ToString::to_string,
            );
            return Err(Error::Setup(format!(
                "no trusted root certificate: {why} (install the system CA bundle, or point SSL_CERT_FILE at one)"
            )));
        }
        roots.extend(self.extra_roots.iter().cloned());
        Ok(self
            .roots
            .get_or_init(|| RootCerts::Specific(Arc::new(roots)))
            .clone())
    }
}

/// `application/x-www-form-urlencoded`, as browsers and serde_urlencoded write it.
fn encode_form(fields: &[(&'static str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

/// The token in a `status` answer with `body` (of `content_type`), or why there is none.
/// Nothing of the body reaches an error unredacted ([`shown_body`]).
fn parse_answer(
    url: &str,
    status: u16,
    body: &[u8],
    content_type: Option<&str>,
    now: i64,
) -> Result<Token, Error> {
    let not_oauth = |detail: &str| Error::NotOAuth {
        url: url.into(),
        status,
        detail: detail.into(),
        body: shown_body(body, content_type),
    };
    if !(200..300).contains(&status) {
        return Err(EntraError::parse(status, body)
            .map(|e| Error::Entra(Box::new(e)))
            .unwrap_or_else(|| not_oauth("no OAuth error JSON")));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| not_oauth("not JSON"))?;
    Token::from_json(&json, now).map_err(|source| Error::BadToken {
        url: url.into(),
        status,
        source,
    })
}

/// Whether asking again may get another answer: connection and timeout failures, a
/// proxy that would not connect, a broken answer — not a TLS refusal (an untrusted or
/// mismatched certificate is refused the same every time), nor a request that cannot be
/// sent at all.
fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => !is_tls_refusal(io),
        ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::ConnectProxyFailed(_)
        | ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

/// Whether TLS refused the server: a rustls error somewhere in the cause chain.
fn is_tls_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
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

/// The error's text with its cause chain (ureq's error has no `source`; its I/O error
/// does), saying which step failed where the text alone does not.
fn detail(e: &ureq::Error, options: &HttpOptions) -> String {
    match e {
        ureq::Error::Io(io) if is_tls_refusal(io) => {
            format!("TLS refused the server: {}", chain(io))
        }
        ureq::Error::Io(io) => chain(io),
        ureq::Error::Rustls(tls) => format!("TLS refused the server: {}", chain(tls)),
        ureq::Error::Timeout(step @ (ureq::Timeout::Resolve | ureq::Timeout::Connect)) => {
            format!(
                "no connection within {:?} (timed out: {step})",
                options.connect_timeout
            )
        }
        ureq::Error::Timeout(step) => format!(
            "no complete answer within {:?} (timed out: {step})",
            options.timeout
        ),
        ureq::Error::HostNotFound => "the host name does not resolve".into(),
        other => other.to_string(),
    }
}

/// Say why attempt `attempt` of `max` failed and how long until the next (an `info`
/// event: the CLI shows it on stderr), then wait.
fn retrying(what: &str, wait: Duration, attempt: u32, max: u32) {
    tracing::info!(
        "{what}, retrying in {} (attempt {} of {max})",
        seconds(wait),
        attempt + 1
    );
    std::thread::sleep(wait);
}

/// A wait as people say it: "7 s", "0.5 s".
fn seconds(wait: Duration) -> String {
    if wait.subsec_millis() == 0 {
        format!("{} s", wait.as_secs())
    } else {
        format!("{:.1} s", wait.as_secs_f64())
    }
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

/// A proxy from the environment: an `http://` or `https://` URL (no scheme means http).
fn parse_proxy(variable: &'static str, value: &str) -> Result<Proxy, Error> {
    let fail = |detail: &str| Error::Proxy {
        variable,
        detail: detail.into(),
    };
    let scheme = value.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        None | Some("http") | Some("https") => {}
        Some(_) => return Err(fail("only http:// and https:// proxies are supported")),
    }
    Proxy::new(value).map_err(|_| fail("not a proxy URL such as http://proxy.example:3128"))
}

/// The proxy settings of the environment, read the way curl and reqwest read them: per
/// scheme `HTTPS_PROXY` / `HTTP_PROXY`, else `ALL_PROXY` (each upper case first, then
/// lower case; an empty value counts as unset); none at all in a CGI program
/// (`REQUEST_METHOD` set, where `HTTP_PROXY` is a request header); `NO_PROXY` exempts
/// hosts. A loopback host is never proxied.
#[derive(Default)]
struct ProxyEnv {
    https: Option<(&'static str, String)>,
    http: Option<(&'static str, String)>,
    no_proxy: NoProxy,
}

impl std::fmt::Debug for ProxyEnv {
    // The values may carry credentials (user:password@): show the variable names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyEnv")
            .field("https", &self.https.as_ref().map(|(name, _)| name))
            .field("http", &self.http.as_ref().map(|(name, _)| name))
            .finish_non_exhaustive()
    }
}

impl ProxyEnv {
    fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        if get("REQUEST_METHOD").is_some() {
            return Self::default();
        }
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let all = first(["ALL_PROXY", "all_proxy"]);
        Self {
            https: first(["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone()),
            http: first(["HTTP_PROXY", "http_proxy"]).or(all),
            no_proxy: NoProxy::parse(
                &["NO_PROXY", "no_proxy"]
                    .into_iter()
                    .find_map(&get)
                    .unwrap_or_default(),
            ),
        }
    }

    /// The variable and value of the proxy for `url`, if one applies.
    fn for_url(&self, url: &Url) -> Option<(&'static str, &str)> {
        let host = url.host()?;
        if is_loopback(&host) || self.no_proxy.contains(&host) {
            return None;
        }
        let chosen = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        };
        chosen.map(|(name, value)| (*name, value.as_str()))
    }
}

/// `NO_PROXY` as curl reads it: comma-separated; `*` matches every host; an IP address or
/// a CIDR range (`10.0.0.0/8`) matches addresses; any other entry is a domain that matches
/// itself and its subdomains (a leading dot changes nothing).
#[derive(Debug, Default)]
struct NoProxy {
    all: bool,
    ranges: Vec<(IpAddr, u8)>,
    domains: Vec<String>,
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut no = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                no.all = true;
            } else if let Some(range) = parse_range(entry) {
                no.ranges.push(range);
            } else {
                let domain = entry.trim_start_matches('.').to_ascii_lowercase();
                no.domains.push(domain);
            }
        }
        no
    }

    fn contains(&self, host: &Host<&str>) -> bool {
        if self.all {
            return true;
        }
        let ip = match host {
            Host::Ipv4(ip) => IpAddr::V4(*ip),
            Host::Ipv6(ip) => IpAddr::V6(*ip),
            Host::Domain(name) => {
                let name = name.trim_end_matches('.');
                return self.domains.iter().any(|d| {
                    // The domain itself, or a subdomain: ".{d}" ends the name.
                    name.eq_ignore_ascii_case(d)
                        || name.len() > d.len()
                            && name.as_bytes()[name.len() - d.len() - 1] == b'.'
                            && name
                                .get(name.len() - d.len()..)
                                .is_some_and(|tail| tail.eq_ignore_ascii_case(d))
                });
            }
        };
        self.ranges
            .iter()
            .any(|(net, bits)| in_range(ip, *net, *bits))
    }
}

/// An IP address (a range of one) or `address/prefix-length`.
fn parse_range(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let prefix = |a: u128, width: u32| {
        let shift = width - u32::from(bits);
        a.checked_shr(shift).unwrap_or(0)
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            prefix(u32::from(a).into(), 32) == prefix(u32::from(n).into(), 32)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix(a.into(), 128) == prefix(n.into(), 128),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answer_never_echoes_a_token() {
        let url = "http://127.0.0.1:1/t/oauth2/v2.0/token";
        for body in [
            r#"{"access_token":"SECRET.at","refresh_token":"SECRET-rt","id_token":"SECRET-id","expires_in":"soon"}"#,
            r#"{"access_token":"SECRET.at","expires_in":1.5}"#,
            r#"{"token_type":"Bearer","access_token":"SECRET.at"}"#,
            "access_token=SECRET.at&expires_in=x",
        ] {
            let e = parse_answer(url, 200, body.as_bytes(), None, 1000).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
        let e = parse_answer(url, 400, br#"{"access_token":"SECRET.at"}"#, None, 0).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("SECRET"), "{e}");
    }

    #[test]
    fn server_text_is_escaped_and_bounded() {
        let url = "http://127.0.0.1:1/t/oauth2/v2.0/token";
        let long = "A".repeat(20_000_000);
        let body = format!(
            r#"{{"error":"invalid_client\u001b[31m","error_description":"AADSTS700027: bad\u001b]0;owned\u0007 sig\u000d{long}","correlation_id":"c\u001b[2J\u000d\u000aX","trace_id":"t\u009b1m"}}"#
        );
        let e = parse_answer(url, 401, body.as_bytes(), None, 0).unwrap_err();
        let text = e.to_string();
        assert!(text.len() < 4000, "{} bytes shown", text.len());
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}"), "{text}");
    }

    #[test]
    fn only_plain_bearer_tokens_are_accepted() {
        let url = "http://127.0.0.1:1/t/oauth2/v2.0/token";
        for body in [
            r#"{"access_token":"abc\nX-Injected: 1","token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":"abc def","token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":"","token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":12345,"token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":["a"],"token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":"a=b","token_type":"Bearer","expires_in":3599}"#,
            r#"{"access_token":"abc","token_type":"mac","expires_in":3599}"#,
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":3599,"refresh_token":7}"#,
        ] {
            assert!(
                parse_answer(url, 200, body.as_bytes(), None, 0).is_err(),
                "accepted {body}"
            );
        }
        for body in [
            r#"{"access_token":"eyJ0.eyJ1-_~+/.c2ln==","token_type":"bearer","expires_in":3599}"#,
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":"3599"}"#,
        ] {
            assert!(
                parse_answer(url, 200, body.as_bytes(), None, 0).is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn expiry_arithmetic_never_overflows() {
        let url = "http://127.0.0.1:1/t/oauth2/v2.0/token";
        let now = 1_700_000_000;
        let at = |extra: &str| {
            let body = format!(r#"{{"access_token":"abc","token_type":"Bearer",{extra}}}"#);
            parse_answer(url, 200, body.as_bytes(), None, now)
        };
        for huge in [
            format!(r#""expires_in":{}"#, i64::MAX),
            format!(r#""expires_in":"{}""#, i64::MAX),
            r#""expires_in":"99999999999999999999999999""#.to_string(),
            format!(r#""expires_on":{}"#, i64::MAX),
        ] {
            let t = at(&huge).unwrap();
            assert!(t.expires_on > now, "{huge}: {}", t.expires_on);
            assert!(
                t.expires_on <= now + crate::entra::token::MAX_LIFETIME,
                "{huge}: {}",
                t.expires_on
            );
        }
        for bad in [
            r#""expires_in":-5"#,
            r#""expires_in":"-5""#,
            r#""expires_in":3599.5"#,
            r#""expires_in":"3599.0""#,
            r#""expires_in":"+3599""#,
            r#""expires_in":"""#,
            r#""expires_in":null"#,
            r#""expires_on":-1"#,
            r#""expires_in":3599,"refresh_in":-1"#,
        ] {
            assert!(at(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(parse_retry_after("7"), Some(7));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyEnv::read(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn proxy_for(env: &ProxyEnv, url: &str) -> Option<(&'static str, String)> {
        env.for_url(&Url::parse(url).unwrap())
            .map(|(n, v)| (n, v.to_string()))
    }

    #[test]
    fn the_proxy_follows_the_scheme_then_all_proxy() {
        let e = env(&[
            ("HTTPS_PROXY", "http://s:1"),
            ("http_proxy", "http://p:2"),
            ("ALL_PROXY", "http://a:3"),
        ]);
        let login = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
        assert_eq!(
            proxy_for(&e, login),
            Some(("HTTPS_PROXY", "http://s:1".into()))
        );
        assert_eq!(
            proxy_for(&e, "http://example.com/"),
            Some(("http_proxy", "http://p:2".into()))
        );
        let e = env(&[("all_proxy", "http://a:3"), ("https_proxy", "")]);
        assert_eq!(
            proxy_for(&e, login),
            Some(("all_proxy", "http://a:3".into()))
        );
        // Upper case first.
        let e = env(&[("https_proxy", "http://l:1"), ("HTTPS_PROXY", "http://u:1")]);
        assert_eq!(proxy_for(&e, login).unwrap().0, "HTTPS_PROXY");
        // An https request never takes HTTP_PROXY.
        assert_eq!(
            proxy_for(&env(&[("HTTP_PROXY", "http://p:2")]), login),
            None
        );
        // A CGI program's HTTP_PROXY is a request header.
        let cgi = env(&[("REQUEST_METHOD", "GET"), ("HTTPS_PROXY", "http://s:1")]);
        assert_eq!(proxy_for(&cgi, login), None);
    }

    #[test]
    fn loopback_is_never_proxied() {
        let e = env(&[("ALL_PROXY", "http://a:3"), ("HTTPS_PROXY", "http://s:1")]);
        for url in [
            "https://127.0.0.1:8443/t/oauth2/v2.0/token",
            "http://127.0.0.1:8080/t/oauth2/v2.0/token",
            "https://127.1.2.3/",
            "https://localhost:1/",
            "https://LOCALHOST/",
            "https://[::1]:8443/",
        ] {
            assert_eq!(proxy_for(&e, url), None, "{url}");
        }
        // A name that merely starts like a loopback address is not one.
        assert!(proxy_for(&e, "https://127.0.0.1.evil.example/").is_some());
    }

    #[test]
    fn no_proxy_as_curl_reads_it() {
        let e = env(&[
            ("HTTPS_PROXY", "http://s:1"),
            (
                "no_proxy",
                "corp.example, .Internal.test,10.0.0.0/8,192.0.2.7,[2001:db8::]/32",
            ),
        ]);
        for exempt in [
            "https://corp.example/",
            "https://login.corp.example/",
            "https://a.b.internal.test/",
            "https://internal.test/",
            "https://10.20.30.40/",
            "https://192.0.2.7/",
            "https://[2001:db8::5]/",
        ] {
            assert_eq!(proxy_for(&e, exempt), None, "{exempt}");
        }
        for proxied in [
            "https://notcorp.example/",
            "https://corp.example.com/",
            "https://11.0.0.1/",
            "https://192.0.2.8/",
            "https://[2001:db9::5]/",
        ] {
            assert!(proxy_for(&e, proxied).is_some(), "{proxied}");
        }
        let all = env(&[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "*")]);
        assert_eq!(proxy_for(&all, "https://login.microsoftonline.com/"), None);
    }

    #[test]
    fn only_http_proxies_are_taken() {
        assert!(parse_proxy("HTTPS_PROXY", "http://proxy.example:3128").is_ok());
        assert!(parse_proxy("HTTPS_PROXY", "proxy.example:3128").is_ok());
        let e = parse_proxy("ALL_PROXY", "socks5://user:secret@proxy.example:1080").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Proxy {
                    variable: "ALL_PROXY",
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn forms_are_encoded_as_serde_urlencoded_does() {
        let body = encode_form(&[
            (
                "scope",
                "https://graph.microsoft.com/.default offline_access".into(),
            ),
            ("code", "a+b/c=~!*'()é".into()),
        ]);
        assert_eq!(
            body,
            "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default+offline_access&code=a%2Bb%2Fc%3D%7E%21*%27%28%29%C3%A9"
        );
    }
}
