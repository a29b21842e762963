//! TURN over UDP against the real daemon with a client we did not write
//! (`turn::client` from webrtc-rs) and with the raw client of
//! `common::raw`: relaying both ways byte-exact (large datagrams included),
//! ChannelData after ChannelBind, long-term and TURN REST credentials
//! (wrong, valid, expired, rotated secrets), the default peer policy, and
//! 437 for requests without an allocation.

use crate::common;

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raw::{error_code, recv_from_within, relayed_address, RawAttr, RawClient, Relayed};
use common::{
    pattern, rest_credential, turn_client, unix_now, Daemon, TestConfig, PASSWORD, RELAY_PORTS,
    USER,
};
use stun::attributes::{ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN};
use stun::message::{
    MessageType, Setter, CLASS_SUCCESS_RESPONSE, METHOD_CHANNEL_BIND, METHOD_REFRESH,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

use webrtc_util::Conn;

/// Bound on any single network step of a test.
const STEP: Duration = Duration::from_secs(10);
/// Wait that shows nothing arrives.
const SILENCE: Duration = Duration::from_millis(300);

async fn udp_socket() -> Arc<UdpSocket> {
    Arc::new(
        UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP socket"),
    )
}

/// Receives one datagram on `socket` within [`STEP`].
async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(STEP, socket.recv_from(&mut buf))
        .await
        .expect("a datagram arrives in time")
        .expect("receive");
    buf.truncate(n);
    (buf, from)
}

/// Receives one datagram from the relay connection within [`STEP`].
async fn recv_relay(relay: &impl Conn) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(STEP, relay.recv_from(&mut buf))
        .await
        .expect("relayed data arrives in time")
        .expect("receive on the relay connection");
    buf.truncate(n);
    (buf, from)
}

/// One exchange through an allocation: `out` from the client to the peer,
/// `back` from the peer to the client, both checked byte for byte and for
/// their source addresses.
async fn round_trip(relay: &impl Conn, peer: &UdpSocket, out: &[u8], back: &[u8]) {
    let relayed = relay.local_addr().unwrap();
    let peer_addr = peer.local_addr().unwrap();
    timeout(STEP, relay.send_to(out, peer_addr))
        .await
        .expect("send in time")
        .expect("send through the relay");
    let (got, from) = recv(peer).await;
    assert_eq!(from, relayed, "the peer sees the relayed address");
    assert_eq!(got.len(), out.len(), "the datagram arrives whole");
    assert!(got == out, "client to peer: {} bytes differ", out.len());

    peer.send_to(back, relayed).await.expect("peer sends");
    let (got, from) = recv_relay(relay).await;
    assert_eq!(from, peer_addr, "data comes from the peer");
    assert_eq!(got.len(), back.len(), "the datagram arrives whole");
    assert!(got == back, "peer to client: {} bytes differ", back.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_relays_both_ways_byte_exact() {
    let d = TestConfig::default().allow_loopback().start();
    let client = turn_client(d.udp_addr(), USER, PASSWORD, udp_socket().await).await;
    let relay = timeout(STEP, client.allocate())
        .await
        .expect("allocate in time")
        .expect("allocate succeeds");
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip(), d.bound().relay_address);
    assert!(
        (RELAY_PORTS.0..=RELAY_PORTS.1).contains(&relayed.port()),
        "relay port {} outside the configured range",
        relayed.port()
    );

    let peer = udp_socket().await;
    // 60000 bytes is past any Ethernet MTU but fits loopback's 64 KiB: turnd
    // must relay it as one datagram, not truncate it.
    let sizes = [1usize, 100, 1200, 1500, 8000, 60000];
    for (i, &size) in sizes.iter().enumerate() {
        let out = pattern(size, i as u8);
        let back = pattern(size, 100 + i as u8);
        round_trip(&relay, &peer, &out, &back).await;
    }

    // Every datagram counted once, with its payload bytes, each way.
    let n = sizes.len() as u64;
    let total = sizes.iter().sum::<usize>() as u64;
    let m = d.wait_for_relayed((n, total), (n, total));
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        1.0
    );
    relay.close().await.ok();
    client.close().await.ok();
}

/// What went over the client's socket, by kind.
#[derive(Default)]
struct Seen {
    channel_data_out: AtomicUsize,
    send_indications_out: AtomicUsize,
    channel_data_in: AtomicUsize,
    data_indications_in: AtomicUsize,
    channel_bind_successes_in: AtomicUsize,
}

/// A UDP socket that counts what `turn::client` sends and receives through it.
struct RecordingConn {
    socket: UdpSocket,
    seen: Arc<Seen>,
}

fn stun_type(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 20 && bytes[0] >> 6 == 0).then(|| u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn is_channel_data(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b >> 6 == 0b01)
}

#[async_trait::async_trait]
impl Conn for RecordingConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Conn::connect(&self.socket, addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Conn::recv(&self.socket, buf).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = Conn::recv_from(&self.socket, buf).await?;
        let bytes = &buf[..n];
        let channel_bind_success = MessageType::new(METHOD_CHANNEL_BIND, CLASS_SUCCESS_RESPONSE);
        if is_channel_data(bytes) {
            self.seen.channel_data_in.fetch_add(1, Ordering::SeqCst);
        } else if stun_type(bytes) == Some(0x0117) {
            self.seen.data_indications_in.fetch_add(1, Ordering::SeqCst);
        } else if stun_type(bytes) == Some(channel_bind_success.value()) {
            self.seen
                .channel_bind_successes_in
                .fetch_add(1, Ordering::SeqCst);
        }
        Ok((n, from))
    }
    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Conn::send(&self.socket, buf).await
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if is_channel_data(buf) {
            self.seen.channel_data_out.fetch_add(1, Ordering::SeqCst);
        } else if stun_type(buf) == Some(0x0016) {
            self.seen
                .send_indications_out
                .fetch_add(1, Ordering::SeqCst);
        }
        Conn::send_to(&self.socket, buf, target).await
    }
    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Conn::local_addr(&self.socket)
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_data_flows_after_channel_bind() {
    let d = TestConfig::default().allow_loopback().start();
    let seen = Arc::new(Seen::default());
    let conn = Arc::new(RecordingConn {
        socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        seen: seen.clone(),
    });
    let client = turn_client(d.udp_addr(), USER, PASSWORD, conn).await;
    let relay = timeout(STEP, client.allocate())
        .await
        .expect("allocate in time")
        .expect("allocate succeeds");
    let relayed = relay.local_addr().unwrap();
    let peer = udp_socket().await;
    let peer_addr = peer.local_addr().unwrap();

    // The first send installs a permission, goes as a Send indication, and
    // starts a ChannelBind in the background.
    round_trip(&relay, &peer, b"first", b"first back").await;
    assert_eq!(seen.send_indications_out.load(Ordering::SeqCst), 1);
    // Wait (bounded) for the client to use its channel: probes go out until
    // one leaves as ChannelData. Each must still reach the peer.
    let mut probes = 0;
    while seen.channel_data_out.load(Ordering::SeqCst) == 0 {
        probes += 1;
        assert!(probes <= 100, "the client never switched to ChannelData");
        relay.send_to(b"probe", peer_addr).await.unwrap();
        let (got, from) = recv(&peer).await;
        assert_eq!((got.as_slice(), from), (&b"probe"[..], relayed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.channel_bind_successes_in.load(Ordering::SeqCst), 1);

    // Client to peer: all ChannelData now, every byte through.
    let indications_before = seen.send_indications_out.load(Ordering::SeqCst);
    let channel_before = seen.channel_data_out.load(Ordering::SeqCst);
    const K: usize = 5;
    let sizes = [3usize, 64, 500, 1400, 8000];
    for (i, size) in sizes.iter().enumerate() {
        let out = pattern(*size, 7 * i as u8);
        relay.send_to(&out, peer_addr).await.unwrap();
        let (got, from) = recv(&peer).await;
        assert_eq!(from, relayed);
        assert!(got == out, "ChannelData payload {i} ({size} bytes) differs");
    }
    assert_eq!(
        seen.channel_data_out.load(Ordering::SeqCst),
        channel_before + K
    );
    assert_eq!(
        seen.send_indications_out.load(Ordering::SeqCst),
        indications_before
    );

    // Peer to client: turnd uses the channel too, not Data indications.
    let data_indications_before = seen.data_indications_in.load(Ordering::SeqCst);
    let channel_in_before = seen.channel_data_in.load(Ordering::SeqCst);
    for (i, size) in sizes.iter().enumerate() {
        let back = pattern(*size, 200 - i as u8);
        peer.send_to(&back, relayed).await.unwrap();
        let (got, from) = recv_relay(&relay).await;
        assert_eq!(from, peer_addr);
        assert!(
            got == back,
            "ChannelData payload {i} ({size} bytes) differs"
        );
    }
    assert_eq!(
        seen.channel_data_in.load(Ordering::SeqCst),
        channel_in_before + K
    );
    assert_eq!(
        seen.data_indications_in.load(Ordering::SeqCst),
        data_indications_before
    );

    let m = d.scrape();
    let ok = |method| {
        m.get(
            "turnd_requests_total",
            &[("method", method), ("result", "success")],
        )
    };
    assert_eq!(ok("channel_bind"), 1.0);
    assert_eq!(ok("create_permission"), 1.0);
    assert_eq!(ok("allocate"), 1.0);
    relay.close().await.ok();
    client.close().await.ok();
}

/// Tries to allocate and returns the client's error, failing on success.
async fn allocate_fails(d: &Daemon, username: &str, password: &str) -> String {
    let client = turn_client(d.udp_addr(), username, password, udp_socket().await).await;
    let result = timeout(STEP, client.allocate())
        .await
        .expect("allocate answers in time");
    client.close().await.ok();
    match result {
        Ok(_) => panic!("allocate succeeded for {username:?}/{password:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_no_allocation(d: &Daemon) {
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        0.0
    );
    assert_eq!(
        m.get("turnd_allocations_created_total", &[("transport", "udp")]),
        0.0
    );
    assert_eq!(m.get("turnd_relay_ports_in_use", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_401_and_no_relay() {
    let d = TestConfig::default().allow_loopback().start();
    let err = allocate_fails(&d, USER, "not-the-password").await;
    assert!(err.contains("401"), "expected a 401 error, got: {err}");
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_auth_failures_total", &[("reason", "bad_integrity")]),
        1.0
    );
    // The unauthenticated first try and the badly signed second one.
    assert_eq!(
        m.get(
            "turnd_requests_total",
            &[("method", "allocate"), ("result", "401")]
        ),
        2.0
    );
    assert_no_allocation(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_is_refused() {
    let d = TestConfig::default().start();
    let err = allocate_fails(&d, "mallory", PASSWORD).await;
    assert!(err.contains("401"), "expected a 401 error, got: {err}");
    assert_eq!(
        d.scrape()
            .get("turnd_auth_failures_total", &[("reason", "unknown_user")]),
        1.0
    );
    assert_no_allocation(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_credentials_from_any_configured_secret_allocate() {
    // REST only: no static users. Two secrets, as during a rotation.
    let secrets = ["current-secret-0123456789", "previous-secret-9876543210"];
    let d = TestConfig {
        users: Vec::new(),
        rest_secrets: secrets.iter().map(|s| s.to_string()).collect(),
        ..TestConfig::default()
    }
    .allow_loopback()
    .start();
    let peer = udp_socket().await;
    let mut clients = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let (username, password) = rest_credential(secret, "bob", unix_now() + 3600);
        let client = turn_client(d.udp_addr(), &username, &password, udp_socket().await).await;
        let relay = timeout(STEP, client.allocate())
            .await
            .expect("allocate in time")
            .unwrap_or_else(|e| panic!("REST credential from secret {i} refused: {e}"));
        round_trip(&relay, &peer, &pattern(300, i as u8), &pattern(300, 50)).await;
        clients.push((client, relay));
    }
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        2.0
    );
    // Only the unsigned first Allocate of each client was refused.
    assert_eq!(
        m.get(
            "turnd_auth_failures_total",
            &[("reason", "missing_integrity")]
        ),
        2.0
    );
    assert_eq!(m.sum("turnd_auth_failures_total"), 2.0);
    for (client, relay) in clients {
        relay.close().await.ok();
        client.close().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rest_credentials_are_refused() {
    let secret = "rest-secret-for-expiry";
    let d = TestConfig {
        users: Vec::new(),
        rest_secrets: vec![secret.to_string()],
        ..TestConfig::default()
    }
    .start();
    let before = d.scrape().get(
        "turnd_auth_failures_total",
        &[("reason", "expired_credential")],
    );
    assert_eq!(before, 0.0);
    let (username, password) = rest_credential(secret, "bob", unix_now() - 60);
    let err = allocate_fails(&d, &username, &password).await;
    assert!(err.contains("401"), "expected a 401 error, got: {err}");
    assert_eq!(
        d.scrape().get(
            "turnd_auth_failures_total",
            &[("reason", "expired_credential")]
        ),
        1.0
    );
    assert_no_allocation(&d);
}

#[test]
fn loopback_and_private_peers_are_refused_by_default() {
    let d = TestConfig::default().start();
    let mut c = RawClient::new(d.udp_addr());
    c.allocate();

    // 127.0.0.2 is loopback but not this relay's own address (127.0.0.1,
    // see below), so only the policy decides. No packet is sent to it.
    let loopback: SocketAddr = "127.0.0.2:5000".parse().unwrap();
    let resp = c.create_permission(&[loopback]);
    assert_eq!(error_code(&resp), Some(403), "{resp}");
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_peer_denied_total", &[("reason", "special_range")]),
        1.0
    );
    assert_eq!(
        m.get(
            "turnd_requests_total",
            &[("method", "create_permission"), ("result", "403")]
        ),
        1.0
    );
    let resp = c.channel_bind(0x4000, loopback);
    assert_eq!(error_code(&resp), Some(403), "{resp}");

    // Other special ranges, one request each (none is contacted).
    let denied = [
        "10.1.2.3:5000",      // RFC 1918
        "192.168.1.1:5000",   // RFC 1918
        "100.64.0.1:5000",    // CGNAT
        "169.254.169.254:80", // cloud metadata (link-local)
        "0.0.0.0:5000",       // unspecified
    ];
    for addr in denied {
        let resp = c.create_permission(&[addr.parse().unwrap()]);
        assert_eq!(error_code(&resp), Some(403), "{addr}: {resp}");
    }
    assert_eq!(
        d.scrape()
            .get("turnd_peer_denied_total", &[("reason", "special_range")]),
        2.0 + denied.len() as f64
    );
    // Loopback in IPv4-mapped IPv6 form: refused either by the policy (403)
    // or as the wrong family for this IPv4 relay (443), never installed.
    let resp = c.create_permission(&["[::ffff:127.0.0.2]:80".parse().unwrap()]);
    assert!(
        matches!(error_code(&resp), Some(403 | 443)),
        "IPv4-mapped loopback: {resp}"
    );

    // 127.0.0.1 is also where this test daemon's relays live. turnd may
    // permit its own relay address (one client's relay talking to another's),
    // but a loopback service on any other port must stay unreachable.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let resp = c.create_permission(&[peer_addr]);
    assert!(
        matches!(error_code(&resp), None | Some(403)),
        "CreatePermission 127.0.0.1: {resp}"
    );
    let resp = c.channel_bind(0x4001, peer_addr);
    assert_eq!(
        error_code(&resp),
        Some(403),
        "ChannelBind {peer_addr}: {resp}"
    );
    c.send_indication(peer_addr, b"let me in");
    assert!(
        recv_from_within(&peer, None, SILENCE).is_none(),
        "the loopback service received data"
    );
    d.wait_for_metric(
        "turnd_dropped_packets_total",
        &[("reason", "no_permission")],
        1.0,
    );
    assert_eq!(
        d.scrape_after_publish().get(
            "turnd_relayed_packets_total",
            &[("direction", "client_to_peer")]
        ),
        0.0
    );
}

#[test]
fn relay_to_relay_works_under_the_default_policy() {
    // Two clients of one server, both relayed (two browsers behind
    // symmetric NATs): each one's peer is the other's relayed address.
    let d = TestConfig::default().start();
    let mut a = RawClient::new(d.udp_addr());
    let mut b = RawClient::new(d.udp_addr());
    let relay_a = a.allocate();
    let relay_b = b.allocate();
    for (client, peer) in [(&mut a, relay_b), (&mut b, relay_a)] {
        let resp = client.create_permission(&[peer]);
        assert_eq!(error_code(&resp), None, "{resp}");
    }
    a.send_indication(relay_b, b"from a");
    assert_eq!(
        b.recv_relayed(STEP),
        Some(Relayed::Indication {
            peer: relay_a,
            data: b"from a".to_vec()
        })
    );
    let number = 0x5000;
    let resp = b.channel_bind(number, relay_a);
    assert_eq!(error_code(&resp), None, "{resp}");
    b.send_channel_data(number, b"from b");
    assert_eq!(
        a.recv_relayed(STEP),
        Some(Relayed::Indication {
            peer: relay_b,
            data: b"from b".to_vec()
        })
    );
    // Each message counts once leaving one relay and once arriving at the other.
    let m = d.wait_for_relayed((2, 12), (2, 12));
    assert_eq!(m.sum("turnd_peer_denied_total"), 0.0);
}

#[test]
fn loopback_peer_is_relayed_when_allowed() {
    let d = TestConfig::default().allow_loopback().start();
    let mut c = RawClient::new(d.udp_addr());
    let relayed = c.allocate();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let resp = c.create_permission(&[peer_addr]);
    assert_eq!(error_code(&resp), None, "{resp}");

    c.send_indication(peer_addr, b"hello peer");
    let (got, from) = recv_from_within(&peer, None, STEP).expect("the peer receives");
    assert_eq!((got.as_slice(), from), (&b"hello peer"[..], relayed));
    peer.send_to(b"hello client", relayed).unwrap();
    assert_eq!(
        c.recv_relayed(STEP),
        Some(Relayed::Indication {
            peer: peer_addr,
            data: b"hello client".to_vec()
        })
    );
    assert_eq!(
        d.scrape()
            .get("turnd_peer_denied_total", &[("reason", "special_range")]),
        0.0
    );
}

#[test]
fn requests_without_an_allocation_get_437() {
    let d = TestConfig::default().allow_loopback().start();
    let mut c = RawClient::new(d.udp_addr());
    // Learn REALM and NONCE from the 401 to an unsigned Refresh.
    c.challenge(METHOD_REFRESH, Vec::new());
    let resp = c.refresh(600);
    assert_eq!(error_code(&resp), Some(437), "Refresh: {resp}");
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let resp = c.create_permission(&[peer]);
    assert_eq!(error_code(&resp), Some(437), "CreatePermission: {resp}");
    let resp = c.channel_bind(0x4001, peer);
    assert_eq!(error_code(&resp), Some(437), "ChannelBind: {resp}");
    let m = d.scrape();
    for method in ["refresh", "create_permission", "channel_bind"] {
        assert_eq!(
            m.get(
                "turnd_requests_total",
                &[("method", method), ("result", "437")]
            ),
            1.0,
            "{method}"
        );
    }
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        0.0
    );
}

#[test]
fn even_port_reserves_the_next_port_for_the_reservation_token() {
    let d = TestConfig::default().start();
    let mut rtp = RawClient::new(d.udp_addr());
    // EVEN-PORT with the R bit: an even port, and the next one held.
    let resp = rtp
        .allocate_with(|| vec![Box::new(RawAttr(ATTR_EVEN_PORT, vec![0x80])) as Box<dyn Setter>]);
    let even = relayed_address(&resp);
    assert_eq!(even.port() % 2, 0, "EVEN-PORT gave {even}");
    let token = resp
        .get(ATTR_RESERVATION_TOKEN)
        .expect("RESERVATION-TOKEN in the response");
    assert_eq!(token.len(), 8);
    assert_eq!(d.scrape().get("turnd_relay_ports_in_use", &[]), 2.0);

    // Another client redeems the token and gets the odd port.
    let mut rtcp = RawClient::new(d.udp_addr());
    let token = token.clone();
    let resp = rtcp.allocate_with(move || {
        vec![Box::new(RawAttr(ATTR_RESERVATION_TOKEN, token.clone())) as Box<dyn Setter>]
    });
    let odd = relayed_address(&resp);
    assert_eq!(odd.port(), even.port() + 1, "the reserved port");
    assert_eq!(odd.ip(), even.ip());
    let m = d.scrape();
    assert_eq!(m.get("turnd_relay_ports_in_use", &[]), 2.0);
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        2.0
    );
}
