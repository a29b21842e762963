//! State every worker's engine shares: the quotas that span workers
//! (allocations per user and in total, RFC 8656 §7.2 step 8) and port
//! reservations (RESERVATION-TOKEN, §14.9), whose second allocation may
//! arrive on another worker. Touched per Allocate and per deletion, never
//! per packet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

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
    reservations: HashMap<u64, SocketAddr>,
}

/// Shared by all workers of one process.
#[derive(Debug, Default)]
pub struct Global {
    inner: Mutex<Inner>,
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
    pub fn total(&self) -> usize {
        self.lock().total
    }

    pub fn reserve(&self, token: u64, addr: SocketAddr) {
        self.lock().reservations.insert(token, addr);
    }

    /// Takes the reservation of `token` (claimed by an Allocate, or expired).
    pub fn take_reservation(&self, token: u64) -> Option<SocketAddr> {
        self.lock().reservations.remove(&token)
    }
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
        g.reserve(7, addr);
        assert_eq!(g.take_reservation(7), Some(addr));
        assert_eq!(g.take_reservation(7), None);
    }
}
