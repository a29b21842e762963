//! The admin API (`[admin] listen`): JSON over HTTP/1.1 for operators, with
//! a bearer token read from a file (compared in constant time; 401
//! otherwise, the token never logged).
//!
//! - `GET /allocations[?user=U]`: every live allocation (or `U`'s).
//! - `DELETE /allocations/{id}`: ends one allocation.
//! - `DELETE /users/{user}/allocations`: ends every allocation of a user.
//! - `GET /revocations`; `PUT /revocations/{user}[?until=UNIX]`: revokes a
//!   user (its allocations end at once, its requests get 401) until a time
//!   or for good; `DELETE /revocations/{user}` lifts it. Revocations are
//!   kept in `state_dir/revocations.json` and survive SIGHUP and restarts.
//!
//! - `GET /selftest/` (no token: it holds no secret), `POST
//!   /selftest/session`: the self-test page and what it asks for
//!   ([`crate::selftest`]).
//!
//! The workers are asked over a channel each, answered over a oneshot, and
//! they answer from their own loop: the packet path takes no lock for it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::core::admin::{AllocationInfo, Revocations};
use crate::selftest::SelfTest;

/// What a worker is asked; it answers on the oneshot.
pub enum WorkerCmd {
    List {
        user: Option<String>,
        reply: oneshot::Sender<Vec<AllocationInfo>>,
    },
    End {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
    EndUser {
        user: String,
        reply: oneshot::Sender<usize>,
    },
    Revocations(Revocations),
}

/// The admin API's state.
pub struct Admin {
    token: Vec<u8>,
    workers: Vec<mpsc::UnboundedSender<WorkerCmd>>,
    state_file: PathBuf,
    revoked: Mutex<HashMap<String, Option<u64>>>,
    selftest: SelfTest,
}

impl Admin {
    /// Reads the token and the saved revocations; sends them to the workers.
    pub fn new(
        token_file: &std::path::Path,
        state_dir: &std::path::Path,
        workers: Vec<mpsc::UnboundedSender<WorkerCmd>>,
        selftest: SelfTest,
    ) -> anyhow::Result<Self> {
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            anyhow::anyhow!("cannot read admin.token_file {}: {e}", token_file.display())
        })?;
        let token = token.trim().as_bytes().to_vec();
        if token.len() < 16 {
            anyhow::bail!(
                "admin.token_file {}: the token must be at least 16 characters",
                token_file.display()
            );
        }
        let state_file = state_dir.join("revocations.json");
        let revoked: HashMap<String, Option<u64>> = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("cannot parse {}: {e}", state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", state_file.display()),
        };
        let admin = Admin {
            token,
            workers,
            state_file,
            revoked: Mutex::new(revoked),
            selftest,
        };
        admin.publish();
        Ok(admin)
    }

    fn revoked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<u64>>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the revocations to every worker.
    fn publish(&self) {
        let r: Revocations = Arc::new(self.revoked().clone());
        for w in &self.workers {
            let _ = w.send(WorkerCmd::Revocations(r.clone()));
        }
    }

    /// Writes the revocations to the state file (whole, then renamed).
    fn save(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&*self.revoked()).map_err(std::io::Error::other)?;
        if let Some(dir) = self.state_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.state_file.with_extension("tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, &self.state_file)
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(value) = req.headers().get(AUTHORIZATION) else {
            return false;
        };
        let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        constant_time_eq(given, &self.token)
    }

    async fn ask<T>(&self, make: impl Fn(oneshot::Sender<T>) -> WorkerCmd) -> Vec<T> {
        let mut answers = Vec::new();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            if w.send(make(tx)).is_ok() {
                if let Ok(a) = rx.await {
                    answers.push(a);
                }
            }
        }
        answers
    }

    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == Method::GET {
            let path = req.uri().path().trim_start_matches('/');
            if path == "selftest" {
                let mut r = page_response(StatusCode::MOVED_PERMANENTLY, "text/plain", "");
                r.headers_mut()
                    .insert(LOCATION, HeaderValue::from_static("/selftest/"));
                return r;
            }
            if let Some((content_type, body)) = crate::selftest::asset(path) {
                return page_response(StatusCode::OK, content_type, body);
            }
        }
        if !self.authorized(&req) {
            return reply(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
        }
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            })
        };
        let parts: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        match (req.method().clone(), parts.as_slice()) {
            (Method::GET, ["allocations"]) => {
                let user = param("user");
                let all: Vec<Value> = self
                    .ask(|reply| WorkerCmd::List {
                        user: user.clone(),
                        reply,
                    })
                    .await
                    .into_iter()
                    .flatten()
                    .map(|a| allocation_json(&a))
                    .collect();
                reply(StatusCode::OK, json!({ "allocations": all }))
            }
            (Method::DELETE, ["allocations", id]) => {
                let Ok(id) = u64::from_str_radix(id, 16) else {
                    return reply(StatusCode::BAD_REQUEST, json!({"error": "bad id"}));
                };
                let ended = self.ask(|reply| WorkerCmd::End { id, reply }).await;
                if ended.contains(&true) {
                    info!(id = %format_args!("{id:016x}"), "admin: allocation ended");
                    reply(StatusCode::OK, json!({"ended": 1}))
                } else {
                    reply(
                        StatusCode::NOT_FOUND,
                        json!({"error": "no such allocation"}),
                    )
                }
            }
            (Method::DELETE, ["users", user, "allocations"]) => {
                let user = user.to_string();
                let n: usize = self
                    .ask(|reply| WorkerCmd::EndUser {
                        user: user.clone(),
                        reply,
                    })
                    .await
                    .into_iter()
                    .sum();
                info!(
                    user = user.as_str(),
                    ended = n,
                    "admin: allocations of a user ended"
                );
                reply(StatusCode::OK, json!({"ended": n}))
            }
            (Method::GET, ["revocations"]) => {
                reply(StatusCode::OK, json!({"revocations": *self.revoked()}))
            }
            (Method::PUT, ["revocations", user]) => {
                let until = match param("until").map(|u| u.parse::<u64>()) {
                    None => None,
                    Some(Ok(t)) => Some(t),
                    Some(Err(_)) => {
                        return reply(StatusCode::BAD_REQUEST, json!({"error": "bad until"}))
                    }
                };
                self.revoked().insert(user.to_string(), until);
                self.changed(user, "revoked")
            }
            (Method::DELETE, ["revocations", user]) => {
                if self.revoked().remove(*user).is_none() {
                    return reply(StatusCode::NOT_FOUND, json!({"error": "not revoked"}));
                }
                self.changed(user, "revocation lifted")
            }
            (Method::POST, ["selftest", "session"]) => {
                let now = crate::net::clock::now().unix_secs;
                info!(
                    user = crate::selftest::SELFTEST_USER,
                    "admin: self-test credential minted"
                );
                let mut r = reply(StatusCode::OK, self.selftest.session(now));
                r.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }

    fn changed(&self, user: &str, what: &str) -> Response<Full<Bytes>> {
        self.publish();
        info!(user, "admin: {what}");
        if let Err(e) = self.save() {
            warn!(file = %self.state_file.display(), error = %e, "cannot save revocations");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("applied, but not saved to {}: {e}", self.state_file.display())}),
            );
        }
        reply(StatusCode::OK, json!({"revocations": *self.revoked()}))
    }
}

fn allocation_json(a: &AllocationInfo) -> Value {
    json!({
        "id": format!("{:016x}", a.id),
        "user": a.user,
        "transport": a.transport.as_str(),
        "client": a.client.to_string(),
        "relay": a.relay.to_string(),
        "created": a.created_unix,
        "expires": a.expires_unix,
        "permissions": a.permissions.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "channels": a.channels.iter().map(|(n, p)| json!({"number": n, "peer": p.to_string()})).collect::<Vec<_>>(),
        "sent": {"packets": a.usage.sent.packets, "bytes": a.usage.sent.bytes},
        "received": {"packets": a.usage.received.packets, "bytes": a.usage.received.bytes},
        "rate": {
            "window_s": crate::core::rate::WINDOW.as_secs(),
            "sent": {"packets_per_s": round(a.rate.sent.packets_per_s), "bytes_per_s": round(a.rate.sent.bytes_per_s)},
            "received": {"packets_per_s": round(a.rate.received.packets_per_s), "bytes_per_s": round(a.rate.received.bytes_per_s)},
        },
    })
}

/// A rate with one decimal, as JSON shows it.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A file of the self-test page, with headers that keep it to itself.
fn page_response(
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::selftest::CSP),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Compares without a data-dependent early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?))
            .flatten();
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the admin API on `listener` until the process stops.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin API serving");
    }
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.respond(req).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, %error, "admin connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(percent_decode("team%3Aalice"), "team:alice");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
