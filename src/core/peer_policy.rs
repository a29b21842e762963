//! Peer-address policy: which peers a TURN allocation may reach.
//!
//! A relay is a proxy into the host's network, so RFC 8656 §21 (security
//! considerations) asks the server to refuse peers it should not reach. Every
//! CreatePermission, ChannelBind and Send indication asks [`PeerPolicy::check`].
//!
//! The built-in deny list ([`BUILTIN_DENIED`]) follows the IANA special-purpose
//! registries (RFC 6890 and updates). Checks run on the [`canonical`] address, so
//! an IPv4-mapped `::ffff:127.0.0.1` (RFC 4291 §2.5.5.2) is the IPv4 host it names.
//! IPv6 forms that carry an IPv4 address towards the IPv4 network are judged by
//! that address as well: IPv4-compatible (RFC 4291 §2.5.5.1), IPv4-translated
//! (RFC 2765 §2.1), NAT64 `64:ff9b::/96` and `64:ff9b:1::/48` (RFC 6052, RFC 8215,
//! `/96` format), 6to4 (RFC 3056) and Teredo server and client (RFC 4380 §4). So
//! NAT64 of 8.8.8.8 is allowed while NAT64 of 10.0.0.1 or 169.254.169.254 is not.
//!
//! Precedence: operator `deny` > operator `allow` > built-in list > allowed.
//! `allow` and `deny` match the canonical address and every embedded IPv4; an
//! IPv6 address is allowed only if the address itself and each embedded IPv4
//! pass. Families never cross: allowing 127.0.0.0/8 does not allow `::1`, and
//! allowing `::/0` does not allow `::ffff:127.0.0.1` (that is 127.0.0.1).
//!
//! Not covered: network-specific NAT64 prefixes (RFC 6052 §2.3) and the host's
//! own public addresses cannot be known here; put them in `deny`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The outcome of [`PeerPolicy::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied(DenyReason),
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }
}

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// In [`BUILTIN_DENIED`] (directly or through an embedded IPv4) and not allowed.
    Special,
    /// In the operator's deny list.
    Configured,
}

impl DenyReason {
    /// A bounded label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyReason::Special => "special_range",
            DenyReason::Configured => "configured",
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

const fn v6(s: [u16; 8], len: u8) -> IpNet {
    let a = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    IpNet::V6(Ipv6Net::new_assert(a, len))
}

/// Ranges refused unless the operator allows them. 2002::/16 (6to4), 64:ff9b::/96
/// (NAT64) and ::/96 (IPv4-compatible) are not listed: they are judged by the
/// IPv4 address they embed.
pub const BUILTIN_DENIED: &[IpNet] = &[
    v4(0, 0, 0, 0, 8),                        // "this network" (RFC 791), incl. 0.0.0.0
    v4(10, 0, 0, 0, 8),                       // private (RFC 1918)
    v4(100, 64, 0, 0, 10),                    // shared address space, CGNAT (RFC 6598)
    v4(127, 0, 0, 0, 8),                      // loopback (RFC 1122)
    v4(169, 254, 0, 0, 16),                   // link-local, cloud metadata (RFC 3927)
    v4(172, 16, 0, 0, 12),                    // private (RFC 1918)
    v4(192, 0, 0, 0, 24),                     // IETF protocol assignments (RFC 6890)
    v4(192, 0, 2, 0, 24),                     // TEST-NET-1 (RFC 5737)
    v4(192, 88, 99, 0, 24),                   // 6to4 relay anycast (RFC 7526)
    v4(192, 168, 0, 0, 16),                   // private (RFC 1918)
    v4(198, 18, 0, 0, 15),                    // benchmarking (RFC 2544)
    v4(198, 51, 100, 0, 24),                  // TEST-NET-2 (RFC 5737)
    v4(203, 0, 113, 0, 24),                   // TEST-NET-3 (RFC 5737)
    v4(224, 0, 0, 0, 4),                      // multicast (RFC 5771)
    v4(240, 0, 0, 0, 4),                      // reserved (RFC 1112), incl. broadcast
    v6([0; 8], 128),                          // unspecified (RFC 4291)
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128),        // loopback (RFC 4291)
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),    // IPv4-mapped, unreachable after canonical()
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), // local-use NAT64 (RFC 8215)
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 63),     // discard-only (RFC 6666) and dummy prefix (RFC 9780)
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),    // IETF assignments, incl. Teredo (RFC 2928)
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation (RFC 3849)
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),    // documentation (RFC 9637)
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),    // SRv6 SIDs (RFC 9602)
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),     // unique local (RFC 4193)
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),    // link-local (RFC 4291)
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),    // site-local, deprecated (RFC 3879)
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),     // multicast (RFC 4291)
];

/// IPv6 global unicast (RFC 4291 §2.4, IANA IPv6 Address Space): an IPv6
/// peer outside it is refused unless it embeds an IPv4 address (then judged
/// by that) or the operator allows it.
pub const GLOBAL_UNICAST_V6: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// The operator's peer rules over the built-in deny list.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl PeerPolicy {
    /// `allow` exempts from [`BUILTIN_DENIED`]; `deny` refuses more and beats
    /// `allow`. Entries are canonicalised like addresses (`::ffff:10.0.0.0/104`
    /// is 10.0.0.0/8) and truncated to their network.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        let canon = |v: Vec<IpNet>| v.into_iter().map(canonical_net).collect();
        PeerPolicy {
            allow: canon(allow),
            deny: canon(deny),
        }
    }

    /// The built-in deny list, for docs and tests.
    pub fn builtin_denied() -> &'static [IpNet] {
        BUILTIN_DENIED
    }

    /// Whether a relay may send to `ip`. Allocation-free; about 30 prefix tests.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let ip = canonical(ip);
        let embedded = match ip {
            IpAddr::V4(_) => [None, None],
            IpAddr::V6(v6) => embedded_v4(v6),
        };
        let all = || std::iter::once(ip).chain(embedded.into_iter().flatten().map(IpAddr::V4));
        // "This host" (0.0.0.0, ::) reaches loopback whatever the lists say
        // (coturn CVE-2020-26262): never a peer, not even under `allow`.
        if all().any(|a| a.is_unspecified()) {
            return Verdict::Denied(DenyReason::Special);
        }
        if all().any(|a| matches(&self.deny, a)) {
            return Verdict::Denied(DenyReason::Configured);
        }
        if all().any(|a| matches(BUILTIN_DENIED, a) && !matches(&self.allow, a)) {
            return Verdict::Denied(DenyReason::Special);
        }
        // IPv6 outside global unicast 2000::/3 (RFC 4291 §2.4) that embeds
        // no IPv4 address: reserved or unassigned space (::/8 beyond the
        // forms above, 4000::/2, 8000::/1 up to fbff::), never a real peer.
        if let IpAddr::V6(v6) = ip {
            if embedded == [None, None]
                && !GLOBAL_UNICAST_V6.contains(&v6)
                && !matches(&self.allow, ip)
            {
                return Verdict::Denied(DenyReason::Special);
            }
        }
        Verdict::Allowed
    }

    /// Whether the operator's `deny` names `ip` (or an IPv4 address it
    /// embeds): it wins over everything, turnd's own relay address included.
    pub fn operator_denies(&self, ip: IpAddr) -> bool {
        self.check(ip) == Verdict::Denied(DenyReason::Configured)
    }

    /// Whether the operator's `allow` names `ip` (and `deny` does not): the
    /// test for addresses that are public yet must not be reached by default,
    /// such as this host's own relay address on ports turnd does not hold.
    pub fn explicitly_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.check(ip).is_allowed() && matches(&self.allow, ip)
    }
}

fn matches(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// Canonical form used for all checks: IPv4-mapped `::ffff:a.b.c.d` becomes
/// `a.b.c.d`; everything else is unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// [`canonical`] for networks: an IPv4-mapped network of length 96 or more
/// becomes the IPv4 network it covers.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => n
            .network()
            .to_ipv4_mapped()
            .and_then(|a| Ipv4Net::new(a, n.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        _ => net,
    }
    .trunc()
}

/// The IPv4 addresses an IPv6 transition address carries (Teredo carries two).
fn embedded_v4(ip: Ipv6Addr) -> [Option<Ipv4Addr>; 2] {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    match ip.segments() {
        // IPv4-compatible ::a.b.c.d (RFC 4291 §2.5.5.1); :: and ::1 are not.
        [0, 0, 0, 0, 0, 0, _, _] if bits > 1 => [Some(low), None],
        // IPv4-translated ::ffff:0:a.b.c.d (RFC 2765 §2.1).
        [0, 0, 0, 0, 0xffff, 0, _, _] => [Some(low), None],
        // NAT64 well-known 64:ff9b::/96 (RFC 6052) and local-use 64:ff9b:1::/48
        // (RFC 8215), /96 format only; the local-use prefix is denied anyway.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => [Some(low), None],
        // 6to4 2002:AABB:CCDD::/48 (RFC 3056 §2).
        [0x2002, hi, lo, ..] => [Some(join(hi, lo)), None],
        // Teredo 2001:0:server:flags:port:client^ffffffff (RFC 4380 §4).
        [0x2001, 0, hi, lo, ..] => [Some(join(hi, lo)), Some(Ipv4Addr::from(!(bits as u32)))],
        _ => [None, None],
    }
}

fn join(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(hi) << 16 | u32::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DenyReason::{Configured as C, Special as S};
    use Verdict::{Allowed as A, Denied as D};

    fn policy(allow: &[&str], deny: &[&str]) -> PeerPolicy {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect();
        PeerPolicy::new(nets(allow), nets(deny))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn assert_table(p: &PeerPolicy, table: &[(&str, Verdict)]) {
        let bad: Vec<_> = table
            .iter()
            .map(|&(s, want)| (s, want, p.check(ip(s))))
            .filter(|(_, want, got)| want != got)
            .collect();
        assert!(bad.is_empty(), "(addr, want, got): {bad:#?}");
    }

    /// Teredo address for `server` and `client` (stored XORed), port 40000.
    fn teredo(server: Ipv4Addr, client: Ipv4Addr) -> String {
        let (s, c) = (u32::from(server), !u32::from(client));
        let hi = 0x2001_0000_u128 << 96 | u128::from(s) << 64 | u128::from(!40000_u16) << 32;
        Ipv6Addr::from(hi | u128::from(c)).to_string()
    }

    /// Every IPv6 encoding of `a` that carries it to the IPv4 network.
    fn encodings(a: Ipv4Addr) -> Vec<String> {
        let [b0, b1, b2, b3] = a.octets();
        vec![
            a.to_string(),
            format!("::ffff:{a}"),
            format!("::{a}"),
            format!("::ffff:0:{a}"),
            format!("64:ff9b::{a}"),
            format!("2002:{b0:02x}{b1:02x}:{b2:02x}{b3:02x}::1"),
            teredo(Ipv4Addr::new(65, 54, 227, 120), a),
            teredo(a, Ipv4Addr::new(8, 8, 4, 4)),
        ]
    }

    const DENIED_V4: &[&str] = &[
        "0.0.0.0",
        "0.1.2.3",
        "10.1.2.3",
        "100.100.100.200",
        "127.0.0.1",
        "169.254.169.254",
        "172.31.255.255",
        "192.0.0.170",
        "192.168.1.1",
        "198.18.0.1",
        "224.0.0.251",
        "255.255.255.255",
    ];

    #[test]
    fn every_builtin_range_denied_at_first_middle_and_last() {
        let p = PeerPolicy::default();
        for net in PeerPolicy::builtin_denied() {
            assert_eq!(*net, net.trunc(), "{net} is not a network address");
            let addrs = match net {
                IpNet::V4(n) => {
                    let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                    [lo, lo + (hi - lo) / 2, hi].map(|x| IpAddr::from(Ipv4Addr::from(x)))
                }
                IpNet::V6(n) => {
                    let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                    [lo, lo + (hi - lo) / 2, hi].map(|x| IpAddr::from(Ipv6Addr::from(x)))
                }
            };
            for a in addrs {
                assert_eq!(p.check(a), D(S), "{a} in {net}");
            }
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused_unless_it_carries_ipv4() {
        let p = PeerPolicy::default();
        for a in [
            "0:0:f5c2::1",
            "1::1",
            "4000::1",
            "8000::1",
            "e000::1",
            "fbff::1",
        ] {
            assert_eq!(p.check(a.parse().unwrap()), D(S), "{a}");
        }
        for a in [
            "2606:4700::1111",
            "::808:808",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(p.check(a.parse().unwrap()), Verdict::Allowed, "{a}");
        }
        let allowing = PeerPolicy::new(vec!["4000::/2".parse().unwrap()], vec![]);
        assert_eq!(allowing.check("4000::1".parse().unwrap()), Verdict::Allowed);
    }

    #[test]
    fn range_edges_and_named_addresses() {
        assert_table(
            &PeerPolicy::default(),
            &[
                ("0.0.0.0", D(S)),
                ("::", D(S)),
                ("::1", D(S)),
                ("255.255.255.255", D(S)),
                ("169.254.169.254", D(S)),
                ("fd00:ec2::254", D(S)),
                ("100.100.100.200", D(S)),
                ("1.0.0.0", A),
                ("1.1.1.1", A),
                ("9.255.255.255", A),
                ("11.0.0.0", A),
                ("100.63.255.255", A),
                ("100.128.0.0", A),
                ("126.255.255.255", A),
                ("128.0.0.0", A),
                ("169.253.255.255", A),
                ("169.255.0.0", A),
                ("172.15.255.255", A),
                ("172.32.0.0", A),
                ("192.0.1.0", A),
                ("192.88.98.255", A),
                ("192.167.255.255", A),
                ("192.169.0.0", A),
                ("198.17.255.255", A),
                ("198.20.0.0", A),
                ("223.255.255.255", A),
                ("2606:4700::1111", A),
                ("2001:4860:4860::8888", A),
                ("::ffff:0:0", D(S)),
                ("64:ff9b:1::808:808", D(S)),
                ("64:ff9b:2::1", D(S)), // outside 2000::/3
                ("100:0:0:1::", D(S)),
                ("100:0:0:2::", D(S)), // outside 2000::/3
                ("2001:200::", A),
                ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", A),
                ("2001:db9::", A),
                ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", A),
                ("3fff:1000::", A),
                ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", D(S)), // outside 2000::/3
                ("5f01::", D(S)),                                  // outside 2000::/3
                ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", D(S)), // outside 2000::/3
                ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", D(S)), // outside 2000::/3
                ("2002:c058:6301::", D(S)),                        // 6to4 of the 6to4 relay anycast
            ],
        );
    }

    #[test]
    fn denied_ipv4_is_denied_in_every_encoding() {
        let p = PeerPolicy::default();
        for a in DENIED_V4 {
            for e in encodings(a.parse().unwrap()) {
                assert_eq!(p.check(ip(&e)), D(S), "{e} encodes {a}");
            }
        }
    }

    #[test]
    fn public_ipv4_is_allowed_in_every_encoding_but_teredo() {
        let p = PeerPolicy::default();
        for e in encodings(Ipv4Addr::new(8, 8, 8, 8)) {
            let want = if e.starts_with("2001:0:") { D(S) } else { A };
            assert_eq!(p.check(ip(&e)), want, "{e}");
        }
        assert_table(&p, &[("64:ff9b::808:808", A), ("2002:0808:0808::1", A)]);
    }

    #[test]
    fn allowing_teredo_still_checks_both_embedded_addresses() {
        let p = policy(&["2001::/32"], &[]);
        let srv = Ipv4Addr::new(65, 54, 227, 120);
        assert_eq!(p.check(ip(&teredo(srv, Ipv4Addr::new(8, 8, 8, 8)))), A);
        for a in DENIED_V4 {
            let a: Ipv4Addr = a.parse().unwrap();
            assert_eq!(p.check(ip(&teredo(srv, a))), D(S), "client {a}");
            assert_eq!(p.check(ip(&teredo(a, srv))), D(S), "server {a}");
        }
        assert_table(&p, &[("2001:2::1", D(S)), ("2001:db8::1", D(S))]);
    }

    #[test]
    fn allow_exempts_the_same_host_in_every_encoding_but_not_the_other_family() {
        let p = policy(&["127.0.0.0/8"], &[]);
        for e in encodings(Ipv4Addr::new(127, 0, 0, 1)) {
            if !e.starts_with("2001:0:") {
                assert_eq!(p.check(ip(&e)), A, "{e}");
            }
        }
        assert_table(
            &p,
            &[("::1", D(S)), ("10.0.0.1", D(S)), ("::ffff:10.0.0.1", D(S))],
        );

        let p = policy(&["::1/128"], &[]);
        assert_table(&p, &[("::1", A), ("127.0.0.1", D(S)), ("::", D(S))]);

        // Written as IPv4-mapped, it is the IPv4 network; ::/0 does not cover IPv4.
        let p = policy(&["::ffff:127.0.0.0/104", "::/0"], &[]);
        assert_table(
            &p,
            &[
                ("127.0.0.1", A),
                ("fd00::1", A),
                ("10.0.0.1", D(S)),
                ("::ffff:10.0.0.1", D(S)),
            ],
        );

        // Allowing the IPv6 form alone does not exempt the embedded IPv4.
        let p = policy(&["64:ff9b::/96", "2002::/16", "64:ff9b:1::/48"], &[]);
        assert_table(
            &p,
            &[
                ("64:ff9b::a00:1", D(S)),
                ("2002:a00:1::", D(S)),
                ("64:ff9b:1::808:808", A),
                ("64:ff9b:1::a00:1", D(S)),
                ("64:ff9b:1::a9fe:a9fe", D(S)),
            ],
        );
    }

    #[test]
    fn operator_deny_wins_in_every_encoding() {
        let p = policy(
            &["10.0.0.0/8", "127.0.0.0/8"],
            &["10.1.0.0/16", "127.0.0.1/32"],
        );
        assert_table(
            &p,
            &[
                ("10.2.3.4", A),
                ("10.1.2.3", D(C)),
                ("::ffff:10.1.2.3", D(C)),
                ("64:ff9b::a01:203", D(C)),
                ("2002:a01:203::1", D(C)),
                ("127.0.0.2", A),
                ("127.0.0.1", D(C)),
            ],
        );

        let p = policy(&[], &["8.8.8.0/24", "2606:4700::/32"]);
        for e in encodings(Ipv4Addr::new(8, 8, 8, 8)) {
            assert_eq!(p.check(ip(&e)), D(C), "{e}");
        }
        assert_table(
            &p,
            &[("2606:4700::1111", D(C)), ("8.8.4.4", A), ("1.1.1.1", A)],
        );

        // Deny beats a built-in denial too, so the metric label says "configured".
        let p = policy(&["0.0.0.0/0"], &["169.254.169.254/32", "::/0"]);
        assert_table(
            &p,
            &[
                ("169.254.169.254", D(C)),
                ("169.254.0.1", A),
                ("::ffff:127.0.0.1", A),
                ("64:ff9b::7f00:1", D(C)),
                ("2606:4700::1111", D(C)),
            ],
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical(ip("::127.0.0.1")), ip("::127.0.0.1"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        let n = |s: &str| canonical_net(s.parse().unwrap());
        assert_eq!(n("::ffff:10.9.0.0/104"), n("10.0.0.0/8"));
        assert_eq!(n("::ffff:0:0/96"), n("0.0.0.0/0"));
        assert_eq!(n("::/0").to_string(), "::/0");
        assert_eq!(n("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(DenyReason::Special.as_str(), "special_range");
        assert_eq!(DenyReason::Configured.as_str(), "configured");
        assert!(A.is_allowed() && !D(S).is_allowed());
    }

    #[test]
    fn unspecified_addresses_are_never_peers() {
        let p = PeerPolicy::new(
            vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            vec![],
        );
        for ip in ["0.0.0.0", "::", "::ffff:0.0.0.0", "64:ff9b::"] {
            assert_eq!(
                p.check(ip.parse().unwrap()),
                Verdict::Denied(DenyReason::Special),
                "{ip}"
            );
        }
        assert_eq!(p.check("10.0.0.1".parse().unwrap()), Verdict::Allowed);
    }
}
