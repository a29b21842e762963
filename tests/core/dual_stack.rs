//! Dual-stack relaying in the sans-IO core (RFC 8656 §7.2, §9, §12, RFC
//! 6156): allocations in the family asked for, both families with
//! ADDITIONAL-ADDRESS-FAMILY, ADDRESS-ERROR-CODE, 440 and 443, and
//! permissions, channels and the peer policy per family.

use std::net::SocketAddr;

use crate::engine::*;
use stun::attributes::*;
use stun::message::*;
use turnd::core::message::decode_xor_address;
use turnd::core::{CoreConfig, FiveTuple, Outbox, RelayIp, Source};

const ADDITIONAL: AttrType = AttrType(0x8000);
const ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
const RELAY6: &str = "2001:db8::10";
const EXTERNAL6: &str = "2001:db8:ffff::10";
/// A public IPv6 peer (the engine sends nothing anywhere).
const PEER6: &str = "[2606:4700:4700::1111]:6000";

fn dual() -> CoreConfig {
    let mut cfg = config();
    cfg.relay_other = Some(RelayIp {
        bind: RELAY6.parse().unwrap(),
        advertised: EXTERNAL6.parse().unwrap(),
    });
    cfg
}

fn v6_only() -> CoreConfig {
    let mut cfg = config();
    cfg.relay_bind = RELAY6.parse().unwrap();
    cfg.relay_advertised = EXTERNAL6.parse().unwrap();
    cfg
}

fn family(code: u8) -> Vec<u8> {
    vec![code, 0, 0, 0]
}

/// Every XOR-RELAYED-ADDRESS of a response, in order.
fn relayed(m: &Message) -> Vec<SocketAddr> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .filter_map(|a| decode_xor_address(&a.value, &m.transaction_id.0))
        .collect()
}

/// ADDRESS-ERROR-CODE as (family, code).
fn address_error(m: &Message) -> Option<(u8, u16)> {
    let v = m.get(ADDRESS_ERROR_CODE).ok()?;
    Some((v[0], u16::from(v[2] & 7) * 100 + u16::from(v[3])))
}

fn dual_allocation(h: &mut Harness, ft: FiveTuple) -> (Creds, SocketAddr, SocketAddr) {
    let (c, r) = allocate_with(h, ft, &[(ADDITIONAL, family(2))]);
    assert_eq!(error_code(&r), None, "{r}");
    let addrs = relayed(&r);
    assert_eq!(addrs.len(), 2, "two XOR-RELAYED-ADDRESS: {r}");
    (c, addrs[0], addrs[1])
}

/// What the server sends for `bytes` from `ft`, as (from relay, to, payload).
fn to_peers(h: &mut Harness, ft: FiveTuple, bytes: &[u8]) -> Vec<(SocketAddr, SocketAddr)> {
    h.feed(ft, bytes)
        .into_iter()
        .filter_map(|t| match t.source {
            Source::Relay(r) => Some((r, t.destination)),
            Source::Client(_) => None,
        })
        .collect()
}

#[test]
fn additional_address_family_gives_one_address_per_family_ipv4_first() {
    let mut h = Harness::with(dual());
    let (_, v4, v6) = dual_allocation(&mut h, client(1));
    assert_eq!(v4.ip(), EXTERNAL_IP.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(v6.ip(), EXTERNAL6.parse::<std::net::IpAddr>().unwrap());
    assert_ne!(v4.port(), v6.port(), "one port range, shared");
    let open: Vec<SocketAddr> = h.relays.open.iter().copied().collect();
    assert!(open.contains(&SocketAddr::new(RELAY_IP.parse().unwrap(), v4.port())));
    assert!(open.contains(&SocketAddr::new(RELAY6.parse().unwrap(), v6.port())));
    assert_eq!(open.len(), 2);
    for f in ["ipv4", "ipv6"] {
        let l = [("family", f)];
        assert_eq!(h.counter("turnd_relayed_addresses_active", &l), 1.0, "{f}");
        assert_eq!(h.counter("turnd_relayed_addresses_created_total", &l), 1.0);
    }
    let t = [("transport", "udp")];
    assert_eq!(
        h.counter("turnd_allocations_active", &t),
        1.0,
        "one allocation"
    );
}

#[test]
fn the_family_asked_for_and_ipv4_by_default() {
    let mut h = Harness::with(dual());
    let (_, r) = allocate_with(&mut h, client(1), &[]);
    assert_eq!(relayed(&r).len(), 1);
    assert!(
        relayed(&r)[0].is_ipv4(),
        "absent means IPv4 (RFC 6156 §4.2)"
    );
    let (_, r) = allocate_with(
        &mut h,
        client(2),
        &[(ATTR_REQUESTED_ADDRESS_FAMILY, family(2))],
    );
    assert_eq!(relayed(&r).len(), 1);
    assert!(relayed(&r)[0].is_ipv6());
    assert_eq!(address_error(&r), None);
}

#[test]
fn a_family_not_relayed_is_440_alone_and_address_error_code_in_a_pair() {
    // IPv4 only: IPv6 alone is 440, the pair gets IPv4 and a 440 for IPv6.
    let mut h = Harness::new();
    let (_, r) = allocate_with(
        &mut h,
        client(1),
        &[(ATTR_REQUESTED_ADDRESS_FAMILY, family(2))],
    );
    assert_eq!(error_code(&r), Some(440));
    let (_, r) = allocate_with(&mut h, client(2), &[(ADDITIONAL, family(2))]);
    assert_eq!(error_code(&r), None, "{r}");
    assert_eq!(relayed(&r).len(), 1);
    assert!(relayed(&r)[0].is_ipv4());
    assert_eq!(address_error(&r), Some((2, 440)));
    let refused = [("family", "ipv6")];
    assert_eq!(
        h.counter("turnd_address_family_refused_total", &refused),
        2.0
    );
    // IPv6 only: the pair gets IPv6 and a 440 for IPv4.
    let mut h = Harness::with(v6_only());
    let (_, r) = allocate_with(&mut h, client(3), &[(ADDITIONAL, family(2))]);
    assert_eq!(error_code(&r), None, "{r}");
    assert!(relayed(&r)[0].is_ipv6());
    assert_eq!(address_error(&r), Some((1, 440)));
}

#[test]
fn malformed_family_requests_are_400() {
    let mut h = Harness::with(dual());
    for (i, attrs) in [
        vec![
            (ATTR_REQUESTED_ADDRESS_FAMILY, family(1)),
            (ADDITIONAL, family(2)),
        ],
        vec![(ADDITIONAL, family(1))],
        vec![(ADDITIONAL, vec![2])],
        vec![
            (ATTR_RESERVATION_TOKEN, vec![0; 8]),
            (ADDITIONAL, family(2)),
        ],
        // EVEN-PORT with the R bit (reserve the next port) and a pair.
        vec![(ATTR_EVEN_PORT, vec![0x80]), (ADDITIONAL, family(2))],
    ]
    .into_iter()
    .enumerate()
    {
        let (_, r) = allocate_with(&mut h, client(10 + i as u16), &attrs);
        assert_eq!(error_code(&r), Some(400), "case {i}: {r}");
    }
    assert!(h.relays.open.is_empty());
}

#[test]
fn peers_of_a_missing_family_get_443_and_sends_to_them_are_dropped() {
    let mut h = Harness::with(dual());
    let ft = client(1);
    let (c, r) = allocate_with(&mut h, ft, &[]);
    assert_eq!(error_code(&r), None);
    assert_eq!(error_code(&permit(&mut h, ft, &c, &[PEER6], 2)), Some(443));
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, PEER6, 3)),
        Some(443)
    );
    assert!(to_peers(&mut h, ft, &send_indication(PEER6, b"x", 4)).is_empty());
    assert_eq!(
        h.counter("turnd_dropped_packets_total", &[("reason", "peer_family")]),
        1.0
    );
    // Refresh naming the other family is 443; its own family is fine.
    let v6 = (ATTR_REQUESTED_ADDRESS_FAMILY, family(2));
    let r = signed(&mut h, ft, METHOD_REFRESH, 5, std::slice::from_ref(&v6), &c);
    assert_eq!(error_code(&r), Some(443));
    let v4 = (ATTR_REQUESTED_ADDRESS_FAMILY, family(1));
    assert_eq!(
        error_code(&signed(
            &mut h,
            ft,
            METHOD_REFRESH,
            6,
            std::slice::from_ref(&v4),
            &c
        )),
        None
    );
    // A dual allocation matches both families.
    let ft2 = client(2);
    let (c2, _, _) = dual_allocation(&mut h, ft2);
    for (n, f) in [(7, v4), (8, v6)] {
        let r = signed(&mut h, ft2, METHOD_REFRESH, n, &[f], &c2);
        assert_eq!(error_code(&r), None, "{r}");
    }
}

#[test]
fn a_dual_allocation_relays_each_family_from_its_own_socket() {
    let mut h = Harness::with(dual());
    let ft = client(1);
    let (c, v4, v6) = dual_allocation(&mut h, ft);
    let r = permit(&mut h, ft, &c, &[PEER, PEER6], 2);
    assert_eq!(error_code(&r), None, "one request, both families: {r}");
    let relay4 = SocketAddr::new(RELAY_IP.parse().unwrap(), v4.port());
    let relay6 = SocketAddr::new(RELAY6.parse().unwrap(), v6.port());
    assert_eq!(
        to_peers(&mut h, ft, &send_indication(PEER, b"a", 3)),
        vec![(relay4, PEER.parse().unwrap())]
    );
    assert_eq!(
        to_peers(&mut h, ft, &send_indication(PEER6, b"b", 4)),
        vec![(relay6, PEER6.parse().unwrap())]
    );
    // Channels per family, and the binding the kernel path would see.
    assert_eq!(error_code(&bind(&mut h, ft, &c, 0x4001, PEER6, 5)), None);
    assert_eq!(error_code(&bind(&mut h, ft, &c, 0x4002, PEER, 6)), None);
    assert_eq!(
        to_peers(&mut h, ft, &channel_data(0x4001, b"c")),
        vec![(relay6, PEER6.parse().unwrap())]
    );
    assert_eq!(
        to_peers(&mut h, ft, &channel_data(0x4002, b"d")),
        vec![(relay4, PEER.parse().unwrap())]
    );
    let mut installed: Vec<(u16, SocketAddr)> = h
        .server
        .installed_channels()
        .map(|b| (b.channel, b.relay))
        .collect();
    installed.sort();
    assert_eq!(installed, vec![(0x4001, relay6), (0x4002, relay4)]);
    // From the peer on the IPv6 socket back to the client, on its channel.
    let mut out = Outbox::default();
    let now = h.now;
    h.server
        .handle_peer(now, relay6, PEER6.parse().unwrap(), b"back", &mut out);
    let sent = out.to_transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, ft.client);
    assert_eq!(&sent[0].payload[..2], &0x4001u16.to_be_bytes());
    // Traffic by family: b and c went out over IPv6, "back" came in.
    let v6 = |h: &mut Harness, name: &str, d: &str| h.counter(name, &[("direction", d)]);
    assert_eq!(
        v6(&mut h, "turnd_relayed_ipv6_packets_total", "client_to_peer"),
        2.0
    );
    assert_eq!(
        v6(&mut h, "turnd_relayed_ipv6_bytes_total", "client_to_peer"),
        2.0
    );
    assert_eq!(
        v6(&mut h, "turnd_relayed_ipv6_packets_total", "peer_to_client"),
        1.0
    );
    assert_eq!(
        v6(&mut h, "turnd_relayed_packets_total", "client_to_peer"),
        4.0
    );
}

#[test]
fn the_peer_policy_holds_on_the_ipv6_side_of_a_dual_allocation() {
    let mut h = Harness::with(dual());
    let ft = client(1);
    let (c, _, _) = dual_allocation(&mut h, ft);
    for (n, peer) in [
        "[::1]:9",
        "[::]:9",
        "[fd00::1]:9",
        "[fe80::1]:9",
        "[ff02::1]:9",
        "[64:ff9b::a9fe:a9fe]:9",
        "[2002:7f00:1::1]:9",
        "[fd00:ec2::254]:80",
    ]
    .into_iter()
    .enumerate()
    {
        let n = 10 + n as u8;
        assert_eq!(
            error_code(&permit(&mut h, ft, &c, &[peer], n)),
            Some(403),
            "{peer}"
        );
    }
    // IPv4-mapped is of neither family, even with both.
    let mapped = "[::ffff:198.18.0.1]:9";
    assert_eq!(
        error_code(&permit(&mut h, ft, &c, &[mapped], 30)),
        Some(443)
    );
}

#[test]
fn a_dual_allocation_counts_once_and_frees_both_ports() {
    let mut cfg = dual();
    cfg.allocations_total = 1;
    let mut h = Harness::with(cfg);
    let ft = client(1);
    let (c, _, _) = dual_allocation(&mut h, ft);
    assert_eq!(h.server.allocation_count(), 1);
    let (_, r) = allocate_with(&mut h, client(2), &[]);
    assert_eq!(error_code(&r), Some(508), "the total quota is full");
    let r = signed(&mut h, ft, METHOD_REFRESH, 2, &[lifetime(0)], &c);
    assert_eq!(error_code(&r), None);
    assert!(h.relays.open.is_empty(), "both relay sockets closed");
    for f in ["ipv4", "ipv6"] {
        let l = [("family", f)];
        assert_eq!(h.counter("turnd_relayed_addresses_active", &l), 0.0, "{f}");
    }
    let (_, r) = allocate_with(&mut h, client(3), &[(ADDITIONAL, family(2))]);
    assert_eq!(relayed(&r).len(), 2, "the slot is free again: {r}");
}

#[test]
fn even_port_without_reservation_gives_two_even_ports() {
    let mut h = Harness::with(dual());
    let (_, r) = allocate_with(
        &mut h,
        client(1),
        &[(ATTR_EVEN_PORT, vec![0]), (ADDITIONAL, family(2))],
    );
    let addrs = relayed(&r);
    assert_eq!(addrs.len(), 2, "{r}");
    assert!(addrs.iter().all(|a| a.port() % 2 == 0), "{addrs:?}");
}

#[test]
fn no_port_for_the_second_family_is_address_error_code_508() {
    let mut cfg = dual();
    cfg.port_high = cfg.port_low; // one port: the IPv4 address takes it
    let mut h = Harness::with(cfg);
    let (_, r) = allocate_with(&mut h, client(1), &[(ADDITIONAL, family(2))]);
    assert_eq!(error_code(&r), None, "{r}");
    assert_eq!(relayed(&r).len(), 1);
    assert!(relayed(&r)[0].is_ipv4());
    assert_eq!(address_error(&r), Some((2, 508)));
}

#[test]
fn coturn_draft_code_points_are_understood_and_answered_in_kind() {
    // turnutils_uclient -Z sends ADDITIONAL-ADDRESS-FAMILY as 0x8032 and
    // reads ADDRESS-ERROR-CODE as 0x8033 (the draft before RFC 8656).
    let mut h = Harness::with(dual());
    let (_, r) = allocate_with(&mut h, client(1), &[(AttrType(0x8032), family(2))]);
    assert_eq!(relayed(&r).len(), 2, "{r}");
    let mut h = Harness::new();
    let (_, r) = allocate_with(&mut h, client(2), &[(AttrType(0x8032), family(2))]);
    assert_eq!(relayed(&r).len(), 1, "{r}");
    assert_eq!(address_error(&r), None, "not RFC 8656's code point");
    let v = r
        .get(AttrType(0x8033))
        .expect("the draft's ADDRESS-ERROR-CODE");
    assert_eq!(&v[..4], &[2, 0, 4, 40]);
}

#[test]
fn default_family_keep_gives_the_clients_own_family() {
    let mut cfg = dual();
    cfg.default_family = None; // relay.default_family = "keep"
    let mut h = Harness::with(cfg);
    let (_, r) = allocate_with(&mut h, client(1), &[]);
    assert!(relayed(&r)[0].is_ipv4(), "{r}");
    let v6_client = FiveTuple {
        client: "[2001:db8:99::1]:4000".parse().unwrap(),
        server: "[2001:db8::10]:3478".parse().unwrap(),
        transport: turnd::core::Transport::Udp,
    };
    let (_, r) = allocate_with(&mut h, v6_client, &[]);
    assert_eq!(relayed(&r).len(), 1);
    assert!(relayed(&r)[0].is_ipv6(), "{r}");
    // Asking still wins.
    let v4 = (ATTR_REQUESTED_ADDRESS_FAMILY, family(1));
    let mut other = v6_client;
    other.client.set_port(4001);
    let (_, r) = allocate_with(&mut h, other, &[v4]);
    assert!(relayed(&r)[0].is_ipv4(), "{r}");
}

#[test]
fn relay_to_relay_over_ipv6_reaches_held_ports_only_and_skips_the_nat() {
    let mut h = Harness::with(dual());
    let (a, b) = (client(1), client(2));
    let (ca, _, _) = dual_allocation(&mut h, a);
    let (_, _, b6) = dual_allocation(&mut h, b);
    let target = b6.to_string();
    assert_eq!(error_code(&permit(&mut h, a, &ca, &[&target], 2)), None);
    // Behind the 1:1 NAT of relay.external, sent to B's socket directly.
    let local = SocketAddr::new(RELAY6.parse().unwrap(), b6.port());
    let out = to_peers(&mut h, a, &send_indication(&target, b"hi", 3));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, local);
    assert!(out[0].0.is_ipv6(), "from A's IPv6 relayed address");
    // A port of our IPv6 relay address that no allocation holds: 403.
    let free = SocketAddr::new(b6.ip(), if b6.port() == 50099 { 50098 } else { 50099 });
    let r = bind(&mut h, a, &ca, 0x4000, &free.to_string(), 4);
    assert_eq!(error_code(&r), Some(403), "{r}");
}
