//! The layout of the kernel program's maps (bpf/turnd_xdp.c): keys and
//! values as the bytes the program compares, addresses and ports in
//! network byte order, each value followed by the binding's packet and
//! byte counters (native order, added to by the program), and the indices
//! of its per-CPU counters.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::core::{ChannelBinding, Transport};

/// `struct chan_key`: ChannelData from `client` to `listener` on `channel`.
pub fn chan_key(client: SocketAddr, listener: SocketAddr, channel: u16) -> Option<[u8; 16]> {
    let mut k = [0u8; 16];
    k[0..4].copy_from_slice(&v4(client.ip())?.octets());
    k[4..8].copy_from_slice(&v4(listener.ip())?.octets());
    k[8..10].copy_from_slice(&client.port().to_be_bytes());
    k[10..12].copy_from_slice(&listener.port().to_be_bytes());
    k[12..14].copy_from_slice(&channel.to_be_bytes());
    Some(k)
}

/// `struct peer_key`: UDP from `peer` to `relay`.
pub fn peer_key(relay: SocketAddr, peer: SocketAddr) -> Option<[u8; 12]> {
    let mut k = [0u8; 12];
    k[0..4].copy_from_slice(&v4(relay.ip())?.octets());
    k[4..8].copy_from_slice(&v4(peer.ip())?.octets());
    k[8..10].copy_from_slice(&relay.port().to_be_bytes());
    k[10..12].copy_from_slice(&peer.port().to_be_bytes());
    Some(k)
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().filter(|v4| !v4.is_unspecified()),
        _ => None,
    }
}

/// The two keys of one binding, or `None` when the program cannot
/// carry it: not UDP, not IPv4, or a wildcard listener (the kernel needs
/// the address to answer from).
pub fn entries(b: &ChannelBinding) -> Option<([u8; 16], [u8; 12])> {
    if b.client.transport != Transport::Udp {
        return None;
    }
    let chan = chan_key(b.client.client, b.client.server, b.channel)?;
    let peer = peer_key(b.relay, b.peer)?;
    Some((chan, peer))
}

/// Size of both maps' values: `struct peer_val` and `struct chan_val`.
pub const VALUE_SIZE: usize = 32;
/// Where the packet and byte counters start in a value.
const COUNTERS_AT: usize = 16;

/// A fresh value (counters zero) holding `key`.
pub fn value(key: &[u8]) -> [u8; VALUE_SIZE] {
    let mut v = [0u8; VALUE_SIZE];
    v[..key.len()].copy_from_slice(key);
    v
}

/// The packets and bytes a value has counted.
pub fn counted(value: &[u8; VALUE_SIZE]) -> (u64, u64) {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&value[at..at + 8]);
        u64::from_ne_bytes(b)
    };
    (word(COUNTERS_AT), word(COUNTERS_AT + 8))
}

/// Counter indices of the program's per-CPU `counters` map.
pub const C2P_PACKETS: u32 = 0;
pub const C2P_BYTES: u32 = 1;
pub const P2C_PACKETS: u32 = 2;
pub const P2C_BYTES: u32 = 3;
pub const DROP_ADJUST: u32 = 4;
pub const PASS_MALFORMED: u32 = 5;
pub const PASS_OVERSIZE: u32 = 6;
pub const COUNTERS: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::FiveTuple;

    #[test]
    fn keys_are_in_network_order() {
        let c: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let l: SocketAddr = "10.0.0.2:3478".parse().unwrap();
        let k = chan_key(c, l, 0x4001).unwrap();
        assert_eq!(
            k,
            [10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0x0d, 0x96, 0x40, 0x01, 0, 0]
        );
        let wildcard: SocketAddr = "0.0.0.0:3478".parse().unwrap();
        assert!(chan_key(c, wildcard, 0x4001).is_none());
        let b = ChannelBinding {
            client: FiveTuple {
                client: c,
                server: l,
                transport: Transport::Tcp,
            },
            channel: 0x4001,
            relay: "10.0.0.2:50000".parse().unwrap(),
            peer: "10.0.0.3:6000".parse().unwrap(),
        };
        assert!(entries(&b).is_none(), "TCP clients stay in user space");
        let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        assert!(peer_key(v6, c).is_none());
    }

    #[test]
    fn values_carry_the_key_then_the_counters() {
        let peer = peer_key(
            "10.0.0.2:50000".parse().unwrap(),
            "10.0.0.3:6000".parse().unwrap(),
        )
        .unwrap();
        let mut v = value(&peer);
        assert_eq!(&v[..12], &peer);
        assert_eq!(counted(&v), (0, 0));
        v[16..24].copy_from_slice(&3u64.to_ne_bytes());
        v[24..32].copy_from_slice(&1200u64.to_ne_bytes());
        assert_eq!(counted(&v), (3, 1200));
    }
}
