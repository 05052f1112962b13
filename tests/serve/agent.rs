//! The agent: single flight, back-off after Entra's refusal, background refresh,
//! certificate re-reads, several identities, and a graceful stop.

use super::*;
use certassert::cert::Certificate;
use certassert::emulator::{App, Fault};

/// The header of the client assertion in a recorded POST.
fn assertion_header(form: &[(String, String)]) -> Value {
    let jwt = &form
        .iter()
        .find(|(k, _)| k == "client_assertion")
        .expect("a client assertion")
        .1;
    serde_json::from_slice(&b64url_decode(jwt.split('.').next().unwrap())).unwrap()
}

#[test]
fn a_hundred_concurrent_cold_requests_make_one_signature_and_one_post() {
    let f = Fixture::new(|c| c.max_connections = 128);
    let addr = f.addr();
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                app_service(addr, VAULT, None)
            })
        })
        .collect();
    let answers: Vec<Answer> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let tokens: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}", a.body);
            a.json()["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "all 100 got the one token");
    assert_eq!(f.posts(), 1, "one upstream POST");
    assert_eq!(f.signer.signatures(), 1, "one signature");
    assert_eq!(f.agent().fetches(), 1);
    let lines = f.request_lines();
    assert_eq!(lines.len(), 100);
    assert_eq!(lines.iter().filter(|l| l.contains("cache=miss")).count(), 1);
}

#[test]
fn a_refused_credential_is_answered_with_the_aadsts_code_and_hint_and_backs_off() {
    let dir = tempdir();
    let registered = AppFiles::new(dir.path(), "registered", CLIENT);
    // Same client id, another key and certificate: Entra answers AADSTS700027.
    let stranger = AppFiles::new(dir.path(), "stranger", CLIENT);
    let emulator = common::emulator::start(&[&registered], Some(TENANT), false);
    let signer = Arc::new(Counting::new(
        signer::open(&stranger.keyref(), &certassert::secret::NoCallbacks).unwrap(),
    ));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(identity(&stranger, signer.clone(), &emulator), events);
    // Long enough that a loaded machine answers all eleven requests within it.
    config.backoff = Duration::from_secs(2);
    let agent = serve::start(config).unwrap();
    let posts = || {
        emulator
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let addr = agent.addr();
            std::thread::spawn(move || app_service(addr, VAULT, None))
        })
        .collect();
    for t in threads {
        let a = t.join().unwrap();
        assert_eq!(a.status, 400, "{}", a.body);
        let body = a.json();
        assert_eq!(body["error"], "invalid_client");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with("AADSTS700027"), "{description}");
        assert!(
            description.contains("\nhint: the certificate"),
            "{description}"
        );
        assert!(body.get("access_token").is_none());
    }
    // Within the back-off the refusal is answered from memory.
    let again = app_service(agent.addr(), VAULT, None);
    assert_eq!(again.status, 400);
    assert_eq!(posts(), 1, "one POST for eleven requests");
    assert_eq!(signer.signatures(), 1);
    // After it, Entra is asked again (and refuses again).
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(app_service(agent.addr(), VAULT, None).status, 400);
    assert_eq!(posts(), 2);
}

/// A key whose first `failures` signatures fail, as a device that drops out and comes back.
#[derive(Debug)]
struct Flaky {
    inner: Box<dyn Signer>,
    failures: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Signer for Flaky {
    fn algorithms(&self) -> &[Algorithm] {
        self.inner.algorithms()
    }
    fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, certassert::signer::Error> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call < self.failures {
            return Err(certassert::signer::Error::Sign {
                backend: "test",
                detail: format!("device gone (failure {})", call + 1),
            });
        }
        self.inner.sign(alg, message)
    }
    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }
}

#[test]
fn a_key_that_fails_and_comes_back_is_retried_after_the_first_back_off_not_a_doubled_one() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let emulator = common::emulator::start(&[&app], Some(TENANT), false);
    let flaky = Arc::new(Flaky {
        inner: signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap(),
        failures: 4,
        calls: Default::default(),
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(identity(&app, flaky.clone(), &emulator), events);
    config.backoff = Duration::from_millis(400);
    config.max_backoff = Duration::from_secs(60);
    let agent = serve::start(config).unwrap();
    let calls = || flaky.calls.load(std::sync::atomic::Ordering::SeqCst);
    // Four failed signatures in a row, each after the back-off of the one before: a local
    // failure is answered 500 with what failed, and Entra is not asked.
    for failure in 1..=4 {
        let a = app_service(agent.addr(), VAULT, None);
        assert_eq!(a.status, 500, "{}", a.body);
        assert_eq!(a.json()["error"], "internal_error");
        let description = a.json()["error_description"].as_str().unwrap().to_string();
        assert!(
            description.contains(&format!("device gone (failure {failure})")),
            "{description}"
        );
        assert_eq!(calls(), failure, "one signature per failure");
        // Within the back-off the failure is answered from memory, with no signature.
        assert_eq!(app_service(agent.addr(), VAULT, None).status, 500);
        assert_eq!(calls(), failure);
        std::thread::sleep(Duration::from_millis(450));
    }
    assert_eq!(emulator.requests().len(), 0, "nothing was sent upstream");
    // The key is back: a doubling back-off would still hold (3.2 s after the fourth
    // failure); a local failure's back-off does not grow, so the next request signs.
    let a = app_service(agent.addr(), VAULT, None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(calls(), 5);
}

#[test]
fn tokens_are_renewed_in_the_background_before_they_expire() {
    // The emulator's tokens live 3599 s; renewing 3597 s before expiry means in 2 s.
    let f = Fixture::new(|c| c.refresh_before = Duration::from_secs(3597));
    let first = app_service(f.addr(), VAULT, None).json()["access_token"].clone();
    assert_eq!(f.posts(), 1);
    assert!(
        wait_for(Duration::from_secs(10), || f.posts() == 2),
        "a second POST without a request"
    );
    assert!(wait_for(Duration::from_secs(5), || f
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Refreshed { error: None, .. }))));
    let second = app_service(f.addr(), VAULT, None);
    assert_ne!(second.json()["access_token"], first, "the renewed token");
    assert!(f.request_lines()[1].contains("cache=hit"));
    assert_eq!(f.posts(), 2);
}

#[test]
fn a_renewed_certificate_is_used_without_a_restart() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    // The renewal: a new certificate for the same key, registered too.
    let renewed = dir.path().join("renewed.pem");
    common::openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        common::s(&app.key),
        "-subj",
        "/CN=renewed",
        "-days",
        "30",
        "-out",
        common::s(&renewed),
    ]);
    let renewed_cert = Certificate::load_chain(&renewed).unwrap().remove(0);
    let emulator = certassert::emulator::start(certassert::emulator::Config {
        apps: vec![App {
            client_id: CLIENT.into(),
            certificates: vec![app.certificate(), renewed_cert.clone()],
        }],
        tenant: Some(TENANT.into()),
        ..Default::default()
    })
    .unwrap();
    let signer: Arc<dyn Signer> =
        Arc::from(signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(identity(&app, signer, &emulator), events.clone());
    config.reload_interval = Duration::from_millis(100);
    let agent = serve::start(config).unwrap();
    let x5t_of_last_post = || {
        let posts: Vec<_> = emulator
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(posts.last().unwrap().status, 200);
        assertion_header(&posts.last().unwrap().form)["x5t"].clone()
    };
    assert_eq!(
        app_service(agent.addr(), "https://one.example", None).status,
        200
    );
    assert_eq!(x5t_of_last_post(), app.certificate().x5t());
    let loaded =
        |changed: bool| {
            let events = events.clone();
            move || {
                events.lock().unwrap().iter().any(
                    |e| matches!(e, Event::CertificateLoaded { changed: c, .. } if *c == changed),
                )
            }
        };
    // Replaced the way a renewal tool replaces it: a new file renamed over the old.
    let staged = dir.path().join("staged.pem");
    std::fs::copy(&renewed, &staged).unwrap();
    std::fs::rename(&staged, &app.cert).unwrap();
    assert!(wait_for(Duration::from_secs(5), loaded(true)), "noticed");
    assert_eq!(
        app_service(agent.addr(), "https://two.example", None).status,
        200
    );
    assert_eq!(x5t_of_last_post(), renewed_cert.x5t());
    // SIGHUP's reload re-reads it even unchanged.
    agent.reload();
    assert!(wait_for(Duration::from_secs(5), loaded(false)));
    // A certificate for another key is refused; the one in use stays.
    let other = AppFiles::new(dir.path(), "other", "x");
    std::fs::copy(&other.cert, &staged).unwrap();
    std::fs::rename(&staged, &app.cert).unwrap();
    assert!(wait_for(Duration::from_secs(5), || events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::CertificateRefused { .. }))));
    assert_eq!(
        app_service(agent.addr(), "https://three.example", None).status,
        200
    );
    assert_eq!(x5t_of_last_post(), renewed_cert.x5t());
}

#[test]
fn a_requests_client_id_picks_the_identity_and_none_picks_the_first() {
    let dir = tempdir();
    let first = AppFiles::new(dir.path(), "first", CLIENT);
    let second = AppFiles::new(dir.path(), "second", "0a1b2c3d-0000-4000-8000-000000000002");
    let emulator = common::emulator::start(&[&first, &second], Some(TENANT), false);
    let open = |a: &AppFiles| -> Arc<dyn Signer> {
        Arc::from(signer::open(&a.keyref(), &certassert::secret::NoCallbacks).unwrap())
    };
    let mut config = config(
        identity(&first, open(&first), &emulator),
        Arc::new(Mutex::new(Vec::new())),
    );
    config
        .identities
        .push(identity(&second, open(&second), &emulator));
    let agent = serve::start(config.clone()).unwrap();
    let appid = |client: Option<&str>| {
        let a = app_service(agent.addr(), VAULT, client);
        assert_eq!(a.status, 200, "{}", a.body);
        let body = a.json();
        let claims = issued_by(&emulator, body["access_token"].as_str().unwrap());
        assert_eq!(claims["appid"], body["client_id"]);
        claims["appid"].as_str().unwrap().to_string()
    };
    assert_eq!(appid(None), CLIENT);
    assert_eq!(appid(Some(&second.client_id)), second.client_id);
    assert_eq!(appid(Some(&CLIENT.to_ascii_uppercase())), CLIENT);
    drop(agent);
    // Two identities with one client id could not be told apart.
    config.identities.push(config.identities[0].clone());
    assert!(matches!(
        serve::start(config),
        Err(serve::Error::DuplicateClientId { .. })
    ));
}

#[test]
fn shutdown_finishes_the_request_in_flight_then_closes_the_key() {
    let f = Fixture::new(|_| {});
    let addr = f.addr();
    f.emulator
        .push_fault(Fault::Slow(Duration::from_millis(800)));
    let in_flight = std::thread::spawn(move || app_service(addr, VAULT, None));
    assert!(wait_for(Duration::from_secs(5), || f.agent().fetches() == 1));
    let mut f = f;
    let started = Instant::now();
    f.agent.take().unwrap().shutdown();
    assert!(started.elapsed() < Duration::from_secs(6));
    let a = in_flight.join().unwrap();
    assert_eq!(
        a.status, 200,
        "the request in flight was answered: {}",
        a.body
    );
    // Nothing listens any more, and the agent let go of the key: ours is the last handle.
    assert!(TcpStream::connect(addr).is_err());
    assert_eq!(Arc::strong_count(&f.signer), 1);
}

#[test]
fn a_request_waits_for_its_token_no_longer_than_the_request_timeout() {
    let f = Fixture::new(|c| c.request_timeout = Duration::from_millis(500));
    f.emulator
        .push_fault(Fault::Slow(Duration::from_millis(3000)));
    let started = Instant::now();
    let a = app_service(f.addr(), VAULT, None);
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(a.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("no token within 0.5 s"));
    // The fetch finished in the background: the next request is answered from memory.
    assert!(wait_for(Duration::from_secs(5), || f.posts() == 1));
    let again = app_service(f.addr(), VAULT, None);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(f.posts(), 1);
}

#[test]
fn tokens_for_more_resources_than_the_agent_keeps_are_refused_and_held_ones_still_served() {
    let f = Fixture::new(|c| c.max_resources = 2);
    for resource in ["https://one.example", "https://two.example"] {
        assert_eq!(app_service(f.addr(), resource, None).status, 200);
    }
    let third = app_service(f.addr(), "https://three.example", None);
    assert_eq!(third.status, 503, "{}", third.body);
    assert!(
        third.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("already holds tokens for 2 resources, the most it keeps"),
        "{}",
        third.body
    );
    assert_eq!(
        app_service(f.addr(), "https://one.example", None).status,
        200
    );
    assert_eq!(
        f.posts(),
        2,
        "the refused resource was not asked for upstream"
    );
}
