//! State every worker's engine shares: the quotas that span workers
//! (allocations per user and in total, RFC 8656 §7.2 step 8) and port
//! reservations (RESERVATION-TOKEN, §14.9), whose second allocation may
//! arrive on another worker. Locked per Allocate and per deletion, never
//! per packet: the one per-packet question, whether a relay port is
//! turnd's, is a lock-free bitmap (the single authority on held ports).
//!
//! The per-source limit on unauthenticated answers (each Binding, 401 and
//! 438) is one logical limit for the process, since a source's ports
//! spread over workers; it is split into [`LIMITER_SHARDS`] independently
//! locked shards by source prefix, so two workers answering different
//! networks never wait for each other, and a source and its prefix always
//! share one shard (their buckets stay exact).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::rate_limit::{prefix_of, Limits, RateLimit, MAX_SOURCES};
use super::redirect::RoundRobin;

/// Which quota refused an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    User,
    Total,
}

#[derive(Debug, Default)]
struct Inner {
    per_user: HashMap<String, usize>,
    total: usize,
    /// Reserved relay address and the user whose quota slot it holds.
    reservations: HashMap<u64, (SocketAddr, String)>,
}

/// The per-source limit on unauthenticated answers, one for the process:
/// a source's ports spread over workers but share one bucket.
#[derive(Debug)]
struct Limiter {
    params: Limits,
    buckets: RateLimit,
}

/// Shards of the unauthenticated-answer limiter.
pub const LIMITER_SHARDS: usize = 64;

impl Limiter {
    fn new(params: Limits) -> Limiter {
        Limiter {
            params,
            buckets: RateLimit::with_capacity(params, MAX_SOURCES / LIMITER_SHARDS),
        }
    }
}

/// Shared by all workers of one process.
#[derive(Debug)]
pub struct Global {
    inner: Mutex<Inner>,
    /// The limiter's shards; [`Global::shard`] says which holds a source.
    limiter: Box<[Mutex<Limiter>]>,
    /// The prefix lengths (IPv4, IPv6) that pick a source's shard.
    shard_prefix: AtomicU16,
    /// Relay ports bound by any worker (allocations and reservations), one
    /// bit per port (8 KiB): read per ChannelData or Send to a peer on our
    /// own address, which is every packet of a relay-to-relay call.
    held: Box<[AtomicU64]>,
    /// Whose turn it is among the `[redirect]` alternates, node-wide.
    pub redirect_turn: RoundRobin,
    /// The node's relay rate, each worker adding its share once a second.
    pub rate: super::rate::NodeRate,
    /// Until when (Unix seconds) the server's bandwidth capacity counts
    /// as exceeded; written only when a packet is dropped for it, and then
    /// at most once a second per worker.
    saturated_until: AtomicU64,
    /// RFC 6062 peer connections, by CONNECTION-ID: a ConnectionBind may
    /// reach another worker than its allocation's.
    pub tcp: super::tcp_relay::Registry,
    /// The key every worker signs nonces with: one per process, so that a
    /// nonce stays valid whichever worker a client's next connection
    /// reaches (an RFC 6062 ConnectionBind reuses the control
    /// connection's).
    pub nonce_key: std::sync::OnceLock<[u8; 32]>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            held: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            redirect_turn: RoundRobin::default(),
            rate: Default::default(),
            saturated_until: AtomicU64::new(0),
            tcp: Default::default(),
            nonce_key: Default::default(),
            inner: Mutex::default(),
            limiter: (0..LIMITER_SHARDS)
                .map(|_| Mutex::new(Limiter::new(Limits::default())))
                .collect(),
            shard_prefix: AtomicU16::new(u16::from_be_bytes([24, 64])),
        }
    }
}

impl Global {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new allocation for `user` if both quotas allow it.
    pub fn admit(&self, user: &str, per_user: usize, total: usize) -> Result<(), QuotaExceeded> {
        let mut g = self.lock();
        if g.per_user.get(user).copied().unwrap_or(0) >= per_user {
            return Err(QuotaExceeded::User);
        }
        if g.total >= total {
            return Err(QuotaExceeded::Total);
        }
        *g.per_user.entry(user.to_string()).or_insert(0) += 1;
        g.total += 1;
        Ok(())
    }

    /// Un-counts an allocation of `user`.
    pub fn release(&self, user: &str) {
        let mut g = self.lock();
        if let Some(n) = g.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                g.per_user.remove(user);
            }
            g.total -= 1;
        }
    }

    /// Allocations counted, over all workers.
    /// A packet was dropped over the server's capacity at `unix_secs`:
    /// new Allocates are refused until the next second has passed.
    pub fn mark_saturated(&self, unix_secs: u64) {
        let until = unix_secs + 2;
        if self.saturated_until.load(Ordering::Relaxed) < until {
            self.saturated_until.store(until, Ordering::Relaxed);
        }
    }

    /// Whether a packet was dropped over the server's capacity within the
    /// last second or two.
    pub fn saturated(&self, unix_secs: u64) -> bool {
        self.saturated_until.load(Ordering::Relaxed) > unix_secs
    }

    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// Records a reservation that holds a quota slot of `user`.
    pub fn reserve(&self, token: u64, addr: SocketAddr, user: &str) {
        self.lock()
            .reservations
            .insert(token, (addr, user.to_string()));
    }

    /// Takes the reservation of `token` (claimed by an Allocate, or expired);
    /// the caller releases or transfers the user's slot.
    pub fn take_reservation(&self, token: u64) -> Option<(SocketAddr, String)> {
        self.lock().reservations.remove(&token)
    }

    /// Takes the reservation of `token` if `user` made it (RFC 8656 §14.9:
    /// the token is the reserving client's, not a bearer ticket); another
    /// user's claim leaves it in place.
    pub fn claim_reservation(&self, token: u64, user: &str) -> Option<SocketAddr> {
        let mut g = self.lock();
        match g.reservations.get(&token) {
            Some((_, owner)) if owner == user => g.reservations.remove(&token).map(|(a, _)| a),
            _ => None,
        }
    }

    /// Reservations not yet claimed or expired (each holds a quota slot).
    pub fn reservations(&self) -> usize {
        self.lock().reservations.len()
    }

    /// Notes that some worker holds relay `port`.
    pub fn hold(&self, port: u16) {
        let (word, bit) = held_bit(port);
        self.held[word].fetch_or(bit, Ordering::Release);
    }

    pub fn unhold(&self, port: u16) {
        let (word, bit) = held_bit(port);
        self.held[word].fetch_and(!bit, Ordering::Release);
    }

    /// Whether relay `port` belongs to turnd (relay-to-relay traffic may go
    /// there; other ports of our own address are other services).
    pub fn holds(&self, port: u16) -> bool {
        let (word, bit) = held_bit(port);
        self.held[word].load(Ordering::Acquire) & bit != 0
    }

    /// (Re)configures the unauthenticated-answer limit; buckets restart only
    /// when the numbers change.
    pub fn set_rate_limit(&self, limits: Limits) {
        let lengths = match (limits.prefix.ipv4_prefix, limits.prefix.ipv6_prefix) {
            (0, 0) => [24, 64],
            (v4, v6) => [v4, v6],
        };
        self.shard_prefix
            .store(u16::from_be_bytes(lengths), Ordering::Relaxed);
        for shard in self.limiter.iter() {
            let mut l = shard.lock().unwrap_or_else(|e| e.into_inner());
            if l.params != limits {
                *l = Limiter::new(limits);
            }
        }
    }

    /// Takes a token for an unauthenticated answer to `ip`.
    pub fn allow_unauthenticated(&self, ip: IpAddr, now: Instant) -> bool {
        let shard = &self.limiter[self.shard(ip)];
        let mut l = shard.lock().unwrap_or_else(|e| e.into_inner());
        l.buckets.allow(ip, now)
    }

    /// The limiter shard of `ip`: by its prefix as configured (a /24 and a
    /// /64 when the prefix limit is off), so an address and its prefix are
    /// counted in the same shard.
    fn shard(&self, ip: IpAddr) -> usize {
        let [v4, v6] = self.shard_prefix.load(Ordering::Relaxed).to_be_bytes();
        let bits = match prefix_of(ip, v4, v6) {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        // Fold, then a multiplicative hash (Fibonacci) into the shard index.
        let folded = (bits as u64) ^ ((bits >> 64) as u64);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % LIMITER_SHARDS
    }
}

/// The word of `Global::held` and the bit in it for `port`.
fn held_bit(port: u16) -> (usize, u64) {
    (usize::from(port / 64), 1 << (port % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_count_and_release() {
        let g = Global::default();
        assert_eq!(g.admit("a", 2, 3), Ok(()));
        assert_eq!(g.admit("a", 2, 3), Ok(()));
        assert_eq!(g.admit("a", 2, 3), Err(QuotaExceeded::User));
        assert_eq!(g.admit("b", 2, 3), Ok(()));
        assert_eq!(g.admit("c", 2, 3), Err(QuotaExceeded::Total));
        g.release("a");
        assert_eq!(g.total(), 2);
        assert_eq!(g.admit("c", 2, 3), Ok(()));
        g.release("nobody");
        assert_eq!(g.total(), 3);
    }

    #[test]
    fn a_reservation_is_taken_once() {
        let g = Global::default();
        let addr = "192.0.2.1:50001".parse().unwrap();
        g.reserve(7, addr, "alice");
        assert_eq!(g.claim_reservation(7, "mallory"), None, "not mallory's");
        assert_eq!(g.take_reservation(7), Some((addr, "alice".to_string())));
        assert_eq!(g.take_reservation(7), None);
    }

    #[test]
    fn a_source_and_its_prefix_share_a_shard_and_networks_spread() {
        let g = Global::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(g.shard(ip("192.0.2.1")), g.shard(ip("192.0.2.254")));
        assert_eq!(g.shard(ip("2001:db8::1")), g.shard(ip("2001:db8::ffff")));
        let shards: std::collections::HashSet<usize> = (0..=255u8)
            .map(|n| g.shard(IpAddr::from([10, 0, n, 1])))
            .collect();
        assert!(shards.len() > LIMITER_SHARDS / 2, "{} shards", shards.len());
        // One process-wide budget per source, whichever worker asks.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        g.set_rate_limit(Limits {
            per_second: 1,
            burst: 2,
            ..Limits::default()
        });
        let granted = (0..5)
            .filter(|_| g.allow_unauthenticated(ip("198.51.100.9"), t0))
            .count();
        assert_eq!(granted, 2);
    }

    #[test]
    fn held_ports_are_exact_bits() {
        let g = Global::default();
        let ports = [0, 1, 63, 64, 49152, 65534, 65535];
        for p in ports {
            assert!(!g.holds(p));
            g.hold(p);
        }
        for p in ports {
            assert!(g.holds(p), "{p}");
        }
        for p in [2, 62, 65, 49151, 49153, 65533] {
            assert!(!g.holds(p), "{p} was never held");
        }
        g.unhold(64);
        assert!(!g.holds(64));
        assert!(g.holds(63) && g.holds(0) && g.holds(65535));
    }
}
