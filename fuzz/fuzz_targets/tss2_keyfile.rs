//! TSS2 PRIVATE KEY files (the tpm2-tss-engine / tpm2-openssl format), PEM or DER;
//! what parses is written back and must parse to the same key.
#![no_main]

use certassert::signer::tpm::keyfile::TssKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TssKey::from_der(data).map_err(|e| e.to_string());
    match TssKey::from_file_bytes(data) {
        Ok(key) => {
            let der = key.to_der();
            let again =
                TssKey::from_der(&der).expect("a key this parser read writes back readable");
            assert_eq!(again.public_area(), key.public_area());
            assert_eq!(again.private_area(), key.private_area());
            let _ = key.to_pem();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
