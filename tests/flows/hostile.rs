//! A token endpoint that answers with hostile or broken bodies (the emulator's
//! `answer=STATUS:BODY` fault), and a cache directory someone else planted: `token` and
//! `doctor` never echo a token, never print server text raw, refuse a token that is not
//! a plain b64token, and never serve a planted entry.

use crate::common::emulator::{certassert, AppFiles, ChildEmulator};
use crate::common::{now, s, tempdir};
use crate::{CLIENT, GRAPH, TENANT};
use serde_json::Value;
use std::process::Output;

fn token(cache: &std::path::Path, app: &AppFiles, emu: &ChildEmulator, extra: &[&str]) -> Output {
    certassert(cache)
        .arg("token")
        .args(app.flags(TENANT, &emu.url))
        .args(["--scope", GRAPH, "--no-cache"])
        .args(extra)
        .output()
        .unwrap()
}

/// The whole stderr of `out`, compared with `tests/cmd/generated/{file}` (the emulator's
/// URL and the temp dir redacted; regenerate with `SNAPSHOTS=overwrite`).
fn snapshot(out: &Output, file: &str, emu: &ChildEmulator, root: &std::path::Path) {
    let mut r = snapbox::Redactions::new();
    r.insert("[URL]", emu.url.clone()).unwrap();
    r.insert("[ROOT]", root.canonicalize().unwrap().display().to_string())
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cmd/generated")
        .join(file);
    snapbox::Assert::new()
        .action_env(snapbox::assert::DEFAULT_ACTION_ENV)
        .redact_with(r)
        // Escapes such as \u{1b} are the point here: no path normalisation of `\`.
        .normalize_paths(false)
        .eq(
            String::from_utf8_lossy(&out.stderr).into_owned(),
            snapbox::Data::read_from(&path, None),
        );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const CANARY: &str = r#"answer=200:{"access_token":"CANARY-AT.x","refresh_token":"CANARY-RT","id_token":"CANARY-ID","token_type":"Bearer","expires_in":"soon"}"#;

#[test]
fn hostile_answers_are_refused_without_echo_or_raw_text() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let esc = "answer=401:{\"error\":\"invalid_client\",\"error_description\":\"AADSTS700027: x\\u001b]0;pwned\\u0007\\u001b[2J\",\"error_codes\":[700027],\"correlation_id\":\"c\\u001b[31m\\r\\nforged: line\"}";
    let emu = ChildEmulator::start(&[
        "--register",
        &reg,
        "--fault",
        CANARY,
        "--fault",
        CANARY,
        "--fault",
        r#"answer=200:{"access_token":"abc\nX-Injected: 1","token_type":"Bearer","expires_in":3599}"#,
        "--fault",
        esc,
        "--fault",
        &format!(
            r#"answer=200:{{"access_token":"abc","token_type":"Bearer","expires_in":{}}}"#,
            i64::MAX
        ),
    ]);
    let cache = dir.path().join("cache");

    // A malformed expires_in: the field is named, no token is shown.
    let out = token(&cache, &app, &emu, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(!t.contains("CANARY") && t.contains("expires_in"), "{t}");
    snapshot(&out, "token-answer-bad-expires-in.stderr", &emu, dir.path());

    // The same through doctor.
    let out = certassert(&cache)
        .arg("doctor")
        .args(app.flags(TENANT, &emu.url))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(!t.contains("CANARY") && t.contains("FAIL  token"), "{t}");

    // A token with a line break never reaches stdout.
    let out = token(&cache, &app, &emu, &[]);
    assert!(!out.status.success() && out.stdout.is_empty());
    let t = text(&out);
    assert!(t.contains("access_token") && !t.contains("Injected"), "{t}");
    snapshot(
        &out,
        "token-answer-not-plain-token.stderr",
        &emu,
        dir.path(),
    );

    // ESC, BEL, CR and LF from the server are shown escaped.
    let out = token(&cache, &app, &emu, &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        !t.contains('\u{1b}') && !t.contains('\u{7}') && !t.contains('\r'),
        "{t:?}"
    );
    assert!(
        t.contains("\\u{1b}]0;pwned") && !t.contains("\nforged"),
        "{t}"
    );
    snapshot(
        &out,
        "token-answer-control-characters.stderr",
        &emu,
        dir.path(),
    );

    // expires_in = i64::MAX: no overflow; the lifetime is clamped to 48 hours.
    let out = token(&cache, &app, &emu, &["--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expires_on = v["expires_on"].as_i64().unwrap();
    assert!(expires_on > now() && expires_on <= now() + 48 * 3600, "{v}");
}

/// A cache directory owned by uid 65534 with a token planted in it: not served, not
/// chmodded, a warning said once, and the token comes from the server.
#[test]
fn a_token_planted_in_a_directory_of_another_uid_is_not_served() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = tempdir();
    if std::fs::metadata(dir.path()).unwrap().uid() != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let cache = dir.path().join("theirs");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Fill the cache once to learn the entry's name, then plant a token in its place.
    std::os::unix::fs::chown(&cache, Some(0), Some(0)).unwrap();
    let cached_token = || {
        certassert(&cache)
            .arg("token")
            .args(app.flags(TENANT, &emu.url))
            .args(["--scope", GRAPH])
            .output()
            .unwrap()
    };
    assert!(cached_token().status.success());
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let planted = format!(
        r#"{{"access_token":"PLANTED","token_type":"Bearer","expires_on":{}}}"#,
        now() + 3000
    );
    std::fs::write(&entry, planted).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();

    let out = cached_token();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("PLANTED") && stdout.split('.').count() == 3,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("owned by uid 65534").count(), 1, "{stderr}");
    snapshot(&out, "token-cache-not-owned.stderr", &emu, dir.path());
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o755);
    assert!(std::fs::read_to_string(&entry).unwrap().contains("PLANTED"));
}
