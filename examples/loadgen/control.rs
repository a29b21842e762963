//! Control-plane modes: `allocate` (authenticated allocations per second),
//! `binding` (STUN Binding responses per second) and `idle` (hold N
//! allocations open so the server's memory per allocation can be read).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use stun::agent::TransactionId;
use stun::message::{Message, BINDING_REQUEST};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::hist::Hist;
use crate::proto::{client_socket, Session, TxError};
use crate::relay::round3;
use crate::{procfs, Common, ErrorCounts};

/// A Binding request that draws no answer for this long is written off, and
/// the socket's window sent afresh.
const BINDING_SILENCE: Duration = Duration::from_millis(50);
/// Binding success response type (RFC 8489 §6).
const BINDING_SUCCESS: u16 = 0x0101;

async fn fresh_socket(common: &Common) -> Result<UdpSocket, TxError> {
    Ok(UdpSocket::from_std(client_socket(common.server)?)?)
}

fn cpu_now(common: &Common) -> Option<f64> {
    common.server_pid.and_then(procfs::cpu_seconds)
}

pub struct AllocateOpts {
    pub parallel: usize,
    pub duration: Duration,
    pub count: u64,
    pub keep: bool,
}

/// Allocations per second: each one a fresh socket (a new 5-tuple), the 401
/// round trip, the signed Allocate, and (unless `keep`) Refresh 0.
pub async fn allocate(common: Arc<Common>, o: AllocateOpts) -> anyhow::Result<serde_json::Value> {
    let claimed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + o.duration;
    let cpu0 = cpu_now(&common);
    let mut tasks = JoinSet::new();
    for _ in 0..o.parallel {
        let (common, claimed) = (common.clone(), claimed.clone());
        let (keep, count) = (o.keep, o.count);
        tasks.spawn(async move {
            let mut hist = Hist::default();
            let mut errors = ErrorCounts::default();
            let mut kept = Vec::new();
            // Bounded by the deadline and by the shared count.
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                let one = async {
                    let sock = fresh_socket(&common).await?;
                    let (mut s, _) = Session::allocate(sock, &common.creds, common.timeout).await?;
                    if keep {
                        return Ok(Some(s));
                    }
                    s.refresh(Duration::ZERO).await?;
                    Ok::<_, TxError>(None)
                };
                match one.await {
                    Ok(s) => {
                        hist.record(t.elapsed().as_nanos() as u64);
                        kept.extend(s);
                    }
                    Err(e) => errors.add(e.kind()),
                }
            }
            (hist, errors, kept)
        });
    }
    let mut hist = Hist::default();
    let mut errors = ErrorCounts::default();
    let mut kept = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (h, e, k) = r.context("allocate task failed")?;
        hist.merge(&h);
        errors.merge(&e);
        kept.extend(k);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_now(&common).zip(cpu0).map(|(b, a)| b - a);
    let rss = common.server_pid.and_then(procfs::rss_kib);
    let free_errors = free_all(kept, o.parallel).await;
    let ok = hist.count();
    Ok(json!({
        "mode": "allocate",
        "parallel": o.parallel,
        "keep": o.keep,
        "allocations": ok,
        "failures": errors.to_json(),
        "elapsed_s": round3(elapsed),
        "allocations_per_s": (ok as f64 / elapsed).round(),
        "latency_us": hist.summary_us(),
        "server_cpu_s": cpu.map(round3),
        "server_cpu_us_per_allocation": cpu.filter(|_| ok > 0).map(|c| round3(c * 1e6 / ok as f64)),
        "server_rss_kib": rss,
        "free_failures": free_errors.to_json(),
    }))
}

/// Refresh 0 on every session, `parallel` at a time.
async fn free_all(sessions: Vec<Session>, parallel: usize) -> ErrorCounts {
    let mut errors = ErrorCounts::default();
    let mut tasks = JoinSet::new();
    for mut s in sessions {
        while tasks.len() >= parallel.max(1) {
            if let Some(Ok(Err(e))) = tasks.join_next().await {
                errors.add(TxError::kind(&e));
            }
        }
        tasks.spawn(async move { s.refresh(Duration::ZERO).await });
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            errors.add(e.kind());
        }
    }
    errors
}

pub struct BindingOpts {
    pub parallel: usize,
    pub window: usize,
    pub duration: Duration,
}

/// Binding responses per second: `parallel` sockets, each keeping `window`
/// requests in flight (a new one per response).
pub async fn binding(common: Arc<Common>, o: BindingOpts) -> anyhow::Result<serde_json::Value> {
    let mut template = Message::new();
    template
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .map_err(|e| anyhow::anyhow!("cannot encode a Binding request: {e}"))?;
    let template = template.raw;
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + o.duration);
    let cpu0 = cpu_now(&common);
    let mut tasks = JoinSet::new();
    for task in 0..o.parallel as u32 {
        let sock = fresh_socket(&common).await?;
        let mut req = template.clone();
        let window = o.window;
        tasks.spawn(async move {
            let mut hist = Hist::default();
            let (mut errors, mut written_off, mut late) = (0u64, 0u64, 0u64);
            let mut in_flight: HashMap<u64, Instant> = HashMap::with_capacity(window * 2);
            let mut next = 0u64;
            let mut buf = [0u8; 1500];
            let mut send = |ctr: u64, in_flight: &mut HashMap<u64, Instant>| {
                req[8..12].copy_from_slice(&task.to_be_bytes());
                req[12..20].copy_from_slice(&ctr.to_be_bytes());
                if sock.try_send(&req).is_ok() {
                    in_flight.insert(ctr, Instant::now());
                }
            };
            for _ in 0..window {
                send(next, &mut in_flight);
                next += 1;
            }
            loop {
                let wake = deadline.min(tokio::time::Instant::now() + BINDING_SILENCE);
                match tokio::time::timeout_at(wake, sock.recv(&mut buf)).await {
                    Err(_) => {
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        written_off += in_flight.len() as u64;
                        in_flight.clear();
                        for _ in 0..window {
                            send(next, &mut in_flight);
                            next += 1;
                        }
                    }
                    Ok(Err(_)) => errors += 1,
                    Ok(Ok(n)) => {
                        let Some(h) = buf.get(..n.min(20)).filter(|h| h.len() == 20) else {
                            errors += 1;
                            continue;
                        };
                        let ctr = u64::from_be_bytes(h[12..20].try_into().unwrap_or_default());
                        if u16::from_be_bytes([h[0], h[1]]) != BINDING_SUCCESS
                            || h[8..12] != task.to_be_bytes()
                        {
                            errors += 1;
                            continue;
                        }
                        match in_flight.remove(&ctr) {
                            Some(t) => hist.record(t.elapsed().as_nanos() as u64),
                            None => late += 1,
                        }
                        if tokio::time::Instant::now() < deadline {
                            send(next, &mut in_flight);
                            next += 1;
                        }
                    }
                }
            }
            (hist, errors, written_off, late)
        });
    }
    let mut hist = Hist::default();
    let (mut errors, mut written_off, mut late) = (0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        let (h, e, w, l) = r.context("binding task failed")?;
        hist.merge(&h);
        errors += e;
        written_off += w;
        late += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_now(&common).zip(cpu0).map(|(b, a)| b - a);
    let ok = hist.count();
    Ok(json!({
        "mode": "binding",
        "parallel": o.parallel,
        "window": o.window,
        "responses": ok,
        "elapsed_s": round3(elapsed),
        "responses_per_s": (ok as f64 / elapsed).round(),
        "latency_us": hist.summary_us(),
        "unexpected": errors,
        "written_off": written_off,
        "late": late,
        "server_cpu_s": cpu.map(round3),
        "server_cpu_us_per_response": cpu.filter(|_| ok > 0).map(|c| round3(c * 1e6 / ok as f64)),
    }))
}

pub struct IdleOpts {
    pub allocations: usize,
    pub parallel: usize,
    pub hold: Duration,
    pub open_timeout: Duration,
    pub ready_file: Option<PathBuf>,
    pub keep: bool,
}

struct Held {
    session: Session,
    lifetime: Duration,
    refreshed: Instant,
}

/// Opens `allocations` allocations (`parallel` at a time), announces it,
/// holds them `hold` seconds refreshing each at half its lifetime, then
/// frees them (unless `keep`).
pub async fn idle(common: Arc<Common>, o: IdleOpts) -> anyhow::Result<serde_json::Value> {
    let rss_before = common.server_pid.and_then(procfs::rss_kib);
    let started = Instant::now();
    let deadline = started + o.open_timeout;
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..o.parallel {
        let (common, claimed) = (common.clone(), claimed.clone());
        let want = o.allocations as u64;
        tasks.spawn(async move {
            let mut held = Vec::new();
            let mut errors = ErrorCounts::default();
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < want {
                let one = async {
                    let sock = fresh_socket(&common).await?;
                    Session::allocate(sock, &common.creds, common.timeout).await
                };
                match one.await {
                    Ok((session, a)) => held.push(Held {
                        session,
                        lifetime: a.lifetime,
                        refreshed: Instant::now(),
                    }),
                    Err(e) => errors.add(e.kind()),
                }
            }
            (held, errors)
        });
    }
    let mut held = Vec::with_capacity(o.allocations);
    let mut errors = ErrorCounts::default();
    while let Some(r) = tasks.join_next().await {
        let (h, e) = r.context("idle task failed")?;
        held.extend(h);
        errors.merge(&e);
    }
    let open_s = started.elapsed().as_secs_f64();
    if held.is_empty() {
        bail!("no allocation could be opened: {}", errors.to_json());
    }
    // Let the server settle (lazy frees, allocator) before reading memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = common.server_pid.and_then(procfs::rss_kib);
    let ready =
        json!({ "event": "ready", "allocations": held.len(), "failures": errors.to_json() });
    eprintln!("{ready}");
    if let Some(path) = &o.ready_file {
        std::fs::write(path, ready.to_string())
            .with_context(|| format!("cannot write ready file {}", path.display()))?;
    }

    // Hold, refreshing at half the lifetime; checked once a second.
    let hold_end = Instant::now() + o.hold;
    let mut refresh_errors = ErrorCounts::default();
    let mut refreshed = 0u64;
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_secs(1).min(hold_end - Instant::now())).await;
        let (due, rest): (Vec<Held>, Vec<Held>) = held
            .into_iter()
            .partition(|h| h.refreshed.elapsed() >= h.lifetime / 2);
        held = rest;
        let mut tasks = JoinSet::new();
        for chunk in split(due, o.parallel) {
            tasks.spawn(async move {
                let mut errors = ErrorCounts::default();
                let mut back = Vec::with_capacity(chunk.len());
                for mut h in chunk {
                    match h.session.refresh(h.lifetime).await {
                        Ok(()) => h.refreshed = Instant::now(),
                        Err(e) => errors.add(e.kind()),
                    }
                    back.push(h);
                }
                (back, errors)
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (back, e) = r.context("refresh task failed")?;
            refreshed += back.len() as u64;
            held.extend(back);
            refresh_errors.merge(&e);
        }
    }
    let rss_held = common.server_pid.and_then(procfs::rss_kib);
    let n = held.len();
    let free_errors = if o.keep {
        ErrorCounts::default()
    } else {
        free_all(held.into_iter().map(|h| h.session).collect(), o.parallel).await
    };
    let per_alloc = rss_before
        .zip(rss_after)
        .map(|(b, a)| round3((a as f64 - b as f64) * 1024.0 / n as f64));
    Ok(json!({
        "mode": "idle",
        "allocations": n,
        "failures": errors.to_json(),
        "open_s": round3(open_s),
        "open_per_s": (n as f64 / open_s).round(),
        "hold_s": o.hold.as_secs_f64(),
        "refreshes": refreshed,
        "refresh_failures": refresh_errors.to_json(),
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_rss_end_of_hold_kib": rss_held,
        "server_rss_bytes_per_allocation": per_alloc,
        "freed": !o.keep,
        "free_failures": free_errors.to_json(),
    }))
}

fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let parts = parts.max(1);
    let mut out: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        out[i % parts].push(item);
    }
    out.retain(|v| !v.is_empty());
    out
}
