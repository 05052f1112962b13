//! The CLI against a `certassert emulator` child: output formats and the cache, AADSTS
//! errors with the flags their hint is about, plain http refused, HTTPS through faults,
//! the user grants, concurrent cache writers, `doctor`, `demo`, and HTTPS_PROXY.

use crate::common::emulator::{certassert, AppFiles, ChildEmulator};
use crate::common::{self, b64url, openssl_fingerprint, s, tempdir};
use crate::{CLIENT, GRAPH, TENANT};
use serde_json::Value;
use std::process::{Output, Stdio};

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("certassert runs")
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn token_args<'a>(app: &'a AppFiles, authority: &'a str) -> Vec<&'a str> {
    let mut args = vec!["token"];
    args.extend(app.flags(TENANT, authority));
    args
}

#[test]
fn cli_token_formats_and_the_cache() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--role", "Things.Read"]);
    let cache = dir.path().join("cache");
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let raw = stdout_ok(&run(certassert(&cache).args(&args)));
    assert_eq!(raw.lines().count(), 1);
    let raw = raw.trim();
    assert_eq!(raw.split('.').count(), 3);
    assert_eq!(emu.requests().len(), 1);

    let json: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache)
        .args(&args)
        .args(["--format", "json"]))))
    .unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "expires_on",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(json["access_token"], raw, "served from the cache");
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], GRAPH);
    assert!(json["expires_in"].as_i64().unwrap() > 3000);

    let az: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache)
        .args(&args)
        .args(["--format", "az"]))))
    .unwrap();
    let keys: Vec<&str> = az.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "accessToken",
            "expiresOn",
            "expires_on",
            "tenant",
            "tokenType"
        ]
    );
    assert_eq!(az["accessToken"], raw);
    assert_eq!(az["tenant"], TENANT);
    assert_eq!(az["expires_on"], json["expires_on"]);
    // expiresOn is local time, as az prints it: what GNU date says in the same zones.
    for tz in ["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Chatham"] {
        let az: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache)
            .args(&args)
            .args(["--format", "az"])
            .env("TZ", tz))))
        .unwrap();
        let date = std::process::Command::new("date")
            .arg("-d")
            .arg(format!("@{}", az["expires_on"]))
            .arg("+%Y-%m-%d %H:%M:%S.000000")
            .env("TZ", tz)
            .output()
            .expect("date");
        let expected = String::from_utf8(date.stdout).unwrap();
        assert_eq!(az["expiresOn"], expected.trim(), "TZ={tz}");
    }
    assert_eq!(emu.requests().len(), 1, "all answered from the cache");

    let fresh = stdout_ok(&run(certassert(&cache).args(&args).arg("--no-cache")));
    assert_ne!(fresh.trim(), raw);
    assert_eq!(emu.requests().len(), 2);

    // v1 via --resource.
    let mut v1 = token_args(&app, &emu.url);
    v1.extend(["--resource", "https://vault.azure.net", "--format", "json"]);
    let json: Value = serde_json::from_str(&stdout_ok(&run(certassert(&cache).args(&v1)))).unwrap();
    assert_eq!(json["resource"], "https://vault.azure.net");
    let last = emu.requests().pop().unwrap();
    assert_eq!(last["path"], format!("/{TENANT}/oauth2/token"));
}

#[test]
fn cli_adds_the_flags_an_aadsts_hint_is_about() {
    // The library's hint says "check the tenant … and the authority host"; the CLI adds
    // the flags that set them, matched on the AADSTS code.
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--tenant", "fabrikam.example"]);
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let out = run(certassert(&dir.path().join("c")).args(&args));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: AADSTS90002: "), "{stderr}");
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("no hint line: {stderr}"));
    assert!(hint.starts_with("hint: the tenant was not found"), "{hint}");
    assert!(
        hint.ends_with("; set with --tenant and --authority-host"),
        "{hint}"
    );
}

#[test]
fn cli_unknown_certificate_exits_nonzero_with_aadsts700027() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let other = AppFiles::new(dir.path(), "other", CLIENT);
    let reg = format!("{CLIENT}={}", s(&other.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let out = run(certassert(&dir.path().join("c")).args(&args));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (hex, _) = openssl_fingerprint(&app.cert, "sha1");
    assert!(stderr.starts_with("error: AADSTS700027: "), "{stderr}");
    assert!(
        stderr.contains(&format!("Thumbprint of key used by client: '{hex}'")),
        "{stderr}"
    );
    assert!(stderr.contains("correlation id "), "{stderr}");
    assert!(
        stderr.contains("\nhint: the certificate that signed the assertion is not registered"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(emu.requests().len(), 1, "a 401 is not retried");
}

#[test]
fn cli_refuses_plain_http_to_other_hosts_before_sending() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    for extra in [
        vec!["--authority-host", "http://login.example.com"],
        vec!["--token-url", "http://10.1.2.3/oauth2/token"],
    ] {
        let mut args = vec![
            "token",
            "--key",
            s(&app.key),
            "--cert",
            s(&app.cert),
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT,
            "--scope",
            GRAPH,
        ];
        args.extend(extra);
        let out = run(certassert(&dir.path().join("c")).args(&args));
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("plain http is allowed only to loopback"),
            "{stderr}"
        );
    }
}

#[test]
fn cli_over_https_and_through_faults() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let ca = dir.path().join("ca.pem");
    let emu = ChildEmulator::start(&[
        "--register",
        &reg,
        "--tls",
        "--ca-out",
        s(&ca),
        "--fault",
        "503",
        "--fault",
        "429",
    ]);
    assert!(emu.url.starts_with("https://"));
    assert_eq!(emu.ca_file.as_deref(), Some(ca.as_path()));
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH, "--ca-file", s(&ca), "--no-cache"]);
    stdout_ok(&run(certassert(&dir.path().join("c")).args(&args)));
    let statuses: Vec<u64> = emu
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 429, 200]);
}

#[test]
fn cli_grants_code_refresh_and_single_use() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--code", "abc=https://app.example/cb"]);
    let cache = dir.path().join("c");
    let mut args = token_args(&app, &emu.url);
    args.extend([
        "--grant",
        "authorization-code",
        "--code",
        "abc",
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        "api://orders/read",
        "offline_access",
        "--format",
        "json",
    ]);
    let json: Value =
        serde_json::from_str(&stdout_ok(&run(certassert(&cache).args(&args)))).unwrap();
    let rt = json["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let out = run(certassert(&cache).args(&args));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AADSTS54005"));
    let rt_file = common::write(dir.path(), "rt", &rt);
    let rt_arg = format!("@{}", s(&rt_file));
    let mut args = token_args(&app, &emu.url);
    args.extend([
        "--grant",
        "refresh-token",
        "--refresh-token",
        &rt_arg,
        "--scope",
        "api://orders/read",
    ]);
    stdout_ok(&run(certassert(&cache).args(&args)));
    let last = emu.requests().pop().unwrap();
    assert_eq!(last["form"][4], serde_json::json!(["refresh_token", rt]));
    // Nothing of this went to the cache.
    assert!(std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn cli_two_processes_filling_the_cache_leave_it_valid() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let cache = dir.path().join("cache");
    let mut args = token_args(&app, &emu.url);
    args.extend(["--scope", GRAPH]);
    let children: Vec<_> = (0..6)
        .map(|_| {
            certassert(&cache)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| stdout_ok(&c.wait_with_output().unwrap()).trim().to_string())
        .collect();
    let mut entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let json: Vec<_> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(json.len(), 1, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{entries:?}"
    );
    assert_eq!(
        std::fs::metadata(json[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(json[0]).unwrap()).unwrap();
    assert!(tokens.iter().any(|t| cached["access_token"] == t.as_str()));
    // And the next run is served from it.
    let next = stdout_ok(&run(certassert(&cache).args(&args)));
    assert_eq!(cached["access_token"], next.trim());
    let sent = emu.requests().len();
    assert!((1..=6).contains(&sent), "{sent}");
}

#[test]
fn cli_doctor_checks_pairing_and_explains_a_token_error() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let other = AppFiles::new(dir.path(), "other", CLIENT);
    let c = dir.path().join("c");
    let out = stdout_ok(&run(certassert(&c).args([
        "doctor",
        "--key",
        s(&app.key),
        "--cert",
        s(&app.cert),
    ])));
    let (hex, sha1) = openssl_fingerprint(&app.cert, "sha1");
    let (_, sha256) = openssl_fingerprint(&app.cert, "sha256");
    assert!(
        out.contains(&format!("thumbprint (portal, hex SHA-1) {hex}")),
        "{out}"
    );
    assert!(
        out.contains(&b64url(&sha1)) && out.contains(&b64url(&sha256)),
        "{out}"
    );
    assert!(out.contains("ok    pairing"), "{out}");
    assert!(
        out.contains("RS256: signed through the backend")
            && out.contains("PS256: signed through the backend"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");

    // Under 30 days left: a warning, not a failure.
    let short = dir.path().join("short.cert.pem");
    common::openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        s(&app.key),
        "-subj",
        "/CN=short",
        "-days",
        "10",
        "-out",
        s(&short),
    ]);
    let out = stdout_ok(&run(certassert(&c).args([
        "doctor",
        "--key",
        s(&app.key),
        "--cert",
        s(&short),
    ])));
    assert!(
        out.contains("warn  validity") && out.contains("days left"),
        "{out}"
    );

    let out = run(certassert(&c).args(["doctor", "--key", s(&app.key), "--cert", s(&other.cert)]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  pairing") && text.contains("AADSTS700027"),
        "{text}"
    );

    let reg = format!("{CLIENT}={}", s(&other.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let out = run(certassert(&c)
        .arg("doctor")
        .args(app.flags(TENANT, &emu.url)));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  token")
            && text.contains("AADSTS700027")
            && text.contains("hint: the certificate"),
        "{text}"
    );
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg]);
    let out = stdout_ok(&run(certassert(&c)
        .arg("doctor")
        .args(app.flags(TENANT, &emu.url))));
    assert!(out.contains("ok    token"), "{out}");
}

#[test]
fn cli_demo_ends_with_a_token() {
    let dir = tempdir();
    let out = stdout_ok(&run(certassert(&dir.path().join("c")).arg("demo")));
    assert!(
        out.contains("access token (signature verifies with the emulator's key)"),
        "{out}"
    );
    assert!(
        out.contains("same token again from the cache: yes"),
        "{out}"
    );
    assert!(out.contains("\"roles\""), "{out}");
}
