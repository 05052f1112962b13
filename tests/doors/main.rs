//! The doors into other SDKs and tools (issue 11), each tested with the real client on
//! the other side: MSAL Python and Python azure-identity (from PyPI, through
//! `common::python`) use `certassert emulator --tls` as their authority; the Rust
//! `azure_identity` crate and Python azure-identity read the token file `assertion --out
//! --every` keeps fresh; kubectl's ExecCredential shape; and the `azure` feature's
//! `TokenCredential`. Issued tokens are checked against the published JWKS by PyJWT and
//! the RustCrypto `rsa` crate, never by certassert.

#[path = "../common/mod.rs"]
mod common;

mod authority;
#[cfg(feature = "azure")]
mod azure;
mod exec_credential;
mod token_file;

use common::emulator::{AppFiles, ChildEmulator};
use common::{s, tempdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = "2f877daa-b6f5-42a3-8430-acf238b234e1";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const VAULT: &str = "https://vault.azure.net/.default";

/// An app (openssl-made key and certificate) and `certassert emulator --tls` serving it.
struct Setup {
    dir: tempfile::TempDir,
    app: AppFiles,
    emulator: ChildEmulator,
}

impl Setup {
    /// The emulator with `extra` arguments after the registration and TLS ones.
    fn new(extra: &[&str]) -> Self {
        let dir = tempdir();
        let app = AppFiles::new(dir.path(), "app", CLIENT);
        let ca = dir.path().join("ca.pem");
        let register = format!("{CLIENT}={}", s(&app.cert));
        let mut args = vec!["--register", &register, "--tls", "--ca-out", s(&ca)];
        args.extend(["--tenant", TENANT]);
        args.extend(extra);
        let emulator = ChildEmulator::start(&args);
        assert_eq!(emulator.ca_file.as_deref(), Some(ca.as_path()));
        Self { dir, app, emulator }
    }

    fn ca(&self) -> PathBuf {
        self.emulator.ca_file.clone().expect("--tls writes the CA")
    }

    /// The venv python with the emulator's CA as the only trust anchor and no proxy.
    fn python(&self) -> Command {
        let mut cmd = Command::new(common::python::python());
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .env("SSL_CERT_FILE", self.ca())
            .env("REQUESTS_CA_BUNDLE", self.ca());
        common::without_proxies(&mut cmd);
        for var in [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_AUTHORITY_HOST",
            "AZURE_FEDERATED_TOKEN_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Token requests the emulator answered (discovery requests left out).
    fn token_requests(&self) -> Vec<serde_json::Value> {
        self.emulator
            .requests()
            .into_iter()
            .filter(|r| r["method"] == "POST")
            .collect()
    }
}

/// Run `cmd` to its end, at most `limit`; panics (after killing it) past the limit.
fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    // Read both pipes on threads, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Run a Python script (the venv from `common::python`) and parse its stdout as JSON.
fn python_json(cmd: &mut Command, script: &str, args: &[&str]) -> serde_json::Value {
    let out = bounded(
        cmd.arg("-c").arg(script).args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "python failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The claims of a JWT, decoded here (no verification).
fn claims(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&common::b64url_decode(part)).expect("claims are JSON")
}

/// The header of a JWT, decoded here (no verification).
fn header(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').next().expect("a JWT has three parts");
    serde_json::from_slice(&common::b64url_decode(part)).expect("header is JSON")
}

/// A file holding the key and then the certificate (what azure-identity's
/// `certificate_path` takes).
fn key_and_cert(dir: &Path, app: &AppFiles) -> PathBuf {
    let mut pem = std::fs::read(&app.key).unwrap();
    pem.extend(std::fs::read(&app.cert).unwrap());
    common::write(dir, "app.key-and-cert.pem", pem)
}

/// Client options for the Rust Azure SDK pointing at the emulator: its URL as a custom
/// cloud's authority host, and a reqwest transport trusting its CA.
fn rust_sdk_options(setup: &Setup) -> azure_core::http::ClientOptions {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(setup.ca()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let mut cloud = azure_core::cloud::CustomConfiguration::default();
    cloud.authority_host = setup.emulator.url.clone();
    azure_core::http::ClientOptions {
        cloud: Some(std::sync::Arc::new(cloud.into())),
        transport: Some(azure_core::http::Transport::new(std::sync::Arc::new(
            client,
        ))),
        ..Default::default()
    }
}
