//! The two protocols over real HTTP: the answers' shapes, and every refusal — none of
//! which costs an upstream request or hands out a token.

use super::*;

#[test]
fn app_service_and_imds_answer_with_the_emulators_token_numbers_as_strings() {
    let f = Fixture::new(|_| {});
    let addr = f.addr();
    let a = app_service(addr, &format!("{VAULT}/.default"), None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a
        .headers
        .iter()
        .any(|(k, v)| k == "cache-control" && v == "no-store"));
    let body = a.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "client_id",
            "expires_on",
            "resource",
            "token_type"
        ]
    );
    assert_eq!(body["resource"], VAULT);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["client_id"], CLIENT);
    let expires_on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(
        (3000..=3600).contains(&(expires_on - common::now())),
        "{expires_on}"
    );
    let claims = issued_by(&f.emulator, body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], VAULT);
    assert_eq!(claims["appid"], CLIENT);
    // The emulator saw the v2 scope RESOURCE/.default.
    let posts: Vec<_> = f
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    assert!(posts[0]
        .path
        .ends_with(&format!("/{TENANT}/oauth2/v2.0/token")));
    let scope = posts[0].form.iter().find(|(k, _)| k == "scope").unwrap();
    assert_eq!(scope.1, format!("{VAULT}/.default"));

    // IMDS, the resource without /.default: the same token, from memory.
    let i = raw(
        addr,
        &format!("GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource={} HTTP/1.1\r\nHost: localhost:{}\r\nMetadata: true", enc(VAULT), addr.port()),
    );
    assert_eq!(i.status, 200, "{}", i.body);
    let imds = i.json();
    for field in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
        let text = imds[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is a string: {imds}"));
        assert!(text.parse::<i64>().is_ok(), "{field}: {text}");
    }
    assert_eq!(imds["access_token"], body["access_token"]);
    assert_eq!(f.posts(), 1);
    assert_eq!(f.signer.signatures(), 1);
    let lines = f.request_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "GET /msi/token resource={VAULT} client={CLIENT} cache=miss status=200 "
        )),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("cache=hit status=200"), "{}", lines[1]);
}

#[test]
fn every_refusal_is_answered_without_a_token_or_an_upstream_request() {
    let f = Fixture::new(|_| {});
    let addr = f.addr();
    let host = format!("Host: {addr}");
    let q = format!("api-version=2019-08-01&resource={}", enc(VAULT));
    let imds = format!(
        "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
        enc(VAULT)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "no identity header",
            format!("GET /msi/token?{q} HTTP/1.1\r\n{host}"),
            401,
            "X-IDENTITY-HEADER header is missing",
        ),
        (
            "a wrong identity header",
            format!("GET /msi/token?{q} HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}x"),
            401,
            "does not match",
        ),
        (
            "IMDS without Metadata: true",
            format!("{imds} HTTP/1.1\r\n{host}"),
            400,
            "Metadata: true",
        ),
        (
            "IMDS with Metadata: false",
            format!("{imds} HTTP/1.1\r\n{host}\r\nMetadata: false"),
            400,
            "Metadata: true",
        ),
        (
            "X-Forwarded-For",
            format!("GET /msi/token?{q} HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}\r\nX-Forwarded-For: 127.0.0.1"),
            400,
            "proxy",
        ),
        (
            "IMDS through a proxy",
            format!("{imds} HTTP/1.1\r\n{host}\r\nMetadata: true\r\nX-Forwarded-For: 10.1.2.3"),
            400,
            "proxy",
        ),
        (
            "a non-loopback Host",
            format!("GET /msi/token?{q} HTTP/1.1\r\nHost: 169.254.169.254\r\nX-IDENTITY-HEADER: {SECRET}"),
            400,
            "not a loopback address",
        ),
        (
            "a rebinding name",
            format!("{imds} HTTP/1.1\r\nHost: attacker.example:{}\r\nMetadata: true", addr.port()),
            400,
            "not a loopback address",
        ),
        (
            "an unknown client_id",
            format!("GET /msi/token?{q}&client_id=someone-else HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}"),
            400,
            "client_id someone-else is not an identity this agent serves",
        ),
        (
            "an object_id",
            format!("GET /msi/token?{q}&object_id=x HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}"),
            400,
            "name the identity by client_id",
        ),
        (
            "no resource",
            format!("GET /msi/token?api-version=2019-08-01 HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}"),
            400,
            "resource is missing",
        ),
        (
            "an old api-version",
            format!("GET /msi/token?api-version=2017-09-01&resource=r HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}"),
            400,
            "use 2019-08-01",
        ),
        (
            "another path",
            format!("GET /oauth2/token HTTP/1.1\r\n{host}"),
            404,
            "no such endpoint",
        ),
        (
            "POST",
            format!("POST /msi/token?{q} HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}\r\nContent-Length: 0"),
            405,
            "use GET",
        ),
        (
            "a body",
            format!("GET /msi/token?{q} HTTP/1.1\r\n{host}\r\nX-IDENTITY-HEADER: {SECRET}\r\nContent-Length: 4\r\n\r\nabcd"),
            413,
            "has no body",
        ),
    ];
    for (what, head, status, says) in &cases {
        let a = raw(addr, head);
        assert_eq!(a.status, *status, "{what}: {}", a.body);
        let body = a.json();
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{what}: {description}");
        assert!(body.get("access_token").is_none(), "{what}");
        assert!(!a.body.contains(SECRET), "{what}: the secret is not echoed");
    }
    assert_eq!(f.posts(), 0, "no refusal reaches Entra");
    assert_eq!(f.signer.signatures(), 0);
    // Each request is one log line, and none holds the secret.
    let lines = f.request_lines();
    assert_eq!(lines.len(), cases.len(), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains(SECRET)), "{lines:?}");
    assert!(lines[0].contains("status=401"), "{}", lines[0]);
}

#[test]
fn oversized_and_slow_requests_are_cut_off() {
    let f = Fixture::new(|_| {});
    let addr = f.addr();
    // A request head over 8 KiB: 431, the head unread.
    let padding = "a".repeat(16 * 1024);
    let a = raw(
        addr,
        &format!("GET /msi/token?api-version=2019-08-01&resource=r HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {padding}"),
    );
    assert_eq!(a.status, 431, "{a:?}");
    // A client that sends half a head and stops is disconnected at the header timeout
    // (1 s here), not held forever.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /msi/token HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "cut off after {waited:?}"
    );
    // A connection that sends nothing at all, likewise.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let _ = idle.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(f.posts(), 0);
}

#[test]
fn a_non_loopback_listen_address_is_refused_with_the_reason() {
    let dir = tempdir();
    let app = AppFiles::new(dir.path(), "app", CLIENT);
    let signer: Arc<dyn Signer> =
        Arc::from(signer::open(&app.keyref(), &certassert::secret::NoCallbacks).unwrap());
    let identity = Identity::new(signer, vec![app.certificate()], Some(TENANT.into()), CLIENT);
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:80"] {
        let mut config = Config::new(
            listen.parse().unwrap(),
            vec![identity.clone()],
            Secret::new(SECRET.into()),
        );
        config.log = None;
        let e = serve::start(config).unwrap_err();
        assert!(matches!(e, serve::Error::NotLoopback { .. }), "{e:?}");
        assert!(
            e.to_string().contains("listens on 127.0.0.1 or [::1] only"),
            "{e}"
        );
    }
    // A short secret is refused before anything listens.
    let config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![identity],
        Secret::new("short".into()),
    );
    assert!(matches!(serve::start(config), Err(serve::Error::BadSecret)));
}

#[test]
fn imds_can_be_turned_off() {
    let f = Fixture::new(|c| c.imds = false);
    let addr = f.addr();
    let a = raw(
        addr,
        &format!("GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=r HTTP/1.1\r\nHost: {addr}\r\nMetadata: true"),
    );
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("IMDS endpoint is turned off"));
    assert_eq!(app_service(addr, VAULT, None).status, 200);
    assert_eq!(f.posts(), 1);
}
