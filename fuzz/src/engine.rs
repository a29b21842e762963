//! The `engine` target: a program of [`Op`]s run against two turnd workers
//! (two [`Server`]s sharing one [`Global`], as the shell runs one per core)
//! on virtual time, with fake relay sockets that behave like the kernel's
//! (a port held by one worker cannot be bound by the other).
//!
//! Requests are built and signed by the harness with the test credentials
//! and the nonce each client last received, so allocations, permissions and
//! channels really happen; raw and re-signed captured messages cover the
//! rest. After every step: no panic; quotas (per user, in total, per
//! allocation) hold and agree with the shared counters; each allocation's
//! relay socket is open, owned by its worker, and no other socket is open
//! except port reservations; each response goes back to the client that
//! asked and decodes; nothing leaves a relay socket except to a peer the
//! policy allows and the client holds a permission for; each step emits at
//! most one datagram. At the end, time jumps past every lifetime and all
//! state must be gone: no allocation, no socket, no timer, no quota count.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use turnd::core::auth::{long_term_key, quota_user, rest_password, Credentials};
use turnd::core::global::Global;
use turnd::core::message::decode_xor_address;
use turnd::core::peer_policy::{canonical, PeerPolicy};
use turnd::core::{CoreConfig, FiveTuple, Now, Outbox, RelaySockets, Server, Source, Transport};
use turnd::metrics::Metrics;

use crate::ops::{flags, Attr, Op, Peer, Reader};

pub const REALM: &str = "example.org";
pub const PASSWORD: &str = "wonderland";
pub const SECRET: &str = "rest-secret";
/// Where relay sockets are bound, and what XOR-RELAYED-ADDRESS says.
pub const RELAY_BIND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const RELAY_ADVERTISED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const PORT_LOW: u16 = 50000;
pub const PORT_HIGH: u16 = 50007;
/// Ports of the range that "another process" holds.
pub const TAKEN: [u16; 2] = [50003, 50006];
pub const PER_USER: usize = 3;
pub const TOTAL: usize = 5;
pub const PERMISSIONS: usize = 4;
pub const CHANNELS: usize = 2;
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
pub const UNIX_START: u64 = 1_800_000_000;

/// The server's listeners; the last stands for every local address.
pub fn listeners() -> Vec<SocketAddr> {
    [
        "192.0.2.10:3478",
        "192.0.2.10:3479",
        "192.0.2.10:5349",
        "0.0.0.0:3480",
    ]
    .iter()
    .map(|s| s.parse().expect("listener"))
    .collect()
}

/// The 5-tuples clients talk on; client `i` lands on worker `i % 2`.
pub fn clients() -> Vec<FiveTuple> {
    let ft = |client: &str, server: &str, transport| FiveTuple {
        client: client.parse().expect("client"),
        server: server.parse().expect("server"),
        transport,
    };
    vec![
        ft("192.0.2.99:40000", "192.0.2.10:3478", Transport::Udp),
        ft("192.0.2.99:40001", "192.0.2.10:3478", Transport::Udp),
        ft("[2001:db8::99]:40002", "192.0.2.10:3478", Transport::Udp),
        ft("198.51.100.7:50123", "192.0.2.10:3478", Transport::Tcp),
        ft("198.51.100.8:50124", "192.0.2.10:5349", Transport::Tls),
        // Same client address as client 0, other listener: another 5-tuple.
        ft("192.0.2.99:40000", "192.0.2.10:3479", Transport::Udp),
    ]
}

/// Peers worth trying: allowed ones, each special range in each encoding,
/// our own addresses.
pub fn known_peers() -> Vec<SocketAddr> {
    [
        "198.18.0.1:5000",      // allowed by config
        "198.19.200.7:6000",    // allowed by config
        "198.18.255.9:5000",    // allowed range, but denied by config
        "8.8.8.8:53",           // public
        "[2606:4700::1111]:53", // public IPv6
        "127.0.0.1:22",
        "10.0.0.1:80",
        "169.254.169.254:80",
        "0.0.0.0:1",
        "100.64.0.1:1",
        "172.16.0.1:1",
        "192.168.1.1:1",
        "224.0.0.1:1",
        "255.255.255.255:1",
        "[::1]:22",
        "[::]:1",
        "[::ffff:127.0.0.1]:22",
        "[::ffff:198.18.0.1]:5000",
        "[::127.0.0.1]:22",
        "[::ffff:0:127.0.0.1]:22",
        "[64:ff9b::a9fe:a9fe]:80",
        "[64:ff9b::808:808]:53",
        "[64:ff9b:1::a00:1]:1",
        "[2002:7f00:1::1]:1",
        "[2002:c612:1::1]:1",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]:1",
        "[fe80::1]:1",
        "[fc00::1]:1",
        "[ff02::1]:1",
        "[2001:db8::1]:1",
        "192.0.2.10:3478",   // our listener
        "192.0.2.10:22",     // our relay address, not a relay port
        "203.0.113.10:3480", // advertised address on the wildcard listener's port
        "203.0.113.10:50001",
        "192.0.2.10:50002",
        "127.0.0.1:3480", // loopback on the wildcard listener's port
        "[::ffff:203.0.113.10]:50004",
    ]
    .iter()
    .map(|s| s.parse().expect("peer"))
    .collect()
}

/// The peer policy of the fuzzed config.
pub fn policy() -> PeerPolicy {
    PeerPolicy::new(
        vec!["198.18.0.0/15".parse().expect("net")],
        vec!["198.18.255.0/24".parse().expect("net")],
    )
}

pub fn config() -> CoreConfig {
    let mut users = HashMap::new();
    for user in ["alice", "bob"] {
        users.insert(user.to_string(), long_term_key(user, REALM, PASSWORD));
    }
    CoreConfig {
        credentials: Credentials::new(REALM.into(), users, vec![SECRET.into()]),
        relay_bind: RELAY_BIND.into(),
        relay_advertised: RELAY_ADVERTISED.into(),
        relay_other: None,
        default_family: Some(turnd::core::Family::V4),
        port_low: PORT_LOW,
        port_high: PORT_HIGH,
        default_lifetime: Duration::from_secs(600),
        max_lifetime: MAX_LIFETIME,
        nonce_lifetime_s: 600,
        algorithms: vec![
            turnd::core::auth_sha256::Algorithm::Sha256,
            turnd::core::auth_sha256::Algorithm::Md5,
        ],
        allocations_per_user: PER_USER,
        static_user_allocations: ["alice", "bob"].map(|u| (u.to_string(), PER_USER)).into(),
        allocations_total: TOTAL,
        permissions_per_allocation: PERMISSIONS,
        channels_per_allocation: CHANNELS,
        peer_policy: policy(),
        own_listeners: listeners(),
        unauthenticated_per_s: 50,
        unauthenticated_burst: 10,
        prefix_rate_limit: Default::default(),
        peer_refusal_burst: 0,
        peer_refusal_interval: Duration::from_secs(6),
        redact_logs: false,
        redirect: Default::default(),
        caps: Default::default(),
        // The fake kernel below has two workers.
        workers: 2,
        tcp_connections_per_allocation: 4,
        tcp_connect_timeout: Duration::from_secs(30),
    }
}

/// A relay socket as the fake kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Socket {
    worker: usize,
    /// Bound and held for a RESERVATION-TOKEN, not yet claimed.
    reserved: bool,
}

/// Relay sockets of both workers: one port space, like the kernel's.
#[derive(Debug, Default)]
struct Kernel {
    sockets: HashMap<SocketAddr, Socket>,
}

/// One worker's view of the [`Kernel`], checking that it only touches
/// sockets in the state the call implies.
struct Relays<'a> {
    kernel: &'a mut Kernel,
    worker: usize,
}

impl RelaySockets for Relays<'_> {
    fn open(&mut self, addr: SocketAddr) -> io::Result<()> {
        assert_eq!(
            addr.ip(),
            IpAddr::V4(RELAY_BIND),
            "relay bound off the relay address"
        );
        assert!(
            (PORT_LOW..=PORT_HIGH).contains(&addr.port()),
            "relay port {addr} out of range"
        );
        if TAKEN.contains(&addr.port()) || self.kernel.sockets.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let s = Socket {
            worker: self.worker,
            reserved: false,
        };
        self.kernel.sockets.insert(addr, s);
        Ok(())
    }

    fn close(&mut self, addr: SocketAddr) {
        match self.kernel.sockets.remove(&addr) {
            Some(s) if s.worker == self.worker && !s.reserved => {}
            other => panic!("worker {} closed {addr}, which is {other:?}", self.worker),
        }
    }

    fn reserve(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.open(addr)?;
        if let Some(s) = self.kernel.sockets.get_mut(&addr) {
            s.reserved = true;
        }
        Ok(())
    }

    fn claim(&mut self, addr: SocketAddr) -> io::Result<()> {
        match self.kernel.sockets.get_mut(&addr) {
            Some(s) if s.reserved => {
                *s = Socket {
                    worker: self.worker,
                    reserved: false,
                };
                Ok(())
            }
            other => panic!("worker {} claimed {addr}, which is {other:?}", self.worker),
        }
    }

    fn unreserve(&mut self, addr: SocketAddr) {
        match self.kernel.sockets.remove(&addr) {
            Some(s) if s.reserved => {}
            other => panic!(
                "worker {} unreserved {addr}, which is {other:?}",
                self.worker
            ),
        }
    }

    fn dont_fragment(&mut self, addr: SocketAddr) -> io::Result<()> {
        match self.kernel.sockets.get(&addr) {
            Some(s) if s.worker == self.worker && !s.reserved => Ok(()),
            other => panic!(
                "worker {} set DF on {addr}, which is {other:?}",
                self.worker
            ),
        }
    }
}

/// What a run reached, for the seed tests (a seed that never allocates
/// would fuzz nothing past authentication).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    pub responses: usize,
    pub successes: usize,
    pub allocations: usize,
    pub relayed_to_peer: usize,
    pub relayed_to_client: usize,
    pub reservations: usize,
}

struct Harness {
    workers: Vec<Server>,
    global: Arc<Global>,
    kernel: Kernel,
    clients: Vec<FiveTuple>,
    peers: Vec<SocketAddr>,
    policy: PeerPolicy,
    listeners: Vec<SocketAddr>,
    now: Now,
    nonces: Vec<Option<String>>,
    /// RESERVATION-TOKENs seen in responses, newest last.
    tokens: Vec<[u8; 8]>,
    /// XOR-RELAYED-ADDRESSes seen in responses.
    relayed: Vec<SocketAddr>,
    out: Outbox,
    reached: Reached,
    /// Check that unauthenticated responses are no larger than requests
    /// (issue 6 requirement 4); off until that lands.
    amplification: bool,
}

/// Metrics are shared by the runs of a thread: building a registry per
/// input would dominate the run time. Gauges are compared before and after
/// a run (per thread, as `cargo test` runs tests in parallel).
fn metrics() -> Arc<Metrics> {
    thread_local! {
        static METRICS: Arc<Metrics> = Arc::new(Metrics::new());
    }
    METRICS.with(Arc::clone)
}

/// Origin of virtual time, taken once.
fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // only the origin of virtual time
    *T0.get_or_init(Instant::now)
}

/// Target `engine`.
pub fn run(data: &[u8]) {
    run_reached(data);
}

/// Runs a program; returns what it reached.
pub fn run_reached(data: &[u8]) -> Reached {
    let metrics = metrics();
    let active_before = active(&metrics);
    let global = Arc::new(Global::default());
    let workers = (0..2u8)
        .map(|w| Server::new(config(), metrics.clone(), global.clone(), [w + 1; 32]))
        .collect();
    let clients = clients();
    let mut h = Harness {
        workers,
        global,
        kernel: Kernel::default(),
        nonces: vec![None; clients.len()],
        clients,
        peers: known_peers(),
        policy: policy(),
        listeners: listeners(),
        now: Now {
            instant: t0(),
            unix_secs: UNIX_START,
        },
        tokens: Vec::new(),
        relayed: Vec::new(),
        out: Outbox::default(),
        reached: Reached::default(),
        amplification: std::env::var_os("TURND_FUZZ_AMPLIFICATION").is_some(),
    };
    let mut reader = Reader::new(data);
    // Bounded work per input: libFuzzer inputs are at most a few kB anyway.
    for _ in 0..256 {
        let Some(op) = reader.op() else { break };
        h.step(op);
        h.check_state();
    }
    // Past every lifetime (allocation, channel quarantine, reservation).
    h.advance(MAX_LIFETIME + Duration::from_secs(3600));
    h.check_state();
    for (w, s) in h.workers.iter().enumerate() {
        assert_eq!(
            s.allocation_count(),
            0,
            "worker {w} kept allocations past their lifetime"
        );
        assert_eq!(
            s.poll_timeout(),
            None,
            "worker {w} kept timers with nothing to expire"
        );
    }
    assert!(
        h.kernel.sockets.is_empty(),
        "relay sockets leaked: {:?}",
        h.kernel.sockets
    );
    assert_eq!(h.global.total(), 0, "the total quota count leaked");
    assert_eq!(
        active(&metrics),
        active_before,
        "turnd_allocations_active drifted"
    );
    h.reached
}

fn active(m: &Metrics) -> i64 {
    ["udp", "tcp", "tls"]
        .iter()
        .map(|t| m.allocations_active.with_label_values(&[t]).get())
        .sum()
}

impl Harness {
    fn client(&self, i: u8) -> (usize, FiveTuple) {
        let i = usize::from(i) % self.clients.len();
        (i, self.clients[i])
    }

    fn advance(&mut self, by: Duration) {
        self.now.instant += by;
        self.now.unix_secs += by.as_secs();
        for (w, s) in self.workers.iter_mut().enumerate() {
            let mut relays = Relays {
                kernel: &mut self.kernel,
                worker: w,
            };
            s.handle_timeout(self.now, &mut relays);
        }
    }

    fn peer(&self, p: &Peer) -> SocketAddr {
        match p {
            Peer::Known(i) => self.peers[usize::from(*i) % self.peers.len()],
            Peer::Relay { index, bind } => {
                let ip = if *bind { RELAY_BIND } else { RELAY_ADVERTISED };
                let port = match self.relayed.len() {
                    0 => PORT_LOW + u16::from(*index) % (PORT_HIGH - PORT_LOW + 1),
                    n => self.relayed[usize::from(*index) % n].port(),
                };
                SocketAddr::new(ip.into(), port)
            }
            Peer::V4(ip, port) => SocketAddr::new(Ipv4Addr::from(*ip).into(), *port),
            Peer::V6(ip, port) => SocketAddr::new(Ipv6Addr::from(*ip).into(), *port),
        }
    }

    /// Username and password for credential selector `cred`.
    fn credential(&self, cred: u8) -> (String, String) {
        let rest = |expiry: u64, user: &str| {
            let name = format!("{expiry}:{user}");
            let password = rest_password(SECRET, &name);
            (name, password)
        };
        match cred % 6 {
            0 => ("alice".into(), PASSWORD.into()),
            1 => ("bob".into(), PASSWORD.into()),
            2 => rest(self.now.unix_secs + 86_400, "carol"),
            // Counts against alice's quota.
            3 => rest(self.now.unix_secs + 86_400, "alice"),
            4 => rest(self.now.unix_secs - 1, "dave"),
            _ => ("mallory".into(), PASSWORD.into()),
        }
    }

    /// Adds USERNAME, REALM, NONCE and MESSAGE-INTEGRITY.
    fn sign(&self, m: &mut Message, client: usize, cred: u8, flags: u8) {
        let (username, mut password) = self.credential(cred);
        if flags & flags::BAD_PASSWORD != 0 {
            password.push('!');
        }
        let nonce = if flags & flags::BAD_NONCE != 0 {
            "00000000000000000000000000000000beef".to_string()
        } else if flags & flags::OTHER_NONCE != 0 {
            let other = (client + 1) % self.nonces.len();
            self.nonces[other].clone().unwrap_or_default()
        } else {
            // No nonce yet: a made-up one earns a 438 and a real one.
            self.nonces[client].clone().unwrap_or_else(|| "x".into())
        };
        m.add(ATTR_USERNAME, username.as_bytes());
        m.add(ATTR_REALM, REALM.as_bytes());
        m.add(ATTR_NONCE, nonce.as_bytes());
        let key = long_term_key(&username, REALM, &password);
        // Refused after a FINGERPRINT the program put in: sent unsigned.
        let _ = MessageIntegrity(key.to_vec()).add_to(m);
    }

    fn xor_value(&self, tid: TransactionId, addr: SocketAddr) -> Vec<u8> {
        let mut m = Message::new();
        m.transaction_id = tid;
        m.write_header();
        stun::xoraddr::XorMappedAddress {
            ip: addr.ip(),
            port: addr.port(),
        }
        .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
        .expect("address fits");
        m.get(ATTR_XOR_PEER_ADDRESS).expect("just added")
    }

    fn attr(&self, m: &Message, a: &Attr) -> (AttrType, Vec<u8>) {
        match a {
            Attr::Lifetime(s) => (ATTR_LIFETIME, s.to_be_bytes().to_vec()),
            Attr::Transport(p) => (ATTR_REQUESTED_TRANSPORT, vec![*p, 0, 0, 0]),
            Attr::Peer(p) => (
                ATTR_XOR_PEER_ADDRESS,
                self.xor_value(m.transaction_id, self.peer(p)),
            ),
            Attr::Channel(n) => {
                let [a, b] = n.to_be_bytes();
                (ATTR_CHANNEL_NUMBER, vec![a, b, 0, 0])
            }
            Attr::EvenPort(b) => (ATTR_EVEN_PORT, vec![*b]),
            Attr::Token(n) => {
                let t = match self.tokens.len() {
                    0 => [*n; 8],
                    len => self.tokens[len - 1 - usize::from(*n) % len],
                };
                (ATTR_RESERVATION_TOKEN, t.to_vec())
            }
            Attr::Family(f) => (ATTR_REQUESTED_ADDRESS_FAMILY, vec![*f, 0, 0, 0]),
            Attr::DontFragment => (ATTR_DONT_FRAGMENT, vec![]),
            Attr::Data(d) => (ATTR_DATA, d.clone()),
            Attr::Other(t, v) => (AttrType(*t), v.clone()),
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Raw { client, bytes } => self.client_sends(client, &bytes, None),
            Op::Request {
                client,
                method,
                cred,
                flags,
                tid,
                attrs,
            } => {
                let (i, _) = self.client(client);
                let method = match method % 6 {
                    0 => METHOD_ALLOCATE,
                    1 => METHOD_REFRESH,
                    2 => METHOD_CREATE_PERMISSION,
                    3 => METHOD_CHANNEL_BIND,
                    4 => METHOD_BINDING,
                    _ => {
                        // Any other method (0x000-0xfff), from the selector.
                        let mut t = MessageType::default();
                        t.read_value(u16::from(method) << 6);
                        t.method
                    }
                };
                let mut m = Message::new();
                m.set_type(MessageType::new(method, CLASS_REQUEST));
                m.transaction_id = TransactionId([tid; 12]);
                m.write_header();
                for a in &attrs {
                    let (t, v) = self.attr(&m, a);
                    m.add(t, &v);
                }
                if flags & flags::UNSIGNED == 0 {
                    self.sign(&mut m, i, cred, flags);
                    if flags & flags::AFTER_INTEGRITY != 0 {
                        m.add(ATTR_LIFETIME, &0u32.to_be_bytes());
                    }
                }
                if flags & flags::FINGERPRINT != 0 {
                    let _ = FINGERPRINT.add_to(&mut m);
                }
                self.client_sends(client, &m.raw, None);
            }
            Op::Send {
                client,
                peer,
                data,
                fingerprint,
            } => {
                let mut m = Message::new();
                m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
                m.transaction_id = TransactionId([client; 12]);
                m.write_header();
                let peer = self.peer(&peer);
                m.add(
                    ATTR_XOR_PEER_ADDRESS,
                    &self.xor_value(m.transaction_id, peer),
                );
                m.add(ATTR_DATA, &data);
                if fingerprint {
                    let _ = FINGERPRINT.add_to(&mut m);
                }
                if m.raw.len() <= usize::from(u16::MAX) {
                    self.client_sends(client, &m.raw, Some(&data));
                }
            }
            Op::ChannelData {
                client,
                number,
                data,
            } => {
                // Mostly the bound range, so channels are hit.
                let number = if number & 0x8000 == 0 {
                    0x4000 | (number & 0x000f)
                } else {
                    number
                };
                let (_, ft) = self.client(client);
                let mut frame = number.to_be_bytes().to_vec();
                frame.extend((data.len() as u16).to_be_bytes());
                frame.extend_from_slice(&data);
                if ft.transport.is_stream() {
                    frame.resize(frame.len().next_multiple_of(4), 0);
                }
                self.client_sends(client, &frame, Some(&data));
            }
            Op::Peer { relay, peer, data } => {
                let port = match self.relayed.len() {
                    0 => PORT_LOW + u16::from(relay) % (PORT_HIGH - PORT_LOW + 1),
                    n if relay & 0x80 == 0 => self.relayed[usize::from(relay) % n].port(),
                    _ => PORT_LOW + u16::from(relay) % (PORT_HIGH - PORT_LOW + 1),
                };
                let relay = SocketAddr::new(RELAY_BIND.into(), port);
                let peer = self.peer(&peer);
                self.peer_sends_to(relay, peer, &data);
            }
            Op::Advance { secs } => self.advance(Duration::from_secs(secs.into())),
            Op::Close { client } => {
                let (i, ft) = self.client(client);
                if ft.transport.is_stream() {
                    let mut relays = Relays {
                        kernel: &mut self.kernel,
                        worker: i % 2,
                    };
                    self.workers[i % 2].close_connection(self.now, ft, &mut relays);
                    assert!(
                        self.workers[i % 2].allocation(&ft).is_none(),
                        "allocation outlived its connection"
                    );
                }
            }
            Op::Resign {
                client,
                cred,
                flags,
                bytes,
            } => {
                let bytes = self.resign(client, cred, flags, bytes);
                self.client_sends(client, &bytes, None);
            }
            Op::Drain { worker } => {
                let alternate = (worker & 1 == 1).then(|| "192.0.2.11:3478".parse().expect("addr"));
                self.workers[usize::from(worker / 2) % 2].drain(alternate);
            }
        }
    }

    /// A captured message with the harness's credentials.
    fn resign(&self, client: u8, cred: u8, flags: u8, bytes: Vec<u8>) -> Vec<u8> {
        let mut orig = Message {
            raw: bytes,
            ..Default::default()
        };
        if orig.decode().is_err() {
            return orig.raw;
        }
        let mut m = Message::new();
        m.set_type(orig.typ);
        m.transaction_id = orig.transaction_id;
        m.write_header();
        let mut signed = false;
        for a in &orig.attributes.0 {
            match a.typ {
                ATTR_USERNAME | ATTR_REALM | ATTR_NONCE | ATTR_FINGERPRINT => {}
                ATTR_MESSAGE_INTEGRITY | ATTR_MESSAGE_INTEGRITY_SHA256 => signed = true,
                ATTR_XOR_PEER_ADDRESS if flags & 1 != 0 => {
                    let port = decode_xor_address(&a.value, &orig.transaction_id.0)
                        .map_or(5000, |p| p.port());
                    let peer = SocketAddr::new(Ipv4Addr::new(198, 18, 0, 1).into(), port);
                    m.add(
                        ATTR_XOR_PEER_ADDRESS,
                        &self.xor_value(m.transaction_id, peer),
                    );
                }
                t => m.add(t, &a.value),
            }
        }
        if signed {
            let (i, _) = self.client(client);
            self.sign(&mut m, i, cred, 0);
        }
        if flags & 2 != 0 {
            let _ = FINGERPRINT.add_to(&mut m);
        }
        m.raw
    }

    /// Feeds `bytes` from client `client`; `relayed` is the payload a Send
    /// or ChannelData carried, which anything relayed must equal.
    fn client_sends(&mut self, client: u8, bytes: &[u8], relayed: Option<&[u8]>) {
        let (i, ft) = self.client(client);
        let w = i % 2;
        self.out.clear();
        let mut relays = Relays {
            kernel: &mut self.kernel,
            worker: w,
        };
        self.workers[w].handle_client(self.now, ft, bytes, &mut relays, &mut self.out);
        assert!(
            self.out.len() <= 1,
            "one datagram in, {} out",
            self.out.len()
        );
        let sent: Vec<(Source, SocketAddr, Vec<u8>)> = self
            .out
            .iter()
            .map(|(s, d, p)| (s, d, p.to_vec()))
            .collect();
        for (source, dest, payload) in sent {
            match source {
                Source::Client(to) => {
                    assert_eq!(to, ft, "answered on another 5-tuple");
                    assert_eq!(dest, ft.client, "answered another address");
                    self.response(i, bytes, &payload);
                }
                Source::Relay(relay) => {
                    let alloc = self.workers[w]
                        .allocation(&ft)
                        .expect("relayed for a client without an allocation");
                    assert_eq!(
                        relay, alloc.relay,
                        "relayed from another allocation's socket"
                    );
                    // Relay to relay goes to the bound address, not through
                    // the NAT (Server::hairpin); the permission is for the
                    // advertised one.
                    let logical = unhairpin(dest);
                    assert!(
                        alloc.has_permission(canonical(dest.ip()), self.now.instant)
                            || alloc.has_permission(logical.ip(), self.now.instant),
                        "relayed to {dest} without a permission"
                    );
                    self.check_destination(dest);
                    if let Some(data) = relayed {
                        assert_eq!(payload, data, "relayed payload differs");
                    }
                    self.reached.relayed_to_peer += 1;
                }
            }
        }
    }

    /// A response to client `i` for `request`.
    fn response(&mut self, i: usize, request: &[u8], payload: &[u8]) {
        self.reached.responses += 1;
        if payload.len() >= 4 && payload[4..].starts_with(&MAGIC_COOKIE.to_be_bytes()) {
            let mut m = Message {
                raw: payload.to_vec(),
                ..Default::default()
            };
            m.decode()
                .expect("turnd sent a STUN message that does not decode");
            if let Ok(nonce) = m.get(ATTR_NONCE) {
                self.nonces[i] = String::from_utf8(nonce).ok();
            }
            if m.typ.class == CLASS_SUCCESS_RESPONSE {
                self.reached.successes += 1;
                if m.typ.method == METHOD_ALLOCATE {
                    self.reached.allocations += 1;
                }
            }
            if let Ok(t) = m.get(ATTR_RESERVATION_TOKEN) {
                if let Ok(t) = t.try_into() {
                    self.tokens.push(t);
                    self.reached.reservations += 1;
                }
            }
            if let Some(a) = m
                .get(ATTR_XOR_RELAYED_ADDRESS)
                .ok()
                .and_then(|v| decode_xor_address(&v, &m.transaction_id.0))
            {
                assert_eq!(a.ip(), IpAddr::V4(RELAY_ADVERTISED));
                if !self.relayed.contains(&a) {
                    self.relayed.push(a);
                }
            }
            // A Binding success must carry XOR-MAPPED-ADDRESS, so it may
            // outgrow a bare request; only its rate is limited.
            let signed = m.contains(ATTR_MESSAGE_INTEGRITY);
            let stream = self.clients[i].transport.is_stream();
            let binding = m.typ.method == METHOD_BINDING && m.typ.class == CLASS_SUCCESS_RESPONSE;
            if self.amplification && !signed && !stream && !binding {
                assert!(
                    payload.len() <= request.len(),
                    "unauthenticated response of {} bytes to a request of {}",
                    payload.len(),
                    request.len()
                );
            }
        } else {
            // RFC 3489 Binding responses have no cookie.
            assert!(payload.len() >= 20, "short response {payload:?}");
            assert_eq!(payload[..2], [0x01, 0x01], "not a classic Binding response");
        }
    }

    fn peer_sends_to(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8]) {
        // The worker that holds the socket receives on it; nobody does for a
        // socket that is closed or only reserved.
        let Some(w) = self
            .kernel
            .sockets
            .get(&relay)
            .filter(|s| !s.reserved)
            .map(|s| s.worker)
        else {
            return;
        };
        self.out.clear();
        self.workers[w].handle_peer(self.now, relay, peer, data, &mut self.out);
        assert!(
            self.out.len() <= 1,
            "one datagram in, {} out",
            self.out.len()
        );
        for (source, dest, payload) in self.out.iter() {
            let Source::Client(ft) = source else {
                panic!("a peer datagram went out of a relay socket");
            };
            let alloc = self.workers[w]
                .allocation(&ft)
                .expect("relayed to a client without an allocation");
            assert_eq!(alloc.relay, relay, "relayed to another allocation's client");
            assert_eq!(dest, ft.client);
            // Our own relay sockets are seen at their bound address.
            let peer = unhairpin(peer);
            assert!(
                alloc.has_permission(canonical(peer.ip()), self.now.instant),
                "relayed from {peer} without a permission"
            );
            assert!(
                payload.len() <= data.len() + 52,
                "relayed data grew by more than a header"
            );
            if payload[0] >> 6 == 1 {
                let len = usize::from(u16::from_be_bytes([payload[2], payload[3]]));
                assert_eq!(&payload[4..4 + len], data, "ChannelData payload differs");
            } else {
                let mut m = Message {
                    raw: payload.to_vec(),
                    ..Default::default()
                };
                m.decode().expect("a Data indication that decodes");
                assert_eq!(m.get(ATTR_DATA).ok().as_deref(), Some(data));
                let from = decode_xor_address(
                    &m.get(ATTR_XOR_PEER_ADDRESS).expect("peer"),
                    &m.transaction_id.0,
                );
                assert_eq!(from, Some(peer));
            }
        }
        if !self.out.is_empty() {
            self.reached.relayed_to_client += 1;
        }
    }

    /// Relaying to `dest` must be allowed by the policy, or `dest` is one of
    /// our relay ports; never one of our listeners. The policy is checked
    /// against an independent list of what this config must never reach.
    fn check_destination(&self, dest: SocketAddr) {
        let ip = canonical(dest.ip());
        let own_relay = ip == IpAddr::V4(RELAY_BIND) || ip == IpAddr::V4(RELAY_ADVERTISED);
        let relay_port = (PORT_LOW..=PORT_HIGH).contains(&dest.port());
        assert!(
            self.policy.check(ip).is_allowed() || (own_relay && relay_port),
            "relayed to {dest}, which the policy denies"
        );
        assert!(
            !own_relay || relay_port,
            "relayed to {dest}: our own address outside the relay range"
        );
        for l in &self.listeners {
            let any = l.ip().is_unspecified() && (ip.is_loopback() || own_relay);
            assert!(
                !(l.port() == dest.port() && (l.ip() == ip || any)),
                "relayed to our own listener {l} as {dest}"
            );
        }
        if !own_relay {
            assert!(
                !never_reachable(ip),
                "relayed to {dest}, a special-purpose address"
            );
        }
    }

    /// Invariants over both workers' state.
    fn check_state(&self) {
        let mut per_user: HashMap<String, usize> = HashMap::new();
        let mut relays: HashSet<SocketAddr> = HashSet::new();
        let mut found = [0usize; 2];
        for (i, ft) in self.clients.iter().enumerate() {
            for (w, s) in self.workers.iter().enumerate() {
                let Some(a) = s.allocation(ft) else { continue };
                assert_eq!(w, i % 2, "allocation of client {i} on the wrong worker");
                found[w] += 1;
                *per_user
                    .entry(quota_user(&a.username).to_string())
                    .or_default() += 1;
                assert!(
                    relays.insert(a.relay),
                    "two allocations share relay {}",
                    a.relay
                );
                let sock = self.kernel.sockets.get(&a.relay);
                assert_eq!(
                    sock,
                    Some(&Socket {
                        worker: w,
                        reserved: false
                    }),
                    "allocation's relay socket {} is not open on its worker",
                    a.relay
                );
                assert_eq!(
                    a.advertised,
                    SocketAddr::new(RELAY_ADVERTISED.into(), a.relay.port())
                );
                assert!(
                    a.expires <= self.now.instant + MAX_LIFETIME,
                    "lifetime over the maximum"
                );
                assert!(a.permissions.len() <= PERMISSIONS, "permissions over quota");
                assert!(a.channels.len() <= CHANNELS, "channels over quota");
                assert!(a.channels.is_consistent(), "channel maps disagree");
                for (n, c) in a.channels.iter() {
                    let peer = &c.peer;
                    assert!(
                        (0x4000..=0x7FFF).contains(&n),
                        "channel number {n:#x} bound"
                    );
                    let ip = peer.ip();
                    assert_eq!(ip, canonical(ip), "channel peer not canonical");
                    let own = ip == IpAddr::V4(RELAY_BIND) || ip == IpAddr::V4(RELAY_ADVERTISED);
                    assert!(
                        own || self.policy.check(ip).is_allowed(),
                        "channel to denied {peer}"
                    );
                }
                for ip in a.permissions.ips() {
                    let own = ip == IpAddr::V4(RELAY_BIND) || ip == IpAddr::V4(RELAY_ADVERTISED);
                    assert!(
                        own || self.policy.check(ip).is_allowed(),
                        "permission for denied {ip}"
                    );
                    assert!(
                        own || !never_reachable(ip),
                        "permission for special-purpose {ip}"
                    );
                }
            }
        }
        for (w, s) in self.workers.iter().enumerate() {
            assert_eq!(
                s.allocation_count(),
                found[w],
                "worker {w} has allocations of unknown clients"
            );
        }
        let total: usize = found.iter().sum();
        assert!(
            total <= TOTAL,
            "{total} allocations over the total quota {TOTAL}"
        );
        // Unclaimed EVEN-PORT reservations hold a quota slot each.
        assert_eq!(
            self.global.total(),
            total + self.global.reservations(),
            "the shared quota count disagrees"
        );
        for (user, n) in per_user {
            assert!(
                n <= PER_USER,
                "{user} holds {n} allocations, quota {PER_USER}"
            );
        }
        for (addr, s) in &self.kernel.sockets {
            assert!(
                s.reserved || relays.contains(addr),
                "relay socket {addr} open without an allocation"
            );
        }
    }
}

/// Where a datagram between two of our relay sockets appears to come from:
/// the advertised address, when it was sent from the bound one (or
/// loopback) on a relay port.
fn unhairpin(addr: SocketAddr) -> SocketAddr {
    let local = addr.ip().is_loopback() || addr.ip() == IpAddr::V4(RELAY_BIND);
    if local && (PORT_LOW..=PORT_HIGH).contains(&addr.port()) {
        SocketAddr::new(RELAY_ADVERTISED.into(), addr.port())
    } else {
        addr
    }
}

/// Addresses the fuzzed config must never relay to, written independently
/// of turnd's policy: IPv4 special ranges other than the allowed
/// 198.18.0.0/15 (whose 198.18.255.0/24 is denied), IPv6 special ranges,
/// and IPv6 forms that embed a forbidden IPv4 address.
pub fn never_reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            let mid = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
            v6.is_unspecified()
                || v6.is_loopback()
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xff00) == 0xff00 // multicast
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[..6] == [0, 0, 0, 0, 0, 0xffff] && v4_forbidden(low)) // mapped
                || (s[..6] == [0; 6] && v4_forbidden(low)) // compatible
                || (s[..6] == [0, 0, 0, 0, 0xffff, 0] && v4_forbidden(low)) // translated
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && v4_forbidden(low)) // NAT64
                || (s[0] == 0x2002 && v4_forbidden(mid)) // 6to4
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
        }
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let allowed_benchmark = o[0] == 198 && (o[1] & 0xfe) == 18 && !(o[1] == 18 && o[2] == 255);
    if allowed_benchmark {
        return false;
    }
    ip.is_unspecified()
        || o[0] == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT
        || ip.is_multicast()
        || o[0] >= 240
        || ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
}
