//! Support for the hostile-input daemon tests (`malformed`, `ssrf`,
//! `amplification`, `resource_bounds`): a STUN client that signs whatever
//! bytes it is given ([`Client`], on [`wire`]), exact before/after checks of
//! the drop and refusal counters ([`Snapshot`]), a well-behaved client that
//! keeps relaying in the background while a test misbehaves on other
//! sockets ([`Steady`]), and readers of the daemon's RSS and open files.
//!
//! Every wait is bounded; nothing here retransmits.

#![allow(dead_code)]
// each test binary uses a part
// Deadlines of blocking reads; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

pub mod wire;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stun::integrity::MessageIntegrity;
use stun::message::Message;

use crate::common::raw::{decode, error_code, recv_from_within, RawClient, Relayed};
use crate::common::{Daemon, Scrape, PASSWORD, REALM, USER};
use wire::Msg;

/// Wait for something that must come.
pub const ANSWER: Duration = Duration::from_secs(5);
/// Wait that shows nothing comes (turnd answers on loopback in well under
/// a millisecond); used sparingly, a sentinel request is preferred.
pub const SILENCE: Duration = Duration::from_millis(300);

/// The counter families whose every change a test accounts for.
pub const WATCHED: &[&str] = &[
    "turnd_dropped_packets_total",
    "turnd_peer_denied_total",
    "turnd_auth_failures_total",
    "turnd_quota_rejections_total",
    "turnd_connections_rejected_total",
];

/// The watched counters at one moment, keyed `name{k=v,...}` (labels
/// sorted by name).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot(pub BTreeMap<String, f64>);

fn series_key(name: &str, labels: &[(String, String)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

impl Snapshot {
    pub fn of(scrape: &Scrape) -> Self {
        Snapshot(
            scrape
                .0
                .iter()
                .filter(|(n, _, _)| WATCHED.contains(&n.as_str()))
                .map(|(n, l, v)| (series_key(n, l), *v))
                .collect(),
        )
    }

    pub fn take(d: &Daemon) -> Self {
        Self::of(&d.scrape())
    }

    /// Series that moved since `before`, with by how much.
    pub fn changes_since(&self, before: &Snapshot) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let d = v - before.0.get(k).copied().unwrap_or(0.0);
                (d != 0.0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// Polls `/metrics` (at most 5 s) until the watched counters have moved by
/// exactly `want` since `before` (each key `name{k=v,...}`, labels sorted)
/// and by nothing else; returns the new snapshot. Fails with the changes
/// seen last.
pub fn expect_changes<K: AsRef<str>>(d: &Daemon, before: &Snapshot, want: &[(K, f64)]) -> Snapshot {
    let want: BTreeMap<String, f64> = want
        .iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(k, v)| (k.as_ref().to_string(), *v))
        .collect();
    let deadline = Instant::now() + ANSWER;
    loop {
        let now = Snapshot::take(d);
        let got = now.changes_since(before);
        if got == want {
            return now;
        }
        // Counters only grow: overshooting will not come right by waiting.
        let overshoot = got
            .iter()
            .any(|(k, v)| *v > want.get(k).copied().unwrap_or(0.0));
        assert!(
            !overshoot && Instant::now() < deadline,
            "counter changes\n  got  {got:?}\n  want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`expect_changes`] with no change at all.
pub fn expect_no_changes(d: &Daemon, before: &Snapshot) -> Snapshot {
    expect_changes::<&str>(d, before, &[])
}

/// `turnd_dropped_packets_total{reason=...}` as a [`Snapshot`] key.
pub fn dropped(reason: &str) -> String {
    format!("turnd_dropped_packets_total{{reason={reason}}}")
}

/// `turnd_peer_denied_total{reason=...}`.
pub fn denied(reason: &str) -> String {
    format!("turnd_peer_denied_total{{reason={reason}}}")
}

/// `turnd_auth_failures_total{reason=...}`.
pub fn auth_failure(reason: &str) -> String {
    format!("turnd_auth_failures_total{{reason={reason}}}")
}

/// `turnd_quota_rejections_total{kind=...}`.
pub fn quota(kind: &str) -> String {
    format!("turnd_quota_rejections_total{{kind={kind}}}")
}

/// `turnd_connections_rejected_total{transport=...,reason=...}`.
pub fn conn_rejected(transport: &str, reason: &str) -> String {
    format!("turnd_connections_rejected_total{{reason={reason},transport={transport}}}")
}

/// A STUN/TURN client on its own UDP socket that signs any attribute list
/// with the test user's long-term key: requests are [`Msg`]s, so attributes
/// can go after MESSAGE-INTEGRITY, twice, or be unknown.
pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
    pub key: [u8; 16],
}

impl Client {
    /// A client of `server` as the test user, with REALM and NONCE learnt.
    pub fn new(server: SocketAddr) -> Self {
        Self::with_credentials(server, USER, PASSWORD)
    }

    /// A client on 127.0.0.1 that learns REALM and NONCE from the 401 to an
    /// unsigned Refresh.
    pub fn with_credentials(server: SocketAddr, username: &str, password: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
        let mut c = Client {
            socket,
            server,
            username: username.to_string(),
            password: password.to_string(),
            realm: REALM.to_string(),
            nonce: String::new(),
            key: [0; 16],
        };
        let resp = c.transact(&Msg::new(wire::REFRESH_REQUEST, wire::tid()));
        assert_eq!(error_code(&resp), Some(401), "unsigned Refresh: {resp}");
        c.learn(&resp);
        c
    }

    /// Takes REALM and NONCE from a 401 or 438.
    pub fn learn(&mut self, resp: &Message) {
        let text = |t| {
            String::from_utf8(resp.get(t).unwrap_or_else(|_| panic!("{t} in {resp}")))
                .expect("UTF-8")
        };
        self.realm = text(stun::attributes::ATTR_REALM);
        self.nonce = text(stun::attributes::ATTR_NONCE);
        self.key = wire::long_term_key(&self.username, &self.realm, &self.password);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("client socket address")
    }

    /// `attrs`, then USERNAME, REALM and NONCE: ready for
    /// [`Msg::integrity`] with [`Self::key`].
    pub fn credentials(&self, typ: u16, tid: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Msg {
        Msg::new(typ, tid)
            .attrs(attrs)
            .attr(wire::USERNAME, self.username.as_bytes())
            .attr(wire::REALM, self.realm.as_bytes())
            .attr(wire::NONCE, self.nonce.as_bytes())
    }

    /// A request signed the ordinary way: `attrs`, credentials,
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    pub fn signed(&self, typ: u16, attrs: &[(u16, Vec<u8>)]) -> Msg {
        let tid = wire::tid();
        self.credentials(typ, tid, attrs)
            .integrity(&self.key)
            .fingerprint()
    }

    pub fn send(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.server)
            .expect("send to turnd");
    }

    /// The next datagram from turnd within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        recv_from_within(&self.socket, Some(self.server), timeout).map(|(b, _)| b)
    }

    /// Sends `req` and returns the first STUN message with its transaction
    /// id (others are discarded); fails after [`ANSWER`].
    pub fn transact(&self, req: &Msg) -> Message {
        self.send(&req.bytes);
        self.response_to(req.tid())
    }

    /// Waits for the response to transaction `tid`.
    pub fn response_to(&self, tid: [u8; 12]) -> Message {
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let bytes = self
                .recv(left)
                .unwrap_or_else(|| panic!("no response within {ANSWER:?}"));
            if let Some(m) = decode(&bytes) {
                if m.transaction_id.0 == tid {
                    return m;
                }
            }
        }
    }

    /// A signed request and its response; a success or a signed error must
    /// carry a valid MESSAGE-INTEGRITY.
    pub fn request(&self, typ: u16, attrs: &[(u16, Vec<u8>)]) -> Message {
        let mut resp = self.transact(&self.signed(typ, attrs));
        self.check_integrity(&mut resp);
        resp
    }

    /// Checks the MESSAGE-INTEGRITY of a response to a signed request (401
    /// and 438 have none).
    pub fn check_integrity(&self, resp: &mut Message) {
        if matches!(error_code(resp), Some(400 | 401 | 438)) {
            return;
        }
        MessageIntegrity(self.key.to_vec())
            .check(resp)
            .unwrap_or_else(|e| panic!("bad MESSAGE-INTEGRITY on {resp}: {e}"));
    }

    /// Allocate for a UDP relay with `extra` attributes.
    pub fn allocate(&self, extra: &[(u16, Vec<u8>)]) -> Message {
        let mut attrs = vec![(wire::REQUESTED_TRANSPORT, wire::UDP.to_vec())];
        attrs.extend_from_slice(extra);
        self.request(wire::ALLOCATE_REQUEST, &attrs)
    }

    /// Allocate an IPv6 relay (REQUESTED-ADDRESS-FAMILY, RFC 6156) when
    /// `v6`, else an IPv4 one; asserts success and returns the relayed
    /// address.
    pub fn allocate_family(&self, v6: bool) -> SocketAddr {
        let extra: &[(u16, Vec<u8>)] = if v6 {
            &[(wire::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]
        } else {
            &[]
        };
        let relay = crate::common::raw::relayed_address(&self.allocate(extra));
        assert_eq!(relay.is_ipv6(), v6, "{relay}");
        relay
    }

    /// Allocate both families (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2);
    /// asserts two relayed addresses and returns them, IPv4 first.
    pub fn allocate_dual(&self) -> (SocketAddr, SocketAddr) {
        let resp = self.allocate(&[(0x8000, vec![2, 0, 0, 0])]);
        crate::common::raw::relayed_address(&resp);
        let all: Vec<SocketAddr> = resp
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == stun::attributes::ATTR_XOR_RELAYED_ADDRESS)
            .filter_map(|a| {
                turnd::core::message::decode_xor_address(&a.value, &resp.transaction_id.0)
            })
            .collect();
        match all.as_slice() {
            [v4, v6] if v4.is_ipv4() && v6.is_ipv6() => (*v4, *v6),
            other => panic!("not a dual allocation: {other:?} in {resp}"),
        }
    }

    /// A signed request whose attributes depend on its transaction id (XOR
    /// addresses are masked with it, RFC 8489 §14.2).
    pub fn request_with(
        &self,
        typ: u16,
        attrs: impl Fn(&[u8; 12]) -> Vec<(u16, Vec<u8>)>,
    ) -> Message {
        let tid = wire::tid();
        let m = self
            .credentials(typ, tid, &attrs(&tid))
            .integrity(&self.key)
            .fingerprint();
        let mut resp = self.transact(&m);
        self.check_integrity(&mut resp);
        resp
    }

    /// CreatePermission with one XOR-PEER-ADDRESS per peer.
    pub fn create_permission(&self, peers: &[SocketAddr]) -> Message {
        self.request_with(wire::CREATE_PERMISSION_REQUEST, |tid| {
            peers
                .iter()
                .map(|p| (wire::XOR_PEER_ADDRESS, wire::xor_addr(*p, tid)))
                .collect()
        })
    }

    pub fn channel_bind(&self, number: u16, peer: SocketAddr) -> Message {
        self.request_with(wire::CHANNEL_BIND_REQUEST, |tid| {
            vec![
                (
                    wire::CHANNEL_NUMBER,
                    vec![(number >> 8) as u8, number as u8, 0, 0],
                ),
                (wire::XOR_PEER_ADDRESS, wire::xor_addr(peer, tid)),
            ]
        })
    }

    /// A Send indication of `data` to `peer`.
    pub fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let tid = wire::tid();
        let m = Msg::new(wire::SEND_INDICATION, tid)
            .attr(wire::XOR_PEER_ADDRESS, &wire::xor_addr(peer, &tid))
            .attr(wire::DATA, data);
        self.send(&m.bytes);
    }

    pub fn send_channel_data(&self, number: u16, data: &[u8]) {
        self.send(&wire::channel_data(number, data));
    }

    /// The next ChannelData or Data indication within `timeout`; fails on
    /// anything else.
    pub fn recv_relayed(&self, timeout: Duration) -> Option<Relayed> {
        let bytes = self.recv(timeout)?;
        if bytes.first().is_some_and(|b| b >> 6 == 0b01) {
            let number = u16::from_be_bytes([bytes[0], bytes[1]]);
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            let data = bytes.get(4..4 + len).expect("ChannelData length").to_vec();
            return Some(Relayed::Channel { number, data });
        }
        let m = decode(&bytes).unwrap_or_else(|| panic!("not STUN: {bytes:02x?}"));
        assert_eq!(m.typ.value(), 0x0017, "expected a Data indication, got {m}");
        let mut peer = turn::proto::peeraddr::PeerAddress::default();
        stun::message::Getter::get_from(&mut peer, &m).expect("XOR-PEER-ADDRESS");
        let data = m.get(stun::attributes::ATTR_DATA).expect("DATA");
        Some(Relayed::Indication {
            peer: SocketAddr::new(peer.ip, peer.port),
            data,
        })
    }

    /// Sends a Binding request and asserts the next datagram from turnd is
    /// its success response: whatever was sent before it drew no answer.
    pub fn sentinel(&self) {
        let req = Msg::new(wire::BINDING_REQUEST, wire::tid());
        self.send(&req.bytes);
        let bytes = self
            .recv(ANSWER)
            .expect("turnd answers the sentinel Binding request");
        let m = decode(&bytes).unwrap_or_else(|| panic!("not STUN: {bytes:02x?}"));
        assert_eq!(
            (m.typ.value(), m.transaction_id.0),
            (0x0101, req.tid()),
            "something other than the sentinel's answer came first: {m}"
        );
    }
}

/// The LIFETIME of a response, in seconds.
pub fn lifetime_of(resp: &Message) -> u32 {
    let v = resp
        .get(stun::attributes::ATTR_LIFETIME)
        .unwrap_or_else(|_| panic!("LIFETIME in {resp}"));
    u32::from_be_bytes(v.try_into().expect("4-byte LIFETIME"))
}

/// Attribute types of a message, in order.
pub fn attr_types(m: &Message) -> Vec<u16> {
    m.attributes.0.iter().map(|a| a.typ.0).collect()
}

/// What the background client did.
#[derive(Debug, Default)]
pub struct SteadyReport {
    pub round_trips: u64,
    pub failures: Vec<String>,
}

/// A well-behaved client relaying ChannelData to a loopback echo peer and
/// back, over and over, on a thread of its own, while the test misbehaves
/// on other sockets. Needs a daemon that allows 127.0.0.0/8 peers.
pub struct Steady {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SteadyReport>>,
}

/// Channel number of the steady client.
const STEADY_CHANNEL: u16 = 0x4000;
/// Round trips at most (the loop is bounded whatever happens).
const STEADY_MAX: u64 = 200_000;

impl Steady {
    pub fn start(server: SocketAddr) -> Steady {
        let mut client = RawClient::new(server);
        let relay = client.allocate();
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind the peer");
        let peer_addr = peer.local_addr().unwrap();
        let resp = client.channel_bind(STEADY_CHANNEL, peer_addr);
        assert_eq!(error_code(&resp), None, "steady ChannelBind: {resp}");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut report = SteadyReport::default();
            for seq in 0..STEADY_MAX {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    round_trip(&mut client, &peer, relay, seq)
                }));
                match outcome {
                    Ok(Ok(())) => report.round_trips += 1,
                    Ok(Err(why)) => report.failures.push(format!("#{seq}: {why}")),
                    Err(_) => report.failures.push(format!("#{seq}: panicked")),
                }
                if report.failures.len() > 10 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            report
        });
        Steady {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loop and asserts every round trip succeeded (and some
    /// happened); returns how many.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let report = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("the steady client thread");
        assert!(
            report.failures.is_empty(),
            "the well-behaved client was disturbed after {} round trips: {:?}",
            report.round_trips,
            report.failures
        );
        assert!(report.round_trips > 0, "the well-behaved client never ran");
        report.round_trips
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn round_trip(
    client: &mut RawClient,
    peer: &UdpSocket,
    relay: SocketAddr,
    seq: u64,
) -> Result<(), String> {
    let out = seq.to_be_bytes();
    client.send_channel_data(STEADY_CHANNEL, &out);
    let (got, from) = recv_from_within(peer, None, ANSWER).ok_or("the peer received nothing")?;
    if (got.as_slice(), from) != (&out[..], relay) {
        return Err(format!("peer got {got:?} from {from}"));
    }
    let back = (!seq).to_be_bytes();
    peer.send_to(&back, relay).map_err(|e| e.to_string())?;
    match client.recv_relayed(ANSWER) {
        Some(Relayed::Channel { number, data }) if number == STEADY_CHANNEL && data == back => {
            Ok(())
        }
        other => Err(format!("client got {other:?}")),
    }
}

/// Resident set size of process `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .count()
}

/// A TCP connection to `server` from source address `ip` (any port), as
/// another host would make it: 127.0.0.0/8 is all local on Linux.
pub fn tcp_from(ip: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let local: SocketAddr = format!("{ip}:0").parse().expect("an IPv4 address");
    s.bind(&local.into())?;
    s.connect_timeout(&server.into(), ANSWER)?;
    let tcp: TcpStream = s.into();
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Whether this machine has IPv6 loopback: the IPv6 tests need `::1`.
pub fn ipv6_loopback() -> bool {
    match UdpSocket::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!(
                "skipping: ::1 is not available on this machine ({e}); \
                 IPv6 relays (RFC 6156) cannot be tested here"
            );
            false
        }
    }
}
