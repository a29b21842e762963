//! The HTTP endpoint of the real daemon: `/metrics` scraped over HTTP
//! before and after known traffic, with every counter matching exactly what
//! the test sent; `/healthz` and `/readyz`.

use crate::common;

use std::net::UdpSocket;
use std::time::Duration;

use common::raw::{build, decode, error_code, recv_from_within, RawClient, Relayed};
use common::{pattern, Scrape, TestConfig, PASSWORD, USER};
use stun::agent::TransactionId;
use stun::message::BINDING_REQUEST;

const STEP: Duration = Duration::from_secs(5);

#[test]
fn health_endpoints_answer_200() {
    let d = TestConfig::default().start();
    for path in ["/healthz", "/readyz"] {
        let (status, body) = d.http_get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    let (status, _) = d.http_get("/no-such-page");
    assert_eq!(status, 404);
}

/// Every turnd counter and gauge reads 0 on a fresh daemon (labels are
/// pre-created, so the series exist before any traffic).
fn assert_fresh(m: &Scrape) {
    for (name, labels, value) in &m.0 {
        if name.starts_with("turnd_")
            && !matches!(
                name.as_str(),
                "turnd_build_info" | "turnd_relay_ports_configured" | "turnd_ready"
            )
        {
            assert_eq!(*value, 0.0, "{name}{labels:?} on a fresh daemon");
        }
    }
}

#[test]
fn metrics_are_exported_and_start_at_zero() {
    let d = TestConfig::default().start();
    let m = d.scrape();
    assert_fresh(&m);
    assert_eq!(m.get("turnd_ready", &[]), 1.0, "a fresh daemon is ready");
    assert_eq!(
        m.get("turnd_relay_ports_configured", &[]),
        4000.0,
        "61000-64999"
    );
    let version =
        m.0.iter()
            .find(|(n, _, _)| n == "turnd_build_info")
            .expect("turnd_build_info");
    assert_eq!(version.2, 1.0);
    for name in [
        "turnd_allocations_active",
        "turnd_allocations_created_total",
        "turnd_allocations_ended_total",
        "turnd_relayed_packets_total",
        "turnd_relayed_bytes_total",
        "turnd_binding_requests_total",
        "turnd_requests_total",
        "turnd_auth_failures_total",
        "turnd_peer_denied_total",
        "turnd_quota_rejections_total",
        "turnd_dropped_packets_total",
    ] {
        assert!(m.0.iter().any(|(n, _, _)| n == name), "{name} is missing");
    }
    // Labels are bounded vocabularies: no address or user name leaks in.
    for (name, labels, _) in &m.0 {
        for (k, v) in labels {
            assert!(
                !v.contains("127.0.0.1") && !v.contains("alice"),
                "{name}{{{k}={v:?}}}"
            );
        }
    }
}

#[test]
fn binding_requests_are_counted_exactly() {
    let d = TestConfig::default().start();
    let before = d.scrape();
    assert_eq!(
        before.get("turnd_binding_requests_total", &[("transport", "udp")]),
        0.0
    );
    const N: usize = 7;
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..N {
        let req = build(vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
        ]);
        s.send_to(&req.raw, d.udp_addr()).unwrap();
        let (resp, _) = recv_from_within(&s, Some(d.udp_addr()), STEP).expect("answer");
        let resp = decode(&resp).expect("STUN");
        assert_eq!(resp.transaction_id, req.transaction_id);
    }
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_binding_requests_total", &[("transport", "udp")]),
        N as f64
    );
    assert_eq!(
        m.get(
            "turnd_requests_total",
            &[("method", "binding"), ("result", "success")]
        ),
        N as f64
    );
    assert_eq!(m.sum("turnd_relayed_packets_total"), 0.0);
}

#[test]
fn relay_counters_match_the_traffic_and_deletion_ends_the_allocation() {
    let d = TestConfig::default().allow_loopback().start();
    assert_fresh(&d.scrape());
    let mut c = RawClient::new(d.udp_addr());
    let relayed = c.allocate();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();

    // Counters move live: the allocation shows before any data flows.
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        1.0
    );
    assert_eq!(
        m.get("turnd_allocations_created_total", &[("transport", "udp")]),
        1.0
    );
    assert_eq!(m.get("turnd_relay_ports_in_use", &[]), 1.0);

    let resp = c.create_permission(&[peer_addr]);
    assert_eq!(error_code(&resp), None, "{resp}");

    // Client to peer: Send indications.
    let send_sizes = [10usize, 200, 1300];
    for (i, size) in send_sizes.iter().enumerate() {
        let data = pattern(*size, i as u8);
        c.send_indication(peer_addr, &data);
        let (got, from) = recv_from_within(&peer, None, STEP).expect("peer receives");
        assert_eq!(from, relayed);
        assert!(got == data);
    }
    // Peer to client: Data indications.
    let data_sizes = [5usize, 700];
    for (i, size) in data_sizes.iter().enumerate() {
        let data = pattern(*size, 40 + i as u8);
        peer.send_to(&data, relayed).unwrap();
        assert_eq!(
            c.recv_relayed(STEP),
            Some(Relayed::Indication {
                peer: peer_addr,
                data
            })
        );
    }
    // (packets, payload bytes) client to peer: 10 + 200 + 1300; peer to
    // client: 5 + 700.
    d.wait_for_relayed((3, 1510), (2, 705));

    // Then over a channel, both ways: payload bytes only are counted (no
    // ChannelData header, no padding).
    let number = 0x4abc;
    let resp = c.channel_bind(number, peer_addr);
    assert_eq!(error_code(&resp), None, "{resp}");
    for size in [1usize, 4, 999] {
        let data = pattern(size, 9);
        c.send_channel_data(number, &data);
        let (got, from) = recv_from_within(&peer, None, STEP).expect("peer receives");
        assert_eq!((got, from), (data, relayed));
    }
    for size in [3usize, 1000] {
        let data = pattern(size, 11);
        peer.send_to(&data, relayed).unwrap();
        assert_eq!(
            c.recv_relayed(STEP),
            Some(Relayed::Channel { number, data })
        );
    }
    d.wait_for_relayed((3 + 3, 1510 + 1004), (2 + 2, 705 + 1003));

    // Refresh with LIFETIME 0 deletes the allocation.
    let resp = c.refresh(0);
    assert_eq!(error_code(&resp), None, "{resp}");
    let m = d.scrape();
    let udp = [("transport", "udp")];
    assert_eq!(m.get("turnd_allocations_active", &udp), 0.0);
    assert_eq!(m.get("turnd_allocations_created_total", &udp), 1.0);
    assert_eq!(
        m.get(
            "turnd_allocations_ended_total",
            &[("transport", "udp"), ("reason", "deleted")]
        ),
        1.0
    );
    assert_eq!(m.sum("turnd_allocations_ended_total"), 1.0);
    assert_eq!(m.get("turnd_relay_ports_in_use", &[]), 0.0);

    // Requests by method and result: exactly the ones sent.
    let req = |method, result| {
        m.get(
            "turnd_requests_total",
            &[("method", method), ("result", result)],
        )
    };
    assert_eq!(req("allocate", "401"), 1.0);
    assert_eq!(req("allocate", "success"), 1.0);
    assert_eq!(req("create_permission", "success"), 1.0);
    assert_eq!(req("channel_bind", "success"), 1.0);
    assert_eq!(req("refresh", "success"), 1.0);
    assert_eq!(req("binding", "success"), 0.0);
    assert_eq!(m.sum("turnd_requests_total"), 5.0);
    assert_eq!(
        m.get(
            "turnd_auth_failures_total",
            &[("reason", "missing_integrity")]
        ),
        1.0
    );
    assert_eq!(m.sum("turnd_auth_failures_total"), 1.0);
    assert_eq!(m.sum("turnd_dropped_packets_total"), 0.0);
    assert_eq!(m.sum("turnd_peer_denied_total"), 0.0);

    // After real traffic, still no label holds an address, a port, the
    // user or the realm: label values are bounded vocabularies.
    let identifying = [
        "127.0.0.1".to_string(),
        c.local_addr().port().to_string(),
        relayed.port().to_string(),
        peer_addr.port().to_string(),
        common::USER.to_string(),
        common::REALM.to_string(),
    ];
    for (name, labels, _) in &m.0 {
        for (k, v) in labels {
            assert!(
                !identifying.iter().any(|i| v.contains(i.as_str())),
                "{name}{{{k}={v:?}}}"
            );
        }
    }

    // The relay port is closed: what the peer sends now goes nowhere, and
    // the client hears nothing.
    peer.send_to(b"too late", relayed).unwrap();
    assert_eq!(c.recv_relayed(Duration::from_millis(300)), None);
    assert_eq!(
        d.scrape_after_publish().get(
            "turnd_relayed_packets_total",
            &[("direction", "peer_to_client")]
        ),
        4.0,
        "nothing relayed after deletion"
    );
}

#[test]
fn quota_rejections_are_counted() {
    let d = TestConfig {
        users: Vec::new(),
        extra: format!("[[users]]\nname = {USER:?}\npassword = {PASSWORD:?}\nallocations = 1\n"),
        ..TestConfig::default()
    }
    .start();
    let mut first = RawClient::new(d.udp_addr());
    first.allocate();
    let mut second = RawClient::new(d.udp_addr());
    let resp = second.allocate_with(Vec::new);
    assert_eq!(error_code(&resp), Some(486), "{resp}");
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_quota_rejections_total", &[("kind", "user")]),
        1.0
    );
    assert_eq!(
        m.get("turnd_allocations_active", &[("transport", "udp")]),
        1.0
    );
}

/// Issue 16 item 5: 100 connections that never send a byte (more than the
/// endpoint's 64 slots), kept open and reopened, do not keep a scrape or a
/// health check out: a newcomer takes the slot of the quietest connection.
#[test]
fn silent_connections_do_not_blind_the_metrics_endpoint() {
    let d = TestConfig::default().start();
    let addr = d.http_addr();
    let open = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
            .collect()
    };
    let mut silent = open(100);
    for round in 0..3 {
        assert_eq!(d.http_get("/readyz").0, 200, "round {round}");
        assert!(d.scrape().get("turnd_ready", &[]) == 1.0, "round {round}");
        // The attacker reconnects what was closed.
        silent.extend(open(70));
    }
}
