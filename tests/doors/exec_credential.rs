//! kubectl: `token --format exec-credential` prints a client.authentication.k8s.io/v1
//! `ExecCredential` whose `status.token` is the access token and whose
//! `status.expirationTimestamp` is the token's expiry in RFC 3339 UTC (checked against
//! GNU date, not certassert's formatter).

use crate::common::emulator::{certassert, start, AppFiles};
use crate::common::{self, s, tempdir};
use crate::{claims, CLIENT, TENANT};
use certassert::Algorithm;

#[test]
fn exec_credential_is_kubectls_v1_shape_with_the_tokens_expiry() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let running = start(&[&app], Some(TENANT), false);
    // AKS's server application id, as kubelogin asks for it.
    let exec_credential = || {
        certassert(&dir.path().join("cache"))
            .arg("token")
            .args(app.flags(TENANT, running.url()))
            .args(["--scope", "6dae42f8-4368-4678-94ff-3960e28e3630/.default"])
            .args(["--format", "exec-credential"])
            .output()
            .unwrap()
    };
    let out = exec_credential();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let token = v["status"]["token"].as_str().unwrap().to_string();
    let exp = claims(&token)["exp"].as_i64().unwrap();
    let date = |t: i64| {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // The client counts expires_in from when the answer arrived: the emulator's exp, or
    // a second or two later when the clock ticked in between.
    let shown = v["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        (0..=2).any(|late| date(exp + late) == shown),
        "{shown} is not the token's exp {exp} ({})",
        date(exp)
    );
    let expected_time = shown;
    assert_eq!(
        v,
        serde_json::json!({
            "kind": "ExecCredential",
            "apiVersion": "client.authentication.k8s.io/v1",
            "spec": {"interactive": false},
            "status": {"expirationTimestamp": expected_time, "token": token},
        })
    );
    assert_eq!(
        claims(&token)["aud"],
        "6dae42f8-4368-4678-94ff-3960e28e3630"
    );
    // The token is the one the emulator signed (the rsa crate, the emulator's key).
    let (input, sig) = token.rsplit_once('.').unwrap();
    common::rsa_crate_verify(
        running.signing_key_spki(),
        Algorithm::Rs256,
        input.as_bytes(),
        &common::b64url_decode(sig),
    )
    .unwrap();
    // A second run is answered from the cache: the same credential, still valid.
    let again = exec_credential();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
    assert_eq!(running.requests().len(), 1);
}

/// The Kubernetes Python client (PyPI `kubernetes`) loads a kubeconfig whose user is the
/// README's exec stanza, runs `certassert token --format exec-credential` as kubectl
/// would, and sends the emulator's token as its bearer; it parses the expiry with its own
/// RFC 3339 reader.
#[test]
fn the_kubernetes_client_runs_the_readme_exec_stanza() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let running = start(&[&app], Some(TENANT), false);
    let kubeconfig = format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: aks
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: aks
  context:
    cluster: aks
    user: certassert
current-context: aks
users:
- name: certassert
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {bin}
      args:
      - token
      - --key
      - {key}
      - --cert
      - {cert}
      - --tenant
      - {TENANT}
      - --client-id
      - {CLIENT}
      - --authority-host
      - {host}
      - --scope
      - 6dae42f8-4368-4678-94ff-3960e28e3630/.default
      - --format
      - exec-credential
      interactiveMode: Never
"#,
        bin = env!("CARGO_BIN_EXE_certassert"),
        key = s(&app.key),
        cert = s(&app.cert),
        host = running.url(),
    );
    let path = common::write(dir.path(), "kubeconfig", kubeconfig);
    let script = r#"
import sys, json
from kubernetes import client, config
from kubernetes.config.kube_config import _get_kube_config_loader
c = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], client_configuration=c)
loader = _get_kube_config_loader(filename=sys.argv[1])
loader._load_authentication()
print(json.dumps({"authorization": c.api_key.get("BearerToken"),
                  "expiry": int(loader.expiry.timestamp()) if loader.expiry else None}))
"#;
    let mut python = std::process::Command::new(common::python::python());
    python
        .current_dir(dir.path())
        .env("CERTASSERT_CACHE_DIR", dir.path().join("cache"));
    common::without_certassert_env(&mut python);
    let out = crate::python_json(&mut python, script, &[s(&path)]);
    let bearer = out["authorization"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {out}"));
    let token = bearer.strip_prefix("Bearer ").unwrap();
    assert_eq!(claims(token)["aud"], "6dae42f8-4368-4678-94ff-3960e28e3630");
    let exp = claims(token)["exp"].as_i64().unwrap();
    let expiry = out["expiry"].as_i64().unwrap();
    assert!((exp..=exp + 2).contains(&expiry), "{expiry} vs exp {exp}");
    // The second load was answered from certassert's cache: one request in all.
    assert_eq!(running.requests().len(), 1);
}
