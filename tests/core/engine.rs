//! A harness for scenario tests of the sans-IO core on virtual time: a
//! `Server`, fake relay sockets, and a small STUN client that signs requests.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use turnd::core::auth::{long_term_key, Credentials};
use turnd::core::global::Global;
use turnd::core::message::decode_xor_address;
use turnd::core::peer_policy::PeerPolicy;
use turnd::core::{
    CoreConfig, FiveTuple, Now, Outbox, RelaySockets, Server, Source, Transmit, Transport,
};
use turnd::metrics::Metrics;

pub const REALM: &str = "example.org";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";
pub const SECRET: &str = "rest-secret";
pub const SERVER: &str = "192.0.2.10:3478";
pub const RELAY_IP: &str = "192.0.2.10";
pub const EXTERNAL_IP: &str = "203.0.113.10";
/// A public peer (allowed by the default policy).
pub const PEER: &str = "198.18.0.1:5000";
pub const UNIX_START: u64 = 1_800_000_000;

#[derive(Default)]
pub struct FakeRelays {
    pub open: HashSet<SocketAddr>,
    pub taken: HashSet<u16>,
    /// Relay sockets that send with the don't-fragment bit.
    pub dont_fragment: HashSet<SocketAddr>,
    /// A platform that cannot set it.
    pub no_dont_fragment: bool,
    /// Of `open`, the listening TCP relay sockets (RFC 6062).
    pub tcp: HashSet<SocketAddr>,
}

impl RelaySockets for FakeRelays {
    fn open(&mut self, addr: SocketAddr) -> io::Result<()> {
        if self.taken.contains(&addr.port()) || !self.open.insert(addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        Ok(())
    }
    fn close(&mut self, addr: SocketAddr) {
        assert!(
            self.open.remove(&addr),
            "closed a relay socket that was not open: {addr}"
        );
        self.tcp.remove(&addr);
    }
    fn open_tcp(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.open(addr)?;
        self.tcp.insert(addr);
        Ok(())
    }
    fn reserve(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.open(addr)
    }
    fn claim(&mut self, addr: SocketAddr) -> io::Result<()> {
        assert!(
            self.open.contains(&addr),
            "claimed a port that was not reserved: {addr}"
        );
        Ok(())
    }
    fn unreserve(&mut self, addr: SocketAddr) {
        self.close(addr)
    }
    fn dont_fragment(&mut self, addr: SocketAddr) -> io::Result<()> {
        assert!(self.open.contains(&addr), "DF on a closed socket: {addr}");
        if self.no_dont_fragment {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.dont_fragment.insert(addr);
        Ok(())
    }
}

pub fn config() -> CoreConfig {
    let mut users = std::collections::HashMap::new();
    users.insert(USER.to_string(), long_term_key(USER, REALM, PASSWORD));
    users.insert("bob".to_string(), long_term_key("bob", REALM, PASSWORD));
    CoreConfig {
        credentials: Credentials::new(REALM.into(), users, vec![SECRET.into()]),
        relay_bind: RELAY_IP.parse().unwrap(),
        relay_advertised: EXTERNAL_IP.parse().unwrap(),
        relay_other: None,
        default_family: Some(turnd::core::Family::V4),
        port_low: 50000,
        port_high: 50099,
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        nonce_lifetime_s: 600,
        algorithms: vec![
            turnd::core::auth_sha256::Algorithm::Sha256,
            turnd::core::auth_sha256::Algorithm::Md5,
        ],
        allocations_per_user: 3,
        static_user_allocations: [(USER.to_string(), 3), ("bob".to_string(), 3)].into(),
        allocations_total: 5,
        permissions_per_allocation: 4,
        channels_per_allocation: 2,
        // 198.18.0.0/15 is a benchmarking range, denied by default: allowed
        // here so the scenarios have a "public" peer that is not routable.
        peer_policy: PeerPolicy::new(vec!["198.18.0.0/15".parse().unwrap()], vec![]),
        own_listeners: vec![SERVER.parse().unwrap()],
        unauthenticated_per_s: 100,
        unauthenticated_burst: 20,
        prefix_rate_limit: Default::default(),
        peer_refusal_burst: 0,
        peer_refusal_interval: Duration::from_secs(6),
        redact_logs: false,
        redirect: Default::default(),
        caps: Default::default(),
        workers: 1,
        tcp_connections_per_allocation: 4,
        tcp_connect_timeout: Duration::from_secs(30),
    }
}

pub struct Harness {
    pub server: Server,
    pub relays: FakeRelays,
    pub metrics: Arc<Metrics>,
    pub t0: Instant,
    pub now: Now,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(config())
    }

    pub fn with(cfg: CoreConfig) -> Self {
        let metrics = Arc::new(Metrics::new());
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        Harness {
            server: Server::new(cfg, metrics.clone(), Arc::new(Global::default()), [7; 32]),
            relays: FakeRelays::default(),
            metrics,
            t0,
            now: Now {
                instant: t0,
                unix_secs: UNIX_START,
            },
        }
    }

    pub fn advance(&mut self, secs: u64) {
        self.now.instant += Duration::from_secs(secs);
        self.now.unix_secs += secs;
        self.server.handle_timeout(self.now, &mut self.relays);
    }

    /// Everything the server sends in answer to `bytes` from `ft`.
    pub fn feed(&mut self, ft: FiveTuple, bytes: &[u8]) -> Vec<Transmit> {
        let mut out = Outbox::default();
        self.server
            .handle_client(self.now, ft, bytes, &mut self.relays, &mut out);
        out.to_transmits()
    }

    /// The single response to a request, decoded.
    pub fn request(&mut self, ft: FiveTuple, bytes: &[u8]) -> Message {
        let out = self.feed(ft, bytes);
        assert_eq!(out.len(), 1, "expected exactly one response, got {out:?}");
        assert_eq!(out[0].source, Source::Client(ft));
        assert_eq!(out[0].destination, ft.client);
        parse(&out[0].payload)
    }

    pub fn peer_sends(&mut self, relay_port: u16, peer: &str, data: &[u8]) -> Vec<Transmit> {
        let mut out = Outbox::default();
        let relay = SocketAddr::new(RELAY_IP.parse().unwrap(), relay_port);
        self.server
            .handle_peer(self.now, relay, peer.parse().unwrap(), data, &mut out);
        out.to_transmits()
    }

    pub fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.server.flush_metrics();
        let samples = turnd::metrics::text::parse_prometheus_text(&self.metrics.encode());
        turnd::metrics::text::find(&samples, name, labels).unwrap_or(0.0)
    }
}

pub fn client(port: u16) -> FiveTuple {
    FiveTuple {
        client: SocketAddr::new("192.0.2.99".parse().unwrap(), port),
        server: SERVER.parse().unwrap(),
        transport: Transport::Udp,
    }
}

pub fn parse(bytes: &[u8]) -> Message {
    let mut m = Message {
        raw: bytes.to_vec(),
        ..Default::default()
    };
    m.decode().expect("server sent a valid STUN message");
    m
}

pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

pub fn text(m: &Message, t: AttrType) -> Option<String> {
    m.get(t).ok().map(|v| String::from_utf8(v).unwrap())
}

pub fn xor_addr(m: &Message, t: AttrType) -> Option<SocketAddr> {
    decode_xor_address(&m.get(t).ok()?, &m.transaction_id.0)
}

/// A client-side credential state: username, password, realm and nonce.
#[derive(Clone)]
pub struct Creds {
    pub username: String,
    pub password: String,
    pub nonce: String,
}

impl Creds {
    pub fn key(&self) -> Vec<u8> {
        long_term_key(&self.username, REALM, &self.password).to_vec()
    }
}

/// Builds a request: `attrs` in order, then USERNAME/REALM/NONCE and
/// MESSAGE-INTEGRITY when `creds` is given, then FINGERPRINT if asked.
pub fn build(
    method: Method,
    class: MessageClass,
    tid: [u8; 12],
    attrs: &[(AttrType, Vec<u8>)],
    creds: Option<&Creds>,
    fingerprint: bool,
) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(MessageType::new(method, class));
    m.transaction_id = TransactionId(tid);
    m.write_header();
    for (t, v) in attrs {
        m.add(*t, v);
    }
    if let Some(c) = creds {
        m.add(ATTR_USERNAME, c.username.as_bytes());
        m.add(ATTR_REALM, REALM.as_bytes());
        m.add(ATTR_NONCE, c.nonce.as_bytes());
        MessageIntegrity(c.key()).add_to(&mut m).unwrap();
    }
    if fingerprint {
        FINGERPRINT.add_to(&mut m).unwrap();
    }
    m.raw
}

pub fn tid(n: u8) -> [u8; 12] {
    [n; 12]
}

pub fn xor_attr(t: AttrType, addr: &str, tid: [u8; 12]) -> (AttrType, Vec<u8>) {
    let mut m = Message::new();
    m.transaction_id = TransactionId(tid);
    m.write_header();
    let a: SocketAddr = addr.parse().unwrap();
    stun::xoraddr::XorMappedAddress {
        ip: a.ip(),
        port: a.port(),
    }
    .add_to_as(&mut m, t)
    .unwrap();
    (t, m.get(t).unwrap())
}

pub fn transport_udp() -> (AttrType, Vec<u8>) {
    (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

pub fn lifetime(secs: u32) -> (AttrType, Vec<u8>) {
    (ATTR_LIFETIME, secs.to_be_bytes().to_vec())
}

/// Gets a nonce (401 challenge) and returns signed credentials for `user`.
pub fn login(h: &mut Harness, ft: FiveTuple, user: &str, password: &str) -> Creds {
    let req = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        tid(0xEE),
        &[transport_udp()],
        None,
        false,
    );
    let resp = h.request(ft, &req);
    assert_eq!(error_code(&resp), Some(401));
    Creds {
        username: user.into(),
        password: password.into(),
        nonce: text(&resp, ATTR_NONCE).expect("401 carries a NONCE"),
    }
}

/// Allocates for `ft` as alice; returns the credentials and the relay port.
pub fn allocate(h: &mut Harness, ft: FiveTuple) -> (Creds, u16) {
    allocate_as(h, ft, USER)
}

/// Allocates for `ft` as static user `user` (password [`PASSWORD`]).
pub fn allocate_as(h: &mut Harness, ft: FiveTuple, user: &str) -> (Creds, u16) {
    let creds = login(h, ft, user, PASSWORD);
    let resp = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&creds),
            false,
        ),
    );
    assert_eq!(error_code(&resp), None, "allocate failed: {resp}");
    let relay = xor_addr(&resp, ATTR_XOR_RELAYED_ADDRESS).unwrap();
    (creds, relay.port())
}

/// Logs in as alice and sends an Allocate (UDP) with `attrs` added;
/// returns the credentials and the response, whatever it is.
pub fn allocate_with(
    h: &mut Harness,
    ft: FiveTuple,
    attrs: &[(AttrType, Vec<u8>)],
) -> (Creds, Message) {
    let c = login(h, ft, USER, PASSWORD);
    let mut all = vec![transport_udp()];
    all.extend_from_slice(attrs);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &all,
            Some(&c),
            false,
        ),
    );
    (c, r)
}

/// Sends a signed request and returns the response.
pub fn signed(
    h: &mut Harness,
    ft: FiveTuple,
    method: Method,
    n: u8,
    attrs: &[(AttrType, Vec<u8>)],
    creds: &Creds,
) -> Message {
    let t = tid(n);
    let attrs: Vec<_> = attrs.to_vec();
    h.request(
        ft,
        &build(method, CLASS_REQUEST, t, &attrs, Some(creds), false),
    )
}

pub fn peer_ip() -> IpAddr {
    PEER.parse::<SocketAddr>().unwrap().ip()
}

pub fn relay_addr(port: u16) -> std::net::SocketAddr {
    format!("{RELAY_IP}:{port}").parse().unwrap()
}

pub fn send_indication(peer: &str, data: &[u8], n: u8) -> Vec<u8> {
    build(
        METHOD_SEND,
        CLASS_INDICATION,
        tid(n),
        &[
            xor_attr(ATTR_XOR_PEER_ADDRESS, peer, tid(n)),
            (ATTR_DATA, data.to_vec()),
        ],
        None,
        false,
    )
}

pub fn channel_data(number: u16, data: &[u8]) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

pub fn permit(h: &mut Harness, ft: FiveTuple, c: &Creds, peers: &[&str], n: u8) -> Message {
    let attrs: Vec<_> = peers
        .iter()
        .map(|p| xor_attr(ATTR_XOR_PEER_ADDRESS, p, tid(n)))
        .collect();
    signed(h, ft, METHOD_CREATE_PERMISSION, n, &attrs, c)
}

pub fn bind(h: &mut Harness, ft: FiveTuple, c: &Creds, number: u16, peer: &str, n: u8) -> Message {
    let attrs = [
        (
            ATTR_CHANNEL_NUMBER,
            vec![(number >> 8) as u8, number as u8, 0, 0],
        ),
        xor_attr(ATTR_XOR_PEER_ADDRESS, peer, tid(n)),
    ];
    signed(h, ft, METHOD_CHANNEL_BIND, n, &attrs, c)
}
