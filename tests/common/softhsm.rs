//! SoftHSM2 fixtures: a throwaway token directory per test, provisioned by
//! `softhsm/provision.sh` (the same script users and the demo run), keys made by
//! `pkcs11-tool` (not by certassert), and a way to run a library-level test in its own
//! process — a PKCS#11 module reads its configuration once per process, so each token
//! directory needs a process of its own.

use super::s;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
pub const TOKEN: &str = "certassert";
const CHILD_ENV: &str = "CERTASSERT_TEST_SOFTHSM_DIR";

/// One provisioned SoftHSM2 token directory.
pub struct SoftHsm {
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
}

impl SoftHsm {
    /// A new token directory with token "certassert" and a random PIN in `dir/pin`.
    /// `args` go to provision.sh (`--key app`, `--piv`).
    pub fn new(args: &[&str]) -> Self {
        let tmp = super::tempdir();
        let dir = tmp.path().join("hsm");
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm/provision.sh"))
            .arg(&dir)
            .args(args)
            .args(["--certassert", env!("CARGO_BIN_EXE_certassert")])
            .output()
            .expect("run softhsm/provision.sh");
        assert!(
            out.status.success(),
            "provision.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            _tmp: Some(tmp),
            dir,
        }
    }

    /// The token directory a parent test handed to this child process, if any.
    fn from_env() -> Option<Self> {
        std::env::var_os(CHILD_ENV).map(|d| Self {
            _tmp: None,
            dir: PathBuf::from(d),
        })
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.join("pin")
    }

    pub fn pin(&self) -> String {
        std::fs::read_to_string(self.pin_file()).expect("read the PIN file")
    }

    /// The query every reference in the tests carries.
    pub fn query(&self) -> String {
        format!(
            "module-path={MODULE}&pin-source=file:{}",
            s(&self.pin_file())
        )
    }

    /// `pkcs11:token=certassert;PATH?module-path=…&pin-source=file:…`
    pub fn uri(&self, path: &str) -> String {
        format!("pkcs11:token={TOKEN};{path}?{}", self.query())
    }

    /// Run pkcs11-tool against this token (logged in with the PIN from the environment).
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        let out = Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", TOKEN])
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .env("TEST_PIN", self.pin())
            .output()
            .expect("pkcs11-tool is installed (ci/install-deps.sh pkcs11)");
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// An RSA key pair made by pkcs11-tool, as an HSM administrator would.
    pub fn keypairgen(&self, label: &str, id_hex: &str, extra: &[&str]) {
        let mut args = vec![
            "--login",
            "--pin",
            "env:TEST_PIN",
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--label",
            label,
            "--id",
            id_hex,
            "--usage-sign",
        ];
        args.extend_from_slice(extra);
        self.pkcs11_tool(&args);
    }

    /// The DER of the certificate object with `id_hex`, read back by pkcs11-tool.
    pub fn read_cert(&self, id_hex: &str, dir: &Path) -> PathBuf {
        let der = dir.join(format!("cert-{id_hex}.der"));
        self.pkcs11_tool(&[
            "--read-object",
            "--type",
            "cert",
            "--id",
            id_hex,
            "--output-file",
            s(&der),
        ]);
        let pem = dir.join(format!("cert-{id_hex}.pem"));
        super::openssl(&["x509", "-inform", "DER", "-in", s(&der), "-out", s(&pem)]);
        pem
    }

    /// certassert with SOFTHSM2_CONF pointing here.
    pub fn certassert(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_certassert"))
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .env_remove("CERTASSERT_KEY")
            .env_remove("CERTASSERT_CERT")
            .env_remove("CERTASSERT_PROFILE")
            .env_remove("PKCS11_MODULE")
            .env_remove("PKCS11_MODULE_PATH")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run certassert")
    }
}

/// Run `body` in a child process of this test binary whose SOFTHSM2_CONF points at a
/// token directory prepared by `setup` (in the parent). The parent checks that the child
/// really ran the one test and that it passed.
pub fn isolated(test: &str, setup: impl FnOnce(&SoftHsm), body: impl FnOnce(&SoftHsm)) {
    if let Some(hsm) = SoftHsm::from_env() {
        body(&hsm);
        return;
    }
    let hsm = SoftHsm::new(&[]);
    setup(&hsm);
    let out = Command::new(std::env::current_exe().expect("test binary path"))
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, &hsm.dir)
        .env("SOFTHSM2_CONF", hsm.conf())
        .env_remove("PKCS11_MODULE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in its own process failed:\n{stdout}\n{stderr}"
    );
}
