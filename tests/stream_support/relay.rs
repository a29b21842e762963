//! Relaying checks shared by the TCP and TLS tests (RFC 8656 §10-§12):
//! permissions, Send/Data indications and ChannelData between a stream
//! client and a UDP peer, with the stream padding of §12.5.

use std::net::{SocketAddr, UdpSocket};

use crate::common::pattern;
use crate::common::raw::{recv_from_within, Relayed};

use super::{channel_data, send_indication, Conn, Frame, StreamClient, ANSWER};

/// The channel number the tests bind.
pub const CHANNEL: u16 = 0x4000;

/// The datagram the peer receives from `relay` within [`ANSWER`].
pub fn peer_receives(peer: &UdpSocket, relay: SocketAddr) -> Vec<u8> {
    recv_from_within(peer, Some(relay), ANSWER)
        .unwrap_or_else(|| panic!("the peer got nothing from the relay {relay}"))
        .0
}

/// CreatePermission, a Send indication to the peer and a Data indication
/// back, ChannelBind, then ChannelData both ways with odd and even
/// lengths; checks that what turnd sends on the stream is padded to 4
/// bytes and that the stream stays in sync after it.
pub fn relay_both_ways<C: Conn>(client: &mut StreamClient<C>, relay: SocketAddr, peer: &UdpSocket) {
    let peer_addr = peer.local_addr().unwrap();
    client.create_permission(peer_addr);

    let out = pattern(100, 1);
    client.write(&send_indication(peer_addr, &out).raw);
    assert_eq!(peer_receives(peer, relay), out, "Send indication data");
    let back = pattern(77, 2);
    peer.send_to(&back, relay).unwrap();
    assert_eq!(
        client.recv_relayed(ANSWER),
        Some(Relayed::Indication {
            peer: peer_addr,
            data: back
        }),
        "Data indication"
    );

    client.channel_bind(CHANNEL, peer_addr);
    for (i, len) in [5usize, 8, 1, 3, 0, 1000].into_iter().enumerate() {
        let seed = 10 + i as u8;
        let up = pattern(len, seed);
        client.write(&channel_data(CHANNEL, &up));
        assert_eq!(
            peer_receives(peer, relay),
            up,
            "ChannelData of {len} bytes to the peer"
        );
    }
    // Back to back, so that a missing pad would shift the second frame.
    let odd = pattern(5, 20);
    let even = pattern(8, 21);
    peer.send_to(&odd, relay).unwrap();
    peer.send_to(&even, relay).unwrap();
    for want in [odd, even] {
        match client.next_frame(ANSWER) {
            Some(Frame::Channel {
                number,
                data,
                padding,
            }) => {
                assert_eq!(number, CHANNEL);
                assert_eq!(data, want);
                assert_eq!(padding, (4 - want.len() % 4) % 4, "pad to 4 bytes");
            }
            other => panic!(
                "expected ChannelData of {} bytes, got {other:?}",
                want.len()
            ),
        }
    }
    // The stream is still in sync: a response parses.
    client.binding();
}

/// ChannelData both ways on an established session.
pub fn channel_round_trip<C: Conn>(
    client: &mut StreamClient<C>,
    relay: SocketAddr,
    peer: &UdpSocket,
    seed: u8,
) {
    let up = pattern(21, seed);
    client.write(&channel_data(CHANNEL, &up));
    assert_eq!(peer_receives(peer, relay), up);
    let down = pattern(22, seed.wrapping_add(1));
    peer.send_to(&down, relay).unwrap();
    assert_eq!(
        client.recv_relayed(ANSWER),
        Some(Relayed::Channel {
            number: CHANNEL,
            data: down
        })
    );
}
