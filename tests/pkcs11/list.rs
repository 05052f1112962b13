//! `certassert key list` and `key show` on SoftHSM2: every key as a reference that opens
//! it, with its certificate as openssl sees it; without a PIN the public objects stand
//! in for the private keys, with one they show; the JSON shape.

use crate::common::softhsm::SoftHsm;
use crate::common::{openssl_fingerprint, s, tempdir, write};
use crate::{stderr, stdout};
use serde_json::Value;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn key_list_gives_references_that_open_each_key() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    hsm.keypairgen("second", "07", &[]);
    // Without a PIN: both keys, through their public objects; app's certificate.
    let out = hsm.certassert(&["key", "list", "--module", MODULE, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let devices = listing["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{listing}");
    assert!(devices[0]["name"]
        .as_str()
        .unwrap()
        .starts_with("token \"certassert\""));
    assert!(devices[0]["note"].as_str().unwrap().contains("pin-source="));
    let keys = devices[0]["keys"].as_array().unwrap();
    let labels: Vec<&str> = keys.iter().map(|k| k["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["app", "second"], "{listing}");
    for key in keys {
        assert_eq!(key["algorithm"], "RSA");
        assert_eq!(key["bits"], 2048);
        assert_eq!(key["private_key"], false, "no login, no private key: {key}");
    }
    let app = &keys[0];
    assert_eq!(
        app["reference"],
        format!("pkcs11:token=certassert;object=app;id=%01?module-path={MODULE}")
    );
    // The certificate listed is the one on the token, as openssl fingerprints it.
    let dir = tempdir();
    let cert = hsm.read_cert("01", dir.path());
    let (hex, _) = openssl_fingerprint(&cert, "sha1");
    assert_eq!(app["certificate"]["thumbprint"], hex.as_str());
    assert_eq!(keys[1]["certificate"], Value::Null);

    // Each reference, with the PIN added, opens its key: an assertion is made with it.
    for key in keys {
        let reference = format!(
            "{}&pin-source=file:{}",
            key["reference"].as_str().unwrap(),
            s(&hsm.pin_file())
        );
        let out = hsm.certassert(&["key", "show", "--key", &reference]);
        assert!(out.status.success(), "{reference}: {}", stderr(&out));
    }

    // With the PIN, the private keys themselves show.
    let with_pin = format!("pkcs11:token=certassert?{}", hsm.query());
    let out = hsm.certassert(&["key", "list", "--key", &with_pin, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let keys = listing["devices"][0]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listing}");
    assert!(keys.iter().all(|k| k["private_key"] == true), "{listing}");
    assert_eq!(listing["devices"][0]["note"], Value::Null);

    // Text: every reference quoted, ready to paste.
    let out = hsm.certassert(&["key", "list", "--module", MODULE]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "  'pkcs11:token=certassert;object=app;id=%01?module-path={MODULE}'"
        )),
        "{text}"
    );
    assert!(text.contains("certificate CN=app until"), "{text}");
}

#[test]
fn key_show_prints_the_public_key_openssl_reads_and_the_stored_certificate() {
    let hsm = SoftHsm::new(&["--key", "app"]);
    let dir = tempdir();
    let key = hsm.uri("object=app");
    let out = hsm.certassert(&["key", "show", "--key", &key, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["bits"], 2048);
    assert!(!shown["reference"].as_str().unwrap().contains(&hsm.pin()));
    // The PEM is the public half of the certificate stored beside the key.
    let pem = write(
        dir.path(),
        "pub.pem",
        shown["public_key_pem"].as_str().unwrap(),
    );
    let cert = hsm.read_cert("01", dir.path());
    let from_cert = crate::common::openssl(&["x509", "-in", s(&cert), "-noout", "-pubkey"]).stdout;
    let from_show = crate::common::openssl(&["pkey", "-pubin", "-in", s(&pem)]).stdout;
    assert_eq!(from_show, from_cert);
    let (hex, _) = openssl_fingerprint(&cert, "sha1");
    assert_eq!(shown["certificate"]["thumbprint"], hex.as_str());
}

#[test]
fn key_list_needs_a_place_and_refuses_a_key_file() {
    let hsm = SoftHsm::new(&[]);
    let out = hsm.certassert(&["key", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("say where to look: --module"),
        "{}",
        stderr(&out)
    );
    let out = hsm.certassert(&["key", "list", "--key", "app.key.pem"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a key file, which holds one key"),
        "{}",
        stderr(&out)
    );
    let out = hsm.certassert(&["key", "list", "--module", "/nonexistent/module.so"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/module.so"),
        "{}",
        stderr(&out)
    );
}
