//! `relay` mode: N allocations, each with a permission (and a channel) to a
//! UDP echo peer run here, carrying timestamped payloads through the relay
//! and back. Paced at a fixed aggregate rate by a sender thread, or closed
//! loop at saturation (a window of packets in flight per allocation, each
//! echo releasing the next). Also drives the bare forwarder (`--raw-forwarder`).
//!
//! Payload: sequence (u64 LE), send time in ns since the run's epoch (u64 LE),
//! allocation index (u32 LE), then zeros up to --size.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::hist::Hist;
use crate::proto::{self, client_socket, Framing, Session, TxError};
use crate::{procfs, Common, ErrorCounts};

/// Smallest payload: sequence, timestamp, allocation index.
pub const MIN_PAYLOAD: usize = 20;
/// Registration datagram of the bare forwarder: prefix, then "IP:PORT" of
/// the peer; answered with [`FWD_ACK`].
pub const FWD_REGISTER: &[u8] = b"LGFWD1 ";
pub const FWD_ACK: &[u8] = b"LGFWD1 OK";
/// Channel number used by every allocation (each has its own namespace).
const CHANNEL: u16 = 0x4000;
/// With --saturate, an allocation that hears nothing for this long writes
/// its packets in flight off as lost and sends a fresh window.
const SILENCE: Duration = Duration::from_millis(50);

pub struct RelayOpts {
    pub allocations: usize,
    /// Aggregate packets/s; `None` means closed-loop saturation.
    pub rate: Option<u64>,
    pub window: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub size: usize,
    pub channels: bool,
    pub echo_sockets: usize,
    pub raw_forwarder: Option<SocketAddr>,
    /// No relay at all: each flow sends straight to its echo peer (the
    /// baseline of the machine's own work per packet).
    pub direct: bool,
    pub parallel: usize,
}

/// The run's timeline, in ns since `epoch`.
#[derive(Clone, Copy)]
struct Timeline {
    epoch: Instant,
    start: u64,
    measure_from: u64,
    measure_to: u64,
    recv_stop: u64,
}

impl Timeline {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    fn at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
    fn measured(&self, ts: u64) -> bool {
        ts >= self.measure_from && ts < self.measure_to
    }
}

enum Conn {
    Turn(Session),
    Raw(UdpSocket),
}

impl Conn {
    fn sock(&self) -> &UdpSocket {
        match self {
            Conn::Turn(s) => &s.sock,
            Conn::Raw(s) => s,
        }
    }
}

/// One allocation (or forwarder client) ready to carry traffic.
struct Flow {
    idx: u32,
    conn: Conn,
    /// A second handle on the same socket for the paced sender thread.
    send: std::net::UdpSocket,
    framing: Framing,
    template: Vec<u8>,
    at: usize,
}

fn stamp(buf: &mut [u8], at: usize, seq: u64, ts: u64, idx: u32) {
    buf[at..at + 8].copy_from_slice(&seq.to_le_bytes());
    buf[at + 8..at + 16].copy_from_slice(&ts.to_le_bytes());
    buf[at + 16..at + 20].copy_from_slice(&idx.to_le_bytes());
}

/// UDP echo peers on 127.0.0.1, one thread each.
struct Echo {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(count: usize, hard_stop: Instant) -> anyhow::Result<Echo> {
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..count {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            let _ = s.set_recv_buffer_size(proto::SOCKET_BUFFER);
            let _ = s.set_send_buffer_size(proto::SOCKET_BUFFER);
            s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            let s: std::net::UdpSocket = s.into();
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            addrs.push(s.local_addr()?);
            let (stop, echoed) = (stop.clone(), echoed.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut n_echoed = 0u64;
                // Bounded by the stop flag and by `hard_stop`.
                while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        if s.send_to(&buf[..n], from).is_ok() {
                            n_echoed += 1;
                        }
                    }
                }
                echoed.fetch_add(n_echoed, Ordering::Relaxed);
            }));
        }
        Ok(Echo {
            addrs,
            stop,
            echoed,
            threads,
        })
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.echoed.load(Ordering::Relaxed)
    }
}

async fn prepare(
    idx: u32,
    common: Arc<Common>,
    peer: SocketAddr,
    raw: Option<SocketAddr>,
    channels: bool,
    size: usize,
) -> Result<Flow, TxError> {
    let direct = raw == Some(peer);
    let std_sock = client_socket(raw.unwrap_or(common.server))?;
    let send = std_sock.try_clone()?;
    let sock = UdpSocket::from_std(std_sock)?;
    let (conn, framing) = if direct {
        (Conn::Raw(sock), Framing::Raw)
    } else if raw.is_some() {
        let mut msg = FWD_REGISTER.to_vec();
        msg.extend_from_slice(peer.to_string().as_bytes());
        sock.send(&msg).await?;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(common.timeout, sock.recv(&mut buf)).await {
            Ok(Ok(n)) if &buf[..n] == FWD_ACK => {}
            Ok(Ok(_)) => return Err(TxError::Bad("forwarder_no_ack")),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(TxError::Bad("forwarder_timeout")),
        }
        (Conn::Raw(sock), Framing::Raw)
    } else {
        let (mut session, _allocated) =
            Session::allocate(sock, &common.creds, common.timeout).await?;
        session.create_permission(peer).await?;
        let framing = if channels {
            session.channel_bind(CHANNEL, peer).await?;
            Framing::Channel(CHANNEL)
        } else {
            Framing::Indication
        };
        (Conn::Turn(session), framing)
    };
    let (template, at) = proto::template(framing, peer, size)?;
    Ok(Flow {
        idx,
        conn,
        send,
        framing,
        template,
        at,
    })
}

#[derive(Default)]
struct Counts {
    sent_total: u64,
    sent_measured: u64,
    received_total: u64,
    received_measured: u64,
    unexpected: u64,
    misrouted: u64,
    send_errors: u64,
    written_off: u64,
    skipped: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.sent_total += o.sent_total;
        self.sent_measured += o.sent_measured;
        self.received_total += o.received_total;
        self.received_measured += o.received_measured;
        self.unexpected += o.unexpected;
        self.misrouted += o.misrouted;
        self.send_errors += o.send_errors;
        self.written_off += o.written_off;
        self.skipped += o.skipped;
    }
}

/// Receives one flow's echoes until the timeline's end; with a `window`
/// (saturation) it also sends, one new packet per echo.
async fn receive(mut flow: Flow, tl: Timeline, window: Option<usize>) -> (Counts, Hist, Conn) {
    let mut c = Counts::default();
    let mut hist = Hist::default();
    let mut buf = vec![0u8; 65536];
    let mut seq = 0u64;
    let mut in_flight = 0usize;
    let send_end = tl.measure_to;
    let send_one = |flow: &mut Flow, c: &mut Counts, seq: &mut u64, in_flight: &mut usize| {
        let ts = tl.now();
        stamp(&mut flow.template, flow.at, *seq, ts, flow.idx);
        *seq += 1;
        match flow.conn.sock().try_send(&flow.template) {
            Ok(_) => {
                c.sent_total += 1;
                *in_flight += 1;
                if tl.measured(ts) {
                    c.sent_measured += 1;
                }
            }
            Err(_) => c.send_errors += 1,
        }
    };
    if let Some(w) = window {
        for _ in 0..w {
            send_one(&mut flow, &mut c, &mut seq, &mut in_flight);
        }
    }
    let recv_stop = tokio::time::Instant::from_std(tl.at(tl.recv_stop));
    loop {
        let wake = if window.is_some() {
            recv_stop.min(tokio::time::Instant::now() + SILENCE)
        } else {
            recv_stop
        };
        let n = match tokio::time::timeout_at(wake, flow.conn.sock().recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => {
                // An ICMP error queued on the socket; counted, not fatal.
                c.unexpected += 1;
                continue;
            }
            Err(_) => {
                if tokio::time::Instant::now() >= recv_stop {
                    break;
                }
                if let Some(w) = window {
                    c.written_off += in_flight as u64;
                    in_flight = 0;
                    if tl.now() < send_end {
                        for _ in 0..w {
                            send_one(&mut flow, &mut c, &mut seq, &mut in_flight);
                        }
                    } else {
                        break;
                    }
                }
                continue;
            }
        };
        let now = tl.now();
        let Some(p) = proto::payload(flow.framing, &buf[..n]).filter(|p| p.len() >= MIN_PAYLOAD)
        else {
            c.unexpected += 1;
            continue;
        };
        let ts = u64::from_le_bytes(p[8..16].try_into().unwrap_or_default());
        let idx = u32::from_le_bytes(p[16..20].try_into().unwrap_or_default());
        if idx != flow.idx {
            c.misrouted += 1;
            continue;
        }
        c.received_total += 1;
        if tl.measured(ts) {
            c.received_measured += 1;
            hist.record(now.saturating_sub(ts));
        }
        if window.is_some() {
            in_flight = in_flight.saturating_sub(1);
            if now < send_end {
                send_one(&mut flow, &mut c, &mut seq, &mut in_flight);
            } else if in_flight == 0 {
                break;
            }
        }
    }
    (c, hist, flow.conn)
}

/// The paced sender: packet i goes out at start + i/rate, round robin over
/// the flows. Sleeps between due times (so it sends in small bursts of
/// whatever fell due, about every 60 µs); if it falls more than 1 ms behind
/// (descheduled), it skips the backlog rather than burst it into the
/// server's socket buffer, and counts what it skipped.
fn pace(
    mut flows: Vec<(u32, std::net::UdpSocket, Vec<u8>, usize)>,
    rate: u64,
    tl: Timeline,
) -> Counts {
    let mut c = Counts::default();
    let ns_per = 1e9 / rate as f64;
    let max_backlog = (rate / 1000).max(8);
    let n = flows.len() as u64;
    let mut i = 0u64;
    loop {
        let now = tl.now();
        if now >= tl.measure_to {
            break;
        }
        let due = ((now.saturating_sub(tl.start)) as f64 / ns_per) as u64 + 1;
        if due > i + max_backlog {
            c.skipped += due - i - max_backlog;
            i = due - max_backlog;
        }
        while i < due {
            let (idx, sock, buf, at) = &mut flows[(i % n) as usize];
            let ts = tl.now();
            stamp(buf, *at, i, ts, *idx);
            i += 1;
            let mut sent = false;
            for _ in 0..100 {
                match sock.send(buf) {
                    Ok(_) => {
                        sent = true;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::yield_now()
                    }
                    Err(_) => break,
                }
            }
            if sent {
                c.sent_total += 1;
                if tl.measured(ts) {
                    c.sent_measured += 1;
                }
            } else {
                c.send_errors += 1;
            }
        }
        let next = tl.start + (i as f64 * ns_per) as u64;
        let now = tl.now();
        if next > now {
            std::thread::sleep(Duration::from_nanos(next - now));
        }
    }
    c
}

pub async fn run(common: Arc<Common>, o: RelayOpts) -> anyhow::Result<serde_json::Value> {
    let setup_cap = common.timeout * 4 + Duration::from_secs(30);
    let hard_stop =
        Instant::now() + setup_cap + o.warmup + o.duration + o.drain + Duration::from_secs(5);
    let echo = Echo::start(o.echo_sockets, hard_stop).context("cannot start the echo peers")?;

    // Setup: allocations, permissions, channels, `parallel` at a time.
    let setup_started = Instant::now();
    let mut errors = ErrorCounts::default();
    let mut flows = Vec::with_capacity(o.allocations);
    let mut pending = JoinSet::new();
    let mut next = 0usize;
    while flows.len() + errors.total() < o.allocations {
        while next < o.allocations && pending.len() < o.parallel {
            let peer = echo.addrs[next % echo.addrs.len()];
            pending.spawn(prepare(
                next as u32,
                common.clone(),
                peer,
                if o.direct {
                    Some(peer)
                } else {
                    o.raw_forwarder
                },
                o.channels,
                o.size,
            ));
            next += 1;
        }
        match tokio::time::timeout(setup_cap, pending.join_next()).await {
            Ok(Some(Ok(Ok(flow)))) => flows.push(flow),
            Ok(Some(Ok(Err(e)))) => errors.add(e.kind()),
            Ok(Some(Err(e))) => bail!("setup task failed: {e}"),
            Ok(None) => break,
            Err(_) => bail!("setup took longer than {setup_cap:?}"),
        }
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    if flows.is_empty() {
        echo.stop();
        bail!("no allocation could be set up: {}", errors.to_json());
    }

    let epoch = Instant::now();
    let ms = |d: Duration| d.as_nanos() as u64;
    let start = ms(Duration::from_millis(20));
    let tl = Timeline {
        epoch,
        start,
        measure_from: start + ms(o.warmup),
        measure_to: start + ms(o.warmup) + ms(o.duration),
        recv_stop: start + ms(o.warmup) + ms(o.duration) + ms(o.drain),
    };

    let mut sender = None;
    if let Some(rate) = o.rate {
        let mut senders = Vec::with_capacity(flows.len());
        for f in &flows {
            senders.push((f.idx, f.send.try_clone()?, f.template.clone(), f.at));
        }
        sender = Some(
            std::thread::Builder::new()
                .name("loadgen-sender".into())
                .spawn(move || pace(senders, rate, tl))?,
        );
    }
    let window = o.rate.is_none().then_some(o.window);
    let mut receivers = JoinSet::new();
    for f in flows {
        receivers.spawn(receive(f, tl, window));
    }

    tokio::time::sleep_until(tokio::time::Instant::from_std(tl.at(tl.measure_from))).await;
    let tasks0 = procfs::task_run_ns();
    let cpu0 = common.server_pid.and_then(procfs::cpu_seconds);
    let rcvbuf0 = procfs::udp_rcvbuf_errors();
    tokio::time::sleep_until(tokio::time::Instant::from_std(tl.at(tl.measure_to))).await;
    let cpu1 = common.server_pid.and_then(procfs::cpu_seconds);
    let tasks1 = procfs::task_run_ns();
    let machine = procfs::machine_seconds_between(&tasks0, &tasks1);
    let rss = common.server_pid.and_then(procfs::rss_kib);

    let mut counts = Counts::default();
    let mut hist = Hist::default();
    let mut conns = Vec::new();
    while let Some(r) = receivers.join_next().await {
        let (c, h, conn) = r.context("receiver task failed")?;
        counts.add(&c);
        hist.merge(&h);
        conns.push(conn);
    }
    let rcvbuf_errors = procfs::udp_rcvbuf_errors()
        .zip(rcvbuf0)
        .map(|(b, a)| b.saturating_sub(a));
    if let Some(s) = sender {
        let c = s
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
        counts.add(&c);
    }
    let echoed = echo.stop();

    // Free the allocations (Refresh 0), `parallel` at a time.
    let mut free_errors = ErrorCounts::default();
    let mut freeing = JoinSet::new();
    for conn in conns {
        if let Conn::Turn(mut s) = conn {
            while freeing.len() >= o.parallel {
                if let Some(Ok(Err(e))) = freeing.join_next().await {
                    free_errors.add(TxError::kind(&e));
                }
            }
            freeing.spawn(async move { s.refresh(Duration::ZERO).await });
        }
    }
    while let Some(r) = freeing.join_next().await {
        if let Ok(Err(e)) = r {
            free_errors.add(e.kind());
        }
    }

    let secs = o.duration.as_secs_f64();
    let sent = counts.sent_measured;
    let received = counts.received_measured;
    let lost = sent.saturating_sub(received);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let per = |cpu: f64, n: u64| {
        if n == 0 {
            serde_json::Value::Null
        } else {
            json!((cpu * 1e6 / n as f64 * 1000.0).round() / 1000.0)
        }
    };
    Ok(json!({
        "mode": "relay",
        "target": if o.direct { "direct" } else if o.raw_forwarder.is_some() { "raw-forwarder" } else { "turn" },
        "framing": match (o.raw_forwarder, o.channels) {
            (Some(_), _) => "raw",
            (None, true) => "channel-data",
            (None, false) => "send-data-indication",
        },
        "allocations": established(&errors, o.allocations),
        "setup_failures": errors.to_json(),
        "setup_s": round3(setup_s),
        "size": o.size,
        "offered_pps": o.rate,
        "saturate_window": window,
        "duration_s": secs,
        "warmup_s": o.warmup.as_secs_f64(),
        "sent": sent,
        "received": received,
        "lost": lost,
        "loss_pct": if sent == 0 { 0.0 } else { round3(lost as f64 * 100.0 / sent as f64) },
        "sent_pps": (sent as f64 / secs).round(),
        "delivered_pps": (received as f64 / secs).round(),
        "rtt_us": hist.summary_us(),
        "server_pid": common.server_pid,
        "server_cpu_s": cpu.map(round3),
        "server_cpu_us_per_echo": cpu.map(|c| per(c, received)),
        "server_cpu_us_per_relayed_packet": cpu.map(|c| per(c, 2 * received)),
        "server_rss_kib": rss,
        "machine_cpu_s": round3(machine),
        "machine_cpu_us_per_relayed_packet": per(machine, 2 * received),
        "peer_echoed_total": echoed,
        "host_udp_rcvbuf_errors": rcvbuf_errors,
        "unexpected_datagrams": counts.unexpected,
        "misrouted": counts.misrouted,
        "send_errors": counts.send_errors,
        "sender_skipped": counts.skipped,
        "written_off_in_flight": counts.written_off,
        "free_failures": free_errors.to_json(),
    }))
}

/// Allocations set up: those asked for less those that failed.
fn established(errors: &ErrorCounts, wanted: usize) -> usize {
    wanted - errors.total().min(wanted)
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
