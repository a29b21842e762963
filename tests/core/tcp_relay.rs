//! Scenario tests of the core on virtual time for RFC 6062: a TCP
//! allocation's listening relay socket (§5.1), Connect and the commands it
//! gives the shell (§5.2), ConnectionAttempt (§5.3), ConnectionBind and
//! its 30 s (§5.3, §5.4), and every peer connection closed with its
//! allocation.

use crate::engine;

use engine::*;
use stun::attributes::*;
use stun::message::*;
use turnd::core::{Command, FiveTuple, Outbox, Transport};

const PROTO_TCP: u8 = 6;

/// A client on a TCP connection.
fn tcp_client(port: u16) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        ..client(port)
    }
}

fn transport_tcp() -> (AttrType, Vec<u8>) {
    (ATTR_REQUESTED_TRANSPORT, vec![PROTO_TCP, 0, 0, 0])
}

/// A TCP allocation on `ft`: its credentials and relayed port.
fn tcp_allocate(h: &mut Harness, ft: FiveTuple) -> (Creds, u16) {
    let c = login(h, ft, USER, PASSWORD);
    let resp = signed(h, ft, METHOD_ALLOCATE, 1, &[transport_tcp()], &c);
    assert_eq!(error_code(&resp), None, "{resp}");
    let port = xor_addr(&resp, ATTR_XOR_RELAYED_ADDRESS).unwrap().port();
    (c, port)
}

fn connection_id(m: &Message) -> u32 {
    u32::from_be_bytes(m.get(ATTR_CONNECTION_ID).unwrap().try_into().unwrap())
}

/// Sends a Connect to `peer`; returns what came out at once.
fn connect(h: &mut Harness, ft: FiveTuple, c: &Creds, peer: &str, n: u8) -> Vec<Message> {
    let req = build(
        METHOD_CONNECT,
        CLASS_REQUEST,
        tid(n),
        &[xor_attr(ATTR_XOR_PEER_ADDRESS, peer, tid(n))],
        Some(c),
        false,
    );
    h.feed(ft, &req).iter().map(|t| parse(&t.payload)).collect()
}

/// The one TcpConnect command due, as (id, relay port, peer).
fn take_connect(h: &mut Harness) -> (u32, u16, std::net::SocketAddr) {
    let commands = h.server.take_commands();
    match commands.as_slice() {
        [Command::TcpConnect {
            id, relay, peer, ..
        }] => (*id, relay.port(), *peer),
        other => panic!("expected one TcpConnect, got {other:?}"),
    }
}

fn connected(h: &mut Harness, id: u32, ok: bool) -> (bool, Vec<Message>) {
    let mut out = Outbox::default();
    let keep = h.server.tcp_connected(h.now, id, ok, &mut out);
    let msgs = out
        .to_transmits()
        .iter()
        .map(|t| parse(&t.payload))
        .collect();
    (keep, msgs)
}

/// A Connect to `peer` whose connect succeeds; its CONNECTION-ID.
fn open(h: &mut Harness, ft: FiveTuple, c: &Creds, peer: &str, n: u8) -> u32 {
    assert!(connect(h, ft, c, peer, n).is_empty(), "answered later");
    let (id, _, _) = take_connect(h);
    let (keep, _) = connected(h, id, true);
    assert!(keep);
    id
}

fn connection_bind(h: &mut Harness, ft: FiveTuple, c: &Creds, id: u32, n: u8) -> Message {
    signed(
        h,
        ft,
        METHOD_CONNECTION_BIND,
        n,
        &[(ATTR_CONNECTION_ID, id.to_be_bytes().to_vec())],
        c,
    )
}

#[test]
fn tcp_allocation_listens_and_udp_clients_get_400() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (_, port) = tcp_allocate(&mut h, ft);
    assert!(h.relays.tcp.contains(&relay_addr(port)), "a TCP listener");

    let udp = client(2);
    let c = login(&mut h, udp, USER, PASSWORD);
    let resp = signed(&mut h, udp, METHOD_ALLOCATE, 1, &[transport_tcp()], &c);
    assert_eq!(error_code(&resp), Some(400), "RFC 6062 §5.1");
    assert!(h.relays.tcp.len() == 1);
}

#[test]
fn connect_asks_the_shell_and_answers_with_its_outcome() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (c, port) = tcp_allocate(&mut h, ft);
    h.server.take_commands();

    assert!(
        connect(&mut h, ft, &c, PEER, 2).is_empty(),
        "answered later"
    );
    let (id, relay_port, peer) = take_connect(&mut h);
    assert_eq!(relay_port, port, "connects from the relayed address");
    assert_eq!(peer, PEER.parse().unwrap());
    // While it connects, the same peer again: 446.
    let again = connect(&mut h, ft, &c, PEER, 3);
    assert_eq!(error_code(&again[0]), Some(446));

    let (keep, msgs) = connected(&mut h, id, true);
    assert!(keep);
    assert_eq!(
        msgs[0].typ,
        MessageType::new(METHOD_CONNECT, CLASS_SUCCESS_RESPONSE)
    );
    assert_eq!(msgs[0].transaction_id.0, tid(2));
    assert_eq!(connection_id(&msgs[0]), id);
    assert_eq!(
        h.counter(
            "turnd_requests_total",
            &[("method", "connect"), ("result", "success")]
        ),
        1.0
    );

    // A failed connect: 447, and the peer may be tried again.
    let other = "198.18.0.2:80";
    connect(&mut h, ft, &c, other, 4);
    let (id2, _, _) = take_connect(&mut h);
    let (keep, msgs) = connected(&mut h, id2, false);
    assert!(!keep);
    assert_eq!(error_code(&msgs[0]), Some(447));
    connect(&mut h, ft, &c, other, 5);
    take_connect(&mut h);
}

#[test]
fn connect_checks_the_peer_and_the_allocation() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let c = login(&mut h, ft, USER, PASSWORD);
    assert_eq!(error_code(&connect(&mut h, ft, &c, PEER, 2)[0]), Some(437));
    tcp_allocate(&mut h, ft);
    for (peer, code) in [
        ("127.0.0.1:80", 403),
        ("169.254.169.254:80", 403),
        (SERVER, 403),
        ("[2001:db8::1]:80", 443),
    ] {
        assert_eq!(
            error_code(&connect(&mut h, ft, &c, peer, 3)[0]),
            Some(code),
            "{peer}"
        );
    }
    assert!(h.server.take_commands().is_empty(), "nothing connected");

    // On a UDP allocation: 403.
    let udp = tcp_client(2);
    let (c2, _) = allocate(&mut h, udp);
    assert_eq!(
        error_code(&connect(&mut h, udp, &c2, PEER, 4)[0]),
        Some(403)
    );
}

#[test]
fn connections_per_allocation_are_capped() {
    let mut h = Harness::new(); // tcp_connections_per_allocation = 4
    let ft = tcp_client(1);
    let (c, _) = tcp_allocate(&mut h, ft);
    for i in 0..4u8 {
        let peer = format!("198.18.0.{}:80", i + 1);
        assert!(connect(&mut h, ft, &c, &peer, 10 + i).is_empty());
    }
    let resp = connect(&mut h, ft, &c, "198.18.0.9:80", 20);
    assert_eq!(error_code(&resp[0]), Some(508));
    assert_eq!(
        h.counter(
            "turnd_quota_rejections_total",
            &[("kind", "tcp_connections")]
        ),
        1.0
    );
}

#[test]
fn connection_bind_binds_once_within_30_s() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (c, _) = tcp_allocate(&mut h, ft);
    let id = open(&mut h, ft, &c, PEER, 2);

    // The data connection reuses the control connection's nonce.
    let data = tcp_client(7);
    let resp = connection_bind(&mut h, data, &c, id, 3);
    assert_eq!(error_code(&resp), None, "{resp}");
    assert_eq!(
        h.server.take_commands(),
        vec![Command::TcpBind { id, data }]
    );
    let again = connection_bind(&mut h, tcp_client(8), &c, id, 4);
    assert_eq!(error_code(&again), Some(400), "bound already");

    // Another, never bound: closed at 30 s, not before.
    let id2 = open(&mut h, ft, &c, "198.18.0.2:80", 5);
    h.advance(29);
    assert!(h.server.take_commands().is_empty());
    h.advance(2);
    assert_eq!(h.server.take_commands(), vec![Command::TcpClose(id2)]);
    let late = connection_bind(&mut h, tcp_client(9), &c, id2, 6);
    assert_eq!(error_code(&late), Some(400));
    assert_eq!(
        h.counter(
            "turnd_tcp_peer_connections_failed_total",
            &[("reason", "bind_timeout")]
        ),
        1.0
    );
}

#[test]
fn connection_bind_by_another_user_gets_441() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (c, _) = tcp_allocate(&mut h, ft);
    let id = open(&mut h, ft, &c, PEER, 2);
    let bob = Creds {
        username: "bob".into(),
        ..c.clone()
    };
    let resp = connection_bind(&mut h, tcp_client(7), &bob, id, 3);
    assert_eq!(error_code(&resp), Some(441));
}

#[test]
fn peer_connecting_in_needs_a_permission() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (c, port) = tcp_allocate(&mut h, ft);
    let relay = relay_addr(port);
    let mut out = Outbox::default();
    let peer = PEER.parse().unwrap();
    assert_eq!(
        h.server.tcp_peer_accepted(h.now, relay, peer, &mut out),
        None
    );
    assert!(out.is_empty());

    permit(&mut h, ft, &c, &[PEER], 2);
    let id = h
        .server
        .tcp_peer_accepted(h.now, relay, peer, &mut out)
        .expect("a permitted peer");
    let sent = out.to_transmits();
    assert_eq!(sent.len(), 1);
    let m = parse(&sent[0].payload);
    assert_eq!(
        m.typ,
        MessageType::new(METHOD_CONNECTION_ATTEMPT, CLASS_INDICATION)
    );
    assert_eq!(connection_id(&m), id);
    assert_eq!(xor_addr(&m, ATTR_XOR_PEER_ADDRESS), Some(peer));
}

#[test]
fn ending_the_allocation_closes_every_connection() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (c, _) = tcp_allocate(&mut h, ft);
    let bound = open(&mut h, ft, &c, PEER, 2);
    connection_bind(&mut h, tcp_client(7), &c, bound, 3);
    h.server.take_commands();
    connect(&mut h, ft, &c, "198.18.0.2:80", 4);
    let (pending, _, _) = take_connect(&mut h);

    h.server.close_connection(h.now, ft, &mut h.relays);
    let mut closed: Vec<_> = h.server.take_commands();
    closed.sort_by_key(|c| format!("{c:?}"));
    let mut want = vec![Command::TcpClose(bound), Command::TcpClose(pending)];
    want.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(closed, want);
    assert!(h.relays.tcp.is_empty(), "listener closed");
    // The connect finishing late is dropped.
    let (keep, msgs) = connected(&mut h, pending, true);
    assert!(!keep && msgs.is_empty());
}

#[test]
fn a_reload_denying_the_peer_closes_its_connections() {
    let mut h = Harness::new();
    let ft = tcp_client(1);
    let (c, _) = tcp_allocate(&mut h, ft);
    let id = open(&mut h, ft, &c, PEER, 2);
    h.server.take_commands();
    // Without the test's allow entry, 198.18.0.0/15 (benchmarking) is denied.
    let cfg = turnd::core::CoreConfig {
        peer_policy: turnd::core::peer_policy::PeerPolicy::new(vec![], vec![]),
        ..config()
    };
    h.server.reconfigure(h.now, cfg, &mut h.relays);
    assert!(h.server.take_commands().contains(&Command::TcpClose(id)));
    assert_eq!(error_code(&connect(&mut h, ft, &c, PEER, 3)[0]), Some(403));
}
