//! Bandwidth caps (`[quota] max_bps_per_allocation`, `max_bps_per_user`,
//! `bps_capacity`; coturn's `max-bps` and `bps-capacity`): token buckets on
//! the engine's virtual time, one per direction at each level. Not an RFC
//! mechanism; RFC 8656 §7.2 only allows a server to refuse allocations it
//! has no capacity for (508), which [`Shaper::saturated`] feeds.
//!
//! Rates are application payload bytes per second (as in coturn), counted
//! per relayed packet; a bucket holds at most one second of its rate, so a
//! fresh or idle flow may burst one second's worth. Packets over a cap are
//! dropped, never queued.
//!
//! Per-user and server-wide caps span the workers. So that the packet path
//! takes no lock and writes no shared cache line, each worker keeps its own
//! buckets at the cap divided by the number of workers. Accuracy: exact when
//! the traffic is spread evenly over the workers (the kernel spreads UDP
//! sources by hash); a user whose traffic all lands on one worker gets
//! 1/workers of its cap. The per-allocation cap is exact, as an allocation
//! lives on one worker.

use std::collections::HashMap;
use std::time::Instant;

/// Nano-bytes per byte: tokens are kept at this scale so that refills are
/// exact integers (rate × elapsed nanoseconds).
const SCALE: u128 = 1_000_000_000;

/// The caps, in bytes per second; 0 is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub per_allocation: u64,
    pub per_user: u64,
    pub capacity: u64,
}

impl Caps {
    /// Whether any cap is set (then no channel is offloaded to the kernel,
    /// which would bypass the buckets).
    pub fn any(&self) -> bool {
        self.per_allocation | self.per_user | self.capacity != 0
    }
}

/// Which way a packet is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    ToPeer = 0,
    ToClient = 1,
}

/// One token bucket; its rate is given at each use so that a reload
/// changes it at once. Starts full.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    /// Tokens spent below full, in nano-bytes (0: full).
    debt: u128,
    last: Option<Instant>,
}

impl Bucket {
    /// Refills for the time since the last use.
    fn refill(&mut self, rate: u64, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_nanos();
            self.debt = self.debt.saturating_sub(u128::from(rate) * elapsed);
        }
        self.debt = self.debt.min(u128::from(rate) * SCALE);
        self.last = Some(now.max(self.last.unwrap_or(now)));
    }

    fn has(&self, rate: u64, bytes: usize) -> bool {
        self.debt + bytes as u128 * SCALE <= u128::from(rate) * SCALE
    }

    fn take(&mut self, bytes: usize) {
        self.debt += bytes as u128 * SCALE;
    }

    /// Whether the bucket is full at `now` (then forgetting it loses nothing).
    fn full(&self, rate: u64, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.debt == 0
    }
}

/// An allocation's buckets, one per direction.
pub type AllocationBuckets = [Bucket; 2];

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Allocation,
    User,
    Capacity,
}

/// One worker's share of the caps and its per-user and server buckets.
#[derive(Debug, Default)]
pub struct Shaper {
    caps: Caps,
    workers: u64,
    users: HashMap<String, [Bucket; 2]>,
    server: [Bucket; 2],
}

impl Shaper {
    pub fn new(caps: Caps, workers: usize) -> Self {
        Shaper {
            caps,
            workers: workers.max(1) as u64,
            ..Shaper::default()
        }
    }

    /// New caps (reload); the buckets keep their state.
    pub fn set_caps(&mut self, caps: Caps, workers: usize) {
        self.caps = caps;
        self.workers = workers.max(1) as u64;
        if caps.per_user == 0 {
            self.users.clear();
        }
    }

    /// Whether any cap is set: the one branch the packet path takes when
    /// none is.
    pub fn active(&self) -> bool {
        self.caps.any()
    }

    /// This worker's share of a cross-worker cap (at least 1 byte/s).
    fn share(&self, cap: u64) -> u64 {
        (cap / self.workers).max(1)
    }

    /// Admits `bytes` of `user`'s allocation `alloc` going `way` at `now`,
    /// taking tokens from every capped level, or none if any level is short.
    pub fn admit(
        &mut self,
        alloc: &mut AllocationBuckets,
        user: &str,
        way: Way,
        bytes: usize,
        now: Instant,
    ) -> Result<(), Over> {
        let i = way as usize;
        let caps = self.caps;
        let (user_rate, server_rate) = (self.share(caps.per_user), self.share(caps.capacity));
        if caps.per_allocation != 0 {
            alloc[i].refill(caps.per_allocation, now);
            if !alloc[i].has(caps.per_allocation, bytes) {
                return Err(Over::Allocation);
            }
        }
        let mut user_bucket = None;
        if caps.per_user != 0 {
            if !self.users.contains_key(user) {
                self.users.insert(user.to_owned(), Default::default());
            }
            let b = &mut self.users.get_mut(user).expect("inserted")[i];
            b.refill(user_rate, now);
            if !b.has(user_rate, bytes) {
                return Err(Over::User);
            }
            user_bucket = Some(b);
        }
        if caps.capacity != 0 {
            let s = &mut self.server[i];
            s.refill(server_rate, now);
            if !s.has(server_rate, bytes) {
                return Err(Over::Capacity);
            }
            s.take(bytes);
        }
        if let Some(b) = user_bucket {
            b.take(bytes);
        }
        if caps.per_allocation != 0 {
            alloc[i].take(bytes);
        }
        Ok(())
    }

    /// [`Shaper::admit`] for allocation `a`.
    pub fn admit_to(
        &mut self,
        a: &mut super::allocation::Allocation,
        way: Way,
        bytes: usize,
        now: Instant,
    ) -> Result<(), Over> {
        self.admit(&mut a.buckets, &a.quota_key, way, bytes, now)
    }

    /// Forgets per-user buckets that are full again (idle users).
    pub fn prune(&mut self, now: Instant) {
        if self.users.is_empty() {
            return;
        }
        let rate = self.share(self.caps.per_user);
        self.users
            .retain(|_, b| !(b[0].full(rate, now) && b[1].full(rate, now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_one_second_then_its_rate() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let mut s = Shaper::new(
            Caps {
                per_allocation: 1000,
                ..Caps::default()
            },
            4,
        );
        let mut a = AllocationBuckets::default();
        let sent = (0..20)
            .filter(|_| s.admit(&mut a, "u", Way::ToPeer, 100, t0).is_ok())
            .count();
        assert_eq!(sent, 10, "a full bucket: one second's worth");
        assert_eq!(
            s.admit(&mut a, "u", Way::ToClient, 100, t0),
            Ok(()),
            "directions are separate"
        );
        let t = t0 + Duration::from_millis(250);
        assert!(s.admit(&mut a, "u", Way::ToPeer, 250, t).is_ok());
        assert_eq!(
            s.admit(&mut a, "u", Way::ToPeer, 1, t),
            Err(Over::Allocation)
        );
    }

    #[test]
    fn user_and_capacity_are_shared_per_worker_and_refuse_all_or_nothing() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let mut s = Shaper::new(
            Caps {
                per_allocation: 1000,
                per_user: 2000,
                capacity: 0,
            },
            2,
        );
        let (mut a, mut b) = (AllocationBuckets::default(), AllocationBuckets::default());
        assert!(s.admit(&mut a, "u", Way::ToPeer, 600, t0).is_ok());
        assert!(s.admit(&mut b, "u", Way::ToPeer, 400, t0).is_ok());
        assert_eq!(s.admit(&mut b, "u", Way::ToPeer, 1, t0), Err(Over::User));
        assert!(s.admit(&mut b, "v", Way::ToPeer, 600, t0).is_ok());
        // b's own bucket was not charged by the refused byte.
        assert_eq!(b[0].debt, 1000 * SCALE);
        s.prune(t0 + Duration::from_secs(1));
        assert!(s.users.is_empty(), "full again: forgotten");
    }
}
