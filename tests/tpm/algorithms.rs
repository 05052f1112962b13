//! Which algorithms a TPM key offers: PS256 computed on the host for sign+decrypt keys
//! (strict 32-byte salt), refused for sign-only keys, and RS256 only for a key whose
//! scheme is fixed to RSASSA-SHA256.

use crate::common::swtpm::Swtpm;
use crate::common::{
    self, assert_verifies, openssl_output, public_key_pem, rsa_crate_verify, tempdir,
};
use crate::{key_ref, open, signs_both};
use certassert::signer::{self, tpm::TpmError};
use certassert::{Algorithm, Signer};

#[test]
fn ps256_host_side_fallback_and_sign_only_keys() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let d = dir.path();
    // Sign + decrypt (tpm2_create's default): the fallback gives strict-salt PS256.
    tpm.tpm2_tools_persistent_key(d, "0x81000010", "rsa2048", None);
    let signer = open(&key_ref(&tpm, "handle=0x81000010"));
    let spki = signer.public_key_der().to_vec();
    let pub_pem = public_key_pem(d, &spki);
    let msg = common::random_bytes(1000);
    let a = signer.sign_ps256_on_host(&msg).unwrap();
    let b = signer.sign_ps256_on_host(&msg).unwrap();
    assert_ne!(a, b, "fresh salt each time");
    for sig in [&a, &b] {
        assert_eq!(sig.len(), 256);
        assert_verifies(
            d,
            &spki,
            &pub_pem,
            Algorithm::Ps256,
            &msg,
            sig,
            "host-side PSS",
        );
        common::assert_rejected(
            d,
            &spki,
            &pub_pem,
            Algorithm::Ps256,
            b"other",
            sig,
            "host-side PSS, other message",
        );
    }
    drop(signer);

    // Sign only: TPM2_Sign works, the fallback is refused with the documented message.
    tpm.tpm2_tools_persistent_key(
        d,
        "0x81000011",
        "rsa2048",
        Some("sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"),
    );
    let signer = open(&key_ref(&tpm, "handle=0x81000011"));
    signs_both(&signer, "sign-only key");
    let err = signer.sign_ps256_on_host(b"m").unwrap_err();
    assert!(
        matches!(err, signer::Error::Tpm(TpmError::NoRfc7518Ps256 { .. })),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("cannot produce RFC 7518 PS256; use RS256"));
    drop(signer);

    // A key whose scheme is fixed to RSASSA-SHA256 offers RS256 only.
    tpm.tpm2_tools_persistent_key(
        d,
        "0x81000012",
        "rsa2048:rsassa-sha256",
        Some("sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"),
    );
    let signer = open(&key_ref(&tpm, "handle=0x81000012"));
    assert_eq!(signer.algorithms(), [Algorithm::Rs256]);
    let sig = signer.sign(Algorithm::Rs256, b"m").unwrap();
    rsa_crate_verify(signer.public_key_der(), Algorithm::Rs256, b"m", &sig).unwrap();
    let err = signer.sign(Algorithm::Ps256, b"m").unwrap_err().to_string();
    assert!(err.contains("cannot sign PS256"), "{err}");
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
    let _ = openssl_output(&["version"]);
}
