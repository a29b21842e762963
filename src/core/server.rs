//! The TURN server state machine (RFC 8656 §5-§12): demultiplexes what
//! clients and peers send, relays data, and expires state on time.
//! Requests are handled in [`super::handlers`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use stun::message::{CLASS_INDICATION, CLASS_REQUEST};
use tracing::{debug, info, trace};

use super::allocation::{Allocation, Flow, Usage};
use super::audit::{AuditKind, AuditLimit};
use super::auth::Credentials;
use super::bandwidth::{Caps, Over, Shaper, Way};
use super::classic::ChangeRequest;
use super::command::{ChannelBinding, Command};
use super::expiry::{Expiries, Timer};
use super::family::{Family, RelayIp};
use super::global::Global;
use super::kernel_usage::{KernelUsage, UsageRecord};
use super::message::{self, Inbound, CHANNEL_DATA_HEADER};
use super::nonce::NonceKey;
use super::peer_policy::{canonical, PeerPolicy};
use super::ports::Ports;
use super::rate_limit::{Limits, PrefixLimit};
use super::redact::Redactor;
use super::redirect::RedirectPolicy;
use super::{classic, handlers, indication, FiveTuple, Now, Outbox, RelaySockets, Source};
use crate::metrics::{Direction, Metrics};

/// Permission lifetime (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// How long a lapsed channel's number and peer stay reserved (RFC 8656 §12).
pub const CHANNEL_QUARANTINE: Duration = Duration::from_secs(300);
/// How long the odd port of an EVEN-PORT pair is held (RFC 8656 §14.9).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Largest UDP payload: what the relay can send in one IPv4 datagram
/// (65 535 minus the IPv4 and UDP headers).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// The same over IPv6 (the payload length excludes the fixed header).
const MAX_UDP6_PAYLOAD: usize = 65_527;

/// Everything the engine needs to know about its configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub credentials: Credentials,
    /// The relay address of the family an Allocate gets by default (IPv4
    /// when it is relayed, else IPv6): bound, and put in
    /// XOR-RELAYED-ADDRESS.
    pub relay_bind: IpAddr,
    pub relay_advertised: IpAddr,
    /// The relay address of the other family, when both are relayed
    /// (dual-stack, RFC 8656 §7.2).
    pub relay_other: Option<RelayIp>,
    /// The family of an Allocate without REQUESTED-ADDRESS-FAMILY: IPv4 by
    /// default (RFC 8656 §7.2), or `None` for the client's own family.
    pub default_family: Option<Family>,
    pub port_low: u16,
    pub port_high: u16,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub nonce_lifetime_s: u64,
    /// The password algorithms offered, in order (`[auth] algorithms`).
    pub algorithms: Vec<super::auth_sha256::Algorithm>,
    /// Concurrent allocations per REST user (the user part of `EXPIRY:USER`).
    pub allocations_per_user: usize,
    /// Static users with their own allocation limit; a static user not in
    /// here has none (only `allocations_total`).
    pub static_user_allocations: HashMap<String, usize>,
    pub allocations_total: usize,
    pub permissions_per_allocation: usize,
    pub channels_per_allocation: usize,
    pub peer_policy: PeerPolicy,
    /// The server's own listeners, never a valid peer (no relaying into
    /// ourselves). An unspecified IP stands for every local address.
    pub own_listeners: Vec<SocketAddr>,
    /// Unauthenticated UDP responses per source IP per second (0: no limit).
    pub unauthenticated_per_s: u32,
    pub unauthenticated_burst: u32,
    /// The same answers per source prefix (/24, /64 by default).
    pub prefix_rate_limit: PrefixLimit,
    /// Refused ChannelBind/CreatePermission requests an allocation may make
    /// at once (then one per `peer_refusal_interval`), so that probing which
    /// relay ports turnd holds takes hours (0: no limit).
    pub peer_refusal_burst: u32,
    pub peer_refusal_interval: Duration,
    /// Hide client and peer addresses and usernames in logs.
    pub redact_logs: bool,
    /// Redirects of new allocations for load (`[redirect]`).
    pub redirect: RedirectPolicy,
    /// Bandwidth caps ([`super::bandwidth`]).
    pub caps: Caps,
    /// Worker threads sharing the per-user and server caps (set by the
    /// shell; a reload keeps it).
    pub workers: usize,
    /// Peer connections (RFC 6062) one TCP allocation may have at once.
    pub tcp_connections_per_allocation: usize,
    /// How long the shell tries to connect to a peer for a Connect.
    pub tcp_connect_timeout: Duration,
}

impl CoreConfig {
    /// The relay address of `family`, if that family is relayed.
    pub fn relay_ip(&self, family: Family) -> Option<RelayIp> {
        self.relay_ips().find(|r| r.family() == family)
    }

    /// Every relay address, the primary family first.
    pub fn relay_ips(&self) -> impl Iterator<Item = RelayIp> {
        let primary = RelayIp {
            bind: self.relay_bind,
            advertised: self.relay_advertised,
        };
        std::iter::once(primary).chain(self.relay_other)
    }

    /// This config accepting REST credentials signed with `secret` too
    /// (the admin self-test page's, drawn at start and never configured).
    pub fn with_selftest_secret(mut self, secret: Option<&str>) -> Self {
        if let Some(secret) = secret {
            self.credentials = self.credentials.with_extra_rest_secret(secret.to_owned());
        }
        self
    }

    /// The limits of unauthenticated answers, per source and per prefix.
    pub fn rate_limits(&self) -> Limits {
        Limits {
            per_second: self.unauthenticated_per_s,
            burst: self.unauthenticated_burst,
            prefix: self.prefix_rate_limit,
        }
    }
}

/// Why an allocation ended (the `reason` label of
/// `turnd_allocations_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Expired,
    Deleted,
    Closed,
    Shutdown,
    /// Its credential or secret was removed or changed by a reload.
    Reload,
    /// Ended through the admin API.
    Admin,
    /// Its user was revoked.
    Revoked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::Closed => "closed",
            EndReason::Shutdown => "shutdown",
            EndReason::Reload => "reload",
            EndReason::Admin => "admin",
            EndReason::Revoked => "revoked",
        }
    }
}

/// Where draining sends new clients (ALTERNATE-SERVER, RFC 8489 §10): at
/// most one address per family, as a client may only be pointed at an
/// address of the family it came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alternates {
    pub v4: Option<SocketAddr>,
    pub v6: Option<SocketAddr>,
}

impl Alternates {
    /// The alternate of `client`'s family, if one is configured.
    pub fn for_client(&self, client: SocketAddr) -> Option<SocketAddr> {
        if canonical(client.ip()).is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }
}

impl From<Option<SocketAddr>> for Alternates {
    fn from(addr: Option<SocketAddr>) -> Self {
        match addr {
            Some(a) if a.is_ipv4() => Alternates {
                v4: Some(a),
                v6: None,
            },
            Some(a) => Alternates {
                v4: None,
                v6: Some(a),
            },
            None => Alternates::default(),
        }
    }
}

/// The engine. One per worker; it owns its allocations outright.
pub struct Server {
    pub(super) cfg: CoreConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) rng: StdRng,
    pub(super) nonce_key: NonceKey,
    pub(super) allocations: HashMap<FiveTuple, Allocation>,
    pub(super) by_relay_port: HashMap<u16, FiveTuple>,
    pub(super) ports: Ports,
    /// Quotas and reservations shared with the other workers.
    pub(super) global: Arc<Global>,
    pub(super) timers: Expiries,
    stats: RelayStats,
    /// Refusing new allocations (SIGTERM), pointing at `alternate` if set.
    pub(super) draining: bool,
    pub(super) alternate: Alternates,
    pub(super) redact: Redactor,
    /// Per-source limit on audit lines (interior: logged from `&self`).
    audit: std::cell::RefCell<AuditLimit>,
    /// Users refused by the operator ([`super::admin`]).
    pub(super) revoked: super::admin::Revocations,
    /// Channels announced to the shell as relayable ([`super::command`]).
    pub(super) installed: BTreeMap<(FiveTuple, u16), ChannelBinding>,
    /// Commands not yet taken by the shell.
    pub(super) commands: Vec<Command>,
    /// This worker's share of the bandwidth caps.
    pub(super) shaper: Shaper,
    /// TCP allocations and Connects in flight (RFC 6062).
    pub(super) tcp: super::tcp_relay::Local,
    /// Usage records waiting for a kernel fast path's last counts.
    pub(super) kernel_usage: KernelUsage,
    /// When the allocations' counters were last sampled for their rate,
    /// and this worker's share of the node's rate then.
    rate_sampled: Option<Instant>,
    rate_share: super::rate::Share,
}

/// Relayed packets and bytes, not yet in the metrics.
#[derive(Debug, Default)]
struct RelayStats {
    client_to_peer: Flow,
    peer_to_client: Flow,
    /// Of those, what went through IPv6 relayed addresses.
    client_to_peer_v6: Flow,
    peer_to_client_v6: Flow,
}

/// The log target of usage records.
pub const USAGE_TARGET: &str = "turnd::usage";

/// False when `peer` is on our relay address on a port turnd does not
/// hold, and the operator's `[peers] allow` does not name that address
/// (see [`Server::own_relay_port_ok`]). A free function so the packet path
/// can ask while it holds an allocation mutably.
fn relay_port_ok(cfg: &CoreConfig, global: &Global, peer: SocketAddr) -> bool {
    let ip = canonical(peer.ip());
    let own = cfg.relay_ips().any(|r| r.is(ip));
    !own || global.holds(peer.port()) || cfg.peer_policy.explicitly_allowed(ip)
}

impl Server {
    /// A server; `seed` feeds every random choice (nonce key, ports, tokens).
    pub fn new(
        cfg: CoreConfig,
        metrics: Arc<Metrics>,
        global: Arc<Global>,
        seed: [u8; 32],
    ) -> Self {
        let mut rng = StdRng::from_seed(seed);
        let nonce_key = NonceKey::new(*global.nonce_key.get_or_init(|| rand::Rng::gen(&mut rng)));
        let redact = Redactor::new(cfg.redact_logs.then(|| rand::Rng::gen(&mut rng)));
        let ports = Ports::new(cfg.port_low, cfg.port_high);
        global.set_rate_limit(cfg.rate_limits());
        metrics.relay_ports_total.set(ports.total() as i64);
        let shaper = Shaper::new(cfg.caps, cfg.workers);
        Server {
            shaper,
            rate_sampled: None,
            rate_share: Default::default(),
            cfg,
            metrics,
            rng,
            nonce_key,
            allocations: HashMap::new(),
            by_relay_port: HashMap::new(),
            ports,
            global,
            timers: Expiries::default(),
            stats: RelayStats::default(),
            draining: false,
            alternate: Alternates::default(),
            redact,
            audit: Default::default(),
            revoked: Default::default(),
            installed: BTreeMap::new(),
            commands: Vec::new(),
            tcp: Default::default(),
            kernel_usage: KernelUsage::default(),
        }
    }

    /// Takes a reloaded configuration (SIGHUP). Credentials, peer policy,
    /// quotas, lifetimes and rate limits change at once. What depended on
    /// something removed ends now: an allocation whose key the new
    /// credentials no longer give (static user removed or with a new
    /// password, REST secret removed), a permission or channel to a peer
    /// the new policy denies. The relay addresses, their default family
    /// and the port range need a restart, so the old ones are kept.
    pub fn reconfigure(&mut self, now: Now, mut cfg: CoreConfig, relays: &mut dyn RelaySockets) {
        cfg.relay_bind = self.cfg.relay_bind;
        cfg.relay_advertised = self.cfg.relay_advertised;
        cfg.relay_other = self.cfg.relay_other;
        cfg.default_family = self.cfg.default_family;
        cfg.port_low = self.cfg.port_low;
        cfg.port_high = self.cfg.port_high;
        cfg.own_listeners = std::mem::take(&mut self.cfg.own_listeners);
        cfg.workers = self.cfg.workers;
        self.shaper.set_caps(cfg.caps, cfg.workers);
        self.global.set_rate_limit(cfg.rate_limits());
        if cfg.redact_logs != self.cfg.redact_logs {
            self.redact = Redactor::new(cfg.redact_logs.then(|| rand::Rng::gen(&mut self.rng)));
        }
        self.cfg = cfg;
        self.end_what_reload_removed(now, relays);
        // Caps set or lifted: channels leave or return to the kernel path.
        self.sync_all_channels(now.instant);
    }

    fn end_what_reload_removed(&mut self, now: Now, relays: &mut dyn RelaySockets) {
        let creds = &self.cfg.credentials;
        // Time is not re-checked: a REST allocation outlives its
        // credential's expiry until it lapses, as without a reload.
        let orphaned: Vec<FiveTuple> = self
            .allocations
            .values()
            .filter(|a| {
                !creds
                    .current_secrets(&a.username, a.key.secret.algorithm())
                    .is_ok_and(|k| k.contains(&a.key.secret))
            })
            .map(|a| a.five_tuple)
            .collect();
        for ft in orphaned {
            if let Some(a) = self.allocations.get(&ft) {
                info!(client = %self.redact.show(ft.client), user = %self.redact.show(&a.username), "reload: credential removed or changed, ending its allocation");
            }
            self.delete_allocation(now, ft, EndReason::Reload, relays);
        }
        // Peers the new policy denies: out of the kernel path first
        // (binding_sync), then their permissions and channels end, and
        // their TCP connections (RFC 6062) close.
        self.withdraw_denied_peers(now.instant);
        self.close_denied_tcp_connections();
    }

    /// Starts draining: every new Allocate gets 508, or 300 Try Alternate
    /// with ALTERNATE-SERVER when an alternate of the client's family is
    /// given.
    pub fn drain(&mut self, alternate: impl Into<Alternates>) {
        self.draining = true;
        self.alternate = alternate.into();
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    pub fn allocation(&self, five_tuple: &FiveTuple) -> Option<&Allocation> {
        self.allocations.get(five_tuple)
    }

    /// When [`Server::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sample = self
            .rate_sampled
            .filter(|_| !self.allocations.is_empty() || self.rate_share != Default::default())
            .map(|t| t + super::rate::SAMPLE_INTERVAL);
        match (self.timers.next(), sample) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Samples every allocation's counters for its rate, once per
    /// [`super::rate::SAMPLE_INTERVAL`], and publishes this worker's share
    /// of the node's rate.
    fn sample_rates(&mut self, now: Instant) {
        if self
            .rate_sampled
            .is_some_and(|t| now.saturating_duration_since(t) < super::rate::SAMPLE_INTERVAL)
        {
            return;
        }
        self.rate_sampled = Some(now);
        let (mut up, mut down) = (0.0, 0.0);
        for a in self.allocations.values_mut() {
            a.rate.record(now, a.usage);
            let r = a.rate.rate();
            up += r.sent.bytes_per_s;
            down += r.received.bytes_per_s;
        }
        let share = super::rate::Share {
            client_to_peer: up as u64,
            peer_to_client: down as u64,
        };
        self.global.rate.update(self.rate_share, share);
        self.rate_share = share;
    }

    /// Whether an audit line about `ft`'s source may be written now:
    /// `Some(lines suppressed before it)`, or `None` (counted).
    pub(super) fn audit(&self, now: Now, ft: FiveTuple, kind: AuditKind) -> Option<u64> {
        let admitted = self.audit.borrow_mut().admit(ft.client.ip(), now.instant);
        if admitted.is_none() {
            self.metrics
                .log_lines_suppressed
                .with_label_values(&[kind.as_str()])
                .inc();
        }
        admitted
    }

    pub(super) fn drop_packet(&self, reason: &str) {
        self.metrics.count_drop(reason);
    }

    /// Bytes from a client on `five_tuple`.
    pub fn handle_client(
        &mut self,
        now: Now,
        five_tuple: FiveTuple,
        data: &[u8],
        relays: &mut dyn RelaySockets,
        out: &mut Outbox,
    ) {
        if indication::is_send(data) {
            return match indication::parse_send(data) {
                Ok(send) => self.send_indication(now, five_tuple, send.peer, send.data, out),
                Err(why) => self.drop_packet(why.as_str()),
            };
        }
        let inbound = match message::decode(data, five_tuple.transport.is_stream()) {
            Ok(inbound) => inbound,
            Err(why) => {
                trace!(client = %self.redact.show(five_tuple.client), reason = why.as_str(), "dropped");
                return self.drop_packet(why.as_str());
            }
        };
        match inbound {
            Inbound::ChannelData { number, data } => {
                self.channel_data_from_client(now, five_tuple, number, data, out)
            }
            Inbound::ClassicBinding {
                transaction_id,
                change,
            } => {
                if !self.unauthenticated_allowed(now, five_tuple) {
                    return;
                }
                self.metrics.count_binding(five_tuple.transport.as_str());
                let payload = if change == ChangeRequest::None {
                    self.metrics.count_request("binding", None);
                    classic::binding_response(&transaction_id, five_tuple.client)
                } else {
                    let code = if change == ChangeRequest::Malformed {
                        400
                    } else {
                        420
                    };
                    self.metrics.count_request("binding", Some(code));
                    classic::change_refused(&transaction_id, change)
                };
                out.push(Source::Client(five_tuple), five_tuple.client, &payload);
            }
            Inbound::Stun(mut req) => match req.class() {
                // Requests of methods turnd does not serve (a Send or Data
                // request) are discarded unanswered (RFC 8489 §6.3).
                CLASS_REQUEST if !handlers::serves(req.msg.typ.method) => {
                    self.drop_packet("unsupported_method")
                }
                CLASS_REQUEST => {
                    if let Some(payload) = self.handle_request(now, five_tuple, &mut req, relays) {
                        out.push(Source::Client(five_tuple), five_tuple.client, &payload);
                    }
                }
                // Send indications took the fast path above.
                // Binding indications are keepalives (RFC 8489 §6.3.2).
                CLASS_INDICATION if req.msg.typ.method == stun::message::METHOD_BINDING => {}
                _ => self.drop_packet("unknown_indication"),
            },
        }
    }

    /// Takes a rate-limit token for an unauthenticated response to a UDP
    /// source (stream sources cannot be spoofed); counts the drop if none.
    pub(super) fn unauthenticated_allowed(&mut self, now: Now, ft: FiveTuple) -> bool {
        if ft.transport.is_stream()
            || self
                .global
                .allow_unauthenticated(ft.client.ip(), now.instant)
        {
            return true;
        }
        self.drop_packet("rate_limited");
        false
    }

    /// Relays ChannelData from a client to the channel's peer (RFC 8656 §12.6).
    fn channel_data_from_client(
        &mut self,
        now: Now,
        ft: FiveTuple,
        number: u16,
        data: &[u8],
        out: &mut Outbox,
    ) {
        let Some(alloc) = self.allocations.get_mut(&ft) else {
            return self.drop_packet("no_allocation");
        };
        let Some(peer) = alloc.channel_peer(number, now.instant) else {
            return self.drop_packet("no_channel");
        };
        // Bound only after a check of its family (443 otherwise).
        let Some(relay) = alloc.relay_for(peer) else {
            return self.drop_packet("peer_family");
        };
        if !alloc.has_permission(canonical(peer.ip()), now.instant) {
            return self.drop_packet("no_permission");
        }
        // A channel to another allocation outlives that allocation: once its
        // port is released, whatever binds the port next must not be reached.
        if !relay_port_ok(&self.cfg, &self.global, peer) {
            self.metrics
                .peer_denied
                .with_label_values(&["own_address"])
                .inc();
            return self.drop_packet("no_permission");
        }
        if self.shaper.active() {
            if let Err(over) = self
                .shaper
                .admit_to(alloc, Way::ToPeer, data.len(), now.instant)
            {
                return self.over_cap(now, over);
            }
        }
        alloc.usage.sent.count(data.len());
        self.relay_to_peer(relay, peer, data, out);
    }

    /// Drops a packet over a bandwidth cap; over the server's capacity,
    /// new Allocates are refused for the next second or two.
    fn over_cap(&self, now: Now, over: Over) {
        if over == Over::Capacity {
            self.global.mark_saturated(now.unix_secs);
        }
        self.drop_packet("bandwidth_cap");
    }

    /// Whether the server's bandwidth capacity was exceeded just now (an
    /// Allocate is then refused or redirected).
    pub(super) fn saturated(&self, now: Now) -> bool {
        self.cfg.caps.capacity != 0 && self.global.saturated(now.unix_secs)
    }

    /// Relays a Send indication's DATA to its XOR-PEER-ADDRESS (RFC 8656 §11.2).
    fn send_indication(
        &mut self,
        now: Now,
        ft: FiveTuple,
        peer: SocketAddr,
        data: &[u8],
        out: &mut Outbox,
    ) {
        let Some(alloc) = self.allocations.get(&ft) else {
            return self.drop_packet("no_allocation");
        };
        // What CreatePermission answers with 443 cannot be sent (§11.2);
        // a dual allocation sends from the relayed address of the peer's
        // family.
        let Some(relay) = alloc.relay_for(peer) else {
            return self.drop_packet("peer_family");
        };
        if !alloc.has_permission(canonical(peer.ip()), now.instant) {
            return self.drop_packet("no_permission");
        }
        if self.is_own_listener(peer) || !self.own_relay_port_ok(peer) {
            self.metrics
                .peer_denied
                .with_label_values(&["own_address"])
                .inc();
            return self.drop_packet("no_permission");
        }
        let Some(alloc) = self.allocations.get_mut(&ft) else {
            return;
        };
        if self.shaper.active() {
            if let Err(over) = self
                .shaper
                .admit_to(alloc, Way::ToPeer, data.len(), now.instant)
            {
                return self.over_cap(now, over);
            }
        }
        alloc.usage.sent.count(data.len());
        self.relay_to_peer(relay, peer, data, out);
    }

    fn relay_to_peer(
        &mut self,
        relay: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        out: &mut Outbox,
    ) {
        // Over TCP or TLS a client may send up to 65 535 bytes of ChannelData
        // or DATA; one UDP datagram to the peer holds less.
        let max = if canonical(peer.ip()).is_ipv4() {
            MAX_UDP_PAYLOAD
        } else {
            MAX_UDP6_PAYLOAD
        };
        if data.len() > max {
            return self.drop_packet("too_big");
        }
        self.stats.client_to_peer.count(data.len());
        if relay.is_ipv6() {
            self.stats.client_to_peer_v6.count(data.len());
        }
        out.push_relayed(Source::Relay(relay), self.hairpin(peer), |buf| {
            buf.extend_from_slice(data)
        });
    }

    /// Behind a 1:1 NAT (`relay.external`), traffic from one of our
    /// allocations to another must not rely on the NAT hairpinning: it goes
    /// to the relay socket's local address instead (per family).
    pub(super) fn hairpin(&self, peer: SocketAddr) -> SocketAddr {
        let cfg = &self.cfg;
        if !(cfg.port_low..=cfg.port_high).contains(&peer.port()) {
            return peer;
        }
        let Some(r) = cfg
            .relay_ips()
            .find(|r| r.advertised == peer.ip() && r.advertised != r.bind)
        else {
            return peer;
        };
        let local = match r.bind {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(local, peer.port())
    }

    /// The inverse of [`Server::hairpin`]: a datagram from one of our own
    /// relay sockets, seen at its local address, is from its advertised one.
    pub(super) fn unhairpin(&self, peer: SocketAddr) -> SocketAddr {
        let cfg = &self.cfg;
        if !(cfg.port_low..=cfg.port_high).contains(&peer.port()) {
            return peer;
        }
        let ip = peer.ip();
        let local = |r: &RelayIp| {
            r.advertised != r.bind
                && r.family() == Family::of(ip)
                && (ip.is_loopback() || (ip == r.bind && !r.bind.is_unspecified()))
        };
        match cfg.relay_ips().find(local) {
            Some(r) => SocketAddr::new(r.advertised, peer.port()),
            None => peer,
        }
    }

    /// True when `ip` is an address our relay sockets are bound to or
    /// advertised at (of either family).
    pub(super) fn is_own_relay_ip(&self, ip: IpAddr) -> bool {
        self.cfg.relay_ips().any(|r| r.is(ip))
    }

    /// False when `peer` is on our relay address on a port turnd does not
    /// hold, and the operator's `[peers] allow` does not name that address:
    /// relaying to another allocation is always allowed, to other services
    /// of this host (DNS, NTP, a metrics agent on the public address) only
    /// if the operator said so. A public relay address passes the built-in
    /// list, so the built-in verdict is not enough here.
    pub(super) fn own_relay_port_ok(&self, peer: SocketAddr) -> bool {
        relay_port_ok(&self.cfg, &self.global, peer)
    }

    /// True when `peer` is one of our own listeners.
    pub(super) fn is_own_listener(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        self.cfg.own_listeners.iter().any(|l| {
            l.port() == peer.port()
                && (l.ip() == ip
                    || (l.ip().is_unspecified()
                        && (ip.is_loopback()
                            || self
                                .cfg
                                .relay_ips()
                                .any(|r| ip == r.advertised || ip == r.bind))))
        })
    }

    /// A datagram from `peer` arriving at the relay socket bound at `relay`
    /// (RFC 8656 §11.3, §12.6).
    pub fn handle_peer(
        &mut self,
        now: Now,
        relay: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        out: &mut Outbox,
    ) {
        let peer = self.unhairpin(peer);
        let Some(ft) = self.by_relay_port.get(&relay.port()) else {
            return self.drop_packet("no_allocation");
        };
        // The same own-address rule as towards the peer: a port of our
        // relay address that no allocation holds is not a peer.
        let own_ok = self.own_relay_port_ok(peer);
        let Some(alloc) = self.allocations.get_mut(ft) else {
            return self.drop_packet("no_allocation");
        };
        if !alloc.has_permission(canonical(peer.ip()), now.instant) || !own_ok {
            return self.drop_packet("no_permission");
        }
        if self.shaper.active() {
            if let Err(over) = self
                .shaper
                .admit_to(alloc, Way::ToClient, data.len(), now.instant)
            {
                return self.over_cap(now, over);
            }
        }
        let client = alloc.five_tuple;
        let source = Source::Client(client);
        let stream = client.transport.is_stream();
        match alloc.channel_for(peer, now.instant) {
            Some(number) => {
                let padded = if stream {
                    data.len().next_multiple_of(4)
                } else {
                    data.len()
                };
                if !stream && CHANNEL_DATA_HEADER + padded > MAX_UDP_PAYLOAD {
                    return self.drop_packet("too_big");
                }
                out.push_relayed(source, client.client, |buf| {
                    buf.extend_from_slice(&number.to_be_bytes());
                    buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    buf.extend_from_slice(data);
                    buf.resize(buf.len() + padded - data.len(), 0);
                });
            }
            None => {
                let len = indication::data_indication_len(peer, data);
                if (!stream && len > MAX_UDP_PAYLOAD) || len > usize::from(u16::MAX) + 20 {
                    return self.drop_packet("too_big");
                }
                let tid: [u8; 12] = rand::Rng::gen(&mut self.rng);
                out.push_relayed(source, client.client, |buf| {
                    indication::write_data(buf, &tid, peer, data)
                });
            }
        }
        alloc.usage.received.count(data.len());
        self.stats.peer_to_client.count(data.len());
        if relay.is_ipv6() {
            self.stats.peer_to_client_v6.count(data.len());
        }
    }

    /// An ICMP error drawn by a datagram sent from the relay socket at
    /// `relay` to `peer` (RFC 8656 §11.5): the client hears of it in a Data
    /// indication with an ICMP attribute if the peer has a permission.
    pub fn handle_icmp(
        &mut self,
        now: Now,
        relay: SocketAddr,
        peer: SocketAddr,
        icmp: indication::Icmp,
        out: &mut Outbox,
    ) {
        if !icmp.relayed() {
            return self.drop_packet("icmp_ignored");
        }
        let peer = self.unhairpin(peer);
        let Some(alloc) = self
            .by_relay_port
            .get(&relay.port())
            .and_then(|ft| self.allocations.get(ft))
        else {
            return self.drop_packet("no_allocation");
        };
        if !alloc.has_permission(canonical(peer.ip()), now.instant) {
            return self.drop_packet("no_permission");
        }
        let client = alloc.five_tuple;
        let tid: [u8; 12] = rand::Rng::gen(&mut self.rng);
        out.push_with(Source::Client(client), client.client, |buf| {
            indication::write_icmp(buf, &tid, peer, icmp)
        });
        self.metrics.icmp_relayed.inc();
        debug!(client = %self.redact.show(client.client), peer = %self.redact.show(peer), icmp_type = icmp.typ, icmp_code = icmp.code, "ICMP relayed");
    }

    /// Moves the relayed packet and byte counts into the metrics (they are
    /// summed locally so the per-packet path touches no shared cache line).
    pub fn flush_metrics(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        for (direction, c) in [
            (Direction::ClientToPeer, stats.client_to_peer),
            (Direction::PeerToClient, stats.peer_to_client),
        ] {
            if c.packets > 0 {
                self.metrics.count_relayed(direction, c.packets, c.bytes);
            }
        }
        for (direction, c) in [
            (Direction::ClientToPeer, stats.client_to_peer_v6),
            (Direction::PeerToClient, stats.peer_to_client_v6),
        ] {
            if c.packets > 0 {
                self.metrics
                    .count_relayed_ipv6(direction, c.packets, c.bytes);
            }
        }
    }

    /// Expires whatever is due at `now`, and flushes the relay counters.
    pub fn handle_timeout(&mut self, now: Now, relays: &mut dyn RelaySockets) {
        self.flush_metrics();
        self.sample_rates(now.instant);
        self.shaper.prune(now.instant);
        while let Some(timer) = self.timers.pop_due(now.instant) {
            match timer {
                Timer::Allocation(ft) => {
                    if self
                        .allocations
                        .get(&ft)
                        .is_some_and(|a| a.expires <= now.instant)
                    {
                        self.delete_allocation(now, ft, EndReason::Expired, relays);
                    }
                }
                Timer::Permission(ft, ip) => {
                    if let Some(a) = self.allocations.get_mut(&ft) {
                        if a.permissions.expire(ip, now.instant) {
                            debug!(client = %self.redact.show(ft.client), peer = %self.redact.show(ip), "permission expired");
                        }
                    }
                    self.sync_peer_ip(ft, ip, now.instant);
                }
                Timer::ChannelLapse(ft, number) => self.sync_channel(ft, number, now.instant),
                Timer::ChannelRelease(ft, number) => {
                    if let Some(a) = self.allocations.get_mut(&ft) {
                        a.remove_channel(number);
                    }
                    self.sync_channel(ft, number, now.instant);
                }
                Timer::TcpBind(id) => self.tcp_bind_timeout(id),
                Timer::Reservation(token) => {
                    if let Some((addr, owner)) = self.global.take_reservation(token) {
                        relays.unreserve(addr);
                        self.global.unhold(addr.port());
                        self.global.release(&owner);
                    }
                }
            }
        }
    }

    /// The client's connection (TCP/TLS) is gone: so is its allocation
    /// (RFC 8656 §3.1).
    pub fn close_connection(
        &mut self,
        now: Now,
        five_tuple: FiveTuple,
        relays: &mut dyn RelaySockets,
    ) {
        if self.allocations.contains_key(&five_tuple) {
            self.delete_allocation(now, five_tuple, EndReason::Closed, relays);
        }
    }

    /// Ends every allocation (process shutdown).
    pub fn shutdown(&mut self, now: Now, relays: &mut dyn RelaySockets) {
        let all: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        for ft in all {
            self.delete_allocation(now, ft, EndReason::Shutdown, relays);
        }
    }

    pub(super) fn delete_allocation(
        &mut self,
        now: Now,
        ft: FiveTuple,
        reason: EndReason,
        relays: &mut dyn RelaySockets,
    ) {
        if !self.allocations.contains_key(&ft) {
            return;
        }
        // Out of the kernel path first, then forgotten.
        let in_kernel = self.remove_channels_of(ft);
        self.close_tcp_connections(ft);
        let Some(alloc) = self.allocations.remove(&ft) else {
            return;
        };
        self.count_relayed_addresses(alloc.relays().map(|r| r.relay), false);
        for r in alloc.relays() {
            self.by_relay_port.remove(&r.relay.port());
            self.ports.release(r.relay.ip(), r.relay.port(), relays);
            self.global.unhold(r.relay.port());
        }
        self.global.release(&alloc.quota_key);
        self.timers.cancel(Timer::Allocation(ft));
        for ip in alloc.permissions.ips() {
            self.timers.cancel(Timer::Permission(ft, ip));
        }
        for number in alloc.channels.numbers() {
            self.timers.cancel(Timer::ChannelRelease(ft, number));
            self.timers.cancel(Timer::ChannelLapse(ft, number));
        }
        let transport = ft.transport.as_str();
        self.metrics
            .allocations_active
            .with_label_values(&[transport])
            .dec();
        self.metrics
            .allocations_ended
            .with_label_values(&[transport, reason.as_str()])
            .inc();
        info!(client = %self.redact.show(ft.client), %transport, relay = %alloc.advertised, reason = reason.as_str(), "allocation deleted");
        let duration = now.instant.saturating_duration_since(alloc.created);
        self.end_usage(UsageRecord::of(&alloc, duration, reason), in_kernel);
    }

    /// The usage record of an ended allocation (target `turnd::usage`): who,
    /// where, how long, and what it relayed each way, for billing and abuse
    /// handling (coturn's `usage:` line).
    pub(super) fn log_usage(&self, r: &UsageRecord) {
        let Usage { sent, received } = r.usage;
        info!(
            target: USAGE_TARGET,
            id = %format_args!("{:016x}", r.id),
            user = self.redact.show(&r.username).to_string().as_str(),
            transport = r.five_tuple.transport.as_str(),
            client = %self.redact.show(r.five_tuple.client),
            relay = %r.advertised,
            relay_additional = r.advertised_additional.map(tracing::field::display),
            start = r.created_unix,
            duration_s = r.duration.as_secs_f64(),
            sent_packets = sent.packets,
            sent_bytes = sent.bytes,
            received_packets = received.packets,
            received_bytes = received.bytes,
            reason = r.reason.as_str(),
            "usage"
        );
    }
}
