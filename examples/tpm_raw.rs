//! TPM signing throughput: certassert's `TpmSigner` against a bare tss-esapi loop with
//! the key already loaded (the least any program could do per signature: hash, TPM2_Sign
//! with a null ticket). Each round interleaves the two in half-second slices (so both
//! see the same background load on a shared machine) and sums each side's signatures
//! over its slices; the best round of each is printed, and the median over rounds of
//! certassert ÷ raw within a round (the fair ratio: both figures saw the same load).
//!
//!     tpm_raw TCTI HANDLE [SECONDS_PER_ROUND] [ROUNDS]
//!     tpm_raw swtpm:host=127.0.0.1,port=2321 0x81000001 3 2
//!
//! A raw TPM (swtpm) serves one connection at a time, so each side connects, measures
//! and disconnects in turn.

use certassert::signer::tpm::TpmSigner;
use certassert::{Algorithm, Signer};
use std::time::{Duration, Instant};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Digest, HashScheme, HashcheckTicket, SignatureScheme};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::Context;

/// A JWS signing input of the size certassert produces.
const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsIng1dCI6IlFBbzV6Q2V1b3dpU0NtbUJ3RHlzRnhJT1VBMCJ9.eyJhdWQiOiJodHRwczovL2xvZ2luLm1pY3Jvc29mdG9ubGluZS5jb20vY29udG9zby5vbm1pY3Jvc29mdC5jb20vb2F1dGgyL3YyLjAvdG9rZW4iLCJleHAiOjE3MDAwMDA2MDAsImlhdCI6MTcwMDAwMDAwMCwiaXNzIjoiMmY4NzdkYWEtYjZmNS00MmEzLTg0MzAtYWNmMjM4YjIzNGUxIiwianRpIjoiNmQ4ZTFmNGMtM2I1YS00YzdlLTk0ZjEtYjYzYzQ1ZTNhOWQxIiwibmJmIjoxNzAwMDAwMDAwLCJzdWIiOiIyZjg3N2RhYS1iNmY1LTQyYTMtODQzMC1hY2YyMzhiMjM0ZTEifQ";

/// Signatures done and seconds spent running `op` for about `seconds`.
fn run(seconds: f64, mut op: impl FnMut()) -> (u64, f64) {
    op(); // warm up (and leave connection set-up out of the timing)
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        op();
        n += 1;
    }
    (n, start.elapsed().as_secs_f64())
}

fn raw(tcti: &str, handle: u32, alg: Algorithm, seconds: f64) -> (u64, f64) {
    std::env::set_var("TSS2_LOG", "all+none");
    let mut ctx = Context::new(tcti.parse().expect("TCTI")).expect("connect");
    let object = ctx
        .execute_without_session(|c| {
            c.tr_from_tpm_public(TpmHandle::Persistent(PersistentTpmHandle::new(handle)?))
        })
        .expect("persistent key");
    let key = KeyHandle::from(object);
    ctx.set_sessions((Some(AuthSession::Password), None, None));
    let hash_scheme = HashScheme::new(HashingAlgorithm::Sha256);
    let scheme = match alg {
        Algorithm::Rs256 => SignatureScheme::RsaSsa { hash_scheme },
        Algorithm::Ps256 => SignatureScheme::RsaPss { hash_scheme },
    };
    run(seconds, || {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, MESSAGE);
        let digest = Digest::try_from(d.as_ref()).unwrap();
        let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .unwrap();
        ctx.sign(key, digest, scheme, ticket).expect("TPM2_Sign");
    })
}

fn certassert(tcti: &str, handle: u32, alg: Algorithm, seconds: f64) -> (u64, f64) {
    let uri = format!("tpm:handle={handle:#x}?tcti={tcti}")
        .parse()
        .expect("a tpm: reference");
    let signer = TpmSigner::open(&uri, &certassert::secret::NoCallbacks).expect("open");
    run(seconds, || {
        signer.sign(alg, MESSAGE).expect("sign");
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tpm_raw TCTI HANDLE [SECONDS_PER_ROUND] [ROUNDS]");
        std::process::exit(2);
    }
    let tcti = &args[1];
    let handle = u32::from_str_radix(args[2].trim_start_matches("0x"), 16).expect("hex handle");
    let seconds: f64 = args.get(3).map_or(3.0, |s| s.parse().expect("seconds"));
    let rounds: u32 = args.get(4).map_or(2, |s| s.parse().expect("rounds"));
    for alg in [Algorithm::Rs256, Algorithm::Ps256] {
        let (mut best_raw, mut best_ours) = (0f64, 0f64);
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            const SLICE: f64 = 0.5;
            let slices = (seconds / SLICE).ceil().max(1.0) as u32;
            let (mut raw_n, mut raw_t, mut our_n, mut our_t) = (0, 0.0, 0, 0.0);
            for _ in 0..slices {
                let (n, t) = raw(tcti, handle, alg, SLICE);
                raw_n += n;
                raw_t += t;
                let (n, t) = certassert(tcti, handle, alg, SLICE);
                our_n += n;
                our_t += t;
            }
            let (r, o) = (raw_n as f64 / raw_t, our_n as f64 / our_t);
            eprintln!("[{round}/{rounds}] {alg}: raw {r:.1}/s, certassert {o:.1}/s ({slices} interleaved slices each)");
            ratios.push(o / r);
            best_raw = best_raw.max(r);
            best_ours = best_ours.max(o);
        }
        println!("raw tss-esapi {alg} signatures/s: {best_raw:.1}");
        println!("certassert {alg} signatures/s: {best_ours:.1}");
        // Each round's two figures saw the same load; compare within rounds.
        ratios.sort_by(f64::total_cmp);
        let median = if ratios.len() % 2 == 1 {
            ratios[ratios.len() / 2]
        } else {
            (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0
        };
        println!("certassert/raw {alg} ratio (median of rounds): {median:.2}");
    }
}
