//! Where new allocations are sent instead (RFC 8489 §10, ALTERNATE-SERVER;
//! RFC 8656 §7.2): 300 Try Alternate with ALTERNATE-SERVER, and
//! ALTERNATE-DOMAIN (§14.16) for TLS clients so they can check the
//! alternate's certificate. Used while draining (SIGTERM) and, with
//! `[redirect]`, when this node holds more allocations than a threshold or
//! relays more than a rate ([`super::rate::NodeRate`]): then the
//! configured alternates take turns (round robin).
//!
//! An alternate is only offered to a client of its address family (the
//! client reaches it from the same source), and to a TLS client only when
//! it has a domain. A client no alternate fits is served here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use stun::attributes::{ATTR_ALTERNATE_DOMAIN, ATTR_ALTERNATE_SERVER};
use stun::message::Message;

use super::message;
use super::{FiveTuple, Transport};

/// A node clients may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternate {
    pub address: SocketAddr,
    /// The name its TLS certificate carries (ALTERNATE-DOMAIN).
    pub domain: Option<String>,
}

impl Alternate {
    /// Whether the client of `ft` can be sent here.
    pub fn fits(&self, ft: &FiveTuple) -> bool {
        let same_family = self.address.is_ipv4() == ft.client.ip().to_canonical().is_ipv4();
        same_family && (ft.transport != Transport::Tls || self.domain.is_some())
    }

    /// Appends ALTERNATE-SERVER, and ALTERNATE-DOMAIN for a TLS client.
    pub fn add_to(&self, m: &mut Message, ft: &FiveTuple) {
        message::add_plain_address(m, ATTR_ALTERNATE_SERVER, self.address);
        if let (Transport::Tls, Some(domain)) = (ft.transport, &self.domain) {
            m.add(ATTR_ALTERNATE_DOMAIN, domain.as_bytes());
        }
    }
}

/// Redirects for load (`[redirect]`): once this node holds
/// `allocations_threshold` allocations, or relays `bps_threshold` bytes per
/// second one way, new Allocates go to `alternates` in turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// 0: never redirect for the count of allocations.
    pub allocations_threshold: usize,
    /// Payload bytes per second in the busier direction; 0: never.
    pub bps_threshold: u64,
    pub alternates: Vec<Alternate>,
}

impl RedirectPolicy {
    /// Whether a node holding `allocations` and relaying `bps` (its busier
    /// direction) is over a threshold.
    pub fn over(&self, allocations: usize, bps: u64) -> bool {
        (self.allocations_threshold > 0 && allocations >= self.allocations_threshold)
            || (self.bps_threshold > 0 && bps >= self.bps_threshold)
    }
}

/// The round-robin turn over a list of alternates, shared by the workers.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// The next alternate of `list` that fits `ft`, advancing the turn past
    /// it; `None` when none fits. Two workers picking at once may pick the
    /// same one: the turn is a spread, not a lock.
    pub fn pick<'a>(&self, list: &'a [Alternate], ft: &FiveTuple) -> Option<&'a Alternate> {
        let n = list.len();
        let start = self.next.load(Ordering::Relaxed);
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| list[i].fits(ft))?;
        self.next.store((found + 1) % n, Ordering::Relaxed);
        Some(&list[found])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ft(client: &str, transport: Transport) -> FiveTuple {
        FiveTuple {
            client: client.parse().unwrap(),
            server: "192.0.2.10:3478".parse().unwrap(),
            transport,
        }
    }

    fn alt(address: &str, domain: Option<&str>) -> Alternate {
        Alternate {
            address: address.parse().unwrap(),
            domain: domain.map(str::to_owned),
        }
    }

    #[test]
    fn round_robin_over_the_alternates_that_fit() {
        let list = [
            alt("203.0.113.1:3478", None),
            alt("[2001:db8::1]:3478", Some("v6.example.com")),
            alt("203.0.113.2:3478", Some("b.example.com")),
        ];
        let udp = ft("198.51.100.7:5000", Transport::Udp);
        let rr = RoundRobin::default();
        let addrs: Vec<_> = (0..3)
            .map(|_| rr.pick(&list, &udp).unwrap().address.to_string())
            .collect();
        assert_eq!(
            addrs,
            ["203.0.113.1:3478", "203.0.113.2:3478", "203.0.113.1:3478"],
            "IPv4 client: IPv4 alternates only, in turn"
        );
        let tls = ft("198.51.100.7:5000", Transport::Tls);
        assert_eq!(
            rr.pick(&list, &tls).unwrap().domain.as_deref(),
            Some("b.example.com"),
            "TLS: only alternates with a domain"
        );
        let v6 = ft("[2001:db8::7]:5000", Transport::Udp);
        assert_eq!(rr.pick(&list, &v6).unwrap().address.port(), 3478);
        let v6_tls_none = [alt("[2001:db8::1]:3478", None)];
        assert!(rr
            .pick(&v6_tls_none, &ft("[2001:db8::7]:1", Transport::Tls))
            .is_none());
        assert!(rr.pick(&[], &udp).is_none());
    }

    #[test]
    fn threshold_zero_is_off() {
        let p = RedirectPolicy {
            allocations_threshold: 0,
            bps_threshold: 0,
            alternates: vec![alt("203.0.113.1:3478", None)],
        };
        assert!(!p.over(1_000_000, u64::MAX));
        let p = RedirectPolicy {
            allocations_threshold: 2,
            ..p
        };
        assert!(!p.over(1, u64::MAX));
        assert!(p.over(2, 0));
        let p = RedirectPolicy {
            allocations_threshold: 0,
            bps_threshold: 1000,
            ..p
        };
        assert!(!p.over(1_000_000, 999));
        assert!(p.over(0, 1000));
    }
}
