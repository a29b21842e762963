//! Bandwidth caps of the real daemon, seen by a client we did not write
//! (`turn::client`) and a peer socket: a burst far over
//! `max_bps_per_allocation` reaches the peer only in part, the rest counted
//! as `bandwidth_cap` drops; over `bps_capacity` a new Allocate gets 508.
//! Counts have generous bounds and nothing is timed: the machine is shared.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, Daemon, TestConfig, PASSWORD, USER};
use tokio::net::UdpSocket;
use tokio::time::timeout;
use turn::client::Client;
use webrtc_util::Conn;

const STEP: Duration = Duration::from_secs(10);
/// Datagrams in the burst, of [`SIZE`] bytes.
const BURST: usize = 300;
const SIZE: usize = 1000;

fn daemon(quota: &str) -> Daemon {
    let mut cfg = TestConfig::default().allow_loopback();
    cfg.extra = format!("[quota]\n{quota}\n");
    // One worker: the per-user and server caps are split between workers.
    Daemon::start(&format!("workers = 1\n{}", cfg.toml()))
}

async fn client(server: SocketAddr) -> Client {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = common::turn_client(server, USER, PASSWORD, conn).await;
    client
}

/// Allocates, sends [`BURST`] datagrams to a peer as fast as the client
/// can; returns the peer's socket, which has taken the first.
async fn burst(client: &Client) -> UdpSocket {
    let relay = timeout(STEP, client.allocate()).await.unwrap().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    // The first datagram creates the permission; wait until it arrives.
    let data = pattern(SIZE, 1);
    timeout(STEP, relay.send_to(&data, peer_addr))
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = timeout(STEP, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, SIZE);
    for _ in 1..BURST {
        timeout(STEP, relay.send_to(&data, peer_addr))
            .await
            .unwrap()
            .unwrap();
    }
    peer
}

/// How many datagrams `peer` received, the one [`burst`] took included
/// (until 1 s of silence).
async fn count(peer: &UdpSocket) -> usize {
    let mut buf = vec![0u8; 65536];
    let mut received = 1;
    while let Ok(Ok(_)) = timeout(Duration::from_secs(1), peer.recv_from(&mut buf)).await {
        received += 1;
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_allocation_cap_limits_what_the_peer_receives() {
    // 5 000 B/s: five 1000-byte datagrams at once, then five per second.
    let d = daemon("max_bps_per_allocation = 5000");
    let c = client(d.udp_addr()).await;
    let received = count(&burst(&c).await).await;
    assert!(
        (5..BURST / 2).contains(&received),
        "{received} of {BURST} datagrams reached the peer"
    );
    let dropped = d.scrape().get(
        "turnd_dropped_packets_total",
        &[("reason", "bandwidth_cap")],
    );
    assert!(
        dropped >= (BURST / 2) as f64,
        "{dropped} dropped for the cap"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_server_capacity_a_new_allocate_gets_508() {
    let d = daemon("bps_capacity = 5000");
    let first = client(d.udp_addr()).await;
    // Ready before the burst, so that its Allocate follows the burst at
    // once, while the relay is over its capacity.
    let second = client(d.udp_addr()).await;
    let peer = burst(&first).await;
    let err = timeout(STEP, second.allocate())
        .await
        .unwrap()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("508"), "{err:?}\n{}", d.stderr());
    assert_eq!(
        d.scrape()
            .get("turnd_quota_rejections_total", &[("kind", "bandwidth")]),
        1.0
    );
    let received = count(&peer).await;
    assert!(
        received < BURST / 2,
        "{received} of {BURST} reached the peer"
    );
    first.close().await.unwrap();
    second.close().await.unwrap();
}
