//! The TPM 2.0 backend against a real swtpm (one per test), with keys made by the tools
//! people actually use — tpm2-tools (`tpm2_evictcontrol`) and tpm2-openssl (`openssl
//! genpkey -provider tpm2`) — and keys certassert makes, read back by those tools. Every
//! signature is checked by the shared conformance suite (RustCrypto `rsa` with a strict
//! 32-byte PSS salt, and openssl); every public key is compared with what an independent
//! tool reads from the TPM or the key file.
#![cfg(feature = "tpm")]

mod common;

use certassert::keyref::KeyRef;
use certassert::secret::NoCallbacks;
use certassert::signer::{self, tpm::TpmError, tpm::TpmSigner};
use certassert::{Algorithm, Signer};
use common::conformance::check;
use common::swtpm::Swtpm;
use common::{
    assert_verifies, openssl, openssl_output, public_key_pem, rsa_crate_verify, s, tempdir, write,
};
use std::path::Path;
use std::process::{Command, Output};

fn key_ref(tpm: &Swtpm, attr: &str) -> String {
    format!("tpm:{attr}?tcti={}", tpm.tcti())
}

/// DER SubjectPublicKeyInfo of a PEM public key, as openssl reads it.
fn spki_of_pem(pem: &Path) -> Vec<u8> {
    openssl(&["pkey", "-pubin", "-in", s(pem), "-outform", "DER"]).stdout
}

/// The public key tpm2-openssl reads from a TSS2 key file.
fn provider_public_key(tpm: &Swtpm, key: &Path) -> Vec<u8> {
    let out = tpm
        .command("openssl")
        .args([
            "pkey",
            "-provider",
            "tpm2",
            "-provider",
            "default",
            "-in",
            s(key),
        ])
        .args(["-pubout", "-outform", "DER"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl pkey -provider tpm2 cannot read {}: {}",
        key.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Parse and open a `tpm:` reference as the library does, with nobody to ask for a password.
fn try_open(uri: &str) -> Result<TpmSigner, String> {
    let parsed = uri.parse().map_err(|e| format!("{e}"))?;
    TpmSigner::open(&parsed, &NoCallbacks).map_err(|e| e.to_string())
}

fn open(uri: &str) -> TpmSigner {
    try_open(uri).unwrap_or_else(|e| panic!("open {uri}: {e}"))
}

fn open_err(uri: &str) -> String {
    match try_open(uri) {
        Ok(s) => panic!("{uri} opened as {s:?}; expected an error"),
        Err(e) => e,
    }
}

/// Callbacks that answer every request with one secret and record what was asked.
struct Answer {
    secret: String,
    asked: std::sync::Mutex<Vec<certassert::secret::SecretKind>>,
}

impl Answer {
    fn new(secret: &str) -> Self {
        Self {
            secret: secret.into(),
            asked: Default::default(),
        }
    }

    fn requests(&self) -> Vec<certassert::secret::SecretKind> {
        self.asked.lock().unwrap().clone()
    }
}

impl certassert::secret::Callbacks for Answer {
    fn request_secret(
        &self,
        request: &certassert::secret::SecretRequest,
    ) -> Option<certassert::secret::Secret> {
        self.asked.lock().unwrap().push(request.kind);
        Some(certassert::secret::Secret::new(self.secret.clone()))
    }
}

/// `signer::generate` with nobody to ask for a password.
fn generate(
    keyref: &KeyRef,
    bits: usize,
    label: Option<&str>,
) -> Result<Box<dyn Signer>, signer::Error> {
    signer::generate(keyref, bits, label, &NoCallbacks)
}

/// Sign with both algorithms and check with the rsa crate (strict salt 32).
fn signs_both(signer: &dyn Signer, what: &str) {
    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        let sig = signer
            .sign(alg, b"header.claims")
            .unwrap_or_else(|e| panic!("{what}: {alg}: {e}"));
        rsa_crate_verify(signer.public_key_der(), alg, b"header.claims", &sig)
            .unwrap_or_else(|e| panic!("{what}: {alg}: {e}"));
    }
}

fn certassert_cli(tpm: &Swtpm, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args(args)
        .current_dir(dir)
        .env_remove("TSS2_LOG")
        .env_remove("CERTASSERT_KEY")
        .env_remove("CERTASSERT_CERT")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .expect("run certassert")
}

fn cli_ok(tpm: &Swtpm, dir: &Path, args: &[&str]) -> String {
    let out = certassert_cli(tpm, dir, args);
    assert!(
        out.status.success(),
        "certassert {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A failing CLI run: its stderr, which must hold `needle` and no libtss2 log noise.
fn cli_fails(tpm: &Swtpm, dir: &Path, args: &[&str], needle: &str) -> String {
    let out = certassert_cli(tpm, dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "certassert {args:?} succeeded");
    assert!(
        err.contains(needle),
        "certassert {args:?}: no \"{needle}\" in: {err}"
    );
    assert!(
        !err.contains("esys:") && !err.contains("tcti:"),
        "libtss2 log noise on stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Write a 0600 secret file.
fn secret_file(dir: &Path, name: &str, value: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = write(dir, name, value);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn tpm2_tools_persistent_key_passes_the_conformance_suite() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let pem = tpm.tpm2_tools_persistent_key(dir.path(), "0x81000010", "rsa2048", None);
    let signer = open(&key_ref(&tpm, "handle=0x81000010"));
    assert_eq!(
        signer.public_key_der(),
        spki_of_pem(&pem),
        "the key tpm2_readpublic reads"
    );
    assert_eq!(signer.algorithms(), [Algorithm::Rs256, Algorithm::Ps256]);
    check(&signer);

    // One signer, several threads: requests queue for the thread that owns the context.
    let spki = signer.public_key_der().to_vec();
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let (signer, spki) = (&signer, &spki);
            scope.spawn(move || {
                for i in 0..5u8 {
                    let alg = if i % 2 == 0 {
                        Algorithm::Rs256
                    } else {
                        Algorithm::Ps256
                    };
                    let msg = [t, i];
                    let sig = signer.sign(alg, &msg).unwrap();
                    rsa_crate_verify(spki, alg, &msg, &sig).unwrap();
                }
            });
        }
    });
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}

#[test]
fn openssl_tpm2_provider_key_file_passes_the_conformance_suite() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("app.tss2.pem");
    let out = tpm
        .command("openssl")
        .args([
            "genpkey",
            "-provider",
            "tpm2",
            "-algorithm",
            "RSA",
            "-out",
            s(&key),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl genpkey -provider tpm2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
    let provider_spki = provider_public_key(&tpm, &key);

    let signer = open(&key_ref(&tpm, &format!("key={}", key.display())));
    assert_eq!(
        signer.public_key_der(),
        provider_spki,
        "tpm2-openssl's view of the key"
    );
    check(&signer);
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}

#[test]
fn generated_key_file_is_read_and_used_by_openssl_tpm2_provider() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("made.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    let keyref: KeyRef = uri.parse().unwrap();
    let signer = generate(&keyref, 2048, None).unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode");
    }
    check(signer.as_ref());
    let spki = signer.public_key_der().to_vec();
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    // tpm2-openssl reads the file and finds the same public key ...
    assert_eq!(provider_public_key(&tpm, &key), spki);
    // ... and signs with its private key: the signature verifies with our public key.
    let msg = write(dir.path(), "msg", b"signed by tpm2-openssl");
    let sig = dir.path().join("msg.sig");
    let out = tpm
        .command("openssl")
        // `-provider base` (no RSA of its own) so the signature is computed by tpm2's.
        .args(["pkeyutl", "-sign", "-provider", "tpm2", "-provider", "base"])
        .args(["-inkey", s(&key), "-rawin", "-digest", "sha256"])
        .args(["-in", s(&msg), "-out", s(&sig)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl pkeyutl -sign with the provider: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pub_pem = public_key_pem(dir.path(), &spki);
    assert_verifies(
        dir.path(),
        &spki,
        &pub_pem,
        Algorithm::Rs256,
        b"signed by tpm2-openssl",
        &std::fs::read(&sig).unwrap(),
        "tpm2-openssl signature with the certassert-made key",
    );
    tpm.flush_transients(); // tpm2-openssl's own leftovers, if any

    // Never overwritten.
    let again = generate(&keyref, 2048, None).unwrap_err().to_string();
    assert!(again.contains("exists"), "{again}");
}

#[test]
fn generated_persistent_key_signs_and_an_occupied_handle_is_refused() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let keyref: KeyRef = key_ref(&tpm, "handle=0x81000020").parse().unwrap();
    let signer = generate(&keyref, 2048, Some("ignored")).unwrap_or_else(|e| panic!("{e}"));
    signs_both(signer.as_ref(), "generated persistent key");
    let spki = signer.public_key_der().to_vec();
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    let pem = dir.path().join("pub.pem");
    tpm.tool(
        "tpm2_readpublic",
        &["-c", "0x81000020", "-f", "pem", "-o", s(&pem)],
    );
    assert_eq!(
        spki_of_pem(&pem),
        spki,
        "tpm2_readpublic sees the key we made"
    );

    let err = generate(&keyref, 2048, None).unwrap_err().to_string();
    assert!(
        err.contains("0x81000020 is occupied") && err.contains("tpm2_evictcontrol"),
        "{err}"
    );
    // The refused attempt left the old key in place and nothing loaded.
    let signer = open(&key_ref(&tpm, "handle=0x81000020"));
    assert_eq!(signer.public_key_der(), spki);
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}

#[test]
fn ten_cli_runs_with_a_key_file_leave_no_transient_objects() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let d = dir.path();

    // The checker can see a leftover: tpm2_createprimary leaves one on a raw TPM.
    tpm.tool(
        "tpm2_createprimary",
        &["-C", "o", "-c", s(&d.join("p.ctx")), "-Q"],
    );
    assert_eq!(
        tpm.transient_handles().len(),
        1,
        "transient count is observable"
    );
    tpm.flush_transients();
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    let uri = key_ref(&tpm, "key=app.tss2.pem");
    cli_ok(&tpm, d, &["key", "generate", "--key", &uri]);
    cli_ok(
        &tpm,
        d,
        &[
            "cert",
            "create",
            "--key",
            &uri,
            "--subject",
            "CN=tpm-cli",
            "--out",
            "app.cert.pem",
        ],
    );
    let cert = d.join("app.cert.pem");
    let cert_pub = write(
        d,
        "cert-pub.pem",
        openssl(&["x509", "-in", s(&cert), "-noout", "-pubkey"]).stdout,
    );
    let cert_spki = spki_of_pem(&cert_pub);
    for run in 0..10 {
        let alg = if run % 2 == 0 { "RS256" } else { "PS256" };
        let jwt = cli_ok(
            &tpm,
            d,
            &[
                "assertion",
                "--key",
                &uri,
                "--cert",
                "app.cert.pem",
                "--tenant",
                "contoso.onmicrosoft.com",
                "--client-id",
                common::CLIENT_ID,
                "--alg",
                alg,
            ],
        );
        let jwt = jwt.trim();
        assert_eq!(jwt.lines().count(), 1);
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        assert_verifies(
            d,
            &cert_spki,
            &cert_pub,
            alg.parse().unwrap(),
            input.as_bytes(),
            &common::b64url_decode(sig),
            &format!("CLI run {run} ({alg})"),
        );
    }
    // A failing run (missing certificate file) is an error path after the key is open.
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &uri,
            "--cert",
            "missing.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "missing.pem",
    );
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}

/// Child process for `sigint_flushes_the_loaded_key`: opens the key, signs, says
/// "ready", then keeps signing until it is killed. Does nothing when run on its own.
#[test]
#[ignore = "run by sigint_flushes_the_loaded_key as a child process"]
fn child_holds_a_tpm_key_until_interrupted() {
    let Ok(uri) = std::env::var("CERTASSERT_TEST_TPM_CHILD_URI") else {
        return;
    };
    if std::env::var_os("CERTASSERT_TEST_TPM_NO_CLEANUP").is_some() {
        signer::tpm::set_interrupt_cleanup(false);
    }
    let signer = open(&uri);
    signer.sign(Algorithm::Rs256, b"x").unwrap();
    println!("ready");
    use std::io::Write as _;
    std::io::stdout().flush().unwrap();
    loop {
        let _ = signer.sign(Algorithm::Rs256, b"x");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Interrupt a process holding a loaded key; return how it ended and what is left loaded.
fn interrupt_child(
    tpm: &Swtpm,
    uri: &str,
    cleanup: bool,
) -> (std::process::ExitStatus, Vec<String>) {
    use std::io::BufRead as _;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_holds_a_tpm_key_until_interrupted",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CERTASSERT_TEST_TPM_CHILD_URI", uri)
    .env_remove("TSS2_LOG")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    if !cleanup {
        cmd.env("CERTASSERT_TEST_TPM_NO_CLEANUP", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // libtest prints "test NAME ... " first, so "ready" ends the line.
        let ready = std::io::BufReader::new(stdout)
            .lines()
            .any(|l| l.map(|l| l.trim_end().ends_with("ready")).unwrap_or(false));
        let _ = ready_tx.send(ready);
    });
    let ready = ready_rx.recv_timeout(std::time::Duration::from_secs(60));
    if ready != Ok(true) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child never became ready ({ready:?})");
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not end within 30 s of SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, tpm.transient_handles())
}

#[test]
fn sigint_flushes_the_loaded_key() {
    use std::os::unix::process::ExitStatusExt as _;
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("k.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    drop(generate(&uri.parse().unwrap(), 2048, None).unwrap());
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    let (status, left) = interrupt_child(&tpm, &uri, true);
    assert_eq!(status.signal(), Some(2), "ends as SIGINT would: {status:?}");
    assert_eq!(left, Vec::<String>::new(), "SIGINT left transient objects");

    // Control: without the hook the same interruption leaves the key loaded, so the
    // assertion above is meaningful.
    let (status, left) = interrupt_child(&tpm, &uri, false);
    assert_eq!(status.signal(), Some(2), "{status:?}");
    assert_eq!(
        left.len(),
        1,
        "expected the key left loaded without the hook: {left:?}"
    );
}

#[test]
fn reconnects_once_after_swtpm_restarts() {
    let mut tpm = Swtpm::start();
    // Killing swtpm is a non-orderly shutdown, which the TPM counts as a dictionary-attack
    // failure for keys without noDA; swtpm's default (3 tries, 1000 s) would lock them out
    // after the third kill. Provision it as a server would, with more room.
    tpm.tool(
        "tpm2_dictionarylockout",
        &["-s", "-n", "32", "-t", "10", "-l", "10"],
    );
    let dir = tempdir();
    let key = dir.path().join("k.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    let signer = generate(&uri.parse().unwrap(), 2048, None).unwrap();
    signs_both(signer.as_ref(), "before restart");

    tpm.restart();
    signs_both(
        signer.as_ref(),
        "after swtpm restarted (key reloaded under a new primary)",
    );

    tpm.stop();
    let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err().to_string();
    assert!(
        err.contains("lost the connection to the TPM") && err.contains("could not reconnect"),
        "{err}"
    );
    assert!(err.contains(&tpm.tcti()), "names the TCTI: {err}");

    tpm.restart();
    signs_both(signer.as_ref(), "after swtpm came back");
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    // A persistent key survives the restart too.
    tpm.tpm2_tools_persistent_key(dir.path(), "0x81000030", "rsa2048", None);
    let signer = open(&key_ref(&tpm, "handle=0x81000030"));
    signs_both(&signer, "persistent before restart");
    tpm.restart();
    signs_both(&signer, "persistent after restart");
}

#[test]
fn passwords_missing_handles_and_unreachable_tpms_fail_clearly() {
    let mut tpm = Swtpm::start();
    // This test makes several wrong-password attempts on purpose; swtpm's default of 3
    // tries would lock the TPM before the end (that lockout is checked last).
    tpm.tool(
        "tpm2_dictionarylockout",
        &["-s", "-n", "32", "-t", "600", "-l", "600"],
    );
    let dir = tempdir();
    let d = dir.path();
    let good = secret_file(d, "good", "correct horse");
    let bad = secret_file(d, "bad", "wrong horse");
    let key = d.join("locked.tss2.pem");
    let with = |pass: &Path| {
        format!(
            "tpm:key={}?tcti={}&auth-source=file:{}",
            key.display(),
            tpm.tcti(),
            pass.display()
        )
    };
    let signer = generate(&with(&good).parse().unwrap(), 2048, None).unwrap();
    signs_both(signer.as_ref(), "password key, right password");
    drop(signer);

    // Wrong password: the TPM refuses at the first signature.
    let signer = open(&with(&bad));
    let err = signer.sign(Algorithm::Rs256, b"m").unwrap_err().to_string();
    assert!(
        err.contains("wrong password for the TSS2 key file") && err.contains("auth-source"),
        "{err}"
    );
    drop(signer);
    // No password given for a key that has one: refused before the TPM is asked.
    let err = open_err(&key_ref(&tpm, &format!("key={}", key.display())));
    assert!(
        err.contains("has a password") && err.contains("auth-source="),
        "{err}"
    );
    // ... unless the caller's callbacks can ask: then they are asked, once, for the
    // key's authorization (auth-source=, not password-source=).
    let no_source: certassert::keyref::TpmUri = key_ref(&tpm, &format!("key={}", key.display()))
        .parse()
        .unwrap();
    let asked = Answer::new("correct horse");
    let signer = TpmSigner::open(&no_source, &asked).expect("opens with the answered password");
    signs_both(&signer, "password asked through the callbacks");
    assert_eq!(
        asked.requests(),
        vec![certassert::secret::SecretKind::TpmAuth]
    );
    drop(signer);
    // The same through the CLI, with no libtss2 log lines.
    tpm.tpm2_tools_persistent_key(d, "0x81000010", "rsa2048", None);
    cli_ok(
        &tpm,
        d,
        &[
            "cert",
            "create",
            "--key",
            &with(&good),
            "--subject",
            "CN=x",
            "--out",
            "c.pem",
        ],
    );
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &with(&bad),
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "wrong password",
    );

    // A persistent key with a password (tpm2_create -p): right, wrong and missing.
    tpm.tpm2_tools_persistent_key_with_password(
        d,
        "0x81000011",
        "rsa2048",
        None,
        Some("correct horse"),
    );
    let handle_with = |pass: &Path| {
        format!(
            "tpm:handle=0x81000011?tcti={}&auth-source=file:{}",
            tpm.tcti(),
            pass.display()
        )
    };
    signs_both(
        &open(&handle_with(&good)),
        "persistent key with its password",
    );
    let err = open(&handle_with(&bad))
        .sign(Algorithm::Ps256, b"m")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong password for the persistent handle 0x81000011")
            && err.contains("check the secret named by ?auth-source="),
        "{err}"
    );
    let err = open(&key_ref(&tpm, "handle=0x81000011"))
        .sign(Algorithm::Rs256, b"m")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong password") && err.contains("add ?auth-source="),
        "{err}"
    );

    // Missing handle; the TSS error is kept as the source.
    let missing: certassert::keyref::TpmUri = key_ref(&tpm, "handle=0x81000099").parse().unwrap();
    match TpmSigner::open(&missing, &NoCallbacks) {
        Err(signer::Error::Tpm(e @ TpmError::NoPersistentKey { .. })) => {
            assert!(e.tss().is_some(), "{e:?}");
        }
        other => panic!("expected NoPersistentKey, got {other:?}"),
    }
    let err = open_err(&key_ref(&tpm, "handle=0x81000099"));
    assert!(
        err.contains("no key is persisted at handle 0x81000099")
            && err.contains("tpm2_getcap handles-persistent"),
        "{err}"
    );
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &key_ref(&tpm, "handle=0x81000099"),
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "no key is persisted at handle 0x81000099",
    );

    // A key file from another TPM.
    let other = Swtpm::start();
    let foreign = d.join("foreign.tss2.pem");
    drop(
        generate(
            &key_ref(&other, &format!("key={}", foreign.display()))
                .parse()
                .unwrap(),
            2048,
            None,
        )
        .unwrap(),
    );
    let err = open_err(&key_ref(&tpm, &format!("key={}", foreign.display())));
    assert!(err.contains("another TPM"), "{err}");

    // Not a key file / not a TSS2 key.
    let not_tss = write(
        d,
        "plain.pem",
        openssl(&["genpkey", "-algorithm", "RSA"]).stdout,
    );
    let err = open_err(&key_ref(&tpm, &format!("key={}", not_tss.display())));
    assert!(
        err.contains("TSS2 PRIVATE KEY") && err.contains("found: PRIVATE KEY"),
        "{err}"
    );

    assert_eq!(
        tpm.transient_handles(),
        Vec::<String>::new(),
        "error paths flush"
    );

    // Dictionary-attack lockout: even the right password is refused, and the message says
    // so instead of "wrong password".
    tpm.tool(
        "tpm2_dictionarylockout",
        &["-s", "-n", "1", "-t", "600", "-l", "600"],
    );
    let _ = open(&handle_with(&bad)).sign(Algorithm::Rs256, b"m");
    let err = open(&handle_with(&good))
        .sign(Algorithm::Rs256, b"m")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dictionary-attack lockout") && err.contains("--clear-lockout"),
        "{err}"
    );

    // Bad TCTI text, then an unreachable TPM.
    let err = open_err("tpm:handle=0x81000010?tcti=bogus:thing");
    assert!(err.contains("not understood"), "{err}");
    let tcti = tpm.tcti();
    tpm.stop();
    let err = open_err(&format!("tpm:handle=0x81000010?tcti={tcti}"));
    assert!(
        err.contains(&format!(
            "cannot connect to the TPM through TCTI \"{tcti}\""
        )) && err.contains("is the TPM (or swtpm) running"),
        "{err}"
    );
    cli_fails(
        &tpm,
        d,
        &[
            "assertion",
            "--key",
            &format!("tpm:handle=0x81000010?tcti={tcti}"),
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            common::CLIENT_ID,
        ],
        "cannot connect to the TPM",
    );
}

#[test]
fn ps256_host_side_fallback_and_sign_only_keys() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let d = dir.path();
    // Sign + decrypt (tpm2_create's default): the fallback gives strict-salt PS256.
    tpm.tpm2_tools_persistent_key(d, "0x81000010", "rsa2048", None);
    let signer = open(&key_ref(&tpm, "handle=0x81000010"));
    let spki = signer.public_key_der().to_vec();
    let pub_pem = public_key_pem(d, &spki);
    let msg = common::random_bytes(1000);
    let a = signer.sign_ps256_on_host(&msg).unwrap();
    let b = signer.sign_ps256_on_host(&msg).unwrap();
    assert_ne!(a, b, "fresh salt each time");
    for sig in [&a, &b] {
        assert_eq!(sig.len(), 256);
        assert_verifies(
            d,
            &spki,
            &pub_pem,
            Algorithm::Ps256,
            &msg,
            sig,
            "host-side PSS",
        );
        common::assert_rejected(
            d,
            &spki,
            &pub_pem,
            Algorithm::Ps256,
            b"other",
            sig,
            "host-side PSS, other message",
        );
    }
    drop(signer);

    // Sign only: TPM2_Sign works, the fallback is refused with the documented message.
    tpm.tpm2_tools_persistent_key(
        d,
        "0x81000011",
        "rsa2048",
        Some("sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"),
    );
    let signer = open(&key_ref(&tpm, "handle=0x81000011"));
    signs_both(&signer, "sign-only key");
    let err = signer.sign_ps256_on_host(b"m").unwrap_err();
    assert!(
        matches!(err, signer::Error::Tpm(TpmError::NoRfc7518Ps256 { .. })),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("cannot produce RFC 7518 PS256; use RS256"));
    drop(signer);

    // A key whose scheme is fixed to RSASSA-SHA256 offers RS256 only.
    tpm.tpm2_tools_persistent_key(
        d,
        "0x81000012",
        "rsa2048:rsassa-sha256",
        Some("sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"),
    );
    let signer = open(&key_ref(&tpm, "handle=0x81000012"));
    assert_eq!(signer.algorithms(), [Algorithm::Rs256]);
    let sig = signer.sign(Algorithm::Rs256, b"m").unwrap();
    rsa_crate_verify(signer.public_key_der(), Algorithm::Rs256, b"m", &sig).unwrap();
    let err = signer.sign(Algorithm::Ps256, b"m").unwrap_err().to_string();
    assert!(err.contains("cannot sign PS256"), "{err}");
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
    let _ = openssl_output(&["version"]);
}
