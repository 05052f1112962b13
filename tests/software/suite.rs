//! The conformance suite can fail: its verifiers refuse a PSS salt other than 32, and
//! it rejects a backend that gets the padding wrong.

use crate::common::conformance::check;
use crate::common::{self, openssl, s, tempdir, write};
use crate::{genrsa, openssl_spki};
use certassert::signer::{self, generate_software_key, SoftwareSigner};
use certassert::{Algorithm, Signer};

/// The suite's verifiers are strict: a PSS signature with any salt length other than 32
/// is refused by both, one with 32 is accepted, and openssl's own RS256 is accepted.
#[test]
fn conformance_verifiers_are_strict_about_the_pss_salt() {
    let dir = tempdir();
    let d = dir.path();
    let key = genrsa(d, "k.pem", 2048);
    let spki = openssl_spki(&key, &[]);
    let pub_pem = common::public_key_pem(d, &spki);
    let msg = write(d, "m", b"header.payload");
    let sign = |name: &str, opts: &[&str]| {
        let sig = d.join(name);
        let mut args = vec!["dgst", "-sha256", "-sign", s(&key), "-out", s(&sig)];
        args.extend_from_slice(opts);
        args.push(s(&msg));
        openssl(&args);
        std::fs::read(&sig).unwrap()
    };
    let rs = sign("rs.sig", &[]);
    common::assert_verifies(
        d,
        &spki,
        &pub_pem,
        Algorithm::Rs256,
        b"header.payload",
        &rs,
        "RS256",
    );
    let pss = |len: &str| {
        let saltlen = format!("rsa_pss_saltlen:{len}");
        sign(
            &format!("ps-{len}.sig"),
            &["-sigopt", "rsa_padding_mode:pss", "-sigopt", &saltlen],
        )
    };
    let ok = pss("32");
    common::assert_verifies(
        d,
        &spki,
        &pub_pem,
        Algorithm::Ps256,
        b"header.payload",
        &ok,
        "salt 32",
    );
    for len in ["20", "0", "max", "33"] {
        let sig = pss(len);
        common::assert_rejected(
            d,
            &spki,
            &pub_pem,
            Algorithm::Ps256,
            b"header.payload",
            &sig,
            &format!("salt {len}"),
        );
    }
}

/// A broken backend: signs every PS256 request as RS256 and vice versa.
#[derive(Debug)]
struct Swapped(SoftwareSigner);

impl Signer for Swapped {
    fn algorithms(&self) -> &[Algorithm] {
        self.0.algorithms()
    }
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, signer::Error> {
        let other = match alg {
            Algorithm::Rs256 => Algorithm::Ps256,
            Algorithm::Ps256 => Algorithm::Rs256,
        };
        self.0.sign(other, message)
    }
    fn public_key_der(&self) -> &[u8] {
        self.0.public_key_der()
    }
}

/// The suite fails a backend that gets the padding wrong.
#[test]
#[should_panic(expected = "rejects the RS256 signature")]
fn conformance_suite_fails_a_broken_backend() {
    let pkcs8 = generate_software_key(2048).expect("generate");
    check(&Swapped(SoftwareSigner::from_pkcs8_der(&pkcs8).unwrap()));
}
