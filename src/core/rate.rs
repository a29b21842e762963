//! The current relay rate of each allocation (what the admin API lists)
//! and of the node (what `[redirect] bps_threshold` compares): an
//! allocation's usage counters (the payload it relayed each way, RFC 8656
//! §11-12) sampled about once a second from the engine's timer, the rate
//! being their change over the last [`WINDOW`]. The packet path is not
//! touched: the counters are those the usage records already keep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::allocation::{Flow, Usage};

/// How often the counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per allocation: the rate spans the last `SAMPLES - 1`
/// intervals.
const SAMPLES: usize = 6;
/// The window the rate is measured over (about; the samples are taken
/// when the engine's timer runs, at least once a second).
pub const WINDOW: Duration = Duration::from_secs((SAMPLES - 1) as u64);

/// Packets and bytes per second one way.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct FlowRate {
    pub packets_per_s: f64,
    pub bytes_per_s: f64,
}

impl FlowRate {
    fn between(old: Flow, new: Flow, secs: f64) -> Self {
        FlowRate {
            packets_per_s: new.packets.saturating_sub(old.packets) as f64 / secs,
            bytes_per_s: new.bytes.saturating_sub(old.bytes) as f64 / secs,
        }
    }
}

/// An allocation's rate each way (`sent`: client to peers).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Rate {
    pub sent: FlowRate,
    pub received: FlowRate,
}

/// The last few samples of one allocation's counters, in a ring.
#[derive(Debug, Clone)]
pub struct RateWindow {
    samples: [(Instant, Usage); SAMPLES],
    /// Index of the newest sample.
    newest: usize,
    /// Samples held (1..=SAMPLES).
    len: usize,
}

impl RateWindow {
    /// A window starting at the allocation's creation, with nothing relayed.
    pub fn new(created: Instant) -> Self {
        RateWindow {
            samples: [(created, Usage::default()); SAMPLES],
            newest: 0,
            len: 1,
        }
    }

    /// Records the counters as they are at `at`.
    pub fn record(&mut self, at: Instant, usage: Usage) {
        self.newest = (self.newest + 1) % SAMPLES;
        self.samples[self.newest] = (at, usage);
        self.len = (self.len + 1).min(SAMPLES);
    }

    /// The rate between the oldest and the newest sample; zero before the
    /// second sample.
    pub fn rate(&self) -> Rate {
        let oldest = (self.newest + SAMPLES - (self.len - 1)) % SAMPLES;
        let (t0, u0) = self.samples[oldest];
        let (t1, u1) = self.samples[self.newest];
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return Rate::default();
        }
        Rate {
            sent: FlowRate::between(u0.sent, u1.sent, secs),
            received: FlowRate::between(u0.received, u1.received, secs),
        }
    }
}

/// The node's relay rate in bytes per second each way, summed over the
/// workers: each adds the change of its own sum at every sample.
#[derive(Debug, Default)]
pub struct NodeRate {
    client_to_peer: AtomicU64,
    peer_to_client: AtomicU64,
}

/// One worker's share of [`NodeRate`], as last published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub client_to_peer: u64,
    pub peer_to_client: u64,
}

impl NodeRate {
    /// Replaces a worker's share `old` by `new`.
    pub fn update(&self, old: Share, new: Share) {
        for (total, o, n) in [
            (&self.client_to_peer, old.client_to_peer, new.client_to_peer),
            (&self.peer_to_client, old.peer_to_client, new.peer_to_client),
        ] {
            // Wrapping: the sum of all shares is what is left.
            total.fetch_add(n.wrapping_sub(o), Ordering::Relaxed);
        }
    }

    /// The larger direction, in bytes per second.
    pub fn busiest(&self) -> u64 {
        self.client_to_peer
            .load(Ordering::Relaxed)
            .max(self.peer_to_client.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(sent: u64, received: u64) -> Usage {
        Usage {
            sent: Flow {
                packets: sent / 100,
                bytes: sent,
            },
            received: Flow {
                packets: received / 100,
                bytes: received,
            },
        }
    }

    #[test]
    fn rate_over_the_window_then_zero_once_traffic_stops() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut w = RateWindow::new(t0);
        assert_eq!(w.rate(), Rate::default());
        w.record(s(1), usage(1000, 500));
        assert_eq!(w.rate().sent.bytes_per_s, 1000.0);
        assert_eq!(w.rate().received.packets_per_s, 5.0);
        for n in 2..=10 {
            w.record(s(n), usage(1000 * n, 500 * n));
        }
        assert_eq!(w.rate().sent.bytes_per_s, 1000.0);
        // Traffic stops: the rate falls, and is 0 once the window has passed.
        w.record(s(11), usage(10_000, 5000));
        assert_eq!(w.rate().sent.bytes_per_s, 4000.0 / 5.0);
        for n in 12..=16 {
            w.record(s(n), usage(10_000, 5000));
        }
        assert_eq!(w.rate(), Rate::default());
    }

    #[test]
    fn node_rate_sums_the_shares_of_workers() {
        let node = NodeRate::default();
        let a = Share {
            client_to_peer: 100,
            peer_to_client: 10,
        };
        let b = Share {
            client_to_peer: 50,
            peer_to_client: 500,
        };
        node.update(Share::default(), a);
        node.update(Share::default(), b);
        assert_eq!(node.busiest(), 510);
        node.update(b, Share::default());
        assert_eq!(node.busiest(), 100);
        node.update(a, Share::default());
        assert_eq!(node.busiest(), 0);
    }
}
