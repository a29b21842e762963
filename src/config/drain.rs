//! `[drain]`: what SIGTERM does (graceful shutdown). New allocations are
//! refused at once (508, or 300 Try Alternate with ALTERNATE-SERVER, RFC
//! 8489 §14.15); existing ones keep relaying until they end or the timeout.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

/// `drain.timeout_s`: keep under systemd's TimeoutStopSec.
pub const DEFAULT_DRAIN_TIMEOUT_S: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Drain {
    /// Seconds to wait for allocations to end after SIGTERM; 0 exits at once.
    pub timeout_s: u32,
    /// Where to send clients while draining, as "IP:PORT" (a sibling node).
    #[serde(deserialize_with = "de_alternate")]
    pub alternate_server: Option<SocketAddr>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            timeout_s: DEFAULT_DRAIN_TIMEOUT_S,
            alternate_server: None,
        }
    }
}

pub(super) fn de_alternate<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "drain.alternate_server: {s:?} is not an IP:PORT (e.g. \"203.0.113.8:3478\")"
        ))
    })
}
