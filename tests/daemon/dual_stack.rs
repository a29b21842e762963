//! Dual-stack relaying against the real daemon over loopback (RFC 8656
//! §7.2, RFC 6156): relays bound on 127.0.0.1 and `::1` side by side,
//! coturn's `turnutils_uclient` asking for a dual allocation (`-Z`) and for
//! an IPv6 relay (`-x`) to a `turnutils_peer` echo server, clients over
//! either family, and webrtc-rs `turn::client` (which cannot ask for a
//! family) getting an IPv6 relay over IPv6 with `relay.default_family =
//! "keep"`.
//!
//! Needs `::1` (skipped without it) and coturn's client tools (skipped when
//! missing, failed when `CI` is set).

// Deadlines of bounded waits; the clock rule is for the sans-IO core.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::coturn_peer::{uclient_total, CoturnPeer};
use crate::common::{
    self, require_tool, run_with_timeout, turn_client, Daemon, TestConfig, PASSWORD, USER,
};
use webrtc_util::Conn;

/// A whole `turnutils_uclient` run at these settings takes a few seconds.
const UCLIENT_LIMIT: Duration = Duration::from_secs(90);
/// Messages per client (`-n`) and their length (`-l`).
const MESSAGES: u32 = 10;
const LENGTH: u32 = 120;
/// Bound on one network step of the `turn::client` test.
const STEP: Duration = Duration::from_secs(10);

fn ipv6_loopback() -> bool {
    if UdpSocket::bind("[::1]:0").is_ok() {
        return true;
    }
    eprintln!("skipping: ::1 is not available on this machine");
    false
}

/// turnd relaying IPv4 from 127.0.0.1 and IPv6 from `::1`, listening on
/// both, loopback peers allowed; `extra` goes into `[relay]`.
fn dual_toml(extra: &str) -> String {
    let toml = TestConfig::default().allow_loopback().toml();
    assert!(toml.contains("bind = \"127.0.0.1\""));
    toml.replacen(
        "bind = \"127.0.0.1\"",
        &format!("bind = [\"127.0.0.1\", \"::1\"]\n{extra}"),
        1,
    )
    .replacen(
        "udp = [\"127.0.0.1:0\"]",
        "udp = [\"127.0.0.1:0\", \"[::1]:0\"]",
        1,
    )
    .replacen(
        "allow = [\"127.0.0.0/8\"]",
        "allow = [\"127.0.0.0/8\", \"::1/128\"]",
        1,
    )
}

/// The UDP listener of the family of `ip`.
fn listener(d: &Daemon, v6: bool) -> SocketAddr {
    *d.bound()
        .udp
        .iter()
        .find(|a| a.is_ipv6() == v6)
        .expect("a listener of each family")
}

/// Runs uclient with `flags` from a client of family `client_v6` to a peer
/// on `peer_ip`; asserts every message came back, and returns the scrape
/// once turnd's relayed counters show all of them.
fn uclient(flags: &[&str], client_v6: bool, peer_ip: &str, clients: u32) -> common::Scrape {
    let d = Daemon::start(&dual_toml(""));
    let peer = CoturnPeer::start(peer_ip.parse().unwrap());
    let server = listener(&d, client_v6);
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(["-u", USER, "-w", PASSWORD]);
    cmd.args(["-p", &server.port().to_string()]);
    cmd.args(["-e", peer_ip, "-r", &peer.addr.port().to_string()]);
    cmd.args(["-m", &clients.to_string()]);
    cmd.args(["-n", &MESSAGES.to_string(), "-l", &LENGTH.to_string()]);
    cmd.args(flags);
    cmd.arg(server.ip().to_string());
    let run = run_with_timeout(&mut cmd, UCLIENT_LIMIT);
    let out = &run.output;
    assert!(run.status.success(), "uclient {flags:?} failed:\n{out}");
    assert!(
        out.contains("Total lost packets 0 (0.000000%)"),
        "packets lost:\n{out}"
    );
    let sent = uclient_total(out, "tot_send_msgs=");
    assert_eq!(
        uclient_total(out, "tot_recv_msgs="),
        sent,
        "all echoed:\n{out}"
    );
    assert!(sent >= u64::from(clients * MESSAGES), "{out}");
    let bytes = sent * u64::from(LENGTH);
    let m = d.wait_for_relayed((sent, bytes), (sent, bytes));
    assert_eq!(m.sum("turnd_peer_denied_total"), 0.0);
    assert_eq!(
        m.get("turnd_dropped_packets_total", &[("reason", "peer_family")]),
        0.0
    );
    m
}

fn created(m: &common::Scrape, family: &str) -> f64 {
    m.get(
        "turnd_relayed_addresses_created_total",
        &[("family", family)],
    )
}

#[test]
fn uclient_dual_allocation_over_ipv4_relays_to_an_ipv6_peer() {
    if !ipv6_loopback() || !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let m = uclient(&["-Z"], false, "::1", 2);
    // Every allocation of the run is dual: one address of each family.
    assert!(created(&m, "ipv6") >= 2.0);
    assert_eq!(created(&m, "ipv4"), created(&m, "ipv6"));
    assert_eq!(m.sum("turnd_address_family_refused_total"), 0.0);
}

#[test]
fn uclient_dual_allocation_over_ipv6_relays_to_an_ipv4_peer() {
    if !ipv6_loopback() || !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let m = uclient(&["-Z", "-s"], true, "127.0.0.1", 2);
    assert!(created(&m, "ipv4") >= 2.0);
    assert_eq!(created(&m, "ipv4"), created(&m, "ipv6"));
}

#[test]
fn uclient_ipv6_relay_with_rtp_rtcp_pairs_over_ipv4() {
    if !ipv6_loopback() || !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    // Default mode: EVEN-PORT with the R bit, then RESERVATION-TOKEN, on
    // IPv6 relayed addresses.
    let m = uclient(&["-x"], false, "::1", 2);
    assert!(created(&m, "ipv6") >= 2.0);
    assert_eq!(created(&m, "ipv4"), 0.0, "-x asks for IPv6 only");
    // Every relayed packet went through an IPv6 relayed address.
    for d in ["client_to_peer", "peer_to_client"] {
        let l = [("direction", d)];
        let all = m.get("turnd_relayed_packets_total", &l);
        assert_eq!(m.get("turnd_relayed_ipv6_packets_total", &l), all, "{d}");
    }
}

#[test]
fn uclient_ipv6_relay_with_send_indications_over_ipv6() {
    if !ipv6_loopback() || !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let m = uclient(&["-x", "-c", "-s"], true, "::1", 3);
    assert!(created(&m, "ipv6") >= 3.0);
}

#[test]
fn uclient_ipv6_relay_is_440_on_an_ipv4_only_relay() {
    if !ipv6_loopback() || !require_tool("turnutils_uclient") || !require_tool("turnutils_peer") {
        return;
    }
    let d = TestConfig::default().allow_loopback().start();
    let peer = CoturnPeer::start("::1".parse().unwrap());
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(["-u", USER, "-w", PASSWORD, "-x", "-c", "-m", "1", "-n", "1"]);
    cmd.args(["-p", &d.udp_addr().port().to_string()]);
    cmd.args(["-e", "::1", "-r", &peer.addr.port().to_string()]);
    cmd.arg("127.0.0.1");
    let run = run_with_timeout(&mut cmd, UCLIENT_LIMIT);
    assert!(
        run.output
            .contains("error 440 (Address Family not Supported)"),
        "{}",
        run.output
    );
    let m = d.scrape();
    let l = [("method", "allocate"), ("result", "440")];
    assert!(m.get("turnd_requests_total", &l) >= 1.0);
    assert!(m.get("turnd_address_family_refused_total", &[("family", "ipv6")]) >= 1.0);
    assert_eq!(created(&m, "ipv6") + created(&m, "ipv4"), 0.0);
}

async fn round_trip(relay: &impl Conn, peer: &tokio::net::UdpSocket, n: u8) {
    let out = vec![n; 100 + usize::from(n)];
    relay
        .send_to(&out, peer.local_addr().unwrap())
        .await
        .expect("send through the relay");
    let mut buf = vec![0u8; 2048];
    let (len, from) = tokio::time::timeout(STEP, peer.recv_from(&mut buf))
        .await
        .expect("relayed to the peer in time")
        .unwrap();
    assert_eq!(&buf[..len], &out[..]);
    let relayed = relay.local_addr().unwrap();
    assert_eq!(from, relayed, "sent from the relayed address");
    peer.send_to(b"back", from).await.unwrap();
    let (len, from) = tokio::time::timeout(STEP, relay.recv_from(&mut buf))
        .await
        .expect("relayed back in time")
        .unwrap();
    assert_eq!(
        (&buf[..len], from),
        (&b"back"[..], peer.local_addr().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_client_gets_an_ipv6_relay_over_ipv6_with_default_family_keep() {
    if !ipv6_loopback() {
        return;
    }
    let d = Daemon::start(&dual_toml("default_family = \"keep\""));
    for (v6, local) in [(true, "[::1]:0"), (false, "127.0.0.1:0")] {
        let socket = Arc::new(tokio::net::UdpSocket::bind(local).await.unwrap());
        let client = turn_client(listener(&d, v6), USER, PASSWORD, socket).await;
        let relay = tokio::time::timeout(STEP, client.allocate())
            .await
            .expect("allocate in time")
            .expect("allocate succeeds");
        let relayed = relay.local_addr().unwrap();
        assert_eq!(relayed.is_ipv6(), v6, "the client's own family: {relayed}");
        let peer_ip = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
        let peer = tokio::net::UdpSocket::bind(peer_ip).await.unwrap();
        for n in 0..3 {
            round_trip(&relay, &peer, n).await;
        }
        relay.close().await.ok();
        client.close().await.ok();
    }
    let m = d.wait_for_relayed((6, 3 * 100 * 2 + 6), (6, 24));
    assert_eq!(created(&m, "ipv6"), 1.0);
    assert_eq!(created(&m, "ipv4"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_client_on_the_default_family_gets_ipv4_even_over_ipv6() {
    if !ipv6_loopback() {
        return;
    }
    // RFC 8656 §7.2: no REQUESTED-ADDRESS-FAMILY means IPv4, whatever the
    // client's own family (the default, `default_family = "ipv4"`).
    let d = Daemon::start(&dual_toml(""));
    let socket = Arc::new(tokio::net::UdpSocket::bind("[::1]:0").await.unwrap());
    let client = turn_client(listener(&d, true), USER, PASSWORD, socket).await;
    let relay = tokio::time::timeout(STEP, client.allocate())
        .await
        .expect("allocate in time")
        .expect("allocate succeeds");
    assert!(relay.local_addr().unwrap().is_ipv4());
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    round_trip(&relay, &peer, 1).await;
    relay.close().await.ok();
    client.close().await.ok();
}

#[test]
fn a_dual_allocation_names_both_relayed_addresses_in_its_usage_record() {
    if !ipv6_loopback() {
        return;
    }
    let d = Daemon::start(&(dual_toml("") + "\n[log]\nformat = \"json\"\n"));
    let mut c = common::raw::RawClient::with_credentials(listener(&d, false), USER, PASSWORD);
    // ADDITIONAL-ADDRESS-FAMILY IPv6 (RFC 8656 §18.11).
    let resp = c.allocate_with(|| {
        vec![Box::new(common::raw::RawAttr(
            stun::attributes::AttrType(0x8000),
            vec![2, 0, 0, 0],
        ))]
    });
    let first = common::raw::relayed_address(&resp);
    let relayed_attrs = resp
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == stun::attributes::ATTR_XOR_RELAYED_ADDRESS)
        .count();
    assert_eq!(relayed_attrs, 2, "two relayed addresses: {resp}");
    assert_eq!(common::raw::error_code(&c.refresh(0)), None);
    let record = d.usage_records(1).remove(0);
    assert_eq!(record["relay"], first.to_string(), "{record}");
    let additional: SocketAddr = record["relay_additional"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("relay_additional in {record}"));
    assert!(
        additional.ip().is_loopback() && additional.is_ipv6(),
        "{record}"
    );
    assert!(
        (common::RELAY_PORTS.0..=common::RELAY_PORTS.1).contains(&additional.port()),
        "{record}"
    );
}
