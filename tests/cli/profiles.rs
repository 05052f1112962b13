//! Named profiles (`--profile`, `CERTASSERT_PROFILE`, `--config`, the XDG and /etc
//! lookup) as a user drives them: a profile's key, certificate, tenant, client id,
//! authority host and algorithm get a token from a `certassert emulator` child; flags and
//! environment variables override it field by field; relative paths follow the file;
//! every mistake in the file is named with its file, line and column.

use super::common::emulator::ChildEmulator;
use super::{b64url_json, certassert, fails_cmd, openssl_verifies, redactions, setup, CLIENT};
use std::path::Path;
use std::process::{Command, Output};

const TENANT: &str = "fabrikam.onmicrosoft.com";

/// `certassert` in `cwd` with a hermetic configuration lookup: HOME and XDG_CONFIG_HOME
/// point into `root` (empty unless a test writes there), no CERTASSERT_PROFILE.
fn cmd(root: &Path, cwd: &Path) -> Command {
    let mut c = certassert(cwd);
    c.env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("xdg"))
        .env("CERTASSERT_CACHE_DIR", root.join("cache"))
        .env_remove("CERTASSERT_PROFILE")
        .env_remove("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN");
    c
}

fn stdout_ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The key and certificate moved to `root/etc/keys/`, and a config file in `root/etc/`
/// naming them by relative paths, the emulator as authority host, PS256 and x5c.
fn write_config(root: &Path, url: &str) -> std::path::PathBuf {
    let etc = root.join("etc");
    std::fs::create_dir_all(etc.join("keys")).unwrap();
    std::fs::rename(root.join("k.pem"), etc.join("keys/k.pem")).unwrap();
    std::fs::copy(root.join("c.pem"), etc.join("keys/c.pem")).unwrap();
    let config = etc.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "# profiles for the test\n\
             [profile.app]\n\
             key = \"keys/k.pem\"\n\
             cert = \"keys/c.pem\"\n\
             tenant = \"{TENANT}\"\n\
             client_id = \"{CLIENT}\"\n\
             authority_host = \"{url}\"\n\
             alg = \"PS256\"\n\
             x5c = true\n\
             \n\
             [profile.other]\n\
             tenant = \"other.example\"\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_profile_gets_a_token_and_flags_and_env_override_it_field_by_field() {
    let (dir, root) = setup();
    let reg = format!("{CLIENT}={}", root.join("c.pem").display());
    let emu = ChildEmulator::start(&["--register", &reg, "--tenant", TENANT]);
    let config = write_config(&root, &emu.url);
    // Run from somewhere else: the profile's relative paths follow the file, not the cwd.
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let conf = config.to_str().unwrap();

    let jwt = stdout_ok(
        cmd(&root, &elsewhere)
            .args(["assertion", "--config", conf, "--profile", "app"])
            .output()
            .unwrap(),
    );
    let mut parts = jwt.trim().split('.');
    let header = b64url_json(parts.next().unwrap());
    let claims = b64url_json(parts.next().unwrap());
    assert_eq!(header["alg"], "PS256");
    assert!(header["x5t#S256"].is_string(), "{header}");
    assert!(header["x5c"].is_array(), "x5c = true: {header}");
    assert_eq!(
        claims["aud"],
        format!("{}/{TENANT}/oauth2/v2.0/token", emu.url)
    );
    assert_eq!(claims["iss"], CLIENT);
    assert!(openssl_verifies(&root, jwt.trim(), "c.pem", true));

    // The token command with the same profile: the emulator checks the assertion the
    // profile's key signed against the registered certificate and issues a token.
    let token = stdout_ok(
        cmd(&root, &elsewhere)
            .args(["token", "--config", conf, "--profile", "app", "--scope"])
            .arg("api://things/.default")
            .args(["--no-cache", "--format", "json"])
            .output()
            .unwrap(),
    );
    let token: serde_json::Value = serde_json::from_str(&token).unwrap();
    assert_eq!(token["token_type"], "Bearer");
    let requests = emu.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["path"], format!("/{TENANT}/oauth2/v2.0/token"));
    let sent = requests[0]["form"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "client_assertion")
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(b64url_json(sent.split('.').next().unwrap())["alg"], "PS256");

    // doctor with the profile: the token request it makes reaches the emulator.
    let report = stdout_ok(
        cmd(&root, &elsewhere)
            .args(["doctor", "--config", conf, "--profile", "app", "--scope"])
            .arg("api://things/.default")
            .output()
            .unwrap(),
    );
    assert!(
        report.contains(&format!("info  profile      \"app\" from {conf}")),
        "{report}"
    );
    assert!(report.contains("ok    token"), "{report}");
    assert_eq!(emu.requests().len(), 2);

    // Flags override: --alg, --client-id; the environment overrides: AZURE_TENANT_ID and
    // AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=false. The key and certificate still come from
    // the profile.
    let jwt = stdout_ok(
        cmd(&root, &elsewhere)
            .args(["assertion", "--config", conf, "--profile", "app"])
            .args([
                "--alg",
                "RS256",
                "--client-id",
                "11111111-2222-3333-4444-555555555555",
            ])
            .env("AZURE_TENANT_ID", "contoso.example")
            .env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "false")
            .output()
            .unwrap(),
    );
    let mut parts = jwt.trim().split('.');
    let header = b64url_json(parts.next().unwrap());
    let claims = b64url_json(parts.next().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert!(header.get("x5c").is_none(), "{header}");
    assert_eq!(claims["iss"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        claims["aud"],
        format!("{}/contoso.example/oauth2/v2.0/token", emu.url)
    );
    assert!(openssl_verifies(&root, jwt.trim(), "c.pem", false));

    // --key and --cert override the profile's: a key the emulator does not know is
    // refused by it, which shows the profile's key was not used.
    let other = root.join("elsewhere/other.pem");
    stdout_ok(
        cmd(&root, &elsewhere)
            .args(["key", "generate", "--key"])
            .arg(&other)
            .output()
            .unwrap(),
    );
    let out = cmd(&root, &elsewhere)
        .args(["assertion", "--config", conf, "--profile", "app", "--key"])
        .arg(&other)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not belong to this key"),
        "the profile's certificate against --key: {stderr}"
    );
    drop(dir);
}

#[test]
fn certassert_profile_and_the_xdg_and_home_lookup() {
    let (_dir, root) = setup();
    let reg = format!("{CLIENT}={}", root.join("c.pem").display());
    let emu = ChildEmulator::start(&["--register", &reg, "--tenant", TENANT]);
    let config = write_config(&root, &emu.url);
    let text = std::fs::read_to_string(&config).unwrap();
    // The file in $XDG_CONFIG_HOME/certassert/, its key by absolute path now.
    let text = text
        .replace("keys/", &format!("{}/etc/keys/", root.display()))
        .replace("alg = \"PS256\"", "alg = \"RS256\"");
    let xdg = root.join("xdg/certassert");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(xdg.join("config.toml"), &text).unwrap();

    let claims = |out: Output| {
        let jwt = stdout_ok(out);
        b64url_json(jwt.trim().split('.').nth(1).unwrap())
    };
    let c = claims(
        cmd(&root, &root)
            .args(["assertion"])
            .env("CERTASSERT_PROFILE", "app")
            .output()
            .unwrap(),
    );
    assert_eq!(
        c["iss"], CLIENT,
        "CERTASSERT_PROFILE through $XDG_CONFIG_HOME"
    );
    // cert show with the profile: its key and its certificate, checked together.
    let shown = stdout_ok(
        cmd(&root, &root)
            .args(["cert", "show", "--profile", "app"])
            .output()
            .unwrap(),
    );
    assert!(shown.contains("(matches the key)"), "{shown}");
    // --profile wins over CERTASSERT_PROFILE: "other" has no key.
    let out = cmd(&root, &root)
        .args(["assertion", "--profile", "other", "--client-id", CLIENT])
        .env("CERTASSERT_PROFILE", "app")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("profile \"other\" has no key"));

    // Without XDG_CONFIG_HOME: ~/.config/certassert/config.toml.
    let home = root.join("home/.config/certassert");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::rename(xdg.join("config.toml"), home.join("config.toml")).unwrap();
    let c = claims(
        cmd(&root, &root)
            .env_remove("XDG_CONFIG_HOME")
            .args(["assertion", "--profile", "app"])
            .output()
            .unwrap(),
    );
    assert_eq!(c["iss"], CLIENT, "~/.config when XDG_CONFIG_HOME is unset");

    // No --profile and no file anywhere: not an error, nothing is read.
    std::fs::remove_file(home.join("config.toml")).unwrap();
    stdout_ok(
        cmd(&root, &root)
            .args(["assertion", "--key", "etc/keys/k.pem", "--cert", "c.pem"])
            .args(["--tenant", TENANT, "--client-id", CLIENT])
            .output()
            .unwrap(),
    );
}

#[test]
fn mistakes_in_the_file_are_named_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let r = redactions(&root, &[]);
    let write = |text: &str| {
        let path = root.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let assertion = |config: &Path, profile: &str| {
        let mut c = cmd(&root, &root);
        c.args(["assertion", "--config"])
            .arg(config)
            .args(["--profile", profile]);
        c
    };

    let p = write("[profile.app]\ntenant = \"t\"\nclient-id = \"c\"\n");
    fails_cmd(&mut assertion(&p, "app"), "profile-unknown-key", &r);
    let p = write("[profile.app]\nx5c = \"yes\"\n");
    fails_cmd(&mut assertion(&p, "app"), "profile-wrong-type", &r);
    let p = write("[profile.app]\nkey = \"pkcs11:object=app;pin-value=Zq7canary\"\n");
    let said = fails_cmd(&mut assertion(&p, "app"), "profile-bad-key", &r);
    assert!(!said.contains("Zq7canary"), "{said}");
    let p = write("[profile.app]\nalg = \"ES256\"\n");
    fails_cmd(&mut assertion(&p, "app"), "profile-bad-alg", &r);
    let p = write("[profile.b]\ntenant = \"t\"\n[profile.a]\n");
    fails_cmd(&mut assertion(&p, "prod"), "profile-missing", &r);
    fails_cmd(
        &mut assertion(&root.join("nowhere.toml"), "app"),
        "profile-config-missing",
        &r,
    );
    fails_cmd(
        cmd(&root, &root).args(["assertion", "--profile", "app"]),
        "profile-no-config-file",
        &r,
    );
    fails_cmd(
        cmd(&root, &root).args(["assertion", "--config"]).arg(&p),
        "profile-config-without-profile",
        &r,
    );
    // A profile without the key: the message says which profile.
    fails_cmd(
        assertion(&p, "b").args(["--client-id", CLIENT]),
        "profile-without-key",
        &r,
    );
}
