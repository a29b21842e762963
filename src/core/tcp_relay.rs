//! TCP relaying (RFC 6062), the engine's side: Allocate with
//! REQUESTED-TRANSPORT TCP (§5.1, a listening relay socket), Connect (§5.2,
//! the server connects to the peer), ConnectionAttempt (§5.3, a peer
//! connected to the relayed address), ConnectionBind (§5.4, a client data
//! connection takes over a peer connection) and the 30 s a peer connection
//! waits for its ConnectionBind (§5.3).
//!
//! A peer connection has a CONNECTION-ID that is unique in the process:
//! the ConnectionBind comes on a new client connection, which the kernel
//! may hand to another worker than the allocation's. The [`Registry`] (in
//! [`super::global::Global`]) is therefore shared and locked per Connect,
//! ConnectionBind and close, never per byte: once bound, the shell copies
//! bytes between the two sockets without the engine.
//!
//! Sockets stay in the shell. The engine says what to do with them as
//! [`Command`]s: connect (`TcpConnect`), close (`TcpClose`), join a client
//! data connection to a peer connection (`TcpBind`); the shell reports the
//! outcome of a connect with [`Server::tcp_connected`], an inbound peer with
//! [`Server::tcp_peer_accepted`] and the end of a bound pair with
//! [`Server::tcp_data_closed`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::attributes::{ATTR_CONNECTION_ID, ATTR_XOR_PEER_ADDRESS};
use stun::message::{
    MessageType, CLASS_INDICATION, CLASS_SUCCESS_RESPONSE, METHOD_CONNECTION_ATTEMPT,
};
use tracing::{debug, info};

use super::command::Command;
use super::expiry::Timer;
use super::handlers::{reject, Authed, Reject};
use super::message::{self, Request};
use super::peer_policy::canonical;
use super::server::{Server, PERMISSION_LIFETIME};
pub use super::tcp_connections::{BindError, Entry, Registry, State, TcpUsage};
use super::{FiveTuple, Now, Outbox, RelaySockets, Source};

/// REQUESTED-TRANSPORT value for TCP: the IANA protocol number (RFC 6062 §5.1).
pub const PROTO_TCP: u8 = 6;
/// How long a peer connection waits for its ConnectionBind (RFC 6062 §5.3).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// A Connect waiting for the shell's connect: its two possible answers,
/// sealed in advance with the allocation's key.
#[derive(Debug)]
pub(super) struct PendingConnect {
    client: FiveTuple,
    success: Vec<u8>,
    failure: Vec<u8>,
}

/// This worker's part: which allocations are TCP ones, and the Connects
/// in flight.
#[derive(Debug, Default)]
pub(super) struct Local {
    pub(super) allocations: HashSet<FiveTuple>,
    pending: HashMap<u32, PendingConnect>,
}

/// The [`RelaySockets`] of a TCP allocation: `open` binds a listening TCP
/// socket rather than a UDP one; everything else is the shell's as usual.
pub(super) struct Listening<'a>(pub(super) &'a mut dyn RelaySockets);

impl RelaySockets for Listening<'_> {
    fn open(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        self.0.open_tcp(addr)
    }
    fn close(&mut self, addr: SocketAddr) {
        self.0.close(addr)
    }
    fn reserve(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        self.0.reserve(addr)
    }
    fn claim(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        self.0.claim(addr)
    }
    fn unreserve(&mut self, addr: SocketAddr) {
        self.0.unreserve(addr)
    }
    fn dont_fragment(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        self.0.dont_fragment(addr)
    }
}

/// The rules RFC 6062 §5.1 adds to an Allocate for TCP: only over TCP or
/// TLS, and without DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN (400).
pub(super) fn check_allocate(ft: FiveTuple, req: &Request) -> Result<(), u16> {
    use stun::attributes::{ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN};
    if !ft.transport.is_stream() {
        return Err(400);
    }
    if [ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN]
        .iter()
        .any(|t| req.get(*t).is_some())
    {
        return Err(400);
    }
    Ok(())
}

fn connection_id(req: &Request) -> Option<u32> {
    let b: [u8; 4] = req.get(ATTR_CONNECTION_ID)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

impl Server {
    /// Whether the allocation of control connection `ft` relays TCP.
    pub fn is_tcp_allocation(&self, ft: &FiveTuple) -> bool {
        self.tcp.allocations.contains(ft)
    }

    /// Connect (RFC 6062 §5.2): checks the peer as CreatePermission does,
    /// then asks the shell to connect. `Ok(None)`: the answer comes with
    /// [`Server::tcp_connected`].
    pub(super) fn connect(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
    ) -> Result<Option<Vec<u8>>, Reject> {
        let key = authed.key;
        let Some(alloc) = self.allocations.get(&ft) else {
            return Err(reject(437, key));
        };
        // Connect on a UDP allocation (coturn answers 403 too).
        if !self.tcp.allocations.contains(&ft) {
            return Err(reject(403, key));
        }
        let peer = req
            .get(ATTR_XOR_PEER_ADDRESS)
            .and_then(|v| req.xor_address(v))
            .ok_or_else(|| reject(400, key))?;
        // The relayed address of the peer's family (a dual-stack
        // allocation has two); none is 443 (check_peer_port).
        let relay = alloc.relay_for(peer);
        // Refusals aimed at our relay address draw on the same budget as
        // CreatePermission's and ChannelBind's: 403 or not tells which
        // relay ports turnd holds.
        let at_relay = self.is_own_relay_ip(canonical(peer.ip()));
        let (burst, interval) = (self.cfg.peer_refusal_burst, self.cfg.peer_refusal_interval);
        if at_relay {
            if let Some(alloc) = self.allocations.get_mut(&ft) {
                if !alloc.refusals.has_left(now.instant, burst, interval) {
                    self.metrics
                        .peer_denied
                        .with_label_values(&["refusal_limit"])
                        .inc();
                    return Err(reject(403, key));
                }
            }
        }
        let checked = self.check_peer_port(now, ft, &authed.username, relay, peer, key);
        if at_relay && checked.is_err() {
            if let Some(alloc) = self.allocations.get_mut(&ft) {
                alloc.refusals.spend();
            }
        }
        let peer = checked?;
        let Some(relay) = relay else {
            return Err(reject(443, key));
        };
        let registry = &self.global.tcp;
        if registry.has_peer(ft, peer) {
            return Err(reject(446, key));
        }
        if registry.count(ft) >= self.cfg.tcp_connections_per_allocation {
            let code = self.quota_rejected(now, ft, &authed.username, "tcp_connections", 508);
            return Err(reject(code, key));
        }
        let id = registry.insert(
            &mut self.rng,
            Entry {
                allocation: ft,
                username: authed.username,
                peer,
                state: State::Connecting,
            },
        );
        let mut ok = message::response(req, CLASS_SUCCESS_RESPONSE);
        ok.add(ATTR_CONNECTION_ID, &id.to_be_bytes());
        let failure = message::error_response(req, 447);
        self.tcp.pending.insert(
            id,
            PendingConnect {
                client: ft,
                success: message::finish(ok, Some(&key), req.has_fingerprint),
                failure: message::finish(failure, Some(&key), req.has_fingerprint),
            },
        );
        self.commands.push(Command::TcpConnect {
            id,
            relay,
            peer: self.hairpin(peer),
            timeout: self.cfg.tcp_connect_timeout,
        });
        debug!(client = %self.redact.show(ft.client), peer = %self.redact.show(peer), id, "connecting to peer");
        Ok(None)
    }

    /// The shell's connect of Connect `id` succeeded (`connected`) or
    /// failed or timed out. Returns whether the shell keeps the socket (a
    /// connect that outlived its allocation does not).
    pub fn tcp_connected(&mut self, now: Now, id: u32, connected: bool, out: &mut Outbox) -> bool {
        let Some(pending) = self.tcp.pending.remove(&id) else {
            return false;
        };
        let ft = pending.client;
        let registry = &self.global.tcp;
        if connected && registry.set_ready(id) {
            self.timers
                .schedule(Timer::TcpBind(id), now.instant + BIND_TIMEOUT);
            self.metrics.count_request("connect", None);
            self.metrics.tcp.count_opened("connect");
            if let Some(peer) = registry.get(id).map(|e| e.peer) {
                // The peer may answer on this connection: its IP has a
                // permission now, as after CreatePermission.
                let ip = canonical(peer.ip());
                if self.allocations.contains_key(&ft) {
                    let expires = now.instant + PERMISSION_LIFETIME;
                    if let Some(a) = self.allocations.get_mut(&ft) {
                        a.permissions.install(ip, expires);
                    }
                    self.timers.schedule(Timer::Permission(ft, ip), expires);
                }
                info!(client = %self.redact.show(ft.client), peer = %self.redact.show(peer), id, "TCP peer connection opened");
            }
            out.push(Source::Client(ft), ft.client, &pending.success);
            return true;
        }
        registry.remove(id);
        self.metrics
            .requests
            .with_label_values(&["connect", "447"])
            .inc();
        self.metrics.tcp.count_failed("connect_failed");
        debug!(client = %self.redact.show(ft.client), id, "connect to peer failed");
        out.push(Source::Client(ft), ft.client, &pending.failure);
        false
    }

    /// A peer connected to the relayed address `relay` from `peer` (RFC 6062
    /// §5.3): `Some(id)` and a ConnectionAttempt to the client when the
    /// peer has a permission, `None` (the shell closes it) otherwise.
    pub fn tcp_peer_accepted(
        &mut self,
        now: Now,
        relay: SocketAddr,
        peer: SocketAddr,
        out: &mut Outbox,
    ) -> Option<u32> {
        let peer = self.unhairpin(peer);
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        let Some(&ft) = self.by_relay_port.get(&relay.port()) else {
            self.metrics.tcp.count_failed("no_allocation");
            return None;
        };
        let own_ok = self.own_relay_port_ok(peer);
        let alloc = self.allocations.get(&ft)?;
        if !self.tcp.allocations.contains(&ft)
            || !alloc.has_permission(peer.ip(), now.instant)
            || !own_ok
        {
            self.metrics.tcp.count_failed("no_permission");
            debug!(client = %self.redact.show(ft.client), peer = %self.redact.show(peer), "TCP peer without permission refused");
            return None;
        }
        let registry = &self.global.tcp;
        if registry.has_peer(ft, peer) {
            self.metrics.tcp.count_failed("exists");
            return None;
        }
        if registry.count(ft) >= self.cfg.tcp_connections_per_allocation {
            self.metrics
                .quota_rejections
                .with_label_values(&["tcp_connections"])
                .inc();
            self.metrics.tcp.count_failed("limit");
            return None;
        }
        let id = registry.insert(
            &mut self.rng,
            Entry {
                allocation: ft,
                username: alloc.username.clone(),
                peer,
                state: State::Ready,
            },
        );
        self.timers
            .schedule(Timer::TcpBind(id), now.instant + BIND_TIMEOUT);
        self.metrics.tcp.count_opened("accept");
        let tid: [u8; 12] = rand::Rng::gen(&mut self.rng);
        let mut m = stun::message::Message::new();
        m.set_type(MessageType::new(
            METHOD_CONNECTION_ATTEMPT,
            CLASS_INDICATION,
        ));
        m.transaction_id.0 = tid;
        m.write_header();
        m.add(ATTR_CONNECTION_ID, &id.to_be_bytes());
        message::add_xor_address(&mut m, ATTR_XOR_PEER_ADDRESS, peer);
        out.push(Source::Client(ft), ft.client, &m.raw);
        info!(client = %self.redact.show(ft.client), peer = %self.redact.show(peer), id, "TCP peer connection accepted");
        Some(id)
    }

    /// Whether `nonce` of a ConnectionBind is one issued to the control
    /// connection of the allocation whose connection it names: clients
    /// (coturn's among them) reuse it on the new data connection, whose
    /// address differs (RFC 6062 §5.4 authenticates with the allocation's
    /// credentials). A ConnectionBind naming no connection passes too: it
    /// changes nothing and gets its 400 rather than a 438 first.
    pub(super) fn connection_bind_nonce_ok(&self, now: Now, req: &Request, nonce: &str) -> bool {
        if req.msg.typ.method != stun::message::METHOD_CONNECTION_BIND {
            return false;
        }
        let Some(entry) = connection_id(req).and_then(|id| self.global.tcp.get(id)) else {
            return true;
        };
        self.nonce_key.is_valid(
            nonce,
            now.unix_secs,
            entry.allocation.client,
            self.cfg.nonce_lifetime_s,
        )
    }

    /// ConnectionBind (RFC 6062 §5.4) on client data connection `ft`.
    pub(super) fn connection_bind(
        &mut self,
        now: Now,
        ft: FiveTuple,
        req: &Request,
        authed: Authed,
    ) -> Result<Vec<u8>, Reject> {
        let key = authed.key;
        // A data connection carries no allocation and must be a stream.
        if !ft.transport.is_stream() || self.allocations.contains_key(&ft) {
            return Err(reject(400, key));
        }
        let id = connection_id(req).ok_or_else(|| reject(400, key))?;
        let entry = match self.global.tcp.bind(id, &authed.username, ft) {
            Ok(entry) => entry,
            Err(BindError::Unknown) => {
                self.metrics.tcp.count_failed("bind_unknown");
                return Err(reject(400, key));
            }
            Err(BindError::WrongUser) => return Err(reject(441, key)),
        };
        self.commands.push(Command::TcpBind { id, data: ft });
        info!(client = %self.redact.show(ft.client), peer = %self.redact.show(entry.peer), id, "TCP data connection bound");
        let _ = now;
        let m = message::response(req, CLASS_SUCCESS_RESPONSE);
        Ok(message::finish(m, Some(&key), req.has_fingerprint))
    }

    /// The counters the shell adds what pair `id` copies to (the usage
    /// record of its allocation).
    pub fn tcp_usage(&self, id: u32) -> Option<Arc<TcpUsage>> {
        self.global.tcp.usage_of(id)
    }

    /// A bound pair ended (either side closed, or the shell closed it).
    pub fn tcp_data_closed(&mut self, id: u32) {
        if let Some(entry) = self.global.tcp.remove(id) {
            debug!(peer = %self.redact.show(entry.peer), id, "TCP data connection closed");
        }
    }

    /// No ConnectionBind within 30 s (RFC 6062 §5.3): the peer connection
    /// is closed.
    pub(super) fn tcp_bind_timeout(&mut self, id: u32) {
        if self.global.tcp.remove_if_unbound(id).is_some() {
            self.metrics.tcp.count_failed("bind_timeout");
            self.commands.push(Command::TcpClose(id));
            debug!(id, "TCP peer connection not bound in time: closed");
        }
    }

    /// Closes the peer connections whose peer the (reloaded) peer policy
    /// now denies, as permissions and channels to them end.
    pub(super) fn close_denied_tcp_connections(&mut self) {
        let allocations: Vec<FiveTuple> = self.tcp.allocations.iter().copied().collect();
        for ft in allocations {
            for (id, peer) in self.global.tcp.peers_of(ft) {
                let ip = canonical(peer.ip());
                if self.is_own_relay_ip(ip)
                    || !matches!(
                        self.cfg.peer_policy.check(ip),
                        super::peer_policy::Verdict::Denied(_)
                    )
                {
                    continue;
                }
                self.global.tcp.remove(id);
                self.tcp.pending.remove(&id);
                self.timers.cancel(Timer::TcpBind(id));
                self.commands.push(Command::TcpClose(id));
                info!(client = %self.redact.show(ft.client), peer = %self.redact.show(peer), id, "reload: TCP peer now denied, connection closed");
            }
        }
    }

    /// Ends the peer connections of allocation `ft` (it is being deleted).
    pub(super) fn close_tcp_connections(&mut self, ft: FiveTuple) {
        if !self.tcp.allocations.remove(&ft) {
            return;
        }
        let (ids, usage) = self.global.tcp.remove_allocation(ft);
        if let (Some(usage), Some(alloc)) = (usage, self.allocations.get_mut(&ft)) {
            usage.add_to(&mut alloc.usage);
        }
        for id in ids {
            self.tcp.pending.remove(&id);
            self.timers.cancel(Timer::TcpBind(id));
            self.commands.push(Command::TcpClose(id));
        }
    }
}
