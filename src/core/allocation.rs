//! One allocation (RFC 8656 §2.2, §7): its relayed transport address (or
//! two, one per family, for ADDITIONAL-ADDRESS-FAMILY), lifetime,
//! permissions (§9) and channel bindings (§12). Permissions and channels
//! live in one table for both families: a peer's address says which relayed
//! address serves it. They have their own modules, [`super::permission`]
//! and [`super::channel`], which keep their state private.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::auth::Key;
use super::channel::Channels;
use super::permission::Permissions;
use super::FiveTuple;

pub use super::channel::Channel;

/// How many more refused ChannelBind/CreatePermission requests an
/// allocation may make: a bucket of `burst` refilled one per `interval`.
/// A refusal answers "turnd does not hold that relay port" (or "that peer is
/// denied"); without a budget an allocation maps every tenant's relay port
/// in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct RefusalBudget {
    left: u32,
    since: Instant,
}

impl RefusalBudget {
    pub fn new(burst: u32, now: Instant) -> Self {
        RefusalBudget {
            left: burst,
            since: now,
        }
    }

    /// Whether another refusal may be answered at `now` (always with a
    /// `burst` of 0: no limit).
    pub fn has_left(&mut self, now: Instant, burst: u32, interval: Duration) -> bool {
        if burst == 0 {
            return true;
        }
        if self.left >= burst {
            self.since = now;
        } else if !interval.is_zero() {
            let elapsed = now.saturating_duration_since(self.since);
            let refills = (elapsed.as_nanos() / interval.as_nanos()).min(u128::from(burst)) as u32;
            if refills > 0 {
                self.left = (self.left + refills).min(burst);
                self.since += interval * refills;
            }
        }
        self.left > 0
    }

    pub fn spend(&mut self) {
        self.left = self.left.saturating_sub(1);
    }
}

/// A relayed transport address of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Where the relay socket is bound.
    pub relay: SocketAddr,
    /// What XOR-RELAYED-ADDRESS says.
    pub advertised: SocketAddr,
}

#[derive(Debug)]
pub struct Allocation {
    pub five_tuple: FiveTuple,
    /// Where the relay socket is bound.
    pub relay: SocketAddr,
    /// What XOR-RELAYED-ADDRESS says (the external address behind 1:1 NAT).
    pub advertised: SocketAddr,
    /// The relayed address of the other family, in a dual allocation
    /// (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2).
    pub additional: Option<Relayed>,
    pub username: String,
    /// What the per-user quota counts this allocation under
    /// ([`super::auth::quota_key`]).
    pub quota_key: String,
    pub key: Key,
    pub expires: Instant,
    /// Permissions by peer IP (ports are ignored, RFC 8656 §9).
    pub permissions: Permissions,
    /// Channel bindings (RFC 8656 §12).
    pub channels: Channels,
    /// The Allocate that created this allocation and the success sent for
    /// it, resent when that request is retransmitted (RFC 8656 §7.2).
    pub allocate_transaction: [u8; 12],
    pub allocate_response: Vec<u8>,
    pub refusals: RefusalBudget,
    /// Unique within the process (the admin API names allocations by it).
    pub id: u64,
    /// When it was created, on both clocks.
    pub created: Instant,
    pub created_unix: u64,
    /// What it relayed, counted per packet by its worker (and fed by any
    /// other path that relays for it, such as a kernel offload).
    pub usage: Usage,
    /// Samples of `usage` for its current rate ([`super::rate`]).
    pub rate: super::rate::RateWindow,
    /// Its bandwidth cap's buckets ([`super::bandwidth`]), used only when
    /// a cap is set.
    pub buckets: super::bandwidth::AllocationBuckets,
}

/// Packets and application payload bytes relayed one way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

impl Flow {
    pub fn count(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// What one allocation relayed: `sent` is what its client sent to peers,
/// `received` what peers sent to its client (payload bytes, without
/// STUN/ChannelData framing), both as relayed, not as dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub sent: Flow,
    pub received: Flow,
}

impl Allocation {
    /// Its relayed addresses, the first family first.
    pub fn relays(&self) -> impl Iterator<Item = Relayed> {
        let first = Relayed {
            relay: self.relay,
            advertised: self.advertised,
        };
        std::iter::once(first).chain(self.additional)
    }

    /// The bound relay address that reaches `peer`: the one of its family,
    /// or none (443, RFC 8656 §9.2, §12.2).
    pub fn relay_for(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.relays()
            .map(|r| r.relay)
            .find(|r| super::family::serves(*r, peer))
    }

    /// Whether it has a relayed address of `family`.
    pub fn has_family(&self, family: super::family::Family) -> bool {
        self.relays()
            .any(|r| super::family::Family::of(r.relay.ip()) == family)
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.holds(ip, now)
    }

    /// The peer a live channel `number` is bound to.
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels.peer(number, now)
    }

    /// The live channel bound to `peer`.
    pub fn channel_for(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels.for_peer(peer, now)
    }

    pub fn remove_channel(&mut self, number: u16) {
        self.channels.remove(number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_budget_spends_then_refills_one_per_interval() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let i = Duration::from_secs(6);
        let mut b = RefusalBudget::new(3, t0);
        for _ in 0..3 {
            assert!(b.has_left(t0, 3, i));
            b.spend();
        }
        assert!(!b.has_left(t0 + Duration::from_secs(5), 3, i));
        assert!(b.has_left(t0 + Duration::from_secs(6), 3, i));
        b.spend();
        assert!(!b.has_left(t0 + Duration::from_secs(11), 3, i));
        assert!(b.has_left(t0 + Duration::from_secs(12), 3, i));
        assert!(b.has_left(t0 + Duration::from_secs(3600), 3, i));
        assert!(RefusalBudget::new(0, t0).has_left(t0, 0, i), "0: no limit");
    }
}
