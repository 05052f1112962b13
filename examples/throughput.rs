//! Client assertions per second with a 2048-bit software key: the number `ci/bench.sh`
//! compares with `openssl speed rsa2048`.
//!
//! ```text
//! cargo run --release --example throughput -- [SECONDS] [KEY_FILE]
//! ```
//!
//! Builds complete assertions (header with x5t / x5t#S256, claims with a fresh jti,
//! signature) in a loop on one thread for SECONDS (default 3, after a 0.5 s warm-up),
//! with RS256 and then PS256, and prints one `certassert ALG assertions/s: N` line for
//! each. KEY_FILE is any key file certassert reads; without it a 2048-bit key is
//! generated.

use certassert::assertion::{self, Params};
use certassert::cert::{self, Certificate};
use certassert::encoding::unix_now;
use certassert::entra::{self, EndpointVersion};
use certassert::signer::{self, generate_software_key, SoftwareSigner};
use certassert::{Algorithm, Signer};
use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const WARM_UP: Duration = Duration::from_millis(500);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

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
    let mut args = std::env::args().skip(1);
    let seconds: f64 = match args.next() {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("SECONDS must be a positive number, not {s:?}"))?,
        None => 3.0,
    };
    let duration = Duration::from_secs_f64(seconds);

    let signer = match args.next() {
        Some(path) => SoftwareSigner::from_file(Path::new(&path), None)?,
        None => SoftwareSigner::from_pkcs8_der(&generate_software_key(2048)?)?,
    };
    let now = unix_now();
    let certificate =
        cert::create_self_signed(&signer, Algorithm::Rs256, "CN=certassert-bench", 30, now)?;
    let chain = [certificate];
    let audience = entra::endpoint(
        entra::AUTHORITY_PUBLIC,
        Some("contoso.onmicrosoft.com"),
        None,
        EndpointVersion::V2,
    )?;

    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        let params = Params {
            client_id: "11111111-2222-3333-4444-555555555555",
            audience: &audience,
            alg,
            lifetime: assertion::DEFAULT_LIFETIME,
            x5c: false,
        };
        check_one(&signer, &chain, &params, now)?;
        // Untimed warm-up (CPU clock, caches), so the first algorithm is not penalised.
        measure(&signer, &chain, &params, now, WARM_UP.min(duration))?;
        let rate = measure(&signer, &chain, &params, now, duration)?;
        println!("certassert {alg} assertions/s: {rate:.1}");
        // The same key signing a JWS-sized message through the Signer alone: the gap to
        // the line above is what the assertion layer (JSON, base64url, jti) costs.
        let message = [b'x'; 400];
        let start = Instant::now();
        let mut count: u64 = 0;
        while start.elapsed() < duration {
            black_box(signer.sign(alg, black_box(&message))?);
            count += 1;
        }
        let raw = count as f64 / start.elapsed().as_secs_f64();
        println!("certassert {alg} signer-only signs/s: {raw:.1}");
    }
    Ok(())
}

/// Build one assertion and verify its signature, so the loop measures real work.
fn check_one(
    signer: &dyn Signer,
    chain: &[Certificate],
    params: &Params<'_>,
    now: i64,
) -> Result<()> {
    let jwt = assertion::build(signer, chain, params, now)?;
    let (input, sig) = jwt.rsplit_once('.').ok_or("assertion is not a JWS")?;
    let sig = certassert::encoding::b64url_decode(sig).ok_or("signature is not base64url")?;
    signer::verify(signer.public_key_der(), params.alg, input.as_bytes(), &sig)?;
    Ok(())
}

/// Assertions per second on this thread over `duration`.
fn measure(
    signer: &dyn Signer,
    chain: &[Certificate],
    params: &Params<'_>,
    now: i64,
    duration: Duration,
) -> Result<f64> {
    let start = Instant::now();
    let mut count: u64 = 0;
    loop {
        black_box(assertion::build(signer, chain, black_box(params), now)?);
        count += 1;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok(count as f64 / elapsed.as_secs_f64());
        }
    }
}
