//! The sans-IO STUN/TURN engine (RFC 8489, RFC 8656, RFC 6156, RFC 6062).
//!
//! Nothing in here opens a socket, spawns a task or reads a clock: the shell
//! in [`crate::net`] feeds datagrams with their source and the current time
//! ([`Now`]) into a [`Server`], and gets back what to send where
//! ([`Transmit`]). Relay sockets are opened and closed through the
//! [`RelaySockets`] port so the engine decides *which* port while the shell
//! does the binding. Every RFC rule can therefore be tested in microseconds
//! with exact expected bytes.

pub mod admin;
pub mod allocation;
pub mod audit;
pub mod auth;
pub mod auth_sha256;
mod authenticate;
pub mod bandwidth;
mod binding_sync;
pub mod channel;
pub mod classic;
pub mod command;
pub mod expiry;
pub mod family;
pub mod five_tuple;
pub mod framing;
pub mod global;
mod handlers;
pub mod indication;
mod kernel_usage;
pub mod message;
pub mod nonce;
pub mod peer_policy;
pub mod permission;
pub mod ports;
pub mod precis;
pub mod rate;
pub mod rate_limit;
pub mod redact;
pub mod redirect;
pub mod server;
pub mod tcp_connections;
pub mod tcp_relay;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub use command::{ChannelBinding, Command};
pub use family::{Family, RelayIp};
pub use five_tuple::{FiveTuple, Transport};
pub use indication::Icmp;
pub use server::{Alternates, CoreConfig, Server};

/// The current time, as both clocks: the monotonic one orders expiries, the
/// wall clock (seconds since the Unix epoch) checks TURN REST usernames and
/// stamps nonces.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_secs: u64,
}

/// Where a datagram leaves the server from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Back to a client, on the listener (or connection) of this 5-tuple.
    Client(FiveTuple),
    /// To a peer, from the relay socket bound at this address.
    Relay(SocketAddr),
}

/// One datagram (or stream frame) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub source: Source,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// What the engine wants sent, written into buffers that are reused from
/// one call to the next: once warm, relaying allocates nothing.
///
/// Relayed data carries the ECN bits of the datagram it came in (RFC 8656
/// §14, preferred behaviour): the shell states them with
/// [`Outbox::set_ecn`] before handing the engine a datagram, and the engine
/// queues relayed data with [`Outbox::push_relayed`]. Responses are not
/// ECN-capable (0).
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    items: Vec<(Source, SocketAddr, std::ops::Range<usize>, u8)>,
    ecn: u8,
}

impl Outbox {
    /// Queues `payload` for `destination`.
    pub fn push(&mut self, source: Source, destination: SocketAddr, payload: &[u8]) {
        self.push_with(source, destination, |buf| buf.extend_from_slice(payload));
    }

    /// Queues what `write` appends to the buffer it is given.
    pub fn push_with(
        &mut self,
        source: Source,
        destination: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.push_marked(source, destination, 0, write);
    }

    /// Queues relayed data: like [`Outbox::push_with`], marked with the ECN
    /// bits of the datagram being handled.
    pub fn push_relayed(
        &mut self,
        source: Source,
        destination: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.push_marked(source, destination, self.ecn, write);
    }

    fn push_marked(
        &mut self,
        source: Source,
        destination: SocketAddr,
        ecn: u8,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.items
            .push((source, destination, start..self.bytes.len(), ecn));
    }

    /// The ECN bits (the low two of the TOS or traffic class byte) of the
    /// datagram handled next; 0 (Not-ECT) for stream transports.
    pub fn set_ecn(&mut self, ecn: u8) {
        self.ecn = ecn & 0b11;
    }

    /// Everything queued, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Source, SocketAddr, &[u8])> {
        self.iter_marked().map(|(s, d, p, _)| (s, d, p))
    }

    /// Everything queued, in order, with the ECN bits to send it with.
    pub fn iter_marked(&self) -> impl Iterator<Item = (Source, SocketAddr, &[u8], u8)> {
        self.items
            .iter()
            .map(|(s, d, r, e)| (*s, *d, &self.bytes[r.clone()], *e))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the queue, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    /// Owned copies of what is queued (tests, and shells that need them).
    pub fn to_transmits(&self) -> Vec<Transmit> {
        self.iter()
            .map(|(source, destination, payload)| Transmit {
                source,
                destination,
                payload: payload.to_vec(),
            })
            .collect()
    }
}

/// The shell's side of relay sockets: the engine chooses the address, the
/// shell binds it (or reports that the port is taken) and later closes it.
pub trait RelaySockets {
    /// Binds a UDP relay socket at `addr` and starts receiving on it.
    fn open(&mut self, addr: SocketAddr) -> io::Result<()>;
    /// Closes the relay socket at `addr`; its port may be reused at once.
    fn close(&mut self, addr: SocketAddr);
    /// Binds `addr` and holds it, not receiving, for a later allocation
    /// that may be served by another worker (RESERVATION-TOKEN).
    fn reserve(&mut self, addr: SocketAddr) -> io::Result<()>;
    /// Starts receiving on a socket held by [`RelaySockets::reserve`].
    fn claim(&mut self, addr: SocketAddr) -> io::Result<()>;
    /// Closes a reserved socket nobody claimed.
    fn unreserve(&mut self, addr: SocketAddr);
    /// Sets the don't-fragment bit on every datagram the open relay socket
    /// at `addr` sends (DONT-FRAGMENT, RFC 8656 §7.2); an error means the
    /// platform cannot, and the Allocate gets 420.
    fn dont_fragment(&mut self, addr: SocketAddr) -> io::Result<()>;
    /// Binds a listening TCP relay socket at `addr` for a TCP allocation
    /// (RFC 6062 §5.1) and accepts peers on it; [`RelaySockets::close`]
    /// closes it. Shells without TCP relaying refuse.
    fn open_tcp(&mut self, addr: SocketAddr) -> io::Result<()> {
        let _ = addr;
        Err(io::ErrorKind::Unsupported.into())
    }
}
