//! TCP relaying (RFC 6062), the shell's side: the listening relay socket of
//! a TCP allocation (§5.1) and its accept loop (§5.3), the outgoing
//! connect of a Connect (§5.2), the peer sockets waiting for their
//! ConnectionBind, and the copy loop between a bound client data
//! connection and its peer connection (§5.4, §5.5).
//!
//! A ConnectionBind may arrive on another worker than the allocation's, so
//! the peer sockets waiting for one are kept process-wide in [`Slots`],
//! as plain `std` sockets that any worker's runtime can adopt. The engine
//! decides (commands `TcpConnect`, `TcpClose`, `TcpBind`); this module only
//! carries it out.
//!
//! Memory per bound pair is bounded: one [`COPY_BUFFER`] each way, and a
//! slow reader on one side stops reads on the other (backpressure through
//! the kernel's socket buffers), never a growing queue.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tracing::debug;

use super::clock;
use super::worker::Worker;
use crate::core::tcp_relay::TcpUsage;
use crate::metrics::Metrics;

/// Bytes read from one side before they are written to the other.
pub const COPY_BUFFER: usize = 16 << 10;
/// Backlog of a relayed TCP address's listening socket.
const LISTEN_BACKLOG: u32 = 64;

/// One peer connection's socket, wherever it is in its life.
enum Slot {
    /// The connect of a Connect is running on the allocation's worker.
    Connecting(AbortHandle),
    /// Connected, waiting for a ConnectionBind.
    Ready(std::net::TcpStream),
    /// Copying to a client data connection; notified to stop.
    Bound(Arc<Notify>),
}

/// The peer sockets of every worker, by CONNECTION-ID.
#[derive(Default)]
pub struct Slots {
    slots: Mutex<HashMap<u32, Slot>>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connecting(&self, id: u32, task: AbortHandle) {
        self.lock().insert(id, Slot::Connecting(task));
    }

    fn ready(&self, id: u32, stream: TcpStream) {
        match stream.into_std() {
            Ok(s) => {
                self.lock().insert(id, Slot::Ready(s));
            }
            Err(e) => debug!(id, error = %e, "cannot keep a peer connection"),
        }
    }

    /// Takes the waiting socket of `id`, leaving `stop` to end its copy.
    fn bind(&self, id: u32, stop: Arc<Notify>) -> Option<std::net::TcpStream> {
        let mut slots = self.lock();
        match slots.remove(&id) {
            Some(Slot::Ready(s)) => {
                slots.insert(id, Slot::Bound(stop));
                Some(s)
            }
            Some(other) => {
                slots.insert(id, other);
                None
            }
            None => None,
        }
    }

    /// Closes peer connection `id` (and ends its copy, if bound).
    pub fn close(&self, id: u32) {
        match self.lock().remove(&id) {
            Some(Slot::Connecting(task)) => task.abort(),
            Some(Slot::Ready(stream)) => drop(stream),
            Some(Slot::Bound(stop)) => stop.notify_one(),
            None => {}
        }
    }

    fn forget(&self, id: u32) {
        self.lock().remove(&id);
    }
}

/// Binds the listening socket of a TCP allocation at `addr`. SO_REUSEPORT
/// lets the connects of Connect requests use the same address (§5.2).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket_at(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn socket_at(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => {
            let s = socket2::Socket::new(
                socket2::Domain::IPV6,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            s.set_only_v6(true)?;
            s.set_nonblocking(true)?;
            TcpSocket::from_std_stream(s.into())
        }
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Accepts peers on a TCP allocation's relayed address until aborted (the
/// allocation ends): the engine says which ones become connections.
pub async fn accept_peers(worker: Rc<Worker>, relay: SocketAddr, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if super::descriptors::is_exhaustion(&e) {
                    super::descriptors::exhausted(&worker.process.metrics, "accept");
                }
                debug!(%relay, error = %e, "accepting a TCP peer failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = worker
            .with_server(|server, _, out| server.tcp_peer_accepted(clock::now(), relay, peer, out));
        match id {
            Some(id) => {
                let _ = stream.set_nodelay(true);
                worker.process.tcp.ready(id, stream);
            }
            None => drop(stream),
        }
    }
}

/// Starts the connect of Connect `id` (on the allocation's worker).
pub fn start_connect(
    worker: &Rc<Worker>,
    id: u32,
    relay: SocketAddr,
    peer: SocketAddr,
    timeout: Duration,
) {
    let task = tokio::task::spawn_local(connect(worker.clone(), id, relay, peer, timeout));
    worker.process.tcp.connecting(id, task.abort_handle());
}

async fn connect(
    worker: Rc<Worker>,
    id: u32,
    relay: SocketAddr,
    peer: SocketAddr,
    timeout: Duration,
) {
    let attempt = async { socket_at(relay)?.connect(peer).await };
    let stream = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            debug!(%relay, %peer, error = %e, "connect to TCP peer failed");
            None
        }
        Err(_) => {
            debug!(%relay, %peer, "connect to TCP peer timed out");
            None
        }
    };
    let connected = stream.is_some();
    match stream {
        // Kept before the engine answers, so that a ConnectionBind on
        // another worker finds it.
        Some(stream) => {
            let _ = stream.set_nodelay(true);
            worker.process.tcp.ready(id, stream);
        }
        None => worker.process.tcp.forget(id),
    }
    let keep =
        worker.with_server(|server, _, out| server.tcp_connected(clock::now(), id, connected, out));
    if !keep {
        worker.process.tcp.close(id);
    }
}

/// Copies between a bound client data connection and the peer connection
/// of `id` until either side closes or the engine closes it; `early` are
/// bytes the client sent right after its ConnectionBind.
pub async fn relay<R, W>(worker: &Rc<Worker>, id: u32, client: (R, W), early: Vec<u8>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stop = Arc::new(Notify::new());
    let peer = worker
        .process
        .tcp
        .bind(id, stop.clone())
        .and_then(|s| TcpStream::from_std(s).ok());
    let usage = worker.with_server(|server, _, _| server.tcp_usage(id));
    if let (Some(peer), Some(usage)) = (peer, usage) {
        let metrics = &worker.process.metrics;
        metrics.tcp.active.inc();
        tokio::select! {
            _ = copy_both(client, peer, early, metrics, &usage) => {}
            _ = stop.notified() => {}
        }
        metrics.tcp.active.dec();
    }
    worker.process.tcp.forget(id);
    worker.with_server(|server, _, _| server.tcp_data_closed(id));
}

/// Both directions, until either side closes (end of stream or error):
/// then the other gets a FIN and both are closed, as coturn does: no pair
/// lingers half-closed.
async fn copy_both<R, W>(
    client: (R, W),
    peer: TcpStream,
    early: Vec<u8>,
    metrics: &Metrics,
    usage: &TcpUsage,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut client_rx, mut client_tx) = client;
    let (mut peer_rx, mut peer_tx) = peer.into_split();
    let to_peer = metrics.tcp.bytes.with_label_values(&["client_to_peer"]);
    let to_client = metrics.tcp.bytes.with_label_values(&["peer_to_client"]);
    let up = async {
        if !early.is_empty() {
            to_peer.inc_by(early.len() as u64);
            usage.count_sent(early.len());
            peer_tx.write_all(&early).await?;
        }
        copy(&mut client_rx, &mut peer_tx, |n| {
            to_peer.inc_by(n as u64);
            usage.count_sent(n);
        })
        .await
    };
    let down = copy(&mut peer_rx, &mut client_tx, |n| {
        to_client.inc_by(n as u64);
        usage.count_received(n);
    });
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Copies until end of stream, then shuts the writer down. Bytes are
/// counted before they are written: the pair's two connections may be on
/// other workers than the allocation, whose usage record must not miss
/// bytes the far side has already received.
async fn copy<R, W>(reader: &mut R, writer: &mut W, count: impl Fn(usize)) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return writer.shutdown().await;
        }
        count(n);
        writer.write_all(&buf[..n]).await?;
    }
}
