//! The token cache: a hit sends no request and makes no signature; files are 0600 in a
//! 0700 directory, one per scope and certificate; a corrupt file is replaced; user-flow
//! and refresh tokens are never written.

use crate::common::emulator::{start, Counting};
use crate::{graph, quick, request, Fixture};
use certassert::emulator::Code;
use certassert::entra::{Cache, Client, Credential, Grant, Target};
use certassert::secret::Secret;
use certassert::{signer, Algorithm};
use serde_json::Value;
use std::path::Path;

#[test]
fn cache_hit_sends_nothing_and_signs_nothing() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let counting =
        Counting::new(signer::open(&f.app.keyref(), &certassert::secret::NoCallbacks).unwrap());
    let cache_dir = f.dir.path().join("cache");
    let client = Client::new(quick(), Some(Cache::open(&cache_dir).unwrap()));
    let cred = Credential {
        signer: &counting,
        chain: &f.chain,
        alg: Algorithm::Rs256,
        x5c: false,
        lifetime: 600,
    };
    let req = request(&running, graph(), Grant::ClientCredentials);
    let first = client.acquire(&cred, &req).unwrap();
    assert!(!first.cached);
    assert_eq!((counting.signatures(), running.requests().len()), (1, 1));
    let second = client.acquire(&cred, &req).unwrap();
    assert!(second.cached);
    assert_eq!(second.attempts, 0);
    assert_eq!(
        second.token.access_token.expose(),
        first.token.access_token.expose()
    );
    assert_eq!((counting.signatures(), running.requests().len()), (1, 1));

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);

    // Another scope, or another certificate thumbprint, is another entry.
    let vault = request(
        &running,
        Target::Scopes(vec!["https://vault.azure.net/.default".into()]),
        Grant::ClientCredentials,
    );
    assert!(!client.acquire(&cred, &vault).unwrap().cached);
    assert_eq!(running.requests().len(), 2);

    // A corrupt file is ignored and replaced.
    std::fs::write(&files[0], b"\x00garbage").unwrap();
    let third = client.acquire(&cred, &req).unwrap();
    assert!(!third.cached);
    assert_eq!(running.requests().len(), 3);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["access_token"], third.token.access_token.expose());
    assert!(client.acquire(&cred, &req).unwrap().cached);

    // User-flow tokens and refresh tokens are not cached.
    running.seed_code(Code {
        code: "c".into(),
        ..Code::default()
    });
    let grant = Grant::AuthorizationCode {
        code: Secret::new("c".into()),
        redirect_uri: "https://a/cb".into(),
        code_verifier: None,
    };
    let out = client
        .acquire(
            &cred,
            &request(&running, Target::Scopes(vec!["api://x/y".into()]), grant),
        )
        .unwrap();
    let rt = out.token.refresh_token.unwrap();
    for entry in std::fs::read_dir(&cache_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(rt.expose()));
        assert!(!text.contains(out.token.access_token.expose()));
    }
}

/// 12 cold `certassert token` processes for the same key and scope: one asks the server
/// (the emulator holds its answer 500 ms so that all of them start while it waits), the
/// others wait on the cache lock and read its entry.
#[test]
fn concurrent_cold_processes_make_one_request() {
    use crate::common::emulator::{certassert, AppFiles, ChildEmulator};
    use crate::common::{s, tempdir};
    use crate::{CLIENT, GRAPH, TENANT};
    const N: usize = 12;
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let reg = format!("{CLIENT}={}", s(&app.cert));
    let emu = ChildEmulator::start(&["--register", &reg, "--fault", "slow=500"]);
    let cache = dir.path().join("cache");
    let children: Vec<_> = (0..N)
        .map(|_| {
            certassert(&cache)
                .arg("token")
                .args(app.flags(TENANT, &emu.url))
                .args(["--scope", GRAPH])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let posts = emu
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/token")))
        .count();
    assert_eq!(posts, 1, "{N} cold processes, {posts} token requests");
    assert!(tokens
        .iter()
        .all(|t| *t == tokens[0] && t.lines().count() == 1));
}
