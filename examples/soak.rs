//! The soak (issue 14): many signatures per backend in one process, each key opened once
//! as a long-running agent holds it, with what the process holds measured before and
//! after. Run by `ci/soak.sh` (full: 10,000 signatures a backend) and, short, by
//! `ci/test.sh`.
//!
//! ```text
//! cargo run --example soak -- [--signatures N] [--fault-every K] [--backends LIST]
//! ```
//!
//! Backends (LIST is comma-separated; default all): `software` (a PKCS#8 key file made
//! by openssl), `softhsm2` (a SoftHSM2 token provisioned by softhsm/provision.sh, key made
//! by pkcs11-tool, reached through the test-only proxy module `tests/pkcs11/shim/faults.c`
//! with an empty schedule, which only counts), `tpm-key` (a `tpm:key=` TSS2 key file on a
//! fresh swtpm) and `tpm-handle` (a persistent handle on the same swtpm), and `faults`
//! (the SoftHSM2 key under the proxy injecting CKR_DEVICE_REMOVED,
//! CKR_SESSION_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_ERROR and
//! CKR_TOKEN_NOT_PRESENT in turn every K-th C_Sign call, and pulling the token out for
//! three signatures five times in the run).
//!
//! Each backend signs a short warm-up, then N messages that all differ, RS256 and PS256
//! in turn; every signature is checked with the RustCrypto `rsa` crate (PSS salt held at
//! 32), never by certassert. Measured after the warm-up and at the end: open file
//! descriptors (/proc/self/fd), VmRSS, live PKCS#11 sessions (the proxy's count: SoftHSM2
//! reports no ulSessionCount) and TPM transient objects (`tpm2_getcap
//! handles-transient`, with the signer open; also before it opens and after it closes:
//! swtpm has no resource manager, so an object the signer leaked stays to be counted). It fails when descriptors, sessions or transient objects differ,
//! when RSS grew by more than [`RSS_BOUND_KIB`], on any wrong signature, and on any
//! error that is not the typed one a fault must give.
//!
//! Then `serve` (backend `serve`; [`serve`]): the built `certassert serve` under
//! `--clients` concurrent clients for `--serve-seconds`, swtpm killed and restarted twice
//! and the SoftHSM2 proxy failing every `--serve-fault-every`-th C_Sign and pulling the
//! token out three times, every answer checked; its rows follow the table. It fails on
//! a wrong answer, an error that is not a clear JSON one, a dropped or hung request, a
//! recovery over 30 s, fd growth in the serve process, a PIN presented twice for one
//! loss, or a TPM object left after SIGTERM.
//!
//! ```text
//! cargo build && cargo run --example soak -- --backends serve [--serve-seconds S]
//!     [--clients N] [--serve-fault-every K] [--token-lifetime SECONDS]
//! ```

use certassert::secret::NoCallbacks;
use certassert::signer::pkcs11::Pkcs11Error;
use certassert::signer::{self, Error, OpenOptions};
use certassert::{Algorithm, Signer};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

#[cfg(feature = "emulator")]
#[path = "soak/serve.rs"]
mod serve;
#[path = "../tests/pkcs11/shim/mod.rs"]
mod shim;
#[allow(dead_code)]
#[path = "../tests/common/swtpm.rs"]
mod swtpm;

/// How much VmRSS may grow between the end of the warm-up and the end of a run.
const RSS_BOUND_KIB: u64 = 2048;
const SOFTHSM2: &str = "/usr/lib/softhsm/libsofthsm2.so";
const FAULTS: &str =
    "DEVICE_REMOVED,SESSION_HANDLE_INVALID,USER_NOT_LOGGED_IN,DEVICE_ERROR,TOKEN_NOT_PRESENT";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("soak: FAILED (see the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    signatures: usize,
    fault_every: usize,
    backends: Vec<String>,
    serve_seconds: u64,
    clients: usize,
    serve_fault_every: usize,
    token_lifetime: i64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        signatures: 10_000,
        fault_every: 50,
        backends: [
            "software",
            "softhsm2",
            "tpm-key",
            "tpm-handle",
            "faults",
            "serve",
        ]
        .map(String::from)
        .to_vec(),
        serve_seconds: 600,
        clients: 32,
        serve_fault_every: 10,
        token_lifetime: 120,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--signatures" => o.signatures = value()?.parse()?,
            "--fault-every" => o.fault_every = value()?.parse()?,
            "--backends" => o.backends = value()?.split(',').map(String::from).collect(),
            "--serve-seconds" => o.serve_seconds = value()?.parse()?,
            "--clients" => o.clients = value()?.parse()?,
            "--serve-fault-every" => o.serve_fault_every = value()?.parse()?,
            "--token-lifetime" => o.token_lifetime = value()?.parse()?,
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: soak [--signatures N] [--fault-every K] [--backends software,softhsm2,tpm-key,tpm-handle,faults,serve] [--serve-seconds S] [--clients N] [--serve-fault-every K] [--token-lifetime SECONDS]"
                )
                .into())
            }
        }
    }
    if o.signatures == 0 || o.fault_every < 2 || o.serve_fault_every < 2 {
        return Err(
            "--signatures must be at least 1, --fault-every and --serve-fault-every at least 2"
                .into(),
        );
    }
    if o.serve_seconds < 12 || o.clients < 3 || o.token_lifetime <= 60 {
        return Err("--serve-seconds must be at least 12, --clients at least 3, and --token-lifetime over 60 (serve hands out a token only while it has more than 60 s left)".into());
    }
    Ok(o)
}

/// One line of the table.
#[derive(Default)]
struct Row {
    backend: String,
    signatures: usize,
    seconds: f64,
    fds: (usize, usize),
    rss_kib: (u64, u64),
    sessions: Option<(u64, u64)>,
    transients: Option<(usize, usize)>,
    notes: String,
    failures: Vec<String>,
}

impl Row {
    fn check(&mut self) {
        if self.fds.0 != self.fds.1 {
            self.failures
                .push(format!("open fds {} -> {}", self.fds.0, self.fds.1));
        }
        if self.rss_kib.1 > self.rss_kib.0 + RSS_BOUND_KIB {
            self.failures.push(format!(
                "RSS grew {} KiB (bound {RSS_BOUND_KIB})",
                self.rss_kib.1 - self.rss_kib.0
            ));
        }
        if let Some((a, b)) = self.sessions.filter(|(a, b)| a != b) {
            self.failures.push(format!("PKCS#11 sessions {a} -> {b}"));
        }
        if let Some((a, b)) = self.transients.filter(|(a, b)| a != b) {
            self.failures
                .push(format!("TPM transient objects {a} -> {b}"));
        }
    }
}

fn run() -> Result<bool> {
    let o = options()?;
    let tmp = tempfile::tempdir()?;
    let want = |b: &str| o.backends.iter().any(|x| x == b);
    let mut rows = Vec::new();

    if want("software") {
        let key = tmp.path().join("app.key.pem");
        run_tool(
            Command::new("openssl")
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
                .args(["rsa_keygen_bits:2048", "-out", path(&key)?]),
        )?;
        let signer = open(path(&key)?)?;
        let (mut row, _) = soak("software", &*signer, o.signatures, &|| Ok(None))?;
        row.check();
        rows.push(row);
    }

    if want("softhsm2") || want("faults") {
        let hsm = tmp.path().join("hsm");
        let pin = softhsm(&hsm)?;
        let shim = shim::Shim::new(tmp.path(), SOFTHSM2);
        let reference = format!(
            "pkcs11:token=certassert;object=app?module-path={}&pin-source=file:{}",
            shim.module.display(),
            pin.display()
        );
        if want("softhsm2") {
            let signer = open(&reference)?;
            let mut row = pkcs11_soak("softhsm2", &*signer, &shim, o.signatures)?;
            row.check();
            rows.push(row);
        }
        if want("faults") {
            let signer = open(&reference)?;
            let mut row = fault_soak(&*signer, &shim, o.signatures, o.fault_every)?;
            row.check();
            rows.push(row);
        }
    }

    if want("tpm-key") || want("tpm-handle") {
        let tpm = swtpm::Swtpm::start();
        let tcti = tpm.tcti();
        for (backend, key) in [
            (
                "tpm-key",
                format!(
                    "tpm:key={}?tcti={tcti}",
                    tmp.path().join("app.tss2.pem").display()
                ),
            ),
            ("tpm-handle", format!("tpm:handle=0x81000010?tcti={tcti}")),
        ] {
            if !want(backend) {
                continue;
            }
            drop(signer::generate(&key.parse()?, 2048, None, &NoCallbacks)?);
            let before = transients(&tcti)?;
            let signer = open(&key)?;
            let (mut row, during) = soak(backend, &*signer, o.signatures, &|| {
                Ok(Some(transients(&tcti)? as u64))
            })?;
            row.transients = during.map(|(a, b)| (a as usize, b as usize));
            // swtpm runs without a resource manager: whatever the signer left loaded is
            // still there after it disconnects.
            drop(signer);
            let after = transients(&tcti)?;
            row.notes = format!(
                "transient objects after the warm-up and at the end (signer open); before open {before}, after close {after}"
            );
            if before != after {
                row.failures.push(format!(
                    "TPM transient objects {before} before open, {after} after close"
                ));
            }
            row.check();
            rows.push(row);
        }
    }

    let served = if want("serve") {
        Some(serve_soak(&o, tmp.path())?)
    } else {
        None
    };

    print_table(&rows);
    let mut passed = rows.iter().all(|r| r.failures.is_empty());
    if let Some(report) = served {
        report.print();
        passed &= report.passed();
    }
    Ok(passed)
}

/// `serve` under `--clients` concurrent clients for `--serve-seconds`, swtpm killed and
/// restarted twice, the SoftHSM2 proxy injecting faults (issue 14): see [`serve`].
#[cfg(feature = "emulator")]
fn serve_soak(o: &Options, dir: &Path) -> Result<serve::Report> {
    let plan = serve::Plan {
        duration: Duration::from_secs(o.serve_seconds),
        clients: o.clients,
        fault_every: o.serve_fault_every,
        token_lifetime: o.token_lifetime,
    };
    serve::soak(&plan, dir)
}

#[cfg(not(feature = "emulator"))]
fn serve_soak(_: &Options, _: &Path) -> Result<NoServe> {
    Err("the serve soak needs the built-in emulator: rebuild with --features emulator,serve,cli (or leave serve out of --backends)".into())
}

#[cfg(not(feature = "emulator"))]
enum NoServe {}

#[cfg(not(feature = "emulator"))]
impl NoServe {
    fn print(&self) {}
    fn passed(&self) -> bool {
        match *self {}
    }
}

fn open(reference: &str) -> Result<Box<dyn Signer>> {
    Ok(signer::open_with(
        &reference.parse()?,
        &NoCallbacks,
        &OpenOptions::new().device_timeout(Duration::from_secs(30)),
    )?)
}

/// Sign `n` different messages after a warm-up; measure before and after, `extra` too.
fn soak(
    backend: &str,
    signer: &dyn Signer,
    n: usize,
    extra: &dyn Fn() -> Result<Option<u64>>,
) -> Result<(Row, Option<(u64, u64)>)> {
    let verifier = Verifier::new(signer.public_key_der())?;
    for i in 0..warm_up(n) {
        let (alg, msg) = message(backend, "warm", i);
        verifier.check(alg, &msg, &signer.sign(alg, &msg)?)?;
    }
    let (fds, rss, first) = (open_fds()?, rss_kib()?, extra()?);
    let start = Instant::now();
    for i in 0..n {
        let (alg, msg) = message(backend, "soak", i);
        let sig = signer
            .sign(alg, &msg)
            .map_err(|e| format!("{backend}: signature {i}: {e}"))?;
        verifier
            .check(alg, &msg, &sig)
            .map_err(|e| format!("{backend}: signature {i} is wrong: {e}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let row = Row {
        backend: backend.into(),
        signatures: n,
        seconds,
        fds: (fds, open_fds()?),
        rss_kib: (rss, rss_kib()?),
        ..Row::default()
    };
    Ok((row, first.zip(extra()?)))
}

fn pkcs11_soak(backend: &str, signer: &dyn Signer, shim: &shim::Shim, n: usize) -> Result<Row> {
    let verifier = Verifier::new(signer.public_key_der())?;
    let (alg, msg) = message(backend, "first", 0);
    verifier.check(alg, &msg, &signer.sign(alg, &msg)?)?;
    let (mut row, sessions) = soak(backend, signer, n, &|| {
        Ok(Some(shim.stats().get("live_sessions")))
    })?;
    row.sessions = sessions;
    row.notes = "sessions counted by the proxy".into();
    Ok(row)
}

/// The SoftHSM2 key under the fault schedule: every fault is either recovered within the
/// signature or reported as the typed error it must give; no signature is wrong.
fn fault_soak(signer: &dyn Signer, shim: &shim::Shim, n: usize, every: usize) -> Result<Row> {
    const ABSENCES: usize = 5;
    const ABSENT_FOR: usize = 3;
    let verifier = Verifier::new(signer.public_key_der())?;
    for i in 0..warm_up(n) {
        let (alg, msg) = message("faults", "warm", i);
        verifier.check(alg, &msg, &signer.sign(alg, &msg)?)?;
    }
    let (fds, rss) = (open_fds()?, rss_kib()?);
    let before = shim.stats();
    let schedule = format!("every {every} C_Sign {FAULTS}\n");
    shim.schedule(&schedule);
    let absent_at = (n / (ABSENCES + 1)).max(1);
    let (mut ok, mut device_errors, mut absent_errors, mut absences) = (0u64, 0u64, 0u64, 0u64);
    let mut wrong = Vec::new();
    let mut slowest_recovery = Duration::ZERO;
    let start = Instant::now();
    for i in 0..n {
        if i > 0 && i.is_multiple_of(absent_at) && absences < ABSENCES as u64 {
            absences += 1;
            shim.schedule(&format!("{schedule}absent\n"));
            for j in 0..ABSENT_FOR {
                let (alg, msg) = message("faults", "absent", i * ABSENT_FOR + j);
                match signer.sign(alg, &msg) {
                    Err(Error::Pkcs11(Pkcs11Error::TokenAbsent { .. })) => absent_errors += 1,
                    Err(e) => wrong.push(format!("absent {i}/{j}: not the typed error: {e}")),
                    Ok(_) => wrong.push(format!("absent {i}/{j}: a signature with no token")),
                }
            }
            shim.schedule(&schedule);
            let back = Instant::now();
            let (alg, msg) = message("faults", "back", i);
            match signer.sign(alg, &msg) {
                Ok(sig) => {
                    slowest_recovery = slowest_recovery.max(back.elapsed());
                    if let Err(e) = verifier.check(alg, &msg, &sig) {
                        wrong.push(format!("back {i}: {e}"));
                    }
                }
                Err(e) => wrong.push(format!("back {i}: no recovery: {e}")),
            }
        }
        let (alg, msg) = message("faults", "soak", i);
        match signer.sign(alg, &msg) {
            Ok(sig) => match verifier.check(alg, &msg, &sig) {
                Ok(()) => ok += 1,
                Err(e) => wrong.push(format!("signature {i} is wrong: {e}")),
            },
            Err(Error::Pkcs11(e @ Pkcs11Error::Sign { .. }))
                if matches!(
                    e.cryptoki(),
                    Some(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::DeviceError,
                        _
                    ))
                ) =>
            {
                device_errors += 1
            }
            Err(e) => wrong.push(format!("signature {i}: not recovered: {e}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    shim.schedule("");
    let (alg, msg) = message("faults", "last", 0);
    match signer.sign(alg, &msg) {
        Ok(sig) => {
            if let Err(e) = verifier.check(alg, &msg, &sig) {
                wrong.push(format!("after the faults: {e}"));
            }
        }
        Err(e) => wrong.push(format!("no signature after the faults stopped: {e}")),
    }
    let after = shim.stats();
    let grew = after.since(&before);
    let count = |k: &str| grew.get(k).copied().unwrap_or(0);
    let injected = count("injected");
    let lost = count("injected_DEVICE_REMOVED")
        + count("injected_TOKEN_NOT_PRESENT")
        + count("injected_USER_NOT_LOGGED_IN");
    // Every fault but CKR_DEVICE_ERROR must be recovered within its signature, and
    // every absence by the first signature after it; a miss is in `wrong`.
    let recoveries = if wrong.is_empty() {
        (injected - count("injected_DEVICE_ERROR") + absences).to_string()
    } else {
        "NOT all".to_string()
    };
    let mut row = Row {
        backend: "softhsm2+faults".into(),
        signatures: n,
        seconds,
        fds: (fds, open_fds()?),
        rss_kib: (rss, rss_kib()?),
        sessions: Some((before.get("live_sessions"), after.get("live_sessions"))),
        notes: format!(
            "{injected} faults + {absences} absences: {recoveries} recovered, {device_errors} CKR_DEVICE_ERROR and {absent_errors} TokenAbsent reported, {} wrong; {} C_Login (for {} lost logins), {} stale handles; slowest recovery {:.0} ms",
            wrong.len(),
            count("C_Login"),
            lost + absences,
            after.get("stale"),
            slowest_recovery.as_secs_f64() * 1000.0,
        ),
        ..Row::default()
    };
    row.failures.extend(
        wrong
            .into_iter()
            .take(3)
            .map(|w| w.chars().take(240).collect::<String>()),
    );
    if ok + device_errors != n as u64 {
        row.failures
            .push(format!("{ok} + {device_errors} signatures of {n}"));
    }
    if device_errors != count("injected_DEVICE_ERROR") {
        row.failures.push(format!(
            "{device_errors} CKR_DEVICE_ERROR reported for {} injected",
            count("injected_DEVICE_ERROR")
        ));
    }
    if count("C_Login") != lost + absences {
        row.failures.push(format!(
            "{} C_Login for {} lost logins",
            count("C_Login"),
            lost + absences
        ));
    }
    if after.get("stale") != 0 {
        row.failures
            .push(format!("{} stale session handles used", after.get("stale")));
    }
    if injected == 0 {
        row.failures.push("no fault was injected".into());
    }
    Ok(row)
}

fn warm_up(n: usize) -> usize {
    (n / 20).clamp(10, 200)
}

/// The `i`-th message (all differ) and its algorithm (RS256 and PS256 in turn).
fn message(backend: &str, phase: &str, i: usize) -> (Algorithm, Vec<u8>) {
    let alg = if i.is_multiple_of(2) {
        Algorithm::Rs256
    } else {
        Algorithm::Ps256
    };
    (alg, format!("{backend} {phase} signature {i}").into_bytes())
}

/// The independent verifier: the RustCrypto `rsa` crate, PKCS#1 v1.5 for RS256 and PSS
/// with a salt of exactly 32 bytes for PS256.
struct Verifier(rsa::RsaPublicKey);

impl Verifier {
    fn new(spki: &[u8]) -> Result<Self> {
        use rsa::pkcs8::DecodePublicKey as _;
        Ok(Self(rsa::RsaPublicKey::from_public_key_der(spki)?))
    }

    fn check(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<()> {
        use rsa::sha2::Sha256;
        use rsa::signature::Verifier as _;
        match alg {
            Algorithm::Rs256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(self.0.clone())
                .verify(message, &rsa::pkcs1v15::Signature::try_from(signature)?)?,
            Algorithm::Ps256 => {
                rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(self.0.clone(), 32)
                    .verify(message, &rsa::pss::Signature::try_from(signature)?)?
            }
        }
        Ok(())
    }
}

/// A SoftHSM2 token "certassert" in `dir` with an RSA-2048 key "app" made by pkcs11-tool;
/// SOFTHSM2_CONF points at it from now on. Returns the PIN file.
fn softhsm(dir: &Path) -> Result<PathBuf> {
    run_tool(Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm/provision.sh")).arg(dir))?;
    std::env::set_var("SOFTHSM2_CONF", dir.join("softhsm2.conf"));
    let pin = dir.join("pin");
    run_tool(
        Command::new("pkcs11-tool")
            .args([
                "--module",
                SOFTHSM2,
                "--token-label",
                "certassert",
                "--login",
            ])
            .args([
                "--pin",
                "env:SOAK_PIN",
                "--keypairgen",
                "--key-type",
                "rsa:2048",
            ])
            .args(["--label", "app", "--id", "01", "--usage-sign"])
            .env("SOAK_PIN", std::fs::read_to_string(&pin)?.trim()),
    )?;
    Ok(pin)
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| "a non-UTF-8 path".into())
}

fn open_fds() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

fn rss_kib() -> Result<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status")?)
}

/// VmRSS in KiB from the text of a /proc/PID/status.
fn vm_rss(status: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("VmRSS without a value")?
        .parse()?)
}

fn transients(tcti: &str) -> Result<usize> {
    let out = Command::new("tpm2_getcap")
        .arg("handles-transient")
        .env("TPM2TOOLS_TCTI", tcti)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "tpm2_getcap handles-transient: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

fn print_table(rows: &[Row]) {
    let pair = |p: Option<(u64, u64)>| p.map_or("-".to_string(), |(a, b)| format!("{a} -> {b}"));
    println!(
        "{:<16} {:>7} {:>8} {:>9} {:>22} {:>9} {:>10}  result",
        "backend", "sigs", "sigs/s", "fds", "VmRSS KiB (growth)", "sessions", "tpm objs"
    );
    for r in rows {
        println!(
            "{:<16} {:>7} {:>8.0} {:>9} {:>22} {:>9} {:>10}  {}",
            r.backend,
            r.signatures,
            r.signatures as f64 / r.seconds.max(1e-9),
            format!("{} -> {}", r.fds.0, r.fds.1),
            format!(
                "{} -> {} ({:+})",
                r.rss_kib.0,
                r.rss_kib.1,
                r.rss_kib.1 as i64 - r.rss_kib.0 as i64
            ),
            pair(r.sessions),
            pair(r.transients.map(|(a, b)| (a as u64, b as u64))),
            if r.failures.is_empty() {
                "ok".to_string()
            } else {
                format!("FAILED: {}", r.failures.join("; "))
            }
        );
    }
    for r in rows.iter().filter(|r| !r.notes.is_empty()) {
        println!("{}: {}", r.backend, r.notes);
    }
    println!("RSS bound after warm-up: +{RSS_BOUND_KIB} KiB; fds, sessions and TPM objects must be equal.");
}
