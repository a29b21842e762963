//! One worker per core (DESIGN §5): a thread with its own single-threaded
//! runtime, its own SO_REUSEPORT listener sockets and its own engine. The
//! kernel keeps a client's 5-tuple on one listener socket, hence on one
//! worker; relay sockets belong to the worker of their allocation. Nothing
//! on the relay path is shared with another worker: no lock, no channel.
//! What is shared is in `core::global`: the held-port bitmap (atomics,
//! read per packet to a peer on our own address), the quotas and
//! reservations (one lock, per Allocate and per deletion), and the
//! unauthenticated-answer limiter (64 shards by source prefix, one shard
//! locked per Binding, 401 or 438 answer), plus the metrics' atomics.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::control::Phase;
use crate::core::CoreConfig;
use tokio::task::AbortHandle;

use super::batch::{Batch, BatchSocket};
use super::stream::ConnectionTx;
use super::{clock, Process};
use crate::admin::WorkerCmd;
use crate::core::server::EndReason;
use crate::core::{FiveTuple, Outbox, RelaySockets, Server, Source};

struct Relay {
    udp: Rc<BatchSocket>,
    reader: AbortHandle,
}

/// A worker's state; lives on its thread only.
pub struct Worker {
    pub process: Arc<Process>,
    server: RefCell<Server>,
    listeners: HashMap<SocketAddr, Rc<BatchSocket>>,
    relays: RefCell<HashMap<SocketAddr, Relay>>,
    /// Accept loops of TCP allocations' relayed addresses (RFC 6062).
    tcp_listeners: RefCell<HashMap<SocketAddr, AbortHandle>>,
    /// Client data connections whose ConnectionBind just succeeded, with
    /// their peer connection's id: the connection's reader switches to
    /// copying bytes.
    tcp_binds: RefCell<HashMap<FiveTuple, u32>>,
    connections: RefCell<HashMap<FiveTuple, ConnectionTx>>,
    batch: RefCell<Batch>,
    out: RefCell<Outbox>,
}

/// The shell's [`RelaySockets`] for one worker.
struct Relays<'a>(&'a Rc<Worker>);

impl RelaySockets for Relays<'_> {
    fn open(&mut self, addr: SocketAddr) -> io::Result<()> {
        let socket = super::descriptors::bind_relay(&self.0.process.metrics, addr)?;
        self.0.start_relay(addr, socket)?;
        self.0.process.metrics.relay_ports_in_use.inc();
        Ok(())
    }

    fn close(&mut self, addr: SocketAddr) {
        if let Some(relay) = self.0.relays.borrow_mut().remove(&addr) {
            relay.reader.abort();
            self.0.process.metrics.relay_ports_in_use.dec();
        }
        if let Some(accept) = self.0.tcp_listeners.borrow_mut().remove(&addr) {
            accept.abort();
            self.0.process.metrics.relay_ports_in_use.dec();
        }
    }

    fn open_tcp(&mut self, addr: SocketAddr) -> io::Result<()> {
        let listener = super::tcp_relay::bind_listener(addr).inspect_err(|e| {
            if super::descriptors::is_exhaustion(e) {
                super::descriptors::exhausted(&self.0.process.metrics, "allocate");
            }
        })?;
        let accept = tokio::task::spawn_local(super::tcp_relay::accept_peers(
            self.0.clone(),
            addr,
            listener,
        ));
        self.0
            .tcp_listeners
            .borrow_mut()
            .insert(addr, accept.abort_handle());
        self.0.process.metrics.relay_ports_in_use.inc();
        Ok(())
    }

    fn reserve(&mut self, addr: SocketAddr) -> io::Result<()> {
        let socket = super::descriptors::bind_relay(&self.0.process.metrics, addr)?;
        self.0.process.reserved().insert(addr, socket);
        self.0.process.metrics.relay_ports_in_use.inc();
        Ok(())
    }

    fn claim(&mut self, addr: SocketAddr) -> io::Result<()> {
        let socket = self.0.process.reserved().remove(&addr);
        let socket = socket.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.0.start_relay(addr, socket).inspect_err(|_| {
            self.0.process.metrics.relay_ports_in_use.dec();
        })
    }

    fn unreserve(&mut self, addr: SocketAddr) {
        if self.0.process.reserved().remove(&addr).is_some() {
            self.0.process.metrics.relay_ports_in_use.dec();
        }
    }

    fn dont_fragment(&mut self, addr: SocketAddr) -> io::Result<()> {
        let relays = self.0.relays.borrow();
        let relay = relays.get(&addr).ok_or(io::ErrorKind::NotFound)?;
        super::batch::set_dont_fragment(relay.udp.socket(), true)
    }
}

impl Worker {
    pub fn new(
        process: Arc<Process>,
        mut server: Server,
        listeners: HashMap<SocketAddr, Rc<BatchSocket>>,
    ) -> Rc<Self> {
        // Channels the kernel relays are accounted from its counters.
        server.set_kernel_accounting(process.offload.is_some());
        Rc::new(Worker {
            process,
            server: RefCell::new(server),
            listeners,
            relays: RefCell::default(),
            tcp_listeners: RefCell::default(),
            tcp_binds: RefCell::default(),
            connections: RefCell::default(),
            batch: RefCell::default(),
            out: RefCell::default(),
        })
    }

    fn start_relay(
        self: &Rc<Self>,
        addr: SocketAddr,
        socket: std::net::UdpSocket,
    ) -> io::Result<()> {
        let udp = Rc::new(BatchSocket::relay(socket)?);
        let reader =
            tokio::task::spawn_local(read_peers(self.clone(), addr, udp.clone())).abort_handle();
        self.relays.borrow_mut().insert(addr, Relay { udp, reader });
        Ok(())
    }

    /// Runs `f` on the engine with this worker's relay sockets at hand.
    pub fn with_server<R>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Server, &mut dyn RelaySockets, &mut Outbox) -> R,
    ) -> R {
        let mut server = self.server.borrow_mut();
        let mut out = self.out.borrow_mut();
        out.set_ecn(0);
        let r = f(&mut server, &mut Relays(self), &mut out);
        let commands = server.take_commands();
        let offload = self.process.offload.as_deref();
        for k in super::offload::apply_all(offload, &commands) {
            server.kernel_relayed(&k.binding, k.sent, k.received, true);
        }
        server.flush_kernel_usage();
        drop(server);
        self.flush(&mut out);
        self.apply_tcp(&commands);
        r
    }

    /// Carries out the engine's RFC 6062 commands.
    fn apply_tcp(self: &Rc<Self>, commands: &[crate::core::Command]) {
        use crate::core::Command;
        for command in commands {
            match *command {
                Command::TcpConnect {
                    id,
                    relay,
                    peer,
                    timeout,
                } => super::tcp_relay::start_connect(self, id, relay, peer, timeout),
                Command::TcpClose(id) => self.process.tcp.close(id),
                Command::TcpBind { id, data } => {
                    self.tcp_binds.borrow_mut().insert(data, id);
                }
                Command::ChannelInstalled(_) | Command::ChannelRemoved(_) => {}
            }
        }
    }

    /// The peer connection client data connection `ft` was just bound to.
    pub fn take_tcp_bind(&self, ft: &FiveTuple) -> Option<u32> {
        self.tcp_binds.borrow_mut().remove(ft)
    }

    /// Adds what the kernel relayed on this worker's channels since the
    /// last call into their allocations' usage.
    pub fn harvest_kernel(self: &Rc<Self>) {
        let Some(offload) = self.process.offload.as_deref() else {
            return;
        };
        let mut server = self.server.borrow_mut();
        for k in offload.harvest(server.installed_channels()) {
            server.kernel_relayed(&k.binding, k.sent, k.received, false);
        }
    }

    /// Sends what the engine queued. UDP sends never wait: a full socket
    /// buffer drops the datagram (counted), as the network would.
    fn flush(&self, out: &mut Outbox) {
        for (source, destination, payload, ecn) in out.iter_marked() {
            let sent = match source {
                Source::Client(ft) if ft.transport.is_stream() => {
                    let connections = self.connections.borrow();
                    connections.get(&ft).is_some_and(|tx| tx.try_send(payload))
                }
                Source::Client(ft) => self
                    .listener_of(ft.server)
                    .is_some_and(|(l, src_ip)| l.send(payload, destination, src_ip, ecn)),
                Source::Relay(addr) => {
                    let relays = self.relays.borrow();
                    relays
                        .get(&addr)
                        .is_some_and(|r| r.udp.send(payload, destination, None, ecn))
                }
            };
            if !sent {
                self.process.metrics.count_drop("send_failed");
            }
        }
        out.clear();
    }

    /// The listener socket that received on server address `server`, and
    /// the source address to send from when it is bound to a wildcard
    /// address: the 5-tuple's own, so replies, Data indications and
    /// ChannelData leave from the address the client talks to.
    fn listener_of(&self, server: SocketAddr) -> Option<(&BatchSocket, Option<IpAddr>)> {
        if let Some(l) = self.listeners.get(&server) {
            return Some((l, None));
        }
        let any: IpAddr = match server {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let l = self.listeners.get(&SocketAddr::new(any, server.port()))?;
        Some((l, Some(server.ip())))
    }

    pub fn register_connection(&self, ft: FiveTuple, tx: ConnectionTx) {
        self.connections.borrow_mut().insert(ft, tx);
    }

    pub fn unregister_connection(&self, ft: &FiveTuple) {
        self.connections.borrow_mut().remove(ft);
    }

    /// Receives batches on `udp` until it would block, handing each
    /// datagram to `handle`.
    async fn drain(
        self: &Rc<Self>,
        udp: &BatchSocket,
        mut handle: impl FnMut(
            &mut Server,
            &mut dyn RelaySockets,
            &mut Outbox,
            crate::core::Now,
            &quinn_udp::RecvMeta,
            &[u8],
        ),
    ) {
        loop {
            let Ok(mut readable) = udp.readable().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if readable.errored() {
                self.relay_icmp(udp);
            }
            let mut failed = false;
            for round in 1.. {
                // Under a flood the socket never runs dry: let this worker's
                // other sockets, its connections and its heartbeat run too.
                if round % MAX_BATCHES_PER_WAKEUP == 0 {
                    tokio::task::yield_now().await;
                }
                let mut batch = self.batch.borrow_mut();
                let n = match readable.recv(&mut batch) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "receive failed");
                        failed = true;
                        break;
                    }
                };
                let now = clock::now();
                // The relayed counters are summed per worker and published
                // by `expire` (at least once a second), not per batch: at
                // light load a batch is one packet, and two workers adding
                // to one shared counter per packet bounce its cache line.
                self.with_server(|server, relays, out| {
                    for i in 0..n {
                        let meta = &batch.meta[i];
                        out.set_ecn(meta.ecn.map_or(0, |e| e as u8));
                        for datagram in batch.datagrams(i) {
                            handle(server, relays, out, now, meta, datagram);
                        }
                    }
                });
            }
            if failed {
                // On a relay socket the error may be a queued ICMP error
                // (IP_RECVERR): read the queue so the next receive succeeds.
                self.relay_icmp(udp);
                // Readiness stays set to retry; a persistent error must not
                // become a hot spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

impl Worker {
    /// Answers the admin API (from this worker's own loop).
    fn admin(self: &Rc<Self>, cmd: WorkerCmd) {
        // Listings show what the kernel relayed up to now.
        self.harvest_kernel();
        let now = clock::now();
        self.with_server(|server, relays, _| match cmd {
            WorkerCmd::List { user, reply } => {
                let _ = reply.send(server.list_allocations(now, user.as_deref()));
            }
            WorkerCmd::End { id, reply } => {
                let _ = reply.send(server.end_allocation(now, id, relays));
            }
            WorkerCmd::EndUser { user, reply } => {
                let ended = server.end_user(now, &user, EndReason::Admin, relays);
                let _ = reply.send(ended);
            }
            WorkerCmd::Revocations(r) => server.set_revocations(now, r, relays),
        });
    }

    /// Hands the ICMP errors queued on relay socket `udp` to the engine
    /// (at most [`MAX_ICMP_PER_WAKEUP`] per wakeup: a flood of them must
    /// not starve the data path; the rest wait for the next wakeup).
    fn relay_icmp(self: &Rc<Self>, udp: &BatchSocket) {
        let Ok(relay) = udp.socket().local_addr() else {
            return;
        };
        let now = clock::now();
        self.with_server(|server, _, out| {
            for _ in 0..MAX_ICMP_PER_WAKEUP {
                let Some((peer, icmp)) = udp.icmp_error() else {
                    break;
                };
                server.handle_icmp(now, relay, peer, icmp, out);
            }
        });
    }
}

/// ICMP errors read from one relay socket per wakeup.
const MAX_ICMP_PER_WAKEUP: usize = 64;

/// Receive batches from one socket before giving the other tasks of the
/// worker a turn.
const MAX_BATCHES_PER_WAKEUP: usize = 16;

/// Client datagrams on one listener socket.
pub async fn serve_listener(worker: Rc<Worker>, local: SocketAddr) {
    let Some(udp) = worker.listeners.get(&local).cloned() else {
        return;
    };
    worker
        .drain(&udp, |server, relays, out, now, meta, datagram| {
            // On a wildcard listener the 5-tuple's server address is the one
            // the datagram came to (IP_PKTINFO), not 0.0.0.0 (RFC 8656 §2).
            let server_addr = match meta.dst_ip {
                Some(ip) if local.ip().is_unspecified() => SocketAddr::new(ip, local.port()),
                _ => local,
            };
            let ft = FiveTuple {
                client: meta.addr,
                server: server_addr,
                transport: crate::core::Transport::Udp,
            };
            server.handle_client(now, ft, datagram, relays, out);
        })
        .await;
}

/// What peers send to one relay socket.
async fn read_peers(worker: Rc<Worker>, relay: SocketAddr, udp: Rc<BatchSocket>) {
    worker
        .drain(&udp, |server, _, out, now, meta, datagram| {
            server.handle_peer(now, relay, meta.addr, datagram, out);
        })
        .await;
}

/// How often the kernel's per-binding counters are read into usage.
const KERNEL_HARVEST: Duration = Duration::from_secs(1);

/// Calls the engine's expiry on time and applies what the supervisor says
/// (a reloaded config, draining), until told to stop; then ends every
/// allocation of this worker.
pub async fn expire(
    worker: Rc<Worker>,
    id: usize,
    mut config: watch::Receiver<Arc<CoreConfig>>,
    mut phase: watch::Receiver<Phase>,
    mut admin: tokio::sync::mpsc::UnboundedReceiver<WorkerCmd>,
) {
    let mut harvested = clock::now().instant;
    loop {
        worker.process.heartbeats.beat(id);
        let now = clock::now();
        if now.instant.saturating_duration_since(harvested) >= KERNEL_HARVEST {
            worker.harvest_kernel();
            harvested = now.instant;
        }
        let next = worker.with_server(|server, relays, _| {
            server.handle_timeout(now, relays);
            server.poll_timeout()
        });
        let wait = next.map_or(Duration::from_secs(1), |t| {
            t.saturating_duration_since(now.instant)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait.clamp(Duration::from_millis(10), Duration::from_secs(1))) => {}
            Some(cmd) = admin.recv() => worker.admin(cmd),
            Ok(()) = config.changed() => {
                let cfg = (**config.borrow_and_update()).clone();
                worker.with_server(|server, relays, _| server.reconfigure(clock::now(), cfg, relays));
            }
            changed = phase.changed() => {
                // The supervisor gone (it failed before or while starting):
                // nobody will say Stop, so stop now rather than hang.
                let now_phase = match changed {
                    Ok(()) => *phase.borrow_and_update(),
                    Err(_) => Phase::Stop,
                };
                match now_phase {
                    Phase::Running => {}
                    Phase::Draining(alternate) => worker.with_server(|server, _, _| server.drain(alternate)),
                    Phase::Stop => break,
                }
            }
        }
    }
    worker.with_server(|server, relays, _| {
        server.shutdown(clock::now(), relays);
        server.flush_metrics();
    });
}
