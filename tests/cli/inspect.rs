//! `inspect` on assertions made at test time (piped in, checked against the right and the
//! wrong certificate). Its report on a fixed hand-made JWT, and its errors, are trycmd
//! cases: `tests/cmd/args/inspect-*`.

use super::*;
use std::process::Stdio;

#[test]
fn inspect_flags_hand_made_mistakes_and_passes_ours() {
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
            TENANT,
            "--client-id",
            CLIENT,
        ],
    );
    let mut child = certassert(&p)
        .args([
            "inspect",
            "--cert",
            "c.pem",
            "--client-id",
            CLIENT,
            "--aud",
            AUD,
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jwt.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok: no problems found"));
    let r = assertion_redactions(&p, &jwt, &[("", "c.pem")]);
    snapshot(&text, "inspect-rs256-ok.stdout", &r);

    // The seed question's hand-built assertion: no x5t, no aud.
    let seed = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiIyZjg3N2RhYS1iNmY1LTQyYTMtODQzMC1hY2YyMzhiMjM0ZTEiLCJzdWIiOiIyZjg3N2RhYS1iNmY1LTQyYTMtODQzMC1hY2YyMzhiMjM0ZTEiLCJuYmYiOjE1NzA4MDM2NTEsImV4cCI6MTU3MDgwNzI1MSwiaWF0IjoxNTcwODAzNjUxLCJqdGkiOiIzQkM4Nzk4MDMxMEM0OTBBNjJBQTVGNjM0M0Q0QzU1REY4RUJCQTg1IiwidHlwIjoiSldUIn0.t8lArFodXkHO9Ps9O3q7VH55pRl6NtcIkEbSz-hDL0V6I7iWi4N-1VBNM_nFUHkNhBoGaskV0eQtqMXYildb7oEr75KgbcjacZy2OI319uPwztHp9jVxjsBhB_rKXND4M6URr23IWkLwFb2008vq_fY4trLUZR9ILZOE0Dr_MdaQmrt8fU9mYNkSEnRsiXKuqcS97oBfo6-9MuDbkcNuAOxZnsmbYvutk1LeabFywbc4qO3dgb8PtfqMAiYxgYTzg72tAw-ncq6uRXgG5XoxJVOExCyn5CXV9lSsE33_oekOEfRU5CyC0IvtSLhSoZ7LKtSMJ22ZXiyFqvddenJC8w";
    // Its text report is the trycmd case tests/cmd/args/inspect-seed.
    let out = run(&p, &["inspect", seed]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&run(&p, &["inspect", "--json", seed]).stdout).unwrap();
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["aadsts"] == 5002723));

    // Our own assertion checked against the wrong certificate: x5t and signature both flagged.
    ok(&p, &["key", "generate", "--key", "k2.pem"]);
    ok(
        &p,
        &[
            "cert",
            "create",
            "--key",
            "k2.pem",
            "--subject",
            "CN=other",
            "--out",
            "c2.pem",
        ],
    );
    let out = run(&p, &["inspect", "--cert", "c2.pem", jwt.trim()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("does not name the given certificate"),
        "{text}"
    );
    assert!(text.contains("signature does not verify"), "{text}");
    snapshot(
        &text,
        "inspect-rs256-wrong-cert.stdout",
        &assertion_redactions(&p, &jwt, &[("", "c.pem"), ("OTHER_", "c2.pem")]),
    );
    // `inspect not-a-jwt` is the trycmd case tests/cmd/args/inspect-not-a-jwt.
}
