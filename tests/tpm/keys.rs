//! Keys made by tpm2-tools, by tpm2-openssl and by certassert (as a TSS2 key file or at
//! a persistent handle) pass the conformance suite, and the other tools read and use the
//! keys certassert makes.

use crate::common::conformance::check;
use crate::common::swtpm::Swtpm;
use crate::common::{assert_verifies, public_key_pem, rsa_crate_verify, s, tempdir, write};
use crate::{generate, key_ref, open, provider_public_key, signs_both, spki_of_pem};
use certassert::keyref::KeyRef;
use certassert::{Algorithm, Signer};

#[test]
fn tpm2_tools_persistent_key_passes_the_conformance_suite() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let pem = tpm.tpm2_tools_persistent_key(dir.path(), "0x81000010", "rsa2048", None);
    let signer = open(&key_ref(&tpm, "handle=0x81000010"));
    assert_eq!(
        signer.public_key_der(),
        spki_of_pem(&pem),
        "the key tpm2_readpublic reads"
    );
    assert_eq!(signer.algorithms(), [Algorithm::Rs256, Algorithm::Ps256]);
    check(&signer);

    // One signer, several threads: requests queue for the thread that owns the context.
    let spki = signer.public_key_der().to_vec();
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let (signer, spki) = (&signer, &spki);
            scope.spawn(move || {
                for i in 0..5u8 {
                    let alg = if i % 2 == 0 {
                        Algorithm::Rs256
                    } else {
                        Algorithm::Ps256
                    };
                    let msg = [t, i];
                    let sig = signer.sign(alg, &msg).unwrap();
                    rsa_crate_verify(spki, alg, &msg, &sig).unwrap();
                }
            });
        }
    });
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}

#[test]
fn openssl_tpm2_provider_key_file_passes_the_conformance_suite() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("app.tss2.pem");
    let out = tpm
        .command("openssl")
        .args([
            "genpkey",
            "-provider",
            "tpm2",
            "-algorithm",
            "RSA",
            "-out",
            s(&key),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl genpkey -provider tpm2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
    let provider_spki = provider_public_key(&tpm, &key);

    let signer = open(&key_ref(&tpm, &format!("key={}", key.display())));
    assert_eq!(
        signer.public_key_der(),
        provider_spki,
        "tpm2-openssl's view of the key"
    );
    check(&signer);
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}

#[test]
fn generated_key_file_is_read_and_used_by_openssl_tpm2_provider() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let key = dir.path().join("made.tss2.pem");
    let uri = key_ref(&tpm, &format!("key={}", key.display()));
    let keyref: KeyRef = uri.parse().unwrap();
    let signer = generate(&keyref, 2048, None).unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode");
    }
    check(signer.as_ref());
    let spki = signer.public_key_der().to_vec();
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    // tpm2-openssl reads the file and finds the same public key ...
    assert_eq!(provider_public_key(&tpm, &key), spki);
    // ... and signs with its private key: the signature verifies with our public key.
    let msg = write(dir.path(), "msg", b"signed by tpm2-openssl");
    let sig = dir.path().join("msg.sig");
    let out = tpm
        .command("openssl")
        // `-provider base` (no RSA of its own) so the signature is computed by tpm2's.
        .args(["pkeyutl", "-sign", "-provider", "tpm2", "-provider", "base"])
        .args(["-inkey", s(&key), "-rawin", "-digest", "sha256"])
        .args(["-in", s(&msg), "-out", s(&sig)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl pkeyutl -sign with the provider: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pub_pem = public_key_pem(dir.path(), &spki);
    assert_verifies(
        dir.path(),
        &spki,
        &pub_pem,
        Algorithm::Rs256,
        b"signed by tpm2-openssl",
        &std::fs::read(&sig).unwrap(),
        "tpm2-openssl signature with the certassert-made key",
    );
    tpm.flush_transients(); // tpm2-openssl's own leftovers, if any

    // Never overwritten.
    let again = generate(&keyref, 2048, None).unwrap_err().to_string();
    assert!(again.contains("exists"), "{again}");
}

#[test]
fn generated_persistent_key_signs_and_an_occupied_handle_is_refused() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let keyref: KeyRef = key_ref(&tpm, "handle=0x81000020").parse().unwrap();
    let signer = generate(&keyref, 2048, Some("ignored")).unwrap_or_else(|e| panic!("{e}"));
    signs_both(signer.as_ref(), "generated persistent key");
    let spki = signer.public_key_der().to_vec();
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());

    let pem = dir.path().join("pub.pem");
    tpm.tool(
        "tpm2_readpublic",
        &["-c", "0x81000020", "-f", "pem", "-o", s(&pem)],
    );
    assert_eq!(
        spki_of_pem(&pem),
        spki,
        "tpm2_readpublic sees the key we made"
    );

    let err = generate(&keyref, 2048, None).unwrap_err().to_string();
    assert!(
        err.contains("0x81000020 is occupied") && err.contains("tpm2_evictcontrol"),
        "{err}"
    );
    // The refused attempt left the old key in place and nothing loaded.
    let signer = open(&key_ref(&tpm, "handle=0x81000020"));
    assert_eq!(signer.public_key_der(), spki);
    drop(signer);
    assert_eq!(tpm.transient_handles(), Vec::<String>::new());
}
