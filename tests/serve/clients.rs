//! Clients we did not write, each getting a token the emulator issued through the agent:
//! Python azure-identity's `ManagedIdentityCredential` (App Service through
//! `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, IMDS through `AZURE_POD_IDENTITY_AUTHORITY_HOST`),
//! an unchanged `DefaultAzureCredential` app pointed at `certassert serve` by its
//! environment file alone, and the Rust `azure_identity` crate's
//! `ManagedIdentityCredential`. The Rust crate reads its configuration from the process
//! environment, so it runs in a child process of this test binary with that environment.
//! (azure_identity 1.x speaks App Service through `IDENTITY_ENDPOINT`; its IMDS source is
//! the fixed address 169.254.169.254, which a loopback agent cannot be.)

use super::process::{read_env_file, ServeChild};
use super::*;
use common::python::python;
use std::process::{Command, Output};

/// Run `script` with the pinned azure-identity on a clean environment plus `envs`.
fn run_python(script: &str, envs: &[(String, String)]) -> Output {
    let home = tempdir();
    Command::new(python())
        .args(["-c", script])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("NO_PROXY", "*")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("python runs")
}

/// The token the script printed, checked as the emulator's for the vault.
fn printed_token(out: &Output, emulator: &Emulator) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_string();
    let claims = issued_by(emulator, &token);
    assert_eq!(claims["aud"], VAULT);
    assert_eq!(claims["appid"], CLIENT);
    token
}

const GET_TOKEN: &str = "\
from azure.identity import ManagedIdentityCredential
print(ManagedIdentityCredential().get_token('https://vault.azure.net/.default').token)
";

#[test]
fn python_managed_identity_credential_over_app_service() {
    let f = Fixture::new(|_| {});
    let out = run_python(
        GET_TOKEN,
        &[
            ("IDENTITY_ENDPOINT".into(), f.agent().identity_endpoint()),
            ("IDENTITY_HEADER".into(), SECRET.into()),
        ],
    );
    printed_token(&out, &f.emulator);
    assert_eq!(f.posts(), 1);
    let lines = f.request_lines();
    assert!(
        lines[0].starts_with("GET /msi/token resource=https://vault.azure.net "),
        "{lines:?}"
    );
}

#[test]
fn python_managed_identity_credential_over_imds() {
    let f = Fixture::new(|_| {});
    let out = run_python(
        GET_TOKEN,
        &[("AZURE_POD_IDENTITY_AUTHORITY_HOST".into(), f.agent().url())],
    );
    printed_token(&out, &f.emulator);
    let lines = f.request_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /metadata/identity/oauth2/token ")
                && l.contains("status=200")),
        "{lines:?}"
    );
}

#[test]
fn python_user_assigned_client_id_is_passed_and_checked() {
    let f = Fixture::new(|_| {});
    let env = [
        (
            "IDENTITY_ENDPOINT".to_string(),
            f.agent().identity_endpoint(),
        ),
        ("IDENTITY_HEADER".to_string(), SECRET.to_string()),
    ];
    let script = |client: &str| {
        format!(
            "from azure.identity import ManagedIdentityCredential\n\
             print(ManagedIdentityCredential(client_id='{client}').get_token('https://vault.azure.net/.default').token)\n"
        )
    };
    printed_token(&run_python(&script(CLIENT), &env), &f.emulator);
    let out = run_python(&script("11111111-2222-3333-4444-555555555555"), &env);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not an identity this agent serves"),
        "{stderr}"
    );
}

/// The README's example: an app that uses `DefaultAzureCredential` as it is, run with
/// nothing but the environment file `certassert serve --env-file` wrote.
#[test]
fn an_unchanged_default_azure_credential_app_uses_the_agent_through_its_env_file() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let emulator = common::emulator::start(&[&app], Some(TENANT), false);
    let env_file = dir.path().join("serve.env");
    let serve = ServeChild::start(
        &[
            app.flags(TENANT, emulator.url()).as_slice(),
            &["--env-file", common::s(&env_file)],
        ]
        .concat(),
        &[],
    );
    let app_py = "\
from azure.identity import DefaultAzureCredential
credential = DefaultAzureCredential()
print(credential.get_token('https://vault.azure.net/.default').token)
";
    let out = run_python(app_py, &read_env_file(&env_file));
    let token = printed_token(&out, &emulator);
    let (status, stderr) = serve.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(stderr.contains("cache=miss status=200"), "{stderr}");
    assert!(!stderr.contains(&token));
}

#[test]
fn rust_azure_identity_managed_identity_credential_over_app_service() {
    let f = Fixture::new(|_| {});
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "clients::child_rust_azure_identity",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    common::without_proxies(&mut cmd);
    for var in [
        "MSI_ENDPOINT",
        "IMDS_ENDPOINT",
        "IDENTITY_SERVER_THUMBPRINT",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("IDENTITY_ENDPOINT", f.agent().identity_endpoint())
        .env("IDENTITY_HEADER", SECRET)
        .env("CERTASSERT_TEST_RUST_MI_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = stdout
        .lines()
        .find_map(|l| l.split("token=").nth(1))
        .unwrap_or_else(|| panic!("no token line: {stdout}"));
    let claims = issued_by(&f.emulator, token.trim());
    assert_eq!(claims["aud"], VAULT);
    assert_eq!(f.posts(), 1);
}

/// Child process for `rust_azure_identity_managed_identity_credential_over_app_service`;
/// does nothing when run on its own.
#[test]
#[ignore = "run by rust_azure_identity_managed_identity_credential_over_app_service as a child process"]
fn child_rust_azure_identity() {
    use azure_core::credentials::TokenCredential as _;
    if std::env::var_os("CERTASSERT_TEST_RUST_MI_CHILD").is_none() {
        return;
    }
    let credential = azure_identity::ManagedIdentityCredential::new(None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = runtime
        .block_on(credential.get_token(&["https://vault.azure.net/.default"], None))
        .unwrap();
    println!("token={}", token.token.secret());
}

/// Entra's refusal reaches the SDK's user: MSAL Python shows App Service's
/// `statusCode`/`message`, which carry the AADSTS code and its hint.
#[test]
fn python_sees_entras_refusal_with_its_aadsts_code_and_hint() {
    let dir = tempdir();
    let registered = AppFiles::new(dir.path(), "registered", CLIENT);
    let stranger = AppFiles::new(dir.path(), "stranger", CLIENT);
    let emulator = common::emulator::start(&[&registered], Some(TENANT), false);
    let signer: Arc<dyn Signer> =
        Arc::from(signer::open(&stranger.keyref(), &certassert::secret::NoCallbacks).unwrap());
    let agent = serve::start(config(
        identity(&stranger, signer, &emulator),
        Arc::new(Mutex::new(Vec::new())),
    ))
    .unwrap();
    let out = run_python(
        GET_TOKEN,
        &[
            ("IDENTITY_ENDPOINT".into(), agent.identity_endpoint()),
            ("IDENTITY_HEADER".into(), SECRET.into()),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("400, AADSTS700027: "), "{stderr}");
    assert!(
        stderr.contains("hint: the certificate that signed the assertion is not registered"),
        "{stderr}"
    );
}
