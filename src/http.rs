//! The operator HTTP endpoint: `/metrics`, `/healthz` and `/readyz` over HTTP/1.1.
//!
//! - `GET /metrics`: 200, [`Metrics::encode`] as `text/plain; version=0.0.4`.
//! - `GET /healthz`: 200 `ok` while the process serves at all (liveness).
//! - `GET /readyz`: 200 `ready` or 503 `not ready`, from [`HttpState::ready`],
//!   which the daemon clears when draining or out of capacity so a load
//!   balancer stops sending new clients.
//! - Any other path is 404; any method but GET and HEAD is 405.
//!
//! This is an operator endpoint, meant to be bound to a management address,
//! but it is built to survive being exposed: a client that does not send its
//! request headers within [`HEADER_READ_TIMEOUT`] is disconnected (idle
//! keep-alive connections included), and at most [`MAX_CONNECTIONS`] are
//! served at once. When all are taken, a new connection takes the slot of
//! the one that has been quiet longest (no request since it connected or
//! since its last answer), so connections that say nothing cannot keep a
//! scrape or a health check out: the newcomer is served, the silent one is
//! closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// How long a client may take to send a request's headers, and how long an
/// idle keep-alive connection is kept.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a new connection waits for the slot of an evicted one.
const EVICTION_WAIT: Duration = Duration::from_millis(200);
/// How long [`serve`] waits, after shutdown is signalled, for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (such as EMFILE) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What the endpoint reads.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `/readyz` answers 200 while true, 503 while false.
    pub ready: Arc<AtomicBool>,
}

/// Binds the endpoint's listener. Separate from [`serve`] so the caller can
/// report a bind failure and learn the bound port (tests bind port 0). The
/// error names the address.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind HTTP endpoint on {addr}: {e}"),
        )
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves connections from `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish (for up to a few seconds) and
/// returns. Errors are logged, never returned: a failing scrape must not stop
/// the relay.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_with(listener, state, shutdown, Limits::DEFAULT).await;
}

/// The endpoint's limits: constants in the daemon, short in tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        shutdown_grace: SHUTDOWN_GRACE,
    };
}

/// The open connections, by id: when each last showed life (a sequence
/// number, larger is more recent) and how to close it.
#[derive(Default)]
struct Open {
    seq: AtomicU64,
    conns: Mutex<HashMap<u64, (u64, Arc<Notify>)>>,
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, Arc<Notify>)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection; returns its id and its close signal.
    fn add(&self) -> (u64, Arc<Notify>) {
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.lock().insert(id, (id, close.clone()));
        (id, close)
    }

    /// Connection `id` showed life (a request).
    fn touch(&self, id: u64) {
        let now = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.lock().get_mut(&id) {
            c.0 = now;
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Tells the connection quiet the longest to close; false if none.
    fn evict_quietest(&self) -> bool {
        let mut conns = self.lock();
        let Some(id) = conns.iter().min_by_key(|(_, c)| c.0).map(|(id, _)| *id) else {
            return false;
        };
        if let Some((_, close)) = conns.remove(&id) {
            close.notify_one();
        }
        true
    }
}

async fn serve_with(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) {
    let local = listener.local_addr().ok();
    let addr = local.map_or_else(|| "?".to_owned(), |a| a.to_string());
    info!(%addr, "HTTP endpoint serving /metrics, /healthz, /readyz");

    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Open::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%addr, %error, "HTTP endpoint cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) if open.evict_quietest() => {
                debug!(%addr, %peer, max = limits.max_connections, "HTTP endpoint at its connection limit, closing the quietest connection");
                match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => continue,
                }
            }
            Err(_) => continue,
        };
        let state = state.clone();
        let mut stop = stop_rx.clone();
        let open = open.clone();
        let (id, close) = open.add();
        tokio::spawn(async move {
            let seen = open.clone();
            let service = service_fn(move |req| {
                seen.touch(id);
                let response = respond(&state, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                // Evicted for a newcomer while quiet: close now.
                () = close.notified() => Ok(()),
                // The `Ref` guard `wait_for` returns is not `Send`: drop it here.
                _ = async { stop.wait_for(|&stop| stop).await.is_ok() } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                // Client misbehaviour (timeouts, resets, bad requests): not the operator's problem.
                debug!(%peer, %error, "HTTP connection ended with an error");
            }
            open.remove(id);
            drop(slot);
        });
    }

    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!(%addr, "HTTP endpoint stopped with connections still open");
    }
    debug!(%addr, "HTTP endpoint stopped");
}

fn respond(state: &HttpState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::text::{find, parse_prometheus_text};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    struct Server {
        addr: SocketAddr,
        state: HttpState,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start() -> Server {
        start_with(Limits::DEFAULT).await
    }

    async fn start_with(limits: Limits) -> Server {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let state = HttpState {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(true)),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_with(listener, state.clone(), shutdown, limits));
        Server {
            addr,
            state,
            stop: Some(stop),
            task,
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// One HTTP/1.1 request on a fresh connection, read to EOF (`Connection: close`).
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("response within 5 s")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("end of headers");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
        let status = parts.next().unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn metrics_are_served_in_prometheus_text_format() {
        let server = start().await;
        server
            .state
            .metrics
            .requests
            .with_label_values(&["binding", "success"])
            .inc();

        let reply = request(server.addr, "GET", "/metrics").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(
            reply
                .header("content-length")
                .map(|l| l.parse::<usize>().unwrap()),
            Some(reply.body.len())
        );
        let samples = parse_prometheus_text(&reply.body);
        assert_eq!(
            find(
                &samples,
                "turnd_requests_total",
                &[("method", "binding"), ("result", "success")]
            ),
            Some(1.0)
        );
        assert!(samples.iter().any(|(n, _, _)| n == "turnd_build_info"));

        let head = request(server.addr, "HEAD", "/metrics").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.body, "");
    }

    #[tokio::test]
    async fn health_readiness_and_errors() {
        let server = start().await;
        let healthz = request(server.addr, "GET", "/healthz").await;
        assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));

        let ready = request(server.addr, "GET", "/readyz").await;
        assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
        server.state.ready.store(false, Ordering::Relaxed);
        let not_ready = request(server.addr, "GET", "/readyz").await;
        assert_eq!(
            (not_ready.status, not_ready.body.as_str()),
            (503, "not ready\n")
        );

        assert_eq!(request(server.addr, "GET", "/nope").await.status, 404);
        let post = request(server.addr, "POST", "/metrics").await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let server = start().await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
        assert!(raw.ends_with("ready\n"), "{raw}");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_closes_idle_connections() {
        let mut server = start().await;
        // An idle keep-alive connection must not hold shutdown up.
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

        server.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), &mut server.task)
            .await
            .expect("serve returns promptly")
            .unwrap();
        assert_eq!(
            idle.read(&mut buf).await.unwrap_or(0),
            0,
            "idle connection closed"
        );
        assert!(TcpStream::connect(server.addr).await.is_err());
    }

    const SHORT: Limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 2,
        shutdown_grace: Duration::from_millis(300),
    };

    /// Reads until EOF or reset; panics if the server keeps the connection
    /// open for `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "connection still open after {within:?}");
        got
    }

    #[tokio::test]
    async fn silent_and_idle_clients_are_disconnected() {
        let server = start_with(SHORT).await;
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /metr").await.unwrap();
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let got = closed_within(&mut slow, Duration::from_secs(3)).await;
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{got:?}"
        );
        let got = closed_within(&mut idle, Duration::from_secs(3)).await;
        assert!(got.starts_with(b"HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn past_the_cap_a_newcomer_takes_the_quietest_slot() {
        let server = start_with(Limits {
            header_read_timeout: Duration::from_secs(30),
            ..SHORT
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..SHORT.max_connections {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            assert!(s.read(&mut buf).await.unwrap() > 0);
            held.push(s); // kept alive: holds a slot
        }
        // The second held connection shows life again: the first is quietest.
        held[1]
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        assert!(held[1].read(&mut buf).await.unwrap() > 0);

        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = closed_within(&mut extra, Duration::from_secs(3)).await;
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK"),
            "the newcomer is served"
        );
        let got = closed_within(&mut held[0], Duration::from_secs(3)).await;
        assert!(got.is_empty(), "the quietest connection was closed");
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
