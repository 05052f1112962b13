//! Transport: the accept loop (a connection cap, the header/idle timeout, request heads
//! of at most 8 KiB, no request bodies), one answer per request through [`protocol`] and
//! the agent, the log event, the graceful stop, and the certificate watch.

use super::agent::{Agent, CacheUse};
use super::protocol::{self, Head, Issued, Refusal, SecretDigest};
use super::Event;
use crate::encoding::unix_now;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

type Answer = Response<Full<Bytes>>;

/// The smallest request-head buffer hyper takes; a longer head is answered 431.
const MAX_HEAD_BYTES: usize = 8192;

pub(super) struct Server {
    pub agent: Arc<Agent>,
    pub secret: SecretDigest,
    pub imds: bool,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

impl Server {
    /// Accept until `stop` turns true, then let the connections finish their request in
    /// flight (at most `grace`) and return.
    pub(super) async fn serve(
        self,
        listener: tokio::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(this.max_connections));
        loop {
            let slot = tokio::select! {
                _ = stop.changed() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = stop.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // Out of file descriptors, most likely: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let this = this.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let _slot = slot;
                this.connection(stream, stop).await;
            });
        }
        drop(listener);
        // Every connection holds a slot: all slots back means all connections done.
        let all = u32::try_from(this.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(this.grace, slots.acquire_many(all)).await;
    }

    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        mut stop: watch::Receiver<bool>,
    ) {
        let served = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let this = served.clone();
            async move { Ok::<_, std::convert::Infallible>(this.handle(req).await) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = stop.changed() => {
                // Finish the request in flight, take no further one on this connection.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.grace, conn).await;
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        let started = Instant::now();
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let mut resource = None;
        let mut client_id = None;
        let mut cache = CacheUse::None;
        let answer = match self
            .answer(&req, &mut resource, &mut client_id, &mut cache)
            .await
        {
            Ok(answer) => answer,
            Err(refusal) => refused(&refusal),
        };
        self.agent.log.emit(&Event::Request {
            method,
            path,
            resource,
            client_id,
            cache,
            status: answer.status().as_u16(),
            latency: started.elapsed(),
        });
        answer
    }

    async fn answer(
        &self,
        req: &Request<Incoming>,
        resource: &mut Option<String>,
        client_id: &mut Option<String>,
        cache: &mut CacheUse,
    ) -> Result<Answer, Refusal> {
        // A token request has no body; one that sends any is cut off, unread.
        let has_body =
            !req.body().is_end_stream() && req.body().size_hint().upper().is_none_or(|n| n > 0);
        if has_body {
            return Err(Refusal::new(
                413,
                "invalid_request",
                "a token request has no body",
            ));
        }
        let ask = protocol::check(
            req.method().as_str(),
            req.uri().path(),
            req.uri().query(),
            &Headers(req.headers()),
            &self.secret,
        )?;
        if ask.protocol == protocol::Protocol::Imds && !self.imds {
            return Err(Refusal::new(
                404,
                "not_found",
                format!(
                    "the IMDS endpoint is turned off here; use the App Service protocol at {}",
                    protocol::APP_SERVICE_PATH
                ),
            ));
        }
        *resource = Some(ask.resource.clone());
        // Warm: answered from memory with no timer and no task.
        let fetched = match self.agent.cached(&ask) {
            Some(hit) => Ok((Ok(hit), CacheUse::Hit)),
            None => tokio::time::timeout(self.request_timeout, self.agent.token(&ask)).await,
        };
        let Ok((result, used)) = fetched else {
            return Err(Refusal::new(
                504,
                "temporarily_unavailable",
                format!(
                    "no token within {} s: the token endpoint or the key is slow; try again",
                    self.request_timeout.as_secs_f64()
                ),
            ));
        };
        *cache = used;
        let (held, index) = result?;
        let id = &self.agent.identities[index].client_id;
        *client_id = Some(id.clone());
        if ask.protocol == protocol::Protocol::AppService {
            return Ok(bytes_answer(
                200,
                held.app_service_answer(&ask.resource, id),
            ));
        }
        let body = protocol::answer(
            ask.protocol,
            &Issued {
                access_token: held.access_token.expose(),
                expires_on: held.expires_on,
                obtained_at: held.obtained_at,
                resource: &ask.resource,
                client_id: id,
            },
            unix_now(),
        );
        Ok(bytes_answer(200, body.into()))
    }
}

struct Headers<'a>(&'a hyper::HeaderMap);

impl Head for Headers<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.to_str().unwrap_or_default())
    }
}

fn json(status: u16, value: &serde_json::Value) -> Answer {
    bytes_answer(status, value.to_string().into_bytes().into())
}

fn bytes_answer(status: u16, body: Bytes) -> Answer {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn refused(refusal: &Refusal) -> Answer {
    let mut r = json(refusal.status, &refusal.body());
    if refusal.status == 413 {
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    r
}

/// Check the certificate files every `interval`, and all of them at once on a reload
/// request, until `stop`.
pub(super) async fn watch_certificates(
    agent: Arc<Agent>,
    interval: Duration,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => false,
            r = reloads.recv() => match r {
                Some(()) => true,
                None => return,
            },
        };
        let agent = agent.clone();
        let _ = tokio::task::spawn_blocking(move || agent.reload(force)).await;
    }
}
