//! The emulator as an attacker drives it, over raw TCP: an assertion's `aud` is compared
//! with the emulator's own address (never the `Host` header sent), impossible validity
//! windows and non-integer times are refused, duplicate JSON keys are refused, and slow,
//! silent or too many connections are bounded by the timeouts and the connection cap.

#[path = "../common/mod.rs"]
mod common;

mod connections;

use certassert::emulator::{self, Config, Running};
use certassert::entra::CLIENT_ASSERTION_TYPE;
use certassert::{signer, Algorithm, Signer};
use common::emulator::AppFiles;
use common::{b64url, tempdir, CLIENT_ID};
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SCOPE: &str = "https://graph.microsoft.com/.default";

struct Fixture {
    _dir: tempfile::TempDir,
    signer: Box<dyn Signer>,
    x5t: String,
    running: Running,
}

impl Fixture {
    fn new(config: Config) -> Self {
        let dir = tempdir();
        let app = AppFiles::new(dir.path(), "app", CLIENT_ID);
        let signer = signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap();
        let x5t = app.certificate().x5t();
        let running = emulator::start(Config {
            apps: vec![app.registration()],
            tenant: Some(TENANT.into()),
            ..config
        })
        .expect("the emulator starts");
        Self {
            _dir: dir,
            signer,
            x5t,
            running,
        }
    }

    fn endpoint(&self) -> String {
        self.running.token_endpoint(TENANT, false).unwrap()
    }

    fn header(&self) -> Value {
        json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t})
    }

    fn claims(&self, aud: &str) -> Value {
        let now = common::now();
        json!({"aud": aud, "iss": CLIENT_ID, "sub": CLIENT_ID, "jti": certassert::encoding::uuid_v4(),
               "nbf": now, "iat": now, "exp": now + 600})
    }

    /// Sign the JSON texts `header` and `claims` as they are (RS256).
    fn sign_text(&self, header: &str, claims: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(claims.as_bytes())
        );
        let sig = self
            .signer
            .sign(Algorithm::Rs256, input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_text(&header.to_string(), &claims.to_string())
    }

    /// POST a client-credentials request carrying `assertion` with the `Host` header
    /// `host` (None: the emulator's own), over a raw connection; (status, JSON body).
    fn post(&self, assertion: &str, host: Option<&str>) -> (u16, Value) {
        let addr = self.running.url().trim_start_matches("http://").to_string();
        let body = serde_urlencoded::to_string([
            ("client_id", CLIENT_ID),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("grant_type", "client_credentials"),
            ("scope", SCOPE),
        ])
        .unwrap();
        let request = format!(
            "POST /{TENANT}/oauth2/v2.0/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            host.unwrap_or(&addr),
            body.len()
        );
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        parse(&answer)
    }
}

fn parse(answer: &str) -> (u16, Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or(0)
}

fn description(body: &Value) -> &str {
    body["error_description"].as_str().unwrap_or_default()
}

fn config() -> Config {
    Config::default()
}

#[test]
fn aud_is_compared_with_the_emulators_own_address_not_the_host_header() {
    let f = Fixture::new(config());
    // An aud naming another host, and a Host header naming that host.
    let other = format!("http://evil.example:80/{TENANT}/oauth2/v2.0/token");
    let forged = f.sign(&f.header(), &f.claims(&other));
    let (status, body) = f.post(&forged, Some("evil.example:80"));
    assert_eq!((status, code(&body)), (401, 700023), "{body}");
    // The real Entra endpoint (its https scheme is not this emulator's either) as aud, and the Host header a client would send to it.
    let entra = format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token");
    let forged = f.sign(&f.header(), &f.claims(&entra));
    let (status, body) = f.post(&forged, Some("login.microsoftonline.com"));
    assert_eq!((status, code(&body)), (401, 700023), "{body}");
    assert!(description(&body).contains(&f.endpoint()), "{body}");
    // Its own address is accepted whatever Host says.
    let good = f.sign(&f.header(), &f.claims(&f.endpoint()));
    let (status, body) = f.post(&good, Some("login.microsoftonline.com"));
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
}

#[test]
fn impossible_or_non_integer_times_are_refused_with_700024() {
    let f = Fixture::new(config());
    let aud = f.endpoint();
    let now = common::now();
    let cases = [
        (
            "exp before nbf",
            json!({"nbf": now, "iat": now, "exp": now - 60}),
        ),
        (
            "exp equal to nbf",
            json!({"nbf": now, "iat": now, "exp": now}),
        ),
        (
            "exp in milliseconds",
            json!({"nbf": now, "iat": now, "exp": (now + 600) * 1000}),
        ),
        (
            "nbf in milliseconds",
            json!({"nbf": now * 1000, "iat": now, "exp": now + 600}),
        ),
        (
            "exp a string",
            json!({"nbf": now, "iat": now, "exp": (now + 600).to_string()}),
        ),
        (
            "nbf a float",
            json!({"nbf": now as f64 + 0.5, "iat": now, "exp": now + 600}),
        ),
        (
            "iat a string",
            json!({"nbf": now, "iat": now.to_string(), "exp": now + 600}),
        ),
    ];
    for (what, times) in cases {
        let mut claims = f.claims(&aud);
        for (k, v) in times.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let (status, body) = f.post(&f.sign(&f.header(), &claims), None);
        assert_eq!((status, code(&body)), (401, 700024), "{what}: {body}");
        assert!(
            description(&body)
                .starts_with("AADSTS700024: Client assertion is not within its valid time range."),
            "{what}: {body}"
        );
    }
    // The good window still passes, and so do a fractional exp and iat: MSAL Python
    // signs time.time() floats there, and Entra takes them.
    let (status, body) = f.post(&f.sign(&f.header(), &f.claims(&aud)), None);
    assert_eq!(status, 200, "{body}");
    let mut claims = f.claims(&aud);
    claims["exp"] = json!((now + 600) as f64 + 0.5);
    claims["iat"] = json!(now as f64 + 0.25);
    let (status, body) = f.post(&f.sign(&f.header(), &claims), None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn duplicate_keys_in_header_or_claims_are_refused() {
    let f = Fixture::new(config());
    let aud = f.endpoint();
    let claims = f.claims(&aud).to_string();
    let header = f.header().to_string();
    // {"alg":"none",…,"alg":"RS256"}: a last-wins parser sees RS256.
    let dup_header = format!("{{\"alg\":\"none\",{}", &header[1..]);
    let (status, body) = f.post(&f.sign_text(&dup_header, &claims), None);
    assert_eq!((status, code(&body)), (401, 50027), "{body}");
    assert!(description(&body).contains("'alg'"), "{body}");
    // A repeated claim, and one repeated deeper down.
    let dup_claims = format!("{{\"sub\":\"someone-else\",{}", &claims[1..]);
    let (status, body) = f.post(&f.sign_text(&header, &dup_claims), None);
    assert_eq!((status, code(&body)), (401, 50027), "{body}");
    assert!(description(&body).contains("'sub'"), "{body}");
    let nested = format!("{{\"cnf\":{{\"kid\":\"a\",\"kid\":\"b\"}},{}", &claims[1..]);
    let (status, body) = f.post(&f.sign_text(&header, &nested), None);
    assert_eq!((status, code(&body)), (401, 50027), "{body}");
    assert!(description(&body).contains("'kid'"), "{body}");
}
