//! `certassert key list --key tpm:` lists the persistent keys as `tpm:handle=` references
//! that open them, says which cannot sign, and `key show` prints the public key the TPM
//! holds (as tpm2_readpublic sees it).

use crate::common::swtpm::Swtpm;
use crate::common::{openssl, s, tempdir};
use crate::{certassert_cli, cli_ok};
use serde_json::Value;

#[test]
fn persistent_keys_are_listed_as_references_that_open_them() {
    let tpm = Swtpm::start();
    let dir = tempdir();
    let d = dir.path();
    // A storage primary persisted by tpm2-tools (cannot sign), and a signing key by certassert.
    tpm.tool(
        "tpm2_createprimary",
        &["-C", "o", "-c", s(&d.join("p.ctx")), "-Q"],
    );
    tpm.tool(
        "tpm2_evictcontrol",
        &["-C", "o", "-c", s(&d.join("p.ctx")), "0x81000001"],
    );
    tpm.flush_transients();
    cli_ok(
        &tpm,
        d,
        &["key", "generate", "--key", "tpm:handle=0x81000002"],
    );

    let listing: Value = serde_json::from_str(&cli_ok(
        &tpm,
        d,
        &["key", "list", "--key", "tpm:", "--format", "json"],
    ))
    .unwrap();
    let keys = listing["devices"][0]["keys"].as_array().unwrap();
    let references: Vec<&str> = keys
        .iter()
        .map(|k| k["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        references,
        ["tpm:handle=0x81000001", "tpm:handle=0x81000002"],
        "{listing}"
    );
    assert!(keys[0]["unusable"]
        .as_str()
        .unwrap()
        .contains("not a signing key"));
    assert_eq!(keys[1]["unusable"], Value::Null);
    assert_eq!(keys[1]["bits"], 2048);
    assert_eq!(
        tpm.transient_handles(),
        Vec::<String>::new(),
        "listing leaves nothing loaded"
    );

    // The listed signing key opens: key show's public key is the one tpm2_readpublic reads.
    let shown: Value = serde_json::from_str(&cli_ok(
        &tpm,
        d,
        &["key", "show", "--key", references[1], "--format", "json"],
    ))
    .unwrap();
    let pem = crate::common::write(d, "shown.pem", shown["public_key_pem"].as_str().unwrap());
    let readpublic = d.join("readpublic.pem");
    tpm.tool(
        "tpm2_readpublic",
        &["-c", "0x81000002", "-f", "pem", "-o", s(&readpublic), "-Q"],
    );
    let ours = openssl(&["pkey", "-pubin", "-in", s(&pem)]).stdout;
    let theirs = openssl(&["pkey", "-pubin", "-in", s(&readpublic)]).stdout;
    assert_eq!(ours, theirs);
    assert_eq!(shown["certificate"], Value::Null);

    // An explicit TCTI is kept in the references, in the form the README writes it.
    let out = certassert_cli(
        &tpm,
        d,
        &["key", "list", "--key", &format!("tpm:?tcti={}", tpm.tcti())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("'tpm:handle=0x81000002?tcti={}'", tpm.tcti())),
        "{text}"
    );
}
