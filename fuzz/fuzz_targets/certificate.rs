//! Certificates: `Certificate::from_der` and every accessor the CLI prints, the raw
//! field readers in `public_key`, and chain loading from PEM or DER bytes (the loader
//! takes a path: one scratch file per process, in /dev/shm when there is one).
#![no_main]

use certassert::cert::Certificate;
use certassert::public_key;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("certassert-fuzz-cert-{}", std::process::id()))
    })
}

fn exercise(cert: &Certificate) {
    let _ = (
        cert.key_usage(),
        cert.to_pem(),
        cert.thumbprint_hex(),
        cert.x5t(),
        cert.x5t_s256(),
        cert.rsa_bits(),
        cert.subject(),
        cert.issuer(),
        cert.serial_hex(),
        cert.not_before(),
        cert.not_after(),
        cert.is_ca(),
        cert.is_self_issued(),
        cert.check_validity(1_700_000_000)
            .map_err(|e| e.to_string()),
        cert.manifest_entry(Some("fuzz")),
    );
}

fuzz_target!(|data: &[u8]| {
    let _ = public_key::certificate_spki(data);
    let _ = public_key::certificate_fields(data).is_ok();
    match Certificate::from_der(data.to_vec()) {
        Ok(cert) => exercise(&cert),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    match Certificate::load_chain(path) {
        Ok(chain) => chain.iter().for_each(exercise),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
