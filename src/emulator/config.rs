//! What the emulator serves and what it records: the registered apps and their
//! certificates, seeded authorization codes, fault switches, and each request received.

use crate::cert::Certificate;
use serde::Serialize;
use std::net::SocketAddr;
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
    /// This status and JSON body, as given (`answer=STATUS:BODY`): a hostile or broken
    /// server, for tests of what a client does with what comes back.
    Answer {
        /// HTTP status.
        status: u16,
        /// The body (sent as `application/json`).
        body: String,
    },
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "429" => Self::TooManyRequests { retry_after: 1 },
            "503" => Self::Unavailable,
            "malformed" => Self::Malformed,
            "slow" => Self::Slow(Duration::from_secs(3)),
            other if other.starts_with("answer=") => {
                let (status, body) = other["answer=".len()..]
                    .split_once(':')
                    .ok_or("answer=STATUS:BODY")?;
                Self::Answer {
                    status: status.parse().map_err(|_| "answer=STATUS:BODY")?,
                    body: body.into(),
                }
            }
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
    /// How long a client has to send a whole request head (request line and headers),
    /// counted from when the emulator starts waiting for it: when the connection opens
    /// (and its TLS handshake, with `tls`, must finish within it too) and, on a kept-alive
    /// connection, from the previous answer, so it is also the idle keep-alive timeout.
    /// A slow or silent client is disconnected when it passes. Default 10 s.
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body once its head is in; past
    /// it the answer is 408 and the connection is closed. Default 10 s.
    pub body_timeout: Duration,
    /// The most connections served at once. Beyond it new connections wait (in the
    /// listen backlog) until one closes; the timeouts above bound how long that is.
    /// Default 256.
    pub max_connections: usize,
    /// Refuse a client assertion whose `jti` was already used (RFC 7523 §3 replay
    /// protection). Off by default, as in Entra, which accepts a reused `jti` within the
    /// assertion's validity (MSAL Python reuses one assertion for up to 540 s).
    pub reject_jti_replay: bool,
    /// Called once per request answered, after the answer is decided (the CLI prints
    /// one console line from it).
    pub observer: Option<Observer>,
    /// Application object ids, as (client id, object id); an app not listed gets one
    /// derived from its client id. Graph's `/applications/{id}` takes the object id.
    pub object_ids: Vec<(String, String)>,
    /// Token requests to refuse (AADSTS700027) for each certificate added through Graph
    /// before it works, as Entra refuses a new credential until it has propagated.
    pub graph_propagation: u32,
}

/// A callback the emulator calls with each request it answered ([`Config::observer`]).
#[derive(Clone)]
pub struct Observer(pub std::sync::Arc<dyn Fn(&Recorded) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
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
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 256,
            reject_jti_replay: false,
            observer: None,
            object_ids: Vec::new(),
            graph_propagation: 0,
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

/// A client's value fit for one console line: at most 80 characters, control
/// characters shown as `?`.
fn printable(value: &str) -> String {
    value
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl std::fmt::Display for Recorded {
    /// One console line: method, path, grant and client (token requests), status and
    /// AADSTS code; never an assertion, code or token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(grant) = self.field("grant_type") {
            write!(f, " grant={}", printable(grant))?;
        }
        if let Some(client) = self.field("client_id") {
            write!(f, " client={}", printable(client))?;
        }
        write!(f, " -> {}", self.status)?;
        if let Some(code) = self.error_code {
            write!(f, " AADSTS{code}")?;
        }
        Ok(())
    }
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
