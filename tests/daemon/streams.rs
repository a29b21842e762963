//! TURN over TCP and TLS against the real daemon (RFC 8656 §3.1, RFC 7443
//! ALPN): allocation and relaying over a stream with ChannelData padded to
//! 4 bytes, frames coalesced and split by the stream, the allocation ending
//! with its connection, TLS 1.2 and 1.3 with ALPN "stun.turn", certificate
//! reload on SIGHUP during a session, the connection limits and timeouts
//! and their metrics, and coturn's `turnutils_uclient` over TCP and TLS.
//!
//! Each test runs its own daemon on ephemeral ports; every wait is bounded.

// Deadlines of bounded waits; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::stream_support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::raw::{build, recv_from_within, Relayed};
use common::{pattern, require_tool, Daemon, RELAY_PORTS};
use rustls::ProtocolVersion;
use stun::agent::TransactionId;
use stun::attributes::AttrType;
use stun::fingerprint::FINGERPRINT;
use stun::message::{
    Setter, BINDING_REQUEST, BINDING_SUCCESS, METHOD_CHANNEL_BIND, METHOD_REFRESH,
};
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;

use stream_support::coturn::{start_turnutils_peer, uclient};
use stream_support::pki::{replace_file, TestCa};
use stream_support::relay::{channel_round_trip, peer_receives, relay_both_ways, CHANNEL};
use stream_support::{
    binding_request, channel_data, connect_tcp, connect_tls, peer_socket, send_indication,
    stream_config, Conn, Frame, RawAttr, StreamClient, ANSWER, CLOSE_WAIT, SILENCE,
};

const ALLOCATIONS_ACTIVE: &str = "turnd_allocations_active";
const ALLOCATIONS_CREATED: &str = "turnd_allocations_created_total";
const ALLOCATIONS_ENDED: &str = "turnd_allocations_ended_total";
const CONNECTIONS_ACTIVE: &str = "turnd_connections_active";
const CONNECTIONS_ACCEPTED: &str = "turnd_connections_accepted_total";
const CONNECTIONS_REJECTED: &str = "turnd_connections_rejected_total";
const TLS_RELOADS: &str = "turnd_tls_reloads_total";

fn rejected<'a>(transport: &'a str, reason: &'a str) -> [(&'a str, &'a str); 2] {
    [("transport", transport), ("reason", reason)]
}

#[test]
fn turn_over_tcp_allocates_and_relays_both_ways() {
    let d = Daemon::start(&stream_config(None, ""));
    let peer = peer_socket();
    let mut client = StreamClient::tcp(d.tcp_addr());
    client.binding();
    let relay = client.allocate();
    assert_eq!(relay.ip(), d.bound().relay_address);
    assert!((RELAY_PORTS.0..=RELAY_PORTS.1).contains(&relay.port()));
    relay_both_ways(&mut client, relay, &peer);

    let s = d.scrape();
    assert_eq!(s.get(ALLOCATIONS_ACTIVE, &[("transport", "tcp")]), 1.0);
    assert_eq!(s.get(ALLOCATIONS_CREATED, &[("transport", "tcp")]), 1.0);
    assert_eq!(s.get(ALLOCATIONS_ACTIVE, &[("transport", "udp")]), 0.0);
    assert_eq!(s.get(CONNECTIONS_ACTIVE, &[("transport", "tcp")]), 1.0);
    assert_eq!(s.get(CONNECTIONS_ACCEPTED, &[("transport", "tcp")]), 1.0);
}

#[test]
fn frames_coalesced_in_one_write_and_split_across_writes() {
    let d = Daemon::start(&stream_config(None, ""));
    let peer = peer_socket();
    let peer_addr = peer.local_addr().unwrap();
    let mut client = StreamClient::tcp(d.tcp_addr());
    let relay = client.allocate();

    // One write: ChannelBind, Binding, Send indication, ChannelData on the
    // channel just bound (odd length, padded), Binding.
    let bind = client.signed(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(ChannelNumber(CHANNEL)),
            Box::new(PeerAddress {
                ip: peer_addr.ip(),
                port: peer_addr.port(),
            }),
        ],
    );
    let first = binding_request();
    let via_send = pattern(33, 1);
    let via_channel = pattern(7, 2);
    let last = binding_request();
    let mut all = bind.raw.clone();
    all.extend_from_slice(&first.raw);
    all.extend_from_slice(&send_indication(peer_addr, &via_send).raw);
    all.extend_from_slice(&channel_data(CHANNEL, &via_channel));
    all.extend_from_slice(&last.raw);
    client.write(&all);
    let mut resp = client.response_to(&bind);
    client.assert_success(METHOD_CHANNEL_BIND, &mut resp);
    assert_eq!(client.response_to(&first).typ, BINDING_SUCCESS);
    assert_eq!(client.response_to(&last).typ, BINDING_SUCCESS);
    assert_eq!(peer_receives(&peer, relay), via_send);
    assert_eq!(peer_receives(&peer, relay), via_channel);

    // One signed request in 3-byte pieces with pauses.
    let refresh = client.signed(
        METHOD_REFRESH,
        vec![Box::new(Lifetime(Duration::from_secs(600)))],
    );
    client.write_slowly(&refresh.raw, 3, Duration::from_millis(15));
    let mut resp = client.response_to(&refresh);
    client.assert_success(METHOD_REFRESH, &mut resp);

    // ChannelData byte by byte.
    let slow = pattern(13, 3);
    client.write_slowly(&channel_data(CHANNEL, &slow), 1, Duration::from_millis(15));
    assert_eq!(peer_receives(&peer, relay), slow);

    // A write that ends one frame and starts the next.
    let a = binding_request();
    let b = binding_request();
    client.write(&a.raw[..10]);
    std::thread::sleep(Duration::from_millis(50));
    let mut middle = a.raw[10..].to_vec();
    middle.extend_from_slice(&b.raw[..3]);
    client.write(&middle);
    assert_eq!(client.response_to(&a).typ, BINDING_SUCCESS);
    std::thread::sleep(Duration::from_millis(50));
    client.write(&b.raw[3..]);
    assert_eq!(client.response_to(&b).typ, BINDING_SUCCESS);

    // Nothing was counted as a framing error.
    let s = d.scrape();
    assert_eq!(s.sum(CONNECTIONS_REJECTED), 0.0);
    assert_eq!(s.get(CONNECTIONS_ACTIVE, &[("transport", "tcp")]), 1.0);
}

/// Binds `relay` within [`ANSWER`] (turnd closes it asynchronously).
fn bind_when_free(relay: SocketAddr) -> UdpSocket {
    let deadline = Instant::now() + ANSWER;
    loop {
        match UdpSocket::bind(relay) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "relay port {relay} still taken after its allocation ended: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn closing_the_tcp_connection_ends_the_allocation() {
    let d = Daemon::start(&stream_config(None, ""));
    let peer = peer_socket();
    let peer_addr = peer.local_addr().unwrap();

    // Closed with FIN, then (second round) with RST.
    for (round, reset) in [(1.0, false), (2.0, true)] {
        let mut client = StreamClient::tcp(d.tcp_addr());
        let relay = client.allocate();
        client.create_permission(peer_addr);
        peer.send_to(b"before close", relay).unwrap();
        assert!(matches!(
            client.recv_relayed(ANSWER),
            Some(Relayed::Indication { .. })
        ));
        d.wait_for_metric(ALLOCATIONS_ACTIVE, &[("transport", "tcp")], 1.0);

        if reset {
            socket2::SockRef::from(client.conn.tcp())
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(client);
        // A scrape is not one snapshot: wait for each series.
        d.wait_for_metric(
            ALLOCATIONS_ENDED,
            &[("transport", "tcp"), ("reason", "closed")],
            round,
        );
        d.wait_for_metric(ALLOCATIONS_ACTIVE, &[("transport", "tcp")], 0.0);
        let s = d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tcp")], 0.0);
        assert_eq!(s.get(ALLOCATIONS_CREATED, &[("transport", "tcp")]), round);

        // The relay socket is gone: the test can bind its port, and what
        // the peer sends there reaches the test's socket, nothing else.
        let taken = bind_when_free(relay);
        peer.send_to(b"after close", relay).unwrap();
        let (got, from) =
            recv_from_within(&taken, Some(peer_addr), ANSWER).expect("the test's socket gets it");
        assert_eq!((got.as_slice(), from), (&b"after close"[..], peer_addr));
    }
}

/// A daemon with TCP and TLS listeners serving `cert`, its CA and the
/// directory holding the PEM files.
struct TlsSetup {
    ca: TestCa,
    dir: tempfile::TempDir,
    daemon: Daemon,
}

fn tls_setup(connections: &str) -> (TlsSetup, stream_support::pki::ServerCert) {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.server_cert("turnd test A", 1);
    let (c, k) = cert.write_to(dir.path());
    let daemon = Daemon::start(&stream_config(
        Some((c.to_str().unwrap(), k.to_str().unwrap())),
        connections,
    ));
    (TlsSetup { ca, dir, daemon }, cert)
}

fn turn_over_tls(version: &'static rustls::SupportedProtocolVersion, want: ProtocolVersion) {
    let (t, cert) = tls_setup("");
    let d = &t.daemon;
    let tls = connect_tls(d.tls_addr(), t.ca.client_config(&[version], true));
    assert_eq!(tls.conn.protocol_version(), Some(want));
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"stun.turn"[..]));
    let chain = tls.conn.peer_certificates().expect("a server certificate");
    assert_eq!(chain.first(), Some(&cert.der));

    let peer = peer_socket();
    let mut client = StreamClient::new(tls);
    let relay = client.allocate();
    relay_both_ways(&mut client, relay, &peer);
    let s = d.scrape();
    assert_eq!(s.get(ALLOCATIONS_ACTIVE, &[("transport", "tls")]), 1.0);
    assert_eq!(s.get(ALLOCATIONS_ACTIVE, &[("transport", "tcp")]), 0.0);
    assert_eq!(s.get(CONNECTIONS_ACTIVE, &[("transport", "tls")]), 1.0);
    assert_eq!(s.get(CONNECTIONS_ACCEPTED, &[("transport", "tls")]), 1.0);

    // A client that offers no ALPN is served too.
    let plain = connect_tls(d.tls_addr(), t.ca.client_config(&[version], false));
    assert_eq!(plain.conn.alpn_protocol(), None);
    StreamClient::new(plain).binding();

    drop(client);
    d.wait_for_metric(
        ALLOCATIONS_ENDED,
        &[("transport", "tls"), ("reason", "closed")],
        1.0,
    );
    let s = d.wait_for_metric(ALLOCATIONS_ACTIVE, &[("transport", "tls")], 0.0);
    assert_eq!(s.sum(CONNECTIONS_REJECTED), 0.0);
}

#[test]
fn turn_over_tls13_with_alpn() {
    turn_over_tls(&rustls::version::TLS13, ProtocolVersion::TLSv1_3);
}

#[test]
fn turn_over_tls12_with_alpn() {
    turn_over_tls(&rustls::version::TLS12, ProtocolVersion::TLSv1_2);
}

#[test]
fn tls_port_cuts_plain_stun_and_silent_handshakes() {
    let (t, _) = tls_setup("handshake_timeout_s = 1");
    let d = &t.daemon;
    // Plain STUN where a ClientHello belongs.
    let mut plain = StreamClient::tcp(d.tls_addr());
    plain.write(&binding_request().raw);
    assert!(
        plain.closed_within(CLOSE_WAIT),
        "plain STUN on the TLS port"
    );
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tls", "tls_handshake"), 1.0);
    // No ClientHello at all.
    let mut silent = StreamClient::tcp(d.tls_addr());
    assert!(silent.closed_within(CLOSE_WAIT), "silent TLS connection");
    d.wait_for_metric(
        CONNECTIONS_REJECTED,
        &rejected("tls", "handshake_timeout"),
        1.0,
    );
    // A real client is still served.
    StreamClient::new(connect_tls(d.tls_addr(), t.ca.default_client_config())).binding();
}

/// The certificate a new TLS connection is served, after checking that
/// the connection works.
fn served_certificate(t: &TlsSetup) -> rustls::pki_types::CertificateDer<'static> {
    let tls = connect_tls(t.daemon.tls_addr(), t.ca.default_client_config());
    let cert = tls.conn.peer_certificates().expect("a certificate")[0].clone();
    StreamClient::new(tls).binding();
    cert
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let (t, cert_a) = tls_setup("");
    let d = &t.daemon;
    let peer = peer_socket();
    let peer_addr = peer.local_addr().unwrap();
    let tls = connect_tls(d.tls_addr(), t.ca.default_client_config());
    assert_eq!(tls.conn.peer_certificates().unwrap()[0], cert_a.der);
    let mut session = StreamClient::new(tls);
    let relay = session.allocate();
    session.channel_bind(CHANNEL, peer_addr);
    channel_round_trip(&mut session, relay, &peer, 1);

    // Renewal: cert B (new key, serial and CN, same CA), then SIGHUP.
    let cert_b = t.ca.server_cert("turnd test B", 2);
    assert_ne!(cert_a.der, cert_b.der);
    let (cert_path, key_path) = cert_b.write_to(t.dir.path());
    d.hang_up();
    d.wait_for_metric(TLS_RELOADS, &[("result", "success")], 1.0);
    channel_round_trip(&mut session, relay, &peer, 10);
    assert_eq!(served_certificate(&t), cert_b.der, "new connections get B");

    // A broken certificate file: the failure is counted and logged, B stays.
    replace_file(&cert_path, b"-----BEGIN CERTIFICATE-----\ngarbage\n");
    d.hang_up();
    d.wait_for_metric(TLS_RELOADS, &[("result", "failure")], 1.0);
    assert_eq!(
        served_certificate(&t),
        cert_b.der,
        "B stays after a bad file"
    );
    channel_round_trip(&mut session, relay, &peer, 20);

    // A certificate that does not match the key (renewal half done).
    replace_file(&cert_path, cert_a.cert_pem.as_bytes());
    replace_file(&key_path, cert_b.key_pem.as_bytes());
    d.hang_up();
    let s = d.wait_for_metric(TLS_RELOADS, &[("result", "failure")], 2.0);
    assert_eq!(s.get(TLS_RELOADS, &[("result", "success")]), 1.0);
    assert_eq!(
        served_certificate(&t),
        cert_b.der,
        "B stays after a mismatch"
    );
    channel_round_trip(&mut session, relay, &peer, 30);

    let log = d.stderr();
    assert!(
        log.contains("reload failed") && log.contains(cert_path.to_str().unwrap()),
        "the failed reload is logged with the file: {log}"
    );
    // The probing connections close asynchronously.
    let s = d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tls")], 1.0);
    assert_eq!(s.get(ALLOCATIONS_ACTIVE, &[("transport", "tls")]), 1.0);
}

/// A TCP connection from `source` (any address in 127.0.0.0/8).
fn connect_from(source: &str, server: SocketAddr) -> StreamClient<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&src.into()).unwrap();
    socket.connect_timeout(&server.into(), ANSWER).unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_nodelay(true).unwrap();
    StreamClient::new(tcp)
}

#[test]
fn per_ip_limit_refuses_the_fourth_connection_until_one_closes() {
    let d = Daemon::start(&stream_config(None, "max_per_ip = 3"));
    let mut held: Vec<_> = (0..3)
        .map(|_| {
            let mut c = StreamClient::tcp(d.tcp_addr());
            c.binding();
            c
        })
        .collect();
    let mut fourth = StreamClient::tcp(d.tcp_addr());
    assert!(
        fourth.closed_within(CLOSE_WAIT),
        "the 4th connection is cut"
    );
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "per_ip_limit"), 1.0);
    for c in &mut held {
        c.binding();
    }

    drop(held.pop());
    d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tcp")], 2.0);
    let mut fresh = StreamClient::tcp(d.tcp_addr());
    fresh.binding();
    let s = d.scrape();
    assert_eq!(s.get(CONNECTIONS_ACCEPTED, &[("transport", "tcp")]), 4.0);
    assert_eq!(
        s.get(CONNECTIONS_REJECTED, &rejected("tcp", "per_ip_limit")),
        1.0
    );
    assert_eq!(s.get(CONNECTIONS_ACTIVE, &[("transport", "tcp")]), 3.0);
}

#[test]
fn total_limit_counts_connections_from_every_address() {
    let d = Daemon::start(&stream_config(None, "max_per_ip = 2\nmax_total = 3"));
    let mut a = connect_from("127.0.0.1", d.tcp_addr());
    let mut b = connect_from("127.0.0.1", d.tcp_addr());
    a.binding();
    b.binding();
    let mut c = connect_from("127.0.0.1", d.tcp_addr());
    assert!(c.closed_within(CLOSE_WAIT), "3rd from 127.0.0.1");
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "per_ip_limit"), 1.0);
    let mut other = connect_from("127.0.0.2", d.tcp_addr());
    other.binding();
    let mut over = connect_from("127.0.0.3", d.tcp_addr());
    assert!(over.closed_within(CLOSE_WAIT), "4th in total");
    let s = d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "total_limit"), 1.0);
    assert_eq!(s.get(CONNECTIONS_ACTIVE, &[("transport", "tcp")]), 3.0);
    a.binding();
    other.binding();
}

#[test]
fn stalled_frames_are_cut_without_disturbing_other_connections() {
    let d = Daemon::start(&stream_config(None, "handshake_timeout_s = 1"));
    let mut good = StreamClient::tcp(d.tcp_addr());
    good.binding();

    // Half a frame after a complete one: frame_timeout.
    let mut mid = StreamClient::tcp(d.tcp_addr());
    mid.binding();
    let req = binding_request();
    mid.write(&req.raw[..req.raw.len() / 2]);
    // Half a frame as the very first bytes, and nothing at all:
    // handshake_timeout.
    let mut first = StreamClient::tcp(d.tcp_addr());
    first.write(&req.raw[..req.raw.len() / 2]);
    let mut silent = StreamClient::tcp(d.tcp_addr());

    good.binding();
    assert!(mid.closed_within(CLOSE_WAIT), "stalled after a frame");
    assert!(
        first.closed_within(CLOSE_WAIT),
        "stalled in the first frame"
    );
    assert!(silent.closed_within(CLOSE_WAIT), "silent from the start");
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "frame_timeout"), 1.0);
    d.wait_for_metric(
        CONNECTIONS_REJECTED,
        &rejected("tcp", "handshake_timeout"),
        2.0,
    );
    d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tcp")], 1.0);
    good.binding();
    let s = d.scrape();
    assert_eq!(s.sum(CONNECTIONS_REJECTED), 3.0, "nothing else was cut");
}

/// Slowloris: the frame timeout bounds a whole frame, not each read.
#[test]
fn half_frame_dribbled_byte_by_byte_is_still_cut() {
    let d = Daemon::start(&stream_config(None, "handshake_timeout_s = 1"));
    let mut slow = StreamClient::tcp(d.tcp_addr());
    slow.binding();
    // ChannelData announcing 1000 bytes, then one byte at a time, each well
    // within the timeout: at this pace the frame would take 300 s.
    slow.write(&[0x40, 0x00, 0x03, 0xe8]);
    let deadline = Instant::now() + CLOSE_WAIT;
    let cut = loop {
        if Instant::now() >= deadline {
            break false;
        }
        if slow.conn.write_all(&[0]).is_err() || slow.closed_within(SILENCE) {
            break true;
        }
    };
    assert!(
        cut,
        "a frame dribbled for {CLOSE_WAIT:?} with a 1 s timeout is still open"
    );
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "frame_timeout"), 1.0);
}

#[test]
fn garbage_closes_the_connection() {
    let d = Daemon::start(&stream_config(None, ""));
    let mut good = StreamClient::tcp(d.tcp_addr());
    good.binding();

    let mut bad = StreamClient::tcp(d.tcp_addr());
    bad.binding();
    bad.write(&[0xff; 16]);
    assert!(bad.closed_within(CLOSE_WAIT), "0xFF bytes");
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "garbage"), 1.0);

    // A TLS ClientHello on the plain TCP port: no magic cookie.
    let config = TestCa::new().default_client_config();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut hello = Vec::new();
    rustls::ClientConnection::new(config, name)
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let mut tls_on_tcp = connect_tcp(d.tcp_addr());
    tls_on_tcp.write_all(&hello).unwrap();
    let mut tls_on_tcp = StreamClient::new(tls_on_tcp);
    assert!(tls_on_tcp.closed_within(CLOSE_WAIT), "ClientHello on TCP");
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "garbage"), 2.0);
    d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tcp")], 1.0);
    good.binding();
}

/// A Binding request padded with a comprehension-optional attribute to
/// `total` bytes on the wire.
fn binding_of_size(total: usize) -> Vec<u8> {
    // Header 20, FINGERPRINT 8, the filler's own header 4.
    let filler = total - 20 - 8 - 4;
    assert_eq!(filler % 4, 0);
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(BINDING_REQUEST),
        Box::new(RawAttr(AttrType(0x8fff), vec![0; filler])),
        Box::new(FINGERPRINT),
    ];
    let raw = build(setters).raw;
    assert_eq!(raw.len(), total);
    raw
}

#[test]
fn frame_larger_than_max_frame_bytes_closes_the_connection() {
    let d = Daemon::start(&stream_config(None, "max_frame_bytes = 1024"));
    let mut client = StreamClient::tcp(d.tcp_addr());
    // Exactly the maximum is fine, for STUN and for ChannelData.
    let req = binding_of_size(1024);
    client.write(&req);
    let frame = client.next_frame(ANSWER);
    assert!(
        matches!(&frame, Some(Frame::Stun(m)) if m.typ == BINDING_SUCCESS),
        "{frame:?}"
    );
    client.write(&channel_data(CHANNEL, &pattern(1020, 1)));
    client.binding();

    // One byte of ChannelData more.
    let mut cd = StreamClient::tcp(d.tcp_addr());
    let _ = cd.conn.write_all(&channel_data(CHANNEL, &pattern(1021, 2)));
    assert!(cd.closed_within(CLOSE_WAIT), "ChannelData over the limit");
    d.wait_for_metric(
        CONNECTIONS_REJECTED,
        &rejected("tcp", "frame_too_large"),
        1.0,
    );
    // A STUN message over the limit.
    let mut stun = StreamClient::tcp(d.tcp_addr());
    let _ = stun.conn.write_all(&binding_of_size(1028));
    assert!(stun.closed_within(CLOSE_WAIT), "STUN over the limit");
    d.wait_for_metric(
        CONNECTIONS_REJECTED,
        &rejected("tcp", "frame_too_large"),
        2.0,
    );
    d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tcp")], 1.0);
    client.binding();
}

#[test]
fn idle_connections_close_unless_they_hold_an_allocation() {
    let d = Daemon::start(&stream_config(None, "idle_timeout_s = 1"));
    let peer = peer_socket();
    let peer_addr = peer.local_addr().unwrap();
    let mut holder = StreamClient::tcp(d.tcp_addr());
    let relay = holder.allocate();

    let mut idler = StreamClient::tcp(d.tcp_addr());
    idler.binding();
    assert!(idler.closed_within(CLOSE_WAIT), "silent after a Binding");
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "idle_timeout"), 1.0);

    // Well past the idle timeout, the allocation's connection still works.
    std::thread::sleep(Duration::from_millis(2500));
    holder.create_permission(peer_addr);
    holder.write(&send_indication(peer_addr, b"still here").raw);
    assert_eq!(peer_receives(&peer, relay), b"still here");
    let s = d.scrape();
    assert_eq!(
        s.get(CONNECTIONS_REJECTED, &rejected("tcp", "idle_timeout")),
        1.0
    );
    assert_eq!(s.get(ALLOCATIONS_ACTIVE, &[("transport", "tcp")]), 1.0);

    // Once the allocation is deleted, the connection may idle out too.
    holder.refresh(0);
    d.wait_for_metric(ALLOCATIONS_ACTIVE, &[("transport", "tcp")], 0.0);
    assert!(holder.closed_within(CLOSE_WAIT), "idle without allocation");
    d.wait_for_metric(CONNECTIONS_REJECTED, &rejected("tcp", "idle_timeout"), 2.0);
}

/// A client that stops reading while a peer keeps sending: turnd queues a
/// bounded amount for it, drops the rest (counted), and once one write has
/// been blocked for `write_timeout_s` cuts the connection, ending its
/// allocation; other clients are served throughout.
#[test]
fn a_client_that_stops_reading_is_cut_after_write_timeout() {
    let d = Daemon::start(&stream_config(None, "write_timeout_s = 1"));
    let peer = peer_socket();
    let peer_addr = peer.local_addr().unwrap();

    // A small receive window, so the server's side fills after a few MiB.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&d.tcp_addr().into(), ANSWER)
        .unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_nodelay(true).unwrap();
    tcp.set_write_timeout(Some(ANSWER)).unwrap();
    let mut stalled = StreamClient::new(tcp);
    let relay = stalled.allocate();
    stalled.create_permission(peer_addr);

    // The client reads nothing from here on. The peer keeps sending
    // datagrams of 1000 bytes until the cut is counted: on a busy machine
    // the relay socket drops many of them, so a fixed count may not fill
    // the kernel's buffers and turnd's queue. Bounded: at most 200,000
    // datagrams (200 MB) and CLOSE_WAIT.
    let payload = [0x5a; 1000];
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut sent = 0;
    while sent < 200_000 && Instant::now() < deadline {
        for _ in 0..500 {
            let _ = peer.send_to(&payload, relay);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
        if d.scrape()
            .get(CONNECTIONS_REJECTED, &rejected("tcp", "write_timeout"))
            == 1.0
        {
            break;
        }
    }

    // Another client is served while the first one is stuck.
    let mut other = StreamClient::tcp(d.tcp_addr());
    other.binding();

    let deadline = Instant::now() + CLOSE_WAIT;
    while d
        .scrape()
        .get(CONNECTIONS_REJECTED, &rejected("tcp", "write_timeout"))
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "not cut within {CLOSE_WAIT:?} after {sent} datagrams"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.wait_for_metric(
        ALLOCATIONS_ENDED,
        &[("transport", "tcp"), ("reason", "closed")],
        1.0,
    );
    let s = d.wait_for_metric(ALLOCATIONS_ACTIVE, &[("transport", "tcp")], 0.0);
    assert!(
        s.get("turnd_dropped_packets_total", &[("reason", "send_failed")]) > 0.0,
        "what did not fit the client's queue is counted"
    );
    // The other client's connection is still open and answered.
    other.binding();
    d.wait_for_metric(CONNECTIONS_ACTIVE, &[("transport", "tcp")], 1.0);
}

#[test]
fn coturn_uclient_over_tcp() {
    if !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let d = Daemon::start(&stream_config(None, ""));
    let (_peer, peer_addr) = start_turnutils_peer();
    uclient(&["-t"], d.tcp_addr().port(), peer_addr);
    let s = d.scrape();
    assert!(s.get(ALLOCATIONS_CREATED, &[("transport", "tcp")]) >= 2.0);
    assert_eq!(s.get(ALLOCATIONS_CREATED, &[("transport", "udp")]), 0.0);
}

#[test]
fn coturn_uclient_over_tls() {
    if !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let (t, _) = tls_setup("");
    let (_peer, peer_addr) = start_turnutils_peer();
    // -S means TLS together with -t (alone, DTLS). uclient does not verify
    // the server (its -E changes nothing here); the rustls tests do. Some
    // of its connections offer only TLS 1.0/1.1, which turnd refuses
    // (counted as tls_handshake), and it retries those.
    uclient(&["-t", "-S"], t.daemon.tls_addr().port(), peer_addr);
    let s = t.daemon.scrape();
    assert!(s.get(ALLOCATIONS_CREATED, &[("transport", "tls")]) >= 2.0);
    assert_eq!(s.get(ALLOCATIONS_CREATED, &[("transport", "tcp")]), 0.0);
}
