//! What TCP and TLS clients may hold (RFC 8656 §3.1 transports): open
//! connections per source IP, per source prefix (an IPv4 /24, an IPv6 /64:
//! one host may own a whole /64) and in total, and the bytes buffered for
//! all connections together (read buffers and write queues), so that
//! clients that send large requests and never read cannot grow turnd's
//! memory past a budget however many addresses they come from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Connections;
use crate::core::rate_limit::prefix_of;

/// Open connections per source IP, per prefix and in total, and the bytes
/// buffered for them.
#[derive(Default)]
pub struct ConnectionCounts {
    open: Mutex<Open>,
    buffered: AtomicUsize,
}

#[derive(Default)]
struct Open {
    per_ip: HashMap<IpAddr, u32>,
    per_prefix: HashMap<IpAddr, u32>,
    total: u32,
}

/// Decrements `map[key]`, forgetting it at 0.
fn release(map: &mut HashMap<IpAddr, u32>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// A slot held by one connection, released on drop.
pub struct Slot {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
    prefix: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.lock();
        release(&mut open.per_ip, self.ip);
        release(&mut open.per_prefix, self.prefix);
        open.total = open.total.saturating_sub(1);
    }
}

impl ConnectionCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for `ip`, or says which limit is reached (the `reason`
    /// label of `turnd_connections_rejected_total`).
    pub fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &Connections,
    ) -> Result<Slot, &'static str> {
        if self.buffered() >= limits.buffer_budget() {
            return Err("memory_limit");
        }
        let mut open = self.lock();
        if open.total >= limits.max_total {
            return Err("total_limit");
        }
        if open.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_per_ip {
            return Err("per_ip_limit");
        }
        let prefix = prefix_of(ip, limits.ipv4_prefix, limits.ipv6_prefix);
        let per_prefix = if ip.is_ipv4() {
            limits.max_per_ipv4_prefix
        } else {
            limits.max_per_ipv6_prefix
        };
        if open.per_prefix.get(&prefix).copied().unwrap_or(0) >= per_prefix {
            return Err("per_prefix_limit");
        }
        *open.per_ip.entry(ip).or_insert(0) += 1;
        *open.per_prefix.entry(prefix).or_insert(0) += 1;
        open.total += 1;
        Ok(Slot {
            counts: self.clone(),
            ip,
            prefix,
        })
    }

    /// Bytes buffered for all connections now.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more if the total stays within `budget`.
    pub fn charge(&self, bytes: usize, budget: usize) -> bool {
        self.buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.checked_add(bytes)?;
                (after <= budget).then_some(after)
            })
            .is_ok()
    }

    /// Gives back `bytes` counted by [`Self::charge`].
    pub fn refund(&self, bytes: usize) {
        let _ = self
            .buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Connections {
        Connections {
            max_per_ip: 2,
            max_per_ipv4_prefix: 3,
            max_per_ipv6_prefix: 2,
            ..Connections::default()
        }
    }

    #[test]
    fn per_ip_per_prefix_and_total() {
        let c = Arc::new(ConnectionCounts::default());
        let l = limits();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = c.acquire(ip("192.0.2.1"), &l).unwrap();
        let _b = c.acquire(ip("192.0.2.1"), &l).unwrap();
        assert_eq!(c.acquire(ip("192.0.2.1"), &l).err(), Some("per_ip_limit"));
        let _d = c.acquire(ip("192.0.2.2"), &l).unwrap();
        assert_eq!(
            c.acquire(ip("192.0.2.3"), &l).err(),
            Some("per_prefix_limit"),
            "one /24"
        );
        assert!(c.acquire(ip("192.0.3.1"), &l).is_ok(), "another /24");
        drop(a);
        assert!(c.acquire(ip("192.0.2.3"), &l).is_ok(), "released");
        let _v = c.acquire(ip("2001:db8::1"), &l).unwrap();
        let _w = c.acquire(ip("2001:db8::2"), &l).unwrap();
        assert_eq!(
            c.acquire(ip("2001:db8::ffff:3"), &l).err(),
            Some("per_prefix_limit"),
            "one /64"
        );
    }

    #[test]
    fn the_buffer_budget_is_shared() {
        let c = Arc::new(ConnectionCounts::default());
        assert!(c.charge(600, 1000));
        assert!(!c.charge(600, 1000));
        assert!(c.charge(400, 1000));
        c.refund(500);
        assert_eq!(c.buffered(), 500);
        let l = Connections {
            buffer_budget_mib: 1,
            ..Connections::default()
        };
        assert!(c.charge(l.buffer_budget() - 500, l.buffer_budget()));
        assert_eq!(
            c.acquire("192.0.2.1".parse().unwrap(), &l).err(),
            Some("memory_limit")
        );
    }
}
