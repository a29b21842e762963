//! Per-source rate limit on unauthenticated responses (RFC 8656 §21.1,
//! RFC 8489 §16.1.2 amplification): Binding answers and 401/438 challenges
//! cost an attacker nothing to trigger with a spoofed source, so each source
//! IP gets a token bucket. State is bounded: when the table is full, the
//! oldest buckets are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at once; past this, idle buckets are swept.
pub const MAX_SOURCES: usize = 65_536;
/// A bucket untouched this long is full again and can be forgotten.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The limit per source prefix: a /24 or a /64 is usually one network, so
/// its addresses share one budget on top of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixLimit {
    /// Answers per second per source prefix; 0 turns the prefix limit off.
    pub per_second: u32,
    pub burst: u32,
    /// Prefix lengths that group sources.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

/// The limits: per source address, and per source prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Answers per second per source IP; 0 turns the whole limit off.
    pub per_second: u32,
    pub burst: u32,
    pub prefix: PrefixLimit,
}

/// `ip` with the bits past its family's prefix length cleared.
pub fn prefix_of(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4)
                & u32::MAX
                    .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
                    .unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6)
                & u128::MAX
                    .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                    .unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// Token buckets keyed by an address (a source IP or a prefix).
#[derive(Debug)]
struct Buckets {
    per_second: f64,
    burst: f64,
    map: HashMap<IpAddr, Bucket>,
    /// Keys tracked at once; past this, idle buckets are swept.
    max: usize,
}

impl Buckets {
    fn new(per_second: u32, burst: u32, max: usize) -> Self {
        Buckets {
            per_second: per_second.into(),
            burst: burst.max(1).into(),
            map: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The bucket of `key`, refilled up to `now`.
    fn refill(&mut self, key: IpAddr, now: Instant) -> &mut Bucket {
        if self.map.len() >= self.max && !self.map.contains_key(&key) {
            self.map
                .retain(|_, b| now.saturating_duration_since(b.updated) < IDLE);
            if self.map.len() >= self.max {
                // Under a flood from more sources than we track, forget them
                // all rather than grow: each source starts with a full burst.
                self.map.clear();
            }
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let b = self.map.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.updated = now;
        b
    }
}

/// Token buckets by source IP and by source prefix.
#[derive(Debug)]
pub struct RateLimit {
    limits: Limits,
    by_ip: Buckets,
    by_prefix: Buckets,
}

impl RateLimit {
    /// Buckets per source IP only (no prefix budget).
    pub fn per_source(per_second: u32, burst: u32) -> Self {
        Self::new(Limits {
            per_second,
            burst,
            prefix: PrefixLimit::default(),
        })
    }

    pub fn new(limits: Limits) -> Self {
        Self::with_capacity(limits, MAX_SOURCES)
    }

    /// Buckets for at most `max` sources (and as many prefixes) at once.
    pub fn with_capacity(limits: Limits, max: usize) -> Self {
        RateLimit {
            limits,
            by_ip: Buckets::new(limits.per_second, limits.burst, max),
            by_prefix: Buckets::new(limits.prefix.per_second, limits.prefix.burst, max),
        }
    }

    /// Takes a token for `ip` (and its prefix); false means "do not answer".
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.limits.per_second == 0 {
            return true;
        }
        if self.by_ip.refill(ip, now).tokens < 1.0 {
            return false;
        }
        let p = self.limits.prefix;
        if p.per_second > 0 {
            let prefix = prefix_of(ip, p.ipv4_prefix, p.ipv6_prefix);
            let b = self.by_prefix.refill(prefix, now);
            if b.tokens < 1.0 {
                return false;
            }
            b.tokens -= 1.0;
        }
        if let Some(b) = self.by_ip.map.get_mut(&ip) {
            b.tokens -= 1.0;
        }
        true
    }

    pub fn sources(&self) -> usize {
        self.by_ip.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_shares_one_budget() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut rl = RateLimit::new(Limits {
            per_second: 10,
            burst: 3,
            prefix: PrefixLimit {
                per_second: 10,
                burst: 5,
                ipv4_prefix: 24,
                ipv6_prefix: 64,
            },
        });
        let granted = (1..=64u8)
            .flat_map(|i| std::iter::repeat_n(i, 3))
            .filter(|i| rl.allow(IpAddr::from([192, 0, 2, *i]), t0))
            .count();
        assert_eq!(granted, 5, "64 addresses of one /24 share its burst");
        assert!(rl.allow("192.0.3.1".parse().unwrap(), t0), "another /24");
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let granted = (0..20)
            .filter(|i| rl.allow(v6(&format!("2001:db8:0:1::{i:x}")), t0))
            .count();
        assert_eq!(granted, 5, "one /64 is one budget");
        assert!(rl.allow(v6("2001:db8:0:2::1"), t0));
        assert_eq!(
            prefix_of(v6("2001:db8:1:2:3:4:5:6"), 24, 48),
            v6("2001:db8:1::")
        );
        assert_eq!(
            prefix_of("198.51.100.77".parse().unwrap(), 0, 64),
            v6("0.0.0.0")
        );
    }

    #[test]
    fn burst_then_refill() {
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut rl = RateLimit::per_source(10, 3);
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
        assert!(RateLimit::per_source(0, 0).allow(ip, t0), "0 turns it off");
    }

    #[test]
    fn state_stays_bounded() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut rl = RateLimit::per_source(1, 1);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            rl.allow(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(rl.sources() <= MAX_SOURCES);
    }
}
