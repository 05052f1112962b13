//! JWTs: the strict compact-JWS decoder and `inspect`'s lint, checked against a
//! certificate, a client id and an audience (so the signature, thumbprint and claim
//! checks all run), and the rendered report.
#![no_main]

use certassert::cert::{create_self_signed, Certificate};
use certassert::inspect::{self, Expect};
use certassert::signer::SoftwareSigner;
use certassert::{jws, Algorithm};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn certificate() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| {
        let pkcs8 = certassert::signer::generate_software_key(2048).expect("keygen");
        let signer = SoftwareSigner::from_pkcs8_der(&pkcs8).expect("signer");
        create_self_signed(&signer, Algorithm::Ps256, "CN=fuzz", 365, 1_700_000_000)
            .expect("certificate")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decoded) = jws::decode(text) {
        for value in decoded.header.values().chain(decoded.claims.values()) {
            let _ = jws::kind(value);
        }
    }
    let expect = Expect {
        now: 1_700_000_000,
        cert: Some(certificate()),
        client_id: Some("00000000-0000-0000-0000-000000000001"),
        audience: Some("https://login.microsoftonline.com/tenant/oauth2/v2.0/token"),
    };
    for expect in [Expect::default(), expect] {
        match inspect::inspect(text, &expect) {
            Ok(report) => {
                let _ = (report.has_errors(), inspect::render(&report));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
