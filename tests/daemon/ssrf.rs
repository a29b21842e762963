//! The SSRF matrix against the real daemon (RFC 8656 §21, RFC 6156 §9):
//! every range of the IANA special-purpose address registries (RFC 6890
//! and updates) as a peer, at representative addresses (first and last
//! where they mean something, and the well-known ones such as the cloud
//! metadata 169.254.169.254 and fd00:ec2::254), in every encoding that
//! carries an IPv4 address in IPv6 (IPv4-mapped, IPv4-compatible,
//! IPv4-translated, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32
//! as server and as client), plus 0.0.0.0, `::` and the server's own
//! listeners and relay address, through CreatePermission, ChannelBind and
//! Send. Refused with 403 and counted in `turnd_peer_denied_total`; each
//! range allowed only when `[peers] allow` says so (one daemon per config).
//!
//! No packet leaves loopback: a refused Send cannot be watched arriving at
//! a special address, so the tests assert that no permission exists, that
//! the Send was dropped (`no_permission`), and that the relayed counter
//! moves only for a loopback control packet sent afterwards. Peers that are
//! allowed are only given permissions and channels, never sent to, unless
//! they are on 127.0.0.0/8 or `::1`.
//!
//! IPv6 peers need an IPv6 relay (RFC 6156): those daemons bind relays to
//! `::1` and allocate with REQUESTED-ADDRESS-FAMILY IPv6; without `::1` on
//! the machine they are skipped with a message. The whole matrix is run
//! once more through dual-stack allocations (ADDITIONAL-ADDRESS-FAMILY) of a
//! daemon relaying 127.0.0.1 and `::1` side by side.

// Deadlines of bounded waits; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use crate::common;
use crate::hostile_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use common::raw::{error_code, recv_from_within, Relayed};
use common::{Daemon, TestConfig, RELAY_PORTS};
use hostile_support::{
    denied, dropped, expect_changes, ipv6_loopback, Client, Snapshot, ANSWER, SILENCE,
};
use ipnet::IpNet;
use stun::message::{Setter, BINDING_REQUEST};
use turnd::metrics::text::find;

/// A special-purpose range and addresses in it.
struct Range {
    cidr: &'static str,
    what: &'static str,
    reps: &'static [&'static str],
}

const fn r(cidr: &'static str, what: &'static str, reps: &'static [&'static str]) -> Range {
    Range { cidr, what, reps }
}

/// IANA IPv4 Special-Purpose Address Registry entries that are not
/// globally reachable, and multicast (RFC 5771).
#[rustfmt::skip]
const V4_SPECIAL: &[Range] = &[
    r("0.0.0.0/8", "this network (RFC 791), 0.0.0.0 this host", &["0.0.0.0", "0.0.0.1", "0.255.255.255"]),
    r("10.0.0.0/8", "private use (RFC 1918)", &["10.0.0.0", "10.0.0.1", "10.255.255.255"]),
    r("100.64.0.0/10", "shared address space, CGNAT (RFC 6598); Alibaba metadata", &["100.64.0.0", "100.100.100.200", "100.127.255.255"]),
    r("127.0.0.0/8", "loopback (RFC 1122); 127.0.0.1 is the relay's own, see own_*", &["127.0.0.0", "127.0.0.2", "127.0.0.53", "127.255.255.255"]),
    r("169.254.0.0/16", "link local (RFC 3927): cloud metadata, ECS task metadata", &["169.254.0.0", "169.254.169.254", "169.254.170.2", "169.254.255.255"]),
    r("172.16.0.0/12", "private use (RFC 1918); Docker's bridge", &["172.16.0.0", "172.17.0.1", "172.31.255.255"]),
    r("192.0.0.0/24", "IETF protocol assignments (RFC 6890)", &["192.0.0.0", "192.0.0.255"]),
    r("192.0.0.0/29", "IPv4 service continuity prefix, DS-Lite (RFC 7335)", &["192.0.0.1", "192.0.0.7"]),
    r("192.0.0.8/32", "IPv4 dummy address (RFC 7600)", &["192.0.0.8"]),
    r("192.0.0.9/32", "Port Control Protocol anycast (RFC 7723)", &["192.0.0.9"]),
    r("192.0.0.10/32", "TURN anycast (RFC 8155)", &["192.0.0.10"]),
    r("192.0.0.170/31", "NAT64/DNS64 discovery (RFC 7050)", &["192.0.0.170", "192.0.0.171"]),
    r("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)", &["192.0.2.0", "192.0.2.1", "192.0.2.255"]),
    r("192.88.99.0/24", "6to4 relay anycast, deprecated (RFC 7526)", &["192.88.99.0", "192.88.99.1", "192.88.99.255"]),
    r("192.168.0.0/16", "private use (RFC 1918)", &["192.168.0.0", "192.168.1.1", "192.168.255.255"]),
    r("198.18.0.0/15", "benchmarking (RFC 2544)", &["198.18.0.0", "198.19.255.255"]),
    r("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)", &["198.51.100.0", "198.51.100.255"]),
    r("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)", &["203.0.113.0", "203.0.113.255"]),
    r("224.0.0.0/4", "multicast (RFC 5771)", &["224.0.0.0", "224.0.0.251", "239.255.255.255"]),
    r("240.0.0.0/4", "reserved (RFC 1112)", &["240.0.0.0", "255.255.255.254"]),
    r("255.255.255.255/32", "limited broadcast (RFC 919)", &["255.255.255.255"]),
];

/// Registry entries marked globally reachable that turnd's blanket
/// denials (192.0.0.0/24, 2001::/23) do not cover: public anycast services,
/// allowed like any public address. Permissions only; nothing is sent.
#[rustfmt::skip]
const GLOBALLY_REACHABLE: &[Range] = &[
    r("192.31.196.0/24", "AS112-v4 (RFC 7535)", &["192.31.196.1"]),
    r("192.52.193.0/24", "AMT (RFC 7450)", &["192.52.193.1"]),
    r("192.175.48.0/24", "direct delegation AS112 (RFC 7534)", &["192.175.48.1"]),
    r("2620:4f:8000::/48", "direct delegation AS112 (RFC 7534)", &["2620:4f:8000::1"]),
    r("64:ff9b::/96", "NAT64 (RFC 6052) of a public address", &["64:ff9b::808:808"]),
    r("2002::/16", "6to4 (RFC 3056) of a public address", &["2002:808:808::1"]),
];

/// IANA IPv6 Special-Purpose Address Registry entries that are not
/// globally reachable (2001::/23 as a whole, as turnd denies it), site-local
/// and multicast. `::1` is the IPv6 relay's own address (see own_*), the
/// IPv4-mapped, NAT64 and 6to4 forms are in [`v4_in_v6`].
#[rustfmt::skip]
const V6_SPECIAL: &[Range] = &[
    r("::/128", "unspecified (RFC 4291)", &["::"]),
    r("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)", &["64:ff9b:1::808:808", "64:ff9b:1:ffff:ffff:ffff:808:808"]),
    r("100::/64", "discard-only (RFC 6666)", &["100::", "100::ffff:ffff:ffff:ffff"]),
    r("2001::/23", "IETF protocol assignments (RFC 2928)", &["2001:100::1", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    // Teredo server 65.54.227.120 and client 8.8.8.8: public both.
    r("2001::/32", "Teredo (RFC 4380)", &["2001:0:4136:e378:0:63bf:f7f7:f7f7"]),
    r("2001:1::1/128", "PCP anycast (RFC 7723)", &["2001:1::1"]),
    r("2001:1::2/128", "TURN anycast (RFC 8155)", &["2001:1::2"]),
    r("2001:1::3/128", "DNS-SD service registration anycast (RFC 9665)", &["2001:1::3"]),
    r("2001:2::/48", "benchmarking (RFC 5180)", &["2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff"]),
    r("2001:3::/32", "AMT (RFC 7450)", &["2001:3::1"]),
    r("2001:4:112::/48", "AS112-v6 (RFC 7535)", &["2001:4:112::1"]),
    r("2001:10::/28", "ORCHID, deprecated (RFC 4843)", &["2001:10::1"]),
    r("2001:20::/28", "ORCHIDv2 (RFC 7343)", &["2001:20::1"]),
    r("2001:30::/28", "drone remote ID (RFC 9374)", &["2001:30::1"]),
    r("2001:db8::/32", "documentation (RFC 3849)", &["2001:db8::", "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("3fff::/20", "documentation (RFC 9637)", &["3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("5f00::/16", "segment routing SIDs (RFC 9602)", &["5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("fc00::/7", "unique local (RFC 4193); AWS metadata fd00:ec2::254", &["fc00::", "fd00::1", "fd00:ec2::254", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("fe80::/10", "link-local (RFC 4291)", &["fe80::", "fe80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("fec0::/10", "site-local, deprecated (RFC 3879)", &["fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("ff00::/8", "multicast (RFC 4291)", &["ff00::", "ff02::1", "ff05::1:3", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    // Outside global unicast 2000::/3 and carrying no IPv4 address.
    r("::/8", "reserved by the IETF (RFC 4291 §2.4), beyond the forms above", &["0:0:f5c2::1", "1::1", "64:ff9b:2::1"]),
    r("1000::/4", "unassigned (IANA IPv6 address space)", &["1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    r("4000::/2", "unassigned (IANA IPv6 address space)", &["4000::1", "5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "7fff::1"]),
    r("8000::/2", "unassigned (IANA IPv6 address space)", &["8000::1", "bfff::1"]),
    r("e000::/4", "unassigned (IANA IPv6 address space)", &["e000::1"]),
    r("f800::/6", "unassigned (IANA IPv6 address space)", &["fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
];

/// Any port: nothing is ever sent to these peers.
const PORT: u16 = 5000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn peer(s: &str) -> SocketAddr {
    SocketAddr::new(ip(s), PORT)
}

/// A Teredo address (RFC 4380 §4) for `server` and `client`, port 40000.
fn teredo(server: Ipv4Addr, client: Ipv4Addr) -> Ipv6Addr {
    let hi =
        0x2001_0000_u128 << 96 | u128::from(u32::from(server)) << 64 | u128::from(!40000_u16) << 32;
    Ipv6Addr::from(hi | u128::from(!u32::from(client)))
}

/// Every IPv6 form of `a` that a relay could deliver towards `a` (or a
/// host that decodes it): IPv4-compatible (RFC 4291 §2.5.5.1, where it is
/// not `::` or `::1`), IPv4-translated (RFC 2765), NAT64 (RFC 6052), 6to4
/// (RFC 3056), Teredo with `a` as server and as client (RFC 4380).
fn v4_in_v6(a: Ipv4Addr) -> Vec<(String, Ipv6Addr)> {
    let bits = u128::from(u32::from(a));
    let [b0, b1, b2, b3] = a.octets();
    let public = Ipv4Addr::new(8, 8, 8, 8);
    let mut v = Vec::new();
    if bits > 1 {
        v.push(("IPv4-compatible".to_string(), Ipv6Addr::from(bits)));
    }
    v.extend([
        (
            "IPv4-translated".to_string(),
            Ipv6Addr::from(0xffff_u128 << 48 | bits),
        ),
        (
            "NAT64".to_string(),
            Ipv6Addr::from(0x64_ff9b_u128 << 96 | bits),
        ),
        (
            "6to4".to_string(),
            format!("2002:{b0:02x}{b1:02x}:{b2:02x}{b3:02x}::1")
                .parse()
                .unwrap(),
        ),
        ("Teredo server".to_string(), teredo(a, public)),
        (
            "Teredo client".to_string(),
            teredo(Ipv4Addr::new(65, 54, 227, 120), a),
        ),
    ]);
    v
}

/// What a refused peer must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 403, counted as `special_range`.
    Forbidden,
    /// 443 Peer Address Family Mismatch: an IPv4-mapped address is of
    /// neither family (RFC 8656 §9.2): an IPv6 relay does not reach the
    /// IPv4 host it names, an IPv4 relay cannot send to an IPv6 address. A
    /// Send indication to one is dropped as `peer_family`.
    FamilyMismatch,
}

/// A daemon of `cfg` whose relays are on `::1` (IPv6) instead of 127.0.0.1,
/// listening for clients on 127.0.0.1 and on `[::1]`.
fn v6_toml(cfg: &TestConfig) -> String {
    let toml = cfg.toml();
    assert!(toml.contains("bind = \"127.0.0.1\""));
    toml.replacen("bind = \"127.0.0.1\"", "bind = \"::1\"", 1)
        .replacen(
            "udp = [\"127.0.0.1:0\"]",
            "udp = [\"127.0.0.1:0\", \"[::1]:0\"]",
            1,
        )
}

/// A daemon of `cfg` relaying both families, 127.0.0.1 and `::1`
/// (dual-stack), listening for clients on 127.0.0.1 and on `[::1]`.
fn dual_toml(cfg: &TestConfig) -> String {
    v6_toml(cfg).replacen("bind = \"::1\"", "bind = [\"127.0.0.1\", \"::1\"]", 1)
}

/// The allocations [`refuse_all`] tries the peers through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relays {
    V4,
    V6,
    /// One dual-stack allocation (ADDITIONAL-ADDRESS-FAMILY).
    Dual,
}

impl Relays {
    /// Allocates for `c`; returns the relayed address (the IPv4 one of a
    /// dual allocation).
    fn allocate(self, c: &Client) -> SocketAddr {
        match self {
            Relays::V4 => c.allocate_family(false),
            Relays::V6 => c.allocate_family(true),
            Relays::Dual => c.allocate_dual().0,
        }
    }
}

/// Tries every peer of `peers` with CreatePermission, ChannelBind and a
/// Send indication, and checks each is refused as stated, counted, and
/// that nothing was relayed: afterwards one control packet relay to relay
/// is the only packet the relayed counter shows.
fn refuse_all(d: &Daemon, relays: Relays, peers: &[(String, SocketAddr, Refusal)]) {
    let c = Client::new(d.udp_addr());
    let relay_c = relays.allocate(&c);
    let b = Client::new(d.udp_addr());
    let relay_b = relays.allocate(&b);
    let before = d.scrape();
    let snap = Snapshot::of(&before);

    let mut forbidden = 0.0;
    let mut mismatched = 0.0;
    let mut wrong = Vec::new();
    for (label, p, refusal) in peers {
        let want = match refusal {
            Refusal::Forbidden => 403,
            Refusal::FamilyMismatch => 443,
        };
        let cp = error_code(&c.create_permission(&[*p]));
        let cb = error_code(&c.channel_bind(0x4000, *p));
        if (cp, cb) != (Some(want), Some(want)) {
            wrong.push(format!(
                "{label} {p}: CreatePermission {cp:?}, ChannelBind {cb:?}, want {want}"
            ));
        }
        match refusal {
            Refusal::Forbidden => forbidden += 1.0,
            Refusal::FamilyMismatch => mismatched += 1.0,
        }
        c.send_indication(*p, b"ssrf");
    }
    assert!(
        wrong.is_empty(),
        "{} peers not refused:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // No channel was bound to any of them either.
    c.send_channel_data(0x4000, b"ssrf");

    let n = peers.len() as f64;
    expect_changes(
        d,
        &snap,
        &[
            (denied("special_range"), 2.0 * forbidden),
            (dropped("no_permission"), n - mismatched),
            (dropped("peer_family"), mismatched),
            (dropped("no_channel"), 1.0),
        ],
    );
    let after = d.scrape();
    let moved = |method: &str, code: &str| {
        let l = [("method", method), ("result", code)];
        let v = |s: &common::Scrape| find(&s.0, "turnd_requests_total", &l).unwrap_or(0.0);
        v(&after) - v(&before)
    };
    for method in ["create_permission", "channel_bind"] {
        assert_eq!(moved(method, "403"), forbidden, "{method} 403");
        assert_eq!(moved(method, "443"), mismatched, "{method} 443");
        assert_eq!(moved(method, "success"), 0.0, "{method} success");
    }

    // The control: relay to relay works, and is the only packet relayed.
    for (from, to) in [(&c, relay_b), (&b, relay_c)] {
        let resp = from.create_permission(&[to]);
        assert_eq!(error_code(&resp), None, "{resp}");
    }
    c.send_indication(relay_b, b"control");
    match b.recv_relayed(ANSWER) {
        Some(Relayed::Indication { data, .. }) => assert_eq!(data, b"control"),
        other => panic!("the control packet did not arrive: {other:?}"),
    }
    d.wait_for_relayed((1, 7), (1, 7));
}

/// Every IPv4 special range, plain (403) and IPv4-mapped (443).
fn ipv4_matrix() -> Vec<(String, SocketAddr, Refusal)> {
    let mut peers = Vec::new();
    for range in V4_SPECIAL {
        for a in range.reps {
            let v4: Ipv4Addr = a.parse().unwrap();
            let label = format!("{} {}", range.cidr, range.what);
            peers.push((label.clone(), peer(a), Refusal::Forbidden));
            let mapped = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), PORT);
            peers.push((
                format!("{label}, IPv4-mapped"),
                mapped,
                Refusal::FamilyMismatch,
            ));
        }
    }
    peers
}

/// Every IPv6 special range and every IPv6 form of every IPv4 special
/// range (403), IPv4-mapped ones 443.
fn ipv6_matrix() -> Vec<(String, SocketAddr, Refusal)> {
    let mut peers = Vec::new();
    for range in V6_SPECIAL {
        for a in range.reps {
            peers.push((
                format!("{} {}", range.cidr, range.what),
                peer(a),
                Refusal::Forbidden,
            ));
        }
    }
    for range in V4_SPECIAL {
        for a in range.reps {
            let v4: Ipv4Addr = a.parse().unwrap();
            for (form, v6) in v4_in_v6(v4) {
                let label = format!("{} {} as {form}", range.cidr, range.what);
                peers.push((
                    label,
                    SocketAddr::new(IpAddr::V6(v6), PORT),
                    Refusal::Forbidden,
                ));
            }
            let mapped = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), PORT);
            let label = format!("{} {}, IPv4-mapped", range.cidr, range.what);
            peers.push((label, mapped, Refusal::FamilyMismatch));
        }
    }
    peers
}

#[test]
fn every_ipv4_special_range_is_refused_plain_and_ipv4_mapped() {
    let d = TestConfig::default().start();
    refuse_all(&d, Relays::V4, &ipv4_matrix());
}

#[test]
fn every_ipv6_special_range_and_every_ipv4_encoding_is_refused_on_an_ipv6_relay() {
    if !ipv6_loopback() {
        return;
    }
    let d = Daemon::start(&v6_toml(&TestConfig::default()));
    refuse_all(&d, Relays::V6, &ipv6_matrix());
}

/// The whole matrix, both families, through dual-stack allocations of a
/// daemon relaying IPv4 and IPv6: the IPv6 relayed address does not open
/// what the IPv4 one refuses, nor the other way round.
#[test]
fn the_whole_matrix_is_refused_through_a_dual_stack_allocation() {
    if !ipv6_loopback() {
        return;
    }
    let d = Daemon::start(&dual_toml(&TestConfig::default()));
    let mut peers = ipv4_matrix();
    peers.extend(ipv6_matrix());
    refuse_all(&d, Relays::Dual, &peers);
}

#[test]
fn the_matrix_covers_every_builtin_denied_range() {
    // A cross-check of the tables above against turnd's own list, so a
    // range added there gets a row here.
    let reps: Vec<IpAddr> = V4_SPECIAL
        .iter()
        .chain(V6_SPECIAL)
        .flat_map(|r| r.reps.iter().map(|a| ip(a)))
        .collect();
    for net in turnd::core::peer_policy::BUILTIN_DENIED {
        let covered = reps.iter().any(|a| net.contains(a))
            || *net == "::1/128".parse::<IpNet>().unwrap() // own_* tests
            || *net == "::ffff:0:0/96".parse::<IpNet>().unwrap(); // IPv4-mapped forms
        assert!(covered, "no row of the matrix is in turnd's denied {net}");
    }
}

#[test]
fn globally_reachable_special_ranges_are_allowed_like_public_addresses() {
    for v6 in [false, true] {
        if v6 && !ipv6_loopback() {
            continue;
        }
        let cfg = TestConfig::default();
        let d = if v6 {
            Daemon::start(&v6_toml(&cfg))
        } else {
            cfg.start()
        };
        let c = Client::new(d.udp_addr());
        c.allocate_family(v6);
        for range in GLOBALLY_REACHABLE {
            for a in range.reps {
                if ip(a).is_ipv6() != v6 {
                    continue;
                }
                let resp = c.create_permission(&[peer(a)]);
                assert_eq!(error_code(&resp), None, "{} {a}: {resp}", range.what);
            }
        }
        assert_eq!(d.scrape().sum("turnd_peer_denied_total"), 0.0);
    }
}

/// Whether `a` (an address of a row) is in `allowed`, in turnd's sense:
/// the canonical address is inside.
fn inside(allowed: &str, a: &str) -> bool {
    allowed.parse::<IpNet>().unwrap().contains(&ip(a))
}

/// One daemon with `[peers] allow = [range.cidr]`: every address of the
/// range gets permissions and channels (its IPv4-mapped form, on an IPv4
/// relay, 443 as any IPv4-mapped peer); every other row stays refused.
fn allowed_only_when_configured(range: &Range, rows: &[Range], v6: bool) {
    let toml = TestConfig::default().toml().replacen(
        "[peers]\nallow = []",
        &format!("[peers]\nallow = [\"{}\"]", range.cidr),
        1,
    );
    let d = Daemon::start(&if v6 {
        toml.replacen("bind = \"127.0.0.1\"", "bind = \"::1\"", 1)
    } else {
        toml
    });
    let c = Client::new(d.udp_addr());
    c.allocate_family(v6);
    let snap = Snapshot::take(&d);
    let mut number = 0x4000;
    let mut fails = Vec::new();
    let mut refused = 0.0;
    for a in range.reps {
        let mut forms = vec![peer(a)];
        if let IpAddr::V4(v4) = ip(a) {
            // Another port: the mapped form is the same peer, and a peer
            // bound to one channel is refused another (RFC 8656 §12.2).
            forms.push(SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), PORT + 1));
        }
        for p in forms {
            let cp = error_code(&c.create_permission(&[p]));
            let cb = error_code(&c.channel_bind(number, p));
            number += 1;
            // "This host" (0.0.0.0, ::) reaches loopback: never a peer, even
            // inside an allowed range (coturn CVE-2020-26262).
            let expected = if p.is_ipv6() && !v6 {
                (Some(443), Some(443))
            } else if p.ip().is_unspecified() || ip(a).is_unspecified() {
                refused += 2.0;
                (Some(403), Some(403))
            } else {
                (None, None)
            };
            if (cp, cb) != expected {
                fails.push(format!("{p}: {cp:?} {cb:?}, expected {expected:?}"));
            }
        }
    }
    for other in rows {
        let Some(a) = other.reps.iter().find(|a| !inside(range.cidr, a)) else {
            continue;
        };
        let code = error_code(&c.create_permission(&[peer(a)]));
        refused += 1.0;
        if code != Some(403) {
            fails.push(format!(
                "{} {a} with only {} allowed: {code:?}",
                other.cidr, range.cidr
            ));
        }
    }
    assert!(
        fails.is_empty(),
        "allow = [{}]:\n{}",
        range.cidr,
        fails.join("\n")
    );
    expect_changes(&d, &snap, &[(denied("special_range"), refused)]);
}

/// Runs `f` over `items`, `parallel` at a time (each starts its own daemon).
fn in_parallel<T: Sync>(items: &[T], parallel: usize, f: impl Fn(&T) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                f(item);
            });
        }
    });
}

#[test]
fn each_ipv4_range_is_allowed_only_when_configured() {
    in_parallel(V4_SPECIAL, 3, |range| {
        allowed_only_when_configured(range, V4_SPECIAL, false)
    });
}

#[test]
fn each_ipv6_range_is_allowed_only_when_configured() {
    if !ipv6_loopback() {
        return;
    }
    in_parallel(V6_SPECIAL, 3, |range| {
        allowed_only_when_configured(range, V6_SPECIAL, true)
    });
}

#[test]
fn embedded_ipv4_is_judged_by_the_ipv4_allow_list() {
    if !ipv6_loopback() {
        return;
    }
    // Allowing 10.0.0.0/8 allows NAT64 and 6to4 forms of 10.x, not of
    // 192.168.x; allowing the NAT64 prefix alone exempts no IPv4 range.
    for (allow, ok, refused) in [
        (
            "\"10.0.0.0/8\"",
            &["64:ff9b::a00:1", "2002:a00:1::1", "::ffff:0:a00:1"][..],
            &[
                "64:ff9b::c0a8:101",
                "2002:c0a8:101::1",
                "64:ff9b::a9fe:a9fe",
            ][..],
        ),
        (
            "\"64:ff9b::/96\", \"2002::/16\"",
            &["64:ff9b::808:808"][..],
            &[
                "64:ff9b::a00:1",
                "64:ff9b::7f00:1",
                "2002:7f00:1::1",
                "2002:a9fe:a9fe::1",
            ][..],
        ),
    ] {
        let cfg = TestConfig::default();
        let toml = v6_toml(&cfg).replacen(
            "[peers]\nallow = []",
            &format!("[peers]\nallow = [{allow}]"),
            1,
        );
        let d = Daemon::start(&toml);
        let c = Client::new(d.udp_addr());
        c.allocate_family(true);
        for a in ok {
            let resp = c.create_permission(&[peer(a)]);
            assert_eq!(error_code(&resp), None, "allow [{allow}], {a}: {resp}");
        }
        for a in refused {
            let resp = c.create_permission(&[peer(a)]);
            assert_eq!(error_code(&resp), Some(403), "allow [{allow}], {a}: {resp}");
        }
    }
}

/// A UDP socket on `ip` at a port outside the relay range (the kernel's
/// ephemeral range ends below it).
fn local_service(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(self::ip(ip), 0)).expect("bind a local service");
    let port = s.local_addr().unwrap().port();
    assert!(
        port < RELAY_PORTS.0,
        "ephemeral port {port} is in the relay range"
    );
    s
}

/// A Binding request: if a Send to turnd's own listener were relayed,
/// turnd would answer it and the test would see Binding counted.
fn binding_bytes() -> Vec<u8> {
    let m = common::raw::build(vec![
        Box::new(stun::agent::TransactionId::new()) as Box<dyn Setter>,
        Box::new(BINDING_REQUEST),
    ]);
    m.raw
}

/// Own listeners (UDP, and the TCP one's port) and own relay address off
/// relay ports: ChannelBind 403 `own_address`, Send dropped and counted,
/// nothing arrives. Under `allow`, loopback services become reachable but
/// the listeners never do.
fn own_addresses_refused(v6: bool, allow_loopback: bool) {
    let cfg = if allow_loopback {
        TestConfig::default().allow_loopback()
    } else {
        TestConfig::default()
    };
    let (loop_ip, mut toml) = if v6 {
        let t = v6_toml(&cfg);
        let t = if allow_loopback {
            t.replacen("\"127.0.0.0/8\"", "\"::1/128\"", 1)
        } else {
            t
        };
        ("::1", t)
    } else {
        ("127.0.0.1", cfg.toml())
    };
    toml = toml.replacen(
        "[listen]\n",
        &format!(
            "[listen]\ntcp = [\"{}\"]\n",
            SocketAddr::new(ip(loop_ip), 0)
        ),
        1,
    );
    let d = Daemon::start(&toml);
    let b = d.bound().clone();
    let listeners: Vec<SocketAddr> = b
        .udp
        .iter()
        .chain(&b.tcp)
        .copied()
        .filter(|a| a.is_ipv6() == v6)
        .collect();
    assert!(!listeners.is_empty());
    let service = local_service(loop_ip);
    let service_addr = service.local_addr().unwrap();

    let c = Client::new(d.udp_addr());
    c.allocate_family(v6);
    let snap = Snapshot::take(&d);
    let bindings = || {
        d.scrape()
            .get("turnd_binding_requests_total", &[("transport", "udp")])
    };
    let bindings_before = bindings();

    // The relay's own address gets a permission (relay to relay needs it).
    let resp = c.create_permission(&[SocketAddr::new(ip(loop_ip), PORT)]);
    assert_eq!(error_code(&resp), None, "own relay address: {resp}");
    let mut own = 0.0;
    let mut targets: Vec<SocketAddr> = listeners.clone();
    if !v6 {
        // The IPv4-mapped forms of the same.
        targets.extend(listeners.iter().map(|l| match l.ip() {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), l.port()),
            IpAddr::V6(_) => *l,
        }));
    }
    let mut mapped = 0.0;
    for (i, t) in targets.iter().enumerate() {
        // An IPv4-mapped form on an IPv4 relay is refused before the policy
        // looks at it: 443, and its Send dropped as `peer_family`.
        let mismatch = t.is_ipv6() && !v6;
        let resp = c.channel_bind(0x4000 + i as u16, *t);
        assert_eq!(
            error_code(&resp),
            Some(if mismatch { 443 } else { 403 }),
            "ChannelBind to own listener {t}: {resp}"
        );
        c.send_indication(*t, &binding_bytes());
        if mismatch {
            mapped += 1.0;
        } else {
            own += 2.0;
        }
    }
    // A loopback service off the relay ports: refused unless allowed.
    let resp = c.channel_bind(0x5000, service_addr);
    c.send_indication(service_addr, b"hello service");
    let got = recv_from_within(
        &service,
        None,
        if allow_loopback { ANSWER } else { SILENCE },
    );
    if allow_loopback {
        assert_eq!(error_code(&resp), None, "{resp}");
        assert_eq!(got.map(|g| g.0), Some(b"hello service".to_vec()));
    } else {
        assert_eq!(error_code(&resp), Some(403), "{resp}");
        assert!(got.is_none(), "the loopback service received {got:?}");
        own += 2.0;
    }
    let sends = targets.len() as f64 + if allow_loopback { 0.0 } else { 1.0 };
    expect_changes(
        &d,
        &snap,
        &[
            (denied("own_address"), own),
            (dropped("no_permission"), sends - mapped),
            (dropped("peer_family"), mapped),
        ],
    );
    assert_eq!(
        bindings(),
        bindings_before,
        "a Send reached turnd's own listener"
    );
    assert!(c.recv(SILENCE).is_none(), "turnd relayed something back");
}

#[test]
fn own_listeners_and_own_relay_address_off_relay_ports_are_refused() {
    own_addresses_refused(false, false);
}

#[test]
fn own_listeners_stay_refused_when_loopback_is_allowed() {
    own_addresses_refused(false, true);
}

#[test]
fn own_ipv6_listeners_and_relay_address_off_relay_ports_are_refused() {
    if ipv6_loopback() {
        own_addresses_refused(true, false);
    }
}

#[test]
fn own_ipv6_listeners_stay_refused_when_loopback_is_allowed() {
    if ipv6_loopback() {
        own_addresses_refused(true, true);
    }
}

#[test]
fn loopback_peer_is_relayed_when_allowed_in_every_direction() {
    let d = TestConfig::default().allow_loopback().start();
    let c = Client::new(d.udp_addr());
    let relay = c.allocate_family(false);
    // 127.0.0.2: loopback, allowed, and not the relay's own address.
    let peer = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let peer_addr = peer.local_addr().unwrap();
    assert_eq!(error_code(&c.create_permission(&[peer_addr])), None);
    c.send_indication(peer_addr, b"out");
    let (got, from) = recv_from_within(&peer, None, ANSWER).expect("the peer receives");
    assert_eq!((got.as_slice(), from), (&b"out"[..], relay));
    peer.send_to(b"back", relay).unwrap();
    assert_eq!(
        c.recv_relayed(ANSWER),
        Some(Relayed::Indication {
            peer: peer_addr,
            data: b"back".to_vec()
        })
    );
    assert_eq!(d.scrape().sum("turnd_peer_denied_total"), 0.0);
}

/// Binds a UDP socket on `ip` at a port inside the relay range that turnd
/// does not hold (it skips ports other processes have).
fn service_in_relay_range(ip: &str) -> UdpSocket {
    for port in (RELAY_PORTS.0..=RELAY_PORTS.1).rev().step_by(7) {
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self::ip(ip), port)) {
            return s;
        }
    }
    panic!("no free port in the relay range on {ip}");
}

#[test]

fn own_relay_address_reaches_only_ports_turnd_holds() {
    // Linux's ephemeral ports (32768-60999) overlap the default relay range
    // (49152-65535): any local UDP socket there, e.g. a resolver's query
    // socket, is a loopback service the default policy must protect.
    let d = TestConfig::default().start();
    let c = Client::new(d.udp_addr());
    c.allocate_family(false);
    let service = service_in_relay_range("127.0.0.1");
    let service_addr = service.local_addr().unwrap();
    let resp = c.channel_bind(0x4000, service_addr);
    c.send_indication(service_addr, b"hello service");
    let got = recv_from_within(&service, None, SILENCE);
    assert!(
        got.is_none(),
        "a local service in the relay range received {got:?}"
    );
    assert_eq!(
        error_code(&resp),
        Some(403),
        "ChannelBind {service_addr}: {resp}"
    );
}

/// `0.0.0.0` and `::` as destinations mean "this host" to the kernel
/// (Linux sends to the source address, or loopback): an operator who allows
/// everything but loopback must not find loopback reachable through them.
fn unspecified_does_not_reach_denied_loopback(v6: bool) {
    let (toml, loop_ip, unspecified) = if v6 {
        let t = v6_toml(&TestConfig::default()).replacen(
            "[peers]\nallow = []",
            "[peers]\nallow = [\"::/0\"]\ndeny = [\"::1/128\"]",
            1,
        );
        (t, "::1", "::")
    } else {
        let t = TestConfig::default().toml().replacen(
            "[peers]\nallow = []",
            "[peers]\nallow = [\"0.0.0.0/0\"]\ndeny = [\"127.0.0.0/8\"]",
            1,
        );
        (t, "127.0.0.1", "0.0.0.0")
    };
    let d = Daemon::start(&toml);
    let c = Client::new(d.udp_addr());
    c.allocate_family(v6);
    let service = local_service(loop_ip);
    let port = service.local_addr().unwrap().port();
    let target = SocketAddr::new(ip(unspecified), port);
    let cp = c.create_permission(&[target]);
    let cb = c.channel_bind(0x4000, target);
    c.send_indication(target, b"via unspecified");
    let got = recv_from_within(&service, None, SILENCE);
    assert!(
        got.is_none(),
        "{target} reached the denied loopback service: {got:?}"
    );
    assert_eq!(
        error_code(&cp),
        Some(403),
        "CreatePermission {target}: {cp}"
    );
    assert_eq!(error_code(&cb), Some(403), "ChannelBind {target}: {cb}");
}

#[test]
fn unspecified_ipv4_does_not_reach_denied_loopback() {
    unspecified_does_not_reach_denied_loopback(false);
}

#[test]
fn unspecified_ipv6_does_not_reach_denied_loopback() {
    if ipv6_loopback() {
        unspecified_does_not_reach_denied_loopback(true);
    }
}

#[test]

fn dummy_ipv6_prefix_is_refused() {
    if !ipv6_loopback() {
        return;
    }
    let d = Daemon::start(&v6_toml(&TestConfig::default()));
    let peers: Vec<_> = ["100:0:0:1::", "100:0:0:1:ffff:ffff:ffff:ffff"]
        .iter()
        .map(|a| {
            (
                "100:0:0:1::/64 dummy prefix (RFC 9780)".to_string(),
                peer(a),
                Refusal::Forbidden,
            )
        })
        .collect();
    refuse_all(&d, Relays::V6, &peers);
}

/// "deny beats allow" holds for turnd's own relay address too: listed in
/// `[peers] deny`, it gets no permission (403, counted as `configured`).
#[test]
fn operator_deny_covers_the_own_relay_address() {
    let toml = TestConfig::default().toml().replacen(
        "[peers]\n",
        "[peers]\ndeny = [\"127.0.0.1/32\"]\n",
        1,
    );
    let d = Daemon::start(&toml);
    let c = Client::new(d.udp_addr());
    c.allocate_family(false);
    let resp = c.create_permission(&[SocketAddr::new(ip("127.0.0.1"), PORT)]);
    assert_eq!(error_code(&resp), Some(403), "{resp}");
    assert_eq!(
        d.scrape()
            .get("turnd_peer_denied_total", &[("reason", "configured")]),
        1.0
    );
}
