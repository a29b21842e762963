//! The channel bindings of one allocation (RFC 8656 §12): a channel number
//! bound to one peer transport address, in both directions. A binding is
//! live until `expires` (10 minutes after its last ChannelBind, §12.2);
//! after that its number and peer stay reserved to each other for 5 more
//! minutes (§12) until the release timer removes it. The two maps (number
//! to peer, peer to number) change only together, here; debug builds
//! assert that they agree after every change.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::peer_policy::canonical;

/// A channel binding. It lapses at `expires`; its number and peer stay
/// reserved for 5 more minutes (RFC 8656 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub peer: SocketAddr,
    pub expires: Instant,
}

/// Why a ChannelBind cannot bind `number` to `peer` (400, §12.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// The number is bound to another peer.
    NumberTaken,
    /// The peer is bound to another number.
    PeerTaken,
}

/// Channel numbers and peers, each bound to at most one of the other.
#[derive(Debug, Default)]
pub struct Channels {
    by_number: HashMap<u16, Channel>,
    by_peer: HashMap<SocketAddr, u16>,
}

impl Channels {
    /// The peer of live channel `number` at `now`.
    pub fn peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.by_number
            .get(&number)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
    }

    /// The live channel bound to `peer` at `now`.
    pub fn for_peer(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let number = *self.by_peer.get(&peer)?;
        self.peer(number, now).map(|_| number)
    }

    /// Whether `number` may be bound (or rebound) to `peer`: neither is
    /// bound to another, quarantined bindings included.
    pub fn check(&self, number: u16, peer: SocketAddr) -> Result<(), Conflict> {
        if self.by_number.get(&number).is_some_and(|c| c.peer != peer) {
            return Err(Conflict::NumberTaken);
        }
        if self.by_peer.get(&peer).is_some_and(|n| *n != number) {
            return Err(Conflict::PeerTaken);
        }
        Ok(())
    }

    /// Whether `number` has a binding, live or quarantined.
    pub fn contains(&self, number: u16) -> bool {
        self.by_number.contains_key(&number)
    }

    /// Bindings, live or quarantined (what the per-allocation quota counts).
    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }

    /// Binds `number` to `peer` until `expires`, or refreshes the binding.
    /// The caller has checked [`Channels::check`].
    pub fn bind(&mut self, number: u16, peer: SocketAddr, expires: Instant) {
        debug_assert_eq!(self.check(number, peer), Ok(()), "{number:#06x} {peer}");
        self.by_number.insert(number, Channel { peer, expires });
        self.by_peer.insert(peer, number);
        self.debug_check();
    }

    /// Releases `number` and its peer.
    pub fn remove(&mut self, number: u16) -> Option<Channel> {
        let c = self.by_number.remove(&number)?;
        self.by_peer.remove(&c.peer);
        self.debug_check();
        Some(c)
    }

    /// Every binding, live or quarantined.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Channel)> + '_ {
        self.by_number.iter().map(|(n, c)| (*n, c))
    }

    /// Every bound number.
    pub fn numbers(&self) -> impl Iterator<Item = u16> + '_ {
        self.by_number.keys().copied()
    }

    /// The numbers bound to peers at `ip` (any port; an IPv4-mapped peer
    /// counts as its IPv4 address, as permissions do).
    pub fn numbers_to(&self, ip: IpAddr) -> Vec<u16> {
        self.iter()
            .filter(|(_, c)| canonical(c.peer.ip()) == ip)
            .map(|(n, _)| n)
            .collect()
    }

    /// Whether the two maps agree: every number's peer maps back to it and
    /// nothing else is there.
    pub fn is_consistent(&self) -> bool {
        self.by_number.len() == self.by_peer.len()
            && self
                .by_number
                .iter()
                .all(|(n, c)| self.by_peer.get(&c.peer) == Some(n))
    }

    fn debug_check(&self) {
        debug_assert!(self.is_consistent(), "channel maps disagree: {self:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_and_peers_stay_paired_through_lapse_and_release() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) = (
            "192.0.2.1:1000".parse().unwrap(),
            "192.0.2.1:1001".parse().unwrap(),
        );
        let mut c = Channels::default();
        let end = t0 + Duration::from_secs(600);
        c.bind(0x4000, a, end);
        assert_eq!(c.peer(0x4000, t0), Some(a));
        assert_eq!(c.for_peer(a, t0), Some(0x4000));
        assert_eq!(c.check(0x4000, b), Err(Conflict::NumberTaken));
        assert_eq!(c.check(0x4001, a), Err(Conflict::PeerTaken));
        assert_eq!(c.check(0x4000, a), Ok(()), "a refresh");
        // Lapsed: not relayed, still reserved until released.
        assert_eq!(c.peer(0x4000, end), None);
        assert_eq!(c.for_peer(a, end), None);
        assert_eq!(c.check(0x4001, a), Err(Conflict::PeerTaken));
        assert_eq!(c.numbers_to(a.ip()), vec![0x4000]);
        assert_eq!(c.remove(0x4000).map(|ch| ch.peer), Some(a));
        assert!(c.is_empty() && c.is_consistent());
        assert_eq!(c.check(0x4001, a), Ok(()));
    }
}
