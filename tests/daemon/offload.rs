//! The kernel fast path (`[relay] offload`, src/net/offload/, bpf/): the
//! real binary with its XDP program attached to `lo` in generic mode,
//! clients and peers on 127.0.0.1. ChannelData relayed both ways by the
//! kernel while user space's share of `turnd_relayed_*` stays still;
//! deletion, expiry and a reload that denies the peer take the binding out
//! of the kernel; a peer denied by policy never gets into it; relay to
//! relay stays in user space; a failed attach falls back to user space;
//! what the kernel relayed is in the allocation's usage record.
//!
//! Attaching needs root; where it is not available (or another XDP program
//! holds `lo`) the tests say so and skip, and fail instead when `CI` is
//! set. Only one XDP program can hold `lo`, so the tests that attach run
//! one at a time: a lock in this process and a lock file for other test
//! processes on the machine.

// Tests read the clock to bound their waits.
#![allow(clippy::disallowed_methods)]

use crate::common;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::common::coturn_peer::CoturnPeer;
use common::raw::{error_code, RawClient, Relayed};
use common::{pattern, Daemon, Scrape, TestConfig, PASSWORD, USER};
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);
const SILENCE: Duration = Duration::from_millis(300);

/// Held while a test's daemon may have `lo`.
struct LoLock {
    _guard: MutexGuard<'static, ()>,
    _file: File,
}

fn lock_lo() -> LoLock {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let file = File::create(std::env::temp_dir().join("turnd-offload-lo.lock"))
        .expect("create the lock file");
    // SAFETY: flock on a file descriptor we own; blocks until we hold it.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock the lock file");
    LoLock {
        _guard: guard,
        _file: file,
    }
}

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn skip(why: &str) {
    assert!(
        !ci(),
        "{why}, and CI is set: run the tests as root on a kernel with XDP links"
    );
    eprintln!("skipping: {why} (with CI set this test fails)");
}

fn config(base: TestConfig, extra_relay: &str) -> String {
    with_offload(&base.toml(), extra_relay)
}

/// `toml` with the program on `lo` and `extra_relay` keys in `[relay]`.
fn with_offload(toml: &str, extra_relay: &str) -> String {
    toml.replacen(
        "[relay]\n",
        &format!("[relay]\noffload = \"xdp:lo\"\n{extra_relay}"),
        1,
    )
}

/// turnd with the program on `lo`, or `None` (skipped) where it cannot be.
fn start_offloaded(base: TestConfig, extra_relay: &str) -> Option<(Daemon, LoLock)> {
    start_offloaded_toml(&config(base, extra_relay))
}

/// [`start_offloaded`] on a whole config file.
fn start_offloaded_toml(toml: &str) -> Option<(Daemon, LoLock)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root: cannot attach XDP programs");
        return None;
    }
    let lock = lock_lo();
    let d = Daemon::start(toml);
    if d.scrape().get("turnd_offload_active", &[]) != 1.0 {
        skip(&format!(
            "turnd could not attach its XDP program to lo; its log:\n{}",
            d.stderr()
        ));
        return None;
    }
    Some((d, lock))
}

/// (packets, bytes) of one series per direction.
fn flows(m: &Scrape, name: &str) -> [(u64, u64); 2] {
    ["client_to_peer", "peer_to_client"].map(|d| {
        let l = [("direction", d)];
        (
            m.get(&format!("turnd_{name}packets_total"), &l) as u64,
            m.get(&format!("turnd_{name}bytes_total"), &l) as u64,
        )
    })
}

/// What user space relayed: the total minus what the kernel did.
fn user_space(m: &Scrape) -> [(u64, u64); 2] {
    let (total, kernel) = (flows(m, "relayed_"), flows(m, "offload_relayed_"));
    [0, 1].map(|i| (total[i].0 - kernel[i].0, total[i].1 - kernel[i].1))
}

/// Polls (at most 5 s) until the kernel's relayed counters read `want`.
fn wait_kernel(d: &Daemon, want: [(u64, u64); 2]) -> Scrape {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = d.scrape();
        let got = flows(&m, "offload_relayed_");
        if got == want {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kernel relayed {got:?}, expected {want:?}; log:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn peer_socket() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the peer");
    s.set_read_timeout(Some(STEP)).unwrap();
    s
}

fn peer_recv(peer: &std::net::UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    peer.set_read_timeout(Some(within)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = peer.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some((buf, from))
}

/// An allocation with channel 0x4000 bound to a fresh peer socket.
fn bound_channel(d: &Daemon) -> (RawClient, SocketAddr, std::net::UdpSocket) {
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    let relayed = client.allocate();
    let peer = peer_socket();
    let resp = client.channel_bind(0x4000, peer.local_addr().unwrap());
    assert_eq!(error_code(&resp), None, "ChannelBind: {resp}");
    d.wait_for_metric("turnd_offload_channels", &[], 1.0);
    (client, relayed, peer)
}

/// Sends `n` datagrams each way over the channel and checks every byte.
/// Returns the payload bytes sent each way.
fn exchange(
    client: &mut RawClient,
    relayed: SocketAddr,
    peer: &std::net::UdpSocket,
    n: usize,
) -> (u64, u64) {
    let mut bytes = (0, 0);
    for i in 0..n {
        // Odd sizes: the client pads, the kernel must strip the padding.
        let out = pattern(1 + 37 * i, i as u8);
        client.send_channel_data(0x4000, &out);
        let (got, from) = peer_recv(peer, STEP).expect("the peer receives the ChannelData payload");
        assert_eq!(from, relayed, "from the relayed address");
        assert!(got == out, "client to peer datagram {i} differs");
        let back = pattern(3 + 53 * i, 100 + i as u8);
        peer.send_to(&back, relayed).unwrap();
        match client.recv_relayed(STEP) {
            Some(Relayed::Channel { number, data }) => {
                assert_eq!(number, 0x4000);
                assert!(data == back, "peer to client datagram {i} differs");
            }
            other => panic!("expected ChannelData, got {other:?}"),
        }
        bytes.0 += out.len() as u64;
        bytes.1 += back.len() as u64;
    }
    bytes
}

#[test]
fn channel_data_is_relayed_in_the_kernel_until_the_allocation_is_deleted() {
    let Some((d, _lo)) = start_offloaded(TestConfig::default().allow_loopback(), "") else {
        return;
    };
    let (mut client, relayed, peer) = bound_channel(&d);
    let before = user_space(&d.scrape_after_publish());

    let n = 20;
    let (c2p, p2c) = exchange(&mut client, relayed, &peer, n);
    let m = wait_kernel(&d, [(n as u64, c2p), (n as u64, p2c)]);
    // Added into the totals, and none of it seen by user space.
    assert_eq!(user_space(&m), before, "user space relayed some of it");
    assert_eq!(m.sum("turnd_offload_packets_total"), 0.0);

    // Refresh 0 deletes the allocation: out of the kernel at once.
    let resp = client.refresh(0);
    assert_eq!(error_code(&resp), None, "Refresh 0: {resp}");
    d.wait_for_metric("turnd_offload_channels", &[], 0.0);
    client.send_channel_data(0x4000, b"after delete");
    assert!(
        peer_recv(&peer, SILENCE).is_none(),
        "relayed after deletion"
    );
    peer.send_to(b"to a closed relay", relayed).unwrap();
    assert!(
        client.recv_relayed(SILENCE).is_none(),
        "relayed after deletion"
    );
    let m = d.scrape_after_publish();
    assert_eq!(
        flows(&m, "offload_relayed_"),
        [(n as u64, c2p), (n as u64, p2c)]
    );
}

/// The program rewrites IPv4 only: of a dual-stack allocation (relays on
/// 127.0.0.1 and `::1`), the IPv4 channel is relayed by the kernel and the
/// IPv6 one by user space, both working, neither seen by the other path.
#[test]
fn the_ipv6_side_of_a_dual_stack_allocation_stays_in_user_space() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return eprintln!("skipping: no ::1");
    }
    let toml = config(TestConfig::default().allow_loopback(), "")
        .replacen("bind = \"127.0.0.1\"", "bind = [\"127.0.0.1\", \"::1\"]", 1)
        .replacen("\"127.0.0.0/8\"", "\"127.0.0.0/8\", \"::1/128\"", 1);
    let Some((d, _lo)) = start_offloaded_toml(&toml) else {
        return;
    };
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    let resp = client.allocate_with(|| {
        vec![Box::new(crate::common::raw::RawAttr(
            stun::attributes::AttrType(0x8000),
            vec![2, 0, 0, 0],
        ))]
    });
    let relayed: Vec<SocketAddr> = resp
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == stun::attributes::ATTR_XOR_RELAYED_ADDRESS)
        .filter_map(|a| turnd::core::message::decode_xor_address(&a.value, &resp.transaction_id.0))
        .collect();
    assert_eq!(relayed.len(), 2, "a dual allocation: {resp}");
    let (relay4, relay6) = (relayed[0], relayed[1]);
    let peer4 = peer_socket();
    let peer6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let resp = client.channel_bind(0x4001, peer6.local_addr().unwrap());
    assert_eq!(error_code(&resp), None, "ChannelBind IPv6: {resp}");
    let resp = client.channel_bind(0x4000, peer4.local_addr().unwrap());
    assert_eq!(error_code(&resp), None, "ChannelBind IPv4: {resp}");
    let m = d.wait_for_metric("turnd_offload_channels", &[], 1.0);
    assert_eq!(
        m.get("turnd_offload_channels", &[]),
        1.0,
        "only the IPv4 one"
    );

    // The IPv6 channel, through user space.
    let before = user_space(&d.scrape_after_publish());
    client.send_channel_data(0x4001, b"six");
    let (got, from) = peer_recv(&peer6, STEP).expect("the IPv6 peer receives");
    assert_eq!((got.as_slice(), from), (&b"six"[..], relay6));
    peer6.send_to(b"back6", relay6).unwrap();
    match client.recv_relayed(STEP) {
        Some(Relayed::Channel { number, data }) => {
            assert_eq!((number, data.as_slice()), (0x4001, &b"back6"[..]))
        }
        other => panic!("expected ChannelData on 0x4001, got {other:?}"),
    }
    let m = d.wait_for_relayed((1, 3), (1, 5));
    assert_eq!(
        flows(&m, "offload_relayed_"),
        [(0, 0), (0, 0)],
        "the kernel carried none"
    );
    assert_eq!(
        user_space(&m),
        [
            (before[0].0 + 1, before[0].1 + 3),
            (before[1].0 + 1, before[1].1 + 5)
        ]
    );

    // The IPv4 channel, through the kernel.
    let (c2p, p2c) = exchange(&mut client, relay4, &peer4, 3);
    let m = wait_kernel(&d, [(3, c2p), (3, p2c)]);
    assert_eq!(
        user_space(&m)[0].0,
        before[0].0 + 1,
        "user space saw no IPv4 packet"
    );
}

#[test]
fn what_the_kernel_relayed_is_in_the_usage_record() {
    let base = TestConfig {
        extra: "[log]\nformat = \"json\"\n".into(),
        ..TestConfig::default().allow_loopback()
    };
    let Some((d, _lo)) = start_offloaded(base, "") else {
        return;
    };
    let (mut client, relayed, peer) = bound_channel(&d);
    let n = 12;
    let (c2p, p2c) = exchange(&mut client, relayed, &peer, n);
    wait_kernel(&d, [(n as u64, c2p), (n as u64, p2c)]);
    // Read by the worker's periodic harvest while installed (the first
    // half), and by the removal (what came after the last harvest).
    std::thread::sleep(Duration::from_millis(1500));
    let (c2p2, p2c2) = exchange(&mut client, relayed, &peer, n);
    let resp = client.refresh(0);
    assert_eq!(error_code(&resp), None, "Refresh 0: {resp}");
    let rec = d.usage_records(1).remove(0);
    let num = |k: &str| rec[k].as_u64().unwrap_or_else(|| panic!("{k} in {rec}"));
    assert_eq!(
        [
            num("sent_packets"),
            num("sent_bytes"),
            num("received_packets"),
            num("received_bytes")
        ],
        [2 * n as u64, c2p + c2p2, 2 * n as u64, p2c + p2c2],
        "the usage record misses what the kernel relayed: {rec}"
    );
    assert_eq!(rec["reason"], "deleted");
}

#[test]
fn a_tcp_clients_channel_stays_in_user_space_and_its_usage_is_recorded() {
    use crate::stream_support::{stream_config, StreamClient};
    let toml = with_offload(&stream_config(None, ""), "") + "\n[log]\nformat = \"json\"\n";
    let Some((d, _lo)) = start_offloaded_toml(&toml) else {
        return;
    };
    let peer = peer_socket();
    let mut client = StreamClient::tcp(d.tcp_addr());
    let relayed = client.allocate();
    client.channel_bind(0x4000, peer.local_addr().unwrap());
    peer.send_to(b"to a TCP client", relayed).unwrap();
    assert!(client.recv_relayed(STEP).is_some(), "relayed in user space");
    assert_eq!(d.scrape().get("turnd_offload_channels", &[]), 0.0);
    client.refresh(0);
    // The engine announced the channel; the kernel did not carry it; the
    // record is written all the same.
    let rec = d.usage_records(1).remove(0);
    assert_eq!(rec["transport"], "tcp", "{rec}");
    assert_eq!(rec["received_packets"].as_u64(), Some(1), "{rec}");
}

#[test]
fn an_expired_allocation_leaves_the_kernel() {
    let base = TestConfig {
        extra: "[allocation]\ndefault_lifetime_s = 2\nmax_lifetime_s = 2\n".into(),
        ..TestConfig::default().allow_loopback()
    };
    let Some((d, _lo)) = start_offloaded(base, "") else {
        return;
    };
    let (mut client, relayed, peer) = bound_channel(&d);
    exchange(&mut client, relayed, &peer, 1);
    // Expires after 2 s; the expiry timer removes the binding.
    d.wait_for_metric(
        "turnd_allocations_ended_total",
        &[("transport", "udp"), ("reason", "expired")],
        1.0,
    );
    assert_eq!(d.scrape().get("turnd_offload_channels", &[]), 0.0);
    client.send_channel_data(0x4000, b"after expiry");
    assert!(peer_recv(&peer, SILENCE).is_none(), "relayed after expiry");
}

#[test]
fn a_denied_peer_never_reaches_the_kernel() {
    // Loopback peers are denied by default.
    let Some((d, _lo)) = start_offloaded(TestConfig::default(), "") else {
        return;
    };
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    client.allocate();
    let peer = peer_socket();
    let resp = client.channel_bind(0x4000, peer.local_addr().unwrap());
    assert_eq!(error_code(&resp), Some(403), "ChannelBind: {resp}");
    client.send_channel_data(0x4000, b"to a denied peer");
    assert!(
        peer_recv(&peer, SILENCE).is_none(),
        "relayed to a denied peer"
    );
    let m = d.scrape_after_publish();
    assert_eq!(m.get("turnd_offload_channels", &[]), 0.0);
    assert_eq!(flows(&m, "offload_relayed_"), [(0, 0), (0, 0)]);
}

#[test]
fn a_reload_that_denies_the_peer_removes_the_path() {
    let Some((d, _lo)) = start_offloaded(TestConfig::default().allow_loopback(), "") else {
        return;
    };
    let (mut client, relayed, peer) = bound_channel(&d);
    exchange(&mut client, relayed, &peer, 2);
    // The same config without the loopback allowance, then SIGHUP.
    d.reload(&config(TestConfig::default(), ""));
    d.wait_for_metric("turnd_offload_channels", &[], 0.0);
    client.send_channel_data(0x4000, b"after reload");
    assert!(
        peer_recv(&peer, SILENCE).is_none(),
        "relayed after the reload denied the peer"
    );
    peer.send_to(b"from a denied peer", relayed).unwrap();
    assert!(
        client.recv_relayed(SILENCE).is_none(),
        "relayed from a denied peer"
    );
}

#[test]
fn relay_to_relay_stays_in_user_space() {
    let Some((d, _lo)) = start_offloaded(TestConfig::default().allow_loopback(), "") else {
        return;
    };
    let mut a = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    let mut b = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    let (ra, rb) = (a.allocate(), b.allocate());
    assert_eq!(error_code(&a.channel_bind(0x4000, rb)), None);
    assert_eq!(error_code(&b.channel_bind(0x4001, ra)), None);
    let m = d.scrape();
    assert_eq!(
        m.get("turnd_offload_channels", &[]),
        0.0,
        "a channel to our own relay in the kernel"
    );
    a.send_channel_data(0x4000, b"relay to relay");
    match b.recv_relayed(STEP) {
        Some(Relayed::Channel { number, data }) => {
            assert_eq!((number, data.as_slice()), (0x4001, &b"relay to relay"[..]));
        }
        other => panic!("expected ChannelData on 0x4001, got {other:?}"),
    }
}

#[test]
fn a_failed_attach_falls_back_to_user_space() {
    // No such interface: nothing is attached, whoever runs the test.
    let toml = TestConfig::default().allow_loopback().toml().replacen(
        "[relay]\n",
        "[relay]\noffload = \"xdp:nosuchif0\"\n",
        1,
    );
    let d = Daemon::start(&toml);
    let mut client = RawClient::with_credentials(d.udp_addr(), USER, PASSWORD);
    let relayed = client.allocate();
    let peer = peer_socket();
    assert_eq!(
        error_code(&client.channel_bind(0x4000, peer.local_addr().unwrap())),
        None
    );
    let (c2p, p2c) = exchange(&mut client, relayed, &peer, 3);
    let m = d.wait_for_relayed((3, c2p), (3, p2c));
    assert_eq!(m.get("turnd_offload_active", &[]), 0.0);
    assert_eq!(m.get("turnd_offload_channels", &[]), 0.0);
    assert_eq!(flows(&m, "offload_relayed_"), [(0, 0), (0, 0)]);
    assert!(
        d.stderr().contains("kernel offload unavailable"),
        "the log says why: {}",
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_client_session_goes_through_the_kernel() {
    let Some((d, _lo)) = start_offloaded(TestConfig::default().allow_loopback(), "") else {
        return;
    };
    let conn = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = common::turn_client(d.udp_addr(), USER, PASSWORD, conn).await;
    let relay = timeout(STEP, client.allocate())
        .await
        .expect("in time")
        .expect("allocate");
    use webrtc_util::Conn;
    let relayed = relay.local_addr().unwrap();
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut buf = vec![0u8; 65536];
    // The first sends go as Send indications until the client's background
    // ChannelBind succeeds (bounded).
    for probe in 0.. {
        assert!(probe < 200, "the client never bound a channel");
        relay.send_to(b"probe", peer_addr).await.unwrap();
        let (n, from) = timeout(STEP, peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..n], from), (&b"probe"[..], relayed));
        if d.scrape().get("turnd_offload_channels", &[]) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = d.scrape();
    let (user_before, kernel_before) = (user_space(&before), flows(&before, "offload_relayed_"));

    let sizes = [1usize, 100, 1200, 1400, 8000];
    for (i, size) in sizes.iter().enumerate() {
        let out = pattern(*size, i as u8);
        relay.send_to(&out, peer_addr).await.unwrap();
        let (n, from) = timeout(STEP, peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, relayed);
        assert!(buf[..n] == out[..], "client to peer {size} bytes differ");
        let back = pattern(*size, 50 + i as u8);
        peer.send_to(&back, relayed).await.unwrap();
        let (n, from) = timeout(STEP, relay.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, peer_addr);
        assert!(buf[..n] == back[..], "peer to client {size} bytes differ");
    }
    let (k, bytes) = (sizes.len() as u64, sizes.iter().sum::<usize>() as u64);
    let want = [
        (kernel_before[0].0 + k, kernel_before[0].1 + bytes),
        (kernel_before[1].0 + k, kernel_before[1].1 + bytes),
    ];
    let m = tokio::task::block_in_place(|| wait_kernel(&d, want));
    assert_eq!(
        user_space(&m),
        user_before,
        "user space saw the channel's packets"
    );
    relay.close().await.ok();
    client.close().await.ok();
}

#[test]
fn a_second_turnd_falls_back_and_a_killed_one_leaves_nothing_attached() {
    let Some((first, _lo)) = start_offloaded(TestConfig::default().allow_loopback(), "") else {
        return;
    };
    // lo is taken: the second one says so and relays in user space.
    let second = Daemon::start(&config(TestConfig::default().allow_loopback(), ""));
    assert_eq!(second.scrape().get("turnd_offload_active", &[]), 0.0);
    assert!(
        second.stderr().contains("another XDP program is attached"),
        "the log says why: {}",
        second.stderr()
    );
    drop(second);
    // SIGKILL (Daemon's drop): no exit handler runs, the kernel closes the
    // link's file descriptor and the program goes with it.
    drop(first);
    let third = Daemon::start(&config(TestConfig::default().allow_loopback(), ""));
    assert_eq!(
        third.scrape().get("turnd_offload_active", &[]),
        1.0,
        "lo still held after the first turnd was killed: {}",
        third.stderr()
    );
}

#[test]
fn a_turnutils_uclient_session_goes_through_the_kernel() {
    if !common::require_tool("turnutils_uclient") || !common::require_tool("turnutils_peer") {
        return;
    }
    let Some((d, _lo)) = start_offloaded(TestConfig::default().allow_loopback(), "") else {
        return;
    };
    let peer = CoturnPeer::v4();
    // -c: one allocation per client (no RTCP); ChannelBind, then ChannelData.
    let (clients, messages, length) = (2u64, 10u64, 120u64);
    let mut cmd = std::process::Command::new("turnutils_uclient");
    cmd.args([
        "-u",
        USER,
        "-w",
        PASSWORD,
        "-p",
        &d.udp_addr().port().to_string(),
    ])
    .args(["-e", "127.0.0.1", "-r", &peer.addr.port().to_string(), "-c"])
    .args(["-m", &clients.to_string(), "-n", &messages.to_string()])
    .args(["-l", &length.to_string(), "127.0.0.1"]);
    let run = common::run_with_timeout(&mut cmd, Duration::from_secs(90));
    assert!(run.status.success(), "uclient failed:\n{}", run.output);
    assert!(
        run.output.contains("Total lost packets 0 (0.000000%)"),
        "packets lost:\n{}",
        run.output
    );
    let n = clients * messages;
    let bytes = n * length;
    let m = d.wait_for_relayed((n, bytes), (n, bytes));
    // All of it in the kernel: user space's share is zero.
    assert_eq!(flows(&m, "offload_relayed_"), [(n, bytes), (n, bytes)]);
    assert_eq!(user_space(&m), [(0, 0), (0, 0)]);
}
