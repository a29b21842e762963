//! TURN over UDP (RFC 8656 §3.1): listener sockets, one per worker per
//! address with SO_REUSEPORT so the kernel spreads clients over workers by
//! their 5-tuple.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffers for listeners: media bursts should not overflow them.
const LISTENER_BUFFER: usize = 4 << 20;

/// Binds one worker's listener socket at `addr` with large buffers.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(LISTENER_BUFFER);
    let _ = socket.set_send_buffer_size(LISTENER_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `count` sockets at `addr`; port 0 is resolved by the first so the others
/// share its port.
pub fn bind_group<S>(
    addr: SocketAddr,
    count: usize,
    bind: impl Fn(SocketAddr) -> std::io::Result<S>,
    local: impl Fn(&S) -> std::io::Result<SocketAddr>,
) -> std::io::Result<(SocketAddr, Vec<S>)> {
    let first = bind(addr)?;
    let bound = local(&first)?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind(bound)?);
    }
    Ok((bound, all))
}

/// Socket buffers for relay sockets: smaller than a listener's (there are
/// thousands), larger than the kernel default so a burst from a peer fits.
const RELAY_BUFFER: usize = 1 << 20;

/// Binds a relay socket at `addr` (no SO_REUSEPORT: the port is this
/// allocation's alone).
pub fn bind_relay(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(RELAY_BUFFER);
    let _ = socket.set_send_buffer_size(RELAY_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
