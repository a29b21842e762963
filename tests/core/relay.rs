//! Scenario tests of the core on virtual time: permissions (RFC 8656 §9),
//! Send/Data indications (§11), channels and ChannelData (§12), and the peer
//! policy (§21).

use crate::engine;

use engine::*;
use stun::attributes::*;
use stun::message::*;
use turnd::core::{Source, Transmit};

#[test]
fn send_needs_a_permission_and_data_comes_back_as_indication() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, port) = allocate(&mut h, ft);
    assert!(
        h.feed(ft, &send_indication(PEER, b"early", 20)).is_empty(),
        "no permission yet"
    );
    assert_eq!(
        h.counter(
            "turnd_dropped_packets_total",
            &[("reason", "no_permission")]
        ),
        1.0
    );
    assert!(h.peer_sends(port, PEER, b"unsolicited").is_empty());

    let r = permit(&mut h, ft, &c, &[PEER], 21);
    assert_eq!(error_code(&r), None);
    let out = h.feed(ft, &send_indication(PEER, b"hello peer", 22));
    assert_eq!(
        out,
        vec![Transmit {
            source: Source::Relay(relay_addr(port)),
            destination: PEER.parse().unwrap(),
            payload: b"hello peer".to_vec()
        }]
    );

    // Any port of a permitted IP may answer (permissions are per IP).
    let out = h.peer_sends(port, "198.18.0.1:6000", b"hello client");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].destination, ft.client);
    let m = parse(&out[0].payload);
    assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
    assert_eq!(
        xor_addr(&m, ATTR_XOR_PEER_ADDRESS),
        Some("198.18.0.1:6000".parse().unwrap())
    );
    assert_eq!(m.get(ATTR_DATA).unwrap(), b"hello client");
    assert_eq!(
        h.counter(
            "turnd_relayed_packets_total",
            &[("direction", "client_to_peer")]
        ),
        1.0
    );
    assert_eq!(
        h.counter(
            "turnd_relayed_bytes_total",
            &[("direction", "client_to_peer")]
        ),
        10.0
    );
    assert_eq!(
        h.counter(
            "turnd_relayed_packets_total",
            &[("direction", "peer_to_client")]
        ),
        1.0
    );
    assert_eq!(
        h.counter(
            "turnd_relayed_bytes_total",
            &[("direction", "peer_to_client")]
        ),
        12.0
    );
}

#[test]
fn create_permission_installs_every_peer_or_none() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, port) = allocate(&mut h, ft);
    let r = permit(&mut h, ft, &c, &["198.18.0.1:1", "198.18.0.2:1"], 21);
    assert_eq!(error_code(&r), None);
    assert_eq!(
        h.peer_sends(port, "198.18.0.2:9", b"x").len(),
        1,
        "the second address counts too"
    );
    // One denied address: 403 and nothing installed.
    let r = permit(&mut h, ft, &c, &["198.18.0.3:1", "10.0.0.1:1"], 22);
    assert_eq!(error_code(&r), Some(403));
    assert!(h.peer_sends(port, "198.18.0.3:9", b"x").is_empty());
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &[], 23)),
        Some(400),
        "no XOR-PEER-ADDRESS"
    );
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &["[2001:db8::1]:1"], 24)),
        Some(443),
        "IPv6 peer on an IPv4 relay"
    );
}

#[test]
fn special_addresses_are_refused_in_every_encoding() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    for (i, peer) in [
        "127.0.0.1:80",
        "0.0.0.0:80",
        "10.1.2.3:80",
        "169.254.169.254:80",
        "192.168.1.1:80",
        "100.64.0.1:80",
        "224.0.0.1:80",
        "255.255.255.255:80",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            error_code(&permit(&mut h, ft, &c, &[peer], 30 + i as u8)),
            Some(403),
            "{peer}"
        );
        assert_eq!(
            error_code(&bind(&mut h, ft, &c, 0x4000, peer, 50 + i as u8)),
            Some(403),
            "{peer}"
        );
    }
    assert_eq!(
        h.counter("turnd_peer_denied_total", &[("reason", "special_range")]),
        16.0
    );
}

#[test]
fn operator_allow_and_deny() {
    let mut cfg = config();
    cfg.peer_policy = turnd::core::peer_policy::PeerPolicy::new(
        vec!["127.0.0.0/8".parse().unwrap()],
        vec!["198.18.5.0/24".parse().unwrap()],
    );
    let mut h = Harness::with(cfg);
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &["127.0.0.1:9"], 21)),
        None,
        "loopback allowed by config"
    );
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &["198.18.5.5:9"], 22)),
        Some(403)
    );
    assert_eq!(
        h.counter("turnd_peer_denied_total", &[("reason", "configured")]),
        1.0
    );
    // Even an allowed range never reaches our own listener.
    let mut cfg = config();
    cfg.peer_policy =
        turnd::core::peer_policy::PeerPolicy::new(vec!["192.0.2.0/24".parse().unwrap()], vec![]);
    let mut h = Harness::with(cfg);
    let (c, _) = allocate(&mut h, ft);
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4001, SERVER, 23)),
        Some(403)
    );
    assert_eq!(
        h.counter("turnd_peer_denied_total", &[("reason", "own_address")]),
        1.0
    );
}

#[test]
fn channels_carry_data_both_ways() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, port) = allocate(&mut h, ft);
    assert!(
        h.feed(ft, &channel_data(0x4000, b"x")).is_empty(),
        "unbound channel"
    );
    assert_eq!(
        h.counter("turnd_dropped_packets_total", &[("reason", "no_channel")]),
        1.0
    );
    assert_eq!(error_code(&bind(&mut h, ft, &c, 0x4000, PEER, 21)), None);
    let out = h.feed(ft, &channel_data(0x4000, b"via channel"));
    assert_eq!(
        out,
        vec![Transmit {
            source: Source::Relay(relay_addr(port)),
            destination: PEER.parse().unwrap(),
            payload: b"via channel".to_vec()
        }]
    );
    // Padding after the payload is allowed on UDP.
    let mut padded = channel_data(0x4000, b"abc");
    padded.push(0);
    assert_eq!(h.feed(ft, &padded)[0].payload, b"abc");

    let back = h.peer_sends(port, PEER, b"reply");
    assert_eq!(back[0].payload, channel_data(0x4000, b"reply"));
    // Another port of the same peer IP is not the channel's peer.
    let other = h.peer_sends(port, "198.18.0.1:5001", b"reply");
    assert_eq!(
        parse(&other[0].payload).typ,
        MessageType::new(METHOD_DATA, CLASS_INDICATION)
    );

    // A large datagram is relayed whole.
    let big = vec![0xAB; 60_000];
    assert_eq!(
        h.feed(ft, &channel_data(0x4000, &big))[0].payload.len(),
        60_000
    );
    assert_eq!(h.peer_sends(port, PEER, &big)[0].payload.len(), 60_004);
}

#[test]
fn channel_bind_rules() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x3FFF, PEER, 21)),
        Some(400),
        "below 0x4000"
    );
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x8000, PEER, 22)),
        Some(400),
        "above 0x7FFF"
    );
    assert_eq!(error_code(&bind(&mut h, ft, &c, 0x4000, PEER, 23)), None);
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, PEER, 24)),
        None,
        "refresh"
    );
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, "198.18.0.9:1", 25)),
        Some(400),
        "number taken"
    );
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4001, PEER, 26)),
        Some(400),
        "peer taken"
    );
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4001, "198.18.0.9:1", 27)),
        None
    );
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4002, "198.18.0.10:1", 28)),
        Some(508),
        "2 channels per allocation"
    );
    assert_eq!(
        h.counter("turnd_quota_rejections_total", &[("kind", "channels")]),
        1.0
    );
    let no_number = signed(
        &mut h,
        ft,
        METHOD_CHANNEL_BIND,
        29,
        &[xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(29))],
        &c,
    );
    assert_eq!(error_code(&no_number), Some(400));
}

#[test]
fn permissions_and_channels_expire() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, port) = allocate(&mut h, ft);
    assert_eq!(error_code(&bind(&mut h, ft, &c, 0x4000, PEER, 21)), None);
    h.advance(299);
    assert_eq!(h.feed(ft, &channel_data(0x4000, b"x")).len(), 1);
    h.advance(1);
    // The permission installed by ChannelBind lapsed after 300 s.
    assert!(h.feed(ft, &channel_data(0x4000, b"x")).is_empty());
    assert!(h.peer_sends(port, PEER, b"x").is_empty());
    // Refreshing the allocation keeps it alive while the channel lapses at
    // 600 s and stays reserved until 900 s.
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 30, &[], &c)),
        None
    );
    h.advance(300);
    let c = Creds {
        nonce: login(&mut h, ft, USER, PASSWORD).nonce,
        ..c
    };
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, "198.18.0.9:1", 31)),
        Some(400),
        "quarantined"
    );
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 32, &[], &c)),
        None
    );
    h.advance(300);
    let c = Creds {
        nonce: login(&mut h, ft, USER, PASSWORD).nonce,
        ..c
    };
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, "198.18.0.9:1", 33)),
        None,
        "released"
    );
}

#[test]
fn permission_quota() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    let four = [
        "198.18.0.1:1",
        "198.18.0.2:1",
        "198.18.0.3:1",
        "198.18.0.4:1",
    ];
    assert_eq!(error_code(&permit(&mut h, ft, &c, &four, 21)), None);
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &four, 22)),
        None,
        "refreshing is not growing"
    );
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &["198.18.0.5:1"], 23)),
        Some(508)
    );
    assert_eq!(
        h.counter("turnd_quota_rejections_total", &[("kind", "permissions")]),
        1.0
    );
}

#[test]
fn data_for_unknown_relay_or_client_is_dropped() {
    let mut h = Harness::new();
    assert!(h.peer_sends(50050, PEER, b"x").is_empty());
    assert!(h.feed(client(9), &channel_data(0x4000, b"x")).is_empty());
    assert!(h
        .feed(client(9), &send_indication(PEER, b"x", 3))
        .is_empty());
    assert_eq!(
        h.counter(
            "turnd_dropped_packets_total",
            &[("reason", "no_allocation")]
        ),
        3.0
    );
}

#[test]
fn two_clients_of_this_server_talk_relay_to_relay() {
    // The advertised relay address is private here (denied by the default
    // policy), as on a LAN test setup: still, one allocation may reach
    // another, and nothing else on that address.
    let mut cfg = config();
    cfg.relay_advertised = "10.0.0.5".parse().unwrap();
    let mut h = Harness::with(cfg);
    let a = client(1);
    let b = client(2);
    let (ca, port_a) = allocate(&mut h, a);
    let (_, port_b) = allocate(&mut h, b);
    let peer_b = format!("10.0.0.5:{port_b}");
    assert_eq!(error_code(&permit(&mut h, a, &ca, &[&peer_b], 21)), None);
    let out = h.feed(a, &send_indication(&peer_b, b"hi b", 22));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].source, Source::Relay(relay_addr(port_a)));
    // The same address outside the relay range (ssh, a database) is not.
    assert!(h
        .feed(a, &send_indication("10.0.0.5:22", b"x", 23))
        .is_empty());
    assert_eq!(
        error_code(&bind(&mut h, a, &ca, 0x4000, "10.0.0.5:5432", 24)),
        Some(403)
    );
    assert_eq!(error_code(&bind(&mut h, a, &ca, 0x4001, &peer_b, 25)), None);
    assert_eq!(
        h.counter("turnd_peer_denied_total", &[("reason", "own_address")]),
        2.0
    );
    // Other private addresses stay denied.
    assert_eq!(
        error_code(&permit(&mut h, a, &ca, &["10.0.0.6:1"], 26)),
        Some(403)
    );
}

#[test]
fn an_allowed_relay_address_is_a_peer_on_any_port() {
    // Loopback test setups: the relay is 127.0.0.1 and so are the peers,
    // which the operator allowed.
    let mut cfg = config();
    cfg.relay_advertised = "127.0.0.1".parse().unwrap();
    cfg.peer_policy =
        turnd::core::peer_policy::PeerPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], vec![]);
    let mut h = Harness::with(cfg);
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, "127.0.0.1:34800", 21)),
        None
    );
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &["127.0.0.1:9"], 22)),
        None
    );
    assert_eq!(
        h.feed(ft, &send_indication("127.0.0.1:9", b"x", 23)).len(),
        1
    );
}

#[test]
fn relay_to_relay_behind_a_1to1_nat_does_not_need_hairpinning() {
    // Relays bound on 192.0.2.10, advertised as 203.0.113.10 (the NAT's
    // address): A's data for B's advertised address goes to B's local
    // socket, and B sees it coming from A's advertised address.
    let mut h = Harness::new();
    let (a, b) = (client(1), client(2));
    let (ca, port_a) = allocate(&mut h, a);
    let (cb, port_b) = allocate(&mut h, b);
    let to_b = format!("{EXTERNAL_IP}:{port_b}");
    let to_a = format!("{EXTERNAL_IP}:{port_a}");
    assert_eq!(error_code(&permit(&mut h, a, &ca, &[&to_b], 21)), None);
    assert_eq!(error_code(&permit(&mut h, b, &cb, &[&to_a], 22)), None);
    let out = h.feed(a, &send_indication(&to_b, b"via the local socket", 23));
    assert_eq!(out[0].destination, relay_addr(port_b), "not out to the NAT");
    // The datagram arrives on B's relay socket from A's local address.
    let back = h.peer_sends(
        port_b,
        &format!("{RELAY_IP}:{port_a}"),
        b"via the local socket",
    );
    assert_eq!(
        back.len(),
        1,
        "B has a permission for A's advertised address"
    );
    let m = parse(&back[0].payload);
    assert_eq!(
        xor_addr(&m, ATTR_XOR_PEER_ADDRESS),
        Some(to_a.parse().unwrap())
    );
}

/// A relay on a public address (every real deployment): the address passes
/// the built-in list, yet its other services (DNS, NTP, an agent) are not
/// peers unless `[peers] allow` names the address.
#[test]
fn a_public_relay_address_reaches_only_its_allocations() {
    const PUBLIC: &str = "100.20.30.40";
    let mut cfg = config();
    cfg.relay_bind = PUBLIC.parse().unwrap();
    cfg.relay_advertised = PUBLIC.parse().unwrap();
    let mut h = Harness::with(cfg);
    let (a, b) = (client(1), client(2));
    let (ca, port_a) = allocate(&mut h, a);
    let (cb, port_b) = allocate(&mut h, b);
    let dns = format!("{PUBLIC}:53");
    let to_b = format!("{PUBLIC}:{port_b}");
    // A permission is per IP (RFC 8656 §9): granted, it lets A reach B.
    assert_eq!(error_code(&permit(&mut h, a, &ca, &[&dns], 21)), None);
    assert_eq!(
        error_code(&bind(&mut h, a, &ca, 0x4000, &dns, 22)),
        Some(403)
    );
    assert!(h.feed(a, &send_indication(&dns, b"query", 23)).is_empty());
    assert_eq!(error_code(&bind(&mut h, a, &ca, 0x4001, &to_b, 24)), None);
    let out = h.feed(a, &channel_data(0x4001, b"to b"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].destination, to_b.parse().unwrap());
    assert_eq!(
        out[0].source,
        Source::Relay(format!("{PUBLIC}:{port_a}").parse().unwrap())
    );

    // B goes away; its port may be bound next by any process of the host.
    // The channel lives on (600 s), but it must not reach that port.
    let refresh = signed(&mut h, b, METHOD_REFRESH, 25, &[lifetime(0)], &cb);
    assert_eq!(error_code(&refresh), None);
    assert!(h.feed(a, &channel_data(0x4001, b"to whoever")).is_empty());
    assert!(h
        .feed(a, &send_indication(&to_b, b"to whoever", 26))
        .is_empty());
    assert_eq!(
        h.counter("turnd_peer_denied_total", &[("reason", "own_address")]),
        4.0
    );
}

/// The operator may open the relay address to its other services by naming
/// it in `[peers] allow`.
#[test]
fn an_explicitly_allowed_public_relay_address_is_a_peer_on_any_port() {
    const PUBLIC: &str = "100.20.30.40";
    let mut cfg = config();
    cfg.relay_bind = PUBLIC.parse().unwrap();
    cfg.relay_advertised = PUBLIC.parse().unwrap();
    cfg.peer_policy =
        turnd::core::peer_policy::PeerPolicy::new(vec!["100.20.30.40/32".parse().unwrap()], vec![]);
    let mut h = Harness::with(cfg);
    let a = client(1);
    let (ca, _) = allocate(&mut h, a);
    let dns = format!("{PUBLIC}:53");
    assert_eq!(error_code(&bind(&mut h, a, &ca, 0x4000, &dns, 21)), None);
    assert_eq!(h.feed(a, &channel_data(0x4000, b"query")).len(), 1);
}

#[test]
fn a_peer_denied_by_a_reload_is_cut_at_once() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, port) = allocate(&mut h, ft);
    assert_eq!(error_code(&bind(&mut h, ft, &c, 0x4000, PEER, 21)), None);
    assert_eq!(h.feed(ft, &channel_data(0x4000, b"before")).len(), 1);
    let mut cfg = config();
    cfg.peer_policy = turnd::core::peer_policy::PeerPolicy::new(
        vec!["198.18.0.0/15".parse().unwrap()],
        vec!["198.18.0.0/24".parse().unwrap()],
    );
    let now = h.now;
    h.server.reconfigure(now, cfg, &mut h.relays);
    assert_eq!(h.server.allocation_count(), 1, "the allocation stays");
    assert!(h.feed(ft, &channel_data(0x4000, b"after")).is_empty());
    assert!(h.peer_sends(port, PEER, b"reply").is_empty());
    assert_eq!(error_code(&permit(&mut h, ft, &c, &[PEER], 22)), Some(403));
}
