//! Transport: the accept loop (plain or TLS via tokio-rustls with the aws-lc-rs
//! provider), HTTP/1.1 via hyper, routing (the token endpoints, and the discovery
//! documents and JWKS of [`discovery`](super::discovery)), the fault switches and the
//! request log.

use super::config::{Fault, Recorded};
use super::discovery;
use super::error::Error;
use super::grants;
use super::state::{software_key, Refusal, State};
use crate::encoding::uuid_v4;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Answer = Response<Full<Bytes>>;

/// A TLS acceptor with a fresh CA and a loopback server certificate; returns the CA PEM.
pub(super) fn tls_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), Error> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let keys = |e: &dyn std::fmt::Display| Error::Keys(e.to_string());
    let ca_key = software_key()?;
    let server_der = crate::signer::generate_software_key(2048).map_err(|e| keys(&e))?;
    let server_key =
        crate::signer::SoftwareSigner::from_pkcs8_der(&server_der).map_err(|e| keys(&e))?;
    let (ca, server) =
        super::tls::create_loopback_tls(&ca_key, &server_key, 30, crate::encoding::unix_now())
            .map_err(|e| keys(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(server.der().to_vec()),
                CertificateDer::from(ca.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_der.to_vec())),
        )
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca.to_pem(),
    ))
}

/// Accept connections until `stop` fires: at most `max_connections` at once (beyond it
/// new ones wait in the listen backlog), each bounded by the header and body timeouts.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(
        state.config.max_connections.max(1),
    ));
    loop {
        // A free slot first, then a connection: a full house leaves new ones in the
        // backlog rather than spawning a task per connection.
        let slot = tokio::select! {
            _ = &mut stop => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = Open::new(&state);
            let header_timeout = state.config.header_timeout;
            let served = state.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = served.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            // hyper starts this timer whenever it waits for a request head: on a new
            // connection and after each answer on a kept-alive one (the idle timeout).
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            match tls {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

/// Counts a connection in [`State::open`] while it lives.
struct Open(Arc<State>);

impl Open {
    fn new(state: &Arc<State>) -> Self {
        state.open.fetch_add(1, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn answer(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(content_type).expect("static content type"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

fn json(status: u16, value: &serde_json::Value) -> Answer {
    answer(
        status,
        "application/json; charset=utf-8",
        value.to_string().into_bytes(),
    )
}

async fn handle(state: &State, req: Request<Incoming>) -> Answer {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    if method == "GET" && path == "/_emulator/requests" {
        let log = state.log.lock().expect("log").clone();
        return json(200, &serde_json::to_value(log).unwrap_or_default());
    }
    let header = |name: &str| req.headers().get(name).and_then(|h| h.to_str().ok());
    let content_type = header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let correlation_id = header("client-request-id").map_or_else(uuid_v4, str::to_string);
    let authorization = header("authorization").map(str::to_string);
    let body = Limited::new(req.into_body(), 256 * 1024).collect();
    let body = match tokio::time::timeout(state.config.body_timeout, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return answer(413, "text/plain", b"request body too large".to_vec()),
        Err(_) => {
            let mut r = answer(
                408,
                "text/plain",
                b"the request body did not arrive in time".to_vec(),
            );
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    let form: Vec<(String, String)> =
        if content_type.starts_with("application/x-www-form-urlencoded") {
            serde_urlencoded::from_bytes(&body).unwrap_or_default()
        } else {
            Vec::new()
        };
    let mut record = Recorded {
        method: method.clone(),
        path: path.clone(),
        form: form.clone(),
        status: 0,
        error_code: None,
    };
    // Discovery documents and keys are never faulted: faults are for token requests.
    if let Some(result) = documents(state, &method, &path, &query) {
        let response = match result {
            Ok(body) => {
                let mut r = json(200, &body);
                r.headers_mut().insert(
                    hyper::header::CACHE_CONTROL,
                    hyper::header::HeaderValue::from_static("max-age=86400, private"),
                );
                r
            }
            Err(refusal) => {
                record.error_code = Some(refusal.code);
                json(
                    refusal.status,
                    &refusal.body(&state.base_url, &correlation_id),
                )
            }
        };
        return finish(state, record, response);
    }
    let fault = state.faults.lock().expect("faults").pop_front();
    let response = match fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut r = json(
                429,
                &serde_json::json!({"error":"temporarily_unavailable","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop. Please contact your app vendor.","error_codes":[50196]}),
            );
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(retry_after),
            );
            r
        }
        Some(Fault::Unavailable) => answer(
            503,
            "text/html",
            b"<html><body>Service Unavailable</body></html>".to_vec(),
        ),
        Some(Fault::Malformed) => answer(
            200,
            "application/json",
            b"{\"access_token\": \"trunc".to_vec(),
        ),
        Some(Fault::Answer { status, body }) => {
            answer(status, "application/json", body.into_bytes())
        }
        Some(Fault::Slow(_)) | None => {
            if let Some(Fault::Slow(delay)) = fault {
                tokio::time::sleep(delay).await;
            }
            match super::graph::route(
                state,
                &method,
                &path,
                authorization.as_deref(),
                &body,
                &correlation_id,
            ) {
                Some((status, Some(v))) => json(status, &v),
                Some((status, None)) => answer(status, "text/plain", Vec::new()),
                None => route(
                    state,
                    &method,
                    &path,
                    &content_type,
                    &form,
                    &correlation_id,
                    &mut record,
                ),
            }
        }
    };
    finish(state, record, response)
}

/// Record the answer, tell the observer, and hand the answer back.
fn finish(state: &State, mut record: Recorded, response: Answer) -> Answer {
    record.status = response.status().as_u16();
    if let Some(observer) = &state.config.observer {
        (observer.0)(&record);
    }
    state.log.lock().expect("log").push(record);
    response
}

/// The discovery documents, instance discovery and the JWKS, if `path` is one of them.
fn documents(
    state: &State,
    method: &str,
    path: &str,
    query: &[(String, String)],
) -> Option<Result<serde_json::Value, Refusal>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match segments.as_slice() {
        ["common", "discovery", "instance"] => discovery::instance(state, query),
        [t, "v2.0", ".well-known", "openid-configuration"] => {
            discovery::openid_configuration(state, t, false)
        }
        [t, ".well-known", "openid-configuration"] => {
            discovery::openid_configuration(state, t, true)
        }
        [t, "discovery", "v2.0", "keys"] | [t, "discovery", "keys"] => discovery::jwks(state, t),
        _ => return None,
    };
    if method != "GET" {
        return Some(Err(Refusal::new(
            405,
            "invalid_request",
            900561,
            format!("The endpoint only accepts GET requests. Received a {method} request."),
        )));
    }
    Some(result)
}

#[allow(clippy::too_many_arguments)]
fn route(
    state: &State,
    method: &str,
    path: &str,
    content_type: &str,
    form: &[(String, String)],
    correlation_id: &str,
    record: &mut Recorded,
) -> Answer {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (tenant, v1) = match segments.as_slice() {
        [t, "oauth2", "v2.0", "token"] => (*t, false),
        [t, "oauth2", "token"] => (*t, true),
        _ => return answer(404, "text/plain", b"not found: the token endpoints are /{tenant}/oauth2/v2.0/token and /{tenant}/oauth2/token; discovery is at /{tenant}/v2.0/.well-known/openid-configuration".to_vec()),
    };
    if method != "POST" {
        return answer(405, "text/plain", b"use POST".to_vec());
    }
    // The endpoint as this emulator publishes it (its own scheme, address and port),
    // never what the client's `Host` header claims: a request for another server's
    // endpoint carrying that server's name in `Host` must not pass.
    let audience = format!("{}{path}", state.base_url);
    let result = if content_type.starts_with("application/x-www-form-urlencoded") {
        grants::token(state, tenant, v1, &audience, form)
    } else {
        Err(Refusal::new(400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'. (Content-Type must be application/x-www-form-urlencoded.)".into()))
    };
    match result {
        Ok(body) => json(200, &body),
        Err(refusal) => {
            record.error_code = Some(refusal.code);
            json(
                refusal.status,
                &refusal.body(&state.base_url, correlation_id),
            )
        }
    }
}
