//! Address families of relayed transport addresses (RFC 8656 §7.2, RFC
//! 6156): which families an Allocate asks for (REQUESTED-ADDRESS-FAMILY,
//! ADDITIONAL-ADDRESS-FAMILY), the family a peer needs, and the
//! ADDRESS-ERROR-CODE of a dual allocation that got only one family
//! (§18.12).

use std::net::{IpAddr, SocketAddr};

use stun::attributes::AttrType;
use stun::message::Message;

use super::message::reason_phrase;
use super::ports::{NoPort, Parity};
use super::server::Server;
use super::{FiveTuple, Now, RelaySockets};

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11), comprehension-optional.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// ADDRESS-ERROR-CODE (RFC 8656 §18.12), comprehension-optional.
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
/// The code points of the draft that preceded RFC 8656 (SSODA), which
/// coturn still sends and reads (`turnutils_uclient -Z`): a request with
/// the draft's ADDITIONAL-ADDRESS-FAMILY is answered with the draft's
/// ADDRESS-ERROR-CODE.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT: AttrType = AttrType(0x8032);
pub const ATTR_ADDRESS_ERROR_CODE_DRAFT: AttrType = AttrType(0x8033);

/// The ADDITIONAL-ADDRESS-FAMILY of `req` (RFC 8656's code point, else the
/// draft's) with the ADDRESS-ERROR-CODE type to answer it with.
pub fn additional_of(req: &super::message::Request) -> Option<(&[u8], AttrType)> {
    req.get(ATTR_ADDITIONAL_ADDRESS_FAMILY)
        .map(|v| (v, ATTR_ADDRESS_ERROR_CODE))
        .or_else(|| {
            req.get(ATTR_ADDITIONAL_ADDRESS_FAMILY_DRAFT)
                .map(|v| (v, ATTR_ADDRESS_ERROR_CODE_DRAFT))
        })
}

/// An address family as the TURN attributes number it (RFC 8656 §18.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `ip`; an IPv4-mapped IPv6 address is IPv6 here (it
    /// is refused by [`serves`] for either family).
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub fn is_v6(self) -> bool {
        self == Family::V6
    }

    /// The attribute value: 0x01 IPv4, 0x02 IPv6.
    pub fn code(self) -> u8 {
        match self {
            Family::V4 => 1,
            Family::V6 => 2,
        }
    }

    /// The bounded `family` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// One family's relay address: where relay sockets are bound, and what
/// XOR-RELAYED-ADDRESS says (the external address behind a 1:1 NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayIp {
    pub bind: IpAddr,
    pub advertised: IpAddr,
}

impl RelayIp {
    pub fn family(&self) -> Family {
        Family::of(self.bind)
    }

    /// Whether `ip` is this relay address (bound or advertised).
    pub fn is(&self, ip: IpAddr) -> bool {
        ip == self.advertised || (ip == self.bind && !ip.is_unspecified())
    }
}

/// Whether a relay socket bound at `relay` can reach `peer` (RFC 8656
/// §9.2, §12.2: 443 otherwise). An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is of neither family: an IPv4 relay socket cannot
/// send to an IPv6 address, and an IPv6 one (IPV6_V6ONLY) cannot reach an
/// IPv4 peer.
pub fn serves(relay: SocketAddr, peer: SocketAddr) -> bool {
    match peer.ip() {
        IpAddr::V4(_) => relay.is_ipv4(),
        IpAddr::V6(ip) => relay.is_ipv6() && ip.to_ipv4_mapped().is_none(),
    }
}

/// What an Allocate asks for (RFC 8656 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// One family: REQUESTED-ADDRESS-FAMILY, or IPv4 without it.
    One(Family),
    /// IPv4 and IPv6 (ADDITIONAL-ADDRESS-FAMILY IPv6).
    Both,
}

/// A REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY value: the
/// family, `Err(440)` for a family turnd does not know, `Err(400)` when
/// malformed.
fn parse_value(v: &[u8]) -> Result<Family, u16> {
    match (v.first(), v.len()) {
        (Some(1), 4) => Ok(Family::V4),
        (Some(2), 4) => Ok(Family::V6),
        (Some(_), 4) => Err(440),
        _ => Err(400),
    }
}

/// The families an Allocate asks for, from its REQUESTED-ADDRESS-FAMILY
/// and ADDITIONAL-ADDRESS-FAMILY, `default` without either; errors are
/// codes (§7.2: both attributes 400; ADDITIONAL-ADDRESS-FAMILY may only
/// name IPv6, else 400).
pub fn wanted(
    requested: Option<&[u8]>,
    additional: Option<&[u8]>,
    default: Family,
) -> Result<Wanted, u16> {
    match (requested, additional) {
        (Some(_), Some(_)) => Err(400),
        (None, None) => Ok(Wanted::One(default)),
        (Some(r), None) => parse_value(r).map(Wanted::One),
        (None, Some(a)) => match parse_value(a) {
            Ok(Family::V6) => Ok(Wanted::Both),
            Ok(Family::V4) => Err(400),
            Err(code) => Err(code),
        },
    }
}

/// Appends ADDRESS-ERROR-CODE (RFC 8656 §18.12, as attribute type `typ`):
/// `family` was not allocated, for the reason `code` (440 or 508).
pub fn add_address_error(m: &mut Message, typ: AttrType, family: Family, code: u16) {
    let reason = reason_phrase(code).as_bytes();
    let mut v = Vec::with_capacity(4 + reason.len());
    v.extend_from_slice(&[family.code(), 0, (code / 100) as u8, (code % 100) as u8]);
    v.extend_from_slice(reason);
    m.add(typ, &v);
}

/// Which families a new allocation gets: `first` (the relayed address of
/// the XOR-RELAYED-ADDRESS written first), `second` for a dual allocation,
/// and the family asked for but not relayed here (ADDRESS-ERROR-CODE 440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FamilyPlan {
    pub(super) first: Family,
    pub(super) second: Option<Family>,
    pub(super) unserved: Option<Family>,
}

impl Default for FamilyPlan {
    fn default() -> Self {
        FamilyPlan {
            first: Family::V4,
            second: None,
            unserved: None,
        }
    }
}

impl Server {
    /// The families to allocate for an Allocate's REQUESTED-ADDRESS-FAMILY
    /// and ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §7.2): 440 when a single
    /// family asked for is not relayed here; a dual request is served with
    /// what is relayed, the missing family named in ADDRESS-ERROR-CODE.
    pub(super) fn family_plan(
        &self,
        client: IpAddr,
        requested: Option<&[u8]>,
        additional: Option<&[u8]>,
    ) -> Result<FamilyPlan, u16> {
        let default = self
            .cfg
            .default_family
            .unwrap_or_else(|| Family::of(super::peer_policy::canonical(client)));
        let has = |f: Family| self.cfg.relay_ip(f).is_some();
        let plan = |first, second, unserved| FamilyPlan {
            first,
            second,
            unserved,
        };
        match wanted(requested, additional, default)? {
            Wanted::One(f) if has(f) => Ok(plan(f, None, None)),
            Wanted::One(f) => {
                self.family_refused(f);
                Err(440)
            }
            Wanted::Both => match (has(Family::V4), has(Family::V6)) {
                (true, true) => Ok(plan(Family::V4, Some(Family::V6), None)),
                (true, false) => Ok(plan(Family::V4, None, Some(Family::V6))),
                (false, true) => Ok(plan(Family::V6, None, Some(Family::V4))),
                (false, false) => Err(440),
            },
        }
    }

    /// Counts a family asked for and not allocated.
    pub(super) fn family_refused(&self, family: Family) {
        self.metrics
            .address_family_refused
            .with_label_values(&[family.as_str()])
            .inc();
    }

    /// Counts the relayed addresses of a new (`created`) or ended
    /// allocation in the per-family metrics.
    pub(super) fn count_relayed_addresses(
        &self,
        relays: impl Iterator<Item = SocketAddr>,
        created: bool,
    ) {
        for r in relays {
            let f = [Family::of(r.ip()).as_str()];
            if created {
                self.metrics
                    .relayed_addresses_created
                    .with_label_values(&f)
                    .inc();
                self.metrics
                    .relayed_addresses_active
                    .with_label_values(&f)
                    .inc();
            } else {
                self.metrics
                    .relayed_addresses_active
                    .with_label_values(&f)
                    .dec();
            }
        }
    }

    /// The relay address of `family`; the primary one when that family is
    /// not relayed (callers ask only for a family [`Server::family_plan`]
    /// or a reservation found relayed).
    pub(super) fn relay_ip_of(&self, family: Family) -> RelayIp {
        self.cfg.relay_ip(family).unwrap_or(RelayIp {
            bind: self.cfg.relay_bind,
            advertised: self.cfg.relay_advertised,
        })
    }

    /// The port of the second relayed address of a dual allocation, on
    /// `ip`, from the shared relay port range: even when EVEN-PORT asked
    /// for it (the reservation of the next port is the first address's
    /// only). The allocation's quota slot covers it. Errors are codes for
    /// ADDRESS-ERROR-CODE (508: no port).
    pub(super) fn second_port(
        &mut self,
        now: Now,
        ft: FiveTuple,
        even: Option<&[u8]>,
        username: &str,
        ip: IpAddr,
        relays: &mut dyn RelaySockets,
    ) -> Result<u16, u16> {
        let parity = if even.is_some() {
            Parity::Even
        } else {
            Parity::Any
        };
        let global = &self.global;
        let held = |p: u16| global.holds(p);
        match self.ports.acquire(&mut self.rng, ip, parity, relays, &held) {
            Ok(port) => {
                self.global.hold(port);
                Ok(port)
            }
            Err(NoPort::Descriptors) => Err(508),
            Err(NoPort::Taken) => Err(self.quota_rejected(now, ft, username, "relay_ports", 508)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_asked_for() {
        let v4 = [1u8, 0, 0, 0];
        let v6 = [2u8, 0, 0, 0];
        let wanted = |r, a| wanted(r, a, Family::V4);
        assert_eq!(wanted(None, None), Ok(Wanted::One(Family::V4)));
        assert_eq!(
            super::wanted(None, None, Family::V6),
            Ok(Wanted::One(Family::V6))
        );
        assert_eq!(wanted(Some(&v6), None), Ok(Wanted::One(Family::V6)));
        assert_eq!(wanted(Some(&v4), None), Ok(Wanted::One(Family::V4)));
        assert_eq!(wanted(None, Some(&v6)), Ok(Wanted::Both));
        assert_eq!(wanted(None, Some(&v4)), Err(400), "IPv4 is not additional");
        assert_eq!(wanted(Some(&v4), Some(&v6)), Err(400), "both attributes");
        assert_eq!(wanted(Some(&[3, 0, 0, 0]), None), Err(440));
        assert_eq!(wanted(Some(&[2, 0]), None), Err(400));
        assert_eq!(wanted(None, Some(&[])), Err(400));
    }

    #[test]
    fn mapped_addresses_are_of_neither_family() {
        let r4: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let r6: SocketAddr = "[2001:db8::1]:50000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.9]:9".parse().unwrap();
        assert!(!serves(r4, mapped) && !serves(r6, mapped));
        assert!(serves(r4, "198.51.100.1:9".parse().unwrap()));
        assert!(serves(r6, "[2001:db8::9]:9".parse().unwrap()));
        assert!(!serves(r4, "[2001:db8::9]:9".parse().unwrap()));
    }

    #[test]
    fn address_error_code_layout() {
        let mut m = Message::new();
        add_address_error(&mut m, ATTR_ADDRESS_ERROR_CODE, Family::V6, 440);
        let (attr, _) = m.attributes.get(ATTR_ADDRESS_ERROR_CODE);
        assert_eq!(&attr.value[..4], &[2, 0, 4, 40]);
        assert_eq!(&attr.value[4..], b"Address Family not Supported");
    }
}
