//! What `token` says on stderr while it works: the retry and its wait by default, the
//! endpoint, attempts and cache with `-v` — and never the token, even at the most verbose
//! setting (ureq dumps raw bytes at trace level; certassert keeps them out).

use crate::common::emulator::{certassert, AppFiles, ChildEmulator};
use crate::common::{s, tempdir};
use crate::{CLIENT, GRAPH, TENANT};

fn token_cmd(app: &AppFiles, url: &str, cache: &std::path::Path) -> std::process::Command {
    let mut cmd = certassert(cache);
    cmd.arg("token")
        .args(app.flags(TENANT, url))
        .args(["--scope", GRAPH]);
    cmd.env_remove("CERTASSERT_LOG").env_remove("RUST_LOG");
    cmd
}

fn ok(cmd: &mut std::process::Command) -> (String, String) {
    let out = cmd.output().expect("certassert runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// Any 8 characters of `secret` in a row, anywhere in `text` (a hex dump shows 16 bytes
/// a line, so a whole-token search would miss a leak).
fn shows_part_of(text: &str, secret: &str) -> Option<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .find(|window| text.contains(window.as_str()))
}

#[test]
fn a_retry_is_said_by_default_and_the_attempts_with_v() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--fault", "429"]);
    let cache = dir.path().join("cache");
    let (token, said) = ok(&mut token_cmd(&app, &emu.url, &cache));
    let expected = format!(
        "HTTP 429 from {}/{TENANT}/oauth2/v2.0/token, retrying in 1 s (attempt 2 of 3)",
        emu.url
    );
    assert_eq!(said.trim_end(), expected, "default stderr");
    assert!(shows_part_of(&said, token.trim()).is_none());

    // -v: the POST, both attempts, the status, then a cache hit on the next run.
    let (_, said) = ok(token_cmd(&app, &emu.url, &cache).args(["-v", "--no-cache"]));
    for needed in [
        "opened the key",
        "signed a client assertion",
        "POST token request",
        "attempt=1",
        "status=200",
    ] {
        assert!(said.contains(needed), "-v lacks {needed:?}:\n{said}");
    }
    let (_, said) = ok(token_cmd(&app, &emu.url, &cache).arg("-v"));
    assert!(said.contains("token cache hit"), "{said}");
}

#[test]
fn no_token_or_assertion_in_the_most_verbose_output() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let cache = dir.path().join("cache");
    for setting in [&["-vvv"][..], &["-vv"], &["-v"]] {
        let (token, said) = ok(token_cmd(&app, &emu.url, &cache)
            .args(setting)
            .arg("--no-cache"));
        assert!(said.lines().count() > 3, "{setting:?} said little:\n{said}");
        if let Some(part) = shows_part_of(&said, token.trim()) {
            panic!("{setting:?} shows part of the token ({part}):\n{said}");
        }
        assert!(
            !said.contains("client_assertion"),
            "{setting:?} shows the form:\n{said}"
        );
    }
    for (var, value) in [
        ("CERTASSERT_LOG", "trace"),
        ("RUST_LOG", "trace"),
        ("CERTASSERT_LOG", "ureq_proto=trace,ureq=trace"),
    ] {
        let (token, said) = ok(token_cmd(&app, &emu.url, &cache)
            .env(var, value)
            .arg("--no-cache"));
        if let Some(part) = shows_part_of(&said, token.trim()) {
            panic!("{var}={value} shows part of the token ({part}):\n{said}");
        }
    }
}

#[test]
fn a_bad_filter_is_named_and_the_default_used() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let cache = dir.path().join("cache");
    let (_, said) = ok(token_cmd(&app, &emu.url, &cache).env("CERTASSERT_LOG", "certassert=loud"));
    assert!(
        said.starts_with("warning: CERTASSERT_LOG is not a log filter")
            && said.contains("certassert=debug,ureq=info"),
        "{said}"
    );
}
