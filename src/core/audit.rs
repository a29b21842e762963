//! Audit log: the refusals an operator must be able to trace to a user and a
//! client (failed authentication, RFC 8489 §9.2.4; quota rejections,
//! RFC 8656 §7.2 step 8; peer denials, RFC 8656 §9.2, §21), logged at info
//! under the target `turnd::audit` so they can be routed (and matched by
//! fail2ban, deploy/fail2ban/) on their own.
//!
//! A flood from one source must not flood the journal: each source IP may
//! write [`BURST`] lines at once and [`PER_SECOND`] on average; what is
//! over that is counted (`turnd_log_lines_suppressed_total{kind}`) and the
//! next line written for that source says how many were suppressed. The
//! limit is per worker (no lock shared with the other workers); a /24 or
//! /64 shares four times the budget of one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::rate_limit::{Limits, PrefixLimit, RateLimit};

/// The target audit lines are logged under.
pub const TARGET: &str = "turnd::audit";
/// Audit lines per source IP per second, on average.
pub const PER_SECOND: u32 = 2;
/// Audit lines per source IP at once.
pub const BURST: u32 = 10;
/// Sources whose suppressed count is remembered at once.
const MAX_SUPPRESSED: usize = 16_384;

/// What an audit line is about: the `kind` label of
/// `turnd_log_lines_suppressed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    AuthFailure,
    Quota,
    PeerDenied,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::AuthFailure => "auth_failure",
            AuditKind::Quota => "quota",
            AuditKind::PeerDenied => "peer_denied",
        }
    }
}

/// Per-source limit on audit lines, with what it held back.
#[derive(Debug)]
pub struct AuditLimit {
    buckets: RateLimit,
    suppressed: HashMap<IpAddr, u64>,
}

impl Default for AuditLimit {
    fn default() -> Self {
        AuditLimit {
            // Per source, and per /24 or /64 so that a host rotating
            // through its IPv6 prefix gets no fresh budget per address.
            buckets: RateLimit::new(Limits {
                per_second: PER_SECOND,
                burst: BURST,
                prefix: PrefixLimit {
                    per_second: 4 * PER_SECOND,
                    burst: 4 * BURST,
                    ipv4_prefix: 24,
                    ipv6_prefix: 64,
                },
            }),
            suppressed: HashMap::new(),
        }
    }
}

impl AuditLimit {
    /// `Some(n)` when a line about `ip` may be written now, `n` being how
    /// many were suppressed before it; `None` when this one is suppressed.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        if self.buckets.allow(ip, now) {
            return Some(self.suppressed.remove(&ip).unwrap_or(0));
        }
        if self.suppressed.len() >= MAX_SUPPRESSED && !self.suppressed.contains_key(&ip) {
            // Bounded memory under a flood from many sources: the counts
            // are lost, the metric still has them.
            self.suppressed.clear();
        }
        *self.suppressed.entry(ip).or_insert(0) += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_suppressed_then_the_count_is_reported() {
        let mut l = AuditLimit::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        #[allow(clippy::disallowed_methods)] // only the origin of virtual time
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(l.admit(ip, t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(l.admit(ip, t0), None);
        }
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(l.admit(other, t0), Some(0), "another source has its own");
        assert_eq!(l.admit(ip, t0 + Duration::from_secs(1)), Some(5));
        assert_eq!(l.admit(ip, t0 + Duration::from_secs(2)), Some(0));
    }
}
