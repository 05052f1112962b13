//! PKCS#11 signatures per second, for `ci/bench.sh`: certassert's `Pkcs11Signer` (pool,
//! mechanism choice, login handling) against a raw cryptoki loop that reuses one session
//! per thread — the floor any wrapper pays.
//!
//! ```text
//! cargo run --release --example pkcs11_bench -- (certassert|bounded|raw) THREADS SECONDS URI
//! ```
//!
//! `bounded` is `certassert` opened as the CLI opens keys (`signer::open`), with each
//! signature on its own thread under the device timeout; against `certassert` it shows
//! what bounding device calls costs.
//!
//! URI is a `pkcs11:` reference with `module-path=` and `pin-source=file:`; SOFTHSM2_CONF
//! must point at the token directory. Each thread signs a 400-byte message with RS256
//! (CKM_SHA256_RSA_PKCS) for SECONDS after a 0.5 s warm-up; the output is one line
//! `MODE THREADS threads signs/s: N`. One mode per process, so the two never share a
//! module context.

use certassert::keyref::Pkcs11Uri;
use certassert::secret::NoCallbacks;
use certassert::signer::pkcs11::Pkcs11Signer;
use certassert::{Algorithm, Signer};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const MESSAGE: [u8; 400] = [b'x'; 400];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, threads, seconds, uri] = args.as_slice() else {
        return Err("usage: pkcs11_bench (certassert|bounded|raw) THREADS SECONDS URI".into());
    };
    let threads: usize = threads.parse().map_err(|_| "THREADS must be a number")?;
    let duration =
        Duration::from_secs_f64(seconds.parse().map_err(|_| "SECONDS must be a number")?);
    let rate = match mode.as_str() {
        "certassert" => {
            let signer = Pkcs11Signer::open(&uri.parse()?, &NoCallbacks)?;
            let sig = signer.sign(Algorithm::Rs256, &MESSAGE)?;
            certassert::signer::verify(signer.public_key_der(), Algorithm::Rs256, &MESSAGE, &sig)?;
            parallel(threads, duration, || {
                black_box(
                    signer
                        .sign(Algorithm::Rs256, black_box(&MESSAGE))
                        .expect("sign"),
                );
            })
        }
        "bounded" => {
            let signer = certassert::signer::open(&uri.parse()?, &NoCallbacks)?;
            signer.sign(Algorithm::Rs256, &MESSAGE)?;
            parallel(threads, duration, || {
                black_box(
                    signer
                        .sign(Algorithm::Rs256, black_box(&MESSAGE))
                        .expect("sign"),
                );
            })
        }
        "raw" => raw(uri, threads, duration)?,
        other => return Err(format!("unknown mode {other}: certassert, bounded or raw").into()),
    };
    println!("{mode} {threads} threads signs/s: {rate:.1}");
    Ok(())
}

/// Run `op` on `threads` threads for `duration` (after a warm-up); total ops per second.
fn parallel(threads: usize, duration: Duration, op: impl Fn() + Sync) -> f64 {
    let count = AtomicU64::new(0);
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|scope| {
        let start = Instant::now();
        let warm = Duration::from_millis(500);
        let (count, op) = (&count, &op);
        for _ in 0..threads {
            scope.spawn(move || {
                while start.elapsed() < warm {
                    op();
                }
                let mut n = 0;
                while start.elapsed() < warm + duration {
                    op();
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            });
        }
        elapsed = duration;
    });
    count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// The plain cryptoki loop: one session per thread opened once, C_Sign with
/// CKM_SHA256_RSA_PKCS on the key found by label.
fn raw(uri: &str, threads: usize, duration: Duration) -> Result<f64> {
    let parsed = Pkcs11Uri::parse(uri)?;
    let module = parsed.module_path.ok_or("the URI needs module-path=")?;
    let pin = match parsed.pin {
        Some(source) => source.read(
            &certassert::secret::SecretRequest::new(certassert::secret::SecretKind::Pin, "PIN"),
            &NoCallbacks,
        )?,
        None => return Err("the URI needs pin-source=".into()),
    };
    let label = parsed.object.ok_or("the URI needs object=")?;
    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| Some(i.label().trim_end()) == parsed.token.as_deref())
        })
        .ok_or("no token with that label")?;
    let keeper = ctx.open_ro_session(slot)?;
    keeper.login(UserType::User, Some(&AuthPin::from(pin.expose())))?;
    let key = *keeper
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.into_bytes()),
        ])?
        .first()
        .ok_or("no key with that label")?;
    let sessions: Vec<_> = (0..threads)
        .map(|_| ctx.open_ro_session(slot).map(std::sync::Mutex::new))
        .collect::<std::result::Result<_, _>>()?;
    let next = AtomicU64::new(0);
    thread_local!(static MINE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) });
    Ok(parallel(threads, duration, || {
        // Each thread takes its own session once; the lock is never contended.
        let i = MINE.with(|m| {
            m.get().unwrap_or_else(|| {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                m.set(Some(i));
                i
            })
        });
        let session = sessions[i].lock().expect("session lock");
        black_box(
            session
                .sign(&Mechanism::Sha256RsaPkcs, key, black_box(&MESSAGE))
                .expect("sign"),
        );
    }))
}
