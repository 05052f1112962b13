//! `certassert serve` against real parts: the agent in-process (library) and as the
//! `certassert serve` command, the emulator as Entra (its request log counts upstream
//! POSTs), raw HTTP/1.1 for the refusals a well-behaved client never sends, and
//! third-party clients we did not write — Python azure-identity / MSAL from PyPI and the
//! Rust `azure_identity` crate — each getting a token the emulator issued (its signature
//! checked with the RustCrypto `rsa` crate against the emulator's key). SoftHSM2 (one
//! C_Login, counted by pkcs11-spy) and swtpm (no transient object after SIGTERM) are
//! the keys of the process tests.
//!
//! The fixture is here; the tests are in one file per topic.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod clients;
mod process;
mod protocol;

use certassert::emulator::Running as Emulator;
use certassert::secret::Secret;
use certassert::serve::{self, Config, Event, Identity, Running};
use certassert::{signer, Algorithm, Signer};
use common::emulator::{AppFiles, Counting};
use common::{b64url_decode, rsa_crate_verify, tempdir};
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
const SECRET: &str = "test-identity-secret-0123456789";
const VAULT: &str = "https://vault.azure.net";

/// An agent in-process for one app, with its emulator, a counting signer and the events.
struct Fixture {
    _dir: tempfile::TempDir,
    emulator: Emulator,
    signer: Arc<Counting>,
    events: Arc<Mutex<Vec<Event>>>,
    agent: Option<Running>,
}

impl Fixture {
    /// An app registered with a fresh emulator, and the agent serving it (with `tune`
    /// applied to the configuration).
    fn new(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempdir();
        let app = AppFiles::new(dir.path(), "app", CLIENT);
        let emulator = common::emulator::start(&[&app], Some(TENANT), false);
        let signer = Arc::new(Counting::new(
            signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap(),
        ));
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut config = config(identity(&app, signer.clone(), &emulator), events.clone());
        tune(&mut config);
        let agent = serve::start(config).expect("the agent starts");
        Self {
            _dir: dir,
            emulator,
            signer,
            events,
            agent: Some(agent),
        }
    }

    fn agent(&self) -> &Running {
        self.agent.as_ref().unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.agent().addr()
    }

    /// Token POSTs the emulator received.
    fn posts(&self) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }

    /// The request events logged so far, as lines.
    fn request_lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Request { .. }))
            .map(ToString::to_string)
            .collect()
    }
}

/// An identity for `app` against `emulator`.
fn identity(app: &AppFiles, signer: Arc<dyn Signer>, emulator: &Emulator) -> Identity {
    let mut identity = Identity::new(
        signer,
        vec![app.certificate()],
        Some(TENANT.into()),
        app.client_id.clone(),
    );
    identity.cert_path = Some(app.cert.clone());
    identity.authority_host = emulator.url().to_string();
    identity
}

/// A configuration on 127.0.0.1:0 with the test secret, quick timeouts and the events
/// collected in `events`.
fn config(identity: Identity, events: Arc<Mutex<Vec<Event>>>) -> Config {
    let mut config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![identity],
        Secret::new(SECRET.into()),
    );
    config.header_timeout = Duration::from_secs(1);
    config.grace = Duration::from_secs(5);
    config.http.backoff = Duration::from_millis(20);
    config.log = Some(Arc::new(move |e: &Event| {
        events.lock().unwrap().push(e.clone())
    }));
    config
}

/// An HTTP answer: status, headers (lowercase names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Send `head` (request line and headers, without the final blank line; a body after a
/// blank line if any) over a fresh
/// connection with `Connection: close`, and read the whole answer (at most 10 s).
fn raw(addr: SocketAddr, head: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (head, body) = head.split_once("\r\n\r\n").unwrap_or((head, ""));
    let text = format!("{}\r\nConnection: close\r\n\r\n{body}", head.trim_end());
    stream.write_all(text.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    parse_answer(&String::from_utf8(bytes).unwrap())
}

fn parse_answer(text: &str) -> Answer {
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `GET /msi/token` for `resource` (and `client_id`) with the test secret.
fn app_service(addr: SocketAddr, resource: &str, client_id: Option<&str>) -> Answer {
    let mut query = format!("api-version=2019-08-01&resource={}", enc(resource));
    if let Some(c) = client_id {
        query.push_str(&format!("&client_id={}", enc(c)));
    }
    raw(
        addr,
        &format!("GET /msi/token?{query} HTTP/1.1\r\nHost: {addr}\r\nX-IDENTITY-HEADER: {SECRET}"),
    )
}

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The claims of a token the emulator issued, after checking its signature with the
/// RustCrypto `rsa` crate against the emulator's signing key.
fn issued_by(emulator: &Emulator, token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS: {token}");
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    rsa_crate_verify(
        emulator.signing_key_spki(),
        Algorithm::Rs256,
        signing_input.as_bytes(),
        &b64url_decode(parts[2]),
    )
    .expect("the emulator's signature");
    serde_json::from_slice(&b64url_decode(parts[1])).unwrap()
}

/// Poll `done` every 20 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
