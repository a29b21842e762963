//! `[rate_limit]`: how many unauthenticated responses (Binding answers,
//! 401/438 challenges) one source IP gets over UDP, so turnd cannot be used
//! to amplify a flood at a spoofed address.

use serde::Deserialize;

/// `rate_limit.unauthenticated_per_s`.
pub const DEFAULT_UNAUTHENTICATED_PER_S: u32 = 100;
/// `rate_limit.unauthenticated_burst`.
pub const DEFAULT_UNAUTHENTICATED_BURST: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Average responses per second per source IP; 0 turns the limit off.
    pub unauthenticated_per_s: u32,
    /// Responses a source may get at once.
    pub unauthenticated_burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            unauthenticated_per_s: DEFAULT_UNAUTHENTICATED_PER_S,
            unauthenticated_burst: DEFAULT_UNAUTHENTICATED_BURST,
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
        Ok(())
    }
}
