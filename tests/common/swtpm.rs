//! A real swtpm per test: TPM 2.0 simulator listening on 127.0.0.1 (libtss2 3.2.1's swtpm
//! TCTI speaks TCP only), its state in a temporary directory, killed on drop. Started
//! with `--flags not-need-init,startup-clear`, so it is ready without TPM2_Startup — and
//! without a resource manager, like a raw TPM: 3 object slots, nothing flushed for you.
//! Also runs tpm2-tools and tpm2-openssl against it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One running swtpm.
pub struct Swtpm {
    child: Option<Child>,
    state: tempfile::TempDir,
    port: u16,
}

impl Swtpm {
    /// Start a fresh swtpm with an empty state directory.
    pub fn start() -> Self {
        let state = tempfile::tempdir().expect("swtpm state directory");
        for _attempt in 0..20 {
            let port = free_port_pair();
            if let Some(child) = spawn(state.path(), port) {
                return Self {
                    child: Some(child),
                    state,
                    port,
                };
            }
        }
        panic!("swtpm did not start on any port (is swtpm installed? ci/install-deps.sh tpm)");
    }

    /// The TCTI configuration for tss-esapi, tpm2-tools and tpm2-openssl.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The state directory (persistent objects live here across restarts).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Kill swtpm (as a crash or a restart would), keeping its state.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send a signal to swtpm (`-STOP` hangs it: connections stay open, nothing answers;
    /// `-CONT` lets it go on).
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("swtpm is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} swtpm");
    }

    /// Start a new swtpm on the same state directory and ports.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = spawn(self.state.path(), self.port) {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "swtpm did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command with `TPM2TOOLS_TCTI` and `TPM2OPENSSL_TCTI` pointing at this swtpm.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("TPM2TOOLS_TCTI", self.tcti())
            .env("TPM2OPENSSL_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none");
        cmd
    }

    /// Run a tpm2-tools program; panic with its stderr if it fails.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} (tpm2-tools) cannot run: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Transient object handles loaded in the TPM, as `tpm2_getcap handles-transient` lists them.
    pub fn transient_handles(&self) -> Vec<String> {
        let out = self.tool("tpm2_getcap", &["handles-transient"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_start_matches("- ").to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Flush what tpm2-tools left loaded (it saves contexts and does not flush on a raw TPM).
    pub fn flush_transients(&self) {
        self.tool("tpm2_flushcontext", &["-t"]);
    }

    /// Make an RSA-2048 key with tpm2-tools under an owner primary and persist it at
    /// `handle`. `attributes` is tpm2_create's `-a` (None: its default, sign + decrypt).
    /// Returns the public key PEM as tpm2_readpublic writes it.
    pub fn tpm2_tools_persistent_key(
        &self,
        dir: &Path,
        handle: &str,
        alg: &str,
        attributes: Option<&str>,
    ) -> PathBuf {
        self.tpm2_tools_persistent_key_with_password(dir, handle, alg, attributes, None)
    }

    /// As [`Self::tpm2_tools_persistent_key`], with a key password (tpm2_create `-p`).
    pub fn tpm2_tools_persistent_key_with_password(
        &self,
        dir: &Path,
        handle: &str,
        alg: &str,
        attributes: Option<&str>,
        password: Option<&str>,
    ) -> PathBuf {
        let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
        self.tool(
            "tpm2_createprimary",
            &["-C", "o", "-c", &p("primary.ctx"), "-Q"],
        );
        self.flush_transients();
        let mut create = vec![
            "-C".to_string(),
            p("primary.ctx"),
            "-G".into(),
            alg.into(),
            "-u".into(),
            p("key.pub"),
            "-r".into(),
            p("key.priv"),
            "-Q".into(),
        ];
        if let Some(a) = attributes {
            create.extend(["-a".to_string(), a.to_string()]);
        }
        if let Some(p) = password {
            create.extend(["-p".to_string(), format!("str:{p}")]);
        }
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        self.tool("tpm2_create", &create);
        self.flush_transients();
        self.tool(
            "tpm2_load",
            &[
                "-C",
                &p("primary.ctx"),
                "-u",
                &p("key.pub"),
                "-r",
                &p("key.priv"),
                "-c",
                &p("key.ctx"),
                "-Q",
            ],
        );
        self.flush_transients();
        self.tool(
            "tpm2_evictcontrol",
            &["-C", "o", "-c", &p("key.ctx"), handle],
        );
        self.flush_transients();
        let pem = dir.join(format!("{handle}.pub.pem"));
        self.tool(
            "tpm2_readpublic",
            &["-c", handle, "-f", "pem", "-o", pem.to_str().unwrap()],
        );
        pem
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port p with p+1 also free (swtpm's control channel is the server port + 1, which
/// is where the swtpm TCTI looks for it).
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Start swtpm and wait until it accepts connections; None if it exited (port taken).
fn spawn(state: &Path, port: u16) -> Option<Child> {
    let mut child = Command::new("swtpm")
        .args([
            "socket",
            "--tpm2",
            "--tpmstate",
            &format!("dir={}", state.display()),
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            "--ctrl",
            &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
            "--flags",
            "not-need-init,startup-clear",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm is installed (apt: swtpm swtpm-tools)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        // The control channel answers without taking the single server connection.
        if TcpStream::connect(("127.0.0.1", port + 1)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
