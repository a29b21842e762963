//! The sans-IO STUN/TURN engine (RFC 8489, RFC 8656, RFC 6156).
//!
//! Nothing in here opens a socket, spawns a task or reads a clock: the shell
//! in [`crate::net`] feeds datagrams with their source and the current time
//! ([`Now`]) into a [`Server`], and gets back what to send where
//! ([`Transmit`]). Relay sockets are opened and closed through the
//! [`RelaySockets`] port so the engine decides *which* port while the shell
//! does the binding. Every RFC rule can therefore be tested in microseconds
//! with exact expected bytes.

pub mod allocation;
pub mod auth;
pub mod classic;
pub mod expiry;
pub mod five_tuple;
pub mod framing;
mod handlers;
pub mod message;
pub mod nonce;
pub mod peer_policy;
pub mod ports;
pub mod rate_limit;
pub mod server;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub use five_tuple::{FiveTuple, Transport};
pub use server::{CoreConfig, Server};

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

/// The shell's side of relay sockets: the engine chooses the address, the
/// shell binds it (or reports that the port is taken) and later closes it.
pub trait RelaySockets {
    /// Binds a UDP relay socket at `addr` and starts receiving on it.
    fn open(&mut self, addr: SocketAddr) -> io::Result<()>;
    /// Closes the relay socket at `addr`; its port may be reused at once.
    fn close(&mut self, addr: SocketAddr);
}
