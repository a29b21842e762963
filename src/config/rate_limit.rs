//! `[rate_limit]`: how many unauthenticated responses (Binding answers,
//! 401/438 challenges) one source IP gets over UDP, so turnd cannot be used
//! to amplify a flood at a spoofed address; and how many all sources of one
//! prefix (/24, /64) get together, so spreading a flood over a network's
//! addresses does not multiply it.

use serde::Deserialize;

/// `rate_limit.unauthenticated_per_s`.
pub const DEFAULT_UNAUTHENTICATED_PER_S: u32 = 100;
/// `rate_limit.unauthenticated_burst`.
pub const DEFAULT_UNAUTHENTICATED_BURST: u32 = 200;
/// `rate_limit.prefix_per_s`: what all addresses of one prefix get together.
pub const DEFAULT_PREFIX_PER_S: u32 = 200;
/// `rate_limit.prefix_burst`.
pub const DEFAULT_PREFIX_BURST: u32 = 400;
/// `rate_limit.ipv4_prefix`: sources grouped by /24.
pub const DEFAULT_IPV4_PREFIX: u8 = 24;
/// `rate_limit.ipv6_prefix`: sources grouped by /64 (one LAN, RFC 4291 §2.5.4).
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Average responses per second per source IP; 0 turns the limit off.
    pub unauthenticated_per_s: u32,
    /// Responses a source may get at once.
    pub unauthenticated_burst: u32,
    /// Average responses per second to all sources of one prefix together;
    /// 0 turns the prefix limit off.
    pub prefix_per_s: u32,
    /// Responses one prefix may get at once.
    pub prefix_burst: u32,
    /// Prefix length grouping IPv4 sources (0-32).
    pub ipv4_prefix: u8,
    /// Prefix length grouping IPv6 sources (0-128).
    pub ipv6_prefix: u8,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            unauthenticated_per_s: DEFAULT_UNAUTHENTICATED_PER_S,
            unauthenticated_burst: DEFAULT_UNAUTHENTICATED_BURST,
            prefix_per_s: DEFAULT_PREFIX_PER_S,
            prefix_burst: DEFAULT_PREFIX_BURST,
            ipv4_prefix: DEFAULT_IPV4_PREFIX,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

impl RateLimit {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.unauthenticated_per_s > 0 && self.unauthenticated_burst == 0 {
            return Err(
                "rate_limit.unauthenticated_burst must be at least 1 when the limit is on".into(),
            );
        }
        if self.prefix_per_s > 0 && self.prefix_burst == 0 {
            return Err(
                "rate_limit.prefix_burst must be at least 1 when the prefix limit is on".into(),
            );
        }
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err(format!(
                "rate_limit.ipv4_prefix ({}) must be 0-32 and rate_limit.ipv6_prefix ({}) 0-128",
                self.ipv4_prefix, self.ipv6_prefix
            ));
        }
        Ok(())
    }
}
