//! Scenario tests of the core on virtual time: Binding, authentication,
//! Allocate, Refresh, quotas and expiry (RFC 8489 §6.3, §9.2; RFC 8656 §7).

use crate::engine;

use engine::*;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::message::*;
use turnd::core::{FiveTuple, Source, Transport};

#[test]
fn binding_maps_the_source_and_echoes_fingerprint_only_when_asked() {
    let mut h = Harness::new();
    let ft = client(40000);
    for fingerprint in [false, true] {
        let resp = h.request(
            ft,
            &build(
                METHOD_BINDING,
                CLASS_REQUEST,
                tid(3),
                &[],
                None,
                fingerprint,
            ),
        );
        assert_eq!(resp.typ, BINDING_SUCCESS);
        assert_eq!(resp.transaction_id.0, tid(3));
        assert_eq!(xor_addr(&resp, ATTR_XORMAPPED_ADDRESS), Some(ft.client));
        assert_eq!(resp.contains(ATTR_FINGERPRINT), fingerprint);
        assert!(
            !resp.contains(ATTR_SOFTWARE),
            "no SOFTWARE: responses stay small"
        );
    }
    assert_eq!(
        h.counter("turnd_binding_requests_total", &[("transport", "udp")]),
        2.0
    );
}

#[test]
fn binding_with_unknown_required_attribute_gets_420() {
    let mut h = Harness::new();
    let resp = h.request(
        client(1),
        &build(
            METHOD_BINDING,
            CLASS_REQUEST,
            tid(3),
            &[
                (AttrType(0x0077), vec![1, 2, 3, 4]),
                (AttrType(0x8077), vec![0; 4]),
            ],
            None,
            false,
        ),
    );
    assert_eq!(error_code(&resp), Some(420));
    assert_eq!(
        resp.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap(),
        vec![0x00, 0x77],
        "only the comprehension-required one"
    );
}

#[test]
fn classic_rfc3489_binding_gets_mapped_address() {
    let mut h = Harness::new();
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&[9u8; 16]);
    let out = h.feed(client(2), &req);
    assert_eq!(out.len(), 1);
    let p = &out[0].payload;
    assert_eq!(&p[..2], &[0x01, 0x01]);
    assert_eq!(&p[4..20], &[9u8; 16]);
    assert_eq!(&p[20..22], &[0x00, 0x01], "MAPPED-ADDRESS");
    assert_eq!(&p[26..28], &2u16.to_be_bytes());
    assert_eq!(&p[28..32], &[192, 0, 2, 99]);
}

/// stuntman's `stunclient` sends CHANGE-REQUEST with no flag set: a plain
/// Binding. A flag set asks for an address turnd does not have: 420, never
/// a success from the same address (RFC 5780 §7.2). Both for RFC 5389 and
/// RFC 3489 requests.
#[test]
fn change_request_without_flags_is_a_binding_and_with_flags_420() {
    let mut h = Harness::new();
    let ft = client(40002);
    let change = |flags: u8| (ATTR_CHANGE_REQUEST, vec![0, 0, 0, flags]);
    let plain = h.request(
        ft,
        &build(
            METHOD_BINDING,
            CLASS_REQUEST,
            tid(4),
            &[change(0)],
            None,
            true,
        ),
    );
    assert_eq!(plain.typ, BINDING_SUCCESS);
    assert_eq!(xor_addr(&plain, ATTR_XORMAPPED_ADDRESS), Some(ft.client));
    for flags in [0x02, 0x04, 0x06] {
        let resp = h.request(
            ft,
            &build(
                METHOD_BINDING,
                CLASS_REQUEST,
                tid(5),
                &[change(flags)],
                None,
                true,
            ),
        );
        assert_eq!(error_code(&resp), Some(420), "flags {flags:#x}");
        assert_eq!(resp.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap(), vec![0x00, 0x03]);
        assert!(!resp.contains(ATTR_XORMAPPED_ADDRESS));
    }
    let bad = h.request(
        ft,
        &build(
            METHOD_BINDING,
            CLASS_REQUEST,
            tid(6),
            &[(ATTR_CHANGE_REQUEST, vec![0; 8])],
            None,
            false,
        ),
    );
    assert_eq!(error_code(&bad), Some(400));

    // RFC 3489: the same request without the magic cookie.
    let classic = |flags: u8| {
        let mut req = vec![0x00, 0x01, 0x00, 0x08];
        req.extend_from_slice(&[8u8; 16]);
        req.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, flags]);
        req
    };
    let out = h.feed(ft, &classic(0));
    assert_eq!(&out[0].payload[..2], &[0x01, 0x01], "success");
    let out = h.feed(ft, &classic(0x06));
    let p = &out[0].payload;
    assert_eq!(&p[..2], &[0x01, 0x11], "Binding error response");
    assert_eq!(&p[4..20], &[8u8; 16]);
    assert_eq!(&p[24..28], &[0, 0, 4, 20], "420");
    assert!(p
        .windows(8)
        .any(|w| w == [0x00, 0x0a, 0x00, 0x04, 0, 3, 0, 3]));
    assert_eq!(
        h.counter(
            "turnd_requests_total",
            &[("method", "binding"), ("result", "420")]
        ),
        4.0
    );
}

#[test]
fn garbage_is_dropped_and_counted() {
    let mut h = Harness::new();
    for bytes in [
        &b"\xff\xffhello"[..],
        &[0u8; 7][..],
        &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42][..],
    ] {
        assert!(h.feed(client(3), bytes).is_empty());
    }
    let mut bad_len = build(METHOD_BINDING, CLASS_REQUEST, tid(1), &[], None, false);
    bad_len[3] = 0x40; // claims 64 attribute bytes that are not there
    assert!(h.feed(client(3), &bad_len).is_empty());
    let mut bad_fp = build(METHOD_BINDING, CLASS_REQUEST, tid(1), &[], None, true);
    let n = bad_fp.len();
    bad_fp[n - 1] ^= 0xff;
    assert!(h.feed(client(3), &bad_fp).is_empty());
    // Shorter than a STUN header is not STUN; a header whose length
    // overruns the datagram is malformed STUN.
    assert_eq!(
        h.counter("turnd_dropped_packets_total", &[("reason", "not_stun")]),
        3.0
    );
    assert_eq!(
        h.counter("turnd_dropped_packets_total", &[("reason", "malformed")]),
        1.0
    );
    assert_eq!(
        h.counter(
            "turnd_dropped_packets_total",
            &[("reason", "bad_fingerprint")]
        ),
        1.0
    );
}

#[test]
fn allocate_challenge_then_success_with_integrity() {
    let mut h = Harness::new();
    let ft = client(40001);
    let first = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            None,
            true,
        ),
    );
    assert_eq!(error_code(&first), Some(401));
    assert_eq!(text(&first, ATTR_REALM).as_deref(), Some(REALM));
    assert!(text(&first, ATTR_NONCE).is_some());
    assert!(
        !first.contains(ATTR_MESSAGE_INTEGRITY),
        "a 401 is not signed"
    );
    assert!(first.contains(ATTR_FINGERPRINT));

    let creds = Creds {
        username: USER.into(),
        password: PASSWORD.into(),
        nonce: text(&first, ATTR_NONCE).unwrap(),
    };
    let req = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        tid(2),
        &[transport_udp(), lifetime(1200)],
        Some(&creds),
        false,
    );
    let out = h.feed(ft, &req);
    let mut resp = parse(&out[0].payload);
    assert_eq!(
        resp.typ,
        MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE)
    );
    let relayed = xor_addr(&resp, ATTR_XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(
        relayed.ip().to_string(),
        EXTERNAL_IP,
        "the external address is advertised"
    );
    assert!((50000..=50099).contains(&relayed.port()));
    assert_eq!(xor_addr(&resp, ATTR_XORMAPPED_ADDRESS), Some(ft.client));
    assert_eq!(resp.get(ATTR_LIFETIME).unwrap(), 1200u32.to_be_bytes());
    stun::integrity::MessageIntegrity(creds.key())
        .check(&mut resp)
        .expect("response signed with the user's key");
    let bound: std::net::SocketAddr = format!("{RELAY_IP}:{}", relayed.port()).parse().unwrap();
    assert!(
        h.relays.open.contains(&bound),
        "relay socket opened on the bind address"
    );

    // A retransmission gets the very same bytes; a new transaction gets 437.
    assert_eq!(h.feed(ft, &req)[0].payload, out[0].payload);
    let again = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(3),
            &[transport_udp()],
            Some(&creds),
            false,
        ),
    );
    assert_eq!(error_code(&again), Some(437));
    assert!(
        again.contains(ATTR_MESSAGE_INTEGRITY),
        "errors after authentication are signed"
    );
    assert_eq!(
        h.counter("turnd_allocations_active", &[("transport", "udp")]),
        1.0
    );
    assert_eq!(
        h.counter("turnd_allocations_created_total", &[("transport", "udp")]),
        1.0
    );
    assert_eq!(
        h.counter(
            "turnd_requests_total",
            &[("method", "allocate"), ("result", "success")]
        ),
        2.0
    );
    assert_eq!(
        h.counter(
            "turnd_requests_total",
            &[("method", "allocate"), ("result", "437")]
        ),
        1.0
    );
}

#[test]
fn authentication_failures_get_the_rfc_codes() {
    let mut h = Harness::new();
    let ft = client(40002);
    let good = login(&mut h, ft, USER, PASSWORD);
    let try_with = |h: &mut Harness, c: &Creds| {
        error_code(&h.request(
            ft,
            &build(
                METHOD_ALLOCATE,
                CLASS_REQUEST,
                tid(5),
                &[transport_udp()],
                Some(c),
                false,
            ),
        ))
    };
    let wrong_pw = Creds {
        password: "nope".into(),
        ..good.clone()
    };
    assert_eq!(try_with(&mut h, &wrong_pw), Some(401));
    let unknown = Creds {
        username: "mallory".into(),
        ..good.clone()
    };
    assert_eq!(try_with(&mut h, &unknown), Some(401));
    let forged_nonce = Creds {
        nonce: "0000000000000000000000000000000000ff".into(),
        ..good.clone()
    };
    let resp = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(5),
            &[transport_udp()],
            Some(&forged_nonce),
            false,
        ),
    );
    assert_eq!(error_code(&resp), Some(438));
    assert!(text(&resp, ATTR_NONCE).is_some() && text(&resp, ATTR_REALM).is_some());
    // MESSAGE-INTEGRITY without USERNAME is a bad request.
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST));
    m.transaction_id = TransactionId(tid(6));
    m.write_header();
    m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    stun::integrity::MessageIntegrity(good.key())
        .add_to(&mut m)
        .unwrap();
    assert_eq!(error_code(&h.request(ft, &m.raw)), Some(400));
    assert_eq!(
        h.counter("turnd_auth_failures_total", &[("reason", "bad_integrity")]),
        1.0
    );
    assert_eq!(
        h.counter("turnd_auth_failures_total", &[("reason", "unknown_user")]),
        1.0
    );
    assert_eq!(
        h.counter("turnd_auth_failures_total", &[("reason", "stale_nonce")]),
        1.0
    );
    assert_eq!(
        h.counter("turnd_auth_failures_total", &[("reason", "bad_request")]),
        1.0
    );
    assert_eq!(h.server.allocation_count(), 0);
    // The good credentials still work.
    assert_eq!(try_with(&mut h, &good), None);
}

#[test]
fn nonces_expire_into_438() {
    let mut h = Harness::new();
    let ft = client(40003);
    let creds = login(&mut h, ft, USER, PASSWORD);
    h.advance(601);
    let resp = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(5),
            &[transport_udp()],
            Some(&creds),
            false,
        ),
    );
    assert_eq!(error_code(&resp), Some(438));
    let fresh = Creds {
        nonce: text(&resp, ATTR_NONCE).unwrap(),
        ..creds
    };
    let ok = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(6),
            &[transport_udp()],
            Some(&fresh),
            false,
        ),
    );
    assert_eq!(error_code(&ok), None);
}

#[test]
fn rest_credentials_valid_rotated_and_expired() {
    let mut h = Harness::new();
    let ft = client(40004);
    let mut creds = login(&mut h, ft, USER, PASSWORD);
    let expires = UNIX_START + 60;
    let minted = turnd::ice::mint(SECRET, "carol", expires);
    creds.username = minted.username.clone();
    creds.password = minted.credential;
    let ok = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(5),
            &[transport_udp()],
            Some(&creds),
            false,
        ),
    );
    assert_eq!(error_code(&ok), None);

    let ft2 = client(40005);
    let mut late = login(&mut h, ft2, USER, PASSWORD);
    h.advance(61);
    late.nonce = login(&mut h, ft2, USER, PASSWORD).nonce;
    late.username = minted.username;
    late.password = creds.password.clone();
    let expired = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(5),
            &[transport_udp()],
            Some(&late),
            false,
        ),
    );
    assert_eq!(error_code(&expired), Some(401));
    assert_eq!(
        h.counter(
            "turnd_auth_failures_total",
            &[("reason", "expired_credential")]
        ),
        1.0
    );
}

#[test]
fn allocate_rule_violations() {
    let mut h = Harness::new();
    let ft = client(40006);
    let c = login(&mut h, ft, USER, PASSWORD);
    let code = |h: &mut Harness, attrs: &[(AttrType, Vec<u8>)]| {
        error_code(&h.request(
            ft,
            &build(
                METHOD_ALLOCATE,
                CLASS_REQUEST,
                tid(9),
                attrs,
                Some(&c),
                false,
            ),
        ))
    };
    assert_eq!(code(&mut h, &[]), Some(400), "no REQUESTED-TRANSPORT");
    assert_eq!(
        code(&mut h, &[(ATTR_REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]),
        Some(400),
        "TCP relaying over UDP (RFC 6062 §5.1)"
    );
    assert_eq!(
        code(
            &mut h,
            &[
                transport_udp(),
                (ATTR_REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])
            ]
        ),
        Some(440),
        "IPv6 relay on an IPv4 server"
    );
    assert_eq!(
        code(
            &mut h,
            &[
                transport_udp(),
                (ATTR_EVEN_PORT, vec![0]),
                (ATTR_RESERVATION_TOKEN, vec![1; 8])
            ]
        ),
        Some(400)
    );
    assert_eq!(
        code(
            &mut h,
            &[transport_udp(), (ATTR_RESERVATION_TOKEN, vec![1; 8])]
        ),
        Some(508),
        "unknown token"
    );
    let unknown = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(9),
            &[transport_udp(), (AttrType(0x0042), vec![0; 4])],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&unknown), Some(420));
    assert_eq!(
        unknown.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap(),
        vec![0x00, 0x42]
    );
    assert_eq!(
        code(&mut h, &[transport_udp(), (ATTR_DONT_FRAGMENT, vec![])]),
        None,
        "DONT-FRAGMENT accepted"
    );
}

/// DONT-FRAGMENT (RFC 8656 §7.2) is honoured per allocation: that relay
/// socket, and no other, sends with DF; where the platform cannot, 420 with
/// UNKNOWN-ATTRIBUTES and nothing is left allocated.
#[test]
fn dont_fragment_is_set_on_that_allocations_socket_or_420() {
    let mut h = Harness::new();
    let df = [transport_udp(), (ATTR_DONT_FRAGMENT, vec![])];
    let ft = client(40100);
    let c = login(&mut h, ft, USER, PASSWORD);
    let resp = h.request(
        ft,
        &build(METHOD_ALLOCATE, CLASS_REQUEST, tid(1), &df, Some(&c), false),
    );
    assert_eq!(error_code(&resp), None, "{resp}");
    let with_df = xor_addr(&resp, ATTR_XOR_RELAYED_ADDRESS).unwrap();
    let (_, plain_port) = allocate(&mut h, client(40101));
    let df_sockets: Vec<u16> = h.relays.dont_fragment.iter().map(|a| a.port()).collect();
    assert_eq!(df_sockets, vec![with_df.port()], "only the one that asked");
    assert_ne!(plain_port, with_df.port());

    h.relays.no_dont_fragment = true;
    let ft = client(40102);
    let c = login(&mut h, ft, USER, PASSWORD);
    let open_before = h.relays.open.len();
    let resp = h.request(
        ft,
        &build(METHOD_ALLOCATE, CLASS_REQUEST, tid(2), &df, Some(&c), false),
    );
    assert_eq!(error_code(&resp), Some(420));
    assert_eq!(resp.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap(), vec![0x00, 0x1a]);
    assert!(resp.contains(ATTR_MESSAGE_INTEGRITY), "signed like any 420");
    assert_eq!(h.relays.open.len(), open_before, "the socket was closed");
    // The quota slot came back: the same client allocates without DF.
    let resp = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(3),
            &[transport_udp()],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&resp), None, "{resp}");
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    let mut h = Harness::new();
    let ft = client(40007);
    let c = login(&mut h, ft, USER, PASSWORD);
    let mut req = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        tid(9),
        &[transport_udp()],
        Some(&c),
        false,
    );
    // Append a LIFETIME of 3000 s after MESSAGE-INTEGRITY.
    let extra = [0x00, 0x0d, 0x00, 0x04, 0, 0, 0x0b, 0xb8];
    req.extend_from_slice(&extra);
    let len = u16::from_be_bytes([req[2], req[3]]) + 8;
    req[2..4].copy_from_slice(&len.to_be_bytes());
    let resp = h.request(ft, &req);
    assert_eq!(error_code(&resp), None);
    assert_eq!(
        resp.get(ATTR_LIFETIME).unwrap(),
        600u32.to_be_bytes(),
        "the trailing LIFETIME was not used"
    );
}

#[test]
fn lifetimes_are_clamped_refreshed_and_deleted() {
    let mut h = Harness::new();
    let ft = client(40008);
    let (c, _) = allocate(&mut h, ft);
    let r = signed(&mut h, ft, METHOD_REFRESH, 10, &[lifetime(100_000)], &c);
    assert_eq!(
        r.get(ATTR_LIFETIME).unwrap(),
        3600u32.to_be_bytes(),
        "clamped to the maximum"
    );
    let r = signed(&mut h, ft, METHOD_REFRESH, 11, &[lifetime(5)], &c);
    assert_eq!(
        r.get(ATTR_LIFETIME).unwrap(),
        600u32.to_be_bytes(),
        "raised to the default"
    );
    h.advance(599);
    assert_eq!(h.server.allocation_count(), 1);
    let r = signed(&mut h, ft, METHOD_REFRESH, 12, &[lifetime(0)], &c);
    assert_eq!(r.get(ATTR_LIFETIME).unwrap(), 0u32.to_be_bytes());
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.relays.open.is_empty(), "relay socket closed");
    let again = signed(&mut h, ft, METHOD_REFRESH, 13, &[lifetime(0)], &c);
    assert_eq!(error_code(&again), Some(437));
    assert_eq!(
        h.counter(
            "turnd_allocations_ended_total",
            &[("transport", "udp"), ("reason", "deleted")]
        ),
        1.0
    );
    assert_eq!(
        h.counter("turnd_allocations_active", &[("transport", "udp")]),
        0.0
    );
}

#[test]
fn allocations_expire_on_time() {
    let mut h = Harness::new();
    let ft = client(40009);
    allocate(&mut h, ft);
    h.advance(599);
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(1);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.relays.open.is_empty());
    assert_eq!(
        h.counter(
            "turnd_allocations_ended_total",
            &[("transport", "udp"), ("reason", "expired")]
        ),
        1.0
    );
    assert_eq!(h.server.poll_timeout(), None, "no timers left behind");
}

#[test]
fn requests_without_allocation_get_437_and_other_users_441() {
    let mut h = Harness::new();
    let ft = client(40010);
    let c = login(&mut h, ft, USER, PASSWORD);
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 3, &[], &c)),
        Some(437)
    );
    assert_eq!(
        error_code(&signed(
            &mut h,
            ft,
            METHOD_CREATE_PERMISSION,
            4,
            &[xor_attr(ATTR_XOR_PEER_ADDRESS, PEER, tid(4))],
            &c
        )),
        Some(437)
    );
    let (_, _) = allocate(&mut h, ft);
    let bob = Creds {
        username: "bob".into(),
        ..c
    };
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 5, &[], &bob)),
        Some(441)
    );
}

#[test]
fn quotas_per_user_and_total() {
    let mut h = Harness::new();
    for port in 1..=3 {
        allocate(&mut h, client(port));
    }
    let ft = client(4);
    let c = login(&mut h, ft, USER, PASSWORD);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(486), "alice has 3 allocations");
    let bob = Creds {
        username: "bob".into(),
        ..c
    };
    for port in 4..=5 {
        let ft = client(port);
        let b = Creds {
            nonce: login(&mut h, ft, "bob", PASSWORD).nonce,
            ..bob.clone()
        };
        let r = h.request(
            ft,
            &build(
                METHOD_ALLOCATE,
                CLASS_REQUEST,
                tid(1),
                &[transport_udp()],
                Some(&b),
                false,
            ),
        );
        assert_eq!(error_code(&r), None);
    }
    let ft = client(6);
    let b = Creds {
        nonce: login(&mut h, ft, "bob", PASSWORD).nonce,
        ..bob
    };
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&b),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(508), "5 allocations in total");
    assert_eq!(
        h.counter("turnd_quota_rejections_total", &[("kind", "user")]),
        1.0
    );
    assert_eq!(
        h.counter("turnd_quota_rejections_total", &[("kind", "total")]),
        1.0
    );
}

#[test]
fn no_free_relay_port_gets_508() {
    let mut cfg = config();
    cfg.port_low = 50000;
    cfg.port_high = 50001;
    let mut h = Harness::with(cfg);
    h.relays.taken.insert(50001);
    allocate(&mut h, client(1));
    let ft = client(2);
    let c = login(&mut h, ft, USER, PASSWORD);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(508));
    assert_eq!(
        h.counter("turnd_quota_rejections_total", &[("kind", "relay_ports")]),
        1.0
    );
}

#[test]
fn even_port_with_reservation_then_token() {
    // A reserved port counts against the user's quota like an allocation.
    let mut cfg = config();
    cfg.static_user_allocations.insert(USER.to_string(), 4);
    let mut h = Harness::with(cfg);
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
    assert_eq!(error_code(&r), None);
    let port = xor_addr(&r, ATTR_XOR_RELAYED_ADDRESS).unwrap().port();
    assert_eq!(port % 2, 0);
    let token = r
        .get(ATTR_RESERVATION_TOKEN)
        .expect("token for the odd port");
    assert_eq!(token.len(), 8);

    let ft2 = client(2);
    let c2 = login(&mut h, ft2, USER, PASSWORD);
    let r2 = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(2),
            &[transport_udp(), (ATTR_RESERVATION_TOKEN, token.clone())],
            Some(&c2),
            false,
        ),
    );
    assert_eq!(error_code(&r2), None);
    assert_eq!(
        xor_addr(&r2, ATTR_XOR_RELAYED_ADDRESS).unwrap().port(),
        port + 1
    );

    // A reservation nobody claims is released after 30 s.
    let ft3 = client(3);
    let c3 = login(&mut h, ft3, USER, PASSWORD);
    let r3 = h.request(
        ft3,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(3),
            &[transport_udp(), (ATTR_EVEN_PORT, vec![0x80])],
            Some(&c3),
            false,
        ),
    );
    let p3 = xor_addr(&r3, ATTR_XOR_RELAYED_ADDRESS).unwrap().port();
    let odd: std::net::SocketAddr = format!("{RELAY_IP}:{}", p3 + 1).parse().unwrap();
    assert!(h.relays.open.contains(&odd));
    h.advance(31);
    assert!(!h.relays.open.contains(&odd));
}

#[test]
fn no_credentials_means_no_relay() {
    let mut cfg = config();
    cfg.credentials = turnd::core::auth::Credentials::new(REALM.into(), Default::default(), vec![]);
    let mut h = Harness::with(cfg);
    let ft = client(1);
    let c = login(&mut h, ft, USER, PASSWORD);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(
        h.counter("turnd_auth_failures_total", &[("reason", "relay_disabled")]),
        1.0
    );
    // Binding still works.
    let b = h.feed(
        ft,
        &build(METHOD_BINDING, CLASS_REQUEST, tid(2), &[], None, false),
    );
    assert!(matches!(b[0].source, Source::Client(_)));
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source() {
    let mut h = Harness::new();
    let spoofed = client(7);
    let binding = build(METHOD_BINDING, CLASS_REQUEST, tid(1), &[], None, false);
    let answered = (0..50)
        .filter(|_| !h.feed(spoofed, &binding).is_empty())
        .count();
    assert_eq!(answered, 20, "the burst, then nothing");
    let challenge = build(
        METHOD_ALLOCATE,
        CLASS_REQUEST,
        tid(2),
        &[transport_udp()],
        None,
        false,
    );
    assert!(
        h.feed(spoofed, &challenge).is_empty(),
        "401s share the bucket"
    );
    assert_eq!(
        h.counter("turnd_dropped_packets_total", &[("reason", "rate_limited")]),
        31.0
    );
    // Another source is unaffected; the first one recovers with time.
    let mut other = client(8);
    other.client.set_ip("192.0.2.100".parse().unwrap());
    assert_eq!(h.feed(other, &binding).len(), 1);
    h.advance(1);
    assert_eq!(h.feed(spoofed, &binding).len(), 1);
    // Stream clients cannot spoof their source: no limit there.
    let mut tcp = spoofed;
    tcp.transport = turnd::core::Transport::Tcp;
    assert!((0..50).all(|_| h.feed(tcp, &binding).len() == 1));
}

#[test]
fn an_ipv6_only_relay_needs_requested_address_family() {
    let mut cfg = config();
    cfg.relay_bind = "2001:db8::10".parse().unwrap();
    cfg.relay_advertised = "2001:db8::10".parse().unwrap();
    let mut h = Harness::with(cfg);
    let ft = client(1);
    let c = login(&mut h, ft, USER, PASSWORD);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&c),
            false,
        ),
    );
    assert_eq!(
        error_code(&r),
        Some(440),
        "absent means IPv4 (RFC 6156 §4.2)"
    );
    let v6 = (ATTR_REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    let r = h.request(
        ft,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(2),
            &[transport_udp(), v6],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&r), None);
    assert!(xor_addr(&r, ATTR_XOR_RELAYED_ADDRESS).unwrap().is_ipv6());
}

#[test]
fn a_reservation_made_on_one_worker_is_claimed_on_another() {
    // Two engines sharing one Global, as two workers do: the RTCP
    // allocation of an EVEN-PORT pair may land on the other worker.
    let global = std::sync::Arc::new(turnd::core::global::Global::default());
    let metrics = std::sync::Arc::new(turnd::metrics::Metrics::new());
    let mut a = Harness::with(config());
    a.server = turnd::core::Server::new(config(), metrics.clone(), global.clone(), [1; 32]);
    let mut b = Harness::with(config());
    b.server = turnd::core::Server::new(config(), metrics, global.clone(), [2; 32]);
    let ft = client(1);
    let c = login(&mut a, ft, USER, PASSWORD);
    let r = a.request(
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
    let port = xor_addr(&r, ATTR_XOR_RELAYED_ADDRESS).unwrap().port();
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    // The shell's reserved socket table is process-wide; the fake one is
    // per harness, so hand the reserved port over as the shell would.
    let odd: std::net::SocketAddr = format!("{RELAY_IP}:{}", port + 1).parse().unwrap();
    assert!(a.relays.open.remove(&odd));
    b.relays.open.insert(odd);
    let ft2 = client(2);
    let c2 = login(&mut b, ft2, USER, PASSWORD);
    let r2 = b.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(2),
            &[transport_udp(), (ATTR_RESERVATION_TOKEN, token)],
            Some(&c2),
            false,
        ),
    );
    assert_eq!(
        xor_addr(&r2, ATTR_XOR_RELAYED_ADDRESS).unwrap().port(),
        port + 1
    );
    assert_eq!(global.total(), 2, "quotas count both workers");
    // The first worker's reservation timer finds nothing left to release.
    a.advance(31);
    assert_eq!(b.server.allocation_count(), 1);
}

#[test]
fn draining_refuses_new_allocations_and_keeps_old_ones() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    h.server.drain(None);
    let ft2 = client(2);
    let c2 = login(&mut h, ft2, USER, PASSWORD);
    let r = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&c2),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(508));
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 9, &[], &c)),
        None,
        "existing ones refresh"
    );
    let alternate: std::net::SocketAddr = "203.0.113.8:3478".parse().unwrap();
    h.server.drain(Some(alternate));
    let r = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(2),
            &[transport_udp()],
            Some(&c2),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(300));
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(&r, ATTR_ALTERNATE_SERVER).unwrap();
    assert_eq!(std::net::SocketAddr::new(alt.ip, alt.port), alternate);
}

fn alternate_server(m: &Message) -> Option<std::net::SocketAddr> {
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(m, ATTR_ALTERNATE_SERVER).ok()?;
    Some(std::net::SocketAddr::new(alt.ip, alt.port))
}

/// `[redirect]`: once the node holds `allocations_threshold` allocations,
/// new Allocates get 300 with the alternates in turn (RFC 8489 §10), of the
/// client's family only, with ALTERNATE-DOMAIN for TLS clients; existing
/// allocations are unaffected and a client no alternate fits is served.
#[test]
fn allocations_over_the_threshold_are_redirected_round_robin() {
    use turnd::core::redirect::{Alternate, RedirectPolicy};
    let alt = |a: &str, d: Option<&str>| Alternate {
        address: a.parse().unwrap(),
        domain: d.map(str::to_owned),
    };
    let mut cfg = config();
    cfg.redirect = RedirectPolicy {
        allocations_threshold: 1,
        bps_threshold: 0,
        alternates: vec![
            alt("203.0.113.1:3478", None),
            alt("[2001:db8::1]:3478", Some("v6.example.com")),
            alt("203.0.113.2:5349", Some("b.example.com")),
        ],
    };
    let mut h = Harness::with(cfg);
    let (c1, _) = allocate(&mut h, client(1));
    assert_eq!(
        error_code(&signed(&mut h, client(1), METHOD_REFRESH, 9, &[], &c1)),
        None,
        "an existing allocation refreshes"
    );
    let mut seen = Vec::new();
    for port in 2..5 {
        let ft = client(port);
        let c = login(&mut h, ft, USER, PASSWORD);
        let r = h.request(
            ft,
            &build(
                METHOD_ALLOCATE,
                CLASS_REQUEST,
                tid(2),
                &[transport_udp()],
                Some(&c),
                true,
            ),
        );
        assert_eq!(error_code(&r), Some(300), "{r}");
        assert!(r.contains(ATTR_MESSAGE_INTEGRITY), "signed");
        assert!(!r.contains(ATTR_ALTERNATE_DOMAIN), "not for UDP");
        seen.push(alternate_server(&r).unwrap().to_string());
    }
    assert_eq!(
        seen,
        ["203.0.113.1:3478", "203.0.113.2:5349", "203.0.113.1:3478"],
        "IPv4 alternates in turn"
    );
    let tls = FiveTuple {
        transport: Transport::Tls,
        ..client(5)
    };
    let c = login(&mut h, tls, USER, PASSWORD);
    let r = h.request(
        tls,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(3),
            &[transport_udp()],
            Some(&c),
            false,
        ),
    );
    assert_eq!(error_code(&r), Some(300));
    assert_eq!(
        alternate_server(&r).unwrap().to_string(),
        "203.0.113.2:5349"
    );
    assert_eq!(
        text(&r, ATTR_ALTERNATE_DOMAIN).as_deref(),
        Some("b.example.com")
    );
    assert_eq!(
        h.counter(
            "turnd_requests_total",
            &[("method", "allocate"), ("result", "300")]
        ),
        4.0
    );
    // Below the threshold again, clients are served here.
    assert_eq!(
        error_code(&signed(
            &mut h,
            client(1),
            METHOD_REFRESH,
            10,
            &[lifetime(0)],
            &c1
        )),
        None
    );
    allocate(&mut h, client(6));
}

#[test]
fn reconfigure_keeps_what_still_holds_and_ends_what_it_removed() {
    let mut h = Harness::new();
    let ft = client(1);
    let (c, _) = allocate(&mut h, ft);
    let ft_bob = client(3);
    let (_, bob_port) = allocate_as(&mut h, ft_bob, "bob");
    // The same credentials again: nothing ends.
    let now = h.now;
    h.server.reconfigure(now, config(), &mut h.relays);
    assert_eq!(h.server.allocation_count(), 2);
    let mut cfg = config();
    let mut users = std::collections::HashMap::new();
    users.insert(
        "carol".to_string(),
        turnd::core::auth::long_term_key("carol", REALM, "new"),
    );
    cfg.credentials = turnd::core::auth::Credentials::new(REALM.into(), users, vec![]);
    cfg.relay_advertised = "192.0.2.200".parse().unwrap(); // needs a restart: ignored
    let now = h.now;
    h.server.reconfigure(now, cfg, &mut h.relays);
    // alice and bob are gone, and so are their allocations and relay ports.
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.relays.open.iter().all(|a| a.port() != bob_port));
    assert_eq!(
        h.metrics
            .allocations_ended
            .with_label_values(&["udp", "reload"])
            .get(),
        2
    );
    // alice's next request fails, carol's works.
    assert_eq!(
        error_code(&signed(&mut h, ft, METHOD_REFRESH, 9, &[], &c)),
        Some(401)
    );
    let ft2 = client(2);
    let carol = Creds {
        username: "carol".into(),
        password: "new".into(),
        nonce: login(&mut h, ft2, "carol", "new").nonce,
    };
    let r = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(1),
            &[transport_udp()],
            Some(&carol),
            false,
        ),
    );
    assert_eq!(
        xor_addr(&r, ATTR_XOR_RELAYED_ADDRESS)
            .unwrap()
            .ip()
            .to_string(),
        EXTERNAL_IP
    );
}

#[test]
fn a_reservation_holds_a_quota_slot_until_claimed_or_expired() {
    let mut h = Harness::new(); // 3 allocations per user
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
    assert_eq!(
        error_code(&r),
        None,
        "one allocation and one reservation: 2 of 3"
    );
    let ft2 = client(2);
    let c2 = login(&mut h, ft2, USER, PASSWORD);
    let r2 = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(2),
            &[transport_udp(), (ATTR_EVEN_PORT, vec![0x80])],
            Some(&c2),
            false,
        ),
    );
    assert_eq!(
        error_code(&r2),
        Some(486),
        "a second pair would need 4 slots"
    );
    h.advance(31);
    let c2 = Creds {
        nonce: login(&mut h, ft2, USER, PASSWORD).nonce,
        ..c2
    };
    let r3 = h.request(
        ft2,
        &build(
            METHOD_ALLOCATE,
            CLASS_REQUEST,
            tid(3),
            &[transport_udp(), (ATTR_EVEN_PORT, vec![0x80])],
            Some(&c2),
            false,
        ),
    );
    assert_eq!(
        error_code(&r3),
        None,
        "the expired reservation gave its slot back"
    );
}
