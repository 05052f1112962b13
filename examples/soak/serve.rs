//! Issue 14's second soak: `certassert serve` (the built binary, as a child) under 32
//! concurrent clients while its devices fail, with every answer checked.
//!
//! Two app registrations in the built-in emulator (in this process, short-lived access
//! tokens so the agent renews them during the run), served by one `certassert serve
//! --profile tpm --profile hsm --config F`: `tpm` is a `tpm:key=` key file on a swtpm,
//! `hsm` a SoftHSM2 key reached through the fault-injecting PKCS#11 proxy
//! (`tests/pkcs11/shim/faults.c`, its schedule and counters in the child's environment).
//! A request's `client_id` picks the identity.
//!
//! The clients are std threads speaking HTTP/1.1 over kept-alive `TcpStream`s: 30 ask
//! for a spread of resources on both identities, App Service (`X-IDENTITY-HEADER`) and
//! IMDS (`Metadata: true`) in turn, with one request in 25 a negative control (a wrong
//! identity secret: 401; an unknown `client_id`: 400); two probers, one per identity, ask
//! every few seconds for a resource never asked before — a token that needs a signature
//! now — and every 250 ms while a failure is not yet followed by such a token.
//!
//! The run, over its duration T: the proxy fails every K-th `C_Sign` (CKR_DEVICE_REMOVED,
//! CKR_SESSION_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_ERROR,
//! CKR_TOKEN_NOT_PRESENT in turn) throughout, pulls the token out for [`DOWN`] at T/6, T/2
//! and 5T/6; swtpm is killed at T/3 and 2T/3 and started again after [`DOWN`] on the same
//! state and port.
//!
//! Checked: every 200 is a JSON answer for the identity and resource asked whose token
//! the emulator signed (its signature verified with the RustCrypto `rsa` crate against
//! the emulator's key, once per distinct token), for that client (`appid`, `azp`), that
//! resource (`aud`), not expired, its `expires_on` the token's `exp` or at most
//! [`EXPIRY_SLACK`] later (the agent reckons it from when the answer came); anything else
//! is a wrong answer. Every other answer is
//! a JSON `{error, error_description}` (else "unclear"), within [`HANG`] (else "hung"),
//! on a connection that stays up until the answer is whole (else "dropped"). Recovery,
//! per identity: from each kill, absence or failed request to the first 200 for a
//! never-asked resource requested after it (at most [`RECOVERY_BOUND`]). Also: the serve
//! process's open fds (equal at start and end, with no client connected) and VmRSS (shown,
//! not bounded: the cache grows with the resources asked), the signatures made (the
//! emulator's log of token requests, all of them accepted), no stale PKCS#11 handle used,
//! no TPM transient object left after SIGTERM, exit 0, and neither the identity secret
//! nor the PIN in its log.

use super::{run_tool, shim, softhsm, swtpm, Result, Verifier, SOFTHSM2};
use certassert::Algorithm;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long swtpm stays dead and the token stays out each time.
pub const DOWN: Duration = Duration::from_secs(3);
/// The longest a failure may go unrecovered.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// The longest an answer may take (serve answers 504 after its 120 s request timeout).
pub const HANG: Duration = Duration::from_secs(130);
/// How far the answer's expires_on may pass the token's exp (seconds).
const EXPIRY_SLACK: i64 = 5;
/// Client threads in all: the probers (one per identity) and the load clients.
const PROBERS: usize = 2;
/// Resources each identity is asked for by the load clients.
const SPREAD: usize = 12;
/// A load client's pause between requests (2 cores shared: the soak is not a benchmark).
const THINK: Duration = Duration::from_millis(40);
/// A prober's pause after a fresh token, and while a failure waits for one.
const PROBE_EVERY: Duration = Duration::from_secs(3);
const PROBE_PENDING: Duration = Duration::from_millis(250);
const TENANT: &str = "7f3c1a52-0e4b-4d7a-9c61-5b2e8d9f0a14";
const IDENTITIES: [(&str, &str); 2] = [
    ("tpm", "3a9d6c1e-2b47-4f85-a0d3-9e6b1c7f5a28"),
    ("hsm", "c5e81b0f-6d29-4a73-8f14-2b7e9a3d6c50"),
];

/// What the run is told.
pub struct Plan {
    /// The run's duration.
    pub duration: Duration,
    /// Client threads in all (probers included).
    pub clients: usize,
    /// The proxy fails every K-th C_Sign.
    pub fault_every: usize,
    /// The access tokens' lifetime (the agent serves one while it has more than 60 s left).
    pub token_lifetime: i64,
}

/// One identity's line of the table.
#[derive(Default)]
pub struct Row {
    pub identity: String,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first description of each kind of error.
    pub described: BTreeMap<String, String>,
    pub refused_as_expected: u64,
    pub wrong: u64,
    pub unclear: u64,
    pub dropped: u64,
    pub hung: u64,
    pub signatures: u64,
    /// The longest from a failure to the next 200 for a never-asked resource.
    pub recovery: Option<Duration>,
    /// The longest from a resource's first failure to its next 200.
    pub same_resource: Option<Duration>,
    pub failures: Vec<String>,
}

/// The process's line and what the run found beyond the rows.
pub struct Report {
    pub plan: String,
    pub rows: Vec<Row>,
    /// Open fds at start and end: (all, idle connections to the emulator).
    pub fds: ((usize, usize), (usize, usize)),
    pub rss_kib: (u64, u64),
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.rows.iter().all(|r| r.failures.is_empty())
    }

    pub fn print(&self) {
        println!();
        println!("serve: {}", self.plan);
        println!(
            "{:<9} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>5} {:>6} {:>15}  errors by kind; result",
            "identity",
            "requests",
            "200s",
            "wrong",
            "clear",
            "unclear",
            "dropped",
            "hung",
            "sigs",
            "recovery new/same"
        );
        for r in &self.rows {
            let mut kinds: Vec<String> = r.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
            kinds.push(format!(
                "{} negative controls refused as they must be",
                r.refused_as_expected
            ));
            println!(
                "{:<9} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>5} {:>6} {:>15}  {}; {}",
                r.identity,
                r.requests,
                r.ok,
                r.wrong,
                r.errors.values().sum::<u64>() + r.refused_as_expected,
                r.unclear,
                r.dropped,
                r.hung,
                r.signatures,
                format!("{} / {} s", secs(r.recovery), secs(r.same_resource)),
                kinds.join(", "),
                if r.failures.is_empty() {
                    "ok".to_string()
                } else {
                    format!("FAILED: {}", r.failures.join("; "))
                }
            );
        }
        println!(
            "{:<9} fds {} -> {} ({} -> {} pooled connections to the emulator), VmRSS {} -> {} KiB ({:+}); {}",
            "process",
            self.fds.0 .0,
            self.fds.1 .0,
            self.fds.0 .1,
            self.fds.1 .1,
            self.rss_kib.0,
            self.rss_kib.1,
            self.rss_kib.1 as i64 - self.rss_kib.0 as i64,
            if self.failures.is_empty() {
                "ok".to_string()
            } else {
                format!("FAILED: {}", self.failures.join("; "))
            }
        );
        for r in &self.rows {
            for (key, description) in &r.described {
                let kind = key.split(':').next().unwrap_or_default();
                println!("serve: {} {kind}: {description}", r.identity);
            }
        }
        for n in &self.notes {
            println!("serve: {n}");
        }
        println!(
            "serve: \"clear\" counts JSON {{error, error_description}} answers (negative controls included); recovery is the longest from a kill, absence or failed request to the next 200 for a never-asked resource (new), and from a resource's first failure to its next 200, back-off included (same); bound {} s; fds other than the pooled connections must be equal.",
            RECOVERY_BOUND.as_secs()
        );
    }
}

/// A device event or a failed request: the point a recovery is measured from.
#[derive(Default)]
struct Track {
    /// When each failure (or kill, absence) began.
    points: Vec<Instant>,
    /// (asked, answered) of every 200 for a never-asked resource.
    fresh_ok: Vec<(Instant, Instant)>,
    last_point: Option<Instant>,
    last_fresh_ok: Option<Instant>,
}

impl Track {
    fn point(&mut self, at: Instant) {
        self.points.push(at);
        self.last_point = Some(self.last_point.map_or(at, |p| p.max(at)));
    }

    fn pending(&self) -> bool {
        match (self.last_point, self.last_fresh_ok) {
            (Some(p), Some(f)) => f < p,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The longest recovery, and how many points had none.
    fn recovery(&self) -> (Option<Duration>, u64) {
        let mut fresh = self.fresh_ok.clone();
        fresh.sort();
        // The earliest answer among the 200s asked at or after index i.
        let mut suffix = vec![None::<Instant>; fresh.len() + 1];
        for i in (0..fresh.len()).rev() {
            suffix[i] = Some(suffix[i + 1].map_or(fresh[i].1, |s| s.min(fresh[i].1)));
        }
        let (mut longest, mut none) = (None::<Duration>, 0);
        for p in &self.points {
            let i = fresh.partition_point(|(asked, _)| asked < p);
            match suffix[i] {
                Some(back) => {
                    let d = back.duration_since(*p);
                    longest = Some(longest.map_or(d, |l| l.max(d)));
                }
                None => none += 1,
            }
        }
        (longest, none)
    }
}

/// What one identity's requests came to (clients add to it as they go).
#[derive(Default)]
struct Tally {
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// The first `error_description` of each kind.
    described: BTreeMap<String, String>,
    refused_as_expected: u64,
    wrong: u64,
    unclear: u64,
    dropped: u64,
    hung: u64,
    samples: Vec<String>,
    track: Track,
    /// Spread resources whose last answer was a failure: since when.
    pending: HashMap<String, Instant>,
    /// The longest from a spread resource's first failure to its next 200.
    same_resource: Option<Duration>,
}

impl Tally {
    fn sample(&mut self, what: String) {
        if self.samples.len() < 4 {
            self.samples.push(what.chars().take(240).collect());
        }
    }
}

struct Shared {
    addr: SocketAddr,
    secret: String,
    tallies: [Mutex<Tally>; 2],
    /// Tokens already verified, with the claims the checks need.
    verified: Mutex<HashMap<String, Claims>>,
    verifier: Verifier,
    stop_load: AtomicBool,
    stop_probes: AtomicBool,
}

#[derive(Clone)]
struct Claims {
    aud: String,
    appid: String,
    azp: String,
    tid: String,
    exp: i64,
}

/// Run the serve soak in `dir`.
pub fn soak(plan: &Plan, dir: &Path) -> Result<Report> {
    let bin = certassert_binary()?;
    let cli = |args: &[&str], envs: &[(&str, &str)]| -> Result<()> {
        run_tool(
            Command::new(&bin)
                .args(args)
                .envs(envs.iter().copied())
                .env("CERTASSERT_CACHE_DIR", dir)
                .stdin(Stdio::null()),
        )
    };

    // The HSM identity: a SoftHSM2 token behind the proxy, its certificate made through
    // SoftHSM2 directly (so the proxy counts only what serve does).
    let hsm_dir = dir.join("serve-hsm");
    std::fs::create_dir_all(&hsm_dir)?;
    let pin = softhsm(&hsm_dir)?;
    let shim = shim::Shim::new(&hsm_dir, SOFTHSM2);
    let pin_ref = format!("pin-source=file:{}", pin.display());
    let hsm_cert = dir.join("hsm.cert.pem");
    cli(
        &[
            "cert",
            "create",
            "--key",
            &format!("pkcs11:token=certassert;object=app?module-path={SOFTHSM2}&{pin_ref}"),
            "--subject",
            "CN=soak-hsm",
            "--out",
            s(&hsm_cert)?,
        ],
        &[],
    )?;
    let hsm_key = format!(
        "pkcs11:token=certassert;object=app?module-path={}&{pin_ref}",
        shim.module.display()
    );

    // The TPM identity: a key file on a swtpm of its own.
    let mut tpm = swtpm::Swtpm::start();
    let tpm_key = format!(
        "tpm:key={}?tcti={}",
        dir.join("serve.tss2.pem").display(),
        tpm.tcti()
    );
    let tpm_cert = dir.join("tpm.cert.pem");
    cli(&["key", "generate", "--key", &tpm_key], &[])?;
    cli(
        &[
            "cert",
            "create",
            "--key",
            &tpm_key,
            "--subject",
            "CN=soak-tpm",
            "--out",
            s(&tpm_cert)?,
        ],
        &[],
    )?;
    tpm.flush_transients();

    let load = |p: &Path| -> Result<certassert::cert::Certificate> {
        Ok(certassert::cert::Certificate::load_chain(p)?.remove(0))
    };
    let emulator = certassert::emulator::start(certassert::emulator::Config {
        apps: vec![
            certassert::emulator::App {
                client_id: IDENTITIES[0].1.into(),
                certificates: vec![load(&tpm_cert)?],
            },
            certassert::emulator::App {
                client_id: IDENTITIES[1].1.into(),
                certificates: vec![load(&hsm_cert)?],
            },
        ],
        tenant: Some(TENANT.into()),
        token_lifetime: plan.token_lifetime,
        ..Default::default()
    })?;

    let config = dir.join("serve.toml");
    let mut text = String::new();
    for ((name, client), (key, cert)) in IDENTITIES
        .iter()
        .zip([(&tpm_key, &tpm_cert), (&hsm_key, &hsm_cert)])
    {
        text.push_str(&format!(
            "[profile.{name}]\nkey = \"{key}\"\ncert = \"{}\"\ntenant = \"{TENANT}\"\nclient_id = \"{client}\"\nauthority_host = \"{}\"\n\n",
            cert.display(),
            emulator.url()
        ));
    }
    std::fs::write(&config, text)?;

    let secret = certassert::serve::env_file::generate_secret()
        .expose()
        .to_string();
    let log_path = dir.join("serve.log");
    let mut serve = ServeChild::start(&bin, &config, &secret, &log_path)?;

    let shared = Arc::new(Shared {
        addr: serve.addr,
        secret: secret.clone(),
        tallies: Default::default(),
        verified: Mutex::default(),
        verifier: Verifier::new(emulator.signing_key_spki())?,
        stop_load: AtomicBool::new(false),
        stop_probes: AtomicBool::new(false),
    });

    // Warm-up: every spread resource once per identity and protocol, each answer checked;
    // then the process is measured with no client connected.
    let mut failures = Vec::new();
    for (i, (_, client)) in IDENTITIES.iter().enumerate() {
        let mut conn = None;
        for k in 0..SPREAD {
            for imds in [false, true] {
                let ask = Ask {
                    identity: i,
                    client: client.to_string(),
                    resource: spread(k),
                    imds,
                    negative: Negative::None,
                    fresh: false,
                };
                let (ok, _) = shared.ask(&mut conn, &ask);
                if !ok {
                    failures.push(format!(
                        "warm-up: {} {} failed",
                        IDENTITIES[i].0, ask.resource
                    ));
                }
            }
        }
    }
    if !failures.is_empty() {
        let _ = serve.stop();
        let samples: Vec<String> = shared
            .tallies
            .iter()
            .flat_map(|t| t.lock().unwrap().samples.clone())
            .take(2)
            .collect();
        return Err(format!(
            "{} of {} warm-up requests failed (first: {}): {}; serve's log ends: {}",
            failures.len(),
            IDENTITIES.len() * SPREAD * 2,
            failures[0],
            samples.join("; "),
            serve.log_tail()
        )
        .into());
    }
    std::thread::sleep(Duration::from_millis(500));
    let emulator_port = emulator_port(emulator.url())?;
    let (fds0, rss0) = serve.measure(emulator_port)?;
    let shim_before = shim.stats();
    let posts_before = emulator.requests().len();

    // The clients.
    let faults = format!("every {} C_Sign {}\n", plan.fault_every, super::FAULTS);
    shim.schedule(&faults);
    let start = Instant::now();
    let mut threads = Vec::new();
    for p in 0..PROBERS {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || prober(&shared, p)));
    }
    for c in 0..plan.clients.saturating_sub(PROBERS) {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || load_client(&shared, c)));
    }

    // The timeline: the token out at T/6, T/2, 5T/6; swtpm killed at T/3 and 2T/3.
    let t = plan.duration;
    let mut events: Vec<(Duration, usize)> = vec![
        (t / 6, 1),
        (t / 3, 0),
        (t / 2, 1),
        (t * 2 / 3, 0),
        (t * 5 / 6, 1),
    ];
    events.sort();
    let (mut kills, mut absences) = (0, 0);
    for (at, identity) in events {
        sleep_until(start + at);
        shared.tallies[identity]
            .lock()
            .unwrap()
            .track
            .point(Instant::now());
        if identity == 0 {
            tpm.stop();
            kills += 1;
            std::thread::sleep(DOWN);
            tpm.restart();
        } else {
            shim.schedule(&format!("{faults}absent\n"));
            absences += 1;
            std::thread::sleep(DOWN);
            shim.schedule(&faults);
        }
    }
    sleep_until(start + t);
    shared.stop_load.store(true, Ordering::SeqCst);
    // The probers go on until every failure has its recovery, or past the bound; a
    // spread resource whose last answer was a failure is asked again until it has its 200.
    let deadline = Instant::now() + RECOVERY_BOUND + Duration::from_secs(1);
    let mut conn = None;
    while Instant::now() < deadline {
        let mut waiting = false;
        for (i, (_, client)) in IDENTITIES.iter().enumerate() {
            let (fresh, pending): (bool, Vec<String>) = {
                let t = shared.tallies[i].lock().unwrap();
                (t.track.pending(), t.pending.keys().cloned().collect())
            };
            waiting |= fresh || !pending.is_empty();
            for resource in pending {
                let ask = Ask {
                    identity: i,
                    client: client.to_string(),
                    resource,
                    imds: false,
                    negative: Negative::None,
                    fresh: false,
                };
                shared.ask(&mut conn, &ask);
            }
        }
        if !waiting {
            break;
        }
        std::thread::sleep(PROBE_PENDING);
    }
    drop(conn);
    shared.stop_probes.store(true, Ordering::SeqCst);
    for th in threads {
        th.join().map_err(|_| "a client thread panicked")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    shim.schedule("");
    // Let serve see the clients' connections close, then measure.
    std::thread::sleep(Duration::from_secs(1));
    let (fds1, rss1) = serve.measure(emulator_port)?;
    let shim_grew = shim.stats().since(&shim_before);
    let count = |k: &str| shim_grew.get(k).copied().unwrap_or(0);

    // Stop it: SIGTERM, exit 0, nothing left loaded in the TPM.
    let status = serve.stop()?;
    if status != Some(0) {
        failures.push(format!(
            "serve exited with {status:?} on SIGTERM: {}",
            serve.log_tail()
        ));
    }
    let left = tpm.transient_handles();
    if !left.is_empty() {
        failures.push(format!(
            "{} TPM transient objects left after SIGTERM",
            left.len()
        ));
    }
    let log = std::fs::read_to_string(&log_path)?;
    let pin_text = std::fs::read_to_string(&pin)?;
    if log.contains(&secret) || log.contains(pin_text.trim()) {
        failures.push("the identity secret or the PIN is in serve's log".into());
    }
    // Besides the pooled connections to the emulator, the same fds; those within the
    // pool's bound.
    let other = (fds0.0 - fds0.1, fds1.0 - fds1.1);
    if other.0 != other.1 {
        failures.push(format!(
            "open fds other than pooled connections {} -> {}",
            other.0, other.1
        ));
    }
    if fds1.1 > 3 * IDENTITIES.len() {
        failures.push(format!(
            "{} connections to the emulator held (ureq pools at most 3 per client)",
            fds1.1
        ));
    }
    // One C_Login for each loss of the login (a removal, a forgotten login, an absence),
    // however many threads saw it. A C_Login on the keeper session that a removal killed
    // while another thread was still recording it reaches no token (the proxy answers it,
    // counted as a stale use, no PIN forwarded): such calls are not presentations.
    let stale = shim.stats().get("stale");
    let lost = count("injected_DEVICE_REMOVED")
        + count("injected_TOKEN_NOT_PRESENT")
        + count("injected_USER_NOT_LOGGED_IN")
        + absences;
    if count("C_Login").saturating_sub(stale) > lost {
        failures.push(format!(
            "{} C_Login ({stale} of them perhaps on a dead session) for {lost} lost logins: a PIN presented twice for one failure",
            count("C_Login")
        ));
    }
    if count("injected") == 0 {
        failures.push("the proxy injected no fault".into());
    }

    // Signatures: the token requests the emulator received during the run, per client.
    let requests = emulator.requests();
    let posts: Vec<_> = requests[posts_before..]
        .iter()
        .filter(|r| r.method == "POST")
        .collect();
    let mut rows = Vec::new();
    for (i, (name, client)) in IDENTITIES.iter().enumerate() {
        let tally = shared.tallies[i].lock().unwrap();
        let mine: Vec<_> = posts
            .iter()
            .filter(|r| r.form.iter().any(|(k, v)| k == "client_id" && v == client))
            .collect();
        let refused = mine.iter().filter(|r| r.status != 200).count();
        let (recovery, unrecovered) = tally.track.recovery();
        let unrecovered = unrecovered + tally.pending.len() as u64;
        let mut row = Row {
            identity: name.to_string(),
            requests: tally.requests,
            ok: tally.ok,
            errors: tally.errors.clone(),
            described: tally.described.clone(),
            refused_as_expected: tally.refused_as_expected,
            wrong: tally.wrong,
            unclear: tally.unclear,
            dropped: tally.dropped,
            hung: tally.hung,
            signatures: mine.len() as u64,
            recovery,
            same_resource: tally.same_resource,
            failures: Vec::new(),
        };
        for (n, what) in [
            (row.wrong, "wrong answers"),
            (row.unclear, "unclear errors"),
            (row.dropped, "dropped connections"),
            (row.hung, "hung requests"),
            (unrecovered, "failures never recovered"),
            (refused as u64, "assertions the emulator refused"),
        ] {
            if n > 0 {
                row.failures.push(format!("{n} {what}"));
            }
        }
        for (d, what) in [
            (recovery, "new resource"),
            (row.same_resource, "same resource"),
        ] {
            if let Some(d) = d.filter(|d| *d > RECOVERY_BOUND) {
                row.failures.push(format!(
                    "recovery ({what}) {:.1} s (bound {} s)",
                    d.as_secs_f64(),
                    RECOVERY_BOUND.as_secs()
                ));
            }
        }
        if tally.track.points.is_empty() {
            row.failures.push("no fault met this identity".into());
        }
        if row.signatures < 10 {
            row.failures
                .push(format!("only {} signatures during the run", row.signatures));
        }
        if !row.failures.is_empty() {
            row.failures.extend(tally.samples.iter().cloned());
        }
        rows.push(row);
    }

    let refreshed = log.matches("serve: refreshed ").count();
    let refresh_failed = log.matches("serve: refresh failed ").count();
    let notes = vec![
        format!(
            "swtpm killed {kills} times and the token pulled out {absences} times, each for {} s; the proxy injected {} faults ({}); {} C_Login for {lost} lost logins; {} calls on a session that died in a removal another thread had been told of (the proxy's \"stale\": a call in flight on another thread when a removal is reported, or made before the thread told has recorded it; not avoidable without serialising signatures)",
            DOWN.as_secs(),
            count("injected"),
            shim_grew
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("injected_").map(|k| format!("{v} {k}")))
                .collect::<Vec<_>>()
                .join(", "),
            count("C_Login"),
            stale
        ),
        format!(
            "background refreshes {refreshed} done, {refresh_failed} failed; no TPM transient object left after SIGTERM: {}; exit {status:?}",
            left.is_empty()
        ),
    ];
    Ok(Report {
        plan: format!(
            "{} clients for {seconds:.0} s (probers included), token lifetime {} s, a fault every {} C_Sign",
            plan.clients, plan.token_lifetime, plan.fault_every
        ),
        rows,
        fds: (fds0, fds1),
        rss_kib: (rss0, rss1),
        notes,
        failures,
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()))
}

fn spread(k: usize) -> String {
    format!("https://r{k}.soak.example")
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

/// A resource never asked before (a token for it needs a signature), asked every
/// [`PROBE_EVERY`], or every [`PROBE_PENDING`] while a failure waits for its recovery.
fn prober(shared: &Shared, identity: usize) {
    let mut conn = None;
    let mut n = 0usize;
    while !shared.stop_probes.load(Ordering::SeqCst) {
        n += 1;
        let ask = Ask {
            identity,
            client: IDENTITIES[identity].1.into(),
            resource: format!("https://fresh{n}.{}.soak.example", IDENTITIES[identity].0),
            imds: n.is_multiple_of(2),
            negative: Negative::None,
            fresh: true,
        };
        let asked = Instant::now();
        let (ok, answered) = shared.ask(&mut conn, &ask);
        {
            let mut tally = shared.tallies[identity].lock().unwrap();
            if ok {
                tally.track.fresh_ok.push((asked, answered));
                tally.track.last_fresh_ok =
                    Some(tally.track.last_fresh_ok.map_or(asked, |f| f.max(asked)));
            }
        }
        let pause = Instant::now() + PROBE_EVERY;
        while Instant::now() < pause && !shared.stop_probes.load(Ordering::SeqCst) {
            if shared.tallies[identity].lock().unwrap().track.pending()
                && Instant::now() >= answered + PROBE_PENDING
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The spread of resources on both identities, both protocols, with negative controls.
fn load_client(shared: &Shared, c: usize) {
    let mut conn = None;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut n = 0u64;
    while !shared.stop_load.load(Ordering::SeqCst) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        n += 1;
        let identity = (rng % 2) as usize;
        let negative = match (rng >> 8) % 50 {
            0 => Negative::WrongSecret,
            1 => Negative::UnknownClient,
            _ => Negative::None,
        };
        let ask = Ask {
            identity,
            client: IDENTITIES[identity].1.into(),
            resource: spread(((rng >> 16) % SPREAD as u64) as usize),
            imds: n.is_multiple_of(2) && negative != Negative::WrongSecret,
            negative,
            fresh: false,
        };
        shared.ask(&mut conn, &ask);
        std::thread::sleep(THINK);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Negative {
    None,
    /// App Service with a wrong `X-IDENTITY-HEADER`: must be 401.
    WrongSecret,
    /// A `client_id` serve does not serve: must be 400.
    UnknownClient,
}

struct Ask {
    identity: usize,
    /// Never asked before (the probers').
    fresh: bool,
    client: String,
    resource: String,
    imds: bool,
    negative: Negative,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

enum Broken {
    Dropped(String),
    Hung,
}

impl Shared {
    /// Ask, check the answer, and count it; whether it was a good 200, and when it came.
    fn ask(&self, conn: &mut Option<Conn>, ask: &Ask) -> (bool, Instant) {
        let asked = Instant::now();
        let client = match ask.negative {
            Negative::UnknownClient => "11111111-2222-3333-4444-555555555555",
            _ => ask.client.as_str(),
        };
        let wrong_secret;
        let secret = if ask.negative == Negative::WrongSecret {
            wrong_secret = format!("{}x", self.secret);
            &wrong_secret
        } else {
            &self.secret
        };
        let head = if ask.imds {
            format!(
                "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource={}&client_id={client} HTTP/1.1\r\nHost: {}\r\nMetadata: true\r\n\r\n",
                enc(&ask.resource),
                self.addr
            )
        } else {
            format!(
                "GET /msi/token?api-version=2019-08-01&resource={}&client_id={client} HTTP/1.1\r\nHost: {}\r\nX-IDENTITY-HEADER: {secret}\r\n\r\n",
                enc(&ask.resource),
                self.addr
            )
        };
        let result = exchange(self.addr, conn, &head);
        let answered = Instant::now();
        let mut good = false;
        let mut tally_failure = true;
        let verdict = match result {
            Err(Broken::Hung) => Verdict::Hung,
            Err(Broken::Dropped(why)) => Verdict::Dropped(why),
            Ok(a) if ask.negative != Negative::None => {
                let expected = if ask.negative == Negative::WrongSecret {
                    401
                } else {
                    400
                };
                tally_failure = false;
                match clear_error(&a) {
                    Some(_) if a.status == expected => Verdict::Expected,
                    _ if a.status == 200 => {
                        Verdict::Wrong(format!("{:?} was answered 200", ask.negative))
                    }
                    Some((kind, _)) => Verdict::Wrong(format!(
                        "{:?} was answered {kind}, not {expected}",
                        ask.negative
                    )),
                    None => Verdict::Unclear(a.status, a.body),
                }
            }
            Ok(a) if a.status == 200 => match self.check_token(ask, &a.body) {
                Ok(()) => {
                    good = true;
                    tally_failure = false;
                    Verdict::Ok
                }
                Err(why) => Verdict::Wrong(why),
            },
            Ok(a) => match clear_error(&a) {
                Some((kind, description)) => Verdict::Error(kind, description),
                None => Verdict::Unclear(a.status, a.body),
            },
        };
        let mut tally = self.tallies[ask.identity].lock().unwrap();
        tally.requests += 1;
        if tally_failure {
            tally.track.point(asked);
        }
        if ask.negative == Negative::None && !ask.fresh {
            if tally_failure {
                tally.pending.entry(ask.resource.clone()).or_insert(asked);
            } else if let Some(since) = tally.pending.get(&ask.resource).copied() {
                if asked >= since {
                    let d = answered.duration_since(since);
                    tally.same_resource = Some(tally.same_resource.map_or(d, |l| l.max(d)));
                    tally.pending.remove(&ask.resource);
                }
            }
        }
        match verdict {
            Verdict::Ok => tally.ok += 1,
            Verdict::Expected => tally.refused_as_expected += 1,
            Verdict::Error(kind, description) => {
                *tally.errors.entry(kind.clone()).or_default() += 1;
                let shown: String = description.chars().take(200).collect();
                let key = format!("{kind}: {}", shown.chars().take(70).collect::<String>());
                tally.described.entry(key).or_insert(shown);
            }
            Verdict::Wrong(why) => {
                tally.wrong += 1;
                tally.sample(format!("wrong: {why}"));
            }
            Verdict::Unclear(status, body) => {
                tally.unclear += 1;
                let body = String::from_utf8_lossy(&body).into_owned();
                tally.sample(format!("unclear {status}: {body}"));
            }
            Verdict::Dropped(why) => {
                tally.dropped += 1;
                tally.sample(format!("dropped: {why}"));
            }
            Verdict::Hung => {
                tally.hung += 1;
                tally.sample(format!("no answer within {} s", HANG.as_secs()));
            }
        }
        (good, answered)
    }

    /// A 200's body: the answer for this client and resource, its token one the emulator
    /// signed for them, not expired. Never shows the token.
    fn check_token(&self, ask: &Ask, body: &[u8]) -> std::result::Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("a 200 that is not JSON: {e}"))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
        if field("client_id") != ask.client {
            return Err(format!(
                "client_id {:?} for {}",
                field("client_id"),
                ask.client
            ));
        }
        if field("resource") != ask.resource {
            return Err(format!(
                "resource {:?} for {}",
                field("resource"),
                ask.resource
            ));
        }
        if field("token_type") != "Bearer" {
            return Err("token_type is not Bearer".into());
        }
        let expires_on: i64 = field("expires_on")
            .parse()
            .map_err(|_| "expires_on is not a number")?;
        let token = field("access_token");
        let known = self.verified.lock().unwrap().get(token).cloned();
        let claims = match known {
            Some(c) => c,
            None => {
                let c = self.verify(token)?;
                self.verified
                    .lock()
                    .unwrap()
                    .insert(token.to_string(), c.clone());
                c
            }
        };
        let now = certassert::encoding::unix_now();
        if claims.appid != ask.client || claims.azp != ask.client {
            return Err(format!(
                "a token for {} (azp {}) served to {}",
                claims.appid, claims.azp, ask.client
            ));
        }
        if claims.aud != ask.resource {
            return Err(format!(
                "a token for {} served for {}",
                claims.aud, ask.resource
            ));
        }
        if claims.tid != TENANT {
            return Err(format!("a token of tenant {}", claims.tid));
        }
        // The agent reckons expires_on as when the answer came plus expires_in (as OAuth
        // clients do: the token is opaque to them), so it may pass the token's exp by the
        // token request's round trip and a second's rounding; never fall short of it.
        if !(claims.exp..=claims.exp + EXPIRY_SLACK).contains(&expires_on) || claims.exp <= now {
            return Err(format!(
                "expires_on {expires_on}, token exp {}, now {now}",
                claims.exp
            ));
        }
        Ok(())
    }

    /// The emulator's signature on `token` (RS256, its key), and the claims checked.
    fn verify(&self, token: &str) -> std::result::Result<Claims, String> {
        use base64::Engine as _;
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err("the access token is not a JWS".into());
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = b64
            .decode(parts[2])
            .map_err(|_| "the token's signature is not base64url")?;
        self.verifier
            .check(
                Algorithm::Rs256,
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &sig,
            )
            .map_err(|e| format!("the token's signature is not the emulator's: {e}"))?;
        let claims: serde_json::Value = b64
            .decode(parts[1])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("the token's claims are not JSON")?;
        let text = |k: &str| claims[k].as_str().unwrap_or_default().to_string();
        Ok(Claims {
            aud: text("aud"),
            appid: text("appid"),
            azp: text("azp"),
            tid: text("tid"),
            exp: claims["exp"].as_i64().unwrap_or_default(),
        })
    }
}

enum Verdict {
    Ok,
    Expected,
    Error(String, String),
    Wrong(String),
    Unclear(u16, Vec<u8>),
    Dropped(String),
    Hung,
}

/// `STATUS error` and the description, for a JSON `{error, error_description}` body
/// with both non-empty.
fn clear_error(a: &Answer) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
    let error = v.get("error")?.as_str()?;
    let description = v.get("error_description")?.as_str()?;
    (!error.is_empty() && !description.trim().is_empty())
        .then(|| (format!("{} {error}", a.status), description.to_string()))
}

/// A kept-alive connection.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(HANG))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }
}

/// One request and its answer. A kept-alive connection the server closed while idle is
/// opened again once (as any HTTP client does); on a new connection, anything short of a
/// whole answer is a dropped connection.
fn exchange(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    head: &str,
) -> std::result::Result<Answer, Broken> {
    for attempt in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            *conn = Some(Conn::open(addr).map_err(|e| Broken::Dropped(format!("connect: {e}")))?);
        }
        let c = conn.as_mut().expect("connected");
        let result = c
            .stream
            .write_all(head.as_bytes())
            .map_err(|e| (false, e))
            .and_then(|()| read_answer(&mut c.reader));
        match result {
            Ok((answer, keep)) => {
                if !keep {
                    *conn = None;
                }
                return Ok(answer);
            }
            Err((started, e)) => {
                *conn = None;
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    return Err(Broken::Hung);
                }
                if reused && !started && attempt == 0 {
                    continue;
                }
                return Err(Broken::Dropped(e.to_string()));
            }
        }
    }
    Err(Broken::Dropped("closed twice".into()))
}

/// Read one answer with a Content-Length; whether the connection stays open. The error
/// says whether any of the answer had come.
fn read_answer(
    reader: &mut BufReader<TcpStream>,
) -> std::result::Result<(Answer, bool), (bool, std::io::Error)> {
    let eof = |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_string());
    let mut line = String::new();
    let n = reader.read_line(&mut line).map_err(|e| (false, e))?;
    if n == 0 {
        return Err((false, eof("closed before the answer")));
    }
    let status: u16 = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or((true, eof("not an HTTP/1.1 status line")))?;
    let (mut length, mut keep) = (None, true);
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| (true, e))? == 0 {
            return Err((true, eof("closed in the head")));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                keep = false;
            }
        }
    }
    let length = length.ok_or((true, eof("no Content-Length")))?;
    if length > 1 << 20 {
        return Err((true, eof("an answer over 1 MiB")));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| (true, e))?;
    Ok((Answer { status, body }, keep))
}

/// Percent-encode a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `certassert serve` as a child: stdout read for its address, stderr to a file.
struct ServeChild {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl ServeChild {
    fn start(bin: &Path, config: &Path, secret: &str, log: &Path) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(["--profile", "tpm", "--profile", "hsm"])
            .args(["--identity-header-source", "env:SOAK_IDENTITY_SECRET"])
            .env("SOAK_IDENTITY_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let out = child.stdout.take().ok_or("serve's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut this = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_path_buf(),
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => {
                this.addr = line
                    .strip_prefix("http://")
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("serve printed {line:?}, not its address"))?;
                Ok(this)
            }
            _ => {
                let _ = this.child.kill();
                let _ = this.child.wait();
                Err(format!("certassert serve did not start: {}", this.log_tail()).into())
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n  ")
    }

    /// Its open fds (all, pooled connections to `peer_port`) and VmRSS; an error with
    /// its exit status and the end of its log if it is no longer running.
    fn measure(&mut self, peer_port: u16) -> Result<((usize, usize), u64)> {
        if let Some(status) = self.child.try_wait()? {
            return Err(format!(
                "certassert serve is no longer running ({status}); its log ends:\n  {}",
                self.log_tail()
            )
            .into());
        }
        let pid = self.child.id();
        Ok((proc_fds(pid, peer_port)?, proc_rss_kib(pid)?))
    }

    /// SIGTERM, then its exit code (at most 20 s; then it is killed: None).
    fn stop(&mut self) -> Result<Option<i32>> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(None)
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built `certassert` beside this example (target/PROFILE/certassert), or
/// `CERTASSERT_BIN`.
fn certassert_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CERTASSERT_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("certassert"))
        .ok_or("no directory above this example")?;
    if !bin.is_file() {
        return Err(format!(
            "{} is not built: run `cargo build` first (ci/soak.sh does), or set CERTASSERT_BIN",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// The process's open fds: (all, connections to `peer_port`) — the latter are the
/// token clients' idle keep-alive connections to the emulator, which ureq pools (at most
/// 3 per host and client, dropped after 15 s idle) and so may differ between two moments.
fn proc_fds(pid: u32, peer_port: u16) -> Result<(usize, usize)> {
    let mut inodes = Vec::new();
    let mut all = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        all += 1;
        if let Ok(target) = std::fs::read_link(fd?.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.push(inode.to_string());
            }
        }
    }
    let mut pooled = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let remote_port = cols
                .get(2)
                .and_then(|r| r.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(peer_port)
                && cols.get(9).is_some_and(|i| inodes.contains(&i.to_string()))
            {
                pooled += 1;
            }
        }
    }
    Ok((all, pooled))
}

fn emulator_port(url: &str) -> Result<u16> {
    url.rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no port in the emulator's address {url}").into())
}

fn proc_rss_kib(pid: u32) -> Result<u64> {
    super::vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status"))?)
}

fn s(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| "a non-UTF-8 path".into())
}
