//! `[drain]`: what SIGTERM does (graceful shutdown). New allocations are
//! refused at once (508, or 300 Try Alternate with ALTERNATE-SERVER, RFC
//! 8489 §14.15); existing ones keep relaying until they end or the timeout.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use crate::core::Alternates;

/// `drain.timeout_s`: keep under systemd's TimeoutStopSec.
pub const DEFAULT_DRAIN_TIMEOUT_S: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Drain {
    /// Seconds to wait for allocations to end after SIGTERM; 0 exits at once.
    pub timeout_s: u32,
    /// Where to send clients while draining (a sibling node): "IP:PORT",
    /// or a list with one address per family; a client is only sent to an
    /// address of its own family (RFC 8489 §10).
    #[serde(deserialize_with = "de_alternate")]
    pub alternate_server: Alternates,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            timeout_s: DEFAULT_DRAIN_TIMEOUT_S,
            alternate_server: Alternates::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

pub(super) fn de_alternate<'de, D: Deserializer<'de>>(d: D) -> Result<Alternates, D::Error> {
    let list = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.is_empty() => vec![],
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    let mut alternates = Alternates::default();
    for s in list {
        let addr: SocketAddr = s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "drain.alternate_server: {s:?} is not an IP:PORT (e.g. \"203.0.113.8:3478\")"
            ))
        })?;
        let slot = if addr.is_ipv4() {
            &mut alternates.v4
        } else {
            &mut alternates.v6
        };
        if slot.replace(addr).is_some() {
            return Err(serde::de::Error::custom(format!(
                "drain.alternate_server: two addresses of one family ({s:?}); give one IPv4 and one IPv6"
            )));
        }
    }
    Ok(alternates)
}
