//! Load for `ci/bench.sh`'s `serve` section: a keep-alive HTTP/1.1 load generator, and
//! the bare hyper server `certassert serve` is measured against.
//!
//! ```text
//! cargo run --release --example serve_bench -- bare BODY_BYTES
//! cargo run --release --example serve_bench -- load URL SECONDS CONNECTIONS [HEADER]...
//! cargo run --release --example serve_bench -- count URL REQUESTS CONNECTIONS [HEADER]...
//! ```
//!
//! `bare` serves a fixed JSON body of BODY_BYTES (the size of a `serve` answer) to any
//! request, with hyper on a two-thread tokio runtime as `serve` runs, and prints its URL.
//! `load` sends GET URL over CONNECTIONS kept-alive connections (one thread each, one
//! request at a time per connection) for SECONDS after a 0.5 s warm-up, each HEADER
//! (`Name: value`) added, and prints `requests/s: N  p50_ms: N  p99_ms: N  errors: N`.
//! `count` sends REQUESTS in all, then prints `sent: N  errors: N` (for RSS figures).
//! Any answer other than 200 counts as an error.

use std::io::{BufReader, Write as _};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bare") => bare(args.get(1).ok_or("bare BODY_BYTES")?.parse()?),
        Some("load") if args.len() >= 4 => {
            let seconds: f64 = args[2].parse()?;
            let stats = load(&args[1], &args[4..], args[3].parse()?, Limit::Time(seconds))?;
            let mut lat = stats.latencies;
            lat.sort_unstable();
            let pct = |p: f64| {
                lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                    .map_or(0.0, |us| *us as f64 / 1000.0)
            };
            println!(
                "requests/s: {:.0}  p50_ms: {:.3}  p99_ms: {:.3}  errors: {}",
                lat.len() as f64 / stats.elapsed.as_secs_f64(),
                pct(0.50),
                pct(0.99),
                stats.errors
            );
            Ok(())
        }
        Some("count") if args.len() >= 4 => {
            let stats = load(&args[1], &args[4..], args[3].parse()?, Limit::Count(args[2].parse()?))?;
            println!("sent: {}  errors: {}", stats.latencies.len() as u64 + stats.errors, stats.errors);
            Ok(())
        }
        _ => Err("usage: serve_bench bare BODY_BYTES | load URL SECONDS CONNECTIONS [HEADER]... | count URL REQUESTS CONNECTIONS [HEADER]...".into()),
    }
}

/// A fixed JSON body of `size` bytes, shaped like a token answer.
fn body(size: usize) -> Vec<u8> {
    let head = br#"{"access_token":""#;
    let tail = br#"","token_type":"Bearer"}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut out = head.to_vec();
    out.extend(std::iter::repeat_n(b'a', fill));
    out.extend_from_slice(tail);
    out
}

fn bare(size: usize) -> Result<()> {
    use http_body_util::Full;
    let body = bytes::Bytes::from(body(size));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(body));
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "application/json; charset=utf-8",
                            ),
                        );
                        r.headers_mut().insert(
                            hyper::header::CACHE_CONTROL,
                            hyper::header::HeaderValue::from_static("no-store"),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

enum Limit {
    Time(f64),
    Count(u64),
}

struct Stats {
    latencies: Vec<u32>,
    errors: u64,
    elapsed: Duration,
}

fn load(url: &str, headers: &[String], connections: usize, limit: Limit) -> Result<Stats> {
    let rest = url.strip_prefix("http://").ok_or("URL must be http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = Arc::new(request.into_bytes());
    let measuring = Arc::new(AtomicBool::new(matches!(limit, Limit::Count(_))));
    let stop = Arc::new(AtomicBool::new(false));
    let remaining = Arc::new(AtomicU64::new(match limit {
        Limit::Count(n) => n,
        Limit::Time(_) => u64::MAX,
    }));
    let threads: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (request, measuring, stop, remaining) = (
                request.clone(),
                measuring.clone(),
                stop.clone(),
                remaining.clone(),
            );
            let authority = authority.to_string();
            std::thread::spawn(move || -> std::io::Result<(Vec<u32>, u64)> {
                let stream = TcpStream::connect(&authority)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut writer = stream.try_clone()?;
                let mut reader = BufReader::new(stream);
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    if remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_err()
                    {
                        break;
                    }
                    let started = Instant::now();
                    writer.write_all(&request)?;
                    let ok = read_answer(&mut reader)? == 200;
                    if measuring.load(Ordering::Relaxed) {
                        if ok {
                            latencies
                                .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            errors += 1;
                        }
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let started = match limit {
        Limit::Time(seconds) => {
            std::thread::sleep(Duration::from_millis(500));
            measuring.store(true, Ordering::Relaxed);
            let started = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(seconds));
            stop.store(true, Ordering::Relaxed);
            started
        }
        Limit::Count(_) => Instant::now(),
    };
    let mut stats = Stats {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for t in threads {
        let (latencies, errors) = t.join().map_err(|_| "a load thread panicked")??;
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.elapsed = match limit {
        Limit::Time(seconds) => Duration::from_secs_f64(seconds),
        Limit::Count(_) => started.elapsed(),
    };
    Ok(stats)
}

/// Read one answer with a Content-Length; its status.
fn read_answer(reader: &mut impl std::io::BufRead) -> std::io::Result<u16> {
    let (mut status, mut length) = (0u16, 0usize);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            status = rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
        } else if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}
