//! Load for `scripts/soak.sh`: steady relay traffic and churn of
//! allocations, permissions, channels and EVEN-PORT reservations against a
//! TURN server on loopback, for a bounded time. Prints one JSON object.
//!
//! * Steady: `--streams` allocations, each with a channel to a local echo
//!   peer, sending `--rate` packets/s in total (paced), refreshed every
//!   `--refresh` seconds (Refresh and ChannelBind, 438 handled), so they
//!   outlive any soak. Every packet is numbered; loss is what did not come
//!   back once sending stops and the last echoes had time to arrive.
//! * Churn: `--churners` threads, each in a loop: a fresh socket on
//!   127.0.0.x (x cycling over 2..=201, so the per-source tables see many
//!   sources), the 401 challenge, Allocate (every 10th with EVEN-PORT and
//!   the R bit, leaving a reservation unclaimed to expire after 30 s),
//!   CreatePermission for four peers, two ChannelBinds, a few packets echoed
//!   through the channel, Refresh 0. Pauses `--churn-pause-ms` between.
//!
//! Errors (timeouts, unexpected error codes) are counted; the soak fails on
//! any. Loopback only: the server must be on 127.0.0.0/8 and allow
//! 127.0.0.0/8 peers.
//!
//! `cargo run --release --example soak_churn -- --help`

// The crate's clippy.toml forbids reading clocks outside net::clock to keep
// the sans-IO core honest; a load generator is all I/O and timing.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use stun::agent::TransactionId;
use stun::attributes::{AttrType, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST,
    CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION,
    METHOD_REFRESH,
};
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

/// Steady relay traffic and allocation churn against a TURN server on
/// loopback, for `--duration` seconds; one JSON object on stdout.
#[derive(Debug, Parser)]
#[command(name = "soak_churn")]
struct Cli {
    /// The TURN server (UDP), on loopback.
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    #[arg(long, default_value = "alice")]
    user: String,
    #[arg(long, default_value = "secret")]
    password: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Long-lived allocations carrying the steady traffic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    streams: u64,
    /// Steady packets per second, client to peer, over all streams (each
    /// comes back, so the server relays twice as many).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    rate: u64,
    /// Payload bytes of a steady packet.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u64).range(16..=1200))]
    size: u64,
    /// Seconds between refreshes of the steady allocations and channels.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(10..=250))]
    refresh: u64,
    /// Threads churning allocations.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=64))]
    churners: u64,
    /// Pause of each churner between allocations, in milliseconds.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    churn_pause_ms: u64,
}

/// How long a request waits for its response.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long echoes may take to come back once sending stops.
const DRAIN: Duration = Duration::from_secs(2);
/// Channel of the steady streams and the churners' echo channel.
const CHANNEL: u16 = 0x4000;

/// Counters shared by every thread.
#[derive(Default)]
struct Stats {
    steady_sent: AtomicU64,
    steady_received: AtomicU64,
    steady_refreshes: AtomicU64,
    churn_allocations: AtomicU64,
    churn_reservations: AtomicU64,
    churn_sent: AtomicU64,
    churn_received: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn error(&self, kind: impl Into<String>) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *e.entry(kind.into()).or_default() += 1;
    }
}

/// A long-term-credential session on one UDP socket.
struct Session {
    socket: UdpSocket,
    server: SocketAddr,
    user: String,
    password: String,
    realm: String,
    nonce: String,
}

fn error_code(m: &Message) -> Option<u16> {
    if m.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|()| e.code.0)
}

fn build(setters: &[Box<dyn Setter>]) -> Message {
    let mut m = Message::new();
    m.build(setters).expect("a STUN message");
    m
}

impl Session {
    /// A socket on `local`, and REALM and NONCE from a 401 to an unsigned
    /// Allocate.
    fn open(cli: &Cli, local: IpAddr) -> Result<Session, String> {
        let socket = bind(SocketAddr::new(local, 0)).map_err(|e| format!("bind: {e}"))?;
        let mut s = Session {
            socket,
            server: cli.server,
            user: cli.user.clone(),
            password: cli.password.clone(),
            realm: String::new(),
            nonce: String::new(),
        };
        let req = build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            }),
        ]);
        let resp = s.transact(&req, &mut |_| {})?;
        if error_code(&resp) != Some(401) {
            return Err(format!("challenge_{}", error_code(&resp).unwrap_or(0)));
        }
        s.learn(&resp)?;
        Ok(s)
    }

    fn learn(&mut self, resp: &Message) -> Result<(), String> {
        let realm = TextAttribute::get_from_as(resp, ATTR_REALM).map_err(|_| "no_realm")?;
        let nonce = TextAttribute::get_from_as(resp, ATTR_NONCE).map_err(|_| "no_nonce")?;
        self.realm = realm.text;
        self.nonce = nonce.text;
        Ok(())
    }

    fn integrity(&self) -> MessageIntegrity {
        MessageIntegrity::new_long_term_integrity(
            self.user.clone(),
            self.realm.clone(),
            self.password.clone(),
        )
    }

    /// Sends `req` and waits for its response; other datagrams (ChannelData
    /// echoes) go to `other`.
    fn transact(&self, req: &Message, other: &mut dyn FnMut(&[u8])) -> Result<Message, String> {
        self.socket
            .send_to(&req.raw, self.server)
            .map_err(|e| format!("send: {e}"))?;
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{}_timeout", req.typ.method).to_lowercase());
            }
            self.socket
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            if from != self.server {
                continue;
            }
            let mut m = Message::new();
            m.raw = buf[..n].to_vec();
            if buf[0] >> 6 == 0 && m.decode().is_ok() && m.transaction_id == req.transaction_id {
                return Ok(m);
            }
            other(&buf[..n]);
        }
    }

    /// A signed `method` request with `attrs` (a fresh transaction id;
    /// retried once on 438); a success's integrity is checked.
    fn request(
        &mut self,
        method: Method,
        attrs: &dyn Fn() -> Vec<Box<dyn Setter>>,
        other: &mut dyn FnMut(&[u8]),
    ) -> Result<Message, String> {
        for _ in 0..2 {
            let mut setters: Vec<Box<dyn Setter>> = vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(method, CLASS_REQUEST)),
            ];
            setters.extend(attrs());
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.user.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, self.nonce.clone())));
            setters.push(Box::new(self.integrity()));
            setters.push(Box::new(FINGERPRINT));
            let mut resp = self.transact(&build(&setters), other)?;
            match error_code(&resp) {
                Some(438) => self.learn(&resp)?,
                Some(code) => return Err(format!("{method}_{code}").to_lowercase()),
                None => {
                    if resp.typ.class != CLASS_SUCCESS_RESPONSE {
                        return Err("not_a_response".into());
                    }
                    self.integrity()
                        .check(&mut resp)
                        .map_err(|_| "bad_integrity_in_response")?;
                    return Ok(resp);
                }
            }
        }
        Err(format!("{method}_438_twice").to_lowercase())
    }

    fn allocate(&mut self, reserve: bool) -> Result<(SocketAddr, bool), String> {
        let resp = self.request(
            METHOD_ALLOCATE,
            &|| {
                let mut a: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                })];
                if reserve {
                    a.push(Box::new(RawAttr(
                        stun::attributes::ATTR_EVEN_PORT,
                        vec![0x80],
                    )));
                }
                a
            },
            &mut |_| {},
        )?;
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&resp).map_err(|_| "no_relayed_address")?;
        let token = resp.contains(stun::attributes::ATTR_RESERVATION_TOKEN);
        Ok((SocketAddr::new(relayed.ip, relayed.port), token))
    }

    fn channel_bind(
        &mut self,
        number: u16,
        peer: SocketAddr,
        other: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        self.request(
            METHOD_CHANNEL_BIND,
            &|| {
                vec![
                    Box::new(ChannelNumber(number)) as Box<dyn Setter>,
                    Box::new(PeerAddress {
                        ip: peer.ip(),
                        port: peer.port(),
                    }),
                ]
            },
            other,
        )
        .map(|_| ())
    }

    fn refresh(&mut self, lifetime_s: u64, other: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        self.request(
            METHOD_REFRESH,
            &|| vec![Box::new(Lifetime(Duration::from_secs(lifetime_s))) as Box<dyn Setter>],
            other,
        )
        .map(|_| ())
    }
}

/// Socket buffers of the generator's sockets (the kernel caps them at
/// net.core.rmem_max / wmem_max), so that it is not what drops packets.
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket at `addr` with large buffers.
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// An attribute as type and value.
struct RawAttr(AttrType, Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + data.len() + 3);
    b.extend_from_slice(&number.to_be_bytes());
    b.extend_from_slice(&(data.len() as u16).to_be_bytes());
    b.extend_from_slice(data);
    b.resize(4 + data.len().next_multiple_of(4), 0);
    b
}

/// The sequence number in an echoed ChannelData on `CHANNEL`.
fn echoed_seq(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 12 || u16::from_be_bytes([bytes[0], bytes[1]]) != CHANNEL {
        return None;
    }
    Some(u64::from_be_bytes(bytes[4..12].try_into().ok()?))
}

/// Echoes every datagram back to its source until `stop`.
fn echo_peer(socket: UdpSocket, stop: Arc<AtomicBool>) {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// One steady stream until `end`, then the drain.
fn steady(
    cli: &Cli,
    peer: SocketAddr,
    per_stream_rate: f64,
    end: Instant,
    stats: &Stats,
) -> Result<(), String> {
    let mut s = Session::open(cli, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    s.allocate(false)?;
    s.channel_bind(CHANNEL, peer, &mut |_| {})?;
    let interval = Duration::from_secs_f64(1.0 / per_stream_rate);
    let refresh = Duration::from_secs(cli.refresh);
    let size = cli.size as usize;
    let mut received = std::collections::HashSet::new();
    let count = |bytes: &[u8], received: &mut std::collections::HashSet<u64>| {
        if let Some(seq) = echoed_seq(bytes) {
            if received.insert(seq) {
                stats.steady_received.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let mut seq: u64 = 0;
    let mut next_send = Instant::now();
    let mut next_refresh = Instant::now() + refresh;
    let mut payload = vec![0u8; size];
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_send {
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            s.socket
                .send_to(&channel_data(CHANNEL, &payload), s.server)
                .map_err(|e| format!("send: {e}"))?;
            stats.steady_sent.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            next_send += interval;
            continue;
        }
        if now >= next_refresh {
            let mut on_data = |b: &[u8]| count(b, &mut received);
            s.refresh(600, &mut on_data)?;
            s.channel_bind(CHANNEL, peer, &mut on_data)?;
            stats.steady_refreshes.fetch_add(1, Ordering::Relaxed);
            next_refresh += refresh;
            continue;
        }
        let wait = next_send.min(next_refresh).min(end) - now;
        s.socket
            .set_read_timeout(Some(wait.max(Duration::from_micros(100))))
            .map_err(|e| e.to_string())?;
        if let Ok((n, _)) = s.socket.recv_from(&mut buf) {
            count(&buf[..n], &mut received);
        }
    }
    // The last echoes, then free the allocation.
    let drain_end = Instant::now() + DRAIN;
    while (received.len() as u64) < seq {
        let left = drain_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        if let Ok((n, _)) = s.socket.recv_from(&mut buf) {
            count(&buf[..n], &mut received);
        }
    }
    s.refresh(0, &mut |_| {})
}

/// One churn iteration from source address `local`.
fn churn_once(
    cli: &Cli,
    local: IpAddr,
    echo: SocketAddr,
    reserve: bool,
    stats: &Stats,
) -> Result<(), String> {
    let mut s = Session::open(cli, local)?;
    let (_, token) = s.allocate(reserve)?;
    stats.churn_allocations.fetch_add(1, Ordering::Relaxed);
    if token {
        stats.churn_reservations.fetch_add(1, Ordering::Relaxed);
    }
    let peers: Vec<SocketAddr> = (2..6)
        .map(|x| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, x)), 9))
        .collect();
    s.request(
        METHOD_CREATE_PERMISSION,
        &|| {
            peers
                .iter()
                .map(|p| {
                    Box::new(PeerAddress {
                        ip: p.ip(),
                        port: p.port(),
                    }) as Box<dyn Setter>
                })
                .collect()
        },
        &mut |_| {},
    )?;
    s.channel_bind(CHANNEL + 1, peers[0], &mut |_| {})?;
    s.channel_bind(CHANNEL, echo, &mut |_| {})?;
    let mut buf = [0u8; 2048];
    for seq in 0..3u64 {
        let mut payload = [0u8; 32];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        s.socket
            .send_to(&channel_data(CHANNEL, &payload), s.server)
            .map_err(|e| format!("send: {e}"))?;
        stats.churn_sent.fetch_add(1, Ordering::Relaxed);
        s.socket
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        match s.socket.recv_from(&mut buf) {
            Ok((n, _)) if echoed_seq(&buf[..n]) == Some(seq) => {
                stats.churn_received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => return Err("churn_unexpected_datagram".into()),
            Err(_) => return Err("churn_echo_timeout".into()),
        }
    }
    s.refresh(0, &mut |_| {})
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.server.ip().is_loopback() || !cli.server.is_ipv4() {
        eprintln!("soak_churn: --server {} is not on 127.0.0.0/8", cli.server);
        return ExitCode::FAILURE;
    }
    let stats = Stats::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Not 127.0.0.1, the relay's own address: a plain loopback peer.
    let echo_socket = bind(SocketAddr::from(([127, 0, 0, 250], 0))).expect("bind the echo peer");
    let echo = echo_socket.local_addr().expect("echo peer address");
    let echo_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || echo_peer(echo_socket, stop))
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(cli.duration);
    let per_stream = cli.rate as f64 / cli.streams as f64;
    std::thread::scope(|scope| {
        for _ in 0..cli.streams {
            scope.spawn(|| {
                if let Err(e) = steady(&cli, echo, per_stream, end, &stats) {
                    stats.error(format!("steady_{e}"));
                }
            });
        }
        for t in 0..cli.churners {
            let (cli, stats) = (&cli, &stats);
            scope.spawn(move || {
                let mut i: u64 = 0;
                // Bounded by the deadline.
                while Instant::now() < end {
                    let x = 2 + ((i * cli.churners + t) % 200) as u8;
                    let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, x));
                    if let Err(e) = churn_once(cli, local, echo, i.is_multiple_of(10), stats) {
                        stats.error(e);
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(cli.churn_pause_ms));
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();

    let sent = stats.steady_sent.load(Ordering::Relaxed);
    let received = stats.steady_received.load(Ordering::Relaxed);
    let lost = sent.saturating_sub(received);
    let errors = stats
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = serde_json::json!({
        "duration_s": started.elapsed().as_secs_f64(),
        "steady_streams": cli.streams,
        "steady_rate": cli.rate,
        "steady_sent": sent,
        "steady_received": received,
        "steady_lost": lost,
        "steady_loss_pct": if sent == 0 { 0.0 } else { lost as f64 * 100.0 / sent as f64 },
        "steady_refreshes": stats.steady_refreshes.load(Ordering::Relaxed),
        "churn_allocations": stats.churn_allocations.load(Ordering::Relaxed),
        "churn_reservations": stats.churn_reservations.load(Ordering::Relaxed),
        "churn_sent": stats.churn_sent.load(Ordering::Relaxed),
        "churn_received": stats.churn_received.load(Ordering::Relaxed),
        "errors": errors.values().sum::<u64>(),
        "error_kinds": errors,
    });
    println!("{report}");
    if lost > 0 || !errors.is_empty() || sent == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
