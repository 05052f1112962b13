//! The library's HTTP client: what is retried (429 with Retry-After, 503, timeouts,
//! refused connections) and what is final (400, 401, an untrusted server certificate),
//! HTTPS with the emulator's CA, plain http refused to hosts that are not loopback, and a
//! client shared between threads.

use crate::common;
use crate::common::emulator::start;
use crate::{graph, quick, request, Fixture, CLIENT, TENANT};
use certassert::emulator::{Fault, Running};
use certassert::entra::{Client, Error, Grant, HttpOptions, Target, TokenRequest};
use certassert::Algorithm;
use std::time::{Duration, Instant};

#[test]
fn throttling_and_unavailability_are_retried_a_bad_request_is_not() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(quick(), None);
    let cred = f.credential(Algorithm::Rs256);
    let req = request(&running, graph(), Grant::ClientCredentials);

    running.push_fault(Fault::TooManyRequests { retry_after: 1 });
    let t = Instant::now();
    let out = client.acquire(&cred, &req).unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(out.attempts, 2);
    let log = running.requests();
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert_ne!(
        log[0].field("client_assertion"),
        log[1].field("client_assertion")
    );

    running.push_fault(Fault::Unavailable);
    assert_eq!(client.acquire(&cred, &req).unwrap().attempts, 2);
    assert_eq!(running.requests().len(), 4);

    // Three failures: give up after the third attempt, showing the last answer.
    for _ in 0..3 {
        running.push_fault(Fault::Unavailable);
    }
    let e = client.acquire(&cred, &req).unwrap_err();
    assert!(matches!(e, Error::NotOAuth { status: 503, .. }), "{e}");
    assert!(
        // Not JSON: shown as its length and content type, never as text (it could hold a token).
        e.to_string().contains("HTTP 503") && e.to_string().contains("bytes of text/html"),
        "{e}"
    );
    assert_eq!(running.requests().len(), 7);

    // A 400 is final.
    let bad = request(
        &running,
        Target::Scopes(vec!["https://graph.microsoft.com/User.Read".into()]),
        Grant::ClientCredentials,
    );
    let e = client.acquire(&cred, &bad).unwrap_err();
    assert_eq!(e.entra().unwrap().status, 400);
    assert_eq!(running.requests().len(), 8);
    // So is a 401 invalid_client.
    let mut unknown = req.clone();
    unknown.client_id = "00000000-0000-0000-0000-000000000009".into();
    assert!(client.acquire(&cred, &unknown).is_err());
    assert_eq!(running.requests().len(), 9);
}

#[test]
fn a_slow_answer_times_out_and_is_retried_a_malformed_one_is_reported() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, false);
    let client = Client::new(
        HttpOptions {
            timeout: Duration::from_millis(700),
            ..quick()
        },
        None,
    );
    let cred = f.credential(Algorithm::Rs256);
    let req = request(&running, graph(), Grant::ClientCredentials);
    running.push_fault(Fault::Slow(Duration::from_millis(2000)));
    let out = client.acquire(&cred, &req).unwrap();
    assert_eq!(out.attempts, 2);

    running.push_fault(Fault::Malformed);
    let before = running.requests().len();
    let e = client.acquire(&cred, &req).unwrap_err();
    assert!(matches!(e, Error::NotOAuth { status: 200, .. }), "{e}");
    // A truncated body may hold the start of a token: only its length and type are shown.
    let text = e.to_string();
    assert!(!text.contains("trunc") && text.contains("bytes of "), "{e}");
    assert_eq!(running.requests().len(), before + 1);
}

#[test]
fn connection_errors_are_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new();
    let client = Client::new(quick(), None);
    let req = TokenRequest {
        endpoint: format!("http://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token"),
        client_id: CLIENT.into(),
        target: graph(),
        grant: Grant::ClientCredentials,
        claims: None,
    };
    let e = client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    assert!(matches!(e, Error::Network { attempts: 3, .. }), "{e}");
}

#[test]
fn https_with_the_generated_ca() {
    let f = Fixture::new();
    let running = start(&[&f.app], None, true);
    assert!(running.url().starts_with("https://127.0.0.1:"));
    let ca = common::write(f.dir.path(), "ca.pem", running.ca_pem().unwrap());
    // openssl agrees the server certificate chains to the CA, for 127.0.0.1.
    let client = Client::new(
        HttpOptions {
            ca_file: Some(ca.clone()),
            ..quick()
        },
        None,
    );
    let req = request(&running, graph(), Grant::ClientCredentials);
    client
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap();
    assert_eq!(running.requests()[0].status, 200);
    // Without the CA, the server is not trusted and nothing is answered.
    let e = Client::new(quick(), None)
        .acquire(&f.credential(Algorithm::Rs256), &req)
        .unwrap_err();
    assert!(matches!(e, Error::Network { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // An untrusted server certificate is final: asking again would get the same answer.
    assert!(
        matches!(e, Error::Network { attempts: 1, .. }),
        "TLS refusal must not be retried: {e:?}"
    );
    assert_eq!(running.requests().len(), 1);
    // A --ca-file that holds no certificate is an error before anything is sent.
    let empty = common::write(f.dir.path(), "empty.pem", "nothing");
    let e = Client::new(
        HttpOptions {
            ca_file: Some(empty),
            ..quick()
        },
        None,
    )
    .acquire(&f.credential(Algorithm::Rs256), &req)
    .unwrap_err();
    assert!(matches!(e, Error::CaFile { .. }), "{e}");
    assert!(e.to_string().contains("CA file"), "{e}");
}

#[test]
fn the_library_refuses_plain_http_to_other_hosts_before_sending() {
    use certassert::entra::authority::{Error as EndpointError, UrlProblem, UrlRole};
    let f = Fixture::new();
    let client = Client::new(quick(), None);
    for endpoint in [
        "http://10.1.2.3/t/oauth2/v2.0/token",
        "http://127.0.0.1.evil.example/t/oauth2/v2.0/token",
        "http://localhost@evil.example/t/oauth2/v2.0/token",
    ] {
        let req = TokenRequest {
            endpoint: endpoint.into(),
            client_id: CLIENT.into(),
            target: graph(),
            grant: Grant::ClientCredentials,
            claims: None,
        };
        let e = client
            .acquire(&f.credential(Algorithm::Rs256), &req)
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Endpoint(EndpointError::Url {
                    role: UrlRole::TokenUrl,
                    problem: UrlProblem::PlainHttp,
                    ..
                })
            ),
            "{endpoint}: {e}"
        );
    }
}

#[test]
fn a_client_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Client>();
    shareable::<Running>();
}
