//! `[redirect]`: send new allocations to other nodes while this one holds
//! many (RFC 8489 §10: 300 Try Alternate with ALTERNATE-SERVER, and
//! ALTERNATE-DOMAIN for TLS clients), as coturn's `alternate-server` does.
//! Existing allocations stay; the alternates take turns (round robin).

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use crate::core::redirect::{Alternate, RedirectPolicy};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redirect {
    /// From this many allocations on this node on, new Allocates are
    /// redirected; 0 (the default) never.
    pub allocations_threshold: u32,
    /// From this relay rate of the node on (payload bytes per second in
    /// its busier direction, over the last 5 s), new Allocates are
    /// redirected; 0 (the default) never.
    pub bps_threshold: u64,
    /// The nodes to send clients to: "IP:PORT", or
    /// `{ address = "IP:PORT", domain = "turn2.example.com" }` to also send
    /// TLS clients there (they need the name to check its certificate).
    #[serde(deserialize_with = "de_alternates")]
    pub alternates: Vec<Alternate>,
}

impl Redirect {
    /// The engine's view.
    pub fn policy(&self) -> RedirectPolicy {
        RedirectPolicy {
            allocations_threshold: self.allocations_threshold as usize,
            bps_threshold: self.bps_threshold,
            alternates: self.alternates.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAlternate {
    Address(String),
    Table(RawAlternateTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlternateTable {
    address: String,
    #[serde(default)]
    domain: Option<String>,
}

fn de_alternates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Alternate>, D::Error> {
    let raw = Vec::<RawAlternate>::deserialize(d)?;
    raw.into_iter()
        .map(|r| {
            let (address, domain) = match r {
                RawAlternate::Address(a) => (a, None),
                RawAlternate::Table(t) => (t.address, t.domain),
            };
            let address: SocketAddr = address.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "redirect.alternates: {address:?} is not an IP:PORT (e.g. \"203.0.113.8:3478\")"
                ))
            })?;
            if let Some(d) = &domain {
                if d.is_empty() || d.len() > 253 || d.contains(|c: char| c.is_whitespace()) {
                    return Err(serde::de::Error::custom(format!(
                        "redirect.alternates: domain {d:?} is not a host name"
                    )));
                }
            }
            Ok(Alternate { address, domain })
        })
        .collect()
}
