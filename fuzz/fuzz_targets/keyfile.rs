//! Key files through the public loader (`SoftwareSigner::from_file`): PEM or DER,
//! PKCS#8, PKCS#1, encrypted PKCS#8, PKCS#12. The loader takes a path, so each input is
//! written to one scratch file per process (in /dev/shm when there is one). Tried with
//! no password (the empty one is tried) and with the seeds' password `fuzz`. The PEM
//! reader is fed the same bytes directly.
#![no_main]

use certassert::public_key::pem;
use certassert::secret::SecretSource;
use certassert::signer::SoftwareSigner;
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
        dir.join(format!("certassert-fuzz-keyfile-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = pem::is_pem(data);
    if let Ok(blocks) = pem::parse(data) {
        for block in &blocks {
            let _ = block.is_legacy_encrypted();
        }
    }
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    let password = SecretSource::Value("fuzz".into());
    for source in [None, Some(&password)] {
        match SoftwareSigner::from_file(path, source) {
            Ok(signer) => {
                let _ = format!("{signer:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
