//! Scenario tests on virtual time for the RFC 8489/8656 conformance items of
//! issue 17 (README "RFC conformance"): each pins the RFC's answer where
//! turnd once deviated.

use crate::engine;

use std::net::SocketAddr;

use engine::*;
use stun::attributes::*;
use stun::message::*;

fn allocate_as(h: &mut Harness, ft: turnd::core::FiveTuple, c: &Creds, n: u8) -> Message {
    h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(n),
            &[transport_udp()],
            Some(c),
            false,
        ),
    )
}

fn drops(h: &mut Harness, reason: &str) -> f64 {
    h.counter("turnd_dropped_packets_total", &[("reason", reason)])
}

fn relayed_out(h: &mut Harness) -> f64 {
    h.counter(
        "turnd_relayed_packets_total",
        &[("direction", "client_to_peer")],
    )
}

/// Item 4 (RFC 8489 §10): ALTERNATE-SERVER is of the client's family; with
/// none of that family configured the client gets 508, not a 300 it cannot
/// follow.
#[test]
fn alternate_server_is_of_the_clients_family() {
    let mut h = Harness::new();
    let v4: SocketAddr = "203.0.113.8:3478".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::8]:3478".parse().unwrap();
    let ft6 = turnd::core::FiveTuple {
        client: "[2001:db8::99]:4000".parse().unwrap(),
        server: "[2001:db8::10]:3478".parse().unwrap(),
        transport: turnd::core::Transport::Udp,
    };
    h.server.drain(Some(v4));
    let c6 = login(&mut h, ft6, USER, PASSWORD);
    assert_eq!(error_code(&allocate_as(&mut h, ft6, &c6, 1)), Some(508));
    h.server.drain(turnd::core::Alternates {
        v4: Some(v4),
        v6: Some(v6),
    });
    let r = allocate_as(&mut h, ft6, &c6, 2);
    assert_eq!(error_code(&r), Some(300));
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(&r, ATTR_ALTERNATE_SERVER).unwrap();
    assert_eq!(SocketAddr::new(alt.ip, alt.port), v6);
    let ft4 = client(1);
    let c4 = login(&mut h, ft4, USER, PASSWORD);
    let r = allocate_as(&mut h, ft4, &c4, 3);
    alt.get_from_as(&r, ATTR_ALTERNATE_SERVER).unwrap();
    assert_eq!(SocketAddr::new(alt.ip, alt.port), v4);
}

/// Item 5 (RFC 8656 §7.2): a user at quota whose last slot is held by its
/// reservation can claim it.
#[test]
fn claiming_a_reservation_needs_no_spare_quota_slot() {
    let mut h = Harness::new(); // 3 per user
    let ft = client(1);
    let c = login(&mut h, ft, USER, PASSWORD);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp(), (ATTR_EVEN_PORT, vec![0x80])],
            Some(&c),
            false,
        ),
    );
    let token = r.get(ATTR_RESERVATION_TOKEN).expect("a token");
    allocate(&mut h, client(2)); // the third slot: alice is at quota
    let ft3 = client(3);
    let c3 = login(&mut h, ft3, USER, PASSWORD);
    let r = h.request(
        ft3,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(3),
            &[transport_udp(), (ATTR_RESERVATION_TOKEN, token)],
            Some(&c3),
            false,
        ),
    );
    assert_eq!(error_code(&r), None, "claimed: {r}");
    let first = h.server.allocation(&ft).unwrap().relay.port();
    let relay = xor_addr(&r, ATTR_XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relay.port(), first + 1);
    // Still at quota: a fourth allocation is refused.
    let ft4 = client(4);
    let c4 = login(&mut h, ft4, USER, PASSWORD);
    assert_eq!(error_code(&allocate_as(&mut h, ft4, &c4, 4)), Some(486));
}

/// Item 6 (RFC 8656 §7.3): Refresh naming the other family gets 443 and
/// leaves the allocation alone, even with LIFETIME 0.
#[test]
fn refresh_of_the_other_family_gets_443() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    let v6 = (ATTR_REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    let r = signed(&mut h, ft, METHOD_REFRESH, 2, &[lifetime(0), v6], &c);
    assert_eq!(error_code(&r), Some(443));
    assert!(h.server.allocation(&ft).is_some(), "not deleted");
    let v4 = (ATTR_REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0]);
    let r = signed(&mut h, ft, METHOD_REFRESH, 3, &[lifetime(0), v4], &c);
    assert_eq!(error_code(&r), None);
    assert!(h.server.allocation(&ft).is_none(), "deleted");
}

/// Item 7 and issue 16 item 6: an IPv4-mapped XOR-PEER-ADDRESS is not an
/// IPv4 peer: 443 for CreatePermission and ChannelBind, and a Send
/// indication to it is dropped and counted, never counted as relayed.
#[test]
fn ipv4_mapped_peers_get_443_and_are_never_relayed() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    let mapped = "[::ffff:198.18.0.1]:5000";
    assert_eq!(error_code(&permit(&mut h, ft, &c, &[mapped], 2)), Some(443));
    assert_eq!(
        error_code(&bind(&mut h, ft, &c, 0x4000, mapped, 3)),
        Some(443)
    );
    // With a permission for the IPv4 form, Send to the mapped form is
    // still not sent.
    assert_eq!(error_code(&permit(&mut h, ft, &c, &[PEER], 4)), None);
    let before = relayed_out(&mut h);
    assert!(h.feed(ft, &send_indication(mapped, b"x", 5)).is_empty());
    assert_eq!(drops(&mut h, "peer_family"), 1.0);
    assert_eq!(relayed_out(&mut h), before, "not counted as relayed");
    assert_eq!(h.feed(ft, &send_indication(PEER, b"x", 6)).len(), 1);
}

/// Item 8 (RFC 8489 §14.1): the reserved first byte of an XOR address is
/// ignored, in requests and in Send indications.
#[test]
fn the_reserved_byte_of_xor_addresses_is_ignored() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    let (t, mut v) = xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(2));
    v[0] = 0xFF;
    let r = signed(&mut h, ft, METHOD_CREATE_PERMISSION, 2, &[(t, v)], &c);
    assert_eq!(error_code(&r), None, "{r}");
    let (t, mut v) = xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(3));
    v[0] = 0x80;
    let send = build(
        METHOD_SEND,
        CLASS_INDICATION,
        tid(3),
        &[(t, v), (ATTR_DATA, b"hi".to_vec())],
        None,
        false,
    );
    let out = h.feed(ft, &send);
    assert_eq!(out.len(), 1, "relayed");
    assert_eq!(out[0].destination, PEER.parse::<SocketAddr>().unwrap());
}

/// Item 9 (RFC 8489 §9.2.4): a stale nonce with a wrong password gets 401
/// at once; 438 only when the credentials are right.
#[test]
fn a_wrong_password_is_401_even_with_a_stale_nonce() {
    let mut h = Harness::new();
    let ft = client(1);
    let c = login(&mut h, ft, USER, PASSWORD);
    h.advance(601);
    let wrong = Creds {
        password: "not-it".into(),
        ..c.clone()
    };
    assert_eq!(error_code(&allocate_as(&mut h, ft, &wrong, 1)), Some(401));
    assert_eq!(error_code(&allocate_as(&mut h, ft, &c, 2)), Some(438));
    let unknown = Creds {
        username: "mallory".into(),
        ..c
    };
    assert_eq!(error_code(&allocate_as(&mut h, ft, &unknown, 3)), Some(401));
}

/// Item 10 (RFC 8489 §6.3): requests of methods turnd does not serve, and
/// a Send or Data request, are discarded unanswered and counted.
#[test]
fn unsupported_methods_and_classes_are_discarded() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    // A Send or Data *request* (RFC 6062's Connect and ConnectionBind are
    // served: tests/tcp_relay.rs).
    for (n, method) in [(3, METHOD_SEND), (4, METHOD_DATA)] {
        let req = build(method, CLASS_REQUEST, tid(n), &[], Some(&c), false);
        assert!(h.feed(ft, &req).is_empty(), "{method} answered");
        let unsigned = build(method, CLASS_REQUEST, tid(n + 10), &[], None, false);
        assert!(h.feed(ft, &unsigned).is_empty(), "{method} answered");
    }
    assert_eq!(drops(&mut h, "unsupported_method"), 4.0);
}

/// Item 11 (RFC 8656 §7.2 step 2): an Allocate on a 5-tuple in use gets
/// 437, whoever sends it; other requests by another user get 441 (§5).
#[test]
fn allocate_by_another_user_on_a_used_five_tuple_gets_437() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    let bob = Creds {
        username: "bob".into(),
        ..c.clone()
    };
    assert_eq!(
        error_code(&allocate_as(&mut h, ft, &bob, 1)),
        Some(437),
        "same transaction id too"
    );
    assert_eq!(error_code(&allocate_as(&mut h, ft, &bob, 2)), Some(437));
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 3, &[], &bob)),
        Some(441)
    );
}

/// Item 12 (RFC 8489 §6.3): known but unexpected comprehension-required
/// attributes are ignored, in requests and in Send indications; unknown
/// ones still get 420 (requests) or void the indication.
#[test]
fn known_but_unexpected_attributes_are_ignored() {
    let mut h = Harness::new();
    let ft = client(1);
    // REQUESTED-TRANSPORT in a Binding request.
    let req = build(
        METHOD_BINDING,
        CLASS_REQUEST,
        tid(1),
        &[transport_udp()],
        None,
        false,
    );
    assert_eq!(error_code(&h.request(ft, &req)), None);
    let (c, _) = allocate(&mut h, ft);
    // CHANNEL-NUMBER in a CreatePermission.
    let attrs = [
        xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(2)),
        (ATTR_CHANNEL_NUMBER, vec![0x40, 0, 0, 0]),
    ];
    let r = signed(&mut h, ft, METHOD_CREATE_PERMISSION, 2, &attrs, &c);
    assert_eq!(error_code(&r), None, "{r}");
    // LIFETIME in a Send indication.
    let send = build(
        METHOD_SEND,
        CLASS_INDICATION,
        tid(3),
        &[
            xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(3)),
            lifetime(600),
            (ATTR_DATA, b"hi".to_vec()),
        ],
        None,
        false,
    );
    assert_eq!(h.feed(ft, &send).len(), 1, "relayed");
    // An unknown one still voids it.
    let send = build(
        METHOD_SEND,
        CLASS_INDICATION,
        tid(4),
        &[
            xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(4)),
            (AttrType(0x0077), vec![]),
            (ATTR_DATA, b"hi".to_vec()),
        ],
        None,
        false,
    );
    assert!(h.feed(ft, &send).is_empty());
    let r = signed(
        &mut h,
        ft,
        METHOD_REFRESH,
        5,
        &[(AttrType(0x0077), vec![0; 4])],
        &c,
    );
    assert_eq!(error_code(&r), Some(420));
}

/// Item 13 (RFC 8489 §9.2.2): the realm and password are prepared with
/// OpaqueString, so a non-ASCII password typed decomposed authenticates.
#[test]
fn non_ascii_passwords_are_prepared_with_opaque_string() {
    let mut cfg = config();
    let mut users = std::collections::HashMap::new();
    // Configured composed (U+00E9).
    users.insert(
        "zoe".to_string(),
        turnd::core::auth::long_term_key("zoe", REALM, "caf\u{e9}"),
    );
    cfg.credentials = turnd::core::auth::Credentials::new(REALM.into(), users, vec![]);
    let mut h = Harness::with(cfg);
    let ft = client(1);
    // An RFC client with the password typed decomposed (e + U+0301) derives
    // MD5("zoe:example.org:café") after preparing it; so does Creds::key.
    let c = login(&mut h, ft, "zoe", "cafe\u{301}");
    // printf 'zoe:example.org:caf\xc3\xa9' | md5sum
    assert_eq!(hex::encode(c.key()), "3713906507d9bc254d711c63bef88f60");
    assert_eq!(error_code(&allocate_as(&mut h, ft, &c, 1)), None);
}
