//! Fixtures for the token-flow tests: apps whose key and certificate openssl makes, the
//! emulator in-process or as a `certassert emulator` child, a signer that counts its
//! signatures, and the request log of a child emulator.

use super::{openssl, s};
use certassert::cert::Certificate;
use certassert::emulator::{self, App, Config, Running};
use certassert::keyref::KeyRef;
use certassert::{Algorithm, Signer};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An app: an openssl-made RSA key and self-signed certificate, and a client id.
pub struct AppFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub client_id: String,
}

impl AppFiles {
    /// Make `name`.key.pem / `name`.cert.pem in `dir`.
    pub fn new(dir: &Path, name: &str, client_id: &str) -> Self {
        let key = dir.join(format!("{name}.key.pem"));
        let cert = dir.join(format!("{name}.cert.pem"));
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            s(&key),
        ]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            s(&key),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "365",
            "-out",
            s(&cert),
        ]);
        Self {
            key,
            cert,
            client_id: client_id.to_string(),
        }
    }

    /// The flags naming this app to a command that takes a key: `--key`, `--cert`,
    /// `--tenant TENANT`, `--client-id` and `--authority-host AUTHORITY`.
    pub fn flags<'a>(&'a self, tenant: &'a str, authority: &'a str) -> [&'a str; 10] {
        [
            "--key",
            super::s(&self.key),
            "--cert",
            super::s(&self.cert),
            "--tenant",
            tenant,
            "--client-id",
            &self.client_id,
            "--authority-host",
            authority,
        ]
    }

    pub fn keyref(&self) -> KeyRef {
        KeyRef::File {
            path: self.key.clone(),
            password: None,
        }
    }

    pub fn certificate(&self) -> Certificate {
        Certificate::load_chain(&self.cert).unwrap().remove(0)
    }

    pub fn registration(&self) -> App {
        App {
            client_id: self.client_id.clone(),
            certificates: vec![self.certificate()],
        }
    }
}

/// Start an in-process emulator serving `apps`.
pub fn start(apps: &[&AppFiles], tenant: Option<&str>, tls: bool) -> Running {
    emulator::start(Config {
        apps: apps.iter().map(|a| a.registration()).collect(),
        tenant: tenant.map(str::to_string),
        roles: vec!["Things.Read".into()],
        tls,
        ..Config::default()
    })
    .expect("the emulator starts")
}

/// A signer that counts its signatures.
#[derive(Debug)]
pub struct Counting {
    pub inner: Box<dyn Signer>,
    pub count: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Box<dyn Signer>) -> Self {
        Self {
            inner,
            count: AtomicUsize::new(0),
        }
    }

    pub fn signatures(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Signer for Counting {
    fn algorithms(&self) -> &[Algorithm] {
        self.inner.algorithms()
    }
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, certassert::signer::Error> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(alg, message)
    }
    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }
}

/// The `certassert` binary with a clean environment and its own cache directory.
pub fn certassert(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certassert"));
    cmd.stdin(Stdio::null());
    super::without_certassert_env(&mut cmd);
    cmd.env("CERTASSERT_CACHE_DIR", cache);
    cmd
}

/// `certassert emulator` as a child process, killed on drop.
pub struct ChildEmulator {
    child: Child,
    pub url: String,
    pub ca_file: Option<PathBuf>,
}

impl ChildEmulator {
    /// Start it with `args` (after `emulator --listen 127.0.0.1:0`) and read its URL.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_certassert"))
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("certassert emulator starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines.next().expect("a first line").expect("utf-8");
        let second = lines.next().expect("a second line").expect("utf-8");
        let ca_file = second.strip_prefix("ca-file: ").map(PathBuf::from);
        assert!(url.starts_with("http"), "{url}");
        Self {
            child,
            url,
            ca_file,
        }
    }

    /// The requests it received (GET /_emulator/requests), straight to it (no proxy),
    /// trusting its CA when it serves TLS.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots: Vec<Certificate<'static>> = match &self.ca_file {
            Some(ca) => vec![Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap()],
            None => Vec::new(),
        };
        let tls = TlsConfig::builder()
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .root_certs(RootCerts::new_with_certs(&roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .tls_config(tls)
            .build()
            .new_agent();
        let body = agent
            .get(format!("{}/_emulator/requests", self.url))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
