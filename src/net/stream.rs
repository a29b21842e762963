//! TURN over TCP and TLS (RFC 8656 §3.1): accepting connections within the
//! configured limits, cutting the byte stream into messages, and writing
//! responses and relayed data back. An allocation belongs to its connection
//! and ends with it.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::debug;

use super::clock;
use super::conn_limits::ConnectionCounts;
use super::tls::Certificate;
use super::worker::Worker;
use crate::config::Connections;
use crate::core::framing::{next_frame_len, FrameError};
use crate::core::{FiveTuple, Transport};

/// Frames and bytes queued for one connection's writer; past either,
/// relayed data to a slow client is dropped rather than buffered without
/// bound (the kernel's socket buffer comes on top of this).
const WRITE_QUEUE: usize = 512;
const WRITE_QUEUE_BYTES: usize = 64 << 10;
/// A read buffer is grown this much at a time, and kept at about this size
/// between messages (a large message's buffer is given back).
const READ_CHUNK: usize = 4096;

/// The worker's handle on one connection's writer: frames go in without
/// waiting, within [`WRITE_QUEUE`] frames and [`WRITE_QUEUE_BYTES`] bytes,
/// and within the process's buffer budget for all connections.
pub struct ConnectionTx {
    tx: mpsc::Sender<Vec<u8>>,
    queued: Rc<Cell<usize>>,
    counts: Arc<ConnectionCounts>,
    budget: usize,
}

impl ConnectionTx {
    /// Queues a copy of `frame`; false when a queue is full (dropped).
    pub fn try_send(&self, frame: &[u8]) -> bool {
        let queued = self.queued.get();
        if queued + frame.len() > WRITE_QUEUE_BYTES && queued > 0 {
            return false;
        }
        if !self.counts.charge(frame.len(), self.budget) {
            return false;
        }
        if self.tx.try_send(frame.to_vec()).is_err() {
            self.counts.refund(frame.len());
            return false;
        }
        self.queued.set(queued + frame.len());
        true
    }
}

/// Bytes of a read buffer counted against the buffer budget; given back
/// when the connection ends.
struct Charged {
    counts: Arc<ConnectionCounts>,
    bytes: usize,
}

impl Charged {
    /// Counts a buffer of `capacity` now; false if the budget is spent.
    fn set(&mut self, capacity: usize, budget: usize) -> bool {
        if capacity > self.bytes {
            if !self.counts.charge(capacity - self.bytes, budget) {
                return false;
            }
        } else {
            self.counts.refund(self.bytes - capacity);
        }
        self.bytes = capacity;
        true
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.counts.refund(self.bytes);
    }
}

/// Accepts connections on one TCP or TLS listener.
pub async fn serve(
    worker: Rc<Worker>,
    listener: TcpListener,
    transport: Transport,
    certificate: Option<Arc<Certificate>>,
) {
    let server_addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return tracing::error!(error = %e, "listener has no local address"),
    };
    let label = transport.as_str();
    loop {
        let accepted = listener.accept().await.and_then(|(tcp, client)| {
            super::descriptors::outside_reserve(tcp).map(|tcp| (tcp, client))
        });
        let (tcp, client) = match accepted {
            Ok(c) => c,
            Err(e) if super::descriptors::is_exhaustion(&e) => {
                super::descriptors::exhausted(&worker.process.metrics, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                // Out of file descriptors, most likely: back off a little.
                tracing::warn!(listener = %server_addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Limits as configured now (SIGHUP may change them).
        let limits = worker.process.limits();
        let slot = match worker
            .process
            .connection_counts
            .acquire(client.ip(), &limits)
        {
            Ok(slot) => slot,
            Err(reason) => {
                worker
                    .process
                    .metrics
                    .connections_rejected
                    .with_label_values(&[label, reason])
                    .inc();
                debug!(%client, reason, "connection refused");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        worker
            .process
            .metrics
            .connections_accepted
            .with_label_values(&[label])
            .inc();
        let ft = FiveTuple {
            client,
            server: server_addr,
            transport,
        };
        let worker = worker.clone();
        let certificate = certificate.clone();
        let limits = limits.clone();
        tokio::task::spawn_local(async move {
            worker
                .process
                .metrics
                .connections_active
                .with_label_values(&[label])
                .inc();
            run_connection(&worker, tcp, ft, certificate, &limits).await;
            worker
                .process
                .metrics
                .connections_active
                .with_label_values(&[label])
                .dec();
            drop(slot);
        });
    }
}

async fn run_connection(
    worker: &Rc<Worker>,
    tcp: TcpStream,
    ft: FiveTuple,
    certificate: Option<Arc<Certificate>>,
    limits: &Connections,
) {
    let accepted = tokio::time::Instant::now();
    let handshake = Duration::from_secs(limits.handshake_timeout_s.into());
    let label = ft.transport.as_str();
    match certificate {
        None => serve_stream(worker, tcp, ft, limits, accepted).await,
        Some(cert) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cert.current());
            match tokio::time::timeout_at(accepted + handshake, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve_stream(worker, tls, ft, limits, accepted).await,
                Ok(Err(e)) => {
                    debug!(client = %ft.client, error = %e, "TLS handshake failed");
                    worker
                        .process
                        .metrics
                        .connections_rejected
                        .with_label_values(&[label, "tls_handshake"])
                        .inc();
                }
                Err(_) => {
                    worker
                        .process
                        .metrics
                        .connections_rejected
                        .with_label_values(&[label, "handshake_timeout"])
                        .inc();
                }
            }
        }
    }
}

/// Reads frames until the client leaves, breaks framing or idles out.
async fn serve_stream<S>(
    worker: &Rc<Worker>,
    stream: S,
    ft: FiveTuple,
    limits: &Connections,
    accepted: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let queued = Rc::new(Cell::new(0));
    let counts = worker.process.connection_counts.clone();
    worker.register_connection(
        ft,
        ConnectionTx {
            tx,
            queued: queued.clone(),
            counts: counts.clone(),
            budget: limits.buffer_budget(),
        },
    );
    let write_timeout = Duration::from_secs(limits.write_timeout_s.into());
    // Set once a ConnectionBind succeeds: the writer then hands its half
    // back instead of closing it.
    let keep_writer = Rc::new(Cell::new(false));
    let mut writer_task = tokio::task::spawn_local(write_frames(
        writer,
        rx,
        queued.clone(),
        counts.clone(),
        write_timeout,
        keep_writer.clone(),
    ));
    debug!(client = %ft.client, transport = ft.transport.as_str(), "connection open");

    let mut writer_done = false;
    let mut bound = None;
    let reason = tokio::select! {
        reason = read_frames(worker, &mut reader, ft, limits, accepted, &mut bound) => reason,
        written = &mut writer_task => {
            writer_done = true;
            written.ok().and_then(|(verdict, _)| verdict)
        }
    };
    // A ConnectionBind that succeeded as the connection ended still
    // releases its peer connection below.
    let bound = bound.or_else(|| worker.take_tcp_bind(&ft).map(|id| (id, Vec::new())));
    if let Some((id, early)) = bound {
        // RFC 6062 §5.4: after the ConnectionBind success, raw bytes.
        keep_writer.set(true);
        worker.unregister_connection(&ft);
        let writer = if writer_done {
            None
        } else {
            match tokio::time::timeout(write_timeout, &mut writer_task).await {
                Ok(Ok((_, writer))) => writer,
                _ => {
                    writer_task.abort();
                    None
                }
            }
        };
        counts.refund(queued.get());
        match writer {
            Some(writer) => super::tcp_relay::relay(worker, id, (reader, writer), early).await,
            None => {
                worker.process.tcp.close(id);
                worker.with_server(|server, _, _| server.tcp_data_closed(id));
            }
        }
        return;
    }
    if let Some(reason) = reason {
        worker
            .process
            .metrics
            .connections_rejected
            .with_label_values(&[ft.transport.as_str(), reason])
            .inc();
        debug!(client = %ft.client, reason, "connection cut");
    }
    worker.unregister_connection(&ft);
    worker
        .with_server(|server, relays, _| server.close_connection(super::clock::now(), ft, relays));
    // The writer drains what is queued (a last error response), then ends;
    // past a second it is stopped, so that no socket outlives the
    // connection's slot (the per-IP and total limits count slots).
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(1), &mut writer_task)
            .await
            .is_err()
    {
        writer_task.abort();
    }
    // Frames never written leave the budget with the connection.
    counts.refund(queued.get());
}

/// The read loop; returns why the server cut the connection, if it did.
/// After a successful ConnectionBind (RFC 6062 §5.4) it returns `None`
/// with `bound` set to the peer connection's id and the bytes read past
/// the request.
async fn read_frames<R: AsyncRead + Unpin>(
    worker: &Rc<Worker>,
    reader: &mut R,
    ft: FiveTuple,
    limits: &Connections,
    accepted: tokio::time::Instant,
    bound: &mut Option<(u32, Vec<u8>)>,
) -> Option<&'static str> {
    let handshake = Duration::from_secs(limits.handshake_timeout_s.into());
    let idle = Duration::from_secs(limits.idle_timeout_s.into());
    let max = limits.max_frame_bytes as usize;
    let budget = limits.buffer_budget();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut charged = Charged {
        counts: worker.process.connection_counts.clone(),
        bytes: 0,
    };
    if !charged.set(buf.capacity(), budget) {
        return Some("memory_limit");
    }
    let mut start = 0;
    let mut seen_frame = false;
    // Deadlines are absolute, so dribbling one byte at a time does not
    // extend them: the first frame (TLS handshake included) must arrive
    // within `handshake` of the accept, every later frame within `handshake`
    // of its first byte.
    let mut frame_deadline = accepted + handshake;
    loop {
        // Complete frames first.
        loop {
            match next_frame_len(&buf[start..], max) {
                Ok(Some(len)) => {
                    let frame = &buf[start..start + len];
                    worker.with_server(|server, relays, out| {
                        server.handle_client(clock::now(), ft, frame, relays, out);
                    });
                    start += len;
                    seen_frame = true;
                    if let Some(id) = worker.take_tcp_bind(&ft) {
                        *bound = Some((id, buf[start..].to_vec()));
                        return None;
                    }
                }
                Ok(None) => break,
                Err(FrameError::Garbage) => {
                    worker.process.metrics.count_drop("malformed");
                    return Some("garbage");
                }
                Err(FrameError::TooLarge(len)) => {
                    debug!(client = %ft.client, len, max, "frame too large");
                    return Some("frame_too_large");
                }
            }
        }
        let consumed = start > 0;
        buf.drain(..start);
        start = 0;
        // A frame in progress must finish quickly (slow clients cannot hold
        // sockets); between frames, a connection without an allocation may
        // idle only so long.
        let (deadline, reason) = if !seen_frame {
            (frame_deadline, "handshake_timeout")
        } else if !buf.is_empty() {
            if consumed {
                // The rest of this read starts the next frame.
                frame_deadline = tokio::time::Instant::now() + handshake;
            }
            (frame_deadline, "frame_timeout")
        } else {
            (tokio::time::Instant::now() + idle, "idle_timeout")
        };
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            // A large message is done: give its memory back.
            buf.shrink_to(READ_CHUNK);
        }
        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        if !charged.set(buf.capacity(), budget) {
            debug!(client = %ft.client, budget, "connection buffers over budget");
            return Some("memory_limit");
        }
        let was_empty = buf.is_empty();
        match tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return None,
            Ok(Ok(_)) => {
                if was_empty && seen_frame {
                    // First bytes of a new frame: its clock starts now.
                    frame_deadline = tokio::time::Instant::now() + handshake;
                }
            }
            Ok(Err(e)) => {
                debug!(client = %ft.client, error = %e, "read failed");
                return None;
            }
            Err(_)
                if reason == "idle_timeout"
                    && worker.with_server(|s, _, _| s.allocation(&ft).is_some()) => {}
            Err(_) => return Some(reason),
        }
    }
}

/// Writes queued frames until the queue closes or one write stays blocked
/// for `write_timeout` (the client stopped reading: then says so, and the
/// connection is cut with its allocation).
///
/// With `keep` set when the queue closes (a ConnectionBind made this a data
/// connection), the writer is handed back open instead.
async fn write_frames<W: AsyncWrite>(
    mut writer: tokio::io::WriteHalf<W>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    queued: Rc<Cell<usize>>,
    counts: Arc<ConnectionCounts>,
    write_timeout: Duration,
    keep: Rc<Cell<bool>>,
) -> (Option<&'static str>, Option<tokio::io::WriteHalf<W>>) {
    let mut verdict = None;
    let mut failed = false;
    while let Some(frame) = rx.recv().await {
        queued.set(queued.get().saturating_sub(frame.len()));
        counts.refund(frame.len());
        match tokio::time::timeout(write_timeout, writer.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                failed = true;
                break;
            }
            Err(_) => {
                verdict = Some("write_timeout");
                break;
            }
        }
    }
    if keep.get() && verdict.is_none() && !failed {
        return (None, Some(writer));
    }
    if verdict.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
    }
    (verdict, None)
}

/// Binds one worker's TCP listener socket (SO_REUSEPORT: each worker has
/// its own, the kernel spreads connections); an IPv6 one is IPv6-only, like
/// the UDP ones, so `0.0.0.0:3478` and `[::]:3478` can both be listed.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
