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
