//! A bare UDP forwarder: the floor a TURN relay is measured against in
//! `bench/compare.sh`. It does what a relay's data plane does without any of
//! TURN: a client sends to the listener; the forwarder sends the bytes on
//! from a relay socket of that client's own to the client's peer; what the
//! peer sends back to the relay socket goes back to the client from the
//! listener. Same I/O shape as turnd's sharded data plane: one worker thread
//! per core, each a single-threaded tokio runtime with its own SO_REUSEPORT
//! listener (the kernel keeps a client's 5-tuple on one worker) and the relay
//! sockets of its clients. `--io batch` (the default) uses turnd's own
//! socket type, `turnd::net::batch::BatchSocket` (recvmmsg and GRO through
//! `quinn-udp` into one buffer per worker, readiness cleared on a short
//! batch); `--io plain` does one recv and one send per packet.
//! Either way a datagram is sent on with one `sendto`.
//!
//! A client registers first with `LGFWD1 IP:PORT` (its peer, which must be on
//! loopback) and gets `LGFWD1 OK`; `loadgen relay --raw-forwarder ADDR`
//! does that. Loopback only; clients capped; exits after --exit-after.

// The crate's clippy.toml forbids reading clocks outside net::clock (for the
// sans-IO core); this example is all I/O.
#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::net::UdpSocket;
use turnd::net::batch::{Batch, BatchSocket};

const REGISTER: &[u8] = b"LGFWD1 ";
const ACK: &[u8] = b"LGFWD1 OK";

/// Bare UDP forwarder (no TURN): the benchmark's baseline.
#[derive(Debug, Parser)]
#[command(name = "forwarder")]
struct Cli {
    /// Listener address (loopback); port 0 picks one (see --ready-file).
    #[arg(long, default_value = "127.0.0.1:3490")]
    listen: SocketAddr,
    /// Worker threads, each with its own SO_REUSEPORT listener socket
    /// (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// How datagrams are received.
    #[arg(long, value_enum, default_value_t = Io::Batch)]
    io: Io,
    /// Most clients (relay sockets) across all workers.
    #[arg(long, default_value_t = 20_000)]
    max_clients: usize,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    exit_after: u64,
    /// Write {"udp": ADDR, "workers": N} here once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Io {
    /// recvmmsg (and GRO) through quinn-udp, one buffer per worker.
    Batch,
    /// One recv_from per datagram.
    Plain,
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() {
        eprintln!("forwarder: --listen {} is not on loopback", cli.listen);
        return ExitCode::FAILURE;
    }
    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256);
    // The first socket fixes the port (when 0); the others join its group.
    let first = match listener(cli.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("forwarder: cannot bind {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let bound = match first.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("forwarder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sockets = vec![first];
    for _ in 1..workers {
        match listener(bound) {
            Ok(s) => sockets.push(s),
            Err(e) => {
                eprintln!("forwarder: cannot bind another listener on {bound}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let clients = Arc::new(AtomicUsize::new(0));
    let limit = Duration::from_secs(cli.exit_after);
    let mut threads = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let (clients, max, io) = (clients.clone(), cli.max_clients, cli.io);
        let spawned = std::thread::Builder::new()
            .name(format!("fwd-worker-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let run = async {
                        match io {
                            Io::Plain => worker(UdpSocket::from_std(sock)?, clients, max).await,
                            Io::Batch => batch_worker(sock, clients, max).await,
                        }
                    };
                    match tokio::time::timeout(limit, run).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                })
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("forwarder: cannot start a worker: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let io = format!("{:?}", cli.io).to_lowercase();
    let ready = serde_json::json!({ "udp": bound, "workers": workers, "io": io });
    eprintln!("forwarder: listening {ready}");
    if let Some(path) = &cli.ready_file {
        if let Err(e) = std::fs::write(path, ready.to_string()) {
            eprintln!("forwarder: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let mut code = ExitCode::SUCCESS;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("forwarder: worker failed: {e}");
                code = ExitCode::FAILURE;
            }
            Err(_) => code = ExitCode::FAILURE,
        }
    }
    code
}

/// One worker: its listener and the relay sockets of the clients the
/// kernel steered to it.
async fn worker(
    listener: UdpSocket,
    clients: Arc<AtomicUsize>,
    max_clients: usize,
) -> std::io::Result<()> {
    let listener = Arc::new(listener);
    let mut relays: HashMap<SocketAddr, (Arc<UdpSocket>, SocketAddr)> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = listener.recv_from(&mut buf).await?;
        if let Some((relay, peer)) = relays.get(&from) {
            let _ = relay.send_to(&buf[..n], *peer).await;
            continue;
        }
        let Some(peer) = registration(&buf[..n]) else {
            continue;
        };
        if clients.fetch_add(1, Ordering::Relaxed) >= max_clients {
            clients.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let relay = Arc::new(UdpSocket::bind(SocketAddr::new(peer.ip(), 0)).await?);
        tokio::spawn(back(relay.clone(), listener.clone(), from, peer));
        relays.insert(from, (relay, peer));
        let _ = listener.send_to(ACK, from).await;
    }
}

/// The peer a registration datagram names, if it is one.
fn registration(data: &[u8]) -> Option<SocketAddr> {
    data.strip_prefix(REGISTER)
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.parse::<SocketAddr>().ok())
        .filter(|p| p.ip().is_loopback())
}

/// Peer to client: what the peer sends to `relay` goes to `client` from the
/// listener. Ends with the worker's runtime.
async fn back(
    relay: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    peer: SocketAddr,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match relay.recv_from(&mut buf).await {
            Ok((n, from)) if from == peer => {
                let _ = listener.send_to(&buf[..n], client).await;
            }
            Ok(_) => {}
            // ICMP errors surface here; keep going (the runtime's end stops us).
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

type Shared = Rc<RefCell<Batch>>;

/// A worker in batch mode: turnd's own receive path ([`BatchSocket`]:
/// recvmmsg and GRO through quinn-udp, readiness cleared on a short batch,
/// one buffer per worker) and its send (one `sendto`, a full socket buffer
/// drops). The listener loop; relay sockets get a local task each.
async fn batch_worker(
    sock: std::net::UdpSocket,
    clients: Arc<AtomicUsize>,
    max_clients: usize,
) -> io::Result<()> {
    let listener = Rc::new(BatchSocket::new(sock)?);
    let batch: Shared = Rc::new(RefCell::new(Batch::default()));
    let mut relays: HashMap<SocketAddr, (Rc<BatchSocket>, SocketAddr)> = HashMap::new();
    let mut new_clients = Vec::new();
    loop {
        let mut readable = listener.readable().await?;
        let mut b = batch.borrow_mut();
        while let Ok(Some(n)) = readable.recv(&mut b) {
            for i in 0..n {
                let from = b.meta[i].addr;
                for d in b.datagrams(i) {
                    match relays.get(&from) {
                        Some((relay, peer)) => {
                            relay.send_to(d, *peer);
                        }
                        None => new_clients.extend(registration(d).map(|peer| (from, peer))),
                    }
                }
            }
        }
        drop(b);
        for (from, peer) in new_clients.drain(..) {
            if relays.contains_key(&from) {
                listener.send_to(ACK, from);
                continue;
            }
            if clients.fetch_add(1, Ordering::Relaxed) >= max_clients {
                clients.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let std_relay = std::net::UdpSocket::bind(SocketAddr::new(peer.ip(), 0))?;
            let relay = Rc::new(BatchSocket::new(std_relay)?);
            tokio::task::spawn_local(batch_back(
                relay.clone(),
                listener.clone(),
                batch.clone(),
                from,
                peer,
            ));
            relays.insert(from, (relay, peer));
            listener.send_to(ACK, from);
        }
    }
}

/// Peer to client in batch mode.
async fn batch_back(
    relay: Rc<BatchSocket>,
    listener: Rc<BatchSocket>,
    batch: Shared,
    client: SocketAddr,
    peer: SocketAddr,
) {
    loop {
        let Ok(mut readable) = relay.readable().await else {
            return;
        };
        let mut b = batch.borrow_mut();
        while let Ok(Some(n)) = readable.recv(&mut b) {
            for i in 0..n {
                if b.meta[i].addr != peer {
                    continue;
                }
                for d in b.datagrams(i) {
                    listener.send_to(d, client);
                }
            }
        }
    }
}
