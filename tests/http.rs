//! The token POST's transport as a user meets it: proxies from the environment (a
//! loopback host is always reached directly; another host goes through `HTTPS_PROXY`
//! unless `NO_PROXY` names it), and an answer read with a limit. Proxy settings are
//! given to `certassert` child processes, never set in this process's environment.

mod common;

use certassert::entra::http::MAX_ANSWER_BYTES;
use certassert::entra::{Error, HttpClient, HttpOptions};
use common::emulator::{certassert, start, AppFiles};
use common::{s, tempdir, PROXY_VARIABLES};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const GRAPH: &str = "https://graph.microsoft.com/.default";

/// A listener that records the first line of every request sent to it (a proxy sees
/// `CONNECT host:port HTTP/1.1`) and answers 502.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let head = read_head(&mut stream);
                let first = head.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(first);
                let _ = stream.write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A request's head (up to the blank line), as text.
fn read_head(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn token_cmd(app: &AppFiles, authority: &str, cache: &std::path::Path) -> std::process::Command {
    let mut cmd = certassert(cache);
    cmd.arg("token")
        .args(app.flags(TENANT, authority))
        .args(["--scope", GRAPH, "--no-cache"]);
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_loopback_host_is_reached_directly_whatever_the_proxy_variables_say() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let proxy = Recorder::start();
    for tls in [false, true] {
        let running = start(&[&app], None, tls);
        let mut cmd = token_cmd(&app, running.url(), &dir.path().join("cache"));
        if let Some(ca) = running.ca_pem() {
            let ca = common::write(dir.path(), "ca.pem", ca);
            cmd.args(["--ca-file", s(&ca)]);
        }
        for variable in PROXY_VARIABLES {
            cmd.env(variable, proxy.url());
        }
        let out = cmd.output().expect("certassert runs");
        assert!(
            out.status.success(),
            "{} failed: {}",
            running.url(),
            stderr(&out)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
        assert_eq!(running.requests().len(), 1, "the emulator answered");
        assert_eq!(
            proxy.seen(),
            Vec::<String>::new(),
            "nothing went to the proxy"
        );
    }
}

#[test]
fn another_host_goes_through_https_proxy_unless_no_proxy_names_it() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let proxy = Recorder::start();
    // `.invalid` never resolves: only a proxy can be where the request goes.
    let authority = "https://login.example.invalid";
    let out = token_cmd(&app, authority, &dir.path().join("cache"))
        .env("HTTPS_PROXY", proxy.url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed after 3 attempt(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        proxy.seen(),
        vec!["CONNECT login.example.invalid:443 HTTP/1.1"; 3],
        "each attempt asked the proxy for a tunnel"
    );
    // NO_PROXY exempts the domain (and its subdomains): the proxy sees nothing more.
    let out = token_cmd(&app, authority, &dir.path().join("cache"))
        .env("HTTPS_PROXY", proxy.url())
        .env("NO_PROXY", "example.invalid")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(proxy.seen().len(), 3, "{}", stderr(&out));
    // HTTP_PROXY is for http:// URLs: an https request does not take it.
    let out = token_cmd(&app, authority, &dir.path().join("cache"))
        .env("HTTP_PROXY", proxy.url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(proxy.seen().len(), 3, "{}", stderr(&out));
}

#[test]
fn an_unusable_proxy_setting_is_named_without_its_password() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let out = token_cmd(
        &app,
        "https://login.example.invalid",
        &dir.path().join("cache"),
    )
    .env("ALL_PROXY", "socks5://user:s3cret@127.0.0.1:1080")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(
            "the proxy in ALL_PROXY cannot be used: only http:// and https:// proxies are supported"
        ),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// A server that answers every request 200 with a body that never ends; counts the
/// connections and the bytes it wrote.
fn endless_server() -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/{TENANT}/oauth2/v2.0/token",
        listener.local_addr().unwrap()
    );
    let connections = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (c, w) = (connections.clone(), written.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            read_head(&mut stream);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"access_token\":\"",
            );
            let chunk = vec![b'a'; 64 * 1024];
            while stream.write_all(&chunk).is_ok() {
                w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    });
    (url, connections, written)
}

#[test]
fn an_endless_answer_is_cut_at_the_limit_and_not_retried() {
    let (url, connections, written) = endless_server();
    let http = HttpClient::new(&HttpOptions {
        backoff: Duration::from_millis(20),
        ..HttpOptions::default()
    })
    .unwrap();
    let started = Instant::now();
    let e = http
        .post_token(
            &url,
            || Ok(vec![("grant_type", "client_credentials".into())]),
            common::now,
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::AnswerTooLong { status: 200, limit, .. } if limit == MAX_ANSWER_BYTES),
        "{e:?}"
    );
    assert_eq!(MAX_ANSWER_BYTES, 1024 * 1024);
    assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1, "not retried");
    // The client stopped reading: the server's writes stop short of anything large
    // (what it wrote is the limit plus the socket buffers).
    std::thread::sleep(Duration::from_millis(200));
    let sent = written.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        written.load(Ordering::SeqCst),
        sent,
        "the server is no longer read"
    );
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes");
}

#[test]
fn a_redirect_is_not_followed_and_the_request_says_who_sends_it() {
    let elsewhere = Recorder::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/{TENANT}/oauth2/v2.0/token",
        listener.local_addr().unwrap()
    );
    let location = format!("{}/moved", elsewhere.url());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = read_head(&mut stream);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        head.push_str(&String::from_utf8(body).unwrap());
        let answer = format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).unwrap();
        head
    });
    let http = HttpClient::new(&HttpOptions::default()).unwrap();
    let e = http
        .post_token(
            &url,
            || {
                Ok(vec![
                    ("grant_type", "client_credentials".into()),
                    ("scope", "https://graph.microsoft.com/.default a+b".into()),
                ])
            },
            common::now,
        )
        .unwrap_err();
    assert!(matches!(e, Error::NotOAuth { status: 302, .. }), "{e:?}");
    assert_eq!(
        elsewhere.seen(),
        Vec::<String>::new(),
        "the redirect was not followed"
    );
    let request = server.join().unwrap().to_ascii_lowercase();
    assert!(
        request.starts_with(&format!("post /{TENANT}/oauth2/v2.0/token http/1.1\r\n")),
        "{request}"
    );
    assert!(
        request.contains(&format!(
            "\r\nuser-agent: certassert/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{request}"
    );
    assert!(
        request.contains("\r\ncontent-type: application/x-www-form-urlencoded\r\n"),
        "{request}"
    );
    assert!(
        request.ends_with(
            "\r\n\r\ngrant_type=client_credentials&scope=https%3a%2f%2fgraph.microsoft.com%2f.default+a%2bb"
        ),
        "{request}"
    );
}
