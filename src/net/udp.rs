//! TURN over UDP (RFC 8656 §3.1): listener sockets and their receive loops.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::relay::MAX_DATAGRAM;
use super::{clock, Shared};
use crate::core::{FiveTuple, Transport};

/// Socket buffers for listeners: media bursts should not overflow them.
const LISTENER_BUFFER: usize = 4 << 20;

/// Binds a UDP listener with large buffers.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(LISTENER_BUFFER);
    let _ = socket.set_send_buffer_size(LISTENER_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Receives client datagrams on one listener and hands them to the core.
pub async fn serve(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let server_addr = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::new();
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(listener = %server_addr, error = %e, "receive failed");
                continue;
            }
        };
        let ft = FiveTuple {
            client,
            server: server_addr,
            transport: Transport::Udp,
        };
        shared.with_server(|server, relays| {
            server.handle_client(clock::now(), ft, &buf[..n], relays, &mut out)
        });
        shared.send_all(&mut out).await;
    }
}
