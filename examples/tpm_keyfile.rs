//! TPM signing throughput with a `tpm:key=` key file: signatures per second through
//! `TpmSigner`, which loads the key's saved context around each signature and flushes it
//! after (so nothing of ours stays loaded between signatures), and how many transient
//! objects the TPM holds between signatures (`tpm2_getcap handles-transient`, which must
//! be on PATH).
//!
//!     tpm_keyfile TCTI KEY_FILE [SECONDS]
//!     tpm_keyfile swtpm:host=127.0.0.1,port=2321 /tmp/k.tss2.pem 5
//!
//! Make the key file with `certassert key generate --key 'tpm:key=/tmp/k.tss2.pem?tcti=…'`.

use certassert::secret::NoCallbacks;
use certassert::signer::tpm::TpmSigner;
use certassert::{Algorithm, Signer};
use std::time::{Duration, Instant};

fn transient_count(tcti: &str) -> usize {
    let out = std::process::Command::new("tpm2_getcap")
        .arg("handles-transient")
        .env("TPM2TOOLS_TCTI", tcti)
        .output()
        .expect("tpm2_getcap");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tpm_keyfile TCTI KEY_FILE [SECONDS]");
        std::process::exit(2);
    }
    let (tcti, key) = (&args[1], &args[2]);
    let seconds: f64 = args.get(3).map_or(5.0, |s| s.parse().expect("seconds"));
    let uri = format!("tpm:key={key}?tcti={tcti}")
        .parse()
        .expect("key reference");
    let signer = TpmSigner::open(&uri, &NoCallbacks).expect("open the key");
    signer.sign(Algorithm::Rs256, b"warm-up").expect("sign");
    println!(
        "transient objects between signatures: {}",
        transient_count(tcti)
    );
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        signer
            .sign(Algorithm::Rs256, b"header.claims")
            .expect("sign");
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} RS256 signatures in {secs:.2} s: {:.1} signatures/s",
        n as f64 / secs
    );
}
