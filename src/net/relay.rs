//! Relay sockets (RFC 8656 §2.2 "relayed transport address"): UDP sockets
//! bound in the configured port range, one reader task each, opened and
//! closed when the core says so.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use super::Shared;
use crate::core::RelaySockets;

/// Largest datagram turnd receives: the whole UDP payload range.
pub const MAX_DATAGRAM: usize = 65_536;

struct Open {
    socket: Arc<UdpSocket>,
    reader: AbortHandle,
}

/// The open relay sockets by bound address.
#[derive(Default)]
pub struct RelayTable {
    open: Mutex<HashMap<SocketAddr, Open>>,
}

impl RelayTable {
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<UdpSocket>> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(addr).map(|o| o.socket.clone())
    }

    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, addr: SocketAddr, open: Open) {
        let mut table = self.open.lock().unwrap_or_else(|e| e.into_inner());
        table.insert(addr, open);
    }

    fn remove(&self, addr: &SocketAddr) {
        let removed = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
        if let Some(o) = removed {
            o.reader.abort();
        }
    }
}

/// The shell's [`RelaySockets`]: binds for real and starts a reader.
pub struct Relays<'a> {
    pub shared: &'a Arc<Shared>,
}

impl RelaySockets for Relays<'_> {
    fn open(&mut self, addr: SocketAddr) -> io::Result<()> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let shared = self.shared.clone();
        let reader = tokio::spawn(read_peers(shared, addr, socket.clone())).abort_handle();
        self.shared.relays.insert(addr, Open { socket, reader });
        Ok(())
    }

    fn close(&mut self, addr: SocketAddr) {
        self.shared.relays.remove(&addr);
    }
}

/// Receives what peers send to one relay address and hands it to the core.
async fn read_peers(shared: Arc<Shared>, relay: SocketAddr, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::new();
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%relay, error = %e, "relay receive failed");
                continue;
            }
        };
        shared.with_server(|server, _| {
            server.handle_peer(super::clock::now(), relay, peer, &buf[..n], &mut out)
        });
        shared.send_all(&mut out).await;
    }
}
