//! Slow, silent and too many connections: the header, body and idle timeouts and the
//! connection cap, with timeouts of one second so the tests are quick.

use crate::{Fixture, TENANT};
use certassert::emulator::Config;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn quick_config(max_connections: usize) -> Config {
    Config {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        max_connections,
        ..Config::default()
    }
}

/// Read until the peer closes or errors; how long that took.
fn time_to_close(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn a_stalled_request_head_or_body_is_disconnected_within_the_timeout() {
    let f = Fixture::new(quick_config(64));
    let addr = f.running.url().trim_start_matches("http://").to_string();
    // Half a request line, then nothing.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /t/oauth2/v2.0/tok").unwrap();
    let took = time_to_close(&mut slow);
    assert!(took < Duration::from_secs(8), "held {took:?}");
    // Connected, silent.
    let mut silent = TcpStream::connect(&addr).unwrap();
    let took = time_to_close(&mut silent);
    assert!(took < Duration::from_secs(8), "held {took:?}");
    // A whole head, a body that never comes.
    let mut body = TcpStream::connect(&addr).unwrap();
    body.write_all(
        format!("POST /{TENANT}/oauth2/v2.0/token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant").as_bytes(),
    )
    .unwrap();
    let took = time_to_close(&mut body);
    assert!(took < Duration::from_secs(8), "held {took:?}");
    // Kept alive after an answer, then idle.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(format!("GET /nowhere HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let took = time_to_close(&mut idle);
    assert!(took < Duration::from_secs(8), "held {took:?}");
}

#[test]
fn idle_connections_beyond_the_cap_neither_block_service_nor_grow_the_emulator() {
    let cap = 4;
    let f = Fixture::new(quick_config(cap));
    let addr = f.running.url().trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..4 * cap)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        f.running.open_connections() <= cap,
        "{} connections open, cap {cap}",
        f.running.open_connections()
    );
    // A normal request is served once the idle ones time out.
    let start = Instant::now();
    let (status, body) = f.post(&f.sign(&f.header(), &f.claims(&f.endpoint())), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    assert!(f.running.open_connections() <= cap);
    drop(idle);
}
