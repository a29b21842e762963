//! `relay.bind` and `relay.external`: one relay address per address family
//! (dual-stack relaying, RFC 8656 §7.2, RFC 6156). Either key takes one
//! address (`bind = "0.0.0.0"`, the single-family form) or an array of at
//! most one IPv4 and one IPv6 address (`bind = ["0.0.0.0", "::"]`), as
//! coturn takes `relay-ip` and `external-ip` once per family. Checked while
//! deserializing, so a mistake is reported with its line.

use std::fmt;
use std::net::IpAddr;

use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::Deserialize;

/// `relay.default_family`: the family of an Allocate that names none
/// (coturn's `allocation-default-address-family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultFamily {
    /// IPv4, as RFC 8656 §7.2 and RFC 6156 §4.2 say.
    #[default]
    Ipv4,
    Ipv6,
    /// The family the client came over (for clients that cannot ask, such
    /// as webrtc-rs `turn::client`, reaching the server over IPv6).
    Keep,
}

/// At most one address of each family; `v4` holds only IPv4 addresses and
/// `v6` only IPv6 ones (never IPv4-mapped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyAddrs {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
}

impl FamilyAddrs {
    /// One address.
    pub const fn one(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => FamilyAddrs {
                v4: Some(ip),
                v6: None,
            },
            IpAddr::V6(_) => FamilyAddrs {
                v4: None,
                v6: Some(ip),
            },
        }
    }

    /// The address of the family `v6` says.
    pub fn of(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.v6
        } else {
            self.v4
        }
    }

    /// The addresses, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> {
        self.v4.into_iter().chain(self.v6)
    }

    /// The IPv4 address if there is one, else the IPv6 one: the family an
    /// Allocate without REQUESTED-ADDRESS-FAMILY asks for comes first.
    pub fn primary(&self) -> Option<IpAddr> {
        self.v4.or(self.v6)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// Both families.
    pub fn is_dual(&self) -> bool {
        self.v4.is_some() && self.v6.is_some()
    }

    /// Adds `ip` for `key`; a second address of one family is an error.
    pub fn add(&mut self, key: &str, ip: IpAddr) -> Result<(), String> {
        if let IpAddr::V6(v6) = ip {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Err(format!(
                    "{key}: {ip} is an IPv4-mapped IPv6 address; write the IPv4 address {v4}"
                ));
            }
        }
        let slot = if ip.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        if let Some(old) = slot {
            return Err(format!(
                "{key}: {old} and {ip} are both {}: give at most one address per family \
                 (e.g. [\"0.0.0.0\", \"::\"])",
                if ip.is_ipv4() { "IPv4" } else { "IPv6" }
            ));
        }
        *slot = Some(ip);
        Ok(())
    }

    /// Parses a comma-separated list (the environment form,
    /// `TURND_RELAY_BIND=0.0.0.0,::`) or one address.
    pub fn parse_list(key: &str, s: &str) -> Result<Self, String> {
        let mut out = FamilyAddrs::default();
        for part in s.split(',').map(str::trim) {
            out.add(key, super::types::parse_ip_str(key, part)?)?;
        }
        Ok(out)
    }
}

impl fmt::Display for FamilyAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.iter().map(|ip| ip.to_string()).collect();
        match all.as_slice() {
            [] => f.write_str("(unset)"),
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

/// Deserializes a string or an array of strings into [`FamilyAddrs`];
/// `allow_empty` is false for `relay.bind` (relaying needs an address).
fn de_family_addrs<'de, D: Deserializer<'de>>(
    d: D,
    key: &'static str,
    allow_empty: bool,
) -> Result<FamilyAddrs, D::Error> {
    struct V {
        key: &'static str,
        allow_empty: bool,
    }
    impl<'de> Visitor<'de> for V {
        type Value = FamilyAddrs;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "an IP address or an array of one IPv4 and one IPv6 address \
                 (e.g. \"0.0.0.0\" or [\"0.0.0.0\", \"::\"])"
            )
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FamilyAddrs, E> {
            FamilyAddrs::parse_list(self.key, s).map_err(E::custom)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FamilyAddrs, A::Error> {
            let mut out = FamilyAddrs::default();
            while let Some(s) = seq.next_element::<String>()? {
                let ip = super::types::parse_ip_str(self.key, &s).map_err(A::Error::custom)?;
                out.add(self.key, ip).map_err(A::Error::custom)?;
            }
            if out.is_empty() && !self.allow_empty {
                return Err(A::Error::custom(format!(
                    "{}: give at least one address (e.g. \"0.0.0.0\")",
                    self.key
                )));
            }
            Ok(out)
        }
    }
    d.deserialize_any(V { key, allow_empty })
}

pub(super) fn de_relay_bind<'de, D: Deserializer<'de>>(d: D) -> Result<FamilyAddrs, D::Error> {
    de_family_addrs(d, "relay.bind", false)
}

pub(super) fn de_relay_external<'de, D: Deserializer<'de>>(d: D) -> Result<FamilyAddrs, D::Error> {
    de_family_addrs(d, "relay.external", true)
}

/// The checks of `[relay]` that involve both keys.
pub(super) fn check(bind: &FamilyAddrs, external: &FamilyAddrs) -> Result<(), String> {
    for ip in bind.iter() {
        if ip.is_multicast() {
            return Err(format!("relay.bind ({ip}) must not be a multicast address"));
        }
    }
    for ext in external.iter() {
        if ext.is_unspecified() || ext.is_multicast() {
            return Err(format!(
                "relay.external ({ext}) must be a unicast address clients can reach, \
                 not unspecified or multicast"
            ));
        }
        if bind.of(ext.is_ipv6()).is_none() {
            return Err(format!(
                "relay.external ({ext}) must be the same address family as relay.bind ({bind}): \
                 add an {} address to relay.bind to relay that family",
                if ext.is_ipv6() { "IPv6" } else { "IPv4" }
            ));
        }
    }
    Ok(())
}
