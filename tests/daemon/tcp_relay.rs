//! RFC 6062 TCP relaying against the real daemon, over loopback: Allocate
//! with REQUESTED-TRANSPORT TCP (§5.1), Connect (§5.2) to a TCP echo peer,
//! ConnectionAttempt for a permitted peer connecting in (§5.3),
//! ConnectionBind on a new data connection (§5.4) after which bytes flow
//! raw both ways, teardown either way, the 30 s bind timeout, the error
//! answers (400, 403, 437, 441, 446, 447), the metrics, and coturn's
//! `turnutils_uclient -T` (client to client through two TCP allocations)
//! and `-P` (a peer that connects in), over TCP and TLS.
//!
//! Each test runs its own daemon on ephemeral ports; every wait is bounded.

// Deadlines of bounded waits; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::stream_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::raw::{error_code, RawClient};
use common::{pattern, require_tool, run_with_timeout, Daemon, TestConfig, PASSWORD, USER};
use stun::attributes::ATTR_CONNECTION_ID;
use stun::message::{
    Message, MessageType, Setter, CLASS_INDICATION, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_CONNECT, METHOD_CONNECTION_ATTEMPT, METHOD_CONNECTION_BIND,
};
use stun::xoraddr::XorMappedAddress;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::{Protocol, PROTO_TCP};

use stream_support::pki::TestCa;
use stream_support::{stream_config, Conn, Frame, RawAttr, StreamClient, ANSWER, CLOSE_WAIT};

const PEER_CONNECTIONS: &str = "turnd_tcp_peer_connections_total";
const PEER_FAILED: &str = "turnd_tcp_peer_connections_failed_total";
const DATA_ACTIVE: &str = "turnd_tcp_data_connections_active";
const TCP_BYTES: &str = "turnd_tcp_relayed_bytes_total";

fn tcp_transport() -> Vec<Box<dyn Setter>> {
    vec![Box::new(RequestedTransport {
        protocol: PROTO_TCP,
    })]
}

fn peer_attr(peer: SocketAddr) -> Vec<Box<dyn Setter>> {
    vec![Box::new(PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    })]
}

fn connection_id_attr(id: u32) -> Vec<Box<dyn Setter>> {
    vec![Box::new(RawAttr(
        ATTR_CONNECTION_ID,
        id.to_be_bytes().to_vec(),
    ))]
}

/// The CONNECTION-ID of a Connect success or a ConnectionAttempt.
fn connection_id(m: &Message) -> u32 {
    let (value, found) = m.attributes.get(ATTR_CONNECTION_ID);
    assert!(found, "no CONNECTION-ID in {m}");
    u32::from_be_bytes(value.value[..].try_into().expect("4-byte CONNECTION-ID"))
}

/// Allocate for TCP over `client`'s stream; returns XOR-RELAYED-ADDRESS.
fn tcp_allocate<C: Conn>(client: &mut StreamClient<C>) -> SocketAddr {
    client.challenge(METHOD_ALLOCATE, tcp_transport());
    let resp = client.request_ok(METHOD_ALLOCATE, tcp_transport());
    let mut relayed = RelayedAddress::default();
    stun::message::Getter::get_from(&mut relayed, &resp).expect("XOR-RELAYED-ADDRESS");
    SocketAddr::new(relayed.ip, relayed.port)
}

/// A signed Connect to `peer`; the response as it came.
fn connect<C: Conn>(client: &mut StreamClient<C>, peer: SocketAddr) -> Message {
    let req = client.signed(METHOD_CONNECT, peer_attr(peer));
    client.transact(&req)
}

/// A Connect that must succeed; its CONNECTION-ID.
fn connect_ok<C: Conn>(client: &mut StreamClient<C>, peer: SocketAddr) -> u32 {
    let mut resp = connect(client, peer);
    client.assert_success(METHOD_CONNECT, &mut resp);
    connection_id(&resp)
}

/// A ConnectionBind of `id` on `data`; the response as it came.
fn bind<C: Conn>(data: &mut StreamClient<C>, id: u32) -> Message {
    let req = data.signed(METHOD_CONNECTION_BIND, connection_id_attr(id));
    data.transact(&req)
}

/// A new data connection bound to `id` with the control connection's
/// nonce (as coturn's client does); the raw stream and any bytes already
/// read past the response.
fn bind_data<C: Conn>(d: &Daemon, control: &StreamClient<C>, id: u32) -> (TcpStream, Vec<u8>) {
    let mut data = StreamClient::tcp(d.tcp_addr());
    data.use_nonce_of(control);
    let mut resp = bind(&mut data, id);
    data.assert_success(METHOD_CONNECTION_BIND, &mut resp);
    data.into_raw()
}

/// Reads exactly `n` bytes (after `early`) within [`ANSWER`].
fn read_n(stream: &mut TcpStream, mut early: Vec<u8>, n: usize) -> Vec<u8> {
    stream.set_read_timeout(Some(ANSWER)).unwrap();
    let deadline = Instant::now() + ANSWER;
    let mut buf = [0u8; 4096];
    while early.len() < n {
        assert!(
            Instant::now() < deadline,
            "got {} of {n} bytes",
            early.len()
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed after {} of {n} bytes", early.len()),
            Ok(k) => early.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(e) => panic!("read failed after {} of {n} bytes: {e}", early.len()),
        }
    }
    early
}

/// Whether the other side closes `stream` (EOF or reset) within `timeout`.
fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// A TCP echo server on 127.0.0.1; each connection it accepted is echoed
/// on its own thread, which reports on `closed` when the connection ends.
struct EchoPeer {
    addr: SocketAddr,
    closed: mpsc::Receiver<SocketAddr>,
}

impl EchoPeer {
    /// Serves at most `connections` connections.
    fn start(connections: usize) -> EchoPeer {
        Self::start_on("127.0.0.1:0", connections)
    }

    fn start_on(addr: &str, connections: usize) -> EchoPeer {
        let listener = TcpListener::bind(addr).expect("bind the echo peer");
        let addr = listener.local_addr().unwrap();
        let (tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let Ok(mut stream) = stream else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let from = stream.peer_addr().expect("peer address");
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = tx.send(from);
                });
            }
        });
        EchoPeer { addr, closed }
    }
}

/// A port on 127.0.0.1 with nothing listening (connects are refused).
fn refused_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn daemon() -> Daemon {
    Daemon::start(&stream_config(None, ""))
}

#[test]
fn connect_relays_bytes_both_ways_and_closes_with_either_side() {
    let d = daemon();
    let echo = EchoPeer::start(2);
    let mut control = StreamClient::tcp(d.tcp_addr());
    let relay = tcp_allocate(&mut control);
    assert_eq!(relay.ip(), d.bound().relay_address);

    let id = connect_ok(&mut control, echo.addr);
    let (mut data, early) = bind_data(&d, &control, id);
    let sent = pattern(50_000, 3);
    data.write_all(&sent).unwrap();
    assert_eq!(read_n(&mut data, early, sent.len()), sent);
    // The echo peer sees the relayed address as the source (RFC 6062 §5.2).
    data.shutdown(std::net::Shutdown::Write).unwrap();
    let from = echo.closed.recv_timeout(CLOSE_WAIT).expect("peer closed");
    assert_eq!(from, relay, "the connection comes from the relayed address");
    assert!(closed_within(&mut data, CLOSE_WAIT), "FIN passed back");

    let s = d.wait_for_metric(DATA_ACTIVE, &[], 0.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "connect")]), 1.0);
    assert_eq!(
        s.get(TCP_BYTES, &[("direction", "client_to_peer")]),
        sent.len() as f64
    );
    assert_eq!(
        s.get(TCP_BYTES, &[("direction", "peer_to_client")]),
        sent.len() as f64
    );
    assert_eq!(
        s.get(
            "turnd_requests_total",
            &[("method", "connect"), ("result", "success")]
        ),
        1.0
    );

    // The pair is gone: the same peer may be connected to again.
    let id2 = connect_ok(&mut control, echo.addr);
    assert_ne!(id, id2);
}

#[test]
fn connect_over_an_ipv6_relay() {
    let toml = stream_config(None, "")
        .replacen("bind = \"127.0.0.1\"", "bind = \"::1\"", 1)
        .replacen("\"127.0.0.0/8\"", "\"::1/128\"", 1);
    let d = Daemon::start(&toml);
    let echo = EchoPeer::start_on("[::1]:0", 1);
    let mut control = StreamClient::tcp(d.tcp_addr());
    let v6 = || -> Vec<Box<dyn Setter>> {
        let mut a = tcp_transport();
        a.push(Box::new(RawAttr(
            stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY,
            vec![2, 0, 0, 0],
        )));
        a
    };
    control.challenge(METHOD_ALLOCATE, v6());
    let resp = control.request_ok(METHOD_ALLOCATE, v6());
    let mut relayed = RelayedAddress::default();
    stun::message::Getter::get_from(&mut relayed, &resp).expect("XOR-RELAYED-ADDRESS");
    assert!(relayed.ip.is_ipv6(), "{resp}");
    // An IPv4 peer on an IPv6 relay: 443.
    assert_eq!(
        error_code(&connect(&mut control, "192.0.2.1:80".parse().unwrap())),
        Some(443)
    );
    let id = connect_ok(&mut control, echo.addr);
    let (mut data, early) = bind_data(&d, &control, id);
    data.write_all(b"over ipv6").unwrap();
    assert_eq!(read_n(&mut data, early, 9), b"over ipv6");
}

#[test]
fn connect_errors() {
    let d = daemon();
    let echo = EchoPeer::start(1);
    let mut control = StreamClient::tcp(d.tcp_addr());
    // No allocation yet: 437.
    control.challenge(METHOD_CONNECT, peer_attr(echo.addr));
    assert_eq!(error_code(&connect(&mut control, echo.addr)), Some(437));
    tcp_allocate(&mut control);

    // A private address stays denied with loopback allowed: 403, and
    // nothing is sent there.
    let private: SocketAddr = "10.0.0.1:80".parse().unwrap();
    assert_eq!(error_code(&connect(&mut control, private)), Some(403));
    // Our own listener is not a peer either.
    assert_eq!(error_code(&connect(&mut control, d.tcp_addr())), Some(403));
    // No XOR-PEER-ADDRESS: 400.
    let req = control.signed(METHOD_CONNECT, Vec::new());
    assert_eq!(error_code(&control.transact(&req)), Some(400));
    // Nothing listens: 447.
    assert_eq!(
        error_code(&connect(&mut control, refused_port())),
        Some(447)
    );
    // A connection to this peer exists (unbound): 446.
    connect_ok(&mut control, echo.addr);
    assert_eq!(error_code(&connect(&mut control, echo.addr)), Some(446));

    let s = d.scrape();
    assert_eq!(s.get(PEER_FAILED, &[("reason", "connect_failed")]), 1.0);
    assert!(s.get("turnd_peer_denied_total", &[("reason", "special_range")]) >= 1.0);
    for code in ["403", "437", "446", "447"] {
        assert!(
            s.get(
                "turnd_requests_total",
                &[("method", "connect"), ("result", code)]
            ) >= 1.0,
            "{code} counted"
        );
    }

    // Connect on a UDP allocation: 403.
    let mut udp_alloc = StreamClient::tcp(d.tcp_addr());
    udp_alloc.allocate();
    assert_eq!(error_code(&connect(&mut udp_alloc, echo.addr)), Some(403));
}

#[test]
fn allocate_for_tcp_rules() {
    let d = daemon();
    // Over UDP: 400 (RFC 6062 §5.1).
    let mut udp = RawClient::new(d.udp_addr());
    udp.challenge(METHOD_ALLOCATE, tcp_transport());
    assert_eq!(
        error_code(&udp.request(METHOD_ALLOCATE, tcp_transport())),
        Some(400)
    );
    // With EVEN-PORT, DONT-FRAGMENT or RESERVATION-TOKEN: 400.
    for (attr, value) in [
        (stun::attributes::ATTR_EVEN_PORT, vec![0x80]),
        (stun::attributes::ATTR_DONT_FRAGMENT, vec![]),
        (stun::attributes::ATTR_RESERVATION_TOKEN, vec![1; 8]),
    ] {
        let mut c = StreamClient::tcp(d.tcp_addr());
        c.challenge(METHOD_ALLOCATE, tcp_transport());
        let mut attrs = tcp_transport();
        attrs.push(Box::new(RawAttr(attr, value)));
        let req = c.signed(METHOD_ALLOCATE, attrs);
        assert_eq!(error_code(&c.transact(&req)), Some(400), "{attr}");
    }
    // Another transport: 442.
    let mut c = StreamClient::tcp(d.tcp_addr());
    let sctp = || -> Vec<Box<dyn Setter>> {
        vec![Box::new(RequestedTransport {
            protocol: Protocol(132),
        })]
    };
    c.challenge(METHOD_ALLOCATE, sctp());
    let req = c.signed(METHOD_ALLOCATE, sctp());
    assert_eq!(error_code(&c.transact(&req)), Some(442));
    // ChannelBind on a TCP allocation: 400.
    let mut c = StreamClient::tcp(d.tcp_addr());
    tcp_allocate(&mut c);
    let mut attrs = peer_attr("127.0.0.1:9".parse().unwrap());
    attrs.push(Box::new(turn::proto::channum::ChannelNumber(0x4000)));
    let req = c.signed(stun::message::METHOD_CHANNEL_BIND, attrs);
    assert_eq!(error_code(&c.transact(&req)), Some(400));
}

#[test]
fn connection_bind_errors() {
    let mut cfg = TestConfig::default().allow_loopback();
    cfg.users.push(("bob".into(), "bobs-password".into()));
    let toml = cfg
        .toml()
        .replacen("[listen]\n", "[listen]\ntcp = [\"127.0.0.1:0\"]\n", 1);
    let d = Daemon::start(&toml);
    let echo = EchoPeer::start(1);
    let mut control = StreamClient::tcp(d.tcp_addr());
    tcp_allocate(&mut control);
    let id = connect_ok(&mut control, echo.addr);

    // An id nobody handed out: 400.
    let mut data = StreamClient::tcp(d.tcp_addr());
    data.use_nonce_of(&control);
    assert_eq!(error_code(&bind(&mut data, id ^ 0x5a5a_5a5a)), Some(400));
    // No CONNECTION-ID: 400.
    let req = data.signed(METHOD_CONNECTION_BIND, Vec::new());
    assert_eq!(error_code(&data.transact(&req)), Some(400));
    // Another user's connection: 441.
    let mut bob = StreamClient::tcp(d.tcp_addr());
    bob.set_credentials("bob", "bobs-password");
    bob.challenge(METHOD_CONNECTION_BIND, connection_id_attr(id));
    assert_eq!(error_code(&bind(&mut bob, id)), Some(441));
    // Over UDP: 400.
    let mut udp = RawClient::new(d.udp_addr());
    udp.challenge(METHOD_CONNECTION_BIND, connection_id_attr(id));
    assert_eq!(
        error_code(&udp.request(METHOD_CONNECTION_BIND, connection_id_attr(id))),
        Some(400)
    );
    // On the control connection (it has an allocation): 400.
    assert_eq!(error_code(&bind(&mut control, id)), Some(400));

    // The right user, on a fresh connection with its own nonce: bound; a
    // second bind of the same id: 400.
    let mut good = StreamClient::tcp(d.tcp_addr());
    good.challenge(METHOD_CONNECTION_BIND, connection_id_attr(id));
    let mut resp = bind(&mut good, id);
    good.assert_success(METHOD_CONNECTION_BIND, &mut resp);
    let mut again = StreamClient::tcp(d.tcp_addr());
    again.use_nonce_of(&control);
    assert_eq!(error_code(&bind(&mut again, id)), Some(400));
    let s = d.scrape();
    assert!(s.get(PEER_FAILED, &[("reason", "bind_unknown")]) >= 2.0);
}

#[test]
fn permitted_peer_connecting_in_is_offered_and_bound() {
    let d = daemon();
    let mut control = StreamClient::tcp(d.tcp_addr());
    let relay = tcp_allocate(&mut control);
    control.create_permission("127.0.0.1:1".parse().unwrap());

    let mut peer = TcpStream::connect_timeout(&relay, ANSWER).expect("peer connects in");
    let from = peer.local_addr().unwrap();
    let attempt = match control.next_frame(ANSWER) {
        Some(Frame::Stun(m)) => m,
        Some(other) => panic!("unexpected {other:?}"),
        None => panic!("no ConnectionAttempt"),
    };
    assert_eq!(
        attempt.typ,
        MessageType::new(METHOD_CONNECTION_ATTEMPT, CLASS_INDICATION)
    );
    let mut xor = XorMappedAddress::default();
    xor.get_from_as(&attempt, stun::attributes::ATTR_XOR_PEER_ADDRESS)
        .expect("XOR-PEER-ADDRESS");
    assert_eq!(SocketAddr::new(xor.ip, xor.port), from);
    let id = connection_id(&attempt);

    // Bound on a connection that learnt its own nonce.
    let mut data = StreamClient::tcp(d.tcp_addr());
    data.challenge(METHOD_CONNECTION_BIND, connection_id_attr(id));
    let mut resp = bind(&mut data, id);
    assert_eq!(resp.typ.class, CLASS_SUCCESS_RESPONSE, "{resp}");
    data.assert_success(METHOD_CONNECTION_BIND, &mut resp);
    let (mut data, early) = data.into_raw();

    peer.write_all(b"from the peer").unwrap();
    assert_eq!(read_n(&mut data, early, 13), b"from the peer");
    data.write_all(b"from the client").unwrap();
    assert_eq!(read_n(&mut peer, Vec::new(), 15), b"from the client");
    // The peer goes: so does the data connection.
    drop(peer);
    assert!(closed_within(&mut data, CLOSE_WAIT));
    let s = d.wait_for_metric(DATA_ACTIVE, &[], 0.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "accept")]), 1.0);
}

#[test]
fn peer_without_permission_is_closed_unannounced() {
    let d = daemon();
    let mut control = StreamClient::tcp(d.tcp_addr());
    let relay = tcp_allocate(&mut control);
    let mut peer = TcpStream::connect_timeout(&relay, ANSWER).expect("TCP handshake");
    assert!(closed_within(&mut peer, CLOSE_WAIT), "refused peer closed");
    assert!(
        control.next_frame(stream_support::SILENCE).is_none(),
        "no ConnectionAttempt"
    );
    let s = d.scrape();
    assert_eq!(s.get(PEER_FAILED, &[("reason", "no_permission")]), 1.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "accept")]), 0.0);
}

#[test]
fn ending_the_allocation_closes_its_connections() {
    let d = daemon();
    let echo = EchoPeer::start(4);
    // Deleted with Refresh 0: the bound pair and an unbound one close.
    let mut control = StreamClient::tcp(d.tcp_addr());
    tcp_allocate(&mut control);
    let bound = connect_ok(&mut control, echo.addr);
    let (mut data, early) = bind_data(&d, &control, bound);
    data.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut data, early, 4), b"ping");
    control.refresh(0);
    assert!(
        closed_within(&mut data, CLOSE_WAIT),
        "data connection closed"
    );
    echo.closed.recv_timeout(CLOSE_WAIT).expect("peer closed");
    // The usage record counts what the pair copied.
    let record = d.log_lines("turnd::usage", 1).remove(0);
    assert!(
        record.contains("sent_bytes=4") && record.contains("received_bytes=4"),
        "{record}"
    );

    // The control connection closes: the same.
    let mut control = StreamClient::tcp(d.tcp_addr());
    tcp_allocate(&mut control);
    let id = connect_ok(&mut control, echo.addr);
    let (mut data, _) = bind_data(&d, &control, id);
    drop(control);
    assert!(
        closed_within(&mut data, CLOSE_WAIT),
        "data connection closed"
    );
    echo.closed.recv_timeout(CLOSE_WAIT).expect("peer closed");
    d.wait_for_metric(DATA_ACTIVE, &[], 0.0);
}

#[test]
fn unbound_connection_closes_after_30_s() {
    let d = daemon();
    let echo = EchoPeer::start(1);
    let mut control = StreamClient::tcp(d.tcp_addr());
    tcp_allocate(&mut control);
    let id = connect_ok(&mut control, echo.addr);
    // RFC 6062 §5.3: 30 s; the machine may be slow, so allow 60.
    echo.closed
        .recv_timeout(Duration::from_secs(60))
        .expect("peer connection closed for want of a ConnectionBind");
    let mut data = StreamClient::tcp(d.tcp_addr());
    data.use_nonce_of(&control);
    assert_eq!(error_code(&bind(&mut data, id)), Some(400));
    let s = d.scrape();
    assert_eq!(s.get(PEER_FAILED, &[("reason", "bind_timeout")]), 1.0);
}

/// Runs `turnutils_uclient` with `flags` against `port`; its output.
fn uclient(flags: &[&str], port: u16) -> String {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(flags).args([
        "-u",
        USER,
        "-w",
        PASSWORD,
        "-e",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-n",
        "10",
        "-l",
        "100",
        "127.0.0.1",
    ]);
    let run = run_with_timeout(&mut cmd, Duration::from_secs(90));
    assert!(run.status.success(), "{cmd:?} failed:\n{}", run.output);
    run.output
}

fn assert_contains(output: &str, want: &str) {
    assert!(
        output.contains(want),
        "no {want:?} in turnutils_uclient's output:\n{output}"
    );
}

#[test]
fn coturn_uclient_tcp_relay_client_to_client() {
    if !require_tool("turnutils_uclient") {
        return;
    }
    let d = daemon();
    // -T: two TCP allocations; one Connects to the other's relayed
    // address, which announces it with a ConnectionAttempt; both bind.
    let out = uclient(&["-T"], d.tcp_addr().port());
    assert_contains(&out, "tot_send_msgs=20, tot_recv_msgs=20");
    assert_contains(&out, "Total lost packets 0 (0.000000%)");
    let s = d.wait_for_metric(DATA_ACTIVE, &[], 0.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "connect")]), 1.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "accept")]), 1.0);
    // Each message crosses two data connections.
    assert_eq!(
        s.get(TCP_BYTES, &[("direction", "client_to_peer")]),
        2.0 * 1000.0
    );
}

#[test]
fn coturn_uclient_passive_tcp_relay() {
    if !require_tool("turnutils_uclient") {
        return;
    }
    let d = daemon();
    // -P: uclient's own peer connects in to the relayed address. uclient
    // counts the peer's messages as sent and only the client's as
    // received, so it reports half lost against coturn's server too.
    let out = uclient(&["-P"], d.tcp_addr().port());
    assert_contains(&out, "tot_send_msgs=20, tot_recv_msgs=10");
    let s = d.wait_for_metric(DATA_ACTIVE, &[], 0.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "accept")]), 1.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "connect")]), 0.0);
    assert_eq!(s.get(TCP_BYTES, &[("direction", "peer_to_client")]), 1000.0);
}

#[test]
fn coturn_uclient_tcp_relay_over_tls() {
    if !require_tool("turnutils_uclient") {
        return;
    }
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = ca.server_cert("turnd test", 1).write_to(dir.path());
    let d = Daemon::start(&stream_config(
        Some((c.to_str().unwrap(), k.to_str().unwrap())),
        "",
    ));
    let out = uclient(&["-T", "-S"], d.tls_addr().port());
    assert_contains(&out, "tot_send_msgs=20, tot_recv_msgs=20");
    let s = d.wait_for_metric(DATA_ACTIVE, &[], 0.0);
    // uclient retries connections whose TLS version turnd refuses.
    assert!(s.get("turnd_allocations_created_total", &[("transport", "tls")]) >= 2.0);
    assert_eq!(s.get(PEER_CONNECTIONS, &[("how", "connect")]), 1.0);
}
