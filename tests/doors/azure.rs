//! The `azure` feature: `SignerCredential` as azure_core's `TokenCredential` against the
//! emulator over HTTPS (the assertion checked by the `rsa` crate with a strict PSS salt,
//! the token by the emulator's key), single flight on a cold cache, refresh ahead of
//! expiry, errors that carry the AADSTS code; and `SignerAssertion` inside the Rust SDK's
//! own `ClientAssertionCredential`.

use crate::common::emulator::{start, AppFiles, Counting};
use crate::common::{self, tempdir};
use crate::{claims, header, Setup, CLIENT, GRAPH, TENANT, VAULT};
use azure_core::credentials::TokenCredential as _;
use certassert::azure::{CredentialOptions, SignerAssertion, SignerCredential};
use certassert::entra::HttpOptions;
use certassert::{signer, Algorithm, Signer};
use std::sync::Arc;
use std::time::Duration;

/// An app, an in-process HTTPS emulator serving it, and credential options trusting it.
struct Fixture {
    _dir: tempfile::TempDir,
    app: AppFiles,
    running: certassert::emulator::Running,
    options: CredentialOptions,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempdir();
        let app = AppFiles::new(dir.path(), "app", CLIENT);
        let running = start(&[&app], Some(TENANT), true);
        let ca = common::write(dir.path(), "ca.pem", running.ca_pem().unwrap());
        let options = CredentialOptions {
            authority_host: running.url().to_string(),
            http: HttpOptions {
                ca_file: Some(ca),
                backoff: Duration::from_millis(20),
                ..HttpOptions::default()
            },
            ..CredentialOptions::default()
        };
        Self {
            _dir: dir,
            app,
            running,
            options,
        }
    }

    fn signer(&self) -> Arc<Counting> {
        let inner = signer::open(&self.app.keyref(), &certassert::secret::NoCallbacks).unwrap();
        Arc::new(Counting::new(inner))
    }

    fn credential(
        &self,
        signer: Arc<dyn Signer>,
        options: CredentialOptions,
    ) -> Arc<SignerCredential> {
        SignerCredential::new(
            signer,
            vec![self.app.certificate()],
            TENANT,
            CLIENT,
            options,
        )
        .unwrap()
    }

    fn assertions(&self) -> Vec<String> {
        self.running
            .requests()
            .iter()
            .filter_map(|r| r.field("client_assertion").map(str::to_string))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_token_over_https_with_ps256_and_the_exact_aud() {
    let f = Fixture::new();
    let options = CredentialOptions {
        alg: Algorithm::Ps256,
        ..f.options.clone()
    };
    let credential = f.credential(f.signer(), options);
    let token = credential.get_token(&[VAULT], None).await.unwrap();
    let jwt = token.token.secret();
    assert_eq!(claims(jwt)["aud"], "https://vault.azure.net");
    assert_eq!(claims(jwt)["appid"], CLIENT);
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    common::rsa_crate_verify(
        f.running.signing_key_spki(),
        Algorithm::Rs256,
        input.as_bytes(),
        &common::b64url_decode(sig),
    )
    .unwrap();
    assert_eq!(
        token.expires_on.unix_timestamp(),
        claims(jwt)["exp"].as_i64().unwrap()
    );
    // The assertion: PS256 with x5t#S256 of the certificate, aud the exact endpoint,
    // verified by the rsa crate with the salt held at 32.
    let sent = f.assertions();
    assert_eq!(sent.len(), 1);
    let a = &sent[0];
    assert_eq!(header(a)["alg"], "PS256");
    let (_, sha256) = common::openssl_fingerprint(&f.app.cert, "sha256");
    assert_eq!(header(a)["x5t#S256"], common::b64url(&sha256));
    assert_eq!(
        claims(a)["aud"],
        format!("{}/{TENANT}/oauth2/v2.0/token", f.running.url())
    );
    assert_eq!(credential.endpoint(), claims(a)["aud"].as_str().unwrap());
    let (input, sig) = a.rsplit_once('.').unwrap();
    common::rsa_crate_verify(
        f.app.certificate().spki_der(),
        Algorithm::Ps256,
        input.as_bytes(),
        &common::b64url_decode(sig),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cold_get_tokens_make_one_request_and_one_signature() {
    let f = Fixture::new();
    let signer = f.signer();
    let credential = f.credential(signer.clone(), f.options.clone());
    // Slow the one answer down, so the calls overlap for certain.
    f.running
        .push_fault(certassert::emulator::Fault::Slow(Duration::from_millis(
            300,
        )));
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let c = credential.clone();
            tokio::spawn(async move { c.get_token(&[GRAPH], None).await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.unwrap().token.secret().to_string());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(f.running.requests().len(), 1);
    assert_eq!(signer.signatures(), 1);
    // Warm: from memory, nothing signed or sent; another scope is its own request.
    credential.get_token(&[GRAPH], None).await.unwrap();
    assert_eq!((f.running.requests().len(), signer.signatures()), (1, 1));
    credential.get_token(&[VAULT], None).await.unwrap();
    assert_eq!((f.running.requests().len(), signer.signatures()), (2, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_renewed_ahead_of_its_expiry() {
    let f = Fixture::new();
    // The emulator's tokens live 3599 s: renewing 3600 s ahead means every call fetches.
    let options = CredentialOptions {
        refresh_ahead: Duration::from_secs(3600),
        ..f.options.clone()
    };
    let eager = f.credential(f.signer(), options);
    eager.get_token(&[GRAPH], None).await.unwrap();
    eager.get_token(&[GRAPH], None).await.unwrap();
    assert_eq!(f.running.requests().len(), 2);
    let sent = f.assertions();
    assert_ne!(claims(&sent[0])["jti"], claims(&sent[1])["jti"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_the_aadsts_code_and_the_hint() {
    let f = Fixture::new();
    let dir = tempdir();
    let stranger = AppFiles::new(dir.path(), "stranger", CLIENT);
    let signer: Arc<dyn Signer> =
        signer::open(&stranger.keyref(), &certassert::secret::NoCallbacks)
            .unwrap()
            .into();
    let credential = SignerCredential::new(
        signer,
        vec![stranger.certificate()],
        TENANT,
        CLIENT,
        f.options.clone(),
    )
    .unwrap();
    let err = credential.get_token(&[GRAPH], None).await.unwrap_err();
    assert_eq!(*err.kind(), azure_core::error::ErrorKind::Credential);
    let text = err.to_string();
    assert!(text.starts_with("AADSTS700027: "), "{text}");
    assert!(text.contains("\nhint: "), "{text}");
    let inner = err
        .into_inner()
        .unwrap()
        .downcast::<certassert::entra::Error>()
        .unwrap();
    assert_eq!(inner.entra().unwrap().codes, vec![700027]);
    // Not retried: one request.
    assert_eq!(f.running.requests().len(), 1);

    // A key and certificate that do not belong together: refused before anything is sent.
    let other: Arc<dyn Signer> = signer::open(&stranger.keyref(), &certassert::secret::NoCallbacks)
        .unwrap()
        .into();
    let mismatch = SignerCredential::new(
        other,
        vec![f.app.certificate()],
        TENANT,
        CLIENT,
        f.options.clone(),
    );
    assert!(
        matches!(mismatch, Err(certassert::azure::Error::Certificate(_))),
        "{mismatch:?}"
    );
    assert_eq!(f.running.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn signer_assertion_drives_the_sdks_client_assertion_credential_in_strict_mode() {
    use azure_identity::{ClientAssertionCredential, ClientAssertionCredentialOptions};
    // Strict mode: each of the SDK's requests must carry a new jti.
    let setup = Setup::new(&["--reject-jti-replay"]);
    let signer: Arc<dyn Signer> =
        signer::open(&setup.app.keyref(), &certassert::secret::NoCallbacks)
            .unwrap()
            .into();
    let options = CredentialOptions {
        authority_host: setup.emulator.url.clone(),
        ..CredentialOptions::default()
    };
    let assertion = SignerAssertion::new(
        signer,
        vec![setup.app.certificate()],
        TENANT,
        CLIENT,
        &options,
    )
    .unwrap();
    let credential = ClientAssertionCredential::new(
        TENANT.into(),
        CLIENT.into(),
        assertion,
        Some(ClientAssertionCredentialOptions {
            client_options: crate::rust_sdk_options(&setup),
        }),
    )
    .unwrap();
    for scope in [GRAPH, VAULT] {
        let token = credential.get_token(&[scope], None).await.unwrap();
        assert_eq!(claims(token.token.secret())["appid"], CLIENT);
    }
    let posts = setup.token_requests();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|r| r["status"] == 200), "{posts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_azure_core_pipeline_authenticates_with_the_credential() {
    // What examples/azure_pipeline.rs builds, pointed at the emulator's JWKS (a GET over
    // HTTPS the emulator answers whatever the bearer): the policy gets a token first.
    use azure_core::credentials::TokenCredential;
    use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
    use azure_core::http::{Context, Method, Pipeline, Request, Url};
    let setup = Setup::new(&[]);
    let signer: Arc<dyn Signer> =
        signer::open(&setup.app.keyref(), &certassert::secret::NoCallbacks)
            .unwrap()
            .into();
    let options = CredentialOptions {
        authority_host: setup.emulator.url.clone(),
        http: HttpOptions {
            ca_file: Some(setup.ca()),
            ..HttpOptions::default()
        },
        ..CredentialOptions::default()
    };
    let credential: Arc<dyn TokenCredential> = SignerCredential::new(
        signer,
        vec![setup.app.certificate()],
        TENANT,
        CLIENT,
        options,
    )
    .unwrap();
    let auth = BearerTokenAuthorizationPolicy::new(credential, [GRAPH]);
    let pipeline = Pipeline::new(
        None,
        None,
        crate::rust_sdk_options(&setup),
        Vec::new(),
        vec![Arc::new(auth)],
        None,
    );
    for _ in 0..2 {
        let url = Url::parse(&format!(
            "{}/{TENANT}/discovery/v2.0/keys",
            setup.emulator.url
        ))
        .unwrap();
        let answer = pipeline
            .send(&Context::new(), &mut Request::new(url, Method::Get), None)
            .await
            .unwrap();
        assert_eq!(u16::from(answer.status()), 200);
    }
    // One token for both requests.
    assert_eq!(setup.token_requests().len(), 1);
}

/// The point of it all: the key in an HSM (SoftHSM2, made by pkcs11-tool), the Rust
/// SDK's credential signing through it. Runs in a process of its own (SoftHSM2 reads its
/// configuration once per process).
#[cfg(feature = "pkcs11")]
#[test]
fn signer_credential_signs_with_a_softhsm2_key() {
    use crate::common::softhsm::isolated;
    isolated(
        "azure::signer_credential_signs_with_a_softhsm2_key",
        |hsm| {
            hsm.keypairgen("app", "01", &[]);
            let cert = hsm.dir.join("app.cert.pem");
            let out = hsm.certassert(&[
                "cert",
                "create",
                "--key",
                &hsm.uri("object=app"),
                "--subject",
                "CN=app",
                "--store",
                "--out",
                common::s(&cert),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
        |hsm| {
            let signer: Arc<dyn Signer> = signer::open(
                &hsm.uri("object=app").parse().unwrap(),
                &certassert::secret::NoCallbacks,
            )
            .unwrap()
            .into();
            // The certificate stored with the key in the token.
            let stored =
                certassert::cert::Certificate::from_der(signer.certificate_der().unwrap().to_vec())
                    .unwrap();
            let running = certassert::emulator::start(certassert::emulator::Config {
                apps: vec![certassert::emulator::App {
                    client_id: CLIENT.into(),
                    certificates: vec![stored.clone()],
                }],
                tenant: Some(TENANT.into()),
                tls: true,
                reject_jti_replay: true,
                ..certassert::emulator::Config::default()
            })
            .unwrap();
            let ca = common::write(&hsm.dir, "ca.pem", running.ca_pem().unwrap());
            let options = CredentialOptions {
                authority_host: running.url().to_string(),
                alg: Algorithm::Ps256,
                http: HttpOptions {
                    ca_file: Some(ca),
                    ..HttpOptions::default()
                },
                ..CredentialOptions::default()
            };
            let credential =
                SignerCredential::new(signer, vec![stored.clone()], TENANT, CLIENT, options)
                    .unwrap();
            let runtime = tokio::runtime::Runtime::new().unwrap();
            for scope in [GRAPH, VAULT] {
                let token = runtime
                    .block_on(credential.get_token(&[scope], None))
                    .unwrap();
                assert_eq!(claims(token.token.secret())["appid"], CLIENT);
            }
            let requests = running.requests();
            assert_eq!(requests.len(), 2);
            for r in &requests {
                assert_eq!(r.status, 200);
                let a = r.field("client_assertion").unwrap();
                let (input, sig) = a.rsplit_once('.').unwrap();
                common::rsa_crate_verify(
                    stored.spki_der(),
                    Algorithm::Ps256,
                    input.as_bytes(),
                    &common::b64url_decode(sig),
                )
                .unwrap();
            }
        },
    );
}
