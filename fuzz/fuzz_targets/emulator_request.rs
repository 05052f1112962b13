//! The emulator's request handling, over its real HTTP/1.1 listener (its parsers are
//! private to it): one in-process emulator per fuzzing process with one registered app,
//! and per input, by its first byte:
//! - 0: the rest is sent as raw bytes on a fresh connection (request line, headers, body);
//! - 1: the rest is the form body of a POST to the v2 token endpoint;
//! - 2: the rest is the `client_assertion` of a client-credentials request;
//! - 3: the rest is a JWT's claims JSON, signed with the app's key (so the claim checks
//!   past the signature run); a header picked by the next byte; `@AUD@`, `@NOW@` and
//!   `@EXP@` in the claims become this emulator's audience, now and now + 600, and
//!   `@JTI@` a fresh jti.
//!
//! The emulator must answer every request (a timeout is not a crash here: issue 14
//! item 7 adds header timeouts) and must never panic; a panic in its server thread
//! aborts this process (libFuzzer's panic hook), so it is found.
#![no_main]

use certassert::cert::{create_self_signed, Certificate};
use certassert::emulator::{self, App, Config, Running};
use certassert::encoding::b64url;
use certassert::signer::SoftwareSigner;
use certassert::{Algorithm, Signer as _};
use libfuzzer_sys::fuzz_target;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000f2";

struct Fixture {
    running: Running,
    signer: SoftwareSigner,
    cert: Certificate,
    addr: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN, once, before any connection.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let pkcs8 = certassert::signer::generate_software_key(2048).expect("keygen");
        let signer = SoftwareSigner::from_pkcs8_der(&pkcs8).expect("signer");
        let now = certassert::encoding::unix_now();
        let cert = create_self_signed(&signer, Algorithm::Ps256, "CN=fuzz", 365, now)
            .expect("certificate");
        let running = emulator::start(Config {
            apps: vec![App {
                client_id: CLIENT_ID.into(),
                certificates: vec![cert.clone()],
            }],
            ..Config::default()
        })
        .expect("emulator");
        let addr = running
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Fixture {
            running,
            signer,
            cert,
            addr,
        }
    })
}

fn exchange(f: &Fixture, request: &[u8]) {
    let Ok(mut stream) = TcpStream::connect(&f.addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(request).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut answer);
}

fn post(f: &Fixture, form: &[u8]) {
    let mut request = format!(
        "POST /fuzz-tenant/oauth2/v2.0/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        f.addr,
        form.len()
    )
    .into_bytes();
    request.extend_from_slice(form);
    exchange(f, &request);
}

fn encode(value: &str) -> String {
    // Form encoding by hand: this crate has no url dependency of its own.
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn client_credentials(f: &Fixture, assertion: &str) {
    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&scope=api%3A%2F%2Ffuzz%2F.default&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
        encode(assertion)
    );
    post(f, form.as_bytes());
}

fn signed(f: &Fixture, pick: u8, claims: &[u8]) -> String {
    let header = match pick % 3 {
        0 => format!(
            "{{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5t#S256\":\"{}\"}}",
            f.cert.x5t_s256()
        ),
        1 => format!(
            "{{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"{}\"}}",
            f.cert.x5t()
        ),
        _ => format!(
            "{{\"alg\":\"PS256\",\"x5t#S256\":\"{}\",\"x5t#S256\":\"{}\"}}",
            f.cert.x5t_s256(),
            f.cert.x5t()
        ),
    };
    let alg = if pick % 3 == 1 {
        Algorithm::Rs256
    } else {
        Algorithm::Ps256
    };
    // Placeholders let seeds (and what grows from them) carry this process's audience
    // and times, and a fresh jti (a replayed one is refused first): @AUD@, @NOW@, @EXP@,
    // @JTI@.
    static JTI: AtomicU64 = AtomicU64::new(0);
    let now = certassert::encoding::unix_now();
    let claims = String::from_utf8_lossy(claims)
        .replace(
            "@AUD@",
            &format!("http://{}/fuzz-tenant/oauth2/v2.0/token", f.addr),
        )
        .replace("@NOW@", &now.to_string())
        .replace("@EXP@", &(now + 600).to_string())
        .replace(
            "@JTI@",
            &format!("fuzz-{}", JTI.fetch_add(1, Ordering::Relaxed)),
        );
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let signature = f.signer.sign(alg, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64url(&signature))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 4 {
        0 => exchange(f, rest),
        1 => post(f, rest),
        2 => client_credentials(f, &String::from_utf8_lossy(rest)),
        _ => {
            let Some((&pick, claims)) = rest.split_first() else {
                return;
            };
            client_credentials(f, &signed(f, pick, claims));
        }
    }
    let _ = f.running.url();
});
