//! What turnd does at the IP layer on UDP, against the real daemon over
//! loopback sockets: replies leave from the address the client sent to
//! (RFC 8489 §6.3.1.2, the 5-tuple of RFC 8656 §2), and ECN marks are
//! relayed both ways (RFC 8656 §14, preferred behaviour).

// Wall-clock deadlines bound the waits on real sockets.
#![allow(clippy::disallowed_methods)]

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::raw::{build, decode, RawClient, Relayed};
use common::Daemon;
use quinn_udp::{EcnCodepoint, RecvMeta, UdpSocketState};
use stun::agent::TransactionId;
use stun::message::{BINDING_REQUEST, BINDING_SUCCESS};

const ANSWER: Duration = Duration::from_secs(5);

/// turnd on wildcard UDP listeners (both families), relaying on 127.0.0.1
/// with loopback peers allowed.
fn wildcard_daemon() -> Daemon {
    Daemon::start(&format!(
        "realm = \"{realm}\"\n\n[listen]\nudp = [\"0.0.0.0:0\", \"[::]:0\"]\n\n\
         [relay]\nbind = \"127.0.0.1\"\nports = \"{lo}-{hi}\"\n\n\
         [[users]]\nname = \"{user}\"\npassword = \"{password}\"\n\n\
         [peers]\nallow = [\"127.0.0.0/8\"]\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        realm = common::REALM,
        lo = common::RELAY_PORTS.0,
        hi = common::RELAY_PORTS.1,
        user = common::USER,
        password = common::PASSWORD,
    ))
}

fn listener_port(d: &Daemon, v6: bool) -> u16 {
    d.bound()
        .udp
        .iter()
        .find(|a| a.is_ipv6() == v6)
        .expect("a listener of that family")
        .port()
}

/// The first datagram on `socket` within [`ANSWER`], and where it came from.
fn recv_from(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    socket.set_read_timeout(Some(ANSWER)).unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).expect("an answer from turnd");
    buf.truncate(n);
    (buf, from)
}

/// Item 1: a Binding sent to 127.0.0.2 (or ::1) on a wildcard listener is
/// answered from 127.0.0.2 (or ::1), not from whatever the kernel picks.
#[test]
fn answers_leave_from_the_address_the_request_came_to() {
    let d = wildcard_daemon();
    for (client, server) in [
        (
            "127.0.0.1:0",
            format!("127.0.0.2:{}", listener_port(&d, false)),
        ),
        (
            "127.0.0.1:0",
            format!("127.0.0.1:{}", listener_port(&d, false)),
        ),
        ("[::1]:0", format!("[::1]:{}", listener_port(&d, true))),
    ] {
        let server: SocketAddr = server.parse().unwrap();
        let socket = UdpSocket::bind(client).unwrap();
        let req = build(vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
        ]);
        socket.send_to(&req.raw, server).unwrap();
        let (bytes, from) = recv_from(&socket);
        assert_eq!(from, server, "answer to a request sent to {server}");
        assert_eq!(decode(&bytes).expect("STUN").typ, BINDING_SUCCESS);
    }
}

/// Item 1: an allocation made through 127.0.0.2 gets its responses and its
/// Data indications from 127.0.0.2 (the client's 5-tuple).
#[test]
fn relayed_data_leaves_from_the_five_tuples_address() {
    let d = wildcard_daemon();
    let server: SocketAddr = format!("127.0.0.2:{}", listener_port(&d, false))
        .parse()
        .unwrap();
    // RawClient only accepts datagrams from `server`.
    let mut client = RawClient::new(server);
    let relay = client.allocate();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.create_permission(&[peer.local_addr().unwrap()]);
    peer.send_to(b"to the client", relay).unwrap();
    match client.recv_relayed(ANSWER) {
        Some(Relayed::Indication { data, .. }) => assert_eq!(data, b"to the client"),
        other => panic!("expected a Data indication from {server}, got {other:?}"),
    }
}

/// Waits (bounded) for one datagram on a non-blocking `socket` read through
/// quinn-udp, which reports the ECN field (IP_RECVTOS / IPV6_RECVTCLASS).
fn recv_marked(socket: &UdpSocket, state: &UdpSocketState) -> (Vec<u8>, RecvMeta) {
    socket.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + ANSWER;
    let mut buf = vec![0u8; 65536];
    loop {
        let mut meta = [RecvMeta::default()];
        let mut bufs = [std::io::IoSliceMut::new(&mut buf)];
        match state.recv(socket.into(), &mut bufs, &mut meta) {
            Ok(n) if n > 0 => {
                let len = meta[0].len;
                return (buf[..len].to_vec(), meta[0]);
            }
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "nothing arrived within {ANSWER:?}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Sets the TOS byte (DSCP and ECN) of what `socket` sends.
fn mark(socket: &UdpSocket, tos: u32) {
    socket2::SockRef::from(socket).set_tos(tos).unwrap();
}

/// Item 2: ECN marks cross the relay both ways, on ChannelData and on Send
/// and Data indications.
#[test]
fn ecn_marks_are_relayed_both_ways() {
    let d = wildcard_daemon();
    let server: SocketAddr = format!("127.0.0.1:{}", listener_port(&d, false))
        .parse()
        .unwrap();
    let mut client = RawClient::new(server);
    let relay = client.allocate();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let peer_state = UdpSocketState::new((&peer).into()).unwrap();
    client.create_permission(&[peer_addr]);
    client.channel_bind(0x4001, peer_addr);
    let client_state = UdpSocketState::new(client.socket().into()).unwrap();

    // Client to peer: ECT(0) on ChannelData, ECT(1) on a Send indication,
    // with DSCP EF (46) in the same byte.
    for (tos, want) in [
        (0xB8 | 0b10, EcnCodepoint::Ect0),
        (0xB8 | 0b01, EcnCodepoint::Ect1),
    ] {
        mark(client.socket(), tos);
        if want == EcnCodepoint::Ect0 {
            client.send_channel_data(0x4001, b"marked");
        } else {
            client.send_indication(peer_addr, b"marked");
        }
        let (data, meta) = recv_marked(&peer, &peer_state);
        assert_eq!(data, b"marked");
        assert_eq!(meta.ecn, Some(want), "client to peer, TOS {tos:#x}");
    }
    // Unmarked stays unmarked.
    mark(client.socket(), 0);
    client.send_channel_data(0x4001, b"plain");
    let (_, meta) = recv_marked(&peer, &peer_state);
    assert_eq!(meta.ecn, None);

    // Peer to client: CE on ChannelData.
    mark(&peer, 0b11);
    peer.send_to(b"congested", relay).unwrap();
    let (data, meta) = recv_marked(client.socket(), &client_state);
    assert_eq!(&data[4..13], b"congested");
    assert_eq!(meta.ecn, Some(EcnCodepoint::Ce), "peer to client");
    // A STUN response is not marked, whatever the request was.
    mark(client.socket(), 0b10);
    let req = build(vec![
        Box::new(TransactionId::new()),
        Box::new(BINDING_REQUEST),
    ]);
    client.socket().send_to(&req.raw, server).unwrap();
    let (_, meta) = recv_marked(client.socket(), &client_state);
    assert_eq!(meta.ecn, None, "responses are Not-ECT");
}

/// Item 3 (RFC 8656 §11.5): a datagram relayed to a closed port draws an
/// ICMP port unreachable, which the client hears of in a Data indication
/// with an ICMP attribute (type 3, code 3) and the peer's address; counted.
#[test]
fn icmp_port_unreachable_reaches_the_client() {
    let d = wildcard_daemon();
    let server: SocketAddr = format!("127.0.0.1:{}", listener_port(&d, false))
        .parse()
        .unwrap();
    let mut client = RawClient::new(server);
    client.allocate();
    // A port nobody listens on: bound, read, closed.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    client.create_permission(&[closed]);
    client.send_indication(closed, b"anyone there?");
    let bytes = client
        .recv_raw(ANSWER)
        .expect("a Data indication with ICMP");
    let m = decode(&bytes).expect("STUN");
    assert_eq!(m.typ.value(), 0x0017, "a Data indication: {m}");
    let icmp = m
        .get(stun::attributes::AttrType(0x8004))
        .expect("an ICMP attribute");
    // 16 reserved bits, 7-bit type 3, 9-bit code 3, error data 0.
    assert_eq!(icmp, [0, 0, 3 << 1, 3, 0, 0, 0, 0]);
    assert!(m.get(stun::attributes::ATTR_DATA).is_err(), "no DATA");
    let mut peer = stun::xoraddr::XorMappedAddress::default();
    peer.get_from_as(&m, stun::attributes::ATTR_XOR_PEER_ADDRESS)
        .unwrap();
    assert_eq!(SocketAddr::new(peer.ip, peer.port), closed);
    d.wait_for_metric("turnd_icmp_relayed_total", &[], 1.0);
    // The relay still works afterwards: the next datagram is sent.
    let open = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.create_permission(&[open.local_addr().unwrap()]);
    client.send_indication(open.local_addr().unwrap(), b"still here");
    let (data, _) = recv_from(&open);
    assert_eq!(data, b"still here");
}
