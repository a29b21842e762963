//! Expiry times as data with an ordered index (RFC 8656 §7-§9 lifetimes):
//! allocations, permissions, channel bindings and port reservations each have
//! at most one entry, rescheduling replaces it, and the earliest is O(log n)
//! away. No timer task per permission.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use super::FiveTuple;

/// Something that lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    Allocation(FiveTuple),
    Permission(FiveTuple, IpAddr),
    /// A channel's number and peer are freed 5 minutes after the binding
    /// lapses (RFC 8656 §12).
    ChannelRelease(FiveTuple, u16),
    /// A channel binding lapses (RFC 8656 §12): it leaves the kernel path.
    ChannelLapse(FiveTuple, u16),
    Reservation(u64),
    /// A peer connection waits 30 s for its ConnectionBind (RFC 6062 §5.3).
    TcpBind(u32),
}

/// The index: each timer once, ordered by when it fires.
#[derive(Debug, Default)]
pub struct Expiries {
    order: BTreeSet<(Instant, Timer)>,
    at: HashMap<Timer, Instant>,
}

impl Expiries {
    /// Sets (or moves) `timer` to fire at `when`.
    pub fn schedule(&mut self, timer: Timer, when: Instant) {
        if let Some(old) = self.at.insert(timer, when) {
            self.order.remove(&(old, timer));
        }
        self.order.insert((when, timer));
    }

    /// Forgets `timer`.
    pub fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.at.remove(&timer) {
            self.order.remove(&(old, timer));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|(when, _)| *when)
    }

    /// Removes and returns one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (when, timer) = *self.order.first()?;
        if when > now {
            return None;
        }
        self.order.pop_first();
        self.at.remove(&timer);
        Some(timer)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Transport;
    use std::time::Duration;

    #[test]
    fn rescheduling_replaces_and_order_holds() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let ft = FiveTuple {
            client: "192.0.2.1:1".parse().unwrap(),
            server: "192.0.2.2:3478".parse().unwrap(),
            transport: Transport::Udp,
        };
        let mut e = Expiries::default();
        e.schedule(Timer::Allocation(ft), t0 + Duration::from_secs(10));
        e.schedule(Timer::Reservation(1), t0 + Duration::from_secs(5));
        e.schedule(Timer::Allocation(ft), t0 + Duration::from_secs(20));
        assert_eq!(e.len(), 2);
        assert_eq!(e.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            e.pop_due(t0 + Duration::from_secs(15)),
            Some(Timer::Reservation(1))
        );
        assert_eq!(
            e.pop_due(t0 + Duration::from_secs(15)),
            None,
            "moved to 20 s"
        );
        assert_eq!(
            e.pop_due(t0 + Duration::from_secs(20)),
            Some(Timer::Allocation(ft))
        );
        e.schedule(Timer::Reservation(2), t0);
        e.cancel(Timer::Reservation(2));
        assert!(e.is_empty());
    }
}
