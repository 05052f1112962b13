//! `certassert serve` as a process: the environment file, SIGTERM (exit 0, no TPM
//! transient object left; requests in flight are answered: tests/serve/agent.rs), SIGHUP, and one C_Login over 1,000
//! requests on SoftHSM2 (counted by pkcs11-spy).

use super::*;
use common::softhsm::{SoftHsm, MODULE, SPY, TOKEN};
use common::swtpm::Swtpm;
use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

/// A `certassert serve` child, killed on drop.
pub struct ServeChild {
    child: Child,
    /// The first line it printed: `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl ServeChild {
    /// Start `certassert serve --listen 127.0.0.1:0 ARGS` with `envs` on a clean
    /// environment, and wait (at most 20 s) for its first line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = common::emulator::certassert(&std::env::temp_dir());
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("certassert serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            // Keep reading so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(20));
        let url = match first {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "certassert serve did not start ({other:?}): {}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
        Self {
            child,
            url,
            addr,
            stderr,
        }
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait (at most `limit`) until its stderr says `text`; fail with the stderr if not.
    pub fn wait_stderr(&self, text: &str, limit: Duration) {
        assert!(
            wait_for(limit, || self.stderr().contains(text)),
            "no {text:?} within {limit:?}:\n{}",
            self.stderr()
        );
    }

    /// Send `signal` (a `kill` option: `-TERM`, `-HUP`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then wait (at most 15 s) for it to end; its status and stderr.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.stop_with("-TERM")
    }

    /// Send `signal` (`-TERM`, `-INT`), then wait (at most 15 s) for it to end; its
    /// status and stderr.
    pub fn stop_with(mut self, signal: &str) -> (ExitStatus, String) {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 15 s after {signal}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The stderr reader sees the end of the pipe right after the exit.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.stderr())
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The variables of an environment file (`NAME=value` lines).
pub fn read_env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_command_writes_an_owner_only_env_file_serves_and_stops_on_sigterm() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let emulator = common::emulator::start(&[&app], Some(TENANT), false);
    let env_file = dir.path().join("serve.env");
    let serve = ServeChild::start(
        &[
            app.flags(TENANT, emulator.url()).as_slice(),
            &["--env-file", common::s(&env_file)],
        ]
        .concat(),
        &[],
    );
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let vars = read_env_file(&env_file);
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{name} in {vars:?}"))
            .1
            .clone()
    };
    assert_eq!(var("IDENTITY_ENDPOINT"), format!("{}/msi/token", serve.url));
    assert_eq!(var("AZURE_POD_IDENTITY_AUTHORITY_HOST"), serve.url);
    let secret = var("IDENTITY_HEADER");
    assert_eq!(secret.len(), 43, "32 random bytes, base64url");
    let a = raw(
        serve.addr,
        &format!(
            "GET /msi/token?api-version=2019-08-01&resource={} HTTP/1.1\r\nHost: {}\r\nX-IDENTITY-HEADER: {secret}",
            enc(VAULT),
            serve.addr
        ),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let token = a.json()["access_token"].as_str().unwrap().to_string();
    issued_by(&emulator, &token);
    // SIGHUP re-reads the certificate and keeps serving.
    serve.signal("-HUP");
    serve.wait_stderr("(unchanged)", Duration::from_secs(5));
    let (status, stderr) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "serve: GET /msi/token resource={VAULT} client={CLIENT} cache=miss status=200 "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("serve: stopped"), "{stderr}");
    assert!(
        !stderr.contains(&token) && !stderr.contains(&secret),
        "{stderr}"
    );
}

#[test]
fn one_c_login_over_a_thousand_requests_on_softhsm2() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    let dir = tempdir();
    let cert = hsm.read_cert("01", dir.path());
    let emulator = certassert::emulator::start(certassert::emulator::Config {
        apps: vec![certassert::emulator::App {
            client_id: CLIENT.into(),
            certificates: vec![certassert::cert::Certificate::load_chain(&cert)
                .unwrap()
                .remove(0)],
        }],
        tenant: Some(TENANT.into()),
        ..Default::default()
    })
    .unwrap();
    let spy_log = dir.path().join("spy.log");
    let key = format!(
        "pkcs11:token={TOKEN};object=app?module-path={SPY}&pin-source=file:{}",
        common::s(&hsm.pin_file())
    );
    let secret_file = dir.path().join("identity-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let source = format!("file:{}", common::s(&secret_file));
    let serve = ServeChild::start(
        &[
            "--key",
            &key,
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
            "--authority-host",
            emulator.url(),
            "--identity-header-source",
            &source,
        ],
        &[
            ("SOFTHSM2_CONF", common::s(&hsm.conf())),
            ("PKCS11SPY", MODULE),
            ("PKCS11SPY_OUTPUT", common::s(&spy_log)),
        ],
    );
    // 1,000 requests over 4 connections, across 20 resources: 20 signatures, 980 hits.
    let addr = serve.addr;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                for i in 0..250 {
                    let resource = format!("https://r{}.example", (t * 250 + i) % 20);
                    write!(
                        stream,
                        "GET /msi/token?api-version=2019-08-01&resource={} HTTP/1.1\r\nHost: {addr}\r\nX-IDENTITY-HEADER: {SECRET}\r\n\r\n",
                        enc(&resource)
                    )
                    .unwrap();
                    assert_eq!(read_keep_alive_answer(&mut reader), 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let posts = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == 200)
        .count();
    assert_eq!(posts, 20);
    // SIGINT (Ctrl-C) stops it as SIGTERM does.
    let (status, stderr) = serve.stop_with("-INT");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("cache=hit").count() + stderr.matches("cache=wait").count(),
        980
    );
    let spy = std::fs::read_to_string(&spy_log).unwrap();
    let calls = |name: &str| {
        spy.lines()
            .filter(|l| l.ends_with(&format!(": {name}")))
            .count()
    };
    assert_eq!(calls("C_Login"), 1, "one login for the life of the process");
    // C_Sign is called twice per signature (the length, then the signature).
    assert_eq!(calls("C_SignInit"), 20, "one signature per fetch");
}

/// Read one HTTP/1.1 answer with a Content-Length from a kept-alive connection.
fn read_keep_alive_answer(reader: &mut impl std::io::BufRead) -> u16 {
    let mut status = 0;
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if l.starts_with("HTTP/1.1 ") {
            status = l[9..12].parse().unwrap();
        } else if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status
}

#[test]
fn sigterm_with_a_tpm_key_file_leaves_no_transient_object() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key_file = dir.path().join("app.tss2.pem");
    let key = format!("tpm:key={}?tcti={}", common::s(&key_file), tpm.tcti());
    let cert = dir.path().join("app.cert.pem");
    let cli = |args: &[&str]| {
        let out = common::emulator::certassert(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["key", "generate", "--key", &key]);
    cli(&[
        "cert",
        "create",
        "--key",
        &key,
        "--subject",
        "CN=tpm-app",
        "--out",
        common::s(&cert),
    ]);
    tpm.flush_transients();
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
    let emulator = certassert::emulator::start(certassert::emulator::Config {
        apps: vec![certassert::emulator::App {
            client_id: CLIENT.into(),
            certificates: vec![certassert::cert::Certificate::load_chain(&cert)
                .unwrap()
                .remove(0)],
        }],
        tenant: Some(TENANT.into()),
        ..Default::default()
    })
    .unwrap();
    let serve = ServeChild::start(
        &[
            "--key",
            &key,
            "--cert",
            common::s(&cert),
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
            "--authority-host",
            emulator.url(),
            "--identity-header-source",
            "env:TEST_IDENTITY_SECRET",
            "--no-imds",
            "--env-file",
            common::s(&dir.path().join("serve.env")),
        ],
        &[("TEST_IDENTITY_SECRET", SECRET)],
    );
    // App Service only: the environment file names no IMDS host, and IMDS is not served.
    let vars = read_env_file(&dir.path().join("serve.env"));
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"]);
    assert_eq!(vars[1].1, SECRET);
    let imds = raw(
        serve.addr,
        &format!("GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=r HTTP/1.1\r\nHost: {}\r\nMetadata: true", serve.addr),
    );
    assert_eq!(imds.status, 404);
    for resource in ["https://a.example", VAULT] {
        let a = app_service(serve.addr, resource, None);
        assert_eq!(a.status, 200, "{}", a.body);
        issued_by(&emulator, a.json()["access_token"].as_str().unwrap());
    }
    let (status, stderr) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        tpm.transient_handles(),
        Vec::<String>::new(),
        "nothing left loaded: {stderr}"
    );
}

/// `serve --profile a --profile b`: two app registrations from a config file, each with
/// its own key and certificate; a request's client_id picks one (the token the emulator
/// issues names that app), none picks the first, and a flag that would name one app for
/// both is refused.
#[test]
fn several_profiles_serve_several_app_registrations() {
    const OTHER: &str = "0c2a5fd3-7a41-4c8f-9d1e-6b0d6e1f2a3b";
    let dir = tempdir();
    let a = AppFiles::new(dir.path(), "a", CLIENT);
    let b = AppFiles::new(dir.path(), "b", OTHER);
    let emulator = common::emulator::start(&[&a, &b], Some(TENANT), false);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.a]\nkey = \"{}\"\ncert = \"{}\"\ntenant = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nauthority_host = \"{url}\"\n\n\
             [profile.b]\nkey = \"b.key.pem\"\ncert = \"b.cert.pem\"\ntenant = \"{TENANT}\"\nclient_id = \"{OTHER}\"\nauthority_host = \"{url}\"\n",
            common::s(&a.key),
            common::s(&a.cert),
            url = emulator.url()
        ),
    )
    .unwrap();
    let secret = "a-test-identity-secret-0123456789";
    let serve = ServeChild::start(
        &[
            "--config",
            common::s(&config),
            "--profile",
            "a",
            "--profile",
            "b",
            "--identity-header-source",
            "env:SERVE_SECRET",
        ],
        &[("SERVE_SECRET", secret)],
    );
    let ask = |client: Option<&str>| {
        let query = client.map_or_else(String::new, |c| format!("&client_id={c}"));
        raw(
            serve.addr,
            &format!(
                "GET /msi/token?api-version=2019-08-01&resource={}{query} HTTP/1.1\r\nHost: {}\r\nX-IDENTITY-HEADER: {secret}",
                enc(VAULT),
                serve.addr
            ),
        )
    };
    for (client, expected) in [(Some(OTHER), OTHER), (Some(CLIENT), CLIENT), (None, CLIENT)] {
        let answer = ask(client);
        assert_eq!(answer.status, 200, "{client:?}: {}", answer.body);
        assert_eq!(answer.json()["client_id"], expected, "{}", answer.body);
        let token = answer.json()["access_token"].as_str().unwrap().to_string();
        let claims = issued_by(&emulator, &token);
        assert_eq!(claims["appid"], expected, "{claims}");
    }
    let answer = ask(Some("11111111-1111-1111-1111-111111111111"));
    assert_eq!(answer.status, 400, "{}", answer.body);
    let (status, stderr) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("for client {CLIENT}"))
            && stderr.contains(&format!("client {OTHER}")),
        "{stderr}"
    );

    // --client-id with several profiles would name one app for both: refused at start.
    let out = common::emulator::certassert(dir.path())
        .args([
            "serve",
            "--config",
            common::s(&config),
            "--profile",
            "a",
            "--profile",
            "b",
        ])
        .args([
            "--client-id",
            CLIENT,
            "--identity-header-source",
            "env:SERVE_SECRET",
        ])
        .env("SERVE_SECRET", secret)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--client-id with several --profile"),
        "{said}"
    );
}

/// A profile rewritten to a new key and certificate (what `cert rotate --profile` does)
/// is picked up by a running agent without a restart: the next token request is signed
/// by the new key (its x5t in the assertion the emulator received), requests are answered
/// throughout, and a rewrite naming a key that does not match its certificate is
/// refused with a line while the old key keeps serving.
#[test]
fn a_rewritten_profile_puts_the_new_key_in_use_without_a_restart() {
    let dir = tempdir();
    let old = AppFiles::new(dir.path(), "old", CLIENT);
    let new = AppFiles::new(dir.path(), "new", CLIENT);
    let emulator = certassert::emulator::start(certassert::emulator::Config {
        apps: vec![certassert::emulator::App {
            client_id: CLIENT.into(),
            certificates: vec![old.certificate(), new.certificate()],
        }],
        tenant: Some(TENANT.into()),
        ..certassert::emulator::Config::default()
    })
    .expect("the emulator starts");
    let config = dir.path().join("config.toml");
    let write_profile = |key: &str, cert: &str| {
        let tmp = dir.path().join("config.toml.new");
        std::fs::write(
            &tmp,
            format!(
                "[profile.app]\nkey = \"{key}\"\ncert = \"{cert}\"\ntenant = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nauthority_host = \"{}\"\n",
                emulator.url()
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    write_profile("old.key.pem", "old.cert.pem");
    let secret = "a-test-identity-secret-0123456789";
    let serve = ServeChild::start(
        &[
            "--config",
            common::s(&config),
            "--profile",
            "app",
            "--identity-header-source",
            "env:SERVE_SECRET",
        ],
        &[("SERVE_SECRET", secret)],
    );
    let ask = |resource: &str| {
        raw(
            serve.addr,
            &format!(
                "GET /msi/token?api-version=2019-08-01&resource={} HTTP/1.1\r\nHost: {}\r\nX-IDENTITY-HEADER: {secret}",
                enc(resource),
                serve.addr
            ),
        )
    };
    // The x5t of the assertion behind the emulator's latest token request.
    let last_x5t = || {
        let requests = emulator.requests();
        let form = &requests
            .iter()
            .rev()
            .find(|r| r.method == "POST")
            .unwrap()
            .form;
        let jwt = &form
            .iter()
            .find(|(k, _)| k == "client_assertion")
            .unwrap()
            .1;
        let header: Value =
            serde_json::from_slice(&b64url_decode(jwt.split('.').next().unwrap())).unwrap();
        header["x5t"].as_str().unwrap().to_string()
    };
    assert_eq!(ask("https://one.example").status, 200);
    assert_eq!(last_x5t(), old.certificate().x5t());

    // A rewrite with a key that is not its certificate's: refused, the old key serves on.
    write_profile("new.key.pem", "old.cert.pem");
    serve.wait_stderr(
        "changed but its new key was not put in use",
        Duration::from_secs(15),
    );
    assert_eq!(ask("https://two.example").status, 200);
    assert_eq!(last_x5t(), old.certificate().x5t());

    // The rotation: new key and certificate; picked up without a signal.
    write_profile("new.key.pem", "new.cert.pem");
    serve.wait_stderr("now signs", Duration::from_secs(15));
    assert_eq!(ask("https://three.example").status, 200);
    assert_eq!(last_x5t(), new.certificate().x5t());
    // Tokens held before stay served from memory.
    assert_eq!(ask("https://one.example").status, 200);
    let (status, stderr) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
}
