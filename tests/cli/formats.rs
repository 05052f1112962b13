//! `--format text|json` on every reporting command: the JSON parses, has the keys each
//! command's --help documents, and agrees with openssl; `--json` stays an alias.

use crate::{ok, openssl, run, setup};
use serde_json::Value;

fn json(dir: &std::path::Path, args: &[&str]) -> Value {
    let out = run(dir, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[test]
fn cert_show_json_has_the_documented_keys_and_json_is_an_alias() {
    let (_d, p) = setup();
    let v = json(&p, &["cert", "show", "--cert", "c.pem", "--format", "json"]);
    assert_eq!(
        keys(&v),
        [
            "ca",
            "chain_length",
            "issuer",
            "key",
            "key_matches",
            "key_usage",
            "not_after",
            "not_before",
            "serial",
            "subject",
            "thumbprint_sha1",
            "valid",
            "x5t",
            "x5t#S256"
        ]
    );
    assert_eq!(v, json(&p, &["cert", "show", "--cert", "c.pem", "--json"]));
    let serial =
        String::from_utf8(openssl(&p, &["x509", "-in", "c.pem", "-noout", "-serial"]).stdout)
            .unwrap();
    assert_eq!(
        format!("serial={}", v["serial"].as_str().unwrap()),
        serial.trim()
    );
}

#[test]
fn doctor_json_lists_each_check() {
    let (_d, p) = setup();
    let out = run(
        &p,
        &[
            "doctor", "--key", "k.pem", "--cert", "c.pem", "--format", "json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys(&v), ["checks", "ok"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(out.status.code(), Some(0));
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() >= 4, "{v}");
    for check in checks {
        assert_eq!(keys(check), ["check", "detail", "status"]);
        assert!(
            ["ok", "info", "warn", "fail"].contains(&check["status"].as_str().unwrap()),
            "{check}"
        );
    }
    let text = ok(&p, &["doctor", "--key", "k.pem", "--cert", "c.pem"]);
    assert_eq!(
        text.lines().count(),
        checks.len(),
        "the same checks as the text:\n{text}"
    );

    // A key that does not match the certificate: ok false, exit 1, a fail check.
    ok(&p, &["key", "generate", "--key", "other.pem"]);
    let out = run(
        &p,
        &[
            "doctor",
            "--key",
            "other.pem",
            "--cert",
            "c.pem",
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "fail"),
        "{v}"
    );
}

#[test]
fn inspect_and_key_show_json() {
    let (_d, p) = setup();
    let jwt = ok(
        &p,
        &[
            "assertion",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--tenant",
            "t",
            "--client-id",
            "c",
        ],
    );
    let v = json(&p, &["inspect", "--format", "json", jwt.trim()]);
    assert_eq!(keys(&v), ["claims", "findings", "header"]);
    assert_eq!(v["header"]["alg"], "RS256");

    let v = json(&p, &["key", "show", "--key", "k.pem", "--format", "json"]);
    assert_eq!(
        keys(&v),
        [
            "algorithm",
            "bits",
            "certificate",
            "public_key_pem",
            "public_key_sha256",
            "reference"
        ]
    );
    assert_eq!(v["bits"], 2048);
    assert_eq!(
        v["certificate"],
        Value::Null,
        "a PEM key file with no certificate in it"
    );
    let ours = v["public_key_pem"].as_str().unwrap();
    let theirs =
        String::from_utf8(openssl(&p, &["pkey", "-in", "k.pem", "-pubout"]).stdout).unwrap();
    assert_eq!(ours.trim(), theirs.trim());
}
