//! Effects of the engine that the shell carries out, as data (in the
//! manner of Firezone's relay `Command`s): today the channel bindings a
//! kernel fast path may relay (RFC 8656 §12). After every call into the
//! [`super::Server`] the shell drains them with
//! [`super::Server::take_commands`] and applies them before it hands the
//! engine anything else, so a binding leaves the kernel in the same turn
//! as the engine stops relaying it.
//!
//! The engine emits [`Command::ChannelInstalled`] when a channel becomes
//! relayable (ChannelBind with its permission, a permission refreshed back
//! into existence) and [`Command::ChannelRemoved`] when it stops being so:
//! the binding or its permission lapses, the allocation is deleted,
//! expires, closes or is shut down (drain timeout, SIGTERM), or a reload
//! denies the peer. Each live binding is installed once; a removal always
//! follows an installation.
//!
//! The `Tcp*` commands carry RFC 6062 peer connections (see
//! [`super::tcp_relay`]); the kernel path ignores them.

use std::net::SocketAddr;

use super::FiveTuple;

/// A channel as the data path sees it: ChannelData on `client` with number
/// `channel` goes from `relay` to `peer`, and what `peer` sends to `relay`
/// goes back to the client on that channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelBinding {
    pub client: FiveTuple,
    pub channel: u16,
    /// Where the allocation's relay socket is bound.
    pub relay: SocketAddr,
    pub peer: SocketAddr,
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// The engine relays this channel both ways from now on.
    ChannelInstalled(ChannelBinding),
    /// The engine no longer relays this channel.
    ChannelRemoved(ChannelBinding),
    /// Connect to `peer` from the TCP relay address `relay` within
    /// `timeout`, and report with [`super::Server::tcp_connected`] (RFC 6062
    /// §5.2).
    TcpConnect {
        id: u32,
        relay: SocketAddr,
        peer: SocketAddr,
        timeout: std::time::Duration,
    },
    /// Close peer connection `id`, and its client data connection if bound.
    TcpClose(u32),
    /// Client data connection `data` carries peer connection `id`'s bytes
    /// from now on (RFC 6062 §5.4), once the ConnectionBind success queued
    /// for it is written.
    TcpBind { id: u32, data: FiveTuple },
}
