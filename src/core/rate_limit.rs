//! Per-source rate limit on unauthenticated responses (RFC 8656 §21.1,
//! RFC 8489 §16.1.2 amplification): Binding answers and 401/438 challenges
//! cost an attacker nothing to trigger with a spoofed source, so each source
//! IP gets a token bucket. State is bounded: when the table is full, the
//! oldest buckets are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at once; past this, idle buckets are swept.
const MAX_SOURCES: usize = 65_536;
/// A bucket untouched this long is full again and can be forgotten.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by source IP.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimit {
    /// `per_second` responses per source on average, `burst` at once; a
    /// `per_second` of 0 turns the limit off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: per_second.into(),
            burst: burst.max(1).into(),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `ip`; false means "do not answer".
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.updated) < IDLE);
            if self.buckets.len() >= MAX_SOURCES {
                // Under a flood from more sources than we track, forget them
                // all rather than grow: each source starts with a full burst.
                self.buckets.clear();
            }
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut rl = RateLimit::new(10, 3);
        assert!((0..3).all(|_| rl.allow(ip, t0)));
        assert!(!rl.allow(ip, t0));
        assert!(
            rl.allow("192.0.2.2".parse().unwrap(), t0),
            "other sources unaffected"
        );
        assert!(
            rl.allow(ip, t0 + Duration::from_millis(100)),
            "one token after 100 ms"
        );
        assert!(!rl.allow(ip, t0 + Duration::from_millis(100)));
        assert!(RateLimit::new(0, 0).allow(ip, t0), "0 turns it off");
    }

    #[test]
    fn state_stays_bounded() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut rl = RateLimit::new(1, 1);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            rl.allow(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(rl.sources() <= MAX_SOURCES);
    }
}
