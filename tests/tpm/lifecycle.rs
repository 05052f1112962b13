//! What a process leaves in the TPM: no transient objects after CLI runs, a SIGINT or a
//! SIGKILL between signatures (a key file's object is loaded only around each signature),
//! and a signer that reconnects after swtpm restarts.

use crate::common::swtpm::Swtpm;
use crate::common::{self, assert_verifies, openssl, s, tempdir, write};
use crate::{certassert_cli, cli_fails, cli_ok, generate, key_ref, open, signs_both, spki_of_pem};
use certassert::signer;
use certassert::{Algorithm, Signer};
use std::process::Command;

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
    let out = certassert_cli(&tpm, d, &["key", "generate", "--key", &uri]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "key generate failed: {said}");
    // The slow step says what it is doing, first, on stderr (not a terminal here).
    assert!(
        said.starts_with("generating RSA-2048 in the TPM…\n"),
        "{said}"
    );
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
    if std::env::var_os("CERTASSERT_TEST_TPM_CHILD_IDLE").is_some() {
        // Signed once; now wait (as for a token answer) holding the signer.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
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
    signal_child(tpm, uri, cleanup, "-INT")
}

/// Send `signal` (a `kill` option: `-INT`, `-KILL`) to a process that signs with the key
/// between pauses; return how it ended and what is left loaded.
fn signal_child(
    tpm: &Swtpm,
    uri: &str,
    cleanup: bool,
    signal: &str,
) -> (std::process::ExitStatus, Vec<String>) {
    use std::io::BufRead as _;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "lifecycle::child_holds_a_tpm_key_until_interrupted",
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
    if signal == "-KILL" {
        // Killed while it waits after signing, not in the middle of a signature.
        cmd.env("CERTASSERT_TEST_TPM_CHILD_IDLE", "1");
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
        .args([signal, &child.id().to_string()])
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
}

/// A process killed outright (no hook can run) while it holds a key file's signer, between
/// signatures: nothing of it stays loaded, because the key is loaded only around each
/// signature. Without the hook, as programs with their own signal handling run.
#[test]
fn sigkill_between_signatures_leaves_no_transient_object() {
    use std::os::unix::process::ExitStatusExt as _;
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("k.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    drop(generate(&uri.parse().unwrap(), 2048, None).unwrap());
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
    for cleanup in [false, true] {
        let (status, left) = signal_child(&tpm, &uri, cleanup, "-KILL");
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert_eq!(
            left,
            Vec::<String>::new(),
            "SIGKILL left transient objects (hook installed: {cleanup})"
        );
    }
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

/// A stopped swtpm (SIGSTOP: the connection stays open and nothing answers) does not block
/// a signature for ever: it fails with the device timeout, later calls fail at once
/// instead of queueing, and once swtpm goes on the signer works again.
#[test]
fn a_stopped_swtpm_times_out_and_recovers() {
    use std::time::{Duration, Instant};
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("k.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    drop(generate(&uri.parse().unwrap(), 2048, None).unwrap());
    let keyref = uri.parse().unwrap();

    // Control: the backend alone, unbounded, hangs on a stopped swtpm.
    let raw = std::sync::Arc::new(open(&uri));
    tpm.signal("-STOP");
    let (tx, rx) = std::sync::mpsc::channel();
    let hung = std::sync::Arc::clone(&raw);
    std::thread::spawn(move || tx.send(hung.sign(Algorithm::Rs256, b"m").is_ok()));
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a stopped swtpm answered: the control is meaningless"
    );
    tpm.signal("-CONT");
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    drop(raw);

    let options = signer::OpenOptions::new().device_timeout(Duration::from_secs(1));
    let bounded = signer::open_with(&keyref, &certassert::secret::NoCallbacks, &options).unwrap();
    signs_both(bounded.as_ref(), "before swtpm stopped");
    tpm.signal("-STOP");
    let start = Instant::now();
    let err = bounded.sign(Algorithm::Rs256, b"m").unwrap_err();
    let waited = start.elapsed();
    assert!(
        matches!(err, signer::Error::DeviceTimeout { .. }),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "the TPM at \"{}\" did not answer within 1 s",
            tpm.tcti()
        )) && text.contains("is it running, or stopped?"),
        "{text}"
    );
    let start = Instant::now();
    let err = bounded.sign(Algorithm::Rs256, b"m").unwrap_err();
    assert!(matches!(err, signer::Error::DeviceStuck { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "did not fail fast"
    );

    // Opening a key on the stopped swtpm is bounded too, in the library…
    let start = Instant::now();
    let err = signer::open_with(&keyref, &certassert::secret::NoCallbacks, &options).unwrap_err();
    assert!(
        matches!(err, signer::Error::DeviceTimeout { .. }),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // …and in the command, with the timeout from CERTASSERT_DEVICE_TIMEOUT.
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_certassert"))
        .args(["assertion", "--key", &uri, "--tenant", "t", "--client-id"])
        .arg(common::CLIENT_ID)
        .current_dir(dir.path())
        .env_remove("TSS2_LOG")
        .env_remove("CERTASSERT_KEY")
        .env_remove("CERTASSERT_CERT")
        .env("CERTASSERT_DEVICE_TIMEOUT", "1.5")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the TPM at \"{}\" did not answer within 1.5 s",
            tpm.tcti()
        )),
        "{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    tpm.signal("-CONT");
    // The stuck call returns, then signatures work again. Each try is itself bounded by
    // the 1 s timeout, which a loaded machine may exceed: retry until a deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    let sig = loop {
        match bounded.sign(Algorithm::Rs256, b"after") {
            Ok(sig) => break sig,
            Err(signer::Error::DeviceStuck { .. } | signer::Error::DeviceTimeout { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("after SIGCONT: {e} ({e:?})"),
        }
    };
    common::rsa_crate_verify(bounded.public_key_der(), Algorithm::Rs256, b"after", &sig).unwrap();
    drop(bounded);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}
