//! Redirects for load against the real daemon (`[redirect]`, RFC 8489
//! §10): over the allocation threshold a new Allocate gets 300 Try
//! Alternate with the next alternate of the client's family; an existing
//! allocation is unaffected; the count shows in `turnd_requests_total`.

use crate::common;

use std::net::SocketAddr;

use common::raw::{error_code, RawClient};
use common::{TestConfig, PASSWORD, USER};
use stun::addr::MappedAddress;
use stun::attributes::{ATTR_ALTERNATE_DOMAIN, ATTR_ALTERNATE_SERVER, ATTR_MESSAGE_INTEGRITY};

#[test]
fn allocates_over_the_threshold_get_300_round_robin() {
    let d = TestConfig {
        extra: "[redirect]\nallocations_threshold = 1\nalternates = [\"203.0.113.8:3478\", \"[2001:db8::8]:3478\", { address = \"203.0.113.9:3478\", domain = \"turn2.example.com\" }]\n".into(),
        ..TestConfig::default()
    }
    .start();
    let mut first = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    first.allocate();

    let mut alternates = Vec::new();
    for _ in 0..3 {
        let mut c = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
        let resp = c.allocate_with(Vec::new);
        assert_eq!(error_code(&resp), Some(300), "{resp}");
        assert!(resp.contains(ATTR_MESSAGE_INTEGRITY), "a signed 300");
        assert!(!resp.contains(ATTR_ALTERNATE_DOMAIN), "UDP: no domain");
        let mut alt = MappedAddress::default();
        alt.get_from_as(&resp, ATTR_ALTERNATE_SERVER)
            .expect("ALTERNATE-SERVER");
        alternates.push(SocketAddr::new(alt.ip, alt.port).to_string());
    }
    assert_eq!(
        alternates,
        ["203.0.113.8:3478", "203.0.113.9:3478", "203.0.113.8:3478"],
        "the IPv4 alternates in turn"
    );
    // The allocation made before the threshold still refreshes.
    assert_eq!(error_code(&first.refresh(600)), None);
    assert_eq!(
        d.scrape().get(
            "turnd_requests_total",
            &[("method", "allocate"), ("result", "300")]
        ),
        3.0
    );
}

/// `bps_threshold`: while the node relays more than it, a new Allocate
/// gets 300 with an alternate; once traffic stops (and the 5 s window has
/// passed) Allocates are served here again.
#[test]
fn allocates_over_the_bandwidth_threshold_get_300_until_traffic_stops() {
    use std::net::UdpSocket;
    use std::time::Duration;

    let d = TestConfig {
        extra: "[redirect]\nbps_threshold = 20000\nalternates = [\"203.0.113.8:3478\"]\n".into(),
        ..TestConfig::default()
    }
    .allow_loopback()
    .start();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut busy = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    busy.allocate();
    assert_eq!(error_code(&busy.create_permission(&[peer_addr])), None);
    let try_allocate = || {
        let mut c = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
        let resp = c.allocate_with(Vec::new);
        error_code(&resp).inspect(|&code| {
            if code == 300 {
                let mut alt = MappedAddress::default();
                alt.get_from_as(&resp, ATTR_ALTERNATE_SERVER)
                    .expect("ALTERNATE-SERVER");
                assert_eq!(
                    SocketAddr::new(alt.ip, alt.port).to_string(),
                    "203.0.113.8:3478"
                );
            }
        })
    };
    assert_eq!(try_allocate(), None, "idle: served here");

    // About 100 kB/s client to peer (20 × 1000 bytes every 20 ms), five
    // times the threshold, until an Allocate is redirected (bounded: 15 s).
    let mut redirected = false;
    for round in 0..750 {
        for _ in 0..20 {
            busy.send_indication(peer_addr, &[1u8; 1000]);
        }
        std::thread::sleep(Duration::from_millis(20));
        if round % 25 == 24 && try_allocate() == Some(300) {
            redirected = true;
            break;
        }
    }
    assert!(redirected, "no 300 while relaying over bps_threshold");

    // Idle again: served here once the window has passed (bounded: 20 s).
    let mut served = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        if try_allocate().is_none() {
            served = true;
            break;
        }
    }
    assert!(served, "still redirected after the traffic stopped");
}
