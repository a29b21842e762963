//! One allocation (RFC 8656 §2.2, §7): its relayed transport address,
//! lifetime, permissions (§9) and channel bindings (§12).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::auth::Key;
use super::FiveTuple;

/// A channel binding. It lapses at `expires`; its number and peer stay
/// reserved for 5 more minutes (RFC 8656 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub peer: SocketAddr,
    pub expires: Instant,
}

#[derive(Debug)]
pub struct Allocation {
    pub five_tuple: FiveTuple,
    /// Where the relay socket is bound.
    pub relay: SocketAddr,
    /// What XOR-RELAYED-ADDRESS says (the external address behind 1:1 NAT).
    pub advertised: SocketAddr,
    pub username: String,
    /// What the per-user quota counts this allocation under
    /// ([`super::auth::quota_key`]).
    pub quota_key: String,
    pub key: Key,
    pub expires: Instant,
    /// Permissions by peer IP (ports are ignored, RFC 8656 §9).
    pub permissions: HashMap<IpAddr, Instant>,
    pub channels: HashMap<u16, Channel>,
    pub channel_by_peer: HashMap<SocketAddr, u16>,
    /// The Allocate that created this allocation and the success sent for
    /// it, resent when that request is retransmitted (RFC 8656 §7.2).
    pub allocate_transaction: [u8; 12],
    pub allocate_response: Vec<u8>,
    /// Unique within the process (the admin API names allocations by it).
    pub id: u64,
    /// When it was created, on both clocks.
    pub created: Instant,
    pub created_unix: u64,
    /// What it relayed, counted per packet by its worker (and fed by any
    /// other path that relays for it, such as a kernel offload).
    pub usage: Usage,
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
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|exp| *exp > now)
    }

    /// The peer a live channel `number` is bound to.
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .get(&number)
            .filter(|c| c.expires > now)
            .map(|c| c.peer)
    }

    /// The live channel bound to `peer`.
    pub fn channel_for(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let number = *self.channel_by_peer.get(&peer)?;
        self.channel_peer(number, now).map(|_| number)
    }

    pub fn remove_channel(&mut self, number: u16) {
        if let Some(c) = self.channels.remove(&number) {
            self.channel_by_peer.remove(&c.peer);
        }
    }
}
